package planner

import (
	"fmt"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// builder accumulates one plan. Its maps remember which steps belong to
// which unit and component so later phases can wait for them.
type builder struct {
	s        *lifeboat.Spec
	st       *lifeboat.State
	intent   lifeboat.Intent
	from, to string
	p        *lifeboat.Plan

	data    map[string][]string     // unit → its database steps
	standUp map[lifeboat.Ref]string // compute → last stand-up step in `to`
	stop    map[lifeboat.Ref]string // compute → its stop step in `from`
	traffic map[string][]string     // unit → its traffic switches
	rejoins map[string][]string     // unit → its rejoin steps (planned moves)
	losses  []loss                  // failover: data each database may lose
	compOf  map[string]lifeboat.Ref // step ID → component, for misses
}

// loss is what a failover may lose of one database.
type loss struct {
	ref  lifeboat.Ref
	loss time.Duration
	why  string
}

func newBuilder(s *lifeboat.Spec, st *lifeboat.State, intent lifeboat.Intent, from, to string) *builder {
	epoch := st.Epoch + 1
	b := &builder{s: s, st: st, intent: intent, from: from, to: to,
		p:    &lifeboat.Plan{Service: s.Service, Intent: intent, From: from, To: to, Epoch: epoch, Objectives: s.Objectives},
		data: map[string][]string{}, standUp: map[lifeboat.Ref]string{}, stop: map[lifeboat.Ref]string{},
		traffic: map[string][]string{}, compOf: map[string]lifeboat.Ref{}}
	b.add(&lifeboat.Step{ID: epochStep, Op: lifeboat.OpRaiseEpoch, Estimate: lifeboat.EstimateEpoch,
		Why: fmt.Sprintf("every action carries epoch %d; drivers refuse older epochs, so a returning region cannot act", epoch)})
	return b
}

// add appends a step for the plan's epoch and returns its ID.
func (b *builder) add(st *lifeboat.Step) string {
	st.Epoch = b.p.Epoch
	st.DependsOn = uniq(st.DependsOn)
	if st.Unit != "" {
		b.compOf[st.ID] = lifeboat.Ref{Unit: st.Unit, Component: st.Component}
	}
	b.p.Steps = append(b.p.Steps, st)
	return st.ID
}

func (b *builder) note(format string, args ...any) {
	b.p.Notes = append(b.p.Notes, fmt.Sprintf(format, args...))
}

func stepID(op lifeboat.Op, resource string) string { return string(op) + " " + resource }

// res returns the state's resource of a component in a region (nil if the
// state does not know it: a component added to the spec since).
func (b *builder) res(unit, comp, region string) *lifeboat.Resource {
	return b.st.Resource(b.s, unit, comp, region)
}

func (b *builder) name(unit, comp, region string) string {
	return lifeboat.ResourceName(b.s.Service, unit, comp, region)
}

func roleOf(r *lifeboat.Resource) lifeboat.DatabaseRole {
	if r == nil || !r.Exists {
		return lifeboat.DBAbsent
	}
	if r.Role == "" {
		return lifeboat.DBAbsent
	}
	return r.Role
}

// rejoin: the active region keeps the service; each geo-replica copy in the
// other region that is not a replica (an old primary after a failover) is
// fenced if the state still calls it primary, then rebuilt as a replica of
// the active copy. Its unreplicated writes go to quarantine (the driver's
// rejoin); nothing else moves.
func (b *builder) rejoin() error {
	standby := b.s.Regions.Other(b.from)
	for _, un := range b.s.UnitNames() {
		u := b.s.Units[un]
		for _, dn := range lifeboat.SortedKeys(u.Databases) {
			d := u.Databases[dn]
			if d.DRMode != lifeboat.DRGeoReplica {
				continue
			}
			ref := lifeboat.Ref{Unit: un, Component: dn}
			activeName, standbyName := b.name(un, dn, b.from), b.name(un, dn, standby)
			if r := roleOf(b.res(un, dn, b.from)); r != lifeboat.DBPrimary {
				b.note("%s: the copy in %s is %s, not primary, so there is nothing to rejoin %s to; fix the active copy first (`lifeboat status`)", ref, b.from, r, standby)
				continue
			}
			role := roleOf(b.res(un, dn, standby))
			if role == lifeboat.DBReplica {
				continue
			}
			var pre []string
			if role == lifeboat.DBPrimary {
				pre = append(pre, b.add(&lifeboat.Step{ID: stepID(lifeboat.OpDatabaseFence, standbyName), Op: lifeboat.OpDatabaseFence,
					Unit: un, Component: dn, Resource: standbyName, Region: standby, Estimate: lifeboat.EstimateFence,
					Why: fmt.Sprintf("the state still calls this old copy primary; %s is the real one: it must take no writes before it is rebuilt", activeName)}))
			}
			b.add(&lifeboat.Step{ID: stepID(lifeboat.OpDatabaseRejoin, standbyName), Op: lifeboat.OpDatabaseRejoin,
				Unit: un, Component: dn, Resource: standbyName, Region: standby, FromResource: activeName, FromRegion: b.from,
				Estimate: lifeboat.EstimateRejoin, DependsOn: pre,
				Why: fmt.Sprintf("the copy in %s is %s: rebuild it as a replica of %s so %s is ready again (writes that never replicated go to quarantine)", standby, role, activeName, standby)})
		}
	}
	return nil
}

// failover: data and compute in parallel, then traffic (seed 000).
func (b *builder) failover() error {
	for _, un := range b.s.UnitNames() {
		u := b.s.Units[un]
		for _, dn := range lifeboat.SortedKeys(u.Databases) {
			b.failoverDatabase(un, dn, u.Databases[dn])
		}
	}
	b.standUps(nil)
	b.switchTraffic()
	return nil
}

func (b *builder) failoverDatabase(un, dn string, d lifeboat.Database) {
	ref := lifeboat.Ref{Unit: un, Component: dn}
	rf, rt := b.res(un, dn, b.from), b.res(un, dn, b.to)
	fromName, toName := b.name(un, dn, b.from), b.name(un, dn, b.to)
	fence := func(why string) string {
		return b.add(&lifeboat.Step{ID: stepID(lifeboat.OpDatabaseFence, fromName), Op: lifeboat.OpDatabaseFence,
			Unit: un, Component: dn, Resource: fromName, Region: b.from, Estimate: lifeboat.EstimateFence,
			Timeout: failoverFenceTimeout, BestEffort: true, Why: why})
	}
	switch d.DRMode {
	case lifeboat.DRGeoReplica:
		var deps []string
		if roleOf(rf) == lifeboat.DBPrimary {
			deps = append(deps, fence(fmt.Sprintf("the old primary must not take writes once %s's copy is promoted (best effort: %s may be gone)", b.to, b.from)))
			b.data[un] = append(b.data[un], deps...)
		}
		role := roleOf(rt)
		if role == lifeboat.DBPrimary {
			if roleOf(rf) == lifeboat.DBPrimary {
				// Two primaries: a best-effort fence of an earlier failover
				// failed. The active region's copy is the current one, so
				// the copy in `to` is stale: serving it loses what it lacks.
				b.losses = append(b.losses, loss{ref, lifeboat.AllData, fmt.Sprintf("its copy in %s is an old primary (both copies are primary per the state): every write it missed is lost", b.to)})
				b.note("%s and %s are both primary per the state: %s is the older one, and the service will use it as it is, without what was written in %s since. If %s can still be reached, prefer `lifeboat switchover`.", toName, fromName, toName, b.from, b.from)
			}
			return
		}
		why := ""
		switch {
		case role == lifeboat.DBReplica && d.Replication == lifeboat.ReplicationSync:
			why = "the sync replica becomes the primary; it has every committed write"
			b.losses = append(b.losses, loss{ref, d.DataLoss(), "sync geo-replica: no committed write is lost"})
			if d.DegradeAfter == 0 {
				b.note("%s replicates synchronously and strictly: once promoted in %s it waits for a standby, so writes block until %s's copy is rejoined (fail back) — or set degrade-after to let writes go on unreplicated.", toName, b.to, b.from)
			}
		case role == lifeboat.DBReplica:
			why = fmt.Sprintf("the async replica becomes the primary; writes within its lag (~%s) are lost", lifeboat.FormatDuration(d.DataLoss()))
			b.losses = append(b.losses, loss{ref, d.DataLoss(), fmt.Sprintf("async geo-replica: loses the writes within its replication lag (~%s)", lifeboat.FormatDuration(d.DataLoss()))})
		default:
			// Not streaming (fenced at an earlier failover and never
			// rejoined, or missing): promoting it is the only way to serve,
			// but it lacks everything written since it stopped replicating.
			why = fmt.Sprintf("the copy in %s is %s, not a streaming replica: promote it anyway, it lacks every write since it stopped replicating", b.to, role)
			b.losses = append(b.losses, loss{ref, lifeboat.AllData, fmt.Sprintf("its copy in %s is %s, not a replica: every write since it stopped replicating is lost", b.to, role)})
			b.note("%s in %s is %s, not a streaming replica: promoting it loses every write made since it stopped replicating. If %s can still be reached, prefer `lifeboat switchover`.", toName, b.to, role, b.from)
		}
		b.data[un] = append(b.data[un], b.add(&lifeboat.Step{ID: stepID(lifeboat.OpDatabasePromote, toName), Op: lifeboat.OpDatabasePromote,
			Unit: un, Component: dn, Resource: toName, Region: b.to, Estimate: lifeboat.EstimatePromote, DependsOn: deps, Why: why}))
	case lifeboat.DRBackup:
		if roleOf(rf) == lifeboat.DBPrimary {
			// A restored copy does not stream from the old one, so the
			// restore need not wait for the fence; traffic waits for both.
			b.data[un] = append(b.data[un], fence(fmt.Sprintf("the old primary must not take writes once %s is restored (best effort: %s may be gone)", b.to, b.from)))
		}
		if roleOf(rt) == lifeboat.DBPrimary && roleOf(rf) != lifeboat.DBPrimary {
			return // restored already; a stale primary in `to` is restored over
		}
		every := lifeboat.FormatDuration(d.DataLoss())
		b.losses = append(b.losses, loss{ref, d.DataLoss(), fmt.Sprintf("backup every %s: loses the writes since the newest backup", every)})
		b.data[un] = append(b.data[un], b.add(&lifeboat.Step{ID: stepID(lifeboat.OpDatabaseRestore, toName), Op: lifeboat.OpDatabaseRestore,
			Unit: un, Component: dn, Resource: toName, Region: b.to, Estimate: d.RestoreTime(),
			Why: fmt.Sprintf("restore the newest backup in %s (taken every %s; newer writes are lost)", b.to, every)}))
	default:
		b.losses = append(b.losses, loss{ref, lifeboat.AllData, "dr-mode none: its data is not copied to the other region"})
		if roleOf(rt) == lifeboat.DBAbsent {
			b.note("%s has dr-mode none: it has no copy in %s and starts empty there; its data in %s is lost to the service.", ref, b.to, b.from)
		} else {
			b.note("%s has dr-mode none: %s uses its own old copy as it is; what was written in %s is not carried over.", ref, b.to, b.from)
		}
	}
}

// standUps brings every compute in `to` to the size it needs there.
// Switchover passes the steps to wait for (none); the result is also kept
// in b.standUp for traffic to wait for.
func (b *builder) standUps(deps []string) []string {
	var ids []string
	toRole := b.s.RoleOf(b.to)
	for _, un := range b.s.UnitNames() {
		u := b.s.Units[un]
		for _, cn := range lifeboat.SortedKeys(u.Compute) {
			c := u.Compute[cn]
			ref := lifeboat.Ref{Unit: un, Component: cn}
			want := c.Instances.In(toRole)
			if want == 0 {
				continue
			}
			r, name := b.res(un, cn, b.to), b.name(un, cn, b.to)
			have, last := 0, ""
			if r == nil || !r.Exists {
				why := fmt.Sprintf("no scale set in %s yet (%s standby): stand it up from its recipe (%s)", b.to, c.Standby, c.Recipe.Artifact)
				last = b.add(&lifeboat.Step{ID: stepID(lifeboat.OpComputeProvision, name), Op: lifeboat.OpComputeProvision,
					Unit: un, Component: cn, Resource: name, Region: b.to, Estimate: lifeboat.EstimateProvision, DependsOn: deps, Why: why})
			} else {
				have = r.Instances
			}
			if have < want {
				sdeps := deps
				if last != "" {
					sdeps = []string{last}
				}
				why := fmt.Sprintf("grow from %d to %s so %s can carry the load", have, plural(want, "instance"), b.to)
				if c.Standby == lifeboat.StandbyHot && have > 0 {
					why = fmt.Sprintf("hot standby is short: %d of %d instances run; boot the rest", have, want)
				}
				last = b.add(&lifeboat.Step{ID: stepID(lifeboat.OpComputeScale, name), Op: lifeboat.OpComputeScale,
					Unit: un, Component: cn, Resource: name, Region: b.to, Instances: want, Estimate: c.BootTime(), DependsOn: sdeps, Why: why})
			}
			if last != "" {
				b.standUp[ref] = last
				ids = append(ids, last)
			}
		}
	}
	return ids
}

// move is the planned, zero-loss procedure of failback (standUpFirst false)
// and switchover (true).
func (b *builder) move(standUpFirst bool) error {
	var ups []string
	if standUpFirst {
		ups = b.standUps(nil)
	}
	b.stops(ups)
	for _, un := range b.s.UnitNames() {
		u := b.s.Units[un]
		for _, dn := range lifeboat.SortedKeys(u.Databases) {
			if err := b.moveDatabase(un, dn, u.Databases[dn]); err != nil {
				return err
			}
		}
		// A rejoin (pg_rewind, or a new base backup) streams while the
		// service still runs: stopping writes before it is done would make
		// the whole rebuild part of the outage.
		for _, cn := range lifeboat.SortedKeys(u.Compute) {
			if id, ok := b.stop[lifeboat.Ref{Unit: un, Component: cn}]; ok && len(b.rejoins[un]) > 0 {
				st := b.p.Step(id)
				st.DependsOn = uniq(append(st.DependsOn, b.rejoins[un]...))
				st.Why += "; after the rejoin, which runs while the service still serves"
			}
		}
	}
	if !standUpFirst {
		b.standUps(nil)
	}
	b.switchTraffic()
	b.cleanUp()
	return nil
}

// stops scales to 0 every running compute in `from` of a unit whose data
// moves, so no more data changes. Compute of units with no data to move
// keeps serving until traffic has moved (cleanUp then takes it down).
func (b *builder) stops(deps []string) {
	for _, un := range b.s.UnitNames() {
		u := b.s.Units[un]
		if !b.movesData(un) {
			continue
		}
		for _, cn := range lifeboat.SortedKeys(u.Compute) {
			r := b.res(un, cn, b.from)
			if r == nil || !r.Exists || r.Instances == 0 {
				continue
			}
			name := b.name(un, cn, b.from)
			why := fmt.Sprintf("stop writes in %s so the data moves with zero loss", b.from)
			if len(deps) > 0 {
				why += fmt.Sprintf(" (after %s is up, to keep the outage short)", b.to)
			}
			b.stop[lifeboat.Ref{Unit: un, Component: cn}] = b.add(&lifeboat.Step{ID: stepID(lifeboat.OpComputeStop, name), Op: lifeboat.OpComputeStop,
				Unit: un, Component: cn, Resource: name, Region: b.from, Instances: 0, Estimate: lifeboat.EstimateScaleDown, DependsOn: deps, Why: why})
		}
	}
}

// movesData reports whether a planned move has data of the unit to move:
// a geo-replica or backup database whose primary is in `from`.
func (b *builder) movesData(un string) bool {
	for dn, d := range b.s.Units[un].Databases {
		if d.DRMode != lifeboat.DRNone && roleOf(b.res(un, dn, b.from)) == lifeboat.DBPrimary {
			return true
		}
	}
	return false
}

// unitStops are the stop steps of a unit's compute: its data waits for them.
func (b *builder) unitStops(un string) []string {
	var ids []string
	for _, cn := range lifeboat.SortedKeys(b.s.Units[un].Compute) {
		if id, ok := b.stop[lifeboat.Ref{Unit: un, Component: cn}]; ok {
			ids = append(ids, id)
		}
	}
	return ids
}

func (b *builder) moveDatabase(un, dn string, d lifeboat.Database) error {
	ref := lifeboat.Ref{Unit: un, Component: dn}
	rf, rt := b.res(un, dn, b.from), b.res(un, dn, b.to)
	fromName, toName := b.name(un, dn, b.from), b.name(un, dn, b.to)
	fromRole, toRole := roleOf(rf), roleOf(rt)
	if d.DRMode == lifeboat.DRNone {
		b.note("%s has dr-mode none: its data does not move; in %s the service uses the copy there as it is, and anything written to it in %s is not carried over.", ref, b.to, b.from)
		return nil
	}
	if home := b.s.HomeOf(un, dn); b.intent == lifeboat.IntentFailback && home == b.from && fromRole == lifeboat.DBPrimary {
		b.note("%s stays primary in %s, its home (a tenant pool placed there): failback brings each database home.", ref, home)
		return nil
	}
	if fromRole != lifeboat.DBPrimary {
		if toRole == lifeboat.DBPrimary {
			return nil // the data is already in `to`
		}
		return refuse(b.s, b.intent, "%s: neither copy is primary per the state (%s is %s, %s is %s), so there is nothing to move with zero loss. Check the databases, correct the state with `lifeboat status`, then plan again", ref, fromName, fromRole, toName, toRole)
	}
	stops := b.unitStops(un)
	add := func(st *lifeboat.Step) string {
		st.Unit, st.Component = un, dn
		id := b.add(st)
		b.data[un] = append(b.data[un], id)
		return id
	}
	switch d.DRMode {
	case lifeboat.DRGeoReplica:
		var pre []string
		if toRole == lifeboat.DBPrimary {
			// An old primary whose fence never happened (best effort in a
			// failover): fence it before it is rebuilt from the real one.
			pre = []string{add(&lifeboat.Step{ID: stepID(lifeboat.OpDatabaseFence, toName), Op: lifeboat.OpDatabaseFence,
				Resource: toName, Region: b.to, Estimate: lifeboat.EstimateFence,
				Why: fmt.Sprintf("the state still calls this old copy primary; %s is the real one", fromName)})}
		}
		if toRole != lifeboat.DBReplica {
			// Rejoining needs no stop: it streams while the service still runs.
			pre = []string{add(&lifeboat.Step{ID: stepID(lifeboat.OpDatabaseRejoin, toName), Op: lifeboat.OpDatabaseRejoin,
				Resource: toName, Region: b.to, FromResource: fromName, FromRegion: b.from, Estimate: lifeboat.EstimateRejoin, DependsOn: pre,
				Why: fmt.Sprintf("the copy in %s is not a replica (%s per the state): rebuild it as a replica of %s (writes that never replicated go to quarantine)", b.to, toRole, b.from)})}
			if b.rejoins == nil {
				b.rejoins = map[string][]string{}
			}
			b.rejoins[un] = append(b.rejoins[un], pre...)
		}
		add(&lifeboat.Step{ID: stepID(lifeboat.OpDatabaseSwitchover, toName), Op: lifeboat.OpDatabaseSwitchover,
			Resource: toName, Region: b.to, FromResource: fromName, FromRegion: b.from, Estimate: lifeboat.EstimateSwitchover,
			DependsOn: append(pre, stops...),
			Why:       fmt.Sprintf("zero loss: wait until %s has replayed every write, promote it, make %s its replica", b.to, b.from)})
	case lifeboat.DRBackup:
		backup := add(&lifeboat.Step{ID: stepID(lifeboat.OpDatabaseBackup, fromName), Op: lifeboat.OpDatabaseBackup,
			Resource: fromName, Region: b.from, Estimate: lifeboat.EstimateBackup, DependsOn: stops,
			Why: "a final backup once writes have stopped: it holds every write"})
		add(&lifeboat.Step{ID: stepID(lifeboat.OpDatabaseRestore, toName), Op: lifeboat.OpDatabaseRestore,
			Resource: toName, Region: b.to, Estimate: d.RestoreTime(), DependsOn: []string{backup},
			Why: fmt.Sprintf("restore the final backup in %s", b.to)})
		add(&lifeboat.Step{ID: stepID(lifeboat.OpDatabaseFence, fromName), Op: lifeboat.OpDatabaseFence,
			Resource: fromName, Region: b.from, Estimate: lifeboat.EstimateFence, DependsOn: []string{backup},
			Why: fmt.Sprintf("after the final backup the copy in %s must take no more writes", b.from)})
	}
	return nil
}

// switchTraffic points each traffic component at `to` once its compute and
// the databases of its unit (and of the target's unit) are ready, and after
// the units it depends on.
func (b *builder) switchTraffic() {
	for _, un := range b.s.UnitNames() {
		u := b.s.Units[un]
		for _, tn := range lifeboat.SortedKeys(u.Traffic) {
			t := u.Traffic[tn]
			name := lifeboat.TrafficName(b.s.Service, un, tn)
			// Never skipped, even if the names already route to `to`: the
			// switch is what moves the state's active region, and it is cheap
			// and idempotent.
			target, _ := trafficTarget(b.s, un, t) // checked by checkSpec
			deps := append([]string{b.standUp[target]}, b.data[un]...)
			deps = append(deps, b.data[target.Unit]...)
			ttl := lifeboat.FormatDuration(t.TTLOrDefault())
			b.traffic[un] = append(b.traffic[un], b.add(&lifeboat.Step{ID: stepID(lifeboat.OpTrafficSwitch, name), Op: lifeboat.OpTrafficSwitch,
				Unit: un, Component: tn, Resource: name, Region: b.to, Estimate: lifeboat.EstimateSwitch + t.TTLOrDefault(), DependsOn: deps,
				Why: fmt.Sprintf("point %s at %s; clients follow within the %s TTL", strings.Join(t.Names, ", "), b.to, ttl)}))
		}
	}
	// Dependencies come back first: wait for their switches (or, if they
	// switch nothing, for their data and compute).
	for _, un := range b.s.UnitNames() {
		var wait []string
		for _, d := range b.s.Units[un].DependsOn {
			if ids := b.traffic[d]; len(ids) > 0 {
				wait = append(wait, ids...)
				continue
			}
			wait = append(wait, b.data[d]...)
			for _, cn := range lifeboat.SortedKeys(b.s.Units[d].Compute) {
				wait = append(wait, b.standUp[lifeboat.Ref{Unit: d, Component: cn}])
			}
		}
		for _, id := range b.traffic[un] {
			st := b.p.Step(id)
			st.DependsOn = uniq(append(st.DependsOn, wait...))
		}
	}
}

// cleanUp returns compute in `from` to its standby level once the service
// has moved: the failover group is deleted, permanent compute keeps its
// standby size (hot: full size; warm, cold: 0).
func (b *builder) cleanUp() {
	var moved []string
	for _, un := range b.s.UnitNames() {
		moved = append(moved, b.traffic[un]...)
	}
	if len(moved) == 0 {
		for _, un := range b.s.UnitNames() {
			moved = append(moved, b.data[un]...)
		}
		for _, id := range b.standUp {
			moved = append(moved, id)
		}
	}
	fromRole := b.s.RoleOf(b.from)
	for _, un := range b.s.UnitNames() {
		u := b.s.Units[un]
		for _, cn := range lifeboat.SortedKeys(u.Compute) {
			c := u.Compute[cn]
			ref := lifeboat.Ref{Unit: un, Component: cn}
			r := b.res(un, cn, b.from)
			if r == nil || !r.Exists {
				continue
			}
			name := b.name(un, cn, b.from)
			deps := append([]string{b.stop[ref]}, moved...)
			group := lifeboat.GroupPermanent // the primary has no failover group
			if fromRole == lifeboat.RoleSecondary {
				group = c.Group()
			}
			if group == lifeboat.GroupFailover {
				b.add(&lifeboat.Step{ID: stepID(lifeboat.OpComputeDelete, name), Op: lifeboat.OpComputeDelete,
					Unit: un, Component: cn, Resource: name, Region: b.from, Estimate: lifeboat.EstimateDelete, DependsOn: deps, Cleanup: true,
					Why: fmt.Sprintf("failover resource group: delete it now that the service runs in %s", b.to)})
				continue
			}
			have := r.Instances
			if _, stopped := b.stop[ref]; stopped {
				have = 0
			}
			level := 0
			if c.Standby == lifeboat.StandbyHot {
				level = c.Instances.In(fromRole)
			}
			if have == level {
				continue
			}
			est := lifeboat.EstimateScaleDown
			if level > have {
				est = c.BootTime()
			}
			b.add(&lifeboat.Step{ID: stepID(lifeboat.OpComputeScale, name), Op: lifeboat.OpComputeScale,
				Unit: un, Component: cn, Resource: name, Region: b.from, Instances: level, Estimate: est, DependsOn: deps, Cleanup: true,
				Why: fmt.Sprintf("back to %s standby in %s: %s", c.Standby, b.from, plural(level, "instance"))})
		}
	}
}

// rootAtEpoch makes every step without a dependency wait for epoch.raise,
// so nothing acts before the new epoch is stored.
func (b *builder) rootAtEpoch() {
	for _, st := range b.p.Steps {
		if st.ID != epochStep && len(st.DependsOn) == 0 {
			st.DependsOn = []string{epochStep}
		}
	}
}

// reduce drops a dependency that another dependency of the same step
// already implies, so "waits for" lists only what a step waits for next.
// The order of the plan does not change.
func (b *builder) reduce() {
	byID := make(map[string]*lifeboat.Step, len(b.p.Steps))
	for _, st := range b.p.Steps {
		byID[st.ID] = st
	}
	// before[id] is every step that id waits for, directly or not.
	before := map[string]map[string]bool{}
	var reach func(id string) map[string]bool
	reach = func(id string) map[string]bool {
		if r, ok := before[id]; ok {
			return r
		}
		r := map[string]bool{}
		before[id] = r // the plan has no cycle (built that way; Validate checks)
		for _, d := range byID[id].DependsOn {
			if byID[d] == nil {
				continue
			}
			r[d] = true
			for x := range reach(d) {
				r[x] = true
			}
		}
		return r
	}
	for _, st := range b.p.Steps {
		var keep []string
		for _, d := range st.DependsOn {
			implied := false
			for _, o := range st.DependsOn {
				if o != d && byID[o] != nil && reach(o)[d] {
					implied = true
					break
				}
			}
			if !implied {
				keep = append(keep, d)
			}
		}
		st.DependsOn = keep
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// idle reports whether the plan does nothing but raise the epoch and run hooks.
func (b *builder) idle() bool {
	for _, st := range b.p.Steps {
		if st.Op.Kind() != "" {
			return false
		}
	}
	return true
}
