package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
)

// undoStep returns the step that puts back what s changed, given the
// resource as it was before s, or nil when s has no safe undo (or changed
// nothing that needs one).
func undoStep(s *lifeboat.Step, before *lifeboat.Resource) *lifeboat.Step {
	if !hasUndo(s.Op) || before == nil {
		return nil
	}
	u := *s
	u.ID, u.DependsOn, u.BestEffort, u.Timeout = "undo "+s.ID, nil, false, s.Timeout
	switch {
	case !before.Exists:
		// The run stood the scale set up (or scaled a set that did not
		// exist): delete it.
		u.Op, u.Instances = lifeboat.OpComputeDelete, 0
		u.Why = "cancel: delete the scale set the run stood up"
	case s.Op == lifeboat.OpComputeScale && s.Instances > before.Instances:
		u.Op, u.Instances = lifeboat.OpComputeScale, before.Instances
		u.Why = fmt.Sprintf("cancel: scale back to the %d instance(s) it had before the run", before.Instances)
	default:
		return nil
	}
	return &u
}

// cleanup undoes what can be undone safely, newest first, and says what it
// undid and what it kept (see the package doc for the rule).
func (x *execution) cleanup(ctx context.Context, by string) (string, error) {
	if !x.cleaning {
		// Journaled first, so a crash during cleanup resumes as a cleanup.
		if err := x.journal(ctx, nil, lifeboat.Record{Kind: lifeboat.RecCancelled}, nil, nil); err != nil {
			return "", err
		}
		x.cleaning, x.cancelBy = true, by
	}
	x.mu.Lock()
	var todo []completion
	// Steps under way when the run stopped come first: they are the newest.
	// Their "before" is the state now, which they had not changed yet.
	seen := map[string]bool{}
	for i := len(x.started) - 1; i >= 0; i-- {
		id := x.started[i]
		if _, done := x.completed[id]; done || seen[id] {
			continue
		}
		seen[id] = true
		if s := x.steps[id]; s != nil && hasUndo(s.Op) {
			var before *lifeboat.Resource
			if r := x.st.Resources[s.Resource]; r != nil {
				b := *r
				before = &b
			}
			todo = append(todo, completion{step: id, before: before})
		}
	}
	for i := len(x.order) - 1; i >= 0; i-- {
		todo = append(todo, x.order[i])
	}
	x.mu.Unlock()

	var undone, kept []string
	var failures []error
	for _, c := range todo {
		s := x.steps[c.step]
		if s == nil {
			continue
		}
		if x.undone[c.step] {
			undone = append(undone, c.step)
			continue
		}
		u := undoStep(s, c.before)
		if u == nil {
			if x.completed[c.step] == lifeboat.RecDone && s.Op != lifeboat.OpApproval {
				kept = append(kept, c.step)
			}
			continue
		}
		if err := x.undo(ctx, s, u); err != nil {
			var je *journalError
			if errors.As(err, &je) {
				return "", err
			}
			failures = append(failures, &StepError{Step: u.ID, Err: err})
			continue
		}
		undone = append(undone, c.step)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "cancelled by %s", orSomeone(by))
	if len(undone) > 0 {
		fmt.Fprintf(&b, "; undone: %s", quoteAll(undone))
	}
	if len(kept) > 0 {
		fmt.Fprintf(&b, "; kept (no safe undo: the epoch stays at %d, a promoted database stays primary, switched traffic stays switched): %s;"+
			" plan a failback to go back, or plan the move again to finish it", x.st.Epoch, quoteAll(kept))
	}
	if len(failures) > 0 {
		err := errors.Join(failures...)
		fmt.Fprintf(&b, "; could NOT undo: %v; fix the cause, then run 'lifeboat cancel %s' again", err, x.run.ID)
		return b.String(), fmt.Errorf("cancel of run %s is incomplete: %w; fix the cause, then run 'lifeboat cancel %s' again", x.run.ID, err, x.run.ID)
	}
	if len(undone) == 0 && len(kept) == 0 {
		b.WriteString("; nothing had changed")
	}
	return b.String(), nil
}

// undo runs the undo u of step s as a journaled step: its attempts are
// journaled under u's id, and its end as "undone" of s, with the state.
func (x *execution) undo(ctx context.Context, s, u *lifeboat.Step) error {
	act, err := x.e.c.Bind(x.run.ID, u)
	if err != nil {
		return permanent(fmt.Errorf("binding the undo to a driver: %w", err))
	}
	x.mu.Lock()
	first := x.attempts[u.ID]
	x.mu.Unlock()
	if _, err := x.drive(ctx, ctx, u, act, first); err != nil {
		if jerr := x.journal(ctx, u, lifeboat.Record{Kind: lifeboat.RecFailed}, nil, err); jerr != nil {
			return jerr
		}
		return err
	}
	x.stMu.Lock()
	defer x.stMu.Unlock()
	next := x.st.Clone()
	next.Apply(u, x.e.c.Now())
	if err := x.journal(ctx, s, lifeboat.Record{Kind: lifeboat.RecUndone}, next, nil); err != nil {
		return err
	}
	x.st = next
	x.undone[s.ID] = true
	return nil
}
