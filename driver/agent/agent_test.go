package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/agent"
	"github.com/lifeboat-dr/lifeboat/driver/drivertest"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
)

func spec() *lifeboat.Spec { return drivertest.Spec() }

// world returns a fake world in the spec's initial state whose clock moves
// a second and a nanosecond per reading, in UTC, so that times that lose
// precision on the wire would show.
func world(t *testing.T) *fake.World {
	t.Helper()
	w := fake.New()
	var mu sync.Mutex
	now := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	w.SetClock(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second + time.Nanosecond)
		return now
	})
	w.Seed(spec(), nil)
	return w
}

// serve runs Handler(d) on a real loopback listener and returns its URL
// and a function that stops it (also run at cleanup).
func serve(t *testing.T, d lifeboat.Drivers) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: agent.Handler(d), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = srv.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func tg(unit, comp, region string, epoch uint64) lifeboat.Target {
	res := lifeboat.ResourceName("shop", unit, comp, region)
	if region == "" {
		res = lifeboat.TrafficName("shop", unit, comp)
	}
	return lifeboat.Target{Service: "shop", Unit: unit, Component: comp, Region: region, Resource: res, Epoch: epoch, Run: "r1", Step: "s1"}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func same[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s through the agent = %+v, want %+v (what the fake returns directly)", what, got, want)
	}
}

// TestEveryCallRoundTrips makes every driver call through the agent and
// checks results and effects against the fake read directly.
func TestEveryCallRoundTrips(t *testing.T) {
	ctx := ctxT(t)
	w := world(t)
	direct := w.Drivers()
	url, _ := serve(t, direct)
	c := agent.NewClient(url, nil)

	t.Run("compute", func(t *testing.T) {
		web := tg("storefront", "web", "west", 1)
		got, err := c.Compute.Status(ctx, web)
		must(t, err)
		want, err := direct.Compute.Status(ctx, web)
		must(t, err)
		same(t, "compute.status", got, want)

		worker := tg("reports", "worker", "east", 2)
		recipe := spec().Units["reports"].Compute["worker"]
		recipe.Recipe.Settings = map[string]string{"MODE": "dr"}
		recipe.Probe = &lifeboat.Probe{HTTP: "/healthz", Interval: lifeboat.Duration(1500*time.Millisecond + 3), Timeout: lifeboat.Duration(time.Second), Failures: 3}
		recipe.Boot = lifeboat.Duration(42*time.Second + 7)
		must(t, c.Compute.Provision(ctx, worker, recipe))
		if r, ok := w.Recipe(worker.Resource); !ok || !reflect.DeepEqual(r, recipe) {
			t.Errorf("recipe provisioned through the agent = %+v, want %+v", r, recipe)
		}
		must(t, c.Compute.Scale(ctx, worker, 4))
		if ss := w.ScaleSet(worker.Resource); ss.Instances != 4 || ss.Epoch != 2 {
			t.Errorf("after scale to 4 at epoch 2: %+v", ss)
		}
		must(t, c.Compute.Scale(ctx, worker, 0)) // 0 is a real count (stop writes), not a missing one
		if ss := w.ScaleSet(worker.Resource); !ss.Exists || ss.Instances != 0 {
			t.Errorf("after scale to 0: %+v", ss)
		}
		must(t, c.Compute.Delete(ctx, worker))
		got, err = c.Compute.Status(ctx, worker)
		must(t, err)
		if got.Exists {
			t.Errorf("after delete the scale set still exists: %+v", got)
		}
		want, err = direct.Compute.Status(ctx, worker)
		must(t, err)
		same(t, "compute.status after delete", got, want)
	})

	t.Run("database", func(t *testing.T) {
		west, east := tg("storefront", "orders", "west", 2), tg("storefront", "orders", "east", 2)
		w.SetLag(east.Resource, 123456, 1500*time.Millisecond+7)
		got, err := c.Database.Status(ctx, east)
		must(t, err)
		want, err := direct.Database.Status(ctx, east)
		must(t, err)
		same(t, "database.status", got, want)
		if got.Lag != 1500*time.Millisecond+7 || got.LagBytes != 123456 {
			t.Errorf("lag through the agent = %v / %d bytes, want 1.500000007s / 123456", got.Lag, got.LagBytes)
		}

		must(t, c.Database.Switchover(ctx, west, east))
		if r := w.Database(east.Resource).Role; r != lifeboat.DBPrimary {
			t.Errorf("after switchover to east, east is %s", r)
		}
		if r := w.Database(west.Resource).Role; r != lifeboat.DBReplica {
			t.Errorf("after switchover to east, west is %s", r)
		}
		east.Epoch, west.Epoch = 3, 3
		must(t, c.Database.Fence(ctx, east))
		must(t, c.Database.Promote(ctx, west))
		must(t, c.Database.Rejoin(ctx, east, west))
		for res, want := range map[string]lifeboat.DatabaseRole{west.Resource: lifeboat.DBPrimary, east.Resource: lifeboat.DBReplica} {
			if got := w.Database(res); got.Role != want || got.Epoch != 3 {
				t.Errorf("%s = %+v, want %s at epoch 3", res, got, want)
			}
		}
		if calls := w.Calls(); !hasCall(calls, lifeboat.ActDatabaseRejoin, east.Resource, west.Resource) {
			t.Errorf("the fake saw no rejoin of %s following %s: %+v", east.Resource, west.Resource, calls)
		}
	})

	t.Run("backup", func(t *testing.T) {
		west, east := tg("reports", "warehouse", "west", 2), tg("reports", "warehouse", "east", 2)
		got, err := c.Backup.Latest(ctx, west)
		must(t, err)
		want, err := direct.Backup.Latest(ctx, west)
		must(t, err)
		same(t, "backup.latest", got, want)

		taken, err := c.Backup.Take(ctx, west)
		must(t, err)
		bs := w.Backups("shop-reports-warehouse")
		same(t, "backup.take", taken, bs[len(bs)-1])
		if taken.Taken.Nanosecond() == 0 {
			t.Errorf("backup time %v lost its nanoseconds", taken.Taken)
		}
		got, err = c.Backup.Latest(ctx, east)
		must(t, err)
		same(t, "backup.latest after take", got, taken)

		must(t, c.Backup.Restore(ctx, east))
		if r := w.Database(east.Resource).Role; r != lifeboat.DBPrimary {
			t.Errorf("after restore, east is %s", r)
		}
	})

	t.Run("traffic", func(t *testing.T) {
		www := tg("storefront", "www", "", 2)
		names := []string{"shop.example.test", "api.example.test"}
		got, err := c.Traffic.Status(ctx, www, names)
		must(t, err)
		want, err := direct.Traffic.Status(ctx, www, names)
		must(t, err)
		same(t, "traffic.status", got, want)

		www.Region = "east"
		must(t, c.Traffic.Switch(ctx, www, names))
		got, err = c.Traffic.Status(ctx, www, names)
		must(t, err)
		want, err = direct.Traffic.Status(ctx, www, names)
		must(t, err)
		same(t, "traffic.status after switch", got, want)
		if got.Region != "east" || len(got.Answers) != 2 || got.Since.IsZero() {
			t.Errorf("route after switch = %+v, want east answering both names", got)
		}
	})
}

func hasCall(calls []fake.Call, action, resource, from string) bool {
	for _, c := range calls {
		if c.Action == action && c.Resource == resource && c.From == from && c.Err == "" {
			return true
		}
	}
	return false
}

// TestProcedures runs the planner's failover, failback and two switchovers
// through HTTP, then checks that stale epochs are refused.
func TestProcedures(t *testing.T) {
	w := fake.New()
	w.Seed(spec(), nil)
	url, _ := serve(t, w.Drivers())
	drivertest.Procedures(t, spec(), agent.NewClient(url, nil))
}

func TestDriverErrorsKeepTheirMeaning(t *testing.T) {
	ctx := ctxT(t)
	w := world(t)
	url, _ := serve(t, w.Drivers())
	c := agent.NewClient(url, nil)
	east := tg("storefront", "orders", "east", 2)

	w.FailNext(lifeboat.ActDatabasePromote, 1, true)
	err := c.Database.Promote(ctx, east)
	if err == nil || !lifeboat.IsRetryable(err) || errors.Is(err, lifeboat.ErrStaleEpoch) {
		t.Errorf("injected retryable failure through the agent: %v (retryable %v), want retryable", err, lifeboat.IsRetryable(err))
	}
	mentions(t, err, "agent at "+url, "injected failure", east.Resource)

	w.FailNext(lifeboat.ActDatabasePromote, 1, false)
	err = c.Database.Promote(ctx, east)
	if err == nil || lifeboat.IsRetryable(err) {
		t.Errorf("injected permanent failure through the agent: %v, want permanent", err)
	}
	mentions(t, err, "agent at "+url, "injected failure")

	must(t, c.Database.Promote(ctx, east)) // epoch 2 acted
	east.Epoch = 1
	err = c.Database.Promote(ctx, east)
	if !errors.Is(err, lifeboat.ErrStaleEpoch) || lifeboat.IsRetryable(err) {
		t.Errorf("promote for epoch 1 after epoch 2: %v, want a permanent stale epoch", err)
	}
	mentions(t, err, "agent at "+url, "epoch 1", "epoch 2")
}

func TestStoppedAgentIsRetryable(t *testing.T) {
	ctx := ctxT(t)
	url, stop := serve(t, fake.New().Drivers())
	stop()
	err := agent.NewClient(url, nil).Database.Fence(ctx, tg("storefront", "orders", "west", 2))
	if err == nil || !lifeboat.IsRetryable(err) {
		t.Fatalf("fence through a stopped agent: %v, want a retryable error", err)
	}
	mentions(t, err, "does not answer", url, "shop-storefront-orders-west")

	err = agent.Ping(ctx, url)
	if err == nil || !lifeboat.IsRetryable(err) {
		t.Errorf("ping of a stopped agent: %v, want retryable", err)
	}
	mentions(t, err, "does not answer", url)
}

func TestUnservedKindIsPermanent(t *testing.T) {
	ctx := ctxT(t)
	w := world(t)
	url, _ := serve(t, lifeboat.Drivers{Compute: w.Drivers().Compute})
	c := agent.NewClient(url, nil)
	err := c.Database.Promote(ctx, tg("storefront", "orders", "east", 2))
	if err == nil || lifeboat.IsRetryable(err) {
		t.Fatalf("promote through an agent without a database driver: %v, want permanent", err)
	}
	mentions(t, err, url, "serves no database driver", "compute")
	// The kind it serves still works.
	if _, err := c.Compute.Status(ctx, tg("storefront", "web", "west", 1)); err != nil {
		t.Errorf("compute.status on the same agent: %v", err)
	}

	resp, err := http.Post(url+"/v1/traffic/switch", "application/json", strings.NewReader("{}"))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("POST /v1/traffic/switch on an agent without traffic: HTTP %d, want 501", resp.StatusCode)
	}
}

// TestCancelAbortsSlowCall cancels a call while the agent's driver is
// waiting, and checks that both sides give up.
func TestCancelAbortsSlowCall(t *testing.T) {
	w := world(t)
	w.Delay(lifeboat.ActDatabaseStatus, time.Hour)
	url, _ := serve(t, w.Drivers())
	c := agent.NewClient(url, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	canceled := make(chan struct{})
	go func() {
		defer close(canceled)
		// Cancel once the agent's driver has the call (the fake records it
		// before waiting out its delay).
		waitFor(t, "the agent to pass the call to the fake", func() bool { return len(callsOf(w, lifeboat.ActDatabaseStatus)) > 0 })
		cancel()
	}()
	_, err := c.Database.Status(ctx, tg("storefront", "orders", "east", 2))
	<-canceled
	if !errors.Is(err, context.Canceled) || !lifeboat.IsRetryable(err) {
		t.Fatalf("cancelled status: %v, want a retryable error wrapping context.Canceled", err)
	}
	mentions(t, err, url)
	// The agent's driver saw its request's context end too.
	waitFor(t, "the fake's call to fail", func() bool {
		cs := callsOf(w, lifeboat.ActDatabaseStatus)
		return len(cs) > 0 && cs[0].Err != ""
	})
}

// TestDeadlineReachesTheAgent sends what is left of a deadline and checks
// the driver on the agent's side is held to it.
func TestDeadlineReachesTheAgent(t *testing.T) {
	w := world(t)
	w.Delay(lifeboat.ActDatabaseStatus, time.Hour)
	url, _ := serve(t, w.Drivers())
	req, err := http.NewRequest(http.MethodPost, url+"/v1/database/status", strings.NewReader(`{"target":{"resource":"shop-storefront-orders-east","region":"east"}}`))
	must(t, err)
	req.Header.Set("Lifeboat-Timeout", "1ms")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status held to a 1ms budget against a 1h delay: HTTP %d, want 503 (retryable failure)", resp.StatusCode)
	}
}

func TestHealthAndPing(t *testing.T) {
	ctx := ctxT(t)
	w := world(t)
	url, _ := serve(t, lifeboat.Drivers{Database: w.Drivers().Database, Traffic: w.Drivers().Traffic})
	must(t, agent.Ping(ctx, url))
	resp, err := http.Get(url + "/v1/health")
	must(t, err)
	defer resp.Body.Close()
	var h struct {
		Status string   `json:"status"`
		Serves []string `json:"serves"`
	}
	must(t, json.NewDecoder(resp.Body).Decode(&h))
	if resp.StatusCode != 200 || h.Status != "ok" || !reflect.DeepEqual(h.Serves, []string{"database", "traffic"}) {
		t.Errorf("health = HTTP %d %+v, want 200 ok serving database, traffic", resp.StatusCode, h)
	}

	// Something else on the port is not an agent, and retrying won't help.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	other := &http.Server{Handler: http.NotFoundHandler()}
	go func() { _ = other.Serve(ln) }()
	t.Cleanup(func() { _ = other.Close() })
	err = agent.Ping(ctx, "http://"+ln.Addr().String())
	if err == nil || lifeboat.IsRetryable(err) {
		t.Errorf("ping of a server that is not an agent: %v, want permanent", err)
	}
	mentions(t, err, "not as a lifeboat agent")
}

func callsOf(w *fake.World, action string) []fake.Call {
	var out []fake.Call
	for _, c := range w.Calls() {
		if c.Action == action {
			out = append(out, c)
		}
	}
	return out
}

// waitFor polls cond with a generous bound; it reports, never asserts on
// time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("gave up waiting for %s", what)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mentions(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("no error; want one mentioning %q", want)
		return
	}
	t.Logf("error: %v", err)
	for _, s := range want {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q should mention %q", err, s)
		}
	}
}
