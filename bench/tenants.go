package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/driver"
	"github.com/lifeboat-dr/lifeboat/engine"
	"github.com/lifeboat-dr/lifeboat/lab"
	"github.com/lifeboat-dr/lifeboat/planner"
	"github.com/lifeboat-dr/lifeboat/store"
)

var tenantsN = flag.Int("tenants", 0, "run only the tenants section (issue 7) with this many tenants in the lab (e.g. 1000; schema isolation), then exit; 0: skip it")

// tenantsMain runs the tenants section when -tenants N is given, prints
// its rows and exits.
func tenantsMain() {
	if *tenantsN <= 0 {
		return
	}
	dir, err := os.MkdirTemp("", "lifeboat-bench-tenants-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	var rows []row
	if err == nil {
		rows, err = tenantRows(context.Background(), filepath.Join(dir, "lab"), *tenantsN)
		os.RemoveAll(dir)
	}
	for _, r := range rows {
		fmt.Printf("%-70s %-28s %-22s %s\n", r.what, r.measured, r.target, r.verdict)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: tenants:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// tenantRows brings up a lab with n tenants, fails it over, and measures
// the tenants' recovery: paid tenants available after promotion, the wait
// of first connections through the gate, and restores per second.
func tenantRows(ctx context.Context, dir string, n int) ([]row, error) {
	bin, err := labBinary()
	if err != nil {
		return nil, err
	}
	o := lab.DefaultOptions()
	o.Dir, o.Binary, o.Tenants, o.ReadyTimeout = dir, bin, n, 5*time.Minute
	in, err := lab.Up(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("lab up --tenants %d: %w", n, err)
	}
	defer func() { _, _ = lab.Down(context.WithoutCancel(ctx), dir) }()
	paid, trial := lab.TenantCounts(n, 0)
	lostPaid := (paid + 1) / 2 // split: the paid pool in west holds half
	fmt.Fprintf(os.Stderr, "lab up with %d tenants in %s\n", n, in.Ready.Round(time.Millisecond))

	promoted, err := benchFailover(ctx, in)
	if err != nil {
		return nil, err
	}
	// Wait for the recovery to begin (the catalog fails over with the
	// service), then connect to tenants through the gate at once.
	var st *lab.Status
	for {
		if st, err = lab.LabStatus(ctx, dir); err == nil && st.Tenants != nil && st.Tenants.Recovery != nil {
			break
		}
		if time.Since(promoted) > time.Minute {
			return nil, fmt.Errorf("no tenants' recovery a minute after the failover: %+v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var paidNames, trialNames []string
	for i := 1; i <= paid; i += 2 { // paid0001, 0003, …: placed in west's pool
		paidNames = append(paidNames, lab.TenantName(lab.TierPaid, i))
	}
	for i := trial; i > trial-20 && i > 0; i-- { // the last in line
		trialNames = append(trialNames, lab.TenantName(lab.TierTrial, i))
	}
	paidWaits, trialWaits := make([]time.Duration, 0), make([]time.Duration, 0)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed []string
	connect := func(name string, out *[]time.Duration) {
		defer wg.Done()
		t0 := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", lab.DBUser, lab.DBPassword, in.Gate, name))
		if err == nil {
			var k int
			err = c.QueryRow(cctx, `SELECT count(*) FROM items`).Scan(&k)
			c.Close(context.Background())
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = append(failed, name+": "+err.Error())
			return
		}
		*out = append(*out, time.Since(t0))
	}
	// 50 paid tenants and the 20 trial tenants last in line.
	for _, name := range paidNames[len(paidNames)-min(50, len(paidNames)):] {
		wg.Add(1)
		go connect(name, &paidWaits)
	}
	for _, name := range trialNames {
		wg.Add(1)
		go connect(name, &trialWaits)
	}

	// Paid tenants available, and the restores' pace, from the status.
	var paidAll time.Duration
	var firstRestore, lastRestore time.Time
	seenTrial := 0
	for {
		st, err = lab.LabStatus(ctx, dir)
		if err != nil {
			return nil, err
		}
		r := st.Tenants.Recovery
		nPaid, nTrial := 0, 0
		for _, a := range r.Available {
			if strings.HasPrefix(a, "p") {
				nPaid++
			} else {
				nTrial++
			}
		}
		now := time.Now()
		if nPaid >= lostPaid && paidAll == 0 {
			paidAll = now.Sub(promoted)
		}
		if nTrial > 0 && firstRestore.IsZero() {
			firstRestore = now
		}
		if nTrial > seenTrial {
			seenTrial, lastRestore = nTrial, now
		}
		if r.Done {
			break
		}
		if time.Since(promoted) > 10*time.Minute {
			return nil, fmt.Errorf("the tenants' recovery is not done after 10 minutes: %s", r.Text)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	rate := 0.0
	if span := lastRestore.Sub(firstRestore); span > 0 && seenTrial > 1 {
		rate = float64(seenTrial-1) / span.Seconds()
	}
	p := func(ds []time.Duration, q float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		slices.Sort(ds)
		return ds[min(len(ds)-1, int(q*float64(len(ds))))]
	}
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	rows := []row{
		{what: fmt.Sprintf("tenants: %d paid tenants of west's pool available, from the failover's end", lostPaid), measured: paidAll.Round(time.Millisecond).String(),
			target: "500 within 5s", verdict: verdict(paidAll > 0 && paidAll <= 5*time.Second)},
		{what: fmt.Sprintf("tenants: first connection through the gate, paid (geo-replica), %d clients", len(paidWaits)),
			measured: fmt.Sprintf("p50 %s p99 %s", p(paidWaits, .5).Round(time.Millisecond), p(paidWaits, .99).Round(time.Millisecond)), target: "p99 ≤ 2s",
			verdict: verdict(len(paidWaits) > 0 && p(paidWaits, .99) <= 2*time.Second)},
		{what: fmt.Sprintf("tenants: first connection through the gate, trial (geo-restore on demand), %d clients", len(trialWaits)),
			measured: fmt.Sprintf("p50 %s p99 %s", p(trialWaits, .5).Round(time.Millisecond), p(trialWaits, .99).Round(time.Millisecond)), target: "-", verdict: "info"},
		{what: fmt.Sprintf("tenants: restores per second (%d trial tenants, concurrency 4)", trial), measured: fmt.Sprintf("%.1f/s", rate), target: "-", verdict: "info"},
	}
	if len(failed) > 0 {
		return rows, fmt.Errorf("%d connections through the gate failed, e.g. %s", len(failed), failed[0])
	}
	return rows, nil
}

// benchFailover runs a failover of the lab to completion and returns when
// it ended (its pools were promoted during it).
func benchFailover(ctx context.Context, in *lab.Info) (time.Time, error) {
	spec, _, err := config.Load(in.Spec)
	if err != nil {
		return time.Time{}, err
	}
	st, err := store.Open(ctx, store.Options{Dir: filepath.Join(in.Dir, ".lifeboat"), Service: spec.Service})
	if err != nil {
		return time.Time{}, err
	}
	defer st.Close()
	state, err := st.State(ctx)
	if err != nil {
		return time.Time{}, err
	}
	p, err := planner.Plan(spec, state, lifeboat.IntentFailover, "")
	if err != nil {
		return time.Time{}, err
	}
	drivers, err := driver.FromSpec(spec, state)
	if err != nil {
		return time.Time{}, err
	}
	ec := engine.DefaultConfig()
	ec.Store, ec.By = st, "bench tenants"
	ec.Bind = func(run string, step *lifeboat.Step) (lifeboat.Action, error) {
		return lifeboat.Bind(spec, drivers, run, step)
	}
	eng, err := engine.New(ec)
	if err != nil {
		return time.Time{}, err
	}
	f, err := eng.Start(ctx, p)
	if err != nil {
		return time.Time{}, err
	}
	if err := f.Error(); err != nil {
		return time.Time{}, fmt.Errorf("failover: %w", err)
	}
	return time.Now(), nil
}
