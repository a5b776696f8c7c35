// Command bench measures the durable step engine (journaled no-op steps per
// second, sequential and in parallel, and the time to resume from a large
// journal, on the embedded etcd store and on the memory store) and the
// disaster-recovery operations on real PostgreSQL 15 and the lab (promote,
// switchover and its write-unavailable window, rejoin by rewind, base
// backup, lab up to ready) and the traffic layer (dnsperf against the
// built-in DNS server and BIND 9, the front door's added latency and
// throughput) and the monitor (detection and automatic failover by three
// controllers on real etcd members; false failovers under loss), as one
// table.
//
//	make bench     # builds bin/lifeboat first: the lab runs it
//	go run ./bench [-steps 2000] [-resume-steps 10000] [-dr-runs 3] [-traffic=true] [-dns-seconds 5] [-monitor-rounds 3] [-loss-for 2m] [-cpuprofile cpu.out]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"text/tabwriter"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/engine"
	"github.com/lifeboat-dr/lifeboat/store"
)

// Targets from the engine's brief.
const (
	targetParallel = 2000.0 // journaled steps per second, 8 in parallel
	targetResume   = 200 * time.Millisecond
)

func main() {
	steps := flag.Int("steps", 2000, "steps per throughput run")
	resumeSteps := flag.Int("resume-steps", 10000, "steps in the journal to resume from")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the parallel run on etcd (the one with a target) to this file")
	drRuns := flag.Int("dr-runs", 3, "rounds of the PostgreSQL and lab measurements (their median is shown); 0 skips them")
	traffic := flag.Bool("traffic", true, "measure the traffic layer (dnsperf against the built-in DNS server and BIND 9, the front door); false skips it")
	dnsSeconds := flag.Int("dns-seconds", 5, "how long each dnsperf run lasts")
	monRounds := flag.Int("monitor-rounds", 3, "automatic failovers to time (three controllers with real etcd members each); 0 skips the monitor")
	lossFor := flag.Duration("loss-for", 2*time.Minute, "how long to count false failovers with 5% of probe connections stalled; 0 skips it")
	drills := flag.Bool("drills", true, "drill a planned switchover and a region outage in the lab against issue 6's targets; false skips them")
	flag.Parse()
	tenantsMain() // -tenants N: issue 7's section alone (bench/tenants.go)
	dashboardMain()
	if err := run(*steps, *resumeSteps, *drRuns, *cpuprofile, *traffic, *dnsSeconds, *monRounds, *lossFor, *drills); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type row struct {
	what, store, measured, target, verdict string
}

func run(steps, resumeSteps, drRuns int, cpuprofile string, traffic bool, dnsSeconds, monRounds int, lossFor time.Duration, drills bool) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "lifeboat-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // the lab's PostgreSQL runs as postgres
		return err
	}
	etcd, err := store.Open(ctx, store.Options{Dir: filepath.Join(dir, "store"), Service: "bench"})
	if err != nil {
		return fmt.Errorf("opening the embedded etcd store in %s: %w", dir, err)
	}
	defer etcd.Close()
	mem := store.NewMemory()
	for _, s := range []lifeboat.Store{etcd, mem} {
		if _, err := s.Init(ctx, &lifeboat.State{Service: "bench", Epoch: 1, Active: "west", Resources: map[string]*lifeboat.Resource{}}); err != nil {
			return err
		}
	}

	var rows []row
	rate := map[string]float64{}
	for _, c := range []struct {
		name  string
		conc  int
		chain bool
	}{{"sequential (Concurrency 1, a chain)", 1, true}, {"parallel (Concurrency 8, independent)", 8, false}} {
		for _, s := range []struct {
			name string
			st   lifeboat.Store
		}{{"etcd", etcd}, {"memory", mem}} {
			profile := ""
			if c.conc == 8 && s.name == "etcd" {
				profile = cpuprofile // the measurement with a target
			}
			d, err := throughput(ctx, s.st, steps, c.conc, c.chain, profile)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", c.name, s.name, err)
			}
			r := float64(steps) / d.Seconds()
			rate[s.name+c.name] = r
			target, verdict := "-", ""
			if c.conc == 8 && s.name == "etcd" {
				target, verdict = fmt.Sprintf(">= %.0f/s", targetParallel), okOr(r >= targetParallel)
			}
			rows = append(rows, row{fmt.Sprintf("%d journaled no-op steps, %s", steps, c.name), s.name, fmt.Sprintf("%.0f steps/s", r), target, verdict})
		}
		rows = append(rows, row{"  etcd / memory", "", fmt.Sprintf("1/%.0f", rate["memory"+c.name]/rate["etcd"+c.name]), "", ""})
	}
	// The store alone, for comparison: a no-op step is 4 records (start,
	// attempt, applied, done), so a quarter of this is the engine's ceiling.
	if n, d, err := appends(ctx, etcd, 4*steps, 8); err != nil {
		return fmt.Errorf("raw appends: %w", err)
	} else {
		r := float64(n) / d.Seconds()
		rows = append(rows, row{fmt.Sprintf("%d raw Store.Append calls, 8 appenders (no engine, %d-step plan)", n, steps), "etcd", fmt.Sprintf("%.0f appends/s", r), "", ""},
			row{"  ceiling for 4-record steps (appends/s ÷ 4)", "etcd", fmt.Sprintf("%.0f steps/s", r/4), "", ""})
	}
	for _, s := range []struct {
		name string
		st   lifeboat.Store
	}{{"etcd", etcd}, {"memory", mem}} {
		d, recs, err := resume(ctx, s.st, resumeSteps)
		if err != nil {
			return fmt.Errorf("resume on %s: %w", s.name, err)
		}
		target, verdict := "-", ""
		if s.name == "etcd" {
			target, verdict = "< "+targetResume.String(), okOr(d < targetResume)
		}
		rows = append(rows, row{fmt.Sprintf("resume from a %d-step journal (%d records)", resumeSteps, recs), s.name, d.Round(time.Millisecond).String(), target, verdict})
	}

	if drRuns > 0 {
		dr, err := drRows(ctx, drRuns)
		if err != nil {
			return fmt.Errorf("disaster-recovery operations: %w", err)
		}
		for i := range dr {
			dr[i].what += fmt.Sprintf(" (median of %d)", drRuns)
		}
		rows = append(rows, dr...)
	}
	if traffic {
		tr, err := trafficRows(ctx, dnsSeconds)
		if err != nil {
			return fmt.Errorf("traffic layer: %w", err)
		}
		rows = append(rows, tr...)
	}
	if monRounds > 0 {
		mr, err := monitorRows(ctx, filepath.Join(dir, "monitor"), monRounds, lossFor)
		if err != nil {
			return fmt.Errorf("monitor: %w", err)
		}
		rows = append(rows, mr...)
	}
	if drills {
		dr, err := drillRows(ctx, filepath.Join(dir, "drills"))
		if err != nil {
			return fmt.Errorf("drills: %w", err)
		}
		rows = append(rows, dr...)
	}
	fmt.Printf("lifeboat bench · %s/%s · %d CPUs · %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "measure\tstore\tmeasured\ttarget\t")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.what, r.store, r.measured, r.target, r.verdict)
	}
	return w.Flush()
}

func okOr(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

// noop is a step that does nothing and does not hold, so the engine
// journals start, attempt, applied and done for it.
func noop(string, *lifeboat.Step) (lifeboat.Action, error) { return lifeboat.ActionFunc{}, nil }

// nextPlan returns a plan for the epoch after the stored one.
func nextPlan(ctx context.Context, st lifeboat.Store) (*lifeboat.Plan, error) {
	s, err := st.State(ctx)
	if err != nil {
		return nil, err
	}
	return &lifeboat.Plan{Service: "bench", Intent: lifeboat.IntentSwitchover, From: "west", To: "east", Epoch: s.Epoch + 1}, nil
}

func throughput(ctx context.Context, st lifeboat.Store, n, conc int, chain bool, cpuprofile string) (time.Duration, error) {
	p, err := nextPlan(ctx, st)
	if err != nil {
		return 0, err
	}
	for i := range n {
		s := &lifeboat.Step{ID: fmt.Sprintf("step-%05d", i), Op: lifeboat.OpScript, Epoch: p.Epoch}
		if chain && i > 0 {
			s.DependsOn = []string{p.Steps[i-1].ID}
		}
		p.Steps = append(p.Steps, s)
	}
	cfg := engine.DefaultConfig()
	cfg.Store, cfg.Bind, cfg.Concurrency, cfg.By = st, noop, conc, "bench"
	e, err := engine.New(cfg)
	if err != nil {
		return 0, err
	}
	if cpuprofile != "" {
		pf, err := os.Create(cpuprofile)
		if err != nil {
			return 0, err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return 0, err
		}
		defer pprof.StopCPUProfile()
	}
	t0 := time.Now()
	f, err := e.Start(ctx, p)
	if err != nil {
		return 0, err
	}
	if err := f.Error(); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// appends times n journal appends to a fresh run from w goroutines.
func appends(ctx context.Context, st lifeboat.Store, n, w int) (int, time.Duration, error) {
	p, err := nextPlan(ctx, st)
	if err != nil {
		return 0, 0, err
	}
	// As big a plan as the throughput runs': the store keeps it in the run.
	for i := range n / 4 {
		p.Steps = append(p.Steps, &lifeboat.Step{ID: fmt.Sprintf("step-%05d", i), Op: lifeboat.OpScript, Epoch: p.Epoch})
	}
	run := &lifeboat.Run{ID: fmt.Sprintf("r-bench-appends-%d", p.Epoch), Plan: p, Status: lifeboat.RunRunning, StartedAt: time.Now()}
	if err := st.Begin(ctx, run); err != nil {
		return 0, 0, err
	}
	errs := make(chan error, w)
	t0 := time.Now()
	for g := range w {
		go func() {
			for i := g; i < n; i += w {
				if _, err := st.Append(ctx, lifeboat.Record{Run: run.ID, Step: "step-00000", Kind: lifeboat.RecAttempt, Attempt: i, At: time.Now()}, nil); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range w {
		if err := <-errs; err != nil {
			return 0, 0, err
		}
	}
	d := time.Since(t0)
	run.Status, run.EndedAt = lifeboat.RunSucceeded, time.Now()
	return n, d, st.Update(ctx, run)
}

// resume builds a run whose steps are all journaled done but the last (an
// approval with nobody to ask, so the run waits), then times a Resume that
// approves it, from the call to the future finishing.
func resume(ctx context.Context, st lifeboat.Store, n int) (time.Duration, int, error) {
	p, err := nextPlan(ctx, st)
	if err != nil {
		return 0, 0, err
	}
	last := &lifeboat.Step{ID: "approve", Op: lifeboat.OpApproval, Approval: "go on?", Epoch: p.Epoch}
	for i := range n - 1 {
		s := &lifeboat.Step{ID: fmt.Sprintf("step-%05d", i), Op: lifeboat.OpScript, Epoch: p.Epoch}
		p.Steps = append(p.Steps, s)
		last.DependsOn = append(last.DependsOn, s.ID)
	}
	p.Steps = append(p.Steps, last)
	cfg := engine.DefaultConfig()
	cfg.Store, cfg.Bind, cfg.By = st, noop, "bench"
	e, err := engine.New(cfg)
	if err != nil {
		return 0, 0, err
	}
	f, err := e.Start(ctx, p)
	if err != nil {
		return 0, 0, err
	}
	if err := f.Error(); err == nil || f.Run().Status != lifeboat.RunWaiting {
		return 0, 0, fmt.Errorf("building the journal: the run ended %v, want it waiting for approval", err)
	}
	recs, err := st.Journal(ctx, f.RunID())
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	f, err = e.Resume(ctx, f.RunID(), "approve")
	if err != nil {
		return 0, 0, err
	}
	if err := f.Error(); err != nil {
		return 0, 0, err
	}
	return time.Since(t0), len(recs), nil
}
