// Package controller is a region's controller: the long-running loop that
// 'lifeboat serve --region R' runs in every region, the witness included.
//
// Each controller observes every region (monitor.Observer) and publishes
// its views under its etcd lease; it campaigns for the election; and on
// every tick it gathers a monitor.Situation (its views and the others', its
// quorum, the stored state, the runs), asks monitor.Decide, publishes the
// decision and does what it says:
//
//   - fence-self: its region is active and it lost the quorum. It fences
//     its region's databases (read-only, at the current epoch) before its
//     lease runs out, so that the majority side, which waits for the lease,
//     never promotes while this side still takes writes.
//   - failover: it is the leader and the active region is lost; it runs
//     the planner's failover plan through the engine, journaled like any
//     other run, by "lifeboat serve (automatic)".
//   - advise, wait, none: it says so (log and published decision).
//
// The decision is pure (monitor.Decide); this package is the I/O around it.
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/engine"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/planner"
	"github.com/lifeboat-dr/lifeboat/store"
)

// Automatic is the By of the runs a controller starts on its own; the
// anti-flapping window is measured from the last of them.
const Automatic = "lifeboat serve (automatic)"

// Quorum is what a controller needs of the etcd cluster (store.Quorum).
type Quorum interface {
	Campaign(ctx context.Context) error
	IsLeader() bool
	LastRenewed() time.Time
	Alive(now time.Time) bool
	Publish(ctx context.Context, key string, value []byte) error
	Views(ctx context.Context) (map[string]map[string][]byte, error)
	HoldActive(ctx context.Context) error
	ActiveHeld(ctx context.Context, region string) (bool, error)
}

// Config configures a Controller.
type Config struct {
	Spec   *lifeboat.Spec
	Region string // the region this controller runs in
	Store  lifeboat.Store
	Quorum Quorum
	// Drivers act on the service: the fence of a lost quorum, and the
	// failover plan.
	Drivers lifeboat.Drivers
	// Readiness, if set, says whether a failover would work now; a
	// blocking check refuses an automatic failover. The leader evaluates
	// it in the background every ReadinessEvery (default 5 s) and decides
	// with the latest result, so a slow driver never delays a decision.
	Readiness      func(ctx context.Context) []monitor.Check
	ReadinessEvery time.Duration
	// Tick is how often the controller decides; default monitor.interval.
	Tick time.Duration
	Now  func() time.Time
	Log  *slog.Logger
}

// Status is what a controller publishes about itself (key "controller").
type Status struct {
	Region      string           `json:"region"`
	Leader      bool             `json:"leader"`
	Quorum      bool             `json:"quorum"`
	LastRenewed time.Time        `json:"last_renewed"`
	Decision    monitor.Decision `json:"decision"`
	DecidedAt   time.Time        `json:"decided_at"`
	Fenced      bool             `json:"fenced,omitempty"` // this region fenced itself
	Readiness   []monitor.Check  `json:"readiness,omitempty"`
	// Exposure is the RPO exposure of the active region's databases, as
	// this controller measures it when its region is active: what a
	// failover would lose if the primary died now.
	Exposure []monitor.Exposure     `json:"exposure,omitempty"`
	Targets  []monitor.TargetStatus `json:"targets,omitempty"`
}

// Controller is one region's controller.
type Controller struct {
	c         Config
	policy    monitor.Policy
	obs       *monitor.Observer
	observing string // the active region obs's criticality is for
	meters    []*monitor.ExposureMeter
	stopMeter context.CancelFunc
	views     chan monitor.View
	// wake makes Run decide now rather than at the next tick: on an event
	// that may change the decision (elected, a view flips, the lost
	// region's lease goes, this region's quorum lapses). Waking early
	// changes when the controller decides, never what: Step reads every
	// input afresh.
	wake chan struct{}

	mu             sync.Mutex
	status         Status
	state          *lifeboat.State // last state read (kept when the store is unreachable)
	fenced         uint64          // epoch at which this region fenced itself (0: not)
	fenceFailures  int
	rejoinFailedAt time.Time
	readiness      []monitor.Check // the latest evaluation (leader only)
	advised        string          // last advice logged, to log it once
	awaiting       string          // the region whose lease a goroutine waits out for a wake
}

// New checks c and builds a controller; Run runs it.
func New(c Config) (*Controller, error) {
	if c.Spec == nil || c.Store == nil || c.Quorum == nil {
		return nil, errors.New("controller: Spec, Store and Quorum are required")
	}
	if !c.Spec.Regions.Has(c.Region) && (c.Spec.Regions.Witness == nil || c.Spec.Regions.Witness.Name != c.Region) {
		return nil, fmt.Errorf("controller: region %q is not a region of %s (%s)", c.Region, c.Spec.Service, strings.Join(regions(c.Spec), ", "))
	}
	m := c.Spec.Monitor.WithDefaults()
	if c.Tick <= 0 {
		c.Tick = m.Interval.D()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	p := monitor.PolicyFrom(c.Spec.Monitor)
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Controller{c: c, policy: p, views: make(chan monitor.View, 64), wake: make(chan struct{}, 1), status: Status{Region: c.Region}}, nil
}

// Targets are the observer's targets from the spec's monitor.targets, with
// active the region active now. Databases are critical in every region (a
// dead standby is a region that cannot take over); compute only in the
// active region, because a warm standby may run no instance until a
// failover stands it up, and must not look failing for that.
func Targets(s *lifeboat.Spec, active string) ([]monitor.Target, error) {
	var out []monitor.Target
	for _, region := range lifeboat.SortedKeys(s.Monitor.Targets) {
		for _, comp := range lifeboat.SortedKeys(s.Monitor.Targets[region]) {
			addr := s.Monitor.Targets[region][comp]
			un, cn, _ := strings.Cut(comp, ".")
			u, ok := s.Units[un]
			if !ok {
				return nil, fmt.Errorf("monitor.targets.%s.%s: no unit %q", region, comp, un)
			}
			kind, probe, err := probeOf(addr, u, cn)
			if err != nil {
				return nil, fmt.Errorf("monitor.targets.%s.%s: %w", region, comp, err)
			}
			address := addr
			if kind == monitor.ProbeTCP {
				address = strings.TrimPrefix(addr, "tcp://")
			}
			_, isDB := u.Databases[cn]
			out = append(out, monitor.Target{Region: region, Component: comp, Critical: isDB || region == active,
				Probe: monitor.ProbeConfigFor(kind, address, probe, s.Monitor)})
		}
	}
	return out, nil
}

func probeOf(addr string, u lifeboat.Unit, comp string) (monitor.ProbeKind, *lifeboat.Probe, error) {
	pu, err := url.Parse(addr)
	if err != nil {
		return "", nil, fmt.Errorf("%q is not a URL: write http://host:port/path, tcp://host:port or postgres://user:password@host:port/db", addr)
	}
	var probe *lifeboat.Probe
	if c, ok := u.Compute[comp]; ok {
		probe = c.Probe
	} else if d, ok := u.Databases[comp]; ok {
		probe = d.Probe
	} else {
		return "", nil, fmt.Errorf("the unit has no compute or database component %q", comp)
	}
	switch pu.Scheme {
	case "http", "https":
		return monitor.ProbeHTTP, probe, nil
	case "tcp":
		return monitor.ProbeTCP, probe, nil
	case "postgres", "postgresql":
		return monitor.ProbeSQL, probe, nil
	}
	return "", nil, fmt.Errorf("%q: the scheme must be http, https, tcp or postgres", addr)
}

// observe (re)starts the observer with the targets' criticality for the
// active region active.
func (c *Controller) observe(active string) error {
	targets, err := Targets(c.c.Spec, active)
	if err != nil {
		return err
	}
	oc := monitor.DefaultObserverConfig()
	oc.Region, oc.Regions, oc.Targets = c.c.Region, regions(c.c.Spec), targets
	oc.Interval = c.c.Tick
	oc.Publish = func(v monitor.View) {
		select {
		case c.views <- v:
		default: // the publisher is behind: the next round refreshes every view
		}
	}
	obs, err := monitor.StartObserver(oc)
	if err != nil {
		return err
	}
	// The active region's controller meters its databases' RPO exposure:
	// it is next to the primary.
	var meters []*monitor.ExposureMeter
	mctx, stopMeter := context.WithCancel(context.Background())
	if active == c.c.Region {
		for _, t := range targets {
			if t.Region != active || t.Probe.Kind != monitor.ProbeSQL {
				continue
			}
			ec := monitor.DefaultExposureConfig()
			ec.Interval, ec.Timeout = c.c.Tick, max(t.Probe.Timeout, c.c.Tick)
			m, err := monitor.NewExposureMeter(t.Component, ec, monitor.PostgresLagSampler(t.Probe.Address, "", ec.Timeout))
			if err != nil {
				c.c.Log.Warn("no RPO exposure for a database", "database", t.Component, "err", err)
				continue
			}
			meters = append(meters, m)
			go m.Run(mctx)
		}
	}
	c.mu.Lock()
	old, oldStop := c.obs, c.stopMeter
	c.obs, c.observing = obs, active
	c.meters, c.stopMeter = meters, stopMeter
	c.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	if oldStop != nil {
		oldStop()
	}
	return nil
}

// Run observes, campaigns and decides until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	active := c.c.Spec.Regions.Primary.Name
	if st, err := c.c.Store.State(ctx); err == nil {
		active = st.Active
	}
	if err := c.observe(active); err != nil {
		return err
	}
	defer func() {
		c.mu.Lock()
		obs, stop := c.obs, c.stopMeter
		c.mu.Unlock()
		_ = obs.Close()
		stop()
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(4)
	go func() { defer wg.Done(); c.publishViews(ctx) }()
	go func() { defer wg.Done(); c.campaign(ctx) }()
	go func() { defer wg.Done(); c.watchViews(ctx) }()
	go func() { defer wg.Done(); c.watchQuorum(ctx) }()
	if c.c.Readiness != nil {
		wg.Add(1)
		go func() { defer wg.Done(); c.evaluateReadiness(ctx) }()
	}

	t := time.NewTicker(c.c.Tick)
	defer t.Stop()
	for {
		c.Step(ctx)
		c.mu.Lock()
		moved := c.state != nil && c.state.Active != c.observing
		now := ""
		if c.state != nil {
			now = c.state.Active
		}
		c.mu.Unlock()
		if moved {
			// The active region changed: its compute is critical now.
			if err := c.observe(now); err != nil {
				c.c.Log.Error("restarting the observer", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.wake:
		}
	}
}

// poke wakes Run to decide now.
func (c *Controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// viewWatcher is the part of store.Quorum that streams the observers'
// views; a quorum without it is only read on ticks.
type viewWatcher interface {
	WatchViews(ctx context.Context) (map[string]map[string][]byte, <-chan store.ViewEvent, error)
}

// watchViews wakes Run when an observer's verdict on a region flips, so a
// majority seeing a region fail is acted on at once, not up to a tick
// later.
func (c *Controller) watchViews(ctx context.Context) {
	w, ok := c.c.Quorum.(viewWatcher)
	if !ok {
		return
	}
	failing := map[string]bool{} // observer/view key → its last verdict
	for ctx.Err() == nil {
		_, events, err := w.WatchViews(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(c.c.Tick):
			}
			continue
		}
		for ev := range events {
			if !strings.HasPrefix(ev.Key, "view.") {
				continue
			}
			k := ev.Region + "/" + ev.Key
			var v monitor.View
			if ev.Value == nil || json.Unmarshal(ev.Value, &v) != nil {
				delete(failing, k)
				c.poke() // an observer went away: the majority may have changed
				continue
			}
			if was, seen := failing[k]; !seen || was != v.Failing {
				failing[k] = v.Failing
				if seen {
					c.poke()
				}
			}
		}
	}
}

// watchQuorum wakes Run as soon as this controller's quorum lease is no
// longer alive, so a region cut off fences itself without waiting for the
// next tick: the fence must land before the majority may promote.
func (c *Controller) watchQuorum(ctx context.Context) {
	every := max(c.policy.Lease/10, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	alive := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := c.c.Quorum.Alive(c.c.Now())
		if alive && !now {
			c.poke()
		}
		alive = now
	}
}

// leaseWatcher is the part of store.Quorum that says when a region's
// active-controller lease is gone.
type leaseWatcher interface {
	ActiveGone(ctx context.Context, region string) <-chan struct{}
}

// awaitLease wakes Run once region's active-controller lease is gone: the
// wait before a failover ends then, not at the next tick. One watch per
// region and epoch.
func (c *Controller) awaitLease(ctx context.Context, region string, epoch uint64) {
	w, ok := c.c.Quorum.(leaseWatcher)
	if !ok {
		return
	}
	key := fmt.Sprintf("%s@%d", region, epoch)
	c.mu.Lock()
	if c.awaiting == key {
		c.mu.Unlock()
		return
	}
	c.awaiting = key
	c.mu.Unlock()
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*c.policy.Lease)
		defer cancel()
		select {
		case <-w.ActiveGone(wctx, region):
			c.poke()
		case <-wctx.Done():
		}
		c.mu.Lock()
		if c.awaiting == key {
			c.awaiting = ""
		}
		c.mu.Unlock()
	}()
}

// publishViews writes this observer's views under the lease.
func (c *Controller) publishViews(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-c.views:
			b, _ := json.Marshal(v)
			pctx, cancel := context.WithTimeout(ctx, c.c.Tick)
			err := c.c.Quorum.Publish(pctx, "view."+v.Region, b)
			cancel()
			if err != nil && ctx.Err() == nil {
				c.c.Log.Debug("publishing a view failed", "region", v.Region, "err", err)
			}
		}
	}
}

// campaign stands for the election again whenever it is lost.
func (c *Controller) campaign(ctx context.Context) {
	for ctx.Err() == nil {
		if err := c.c.Quorum.Campaign(ctx); err != nil && ctx.Err() == nil {
			c.c.Log.Debug("campaign failed; standing again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(c.c.Tick):
			}
			continue
		}
		if ctx.Err() == nil {
			c.c.Log.Info("this controller is the leader", "region", c.c.Region)
			c.poke()
		}
		// Campaign returned: leader until the lease goes. Wait for that.
		for ctx.Err() == nil && c.c.Quorum.IsLeader() {
			select {
			case <-ctx.Done():
			case <-time.After(c.c.Tick):
			}
		}
	}
}

// Status is the controller's last published status.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	if c.obs != nil {
		s.Targets = c.obs.Targets()
	}
	return s
}

// Views are this controller's own observer's current views, one per region.
func (c *Controller) Views() []monitor.View {
	c.mu.Lock()
	obs := c.obs
	c.mu.Unlock()
	if obs == nil {
		return nil
	}
	return obs.Views()
}

// LastState is the state this controller read last (nil before the first
// read): what the traffic it hosts follows.
func (c *Controller) LastState() *lifeboat.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Results are the kept probe results of every target this controller's
// observer probes.
func (c *Controller) Results() []monitor.ProbeResult {
	c.mu.Lock()
	obs := c.obs
	c.mu.Unlock()
	if obs == nil {
		return nil
	}
	var out []monitor.ProbeResult
	for _, t := range obs.Targets() {
		rs, _ := obs.Results(t.Target.Name())
		out = append(out, rs...)
	}
	return out
}

// Step gathers the situation once, decides, publishes the decision and
// acts on it.
func (c *Controller) Step(ctx context.Context) monitor.Decision {
	sctx, cancel := context.WithTimeout(ctx, c.c.Tick)
	defer cancel()
	sit := c.situation(sctx)
	d := monitor.Decide(sit)
	c.mu.Lock()
	if sit.Quorum && c.fenced != 0 && (sit.Epoch > c.fenced || sit.Active != c.c.Region) {
		// The quorum is back and the service moved on (a failover, then a
		// rejoin): this region's fence was taken over by the plans.
		c.fenced, c.fenceFailures = 0, 0
	}
	c.status.Leader, c.status.Quorum, c.status.LastRenewed = sit.Leader, sit.Quorum, c.c.Quorum.LastRenewed()
	c.status.Decision, c.status.DecidedAt, c.status.Readiness = d, sit.Now, sit.Readiness
	c.status.Fenced = c.fenced != 0
	c.status.Exposure = nil
	for _, m := range c.meters {
		c.status.Exposure = append(c.status.Exposure, m.Exposure())
	}
	st := c.status
	c.mu.Unlock()
	if b, err := json.Marshal(st); err == nil {
		_ = c.c.Quorum.Publish(sctx, "controller", b)
	}
	c.act(ctx, d)
	if d.Action == monitor.ActionNone && c.mayRejoin(sit) {
		c.rejoin(ctx, sit)
	}
	return d
}

// mayRejoin says whether the leader should rebuild the other region's
// database copies now: after a failover the old primary region is back (its
// observer publishes again) and the state still has a geo-replica copy
// there that is not a replica. Automatic mode only; in notify mode the
// readiness checks show it.
func (c *Controller) mayRejoin(sit monitor.Situation) bool {
	if c.policy.Mode != lifeboat.MonitorAutomatic || !sit.Quorum || !sit.Leader || sit.RunInProgress {
		return false
	}
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st == nil || len(NeedsRejoin(c.c.Spec, st)) == 0 {
		return false
	}
	standby := c.c.Spec.Regions.Other(st.Active)
	for _, v := range sit.Views {
		if v.Observer == standby && sit.Now.Sub(v.At) < c.policy.Lease {
			return true
		}
	}
	return false
}

// NeedsRejoin lists the geo-replica copies in the region that is not active
// that are not replicas of the active primary (an old primary, fenced or
// not, after a failover).
func NeedsRejoin(s *lifeboat.Spec, st *lifeboat.State) []string {
	standby := s.Regions.Other(st.Active)
	var out []string
	for _, un := range s.UnitNames() {
		for _, dn := range lifeboat.SortedKeys(s.Units[un].Databases) {
			if s.Units[un].Databases[dn].DRMode != lifeboat.DRGeoReplica {
				continue
			}
			active := st.Resource(s, un, dn, st.Active)
			other := st.Resource(s, un, dn, standby)
			if active == nil || active.Role != lifeboat.DBPrimary || other == nil || other.Role == lifeboat.DBReplica {
				continue
			}
			out = append(out, other.Name)
		}
	}
	return out
}

// rejoin runs the rejoin plan. A rejoin that fails is cancelled (nothing in
// it is unsafe to stop), so that it never leaves a run in progress that
// would block the next automatic failover; it is tried again later.
func (c *Controller) rejoin(ctx context.Context, sit monitor.Situation) {
	c.mu.Lock()
	if time.Since(c.rejoinFailedAt) < c.policy.Lease*5 {
		c.mu.Unlock()
		return // give a region that just came back a moment
	}
	st := c.state
	c.mu.Unlock()
	p, err := planner.Plan(c.c.Spec, st, lifeboat.IntentRejoin, "")
	if err != nil {
		c.c.Log.Error("rejoin cannot be planned", "err", err)
		return
	}
	c.c.Log.Warn("rejoining the old primary region as a standby", "region", c.c.Spec.Regions.Other(st.Active), "copies", strings.Join(NeedsRejoin(c.c.Spec, st), ", "))
	eng, err := c.engine()
	if err != nil {
		c.c.Log.Error("engine", "err", err)
		return
	}
	f, err := eng.Start(ctx, p)
	if err != nil {
		c.c.Log.Error("the rejoin could not start", "err", err)
		return
	}
	<-f.Done()
	if err := f.Error(); err != nil {
		c.mu.Lock()
		c.rejoinFailedAt = time.Now()
		c.mu.Unlock()
		c.c.Log.Error("the rejoin failed; cancelling it, will try again", "run", f.RunID(), "err", err)
		if cf, cerr := eng.Cancel(ctx, f.RunID()); cerr == nil {
			<-cf.Done()
		}
		return
	}
	c.c.Log.Warn("rejoin done: the old primary region is a standby again", "run", f.RunID())
}

// engine builds an engine whose runs are by Automatic.
func (c *Controller) engine() (*engine.Engine, error) {
	ec := engine.DefaultConfig()
	ec.Store = c.c.Store
	ec.By = Automatic
	ec.Bind = func(run string, step *lifeboat.Step) (lifeboat.Action, error) {
		return lifeboat.Bind(c.c.Spec, c.c.Drivers, run, step)
	}
	ec.OnEvent = func(e engine.Event) {
		switch {
		case e.Step == nil:
		case e.Err != nil:
			c.c.Log.Warn("step", "run", e.Run, "step", e.Step.ID, "event", e.Kind, "attempt", e.Attempt, "err", e.Err)
		case e.Kind == lifeboat.RecDone:
			c.c.Log.Info("step done", "run", e.Run, "step", e.Step.ID)
		}
	}
	return engine.New(ec)
}

func (c *Controller) situation(ctx context.Context) monitor.Situation {
	s := c.c.Spec
	now := c.c.Now()
	sit := monitor.Situation{
		Now: now, Policy: c.policy, Self: c.c.Region,
		Primary: s.Regions.Primary.Name, Secondary: s.Regions.Secondary.Name,
		Observers: regions(s),
		Quorum:    c.c.Quorum.Alive(now),
		Leader:    c.c.Quorum.IsLeader(),
	}
	if s.Regions.Witness != nil {
		sit.Witness = s.Regions.Witness.Name
	}
	if !sit.Quorum {
		sit.QuorumLostAt = c.c.Quorum.LastRenewed()
		sit.Leader = false
	}
	if st, err := c.c.Store.State(ctx); err == nil {
		c.mu.Lock()
		c.state = st
		c.mu.Unlock()
	}
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st == nil {
		// Never read the state: nothing is known to be active here.
		st = lifeboat.InitialState(s, now)
	}
	sit.Active, sit.Epoch, sit.RunInProgress = st.Active, st.Epoch, st.Run != ""

	if all, err := c.c.Quorum.Views(ctx); err == nil {
		for _, keys := range all {
			for k, b := range keys {
				if !strings.HasPrefix(k, "view.") {
					continue
				}
				var v monitor.View
				if json.Unmarshal(b, &v) == nil {
					sit.Views = append(sit.Views, v)
				}
			}
		}
	}
	sort.Slice(sit.Views, func(i, j int) bool {
		if sit.Views[i].Observer != sit.Views[j].Observer {
			return sit.Views[i].Observer < sit.Views[j].Observer
		}
		return sit.Views[i].Region < sit.Views[j].Region
	})
	if sit.Quorum {
		if st.Active == c.c.Region {
			// The active region's controller keeps its key under the
			// lease: the other side waits for it to lapse.
			_ = c.c.Quorum.HoldActive(ctx)
		}
		if held, err := c.c.Quorum.ActiveHeld(ctx, st.Active); err == nil {
			sit.ActiveControllerKey = held
		} else {
			sit.ActiveControllerKey = true // unknown: assume it may still write
		}
	}
	if runs, err := c.c.Store.Runs(ctx); err == nil {
		var last time.Time
		for _, r := range runs {
			if r.By == Automatic && r.Plan != nil && r.Plan.Intent == lifeboat.IntentFailover && r.StartedAt.After(last) {
				last = r.StartedAt
			}
		}
		sit.LastAutomatic = last
		// A person acknowledges an automatic failover by running the next
		// plan (failback, switchover) themselves.
		for _, r := range runs {
			if !last.IsZero() && r.By != Automatic && r.StartedAt.After(last) {
				sit.Acknowledged = true
			}
		}
	}
	if c.c.Readiness != nil && sit.Quorum && sit.Leader {
		c.mu.Lock()
		sit.Readiness = c.readiness
		c.mu.Unlock()
	}
	return sit
}

// evaluateReadiness keeps c.readiness fresh while this controller leads.
func (c *Controller) evaluateReadiness(ctx context.Context) {
	every := c.c.ReadinessEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	for {
		if c.c.Quorum.IsLeader() {
			rctx, cancel := context.WithTimeout(ctx, every)
			checks := c.c.Readiness(rctx)
			cancel()
			c.mu.Lock()
			c.readiness = checks
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// act does what the decision says.
func (c *Controller) act(ctx context.Context, d monitor.Decision) {
	switch d.Action {
	case monitor.ActionFenceSelf:
		c.fenceSelf(ctx, d)
	case monitor.ActionFailover:
		c.failover(ctx, d)
	case monitor.ActionAdvise, monitor.ActionWait:
		if d.Action == monitor.ActionWait {
			c.awaitLease(ctx, d.From, c.epoch())
		}
		key := string(d.Action) + d.From + d.To
		c.mu.Lock()
		again := c.advised == key
		c.advised = key
		c.mu.Unlock()
		if !again {
			c.c.Log.Warn("failover "+string(d.Action), "from", d.From, "to", d.To, "why", strings.Join(d.Reasons, "; "))
		}
	default:
		c.mu.Lock()
		c.advised = ""
		c.mu.Unlock()
	}
}

// fenceSelf makes this region's databases read-only at the epoch it last
// knew, once per epoch. The fence is best effort and retried every tick
// while the decision holds; the drivers refuse it if a newer epoch already
// acted (then this region is no longer the one that must stop).
func (c *Controller) fenceSelf(ctx context.Context, d monitor.Decision) {
	c.mu.Lock()
	done := c.fenced == d.Epoch && d.Epoch != 0
	c.mu.Unlock()
	if done || c.c.Drivers.Database == nil {
		return
	}
	s := c.c.Spec
	var errs []error
	for _, un := range lifeboat.SortedKeys(s.Units) {
		for _, dn := range lifeboat.SortedKeys(s.Units[un].Databases) {
			t := lifeboat.Target{Service: s.Service, Unit: un, Component: dn, Region: c.c.Region,
				Resource: lifeboat.ResourceName(s.Service, un, dn, c.c.Region), Epoch: d.Epoch, Step: "fence-self"}
			// Past the deadline the fence is late but still wanted: give
			// each attempt a tick rather than no time at all.
			deadline := d.Deadline
			if until := time.Until(deadline); until < c.c.Tick {
				deadline = time.Now().Add(c.c.Tick)
			}
			fctx, cancel := context.WithDeadline(ctx, deadline)
			err := c.c.Drivers.Database.Fence(fctx, t)
			cancel()
			if err != nil && !errors.Is(err, lifeboat.ErrStaleEpoch) {
				errs = append(errs, fmt.Errorf("%s: %w", t.Resource, err))
			}
		}
	}
	if len(errs) > 0 {
		c.mu.Lock()
		c.fenceFailures++
		n := c.fenceFailures
		c.mu.Unlock()
		if n == 1 || n%20 == 0 { // every tick would flood the log
			c.c.Log.Error("fencing this region failed; retrying every tick", "region", c.c.Region, "deadline", d.Deadline, "attempts", n, "err", errors.Join(errs...))
		}
		return
	}
	c.mu.Lock()
	c.fenced = d.Epoch
	c.status.Fenced = true
	c.mu.Unlock()
	c.c.Log.Warn("lost the quorum: this region fenced itself", "region", c.c.Region, "epoch", d.Epoch, "why", strings.Join(d.Reasons, "; "))
}

// failover runs the failover plan, unless the state moved on since the
// decision (another leader acted).
func (c *Controller) failover(ctx context.Context, d monitor.Decision) {
	st, err := c.c.Store.State(ctx)
	if err != nil {
		c.c.Log.Error("failover decided but the state cannot be read", "err", err)
		return
	}
	if st.Epoch != d.Epoch || st.Active != d.From || st.Run != "" {
		c.c.Log.Info("failover decided at a state that has changed; deciding again", "epoch", st.Epoch, "active", st.Active)
		return
	}
	p, err := planner.Plan(c.c.Spec, st, lifeboat.IntentFailover, d.To)
	if err != nil {
		c.c.Log.Error("failover decided but cannot be planned", "err", err)
		return
	}
	eng, err := c.engine()
	if err != nil {
		c.c.Log.Error("engine", "err", err)
		return
	}
	c.c.Log.Warn("automatic failover", "from", d.From, "to", d.To, "epoch", p.Epoch, "why", strings.Join(d.Reasons, "; "))
	f, err := eng.Start(ctx, p)
	if err != nil {
		c.c.Log.Error("the failover could not start", "err", err)
		return
	}
	<-f.Done()
	if err := f.Error(); err != nil {
		c.c.Log.Error("the automatic failover failed; 'lifeboat resume' goes on, 'lifeboat cancel' cleans up", "run", f.RunID(), "err", err)
		return
	}
	c.c.Log.Warn("automatic failover done", "run", f.RunID(), "to", d.To)
}

// regions are the spec's regions, witness included.
func regions(s *lifeboat.Spec) []string {
	out := []string{s.Regions.Primary.Name, s.Regions.Secondary.Name}
	if s.Regions.Witness != nil && s.Regions.Witness.Name != "" {
		out = append(out, s.Regions.Witness.Name)
	}
	return out
}

// epoch is the epoch of the state read last (0 before the first read).
func (c *Controller) epoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == nil {
		return 0
	}
	return c.state.Epoch
}
