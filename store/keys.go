package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// OwnTTL is how long a run's ownership outlives an owner that stopped
// renewing it (crashed on another host, or cut off from etcd). Short, so a
// resume after a crash does not wait long; long enough to ride out a GC
// pause or a leader election.
const OwnTTL = 5 * time.Second

// Ops named in errors, so an SRE sees which store call failed.
const (
	opOpen    lifeboat.Op = "store.open"
	opState   lifeboat.Op = "store.state"
	opInit    lifeboat.Op = "store.init"
	opBegin   lifeboat.Op = "store.begin"
	opAppend  lifeboat.Op = "store.append"
	opJournal lifeboat.Op = "store.journal"
	opRun     lifeboat.Op = "store.run"
	opUpdate  lifeboat.Op = "store.update"
	opOwn     lifeboat.Op = "store.own"
	opCancel  lifeboat.Op = "store.cancel"
	opClose   lifeboat.Op = "store.close"
)

// keys builds the keys of one service.
type keys struct{ prefix string }

func newKeys(service string) keys { return keys{prefix: "/lifeboat/" + service + "/"} }

func (k keys) state() string           { return k.prefix + "state" }
func (k keys) runs() string            { return k.prefix + "runs/" }
func (k keys) run(id string) string    { return k.prefix + "runs/" + id }
func (k keys) own(id string) string    { return k.prefix + "own/" + id }
func (k keys) cancel(id string) string { return k.prefix + "cancel/" + id }
func (k keys) journal(id string) string {
	return k.prefix + "journal/" + id + "/"
}
func (k keys) record(id string, seq uint64) string {
	return fmt.Sprintf("%sjournal/%s/%020d", k.prefix, id, seq)
}

// seqOf parses the seq at the end of a journal key.
func seqOf(key string) (uint64, error) {
	i := strings.LastIndexByte(key, '/')
	return strconv.ParseUint(key[i+1:], 10, 64)
}

// checkService rejects service names that would break the key layout.
func checkService(service string) error {
	if service == "" {
		return fmt.Errorf("no service name given: set `service:` in lifeboat.yaml")
	}
	if strings.ContainsAny(service, "/ \t\n") {
		return fmt.Errorf("service name %q contains '/' or spaces: use lower-case letters and digits", service)
	}
	return nil
}

// checkRunID rejects run ids that would break the key layout. Such an id is
// a bug in the caller, never worth retrying.
func checkRunID(op lifeboat.Op, id string) error {
	if id == "" {
		return lifeboat.Permanent(op, "", fmt.Errorf("run id is empty"))
	}
	if strings.ContainsAny(id, "/ \t\n") {
		return lifeboat.Permanent(op, id, fmt.Errorf("run id %q contains '/' or spaces, which the store's keys cannot hold", id))
	}
	return nil
}

// cancelRequest is the value of cancel/<id>.
type cancelRequest struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// encode marshals a value that is always marshalable (our own types).
func encode(op lifeboat.Op, what string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, lifeboat.Permanent(op, what, fmt.Errorf("encode %s: %w", what, err))
	}
	return b, nil
}

// decode unmarshals a stored value; a value that does not decode was
// written by something else (or a newer lifeboat) and retrying won't help.
func decode(op lifeboat.Op, key string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return lifeboat.Permanent(op, key, fmt.Errorf("stored value at %s is not valid JSON for lifeboat (written by another tool or version?): %w", key, err))
	}
	return nil
}

func noRun(op lifeboat.Op, id string) error {
	return lifeboat.Permanent(op, id, fmt.Errorf("run %s is not in the store (`lifeboat runs` lists the runs): %w", id, lifeboat.ErrNoRun))
}

func noState(op lifeboat.Op, service string) error {
	return lifeboat.Permanent(op, service, fmt.Errorf("service %s: %w (initialise it first, e.g. `lifeboat init`)", service, lifeboat.ErrNoState))
}

func runInProgress(other *lifeboat.Run) error {
	return lifeboat.Permanent(opBegin, other.ID, fmt.Errorf("%w: run %s (%s %s→%s, %s, started %s by %s) has not ended; resume it with `lifeboat resume %s` or stop it with `lifeboat cancel %s`",
		lifeboat.ErrRunInProgress, other.ID, planIntent(other), planFrom(other), planTo(other), other.Status,
		other.StartedAt.Format(time.RFC3339), orUnknown(other.By), other.ID, other.ID))
}

func planIntent(r *lifeboat.Run) string {
	if r.Plan == nil {
		return "plan"
	}
	return string(r.Plan.Intent)
}
func planFrom(r *lifeboat.Run) string {
	if r.Plan == nil {
		return "?"
	}
	return r.Plan.From
}
func planTo(r *lifeboat.Run) string {
	if r.Plan == nil {
		return "?"
	}
	return r.Plan.To
}
func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
