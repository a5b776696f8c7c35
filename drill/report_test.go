package drill

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// synthetic is a drill of three clients writing every 100 ms for 4 s, each
// write taking 10 ms. The fault is at 1 s; client c's writes fail from then
// until 1 s + (c+1)×500 ms. Client 0's writes acknowledged at 810 and 910 ms
// are lost; one failed write is present anyway (unexpected) and one
// acknowledged write is present twice (duplicated).
func synthetic() Input {
	var h []Attempt
	final := map[string]int{}
	for k := 0; k < 40; k++ {
		for c := 0; c < 3; c++ {
			start := k * 100
			ok := start < 1000 || start >= 1000+(c+1)*500
			a := write(c, fmt.Sprintf("c%d-%d", c, k), start, start+10, ok)
			a.Seq = k
			if ok && start >= 1000 {
				a.Region = "east"
			}
			h = append(h, a)
			if ok {
				final[a.ID] = 1
			}
		}
	}
	delete(final, "c0-8") // acked at 810 ms
	delete(final, "c0-9") // acked at 910 ms
	final["c2-12"] = 1    // failed at 1200 ms, yet committed
	final["c1-3"] = 2     // present twice
	return Input{
		Scenario: "region-outage", Service: "shop",
		Attempts: h, Final: final,
		Fault: &Fault{Kind: "region-outage", Region: "west", At: at(1000)},
		Steps: []Step{
			{ID: "epoch", Op: "epoch.raise", Start: at(1300), End: at(1310), Status: "done"},
			{ID: "db-promote-east", Op: "database.promote", Start: at(1310), End: at(1450), Status: "done"},
			{ID: "traffic-east", Op: "traffic.switch", Start: at(1450), End: at(1480), Status: "done"},
		},
		Lag: []LagSample{
			{At: at(500), Bytes: 100, Lag: 10 * time.Millisecond},
			{At: at(950), Bytes: 4096, Lag: 200 * time.Millisecond},
			{At: at(1050), Bytes: 9999, Lag: 5 * time.Second}, // after the fault: not the one
		},
		Objectives: Objectives{RTO: time.Second, RPO: 500 * time.Millisecond},
	}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestBuildReportRTO(t *testing.T) {
	r, err := BuildReport(synthetic(), DefaultReportOptions())
	if err != nil {
		t.Fatal(err)
	}
	rt := r.RTO
	if !rt.Recovered || rt.Overall != ms(510) || !rt.FirstAck.Equal(at(1510)) || rt.Region != "east" {
		t.Fatalf("overall RTO %+v, want 510ms (client 0's write sent at 1500ms) in east", rt)
	}
	want := []ClientRTO{
		{Client: 0, RTO: ms(510), Recovered: true, Failed: 5, Region: "east"},
		{Client: 1, RTO: ms(1010), Recovered: true, Failed: 10, Region: "east"},
		{Client: 2, RTO: ms(1510), Recovered: true, Failed: 15, Region: "east"},
	}
	if fmt.Sprint(rt.Clients) != fmt.Sprint(want) {
		t.Fatalf("per client\n got %+v\nwant %+v", rt.Clients, want)
	}
	// Nearest rank over [510, 1010, 1510]: p50 is the 2nd, p99 the 3rd.
	if rt.P50 != ms(1010) || rt.P99 != ms(1510) || rt.Max != ms(1510) || rt.Unrecovered != 0 {
		t.Fatalf("p50 %s p99 %s max %s unrecovered %d, want 1.01s 1.51s 1.51s 0", rt.P50, rt.P99, rt.Max, rt.Unrecovered)
	}
	if r.Clients != 3 || r.Writes != 120 || r.WritesOK != 120-30 {
		t.Fatalf("clients %d writes %d ok %d, want 3, 120, 90", r.Clients, r.Writes, r.WritesOK)
	}
	// The lab's windows (the first ends at client 0's recovery, clients 1
	// and 2 open more after it) overlap: merged, from the fault to the
	// last client's recovery.
	if len(r.Windows) != 1 {
		t.Fatalf("windows %+v, want one", r.Windows)
	}
	if w := r.Windows[0]; !w.Start.Equal(at(1000)) || !w.End.Equal(at(2510)) || w.Duration != ms(1510) || w.Failed != 30 || w.From != "west" || w.To != "east" || w.Open {
		t.Fatalf("window %+v, want 1000ms → 2510ms, 30 failed, west → east", w)
	}
}

func TestBuildReportRPO(t *testing.T) {
	r, err := BuildReport(synthetic(), DefaultReportOptions())
	if err != nil {
		t.Fatal(err)
	}
	p := r.RPO
	if p.Lost != 2 || p.Window == nil || !p.Window.First.Equal(at(810)) || !p.Window.Last.Equal(at(910)) {
		t.Fatalf("RPO %+v, want 2 lost acknowledged 810ms → 910ms", p)
	}
	if p.Measured != ms(190) {
		t.Fatalf("measured RPO %s, want 190ms (fault − oldest lost ack)", p.Measured)
	}
	if p.LagAtFault == nil || !p.LagAtFault.At.Equal(at(950)) || p.LagAtFault.Lag != ms(200) {
		t.Fatalf("lag at fault %+v, want the sample at 950ms", p.LagAtFault)
	}
	// 950 − 200 − 250 = 500 ms, 1000 + 250 = 1250 ms.
	if p.Explained == nil || !p.Explained.First.Equal(at(500)) || !p.Explained.Last.Equal(at(1250)) || !p.Consistent || p.Outside != 0 {
		t.Fatalf("explained %+v consistent %v, want [500ms, 1250ms] and consistent", p.Explained, p.Consistent)
	}
	if len(r.Set.Unexpected) != 1 || r.Set.Unexpected[0] != "c2-12" || len(r.Set.Duplicated) != 1 || r.Set.Duplicated[0].ID != "c1-3" {
		t.Fatalf("set %+v, want c2-12 unexpected and c1-3 duplicated", r.Set)
	}

	// With a lag too small to explain the loss.
	in := synthetic()
	in.Lag = []LagSample{{At: at(990), Lag: 5 * time.Millisecond}}
	in.Final["c1-3"] = 1
	o := DefaultReportOptions()
	o.Slack = 50 * time.Millisecond
	r, _ = BuildReport(in, o)
	if r.RPO.Consistent || r.RPO.Outside != 2 || !strings.Contains(r.RPO.Note, "2 lost writes") {
		t.Fatalf("RPO %+v, want both lost writes outside [935ms, 1050ms]", r.RPO)
	}
	if v := verdict(t, r, "loss vs lag at the fault"); v.Status != Fail {
		t.Fatalf("lag verdict %+v, want fail", v)
	}
}

func TestBuildReportBuckets(t *testing.T) {
	r, err := BuildReport(synthetic(), DefaultReportOptions())
	if err != nil {
		t.Fatal(err)
	}
	// From 0 to the last answer at 3910 ms: 40 buckets of 100 ms.
	if len(r.Buckets) != 40 || r.Bucket != 100*time.Millisecond {
		t.Fatalf("%d buckets of %s, want 40 of 100ms", len(r.Buckets), r.Bucket)
	}
	want := map[int][2]int{0: {3, 0}, 9: {3, 0}, 10: {0, 3}, 14: {0, 3}, 15: {1, 2}, 19: {1, 2}, 20: {2, 1}, 25: {3, 0}, 39: {3, 0}}
	for i, w := range want {
		b := r.Buckets[i]
		if b.OK != w[0] || b.Failed != w[1] || !b.Start.Equal(at(i*100)) {
			t.Errorf("bucket %d = %+v, want %d ok %d failed at %dms", i, b, w[0], w[1], i*100)
		}
	}
}

func verdict(t *testing.T, r *Report, objective string) Verdict {
	t.Helper()
	for _, v := range r.Verdicts {
		if v.Objective == objective {
			return v
		}
	}
	t.Fatalf("no %q verdict in %+v", objective, r.Verdicts)
	return Verdict{}
}

func TestBuildReportVerdicts(t *testing.T) {
	r, _ := BuildReport(synthetic(), DefaultReportOptions())
	if v := verdict(t, r, "RTO"); v.Status != Fail || v.Measured != ms(1510) || v.Target != time.Second {
		t.Fatalf("RTO verdict %+v, want fail: 1.51s against 1s", v)
	}
	if v := verdict(t, r, "RPO"); v.Status != Pass || v.Measured != ms(190) {
		t.Fatalf("RPO verdict %+v, want pass: 190ms against 500ms", v)
	}
	if v := verdict(t, r, "loss vs lag at the fault"); v.Status != Pass {
		t.Fatalf("lag verdict %+v, want pass", v)
	}
	if v := verdict(t, r, "history"); v.Status != Fail || !strings.Contains(v.Note, "1 write present more than once") {
		t.Fatalf("history verdict %+v, want fail for the duplicate", v)
	}
	if r.OK() {
		t.Fatal("report with failed verdicts is OK")
	}

	in := synthetic()
	in.Objectives = Objectives{RTO: 2 * time.Second, RPO: 0}
	in.Final["c1-3"] = 1
	in.Register = &RegisterResult{Result: Linearizable, Operations: 3, Keys: 1}
	r, _ = BuildReport(in, DefaultReportOptions())
	if v := verdict(t, r, "RTO"); v.Status != Pass {
		t.Fatalf("RTO verdict %+v, want pass against 2s", v)
	}
	if v := verdict(t, r, "RPO"); v.Status != Fail || !strings.Contains(v.Note, "no loss") {
		t.Fatalf("RPO verdict %+v, want fail: 2 lost against no loss", v)
	}
	if v := verdict(t, r, "history"); v.Status != Pass {
		t.Fatalf("history verdict %+v, want pass", v)
	}

	// A client that never recovers fails the RTO, whatever the objective.
	in = synthetic()
	in.Objectives.RTO = time.Hour
	for i := range in.Attempts {
		if a := &in.Attempts[i]; a.Client == 2 && !a.Start.Before(at(1000)) {
			a.OK = false
		}
	}
	r, _ = BuildReport(in, DefaultReportOptions())
	if r.RTO.Unrecovered != 1 || r.RTO.Max != ms(2910) {
		t.Fatalf("RTO %+v, want 1 unrecovered and max ≥ 2.91s (its last answer)", r.RTO)
	}
	if v := verdict(t, r, "RTO"); v.Status != Fail || !strings.Contains(v.Note, "1 of 3 clients") {
		t.Fatalf("RTO verdict %+v, want fail for the unrecovered client", v)
	}

	// No fault: RTO not applicable, and no loss passes.
	in = synthetic()
	in.Fault = nil
	in.Final = map[string]int{}
	for _, a := range in.Attempts {
		if a.OK {
			in.Final[a.ID] = 1
		}
	}
	r, _ = BuildReport(in, DefaultReportOptions())
	if v := verdict(t, r, "RTO"); v.Status != None {
		t.Fatalf("RTO verdict without a fault %+v, want n/a", v)
	}
	if !r.OK() {
		t.Fatalf("steady-state report not OK: %+v", r.Verdicts)
	}
}

func TestBuildReportBadOptions(t *testing.T) {
	if _, err := BuildReport(synthetic(), ReportOptions{Bucket: 0}); err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "bucket") {
		t.Fatalf("err = %v, want a permanent error about the bucket", err)
	}
}

func TestBuildReportEmpty(t *testing.T) {
	r, err := BuildReport(Input{Fault: &Fault{Kind: "region-outage", At: at(0)}}, DefaultReportOptions())
	if err != nil {
		t.Fatal(err)
	}
	if v := verdict(t, r, "RTO"); v.Status != Fail {
		t.Fatalf("RTO verdict with no writes %+v, want fail (not measured)", v)
	}
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if err := r.Summary(&b, false); err != nil {
		t.Fatal(err)
	}
}

func TestWriteJSONRoundTrip(t *testing.T) {
	r, _ := BuildReport(synthetic(), DefaultReportOptions())
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("the JSON does not read back: %v", err)
	}
	if back.RTO.P50 != r.RTO.P50 || back.RPO.Lost != 2 || len(back.Buckets) != 40 || len(back.Steps) != 3 || back.Fault.Kind != "region-outage" {
		t.Fatalf("read back %+v", back)
	}
}

func TestSummary(t *testing.T) {
	r, _ := BuildReport(synthetic(), DefaultReportOptions())
	var b bytes.Buffer
	if err := r.Summary(&b, false); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{"region-outage", "p50 1.01s", "p99 1.51s", "max 1.51s", "lost 2", "duplicated 1", "unexpected 1", "RTO", "fail", "pass", "lag at the fault 200ms, 4096 bytes"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "\x1b[") {
		t.Errorf("colour codes without colour:\n%s", s)
	}
	b.Reset()
	r.Summary(&b, true)
	if !strings.Contains(b.String(), "\x1b[1;31mfail\x1b[0m") {
		t.Errorf("no red fail with colour:\n%s", b.String())
	}
}

func TestStepsFromJournal(t *testing.T) {
	plan := &lifeboat.Plan{Steps: []*lifeboat.Step{{ID: "epoch", Op: lifeboat.OpRaiseEpoch}, {ID: "promote", Op: lifeboat.OpDatabasePromote}, {ID: "switch", Op: lifeboat.OpTrafficSwitch}}}
	recs := []lifeboat.Record{
		{Run: "r1", Kind: lifeboat.RecStart, At: at(0)},
		{Run: "r1", Step: "epoch", Kind: lifeboat.RecStart, At: at(1)},
		{Run: "r1", Step: "epoch", Kind: lifeboat.RecDone, At: at(3)},
		{Run: "r1", Step: "promote", Kind: lifeboat.RecStart, At: at(4)},
		{Run: "r1", Step: "promote", Kind: lifeboat.RecError, At: at(50), Retryable: true},
		{Run: "r1", Step: "promote", Kind: lifeboat.RecDone, At: at(120)},
		{Run: "r1", Step: "switch", Kind: lifeboat.RecStart, At: at(121)},
	}
	got := StepsFromJournal(plan, recs)
	want := []Step{
		{ID: "epoch", Op: "epoch.raise", Start: at(1), End: at(3), Status: "done"},
		{ID: "promote", Op: "database.promote", Start: at(4), End: at(120), Status: "done"},
		{ID: "switch", Op: "traffic.switch", Start: at(121), Status: "running"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("\n got %+v\nwant %+v", got, want)
	}
}

// An answer from the region the fault takes away is not a recovery: the
// fault bites a few milliseconds after its instant.
func TestRecoveryComesFromAnotherRegion(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	attempts := []Attempt{
		{Client: 0, Seq: 0, Kind: KindWrite, ID: "a", Start: at(1005), End: at(1008), OK: true, Region: "west"}, // before the bite
		{Client: 0, Seq: 1, Kind: KindWrite, ID: "b", Start: at(1010), End: at(2000), Err: "EOF"},
		{Client: 0, Seq: 2, Kind: KindWrite, ID: "c", Start: at(2100), End: at(2500), OK: true, Region: "east"},
	}
	r, err := BuildReport(Input{Scenario: "region-outage", Attempts: attempts, Final: map[string]int{"a": 1, "c": 1},
		Fault: &Fault{Kind: "region-outage", Region: "west", At: at(1000)}, Objectives: Objectives{RTO: time.Minute, RPO: time.Minute}}, DefaultReportOptions())
	if err != nil {
		t.Fatal(err)
	}
	if c := r.RTO.Clients[0]; !c.Recovered || c.Region != "east" || c.RTO != 1500*time.Millisecond {
		t.Fatalf("client 0: %+v; want recovered in east after 1.5s (west's answer 8ms after the fault is not a recovery)", c)
	}
}

// A register that is not linearizable after writes were lost is reported
// as a failure, tied to the set check's loss, not hidden.
func TestRegisterViolationTiedToLoss(t *testing.T) {
	in := synthetic()
	in.Final["c1-3"] = 1
	in.Register = &RegisterResult{Result: NotLinearizable, Operations: 40, Keys: 3, Visualization: "/tmp/x-register.html"}
	r, _ := BuildReport(in, DefaultReportOptions())
	v := verdict(t, r, "history")
	if v.Status != Fail || !strings.Contains(v.Note, "2 acknowledged writes lost by the set check") || !strings.Contains(v.Note, "/tmp/x-register.html") {
		t.Fatalf("history verdict %+v, want fail tied to the 2 lost writes, with the visualisation", v)
	}
}

// Only a refused connection, a 4xx or the shop's read-only refusal prove
// that a write did not take effect.
func TestOutcome(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	for _, c := range []struct {
		err    error
		status int
		body   string
		want   string
	}{
		{refused, 0, "", OutcomeFailed},
		{fmt.Errorf("Post: %w", refused), 0, "", OutcomeFailed},
		{reset, 0, "", OutcomeUnknown},
		{errors.New("context deadline exceeded (Client.Timeout exceeded while awaiting headers)"), 0, "", OutcomeUnknown},
		{nil, 400, "bad", OutcomeFailed},
		{nil, 503, `{"error":"database is read-only (standby, or a fenced primary)"}`, OutcomeFailed},
		{nil, 503, `{"error":"could not insert the order: database unreachable: timed out"}`, OutcomeUnknown},
		{nil, 502, "bad gateway", OutcomeUnknown},
	} {
		if got := outcome(c.err, c.status, c.body); got != c.want {
			t.Errorf("outcome(%v, %d, %q) = %s, want %s", c.err, c.status, c.body, got, c.want)
		}
	}
}

// A fault the service rides out (a partition the witness settles, a
// controller crash) is reported as no interruption, not as a tiny RTO.
func TestRTONotInterrupted(t *testing.T) {
	var h []Attempt
	final := map[string]int{}
	for k := range 20 {
		a := write(0, fmt.Sprintf("c0-%d", k), k*100, k*100+10, true)
		a.Region = "west"
		h = append(h, a)
		final[a.ID] = 1
	}
	in := Input{Scenario: "partition", Attempts: h, Final: final, Fault: &Fault{Kind: "partition", At: at(1000)}, Objectives: Objectives{RTO: time.Minute}}
	r, _ := BuildReport(in, DefaultReportOptions())
	if v := verdict(t, r, "RTO"); v.Status != Pass || !strings.Contains(v.Note, "not interrupted") {
		t.Fatalf("RTO verdict %+v, want pass noting no interruption", v)
	}
}
