// Package monitor watches a service from every region and decides when to
// fail over.
//
//   - Probes (probe.go): HTTP, TCP and SQL checks per component and region,
//     run by an Observer in every region (the witness included), with an
//     interval, a timeout and tolerated failures; results kept with
//     timestamps.
//   - Readiness (readiness.go): the checks that say whether the standby
//     region could take over now, each with its reason.
//   - Exposure (exposure.go): replication lag over time, and the worst-case
//     data loss if the primary died now.
//   - The decision (decision.go): a pure function of what the observers
//     published, the quorum and the policy; it explains itself.
//
// The package does no I/O of its own beyond the probes: publishing views,
// holding the election and running plans are the controller's job
// ('lifeboat serve').
package monitor

import "time"

// Check is one readiness check's verdict.
type Check struct {
	// Name says what is checked, e.g. "standby streaming".
	Name string `json:"name"`
	// Component is the unit.component (or region) the check is about.
	Component string `json:"component,omitempty"`
	OK        bool   `json:"ok"`
	// Reason says why, in words for the person reading status.
	Reason string `json:"reason"`
	// Blocks is true when a failover would fail because of this check:
	// such a failover is refused unless forced.
	Blocks bool      `json:"blocks,omitempty"`
	At     time.Time `json:"at"`
}

// View is what one observer sees of one region, as it publishes it.
type View struct {
	Observer string `json:"observer"` // the observing region
	Region   string `json:"region"`   // the region observed
	Failing  bool   `json:"failing"`
	// Since is when the verdict last changed.
	Since time.Time `json:"since"`
	// At is when the observer published this view.
	At time.Time `json:"at"`
	// Reason says what failed (or "ok").
	Reason string `json:"reason,omitempty"`
}
