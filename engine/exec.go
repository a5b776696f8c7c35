package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

type mode int

const (
	modeRun    mode = iota // run the plan (then clean up if cancelled)
	modeCancel             // only clean up
)

// completion is a step journaled done, in completion order.
type completion struct {
	step   string
	before *lifeboat.Resource
}

// execution is one process's turn at running a run.
type execution struct {
	e       *Engine
	run     *lifeboat.Run
	steps   map[string]*lifeboat.Step
	release func()
	fut     *Future

	// stMu serializes "apply the step to the state + journal done with it",
	// so each such write starts from the state the previous one left.
	stMu sync.Mutex
	st   *lifeboat.State

	// What the journal says, kept up to date as this process writes it.
	mu        sync.Mutex
	completed map[string]lifeboat.RecordKind // done or skipped
	order     []completion                   // done steps, in completion order
	started   []string                       // started, in order (may include completed ones)
	undone    map[string]bool
	approved  map[string]bool // journaled approved
	attempts  map[string]int  // last attempt number journaled
	approve   map[string]bool // approved by the caller of Resume
	cleaning  bool            // a cancellation began cleaning up
	cancelBy  string
}

func (e *Engine) newExecution(run *lifeboat.Run, st *lifeboat.State, release func()) *execution {
	x := &execution{e: e, run: run, st: st, release: sync.OnceFunc(release),
		steps:     make(map[string]*lifeboat.Step, len(run.Plan.Steps)),
		completed: map[string]lifeboat.RecordKind{}, undone: map[string]bool{},
		approved: map[string]bool{}, attempts: map[string]int{}, approve: map[string]bool{}}
	for _, s := range run.Plan.Steps {
		x.steps[s.ID] = s
	}
	return x
}

// replay rebuilds what the journal says happened.
func (x *execution) replay(recs []lifeboat.Record) {
	for _, r := range recs {
		switch r.Kind {
		case lifeboat.RecStart:
			x.started = append(x.started, r.Step)
		case lifeboat.RecAttempt:
			x.attempts[r.Step] = max(x.attempts[r.Step], r.Attempt)
		case lifeboat.RecDone:
			if _, ok := x.completed[r.Step]; !ok {
				x.completed[r.Step] = lifeboat.RecDone
				x.order = append(x.order, completion{r.Step, r.Before})
			}
		case lifeboat.RecSkipped:
			x.completed[r.Step] = lifeboat.RecSkipped
		case lifeboat.RecApproved:
			x.approved[r.Step] = true
		case lifeboat.RecUndone:
			x.undone[r.Step] = true
		case lifeboat.RecCancelled:
			if r.Step == "" {
				x.cleaning, x.cancelBy = true, r.By
			}
		}
	}
}

func (x *execution) isCompleted(id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.completed[id]
	return ok
}

// journal appends a record of the run and tells OnEvent.
func (x *execution) journal(ctx context.Context, step *lifeboat.Step, rec lifeboat.Record, st *lifeboat.State, cause error) error {
	rec.Run, rec.By, rec.At = x.run.ID, x.e.c.By, x.e.c.Now()
	if step != nil && rec.Step == "" {
		rec.Step = step.ID
	}
	if cause != nil {
		rec.Error = cause.Error()
	}
	if _, err := x.e.c.Store.Append(ctx, rec, st); err != nil {
		return &journalError{fmt.Errorf("run %s step %q record %s: %w", x.run.ID, rec.Step, rec.Kind, err)}
	}
	switch rec.Kind {
	case lifeboat.RecStart:
		x.mu.Lock()
		x.started = append(x.started, rec.Step)
		x.mu.Unlock()
	case lifeboat.RecAttempt:
		x.mu.Lock()
		x.attempts[rec.Step] = max(x.attempts[rec.Step], rec.Attempt)
		x.mu.Unlock()
	}
	if f := x.e.c.OnEvent; f != nil {
		f(Event{Run: x.run.ID, Step: step, Kind: rec.Kind, Attempt: rec.Attempt, Err: cause, At: rec.At})
	}
	return nil
}

// done ends this process's turn: the run is released before its future
// completes, so a caller woken by the future (a resume right after an
// interruption) finds the run free.
func (x *execution) done(run *lifeboat.Run, err error) {
	x.e.mu.Lock()
	delete(x.e.local, x.run.ID)
	x.e.mu.Unlock()
	x.release()
	x.fut.finish(run, err)
}

// launch runs the execution in the background.
func (x *execution) launch(ctx context.Context, m mode) (*Future, error) {
	if m == modeRun && (x.run.Status != lifeboat.RunRunning || x.run.Error != "") {
		x.run.Status, x.run.Error, x.run.EndedAt = lifeboat.RunRunning, "", time.Time{}
		if err := x.e.c.Store.Update(ctx, x.run); err != nil {
			x.release()
			return nil, fmt.Errorf("marking run %s running again: %w", x.run.ID, err)
		}
	}
	x.fut = newFuture(x.run.ID)
	x.e.mu.Lock()
	x.e.local[x.run.ID] = x
	x.e.mu.Unlock()
	go x.execute(ctx, m)
	return x.fut, nil
}

// outcome is how one step's turn ended.
type outcome struct {
	step *lifeboat.Step
	kind lifeboat.RecordKind // done, skipped, failed, waiting, or "" (interrupted)
	err  error
}

// verdict is how the scheduling of a run ended.
type verdict struct {
	failures  []*StepError
	waiting   []string
	cancel    bool
	cancelBy  string
	interrupt error // the caller's context ended, or the journal failed
}

func (x *execution) execute(ctx context.Context, m mode) {
	defer func() {
		x.e.mu.Lock()
		delete(x.e.local, x.run.ID)
		x.e.mu.Unlock()
		x.release()
	}()
	var v verdict
	if m == modeCancel {
		v.cancel, v.cancelBy = true, x.e.c.By
		if x.cleaning && x.cancelBy != "" {
			v.cancelBy = x.cancelBy
		}
	} else {
		wctx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		ch, err := x.e.c.Store.WatchCancel(wctx, x.run.ID)
		if err != nil {
			x.done(x.run, fmt.Errorf("run %s: watching for cancel requests: %w; resume it with 'lifeboat resume %s'", x.run.ID, err, x.run.ID))
			return
		}
		v = x.schedule(ctx, ch)
	}
	x.finish(ctx, v)
}

// schedule runs the steps whose dependencies completed, up to Concurrency
// at once, until all completed or something stops it. After a stop it lets
// the steps in flight finish (a cancel also cancels their contexts).
func (x *execution) schedule(ctx context.Context, cancelCh <-chan string) verdict {
	var v verdict
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()

	remaining := map[string]int{}
	dependents := map[string][]*lifeboat.Step{}
	var ready []*lifeboat.Step
	for _, s := range x.run.Plan.Steps {
		if x.isCompleted(s.ID) {
			continue
		}
		n := 0
		for _, d := range s.DependsOn {
			if !x.isCompleted(d) {
				n++
				dependents[d] = append(dependents[d], s)
			}
		}
		remaining[s.ID] = n
		if n == 0 {
			ready = append(ready, s)
		}
	}
	results := make(chan outcome, len(remaining))
	inflight, stop := 0, false
	ctxDone := ctx.Done()
	for {
		for !stop && inflight < x.e.c.Concurrency && len(ready) > 0 {
			s := ready[0]
			ready = ready[1:]
			inflight++
			go func() { results <- x.runStep(runCtx, ctx, s) }()
		}
		if inflight == 0 {
			break
		}
		select {
		case o := <-results:
			inflight--
			switch o.kind {
			case lifeboat.RecDone, lifeboat.RecSkipped:
				for _, d := range dependents[o.step.ID] {
					if remaining[d.ID]--; remaining[d.ID] == 0 {
						ready = append(ready, d)
					}
				}
			case lifeboat.RecFailed:
				v.failures = append(v.failures, &StepError{Step: o.step.ID, Err: o.err, Run: x.run.ID})
				stop = true
			case lifeboat.RecWaiting:
				v.waiting = append(v.waiting, o.step.ID)
				stop = true
			default:
				var je *journalError
				if errors.As(o.err, &je) && v.interrupt == nil {
					v.interrupt = o.err
				}
				stop = true
			}
		case by, ok := <-cancelCh:
			cancelCh = nil
			if ok {
				v.cancel, v.cancelBy, stop = true, by, true
				cancelRun()
			}
		case <-ctxDone:
			ctxDone = nil
			if v.interrupt == nil {
				v.interrupt = ctx.Err()
			}
			stop = true
		}
	}
	// A run that stopped on a failure or an approval may have been asked
	// to cancel meanwhile: honour it now rather than leave the asker waiting.
	if !v.cancel && (len(v.failures) > 0 || len(v.waiting) > 0) {
		select {
		case by, ok := <-cancelCh:
			if ok {
				v.cancel, v.cancelBy = true, by
			}
		default:
		}
	}
	return v
}

// finish records how the run ended and completes its future.
func (x *execution) finish(ctx context.Context, v verdict) {
	run := x.run
	id := run.ID
	var ferr error
	switch {
	case v.cancel && ctx.Err() == nil:
		summary, err := x.cleanup(ctx, v.cancelBy)
		if err != nil {
			var je *journalError
			if errors.As(err, &je) {
				x.done(run, fmt.Errorf("cancel of run %s stopped: %w; run 'lifeboat cancel %s' again", id, err, id))
				return
			}
			run.Status, run.Error = lifeboat.RunFailed, summary
			ferr = err
		} else {
			run.Status, run.Error, run.EndedAt = lifeboat.RunCancelled, summary, x.e.c.Now()
			ferr = fmt.Errorf("run %s: %w: %s", id, ErrCancelled, summary)
		}
	case v.interrupt != nil:
		var je *journalError
		if !errors.As(v.interrupt, &je) {
			// The caller went away: the run stays "running" in the store,
			// exactly as if this process had died, and resumes the same way.
			x.done(run, fmt.Errorf("run %s interrupted: %w; it is journaled: 'lifeboat resume %s' goes on, 'lifeboat cancel %s' cleans up", id, v.interrupt, id, id))
			return
		}
		run.Status, run.Error = lifeboat.RunFailed, v.interrupt.Error()
		ferr = fmt.Errorf("run %s stopped: %w; once the store answers, 'lifeboat resume %s' goes on", id, v.interrupt, id)
	case len(v.failures) > 0:
		msgs := make([]string, len(v.failures))
		for i, f := range v.failures {
			msgs[i] = fmt.Sprintf("step %q: %v", f.Step, f.Err)
		}
		run.Status, run.Error = lifeboat.RunFailed, strings.Join(msgs, "; ")
		ferr = v.failures[0]
	case len(v.waiting) > 0:
		var cmds []string
		for _, s := range v.waiting {
			cmds = append(cmds, fmt.Sprintf("lifeboat resume --approve %q %s", s, id))
		}
		run.Status = lifeboat.RunWaiting
		run.Error = fmt.Sprintf("waits for approval of %s: when a person agrees, run %s",
			quoteAll(v.waiting), strings.Join(cmds, " and "))
		ferr = fmt.Errorf("run %s %s: %w", id, run.Error, ErrWaitingApproval)
	default:
		run.Status, run.Error, run.EndedAt = lifeboat.RunSucceeded, "", x.e.c.Now()
	}
	if err := x.e.c.Store.Update(ctx, run); err != nil {
		uerr := fmt.Errorf("run %s: storing its end (%s): %w", id, run.Status, err)
		if ferr != nil {
			uerr = fmt.Errorf("%w (and %w)", ferr, uerr)
		}
		ferr = uerr
	}
	x.done(run, ferr)
}

func quoteAll(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return strings.Join(q, ", ")
}

var errInterrupted = errors.New("interrupted")

// runStep carries one step through to done, skipped, failed or waiting.
// runCtx is cancelled by a cancel request; ctx (the caller's) is used for
// the journal, so that the records of a cancelled step still get written.
func (x *execution) runStep(runCtx, ctx context.Context, s *lifeboat.Step) outcome {
	if err := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecStart}, nil, nil); err != nil {
		return outcome{step: s, err: err}
	}
	if s.Op == lifeboat.OpApproval {
		return x.approval(runCtx, ctx, s)
	}
	act, err := x.e.c.Bind(x.run.ID, s)
	if err != nil {
		return x.fail(ctx, s, permanent(fmt.Errorf("binding the step to a driver: %w", err)))
	}
	x.mu.Lock()
	first := x.attempts[s.ID]
	x.mu.Unlock()
	if _, err := x.drive(runCtx, ctx, s, act, first); err != nil {
		if !errors.Is(err, errInterrupted) || ctx.Err() != nil || !x.tookEffect(ctx, s, act) {
			return x.fail(ctx, s, err)
		}
		// Stopped by a cancel, but its effect holds: record it done, so the
		// state says what the world is and cleanup can undo or list it.
	}
	if err := x.complete(ctx, s); err != nil {
		return outcome{step: s, err: err}
	}
	return outcome{step: s, kind: lifeboat.RecDone}
}

// interruptedCheck bounds the check of a step stopped by a cancel.
const interruptedCheck = 30 * time.Second

// tookEffect asks a step stopped by a cancel whether its effect holds
// anyway (a promote that finished as the cancel came), and journals
// "holds" if so.
func (x *execution) tookEffect(ctx context.Context, s *lifeboat.Step, act lifeboat.Action) bool {
	hctx, cancel := context.WithTimeout(ctx, interruptedCheck)
	defer cancel()
	holds, err := act.Holds(hctx)
	if err != nil || !holds || s.Op == lifeboat.OpScript || s.Op == lifeboat.OpRaiseEpoch {
		return false
	}
	return x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecHolds}, nil, nil) == nil
}

// fail ends a step that could not be done: interrupted, skipped (best
// effort) or failed.
func (x *execution) fail(ctx context.Context, s *lifeboat.Step, err error) outcome {
	var je *journalError
	switch {
	case errors.As(err, &je):
		return outcome{step: s, err: err}
	case errors.Is(err, errInterrupted):
		if ctx.Err() == nil { // stopped by a cancel request, not by our caller going away
			if jerr := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecCancelled}, nil, nil); jerr != nil {
				return outcome{step: s, err: jerr}
			}
		}
		return outcome{step: s, err: err}
	case s.BestEffort:
		if jerr := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecSkipped}, nil, err); jerr != nil {
			return outcome{step: s, err: jerr}
		}
		x.mu.Lock()
		x.completed[s.ID] = lifeboat.RecSkipped
		x.mu.Unlock()
		return outcome{step: s, kind: lifeboat.RecSkipped, err: err}
	}
	if jerr := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecFailed}, nil, err); jerr != nil {
		return outcome{step: s, err: jerr}
	}
	return outcome{step: s, kind: lifeboat.RecFailed, err: err}
}

// drive checks and applies an action until its effect holds, it fails for
// good, or the step's deadline passes. Attempts are numbered after first.
func (x *execution) drive(runCtx, ctx context.Context, s *lifeboat.Step, act lifeboat.Action, first int) (lifeboat.RecordKind, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = x.e.c.StepTimeout
	}
	sctx, cancel := context.WithTimeout(runCtx, timeout)
	defer cancel()
	attempt := first
	var last error
	for retry := 0; ; retry++ {
		if retry > 0 {
			t := time.NewTimer(x.e.c.Backoff.wait(retry))
			select {
			case <-sctx.Done():
				t.Stop()
			case <-t.C:
			}
			if sctx.Err() != nil {
				break
			}
		}
		holds, herr := act.Holds(sctx)
		if herr == nil && holds {
			if err := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecHolds}, nil, nil); err != nil {
				return "", err
			}
			return lifeboat.RecHolds, nil
		}
		// A check that fails says nothing about the effect (fencing a
		// crashed node: its status cannot be read, but the fence can be
		// recorded). Steps are idempotent, so applying is safe either way.
		attempt++
		if err := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecAttempt, Attempt: attempt}, nil, nil); err != nil {
			return "", err
		}
		err := act.Apply(sctx)
		if err == nil {
			if err := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecApplied, Attempt: attempt}, nil, nil); err != nil {
				return "", err
			}
			return lifeboat.RecApplied, nil
		}
		if herr != nil {
			err = fmt.Errorf("%w (checking whether it already held failed too: %v)", err, herr)
		}
		if runCtx.Err() != nil {
			return "", errInterrupted
		}
		last = err
		retryable := lifeboat.IsRetryable(err)
		if jerr := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecError, Attempt: attempt, Retryable: retryable}, nil, err); jerr != nil {
			return "", jerr
		}
		if !retryable {
			return "", err
		}
		if sctx.Err() != nil {
			break
		}
	}
	if runCtx.Err() != nil {
		return "", errInterrupted
	}
	return "", fmt.Errorf("gave up after %d attempt(s) in %s, the step's deadline (raise the step's timeout if it needs longer): %w",
		attempt-first, lifeboat.FormatDuration(timeout), last)
}

// changesState reports whether completing a step of this op changes the
// state; those that do not need no state write and no serialization.
func changesState(op lifeboat.Op) bool {
	switch op {
	case lifeboat.OpScript, lifeboat.OpApproval, lifeboat.OpDatabaseBackup:
		return false
	}
	return true
}

// hasUndo reports whether a step of this op can be undone safely.
func hasUndo(op lifeboat.Op) bool {
	return op == lifeboat.OpComputeProvision || op == lifeboat.OpComputeScale
}

// complete journals a step done, with the state it leaves.
func (x *execution) complete(ctx context.Context, s *lifeboat.Step) error {
	if !changesState(s.Op) {
		if err := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecDone}, nil, nil); err != nil {
			return err
		}
		x.mu.Lock()
		x.completed[s.ID] = lifeboat.RecDone
		x.order = append(x.order, completion{step: s.ID})
		x.mu.Unlock()
		return nil
	}
	x.stMu.Lock()
	defer x.stMu.Unlock()
	rec := lifeboat.Record{Kind: lifeboat.RecDone}
	if hasUndo(s.Op) {
		if r := x.st.Resources[s.Resource]; r != nil {
			b := *r
			rec.Before = &b
		}
	}
	next := x.st.Clone()
	next.Apply(s, x.e.c.Now())
	if err := x.journal(ctx, s, rec, next, nil); err != nil {
		return err
	}
	x.st = next
	x.mu.Lock()
	x.completed[s.ID] = lifeboat.RecDone
	x.order = append(x.order, completion{step: s.ID, before: rec.Before})
	x.mu.Unlock()
	return nil
}

// approval asks a person, or pauses the run when there is nobody to ask.
func (x *execution) approval(runCtx, ctx context.Context, s *lifeboat.Step) outcome {
	x.mu.Lock()
	journaled, given := x.approved[s.ID], x.approve[s.ID]
	x.mu.Unlock()
	if !journaled {
		if err := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecWaiting}, nil, nil); err != nil {
			return outcome{step: s, err: err}
		}
		if !given {
			if x.e.c.Approve == nil {
				return outcome{step: s, kind: lifeboat.RecWaiting}
			}
			ok, err := x.e.c.Approve(runCtx, x.run.ID, s)
			switch {
			case runCtx.Err() != nil:
				return x.fail(ctx, s, errInterrupted)
			case err != nil:
				return x.fail(ctx, s, permanent(fmt.Errorf("asking for approval: %w", err)))
			case !ok:
				return x.fail(ctx, s, permanent(fmt.Errorf("%w by %s: the run stops here; resume it to be asked again, or cancel it", ErrApprovalRefused, orSomeone(x.e.c.By))))
			}
		}
		if err := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecApproved}, nil, nil); err != nil {
			return outcome{step: s, err: err}
		}
		x.mu.Lock()
		x.approved[s.ID] = true
		x.mu.Unlock()
	}
	if err := x.complete(ctx, s); err != nil {
		return outcome{step: s, err: err}
	}
	return outcome{step: s, kind: lifeboat.RecDone}
}

func orSomeone(by string) string {
	if by == "" {
		return "the approver"
	}
	return by
}
