package dashboard_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/chromium"
)

// browser starts headless Chromium (internal/chromium's flags: it
// contacts nothing but our loopback server), with a 1280×800 viewport; it
// skips without Chromium, but fails in CI. Cleanup ends it.
func browser(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel, err := chromium.Start(context.Background(), chromium.TestPath(t), t.TempDir(), 1280, 800)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return ctx
}

// until waits, bounded, for a JavaScript condition to hold in the page.
func until(t *testing.T, ctx context.Context, what, js string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(10*time.Second), chromedp.WithPollingInterval(10*time.Millisecond))); err != nil {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({active: document.body.dataset.active, run: window.lbLast && window.lbLast.run && window.lbLast.run.status, login: !document.querySelector('#login').hidden, err: document.querySelector('#login-error').textContent})`))
		t.Fatalf("the page did not show %s within 10s: %v (page: %s)", what, err, state)
	}
}

// login logs in through the page's form.
func login(t *testing.T, ctx context.Context, tok string) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), tok),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#main")),
	); err != nil {
		t.Fatalf("login: %v", err)
	}
}

// shownAt is when (unix ms, the browser's clock) the page recorded that it
// showed something (window.lbActiveShown or lbRunShown).
func shownAt(t *testing.T, ctx context.Context, v string) time.Time {
	t.Helper()
	ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](v+".at"))
	if err != nil {
		t.Fatal(err)
	}
	return time.UnixMicro(int64(ms * 1000))
}

// TestBrowserShowsFailover: the page loads showing west; an operator's
// failover through the API moves the service; the page shows the steps
// moving and then east as the active region. The time from the journaled
// change to the page showing it is measured and logged, not asserted.
func TestBrowserShowsFailover(t *testing.T) {
	l := newLab(t, "", 0)
	// Some history first: a switchover to east and back.
	l.await(l.start(lifeboat.IntentSwitchover), lifeboat.RunSucceeded)
	l.await(l.start(lifeboat.IntentSwitchover), lifeboat.RunSucceeded)
	l.slow(250 * time.Millisecond)
	ctx := browser(t)
	// A standby that lags a little, and more now and then, for the chart.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		lags := []time.Duration{400, 700, 1200, 900, 2600, 1800, 800, 600, 3100, 1500, 700, 500}
		for i := 0; ; i++ {
			d := lags[i%len(lags)] * time.Millisecond
			for _, r := range []string{"west", "east"} {
				l.world.SetLag(lifeboat.ResourceName("shop", "storefront", "orders", r), int64(d/time.Millisecond)*2048, d)
			}
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); <-done }()

	if err := chromedp.Do(ctx, chromedp.Navigate(l.url+"/")); err != nil {
		t.Fatal(err)
	}
	login(t, ctx, l.tokens[lifeboat.RoleOperator])
	until(t, ctx, "west as the active region", `document.querySelector('#active').textContent === 'west' && document.body.dataset.active === 'west'`)
	until(t, ctx, "a lag history", `window.lbLast && window.lbLast.lag.length >= 14 && window.lbLast.readiness.length > 0`)

	run := l.start(lifeboat.IntentFailover)
	until(t, ctx, "the failover's steps moving", `document.body.classList.contains('moving') && document.querySelectorAll('#run li[data-status=done]').length >= 2 && document.querySelector('#run li[data-status=running]') !== null`)
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if p := os.Getenv("LIFEBOAT_DASHBOARD_PNG"); p != "" {
		shot = p // make docs/dashboard.png: LIFEBOAT_DASHBOARD_PNG=$PWD/docs/dashboard.png
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("the screenshot is not a PNG (%d bytes)", len(png))
	}
	t.Logf("screenshot during the failover: %s (%d bytes)", shot, len(png))

	until(t, ctx, "east as the active region", `document.querySelector('#active').textContent === 'east' && document.body.dataset.active === 'east'`)
	r := l.await(run, lifeboat.RunSucceeded)
	until(t, ctx, "the run's success", `window.lbRunShown && window.lbRunShown.status === 'succeeded'`)
	st, err := l.store.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != "east" {
		t.Fatalf("the store says %s is active", st.Active)
	}
	// st.Since is when traffic.switch's "done" made east active (the
	// journal's record, same transaction); r.EndedAt is the run's end.
	t.Logf("latency: east active in the store at %s, on the page %s later", st.Since.Format(time.RFC3339Nano), shownAt(t, ctx, "window.lbActiveShown").Sub(st.Since))
	t.Logf("latency: run ended at %s, the page showed it succeeded %s later", r.EndedAt.Format(time.RFC3339Nano), shownAt(t, ctx, "window.lbRunShown").Sub(r.EndedAt))
}

// TestBrowserApproveButton: a viewer sees a run waiting for approval but
// no approve button; an operator sees it, clicks it, and the run goes on.
func TestBrowserApproveButton(t *testing.T) {
	l := newLab(t, approvalHook, 0)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(l.url+"/ui/")); err != nil {
		t.Fatal(err)
	}
	login(t, ctx, l.tokens[lifeboat.RoleViewer])
	until(t, ctx, "west as the active region", `document.body.dataset.active === 'west'`)

	run := l.start(lifeboat.IntentSwitchover)
	l.await(run, lifeboat.RunWaiting)
	until(t, ctx, "the step waiting for approval", `document.querySelector('#run li[data-status=waiting]') !== null`)
	buttons, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('button.approve').length`))
	if err != nil {
		t.Fatal(err)
	}
	if buttons != 0 {
		t.Fatalf("a viewer sees %d approve button(s)", buttons)
	}

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#logout"))); err != nil {
		t.Fatal(err)
	}
	login(t, ctx, l.tokens[lifeboat.RoleOperator])
	until(t, ctx, "the approve button", `document.querySelector('button.approve') !== null`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("button.approve"))); err != nil {
		t.Fatal(err)
	}
	l.await(run, lifeboat.RunSucceeded)
	until(t, ctx, "east as the active region after the approval", `document.body.dataset.active === 'east'`)
	recs, err := l.store.Journal(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	approved := ""
	for _, r := range recs {
		if r.Kind == lifeboat.RecApproved {
			approved = r.By
		}
	}
	if approved == "" || !strings.Contains(approved, "operator-alice") {
		t.Fatalf("the journal's approval is by %q, not the operator who clicked", approved)
	}
}
