package drill

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/lab"
)

// ReportOptions says how to measure.
type ReportOptions struct {
	// Bucket is the timeline's resolution.
	Bucket time.Duration
	// Slack widens the window in which a lost write is explained by the lag
	// at the fault: the lag is sampled, not continuous, and a fault takes a
	// few milliseconds to bite after the instant it is injected.
	Slack time.Duration
}

// DefaultReportOptions: 100 ms buckets, 250 ms slack.
func DefaultReportOptions() ReportOptions {
	return ReportOptions{Bucket: 100 * time.Millisecond, Slack: 250 * time.Millisecond}
}

// ValidateReportOptions says what is wrong with o.
func ValidateReportOptions(o ReportOptions) error {
	var errs []error
	if o.Bucket < time.Millisecond {
		errs = append(errs, fmt.Errorf("timeline bucket %s: want at least 1ms (100ms is the usual)", o.Bucket))
	}
	if o.Slack < 0 {
		errs = append(errs, fmt.Errorf("slack %s: want 0 or a positive duration", o.Slack))
	}
	if err := errors.Join(errs...); err != nil {
		return lifeboat.Permanent("drill.report", "", err)
	}
	return nil
}

// Input is what a drill recorded.
type Input struct {
	Scenario string
	// Service is the spec's service name.
	Service  string
	Attempts []Attempt
	// Final counts each id present after recovery (see CheckSet).
	Final map[string]int
	// Fault is nil when nothing was injected (a steady-state run).
	Fault      *Fault
	Steps      []Step
	Lag        []LagSample
	Objectives Objectives
	// Register is the register check's result, if one was run, and
	// RegisterOps the history it checked.
	Register    *RegisterResult
	RegisterOps []Attempt
}

// ClientRTO is one client's recovery: from the fault to the
// acknowledgement of its first write sent after the fault.
type ClientRTO struct {
	Client int           `json:"client"`
	RTO    time.Duration `json:"rto_ns"`
	// Recovered is false when none of its writes sent after the fault was
	// acknowledged; RTO is then a lower bound (to its last answer).
	Recovered bool `json:"recovered"`
	// Failed is how many of its writes failed between the fault and then.
	Failed int    `json:"failed"`
	Region string `json:"region,omitempty"`
}

// RTOResult is the measured recovery time.
type RTOResult struct {
	// Overall: fault → the first acknowledged write sent after it, any client.
	Overall   time.Duration `json:"overall_ns"`
	Recovered bool          `json:"recovered"`
	// FirstAck is when that write was acknowledged, and by which region.
	FirstAck time.Time `json:"first_ack,omitzero"`
	Region   string    `json:"region,omitempty"`
	// P50, P99 and Max are over clients (nearest rank); with clients that
	// never recovered they are lower bounds.
	P50         time.Duration `json:"p50_ns"`
	P99         time.Duration `json:"p99_ns"`
	Max         time.Duration `json:"max_ns"`
	Unrecovered int           `json:"unrecovered"`
	Clients     []ClientRTO   `json:"clients"`
}

// RPOResult is the measured data loss.
type RPOResult struct {
	Lost int `json:"lost"`
	// Window spans the acknowledgements of the lost writes.
	Window *Span `json:"window,omitempty"`
	// Measured is how much time of acknowledged data was lost: from the
	// oldest lost acknowledgement to the fault (or to the newest, if later).
	Measured time.Duration `json:"measured_ns"`
	// LagAtFault is the last lag sample at or before the fault.
	LagAtFault *LagSample `json:"lag_at_fault,omitempty"`
	// Explained is where lost writes are consistent with that lag:
	// [sample − lag − slack, fault + slack].
	Explained *Span `json:"explained,omitempty"`
	// Consistent: every lost write was acknowledged inside Explained.
	Consistent bool `json:"consistent"`
	// Outside lists the lost writes acknowledged outside Explained: written
	// after the standby was current, or acknowledged after the fault
	// (two primaries?).
	Outside int    `json:"outside"`
	Note    string `json:"note,omitempty"`
}

// Bucket is one slice of the timeline: attempts that ended in it.
type Bucket struct {
	Start  time.Time `json:"start"`
	OK     int       `json:"ok"`
	Failed int       `json:"failed"`
}

// Verdict statuses.
const (
	Pass = "pass"
	Fail = "fail"
	None = "n/a"
)

// Verdict is one objective against its measure.
type Verdict struct {
	Objective string        `json:"objective"`
	Target    time.Duration `json:"target_ns"`
	Measured  time.Duration `json:"measured_ns"`
	Status    string        `json:"status"`
	Note      string        `json:"note,omitempty"`
}

// Report is a drill's outcome.
type Report struct {
	Scenario   string     `json:"scenario"`
	Service    string     `json:"service"`
	Started    time.Time  `json:"started"`
	Ended      time.Time  `json:"ended"`
	Fault      *Fault     `json:"fault,omitempty"`
	Objectives Objectives `json:"objectives"`
	Clients    int        `json:"clients"`
	Writes     int        `json:"writes"`
	WritesOK   int        `json:"writes_ok"`
	Reads      int        `json:"reads"`
	ReadsOK    int        `json:"reads_ok"`

	RTO      RTOResult       `json:"rto"`
	RPO      RPOResult       `json:"rpo"`
	Set      SetResult       `json:"set"`
	Register *RegisterResult `json:"register,omitempty"`
	// RegisterOps is the register workload's history, for a second look.
	RegisterOps []Attempt `json:"register_ops,omitempty"`
	// Windows are the write-unavailable windows, as 'lifeboat lab check'
	// prints them.
	Windows []lab.Window  `json:"windows"`
	Steps   []Step        `json:"steps"`
	Lag     []LagSample   `json:"lag"`
	Bucket  time.Duration `json:"bucket_ns"`
	Buckets []Bucket      `json:"buckets"`
	// Verdicts: RTO, RPO, and the history checks.
	Verdicts []Verdict `json:"verdicts"`
}

// OK: no verdict failed.
func (r *Report) OK() bool {
	for _, v := range r.Verdicts {
		if v.Status == Fail {
			return false
		}
	}
	return true
}

// BuildReport measures a drill. It fails only on bad options: a drill that
// missed its objectives is a report with failed verdicts.
func BuildReport(in Input, o ReportOptions) (*Report, error) {
	if err := ValidateReportOptions(o); err != nil {
		return nil, err
	}
	attempts := append([]Attempt(nil), in.Attempts...)
	sort.SliceStable(attempts, func(i, j int) bool { return attempts[i].Start.Before(attempts[j].Start) })
	r := &Report{
		Scenario: in.Scenario, Service: in.Service, Fault: in.Fault, Objectives: in.Objectives,
		Steps: append([]Step{}, in.Steps...), Lag: append([]LagSample{}, in.Lag...),
		Register: in.Register, RegisterOps: in.RegisterOps, Bucket: o.Bucket,
	}
	sort.SliceStable(r.Lag, func(i, j int) bool { return r.Lag[i].At.Before(r.Lag[j].At) })
	clients := map[int]bool{}
	for _, a := range attempts {
		clients[a.Client] = true
		if r.Started.IsZero() || a.Start.Before(r.Started) {
			r.Started = a.Start
		}
		if a.End.After(r.Ended) {
			r.Ended = a.End
		}
		switch a.Kind {
		case KindWrite:
			r.Writes++
			if a.OK {
				r.WritesOK++
			}
		case KindRead:
			r.Reads++
			if a.OK {
				r.ReadsOK++
			}
		}
	}
	r.Clients = len(clients)
	r.Set = CheckSet(attempts, in.Final)
	r.Windows = writeWindows(attempts)
	if r.Windows == nil {
		r.Windows = []lab.Window{}
	}
	r.Buckets = buckets(attempts, r.Started, r.Ended, o.Bucket)
	if in.Fault != nil {
		r.RTO = measureRTO(attempts, in.Fault.At, in.Fault.Region)
	}
	r.RPO = measureRPO(r.Set, in.Fault, r.Lag, o.Slack)
	r.Verdicts = verdicts(r)
	return r, nil
}

// writeWindows reuses the lab's definition: from the first failed write to
// the first acknowledged one after it. With several clients that recover
// at different times (one still has the old address cached), the lab's
// windows overlap: they are merged into one, which lasts until the last of
// them ends, so a window is never shorter than any client's outage in it.
func writeWindows(attempts []Attempt) []lab.Window {
	var la []lab.Attempt
	for _, a := range attempts {
		if a.Kind != KindWrite {
			continue
		}
		la = append(la, lab.Attempt{At: a.Start, Took: a.End.Sub(a.Start), OK: a.OK, Region: a.Region, Error: a.Err, Item: a.ID})
	}
	var out []lab.Window
	for _, w := range lab.Windows(la) {
		if n := len(out); n > 0 && !w.Start.After(out[n-1].End) {
			last := &out[n-1]
			last.Failed += w.Failed
			if w.End.After(last.End) {
				last.End, last.To, last.Open = w.End, w.To, w.Open
			}
			last.Duration = last.End.Sub(last.Start)
			continue
		}
		out = append(out, w)
	}
	return out
}

// faultRegion, when set, is the region the fault took away (or a planned
// move left): only answers from another region count as recovery.
func measureRTO(attempts []Attempt, fault time.Time, faultRegion string) RTOResult {
	var res RTOResult
	per := map[int]*ClientRTO{}
	last := map[int]time.Time{}
	// Only a write sent after the fault proves the service is back: one
	// sent before may have been committed by the old primary.
	after := func(a Attempt) bool { return a.Kind == KindWrite && !a.Start.Before(fault) }
	for _, a := range attempts {
		if !after(a) {
			continue
		}
		c := per[a.Client]
		if c == nil {
			c = &ClientRTO{Client: a.Client}
			per[a.Client] = c
		}
		if a.End.After(last[a.Client]) {
			last[a.Client] = a.End
		}
		// An answer from the faulted region is not a recovery: the fault
		// takes a few milliseconds to bite after its instant, and writes
		// sent meanwhile are still taken by the region being lost.
		if !a.OK || (faultRegion != "" && a.Region == faultRegion) {
			continue
		}
		if rto := a.End.Sub(fault); !c.Recovered || rto < c.RTO {
			c.Recovered, c.RTO, c.Region = true, rto, a.Region
		}
		if rto := a.End.Sub(fault); !res.Recovered || rto < res.Overall {
			res.Recovered, res.Overall, res.FirstAck, res.Region = true, rto, a.End, a.Region
		}
	}
	for _, a := range attempts {
		if c := per[a.Client]; after(a) && !a.OK && (!c.Recovered || a.End.Sub(fault) <= c.RTO) {
			c.Failed++
		}
	}
	var rtos []time.Duration
	for id, c := range per {
		if !c.Recovered {
			c.RTO = last[id].Sub(fault)
			res.Unrecovered++
		}
		res.Clients = append(res.Clients, *c)
		rtos = append(rtos, c.RTO)
	}
	sort.Slice(res.Clients, func(i, j int) bool { return res.Clients[i].Client < res.Clients[j].Client })
	if res.Clients == nil {
		res.Clients = []ClientRTO{}
	}
	sort.Slice(rtos, func(i, j int) bool { return rtos[i] < rtos[j] })
	res.P50, res.P99, res.Max = percentile(rtos, 50), percentile(rtos, 99), percentile(rtos, 100)
	if !res.Recovered {
		// A lower bound: the service was still down at the last answer.
		for _, t := range last {
			res.Overall = max(res.Overall, t.Sub(fault))
		}
	}
	return res
}

// Failed is how many writes failed after the fault before their client
// recovered, over all clients.
func (r RTOResult) Failed() int {
	n := 0
	for _, c := range r.Clients {
		n += c.Failed
	}
	return n
}

// percentile is the nearest-rank percentile of sorted values: the smallest
// value with at least p% of the values at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func measureRPO(set SetResult, fault *Fault, lag []LagSample, slack time.Duration) RPOResult {
	res := RPOResult{Lost: len(set.Lost), Window: set.LostWindow}
	if fault == nil {
		res.Consistent = res.Lost == 0
		if res.Window != nil {
			res.Measured = res.Window.Duration()
			res.Note = "writes were lost although no fault was injected"
		}
		return res
	}
	for i := range lag {
		if lag[i].At.After(fault.At) {
			break
		}
		s := lag[i]
		res.LagAtFault = &s
	}
	if res.Window != nil {
		end := fault.At
		if res.Window.Last.After(end) {
			end = res.Window.Last
		}
		res.Measured = end.Sub(res.Window.First)
	}
	if res.LagAtFault == nil {
		res.Consistent = res.Lost == 0
		if res.Lost > 0 {
			res.Note = "no lag sample before the fault: the loss cannot be set against the lag"
		}
		return res
	}
	s := res.LagAtFault
	// The standby had everything acknowledged before s.At − s.Lag; anything
	// after may be lost, up to the fault.
	res.Explained = &Span{First: s.At.Add(-s.Lag - slack), Last: fault.At.Add(slack)}
	for _, a := range set.Lost {
		if a.End.Before(res.Explained.First) || a.End.After(res.Explained.Last) {
			res.Outside++
		}
	}
	res.Consistent = res.Outside == 0
	if res.Outside > 0 {
		res.Note = fmt.Sprintf("%s acknowledged outside the window the lag at the fault explains (%s before to %s after the fault; lag %s, %d bytes, sampled %s before it): "+
			"a write acknowledged earlier should have been on the standby already (is the lag sampled from the standby that was promoted?); "+
			"one acknowledged later means the old primary kept taking writes after the fault (look for two writable primaries in the plan's journal and the quarantine reports)",
			plural(res.Outside, "lost write was", "lost writes were"), round(fault.At.Sub(res.Explained.First)), round(slack), round(s.Lag), s.Bytes, round(fault.At.Sub(s.At)))
	}
	return res
}

func buckets(attempts []Attempt, start, end time.Time, size time.Duration) []Bucket {
	if len(attempts) == 0 {
		return []Bucket{}
	}
	n := int(end.Sub(start)/size) + 1
	out := make([]Bucket, n)
	for i := range out {
		out[i].Start = start.Add(time.Duration(i) * size)
	}
	for _, a := range attempts {
		i := int(a.End.Sub(start) / size)
		i = max(0, min(i, n-1))
		if a.OK {
			out[i].OK++
		} else {
			out[i].Failed++
		}
	}
	return out
}

func verdicts(r *Report) []Verdict {
	var out []Verdict
	rto := Verdict{Objective: "RTO", Target: r.Objectives.RTO, Measured: r.RTO.Max}
	switch {
	case r.Fault == nil:
		rto.Status, rto.Note = None, "no fault injected"
	case len(r.RTO.Clients) == 0:
		rto.Status, rto.Note = Fail, "no write was sent after the fault: the recovery was not measured"
	case r.RTO.Unrecovered > 0:
		rto.Status, rto.Note = Fail, fmt.Sprintf("%d of %d clients never had a write acknowledged after the fault: the service did not recover for them before the drill ended", r.RTO.Unrecovered, len(r.RTO.Clients))
	case r.Objectives.RTO <= 0:
		rto.Status, rto.Note = None, "no RTO objective in the spec"
	case r.RTO.Max > r.Objectives.RTO:
		rto.Status, rto.Note = Fail, fmt.Sprintf("worst client %s, over the objective by %s", round(r.RTO.Max), round(r.RTO.Max-r.Objectives.RTO))
	default:
		rto.Status, rto.Note = Pass, fmt.Sprintf("worst client %s (p50 %s)", round(r.RTO.Max), round(r.RTO.P50))
		if r.RTO.Failed() == 0 {
			// Then the "RTO" is one write's latency: say so.
			rto.Note = fmt.Sprintf("no write failed after the fault: the service was not interrupted (worst client's first write %s)", round(r.RTO.Max))
		}
	}
	out = append(out, rto)

	rpo := Verdict{Objective: "RPO", Target: r.Objectives.RPO, Measured: r.RPO.Measured}
	switch {
	case r.RPO.Lost == 0:
		rpo.Status, rpo.Note = Pass, "no acknowledged write lost"
	case r.Objectives.RPO <= 0:
		rpo.Status, rpo.Note = Fail, fmt.Sprintf("%s lost; the objective is no loss", plural(r.RPO.Lost, "acknowledged write"))
	case r.RPO.Measured > r.Objectives.RPO:
		rpo.Status, rpo.Note = Fail, fmt.Sprintf("%s lost over %s, more than the objective", plural(r.RPO.Lost, "acknowledged write"), round(r.RPO.Measured))
	default:
		rpo.Status, rpo.Note = Pass, fmt.Sprintf("%s lost over %s, within the objective", plural(r.RPO.Lost, "acknowledged write"), round(r.RPO.Measured))
	}
	out = append(out, rpo)

	if r.RPO.Lost > 0 {
		v := Verdict{Objective: "loss vs lag at the fault", Status: Pass, Measured: r.RPO.Measured}
		if r.RPO.LagAtFault != nil {
			v.Target = r.RPO.LagAtFault.Lag
		}
		switch {
		case !r.RPO.Consistent:
			v.Status, v.Note = Fail, r.RPO.Note
		case r.RPO.Explained != nil:
			v.Note = fmt.Sprintf("every lost write was acknowledged between %s before and %s after the fault",
				round(r.Fault.At.Sub(r.RPO.Explained.First)), round(r.RPO.Explained.Last.Sub(r.Fault.At)))
		}
		out = append(out, v)
	}

	h := Verdict{Objective: "history", Status: Pass}
	var notes []string
	if n := len(r.Set.Duplicated); n > 0 {
		notes = append(notes, fmt.Sprintf("%s present more than once", plural(n, "write")))
	}
	if n := len(r.Set.Unexpected); n > 0 {
		notes = append(notes, fmt.Sprintf("%s present although the client saw a failure (allowed)", plural(n, "write")))
	}
	if reg := r.Register; reg != nil {
		switch {
		case reg.Error != "":
			notes = append(notes, "register check: "+reg.Error)
		case reg.Result != Linearizable:
			s := "register " + reg.Result
			if reg.Visualization != "" {
				s += " (see " + reg.Visualization + ")"
			}
			if reg.Result == NotLinearizable && r.RPO.Lost > 0 {
				// A true finding, not a checker's fault: tie it to the loss.
				s += fmt.Sprintf(", as expected with %s by the set check: a register write acknowledged before the fault can be lost the same way, and a read after the failover then returns an older value",
					plural(r.RPO.Lost, "acknowledged write lost", "acknowledged writes lost"))
			}
			notes = append(notes, s)
		}
	}
	if len(r.Set.Duplicated) > 0 || (r.Register != nil && r.Register.Result == NotLinearizable) {
		h.Status = Fail
	}
	if len(notes) == 0 {
		notes = append(notes, "no duplicates")
		if r.Register != nil {
			notes = append(notes, "register linearizable")
		}
	}
	h.Note = strings.Join(notes, "; ")
	out = append(out, h)
	return out
}

// plural says n things: plural(1, "write") is "1 write"; an irregular
// plural is given as a third argument.
func plural(n int, one string, many ...string) string {
	if n == 1 {
		return "1 " + one
	}
	if len(many) > 0 {
		return fmt.Sprintf("%d %s", n, many[0])
	}
	return fmt.Sprintf("%d %ss", n, one)
}

// round shows a duration to the millisecond.
func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return lifeboat.Permanent("drill.report", "", fmt.Errorf("writing the report's JSON: %w", err))
	}
	return nil
}

// Summary writes the terminal table: RTO, loss, the verdicts. color adds
// ANSI colours to the verdicts.
func (r *Report) Summary(w io.Writer, color bool) error {
	// Every code is 7 bytes (the header's too) so that tabwriter, which
	// counts them as text, keeps the columns aligned.
	paint := func(status string) string {
		if !color {
			return status
		}
		code := "\x1b[0;33m"
		switch status {
		case Pass:
			code = "\x1b[0;32m"
		case Fail:
			code = "\x1b[1;31m"
		case "VERDICT":
			code = "\x1b[0;39m"
		}
		return code + status + "\x1b[0m"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "drill %s", orDash(r.Scenario))
	if r.Service != "" {
		fmt.Fprintf(&b, " · service %s", r.Service)
	}
	if r.Fault != nil {
		fmt.Fprintf(&b, " · fault %s", r.Fault.Kind)
		if r.Fault.Region != "" {
			fmt.Fprintf(&b, " in %s", r.Fault.Region)
		}
		fmt.Fprintf(&b, " at %s", r.Fault.At.UTC().Format("15:04:05.000"))
	}
	fmt.Fprintf(&b, "\n%d clients · %d writes (%d acknowledged) · %d reads (%d answered) · %s\n\n",
		r.Clients, r.Writes, r.WritesOK, r.Reads, r.ReadsOK, round(r.Ended.Sub(r.Started)))

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "OBJECTIVE\tTARGET\tMEASURED\t%s\tNOTE\n", paint("VERDICT"))
	for _, v := range r.Verdicts {
		target, measured := "-", "-"
		if v.Target > 0 || v.Objective == "RPO" {
			target = round(v.Target).String()
		}
		if v.Status != None || v.Measured > 0 {
			measured = round(v.Measured).String()
		}
		if v.Objective == "history" {
			target, measured = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Objective, target, measured, paint(v.Status), v.Note)
	}
	tw.Flush()

	if r.Fault != nil {
		rt := r.RTO
		first := "never"
		if rt.Recovered {
			first = fmt.Sprintf("%s (by %s)", round(rt.Overall), orDash(rt.Region))
		}
		fmt.Fprintf(&b, "\nRTO  first ack after the fault %s · over %d clients: p50 %s  p99 %s  max %s",
			first, len(rt.Clients), round(rt.P50), round(rt.P99), round(rt.Max))
		if rt.Unrecovered > 0 {
			fmt.Fprintf(&b, " (at least: %d never recovered)", rt.Unrecovered)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "RPO  lost %d · duplicated %d · unexpected %d", r.RPO.Lost, len(r.Set.Duplicated), len(r.Set.Unexpected))
	if r.Set.Stray > 0 {
		fmt.Fprintf(&b, " · stray %d", r.Set.Stray)
	}
	if r.RPO.Window != nil {
		fmt.Fprintf(&b, " · lost writes acknowledged %s → %s", r.RPO.Window.First.UTC().Format("15:04:05.000"), r.RPO.Window.Last.UTC().Format("15:04:05.000"))
	}
	b.WriteString("\n")
	if s := r.RPO.LagAtFault; s != nil && r.Fault != nil {
		fmt.Fprintf(&b, "     lag at the fault %s, %d bytes (sampled %s before it)\n", round(s.Lag), s.Bytes, round(r.Fault.At.Sub(s.At)))
	}
	if r.Register != nil {
		fmt.Fprintf(&b, "register  %s (%d operations, %d of unknown outcome)", r.Register.Result, r.Register.Operations, r.Register.Unknown)
		if r.Register.Visualization != "" {
			fmt.Fprintf(&b, ", see %s", r.Register.Visualization)
		}
		b.WriteString("\n")
	}
	const windowsShown = 10
	for i, win := range r.Windows {
		if i == 0 {
			b.WriteString("write-unavailable windows:\n")
		}
		if i == windowsShown {
			fmt.Fprintf(&b, "  … and %d more (see the report)\n", len(r.Windows)-windowsShown)
			break
		}
		end := round(win.Duration).String()
		if win.Open {
			end += ", still failing at the end"
		}
		fmt.Fprintf(&b, "  %s → %s  %s, %d failed, %s → %s\n", win.Start.UTC().Format("15:04:05.000"), win.End.UTC().Format("15:04:05.000"),
			end, win.Failed, orDash(win.From), orDash(win.To))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return lifeboat.Permanent("drill.report", "", fmt.Errorf("writing the summary: %w", err))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
