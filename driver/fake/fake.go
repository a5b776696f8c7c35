// Package fake is an in-memory world for tests and dry runs: scale sets,
// database copies, backups and routes, behind all five driver interfaces.
//
// It is a small but faithful model, so that plans that work here have a
// chance in the real world: promote needs a replica, switchover needs a
// primary and a replica, scale needs a provisioned scale set, restore needs
// a backup kept in the region, and every mutating action carries the epoch
// as a fencing token that is checked per resource. Faults (failures, delays,
// cut regions) can be injected.
//
// Resources are named as in the state: <service>-<unit>-<component>-<region>
// for scale sets and database copies, <service>-<unit>-<component> for
// traffic (global, so it has no region).
package fake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// ScriptExec names the fake's record of a hook step (script.exec).
const ScriptExec = "script.exec"

// ErrRegionUnreachable is the (retryable) failure of every call for a
// resource in a region that Cut made unreachable.
var ErrRegionUnreachable = errors.New("region unreachable")

// ErrInjected is the failure FailNext injects.
var ErrInjected = errors.New("injected failure")

// Call is one driver call the world received.
type Call struct {
	Action   string `json:"action"`
	Resource string `json:"resource"`
	Region   string `json:"region,omitempty"`
	Epoch    uint64 `json:"epoch"`
	// From is the other copy of a switchover (the old primary) or rejoin
	// (the primary to follow).
	From string `json:"from,omitempty"`
	// Command of a script.exec.
	Command string `json:"command,omitempty"`
	// Err is the call's error, "" when it succeeded.
	Err string `json:"err,omitempty"`
}

type failure struct {
	n         int
	retryable bool
}

// World is the in-memory world. It is safe for concurrent use.
type World struct {
	mu        sync.Mutex
	now       func() time.Time
	regions   []string // primary, secondary: where backups are kept
	scaleSets map[string]*lifeboat.ScaleSet
	recipes   map[string]lifeboat.Compute
	databases map[string]*lifeboat.DatabaseStatus
	backups   map[string][]lifeboat.BackupInfo // by database (service-unit-component)
	routes    map[string]*lifeboat.Route
	epochs    map[string]uint64 // newest epoch acted for, per resource; survives delete
	fail      map[string]*failure
	delay     map[string]time.Duration
	cut       map[string]bool
	stopped   map[string]bool   // replicas whose WAL receiver StopStreaming stopped
	noRoom    map[string]string // regions where CanStandUp says no, and why
	calls     []Call
	nextID    int
}

// New returns an empty world. Seed fills it from a state.
func New() *World {
	return &World{
		now:       time.Now,
		scaleSets: map[string]*lifeboat.ScaleSet{},
		recipes:   map[string]lifeboat.Compute{},
		databases: map[string]*lifeboat.DatabaseStatus{},
		backups:   map[string][]lifeboat.BackupInfo{},
		routes:    map[string]*lifeboat.Route{},
		epochs:    map[string]uint64{},
		fail:      map[string]*failure{},
		delay:     map[string]time.Duration{},
		cut:       map[string]bool{},
	}
}

// SetClock replaces the world's clock (time.Now), for deterministic tests.
func (w *World) SetClock(now func() time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = now
}

// Seed makes the world match st, a state of the service s (nil: the
// spec's initial state). A database copy holding backups (dr-mode backup)
// is seeded with one scheduled backup kept in its region, taken when the
// resource last changed.
func (w *World) Seed(s *lifeboat.Spec, st *lifeboat.State) {
	if st == nil {
		st = lifeboat.InitialState(s, w.clock())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.regions = []string{s.Regions.Primary.Name, s.Regions.Secondary.Name}
	for _, r := range st.SortedResources() {
		w.epochs[r.Name] = r.Epoch
		switch r.Kind {
		case lifeboat.KindCompute:
			delete(w.scaleSets, r.Name)
			if r.Exists {
				w.scaleSets[r.Name] = &lifeboat.ScaleSet{Exists: true, Instances: r.Instances, Healthy: r.Instances, Epoch: r.Epoch}
			}
			if c, ok := s.Units[r.Unit].Compute[r.Component]; ok {
				w.recipes[r.Name] = c
			}
		case lifeboat.KindDatabase:
			role := r.Role
			if !r.Exists || role == "" {
				role = lifeboat.DBAbsent
			}
			w.databases[r.Name] = &lifeboat.DatabaseStatus{Role: role, Epoch: r.Epoch}
			if role == lifeboat.DBBackupOf {
				w.addBackup(s.Service+"-"+r.Unit+"-"+r.Component, lifeboat.BackupInfo{
					ID: "scheduled-" + r.Name, Taken: r.Since, Region: r.Region})
			}
		case lifeboat.KindTraffic:
			w.routes[r.Name] = &lifeboat.Route{Region: r.Routes, Epoch: r.Epoch, Since: r.Since}
		}
	}
}

// Drivers returns the world behind all five driver interfaces.
func (w *World) Drivers() lifeboat.Drivers {
	return lifeboat.Drivers{Compute: compute{w}, Database: database{w}, Backup: backup{w}, Traffic: traffic{w}, Scripts: scripts{w}}
}

// FailNext makes the next n calls of action fail, retryable or not.
func (w *World) FailNext(action string, n int, retryable bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fail[action] = &failure{n: n, retryable: retryable}
}

// Delay makes each call of action wait d first (or until its context ends).
func (w *World) Delay(action string, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.delay[action] = d
}

// Cut makes every call for a resource in region fail, retryable, as when
// the region is lost. Traffic is global (served from every region), so
// routing calls are not cut: losing a region must not take away the means
// to leave it.
func (w *World) Cut(region string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cut[region] = true
}

// Heal undoes Cut.
func (w *World) Heal(region string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.cut, region)
}

// Calls returns every call received, in order.
func (w *World) Calls() []Call {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Call(nil), w.calls...)
}

// ScaleSet returns a scale set as it is now (Exists false if there is none).
func (w *World) ScaleSet(resource string) lifeboat.ScaleSet {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.scaleSetLocked(resource)
}

// Recipe returns the recipe a scale set was provisioned with.
func (w *World) Recipe(resource string) (lifeboat.Compute, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.recipes[resource]
	return c, ok
}

// Database returns a database copy as it is now (role absent if none).
func (w *World) Database(resource string) lifeboat.DatabaseStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.databaseLocked(resource)
}

// SetLag sets how far a replica is behind its primary, as a monitor would see.
func (w *World) SetLag(resource string, bytes int64, lag time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	db := w.databases[resource]
	if db == nil {
		db = &lifeboat.DatabaseStatus{Role: lifeboat.DBAbsent}
		w.databases[resource] = db
	}
	db.LagBytes, db.Lag = bytes, lag
}

// Backups returns the backups of a database (<service>-<unit>-<component>), oldest first.
func (w *World) Backups(database string) []lifeboat.BackupInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]lifeboat.BackupInfo(nil), w.backups[database]...)
}

// Route returns where a traffic resource (<service>-<unit>-<component>) points.
func (w *World) Route(resource string) lifeboat.Route {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r := w.routes[resource]; r != nil {
		return copyRoute(r)
	}
	return lifeboat.Route{}
}

// Epoch returns the newest epoch acted for on a resource.
func (w *World) Epoch(resource string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epochs[resource]
}

// addBackup adds b, replacing a backup with the same ID (Seed may run twice).
func (w *World) addBackup(db string, b lifeboat.BackupInfo) {
	for i, old := range w.backups[db] {
		if old.ID == b.ID {
			w.backups[db][i] = b
			return
		}
	}
	w.backups[db] = append(w.backups[db], b)
}

func (w *World) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now()
}

func (w *World) scaleSetLocked(resource string) lifeboat.ScaleSet {
	if ss := w.scaleSets[resource]; ss != nil {
		return *ss
	}
	return lifeboat.ScaleSet{Epoch: w.epochs[resource]}
}

func (w *World) databaseLocked(resource string) lifeboat.DatabaseStatus {
	if db := w.databases[resource]; db != nil {
		return *db
	}
	return lifeboat.DatabaseStatus{Role: lifeboat.DBAbsent, Epoch: w.epochs[resource]}
}

func copyRoute(r *lifeboat.Route) lifeboat.Route {
	c := *r
	if r.Answers != nil {
		c.Answers = make(map[string][]string, len(r.Answers))
		for k, v := range r.Answers {
			c.Answers[k] = append([]string(nil), v...)
		}
	}
	return c
}

// call is how every driver method enters the world: it records the call,
// waits its injected delay, applies cut regions and injected failures,
// checks the fencing token of mutating actions, then runs act under the
// world's lock. regions are the regions the call needs to reach.
func (w *World) call(ctx context.Context, c Call, mutates bool, regions []string, act func() error) (err error) {
	op := lifeboat.Op(c.Action)
	w.mu.Lock()
	idx := len(w.calls)
	w.calls = append(w.calls, c)
	d := w.delay[c.Action]
	w.mu.Unlock()
	defer func() {
		if err != nil {
			w.mu.Lock()
			w.calls[idx].Err = err.Error()
			w.mu.Unlock()
		}
	}()

	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return lifeboat.Transient(op, c.Resource, fmt.Errorf("gave up waiting for the world: %w", ctx.Err()))
		}
	}
	if err := ctx.Err(); err != nil {
		return lifeboat.Transient(op, c.Resource, err)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range regions {
		if w.cut[r] {
			return lifeboat.Transient(op, c.Resource, fmt.Errorf("%w: region %s is cut off (fake world; Heal(%q) restores it)", ErrRegionUnreachable, r, r))
		}
	}
	if f := w.fail[c.Action]; f != nil && f.n > 0 {
		f.n--
		err := fmt.Errorf("%w of %s (fake world FailNext)", ErrInjected, c.Action)
		if f.retryable {
			return lifeboat.Transient(op, c.Resource, err)
		}
		return lifeboat.Permanent(op, c.Resource, err)
	}
	if mutates {
		if seen := w.epochs[c.Resource]; c.Epoch < seen {
			return lifeboat.Permanent(op, c.Resource, lifeboat.StaleEpoch(c.Resource, c.Epoch, seen))
		}
	}
	if err := act(); err != nil {
		return lifeboat.Permanent(op, c.Resource, err)
	}
	if mutates && c.Epoch > w.epochs[c.Resource] {
		w.epochs[c.Resource] = c.Epoch
	}
	return nil
}

// stamp records on a changed object the epoch it was changed for.
func (w *World) stamp(resource string, epoch uint64) uint64 {
	if seen := w.epochs[resource]; seen > epoch {
		return seen
	}
	return epoch
}

func callOf(action string, t lifeboat.Target) Call {
	return Call{Action: action, Resource: t.Resource, Region: t.Region, Epoch: t.Epoch}
}

// database names a database across its regional copies.
func databaseOf(t lifeboat.Target) string { return t.Service + "-" + t.Unit + "-" + t.Component }

type compute struct{ w *World }

func (c compute) Status(ctx context.Context, t lifeboat.Target) (ss lifeboat.ScaleSet, err error) {
	err = c.w.call(ctx, callOf(lifeboat.ActComputeStatus, t), false, []string{t.Region}, func() error {
		ss = c.w.scaleSetLocked(t.Resource)
		return nil
	})
	return ss, err
}

func (c compute) Provision(ctx context.Context, t lifeboat.Target, recipe lifeboat.Compute) error {
	return c.w.call(ctx, callOf(lifeboat.ActComputeProvision, t), true, []string{t.Region}, func() error {
		ss := c.w.scaleSets[t.Resource]
		if ss == nil {
			ss = &lifeboat.ScaleSet{Exists: true}
			c.w.scaleSets[t.Resource] = ss
		}
		c.w.recipes[t.Resource] = recipe
		ss.Epoch = c.w.stamp(t.Resource, t.Epoch)
		return nil
	})
}

func (c compute) Scale(ctx context.Context, t lifeboat.Target, instances int) error {
	return c.w.call(ctx, callOf(lifeboat.ActComputeScale, t), true, []string{t.Region}, func() error {
		if instances < 0 {
			return fmt.Errorf("cannot scale %s to %d instances: the count must be 0 or more", t.Resource, instances)
		}
		ss := c.w.scaleSets[t.Resource]
		if ss == nil {
			return fmt.Errorf("scale set %s does not exist in %s: provision it first (compute.provision)", t.Resource, t.Region)
		}
		// Instances of the fake boot at once and pass their probe.
		ss.Instances, ss.Healthy = instances, instances
		ss.Epoch = c.w.stamp(t.Resource, t.Epoch)
		return nil
	})
}

func (c compute) Delete(ctx context.Context, t lifeboat.Target) error {
	return c.w.call(ctx, callOf(lifeboat.ActComputeDelete, t), true, []string{t.Region}, func() error {
		delete(c.w.scaleSets, t.Resource)
		return nil
	})
}

type database struct{ w *World }

func (d database) Status(ctx context.Context, t lifeboat.Target) (st lifeboat.DatabaseStatus, err error) {
	err = d.w.call(ctx, callOf(lifeboat.ActDatabaseStatus, t), false, []string{t.Region}, func() error {
		st = d.w.databaseLocked(t.Resource)
		return nil
	})
	return st, err
}

// copyOf returns the copy to change, creating an absent one.
func (w *World) copyOf(resource string) *lifeboat.DatabaseStatus {
	db := w.databases[resource]
	if db == nil {
		db = &lifeboat.DatabaseStatus{Role: lifeboat.DBAbsent, Epoch: w.epochs[resource]}
		w.databases[resource] = db
	}
	return db
}

func (w *World) setRole(resource string, role lifeboat.DatabaseRole, epoch uint64) {
	db := w.copyOf(resource)
	db.Role, db.Epoch = role, w.stamp(resource, epoch)
	if role != lifeboat.DBReplica {
		db.LagBytes, db.Lag = 0, 0
	}
}

func (d database) Fence(ctx context.Context, t lifeboat.Target) error {
	return d.w.call(ctx, callOf(lifeboat.ActDatabaseFence, t), true, []string{t.Region}, func() error {
		// Only a primary takes writes; fencing anything else is already done.
		if d.w.databaseLocked(t.Resource).Role == lifeboat.DBPrimary {
			d.w.setRole(t.Resource, lifeboat.DBFenced, t.Epoch)
		}
		return nil
	})
}

func (d database) Promote(ctx context.Context, t lifeboat.Target) error {
	return d.w.call(ctx, callOf(lifeboat.ActDatabasePromote, t), true, []string{t.Region}, func() error {
		switch role := d.w.databaseLocked(t.Resource).Role; role {
		case lifeboat.DBPrimary, lifeboat.DBReplica:
			d.w.setRole(t.Resource, lifeboat.DBPrimary, t.Epoch)
			return nil
		case lifeboat.DBFenced:
			return fmt.Errorf("cannot promote %s: it is a fenced old primary whose writes may have diverged; rejoin it as a replica first (database.rejoin)", t.Resource)
		default:
			return fmt.Errorf("cannot promote %s: the copy in %s is %s, not a replica; restore it from a backup instead (backup.restore)", t.Resource, t.Region, role)
		}
	})
}

func (d database) Switchover(ctx context.Context, from, t lifeboat.Target) error {
	c := callOf(lifeboat.ActDatabaseSwitchover, t)
	c.From = from.Resource
	return d.w.call(ctx, c, true, []string{from.Region, t.Region}, func() error {
		if seen := d.w.epochs[from.Resource]; t.Epoch < seen {
			return lifeboat.StaleEpoch(from.Resource, t.Epoch, seen)
		}
		fr, tr := d.w.databaseLocked(from.Resource).Role, d.w.databaseLocked(t.Resource).Role
		if tr == lifeboat.DBPrimary && fr == lifeboat.DBReplica {
			d.w.setRole(t.Resource, lifeboat.DBPrimary, t.Epoch)
			return nil
		}
		if fr != lifeboat.DBPrimary && fr != lifeboat.DBFenced {
			return fmt.Errorf("cannot switch over from %s: it is %s, not the primary (or a fenced primary)", from.Resource, fr)
		}
		if tr != lifeboat.DBReplica {
			return fmt.Errorf("cannot switch over to %s: it is %s, not a replica of %s; rejoin it first (database.rejoin)", t.Resource, tr, from.Resource)
		}
		// Zero loss: the replica replays everything before it is promoted.
		d.w.setRole(t.Resource, lifeboat.DBPrimary, t.Epoch)
		d.w.setRole(from.Resource, lifeboat.DBReplica, t.Epoch)
		if t.Epoch > d.w.epochs[from.Resource] {
			d.w.epochs[from.Resource] = t.Epoch
		}
		return nil
	})
}

func (d database) Rejoin(ctx context.Context, t, primary lifeboat.Target) error {
	c := callOf(lifeboat.ActDatabaseRejoin, t)
	c.From = primary.Resource
	return d.w.call(ctx, c, true, []string{t.Region, primary.Region}, func() error {
		switch role := d.w.databaseLocked(t.Resource).Role; role {
		case lifeboat.DBReplica:
			d.w.setRole(t.Resource, lifeboat.DBReplica, t.Epoch)
			return nil
		case lifeboat.DBFenced, lifeboat.DBPrimary:
			if pr := d.w.databaseLocked(primary.Resource).Role; pr != lifeboat.DBPrimary {
				return fmt.Errorf("cannot rejoin %s as a replica of %s: %s is %s, not the primary", t.Resource, primary.Resource, primary.Resource, pr)
			}
			d.w.setRole(t.Resource, lifeboat.DBReplica, t.Epoch)
			return nil
		default:
			return fmt.Errorf("cannot rejoin %s: the copy in %s is %s, not an old primary", t.Resource, t.Region, role)
		}
	})
}

type backup struct{ w *World }

func newest(bs []lifeboat.BackupInfo, region string) (lifeboat.BackupInfo, bool) {
	var out lifeboat.BackupInfo
	found := false
	for _, b := range bs {
		if (region == "" || b.Region == region) && (!found || !b.Taken.Before(out.Taken)) {
			out, found = b, true
		}
	}
	return out, found
}

func (b backup) Latest(ctx context.Context, t lifeboat.Target) (info lifeboat.BackupInfo, err error) {
	err = b.w.call(ctx, callOf(lifeboat.ActBackupLatest, t), false, nil, func() error {
		info, _ = newest(b.w.backups[databaseOf(t)], "")
		return nil
	})
	return info, err
}

// Take backs up the copy in t.Region and keeps the backup in the other
// region, so that losing a region never loses its backups.
func (b backup) Take(ctx context.Context, t lifeboat.Target) (info lifeboat.BackupInfo, err error) {
	err = b.w.call(ctx, callOf(lifeboat.ActBackupTake, t), true, []string{t.Region}, func() error {
		if role := b.w.databaseLocked(t.Resource).Role; role != lifeboat.DBPrimary && role != lifeboat.DBFenced {
			return fmt.Errorf("cannot back up %s: it is %s and holds no data of its own; back up the primary", t.Resource, role)
		}
		kept := t.Region
		for _, r := range b.w.regions {
			if r != t.Region {
				kept = r
				break
			}
		}
		b.w.nextID++
		info = lifeboat.BackupInfo{ID: fmt.Sprintf("backup-%d", b.w.nextID), Taken: b.w.now(), Region: kept, Epoch: t.Epoch}
		b.w.addBackup(databaseOf(t), info)
		b.w.copyOf(t.Resource).Epoch = b.w.stamp(t.Resource, t.Epoch)
		return nil
	})
	return info, err
}

// Restore makes t a primary from the newest backup kept in its region.
func (b backup) Restore(ctx context.Context, t lifeboat.Target) error {
	return b.w.call(ctx, callOf(lifeboat.ActBackupRestore, t), true, []string{t.Region}, func() error {
		if _, ok := newest(b.w.backups[databaseOf(t)], t.Region); !ok {
			return fmt.Errorf("cannot restore %s: no backup of %s is kept in %s; take one (backup.take) in the other region first", t.Resource, databaseOf(t), t.Region)
		}
		b.w.setRole(t.Resource, lifeboat.DBPrimary, t.Epoch)
		return nil
	})
}

type traffic struct{ w *World }

func (tr traffic) Status(ctx context.Context, t lifeboat.Target, names []string) (r lifeboat.Route, err error) {
	err = tr.w.call(ctx, callOf(lifeboat.ActTrafficStatus, t), false, nil, func() error {
		if cur := tr.w.routes[t.Resource]; cur != nil {
			r = copyRoute(cur)
		}
		return nil
	})
	return r, err
}

func (tr traffic) Switch(ctx context.Context, t lifeboat.Target, names []string) error {
	return tr.w.call(ctx, callOf(lifeboat.ActTrafficSwitch, t), true, nil, func() error {
		if t.Region == "" {
			return fmt.Errorf("cannot switch %s: the target names no region to route to", t.Resource)
		}
		cur := tr.w.routes[t.Resource]
		if cur == nil {
			cur = &lifeboat.Route{}
			tr.w.routes[t.Resource] = cur
		}
		if cur.Region != t.Region || cur.Since.IsZero() {
			cur.Since = tr.w.now()
		}
		cur.Region, cur.Epoch = t.Region, tr.w.stamp(t.Resource, t.Epoch)
		cur.Answers = make(map[string][]string, len(names))
		for _, n := range names {
			cur.Answers[n] = []string{t.Region}
		}
		return nil
	})
}

type scripts struct{ w *World }

// Exec records the command and runs nothing: hooks are the user's, and the
// fake world has no shell.
func (s scripts) Exec(ctx context.Context, t lifeboat.Target, command string, env map[string]string) error {
	c := callOf(ScriptExec, t)
	c.Command = command
	return s.w.call(ctx, c, false, nil, func() error { return nil })
}
