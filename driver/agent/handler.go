package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// maxRequest bounds a request body: the largest is a compute recipe.
const maxRequest = 1 << 20

// endpoint runs one driver call with the request's arguments and returns
// its result (nil for calls that return only an error).
type endpoint func(ctx context.Context, q *request) (any, error)

// Handler serves d: one JSON endpoint per driver call, POST
// /v1/<kind>/<call> (e.g. /v1/database/promote). A kind whose driver is nil
// answers 501 with a clear message. GET /v1/health answers 200 with the
// served kinds. Scripts are never served: hooks run where the CLI runs.
func Handler(d lifeboat.Drivers) http.Handler {
	h := &handler{endpoints: map[string]endpoint{}}
	if c := d.Compute; c != nil {
		h.serve("compute")
		h.endpoints[lifeboat.ActComputeStatus] = func(ctx context.Context, q *request) (any, error) { return c.Status(ctx, q.Target) }
		h.endpoints[lifeboat.ActComputeProvision] = func(ctx context.Context, q *request) (any, error) {
			if q.Compute == nil {
				return nil, lifeboat.Permanent(lifeboat.ActComputeProvision, q.Target.Resource,
					errors.New("the request carries no compute recipe (field \"compute\"); the client and agent versions may differ"))
			}
			return nil, c.Provision(ctx, q.Target, *q.Compute)
		}
		h.endpoints[lifeboat.ActComputeScale] = func(ctx context.Context, q *request) (any, error) { return nil, c.Scale(ctx, q.Target, q.Instances) }
		h.endpoints[lifeboat.ActComputeDelete] = func(ctx context.Context, q *request) (any, error) { return nil, c.Delete(ctx, q.Target) }
	}
	if db := d.Database; db != nil {
		h.serve("database")
		h.endpoints[lifeboat.ActDatabaseStatus] = func(ctx context.Context, q *request) (any, error) { return db.Status(ctx, q.Target) }
		h.endpoints[lifeboat.ActDatabaseFence] = func(ctx context.Context, q *request) (any, error) { return nil, db.Fence(ctx, q.Target) }
		h.endpoints[lifeboat.ActDatabasePromote] = func(ctx context.Context, q *request) (any, error) { return nil, db.Promote(ctx, q.Target) }
		h.endpoints[lifeboat.ActDatabaseSwitchover] = func(ctx context.Context, q *request) (any, error) {
			return nil, db.Switchover(ctx, q.From, q.Target)
		}
		h.endpoints[lifeboat.ActDatabaseRejoin] = func(ctx context.Context, q *request) (any, error) {
			return nil, db.Rejoin(ctx, q.Target, q.Primary)
		}
	}
	if b := d.Backup; b != nil {
		h.serve("backup")
		h.endpoints[lifeboat.ActBackupLatest] = func(ctx context.Context, q *request) (any, error) { return b.Latest(ctx, q.Target) }
		h.endpoints[lifeboat.ActBackupTake] = func(ctx context.Context, q *request) (any, error) { return b.Take(ctx, q.Target) }
		h.endpoints[lifeboat.ActBackupRestore] = func(ctx context.Context, q *request) (any, error) { return nil, b.Restore(ctx, q.Target) }
	}
	if tr := d.Traffic; tr != nil {
		h.serve("traffic")
		h.endpoints[lifeboat.ActTrafficStatus] = func(ctx context.Context, q *request) (any, error) { return tr.Status(ctx, q.Target, q.Names) }
		h.endpoints[lifeboat.ActTrafficSwitch] = func(ctx context.Context, q *request) (any, error) { return nil, tr.Switch(ctx, q.Target, q.Names) }
	}
	h.serveOptional(d)
	h.actions = map[string]string{}
	for _, k := range lifeboat.DriverActions {
		for _, a := range k.Actions {
			h.actions[pathOf(a)] = a
		}
	}
	for _, a := range optionalActions {
		h.actions[pathOf(a)] = a
	}
	return h
}

type handler struct {
	endpoints map[string]endpoint // by driver action
	actions   map[string]string   // driver action by path
	serves    []string
	drivers   map[string]any // hosted compute and database drivers, to name them in errors
}

func (h *handler) serve(kind string) { h.serves = append(h.serves, kind) }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/health" {
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, &wireError{Message: "use GET /v1/health"})
			return
		}
		writeJSON(w, http.StatusOK, health{Status: "ok", Serves: append([]string{}, h.serves...)})
		return
	}
	action, ok := h.actions[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, &wireError{Message: fmt.Sprintf(
			"this agent has no endpoint %s; calls are POST /v1/<kind>/<call> for the kinds %s (client and agent versions may differ)",
			r.URL.Path, strings.Join(kinds, ", "))})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, &wireError{Message: fmt.Sprintf("use POST %s, not %s", r.URL.Path, r.Method)})
		return
	}
	var q request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest)).Decode(&q); err != nil {
		writeError(w, http.StatusBadRequest, &wireError{Message: fmt.Sprintf("%s: cannot read the request body: %v", action, err)})
		return
	}
	call, ok := h.endpoints[action]
	if !ok && isOptional(action) {
		writeError(w, http.StatusNotImplemented, h.unsupported(action, q.Target.Resource))
		return
	}
	if !ok {
		writeError(w, http.StatusNotImplemented, &wireError{Message: fmt.Sprintf(
			"%s %s: this agent serves no %s driver (it serves: %s); choose another driver for %s components under drivers: in the spec, or give the agent one",
			action, q.Target.Resource, kindOf(action), servedList(h.serves), kindOf(action))})
		return
	}
	ctx := r.Context()
	if v := r.Header.Get(timeoutHeader); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
	}
	out, err := call(ctx, &q)
	if err != nil {
		we := &wireError{Message: err.Error(), Retryable: lifeboat.IsRetryable(err), StaleEpoch: errors.Is(err, lifeboat.ErrStaleEpoch)}
		writeError(w, statusOf(we), we)
		return
	}
	if out == nil {
		out = struct{}{}
	}
	writeJSON(w, http.StatusOK, out)
}

// statusOf picks an HTTP status for a driver's failure, for people reading
// logs; the client judges by the body.
func statusOf(we *wireError) int {
	switch {
	case we.StaleEpoch:
		return http.StatusConflict
	case we.Retryable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusUnprocessableEntity
	}
}

func servedList(serves []string) string {
	if len(serves) == 0 {
		return "no driver at all"
	}
	return strings.Join(serves, ", ")
}

func writeError(w http.ResponseWriter, status int, we *wireError) {
	writeJSON(w, status, errorBody{Error: we})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: &wireError{Message: "the agent cannot encode its answer: " + err.Error()}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
