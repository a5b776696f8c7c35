package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

func TestConfigValidation(t *testing.T) {
	if err := ValidateConfig(Config{}); err == nil {
		t.Fatal("an empty config passed validation")
	} else if lifeboat.IsRetryable(err) {
		t.Errorf("a config error says it is retryable: %v", err)
	}
	c := DefaultConfig()
	c.Store, c.Bind = newFixture(t).store, newWorld().bind
	if err := ValidateConfig(c); err != nil {
		t.Fatalf("defaults with a store and bind: %v", err)
	}
	c.Concurrency = -1
	wantErrContains(t, ValidateConfig(c), "Concurrency")
	if b := DefaultConfig().Backoff; b.ceiling(1) != 200*time.Millisecond || b.ceiling(3) != 800*time.Millisecond || b.ceiling(30) != 10*time.Second {
		t.Errorf("backoff ceilings %s %s %s, want 200ms 800ms 10s", b.ceiling(1), b.ceiling(3), b.ceiling(30))
	}
	for i := 0; i < 100; i++ {
		if w := DefaultConfig().Backoff.wait(4); w < 0 || w > 1600*time.Millisecond {
			t.Fatalf("jittered wait %s outside [0, 1.6s]", w)
		}
	}
}

func TestRunIDsSortByTime(t *testing.T) {
	a := newRunID(time.Date(2026, 11, 22, 14, 15, 3, 0, time.UTC))
	b := newRunID(time.Date(2026, 11, 22, 14, 15, 4, 0, time.UTC))
	if len(a) != len("r-20261122-141503-3f2a") || a[:18] != "r-20261122-141503-" || !(a < b) {
		t.Errorf("run ids %q, %q: want r-YYYYMMDD-HHMMSS-xxxx sorting by time", a, b)
	}
}

func TestSucceedsAndJournalsEverything(t *testing.T) {
	f := newFixture(t)
	p := plan(
		&lifeboat.Step{ID: "provision worker", Op: lifeboat.OpComputeProvision, Resource: "worker-east"},
		&lifeboat.Step{ID: "scale worker", Op: lifeboat.OpComputeScale, Resource: "worker-east", Instances: 2, DependsOn: []string{"provision worker"}},
		&lifeboat.Step{ID: "scale web", Op: lifeboat.OpComputeScale, Resource: "web-east", Instances: 3},
		&lifeboat.Step{ID: "switch www", Op: lifeboat.OpTrafficSwitch, Resource: "www", Region: "east", DependsOn: []string{"scale worker", "scale web"}},
	)
	fut := f.start(p)
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	run := fut.Run()
	if run.Status != lifeboat.RunSucceeded || run.EndedAt.IsZero() {
		t.Errorf("run status %s ended %v, want succeeded with an end time", run.Status, run.EndedAt)
	}
	st := f.state()
	if st.Epoch != 2 || st.Active != "east" || st.Run != "" {
		t.Errorf("state epoch %d active %s run %q, want 2 east and no run", st.Epoch, st.Active, st.Run)
	}
	if r := st.Resources["worker-east"]; !r.Exists || r.Instances != 2 {
		t.Errorf("worker-east in the state: %+v", r)
	}
	recs := f.journal(run.ID)
	if got, want := kinds(recs, "scale web"), []string{"start", "attempt1", "applied1", "done"}; !slices.Equal(got, want) {
		t.Errorf("journal of scale web: %v, want %v", got, want)
	}
	if d := recs[slices.IndexFunc(recs, func(r lifeboat.Record) bool { return r.Step == "scale web" && r.Kind == lifeboat.RecDone })]; d.Before == nil || d.Before.Instances != 0 {
		t.Errorf("done record of scale web does not carry the resource before it: %+v", d.Before)
	}
	for _, r := range recs {
		if r.By != "sre@test" || r.Run != run.ID {
			t.Fatalf("record %+v lacks by or run", r)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.events) != len(recs) {
		t.Errorf("%d events for %d journal records: want one per record", len(f.events), len(recs))
	}
}

func TestStalePlanIsRefused(t *testing.T) {
	f := newFixture(t)
	p := plan(script("a"))
	p.Epoch = 1
	_, err := f.engine().Start(context.Background(), p)
	if !errors.Is(err, ErrStalePlan) || lifeboat.IsRetryable(err) {
		t.Fatalf("start of a plan for epoch 1 at epoch 1: %v, want a permanent ErrStalePlan", err)
	}
	wantErrContains(t, err, "plan again", "epoch 1")
	if runs, _ := f.store.Runs(context.Background()); len(runs) != 0 {
		t.Errorf("a stale plan stored %d runs", len(runs))
	}
}

// Independent steps run in parallel, never more than Concurrency at once,
// and never before their dependencies; checked with barriers, not time.
func TestParallelismRespectsDependenciesAndConcurrency(t *testing.T) {
	f := newFixture(t)
	f.cfg.Concurrency = 3
	const n = 7
	var inflight, peak, finished atomic.Int32
	entered := make(chan string, n)
	release := make(chan struct{})
	var steps []*lifeboat.Step
	var mids []string
	for i := range n {
		id := "mid " + string(rune('a'+i))
		mids = append(mids, id)
		steps = append(steps, script(id))
		f.world.on(id, func(ctx context.Context) error {
			if f.world.count(f.world.applies, "epoch") != 1 {
				t.Errorf("%s started before its dependency epoch was applied", id)
			}
			now := inflight.Add(1)
			for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
			}
			entered <- id
			<-release
			inflight.Add(-1)
			finished.Add(1)
			return nil
		})
	}
	steps = append(steps, script("join", mids...))
	f.world.on("join", func(ctx context.Context) error {
		if finished.Load() != n {
			t.Errorf("join started after %d of its %d dependencies", finished.Load(), n)
		}
		return nil
	})
	fut := f.start(plan(steps...))
	// Three steps enter and block; only a release lets another one in.
	for range 3 {
		<-entered
	}
	for range n - 3 {
		release <- struct{}{}
		<-entered
	}
	for range 3 {
		release <- struct{}{}
	}
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	if peak.Load() != 3 {
		t.Errorf("peak parallelism %d, want exactly Concurrency=3", peak.Load())
	}
}

func TestRetriesUntilSuccessCheckingHoldsBeforeEachRetry(t *testing.T) {
	f := newFixture(t)
	var calls atomic.Int32
	f.world.on("flaky", func(ctx context.Context) error {
		if calls.Add(1) <= 3 {
			return lifeboat.Transient(lifeboat.OpScript, "flaky", errors.New("connection refused"))
		}
		return nil
	})
	fut := f.start(plan(script("flaky")))
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	recs := f.journal(fut.Run().ID)
	want := []string{"start", "attempt1", "error1", "attempt2", "error2", "attempt3", "error3", "attempt4", "applied4", "done"}
	if got := kinds(recs, "flaky"); !slices.Equal(got, want) {
		t.Errorf("journal of flaky: %v, want %v", got, want)
	}
	for _, r := range recs {
		if r.Kind == lifeboat.RecError && (!r.Retryable || r.Error == "") {
			t.Errorf("error record %+v should say the error and that it is retryable", r)
		}
	}
	if h := f.world.count(f.world.holds, "flaky"); h != 4 {
		t.Errorf("Holds called %d times, want 4 (before the first attempt and every retry)", h)
	}
}

// An attempt that failed but worked anyway is not applied again: the Holds
// check before the retry sees its effect.
func TestRetryChecksHoldsFirst(t *testing.T) {
	f := newFixture(t)
	f.world.on("lost reply", func(ctx context.Context) error {
		f.world.mu.Lock()
		f.world.flags["lost reply"] = true // it worked...
		f.world.mu.Unlock()
		return errors.New("timeout reading the reply") // ...but the reply was lost
	})
	fut := f.start(plan(script("lost reply")))
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	if got, want := kinds(f.journal(fut.Run().ID), "lost reply"), []string{"start", "attempt1", "error1", "holds", "done"}; !slices.Equal(got, want) {
		t.Errorf("journal: %v, want %v", got, want)
	}
	if a := f.world.count(f.world.applies, "lost reply"); a != 1 {
		t.Errorf("applied %d times, want 1", a)
	}
}

func TestDeadlineFailsTheStep(t *testing.T) {
	f := newFixture(t)
	f.world.on("never", func(ctx context.Context) error {
		return lifeboat.Transient(lifeboat.OpScript, "never", errors.New("503 from the API"))
	})
	s := script("never")
	s.Timeout = 5 * time.Millisecond
	fut := f.start(plan(s, script("after", "never")))
	err := fut.Error()
	var se *StepError
	if !errors.As(err, &se) || se.Step != "never" {
		t.Fatalf("error %v, want a *StepError for step never", err)
	}
	wantErrContains(t, err, "gave up", "deadline", "503 from the API", "lifeboat resume "+fut.Run().ID)
	if !se.Retryable() {
		t.Errorf("a step that ran out of time on a transient error should say resuming may help")
	}
	run := fut.Run()
	if run.Status != lifeboat.RunFailed || run.Error == "" {
		t.Errorf("run %s (%q), want failed with an error", run.Status, run.Error)
	}
	recs := f.journal(run.ID)
	if count(recs, "never", lifeboat.RecFailed) != 1 || count(recs, "after", lifeboat.RecStart) != 0 {
		t.Errorf("journal: %v / %v, want never failed and after never started", kinds(recs, "never"), kinds(recs, "after"))
	}
	if st := f.state(); st.Run != run.ID {
		t.Errorf("a failed run should stay the state's run (resumable): %q", st.Run)
	}
}

func TestPermanentErrorFailsAtOnceAndLetsInflightFinish(t *testing.T) {
	f := newFixture(t)
	f.cfg.Concurrency = 2
	slowIn, slowOut := make(chan struct{}), make(chan struct{})
	onEvent := f.cfg.OnEvent
	f.cfg.OnEvent = func(e Event) {
		onEvent(e)
		if e.Kind == lifeboat.RecFailed {
			close(slowOut) // slow finishes only after bad failed
		}
	}
	f.world.on("slow", func(ctx context.Context) error {
		close(slowIn)
		<-slowOut
		return nil
	})
	f.world.on("bad", func(ctx context.Context) error {
		<-slowIn // fail while slow is in flight
		return lifeboat.Permanent(lifeboat.OpScript, "bad", errors.New("spec names no such region"))
	})
	fut := f.start(plan(script("slow"), script("bad"), script("tail", "slow", "bad")))
	err := fut.Error()
	var se *StepError
	if !errors.As(err, &se) || se.Step != "bad" || se.Retryable() {
		t.Fatalf("error %v, want a permanent *StepError for bad", err)
	}
	recs := f.journal(fut.Run().ID)
	if got, want := kinds(recs, "bad"), []string{"start", "attempt1", "error1", "failed"}; !slices.Equal(got, want) {
		t.Errorf("journal of bad: %v, want %v (no retry)", got, want)
	}
	if count(recs, "slow", lifeboat.RecDone) != 1 {
		t.Errorf("in-flight step slow did not finish: %v", kinds(recs, "slow"))
	}
	if count(recs, "tail", lifeboat.RecStart) != 0 {
		t.Errorf("tail started after a failure: %v", kinds(recs, "tail"))
	}
}

func TestNoNewStepStartsAfterAFailure(t *testing.T) {
	f := newFixture(t)
	f.cfg.Concurrency = 1
	f.world.on("bad", func(ctx context.Context) error {
		return lifeboat.Permanent(lifeboat.OpScript, "bad", errors.New("exit status 2"))
	})
	fut := f.start(plan(script("bad"), script("later")))
	if fut.Error() == nil {
		t.Fatal("want a failure")
	}
	if recs := f.journal(fut.Run().ID); count(recs, "later", lifeboat.RecStart) != 0 {
		t.Errorf("later started after bad failed: %v", kinds(recs, "later"))
	}
}

func TestBestEffortStepIsSkipped(t *testing.T) {
	f := newFixture(t)
	f.world.on("fence old", func(ctx context.Context) error {
		return lifeboat.Permanent(lifeboat.OpDatabaseFence, "db-west", errors.New("region west unreachable"))
	})
	s := &lifeboat.Step{ID: "fence old", Op: lifeboat.OpDatabaseFence, Resource: "db-west", BestEffort: true}
	fut := f.start(plan(s, script("promote", "fence old")))
	if err := fut.Error(); err != nil {
		t.Fatalf("a failed best-effort step failed the run: %v", err)
	}
	recs := f.journal(fut.Run().ID)
	if count(recs, "fence old", lifeboat.RecSkipped) != 1 || count(recs, "promote", lifeboat.RecDone) != 1 {
		t.Errorf("journal: fence %v promote %v", kinds(recs, "fence old"), kinds(recs, "promote"))
	}
}

func approvalStep(id string, deps ...string) *lifeboat.Step {
	return &lifeboat.Step{ID: id, Op: lifeboat.OpApproval, Approval: "go on?", DependsOn: deps}
}

func TestApprovalApproved(t *testing.T) {
	f := newFixture(t)
	var asked atomic.Int32
	f.cfg.Approve = func(ctx context.Context, run string, s *lifeboat.Step) (bool, error) {
		asked.Add(1)
		return true, nil
	}
	fut := f.start(plan(approvalStep("ok?"), script("after", "ok?")))
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	if got, want := kinds(f.journal(fut.Run().ID), "ok?"), []string{"start", "waiting", "approved", "done"}; !slices.Equal(got, want) || asked.Load() != 1 {
		t.Errorf("journal %v (asked %d times), want %v asked once", got, asked.Load(), want)
	}
}

func TestApprovalRefused(t *testing.T) {
	f := newFixture(t)
	f.cfg.Approve = func(ctx context.Context, run string, s *lifeboat.Step) (bool, error) { return false, nil }
	fut := f.start(plan(approvalStep("ok?"), script("after", "ok?")))
	err := fut.Error()
	if !errors.Is(err, ErrApprovalRefused) || lifeboat.IsRetryable(err) {
		t.Fatalf("error %v, want a permanent ErrApprovalRefused", err)
	}
	wantErrContains(t, err, "ok?", "refused by sre@test")
	if f.world.count(f.world.applies, "after") != 0 || fut.Run().Status != lifeboat.RunFailed {
		t.Errorf("after a refusal: status %s, after applied %d times", fut.Run().Status, f.world.count(f.world.applies, "after"))
	}
}

// With nobody to ask, the run waits; resume --approve goes on without
// applying completed steps again.
func TestApprovalWaitsThenResumes(t *testing.T) {
	f := newFixture(t)
	fut := f.start(plan(script("before"), approvalStep("ok?", "before"), script("after", "ok?")))
	err := fut.Error()
	if !errors.Is(err, ErrWaitingApproval) {
		t.Fatalf("error %v, want ErrWaitingApproval", err)
	}
	id := fut.Run().ID
	wantErrContains(t, err, `lifeboat resume --approve "ok?" `+id)
	if r, _ := f.store.Run(context.Background(), id); r.Status != lifeboat.RunWaiting {
		t.Errorf("stored status %s, want waiting", r.Status)
	}
	if _, err := f.engine().Resume(context.Background(), id, "before"); err == nil {
		t.Errorf("resume approving a step that is not an approval step was accepted")
	}
	fut2, err := f.engine().Resume(context.Background(), id, "ok?")
	if err != nil {
		t.Fatal(err)
	}
	if err := fut2.Error(); err != nil {
		t.Fatal(err)
	}
	recs := f.journal(id)
	if got, want := kinds(recs, "ok?"), []string{"start", "waiting", "start", "waiting", "approved", "done"}; !slices.Equal(got, want) {
		t.Errorf("journal of ok?: %v, want %v", got, want)
	}
	if f.world.count(f.world.applies, "before") != 1 || f.world.count(f.world.holds, "before") != 1 || count(recs, "before", lifeboat.RecStart) != 1 {
		t.Errorf("completed step before was touched again on resume: %v", kinds(recs, "before"))
	}
	if fut2.Run().Status != lifeboat.RunSucceeded {
		t.Errorf("status %s after approval", fut2.Run().Status)
	}
}

func TestResumeAfterFailureRetriesTheFailedStepOnly(t *testing.T) {
	f := newFixture(t)
	var broken atomic.Bool
	broken.Store(true)
	f.world.on("fragile", func(ctx context.Context) error {
		if broken.Load() {
			return lifeboat.Permanent(lifeboat.OpScript, "fragile", errors.New("bad credentials"))
		}
		return nil
	})
	p := plan(&lifeboat.Step{ID: "scale web", Op: lifeboat.OpComputeScale, Resource: "web-east", Instances: 3},
		script("fragile", "scale web"), script("tail", "fragile"))
	fut := f.start(p)
	if err := fut.Error(); err == nil {
		t.Fatal("want a failure")
	}
	id := fut.Run().ID
	next := plan(script("x"))
	next.Epoch = 3
	if _, err := f.engine().Start(context.Background(), next); !errors.Is(err, lifeboat.ErrRunInProgress) {
		t.Errorf("a new run while %s is failed (resumable): %v, want ErrRunInProgress", id, err)
	}
	broken.Store(false) // the person fixed the credentials
	fut2, err := f.engine().Resume(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := fut2.Error(); err != nil {
		t.Fatal(err)
	}
	recs := f.journal(id)
	want := []string{"start", "attempt1", "error1", "failed", "start", "attempt2", "applied2", "done"}
	if got := kinds(recs, "fragile"); !slices.Equal(got, want) {
		t.Errorf("journal of fragile: %v, want %v", got, want)
	}
	for _, s := range []string{"epoch", "scale web"} {
		if count(recs, s, lifeboat.RecStart) != 1 || count(recs, s, lifeboat.RecDone) != 1 {
			t.Errorf("completed step %s was run again on resume: journal %v", s, kinds(recs, s))
		}
	}
	if f.world.count(f.world.holds, "scale web") != 1 {
		t.Errorf("completed step scale web was checked again on resume (%d Holds calls)", f.world.count(f.world.holds, "scale web"))
	}
	if st := f.state(); st.Resources["web-east"].Instances != 3 || st.Run != "" || st.Epoch != 2 {
		t.Errorf("state after resume: epoch %d run %q web-east %+v", st.Epoch, st.Run, st.Resources["web-east"])
	}
}

// A process that goes away mid-step leaves the run "running"; resume checks
// the half-done step and does not apply it again if it took effect.
func TestResumeAfterInterruptionChecksTheHalfDoneStep(t *testing.T) {
	f := newFixture(t)
	ctx, stop := context.WithCancel(context.Background())
	f.world.on("cut", func(actx context.Context) error {
		f.world.mu.Lock()
		f.world.flags["cut"] = true
		f.world.mu.Unlock()
		stop() // the CLI is interrupted right after the effect, before the reply
		<-actx.Done()
		return actx.Err()
	})
	fut, err := f.engine().Start(ctx, plan(script("cut"), script("tail", "cut")))
	if err != nil {
		t.Fatal(err)
	}
	err = fut.Error()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want an interruption", err)
	}
	wantErrContains(t, err, "lifeboat resume")
	id := fut.Run().ID
	if r, _ := f.store.Run(context.Background(), id); r.Status != lifeboat.RunRunning {
		t.Errorf("an interrupted run is stored %s, want running (resumable)", r.Status)
	}
	fut2, err := f.engine().Resume(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := fut2.Error(); err != nil {
		t.Fatal(err)
	}
	if a := f.world.count(f.world.applies, "cut"); a != 1 {
		t.Errorf("cut applied %d times, want 1", a)
	}
	if got := kinds(f.journal(id), "cut"); got[len(got)-2] != "holds" || got[len(got)-1] != "done" {
		t.Errorf("journal of cut: %v, want it to end holds, done", got)
	}
}

// cancelPlan stands a cold scale set up and scales it, scales a warm one
// up, promotes a database, and then blocks in "wait" until cancelled.
func cancelPlan() *lifeboat.Plan {
	return plan(
		&lifeboat.Step{ID: "provision worker", Op: lifeboat.OpComputeProvision, Resource: "worker-east"},
		&lifeboat.Step{ID: "scale worker", Op: lifeboat.OpComputeScale, Resource: "worker-east", Instances: 2, DependsOn: []string{"provision worker"}},
		&lifeboat.Step{ID: "scale web", Op: lifeboat.OpComputeScale, Resource: "web-east", Instances: 3, DependsOn: []string{"scale worker"}},
		&lifeboat.Step{ID: "promote db", Op: lifeboat.OpDatabasePromote, Resource: "db-east", DependsOn: []string{"scale web"}},
		&lifeboat.Step{ID: "wait", Op: lifeboat.OpScript, DependsOn: []string{"promote db"}},
		&lifeboat.Step{ID: "switch www", Op: lifeboat.OpTrafficSwitch, Resource: "www", Region: "east", DependsOn: []string{"wait"}},
	)
}

func checkCancelled(t *testing.T, f *fixture, id string) {
	t.Helper()
	recs := f.journal(id)
	st := f.state()
	if st.Epoch != 2 || st.Run != "" {
		t.Errorf("state epoch %d run %q: the epoch never goes back, and the run has ended", st.Epoch, st.Run)
	}
	if r := st.Resources["worker-east"]; r.Exists || r.Instances != 0 {
		t.Errorf("worker-east in the state after cancel: %+v, want deleted", r)
	}
	if r := st.Resources["web-east"]; !r.Exists || r.Instances != 0 {
		t.Errorf("web-east in the state after cancel: %+v, want back to 0 instances", r)
	}
	if r := st.Resources["db-east"]; r.Role != lifeboat.DBPrimary {
		t.Errorf("db-east after cancel: %s, want primary (kept: demoting loses writes)", r.Role)
	}
	if s := f.world.set("worker-east"); s.Exists {
		t.Errorf("worker-east still exists in the world: %+v", s)
	}
	if s := f.world.set("web-east"); s.Instances != 0 {
		t.Errorf("web-east runs %d instances in the world, want 0", s.Instances)
	}
	var undone []string
	for _, r := range recs {
		if r.Kind == lifeboat.RecUndone {
			undone = append(undone, r.Step)
		}
	}
	if want := []string{"scale web", "scale worker", "provision worker"}; !slices.Equal(undone, want) {
		t.Errorf("undone %v, want %v (reverse completion order)", undone, want)
	}
	if count(recs, "switch www", lifeboat.RecStart) != 0 {
		t.Errorf("a step started after the cancel")
	}
	run, err := f.store.Run(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != lifeboat.RunCancelled {
		t.Errorf("run status %s, want cancelled", run.Status)
	}
	for _, want := range []string{"kept", `"promote db"`, `"epoch"`, "fail", "undone"} {
		if !strings.Contains(run.Error, want) {
			t.Errorf("run summary %q does not mention %q", run.Error, want)
		}
	}
}

func containsStr(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || containsStr(s[1:], sub)))
}

func TestCancelUndoesWhatItSafelyCan(t *testing.T) {
	f := newFixture(t)
	waiting := make(chan struct{})
	f.world.on("wait", func(ctx context.Context) error {
		close(waiting)
		<-ctx.Done()
		return ctx.Err()
	})
	e := f.engine()
	fut, err := e.Start(context.Background(), cancelPlan())
	if err != nil {
		t.Fatal(err)
	}
	<-waiting
	cf, err := e.Cancel(context.Background(), fut.RunID())
	if err == nil {
		err = cf.Error()
	}
	if err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if !errors.Is(fut.Error(), ErrCancelled) {
		t.Errorf("the run's future: %v, want ErrCancelled", fut.Error())
	}
	id := fut.Run().ID
	checkCancelled(t, f, id)
	if got := kinds(f.journal(id), "wait"); !slices.Contains(got, "cancelled") {
		t.Errorf("the step in flight was not journaled cancelled: %v", got)
	}
	// Cancelling again is a no-op that says it is cancelled.
	cf, err = e.Cancel(context.Background(), id)
	if err != nil || cf.Error() != nil || cf.Run().Status != lifeboat.RunCancelled {
		t.Errorf("second cancel: %v", err)
	}
}

// Another process (here: another engine) runs the run: cancel asks it and
// waits for its cleanup.
func TestCancelAsksTheOwner(t *testing.T) {
	f := newFixture(t)
	waiting := make(chan struct{})
	f.world.on("wait", func(ctx context.Context) error {
		close(waiting)
		<-ctx.Done()
		return ctx.Err()
	})
	fut := f.start(cancelPlan())
	<-waiting
	cf, err := f.engine().Cancel(context.Background(), fut.RunID())
	if err != nil {
		t.Fatal(err)
	}
	if err := cf.Error(); err != nil || cf.Run().Status != lifeboat.RunCancelled {
		t.Fatalf("cancel: %v (status %s)", err, cf.Run().Status)
	}
	checkCancelled(t, f, fut.Run().ID)
}

// Nobody runs a failed run: cancel takes it over and cleans up itself.
func TestCancelCleansUpAnOrphanedRun(t *testing.T) {
	f := newFixture(t)
	f.world.on("wait", func(ctx context.Context) error {
		return lifeboat.Permanent(lifeboat.OpScript, "wait", errors.New("exit status 1"))
	})
	fut := f.start(cancelPlan())
	if fut.Error() == nil {
		t.Fatal("want a failure")
	}
	cf, err := f.engine().Cancel(context.Background(), fut.Run().ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := cf.Error(); err != nil {
		t.Fatal(err)
	}
	checkCancelled(t, f, fut.Run().ID)
}

func TestResumeRefusesEndedAndOwnedRuns(t *testing.T) {
	f := newFixture(t)
	fut := f.start(plan(script("a")))
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.engine().Resume(context.Background(), fut.Run().ID); err == nil || lifeboat.IsRetryable(err) {
		t.Errorf("resume of a succeeded run: %v, want a permanent refusal", err)
	}
	if _, err := f.engine().Resume(context.Background(), "r-20990101-000000-0000"); !errors.Is(err, lifeboat.ErrNoRun) {
		t.Errorf("resume of an unknown run: %v, want ErrNoRun", err)
	}

	block := make(chan struct{})
	f2 := newFixture(t)
	f2.world.on("b", func(ctx context.Context) error { <-block; return nil })
	fut2 := f2.start(plan(script("b")))
	defer func() { close(block); _ = fut2.Error() }()
	if _, err := f2.engine().Resume(context.Background(), firstRun(t, f2)); !errors.Is(err, lifeboat.ErrRunOwned) {
		t.Errorf("resume of a run another engine runs: %v, want ErrRunOwned", err)
	}
}

func firstRun(t *testing.T, f *fixture) string {
	t.Helper()
	runs, err := f.store.Runs(context.Background())
	if err != nil || len(runs) == 0 {
		t.Fatalf("runs: %v %d", err, len(runs))
	}
	return runs[0].ID
}

// A step stopped by a cancel whose effect took hold anyway (a promote that
// finished as the cancel came) is recorded done, so the state says what the
// world is; a compute step in that case is then undone.
func TestCancelRecordsAnEffectThatTookHold(t *testing.T) {
	f := newFixture(t)
	promoting := make(chan struct{})
	f.world.on("promote db", func(ctx context.Context) error {
		close(promoting)
		<-ctx.Done()
		// The promote went through, but the call saw the cancel.
		f.world.mu.Lock()
		f.world.flags["promote db"] = true
		f.world.mu.Unlock()
		return ctx.Err()
	})
	e := f.engine()
	fut, err := e.Start(context.Background(), cancelPlan())
	if err != nil {
		t.Fatal(err)
	}
	<-promoting
	cf, err := e.Cancel(context.Background(), fut.RunID())
	if err == nil {
		err = cf.Error()
	}
	if err != nil {
		t.Fatalf("cancel: %v", err)
	}
	id := fut.Run().ID
	got := kinds(f.journal(id), "promote db")
	if !slices.Contains(got, "holds") || !slices.Contains(got, "done") || slices.Contains(got, "cancelled") {
		t.Errorf("promote db journal %v: want holds and done, not cancelled", got)
	}
	checkCancelled(t, f, id)
}
