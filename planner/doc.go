// Package planner turns a spec, the current state and an intent (failover,
// failback, switchover) into a plan: a DAG of idempotent steps that the
// engine runs. It is pure: no I/O, no clock, no randomness, and it never
// changes the state it is given. The same input always gives the same plan,
// with the same step IDs, so a plan made again after a crash lines up with
// the journal of the first one.
//
// # The procedures (seed 000)
//
// Every plan starts with "epoch.raise" to state.Epoch+1; every other step
// carries that epoch and depends on it, directly or through other steps.
// Step IDs are "<op> <resource>" ("database.promote shop-storefront-orders-east");
// hooks are "script <hook>" or "approval <hook>", suffixed with
// " before <what>" or " after <what>" when one hook yields several steps.
//
// Failover (unplanned, from the active region to the other):
//   - in parallel, per database: geo-replica: fence the old copy (best effort,
//     15s: the region may be gone) then promote the copy in the target;
//     backup: restore the newest backup in the target (and fence the old copy,
//     best effort, in parallel); none: no step, a note says the data is lost;
//   - in parallel, per compute: stand up in the target: provision if the
//     scale set does not exist, then scale to the target's size if the state
//     shows fewer instances;
//   - then per traffic component: switch its names to the target, after the
//     steps of its target compute and of every database of its unit and of
//     the target's unit.
//
// Failback (planned, zero loss, home) and switchover (planned, zero loss,
// either way) share one procedure:
//   - stop writes: scale to 0 the running compute in the old region of every
//     unit whose data moves (a unit with no data to move keeps serving until
//     its traffic has moved; the cleanup takes it down);
//   - fail data over with zero loss, after the stops of the same unit:
//     geo-replica: if the target's copy is not a replica, rejoin it as a
//     replica of the current primary (fencing it first if the state still
//     calls it a primary), then database.switchover; backup: take a backup
//     in the old region, restore it in the target, fence the old copy;
//   - stand up compute in the target. Switchover does this first and stops
//     nothing until everything in the target is up (a shorter outage);
//     failback does it in parallel with the data steps;
//   - switch traffic (same rule as failover);
//   - clean up the old region after every traffic switch: compute of the
//     failover resource group is deleted; permanent compute goes back to its
//     standby level (hot: its full size there, warm or cold: 0). The primary
//     region has no failover group, so the rule works both ways.
//
// # Units that depend on others
//
// A unit's traffic switches wait for the traffic switches of the units it
// depends on (if a dependency switches no traffic in the plan, for that
// unit's data and stand-up steps instead). Data and compute steps of all
// units still run in parallel: depends-on only orders what clients see.
//
// # The state decides what is left to do
//
// A step whose effect the state already shows is left out: a copy already
// primary is not promoted, a copy already fenced is not fenced, a scale set
// at size is not scaled. A component with nothing to do has no step. The
// exception is traffic: its switch is what moves the state's active region,
// so it is always in the plan (it is idempotent and cheap).
//
// # Hooks
//
// A hook's selector (before or after) is "plan" (right after epoch.raise, or
// after every step), an op ("traffic.switch": each step with that op gets
// its own hook step) or a component ("unit.component": one hook step before
// the first or after the last of that component's steps). A before-hook
// takes over what the first steps waited for, and they wait for it. Steps
// that waited for a step now wait for its after-hooks, except steps that the
// block itself waits for (a component's cleanup comes after the traffic
// switch that waited for its stand-up), which keeps the plan acyclic.
// Several hooks on the same steps run in spec order. Hooks never attach to
// epoch.raise, so every step still acts for the new epoch. A hook that
// matches nothing in a plan adds a note; one with both or neither of run
// and approval is refused.
//
// # Estimates
//
// RTO is the plan's recovery path (lifeboat.Plan.RecoveryPath): the longest
// chain of steps that ends at a step that is not cleanup, hooks included;
// cleanup once the service is back (deleting the failover group, scaling
// the old region down to its standby level) is not downtime and not counted. Approvals count 0 (a note says so). A traffic switch counts its TTL: clients follow
// only after it.
// RPO is the worst data loss of a failover's promotes and restores
// (lifeboat.AllData for dr-mode none), and 0 for failback and switchover.
// A missed objective names the component with the most time on the critical
// path (RTO) or the worst data loss (RPO).
package planner
