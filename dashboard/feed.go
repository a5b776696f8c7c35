package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/controller"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/status"
)

// Snapshot is what the page shows, pushed on /ui/events whenever it
// changes. The fast part (active region, epoch, resources, the run and its
// steps) is read from the store every Poll; the slow part (live routes,
// readiness, controllers, lag) every Refresh and after every move.
type Snapshot struct {
	At      time.Time `json:"at"`
	Service string    `json:"service"`
	Active  string    `json:"active"`
	Home    string    `json:"home"`
	Away    bool      `json:"away"`
	Since   time.Time `json:"since"`
	Epoch   uint64    `json:"epoch"`

	Regions    []Region          `json:"regions"`
	Components []Component       `json:"components"`
	Run        *RunProgress      `json:"run,omitempty"`
	Traffic    []status.Route    `json:"traffic"`
	Readiness  []monitor.Check   `json:"readiness"`
	Ready      bool              `json:"ready"`
	Leader     string            `json:"leader,omitempty"`
	Decision   *monitor.Decision `json:"decision,omitempty"`
	// Lag is the chart's history, oldest first; LagSource says where it
	// comes from: "controller" (the RPO exposure the active region's
	// controller measures) or "driver" (the standby's lag as its driver
	// reports it).
	Lag       []LagPoint `json:"lag"`
	LagSource string     `json:"lag_source,omitempty"`
	// RPOSeconds is the objective, drawn on the chart.
	RPOSeconds float64 `json:"rpo_seconds"`
	// SlowAt is when the slow part was last read.
	SlowAt time.Time `json:"slow_at"`
	// Errors say what could not be read, for the banner.
	Errors []string `json:"errors,omitempty"`
}

// Region is one region of the spec.
type Region struct {
	Name   string `json:"name"`
	Role   string `json:"role"` // primary, secondary, witness
	Active bool   `json:"active"`
	// Health: "up", "down" (a component's probe is down) or "" (no probe
	// publishes).
	Health     string             `json:"health"`
	Controller *controller.Status `json:"controller,omitempty"`
}

// Component is one resource with its quadrant and health.
type Component struct {
	Resource  string `json:"resource"`
	Unit      string `json:"unit"`
	Component string `json:"component"`
	Kind      string `json:"kind"`
	Region    string `json:"region"`
	Quadrant  string `json:"quadrant"`
	State     string `json:"state"`
	Exists    bool   `json:"exists"`
	Epoch     uint64 `json:"epoch"`
	// Health is the probes' verdict ("up", "down", "unknown"), "" when no
	// controller probes it.
	Health string `json:"health,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// RunProgress is the run in progress (or, when none is, the last run)
// with every step's progress from the journal.
type RunProgress struct {
	ID         string `json:"id"`
	Intent     string `json:"intent"`
	From       string `json:"from"`
	To         string `json:"to"`
	Status     string `json:"status"`
	InProgress bool   `json:"in_progress"`
	// Interrupted: the run says running but no lifeboat process runs it
	// (its process died); resume or cancel it.
	Interrupted bool              `json:"interrupted,omitempty"`
	By          string            `json:"by,omitempty"`
	StartedAt   time.Time         `json:"started_at"`
	EndedAt     time.Time         `json:"ended_at,omitzero"`
	Error       string            `json:"error,omitempty"`
	Done        int               `json:"done"`
	Total       int               `json:"total"`
	Steps       []StepView        `json:"steps"`
	Waiting     []status.Approval `json:"waiting,omitempty"`
}

// StepView is one step and how far it got.
type StepView struct {
	ID       string `json:"id"`
	Op       string `json:"op"`
	Region   string `json:"region,omitempty"`
	Why      string `json:"why,omitempty"`
	Approval string `json:"approval,omitempty"`
	Cleanup  bool   `json:"cleanup,omitempty"`
	// Status: pending, running, waiting, approved, done, skipped, failed,
	// cancelled, undone.
	Status    string    `json:"status"`
	Attempt   int       `json:"attempt,omitempty"`
	Error     string    `json:"error,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	Estimate  string    `json:"estimate,omitempty"`
}

// LagPoint is one sample of the chart.
type LagPoint struct {
	At       time.Time `json:"at"`
	Database string    `json:"database"`
	Seconds  float64   `json:"seconds"`
	Bytes    int64     `json:"bytes"`
	// Bounded false: the loss could not be bounded (drawn as a gap).
	Bounded bool `json:"bounded"`
}

// feed reads the store while someone watches and publishes snapshots.
type feed struct {
	c    Config
	wake chan struct{}
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu     sync.Mutex
	subs   map[chan struct{}]struct{}
	latest []byte
	seq    uint64
}

func newFeed(c Config) *feed {
	f := &feed{c: c, wake: make(chan struct{}, 1), done: make(chan struct{}), subs: map[chan struct{}]struct{}{}}
	f.wg.Add(1)
	go f.loop()
	return f
}

func (f *feed) close() {
	f.once.Do(func() { close(f.done) })
	f.wg.Wait()
}

// subscribe returns a channel signalled on every new snapshot.
func (f *feed) subscribe() (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	if f.latest != nil {
		ch <- struct{}{}
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return ch, func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}
}

func (f *feed) snapshot() ([]byte, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest, f.seq
}

func (f *feed) watched() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs) > 0
}

func (f *feed) publish(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latest = b
	f.seq++
	for ch := range f.subs {
		select {
		case ch <- struct{}{}:
		default: // it has a signal pending: it reads the latest anyway
		}
	}
}

// fast is what is read every Poll.
type fast struct {
	state *lifeboat.State
	run   *RunProgress
	err   string
}

// slow is what is read every Refresh.
type slow struct {
	at       time.Time
	traffic  []status.Route
	ctrls    map[string]controller.Status
	checks   []monitor.Check
	lag      []LagPoint
	source   string
	errs     []string
	forEpoch uint64
}

func (f *feed) loop() {
	defer f.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-f.done
		cancel()
	}()
	var (
		cache      runCache
		lastMove   string // active, epoch and run at the last slow read
		lastFast   []byte
		sl         slow
		lag        []LagPoint
		slowCh     = make(chan slow, 1)
		slowBusy   bool
		slowAt     time.Time
		lastPushed []byte
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if !f.watched() {
			select {
			case <-f.wake:
			case <-f.done:
				return
			}
		}
		fs := f.readFast(ctx, &cache)
		changed := false
		if fb, _ := json.Marshal([]any{fs.state, fs.run, fs.err}); !bytes.Equal(fb, lastFast) {
			lastFast, changed = fb, true
		}
		now := f.c.Now()
		if fs.state != nil && !slowBusy {
			due := now.Sub(slowAt) >= f.c.Refresh || (move(fs.state) != lastMove && now.Sub(slowAt) >= f.c.MinRefresh)
			if due {
				slowBusy, slowAt, lastMove = true, now, move(fs.state)
				st := fs.state
				go func() { slowCh <- f.readSlow(ctx, st) }()
			}
		}
		select {
		case s := <-slowCh:
			slowBusy, sl = false, s
			lag = append(lag, s.lag...)
			if over := len(lag) - f.c.History; over > 0 {
				lag = append([]LagPoint(nil), lag[over:]...)
			}
			changed = true
		default:
		}
		if changed || lastPushed == nil {
			b, err := json.Marshal(f.compose(fs, sl, lag))
			if err == nil && !bytes.Equal(b, lastPushed) {
				lastPushed = b
				f.publish(b)
			}
		}
		timer.Reset(f.c.Poll)
		select {
		case <-timer.C:
		case s := <-slowCh:
			// Push the slow part as soon as it is read.
			slowCh <- s
		case <-f.done:
			return
		}
	}
}

// move says where the service is: a slow read follows every move.
func move(st *lifeboat.State) string {
	return fmt.Sprintf("%s/%d/%s", st.Active, st.Epoch, st.Run)
}

// runCache keeps the last run once it has ended: it is not read again
// until the service moves.
type runCache struct {
	move string
	run  *RunProgress
}

// readFast reads the state and the run in progress (or the newest run).
func (f *feed) readFast(ctx context.Context, cache *runCache) fast {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := f.c.Store.State(rctx)
	if err != nil {
		return fast{err: "reading the state: " + err.Error()}
	}
	out := fast{state: st}
	id := st.Run
	if id == "" && cache.move == move(st) {
		out.run = cache.run
		return out
	}
	if id == "" {
		// The run may have started and ended between two reads: ask for
		// the newest when the service moved, or the first time.
		if runs, err := f.c.Store.Runs(rctx); err == nil && len(runs) > 0 {
			sort.Slice(runs, func(i, j int) bool { return runs[i].StartedAt.After(runs[j].StartedAt) })
			id = runs[0].ID
		}
	}
	if id == "" {
		cache.move, cache.run = move(st), nil
		return out
	}
	run, err := f.c.Store.Run(rctx, id)
	if err != nil {
		out.err = fmt.Sprintf("reading run %s: %v", id, err)
		return out
	}
	recs, err := f.c.Store.Journal(rctx, id)
	if err != nil {
		out.err = fmt.Sprintf("reading the journal of run %s: %v", id, err)
		return out
	}
	out.run = progress(run, recs, st.Run == id)
	if run.Status == lifeboat.RunRunning {
		// A read-only ownership check (Store.Owned): a run whose process
		// died says so instead of "running" for ever.
		if rv := status.Run(rctx, f.c.Store, run, recs); rv.Interrupted {
			out.run.Status, out.run.Interrupted = "interrupted", true
		}
	}
	if st.Run == "" {
		cache.move, cache.run = move(st), out.run
	} else {
		cache.move = ""
	}
	return out
}

// progress follows each step through the journal.
func progress(run *lifeboat.Run, recs []lifeboat.Record, inProgress bool) *RunProgress {
	rv := status.Run(context.Background(), nil, run, recs)
	p := &RunProgress{ID: run.ID, Status: string(run.Status), InProgress: inProgress, By: run.By, StartedAt: run.StartedAt,
		EndedAt: run.EndedAt, Error: run.Error, Done: rv.Done, Total: rv.Total, Waiting: rv.Waiting}
	if run.Plan == nil {
		return p
	}
	p.Intent, p.From, p.To = string(run.Plan.Intent), run.Plan.From, run.Plan.To
	idx := map[string]int{}
	for i, s := range run.Plan.Steps {
		idx[s.ID] = i
		sv := StepView{ID: s.ID, Op: string(s.Op), Region: s.Region, Why: s.Why, Approval: s.Approval, Cleanup: s.Cleanup, Status: "pending"}
		if s.Estimate > 0 {
			sv.Estimate = lifeboat.FormatDuration(s.Estimate)
		}
		p.Steps = append(p.Steps, sv)
	}
	for _, r := range recs {
		i, ok := idx[r.Step]
		if !ok {
			continue
		}
		s := &p.Steps[i]
		switch r.Kind {
		case lifeboat.RecStart:
			s.Status = "running"
			if s.StartedAt.IsZero() {
				s.StartedAt = r.At
			}
		case lifeboat.RecAttempt:
			s.Attempt = r.Attempt
		case lifeboat.RecError:
			s.Error = r.Error
		case lifeboat.RecWaiting:
			s.Status = "waiting"
		case lifeboat.RecApproved:
			s.Status = "approved"
		case lifeboat.RecDone, lifeboat.RecSkipped, lifeboat.RecFailed, lifeboat.RecCancelled, lifeboat.RecUndone:
			s.Status, s.EndedAt = string(r.Kind), r.At
			if r.Kind == lifeboat.RecFailed || r.Kind == lifeboat.RecSkipped {
				s.Error = r.Error
			}
			if r.Kind == lifeboat.RecDone {
				s.Error = ""
			}
		}
	}
	return p
}

// readSlow asks the drivers and the controllers.
func (f *feed) readSlow(ctx context.Context, st *lifeboat.State) slow {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s := slow{at: f.c.Now(), forEpoch: st.Epoch}
	s.traffic = status.Routes(ctx, f.c.Spec, st)
	ctrls, err := status.Controllers(ctx, f.c.Spec, f.c.Store)
	if err != nil {
		s.errs = append(s.errs, "reading the controllers: "+err.Error())
	}
	s.ctrls = ctrls
	s.checks = status.Readiness(ctx, f.c.Spec, st, f.c.Store, ctrls)
	if c, ok := ctrls[st.Active]; ok && len(c.Exposure) > 0 {
		s.source = "controller"
		for _, e := range c.Exposure {
			s.lag = append(s.lag, LagPoint{At: e.At, Database: e.Database, Seconds: e.LagTime.Seconds(), Bytes: e.LagBytes, Bounded: e.Bounded})
		}
		return s
	}
	d, err := f.c.Drivers(f.c.Spec, st)
	if err != nil || d.Database == nil {
		return s
	}
	s.source = "driver"
	for _, r := range st.SortedResources() {
		if r.Kind != lifeboat.KindDatabase || r.Region == st.Active || !r.Exists || r.Role != lifeboat.DBReplica {
			continue
		}
		ds, err := d.Database.Status(ctx, lifeboat.Target{Service: f.c.Spec.Service, Unit: r.Unit, Component: r.Component,
			Region: r.Region, Resource: r.Name, Epoch: st.Epoch})
		p := LagPoint{At: s.at, Database: r.Unit + "." + r.Component}
		if err == nil {
			p.Seconds, p.Bytes, p.Bounded = ds.Lag.Seconds(), ds.LagBytes, true
		}
		s.lag = append(s.lag, p)
	}
	return s
}

// compose puts the fast and the slow parts together.
func (f *feed) compose(fs fast, sl slow, lag []LagPoint) *Snapshot {
	spec := f.c.Spec
	s := &Snapshot{At: f.c.Now(), Service: spec.Service, Home: spec.Regions.Primary.Name, Run: fs.run,
		Traffic: sl.traffic, Readiness: sl.checks, Lag: lag, LagSource: sl.source, SlowAt: sl.at, RPOSeconds: spec.Objectives.RPO.D().Seconds(), Errors: append([]string(nil), sl.errs...)}
	if s.Lag == nil {
		s.Lag = []LagPoint{}
	}
	if fs.err != "" {
		s.Errors = append(s.Errors, fs.err)
	}
	s.Ready = len(status.Blocking(sl.checks)) == 0 && sl.checks != nil
	health := map[string]string{} // region/unit.component → worst probe verdict
	var probes *controller.Status
	for region, c := range sl.ctrls {
		if c.Leader {
			d := c.Decision
			s.Leader, s.Decision = region, &d
			cc := c
			probes = &cc
		}
	}
	if probes == nil {
		for _, c := range sl.ctrls {
			if len(c.Targets) > 0 {
				cc := c
				probes = &cc
				break
			}
		}
	}
	if probes != nil {
		for _, t := range probes.Targets {
			k := t.Target.Region + "/" + t.Target.Component
			h := string(t.Verdict.Health)
			if old, ok := health[k]; !ok || rankHealth(h) > rankHealth(old) {
				health[k] = h
			}
		}
	}
	if fs.state == nil {
		return s
	}
	st := fs.state
	s.Active, s.Since, s.Epoch, s.Away = st.Active, st.Since, st.Epoch, st.Active != s.Home
	regionHealth := map[string]string{}
	for _, r := range st.SortedResources() {
		c := Component{Resource: r.Name, Unit: r.Unit, Component: r.Component, Kind: string(r.Kind), Region: r.Region,
			Quadrant: r.Quadrant(spec), State: status.Describe(r), Exists: r.Exists, Epoch: r.Epoch}
		c.Health = health[r.Region+"/"+r.Unit+"."+r.Component]
		if c.Health != "" && rankHealth(c.Health) > rankHealth(regionHealth[r.Region]) {
			regionHealth[r.Region] = c.Health
		}
		s.Components = append(s.Components, c)
	}
	add := func(name, role string) {
		if name == "" {
			return
		}
		rg := Region{Name: name, Role: role, Active: name == st.Active, Health: regionHealth[name]}
		if c, ok := sl.ctrls[name]; ok {
			cc := c
			cc.Targets, cc.Readiness, cc.Exposure = nil, nil, nil // shown elsewhere
			rg.Controller = &cc
		}
		s.Regions = append(s.Regions, rg)
	}
	add(spec.Regions.Primary.Name, "primary")
	add(spec.Regions.Secondary.Name, "secondary")
	if w := spec.Regions.Witness; w != nil {
		add(w.Name, "witness")
	}
	return s
}

func rankHealth(h string) int {
	switch h {
	case "up":
		return 1
	case "unknown":
		return 2
	case "down":
		return 3
	}
	return 0
}
