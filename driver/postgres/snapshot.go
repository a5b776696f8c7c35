package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Snapshot fills i.DataDir (absent or empty) with a base backup of the
// running node at source, a primary or a standby, and makes it a copy that
// belongs to no replication: no standby.signal or recovery.signal, no
// primary_conninfo, no fence, no synchronous standbys (WriteSettings strips
// them). Started, it recovers to the backup's end and comes up as a
// primary of its own, on i.Port, without a slot or a connection to source.
//
// A backup from a standby costs the primary nothing but a replication
// connection's worth of reading on the standby: that is how a test failover
// takes its copy without touching production.
func (i *Instance) Snapshot(ctx context.Context, source string) error {
	if entries, err := os.ReadDir(i.DataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("snapshot into %s: the directory is not empty; remove it or pick another one", i.DataDir)
	}
	if err := i.BaseBackup(ctx, source); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	// pg_basebackup leaves neither signal file today; removing them anyway
	// is what keeps the copy from ever following its source.
	for _, f := range []string{"standby.signal", "recovery.signal"} {
		if err := os.Remove(filepath.Join(i.DataDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("snapshot into %s: removing %s: %w", i.DataDir, f, err)
		}
	}
	return nil
}

// StartSnapshot takes a Snapshot of source into i.DataDir and starts it as
// an independent primary.
func StartSnapshot(ctx context.Context, i *Instance, source string) error {
	if err := i.Snapshot(ctx, source); err != nil {
		return err
	}
	return i.Start(ctx)
}
