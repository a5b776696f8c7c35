package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// Config configures an Engine. Start from DefaultConfig.
type Config struct {
	Store lifeboat.Store
	// Bind returns the action that carries out a step of a run (the CLI
	// passes lifeboat.Bind with the spec and drivers). Approval steps are
	// the engine's own and are never bound.
	Bind func(run string, step *lifeboat.Step) (lifeboat.Action, error)
	// Concurrency is how many independent steps run at once.
	Concurrency int
	// Backoff spaces the retries of a step.
	Backoff Backoff
	// StepTimeout is a step's deadline across all its attempts when its
	// Step.Timeout is 0.
	StepTimeout time.Duration
	// Approve asks a person to approve an approval step. When nil, the run
	// pauses (status waiting) and its future fails with ErrWaitingApproval;
	// a later Resume with that step's id in approve goes on.
	Approve func(ctx context.Context, run string, step *lifeboat.Step) (bool, error)
	// OnEvent is told of every journal record written, for a live view. It
	// is called from many goroutines and must not block for long.
	OnEvent func(Event)
	// By says who runs the engine (user@host); it is journaled.
	By string
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Backoff is exponential with full jitter: the wait before retry n is
// uniform in [0, min(Max, Initial·Multiplier^(n-1))], so that many steps
// failing on the same outage do not retry in lockstep.
type Backoff struct {
	Initial, Max time.Duration
	Multiplier   float64
}

// ceiling is the upper bound of the wait before retry n (n >= 1).
func (b Backoff) ceiling(n int) time.Duration {
	d := float64(b.Initial)
	for i := 1; i < n && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	if d > float64(b.Max) {
		d = float64(b.Max)
	}
	return time.Duration(d)
}

// wait returns a jittered wait before retry n.
func (b Backoff) wait(n int) time.Duration {
	c := b.ceiling(n)
	if c <= 0 {
		return 0
	}
	return rand.N(c + 1)
}

// DefaultConfig returns the defaults; set Store and Bind before New.
func DefaultConfig() Config {
	return Config{
		Concurrency: 8,
		Backoff:     Backoff{Initial: 200 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2},
		StepTimeout: 5 * time.Minute,
		Now:         time.Now,
	}
}

// ValidateConfig reports what is wrong with c, all at once.
func ValidateConfig(c Config) error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("engine config: Store is nil: open one with store.Open (or store.NewMemory in tests)"))
	}
	if c.Bind == nil {
		errs = append(errs, errors.New("engine config: Bind is nil: pass lifeboat.Bind with the spec and drivers"))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("engine config: Concurrency is %d: it must be at least 1 (default 8)", c.Concurrency))
	}
	if c.Backoff.Initial < 0 || c.Backoff.Max < c.Backoff.Initial {
		errs = append(errs, fmt.Errorf("engine config: Backoff Initial %s and Max %s: need 0 <= Initial <= Max", c.Backoff.Initial, c.Backoff.Max))
	}
	if c.Backoff.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("engine config: Backoff Multiplier is %g: it must be at least 1 (default 2)", c.Backoff.Multiplier))
	}
	if c.StepTimeout <= 0 {
		errs = append(errs, fmt.Errorf("engine config: StepTimeout is %s: it must be positive (default 5m)", c.StepTimeout))
	}
	if c.Now == nil {
		errs = append(errs, errors.New("engine config: Now is nil: use time.Now"))
	}
	if len(errs) > 0 {
		return permanent(errors.Join(errs...))
	}
	return nil
}

// Event is one journal record as it is written, for a live view.
type Event struct {
	Run  string
	Step *lifeboat.Step // nil for records about the whole run
	Kind lifeboat.RecordKind
	// Attempt is the attempt number (attempt and error records).
	Attempt int
	// Err is the error of an error, failed or skipped record.
	Err error
	At  time.Time
}
