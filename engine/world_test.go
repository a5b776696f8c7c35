package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/store"
)

// world is a pretend world for unit tests: scale sets by resource name, and
// a "done" flag per step for ops that act on nothing the test looks at.
type world struct {
	mu      sync.Mutex
	sets    map[string]*lifeboat.ScaleSet
	flags   map[string]bool
	applies map[string]int // Apply calls by step id
	holds   map[string]int // Holds calls by step id
	// apply, when set for a step id, runs before the step's effect; an
	// error stops the effect.
	apply map[string]func(ctx context.Context) error
}

func newWorld() *world {
	return &world{sets: map[string]*lifeboat.ScaleSet{}, flags: map[string]bool{}, applies: map[string]int{},
		holds: map[string]int{}, apply: map[string]func(context.Context) error{}}
}

func (w *world) on(step string, f func(ctx context.Context) error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.apply[step] = f
}

func (w *world) count(m map[string]int, step string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return m[step]
}

func (w *world) set(res string) lifeboat.ScaleSet {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.sets[res]; s != nil {
		return *s
	}
	return lifeboat.ScaleSet{}
}

func (w *world) bind(run string, s *lifeboat.Step) (lifeboat.Action, error) {
	holds := func(ctx context.Context) (bool, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.holds[s.ID]++
		set := w.sets[s.Resource]
		switch s.Op {
		case lifeboat.OpComputeProvision:
			return set != nil && set.Exists, nil
		case lifeboat.OpComputeScale:
			return set != nil && set.Exists && set.Instances == s.Instances, nil
		case lifeboat.OpComputeDelete:
			return set == nil || !set.Exists, nil
		}
		return w.flags[s.ID], nil
	}
	apply := func(ctx context.Context) error {
		w.mu.Lock()
		w.applies[s.ID]++
		f := w.apply[s.ID]
		w.mu.Unlock()
		if f != nil {
			if err := f(ctx); err != nil {
				return err
			}
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		set := w.sets[s.Resource]
		if set == nil {
			set = &lifeboat.ScaleSet{}
			w.sets[s.Resource] = set
		}
		switch s.Op {
		case lifeboat.OpComputeProvision:
			set.Exists = true
		case lifeboat.OpComputeScale:
			set.Exists, set.Instances = true, s.Instances
		case lifeboat.OpComputeDelete:
			set.Exists, set.Instances = false, 0
		default:
			w.flags[s.ID] = true
		}
		return nil
	}
	return lifeboat.ActionFunc{HoldsFunc: holds, ApplyFunc: apply}, nil
}

// The state tests start from: epoch 1, a warm scale set "web-east" with 0
// instances, a cold one "worker-east" that does not exist, a database.
func testState() *lifeboat.State {
	t0 := time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)
	res := func(name string, kind lifeboat.Kind, exists bool, n int, role lifeboat.DatabaseRole) *lifeboat.Resource {
		return &lifeboat.Resource{Name: name, Kind: kind, Region: "east", Exists: exists, Instances: n, Role: role, Epoch: 1, Since: t0}
	}
	return &lifeboat.State{Service: "shop", Epoch: 1, Active: "west", Since: t0, Resources: map[string]*lifeboat.Resource{
		"web-east":    res("web-east", lifeboat.KindCompute, true, 0, ""),
		"worker-east": res("worker-east", lifeboat.KindCompute, false, 0, ""),
		"db-east":     res("db-east", lifeboat.KindDatabase, true, 0, lifeboat.DBReplica),
		"www":         {Name: "www", Kind: lifeboat.KindTraffic, Routes: "west", Exists: true, Epoch: 1, Since: t0},
	}}
}

// fixture is an engine on a memory store and a pretend world.
type fixture struct {
	t     *testing.T
	store lifeboat.Store
	world *world
	cfg   Config

	mu     sync.Mutex
	events []Event
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, store: store.NewMemory(), world: newWorld()}
	if _, err := f.store.Init(context.Background(), testState()); err != nil {
		t.Fatal(err)
	}
	// The pretend world matches the state.
	f.world.sets["web-east"] = &lifeboat.ScaleSet{Exists: true}
	f.cfg = DefaultConfig()
	f.cfg.Store = f.store
	f.cfg.Bind = f.world.bind
	f.cfg.Backoff = Backoff{Initial: time.Microsecond, Max: 10 * time.Microsecond, Multiplier: 2}
	f.cfg.By = "sre@test"
	f.cfg.OnEvent = func(e Event) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.events = append(f.events, e)
	}
	return f
}

func (f *fixture) engine() *Engine {
	f.t.Helper()
	e, err := New(f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

func (f *fixture) start(p *lifeboat.Plan) *Future {
	f.t.Helper()
	fut, err := f.engine().Start(context.Background(), p)
	if err != nil {
		f.t.Fatal(err)
	}
	return fut
}

func (f *fixture) journal(run string) []lifeboat.Record {
	f.t.Helper()
	recs, err := f.store.Journal(context.Background(), run)
	if err != nil {
		f.t.Fatal(err)
	}
	return recs
}

func (f *fixture) state() *lifeboat.State {
	f.t.Helper()
	st, err := f.store.State(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// kinds returns the kinds journaled for a step, in order.
func kinds(recs []lifeboat.Record, step string) []string {
	var out []string
	for _, r := range recs {
		if r.Step == step {
			k := string(r.Kind)
			if r.Attempt > 0 {
				k += fmt.Sprint(r.Attempt)
			}
			out = append(out, k)
		}
	}
	return out
}

func count(recs []lifeboat.Record, step string, kind lifeboat.RecordKind) int {
	n := 0
	for _, r := range recs {
		if r.Step == step && r.Kind == kind {
			n++
		}
	}
	return n
}

// plan builds a plan at epoch 2 whose first step raises the epoch; steps
// given without dependencies depend on it.
func plan(steps ...*lifeboat.Step) *lifeboat.Plan {
	p := &lifeboat.Plan{Service: "shop", Intent: lifeboat.IntentFailover, From: "west", To: "east", Epoch: 2}
	p.Steps = append(p.Steps, &lifeboat.Step{ID: "epoch", Op: lifeboat.OpRaiseEpoch, Epoch: 2})
	for _, s := range steps {
		s.Epoch = 2
		if s.DependsOn == nil {
			s.DependsOn = []string{"epoch"}
		}
		p.Steps = append(p.Steps, s)
	}
	return p
}

func script(id string, deps ...string) *lifeboat.Step {
	return &lifeboat.Step{ID: id, Op: lifeboat.OpScript, Run: "true", DependsOn: deps}
}

func wantErrContains(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

var errBoom = errors.New("boom")
