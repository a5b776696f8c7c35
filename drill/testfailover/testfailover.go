// Package testfailover is the test failover drill, as Azure Site Recovery
// has it: a copy of the service stood up in an isolated drill unit in the
// secondary region, from a snapshot of the secondary's standby, checked,
// measured and deleted, while production replication and traffic are left
// exactly as they were.
//
// The drill unit is a PostgreSQL copy taken with pg_basebackup from the
// standby and started as a primary of its own (it follows nothing and
// nothing follows it), plus one instance of the service's compute, built
// from the spec's recipe, pointing at that copy. Both run on free loopback
// ports in <lab>/drills/<id>, and both are stopped by PID and the directory
// removed when the drill ends, whatever way it ends.
//
// What it proves: the RTO a failover of the data would have now (snapshot,
// start, first answer) and the data's freshness (the RPO a failover would
// have had at that moment), without a single change to production's
// replication, state or routes.
package testfailover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/drill"
	"github.com/lifeboat-dr/lifeboat/lab"
	"github.com/lifeboat-dr/lifeboat/store"
)

// Scenario is the drill's name on the command line.
const Scenario = "test-failover"

const op lifeboat.Op = "drill.test-failover"

// Options of a test failover.
type Options struct {
	// Dir is the lab's directory.
	Dir string
	// Out is where the report files go (default <Dir>/drills).
	Out string
	// MaxStaleness bounds the copy's freshness: its newest order may be at
	// most this much older than production's. 0: the spec's RPO objective.
	MaxStaleness time.Duration
	// StandUp bounds standing the unit up (snapshot, start, first answer).
	StandUp time.Duration
	// Settle bounds each wait on production (the standby replaying past a
	// point, streaming again).
	Settle time.Duration
	// Progress, if set, is told what the drill is doing.
	Progress func(string)
}

// DefaultOptions: the lab in ./lab, two minutes to stand the unit up, 15 s
// for production to show it is still replicating.
func DefaultOptions() Options {
	return Options{Dir: "lab", StandUp: 2 * time.Minute, Settle: 15 * time.Second}
}

// ValidateOptions says what is wrong with o, all at once.
func ValidateOptions(o Options) error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("no lab directory: set --dir"))
	}
	if o.MaxStaleness < 0 {
		errs = append(errs, fmt.Errorf("max staleness %s: want 0 (the spec's RPO) or a positive duration", o.MaxStaleness))
	}
	if o.StandUp <= 0 || o.Settle <= 0 {
		errs = append(errs, fmt.Errorf("stand-up timeout %s, settle timeout %s: both must be positive", o.StandUp, o.Settle))
	}
	if err := errors.Join(errs...); err != nil {
		return lifeboat.Permanent(op, "", err)
	}
	return nil
}

// Result is the drill's report and where it was written.
type Result struct {
	Report *Report
	JSON   string
	HTML   string
}

// Run runs a test failover in the lab in o.Dir. It returns an error only
// when the drill could not begin (no lab, no state, a run in progress) or
// its report could not be written; a drill unit that would not stand up,
// or a check that failed, is a report that is not OK. The unit is deleted
// before Run returns, also when ctx is cancelled.
func Run(ctx context.Context, o Options) (*Result, error) {
	def := DefaultOptions()
	if o.StandUp == 0 {
		o.StandUp = def.StandUp
	}
	if o.Settle == 0 {
		o.Settle = def.Settle
	}
	if err := ValidateOptions(o); err != nil {
		return nil, err
	}
	say := func(format string, a ...any) {
		if o.Progress != nil {
			o.Progress(fmt.Sprintf(format, a...))
		}
	}
	in, err := lab.LoadInfo(o.Dir)
	if err != nil {
		return nil, err
	}
	spec, diags, err := config.Load(in.Spec)
	if err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, lifeboat.Permanent(op, in.Spec, fmt.Errorf("the lab's spec %s is not valid: %v; run 'lifeboat validate -f %s'", in.Spec, diags, in.Spec))
	}
	st, err := store.Open(ctx, store.Options{Dir: filepath.Join(in.Dir, ".lifeboat"), Members: spec.Store.Members, Service: spec.Service})
	if err != nil {
		return nil, fmt.Errorf("opening the lab's state store: %w (is the lab up? 'lifeboat lab status --dir %s')", err, in.Dir)
	}
	defer st.Close()
	state, err := readState(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("reading the lab's state: %w (is the lab up? 'lifeboat lab status --dir %s')", err, in.Dir)
	}
	if state.Run != "" {
		return nil, lifeboat.Permanent(op, state.Run, fmt.Errorf("run %s is in progress: a test failover starts from a settled service ('lifeboat resume' or 'lifeboat cancel' first)", state.Run))
	}
	secondary := spec.Regions.Secondary.Name
	if state.Active == secondary {
		secondary = spec.Regions.Primary.Name
	}
	prod, drillRegion := in.Region(state.Active), in.Region(secondary)
	if prod == nil || drillRegion == nil || prod.Postgres == "" || drillRegion.Postgres == "" {
		return nil, lifeboat.Permanent(op, "", fmt.Errorf("the lab in %s has no database in %s or %s: its lab.json is not a lab's layout; 'lifeboat lab down --dir %s' and lay it out afresh", in.Dir, state.Active, secondary, in.Dir))
	}
	maxStale := o.MaxStaleness
	if maxStale == 0 {
		maxStale = time.Duration(spec.Objectives.RPO)
	}
	out := o.Out
	if out == "" {
		out = filepath.Join(in.Dir, "drills")
	}
	start := time.Now()
	// Milliseconds: two drills started in the same second must not share
	// a unit or a report.
	id := strings.ReplaceAll(start.Format("20060102-150405.000"), ".", "-") + "-" + Scenario
	rep := &Report{Scenario: Scenario, Service: spec.Service, ID: id, Active: state.Active, Region: secondary,
		Started: start, Objectives: drill.ObjectivesOf(spec.Objectives), MaxStaleness: maxStale}
	rep.Unit.Dir = filepath.Join(out, id)

	d := &run{o: o, in: in, st: st, rep: rep, prod: prod, standby: drillRegion, say: say,
		standbyApp: lab.Resource(lab.Orders, secondary), interrupted: ctx.Err}
	say("test failover of %s: a drill unit in %s from a snapshot of its standby (%s); production stays in %s", spec.Service, secondary, drillRegion.Postgres, state.Active)
	d.before(ctx, state)
	unit, standErr := d.standUp(ctx, spec)
	if standErr == nil {
		d.exercise(ctx, unit)
	}
	// Deleted always: a failed check, a unit half stood up, a cancelled
	// context (Ctrl-C) all end here.
	say("deleting the drill unit")
	teardown := unit.delete(d.keepLogs(standErr), out, id)
	rep.Deleted, rep.Left, rep.Logs = teardown.Deleted, teardown.Left, teardown.Logs
	if standErr != nil {
		rep.Error = standErr.Error()
	} else if ctx.Err() != nil {
		rep.Error = "interrupted: " + ctx.Err().Error()
	}
	if len(rep.Left) == 0 {
		what := strings.Join(rep.Deleted, "; ")
		if what == "" {
			what = "nothing had been stood up"
		}
		d.check("the drill unit is deleted", true, what)
	} else {
		d.check("the drill unit is deleted", false, "left: "+strings.Join(rep.Left, "; "))
	}
	// Production after the unit is gone: still as it was.
	if ctx.Err() == nil {
		d.after(ctx)
	}
	rep.Ended = time.Now()
	rep.finish()
	return writeReport(out, rep)
}

// readState reads the service's state, retrying what is retryable for a
// few seconds (a store member joining).
func readState(ctx context.Context, st lifeboat.Store) (*lifeboat.State, error) {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var s *lifeboat.State
		s, err = st.State(sctx)
		cancel()
		if err == nil || !lifeboat.IsRetryable(err) || ctx.Err() != nil {
			return s, err
		}
		time.Sleep(250 * time.Millisecond)
	}
	return nil, err
}

// writeReport writes the report as JSON and HTML under out.
func writeReport(out string, rep *Report) (*Result, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("creating the report's directory %s: %w", out, err)
	}
	base := filepath.Join(out, rep.ID)
	res := &Result{Report: rep, JSON: base + ".json", HTML: base + ".html"}
	for _, f := range []struct {
		path  string
		write func(*os.File) error
	}{
		{res.JSON, func(f *os.File) error { return rep.WriteJSON(f) }},
		{res.HTML, func(f *os.File) error { return rep.WriteHTML(f) }},
	} {
		fh, err := os.Create(f.path)
		if err != nil {
			return nil, fmt.Errorf("writing the report: %w", err)
		}
		err = f.write(fh)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.path, err)
		}
	}
	return res, nil
}
