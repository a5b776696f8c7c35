package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/driver"
	"github.com/lifeboat-dr/lifeboat/engine"
	"github.com/lifeboat-dr/lifeboat/lab"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/planner"
	"github.com/lifeboat-dr/lifeboat/store"
)

// Scenarios a drill can run in the lab.
const (
	ScenarioRegionOutage      = "region-outage"      // the active region goes down
	ScenarioRegionHang        = "region-hang"        // the active region's links pass nothing
	ScenarioPartition         = "partition"          // west and east cannot reach each other; the witness sees both
	ScenarioPlannedSwitchover = "planned-switchover" // a zero-loss move to the other region
	ScenarioFailback          = "failback"           // home again, zero loss
	ScenarioControllerCrash   = "controller-crash"   // the leading controller is SIGKILLed
)

// Scenarios lists them, in the order help shows them.
var Scenarios = []string{ScenarioRegionOutage, ScenarioRegionHang, ScenarioPartition, ScenarioPlannedSwitchover, ScenarioFailback, ScenarioControllerCrash}

// Options of a drill.
type Options struct {
	// Dir is the lab's directory.
	Dir      string
	Scenario string
	// Duration is how long the load runs in all; the fault comes after
	// Warmup.
	Duration, Warmup time.Duration
	// Clients write side by side, each one order at a time, pausing Pause
	// between two.
	Clients int
	Pause   time.Duration
	// Timeout bounds one write: a hung region counts as failed writes.
	Timeout time.Duration
	// Out is where the report files go (default <Dir>/drills).
	Out string
	// Progress, if set, is told what the drill is doing.
	Progress func(string)
}

// DefaultOptions: a region outage of the lab in ./lab, 20 s of load by 8
// clients, the fault after 3 s.
func DefaultOptions() Options {
	return Options{Dir: "lab", Scenario: ScenarioRegionOutage, Duration: 20 * time.Second, Warmup: 3 * time.Second,
		Clients: 8, Pause: 20 * time.Millisecond, Timeout: time.Second}
}

// ValidateOptions says what is wrong with o, all at once.
func ValidateOptions(o Options) error {
	var errs []error
	known := false
	for _, s := range Scenarios {
		known = known || s == o.Scenario
	}
	if !known {
		errs = append(errs, fmt.Errorf("scenario %q: use one of %s", o.Scenario, strings.Join(Scenarios, ", ")))
	}
	if o.Clients < 1 || o.Clients > 256 {
		errs = append(errs, fmt.Errorf("clients %d: want 1 to 256", o.Clients))
	}
	if o.Warmup <= 0 || o.Duration <= o.Warmup+time.Second {
		errs = append(errs, fmt.Errorf("duration %s with warm-up %s: the load must run at least a second after the fault", o.Duration, o.Warmup))
	}
	if o.Timeout <= 0 || o.Pause < 0 {
		errs = append(errs, fmt.Errorf("timeout %s, pause %s: want a positive timeout and a pause of 0 or more", o.Timeout, o.Pause))
	}
	if o.Dir == "" {
		errs = append(errs, errors.New("no lab directory: set --dir"))
	}
	if err := errors.Join(errs...); err != nil {
		return lifeboat.Permanent("drill.run", "", err)
	}
	return nil
}

// Result is a drill's report and where it was written.
type Result struct {
	Report *Report
	JSON   string
	HTML   string
}

// Run runs a drill in the lab: a load of uniquely identified orders
// through the front door, the scenario's fault at a known instant,
// Lifeboat acting (the lab's controllers when its monitor is automatic,
// else this drill runs the failover plan, as a person would), the load
// going on until Duration, then every acknowledged order checked on the
// primary, and a report.
func Run(ctx context.Context, o Options) (*Result, error) {
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
		return nil, fmt.Errorf("the lab's spec %s is not valid: %v", in.Spec, diags)
	}
	st, err := store.Open(ctx, store.Options{Dir: filepath.Join(in.Dir, ".lifeboat"), Members: spec.Store.Members, Service: spec.Service})
	if err != nil {
		return nil, fmt.Errorf("opening the lab's state store: %w", err)
	}
	defer st.Close()
	state, err := st.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the lab's state: %w (is the lab up? 'lifeboat lab status')", err)
	}
	if state.Run != "" {
		return nil, lifeboat.Permanent("drill.run", state.Run, fmt.Errorf("run %s is in progress: a drill starts from a settled service ('lifeboat resume' or 'lifeboat cancel' first)", state.Run))
	}
	automatic := in.Monitor == string(lifeboat.MonitorAutomatic)
	active := state.Active
	if o.Scenario == ScenarioFailback && active == spec.Regions.Primary.Name {
		return nil, lifeboat.Permanent("drill.run", "", fmt.Errorf("failback drill: %s is already home in %s; drill a region-outage or a planned-switchover first", spec.Service, active))
	}
	if o.Scenario == ScenarioControllerCrash && in.Monitor == "" {
		return nil, lifeboat.Permanent("drill.run", "", errors.New("controller-crash needs the lab's controllers: 'lifeboat lab up --monitor automatic'"))
	}

	// The replication lag of the active primary, sampled all along.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lagMu sync.Mutex
	var lag []LagSample
	primary := in.Region(active)
	dsn := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", lab.DBUser, lab.DBPassword, primary.Postgres, lab.ShopDatabase)
	sampler := monitor.PostgresLagSampler(dsn, "", 500*time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if s, err := sampler(ctx); err == nil && s.Streaming {
				lagMu.Lock()
				lag = append(lag, LagSample{At: s.At, Bytes: s.LagBytes, Lag: s.LagTime})
				lagMu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()

	say("%s drill of %s: %d clients for %s, the fault after %s (active %s)", o.Scenario, spec.Service, o.Clients, o.Duration, o.Warmup, active)
	run := fmt.Sprintf("drill-%d", time.Now().UnixNano())
	loadCtx, stopLoad := context.WithTimeout(ctx, o.Duration)
	defer stopLoad()
	attempts := make([][]Attempt, o.Clients)
	var lwg sync.WaitGroup
	for c := range o.Clients {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			attempts[c] = writeOrders(loadCtx, in.Front, run, c, o.Pause, o.Timeout)
		}()
	}

	select {
	case <-time.After(o.Warmup):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	fault := &Fault{Kind: o.Scenario, Region: active, At: time.Now()}
	say("fault: %s (%s) at %s", o.Scenario, active, fault.At.Format("15:04:05.000"))
	if err := inject(ctx, o, in, spec, st, fault, automatic); err != nil {
		stopLoad()
		lwg.Wait()
		return nil, fmt.Errorf("injecting %s: %w", o.Scenario, err)
	}
	if o.Scenario == ScenarioPartition || o.Scenario == ScenarioControllerCrash {
		fault.Region = ""
	}

	lwg.Wait()
	say("load done; waiting for the service to settle")
	settled, err := settle(ctx, st, fault.At)
	if err != nil {
		return nil, err
	}
	cancel() // the lag sampler
	wg.Wait()

	// Every order, counted on the writable primary.
	final, err := ordersOnPrimary(context.Background(), in, settled.Active, run)
	if err != nil {
		return nil, err
	}
	var all []Attempt
	for _, as := range attempts {
		all = append(all, as...)
	}
	steps, err := stepsSince(context.Background(), st, fault.At.Add(-time.Second))
	if err != nil {
		return nil, err
	}
	input := Input{Scenario: o.Scenario, Service: spec.Service, Attempts: all, Final: final, Fault: fault, Steps: steps, Lag: lag, Objectives: ObjectivesOf(spec.Objectives)}
	rep, err := BuildReport(input, DefaultReportOptions())
	if err != nil {
		return nil, err
	}
	return writeReport(o, in, rep)
}

// writeOrders posts orders from one client until ctx ends: each has a
// unique item (the drill's run, the client, a sequence), so that every
// acknowledged one can be found after recovery.
func writeOrders(ctx context.Context, front, run string, client int, pause, timeout time.Duration) []Attempt {
	hc := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	var out []Attempt
	for seq := 0; ctx.Err() == nil; seq++ {
		id := fmt.Sprintf("%s-c%d-%d", run, client, seq)
		a := Attempt{Client: client, Seq: seq, Kind: KindWrite, ID: id, Start: time.Now()}
		body, _ := json.Marshal(map[string]any{"item": id, "qty": 1})
		resp, err := hc.Post("http://"+front+"/orders", "application/json", bytes.NewReader(body))
		a.End = time.Now()
		switch {
		case err != nil:
			a.Err = err.Error()
		default:
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			var p struct {
				ID     int64  `json:"id"`
				Region string `json:"region"`
			}
			if resp.StatusCode == http.StatusCreated && json.Unmarshal(b, &p) == nil && p.ID > 0 {
				a.OK, a.Region = true, p.Region
			} else {
				a.Err = strings.TrimSpace(resp.Status + " " + string(b))
			}
		}
		out = append(out, a)
		if !a.OK {
			// A failed write is retried as a new order after a short
			// pause: the client does not know whether it committed.
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if pause > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
		}
	}
	return out
}

// inject does the scenario's fault, and the failover or move the scenario
// asks of Lifeboat when no controller will act on its own.
func inject(ctx context.Context, o Options, in *lab.Info, spec *lifeboat.Spec, st lifeboat.Store, fault *Fault, automatic bool) error {
	switch o.Scenario {
	case ScenarioRegionOutage, ScenarioRegionHang:
		kind := lab.FaultRegionDown
		if o.Scenario == ScenarioRegionHang {
			kind = lab.FaultRegionHang
		}
		if _, err := lab.Fault(ctx, o.Dir, lab.FaultRequest{Kind: kind, Region: fault.Region}); err != nil {
			return err
		}
		if automatic {
			return nil // the controllers decide
		}
		return runPlan(ctx, spec, st, lifeboat.IntentFailover)
	case ScenarioPartition:
		_, err := lab.Fault(ctx, o.Dir, lab.FaultRequest{Kind: lab.FaultPartition})
		return err
	case ScenarioPlannedSwitchover:
		return runPlan(ctx, spec, st, lifeboat.IntentSwitchover)
	case ScenarioFailback:
		return runPlan(ctx, spec, st, lifeboat.IntentFailback)
	case ScenarioControllerCrash:
		ls, err := lab.LabStatus(ctx, o.Dir)
		if err != nil {
			return err
		}
		for _, c := range ls.Controllers {
			if c.Leader && c.PID > 0 {
				fault.Region = c.Region
				return syscall.Kill(c.PID, syscall.SIGKILL)
			}
		}
		return errors.New("no controller leads now: nothing to crash (is the lab's monitor on?)")
	}
	return fmt.Errorf("unknown scenario %q", o.Scenario)
}

// runPlan plans and runs intent now, as 'lifeboat <intent> --yes' would,
// in the background: the load measures it.
func runPlan(ctx context.Context, spec *lifeboat.Spec, st lifeboat.Store, intent lifeboat.Intent) error {
	state, err := st.State(ctx)
	if err != nil {
		return err
	}
	p, err := planner.Plan(spec, state, intent, "")
	if err != nil {
		return err
	}
	drivers, err := driver.FromSpec(spec, state)
	if err != nil {
		return err
	}
	ec := engine.DefaultConfig()
	ec.Store, ec.By = st, "lifeboat drill"
	ec.Bind = func(run string, step *lifeboat.Step) (lifeboat.Action, error) {
		return lifeboat.Bind(spec, drivers, run, step)
	}
	eng, err := engine.New(ec)
	if err != nil {
		return err
	}
	_, err = eng.Start(context.WithoutCancel(ctx), p)
	return err
}

// settle waits until no run is in progress, and no run started after the
// fault is still to come (a controller deciding): the state is the one the
// drill ends in.
func settle(ctx context.Context, st lifeboat.Store, since time.Time) (*lifeboat.State, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		state, err := st.State(sctx)
		cancel()
		if err == nil && state.Run == "" {
			return state, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("run %s is still in progress two minutes after the load ended", state.Run)
			}
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ordersOnPrimary counts the drill's orders on the active region's
// database, by item.
func ordersOnPrimary(ctx context.Context, in *lab.Info, active, run string) (map[string]int, error) {
	r := in.Region(active)
	if r == nil {
		return nil, fmt.Errorf("the lab has no region %q", active)
	}
	dsn := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", lab.DBUser, lab.DBPassword, r.Postgres, lab.ShopDatabase)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("reading the orders on %s's primary (%s): %w", active, r.Postgres, err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(cctx, `SELECT item, count(*) FROM orders WHERE item LIKE $1 GROUP BY item`, run+"-%")
	if err != nil {
		return nil, fmt.Errorf("reading the orders on %s's primary: %w", active, err)
	}
	out := map[string]int{}
	for rows.Next() {
		var item string
		var n int
		if err := rows.Scan(&item, &n); err != nil {
			return nil, err
		}
		out[item] = n
	}
	return out, rows.Err()
}

// stepsSince are the steps of every run started after since, from their
// journals.
func stepsSince(ctx context.Context, st lifeboat.Store, since time.Time) (steps []Step, err error) {
	// The store may still be leaving a member the fault cut off: retry
	// what is retryable.
	for attempt := 1; attempt <= 20; attempt++ {
		if steps, err = readSteps(ctx, st, since); err == nil || !lifeboat.IsRetryable(err) {
			return steps, err
		}
		time.Sleep(250 * time.Millisecond)
	}
	return nil, err
}

func readSteps(ctx context.Context, st lifeboat.Store, since time.Time) ([]Step, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	runs, err := st.Runs(ctx)
	if err != nil {
		return nil, err
	}
	var out []Step
	for _, r := range runs {
		if r.StartedAt.Before(since) {
			continue
		}
		recs, err := st.Journal(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, StepsFromJournal(r.Plan, recs)...)
	}
	return out, nil
}

// writeReport writes the report as JSON and HTML under o.Out.
func writeReport(o Options, in *lab.Info, rep *Report) (*Result, error) {
	out := o.Out
	if out == "" {
		out = filepath.Join(in.Dir, "drills")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(out, time.Now().Format("20060102-150405")+"-"+o.Scenario)
	res := &Result{Report: rep, JSON: base + ".json", HTML: base + ".html"}
	for _, f := range []struct {
		path  string
		write func(io.Writer) error
	}{{res.JSON, rep.WriteJSON}, {res.HTML, rep.WriteHTML}} {
		fh, err := os.Create(f.path)
		if err != nil {
			return nil, err
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
