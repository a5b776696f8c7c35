package monitor

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

// OpObserve names observer errors (lifeboat.Error.Op).
const OpObserve lifeboat.Op = "monitor.observe"

// Target is one thing an observer probes in one region.
type Target struct {
	// Region is the region the target is in (the observed region).
	Region string `json:"region"`
	// Component is "unit.component", e.g. "shop.db".
	Component string `json:"component"`
	// Critical targets decide the region's verdict: the active database's
	// primary and the compute behind the traffic names. A region is
	// failing when any of its critical targets is down; the others are
	// probed and shown, not counted.
	Critical bool        `json:"critical,omitempty"`
	Probe    ProbeConfig `json:"probe"`
}

// Name identifies the target in views, status and Results:
// "region/unit.component/kind".
func (t Target) Name() string {
	return t.Region + "/" + t.Component + "/" + string(t.Probe.Kind)
}

// ObserverConfig is one observing region's set of probes.
type ObserverConfig struct {
	// Region is the observing region (View.Observer).
	Region string
	// Regions are the observed regions; a region with no target gets a
	// view that is never failing. Regions of Targets are added.
	Regions []string
	Targets []Target
	// Publish is called with a region's view when it changes, and with
	// every region's view every Interval (so a publisher can refresh what
	// it wrote under its lease). It is called from one goroutine, in
	// order, and should not block for long: probes go on meanwhile, but
	// views queue behind it.
	Publish func(View)
	// Interval between two publications of every view; default 1s.
	Interval time.Duration
}

// DefaultObserverConfig returns the defaults; set Region, Targets and
// Publish.
func DefaultObserverConfig() ObserverConfig {
	return ObserverConfig{Interval: time.Second}
}

// ValidateObserverConfig reports every problem of c at once.
func ValidateObserverConfig(c ObserverConfig) error {
	var errs []error
	if c.Region == "" {
		errs = append(errs, errors.New("observer: no Region: say which region this observer runs in"))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("observer %s: Interval is %s: it must be positive (how often every view is published)", c.Region, c.Interval))
	}
	seen := map[string]bool{}
	for i, t := range c.Targets {
		if t.Region == "" || t.Component == "" {
			errs = append(errs, fmt.Errorf("observer %s: target %d (%s) has no Region or Component: give the observed region and unit.component", c.Region, i, t.Name()))
		}
		if seen[t.Name()] {
			errs = append(errs, fmt.Errorf("observer %s: target %s is listed twice: give each region/component/kind once", c.Region, t.Name()))
		}
		seen[t.Name()] = true
		p := t.Probe
		if p.History == 0 {
			p.History = DefaultProbeConfig().History
		}
		if err := ValidateProbeConfig(p); err != nil {
			errs = append(errs, fmt.Errorf("observer %s: target %s: %w", c.Region, t.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// TargetStatus is a target with its prober's verdict, for status.
type TargetStatus struct {
	Target  Target       `json:"target"`
	Verdict ProbeVerdict `json:"verdict"`
}

// Observer runs the probes of one observing region against every region's
// targets and rolls them up into one View per observed region.
type Observer struct {
	cfg     ObserverConfig
	regions []string
	targets []Target
	probers map[string]*Prober // by Target.Name

	changed chan struct{} // a verdict changed (buffered 1: a signal, not a queue)
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once

	mu    sync.Mutex
	views map[string]View // by observed region
}

// StartObserver starts probing at once; Close stops it.
func StartObserver(c ObserverConfig) (*Observer, error) {
	if c.Interval == 0 {
		c.Interval = DefaultObserverConfig().Interval
	}
	if err := ValidateObserverConfig(c); err != nil {
		return nil, lifeboat.Permanent(OpObserve, c.Region, err)
	}
	o := &Observer{cfg: c, probers: map[string]*Prober{}, changed: make(chan struct{}, 1), views: map[string]View{}}
	regions := map[string]bool{}
	for _, r := range c.Regions {
		regions[r] = true
	}
	for _, t := range c.Targets {
		regions[t.Region] = true
		p, err := NewProber(t.Name(), t.Probe, func(ProbeVerdict) { o.signal() })
		if err != nil {
			return nil, lifeboat.Permanent(OpObserve, c.Region, err)
		}
		o.probers[t.Name()] = p
		t.Probe = p.Config()
		o.targets = append(o.targets, t)
	}
	o.regions = lifeboat.SortedKeys(regions)
	now := time.Now()
	for _, r := range o.regions {
		o.views[r] = View{Observer: c.Region, Region: r, Since: now, At: now, Reason: "ok"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	for _, p := range o.probers {
		o.wg.Add(1)
		go func() { defer o.wg.Done(); p.Run(ctx) }()
	}
	o.wg.Add(1)
	go func() { defer o.wg.Done(); o.loop(ctx) }()
	return o, nil
}

func (o *Observer) signal() {
	select {
	case o.changed <- struct{}{}:
	default:
	}
}

// loop is the only goroutine that computes views and calls Publish, so
// publications are in order and never concurrent.
func (o *Observer) loop(ctx context.Context) {
	t := time.NewTicker(o.cfg.Interval)
	defer t.Stop()
	o.roll(true) // the first views: everyone learns this observer is up
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.changed:
			o.roll(false)
		case <-t.C:
			o.roll(true)
		}
	}
}

// roll recomputes every region's view and publishes the changed ones, or
// all of them when all is set.
func (o *Observer) roll(all bool) {
	// The verdicts first, then the clock: a verdict read after now was
	// taken could be newer than now, and its Since would be cut to now.
	verdicts := make(map[string]ProbeVerdict, len(o.targets))
	for _, t := range o.targets {
		verdicts[t.Name()] = o.probers[t.Name()].Verdict()
	}
	now := time.Now()
	var out []View
	o.mu.Lock()
	for _, r := range o.regions {
		prev := o.views[r]
		v := o.rollRegion(r, prev, now, verdicts)
		if all || v.Failing != prev.Failing || v.Reason != prev.Reason {
			v.At = now
			out = append(out, v)
		} else {
			v.At = prev.At
		}
		o.views[r] = v
	}
	o.mu.Unlock()
	if o.cfg.Publish == nil {
		return
	}
	for _, v := range out {
		o.cfg.Publish(v)
	}
}

// rollRegion: failing when any critical target is down. Since is taken
// from the probers' verdicts (when the first critical target went down,
// when the last one came back) rather than from when the loop noticed.
func (o *Observer) rollRegion(region string, prev View, now time.Time, verdicts map[string]ProbeVerdict) View {
	v := View{Observer: o.cfg.Region, Region: region, Since: prev.Since}
	var down, others []string
	var firstDown, lastUp time.Time
	for _, t := range o.targets {
		if t.Region != region {
			continue
		}
		pv := verdicts[t.Name()]
		if pv.Health != HealthDown {
			if t.Critical && pv.Since.After(lastUp) {
				lastUp = pv.Since
			}
			continue
		}
		// No failure count here: the reason must stay the same while
		// nothing changes, or every probe would be a new publication.
		msg := fmt.Sprintf("%s down since %s: %s", t.Name(), pv.Since.UTC().Format(time.RFC3339Nano), pv.Last.Error)
		if !t.Critical {
			others = append(others, msg)
			continue
		}
		down = append(down, msg)
		if firstDown.IsZero() || pv.Since.Before(firstDown) {
			firstDown = pv.Since
		}
	}
	v.Failing = len(down) > 0
	switch {
	case v.Failing:
		v.Reason = "critical target down: " + strings.Join(down, "; ")
	default:
		v.Reason = "ok"
	}
	if len(others) > 0 {
		v.Reason += "; not critical: " + strings.Join(others, "; ")
	}
	if v.Failing != prev.Failing {
		since := lastUp
		if v.Failing {
			since = firstDown
		}
		// Never before the previous change, never in the future.
		if since.Before(prev.Since) || since.After(now) {
			since = now
		}
		v.Since = since
	}
	return v
}

// Views returns the current view of every observed region, by region name.
func (o *Observer) Views() []View {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]View, 0, len(o.regions))
	for _, r := range o.regions {
		out = append(out, o.views[r])
	}
	return out
}

// Results returns the kept results of the target named name (see
// Target.Name), oldest first; false when there is no such target.
func (o *Observer) Results(name string) ([]ProbeResult, bool) {
	p, ok := o.probers[name]
	if !ok {
		return nil, false
	}
	return p.Results(), true
}

// Targets returns every target with its verdict, sorted by name.
func (o *Observer) Targets() []TargetStatus {
	out := make([]TargetStatus, 0, len(o.targets))
	for _, t := range o.targets {
		v := o.probers[t.Name()].Verdict()
		if t.Probe.Kind == ProbeSQL {
			t.Probe.Address = redactDSN(t.Probe.Address) // status is shown to people
		}
		out = append(out, TargetStatus{Target: t, Verdict: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target.Name() < out[j].Target.Name() })
	return out
}

// Close stops every probe and the publishing loop and waits for them: once
// it returns, Publish is not called again.
func (o *Observer) Close() error {
	o.once.Do(func() {
		o.cancel()
		o.wg.Wait()
	})
	return nil
}
