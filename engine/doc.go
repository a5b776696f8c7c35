// Package engine is Lifeboat's durable step engine: it runs a plan (a DAG of
// idempotent steps) against the world and journals every start, attempt and
// result in the store before and after acting, so that a run survives the
// death of the process that runs it (seed 003).
//
// # How a step runs
//
// A step runs once every step it depends on has completed (done or
// skipped); up to Config.Concurrency independent steps run at once. For each
// step the engine journals "start", then asks the step's action whether its
// effect already Holds: if so it journals "holds" and "done" without acting.
// Otherwise (or when the check itself fails: it says nothing about the
// effect, and steps are idempotent) it journals "attempt N", calls Apply,
// and journals "applied" or "error". A retryable error is retried with exponential backoff and full
// jitter until the step's deadline (Step.Timeout, else Config.StepTimeout);
// before every retry Holds is asked again, because the failed attempt may
// have worked. A permanent error, or the deadline, fails the step: in-flight
// steps finish, no new step starts, and the run ends "failed". A best-effort
// step that fails is journaled "skipped" and the plan goes on.
//
// The "done" record of a step that changes the state carries the new state
// in the same store transaction, so the journal and the state never
// disagree. Those writes are serialized (each starts from the state the
// previous one left); all other records are written concurrently.
//
// # Resume
//
// Resume rebuilds from the journal which steps are done, skipped or
// approved, and goes on. A completed step is never applied again, not even
// checked. A step that was started but has no "done" record is run as if
// new: its Holds check decides whether to apply it again, which is what
// makes a crash between Apply and "done" safe. A failed step is retried
// from scratch (a new deadline).
//
// # Approvals
//
// An approval step journals "waiting" and asks Config.Approve. Approved:
// "approved" and "done". Refused: the run fails. With no Approve function
// the run pauses with status "waiting" and the future fails with
// ErrWaitingApproval; `lifeboat resume --approve "<step id>" RUN` goes on.
//
// # Cancel and cleanup
//
// A cancel request (Store.RequestCancel) stops the scheduling of new steps,
// cancels the contexts of the steps in flight and waits for them. A step so
// stopped is asked whether its effect holds all the same (a promote that
// finished as the cancel came): if it does, it is recorded done, so the
// state says what the world is. Then the engine cleans up, so that nothing
// is left half-done:
//
//   - compute.provision is undone by compute.delete of that scale set, if
//     the scale set did not exist before the step;
//   - compute.scale that raised a scale set's count is undone by scaling it
//     back to the count it had before the step (journaled with the step's
//     "done" record, so a crashed run can still be cleaned up);
//   - a provision or scale that was under way when the run stopped is undone
//     the same way (its undo is a no-op if it had not acted yet);
//   - everything else is kept: the epoch never goes back, a promoted
//     database is not demoted (that would lose the writes it took), traffic
//     is not switched back, scripts and approvals cannot be taken back. The
//     run's Error lists the kept steps so a person knows to fail back or to
//     plan the move again.
//
// Undos run in reverse completion order, one at a time, each as a journaled
// step that ends with an "undone" record carrying the state. The run ends
// "cancelled". If an undo fails the run stays "failed" and cancelling it
// again picks up where the cleanup stopped.
package engine
