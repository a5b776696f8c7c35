package controller

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/store"
)

// cluster is an in-memory stand-in for the etcd quorum, shared by the
// controllers of one test: views by region, one leader, active keys, and a
// switch per region that cuts it off (its lease stops being renewed).
type cluster struct {
	mu      sync.Mutex
	views   map[string]map[string][]byte
	active  map[string]bool
	leader  string
	cut     map[string]bool
	renewed map[string]time.Time
}

func newCluster() *cluster {
	return &cluster{views: map[string]map[string][]byte{}, active: map[string]bool{}, cut: map[string]bool{}, renewed: map[string]time.Time{}}
}

// cutOff isolates region: its lease lapses, so its views, its active key
// and its leadership go with it.
func (c *cluster) cutOff(region string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut[region] = true
	delete(c.views, region)
	delete(c.active, region)
	if c.leader == region {
		c.leader = ""
	}
}

type member struct {
	c      *cluster
	region string
}

func (m member) Campaign(ctx context.Context) error {
	for {
		m.c.mu.Lock()
		if !m.c.cut[m.region] && m.c.leader == "" {
			m.c.leader = m.region
		}
		won := m.c.leader == m.region
		m.c.mu.Unlock()
		if won {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (m member) IsLeader() bool {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	return m.c.leader == m.region
}

func (m member) LastRenewed() time.Time {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	if !m.c.cut[m.region] {
		m.c.renewed[m.region] = time.Now()
	}
	return m.c.renewed[m.region]
}

func (m member) Alive(now time.Time) bool {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	return !m.c.cut[m.region]
}

func (m member) Publish(ctx context.Context, key string, value []byte) error {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	if m.c.cut[m.region] {
		return lifeboat.Transient("publish", key, context.DeadlineExceeded)
	}
	if m.c.views[m.region] == nil {
		m.c.views[m.region] = map[string][]byte{}
	}
	m.c.views[m.region][key] = value
	return nil
}

func (m member) Views(ctx context.Context) (map[string]map[string][]byte, error) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	if m.c.cut[m.region] {
		return nil, lifeboat.Transient("views", m.region, context.DeadlineExceeded)
	}
	out := map[string]map[string][]byte{}
	for r, kv := range m.c.views {
		out[r] = map[string][]byte{}
		for k, v := range kv {
			out[r][k] = v
		}
	}
	return out, nil
}

func (m member) HoldActive(ctx context.Context) error {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	if !m.c.cut[m.region] {
		m.c.active[m.region] = true
	}
	return nil
}

func (m member) ActiveHeld(ctx context.Context, region string) (bool, error) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	return m.c.active[region], nil
}

// site is a region's web endpoint that a test can take down.
type site struct {
	srv  *httptest.Server
	down atomic.Bool
}

func newSite(t *testing.T) *site {
	s := &site{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func testSpec(mode lifeboat.MonitorMode, west, east string) *lifeboat.Spec {
	return &lifeboat.Spec{
		Service:    "shop",
		Regions:    lifeboat.Regions{Primary: lifeboat.Region{Name: "west"}, Secondary: lifeboat.Region{Name: "east"}, Witness: &lifeboat.Region{Name: "central"}},
		Objectives: lifeboat.Objectives{RTO: lifeboat.Duration(time.Minute), RPO: lifeboat.Duration(5 * time.Second)},
		Units: map[string]lifeboat.Unit{"storefront": {
			Compute:   map[string]lifeboat.Compute{"web": {Standby: lifeboat.StandbyWarm, Instances: lifeboat.Instances{Primary: 2, Secondary: 2}}},
			Databases: map[string]lifeboat.Database{"orders": {Engine: "postgres", DRMode: lifeboat.DRGeoReplica}},
			Traffic:   map[string]lifeboat.Traffic{"www": {Names: []string{"www.shop.test"}, Target: "web"}},
		}},
		Drivers: lifeboat.DriverSpec{Default: "fake"},
		Monitor: lifeboat.Monitor{
			Mode: mode, Interval: lifeboat.Duration(20 * time.Millisecond), Timeout: lifeboat.Duration(20 * time.Millisecond), Failures: 2,
			Lease: lifeboat.Duration(time.Second), BlockWindow: lifeboat.Duration(time.Hour),
			Targets: map[string]map[string]string{
				"west": {"storefront.web": west + "/healthz"},
				"east": {"storefront.web": east + "/healthz"},
			},
		},
	}
}

type harness struct {
	spec  *lifeboat.Spec
	store lifeboat.Store
	world *fake.World
	cl    *cluster
	ctrl  map[string]*Controller
}

func start(t *testing.T, spec *lifeboat.Spec, leader string) *harness {
	t.Helper()
	h := &harness{spec: spec, store: store.NewMemory(), world: fake.New(), cl: newCluster(), ctrl: map[string]*Controller{}}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := h.store.Init(ctx, lifeboat.InitialState(spec, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	h.world.Seed(spec, st)
	h.cl.leader = leader // the election's outcome is not what these tests are about
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, r := range []string{"west", "east", "central"} {
		c, err := New(Config{Spec: spec, Region: r, Store: h.store, Quorum: member{h.cl, r}, Drivers: h.world.Drivers(),
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		h.ctrl[r] = c
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Run(ctx) }()
	}
	return h
}

func (h *harness) state(t *testing.T) *lifeboat.State {
	t.Helper()
	st, err := h.store.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegionDownFailsOverAutomaticallyOnce(t *testing.T) {
	west, east := newSite(t), newSite(t)
	h := start(t, testSpec(lifeboat.MonitorAutomatic, west.srv.URL, east.srv.URL), "east")

	// Healthy: every controller decides to do nothing.
	eventually(t, "a first decision everywhere", func() bool {
		for _, c := range h.ctrl {
			if c.Status().DecidedAt.IsZero() {
				return false
			}
		}
		return true
	})
	if st := h.state(t); st.Active != "west" || st.Epoch != 1 {
		t.Fatalf("a healthy service moved: active %s epoch %d", st.Active, st.Epoch)
	}

	west.down.Store(true)
	eventually(t, "the automatic failover to east", func() bool {
		st := h.state(t)
		return st.Active == "east" && st.Run == ""
	})
	runs, err := h.store.Runs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// West's controller still publishes (only its web is down), so the
	// leader may already be rejoining west's database: count failovers.
	var failovers []*lifeboat.Run
	for _, r := range runs {
		if r.Plan.Intent == lifeboat.IntentFailover {
			failovers = append(failovers, r)
		}
	}
	if len(failovers) != 1 || failovers[0].By != Automatic || failovers[0].Status != lifeboat.RunSucceeded {
		t.Fatalf("failover runs: %+v; want one automatic failover, done", failovers)
	}

	// West comes back and east fails: within the block window nothing
	// moves again, and the leader says why.
	west.down.Store(false)
	east.down.Store(true)
	eventually(t, "the leader to refuse a second automatic failover", func() bool {
		d := h.ctrl["east"].Status().Decision
		return d.Action == monitor.ActionNone && strings.Contains(strings.Join(d.Reasons, " "), "block")
	})
	runs, _ = h.store.Runs(context.Background())
	n := 0
	for _, r := range runs {
		if r.Plan.Intent == lifeboat.IntentFailover {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("a second automatic failover ran within the block window: %d failovers", n)
	}
}

func TestWestCutOffFencesItselfAndEastTakesOver(t *testing.T) {
	west, east := newSite(t), newSite(t)
	h := start(t, testSpec(lifeboat.MonitorAutomatic, west.srv.URL, east.srv.URL), "west")
	eventually(t, "west to hold the active key", func() bool {
		held, _ := member{h.cl, "east"}.ActiveHeld(context.Background(), "west")
		return held
	})

	// West is isolated: its lease lapses (leadership, views and active key
	// go), the others can no longer reach its endpoint.
	h.cl.cutOff("west")
	west.down.Store(true)

	eventually(t, "west to fence its database", func() bool {
		return h.world.Database("shop-storefront-orders-west").Role == lifeboat.DBFenced
	})
	if !h.ctrl["west"].Status().Fenced {
		t.Fatal("west fenced its database but does not say so")
	}
	eventually(t, "east to take over", func() bool {
		st := h.state(t)
		return st.Active == "east" && st.Run == ""
	})
	if role := h.world.Database("shop-storefront-orders-east").Role; role != lifeboat.DBPrimary {
		t.Fatalf("east's database is %s after the failover; want primary", role)
	}
}

func TestManualModeOnlyExplains(t *testing.T) {
	west, east := newSite(t), newSite(t)
	h := start(t, testSpec(lifeboat.MonitorManual, west.srv.URL, east.srv.URL), "east")
	west.down.Store(true)
	eventually(t, "the leader to explain what it would do", func() bool {
		d := h.ctrl["east"].Status().Decision
		return d.Action == monitor.ActionNone && strings.Contains(strings.Join(d.Reasons, " "), "manual")
	})
	if st := h.state(t); st.Active != "west" || st.Epoch != 1 {
		t.Fatalf("manual mode moved the service: active %s epoch %d", st.Active, st.Epoch)
	}
}

// After an automatic failover the old primary region comes back: the
// leader rejoins its database as a replica of the new primary, and the
// block window still counts from the failover.
func TestReturningPrimaryIsRejoinedAsAStandby(t *testing.T) {
	west, east := newSite(t), newSite(t)
	h := start(t, testSpec(lifeboat.MonitorAutomatic, west.srv.URL, east.srv.URL), "east")
	west.down.Store(true)
	eventually(t, "the automatic failover to east", func() bool {
		st := h.state(t)
		return st.Active == "east" && st.Run == ""
	})
	// West's controller never stopped publishing (only its web is down),
	// so the leader may rejoin west's database at once, or once west's web
	// is back.
	west.down.Store(false)
	eventually(t, "west's database to be rejoined as a replica", func() bool {
		return h.world.Database("shop-storefront-orders-west").Role == lifeboat.DBReplica && h.state(t).Run == ""
	})
	runs, err := h.store.Runs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var intents []string
	for _, r := range runs {
		intents = append(intents, string(r.Plan.Intent)+" by "+r.By)
	}
	if len(runs) != 2 {
		t.Fatalf("runs: %v; want the failover and the rejoin", intents)
	}
	if st := h.state(t); st.Active != "east" {
		t.Fatalf("the rejoin moved the service to %s", st.Active)
	}
	if got := NeedsRejoin(h.spec, h.state(t)); len(got) != 0 {
		t.Fatalf("after the rejoin NeedsRejoin = %v", got)
	}
}

// A blocking readiness check refuses the automatic failover, and says so.
func TestReadinessBlocksTheAutomaticFailover(t *testing.T) {
	west, east := newSite(t), newSite(t)
	spec := testSpec(lifeboat.MonitorAutomatic, west.srv.URL, east.srv.URL)
	h := &harness{spec: spec, store: store.NewMemory(), world: fake.New(), cl: newCluster(), ctrl: map[string]*Controller{}}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := h.store.Init(ctx, lifeboat.InitialState(spec, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	h.world.Seed(spec, st)
	h.cl.leader = "east"
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	blocked := func(context.Context) []monitor.Check {
		return []monitor.Check{{Name: monitor.CheckStandbyStreaming, Component: "storefront.orders", Blocks: true, Reason: "east's copy is absent"}}
	}
	for _, r := range []string{"west", "east", "central"} {
		c, err := New(Config{Spec: spec, Region: r, Store: h.store, Quorum: member{h.cl, r}, Drivers: h.world.Drivers(),
			Readiness: blocked, ReadinessEvery: 20 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		h.ctrl[r] = c
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Run(ctx) }()
	}
	west.down.Store(true)
	eventually(t, "the leader to refuse the failover, naming the check", func() bool {
		d := h.ctrl["east"].Status().Decision
		return d.Action == monitor.ActionNone && strings.Contains(strings.Join(d.Reasons, " "), "east's copy is absent")
	})
	if st := h.state(t); st.Active != "west" || st.Epoch != 1 {
		t.Fatalf("a failover ran although readiness blocks it: active %s epoch %d", st.Active, st.Epoch)
	}
}

func TestNeedsRejoin(t *testing.T) {
	spec := testSpec(lifeboat.MonitorAutomatic, "http://127.0.0.1:1", "http://127.0.0.1:2")
	st := lifeboat.InitialState(spec, time.Now())
	if got := NeedsRejoin(spec, st); len(got) != 0 {
		t.Fatalf("a fresh service needs no rejoin, got %v", got)
	}
	// After a failover: east's copy is primary, west's fenced.
	st.Active = "east"
	st.Resource(spec, "storefront", "orders", "east").Role = lifeboat.DBPrimary
	st.Resource(spec, "storefront", "orders", "west").Role = lifeboat.DBFenced
	if got := NeedsRejoin(spec, st); len(got) != 1 || got[0] != "shop-storefront-orders-west" {
		t.Fatalf("after a failover NeedsRejoin = %v; want west's orders", got)
	}
	// Rejoined: a replica again.
	st.Resource(spec, "storefront", "orders", "west").Role = lifeboat.DBReplica
	if got := NeedsRejoin(spec, st); len(got) != 0 {
		t.Fatalf("a replica needs no rejoin, got %v", got)
	}
}
