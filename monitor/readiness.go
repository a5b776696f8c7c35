package monitor

// Readiness: whether the standby region could take over now, and why not.
//
// Gather asks the drivers and the store what the checks need, once, with a
// timeout per call; every failure to ask becomes a fact. Evaluate turns the
// facts into checks and is pure, so 'lifeboat status', the API and the
// failover decision all read the same verdicts, and tests need no world.
//
// A fact a driver cannot give (it does not implement one of the optional
// interfaces below) is reported as unknown, never as OK.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// Names of the readiness checks (Check.Name).
const (
	CheckStandbyStreaming = "standby streaming"
	CheckRecipe           = "recipe in standby"
	CheckCapacity         = "standby capacity"
	CheckNamesResolve     = "names resolve"
	CheckBackupFresh      = "backup fresh"
	CheckWitness          = "witness reachable"
	CheckLastDrill        = "last drill"
)

// DrillMaxAge is how old the last successful drill may be before the
// last-drill check warns. It never blocks a failover.
const DrillMaxAge = 30 * 24 * time.Hour

// RecipeReporter is a compute driver that can tell whether a region holds
// the recipe a scale set runs: its artifact is there and is the same
// version as the recipe (checksum). driver/process implements it.
type RecipeReporter interface {
	// RecipeReady reports whether region t.Region holds c's recipe, and
	// why (in words for status).
	RecipeReady(ctx context.Context, t lifeboat.Target, c lifeboat.Compute) (ready bool, why string, err error)
}

// CapacityReporter is a compute driver that can tell whether a scale set
// could be stood up with n instances in region t.Region now: its artifact
// is present and the ports the instances need are free.
type CapacityReporter interface {
	CanStandUp(ctx context.Context, t lifeboat.Target, c lifeboat.Compute, instances int) (ok bool, why string, err error)
}

// StreamReporter is a database driver that can tell whether a replica
// streams from its primary. DatabaseStatus says a copy is a replica and
// how far behind it is, but a replica whose WAL receiver stopped reports
// a small lag while it falls ever further behind.
type StreamReporter interface {
	// StreamState returns the replica's WAL receiver state ("streaming",
	// "stopped", "catchup"…) and the host:port it streams from.
	StreamState(ctx context.Context, t lifeboat.Target) (state, upstream string, err error)
}

// Answer is a yes/no fact that a driver may not give.
type Answer struct {
	// Known: the driver answered. False with Err empty: it does not say.
	Known  bool   `json:"known"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	// Err is why the driver could not be asked ("could not ask: …").
	Err string `json:"err,omitempty"`
}

// Facts are what the readiness checks need, gathered at one instant.
type Facts struct {
	At time.Time `json:"at"`
	// Active is the region serving the service; Standby the one that would
	// take over.
	Active  string `json:"active"`
	Standby string `json:"standby"`
	// Databases, Compute and Traffic by "unit.component".
	Databases map[string]DatabaseFacts `json:"databases,omitempty"`
	Compute   map[string]ComputeFacts  `json:"compute,omitempty"`
	Traffic   map[string]TrafficFacts  `json:"traffic,omitempty"`
	// Witness is filled by the controller from the quorum: Gather cannot
	// know it.
	Witness WitnessFacts `json:"witness"`
	Drill   DrillFacts   `json:"drill"`
}

// DatabaseFacts is what is known of a database's standby copy and backups.
type DatabaseFacts struct {
	DRMode      lifeboat.DRMode      `json:"dr_mode"`
	Replication lifeboat.Replication `json:"replication,omitempty"`
	// Region and Resource of the standby copy.
	Region   string `json:"region"`
	Resource string `json:"resource"`
	// Status of the standby copy; meaningless when Err is set.
	Status lifeboat.DatabaseStatus `json:"status"`
	Err    string                  `json:"err,omitempty"`
	// Stream is the replica's WAL receiver state (see StreamReporter):
	// OK means "streaming"; Detail holds the state and upstream.
	Stream Answer `json:"stream"`
	// Backup is the newest backup (dr-mode: backup only).
	Backup *BackupFacts `json:"backup,omitempty"`
}

// BackupFacts is the newest backup of a database.
type BackupFacts struct {
	Latest lifeboat.BackupInfo `json:"latest"`
	Err    string              `json:"err,omitempty"`
}

// ComputeFacts is what is known of a scale set's standby.
type ComputeFacts struct {
	Standby lifeboat.StandbyMode `json:"standby"`
	// Resource of the scale set in the standby region, and its status.
	Resource string            `json:"resource"`
	ScaleSet lifeboat.ScaleSet `json:"scale_set"`
	Err      string            `json:"err,omitempty"`
	// Recipe by region (the active and the standby): does the region hold
	// the recipe's artifact at the recipe's version (RecipeReporter).
	Recipe map[string]Answer `json:"recipe"`
	// Instances the standby region would run if it took over, and whether
	// they can be started there (CapacityReporter).
	Instances int    `json:"instances"`
	Capacity  Answer `json:"capacity"`
}

// TrafficFacts is where a traffic component's names point.
type TrafficFacts struct {
	Resource string         `json:"resource"`
	Names    []string       `json:"names"`
	Route    lifeboat.Route `json:"route"`
	Err      string         `json:"err,omitempty"`
}

// WitnessFacts says whether the witness region is reachable. The
// controller fills it from the quorum (etcd membership and the witness's
// observer views); Gather only names the region.
type WitnessFacts struct {
	Region    string `json:"region,omitempty"`
	Known     bool   `json:"known"`
	Reachable bool   `json:"reachable"`
	Detail    string `json:"detail,omitempty"`
}

// DrillFacts is the last successful drill. For now a drill is a run of a
// switchover (a planned, zero-loss move that exercises the procedure).
type DrillFacts struct {
	Known  bool            `json:"known"`
	Err    string          `json:"err,omitempty"`
	Run    string          `json:"run,omitempty"` // "" when none on record
	Intent lifeboat.Intent `json:"intent,omitempty"`
	At     time.Time       `json:"at,omitempty"`
}

// readyCallTimeout bounds each driver call of Gather: the probes' timeout,
// tripled because a status may ask several nodes, and at least 2s.
func readyCallTimeout(s *lifeboat.Spec) time.Duration {
	d := 3 * s.Monitor.WithDefaults().Timeout.D()
	if d < 2*time.Second {
		d = 2 * time.Second
	}
	return d
}

// readyAsk runs fn with its own timeout and turns a panic, a hang past the
// timeout or an error into an error: Gather never panics or hangs because
// a driver does. The value comes back through a channel, so a call left
// behind writes nothing Gather reads.
func readyAsk[T any](ctx context.Context, timeout time.Duration, what string, fn func(ctx context.Context) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- result{err: fmt.Errorf("could not ask %s: the driver panicked: %v (a bug in the driver)", what, r)}
			}
		}()
		v, err := fn(ctx)
		if err != nil {
			err = fmt.Errorf("could not ask %s: %w", what, err)
		}
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		// fn may ignore its context: leave it behind rather than hang.
		var zero T
		return zero, fmt.Errorf("could not ask %s: no answer within %s (%w)", what, lifeboat.FormatDuration(timeout), ctx.Err())
	}
}

// Gather asks the drivers and the store what the readiness checks need.
// Every call runs in parallel with its own timeout, bounded by ctx; a call
// that fails or times out becomes a fact ("could not ask: …"). state may be
// nil (the spec's initial state: active in the primary region); store may
// be nil (the last drill is then unknown). Witness is left for the
// controller to fill.
func Gather(ctx context.Context, s *lifeboat.Spec, d lifeboat.Drivers, state *lifeboat.State, store lifeboat.Store) Facts {
	active := s.Regions.Primary.Name
	if state != nil && state.Active != "" {
		active = state.Active
	}
	standby := s.Regions.Other(active)
	f := Facts{
		At: time.Now(), Active: active, Standby: standby,
		Databases: map[string]DatabaseFacts{},
		Compute:   map[string]ComputeFacts{},
		Traffic:   map[string]TrafficFacts{},
	}
	if w := s.Regions.Witness; w != nil {
		f.Witness.Region = w.Name
	}
	timeout := readyCallTimeout(s)
	var epoch uint64
	if state != nil {
		epoch = state.Epoch
	}
	target := func(unit, comp, region string) lifeboat.Target {
		return lifeboat.Target{Service: s.Service, Unit: unit, Component: comp, Region: region,
			Resource: lifeboat.ResourceName(s.Service, unit, comp, region), Epoch: epoch}
	}

	var mu sync.Mutex // guards f's maps and the values taken out of them
	var wg sync.WaitGroup
	// locked: the loop writes the maps while earlier answers arrive.
	locked := func(fn func()) {
		mu.Lock()
		defer mu.Unlock()
		fn()
	}
	goAsk := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}

	for _, un := range s.UnitNames() {
		u := s.Units[un]
		for _, dn := range lifeboat.SortedKeys(u.Databases) {
			db := u.Databases[dn]
			if db.DRMode == lifeboat.DRNone {
				continue
			}
			key := un + "." + dn
			// A database whose primary lives in the other region (a pool
			// placed there, Spec.HomeOf) has its standby in the active one.
			dbStandby := standby
			if db.DRMode == lifeboat.DRGeoReplica && primaryIn(s, state, un, dn, standby) {
				dbStandby = active
			}
			t := target(un, dn, dbStandby)
			locked(func() {
				f.Databases[key] = DatabaseFacts{DRMode: db.DRMode, Replication: db.Replication, Region: dbStandby, Resource: t.Resource}
			})
			update := func(fn func(*DatabaseFacts)) {
				mu.Lock()
				defer mu.Unlock()
				v := f.Databases[key]
				fn(&v)
				f.Databases[key] = v
			}
			goAsk(func() {
				if d.Database == nil {
					update(func(v *DatabaseFacts) { v.Err = "no database driver is configured: set drivers.database in the spec" })
					return
				}
				st, err := readyAsk(ctx, timeout, "the database driver for "+t.Resource, func(ctx context.Context) (lifeboat.DatabaseStatus, error) {
					return d.Database.Status(ctx, t)
				})
				update(func(v *DatabaseFacts) {
					v.Status = st
					if err != nil {
						v.Err = err.Error()
					}
				})
			})
			if db.DRMode == lifeboat.DRGeoReplica {
				goAsk(func() {
					sr, ok := d.Database.(StreamReporter)
					if !ok {
						return // Stream stays unknown: the driver does not say
					}
					got, err := readyAsk(ctx, timeout, "whether "+t.Resource+" streams", func(ctx context.Context) ([2]string, error) {
						rs, upstream, err := sr.StreamState(ctx, t)
						return [2]string{rs, upstream}, err
					})
					rs, upstream := got[0], got[1]
					a := Answer{Known: err == nil, OK: rs == "streaming", Detail: rs}
					if upstream != "" {
						a.Detail += " from " + upstream
					}
					switch {
					case errors.Is(err, errors.ErrUnsupported):
						a = Answer{} // unknown: the driver behind an agent does not say
					case err != nil:
						a = Answer{Err: err.Error()}
					}
					update(func(v *DatabaseFacts) { v.Stream = a })
				})
			}
			if db.DRMode == lifeboat.DRBackup {
				goAsk(func() {
					b := &BackupFacts{}
					if d.Backup == nil {
						b.Err = "no backup driver is configured: set drivers.backup in the spec"
					} else {
						latest, err := readyAsk(ctx, timeout, "the backup driver for "+t.Resource, func(ctx context.Context) (lifeboat.BackupInfo, error) {
							return d.Backup.Latest(ctx, t)
						})
						b.Latest = latest
						if err != nil {
							b.Err = err.Error()
						}
					}
					update(func(v *DatabaseFacts) { v.Backup = b })
				})
			}
		}

		for _, cn := range lifeboat.SortedKeys(u.Compute) {
			c := u.Compute[cn]
			key := un + "." + cn
			t := target(un, cn, standby)
			n := c.Instances.In(s.RoleOf(standby))
			locked(func() {
				f.Compute[key] = ComputeFacts{Standby: c.Standby, Resource: t.Resource, Recipe: map[string]Answer{}, Instances: n}
			})
			update := func(fn func(*ComputeFacts)) {
				mu.Lock()
				defer mu.Unlock()
				v := f.Compute[key]
				fn(&v)
				f.Compute[key] = v
			}
			if d.Compute == nil {
				locked(func() {
					f.Compute[key] = ComputeFacts{Standby: c.Standby, Resource: t.Resource, Instances: n,
						Err:    "no compute driver is configured: set drivers.compute in the spec",
						Recipe: map[string]Answer{}}
				})
				continue
			}
			goAsk(func() {
				ss, err := readyAsk(ctx, timeout, "the compute driver for "+t.Resource, func(ctx context.Context) (lifeboat.ScaleSet, error) {
					return d.Compute.Status(ctx, t)
				})
				update(func(v *ComputeFacts) {
					v.ScaleSet = ss
					if err != nil {
						v.Err = err.Error()
					}
				})
			})
			if rr, ok := d.Compute.(RecipeReporter); ok {
				for _, region := range []string{active, standby} {
					rt := target(un, cn, region)
					goAsk(func() {
						a := readyYesNo(ctx, timeout, "whether "+region+" holds the recipe of "+rt.Resource, func(ctx context.Context) (bool, string, error) {
							return rr.RecipeReady(ctx, rt, c)
						})
						update(func(v *ComputeFacts) { v.Recipe[region] = a })
					})
				}
			}
			if cr, ok := d.Compute.(CapacityReporter); ok {
				goAsk(func() {
					a := readyYesNo(ctx, timeout, fmt.Sprintf("whether %d instances of %s can start", n, t.Resource), func(ctx context.Context) (bool, string, error) {
						return cr.CanStandUp(ctx, t, c, n)
					})
					update(func(v *ComputeFacts) { v.Capacity = a })
				})
			}
		}

		for _, tn := range lifeboat.SortedKeys(u.Traffic) {
			tr := u.Traffic[tn]
			key := un + "." + tn
			t := target(un, tn, active)
			t.Resource = lifeboat.TrafficName(s.Service, un, tn)
			locked(func() { f.Traffic[key] = TrafficFacts{Resource: t.Resource, Names: tr.Names} })
			if d.Traffic == nil {
				locked(func() {
					f.Traffic[key] = TrafficFacts{Resource: t.Resource, Names: tr.Names, Err: "no traffic driver is configured: set drivers.traffic in the spec"}
				})
				continue
			}
			goAsk(func() {
				r, err := readyAsk(ctx, timeout, "the traffic driver for "+t.Resource, func(ctx context.Context) (lifeboat.Route, error) {
					return d.Traffic.Status(ctx, t, tr.Names)
				})
				mu.Lock()
				defer mu.Unlock()
				v := f.Traffic[key]
				v.Route = r
				if err != nil {
					v.Err = err.Error()
				}
				f.Traffic[key] = v
			})
		}
	}

	goAsk(func() {
		var dr DrillFacts
		if store == nil {
			dr.Err = "no store to read the run history from"
		} else {
			runs, err := readyAsk(ctx, timeout, "the store for the run history", func(ctx context.Context) ([]*lifeboat.Run, error) {
				return store.Runs(ctx)
			})
			if err != nil {
				dr.Err = err.Error()
			} else {
				dr = readyLastDrill(runs)
			}
		}
		mu.Lock()
		f.Drill = dr
		mu.Unlock()
	})

	wg.Wait()
	return f
}

// readyYesNo asks a driver an optional yes/no question.
func readyYesNo(ctx context.Context, timeout time.Duration, what string, fn func(ctx context.Context) (bool, string, error)) Answer {
	a, err := readyAsk(ctx, timeout, what, func(ctx context.Context) (Answer, error) {
		ok, why, err := fn(ctx)
		return Answer{Known: true, OK: ok, Detail: why}, err
	})
	if errors.Is(err, errors.ErrUnsupported) {
		return Answer{} // unknown: the driver behind an agent does not say
	}
	if err != nil {
		return Answer{Err: err.Error()}
	}
	return a
}

// readyLastDrill finds the newest successful drill in runs. For now a drill is
// a succeeded switchover: the planned move that exercises the procedure
// without losing data.
func readyLastDrill(runs []*lifeboat.Run) DrillFacts {
	dr := DrillFacts{Known: true}
	for _, r := range runs {
		if r == nil || r.Status != lifeboat.RunSucceeded || r.Plan == nil || r.Plan.Intent != lifeboat.IntentSwitchover {
			continue
		}
		at := r.EndedAt
		if at.IsZero() {
			at = r.StartedAt
		}
		if dr.Run == "" || at.After(dr.At) {
			dr.Run, dr.Intent, dr.At = r.ID, r.Plan.Intent, at
		}
	}
	return dr
}

// Evaluate turns facts into readiness checks. It is pure: the same spec,
// state, facts and now give the same checks, in a stable order (databases,
// compute, traffic by unit.component, then the witness and the last drill).
// state may be nil; the regions come from the facts.
func Evaluate(s *lifeboat.Spec, state *lifeboat.State, f Facts, now time.Time) []Check {
	active, standby := f.Active, f.Standby
	if active == "" {
		active = s.Regions.Primary.Name
		if state != nil && state.Active != "" {
			active = state.Active
		}
	}
	if standby == "" {
		standby = s.Regions.Other(active)
	}
	var out []Check
	add := func(name, comp string, ok, blocks bool, reason string) {
		out = append(out, Check{Name: name, Component: comp, OK: ok, Reason: reason, Blocks: blocks && !ok, At: now})
	}
	rpo := s.Objectives.RPO.D()
	for _, un := range s.UnitNames() {
		u := s.Units[un]
		for _, dn := range lifeboat.SortedKeys(u.Databases) {
			db := u.Databases[dn]
			key := un + "." + dn
			df, have := f.Databases[key]
			switch db.DRMode {
			case lifeboat.DRGeoReplica:
				dbActive, dbStandby := active, standby
				if have && df.Region == active {
					// Its primary lives in the standby region (Gather).
					dbActive, dbStandby = standby, active
				}
				ok, blocks, why := readyStreaming(db, df, have, dbActive, dbStandby, rpo)
				add(CheckStandbyStreaming, key, ok, blocks, why)
			case lifeboat.DRBackup:
				ok, blocks, why := readyBackup(db, df, have, active, standby, now)
				add(CheckBackupFresh, key, ok, blocks, why)
			}
		}
		for _, cn := range lifeboat.SortedKeys(u.Compute) {
			c := u.Compute[cn]
			key := un + "." + cn
			cf, have := f.Compute[key]
			ok, blocks, why := readyRecipe(cf, have, active, standby)
			add(CheckRecipe, key, ok, blocks, why)
			ok, blocks, why = readyCapacity(c, cf, have, standby)
			add(CheckCapacity, key, ok, blocks, why)
		}
		for _, tn := range lifeboat.SortedKeys(u.Traffic) {
			key := un + "." + tn
			tf, have := f.Traffic[key]
			if !have {
				tf = TrafficFacts{Names: u.Traffic[tn].Names}
			}
			ok, why := readyNames(tf, have, active)
			add(CheckNamesResolve, key, ok, false, why)
		}
	}
	wregion := ""
	if s.Regions.Witness != nil {
		wregion = s.Regions.Witness.Name
	}
	ok, why := readyWitness(f.Witness, wregion)
	add(CheckWitness, wregion, ok, false, why)
	ok, why = readyDrill(f.Drill, now)
	add(CheckLastDrill, "", ok, false, why)
	return out
}

func readyUnknown(what string) string { return "unknown: " + what }

// primaryIn reports whether the stored state has the database's primary
// copy in region.
func primaryIn(s *lifeboat.Spec, state *lifeboat.State, unit, db, region string) bool {
	if state == nil {
		return false
	}
	r := state.Resource(s, unit, db, region)
	return r != nil && r.Exists && r.Role == lifeboat.DBPrimary
}

// readyStreaming: the standby copy of a geo-replica streams and its lag
// is within the RPO. Only a copy that cannot be promoted blocks: a lagging
// or stopped replica is data-loss exposure, not a failed failover.
func readyStreaming(db lifeboat.Database, df DatabaseFacts, have bool, active, standby string, rpo time.Duration) (ok, blocks bool, why string) {
	if !have {
		return false, false, readyUnknown(fmt.Sprintf("the standby copy in %s was not looked at (no facts gathered for it)", standby))
	}
	if df.Err != "" {
		return false, false, readyUnknown(fmt.Sprintf("%s; check that region %s and its database are reachable", df.Err, standby))
	}
	st := df.Status
	switch st.Role {
	case lifeboat.DBReplica:
	case lifeboat.DBAbsent, "":
		return false, true, fmt.Sprintf("%s has no standby copy (%s is absent): a failover has nothing to promote; rebuild the replica from %s (pg_basebackup, or database.rejoin)", standby, df.Resource, active)
	case lifeboat.DBFenced:
		return false, true, fmt.Sprintf("%s's copy %s is a fenced old primary, not a replica: it cannot be promoted; rejoin it as a replica of %s first (database.rejoin)", standby, df.Resource, active)
	case lifeboat.DBPrimary:
		return false, false, fmt.Sprintf("%s's copy %s is a primary too, while %s is active: two primaries; fence %s's copy and rejoin it as a replica of %s (database.fence, database.rejoin)", standby, df.Resource, active, standby, active)
	default:
		return false, true, fmt.Sprintf("%s's copy %s is %q, not a replica: a failover cannot promote it; rebuild it as a replica of %s", standby, df.Resource, st.Role, active)
	}
	lag := fmt.Sprintf("lag %s / %s", lifeboat.FormatDuration(st.Lag), readyBytes(st.LagBytes))
	sync := db.Replication == lifeboat.ReplicationSync
	if df.Stream.Err != "" {
		return false, false, readyUnknown(fmt.Sprintf("%s's replica reports %s but %s", standby, lag, df.Stream.Err))
	}
	if !df.Stream.Known {
		return false, false, readyUnknown(fmt.Sprintf("%s's copy is a replica, %s, but the database driver does not say whether it streams from %s (it does not implement monitor.StreamReporter)", standby, lag, active))
	}
	if !df.Stream.OK {
		state := df.Stream.Detail
		if state == "" {
			state = "no WAL receiver"
		}
		if sync {
			return false, false, fmt.Sprintf("%s's replica does not stream from %s (%s), %s: with sync replication writes wait for it (or go on unprotected after degrade-after); check the WAN link and the replica's log", standby, active, state, lag)
		}
		return false, false, fmt.Sprintf("%s's replica does not stream from %s (%s), %s: every write since it stopped would be lost in a failover; check the WAN link and the replica's log", standby, active, state, lag)
	}
	if sync {
		return true, false, fmt.Sprintf("%s's standby streams from %s, synchronously: committed writes are on it before they are acknowledged (replay %s), within the RPO of %s", standby, active, lag, lifeboat.FormatDuration(rpo))
	}
	if st.Lag > rpo {
		return false, false, fmt.Sprintf("%s's standby streams from %s but %s exceeds the RPO of %s: a failover now would lose up to %s of writes", standby, active, lag, lifeboat.FormatDuration(rpo), lifeboat.FormatDuration(st.Lag))
	}
	return true, false, fmt.Sprintf("%s's standby streams from %s, %s, within the RPO of %s", standby, active, lag, lifeboat.FormatDuration(rpo))
}

// readyBackup: the newest backup is younger than the backup interval and
// kept where a restore needs it. Only having no backup at all blocks.
func readyBackup(db lifeboat.Database, df DatabaseFacts, have bool, active, standby string, now time.Time) (ok, blocks bool, why string) {
	if !have || df.Backup == nil {
		return false, false, readyUnknown("the newest backup was not looked at (no facts gathered for it)")
	}
	b := df.Backup
	if b.Err != "" {
		return false, false, readyUnknown(b.Err)
	}
	if b.Latest.ID == "" && b.Latest.Taken.IsZero() {
		return false, true, fmt.Sprintf("there is no backup at all: a failover has nothing to restore in %s; take one now with the backup driver (backup.take) and check the backup schedule", standby)
	}
	age := now.Sub(b.Latest.Taken)
	if age < 0 {
		age = 0
	}
	interval := db.BackupInterval.D()
	desc := fmt.Sprintf("the newest backup %s was taken %s ago", b.Latest.ID, lifeboat.FormatDuration(age))
	if b.Latest.Region != "" {
		desc += ", kept in " + b.Latest.Region
	}
	if interval > 0 && age > interval {
		return false, false, fmt.Sprintf("%s, longer than the backup interval of %s: a failover now would lose %s of writes; check the backup schedule", desc, lifeboat.FormatDuration(interval), lifeboat.FormatDuration(age))
	}
	if b.Latest.Region != "" && b.Latest.Region != standby {
		return false, false, fmt.Sprintf("%s, not in %s: losing %s loses it, and a restore in %s needs a copy kept there; check where backups are copied", desc, standby, active, standby)
	}
	if interval == 0 {
		return true, false, desc + " (no backup-interval set to judge its age against)"
	}
	return true, false, fmt.Sprintf("%s, within the backup interval of %s", desc, lifeboat.FormatDuration(interval))
}

// readyRecipe: the standby region holds the recipe at the active region's
// version. A missing or different recipe blocks: the failover would start
// the wrong version, or nothing.
func readyRecipe(cf ComputeFacts, have bool, active, standby string) (ok, blocks bool, why string) {
	if !have {
		return false, false, readyUnknown("the scale set was not looked at (no facts gathered for it)")
	}
	if cf.Err != "" && len(cf.Recipe) == 0 {
		return false, false, readyUnknown(cf.Err)
	}
	a, asked := cf.Recipe[standby]
	switch {
	case !asked || (!a.Known && a.Err == ""):
		return false, false, readyUnknown(fmt.Sprintf("the compute driver does not say whether %s holds the recipe (it does not implement monitor.RecipeReporter)", standby))
	case a.Err != "":
		return false, false, readyUnknown(a.Err)
	case !a.OK:
		return false, true, a.Detail
	}
	why = a.Detail
	if p, ok := cf.Recipe[active]; ok && p.Known && !p.OK {
		// The standby is what a failover needs; say the active region
		// drifted so that a failback finds it out before it matters.
		why += fmt.Sprintf("; but the active region %s does not: %s", active, p.Detail)
	}
	return true, false, why
}

// readyCapacity: the standby's scale set exists when its standby mode says
// it should, and the instances a failover stands up can start there.
func readyCapacity(c lifeboat.Compute, cf ComputeFacts, have bool, standby string) (ok, blocks bool, why string) {
	if !have {
		return false, false, readyUnknown("the scale set was not looked at (no facts gathered for it)")
	}
	if cf.Err != "" {
		return false, false, readyUnknown(cf.Err)
	}
	ss := cf.ScaleSet
	mode := c.Standby
	var state string
	switch {
	case mode != lifeboat.StandbyCold && !ss.Exists:
		return false, true, fmt.Sprintf("the %s standby's scale set %s does not exist in %s: provision it (compute.provision) so a failover has something to scale", mode, cf.Resource, standby)
	case mode == lifeboat.StandbyHot && ss.Healthy < c.Instances.Secondary:
		state = fmt.Sprintf("hot standby with %d of %d instances healthy", ss.Healthy, c.Instances.Secondary)
	case ss.Exists:
		state = fmt.Sprintf("%s standby, %d instances running, %d healthy", mode, ss.Instances, ss.Healthy)
	default:
		state = fmt.Sprintf("%s standby, not stood up yet", mode)
	}
	room := cf.Capacity
	switch {
	case room.Err != "":
		return false, false, readyUnknown(fmt.Sprintf("%s; %s", state, room.Err))
	case !room.Known:
		return false, false, readyUnknown(fmt.Sprintf("%s; the compute driver does not say whether %d instances can start in %s (artifact, ports): it does not implement monitor.CapacityReporter", state, cf.Instances, standby))
	case !room.OK:
		return false, true, fmt.Sprintf("%s; %d instances cannot start in %s: %s", state, cf.Instances, standby, room.Detail)
	}
	if mode == lifeboat.StandbyHot && ss.Healthy < c.Instances.Secondary {
		return false, false, fmt.Sprintf("%s; a failover can start the rest: %s", state, room.Detail)
	}
	return true, false, fmt.Sprintf("%s; %d instances can start in %s: %s", state, cf.Instances, standby, room.Detail)
}

// readyNames: every public name answers. It never blocks: a failover
// switches the names anyway.
func readyNames(tf TrafficFacts, have bool, active string) (ok bool, why string) {
	if !have {
		return false, readyUnknown("the names were not looked at (no facts gathered for them)")
	}
	if tf.Err != "" {
		return false, readyUnknown(tf.Err)
	}
	if tf.Route.Answers == nil {
		return false, readyUnknown(fmt.Sprintf("the traffic driver does not say what %s resolve to", strings.Join(tf.Names, ", ")))
	}
	var bad, good []string
	for _, n := range tf.Names {
		ans := tf.Route.Answers[n]
		if len(ans) == 0 {
			bad = append(bad, n)
			continue
		}
		a := append([]string(nil), ans...)
		sort.Strings(a)
		good = append(good, n+" → "+strings.Join(a, " "))
	}
	routes := ""
	if tf.Route.Region != "" && tf.Route.Region != active {
		routes = fmt.Sprintf("; they route to %s while %s is active: switch them (traffic.switch)", tf.Route.Region, active)
	}
	if len(bad) > 0 {
		return false, fmt.Sprintf("%s do not resolve (no answer); check the DNS server or front door and the endpoints of the active region%s", strings.Join(bad, ", "), routes)
	}
	if routes != "" {
		return false, strings.Join(good, ", ") + routes
	}
	return true, strings.Join(good, ", ")
}

// readyWitness: the witness breaks the tie between a dead region and a
// cut link. Without it a person can still fail over; the monitor cannot.
func readyWitness(w WitnessFacts, region string) (ok bool, why string) {
	const noAuto = "automatic failover is impossible without it (two regions cannot tell a dead peer from a cut link); a manual failover still works"
	switch {
	case region == "":
		return false, "the spec names no witness region (regions.witness): " + noAuto
	case !w.Known:
		return false, readyUnknown(fmt.Sprintf("the controller has not said whether witness %s is reachable (no quorum information yet); %s", region, noAuto))
	case !w.Reachable:
		d := w.Detail
		if d == "" {
			d = "no contact"
		}
		return false, fmt.Sprintf("witness %s is unreachable (%s): %s", region, d, noAuto)
	}
	d := ""
	if w.Detail != "" {
		d = " (" + w.Detail + ")"
	}
	return true, fmt.Sprintf("witness %s is reachable%s: a quorum can decide an automatic failover", region, d)
}

// readyDrill: a standby that was never exercised is a hope, not a plan. It
// never blocks.
func readyDrill(dr DrillFacts, now time.Time) (ok bool, why string) {
	switch {
	case dr.Err != "":
		return false, readyUnknown(dr.Err)
	case !dr.Known:
		return false, readyUnknown("the run history was not read")
	case dr.Run == "":
		return false, "no successful drill on record (a switchover counts as a drill): run 'lifeboat switchover' to the standby and back"
	}
	age := now.Sub(dr.At)
	if age < 0 {
		age = 0
	}
	desc := fmt.Sprintf("the last successful drill (%s %s) ended %s ago", dr.Intent, dr.Run, readyAge(age))
	if age > DrillMaxAge {
		return false, fmt.Sprintf("%s, more than %s: run a switchover drill to prove the standby still works", desc, readyAge(DrillMaxAge))
	}
	return true, desc
}

// readyAge prints long durations in days.
func readyAge(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return lifeboat.FormatDuration(d)
}

// readyBytes prints a byte count as a person reads it: 512 B, 120 kB, 3.4 MB.
func readyBytes(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.0f kB", float64(n)/1e3)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f GB", float64(n)/1e9)
}
