package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/controller"
	"github.com/lifeboat-dr/lifeboat/driver/dns"
	"github.com/lifeboat-dr/lifeboat/driver/frontdoor"
	"github.com/lifeboat-dr/lifeboat/monitor"
)

// t0 is the fakes' clock: 2025-03-01T12:00:00Z, Unix 1740830400.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type fakeController struct {
	status controller.Status
	views  []monitor.View
	state  *lifeboat.State
}

func (f *fakeController) Status() controller.Status  { return f.status }
func (f *fakeController) Views() []monitor.View      { return f.views }
func (f *fakeController) LastState() *lifeboat.State { return f.state }

// east is the active region's controller, leading, just after deciding
// that there is nothing to do; its observer sees west's database down.
func eastController() *fakeController {
	target := func(region, comp string, kind monitor.ProbeKind, critical bool, v monitor.ProbeVerdict) monitor.TargetStatus {
		return monitor.TargetStatus{Target: monitor.Target{Region: region, Component: comp, Critical: critical,
			Probe: monitor.ProbeConfig{Kind: kind}}, Verdict: v}
	}
	return &fakeController{
		status: controller.Status{
			Region: "east", Leader: true, Quorum: true, LastRenewed: t0.Add(-time.Second),
			Decision:  monitor.Decision{Action: monitor.ActionNone, From: "east", Epoch: 3},
			DecidedAt: t0,
			Readiness: []monitor.Check{
				{Name: monitor.CheckStandbyStreaming, Component: "shop.db", OK: false, Blocks: true, Reason: "west is not streaming", At: t0},
				{Name: monitor.CheckLastDrill, Component: "", OK: true, Reason: "drilled yesterday", At: t0},
			},
			Exposure: []monitor.Exposure{
				{Database: "shop.db", Bounded: true, Streaming: true, LagBytes: 4096, LagTime: 1500 * time.Millisecond,
					MaxLagBytes: 8192, MaxLagTime: 2 * time.Second, LastBounded: t0, WindowBounded: true},
				{Database: "shop.ledger", Bounded: false, LagBytes: 100, LagTime: time.Second, MaxLagBytes: 100, MaxLagTime: time.Second},
			},
			Targets: []monitor.TargetStatus{
				target("east", "shop.db", monitor.ProbeSQL, true, monitor.ProbeVerdict{Health: monitor.HealthUp,
					Last: monitor.ProbeResult{Start: t0, Duration: 20 * time.Millisecond, OK: true}}),
				target("west", "shop.db", monitor.ProbeSQL, true, monitor.ProbeVerdict{Health: monitor.HealthDown, Failures: 4,
					Last: monitor.ProbeResult{Start: t0, Duration: time.Second, Error: "connection refused"}}),
				target("west", "shop.web", monitor.ProbeHTTP, false, monitor.ProbeVerdict{Health: monitor.HealthUnknown}),
			},
		},
		views: []monitor.View{
			{Observer: "east", Region: "east", Since: t0.Add(-time.Hour), At: t0, Reason: "ok"},
			{Observer: "east", Region: "west", Failing: true, Since: t0.Add(-time.Minute), At: t0, Reason: "critical target down"},
		},
		state: &lifeboat.State{Service: "shop", Epoch: 3, Active: "east", Since: t0.Add(-time.Hour)},
	}
}

type fakeRuns struct {
	mu       sync.Mutex
	runs     []*lifeboat.Run
	journals map[string][]lifeboat.Record
	reads    map[string]int // Journal calls by run
	err      error
}

func (f *fakeRuns) Runs(ctx context.Context) ([]*lifeboat.Run, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return f.runs, nil
}

func (f *fakeRuns) Journal(ctx context.Context, run string) ([]lifeboat.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads[run]++
	return f.journals[run], nil
}

func (f *fakeRuns) journalReads(run string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads[run]
}

func plan(intent lifeboat.Intent, steps ...*lifeboat.Step) *lifeboat.Plan {
	return &lifeboat.Plan{Service: "shop", Intent: intent, Steps: steps}
}

func rec(run, step string, kind lifeboat.RecordKind, at time.Duration) lifeboat.Record {
	return lifeboat.Record{Run: run, Step: step, Kind: kind, At: t0.Add(at)}
}

// someRuns: an automatic failover that succeeded in 12 s, a person's
// switchover cancelled after 100 s, and a person's failback running now.
func someRuns() *fakeRuns {
	promote := &lifeboat.Step{ID: "promote shop-db-east", Op: lifeboat.OpDatabasePromote}
	sw := &lifeboat.Step{ID: "switch shop-www", Op: lifeboat.OpTrafficSwitch}
	return &fakeRuns{
		runs: []*lifeboat.Run{
			{ID: "r3", Plan: plan(lifeboat.IntentFailback, promote), Status: lifeboat.RunRunning, StartedAt: t0.Add(time.Hour), By: "ann@laptop"},
			{ID: "r2", Plan: plan(lifeboat.IntentSwitchover, sw), Status: lifeboat.RunCancelled, StartedAt: t0.Add(time.Minute),
				EndedAt: t0.Add(time.Minute + 100*time.Second), By: "bob@laptop"},
			{ID: "r1", Plan: plan(lifeboat.IntentFailover, promote, sw), Status: lifeboat.RunSucceeded, StartedAt: t0,
				EndedAt: t0.Add(12 * time.Second), By: controller.Automatic},
		},
		journals: map[string][]lifeboat.Record{
			"r1": {
				rec("r1", "", lifeboat.RecStart, 0),
				rec("r1", promote.ID, lifeboat.RecStart, 0),
				rec("r1", promote.ID, lifeboat.RecAttempt, 0),
				rec("r1", promote.ID, lifeboat.RecDone, 200*time.Millisecond),
				rec("r1", sw.ID, lifeboat.RecStart, time.Second),
				rec("r1", sw.ID, lifeboat.RecDone, 4*time.Second),
			},
			"r2": {
				rec("r2", sw.ID, lifeboat.RecStart, time.Minute),
				rec("r2", sw.ID, lifeboat.RecFailed, time.Minute+40*time.Second),
			},
			"r3": {
				rec("r3", promote.ID, lifeboat.RecStart, time.Hour),
			},
		},
		reads: map[string]int{},
	}
}

type fakeDNS struct{ st dns.Stats }

func (f fakeDNS) Stats() dns.Stats { return f.st }

type fakeFrontDoor map[string]frontdoor.Stats

func (f fakeFrontDoor) Listeners() []string { return lifeboat.SortedKeys(f) }
func (f fakeFrontDoor) Stats(l string) frontdoor.Stats {
	return f[l]
}

func fullConfig() (Config, *fakeRuns) {
	runs := someRuns()
	c := DefaultConfig()
	c.Controller = eastController()
	c.Runs = runs
	c.DNS = fakeDNS{dns.Stats{Queries: []dns.QueryCount{
		{Protocol: "udp", Type: "A", Rcode: "NOERROR", Count: 1000},
		{Protocol: "udp", Type: "AAAA", Rcode: "NXDOMAIN", Count: 7},
		{Protocol: "tcp", Type: "SOA", Rcode: "NOERROR", Count: 2},
	}, Dropped: 3, FailingClosed: 1, Serial: 1740830400}}
	c.FrontDoor = fakeFrontDoor{
		"http":     {Accepted: 10, Routed: 8, Refused: 2, Closed: 1, Active: 3, Held: 1},
		"postgres": {Fenced: true},
	}
	return c, runs
}

// scrape GETs /metrics from a server on loopback, as Prometheus does.
func scrape(t *testing.T, reg *prometheus.Registry) []byte {
	t.Helper()
	srv := httptest.NewServer(Handler(reg))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", res.Status, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	return body
}

// promtool runs 'promtool check metrics' on a scrape. It skips only when
// promtool is missing outside CI; in CI (CI set) a missing promtool fails.
func promtool(t *testing.T, scrape []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool is not installed: run scripts/deps.sh (it installs Debian's prometheus package, which provides promtool)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n--- the scrape:\n%s", err, out, scrape)
	}
}

func TestScrapePassesPromtool(t *testing.T) {
	c, _ := fullConfig()
	reg, err := NewRegistry(c)
	if err != nil {
		t.Fatal(err)
	}
	body := scrape(t, reg)
	for _, name := range []string{"lifeboat_controller_leader", "lifeboat_rpo_exposure_seconds", "lifeboat_step_duration_seconds_bucket",
		"lifeboat_dns_queries_total", "lifeboat_frontdoor_connections_active", "go_goroutines", "process_open_fds"} {
		if !bytes.Contains(body, []byte("\n"+name)) {
			t.Errorf("the scrape has no %s", name)
		}
	}
	promtool(t, body)

	// With no source at all (and no runtime metrics) the scrape is empty
	// but valid.
	empty, err := NewRegistry(Config{})
	if err != nil {
		t.Fatal(err)
	}
	promtool(t, scrape(t, empty))
}

func TestControllerValues(t *testing.T) {
	col := NewControllerCollector(eastController())
	want := `
# HELP lifeboat_controller_leader 1 if this controller holds the election (only the leader starts an automatic failover), 0 if not.
# TYPE lifeboat_controller_leader gauge
lifeboat_controller_leader{controller="east"} 1
# HELP lifeboat_controller_decision The controller's latest decision, as labels (value always 1): action is none, advise, wait, fence-self or failover; from is the active region, to the region it would fail over to. 'lifeboat status' shows the reasons.
# TYPE lifeboat_controller_decision gauge
lifeboat_controller_decision{action="none",controller="east",from="east",to=""} 1
# HELP lifeboat_epoch The service's epoch in the state this controller read last: raised by every failover and switchover; drivers refuse actions from an older one.
# TYPE lifeboat_epoch gauge
lifeboat_epoch{controller="east"} 3
# HELP lifeboat_active_region The region that serves the service, as a label (value always 1), in the state this controller read last.
# TYPE lifeboat_active_region gauge
lifeboat_active_region{controller="east",region="east"} 1
# HELP lifeboat_region_up 1 if this controller's observer sees the region healthy, 0 if a critical target there is down (the active region's databases and compute, every region's databases).
# TYPE lifeboat_region_up gauge
lifeboat_region_up{controller="east",region="east"} 1
lifeboat_region_up{controller="east",region="west"} 0
# HELP lifeboat_failover_ready 1 if no readiness check blocks a failover now, 0 if one does. Absent when this controller has no readiness evaluation (it does not lead).
# TYPE lifeboat_failover_ready gauge
lifeboat_failover_ready{controller="east"} 0
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want),
		"lifeboat_controller_leader", "lifeboat_controller_decision", "lifeboat_epoch", "lifeboat_active_region",
		"lifeboat_region_up", "lifeboat_failover_ready"); err != nil {
		t.Error(err)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	values := gather(t, reg)
	for key, want := range map[string]float64{
		`lifeboat_controller_quorum{controller="east"}`:                                                                                  1,
		`lifeboat_controller_fenced{controller="east"}`:                                                                                  0,
		`lifeboat_controller_decision_timestamp_seconds{controller="east"}`:                                                              1740830400,
		`lifeboat_component_health{component="shop.db",controller="east",critical="true",health="down",probe="sql",region="west"}`:       1,
		`lifeboat_component_health{component="shop.db",controller="east",critical="true",health="up",probe="sql",region="west"}`:         0,
		`lifeboat_component_health{component="shop.web",controller="east",critical="false",health="unknown",probe="http",region="west"}`: 1,
		`lifeboat_component_probe_failures{component="shop.db",controller="east",probe="sql",region="west"}`:                             4,
		`lifeboat_component_probe_duration_seconds{component="shop.db",controller="east",probe="sql",region="east"}`:                     0.02,
		`lifeboat_readiness_check_ok{check="standby streaming",component="shop.db",controller="east"}`:                                   0,
		`lifeboat_readiness_check_blocking{check="standby streaming",component="shop.db",controller="east"}`:                             1,
		`lifeboat_readiness_check_ok{check="last drill",component="",controller="east"}`:                                                 1,
		`lifeboat_rpo_exposure_seconds{controller="east",database="shop.db"}`:                                                            1.5,
		`lifeboat_rpo_exposure_bytes{controller="east",database="shop.db"}`:                                                              4096,
		`lifeboat_rpo_exposure_bounded{controller="east",database="shop.ledger"}`:                                                        0,
		`lifeboat_replication_lag_seconds{controller="east",database="shop.ledger"}`:                                                     1,
		`lifeboat_replication_lag_window_max_bytes{controller="east",database="shop.db"}`:                                                8192,
		`lifeboat_region_verdict_since_timestamp_seconds{controller="east",region="west"}`:                                               1740830340,
		`lifeboat_run_in_progress{controller="east"}`:                                                                                    0,
	} {
		got, ok := values[key]
		if !ok {
			t.Errorf("%s is missing", key)
		} else if got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	// An exposure that cannot be bounded is +Inf, never a reassuring 0.
	for _, key := range []string{`lifeboat_rpo_exposure_seconds{controller="east",database="shop.ledger"}`, `lifeboat_rpo_exposure_bytes{controller="east",database="shop.ledger"}`} {
		if v := values[key]; v <= 1e300 {
			t.Errorf("%s = %v, want +Inf", key, v)
		}
	}
	if _, ok := values[`lifeboat_component_probe_duration_seconds{component="shop.web",controller="east",probe="http",region="west"}`]; ok {
		t.Error("a component never probed has a probe duration")
	}
}

func TestControllerBeforeFirstDecision(t *testing.T) {
	// A controller that has not decided or read the state yet: only what
	// it knows is exported, nothing made up.
	col := NewControllerCollector(&fakeController{status: controller.Status{Region: "witness"}})
	values := gather(t, registry(t, col))
	for key := range values {
		switch key {
		case `lifeboat_controller_leader{controller="witness"}`, `lifeboat_controller_quorum{controller="witness"}`, `lifeboat_controller_fenced{controller="witness"}`:
		default:
			t.Errorf("unexpected %s before the first decision", key)
		}
	}
}

func TestRunValues(t *testing.T) {
	runs := someRuns()
	col := NewRunCollector(runs, 5*time.Second, nil)
	reg := registry(t, col)
	for range 2 { // the second scrape reads from the cache: same values
		values := gather(t, reg)
		for key, want := range map[string]float64{
			`lifeboat_store_up`: 1,
			`lifeboat_runs_started_total{by="automatic",intent="failover"}`:                                           1,
			`lifeboat_runs_started_total{by="person",intent="failover"}`:                                              0,
			`lifeboat_runs_started_total{by="person",intent="switchover"}`:                                            1,
			`lifeboat_runs_started_total{by="person",intent="failback"}`:                                              1,
			`lifeboat_runs_ended_total{by="automatic",intent="failover",outcome="succeeded"}`:                         1,
			`lifeboat_runs_ended_total{by="person",intent="switchover",outcome="cancelled"}`:                          1,
			`lifeboat_runs_ended_total{by="person",intent="failback",outcome="succeeded"}`:                            0,
			`lifeboat_runs_open{intent="failback",status="running"}`:                                                  1,
			`lifeboat_runs_open{intent="failover",status="failed"}`:                                                   0,
			`lifeboat_run_last_start_timestamp_seconds{intent="failback"}`:                                            1740834000,
			`lifeboat_run_duration_seconds_sum{intent="failover",outcome="succeeded"}`:                                12,
			`lifeboat_run_duration_seconds_count{intent="failover",outcome="succeeded"}`:                              1,
			`lifeboat_run_duration_seconds_bucket{intent="failover",outcome="succeeded",le="10"}`:                     0,
			`lifeboat_run_duration_seconds_bucket{intent="failover",outcome="succeeded",le="15"}`:                     1,
			`lifeboat_run_duration_seconds_sum{intent="switchover",outcome="cancelled"}`:                              100,
			`lifeboat_run_duration_seconds_count{intent="rejoin",outcome="succeeded"}`:                                0,
			`lifeboat_step_duration_seconds_sum{intent="failover",op="database.promote",outcome="done"}`:              0.2,
			`lifeboat_step_duration_seconds_bucket{intent="failover",op="database.promote",outcome="done",le="0.1"}`:  0,
			`lifeboat_step_duration_seconds_bucket{intent="failover",op="database.promote",outcome="done",le="0.25"}`: 1,
			`lifeboat_step_duration_seconds_sum{intent="failover",op="traffic.switch",outcome="done"}`:                3,
			`lifeboat_step_duration_seconds_sum{intent="switchover",op="traffic.switch",outcome="failed"}`:            40,
		} {
			got, ok := values[key]
			if !ok {
				t.Errorf("%s is missing", key)
			} else if got != want {
				t.Errorf("%s = %v, want %v", key, got, want)
			}
		}
		for key := range values {
			if strings.HasPrefix(key, "lifeboat_step_duration_seconds_count") && strings.Contains(key, `intent="failback"`) {
				t.Errorf("the running failback's step has not ended, yet %s", key)
			}
		}
	}
	// Ended runs' journals are read once; the running one at every scrape.
	if n := runs.journalReads("r1"); n != 1 {
		t.Errorf("r1 (ended) journal read %d times, want 1", n)
	}
	if n := runs.journalReads("r3"); n != 2 {
		t.Errorf("r3 (running) journal read %d times, want 2", n)
	}
}

func TestStoreDownStillScrapes(t *testing.T) {
	c, runs := fullConfig()
	runs.err = errors.New("etcd: no leader")
	reg, err := NewRegistry(c)
	if err != nil {
		t.Fatal(err)
	}
	body := scrape(t, reg)
	if !bytes.Contains(body, []byte("\nlifeboat_store_up 0\n")) {
		t.Errorf("the store is down but the scrape does not say so:\n%s", body)
	}
	if bytes.Contains(body, []byte("lifeboat_runs_started_total")) {
		t.Error("run counts are exported though the runs could not be read (they would drop to 0)")
	}
	if !bytes.Contains(body, []byte("lifeboat_controller_leader")) {
		t.Error("the controller's metrics are missing because the store is down")
	}
	promtool(t, body)
}

func TestTrafficValues(t *testing.T) {
	c, _ := fullConfig()
	want := `
# HELP lifeboat_dns_queries_total Answers the built-in DNS server sent, by protocol (udp, tcp), question type (A, AAAA… 'other' for rare types, 'none' without a single question) and response code (NOERROR, NXDOMAIN, REFUSED for names outside the zone and zone transfers…).
# TYPE lifeboat_dns_queries_total counter
lifeboat_dns_queries_total{protocol="tcp",qtype="SOA",rcode="NOERROR"} 2
lifeboat_dns_queries_total{protocol="udp",qtype="A",rcode="NOERROR"} 1000
lifeboat_dns_queries_total{protocol="udp",qtype="AAAA",rcode="NXDOMAIN"} 7
# HELP lifeboat_dns_dropped_queries_total Queries the built-in DNS server did not answer: datagrams that were no DNS query, answers that could not be packed or written back.
# TYPE lifeboat_dns_dropped_queries_total counter
lifeboat_dns_dropped_queries_total 3
# HELP lifeboat_dns_names_failing_closed Traffic names answering with their last known good endpoints because every endpoint they may answer with is unhealthy (fail closed): clients may be sent to dead endpoints.
# TYPE lifeboat_dns_names_failing_closed gauge
lifeboat_dns_names_failing_closed 1
`
	if err := testutil.CollectAndCompare(NewDNSCollector(c.DNS), strings.NewReader(want),
		"lifeboat_dns_queries_total", "lifeboat_dns_dropped_queries_total", "lifeboat_dns_names_failing_closed"); err != nil {
		t.Error(err)
	}
	values := gather(t, registry(t, NewFrontDoorCollector(c.FrontDoor)))
	for key, want := range map[string]float64{
		`lifeboat_frontdoor_connections_accepted_total{listener="http"}`:     10,
		`lifeboat_frontdoor_connections_routed_total{listener="http"}`:       8,
		`lifeboat_frontdoor_connections_refused_total{listener="http"}`:      2,
		`lifeboat_frontdoor_connections_cut_total{listener="http"}`:          1,
		`lifeboat_frontdoor_connections_active{listener="http"}`:             3,
		`lifeboat_frontdoor_connections_held{listener="http"}`:               1,
		`lifeboat_frontdoor_fenced{listener="http"}`:                         0,
		`lifeboat_frontdoor_fenced{listener="postgres"}`:                     1,
		`lifeboat_frontdoor_connections_accepted_total{listener="postgres"}`: 0,
	} {
		if got, ok := values[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
}

func TestNilPointerSourcesAreAbsent(t *testing.T) {
	// What the lead writes when a region hosts no traffic: typed nils.
	var srv *dns.Server
	var fd *frontdoor.FrontDoor
	var ctl *controller.Controller
	c := DefaultConfig()
	c.DNS, c.FrontDoor, c.Controller = srv, fd, ctl
	c.Runtime = false
	reg, err := NewRegistry(c)
	if err != nil {
		t.Fatal(err)
	}
	if v := gather(t, reg); len(v) != 0 {
		t.Errorf("nil sources exported %v", v)
	}
}

func TestValidateConfig(t *testing.T) {
	c := DefaultConfig()
	c.Runs = someRuns()
	c.StoreTimeout = 0
	if _, err := NewRegistry(c); err == nil || !strings.Contains(err.Error(), "StoreTimeout") {
		t.Fatalf("a zero StoreTimeout with a run source: got %v, want an error naming StoreTimeout", err)
	}
}

func registry(t *testing.T, cs ...prometheus.Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// gather returns every sample of reg, keyed name{label="value",...} with
// labels sorted, as the text format writes them.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	key := func(name string, labels []string) string {
		if len(labels) == 0 {
			return name
		}
		return name + "{" + strings.Join(labels, ",") + "}"
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			switch {
			case m.GetGauge() != nil:
				out[key(mf.GetName(), labels)] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[key(mf.GetName(), labels)] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				out[key(mf.GetName()+"_sum", labels)] = h.GetSampleSum()
				out[key(mf.GetName()+"_count", labels)] = float64(h.GetSampleCount())
				for _, b := range h.GetBucket() {
					le := strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
					out[key(mf.GetName()+"_bucket", append(append([]string{}, labels...), `le="`+le+`"`))] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}
