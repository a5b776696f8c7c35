package agent_test

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/agent"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
	"github.com/lifeboat-dr/lifeboat/monitor"
)

// The client offers every readiness question, whatever the agent hosts.
func TestClientAnswersEveryReadinessQuestion(t *testing.T) {
	d := agent.NewClient("http://127.0.0.1:1", nil)
	if _, ok := d.Compute.(monitor.RecipeReporter); !ok {
		t.Error("the client's compute driver is no monitor.RecipeReporter")
	}
	if _, ok := d.Compute.(monitor.CapacityReporter); !ok {
		t.Error("the client's compute driver is no monitor.CapacityReporter")
	}
	if _, ok := d.Database.(monitor.StreamReporter); !ok {
		t.Error("the client's database driver is no monitor.StreamReporter")
	}
}

func TestActionNamesMatchTheFake(t *testing.T) {
	for _, p := range [][2]string{
		{agent.ActComputeRecipe, fake.ActComputeRecipe},
		{agent.ActComputeCapacity, fake.ActComputeCapacity},
		{agent.ActDatabaseStream, fake.ActDatabaseStream},
	} {
		if p[0] != p[1] {
			t.Errorf("agent names %q, the fake %q", p[0], p[1])
		}
	}
}

func TestReadinessQuestionsRoundTrip(t *testing.T) {
	ctx := ctxT(t)
	w := world(t)
	direct := w.Drivers()
	url, _ := serve(t, direct)
	c := agent.NewClient(url, nil)
	rr, cr, sr := c.Compute.(monitor.RecipeReporter), c.Compute.(monitor.CapacityReporter), c.Database.(monitor.StreamReporter)

	east := tg("storefront", "orders", "east", 0)
	st, up, err := sr.StreamState(ctx, east)
	must(t, err)
	if st != "streaming" || up != tg("storefront", "orders", "west", 0).Resource {
		t.Errorf("stream of east: %q from %q", st, up)
	}
	w.StopStreaming(east.Resource)
	if st, _, err := sr.StreamState(ctx, east); err != nil || st != "stopped" {
		t.Errorf("after StopStreaming: %q %v", st, err)
	}
	if len(callsOf(w, agent.ActDatabaseStream)) != 2 {
		t.Errorf("the agent's driver got %d database.stream calls, want 2", len(callsOf(w, agent.ActDatabaseStream)))
	}

	web := tg("storefront", "web", "east", 0)
	recipe := spec().Units["storefront"].Compute["web"]
	ok, why, err := rr.RecipeReady(ctx, web, recipe)
	must(t, err)
	wok, wwhy, _ := direct.Compute.(monitor.RecipeReporter).RecipeReady(ctx, web, recipe)
	if ok != wok || why != wwhy || !ok {
		t.Errorf("recipe through the agent: %v %q; direct: %v %q", ok, why, wok, wwhy)
	}
	w.NoRoom("east", "port 20001 is in use")
	if ok, why, err := cr.CanStandUp(ctx, web, recipe, 3); err != nil || ok || why != "port 20001 is in use" {
		t.Errorf("no room in east: %v %q %v", ok, why, err)
	}
	w.NoRoom("east", "")
	if ok, why, err := cr.CanStandUp(ctx, web, recipe, 3); err != nil || !ok || !strings.Contains(why, "3 instances") {
		t.Errorf("room in east for 3: %v %q %v (the count must cross the wire)", ok, why, err)
	}

	// A driver's failure keeps its meaning, and is not "unsupported".
	w.Cut("east")
	_, _, err = sr.StreamState(ctx, east)
	if err == nil || !lifeboat.IsRetryable(err) || errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("east cut: %v; want a retryable error, not unsupported", err)
	}
	w.Heal("east")
}

func TestReadinessQuestionsUnsupported(t *testing.T) {
	ctx := ctxT(t)
	w := world(t)
	recipe := spec().Units["storefront"].Compute["web"]
	web, orders := tg("storefront", "web", "east", 0), tg("storefront", "orders", "east", 0)

	// The hosted drivers answer only the plain driver interfaces.
	url, _ := serve(t, w.PlainDrivers())
	c := agent.NewClient(url, nil)
	_, _, err := c.Database.(monitor.StreamReporter).StreamState(ctx, orders)
	unsupported(t, err, "does not implement monitor.StreamReporter", orders.Resource)
	_, _, err = c.Compute.(monitor.RecipeReporter).RecipeReady(ctx, web, recipe)
	unsupported(t, err, "does not implement monitor.RecipeReporter", web.Resource)
	_, _, err = c.Compute.(monitor.CapacityReporter).CanStandUp(ctx, web, recipe, 2)
	unsupported(t, err, "does not implement monitor.CapacityReporter", web.Resource)

	// The agent hosts no database driver at all.
	url, _ = serve(t, lifeboat.Drivers{Compute: w.Drivers().Compute})
	c = agent.NewClient(url, nil)
	_, _, err = c.Database.(monitor.StreamReporter).StreamState(ctx, orders)
	unsupported(t, err, "serves no database driver")

	// An agent older than the question answers 404 "no endpoint".
	old := http.NewServeMux()
	old.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusNotFound)
		rw.Write([]byte(`{"error":{"message":"this agent has no endpoint ` + r.URL.Path + `; calls are POST /v1/<kind>/<call>"}}` + "\n"))
	})
	srv := &http.Server{Handler: old, ReadHeaderTimeout: 10 * time.Second}
	url = serveHandler(t, srv)
	c = agent.NewClient(url, nil)
	_, _, err = c.Database.(monitor.StreamReporter).StreamState(ctx, orders)
	unsupported(t, err, "upgrade the agent", "/v1/database/stream")
	// A plain call to the same old agent is not "unsupported": its 404 is
	// a wrong address or a version mismatch to fix.
	_, err = c.Database.Status(ctx, orders)
	if err == nil || errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("database.status on a 404 agent: %v; want an error that is not unsupported", err)
	}
}

func unsupported(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil || !errors.Is(err, errors.ErrUnsupported) || lifeboat.IsRetryable(err) {
		t.Fatalf("got %v; want a permanent error that is errors.ErrUnsupported", err)
	}
	mentions(t, err, want...)
}

// TestGatherThroughTheAgent: the monitor's readiness reads the hosted
// driver's answers through the client, and reports a hosted driver that
// does not answer as unknown, never OK.
func TestGatherThroughTheAgent(t *testing.T) {
	ctx := ctxT(t)
	s := spec()
	for _, tc := range []struct {
		name  string
		hosts func(w *fake.World) lifeboat.Drivers
		known bool
	}{
		{"hosted driver answers", (*fake.World).Drivers, true},
		{"hosted driver does not", (*fake.World).PlainDrivers, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := world(t)
			url, _ := serve(t, tc.hosts(w))
			f := monitor.Gather(ctx, s, agent.NewClient(url, nil), nil, nil)
			db := f.Databases["storefront.orders"]
			cf := f.Compute["storefront.web"]
			answers := map[string]monitor.Answer{"stream": db.Stream, "recipe": cf.Recipe[f.Standby], "capacity": cf.Capacity}
			for what, a := range answers {
				if tc.known && (!a.Known || !a.OK || a.Err != "") {
					t.Errorf("%s: %+v, want known and ok", what, a)
				}
				// Unsupported behind the agent reads as the driver not
				// saying: unknown, with no error to report.
				if !tc.known && (a.Known || a.OK || a.Err != "") {
					t.Errorf("%s: %+v, want unknown without an error", what, a)
				}
			}
			for _, c := range monitor.Evaluate(s, nil, f, time.Now()) {
				switch c.Name {
				case monitor.CheckStandbyStreaming, monitor.CheckRecipe, monitor.CheckCapacity:
				default:
					continue
				}
				if tc.known && !c.OK {
					t.Errorf("%s %s: %s", c.Name, c.Component, c.Reason)
				}
				t.Logf("%s %s: %s", c.Name, c.Component, c.Reason)
				if !tc.known && (c.OK || !strings.HasPrefix(c.Reason, "unknown: ") || !strings.Contains(c.Reason, "does not implement")) {
					t.Errorf("%s %s: ok=%v %q, want unknown", c.Name, c.Component, c.OK, c.Reason)
				}
			}
		})
	}
}

// serveHandler runs srv on a loopback listener until the test ends.
func serveHandler(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return "http://" + ln.Addr().String()
}
