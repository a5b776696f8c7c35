package recovery

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// EventKind is what happened.
type EventKind string

const (
	// Begin: the recovery starts (every tenant of the lost region is
	// recorded queued). Any first event begins implicitly.
	Begin EventKind = "begin"
	// CatalogPromoted: the management catalog serves in the target region;
	// nothing starts before it (seed 004: the catalog first).
	CatalogPromoted EventKind = "catalog-promoted"
	// PoolPromoted: a geo-replicated pool's standby (Pool) was promoted in
	// the target region (by the failover plan).
	PoolPromoted EventKind = "pool-promoted"
	// PoolCreated: a CreatePool action ended (Err: it failed).
	PoolCreated EventKind = "pool-created"
	// CapacityRaised: a RaiseCapacity action ended.
	CapacityRaised EventKind = "capacity-raised"
	// BatchDone: a MakeAvailable action ended, for all its Tenants.
	BatchDone EventKind = "batch-done"
	// RestoreDone: a Restore action ended (Tenants: the one tenant).
	RestoreDone EventKind = "restore-done"
	// Hurry: someone connects to Tenants: they go to the head of their
	// pool's queue.
	Hurry EventKind = "hurry"
	// Cancel: failback's first step; nothing new starts, what runs ends.
	Cancel EventKind = "cancel"
)

// Event is the input of Step. Time comes in events (At): the scheduler has
// no clock.
type Event struct {
	Kind    EventKind
	At      time.Time
	Pool    string
	Tenants []string
	// Err, for the end of an action: why it failed ("" : it worked).
	Err string
	// Permanent: retrying cannot help (Err is then final at once).
	Permanent bool
}

// Done builds the event that ends action a, from the error it returned.
func Done(a Action, err error, at time.Time) Event {
	ev := Event{At: at, Pool: a.Pool, Tenants: a.Tenants}
	switch a.Kind {
	case MakeAvailable:
		ev.Kind = BatchDone
	case Restore:
		ev.Kind = RestoreDone
	case CreatePool:
		ev.Kind = PoolCreated
	case RaiseCapacity:
		ev.Kind = CapacityRaised
	}
	if err != nil {
		ev.Err = err.Error()
		ev.Permanent = !lifeboat.IsRetryable(err)
	}
	return ev
}

// ActionKind is what to do.
type ActionKind string

const (
	// MakeAvailable: fail Tenants (a batch, all in Pool) over to their
	// copies in Region (the promoted pool).
	MakeAvailable ActionKind = "make-available"
	// RaiseCapacity: raise Pool's capacity in Region to Capacity.
	RaiseCapacity ActionKind = "raise-capacity"
	// CreatePool: create Pool in Region, configured as in its home region.
	CreatePool ActionKind = "create-pool"
	// Restore: restore Tenants[0] into Pool in Region from its latest
	// backup shipped there.
	Restore ActionKind = "restore"
	// Record: write Change to Tenants in the catalog (one Set).
	Record ActionKind = "record"
)

// Action is the output of Step.
type Action struct {
	Kind     ActionKind
	Pool     string
	Region   string
	Tenants  []string
	Capacity int
	// Change is what Record writes.
	Change lifeboat.TenantChange
	// Attempt counts from 1; above 1 the executor backs off first.
	Attempt int
}

// String renders the action on one line.
func (a Action) String() string {
	var b strings.Builder
	b.WriteString(string(a.Kind))
	if a.Kind == Record {
		c := a.Change
		fmt.Fprintf(&b, " %s", c.State)
		if c.Region != "" {
			fmt.Fprintf(&b, " region=%s epoch=%d", c.Region, c.Epoch)
		}
		if !c.Recovered.IsZero() {
			fmt.Fprintf(&b, " recovered=%s", c.Recovered.UTC().Format("15:04:05.999"))
		}
		if c.Reason != "" {
			fmt.Fprintf(&b, " reason=%q", c.Reason)
		}
	} else {
		fmt.Fprintf(&b, " pool=%s region=%s", a.Pool, a.Region)
		if a.Kind == RaiseCapacity {
			fmt.Fprintf(&b, " capacity=%d", a.Capacity)
		}
		if a.Attempt > 1 {
			fmt.Fprintf(&b, " attempt=%d", a.Attempt)
		}
	}
	if len(a.Tenants) > 0 {
		fmt.Fprintf(&b, ": %s", strings.Join(a.Tenants, " "))
		if len(a.Tenants) > 1 {
			fmt.Fprintf(&b, " (%d)", len(a.Tenants))
		}
	}
	return b.String()
}

// tenant is one tenant being recovered.
type tenant struct {
	name, tier, pool string
	prio             int
	state            lifeboat.TenantState
	busy             bool // in a batch or a restore running
	hurried          bool
	hurrySeq         int
	attempts         int
	reason           string
}

func (t *tenant) terminal() bool {
	return t.state == lifeboat.TenantAvailable || t.state == lifeboat.TenantFailed
}

func (t *tenant) idle() bool { return t.state == lifeboat.TenantQueued && !t.busy }

// before orders a queue: hurried tenants first (first come first served),
// then by tier priority (lower first), then by name.
func before(a, b *tenant) bool {
	if a.hurried != b.hurried {
		return a.hurried
	}
	if a.hurried {
		return a.hurrySeq < b.hurrySeq
	}
	if a.prio != b.prio {
		return a.prio < b.prio
	}
	return a.name < b.name
}

// pool is one pool with tenants to recover, and its queue.
type pool struct {
	name     string
	kind     lifeboat.TenantStrategy
	ready    bool // geo-replicate: promoted; geo-restore: created
	op       bool // the CreatePool running
	opTries  int
	gaveUp   string // CreatePool gave up: why
	raiseTo  int    // capacity to raise to after promotion (0: none)
	raising  bool
	raised   bool
	raiseTry int
	raiseErr string
	hurried  []*tenant
	order    []*tenant // by before (unhurried)
	head     int       // order[:head] are terminal
	running  int       // batches or restores of this pool running
	left     int       // tenants not terminal
}

// next returns the pool's first idle tenant in queue order, or nil.
func (p *pool) next() *tenant {
	p.hurried = slices.DeleteFunc(p.hurried, (*tenant).terminal)
	for _, t := range p.hurried {
		if t.idle() {
			return t
		}
	}
	for p.head < len(p.order) && p.order[p.head].terminal() {
		p.head++
	}
	for _, t := range p.order[p.head:] {
		if t.idle() && !t.hurried {
			return t
		}
	}
	return nil
}

// take marks up to n idle tenants busy, in queue order.
func (p *pool) take(n int) []*tenant {
	var out []*tenant
	for len(out) < n {
		t := p.next()
		if t == nil {
			break
		}
		t.busy = true
		out = append(out, t)
	}
	return out
}

// Scheduler decides what to do next in one region's tenant recovery. It is
// pure and not safe for concurrent use (Start's Run serialises it).
type Scheduler struct {
	cfg       Config
	tenants   map[string]*tenant
	names     []string // of tenants, sorted
	pools     map[string]*pool
	poolNames []string
	initial   []Action // records of Begin
	begun     bool
	catalog   bool
	cancelled bool
	batches   int
	restores  int
	hurrySeq  int
	left      int // tenants not terminal
	out       []Action
}

// New builds the scheduler for the tenants of cfg.Lost (the others are not
// touched). A tenant that cannot be recovered (unknown tier or pool) is
// failed at once, with the reason; the others go on.
func New(cfg Config, tenants []lifeboat.Tenant) (*Scheduler, error) {
	cfg = cfg.withDefaults()
	if err := ValidateConfig(cfg); err != nil {
		return nil, err
	}
	s := &Scheduler{cfg: cfg, tenants: map[string]*tenant{}, pools: map[string]*pool{}}
	kind := map[string]lifeboat.TenantStrategy{}
	for _, name := range sortedKeys(cfg.Tenants.Tiers) {
		tier := cfg.Tenants.Tiers[name]
		for _, p := range tierPools(tier) {
			kind[p] = tier.Strategy
		}
	}
	sorted := slices.Clone(tenants)
	slices.SortFunc(sorted, func(a, b lifeboat.Tenant) int { return cmp.Compare(a.Name, b.Name) })
	var failed []*tenant
	for _, lt := range sorted {
		region := lt.Region
		if region == "" {
			region = cmp.Or(cfg.Tenants.Pools[lt.Pool].Region, cfg.Primary)
		}
		if region != cfg.Lost {
			continue
		}
		if lt.Name == "" {
			return nil, lifeboat.Permanent(op, lt.Pool, fmt.Errorf("a tenant of pool %q in %s has no name: fix the catalog", lt.Pool, cfg.Lost))
		}
		if _, dup := s.tenants[lt.Name]; dup {
			return nil, lifeboat.Permanent(op, lt.Name, fmt.Errorf("tenant %s is listed twice: fix the catalog", lt.Name))
		}
		t := &tenant{name: lt.Name, tier: lt.Tier, pool: lt.Pool, state: lifeboat.TenantQueued}
		s.tenants[t.name] = t
		s.names = append(s.names, t.name)
		tier, tierOK := cfg.Tenants.Tiers[lt.Tier]
		_, poolOK := cfg.Tenants.Pools[lt.Pool]
		if !kindKnown(kind, lt.Pool) && tierOK {
			kind[lt.Pool] = tier.Strategy // a pool no tier names (a tenant moved by hand)
		}
		switch {
		case !tierOK:
			t.state, t.reason = lifeboat.TenantFailed, fmt.Sprintf("tier %q is not under tenants.tiers in the spec: add it, or move the tenant to a known tier (lifeboat tenant move)", lt.Tier)
		case !poolOK:
			t.state, t.reason = lifeboat.TenantFailed, fmt.Sprintf("pool %q is not under tenants.pools in the spec: add it, or move the tenant (lifeboat tenant move)", lt.Pool)
		case tier.Strategy != kind[lt.Pool]:
			t.state, t.reason = lifeboat.TenantFailed, fmt.Sprintf("tier %s is %s but pool %s is recovered by %s: move the tenant to a pool of its tier (lifeboat tenant move)", lt.Tier, tier.Strategy, lt.Pool, kind[lt.Pool])
		}
		t.prio = tier.Priority
		if t.state == lifeboat.TenantFailed {
			failed = append(failed, t)
			continue
		}
		p := s.pools[t.pool]
		if p == nil {
			p = &pool{name: t.pool, kind: kind[t.pool]}
			if c := cfg.Tenants.Pools[t.pool].Capacity; p.kind == lifeboat.StrategyGeoReplicate && c != nil && c.Standby > 0 && c.Standby < c.Active {
				p.raiseTo = c.Active
			}
			s.pools[t.pool] = p
			s.poolNames = append(s.poolNames, t.pool)
		}
		p.order = append(p.order, t)
		p.left++
		s.left++
	}
	sort.Strings(s.poolNames)
	for _, name := range s.poolNames {
		p := s.pools[name]
		slices.SortFunc(p.order, func(a, b *tenant) int {
			if before(a, b) {
				return -1
			}
			return 1
		})
		s.record(names(p.order), lifeboat.TenantChange{State: lifeboat.TenantQueued})
	}
	for _, t := range failed {
		s.record([]string{t.name}, lifeboat.TenantChange{State: lifeboat.TenantFailed, Reason: t.reason})
	}
	s.initial, s.out = s.out, nil
	return s, nil
}

func kindKnown(m map[string]lifeboat.TenantStrategy, k string) bool { _, ok := m[k]; return ok }

func names(ts []*tenant) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.name
	}
	return out
}

// record writes change to the catalog, merged into the step's last record
// when it is the same change (one Set for the whole batch).
func (s *Scheduler) record(ns []string, change lifeboat.TenantChange) {
	if len(ns) == 0 {
		return
	}
	if n := len(s.out); n > 0 && s.out[n-1].Kind == Record && s.out[n-1].Change == change {
		s.out[n-1].Tenants = append(s.out[n-1].Tenants, ns...)
		return
	}
	s.out = append(s.out, Action{Kind: Record, Tenants: slices.Clone(ns), Change: change})
}

// Step applies ev and returns what to do now. An event that does not fit
// (the end of an action not running, an unknown pool) is refused with a
// permanent error and changes nothing: it is a bug of the caller.
func (s *Scheduler) Step(ev Event) ([]Action, error) {
	if err := s.check(ev); err != nil {
		return nil, err
	}
	s.out = nil
	if !s.begun {
		s.begun = true
		s.out = append(s.out, s.initial...)
		s.initial = nil
	}
	switch ev.Kind {
	case CatalogPromoted:
		s.catalog = true
	case PoolPromoted:
		if p := s.pools[ev.Pool]; p != nil {
			p.ready = true
		}
	case PoolCreated:
		s.created(s.pools[ev.Pool], ev)
	case CapacityRaised:
		p := s.pools[ev.Pool]
		p.raising = false
		switch {
		case ev.Err == "":
			p.raised, p.raiseErr = true, ""
		case ev.Permanent || p.raiseTry >= s.cfg.MaxAttempts:
			p.raiseErr = fmt.Sprintf("gave up after %d attempts: %s", p.raiseTry, ev.Err)
		default:
			p.raiseErr = fmt.Sprintf("attempt %d failed: %s", p.raiseTry, ev.Err)
		}
	case BatchDone, RestoreDone:
		s.ended(ev)
	case Hurry:
		for _, n := range ev.Tenants {
			t := s.tenants[n]
			if t == nil || !t.idle() || t.hurried {
				continue // not ours, already running or done, or already at the head
			}
			s.hurrySeq++
			t.hurried, t.hurrySeq = true, s.hurrySeq
			p := s.pools[t.pool]
			p.hurried = append(p.hurried, t)
		}
	case Cancel:
		s.cancelled = true
	}
	s.dispatch()
	out := s.out
	s.out = nil
	return out, nil
}

// check refuses events that do not fit the state.
func (s *Scheduler) check(ev Event) error {
	bad := func(format string, a ...any) error {
		return lifeboat.Permanent(op, ev.Pool, fmt.Errorf("event %s refused: "+format+" (a bug of the caller)", append([]any{ev.Kind}, a...)...))
	}
	p := s.pools[ev.Pool]
	switch ev.Kind {
	case Begin, CatalogPromoted, Hurry, Cancel:
	case PoolPromoted:
		if p != nil && p.kind != lifeboat.StrategyGeoReplicate {
			return bad("pool %s is geo-restore: it is created, not promoted", ev.Pool)
		}
	case PoolCreated:
		if p == nil || !p.op {
			return bad("no creation of pool %q is running", ev.Pool)
		}
	case CapacityRaised:
		if p == nil || !p.raising {
			return bad("no capacity raise of pool %q is running", ev.Pool)
		}
	case BatchDone, RestoreDone:
		want := lifeboat.StrategyGeoReplicate
		if ev.Kind == RestoreDone {
			want = lifeboat.StrategyGeoRestore
			if len(ev.Tenants) != 1 {
				return bad("a restore is of one tenant, got %d", len(ev.Tenants))
			}
		}
		if p == nil || p.kind != want {
			return bad("pool %q has no %s running", ev.Pool, want)
		}
		if len(ev.Tenants) == 0 {
			return bad("no tenants")
		}
		for _, n := range ev.Tenants {
			if t := s.tenants[n]; t == nil || !t.busy || t.pool != ev.Pool {
				return bad("tenant %s is not in a %s of pool %s running", n, ev.Kind, ev.Pool)
			}
		}
	default:
		return bad("unknown event")
	}
	return nil
}

// created handles the end of a CreatePool.
func (s *Scheduler) created(p *pool, ev Event) {
	p.op = false
	if ev.Err == "" {
		p.ready = true
		return
	}
	if !ev.Permanent && p.opTries < s.cfg.MaxAttempts {
		return // dispatch tries again
	}
	p.gaveUp = fmt.Sprintf("pool %s could not be created in %s after %d attempts: %s", p.name, s.cfg.Target, p.opTries, ev.Err)
	var failed []string
	for _, t := range p.order {
		if t.state == lifeboat.TenantQueued {
			s.finish(p, t, lifeboat.TenantFailed, p.gaveUp)
			failed = append(failed, t.name)
		}
	}
	s.record(failed, lifeboat.TenantChange{State: lifeboat.TenantFailed, Reason: p.gaveUp})
}

// finish moves t to a terminal state.
func (s *Scheduler) finish(p *pool, t *tenant, state lifeboat.TenantState, reason string) {
	t.state, t.reason, t.busy = state, reason, false
	p.left--
	s.left--
}

// ended handles the end of a batch or a restore.
func (s *Scheduler) ended(ev Event) {
	p := s.pools[ev.Pool]
	p.running--
	if ev.Kind == BatchDone {
		s.batches--
	} else {
		s.restores--
	}
	var done, requeued []string
	for _, n := range ev.Tenants {
		t := s.tenants[n]
		t.busy = false
		switch {
		case ev.Err == "":
			s.finish(p, t, lifeboat.TenantAvailable, "")
			done = append(done, n)
		case ev.Permanent || t.attempts >= s.cfg.MaxAttempts:
			reason := fmt.Sprintf("%s failed after %d attempts: %s", what(ev.Kind), t.attempts, ev.Err)
			if ev.Permanent {
				reason = fmt.Sprintf("%s failed (not retryable): %s", what(ev.Kind), ev.Err)
			}
			s.finish(p, t, lifeboat.TenantFailed, reason)
			// Merged with the previous tenant's record when the reason is the same.
			s.record([]string{n}, lifeboat.TenantChange{State: lifeboat.TenantFailed, Reason: reason})
		default:
			// Back in its place in the queue; the next free slot takes it.
			t.state = lifeboat.TenantQueued
			t.reason = fmt.Sprintf("attempt %d failed: %s", t.attempts, ev.Err)
			requeued = append(requeued, n)
		}
	}
	s.record(done, lifeboat.TenantChange{State: lifeboat.TenantAvailable, Region: s.cfg.Target, Epoch: s.cfg.Epoch, Recovered: ev.At})
	if ev.Kind == RestoreDone {
		s.record(requeued, lifeboat.TenantChange{State: lifeboat.TenantQueued})
	}
}

func what(k EventKind) string {
	if k == BatchDone {
		return "make-available"
	}
	return "restore"
}

// dispatch starts what can start.
func (s *Scheduler) dispatch() {
	if s.cancelled || !s.catalog {
		return
	}
	for _, name := range s.poolNames {
		p := s.pools[name]
		switch p.kind {
		case lifeboat.StrategyGeoRestore:
			if !p.ready && !p.op && p.gaveUp == "" && p.left > 0 {
				p.op = true
				p.opTries++
				s.out = append(s.out, Action{Kind: CreatePool, Pool: p.name, Region: s.cfg.Target, Attempt: p.opTries})
			}
		case lifeboat.StrategyGeoReplicate:
			if p.ready && p.raiseTo > 0 && !p.raised && !p.raising && p.raiseTry < s.cfg.MaxAttempts && !strings.HasPrefix(p.raiseErr, "gave up") {
				p.raising = true
				p.raiseTry++
				s.out = append(s.out, Action{Kind: RaiseCapacity, Pool: p.name, Region: s.cfg.Target, Capacity: p.raiseTo, Attempt: p.raiseTry})
			}
		}
	}
	for s.batches < s.cfg.Tenants.Concurrency {
		p := s.best(lifeboat.StrategyGeoReplicate)
		if p == nil {
			break
		}
		batch := p.take(s.cfg.Tenants.Batch)
		attempt := 0
		for _, t := range batch {
			t.attempts++
			attempt = max(attempt, t.attempts)
		}
		p.running++
		s.batches++
		s.out = append(s.out, Action{Kind: MakeAvailable, Pool: p.name, Region: s.cfg.Target, Tenants: names(batch), Attempt: attempt})
	}
	var restoring []string
	for s.restores < s.cfg.Tenants.Concurrency {
		p := s.best(lifeboat.StrategyGeoRestore)
		if p == nil {
			break
		}
		t := p.take(1)[0]
		t.attempts++
		t.state = lifeboat.TenantRestoring
		p.running++
		s.restores++
		restoring = append(restoring, t.name)
		s.out = append(s.out, Action{Kind: Restore, Pool: p.name, Region: s.cfg.Target, Tenants: []string{t.name}, Attempt: t.attempts})
	}
	s.record(restoring, lifeboat.TenantChange{State: lifeboat.TenantRestoring})
}

// best returns the ready pool of kind whose next tenant comes first.
func (s *Scheduler) best(kind lifeboat.TenantStrategy) *pool {
	var bp *pool
	var bt *tenant
	for _, name := range s.poolNames {
		p := s.pools[name]
		if p.kind != kind || !p.ready {
			continue
		}
		if t := p.next(); t != nil && (bt == nil || before(t, bt)) {
			bp, bt = p, t
		}
	}
	return bp
}

// Done: nothing runs and nothing more will start (every tenant available
// or failed, or the recovery cancelled).
func (s *Scheduler) Done() bool {
	if !s.begun || s.batches > 0 || s.restores > 0 {
		return false
	}
	for _, p := range s.pools {
		if p.op || p.raising {
			return false
		}
	}
	return s.cancelled || s.left == 0
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
