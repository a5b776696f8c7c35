package testfailover

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/drill"
)

// Report is a test failover's outcome.
type Report struct {
	Scenario string `json:"scenario"`
	Service  string `json:"service"`
	// ID names the drill: its unit's directory and its report files.
	ID string `json:"id"`
	// Active is production's region; Region is where the drill unit was.
	Active  string    `json:"active"`
	Region  string    `json:"region"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`

	Objectives drill.Objectives `json:"objectives"`
	// MaxStaleness is the freshness bound (the RPO objective unless set).
	MaxStaleness time.Duration `json:"max_staleness_ns"`

	Unit      Unit       `json:"unit"`
	StandUp   Timings    `json:"stand_up"`
	Freshness *Freshness `json:"freshness,omitempty"`
	// ProbeOrder is the item of the order the unit's compute took.
	ProbeOrder string `json:"probe_order,omitempty"`

	Checks   []Check         `json:"checks"`
	Verdicts []drill.Verdict `json:"verdicts"`
	// Deleted is what the drill deleted afterwards; Left what it could not
	// (with where it is); Logs the unit's logs kept for a failed drill.
	Deleted []string `json:"deleted"`
	Left    []string `json:"left,omitempty"`
	Logs    []string `json:"logs,omitempty"`
	// Error is why the drill stopped early, if it did.
	Error string `json:"error,omitempty"`
}

// Unit is where the drill unit ran.
type Unit struct {
	Dir string `json:"dir"`
	// Source is the standby the snapshot was taken from.
	Source      string `json:"source"`
	Database    string `json:"database"`
	DatabasePID int    `json:"database_pid,omitempty"`
	Compute     string `json:"compute"`
	ComputePID  int    `json:"compute_pid,omitempty"`
}

// Timings of standing the unit up. Total, from the start of the snapshot
// to the compute's first answer, is the RTO the test failover proves.
type Timings struct {
	Snapshot    time.Duration `json:"snapshot_ns"`
	Start       time.Duration `json:"start_ns"`
	FirstAnswer time.Duration `json:"first_answer_ns"`
	Total       time.Duration `json:"total_ns"`
}

// Freshness is how far the copy was behind production: the RPO a real
// failover would have had at the snapshot.
type Freshness struct {
	Measured bool `json:"measured"`
	// Staleness is production's newest order (sampled just after the
	// snapshot) minus the copy's: an upper bound of what was lost.
	Staleness        time.Duration `json:"staleness_ns"`
	Bound            time.Duration `json:"bound_ns"`
	ProductionNewest time.Time     `json:"production_newest,omitzero"`
	CopyNewest       time.Time     `json:"copy_newest,omitzero"`
	// The standby's replay lag as the primary saw it just after the snapshot.
	LagBytes  int64         `json:"lag_bytes"`
	ReplayLag time.Duration `json:"replay_lag_ns"`
	Note      string        `json:"note,omitempty"`
}

// Check is one thing the drill verified.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"` // drill.Pass or drill.Fail
	Reason string `json:"reason"`
}

// OK: every check passed, no verdict failed, the unit is gone.
func (r *Report) OK() bool {
	if r.Error != "" || len(r.Left) > 0 || len(r.Checks) == 0 {
		return false
	}
	for _, c := range r.Checks {
		if c.Status != drill.Pass {
			return false
		}
	}
	for _, v := range r.Verdicts {
		if v.Status == drill.Fail {
			return false
		}
	}
	return true
}

// finish sets the verdicts: the stand-up time against the RTO objective,
// the freshness against its bound.
func (r *Report) finish() {
	rto := drill.Verdict{Objective: "RTO (stand-up)", Target: r.Objectives.RTO, Measured: r.StandUp.Total}
	switch {
	case r.StandUp.Total == 0:
		rto.Status, rto.Note = drill.Fail, "the drill unit did not stand up"
	case r.Objectives.RTO <= 0:
		rto.Status, rto.Note = drill.None, "no RTO objective in the spec"
	case r.StandUp.Total > r.Objectives.RTO:
		rto.Status, rto.Note = drill.Fail, fmt.Sprintf("snapshot, start and first answer took %s, over the objective by %s", round(r.StandUp.Total), round(r.StandUp.Total-r.Objectives.RTO))
	default:
		rto.Status, rto.Note = drill.Pass, fmt.Sprintf("snapshot %s + start %s + first answer %s", round(r.StandUp.Snapshot), round(r.StandUp.Start), round(r.StandUp.FirstAnswer))
	}
	rpo := drill.Verdict{Objective: "RPO (freshness)", Target: r.MaxStaleness}
	switch f := r.Freshness; {
	case f == nil || !f.Measured:
		rpo.Status, rpo.Note = drill.Fail, "not measured"
		if f != nil && f.Note != "" {
			rpo.Note += ": " + f.Note
		}
	default:
		rpo.Measured = f.Staleness
		rpo.Status, rpo.Note = drill.Pass, "the copy's newest order against production's"
		if f.Staleness > r.MaxStaleness {
			rpo.Status, rpo.Note = drill.Fail, fmt.Sprintf("the copy was %s behind production, more than %s", round(f.Staleness), round(r.MaxStaleness))
		}
	}
	r.Verdicts = []drill.Verdict{rto, rpo}
	if r.Deleted == nil {
		r.Deleted = []string{}
	}
	if r.Checks == nil {
		r.Checks = []Check{}
	}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return lifeboat.Permanent(op, "", fmt.Errorf("writing the report's JSON: %w", err))
	}
	return nil
}

// Summary writes the terminal tables: the checks, the measures against the
// objectives, and what was deleted. color paints the statuses.
func (r *Report) Summary(w io.Writer, color bool) error {
	paint := func(status string) string {
		if !color {
			return status
		}
		// Every code is 7 bytes so that tabwriter keeps the columns.
		code := "\x1b[0;33m"
		switch status {
		case drill.Pass:
			code = "\x1b[0;32m"
		case drill.Fail:
			code = "\x1b[1;31m"
		case "RESULT", "VERDICT":
			code = "\x1b[0;39m"
		}
		return code + status + "\x1b[0m"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "drill %s · service %s · drill unit in %s (snapshot of %s), production in %s · %s\n\n",
		r.Scenario, r.Service, r.Region, r.Unit.Source, r.Active, round(r.Ended.Sub(r.Started)))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CHECK\t%s\tREASON\n", paint("RESULT"))
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, paint(c.Status), oneLine(c.Reason))
	}
	tw.Flush()
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "OBJECTIVE\tTARGET\tMEASURED\t%s\tNOTE\n", paint("VERDICT"))
	for _, v := range r.Verdicts {
		target, measured := "-", "-"
		if v.Target > 0 {
			target = round(v.Target).String()
		}
		if v.Status == drill.Pass || v.Measured > 0 {
			measured = round(v.Measured).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Objective, target, measured, paint(v.Status), v.Note)
	}
	tw.Flush()
	if r.Error != "" {
		fmt.Fprintf(&b, "\nstopped early: %s\n", oneLine(r.Error))
	}
	b.WriteString("\ndeleted:\n")
	if len(r.Deleted) == 0 {
		b.WriteString("  nothing (nothing had been stood up)\n")
	}
	for _, d := range r.Deleted {
		fmt.Fprintf(&b, "  %s\n", d)
	}
	if len(r.Left) > 0 {
		b.WriteString("LEFT BEHIND (clean up by hand):\n")
		for _, l := range r.Left {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	for _, l := range r.Logs {
		fmt.Fprintf(&b, "kept the unit's log %s\n", l)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return lifeboat.Permanent(op, "", fmt.Errorf("writing the summary: %w", err))
	}
	return nil
}

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":    func(d time.Duration) string { return round(d).String() },
	"clock": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000 UTC") },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Test failover {{.ID}} · {{.Service}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.pass{color:#137a2a;font-weight:600}.fail{color:#b3141b;font-weight:700}
code{background:#f4f4f4;padding:0 .25em}
</style></head><body>
<h1>Test failover of {{.Service}} <small>{{if .OK}}<span class="pass">pass</span>{{else}}<span class="fail">fail</span>{{end}}</small></h1>
<p>Drill unit in <b>{{.Region}}</b> from a snapshot of <code>{{.Unit.Source}}</code>; production stays in <b>{{.Active}}</b>.
{{clock .Started}} → {{clock .Ended}}.</p>
{{if .Error}}<p class="fail">Stopped early: {{.Error}}</p>{{end}}
<h2>Objectives</h2>
<table><tr><th>Objective</th><th>Target</th><th>Measured</th><th>Verdict</th><th>Note</th></tr>
{{range .Verdicts}}<tr><td>{{.Objective}}</td><td>{{ms .Target}}</td><td>{{ms .Measured}}</td><td class="{{.Status}}">{{.Status}}</td><td>{{.Note}}</td></tr>
{{end}}</table>
<h2>Stand-up</h2>
<table><tr><th>Snapshot</th><th>Start</th><th>First answer</th><th>Total (RTO)</th></tr>
<tr><td>{{ms .StandUp.Snapshot}}</td><td>{{ms .StandUp.Start}}</td><td>{{ms .StandUp.FirstAnswer}}</td><td>{{ms .StandUp.Total}}</td></tr></table>
<h2>Checks</h2>
<table><tr><th>Check</th><th>Result</th><th>Reason</th></tr>
{{range .Checks}}<tr><td>{{.Name}}</td><td class="{{.Status}}">{{.Status}}</td><td>{{.Reason}}</td></tr>
{{end}}</table>
<h2>Drill unit</h2>
<table><tr><th>Directory</th><td><code>{{.Unit.Dir}}</code></td></tr>
<tr><th>Database copy</th><td>{{.Unit.Database}}{{if .Unit.DatabasePID}} (PID {{.Unit.DatabasePID}}){{end}}</td></tr>
<tr><th>Compute</th><td>{{.Unit.Compute}}{{if .Unit.ComputePID}} (PID {{.Unit.ComputePID}}){{end}}</td></tr>
<tr><th>Deleted</th><td>{{range .Deleted}}{{.}}<br>{{else}}nothing had been stood up{{end}}</td></tr>
{{if .Left}}<tr><th class="fail">Left behind</th><td>{{range .Left}}{{.}}<br>{{end}}</td></tr>{{end}}
{{if .Logs}}<tr><th>Logs kept</th><td>{{range .Logs}}<code>{{.}}</code><br>{{end}}</td></tr>{{end}}
</table>
</body></html>
`))

// WriteHTML writes the report as one self-contained HTML page.
func (r *Report) WriteHTML(w io.Writer) error {
	if err := htmlTemplate.Execute(w, r); err != nil {
		return lifeboat.Permanent(op, "", fmt.Errorf("writing the report's HTML: %w", err))
	}
	return nil
}

// oneLine keeps a table row on one line: PostgreSQL's errors carry hints on
// lines of their own.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
