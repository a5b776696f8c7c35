// Package agent serves drivers over HTTP and calls them back through a
// client that implements the same interfaces.
//
// Some drivers must live in a long-running process (supervisors that
// restart crashed instances, WAN links, sync watchers) while every lifeboat
// CLI command is short-lived. A region's agent (for now the lab's daemon)
// hosts the real drivers behind Handler; the CLI reaches them with
// NewClient. Hooks (ScriptRunner) are not served: they run where the CLI
// runs.
//
// The wire format is one JSON endpoint per driver call, POST
// /v1/<kind>/<call>, named after the driver actions (database.promote is
// POST /v1/database/promote). A request carries the call's arguments; a
// success answers 200 with the result (an empty object for calls that
// return only an error); a failure answers with
// {"error": {"message", "retryable", "stale_epoch", "unsupported"}} so that
// the client rebuilds an error that lifeboat.IsRetryable, errors.Is(err,
// lifeboat.ErrStaleEpoch) and errors.Is(err, errors.ErrUnsupported) judge
// as on the agent's side.
//
// Besides the driver interfaces, the agent serves the optional readiness
// questions a driver may answer (see ActComputeRecipe): the client always
// offers them, and reports a hosted driver that does not implement one as
// errors.ErrUnsupported.
package agent

import (
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// request carries the arguments of any driver call; each call reads the
// fields it takes.
type request struct {
	Target lifeboat.Target `json:"target"`
	// From is the old primary of a switchover.
	From lifeboat.Target `json:"from,omitzero"`
	// Primary is the primary a rejoining copy follows.
	Primary lifeboat.Target `json:"primary,omitzero"`
	// Compute is the recipe a scale set is provisioned with.
	Compute *lifeboat.Compute `json:"compute,omitempty"`
	// Instances of a scale; 0 is meaningful (stop writes), so no omitempty.
	Instances int      `json:"instances"`
	Names     []string `json:"names,omitempty"`
}

// wireError is a driver's failure as it travels.
type wireError struct {
	Message    string `json:"message"`
	Retryable  bool   `json:"retryable"`
	StaleEpoch bool   `json:"stale_epoch"`
	// Unsupported: the agent cannot make this call at all (its driver
	// does not implement an optional call, or it serves no such driver);
	// the client's error answers errors.Is(err, errors.ErrUnsupported).
	Unsupported bool `json:"unsupported,omitempty"`
}

type errorBody struct {
	Error *wireError `json:"error"`
}

// health is the answer of GET /v1/health.
type health struct {
	Status string   `json:"status"` // "ok"
	Serves []string `json:"serves"` // the kinds whose driver is hosted
}

// kinds are the driver kinds an agent can serve, in DriverActions order.
var kinds = []string{"compute", "database", "backup", "traffic"}

// timeoutHeader carries what is left of the caller's deadline, so the
// agent's driver knows its budget before the connection drops. It is
// relative, so the two clocks need not agree.
const timeoutHeader = "Lifeboat-Timeout"

// pathOf is the endpoint of a driver action: "database.promote" →
// "/v1/database/promote".
func pathOf(action string) string { return "/v1/" + strings.Replace(action, ".", "/", 1) }

// kindOf is the kind of a driver action: "database.promote" → "database".
func kindOf(action string) string { k, _, _ := strings.Cut(action, "."); return k }

// remainingTimeout formats d for timeoutHeader.
func remainingTimeout(deadline time.Time) string {
	d := time.Until(deadline)
	if d < time.Millisecond {
		d = time.Millisecond // already due: let the agent fail fast, not wait forever
	}
	return d.String()
}
