package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/api"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/dashboard"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
	"github.com/lifeboat-dr/lifeboat/store"
)

const specYAML = `service: shop
regions:
  primary:   {name: west}
  secondary: {name: east}
objectives: {rto: 5m, rpo: 5s}
units:
  storefront:
    purpose: prod
    compute:
      web:
        recipe: {artifact: ./bin/shop, command: [./shop]}
        standby: warm
        instances: {primary: 2, secondary: 2}
      worker:
        recipe: {artifact: ./bin/worker, command: [./worker]}
        standby: cold
        instances: {primary: 1, secondary: 1}
    databases:
      orders:
        engine: postgres
        dr-mode: geo-replica
        replication: async
        lag: 2s
    traffic:
      www:
        names: [shop.example.test]
        ttl: 30s
        target: web
hooks:
%s
drivers:
  default: fake
api:
  tokens: tokens
`

const approvalHook = `  - name: sre-agrees
    before: traffic.switch
    on: [switchover]
    approval: "is the team ready for the move?"
`

// lab is the API and the dashboard on one loopback server, on an
// in-memory store with one fake world shared by every run (so that the
// steps can be slowed down and the standby's lag set).
type lab struct {
	t      *testing.T
	url    string
	spec   *lifeboat.Spec
	store  lifeboat.Store
	world  *fake.World
	tokens map[lifeboat.Role]string
}

func newLab(t *testing.T, hooks string, step time.Duration) *lab {
	t.Helper()
	dir := t.TempDir()
	if hooks == "" {
		hooks = "  []\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "lifeboat.yaml"), []byte(strings.Replace(specYAML, "%s\n", hooks, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, tokens: map[lifeboat.Role]string{}}
	var lines []string
	for _, r := range []lifeboat.Role{lifeboat.RoleViewer, lifeboat.RoleOperator, lifeboat.RoleAdmin} {
		tok, line, err := api.NewToken(string(r)+"-alice", r)
		if err != nil {
			t.Fatal(err)
		}
		l.tokens[r] = tok
		lines = append(lines, line)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec, diags, err := config.Load(filepath.Join(dir, "lifeboat.yaml"))
	if err != nil || diags.HasErrors() {
		t.Fatalf("spec: %v %v", err, diags)
	}
	l.spec = spec
	l.store = store.NewMemory()
	st, err := l.store.Init(context.Background(), lifeboat.InitialState(spec, time.Now().UTC()))
	if err != nil {
		t.Fatal(err)
	}
	l.world = fake.New()
	l.world.Seed(spec, st)
	l.slow(step)
	drivers := func(*lifeboat.Spec, *lifeboat.State) (lifeboat.Drivers, error) { return l.world.Drivers(), nil }
	drills := filepath.Join(dir, "drills")
	if err := os.MkdirAll(drills, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(drills, "drill-2025-06-01.json"), []byte(`{"rto":"41s","ok":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ac := api.DefaultConfig()
	ac.Spec, ac.Store, ac.Drivers, ac.DrillsDir = spec, l.store, drivers, drills
	dc := dashboard.DefaultConfig()
	dc.Spec, dc.Store, dc.Drivers = spec, l.store, drivers
	dc.Refresh, dc.MinRefresh = 300*time.Millisecond, 100*time.Millisecond
	dc.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	ac.Log = dc.Log
	srv, err := api.New(ac)
	if err != nil {
		t.Fatal(err)
	}
	dc.API = srv
	dash, err := dashboard.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	// As serveAPI mounts it.
	mux := http.NewServeMux()
	mux.Handle("/v1/", srv)
	mux.Handle(dashboard.Prefix, dash)
	mux.Handle("GET /{$}", http.RedirectHandler(dashboard.Prefix, http.StatusSeeOther))
	hs := httptest.NewUnstartedServer(mux)
	hs.Config.RegisterOnShutdown(dash.Close)
	hs.Start() // 127.0.0.1:0
	l.url = hs.URL
	t.Cleanup(func() { dash.Close(); hs.Close(); srv.Close() })
	return l
}

// slow makes every step that changes something take d.
func (l *lab) slow(d time.Duration) {
	for _, a := range []string{lifeboat.ActComputeProvision, lifeboat.ActComputeScale, lifeboat.ActDatabaseFence, lifeboat.ActDatabasePromote,
		lifeboat.ActDatabaseSwitchover, lifeboat.ActTrafficSwitch, lifeboat.ActComputeDelete, lifeboat.ActDatabaseRejoin} {
		l.world.Delay(a, d)
	}
}

// do calls url+path as role ("" sends no token) and decodes into out.
func (l *lab) do(role lifeboat.Role, method, path, body string, out any) *http.Response {
	l.t.Helper()
	req, err := http.NewRequest(method, l.url+path, strings.NewReader(body))
	if err != nil {
		l.t.Fatal(err)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+l.tokens[role])
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			l.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp
}

// start starts a run through the API as an operator.
func (l *lab) start(intent lifeboat.Intent) string {
	l.t.Helper()
	var acc api.Accepted
	if resp := l.do(lifeboat.RoleOperator, "POST", "/v1/runs", `{"intent":"`+string(intent)+`"}`, &acc); resp.StatusCode != http.StatusAccepted {
		l.t.Fatalf("start %s: %d %+v", intent, resp.StatusCode, acc)
	}
	return acc.Run
}

// await waits (bounded) until the run has one of the statuses.
func (l *lab) await(run string, want ...lifeboat.RunStatus) *lifeboat.Run {
	l.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := l.store.Run(context.Background(), run)
		if err == nil {
			for _, w := range want {
				if r.Status == w {
					return r
				}
			}
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("run %s did not reach %v in 20s (now %+v, %v)", run, want, r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stream reads snapshots from /ui/events as role until keep returns false
// or the deadline passes.
func (l *lab) stream(role lifeboat.Role, keep func(s dashboard.Snapshot) bool) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", l.url+"/ui/events", nil)
	req.Header.Set("Authorization", "Bearer "+l.tokens[role])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		l.t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		var s dashboard.Snapshot
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &s); err != nil {
			l.t.Fatalf("snapshot does not parse: %v", err)
		}
		if !keep(s) {
			return
		}
	}
	l.t.Fatalf("the event stream ended before the condition held: %v", sc.Err())
}
