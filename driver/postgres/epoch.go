package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// nodeRecord is what the driver remembers of a node, one small file per
// node: the epoch as a fencing token, and whether Lifeboat fenced it.
type nodeRecord struct {
	// Epoch is the newest epoch the driver acted for on this node.
	Epoch uint64 `json:"epoch"`
	// Fenced: Lifeboat stopped the node or made it read-only.
	Fenced   bool      `json:"fenced"`
	FencedAt time.Time `json:"fenced_at,omitzero"`
	// StandbyTimeline is the timeline the node had as a standby just
	// before it was promoted: a newer one means the promote is done.
	StandbyTimeline uint32 `json:"standby_timeline,omitempty"`
}

func (d *Driver) recordPath(resource string) string {
	return filepath.Join(d.cfg.StateDir, "nodes", resource+".json")
}

func (d *Driver) loadRecord(resource string) (nodeRecord, error) {
	var r nodeRecord
	data, err := os.ReadFile(d.recordPath(resource))
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("read the epoch record of %s: %w", resource, err)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("epoch record %s is corrupt (%v): fix or remove it only after checking no newer run acted on this node", d.recordPath(resource), err)
	}
	return r, nil
}

func (d *Driver) saveRecord(resource string, r nodeRecord) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	path := d.recordPath(resource)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	if err := writeFileAtomic(path, data, 0o644, false); err != nil {
		return fmt.Errorf("write the epoch record of %s: %w", resource, err)
	}
	return nil
}
