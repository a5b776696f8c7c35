package metrics

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/controller"
)

// RunSource is what the run metrics read at scrape time: the store's runs
// and their journals. Every lifeboat.Store is one.
type RunSource interface {
	Runs(ctx context.Context) ([]*lifeboat.Run, error)
	Journal(ctx context.Context, run string) ([]lifeboat.Record, error)
}

var _ RunSource = lifeboat.Store(nil)

// Who started a run, as the label by says it.
const (
	ByAutomatic = "automatic" // a controller on its own (controller.Automatic)
	ByPerson    = "person"    // anyone else: a person, a script, a drill
)

// RunBuckets and StepBuckets are the histograms' upper bounds, in seconds:
// a whole run takes seconds to an hour (an approval waits for a person);
// a step milliseconds (an epoch bump) to minutes (a database restore).
var (
	RunBuckets  = []float64{1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600}
	StepBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
)

var (
	descStoreUp = prometheus.NewDesc("lifeboat_store_up",
		"1 if this scrape read the runs and their journals from the state store, 0 if a read failed (the run metrics are then missing or partial).",
		nil, nil)
	descStarted = prometheus.NewDesc("lifeboat_runs_started_total",
		"Runs started, by intent (failover, failback, switchover, rejoin) and by who: automatic (a controller on its own) or person (anyone else: a person, a script, a drill).",
		[]string{"intent", "by"}, nil)
	descEnded = prometheus.NewDesc("lifeboat_runs_ended_total",
		"Runs ended for good, by intent, by who and outcome: succeeded (every step done) or cancelled (stopped by a person, cleanup done).",
		[]string{"intent", "by", "outcome"}, nil)
	descOpen = prometheus.NewDesc("lifeboat_runs_open",
		"Runs not ended, by intent and status: running, waiting (an approval step waits for a person) or failed (a step failed for good: 'lifeboat resume' or 'lifeboat cancel').",
		[]string{"intent", "status"}, nil)
	descLastStart = prometheus.NewDesc("lifeboat_run_last_start_timestamp_seconds",
		"When the latest run of the intent started (Unix time). Absent if none ever did.",
		[]string{"intent"}, nil)
	descRunDuration = prometheus.NewDesc("lifeboat_run_duration_seconds",
		"How long ended runs took, start to end, by intent and outcome (succeeded or cancelled). Approval steps count the time a person took.",
		[]string{"intent", "outcome"}, nil)
	descStepDuration = prometheus.NewDesc("lifeboat_step_duration_seconds",
		"How long plan steps took, from the journal: from the step's start to done, failed or skipped (a resumed step counts once per attempt to finish), by intent, op (e.g. database.promote, traffic.switch) and outcome.",
		[]string{"intent", "op", "outcome"}, nil)
)

var (
	knownIntents = []lifeboat.Intent{lifeboat.IntentFailover, lifeboat.IntentFailback, lifeboat.IntentSwitchover, lifeboat.IntentRejoin}
	openStatuses = []lifeboat.RunStatus{lifeboat.RunRunning, lifeboat.RunWaiting, lifeboat.RunFailed}
	endOutcomes  = []lifeboat.RunStatus{lifeboat.RunSucceeded, lifeboat.RunCancelled}
)

// stepTime is one step's observed duration.
type stepTime struct {
	op      string
	outcome string
	took    time.Duration
}

// RunCollector exports the runs' counts and durations. A run that has
// ended never changes again, so its journal is read once and its step
// durations kept; the run in progress is read at every scrape.
type RunCollector struct {
	src     RunSource
	timeout time.Duration
	log     *slog.Logger

	mu    sync.Mutex            // one scrape at a time reads and fills steps
	steps map[string][]stepTime // by run ID, ended runs only
}

// NewRunCollector reads src at every scrape, each scrape's reads bounded
// by timeout.
func NewRunCollector(src RunSource, timeout time.Duration, log *slog.Logger) *RunCollector {
	if log == nil {
		log = slog.Default()
	}
	return &RunCollector{src: src, timeout: timeout, log: log, steps: map[string][]stepTime{}}
}

// Describe implements prometheus.Collector.
func (c *RunCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStoreUp, descStarted, descEnded, descOpen, descLastStart, descRunDuration, descStepDuration} {
		ch <- d
	}
}

// histogram accumulates observations into a const histogram.
type histogram struct {
	bounds []float64
	counts []uint64 // per bucket, not cumulative
	count  uint64
	sum    float64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds))}
}

func (h *histogram) observe(v float64) {
	h.count++
	h.sum += v
	if i := sort.SearchFloat64s(h.bounds, v); i < len(h.bounds) {
		h.counts[i]++
	}
}

func (h *histogram) metric(d *prometheus.Desc, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.bounds))
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		buckets[b] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.count, h.sum, buckets, labels...)
}

// Collect implements prometheus.Collector.
func (c *RunCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	runs, err := c.src.Runs(ctx)
	if err != nil {
		c.log.Warn("metrics: cannot read the runs from the state store; run metrics are missing from this scrape", "err", err)
		ch <- prometheus.MustNewConstMetric(descStoreUp, prometheus.GaugeValue, 0)
		return
	}
	up := true

	type ibKey struct{ intent, by string }
	type iboKey struct{ intent, by, outcome string }
	type isKey struct{ intent, status string }
	type ioKey struct{ intent, outcome string }
	type iooKey struct{ intent, op, outcome string }
	started := map[ibKey]uint64{}
	ended := map[iboKey]uint64{}
	open := map[isKey]uint64{}
	lastStart := map[string]time.Time{}
	runHist := map[ioKey]*histogram{}
	stepHist := map[iooKey]*histogram{}
	// Every known combination is exported, at 0 if need be: a counter that
	// appears only at its first increment hides that increment from rate().
	intents := map[string]bool{}
	for _, in := range knownIntents {
		intents[string(in)] = true
	}
	for _, r := range runs {
		if r.Plan != nil && r.Plan.Intent != "" {
			intents[string(r.Plan.Intent)] = true
		}
	}
	for in := range intents {
		for _, by := range []string{ByAutomatic, ByPerson} {
			started[ibKey{in, by}] = 0
			for _, o := range endOutcomes {
				ended[iboKey{in, by, string(o)}] = 0
			}
		}
		for _, s := range openStatuses {
			open[isKey{in, string(s)}] = 0
		}
		for _, o := range endOutcomes {
			runHist[ioKey{in, string(o)}] = newHistogram(RunBuckets)
		}
	}

	live := map[string]bool{}
	for _, r := range runs {
		live[r.ID] = true
		intent := "unknown"
		if r.Plan != nil && r.Plan.Intent != "" {
			intent = string(r.Plan.Intent)
		}
		by := ByPerson
		if r.By == controller.Automatic {
			by = ByAutomatic
		}
		started[ibKey{intent, by}]++
		if r.StartedAt.After(lastStart[intent]) {
			lastStart[intent] = r.StartedAt
		}
		if r.Status.Done() {
			ended[iboKey{intent, by, string(r.Status)}]++
			if !r.EndedAt.IsZero() && !r.EndedAt.Before(r.StartedAt) {
				h := runHist[ioKey{intent, string(r.Status)}]
				if h == nil {
					h = newHistogram(RunBuckets)
					runHist[ioKey{intent, string(r.Status)}] = h
				}
				h.observe(r.EndedAt.Sub(r.StartedAt).Seconds())
			}
		} else {
			open[isKey{intent, string(r.Status)}]++
		}

		steps, ok := c.steps[r.ID]
		if !ok {
			recs, err := c.src.Journal(ctx, r.ID)
			if err != nil {
				if up {
					c.log.Warn("metrics: cannot read a run's journal from the state store; step durations are partial in this scrape", "run", r.ID, "err", err)
				}
				up = false
				continue
			}
			steps = stepTimes(r, recs)
			if r.Status.Done() {
				c.steps[r.ID] = steps // an ended run's journal is final
			}
		}
		for _, s := range steps {
			k := iooKey{intent, s.op, s.outcome}
			h := stepHist[k]
			if h == nil {
				h = newHistogram(StepBuckets)
				stepHist[k] = h
			}
			h.observe(s.took.Seconds())
		}
	}
	for id := range c.steps {
		if !live[id] {
			delete(c.steps, id) // the store no longer has it
		}
	}

	ch <- prometheus.MustNewConstMetric(descStoreUp, prometheus.GaugeValue, flag(up))
	for k, n := range started {
		ch <- prometheus.MustNewConstMetric(descStarted, prometheus.CounterValue, float64(n), k.intent, k.by)
	}
	for k, n := range ended {
		ch <- prometheus.MustNewConstMetric(descEnded, prometheus.CounterValue, float64(n), k.intent, k.by, k.outcome)
	}
	for k, n := range open {
		ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(n), k.intent, k.status)
	}
	for in, t := range lastStart {
		ch <- prometheus.MustNewConstMetric(descLastStart, prometheus.GaugeValue, unix(t), in)
	}
	for k, h := range runHist {
		ch <- h.metric(descRunDuration, k.intent, k.outcome)
	}
	for k, h := range stepHist {
		ch <- h.metric(descStepDuration, k.intent, k.op, k.outcome)
	}
}

// stepTimes pairs each step's start record with the record that ended it
// (done, failed, skipped). A step resumed after failing starts again: each
// start-to-end is one observation.
func stepTimes(r *lifeboat.Run, recs []lifeboat.Record) []stepTime {
	ops := map[string]string{}
	if r.Plan != nil {
		for _, s := range r.Plan.Steps {
			ops[s.ID] = string(s.Op)
		}
	}
	begun := map[string]time.Time{}
	var out []stepTime
	for _, rec := range recs {
		if rec.Step == "" {
			continue
		}
		switch rec.Kind {
		case lifeboat.RecStart:
			if _, ok := begun[rec.Step]; !ok {
				begun[rec.Step] = rec.At
			}
		case lifeboat.RecDone, lifeboat.RecFailed, lifeboat.RecSkipped:
			start, ok := begun[rec.Step]
			if !ok {
				continue // ended with no start on record: nothing to measure
			}
			delete(begun, rec.Step)
			op := ops[rec.Step]
			if op == "" {
				op = "unknown"
			}
			if took := rec.At.Sub(start); took >= 0 {
				out = append(out, stepTime{op: op, outcome: string(rec.Kind), took: took})
			}
		}
	}
	return out
}
