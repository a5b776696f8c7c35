package engine

import (
	"errors"
	"fmt"

	"github.com/lifeboat-dr/lifeboat"
)

var (
	// ErrWaitingApproval: the run paused at an approval step because there
	// was nobody to ask (no Config.Approve). Resume with the step's id in
	// approve goes on.
	ErrWaitingApproval = errors.New("the run waits for a person's approval")
	// ErrCancelled: the run was cancelled and cleaned up.
	ErrCancelled = errors.New("the run was cancelled")
	// ErrStalePlan: the plan was made for an epoch the state has already
	// reached or passed.
	ErrStalePlan = errors.New("stale plan: the state moved on; plan again")
	// ErrApprovalRefused: a person said no to an approval step.
	ErrApprovalRefused = errors.New("approval refused")
)

// StepError is a step that failed for good: the deadline passed, the error
// was permanent, or its approval was refused.
type StepError struct {
	Step string
	Err  error
	// Run is the run the step belongs to, for the hint in the message.
	Run string
}

func (e *StepError) Error() string {
	msg := fmt.Sprintf("step %q failed: %v", e.Step, e.Err)
	if e.Run != "" {
		msg += fmt.Sprintf(" (fix the cause, then retry it with 'lifeboat resume %s', or clean up with 'lifeboat cancel %s')", e.Run, e.Run)
	}
	return msg
}

func (e *StepError) Unwrap() error { return e.Err }

// Retryable says whether resuming the run may help: the step's cause was
// transient (it ran out of time) rather than permanent.
func (e *StepError) Retryable() bool { return lifeboat.IsRetryable(e.Err) }

// permanentError marks an engine refusal that retrying will not change.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Retryable() bool { return false }

func permanent(err error) error { return &permanentError{err} }

func permanentf(format string, args ...any) error { return permanent(fmt.Errorf(format, args...)) }

// journalError is a journal write that failed: the run cannot go on without
// its journal, so it stops as if the process had died, and can be resumed.
type journalError struct{ err error }

func (e *journalError) Error() string { return "writing the journal: " + e.err.Error() }
func (e *journalError) Unwrap() error { return e.err }
