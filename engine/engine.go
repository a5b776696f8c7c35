package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// Engine runs plans durably. It is safe for concurrent use.
type Engine struct {
	c Config

	mu sync.Mutex
	// local are the runs this engine is executing, so that Cancel of one of
	// them waits on it directly instead of polling the store.
	local map[string]*execution
}

// New returns an engine; zero fields of c take their defaults.
func New(c Config) (*Engine, error) {
	d := DefaultConfig()
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Backoff == (Backoff{}) {
		c.Backoff = d.Backoff
	}
	if c.StepTimeout == 0 {
		c.StepTimeout = d.StepTimeout
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if err := ValidateConfig(c); err != nil {
		return nil, err
	}
	return &Engine{c: c, local: map[string]*execution{}}, nil
}

// Future is a run under way.
type Future struct {
	id   string
	done chan struct{}
	err  error
	run  *lifeboat.Run
}

func newFuture(id string) *Future { return &Future{id: id, done: make(chan struct{})} }

// RunID returns the run's id at once, without waiting for the run.
func (f *Future) RunID() string { return f.id }

func (f *Future) finish(run *lifeboat.Run, err error) {
	f.run, f.err = run, err
	close(f.done)
}

// Done is closed when the run has stopped (ended, failed, paused or been
// interrupted).
func (f *Future) Done() <-chan struct{} { return f.done }

// Error blocks until the run stops and says why it did not succeed: a
// *StepError, ErrWaitingApproval, ErrCancelled, or an interruption.
func (f *Future) Error() error { <-f.done; return f.err }

// Run blocks until the run stops and returns it as stored at the end.
func (f *Future) Run() *lifeboat.Run { <-f.done; return f.run }

// newRunID returns an id that sorts by start time: r-20261122-141503-3f2a.
func newRunID(now time.Time) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return "r-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// Start stores a new run of plan (Store.Begin) and runs it in the
// background until it ends or ctx is done (then it stays resumable).
func (e *Engine) Start(ctx context.Context, plan *lifeboat.Plan) (*Future, error) {
	if plan == nil {
		return nil, permanentf("start: no plan given")
	}
	if err := plan.Validate(); err != nil {
		return nil, permanentf("start: the plan of %s is invalid: %w; plan again", plan.Service, err)
	}
	st, err := e.c.Store.State(ctx)
	if err != nil {
		if errors.Is(err, lifeboat.ErrNoState) {
			return nil, permanentf("start: no state stored for %s: %w; initialise it first", plan.Service, err)
		}
		return nil, fmt.Errorf("start: reading the state of %s: %w", plan.Service, err)
	}
	if plan.Service != "" && st.Service != "" && plan.Service != st.Service {
		return nil, permanentf("start: the plan is for service %q but the store holds %q: use the spec and store of the same service", plan.Service, st.Service)
	}
	if plan.Epoch <= st.Epoch {
		return nil, permanent(fmt.Errorf("start: the %s plan of %s is for epoch %d but the state is already at epoch %d: %w",
			plan.Intent, plan.Service, plan.Epoch, st.Epoch, ErrStalePlan))
	}
	now := e.c.Now()
	run := &lifeboat.Run{ID: newRunID(now), Plan: plan, Status: lifeboat.RunRunning, StartedAt: now, By: e.c.By}
	if err := e.c.Store.Begin(ctx, run); err != nil {
		return nil, fmt.Errorf("start: storing run %s of %s: %w", run.ID, plan.Service, err)
	}
	// Ownership needs the stored run; nobody else knows its id yet.
	release, err := e.c.Store.Own(ctx, run.ID)
	if err != nil {
		return nil, fmt.Errorf("start: taking ownership of new run %s: %w; resume it with 'lifeboat resume %s'", run.ID, err, run.ID)
	}
	// Begin marked the state as running this run: start from that state.
	if st, err = e.c.Store.State(ctx); err != nil {
		release()
		return nil, fmt.Errorf("start: reading the state after storing run %s: %w; resume it with 'lifeboat resume %s'", run.ID, err, run.ID)
	}
	x := e.newExecution(run, st, release)
	return x.launch(ctx, modeRun)
}

// Resume continues an interrupted, failed or waiting run from its journal.
// approve lists approval steps a person has approved.
func (e *Engine) Resume(ctx context.Context, runID string, approve ...string) (*Future, error) {
	run, err := e.c.Store.Run(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("resume: reading run %s: %w (list runs with 'lifeboat history')", runID, err)
	}
	if run.Status.Done() {
		return nil, permanentf("resume: run %s has already %s; nothing to resume", runID, run.Status)
	}
	for _, id := range approve {
		if s := run.Plan.Step(id); s == nil || s.Op != lifeboat.OpApproval {
			return nil, permanentf("resume: run %s has no approval step %q: pass the id of an approval step, as 'lifeboat status' shows it", runID, id)
		}
	}
	x, err := e.own(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	for _, id := range approve {
		x.approve[id] = true
	}
	if x.st.Epoch > run.Plan.Epoch {
		x.release()
		return nil, permanent(fmt.Errorf("resume: run %s is for epoch %d but the state is at epoch %d: %w; cancel it with 'lifeboat cancel %s'",
			runID, run.Plan.Epoch, x.st.Epoch, ErrStalePlan, runID))
	}
	if x.cleaning {
		// A cancellation was cleaning up when its process died: finish it.
		return x.launch(ctx, modeCancel)
	}
	return x.launch(ctx, modeRun)
}

// own takes ownership of a stored run and rebuilds its execution from the
// journal.
func (e *Engine) own(ctx context.Context, run *lifeboat.Run) (*execution, error) {
	release, err := e.c.Store.Own(ctx, run.ID)
	if err != nil {
		if errors.Is(err, lifeboat.ErrRunOwned) {
			return nil, fmt.Errorf("run %s: %w", run.ID, err)
		}
		return nil, fmt.Errorf("taking ownership of run %s: %w", run.ID, err)
	}
	recs, err := e.c.Store.Journal(ctx, run.ID)
	if err != nil {
		release()
		return nil, fmt.Errorf("reading the journal of run %s: %w", run.ID, err)
	}
	st, err := e.c.Store.State(ctx)
	if err != nil {
		release()
		return nil, fmt.Errorf("reading the state for run %s: %w", run.ID, err)
	}
	x := e.newExecution(run, st, release)
	x.replay(recs)
	return x, nil
}

// Cancel stops a run and cleans up (see the package doc). If a live
// process runs it, Cancel asks that process to stop and waits until it has
// cleaned up; if nobody does (the process died, or the run failed or
// waits), Cancel takes the run over and cleans up itself. The future's
// error is nil when the run ended cancelled.
func (e *Engine) Cancel(ctx context.Context, runID string) (*Future, error) {
	run, err := e.c.Store.Run(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("cancel: reading run %s: %w (list runs with 'lifeboat history')", runID, err)
	}
	switch run.Status {
	case lifeboat.RunCancelled:
		f := newFuture(run.ID)
		f.finish(run, nil)
		return f, nil
	case lifeboat.RunSucceeded:
		return nil, permanentf("cancel: run %s has already succeeded; nothing to cancel (plan a failback to go back)", runID)
	}
	x, err := e.own(ctx, run)
	if err == nil {
		f, err := x.launch(ctx, modeCancel)
		if err != nil {
			return nil, fmt.Errorf("cancel: %w", err)
		}
		return cancelled(f), nil
	}
	if !errors.Is(err, lifeboat.ErrRunOwned) {
		return nil, fmt.Errorf("cancel: %w", err)
	}
	if err := e.c.Store.RequestCancel(ctx, runID, e.c.By); err != nil {
		return nil, fmt.Errorf("cancel: asking the process that runs %s to stop: %w", runID, err)
	}
	e.mu.Lock()
	lx := e.local[runID]
	e.mu.Unlock()
	if lx != nil {
		return cancelled(lx.fut), nil
	}
	f := newFuture(runID)
	go e.awaitCancel(ctx, run, f)
	return f, nil
}

// cancelled turns the future of a run being cancelled into the future of
// the cancel: ending cancelled is success.
func cancelled(of *Future) *Future {
	f := newFuture(of.id)
	go func() {
		err := of.Error()
		if errors.Is(err, ErrCancelled) {
			err = nil
		}
		f.finish(of.Run(), err)
	}()
	return f
}

// awaitCancel waits for the owner of a run to clean up after a cancel
// request. If the owner goes away without doing it (it died, or it ended
// the run failed or waiting just before it saw the request), it takes over.
func (e *Engine) awaitCancel(ctx context.Context, run *lifeboat.Run, f *Future) {
	poll := e.c.Backoff.Initial
	if poll <= 0 {
		poll = 10 * time.Millisecond
	}
	for n := 1; ; n++ {
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			f.finish(run, fmt.Errorf("cancel: stopped waiting for run %s to clean up: %w; the cancel request stands, check it with 'lifeboat status'", run.ID, ctx.Err()))
			return
		case <-t.C:
		}
		if poll < time.Second {
			poll = min(2*poll, time.Second)
		}
		r, err := e.c.Store.Run(ctx, run.ID)
		if err == nil {
			run = r
			if r.Status == lifeboat.RunCancelled {
				f.finish(r, nil)
				return
			}
			if r.Status.Done() {
				f.finish(r, permanentf("cancel: run %s %s before it could be cancelled", r.ID, r.Status))
				return
			}
		}
		x, err := e.own(ctx, run)
		if err != nil {
			continue // still owned (or the store hiccuped): wait on
		}
		if x.run.Status == lifeboat.RunCancelled {
			x.release()
			f.finish(x.run, nil)
			return
		}
		xf, err := x.launch(ctx, modeCancel)
		if err != nil {
			f.finish(run, fmt.Errorf("cancel: %w", err))
			return
		}
		cf := cancelled(xf)
		<-cf.Done()
		f.finish(cf.run, cf.err)
		return
	}
}
