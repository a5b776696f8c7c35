package serve

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
)

// FailbackBackend is what the failback needs of the pools (seed 004's
// failback steps); *pgbackend.Backend implements it.
type FailbackBackend interface {
	// SetReadOnly makes pool's copy in region refuse writes.
	SetReadOnly(ctx context.Context, pool, region string) error
	// Changed reports whether a tenant's copy in pool's copy in region
	// changed since it was restored there, and why it says so.
	Changed(ctx context.Context, pool, region, name string) (bool, string, error)
	// CopyBack copies a tenant from pool's copy in from to its copy in
	// to, keeping the copy there renamed kept. Resumable.
	CopyBack(ctx context.Context, pool, from, to, name, kept string) error
	// HasTenant reports whether a tenant has a copy in pool's copy in
	// region (its schema or database).
	HasTenant(ctx context.Context, pool, region, name string) (bool, error)
	// HasPool reports whether pool's copy in region (a DR pool) exists.
	// When it cannot tell for sure it must ask the copy (a "no" for a copy
	// that exists would drop what was written there).
	HasPool(ctx context.Context, pool, region string) (bool, error)
	// DeletePool stops and removes pool's copy in region. An error
	// wrapping errors.ErrUnsupported means it cannot (no delete command):
	// the failback leaves the copy and says so.
	DeletePool(ctx context.Context, pool, region string) error
}

// Failback is the progress of the last failback, step by step.
type Failback struct {
	Home  string `json:"home"`
	From  string `json:"from"`
	Epoch uint64 `json:"epoch"`
	// Steps are what was done, in order ("a. …" to "g. …").
	Steps     []string `json:"steps"`
	Changed   []string `json:"changed,omitempty"`
	Unchanged []string `json:"unchanged,omitempty"`
	// New are the tenants created in the DR region during the failover
	// (no home copy): copied home, with nothing to keep.
	New []string `json:"new,omitempty"`
	// Kept maps a tenant copied back to the name its old home copy keeps.
	Kept     map[string]string `json:"kept,omitempty"`
	Attempts int               `json:"attempts"`
	Done     bool              `json:"done"`
	Error    string            `json:"error,omitempty"`
}

// BackupDirs are the directories each region receives the other region's
// tenant backups in: tenants.backups resolved against the spec file, by
// default .lifeboat/tenant-backups/<region> next to it.
func BackupDirs(spec *lifeboat.Spec) map[string]string { return backup.Dirs(spec) }

func hasGeoRestore(spec *lifeboat.Spec) bool {
	for _, t := range spec.Tenants.Tiers {
		if t.Strategy == lifeboat.StrategyGeoRestore {
			return true
		}
	}
	return false
}

// startBackups runs the backup scheduler of the geo-restore tiers.
func (h *Hosted) startBackups() error {
	if h.c.BackupDirs == nil || !hasGeoRestore(h.c.Spec) {
		return nil
	}
	bc := backup.DefaultConfig()
	bc.Spec, bc.Dirs, bc.Log = h.c.Spec, h.c.BackupDirs, h.log
	if h.c.BackupPoll > 0 {
		bc.Poll = h.c.BackupPoll
	}
	d := h.c.Dumper
	if d == nil {
		d = &backup.PgDump{Spec: h.c.Spec}
	}
	s, err := backup.NewScheduler(bc, catalogLister{h}, d)
	if err != nil {
		return err
	}
	h.backups = s
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := s.Run(h.ctx); err != nil && h.ctx.Err() == nil {
			h.setErr(fmt.Errorf("tenant backups stopped: %w", err))
		}
	}()
	return nil
}

// catalogLister lists the tenants from the catalog open now.
type catalogLister struct{ h *Hosted }

func (l catalogLister) List(ctx context.Context, f tenant.Filter) ([]lifeboat.Tenant, error) {
	l.h.mu.Lock()
	cat, st := l.h.cat, l.h.state
	l.h.mu.Unlock()
	if !l.h.acting(st) {
		return nil, nil // the active region's host takes the backups
	}
	if cat == nil {
		return nil, lifeboat.Transient(Op, "", errors.New("the catalog is being reopened"))
	}
	return cat.List(ctx, f)
}

// Checks are the readiness checks of the tenants: one per geo-restore
// tier, whether its tenants' backups are fresh (tenant backups fresh).
// Nil when no backups run here.
func (h *Hosted) Checks() []monitor.Check {
	if h.backups == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	fs, err := h.backups.Fresh(ctx)
	if err != nil {
		return []monitor.Check{{Name: backup.CheckTenantBackups, Component: "tenants", OK: false,
			Reason: fmt.Sprintf("cannot tell whether tenant backups are fresh: %v", err)}}
	}
	return backup.Checks(fs, time.Now())
}

// failbackBackend is the configured one, or the recovery backend if it
// can fail back.
func (h *Hosted) failbackBackend() FailbackBackend {
	if h.c.Failback != nil {
		return h.c.Failback
	}
	if fb, ok := h.c.Backend.(FailbackBackend); ok {
		return fb
	}
	return nil
}

// failback runs seed 004's failback steps until they are all done (each
// step is idempotent, so a failback cut short is finished by the next).
func (h *Hosted) failback(st *lifeboat.State) {
	fbb := h.failbackBackend()
	if fbb == nil {
		return
	}
	home := st.Active
	from := h.c.Spec.Regions.Secondary.Name
	if home == from {
		from = h.c.Spec.Regions.Primary.Name
	}
	fb := &Failback{Home: home, From: from, Epoch: st.Epoch, Kept: map[string]string{}}
	h.mu.Lock()
	h.fb = fb
	h.mu.Unlock()
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 15*time.Second) {
		err := h.failbackOnce(fbb, st, fb)
		h.mu.Lock()
		fb.Attempts++
		if err == nil {
			fb.Done, fb.Error = true, ""
		} else {
			fb.Error = err.Error()
		}
		h.mu.Unlock()
		if err == nil {
			return
		}
		h.setErr(fmt.Errorf("tenants' failback: %w", err))
		if h.ctx.Err() != nil {
			return
		}
		select {
		case <-h.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (h *Hosted) step(fb *Failback, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	h.log.Info("tenants' failback: " + msg)
	h.mu.Lock()
	fb.Steps = append(fb.Steps, msg)
	h.mu.Unlock()
}

// setBatches writes ch to names, Batch at a time.
func (h *Hosted) setBatches(ctx context.Context, cat tenant.Catalog, names []string, ch lifeboat.TenantChange) error {
	n := h.c.Spec.Tenants.Batch
	if n < 20 {
		n = 20
	}
	for i := 0; i < len(names); i += n {
		if _, err := cat.Set(ctx, names[i:min(i+n, len(names))], ch); err != nil {
			return err
		}
	}
	return nil
}

func (h *Hosted) failbackOnce(fbb FailbackBackend, st *lifeboat.State, fb *Failback) error {
	ctx := h.ctx
	spec := h.c.Spec
	home, from := fb.Home, fb.From

	// a. Cancel outstanding geo-restores; the running ones end first.
	h.mu.Lock()
	run := h.run
	h.mu.Unlock()
	if run != nil {
		run.Cancel()
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := run.Wait(wctx)
		timedOut := wctx.Err() != nil
		cancel()
		if timedOut {
			return lifeboat.Transient(Op, "", fmt.Errorf("the recovery's running restores did not end within 2m of its cancel (%v); the failback waits for them", err))
		}
		h.mu.Lock()
		h.lost = ""
		h.mu.Unlock()
		h.step(fb, "a. outstanding geo-restores cancelled")
	}
	cat := h.reopen(st)
	if cat == nil {
		return context.Canceled
	}
	all, err := cat.List(ctx, tenant.Filter{})
	if err != nil {
		return fmt.Errorf("listing the tenants: %w", err)
	}

	// b. Geo-replica pools came back with the plan: their tenants follow
	// their pool's primary, at the new epoch, in batches.
	for _, pn := range lifeboat.SortedKeys(spec.Tenants.Pools) {
		p := spec.Tenants.Pools[pn]
		un, dn, _ := strings.Cut(p.Database, ".")
		if spec.Units[un].Databases[dn].DRMode != lifeboat.DRGeoReplica {
			continue
		}
		prim, err := tenant.PrimaryRegion(spec, st, p.Database)
		if err != nil {
			return fmt.Errorf("pool %s: %w", pn, err)
		}
		var names []string
		for _, t := range all {
			if t.Pool == pn && t.Region != prim {
				names = append(names, t.Name)
			}
		}
		if len(names) == 0 {
			continue
		}
		if err := h.setBatches(ctx, cat, names, lifeboat.TenantChange{State: lifeboat.TenantAvailable, Region: prim, Epoch: st.Epoch}); err != nil {
			return fmt.Errorf("recording pool %s's tenants in %s: %w", pn, prim, err)
		}
		h.step(fb, "b. %d tenants of geo-replica pool %s recorded in %s at epoch %d", len(names), pn, prim, st.Epoch)
	}

	// c–g per geo-restore pool whose DR copy is in from.
	for _, pn := range lifeboat.SortedKeys(spec.Tenants.Pools) {
		p := spec.Tenants.Pools[pn]
		un, dn, _ := strings.Cut(p.Database, ".")
		if spec.Units[un].Databases[dn].DRMode == lifeboat.DRGeoReplica {
			continue
		}
		poolHome := p.Region
		if poolHome == "" {
			poolHome = spec.Regions.Primary.Name
		}
		if poolHome != home {
			continue
		}
		var away []lifeboat.Tenant
		for _, t := range all {
			if t.Pool == pn && t.Region == from {
				away = append(away, t)
			}
		}
		exists, err := fbb.HasPool(ctx, pn, from)
		if err != nil {
			return err
		}
		if len(away) == 0 && !exists {
			continue
		}
		if !exists {
			if err := h.poolGone(pn, from, away); err != nil {
				return err
			}
		}
		names := make([]string, 0, len(away))
		for _, t := range away {
			names = append(names, t.Name)
		}
		// c. The DR copies refuse writes (catalog first, so the gate
		// says read-only while the pool restarts).
		var avail []string
		for _, t := range away {
			if t.State == lifeboat.TenantAvailable {
				avail = append(avail, t.Name)
			}
		}
		if err := h.setBatches(ctx, cat, avail, lifeboat.TenantChange{State: lifeboat.TenantReadOnly, Reason: "failback to " + home + ": its DR copy is read-only until copied back"}); err != nil {
			return fmt.Errorf("recording pool %s's tenants read-only: %w", pn, err)
		}
		if exists {
			if err := fbb.SetReadOnly(ctx, pn, from); err != nil {
				return err
			}
			h.step(fb, "c. pool %s in %s read-only (%d tenants)", pn, from, len(avail))
		}
		// d. Which DR copies changed since their restore. A tenant
		// created in the DR region during the failover has no home copy:
		// it goes home whole (seed 004 scenario 1: "all new accounts
		// are created in the DR region"), once found (a copy already
		// made makes it look like any other copied back).
		var changed, unchanged []lifeboat.Tenant
		for _, t := range away {
			ch := false
			why := "no DR pool"
			isNew := slices.Contains(fb.New, t.Name)
			if exists && !isNew {
				atHome, err := fbb.HasTenant(ctx, pn, home, t.Name)
				if err != nil {
					return err
				}
				if !atHome {
					isNew = true
					h.mu.Lock()
					fb.New = append(fb.New, t.Name)
					h.mu.Unlock()
				}
			}
			switch {
			case isNew:
				ch, why = true, "created in "+from+" during the failover: no home copy"
			case exists:
				ch, why, err = fbb.Changed(ctx, pn, from, t.Name)
				if err != nil {
					return err
				}
			}
			h.log.Info("tenants' failback: compared", "tenant", t.Name, "changed", ch, "why", why)
			if ch {
				changed = append(changed, t)
			} else {
				unchanged = append(unchanged, t)
			}
		}
		h.mu.Lock()
		fb.Changed, fb.Unchanged = nil, nil
		for _, t := range changed {
			fb.Changed = append(fb.Changed, t.Name)
		}
		for _, t := range unchanged {
			fb.Unchanged = append(fb.Unchanged, t.Name)
		}
		h.mu.Unlock()
		if len(away) > 0 {
			h.step(fb, "d. pool %s: changed in %s since their recovery: %d (created there during the failover: %d); unchanged: %d", pn, from, len(changed), len(fb.New), len(unchanged))
		}
		// e. Copy back only the changed ones; the home copy is kept.
		for _, t := range changed {
			at := t.Recovered
			if at.IsZero() {
				at = t.Updated
			}
			kept := tenant.KeptName(t.Name, at)
			if err := fbb.CopyBack(ctx, pn, from, home, t.Name, kept); err != nil {
				return err
			}
			if !slices.Contains(fb.New, t.Name) {
				h.mu.Lock()
				fb.Kept[t.Name] = kept
				h.mu.Unlock()
			}
		}
		if len(changed) > 0 {
			h.step(fb, "e. pool %s: copied back to %s: %d (their old home copies kept renamed: %d)", pn, home, len(changed), len(changed)-len(fb.New))
		}
		// f. Every tenant of the pool home, available, at the new epoch.
		if err := h.setBatches(ctx, cat, names, lifeboat.TenantChange{State: lifeboat.TenantAvailable, Region: home, Epoch: st.Epoch}); err != nil {
			return fmt.Errorf("recording pool %s's tenants in %s: %w", pn, home, err)
		}
		if len(names) > 0 {
			h.step(fb, "f. pool %s: %d tenants available in %s at epoch %d", pn, len(names), home, st.Epoch)
		}
		for _, n := range names {
			h.gate.Wake(n)
		}
		// g. The DR pool goes, once everything is copied.
		if exists {
			err := fbb.DeletePool(ctx, pn, from)
			switch {
			case errors.Is(err, errors.ErrUnsupported):
				// Every tenant is home and the copy is read-only: keeping
				// it loses nothing, while failing would leave the failback
				// unfinished for ever over a copy only a person can delete.
				h.log.Warn("tenants' failback: DR pool left in place", "pool", pn, "region", from, "why", err)
				h.step(fb, "g. DR pool %s in %s left in place, delete it by hand: %v", pn, from, err)
			case err != nil:
				return err
			default:
				h.step(fb, "g. DR pool %s in %s deleted", pn, from)
			}
		}
	}
	return nil
}

// poolGone is the check made when pool's DR copy in from seems not to
// exist: tenants that were served there (recovered there, or available or
// read-only there) may have taken writes, which recording them home as
// unchanged would silently drop. The failback then waits for the copy to
// answer again (a transient error: it retries); tenants never served
// there (still queued, or failed before their restore) held no writes.
func (h *Hosted) poolGone(pool, from string, away []lifeboat.Tenant) error {
	var served []string
	for _, t := range away {
		if !t.Recovered.IsZero() || t.State == lifeboat.TenantAvailable || t.State == lifeboat.TenantReadOnly {
			served = append(served, t.Name)
		}
	}
	if len(served) == 0 {
		return nil
	}
	at := "its endpoint"
	if _, u, err := backup.PoolURL(h.c.Spec, pool, from); err == nil {
		if pu, err := url.Parse(u); err == nil {
			at = pu.Redacted()
		}
	}
	some := strings.Join(served[:min(len(served), 5)], ", ")
	if len(served) > 5 {
		some += ", …"
	}
	return lifeboat.Transient(Op, pool, fmt.Errorf("the DR pool %s in %s does not answer at %s, but %d of its tenants were served there (%s): the failback waits for that copy and retries, so that nothing written there is lost; bring it back up (its provision.create, or by hand). If that copy is lost for good, so are those writes: an empty copy answering there lets the failback record those tenants home with their home copies",
		pool, from, at, len(served), some))
}
