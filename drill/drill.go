// Package drill measures what a drill proves: the RTO (fault → first
// acknowledged write after it), the RPO (acknowledged writes lost, set
// against the replication lag at the fault), whether the history was
// correct (a set check and a register linearizability check), and writes
// it all as a report (JSON, one self-contained HTML page, a terminal
// summary).
//
// The runner (load and fault injection) fills the types in this file; the
// checker and the report only read them.
package drill

import (
	"sort"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// Attempt kinds.
const (
	KindWrite = "write"
	KindRead  = "read"
)

// Outcomes of an attempt.
const (
	OutcomeOK = "ok"
	// OutcomeFailed: known not to have taken effect (refused before it
	// reached the service, or rejected by a read-only database).
	OutcomeFailed = "failed"
	// OutcomeUnknown: it may or may not have taken effect (a timeout, a
	// connection lost after the request was sent, a 5xx from a proxy).
	OutcomeUnknown = "unknown"
)

// Attempt is one client operation against the service.
//
// Set workload: Kind "write", ID the order's idempotency key (unique per
// write; a retry of the same write reuses it). Register workload: ID is the
// register's key for both writes and reads, Value is what was written (each
// write a unique value) or read ("" when the register was empty).
//
// A write that is not OK has an unknown outcome: it may have committed (the
// answer was lost) or not. The checkers treat it so.
type Attempt struct {
	Client int    `json:"client"`
	Seq    int    `json:"seq"`
	Kind   string `json:"kind"` // KindWrite or KindRead
	ID     string `json:"id"`
	Value  string `json:"value,omitempty"`
	// Start is when the request was sent, End when the answer (or the
	// error) came back.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// OK: acknowledged (a write) or answered (a read).
	OK bool `json:"ok"`
	// Region answered, if known.
	Region string `json:"region,omitempty"`
	Err    string `json:"error,omitempty"`
	// Outcome refines OK: OutcomeOK, OutcomeFailed or OutcomeUnknown. ""
	// with OK false is unknown (the safe reading for a write).
	Outcome string `json:"outcome,omitempty"`
}

// Fault is what was injected, and the instant it was.
type Fault struct {
	Kind   string    `json:"kind"`
	Region string    `json:"region,omitempty"`
	At     time.Time `json:"at"`
}

// LagSample is the replication lag of the standby a failover would promote,
// sampled on the primary.
type LagSample struct {
	At    time.Time     `json:"at"`
	Bytes int64         `json:"bytes"`
	Lag   time.Duration `json:"lag_ns"`
}

// Step is one step of a plan run during the drill, from its journal.
type Step struct {
	ID     string    `json:"id"`
	Op     string    `json:"op"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end,omitzero"`
	Status string    `json:"status"`
}

// Objectives are the service's RTO and RPO (spec.Objectives).
type Objectives struct {
	RTO time.Duration `json:"rto_ns"`
	RPO time.Duration `json:"rpo_ns"`
}

// ObjectivesOf converts a spec's objectives.
func ObjectivesOf(o lifeboat.Objectives) Objectives {
	return Objectives{RTO: time.Duration(o.RTO), RPO: time.Duration(o.RPO)}
}

// StepsFromJournal turns a run's journal into its steps' spans: a step
// starts at its first record and ends at its last terminal one (done,
// failed, skipped, holds, cancelled, undone); its Status is that record's
// kind, or "running" when it has none. plan may be nil (Op is then empty);
// records of several runs may be mixed, the steps keep journal order.
func StepsFromJournal(plan *lifeboat.Plan, recs []lifeboat.Record) []Step {
	ops := map[string]string{}
	if plan != nil {
		for _, s := range plan.Steps {
			if s != nil {
				ops[s.ID] = string(s.Op)
			}
		}
	}
	sorted := append([]lifeboat.Record(nil), recs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].At.Before(sorted[j].At) })
	idx := map[string]int{}
	var out []Step
	for _, r := range sorted {
		if r.Step == "" {
			continue
		}
		key := r.Run + "/" + r.Step
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, Step{ID: r.Step, Op: ops[r.Step], Start: r.At, Status: "running"})
		}
		switch r.Kind {
		case lifeboat.RecDone, lifeboat.RecFailed, lifeboat.RecSkipped, lifeboat.RecHolds, lifeboat.RecCancelled, lifeboat.RecUndone:
			out[i].End, out[i].Status = r.At, string(r.Kind)
		case lifeboat.RecWaiting:
			out[i].Status = string(r.Kind)
		}
	}
	return out
}
