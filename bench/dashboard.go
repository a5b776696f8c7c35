package main

// The dashboard in the monitored lab (issue 8): headless Chromium logged in
// to the witness controller's dashboard as the lab's operator while west is
// taken down; how long after the automatic failover's journaled end the
// page shows it.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/lifeboat-dr/lifeboat/internal/chromium"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/controller"
	"github.com/lifeboat-dr/lifeboat/lab"
	"github.com/lifeboat-dr/lifeboat/store"
)

var dashboardRounds = flag.Int("dashboard", 0, "run only the dashboard section (issue 8: a browser on the monitored lab's dashboard through a real failover, needs root and chromium) this many rounds, then exit; 0: skip it")

// targetDashboard is issue 8's: the page shows the new active region
// within a second of the failover.
const targetDashboard = time.Second

// dashboardMain runs the dashboard section when -dashboard N is given,
// prints its rows and exits.
func dashboardMain() {
	if *dashboardRounds <= 0 {
		return
	}
	rows, err := dashboardRows(context.Background(), *dashboardRounds)
	for _, r := range rows {
		fmt.Printf("%-78s %-40s %-10s %s\n", r.what, r.measured, r.target, r.verdict)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: dashboard:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func dashboardRows(ctx context.Context, rounds int) ([]row, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the monitored lab puts each region in a network namespace: run the bench as root")
	}
	browserBin, err := chromium.Path()
	if err != nil {
		return nil, err
	}
	var ends, actives []time.Duration
	for i := range rounds {
		end, active, err := dashboardRound(ctx, browserBin)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", i+1, err)
		}
		ends, actives = append(ends, end), append(actives, active)
	}
	med := func(ds []time.Duration) time.Duration { s := slices.Clone(ds); slices.Sort(s); return s[len(s)/2] }
	span := func(ds []time.Duration) string {
		return fmt.Sprintf("%s (%s–%s)", med(ds).Round(time.Millisecond), slices.Min(ds).Round(time.Millisecond), slices.Max(ds).Round(time.Millisecond))
	}
	return []row{
		{what: fmt.Sprintf("dashboard: failover's journaled end → the page shows it succeeded (median of %d)", rounds), store: "etcd", measured: span(ends), target: "< " + targetDashboard.String(), verdict: okOr(med(ends) < targetDashboard)},
		{what: fmt.Sprintf("dashboard: east active in the store → the page shows east (median of %d)", rounds), store: "etcd", measured: span(actives), target: "< " + targetDashboard.String(), verdict: okOr(med(actives) < targetDashboard)},
	}, nil
}

// dashboardRound brings up a monitored lab, opens its witness's dashboard
// as the operator, takes west down, and returns how long after the
// automatic failover's end (its journal) and after east became active (the
// state's Since) the page showed each (the browser's clock: this machine's).
func dashboardRound(ctx context.Context, browserBin string) (end, active time.Duration, err error) {
	tmp, err := os.MkdirTemp("", "lifeboat-bench-dashboard-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil { // PostgreSQL runs as postgres
		return 0, 0, err
	}
	dir := filepath.Join(tmp, "lab")
	bin, err := labBinary()
	if err != nil {
		return 0, 0, err
	}
	o := lab.DefaultOptions()
	o.Dir, o.Binary, o.Monitor = dir, bin, string(lifeboat.MonitorAutomatic)
	in, err := lab.Up(ctx, o)
	defer func() { _, _ = lab.Down(context.WithoutCancel(ctx), dir) }()
	if err != nil {
		return 0, 0, fmt.Errorf("lab up: %w", err)
	}
	if in.API == nil {
		return 0, 0, errors.New("the lab has no API section: is bin/lifeboat older than this bench? make build")
	}
	tokens, err := lab.APITokens(dir)
	if err != nil {
		return 0, 0, err
	}
	if err := waitDash(time.Minute, "the controllers to settle", func() error {
		st, err := lab.LabStatus(ctx, dir)
		if err != nil {
			return err
		}
		return st.Settled()
	}); err != nil {
		return 0, 0, err
	}

	bctx, cancel, err := chromium.Start(ctx, browserBin, filepath.Join(tmp, "chromium"), 1280, 800)
	if err != nil {
		return 0, 0, err
	}
	defer cancel()
	if err := chromedp.Do(bctx,
		chromedp.Navigate(in.API.Dashboard),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), tokens[lifeboat.RoleOperator]),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#main")),
	); err != nil {
		return 0, 0, fmt.Errorf("logging in to %s: %w", in.API.Dashboard, err)
	}
	poll := func(within time.Duration, js string) error {
		_, err := chromedp.Run(bctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(within), chromedp.WithPollingInterval(10*time.Millisecond)))
		return err
	}
	if err := poll(30*time.Second, `document.body.dataset.active === 'west'`); err != nil {
		return 0, 0, fmt.Errorf("the dashboard does not show west: %w", err)
	}
	// Steady first, as bench's lab failover round: a few healthy rounds
	// published before the region is lost.
	time.Sleep(3 * time.Second)
	if _, err := lab.Fault(ctx, dir, lab.FaultRequest{Kind: lab.FaultRegionDown, Region: lab.West}); err != nil {
		return 0, 0, err
	}
	if err := poll(time.Minute, `document.body.dataset.active === 'east' && window.lbRunShown && window.lbRunShown.status === 'succeeded'`); err != nil {
		return 0, 0, fmt.Errorf("the dashboard did not show the failover to east within a minute: %w", err)
	}
	shown := func(v string) (time.Time, error) {
		ms, err := chromedp.Run(bctx, chromedp.Evaluate[float64](v+".at"))
		return time.UnixMicro(int64(ms * 1000)), err
	}
	runShown, err := shown("window.lbRunShown")
	if err != nil {
		return 0, 0, err
	}
	activeShown, err := shown("window.lbActiveShown")
	if err != nil {
		return 0, 0, err
	}

	spec, _, err := config.Load(in.Spec)
	if err != nil {
		return 0, 0, err
	}
	st, err := store.Open(ctx, store.Options{Service: spec.Service, Members: spec.Store.Members})
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	var run *lifeboat.Run
	var state *lifeboat.State
	if err := waitDash(time.Minute, "the automatic failover in the journal", func() error {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		runs, err := st.Runs(rctx)
		if err != nil {
			return err
		}
		for _, r := range runs {
			if r.By == controller.Automatic && r.Plan.Intent == lifeboat.IntentFailover && r.Status == lifeboat.RunSucceeded {
				run = r
			}
		}
		if run == nil {
			return errors.New("none yet")
		}
		state, err = st.State(rctx)
		return err
	}); err != nil {
		return 0, 0, err
	}
	return runShown.Sub(run.EndedAt), activeShown.Sub(state.Since), nil
}

func waitDash(within time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: still failing after %s: %w", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
