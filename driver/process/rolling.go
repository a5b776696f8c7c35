package process

import (
	"context"
	"fmt"

	"github.com/lifeboat-dr/lifeboat"
)

// RollingRestart restarts every instance of the scale set, one update
// domain at a time (seed 003): it stops the domain's instances, starts them
// again (same index, port and directory, the recipe as last provisioned)
// and waits until they pass their probe before it touches the next domain,
// so at most one update domain is down at any time. It carries the epoch
// like every mutating call. Restarts it makes are not counted as crashes.
func (d *Driver) RollingRestart(ctx context.Context, t lifeboat.Target) error {
	op := lifeboat.OpComputeScale
	s, _, err := d.lockedSet(ctx, op, t, "nothing to restart; provision and scale it first")
	if err != nil {
		return err
	}
	defer s.unlock()

	d.mu.Lock()
	domains := max(s.compute.UpdateDomains, 1)
	byDomain := make([][]*instance, domains)
	for _, in := range s.instances {
		byDomain[in.ud%domains] = append(byDomain[in.ud%domains], in)
	}
	d.mu.Unlock()

	for ud, ins := range byDomain {
		if len(ins) == 0 {
			continue
		}
		d.mu.Lock()
		gone := d.closed || d.sets[t.Resource] != s
		d.mu.Unlock()
		if gone {
			return lifeboat.Transient(op, t.Resource, fmt.Errorf("scale set %s was deleted or the driver closed during the rolling restart (update domain %d of %d): run it again", t.Resource, ud, domains))
		}
		d.stopInstances(ins)
		d.mu.Lock()
		if d.closed {
			// Close has stopped (or is stopping) everything: starting
			// again would leave processes behind it.
			d.mu.Unlock()
			return lifeboat.Permanent(op, t.Resource, ErrClosed)
		}
		for _, in := range ins {
			in.stop, in.done = make(chan struct{}), make(chan struct{})
		}
		d.mu.Unlock()
		for _, in := range ins {
			go d.supervise(in)
		}
		if err := d.waitReady(ctx, op, t, ins); err != nil {
			return fmt.Errorf("rolling restart stopped at update domain %d of %d, later domains untouched: %w", ud, domains, err)
		}
	}
	return nil
}
