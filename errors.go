package lifeboat

import (
	"errors"
	"fmt"
)

// Error is a failed action. Retryable says whether trying again may help
// (a timeout, a refused connection) or not (a stale epoch, a bad spec).
type Error struct {
	Op        Op
	Resource  string
	Retryable bool
	Err       error
}

func (e *Error) Error() string {
	s := string(e.Op)
	if e.Resource != "" {
		s += " " + e.Resource
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Transient wraps err as retryable.
func Transient(op Op, resource string, err error) error {
	return &Error{Op: op, Resource: resource, Retryable: true, Err: err}
}

// Permanent wraps err as not retryable.
func Permanent(op Op, resource string, err error) error {
	return &Error{Op: op, Resource: resource, Retryable: false, Err: err}
}

// IsRetryable reports whether err says trying again may help. Errors that
// do not say are treated as retryable: the engine retries them until the
// step's deadline, which is the safe default for idempotent steps.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrStaleEpoch) {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Retryable
	}
	var r interface{ Retryable() bool }
	if errors.As(err, &r) {
		return r.Retryable()
	}
	return true
}

// ErrStaleEpoch is returned by a driver asked to act for an epoch older than
// one it has already acted for: a newer run owns the resource.
var ErrStaleEpoch = errors.New("stale epoch: a newer failover or switchover owns this resource")

// StaleEpoch builds the error a driver returns for a stale fencing token.
func StaleEpoch(resource string, got, seen uint64) error {
	return fmt.Errorf("%s: action for epoch %d refused, epoch %d already acted: %w", resource, got, seen, ErrStaleEpoch)
}
