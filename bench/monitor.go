package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/controller"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
	"github.com/lifeboat-dr/lifeboat/lab"
	"github.com/lifeboat-dr/lifeboat/lab/wan"
	"github.com/lifeboat-dr/lifeboat/store"
)

// The monitor's measurements: three regions' controllers, each embedding a
// real etcd member of one cluster, probing each region's web endpoint over
// a Toxiproxy link every 250 ms (down after 3 failures), deciding every
// 250 ms, with a 1 s lease (issue 6's settings; the members' raft timings
// derived from it), in automatic mode. The drivers are the fake
// world: this measures detecting and deciding, and the plan's own overhead,
// not PostgreSQL (the DR rows above time promote and switchover).
const (
	monInterval = 250 * time.Millisecond
	monFailures = 3
	monLease    = time.Second
	monLoss     = 0.05
	// targetDetect is what the issue asks of an unplanned failover's RTO at
	// p50 (2 s) less what the DR rows show promote and the traffic switch
	// take: detection must leave room for them.
	targetDetect = 1500 * time.Millisecond
)

// monitorRows measures detection and automatic failover over rounds rounds
// (a fresh cluster each), then false failovers during lossFor with a share
// monLoss of the probe connections stalled.
func monitorRows(ctx context.Context, dir string, rounds int, lossFor time.Duration) ([]row, error) {
	var detect, e2e []time.Duration
	for i := range rounds {
		d, e, err := monitorRound(ctx, filepath.Join(dir, fmt.Sprintf("round-%d", i)))
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", i+1, err)
		}
		detect, e2e = append(detect, d), append(e2e, e)
	}
	rows := []row{
		{fmt.Sprintf("region lost → failover decided (probes %s × %d, lease %s; median of %d)", monInterval, monFailures, monLease, rounds), "etcd ×3",
			fmt.Sprintf("%s (max %s)", median(detect).Round(time.Millisecond), slices.Max(detect).Round(time.Millisecond)), "<= " + targetDetect.String(), okOr(median(detect) <= targetDetect)},
		{"region lost → automatic failover done (fake drivers)", "etcd ×3",
			fmt.Sprintf("%s (max %s)", median(e2e).Round(time.Millisecond), slices.Max(e2e).Round(time.Millisecond)), "", ""},
	}
	if os.Geteuid() == 0 {
		var labE2E []time.Duration
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chmod(dir, 0o755); err != nil { // the lab's PostgreSQL runs as postgres
			return nil, err
		}
		for i := range rounds {
			d, err := labAutoRound(ctx, filepath.Join(dir, fmt.Sprintf("lab-%d", i)))
			if err != nil {
				return nil, fmt.Errorf("lab round %d: %w", i+1, err)
			}
			labE2E = append(labE2E, d)
		}
		rows = append(rows, row{fmt.Sprintf("lab region-down → automatic failover done (real PostgreSQL, controllers in namespaces; median of %d)", rounds), "lab",
			fmt.Sprintf("%s (max %s)", median(labE2E).Round(time.Millisecond), slices.Max(labE2E).Round(time.Millisecond)), "", ""})
	} else {
		rows = append(rows, row{"lab region-down → automatic failover (needs root for network namespaces: skipped)", "lab", "-", "", ""})
	}
	if lossFor > 0 {
		runs, failed, probes, err := monitorLoss(ctx, filepath.Join(dir, "loss"), lossFor)
		if err != nil {
			return nil, fmt.Errorf("false failovers under loss: %w", err)
		}
		rows = append(rows, row{fmt.Sprintf("false failovers in %s, %.0f%% of probe connections stalled (%d of %d probes failed)", lossFor, monLoss*100, failed, probes), "etcd ×3",
			fmt.Sprint(runs), "0", okOr(runs == 0)})
	}
	return rows, nil
}

// cluster is one run's three controllers and what they probe.
type monCluster struct {
	spec    *lifeboat.Spec
	members map[string]*store.Member
	links   map[string]*wan.Link // region → the link in front of its web
	webs    map[string]*web
	ctrl    map[string]*controller.Controller
	stop    func()
}

// web is a region's endpoint: 200 until it is taken down.
type web struct {
	srv  *http.Server
	ln   net.Listener
	mu   sync.Mutex
	down bool
}

func startWeb() (*web, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w := &web{ln: ln}
	w.srv = &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		down := w.down
		w.mu.Unlock()
		if down {
			http.Error(rw, "region down", http.StatusServiceUnavailable)
			return
		}
		rw.WriteHeader(http.StatusOK)
	})}
	go func() { _ = w.srv.Serve(ln) }()
	return w, nil
}

func (w *web) takeDown() { w.mu.Lock(); w.down = true; w.mu.Unlock() }

func startMonCluster(ctx context.Context, dir string) (*monCluster, error) {
	c := &monCluster{members: map[string]*store.Member{}, links: map[string]*wan.Link{}, webs: map[string]*web{}, ctrl: map[string]*controller.Controller{}}
	var stops []func()
	c.stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	fail := func(err error) (*monCluster, error) { c.stop(); return nil, err }
	targets := map[string]map[string]string{}
	for _, r := range []string{"west", "east"} {
		w, err := startWeb()
		if err != nil {
			return fail(err)
		}
		stops = append(stops, func() { _ = w.srv.Close() })
		cfg := wan.DefaultConfig()
		cfg.Name, cfg.Upstream = "probe-"+r, w.ln.Addr().String()
		l, err := wan.Open(cfg)
		if err != nil {
			return fail(err)
		}
		stops = append(stops, func() { _ = l.Close() })
		c.webs[r], c.links[r] = w, l
		targets[r] = map[string]string{"storefront.web": "http://" + l.Addr() + "/healthz"}
	}
	// Hold every port until all are picked, so no two are the same.
	var held []net.Listener
	pick := func() (string, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		held = append(held, ln)
		return ln.Addr().String(), nil
	}
	members := map[string]lifeboat.StoreMember{}
	for _, r := range []string{"west", "east", "central"} {
		peer, err := pick()
		if err != nil {
			return fail(err)
		}
		client, err := pick()
		if err != nil {
			return fail(err)
		}
		members[r] = lifeboat.StoreMember{Peer: peer, Client: client}
	}
	for _, ln := range held {
		ln.Close()
	}
	c.spec = &lifeboat.Spec{
		Service:    "bench",
		Regions:    lifeboat.Regions{Primary: lifeboat.Region{Name: "west"}, Secondary: lifeboat.Region{Name: "east"}, Witness: &lifeboat.Region{Name: "central"}},
		Objectives: lifeboat.Objectives{RTO: lifeboat.Duration(time.Minute), RPO: lifeboat.Duration(5 * time.Second)},
		Units: map[string]lifeboat.Unit{"storefront": {
			Compute:   map[string]lifeboat.Compute{"web": {Standby: lifeboat.StandbyWarm, Instances: lifeboat.Instances{Primary: 2, Secondary: 2}}},
			Databases: map[string]lifeboat.Database{"orders": {Engine: "postgres", DRMode: lifeboat.DRGeoReplica}},
			Traffic:   map[string]lifeboat.Traffic{"www": {Names: []string{"www.bench.test"}, Target: "web"}},
		}},
		Drivers: lifeboat.DriverSpec{Default: "fake"},
		Monitor: lifeboat.Monitor{Mode: lifeboat.MonitorAutomatic, Interval: lifeboat.Duration(monInterval), Timeout: lifeboat.Duration(monInterval),
			Failures: monFailures, Lease: lifeboat.Duration(monLease), Targets: targets},
		Store: lifeboat.StoreSpec{Members: members},
	}
	// The members wait for a majority: start them side by side.
	type opened struct {
		region string
		m      *store.Member
		err    error
	}
	ch := make(chan opened, 3)
	for _, r := range []string{"west", "east", "central"} {
		go func() {
			o := store.DefaultMemberOptions("bench", r)
			o.Dir, o.Members, o.Lease = filepath.Join(dir, "store"), members, monLease
			m, err := store.OpenMember(ctx, o)
			ch <- opened{r, m, err}
		}()
	}
	var errs []error
	for range 3 {
		o := <-ch
		if o.err != nil {
			errs = append(errs, o.err)
			continue
		}
		c.members[o.region] = o.m
		stops = append(stops, func() { _ = o.m.Close() })
	}
	if len(errs) > 0 {
		return fail(fmt.Errorf("starting the etcd members: %v", errs))
	}
	st, err := c.members["west"].Store().Init(ctx, lifeboat.InitialState(c.spec, time.Now()))
	if err != nil {
		return fail(err)
	}
	world := fake.New()
	world.Seed(c.spec, st)
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stops = append(stops, func() { cancel(); wg.Wait() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, r := range []string{"west", "east", "central"} {
		q, err := c.members[r].Quorum(ctx, monLease)
		if err != nil {
			return fail(err)
		}
		ctl, err := controller.New(controller.Config{Spec: c.spec, Region: r, Store: c.members[r].Store(), Quorum: q, Drivers: world.Drivers(), Log: quiet})
		if err != nil {
			return fail(err)
		}
		c.ctrl[r] = ctl
		wg.Add(1)
		go func() { defer wg.Done(); _ = ctl.Run(cctx) }()
	}
	return c, nil
}

// waitSteady waits until every controller has decided with every region's
// view published, so that a fault starts from a settled cluster.
func (c *monCluster) waitSteady(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		ok := true
		for _, ctl := range c.ctrl {
			s := ctl.Status()
			if s.DecidedAt.IsZero() || !s.Quorum {
				ok = false
			}
		}
		leaders := 0
		for _, ctl := range c.ctrl {
			if ctl.Status().Leader {
				leaders++
			}
		}
		if ok && leaders == 1 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the controllers did not settle (decided, in quorum, one leader) within a minute")
}

// monitorRound takes west's web down and times the automatic failover:
// from the fault to the run's start (detection and decision) and to its end.
func monitorRound(ctx context.Context, dir string) (detect, e2e time.Duration, err error) {
	c, err := startMonCluster(ctx, dir)
	if err != nil {
		return 0, 0, err
	}
	defer c.stop()
	if err := c.waitSteady(ctx); err != nil {
		return 0, 0, err
	}
	// Let every observer publish a few healthy rounds first.
	time.Sleep(4 * monInterval)
	st := c.members["east"].Store()
	fault := time.Now()
	c.webs["west"].takeDown()
	deadline := fault.Add(time.Minute)
	for time.Now().Before(deadline) {
		runs, err := st.Runs(ctx)
		if err == nil && len(runs) > 0 && runs[0].Status == lifeboat.RunSucceeded {
			r := runs[0]
			if r.By != controller.Automatic {
				return 0, 0, fmt.Errorf("a run by %q, not the controller", r.By)
			}
			return r.StartedAt.Sub(fault), r.EndedAt.Sub(fault), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, 0, fmt.Errorf("no automatic failover within a minute of west going down")
}

// monitorLoss counts the failovers started while both regions are healthy
// but a share of the probes' connections stall.
func monitorLoss(ctx context.Context, dir string, d time.Duration) (runs, failed, probes int, err error) {
	c, err := startMonCluster(ctx, dir)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.stop()
	if err := c.waitSteady(ctx); err != nil {
		return 0, 0, 0, err
	}
	for _, l := range c.links {
		if err := l.Loss(monLoss); err != nil {
			return 0, 0, 0, err
		}
	}
	// Probe histories are bounded: count what is new every 10 s.
	end := time.Now().Add(d)
	since := time.Now()
	for time.Now().Before(end) {
		time.Sleep(min(10*time.Second, time.Until(end)))
		now := time.Now()
		f, n := c.probeCounts(since, now)
		failed, probes, since = failed+f, probes+n, now
	}
	rs, err := c.members["central"].Store().Runs(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	return len(rs), failed, probes, nil
}

// probeCounts counts the probes started in [since, until), and the failed
// ones, over every observer's kept history.
func (c *monCluster) probeCounts(since, until time.Time) (failed, total int) {
	for _, ctl := range c.ctrl {
		for _, r := range ctl.Results() {
			if r.Start.Before(since) || !r.Start.Before(until) {
				continue
			}
			total++
			if !r.OK {
				failed++
			}
		}
	}
	return failed, total
}

// labAutoRound brings up a lab with a controller per region in automatic
// mode, takes west down, and times the fault to the automatic failover's
// end (east active, no run in progress) as the lab's daemon sees it.
func labAutoRound(ctx context.Context, dir string) (time.Duration, error) {
	o := lab.DefaultOptions()
	o.Dir, o.Monitor = dir, string(lifeboat.MonitorAutomatic)
	bin, err := labBinary()
	if err != nil {
		return 0, err
	}
	o.Binary = bin
	if _, err := lab.Up(ctx, o); err != nil {
		return 0, fmt.Errorf("lab up: %w", err)
	}
	defer func() { _, _ = lab.Down(context.WithoutCancel(ctx), dir) }()
	steady := func() bool {
		st, err := lab.LabStatus(ctx, dir)
		return err == nil && st.Active == "west" && st.Settled() == nil
	}
	deadline := time.Now().Add(time.Minute)
	for !steady() {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the lab's controllers did not settle within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A few healthy rounds published, and time for the witness's
	// controller to take etcd's raft leadership (it checks every 2 s): the
	// steady state a region is lost from.
	time.Sleep(3 * time.Second)
	fault := time.Now()
	if _, err := lab.Fault(ctx, dir, lab.FaultRequest{Kind: lab.FaultRegionDown, Region: "west"}); err != nil {
		return 0, err
	}
	// Time the run's end as its journal has it: polling the lab's status
	// would add the status call's own time (it inspects the dead region).
	in, err := lab.LoadInfo(dir)
	if err != nil {
		return 0, err
	}
	spec, diags, err := config.Load(in.Spec)
	if err != nil || diags.HasErrors() {
		return 0, fmt.Errorf("the lab's spec: %v %v", err, diags)
	}
	st, err := store.Open(ctx, store.Options{Service: spec.Service, Members: spec.Store.Members})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	deadline = time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		runs, err := st.Runs(rctx)
		cancel()
		for _, r := range runs {
			if err == nil && r.By == controller.Automatic && r.Plan.Intent == lifeboat.IntentFailover && r.Status == lifeboat.RunSucceeded {
				return r.EndedAt.Sub(fault), nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("no automatic failover within two minutes of west going down")
}
