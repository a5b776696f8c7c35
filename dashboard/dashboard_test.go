package dashboard_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/dashboard"
	"github.com/lifeboat-dr/lifeboat/planner"
	"github.com/lifeboat-dr/lifeboat/store"
)

func TestPageAndAssetsNeedNoNetwork(t *testing.T) {
	l := newLab(t, "", 0)
	for path, want := range map[string]string{"/ui/": "text/html", "/ui/app.js": "javascript", "/ui/style.css": "text/css"} {
		resp, err := http.Get(l.url + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), want) {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		// Everything is embedded: nothing is loaded from another host.
		// (The SVG namespace is a name, not a load.)
		body := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
			t.Errorf("%s refers to another host", path)
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: no CSP", path)
		}
	}
	// The root redirects to the dashboard.
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(l.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("/: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestEventsNeedCredentials(t *testing.T) {
	l := newLab(t, "", 0)
	resp := l.do("", "GET", "/ui/events", "", nil)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", l.url+"/ui/events", nil)
	req.Header.Set("Authorization", "Bearer not-a-token")
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", r2.StatusCode)
	}
	resp = l.do("", "GET", "/ui/api/v1/status", "", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forwarded status without a token: %d", resp.StatusCode)
	}
}

// TestEventsFollowASwitchover: the stream pushes the moving run and then
// the new active region, without a browser.
func TestEventsFollowASwitchover(t *testing.T) {
	l := newLab(t, "", 50*time.Millisecond)
	l.world.SetLag(lifeboat.ResourceName("shop", "storefront", "orders", "east"), 4096, 1500*time.Millisecond)
	first := true
	var run string
	sawRunning, sawLag := false, false
	l.stream(lifeboat.RoleViewer, func(s dashboard.Snapshot) bool {
		if first {
			first = false
			if s.Active != "west" || s.Epoch != 1 || len(s.Regions) != 2 || len(s.Components) == 0 {
				t.Fatalf("first snapshot: active %q epoch %d regions %d components %d", s.Active, s.Epoch, len(s.Regions), len(s.Components))
			}
			quads := map[string]bool{}
			for _, c := range s.Components {
				quads[c.Quadrant] = true
			}
			for _, q := range []string{"primary/permanent", "secondary/permanent", "global"} {
				if !quads[q] {
					t.Errorf("no component in quadrant %s: %v", q, quads)
				}
			}
			run = l.start(lifeboat.IntentSwitchover)
			return true
		}
		for _, p := range s.Lag {
			if p.Database == "storefront.orders" && p.Bounded && p.Seconds == 1.5 && p.Bytes == 4096 {
				sawLag = true
			}
		}
		if s.Run != nil && s.Run.ID == run && s.Run.InProgress {
			for _, st := range s.Run.Steps {
				if st.Status == "running" || st.Status == "done" {
					sawRunning = true
				}
			}
		}
		return !(s.Active == "east" && s.Run != nil && s.Run.Status == "succeeded" && len(s.Readiness) > 0 && sawLag)
	})
	if !sawRunning {
		t.Error("no snapshot showed the run's steps moving")
	}
}

// session is a browser-like client with a cookie jar.
func session(t *testing.T, l *lab, role lifeboat.Role) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(l.url+"/ui/login", url.Values{"token": {l.tokens[role]}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("login as %s: %d %s", role, resp.StatusCode, b)
	}
	var ck *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == "lifeboat_session" {
			ck = k
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" {
		t.Fatalf("session cookie: %+v", ck)
	}
	if strings.Contains(ck.Value, l.tokens[role]) {
		t.Fatal("the cookie carries the token")
	}
	var sv struct {
		Name, Role, CSRF string
	}
	r2, err := c.Get(l.url + "/ui/session")
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	if err := jsonDecode(r2.Body, &sv); err != nil || sv.Role != string(role) || sv.CSRF == "" {
		t.Fatalf("session: %v %+v", err, sv)
	}
	return c, sv.CSRF
}

func TestLoginSessionAndForwarding(t *testing.T) {
	l := newLab(t, approvalHook, 0)
	// A wrong token gets the API's 401 and no cookie.
	resp, err := http.PostForm(l.url+"/ui/login", url.Values{"token": {"nope"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("bad login: %d %v", resp.StatusCode, resp.Cookies())
	}
	// Another site cannot log a browser in.
	req, _ := http.NewRequest("POST", l.url+"/ui/login", strings.NewReader("token="+l.tokens[lifeboat.RoleViewer]))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site login: %d", resp.StatusCode)
	}

	viewer, vcsrf := session(t, l, lifeboat.RoleViewer)
	if resp, err = viewer.Get(l.url + "/ui/api/v1/status"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("viewer's status through the dashboard: %d", resp.StatusCode)
	}
	// A viewer's switchover is refused by the API, and audited as the viewer.
	req, _ = http.NewRequest("POST", l.url+"/ui/api/v1/runs", strings.NewReader(`{"intent":"switchover"}`))
	req.Header.Set("X-Lifeboat-CSRF", vcsrf)
	if resp, err = viewer.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("viewer's switchover through the dashboard: %d", resp.StatusCode)
	}
	audit, _ := store.Audit(l.store)
	recs, err := audit.Audit(context.Background(), time.Time{}, 0)
	if err != nil || len(recs) == 0 || recs[len(recs)-1].Who != "viewer-alice" || recs[len(recs)-1].Status != 403 {
		t.Fatalf("audit: %v %+v", err, recs)
	}

	operator, ocsrf := session(t, l, lifeboat.RoleOperator)
	run := l.start(lifeboat.IntentSwitchover)
	l.await(run, lifeboat.RunWaiting)
	// Without the CSRF token a change is refused before the API sees it.
	req, _ = http.NewRequest("POST", l.url+"/ui/api/v1/runs/"+run+"/approve", strings.NewReader(`{"step":"sre-agrees"}`))
	if resp, err = operator.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("approve without CSRF: %d", resp.StatusCode)
	}
	if r, _ := l.store.Run(context.Background(), run); r.Status != lifeboat.RunWaiting {
		t.Fatalf("the run moved without approval: %s", r.Status)
	}
	req, _ = http.NewRequest("POST", l.url+"/ui/api/v1/runs/"+run+"/approve", strings.NewReader(`{"step":"`+waitingStep(t, l, run)+`"}`))
	req.Header.Set("X-Lifeboat-CSRF", ocsrf)
	if resp, err = operator.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("operator's approve through the dashboard: %d", resp.StatusCode)
	}
	l.await(run, lifeboat.RunSucceeded)

	// Logging out ends the session.
	req, _ = http.NewRequest("POST", l.url+"/ui/logout", nil)
	req.Header.Set("X-Lifeboat-CSRF", ocsrf)
	if resp, err = operator.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp, err = operator.Get(l.url + "/ui/session"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("session after logout: %d", resp.StatusCode)
	}
}

// waitingStep is the approval step the run waits on.
func waitingStep(t *testing.T, l *lab, run string) string {
	t.Helper()
	recs, err := l.store.Journal(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Kind == lifeboat.RecWaiting {
			return r.Step
		}
	}
	t.Fatalf("run %s waits on no step", run)
	return ""
}

func TestValidateConfig(t *testing.T) {
	if _, err := dashboard.New(dashboard.Config{}); err == nil || !strings.Contains(err.Error(), "Spec is nil") || !strings.Contains(err.Error(), "API is nil") {
		t.Fatalf("empty config: %v", err)
	}
}

// A run whose process died (it says running, nobody owns it) shows as
// interrupted, not as running for ever.
func TestEventsShowAnInterruptedRun(t *testing.T) {
	l := newLab(t, "", 50*time.Millisecond)
	st, err := l.store.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p, err := planner.Plan(l.spec, st, lifeboat.IntentSwitchover, "")
	if err != nil {
		t.Fatal(err)
	}
	run := &lifeboat.Run{ID: "r-orphan", Plan: p, Status: lifeboat.RunRunning, StartedAt: time.Now().UTC(), By: "a process that died"}
	if err := l.store.Begin(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	l.stream(lifeboat.RoleViewer, func(s dashboard.Snapshot) bool {
		return !(s.Run != nil && s.Run.ID == run.ID && s.Run.Interrupted && s.Run.Status == "interrupted")
	})
}
