package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/lifeboat-dr/lifeboat"
)

// The readiness questions (monitor.RecipeReporter, CapacityReporter,
// StreamReporter) are optional calls of a driver, served like the others:
// POST /v1/compute/recipe, /v1/compute/capacity, /v1/database/stream. The
// root package does not declare them (they are not plan steps), so their
// names live here; driver/fake uses the same ones.
const (
	ActComputeRecipe   = "compute.recipe"
	ActComputeCapacity = "compute.capacity"
	ActDatabaseStream  = "database.stream"
)

// optionalActions are the calls a hosted driver may not implement.
var optionalActions = []string{ActComputeRecipe, ActComputeCapacity, ActDatabaseStream}

// The interfaces of the optional calls, as monitor declares them; kept
// here so that the agent does not import the monitor.
type (
	recipeReporter interface {
		RecipeReady(ctx context.Context, t lifeboat.Target, c lifeboat.Compute) (ready bool, why string, err error)
	}
	capacityReporter interface {
		CanStandUp(ctx context.Context, t lifeboat.Target, c lifeboat.Compute, instances int) (ok bool, why string, err error)
	}
	streamReporter interface {
		StreamState(ctx context.Context, t lifeboat.Target) (state, upstream string, err error)
	}
)

// optionalIface names the interface behind each optional call, for errors.
var optionalIface = map[string]string{
	ActComputeRecipe:   "monitor.RecipeReporter (RecipeReady)",
	ActComputeCapacity: "monitor.CapacityReporter (CanStandUp)",
	ActDatabaseStream:  "monitor.StreamReporter (StreamState)",
}

// answer is the result of a yes/no readiness question.
type answer struct {
	OK  bool   `json:"ok"`
	Why string `json:"why"`
}

// streamAnswer is the result of database.stream.
type streamAnswer struct {
	State    string `json:"state"`
	Upstream string `json:"upstream"`
}

// serveOptional adds the endpoints of the optional calls the drivers
// implement; the others answer 501 with unsupported set.
func (h *handler) serveOptional(d lifeboat.Drivers) {
	needRecipe := func(action string, q *request) error {
		if q.Compute == nil {
			return lifeboat.Permanent(lifeboat.Op(action), q.Target.Resource,
				errors.New("the request carries no compute recipe (field \"compute\"); the client and agent versions may differ"))
		}
		return nil
	}
	if rr, ok := d.Compute.(recipeReporter); ok {
		h.endpoints[ActComputeRecipe] = func(ctx context.Context, q *request) (any, error) {
			if err := needRecipe(ActComputeRecipe, q); err != nil {
				return nil, err
			}
			ok, why, err := rr.RecipeReady(ctx, q.Target, *q.Compute)
			return answer{ok, why}, err
		}
	}
	if cr, ok := d.Compute.(capacityReporter); ok {
		h.endpoints[ActComputeCapacity] = func(ctx context.Context, q *request) (any, error) {
			if err := needRecipe(ActComputeCapacity, q); err != nil {
				return nil, err
			}
			ok, why, err := cr.CanStandUp(ctx, q.Target, *q.Compute, q.Instances)
			return answer{ok, why}, err
		}
	}
	if sr, ok := d.Database.(streamReporter); ok {
		h.endpoints[ActDatabaseStream] = func(ctx context.Context, q *request) (any, error) {
			state, upstream, err := sr.StreamState(ctx, q.Target)
			return streamAnswer{state, upstream}, err
		}
	}
	h.drivers = map[string]any{"compute": d.Compute, "database": d.Database}
}

// unsupported is the answer to an optional call the hosted driver does
// not implement (or a kind the agent does not serve).
func (h *handler) unsupported(action, resource string) *wireError {
	kind := kindOf(action)
	drv := h.drivers[kind]
	if drv == nil {
		return &wireError{Unsupported: true, Message: fmt.Sprintf(
			"%s %s: this agent serves no %s driver (it serves: %s), so it cannot answer this readiness question; give the agent a %s driver",
			action, resource, kind, servedList(h.serves), kind)}
	}
	example := map[string]string{"compute": "driver/process", "database": "driver/postgres"}[kind]
	return &wireError{Unsupported: true, Message: fmt.Sprintf(
		"%s %s: the agent's %s driver (%T) does not implement %s, so readiness cannot learn this from it; host a driver that does (such as %s) to have the check",
		action, resource, kind, drv, optionalIface[action], example)}
}

// RecipeReady asks the agent's compute driver (monitor.RecipeReporter).
// When that driver does not implement it, or the agent predates the call,
// the error answers errors.Is(err, errors.ErrUnsupported).
func (d compute) RecipeReady(ctx context.Context, t lifeboat.Target, c lifeboat.Compute) (bool, string, error) {
	var a answer
	err := d.c.call(ctx, ActComputeRecipe, &request{Target: t, Compute: &c}, &a)
	return a.OK, a.Why, err
}

// CanStandUp asks the agent's compute driver (monitor.CapacityReporter);
// unsupported as RecipeReady.
func (d compute) CanStandUp(ctx context.Context, t lifeboat.Target, c lifeboat.Compute, instances int) (bool, string, error) {
	var a answer
	err := d.c.call(ctx, ActComputeCapacity, &request{Target: t, Compute: &c, Instances: instances}, &a)
	return a.OK, a.Why, err
}

// StreamState asks the agent's database driver (monitor.StreamReporter);
// unsupported as RecipeReady.
func (d database) StreamState(ctx context.Context, t lifeboat.Target) (string, string, error) {
	var a streamAnswer
	err := d.c.call(ctx, ActDatabaseStream, &request{Target: t}, &a)
	return a.State, a.Upstream, err
}

func isOptional(action string) bool {
	for _, a := range optionalActions {
		if a == action {
			return true
		}
	}
	return false
}
