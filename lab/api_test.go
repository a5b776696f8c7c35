package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/lifeboat-dr/lifeboat/internal/chromium"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/controller"
)

// The monitored lab's operator surfaces, on one lab: the API answers each
// controller through its loopback forwarder and refuses a caller without a
// token; a scrape of a live controller's /metrics passes 'promtool check
// metrics' with the key series in it; and a real Chromium, logged in to
// the witness's dashboard as the lab's operator, follows the automatic
// failover that takes west down: it shows east, and the time from the
// journaled end of the failover to the page showing it is logged.
func TestAPIMetricsAndDashboardInTheMonitoredLab(t *testing.T) {
	promtool := promtoolPath(t)
	browserBin := chromium.TestPath(t)
	dir, in := monitored(t)
	if in.API == nil || in.API.URLs[Central] == "" {
		t.Fatalf("lab.json has no API addresses: %+v", in.API)
	}
	spec, _, err := config.Load(in.Spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{West, East, Central} {
		if a := spec.API.ListenIn[r]; "http://"+a != in.API.URLs[r] || !strings.HasPrefix(a, "127.0.0.1:") {
			t.Fatalf("api.listen-in.%s is %q, the lab says %s: both must be the same loopback address", r, a, in.API.URLs[r])
		}
	}
	fi, err := os.Stat(in.API.Tokens)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the tokens file %s: %v, mode %v; want 0600", in.API.Tokens, err, fi)
	}
	tokens, err := APITokens(dir)
	if err != nil {
		t.Fatal(err)
	}

	// The API through each controller's forwarder: no token is refused,
	// the viewer is who the tokens file says.
	for _, r := range []string{West, East, Central} {
		base := in.API.URLs[r]
		eventually(t, 30*time.Second, r+"'s API answering", func() error {
			code, body, err := get(base+"/v1/whoami", "")
			if err != nil {
				return err
			}
			if code != http.StatusUnauthorized {
				return fmt.Errorf("whoami without a token: %d %s, want 401", code, body)
			}
			return nil
		})
		code, body, err := get(base+"/v1/whoami", tokens[lifeboat.RoleViewer])
		if err != nil || code != http.StatusOK || !strings.Contains(string(body), apiViewer) {
			t.Fatalf("%s's whoami as the viewer: %d %s %v", r, code, body, err)
		}
	}

	// promtool on a live scrape, once the controller has decided (before
	// that it makes up nothing about the state).
	var scrape []byte
	eventually(t, 30*time.Second, "a scrape of the witness's /metrics with the controller's series", func() error {
		code, body, err := get(in.API.URLs[Central]+"/metrics", "")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET /metrics: %d", code)
		}
		for _, name := range []string{"lifeboat_epoch", "lifeboat_region_up", "lifeboat_active_region", "lifeboat_controller_leader",
			"lifeboat_component_health", "lifeboat_store_up", "lifeboat_runs_started_total"} {
			if !bytes.Contains(body, []byte("\n"+name)) {
				return fmt.Errorf("no %s in the scrape yet", name)
			}
		}
		scrape = body
		return nil
	})
	if !bytes.Contains(scrape, []byte(`lifeboat_region_up{controller="central",region="west"} 1`)) {
		t.Errorf("the witness does not see west up:\n%s", grepLines(scrape, "lifeboat_region_up"))
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics on the live scrape: %v\n%s\n--- the scrape:\n%s", err, out, scrape)
	}
	t.Logf("promtool check metrics passed on a %d-byte live scrape of the witness's controller", len(scrape))

	// The dashboard follows a real failover.
	s, _ := openQuorumStore(t, in)
	ctx := labBrowser(t, browserBin)
	if err := chromedp.Do(ctx, chromedp.Navigate(in.API.Dashboard)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), tokens[lifeboat.RoleOperator]),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#main")),
	); err != nil {
		t.Fatalf("logging in to %s as the operator: %v", in.API.Dashboard, err)
	}
	pageUntil(t, ctx, 30*time.Second, "west as the active region", `document.body.dataset.active === 'west' && document.querySelector('#active').textContent === 'west'`)

	fault(t, dir, FaultRequest{Kind: FaultRegionDown, Region: West})
	pageUntil(t, ctx, 60*time.Second, "east as the active region after west went down", `document.body.dataset.active === 'east' && document.querySelector('#active').textContent === 'east'`)
	shown := pageShownAt(t, ctx, "window.lbActiveShown")
	var run *lifeboat.Run
	eventually(t, time.Minute, "the automatic failover's end in the journal", func() error {
		runs, err := automaticRuns(context.Background(), s)
		if err != nil {
			return err
		}
		for _, r := range runs {
			if r.Plan.Intent == lifeboat.IntentFailover && r.Status == lifeboat.RunSucceeded && r.By == controller.Automatic {
				run = r
				return nil
			}
		}
		return fmt.Errorf("no succeeded automatic failover yet (%d automatic runs)", len(runs))
	})
	pageUntil(t, ctx, 30*time.Second, "the failover's success", `window.lbRunShown && window.lbRunShown.status === 'succeeded'`)
	t.Logf("dashboard: the failover ended (journal) at %s; the page showed east %s after it and the run's success %s after it",
		run.EndedAt.Format(time.RFC3339Nano), shown.Sub(run.EndedAt).Round(time.Millisecond), pageShownAt(t, ctx, "window.lbRunShown").Sub(run.EndedAt).Round(time.Millisecond))
}

// get fetches url with a bearer token ("" sends none).
func get(url, token string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func grepLines(b []byte, prefix string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// promtoolPath is Debian prometheus's promtool. It skips only when promtool
// is missing outside CI; in CI (CI set) a missing promtool fails.
func promtoolPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool is not installed: run scripts/deps.sh (Debian's prometheus package provides it)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// labBrowser starts headless Chromium (internal/chromium's flags: it
// contacts nothing but the lab's loopback). Cleanup ends it.
func labBrowser(t *testing.T, bin string) context.Context {
	t.Helper()
	ctx, cancel, err := chromium.Start(context.Background(), bin, t.TempDir(), 1280, 800)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return ctx
}

// pageUntil waits, bounded, for a JavaScript condition to hold in the page.
func pageUntil(t *testing.T, ctx context.Context, within time.Duration, what, js string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(within), chromedp.WithPollingInterval(10*time.Millisecond))); err != nil {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({active: document.body.dataset.active, run: window.lbLast && window.lbLast.run && window.lbLast.run.status, errors: window.lbLast && window.lbLast.errors})`))
		t.Fatalf("the dashboard did not show %s within %s: %v (page: %s)", what, within, err, state)
	}
}

// pageShownAt is when (the browser's clock: this machine's) the page
// recorded showing something (window.lbActiveShown or lbRunShown).
func pageShownAt(t *testing.T, ctx context.Context, v string) time.Time {
	t.Helper()
	ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](v+".at"))
	if err != nil {
		t.Fatal(err)
	}
	return time.UnixMicro(int64(ms * 1000))
}

// The plain lab's daemon serves the API, the dashboard and /metrics at
// api.listen, as plain 'lifeboat serve' would.
func TestAPIInThePlainLab(t *testing.T) {
	promtool := promtoolPath(t)
	dir := labDir(t)
	in, err := Up(context.Background(), Options{Dir: dir})
	t.Cleanup(func() {
		if rep, err := Down(context.Background(), dir); err != nil {
			t.Errorf("lab down (cleanup): %v (%+v)", err, rep)
		}
		if t.Failed() {
			t.Logf("lab.log:\n%s", tail(logPath(dir), 40))
		}
	})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	base := in.API.URLs[""]
	spec, _, err := config.Load(in.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if "http://"+spec.API.Listen != base || in.API.Dashboard != base+"/ui/" {
		t.Fatalf("api.listen %q, lab.json %+v: want the same loopback address", spec.API.Listen, in.API)
	}
	tokens, err := APITokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := get(base+"/v1/status", ""); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("status without a token: %d %s %v, want 401", code, body, err)
	}
	code, body, err := get(base+"/v1/whoami", tokens[lifeboat.RoleOperator])
	if err != nil || code != http.StatusOK || !strings.Contains(string(body), apiOperator) {
		t.Fatalf("whoami as the operator: %d %s %v", code, body, err)
	}
	if code, body, err := get(base+"/ui/", ""); err != nil || code != http.StatusOK || !strings.Contains(string(body), "<html") {
		t.Fatalf("the dashboard's page: %d %.200s %v", code, body, err)
	}
	code, scrape, err := get(base+"/metrics", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	for _, name := range []string{"lifeboat_store_up", "lifeboat_runs_started_total", "lifeboat_frontdoor_connections_accepted_total"} {
		if !bytes.Contains(scrape, []byte("\n"+name)) {
			t.Errorf("the scrape has no %s", name)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n--- the scrape:\n%s", err, out, scrape)
	}
}
