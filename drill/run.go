package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
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
	// Registers is how many register clients run beside the order
	// writers: each writes unique values to and reads a few shared
	// registers (PUT/GET /register/{key}) through the front door, and the
	// history is checked for linearizability. 0 runs none.
	Registers int
	// ReplicationDelay, if set, delays the replication link between the
	// regions by this much each way from before the load starts, so that
	// the standby lags at the fault: an async drill then loses the
	// acknowledged writes still in flight, and the report sets them
	// against the lag sampled then. Only for the scenarios whose fault cuts
	// that link (region-outage, partition): the delay goes with it.
	ReplicationDelay time.Duration
	// Out is where the report files go (default <Dir>/drills).
	Out string
	// Progress, if set, is told what the drill is doing.
	Progress func(string)
}

// DefaultOptions: a region outage of the lab in ./lab, 20 s of load by 8
// clients, the fault after 3 s.
func DefaultOptions() Options {
	return Options{Dir: "lab", Scenario: ScenarioRegionOutage, Duration: 20 * time.Second, Warmup: 3 * time.Second,
		Clients: 8, Registers: 3, Pause: 20 * time.Millisecond, Timeout: time.Second}
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
	if o.Registers < 0 || o.Registers > 64 {
		errs = append(errs, fmt.Errorf("register clients %d: want 0 to 64", o.Registers))
	}
	switch {
	case o.ReplicationDelay == 0:
	case o.ReplicationDelay < time.Millisecond || o.ReplicationDelay > 10*time.Second:
		errs = append(errs, fmt.Errorf("replication delay %s: want 1ms to 10s (one way), or 0 for none", o.ReplicationDelay))
	case o.Scenario != ScenarioRegionOutage && o.Scenario != ScenarioPartition:
		errs = append(errs, fmt.Errorf("replication delay with %s: the delay would outlast the drill; use it with %s or %s, whose fault cuts the replication link",
			o.Scenario, ScenarioRegionOutage, ScenarioPartition))
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

	if o.ReplicationDelay > 0 {
		if _, err := lab.Fault(ctx, o.Dir, lab.FaultRequest{Kind: lab.FaultLatency, Latency: o.ReplicationDelay.String()}); err != nil {
			return nil, fmt.Errorf("delaying the replication link by %s: %w", o.ReplicationDelay, err)
		}
		say("replication link delayed by %s each way: the standby lags", o.ReplicationDelay)
	}
	say("%s drill of %s: %d clients and %d register clients for %s, the fault after %s (active %s)", o.Scenario, spec.Service, o.Clients, o.Registers, o.Duration, o.Warmup, active)
	run := fmt.Sprintf("drill-%d", time.Now().UnixNano())
	loadCtx, stopLoad := context.WithTimeout(ctx, o.Duration)
	defer stopLoad()
	attempts := make([][]Attempt, o.Clients)
	registerOps := make([][]Attempt, o.Registers)
	var lwg sync.WaitGroup
	for c := range o.Clients {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			attempts[c] = writeOrders(loadCtx, in.Front, run, c, o.Pause, o.Timeout)
		}()
	}
	for c := range o.Registers {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			// Numbered after the order writers, so a client number names
			// one client in the whole report.
			registerOps[c] = useRegisters(loadCtx, in.Front, run, o.Clients+c, o.Pause, o.Timeout)
		}()
	}

	select {
	case <-time.After(o.Warmup):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	fault := &Fault{Kind: o.Scenario, Region: active, At: time.Now()}
	say("fault: %s (%s) at %s", o.Scenario, active, fault.At.Format("15:04:05.000"))
	if err := inject(ctx, o, in, spec, st, fault, automatic, say); err != nil {
		stopLoad()
		lwg.Wait()
		return nil, fmt.Errorf("injecting %s: %w", o.Scenario, err)
	}
	if o.Scenario == ScenarioPartition || o.Scenario == ScenarioControllerCrash {
		fault.Region = ""
	}

	lwg.Wait()
	if o.Scenario == ScenarioControllerCrash {
		if ls, err := lab.LabStatus(ctx, o.Dir); err == nil {
			for _, c := range ls.Controllers {
				if c.Leader {
					say("the controllers' leader is now %s's", c.Region)
				}
			}
		}
	}
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
		if settled.Active == fault.Region && (o.Scenario == ScenarioRegionOutage || o.Scenario == ScenarioRegionHang) {
			// Say what went wrong first: the service never left the region.
			var ran []string
			if steps, serr := stepsSince(context.Background(), st, fault.At.Add(-time.Second)); serr == nil {
				for _, s := range steps {
					ran = append(ran, s.ID+" "+s.Status)
				}
			}
			if len(ran) == 0 {
				ran = []string{"none"}
			}
			return nil, fmt.Errorf("no failover: after the %s of %s the state still says %s is active (epoch %d); steps run since the fault: %s; see the controllers' logs under %s: %w",
				o.Scenario, fault.Region, settled.Active, settled.Epoch, strings.Join(ran, "; "), in.Dir, err)
		}
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
	base, err := reportBase(o, in)
	if err != nil {
		return nil, err
	}
	input := Input{Scenario: o.Scenario, Service: spec.Service, Attempts: all, Final: final, Fault: fault, Steps: steps, Lag: lag, Objectives: ObjectivesOf(spec.Objectives)}
	if o.Registers > 0 {
		for _, ops := range registerOps {
			input.RegisterOps = append(input.RegisterOps, ops...)
		}
		say("checking the register history (%d operations) for linearizability", len(input.RegisterOps))
		ro := DefaultRegisterOptions()
		ro.Visualization = base + "-register.html"
		reg := CheckRegister(input.RegisterOps, ro)
		input.Register = &reg
	}
	rep, err := BuildReport(input, DefaultReportOptions())
	if err != nil {
		return nil, err
	}
	return writeReport(base, rep)
}

// outcome says whether an attempt that was not acknowledged may still have
// taken effect: only a refused connection, a 4xx, or the shop's own
// "read-only" refusal prove it did not. Anything else (a timeout, a reset,
// a proxy's 5xx) is unknown.
func outcome(err error, status int, body string) string {
	var op *net.OpError
	switch {
	case err != nil && errors.As(err, &op) && op.Op == "dial":
		return OutcomeFailed
	case err != nil:
		return OutcomeUnknown
	case status >= 400 && status < 500:
		return OutcomeFailed
	case status == http.StatusServiceUnavailable && strings.Contains(body, "read-only"):
		return OutcomeFailed
	}
	return OutcomeUnknown
}

// registerKeys is how many registers the register clients share: few, so
// that they contend for them, and more than one, so that porcupine checks
// smaller histories.
const registerKeys = 3

// useRegisters writes unique values to and reads the drill's registers
// from one client until ctx ends, one operation at a time, each recorded
// with its call and return times.
func useRegisters(ctx context.Context, front, run string, client int, pause, timeout time.Duration) []Attempt {
	hc := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	rng := rand.New(rand.NewPCG(uint64(client), uint64(time.Now().UnixNano())))
	var out []Attempt
	for seq := 0; ctx.Err() == nil; seq++ {
		a := Attempt{Client: client, Seq: seq, Kind: KindRead, ID: fmt.Sprintf("%s-r%d", run, rng.IntN(registerKeys))}
		req, _ := http.NewRequest(http.MethodGet, "http://"+front+"/register/"+a.ID, nil)
		if rng.IntN(2) == 0 {
			a.Kind, a.Value = KindWrite, fmt.Sprintf("c%d-%d", client, seq)
			body, _ := json.Marshal(map[string]string{"value": a.Value})
			req, _ = http.NewRequest(http.MethodPut, "http://"+front+"/register/"+a.ID, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
		}
		a.Start = time.Now()
		resp, err := hc.Do(req)
		var status int
		var b []byte
		if err == nil {
			b, err = io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			status = resp.StatusCode
		}
		a.End = time.Now()
		var p struct {
			Value  string `json:"value"`
			Region string `json:"region"`
		}
		switch {
		case err != nil:
			a.Err = err.Error()
		case status == http.StatusOK && json.Unmarshal(b, &p) == nil && (a.Kind == KindRead || p.Value == a.Value):
			a.OK, a.Region = true, p.Region
			if a.Kind == KindRead {
				a.Value = p.Value
			}
		default:
			a.Err = strings.TrimSpace(fmt.Sprintf("%d %s", status, b))
		}
		a.Outcome = OutcomeOK
		if !a.OK {
			a.Outcome = outcome(err, status, string(b))
			if a.Kind == KindRead {
				a.Value = ""
			}
		}
		out = append(out, a)
		wait := pause
		if !a.OK {
			// Longer than an order writer's: every write of unknown outcome
			// widens the linearizability search.
			wait = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return out
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
		a.Outcome = OutcomeOK
		switch {
		case err != nil:
			a.Err, a.Outcome = err.Error(), outcome(err, 0, "")
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
				a.Err, a.Outcome = strings.TrimSpace(resp.Status+" "+string(b)), outcome(nil, resp.StatusCode, string(b))
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
func inject(ctx context.Context, o Options, in *lab.Info, spec *lifeboat.Spec, st lifeboat.Store, fault *Fault, automatic bool, say func(string, ...any)) error {
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
		return runPlan(ctx, spec, st, lifeboat.IntentFailover, say)
	case ScenarioPartition:
		_, err := lab.Fault(ctx, o.Dir, lab.FaultRequest{Kind: lab.FaultPartition})
		return err
	case ScenarioPlannedSwitchover:
		return runPlan(ctx, spec, st, lifeboat.IntentSwitchover, say)
	case ScenarioFailback:
		return runPlan(ctx, spec, st, lifeboat.IntentFailback, say)
	case ScenarioControllerCrash:
		ls, err := lab.LabStatus(ctx, o.Dir)
		if err != nil {
			return err
		}
		for _, c := range ls.Controllers {
			if c.Leader && c.PID > 0 {
				fault.Region = c.Region
				if err := syscall.Kill(c.PID, syscall.SIGKILL); err != nil {
					return fmt.Errorf("SIGKILL to %s's controller (PID %d): %w", c.Region, c.PID, err)
				}
				say("SIGKILLed the leading controller, %s's (PID %d)", c.Region, c.PID)
				return nil
			}
		}
		return errors.New("no controller leads now: nothing to crash (is the lab's monitor on?)")
	}
	return fmt.Errorf("unknown scenario %q", o.Scenario)
}

// runPlan plans and runs intent now, as 'lifeboat <intent> --yes' would,
// in the background: the load measures it.
func runPlan(ctx context.Context, spec *lifeboat.Spec, st lifeboat.Store, intent lifeboat.Intent, say func(string, ...any)) error {
	state, err := st.State(ctx)
	if err != nil {
		return err
	}
	say("planning the %s from %s (epoch %d)", intent, state.Active, state.Epoch)
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
	f, err := eng.Start(context.WithoutCancel(ctx), p)
	if err == nil {
		say("run %s started: the %s plan of %d steps", f.RunID(), intent, len(p.Steps))
	}
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

// reportBase is the path, less its extension, of the report's files under
// o.Out.
func reportBase(o Options, in *lab.Info) (string, error) {
	out := o.Out
	if out == "" {
		out = filepath.Join(in.Dir, "drills")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("creating the report directory: %w (set --out to a writable directory)", err)
	}
	return filepath.Join(out, time.Now().Format("20060102-150405")+"-"+o.Scenario), nil
}

// writeReport writes the report as base.json and base.html.
func writeReport(base string, rep *Report) (*Result, error) {
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
