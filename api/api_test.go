package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/api"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/store"
)

const specYAML = `service: shop
regions:
  primary:   {name: west}
  secondary: {name: east}
objectives: {rto: 5m, rpo: 30s}
units:
  storefront:
    purpose: prod
    compute:
      web:
        recipe: {artifact: ./bin/shop, command: [./shop]}
        standby: warm
        instances: {primary: 2, secondary: 2}
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

// lab is an API server on an in-memory store with the fake drivers, and
// one token per role.
type lab struct {
	t      *testing.T
	url    string
	srv    *api.Server
	spec   *lifeboat.Spec
	store  lifeboat.Store
	tokens map[lifeboat.Role]string
}

func newLab(t *testing.T, hooks string) *lab {
	t.Helper()
	if hooks == "" {
		hooks = "  []\n"
	}
	body := strings.Replace(specYAML, "%s\n", hooks, 1)
	return serveSpec(t, body, []lifeboat.Role{lifeboat.RoleViewer, lifeboat.RoleOperator, lifeboat.RoleAdmin}, func(dir string, cfg *api.Config) {
		cfg.DrillsDir = filepath.Join(dir, "drills")
		if err := os.MkdirAll(cfg.DrillsDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfg.DrillsDir, "drill-1.json"), []byte(`{"ok":true}`), 0o644); err != nil {
			t.Fatal(err)
		}
	})
}

// serveSpec serves the API of the spec body (in a temporary directory, on
// an in-memory store), with a token "<role>-alice" for each role;
// configure, if set, adjusts the server's config first.
func serveSpec(t *testing.T, body string, roles []lifeboat.Role, configure func(dir string, cfg *api.Config)) *lab {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lifeboat.yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, tokens: map[lifeboat.Role]string{}}
	var lines []string
	for _, r := range roles {
		tok, line, err := api.NewToken(string(r)+"-alice", r)
		if err != nil {
			t.Fatal(err)
		}
		l.tokens[r] = tok
		lines = append(lines, line)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte("# test callers\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec, diags, err := config.Load(filepath.Join(dir, "lifeboat.yaml"))
	if err != nil || diags.HasErrors() {
		t.Fatalf("spec: %v %v", err, diags)
	}
	l.spec = spec
	l.store = store.NewMemory()
	if _, err := l.store.Init(context.Background(), lifeboat.InitialState(spec, time.Now().UTC())); err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultConfig()
	cfg.Spec, cfg.Store = spec, l.store
	if configure != nil {
		configure(dir, &cfg)
	}
	l.srv, err = api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(l.srv)
	l.url = hs.URL
	t.Cleanup(func() { hs.Close(); l.srv.Close() })
	return l
}

// do calls the API as role ("" sends no token) and decodes the answer.
func (l *lab) do(role lifeboat.Role, method, path, body string, out any) *http.Response {
	l.t.Helper()
	req, err := http.NewRequest(method, l.url+path, strings.NewReader(body))
	if err != nil {
		l.t.Fatal(err)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+l.tokens[role])
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

func (l *lab) want(resp *http.Response, code int, what string) {
	l.t.Helper()
	if resp.StatusCode != code {
		l.t.Fatalf("%s: status %d, want %d", what, resp.StatusCode, code)
	}
}

// await polls the run until it stops (or the generous deadline passes).
func (l *lab) await(id string, want ...lifeboat.RunStatus) api.RunDetail {
	l.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var d api.RunDetail
		l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/runs/"+id, "", &d), 200, "GET run")
		for _, w := range want {
			if d.Run.Status == w && (w != lifeboat.RunWaiting || len(d.View.Waiting) > 0) {
				return d
			}
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("run %s is %s; want %v", id, d.Run.Status, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *lab) auditOf(run string) []store.AuditRecord {
	var recs []store.AuditRecord
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/audit", "", &recs), 200, "GET audit")
	var out []store.AuditRecord
	for _, r := range recs {
		if r.Run == run {
			out = append(out, r)
		}
	}
	return out
}

func TestNoTokenIs401(t *testing.T) {
	l := newLab(t, "")
	var e api.Error
	resp := l.do("", "GET", "/v1/status", "", &e)
	l.want(resp, 401, "no token")
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") || e.Error == "" || e.Hint == "" {
		t.Fatalf("401 without WWW-Authenticate Bearer or {error, hint}: %q %+v", resp.Header.Get("WWW-Authenticate"), e)
	}
	req, _ := http.NewRequest("GET", l.url+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer not-a-token")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	l.want(resp, 401, "unknown token")
	// A refused POST is audited too.
	l.want(l.do("", "POST", "/v1/runs", `{"intent":"switchover"}`, nil), 401, "no token POST")
	var recs []store.AuditRecord
	l.do(lifeboat.RoleViewer, "GET", "/v1/audit", "", &recs)
	if len(recs) != 1 || recs[0].Who != "anonymous" || recs[0].Status != 401 {
		t.Fatalf("audit after an anonymous POST: %+v", recs)
	}
}

func TestViewerSwitchoverIs403(t *testing.T) {
	l := newLab(t, "")
	var e api.Error
	l.want(l.do(lifeboat.RoleViewer, "POST", "/v1/runs", `{"intent":"switchover"}`, &e), 403, "viewer switchover")
	if !strings.Contains(e.Error, "needs role operator") {
		t.Fatalf("403 does not say which role is needed: %+v", e)
	}
	var runs []*lifeboat.Run
	l.do(lifeboat.RoleViewer, "GET", "/v1/runs", "", &runs)
	if len(runs) != 0 {
		t.Fatalf("a refused call started %d run(s)", len(runs))
	}
	var recs []store.AuditRecord
	l.do(lifeboat.RoleViewer, "GET", "/v1/audit", "", &recs)
	if len(recs) != 1 || recs[0].Who != "viewer-alice" || recs[0].Role != lifeboat.RoleViewer || recs[0].Status != 403 || recs[0].Args["intent"] != "" {
		t.Fatalf("audit of the refused call: %+v", recs)
	}
}

func TestOperatorSwitchoverRunsAndIsAudited(t *testing.T) {
	l := newLab(t, "")
	var acc api.Accepted
	resp := l.do(lifeboat.RoleOperator, "POST", "/v1/runs", `{"intent":"switchover"}`, &acc)
	l.want(resp, 202, "operator switchover")
	if acc.Run == "" || resp.Header.Get("Location") != "/v1/runs/"+acc.Run {
		t.Fatalf("202 without run or Location: %+v, %q", acc, resp.Header.Get("Location"))
	}
	d := l.await(acc.Run, lifeboat.RunSucceeded, lifeboat.RunFailed)
	if d.Run.Status != lifeboat.RunSucceeded {
		t.Fatalf("switchover %s: %s", d.Run.Status, d.Run.Error)
	}
	if !strings.HasPrefix(d.Run.By, "operator-alice via api") {
		t.Fatalf("the run is journaled as by %q, want the caller", d.Run.By)
	}
	var v struct {
		Active string `json:"active"`
		Epoch  uint64 `json:"epoch"`
	}
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/status", "", &v), 200, "status")
	if v.Active != "east" || v.Epoch != 2 {
		t.Fatalf("after the switchover status says active %s epoch %d, want east 2", v.Active, v.Epoch)
	}
	// The call and how its run stopped, with the caller's identity.
	deadline := time.Now().Add(20 * time.Second)
	for {
		recs := l.auditOf(acc.Run)
		if len(recs) == 2 {
			if recs[0].Who != "operator-alice" || recs[0].Role != lifeboat.RoleOperator || recs[0].Action != "runs.start" ||
				recs[0].Status != 202 || recs[0].Args["intent"] != "switchover" || !strings.HasPrefix(recs[0].Result, "accepted") {
				t.Fatalf("audit of the call: %+v", recs[0])
			}
			if recs[1].Action != "run.stopped" || recs[1].Result != "succeeded" || recs[1].Who != "operator-alice" {
				t.Fatalf("audit of the run's end: %+v", recs[1])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit of run %s: %+v; want the call and the run's end", acc.Run, recs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// One run at a time: a second start while... the first has ended, so
	// a failback is planned from the new state.
	var p api.PlanPreview
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/plans/failback", "", &p), 200, "plan failback")
	if p.Plan.To != "west" || !strings.Contains(p.Text, "failback") {
		t.Fatalf("plan preview: to %s, text %q", p.Plan.To, p.Text)
	}
	var hist []api.HistoryRow
	l.do(lifeboat.RoleViewer, "GET", "/v1/history", "", &hist)
	if len(hist) != 1 || hist[0].Run != acc.Run || hist[0].Status != lifeboat.RunSucceeded {
		t.Fatalf("history: %+v", hist)
	}
}

func TestForcedFailoverIsAdminOnly(t *testing.T) {
	l := newLab(t, "")
	var e api.Error
	l.want(l.do(lifeboat.RoleOperator, "POST", "/v1/runs", `{"intent":"failover","force":true}`, &e), 403, "operator forced failover")
	if !strings.Contains(e.Error, "needs role admin") {
		t.Fatalf("403 does not say admin: %+v", e)
	}
	var acc api.Accepted
	l.want(l.do(lifeboat.RoleAdmin, "POST", "/v1/runs", `{"intent":"failover","force":true}`, &acc), 202, "admin forced failover")
	d := l.await(acc.Run, lifeboat.RunSucceeded, lifeboat.RunFailed)
	if d.Run.Status != lifeboat.RunSucceeded || d.Run.Plan.Intent != lifeboat.IntentFailover {
		t.Fatalf("forced failover: %s %s", d.Run.Status, d.Run.Error)
	}
	recs := l.auditOf(acc.Run)
	if len(recs) == 0 || recs[0].Who != "admin-alice" || recs[0].Args["force"] != "true" {
		t.Fatalf("audit of the forced failover: %+v", recs)
	}
}

func TestApproveCancelResume(t *testing.T) {
	l := newLab(t, approvalHook)
	var acc api.Accepted
	l.want(l.do(lifeboat.RoleOperator, "POST", "/v1/runs", `{"intent":"switchover"}`, &acc), 202, "switchover")
	d := l.await(acc.Run, lifeboat.RunWaiting)
	step := d.View.Waiting[0].Step
	if d.View.Waiting[0].Question != "is the team ready for the move?" {
		t.Fatalf("waiting: %+v", d.View.Waiting)
	}
	var e api.Error
	// A second run is refused while this one waits.
	l.want(l.do(lifeboat.RoleOperator, "POST", "/v1/runs", `{"intent":"switchover"}`, &e), 409, "second run")
	l.want(l.do(lifeboat.RoleViewer, "POST", "/v1/runs/"+acc.Run+"/approve", `{"step":"`+step+`"}`, &e), 403, "viewer approves")
	l.want(l.do(lifeboat.RoleOperator, "POST", "/v1/runs/"+acc.Run+"/approve", `{"step":"nope"}`, &e), 400, "approve unknown step")
	if !strings.Contains(e.Hint, step) {
		t.Fatalf("the hint does not list the approval steps: %+v", e)
	}
	// Resume without approving: it waits again.
	l.want(l.do(lifeboat.RoleOperator, "POST", "/v1/runs/"+acc.Run+"/resume", `{}`, nil), 202, "resume")
	l.await(acc.Run, lifeboat.RunWaiting)
	l.want(l.do(lifeboat.RoleOperator, "POST", "/v1/runs/"+acc.Run+"/approve", `{"step":"`+step+`"}`, nil), 202, "approve")
	d = l.await(acc.Run, lifeboat.RunSucceeded, lifeboat.RunFailed)
	if d.Run.Status != lifeboat.RunSucceeded {
		t.Fatalf("after approval: %s %s", d.Run.Status, d.Run.Error)
	}
	approvedBy := ""
	for _, r := range d.Journal {
		if r.Kind == lifeboat.RecApproved {
			approvedBy = r.By
		}
	}
	if !strings.HasPrefix(approvedBy, "operator-alice") {
		t.Fatalf("the approval is journaled by %q, want the caller", approvedBy)
	}
	l.want(l.do(lifeboat.RoleOperator, "POST", "/v1/runs/"+acc.Run+"/cancel", ``, &e), 409, "cancel a finished run")

	// Cancel a waiting switchover back (east → west).
	l.want(l.do(lifeboat.RoleOperator, "POST", "/v1/runs", `{"intent":"switchover"}`, &acc), 202, "switchover back")
	l.await(acc.Run, lifeboat.RunWaiting)
	l.want(l.do(lifeboat.RoleOperator, "POST", "/v1/runs/"+acc.Run+"/cancel", ``, nil), 202, "cancel")
	d = l.await(acc.Run, lifeboat.RunCancelled)
	// The start and the cancel calls, each followed (later) by how the run
	// stopped: waiting, then cancelled.
	recs := l.auditOf(acc.Run)
	for deadline := time.Now().Add(20 * time.Second); len(recs) < 4 && time.Now().Before(deadline); recs = l.auditOf(acc.Run) {
		time.Sleep(10 * time.Millisecond)
	}
	cancelAt, cancelledAt := -1, -1
	for i, r := range recs {
		if r.Who != "operator-alice" {
			t.Errorf("audit record by %q, want operator-alice: %+v", r.Who, r)
		}
		switch {
		case r.Action == "runs.cancel" && r.Status == 202:
			cancelAt = i
		case r.Action == "run.stopped" && r.Result == "cancelled":
			cancelledAt = i
		}
	}
	if len(recs) != 4 || recs[0].Action != "runs.start" || cancelAt < 0 || cancelledAt < cancelAt {
		t.Fatalf("audit of the cancelled run: %+v", recs)
	}
}

func TestReadsAndErrors(t *testing.T) {
	l := newLab(t, "")
	var rd api.ReadinessView
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/readiness", "", &rd), 200, "readiness")
	if len(rd.Checks) == 0 {
		t.Fatal("readiness has no checks")
	}
	var units []map[string]any
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/units", "", &units), 200, "units")
	if len(units) == 0 || units[0]["quadrant"] == nil {
		t.Fatalf("units: %v", units)
	}
	var e api.Error
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/tenants", "", &e), 404, "tenants without a tenants section")
	if e.Error == "" || e.Hint == "" {
		t.Fatalf("404 without a clear message: %+v", e)
	}
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/runs/r-nope", "", &e), 404, "no such run")
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/plans/drill", "", &e), 400, "plan drill")
	l.want(l.do(lifeboat.RoleOperator, "POST", "/v1/runs", `{"intent":"switchover","bogus":1}`, &e), 400, "unknown field")
	var drills []api.DrillReport
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/drills", "", &drills), 200, "drills")
	if len(drills) != 1 || drills[0].Name != "drill-1.json" {
		t.Fatalf("drills: %+v", drills)
	}
	var rep map[string]bool
	l.want(l.do(lifeboat.RoleViewer, "GET", drills[0].URL, "", &rep), 200, "drill report")
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/drills/..%2Ftokens", "", nil), 404, "drill path escape")
	var who api.Identity
	l.want(l.do(lifeboat.RoleAdmin, "GET", "/v1/whoami", "", &who), 200, "whoami")
	if who.Name != "admin-alice" || who.Role != lifeboat.RoleAdmin {
		t.Fatalf("whoami: %+v", who)
	}
}

func TestOpenAPIListsEveryRoute(t *testing.T) {
	l := newLab(t, "")
	resp, err := http.Get(l.url + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	l.want(resp, 200, "openapi")
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	want := api.Routes()
	if len(want) < 15 {
		t.Fatalf("only %d routes", len(want))
	}
	for _, r := range want {
		item := doc.Paths.Value(r[1])
		if item == nil || item.GetOperation(r[0]) == nil {
			t.Errorf("the document lacks %s %s", r[0], r[1])
		}
	}
	for _, path := range []string{"/v1/status", "/v1/runs", "/v1/runs/{run}/approve", "/v1/audit", "/v1/plans/{intent}"} {
		if doc.Paths.Value(path) == nil {
			t.Errorf("the document lacks %s", path)
		}
	}
}

func TestParseTokens(t *testing.T) {
	_, line, err := api.NewToken("alice", lifeboat.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	good := "# callers\n\n" + line + "\nci viewer cert\n"
	ts, err := api.ParseTokens("tokens", strings.NewReader(good))
	if err != nil || len(ts) != 2 || ts[0].Name != "alice" || ts[0].Role != lifeboat.RoleOperator || !ts[1].Cert {
		t.Fatalf("good file: %+v %v", ts, err)
	}
	bad := strings.Join([]string{
		"# bad lines",
		"alice operator", // 2: two fields
		"bob root sha256:" + strings.Repeat("a", 64), // 3: no such role
		"carol admin s3cr3t-token",                   // 4: the token itself
		"dave viewer sha256:xyz",                     // 5: not hex
		line,                                         // 6: fine
		line,                                         // 7: alice again
	}, "\n")
	_, err = api.ParseTokens("/etc/lifeboat/tokens", strings.NewReader(bad))
	if err == nil {
		t.Fatal("a broken tokens file parsed")
	}
	msg := err.Error()
	for _, want := range []string{
		"/etc/lifeboat/tokens:2: want 3 fields",
		"/etc/lifeboat/tokens:3: role \"root\" is not a role",
		"/etc/lifeboat/tokens:4: third field",
		"/etc/lifeboat/tokens:5: \"xyz\" is not 64 hex digits",
		"/etc/lifeboat/tokens:7: name \"alice\" is already used at /etc/lifeboat/tokens:6",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "s3cr3t-token") {
		t.Errorf("the error repeats a secret in full:\n%s", msg)
	}
	if _, err := api.LoadTokens(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "lifeboat api token") {
		t.Errorf("a missing file: %v", err)
	}
}

func TestListenRefusesNonLoopbackWithoutTLS(t *testing.T) {
	l := newLab(t, "")
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:7480"} {
		if ln, err := l.srv.Listen(addr); err == nil {
			ln.Close()
			t.Errorf("Listen(%s) without TLS succeeded", addr)
		} else if !strings.Contains(err.Error(), "api.tls") {
			t.Errorf("Listen(%s): %v; want a hint about api.tls", addr, err)
		}
	}
	ln, err := l.srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}
