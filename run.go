package lifeboat

import (
	"context"
	"errors"
	"time"
)

// RunStatus is where a run stands.
type RunStatus string

const (
	RunRunning   RunStatus = "running"   // steps are being applied (or the process died: resume it)
	RunWaiting   RunStatus = "waiting"   // an approval step waits for a person
	RunSucceeded RunStatus = "succeeded" // every step completed
	RunFailed    RunStatus = "failed"    // a step failed for good; resume retries, cancel cleans up
	RunCancelled RunStatus = "cancelled" // stopped by a person; cleanup done
)

// Done reports whether the run has ended.
func (s RunStatus) Done() bool {
	return s == RunSucceeded || s == RunCancelled
}

// Run is one execution of a plan.
type Run struct {
	ID        string    `json:"id"`
	Plan      *Plan     `json:"plan"`
	Status    RunStatus `json:"status"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitempty"`
	// By says who or what started the run (user@host, "monitor").
	By string `json:"by,omitempty"`
	// Error is why the run failed.
	Error string `json:"error,omitempty"`
}

// RecordKind is what a journal record says happened.
type RecordKind string

const (
	RecStart     RecordKind = "start"     // the engine began the step
	RecAttempt   RecordKind = "attempt"   // about to apply (attempt N)
	RecHolds     RecordKind = "holds"     // the check found the effect already holds: not applied
	RecApplied   RecordKind = "applied"   // apply returned without error
	RecError     RecordKind = "error"     // an attempt failed (Retryable says if it will be retried)
	RecDone      RecordKind = "done"      // the step completed; the state changed with it
	RecFailed    RecordKind = "failed"    // the step failed for good (deadline or permanent error)
	RecSkipped   RecordKind = "skipped"   // a best-effort step failed and the plan went on
	RecWaiting   RecordKind = "waiting"   // an approval step waits for a person
	RecApproved  RecordKind = "approved"  // a person approved
	RecCancelled RecordKind = "cancelled" // the run was cancelled before or during the step
	RecUndone    RecordKind = "undone"    // cleanup reverted the step's effect
)

// Record is one line of a run's journal. Records are written before and
// after every action, so a crashed run can be resumed from them.
type Record struct {
	Seq       uint64     `json:"seq"`
	Run       string     `json:"run"`
	Step      string     `json:"step,omitempty"`
	Kind      RecordKind `json:"kind"`
	Attempt   int        `json:"attempt,omitempty"`
	Error     string     `json:"error,omitempty"`
	Retryable bool       `json:"retryable,omitempty"`
	By        string     `json:"by,omitempty"`
	At        time.Time  `json:"at"`
	// Before is the resource as it was before the step, written with the
	// "done" record of a step that has a safe undo (compute.provision,
	// compute.scale), so cancelling a run can put it back even after a crash.
	Before *Resource `json:"before,omitempty"`
}

// Store keeps the state, the runs and their journals. Its embedded default
// is an etcd member inside the binary (package store); a memory
// implementation serves unit tests. Implementations must be safe for
// concurrent use.
type Store interface {
	// State returns the stored state, or ErrNoState.
	State(ctx context.Context) (*State, error)
	// Init stores the first state if there is none; it returns the stored one.
	Init(ctx context.Context, st *State) (*State, error)
	// Begin stores a new run and marks the state as running it. It fails
	// with ErrRunInProgress if another run has not ended.
	Begin(ctx context.Context, run *Run) error
	// Append adds a record to a run's journal. When st is not nil the state
	// is replaced in the same transaction, so a step's "done" record and its
	// effect on the state are never apart. It returns the record's Seq.
	Append(ctx context.Context, rec Record, st *State) (uint64, error)
	// Journal returns a run's records in order.
	Journal(ctx context.Context, run string) ([]Record, error)
	// Run returns a run; Runs returns all, newest first.
	Run(ctx context.Context, id string) (*Run, error)
	Runs(ctx context.Context) ([]*Run, error)
	// Update stores a run's new status; when it ends, the state's Run is cleared.
	Update(ctx context.Context, run *Run) error
	// Own makes this process the only one running a run (a lease-backed
	// lock in etcd): a second owner gets ErrRunOwned until release is
	// called or the owner dies and its lease expires.
	Own(ctx context.Context, run string) (release func(), err error)
	// Owned reports whether a live process owns a run now, without taking
	// it: a viewer that took ownership to find out could make the
	// engine's own Own fail.
	Owned(ctx context.Context, run string) (bool, error)
	// RequestCancel asks the process running a run to stop. WatchCancel
	// delivers such a request (who asked) to the owner, including one made
	// before the watch began.
	RequestCancel(ctx context.Context, run, by string) error
	WatchCancel(ctx context.Context, run string) (<-chan string, error)
	Close() error
}

var (
	ErrNoState       = errors.New("no state stored yet")
	ErrNoRun         = errors.New("no such run")
	ErrRunInProgress = errors.New("another run is in progress")
	ErrRunOwned      = errors.New("the run is being run by another lifeboat process")
)
