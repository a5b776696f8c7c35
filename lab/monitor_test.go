package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/controller"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/store"
)

// The monitored lab runs the real lifeboat program three times more, as
// each region's controller ('lifeboat serve --region R'), which this test
// binary cannot be: the tests build it once from ../cmd/lifeboat and run the
// whole lab (daemon, shop, controllers) from it.
var (
	lifeboatOnce sync.Once
	lifeboatBin  string
	lifeboatErr  error
)

func lifeboatBinary(t *testing.T) string {
	t.Helper()
	lifeboatOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lifeboat-bin-")
		if err != nil {
			lifeboatErr = err
			return
		}
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		lifeboatBin = filepath.Join(dir, "lifeboat")
		out, err := exec.Command(goBin, "build", "-o", lifeboatBin, "../cmd/lifeboat").CombinedOutput()
		if err != nil {
			lifeboatErr = fmt.Errorf("building ../cmd/lifeboat: %v\n%s", err, out)
		}
	})
	if lifeboatErr != nil {
		t.Fatal(lifeboatErr)
	}
	return lifeboatBin
}

// monitored starts a lab with a controller per region in mode automatic
// (and tenants, if given: seed 004's scenarios 2 and 3).
func monitored(t *testing.T, tenants ...int) (string, *Info) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the monitored lab puts each region in a network namespace, which needs root")
	}
	bin := lifeboatBinary(t)
	dir := labDir(t)
	o := Options{Dir: dir, Binary: bin, Monitor: "automatic", ReadyTimeout: 3 * time.Minute}
	if len(tenants) > 0 {
		o.Tenants = tenants[0]
	}
	in, err := Up(context.Background(), o)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lab.log:\n%s", tail(logPath(dir), 40))
			for _, r := range []string{West, East, Central} {
				t.Logf("%s's controller.log:\n%s", r, tail(controllerLog(dir, r), 25))
			}
			// PostgreSQL's own logs say why a start failed.
			logs, _ := filepath.Glob(filepath.Join(dir, "*", "pg*.log"))
			for _, l := range logs {
				t.Logf("%s:\n%s", l, tail(l, 8))
			}
		}
		rep, err := Down(context.Background(), dir)
		if err != nil {
			t.Errorf("lab down (cleanup): %v (%+v)", err, rep)
		} else if len(rep.Leftovers) > 0 {
			t.Errorf("the daemon left processes behind that Down had to kill: %+v", rep.Leftovers)
		}
		if rep != nil {
			t.Logf("lab down took %s", rep.Took.Round(time.Millisecond))
		}
	})
	if err != nil {
		t.Fatalf("lab up --monitor automatic: %v", err)
	}
	t.Logf("lab up (monitored) to ready: %s", in.Ready.Round(time.Millisecond))
	if _, diags, err := config.Load(in.Spec); err != nil || diags.HasErrors() {
		t.Fatalf("the lab's spec does not validate: %v %v", err, diags)
	}
	// Every controller publishes, with the quorum, and one leads.
	eventually(t, time.Minute, "three controllers with the quorum, one the leader", func() error {
		st, err := LabStatus(context.Background(), dir)
		if err != nil {
			return err
		}
		return st.Settled()
	})
	return dir, in
}

func leaderOf(st *Status) (ControllerStatus, bool) {
	for _, c := range st.Controllers {
		if c.Leader && c.Published {
			return c, true
		}
	}
	return ControllerStatus{}, false
}

func openQuorumStore(t *testing.T, in *Info) (lifeboat.Store, *lifeboat.Spec) {
	t.Helper()
	spec, _, err := config.Load(in.Spec)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), store.Options{Service: spec.Service, Members: spec.Store.Members})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, spec
}

// automaticRuns are the runs a controller started on its own.
func automaticRuns(ctx context.Context, s lifeboat.Store) ([]*lifeboat.Run, error) {
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	runs, err := s.Runs(rctx)
	if err != nil {
		return nil, err
	}
	var out []*lifeboat.Run
	for _, r := range runs {
		if r.By == controller.Automatic {
			out = append(out, r)
		}
	}
	return out, nil
}

// failedOverTo waits until region is active through a finished automatic
// run, and region's PostgreSQL is the primary.
func failedOverTo(t *testing.T, dir string, s lifeboat.Store, region string) {
	t.Helper()
	eventually(t, 2*time.Minute, "an automatic failover to "+region, func() error {
		rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := s.State(rctx)
		cancel()
		if err != nil {
			return err
		}
		if st.Active != region || st.Run != "" {
			return fmt.Errorf("active %s, run %q", st.Active, st.Run)
		}
		runs, err := automaticRuns(context.Background(), s)
		if err != nil {
			return err
		}
		if len(runs) != 1 || runs[0].Status != lifeboat.RunSucceeded {
			return fmt.Errorf("automatic runs: %d (%+v)", len(runs), runs)
		}
		if d := dbOf(statusOf(t, dir), region); d.Role != "primary" {
			return fmt.Errorf("%s's PostgreSQL: %+v", region, d)
		}
		return nil
	})
}

// A region lost for real (links, database, shop and controller gone): the
// majority (east, central) fails the service over to east on its own, and
// the front door takes orders there.
func TestMonitorRegionDownFailsOver(t *testing.T) {
	const tenants = 12
	dir, in := monitored(t, tenants)
	s, _ := openQuorumStore(t, in)
	eventually(t, 30*time.Second, "an order in west", func() error { _, err := order(in.Front); return err })

	fault(t, dir, FaultRequest{Kind: FaultRegionDown, Region: West})
	failedOverTo(t, dir, s, East)
	var p placed
	eventually(t, time.Minute, "an order through the front door after the failover", func() (err error) {
		p, err = order(in.Front)
		return err
	})
	if p.Region != East {
		t.Fatalf("order %d taken in %q after the automatic failover, want east", p.ID, p.Region)
	}
	if err := hasOrder(context.Background(), in.Region(East).Postgres, p.ID); err != nil {
		t.Fatalf("order %d not in east's database: %v", p.ID, err)
	}
	// The tenants follow the automatic failover: west's paid and every
	// trial tenant recovered in east (paideast's, homed there, untouched).
	paid, trial := TenantCounts(tenants, 0)
	eventually(t, time.Minute, "the tenants recovered in east after the automatic failover", func() error {
		ts := statusOf(t, dir).Tenants
		if ts == nil || ts.Recovery == nil || !ts.Recovery.Done || ts.Recovery.Target != East {
			return fmt.Errorf("%+v", ts)
		}
		if got, want := ts.Recovery.Counts[lifeboat.TenantAvailable], paid/2+trial; got != want {
			return fmt.Errorf("%d tenants available after the recovery, want %d: %s", got, want, ts.Recovery.Text)
		}
		return nil
	})

	// West comes back: the leader rejoins its database as east's replica
	// (fenced first by the failover, its unreplicated writes quarantined),
	// readiness turns green, and failback is a planned, zero-loss move.
	fault(t, dir, FaultRequest{Kind: FaultHeal})
	eventually(t, 2*time.Minute, "west's database rejoined as a streaming replica by the controllers", func() error {
		runs, err := automaticRuns(context.Background(), s)
		if err != nil {
			return err
		}
		rejoined := false
		for _, r := range runs {
			rejoined = rejoined || (r.Plan.Intent == lifeboat.IntentRejoin && r.Status == lifeboat.RunSucceeded)
		}
		if !rejoined {
			return fmt.Errorf("no finished automatic rejoin yet (%d automatic runs)", len(runs))
		}
		if d := dbOf(statusOf(t, dir), West); d.Role != string(lifeboat.DBReplica) || d.ReplicationState != "streaming" {
			return fmt.Errorf("west's PostgreSQL: %+v", d)
		}
		return nil
	})
	bin := lifeboatBinary(t)
	eventually(t, time.Minute, "readiness: west's standby streams", func() error {
		out, err := exec.Command(bin, "-f", in.Spec, "status", "-o", "json").Output()
		if err != nil {
			return fmt.Errorf("lifeboat status: %v", err)
		}
		var v struct {
			Readiness []monitor.Check `json:"readiness"`
		}
		if err := json.Unmarshal(out, &v); err != nil {
			return err
		}
		for _, c := range v.Readiness {
			if c.Name == monitor.CheckStandbyStreaming && !c.OK {
				return fmt.Errorf("%s: %s", c.Name, c.Reason)
			}
		}
		return nil
	})
	out, err := exec.Command(bin, "-f", in.Spec, "failback", "--yes").CombinedOutput()
	if err != nil {
		t.Fatalf("lifeboat failback: %v\n%s", err, out)
	}
	if err := hasOrder(context.Background(), in.Region(West).Postgres, p.ID); err != nil {
		t.Fatalf("order %d taken in east is not in west's database after the failback: %v", p.ID, err)
	}
	rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	st, err := s.State(rctx)
	cancel()
	if err != nil || st.Active != West {
		t.Fatalf("after the failback: %+v, %v; want active west", st, err)
	}
	eventually(t, time.Minute, "the tenants' failback done", func() error {
		ts := statusOf(t, dir).Tenants
		if ts == nil || ts.Failback == nil || !ts.Failback.Done || ts.Failback.Epoch != st.Epoch {
			return fmt.Errorf("%+v", ts)
		}
		return nil
	})
	all := catalogTenants(t, in, st)
	if len(all) != tenants {
		t.Fatalf("%d tenants after the failback, want %d", len(all), tenants)
	}
	for _, tn := range all {
		home := West
		if tn.Pool == PoolPaidEast {
			home = East
		}
		if tn.Region != home || tn.State != lifeboat.TenantAvailable {
			t.Errorf("tenant %s after the failback: %s in %s, want available in %s", tn.Name, tn.State, tn.Region, home)
		}
	}
	logDecisions(t, dir)
}

// Partition west/east while the witness sees both: no failover, and west
// keeps taking writes. Then west is isolated from everyone: it fences
// itself and east takes over, and at no sampled instant do both databases
// take writes.
func TestMonitorPartitionThenIsolate(t *testing.T) {
	dir, in := monitored(t)
	ctx := context.Background()
	s, spec := openQuorumStore(t, in)
	eventually(t, 30*time.Second, "an order in west", func() error { _, err := order(in.Front); return err })

	// A member cut from etcd's raft leader cannot renew its lease even
	// when a majority is reachable through the witness; with the raft
	// leader in east, a west/east cut would make west lose its quorum and
	// fence itself. The witness leads, as it should in a deployment.
	moveRaftLeader(t, spec, Central)

	fault(t, dir, FaultRequest{Kind: FaultPartition})
	var seen time.Time
	eventually(t, time.Minute, "the leader sees east's view of west failing and decides none", func() error {
		l, ok := leaderOf(statusOf(t, dir))
		if !ok {
			return errors.New("no leader published")
		}
		if l.Decision.Action != "none" || !anyReason(l, "east sees west failing") {
			return fmt.Errorf("leader %s decided %s: %s", l.Region, l.Decision.Action, strings.Join(l.Decision.Reasons, "; "))
		}
		seen = l.DecidedAt
		t.Logf("leader %s during the partition: %s", l.Region, strings.Join(l.Decision.Reasons, "; "))
		return nil
	})
	// Several more decision rounds, counted by the leader's DecidedAt.
	rounds := 0
	eventually(t, time.Minute, "ten more decision rounds", func() error {
		st := statusOf(t, dir)
		l, ok := leaderOf(st)
		if ok && l.DecidedAt.After(seen) {
			if l.Decision.Action != "none" {
				t.Fatalf("leader %s decided %s during the partition: %s", l.Region, l.Decision.Action, strings.Join(l.Decision.Reasons, "; "))
			}
			seen = l.DecidedAt
			rounds++
		}
		if d := dbOf(st, West); d.Fenced || d.Role != "primary" {
			t.Fatalf("west's database during the partition: %+v (west's controller fenced it: did it lose its quorum?)", d)
		}
		if rounds < 10 {
			return fmt.Errorf("%d rounds", rounds)
		}
		return nil
	})
	if runs, err := automaticRuns(ctx, s); err != nil || len(runs) > 0 {
		t.Fatalf("automatic runs during the partition: %v %+v", err, runs)
	}
	if st := statusOf(t, dir); st.Active != West {
		t.Fatalf("active %s after the partition, want west", st.Active)
	}
	eventually(t, 30*time.Second, "an order in west during the partition", func() error {
		p, err := order(in.Front)
		if err == nil && p.Region != West {
			return fmt.Errorf("order taken in %s", p.Region)
		}
		return err
	})

	fault(t, dir, FaultRequest{Kind: FaultHeal})
	eventually(t, time.Minute, "east streams and every observer sees both regions ok after heal", func() error {
		st := statusOf(t, dir)
		if d := dbOf(st, East); d.ReplicationState != "streaming" {
			return fmt.Errorf("east: %+v", d)
		}
		for _, c := range st.Controllers {
			if !c.Published {
				return fmt.Errorf("%s's controller has not published", c.Region)
			}
			for _, v := range c.Views {
				if v.Failing {
					return fmt.Errorf("%s sees %s failing: %s", v.Observer, v.Region, v.Reason)
				}
			}
		}
		return nil
	})

	// The writer: both databases, directly, every 50 ms.
	w := startWriter(t, in)
	w.waitRounds(t, 10)

	fault(t, dir, FaultRequest{Kind: FaultIsolate, Region: West})
	eventually(t, 2*time.Minute, "west fences itself", func() error {
		if d := dbOf(statusOf(t, dir), West); !d.Fenced {
			return fmt.Errorf("west: %+v", d)
		}
		return nil
	})
	failedOverTo(t, dir, s, East)
	w.waitFor(t, "a write accepted by east", func(r writeRound) bool { return r.ok[East] })
	w.waitRounds(t, 20)
	rounds2 := w.stop()

	var both []writeRound
	var westOK, eastOK int
	for _, r := range rounds2 {
		if r.ok[West] && r.ok[East] {
			both = append(both, r)
		}
		if r.ok[West] {
			westOK++
		}
		if r.ok[East] {
			eastOK++
		}
	}
	t.Logf("writer: %d rounds, west accepted %d, east %d, both in %d", len(rounds2), westOK, eastOK, len(both))
	if len(both) > 0 {
		t.Fatalf("both databases accepted writes in %d rounds, first at %s", len(both), both[0].at.Format(time.RFC3339Nano))
	}
	if westOK == 0 || eastOK == 0 {
		t.Fatalf("the writer saw west accept %d and east %d writes: it did not watch the takeover", westOK, eastOK)
	}
	logDecisions(t, dir)
}

func anyReason(c ControllerStatus, s string) bool {
	for _, r := range c.Decision.Reasons {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

// logDecisions logs the controllers' warnings (decisions acted on).
func logDecisions(t *testing.T, dir string) {
	for _, r := range []string{West, East, Central} {
		b, _ := os.ReadFile(controllerLog(dir, r))
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "leader") {
				if len(l) > 400 {
					l = l[:400] + "…"
				}
				lines = append(lines, l)
			}
		}
		t.Logf("%s's controller:\n  %s", r, strings.Join(lines, "\n  "))
	}
}

// moveRaftLeader makes region's etcd member the raft leader.
func moveRaftLeader(t *testing.T, spec *lifeboat.Spec, region string) {
	t.Helper()
	ctx := context.Background()
	eventually(t, 30*time.Second, "etcd's raft leader moved to "+region, func() error {
		var target, leader uint64
		var leaderURL string
		for r, m := range spec.Store.Members {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + m.Client}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				return err
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := cli.Status(sctx, "http://"+m.Client)
			cancel()
			cli.Close()
			if err != nil {
				return fmt.Errorf("%s's member: %w", r, err)
			}
			if r == region {
				target = st.Header.MemberId
			}
			if st.Leader == st.Header.MemberId {
				leader, leaderURL = st.Leader, "http://"+m.Client
			}
		}
		if leader == 0 {
			return errors.New("no raft leader")
		}
		if leader == target {
			return nil
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{leaderURL}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer cli.Close()
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := cli.MoveLeader(mctx, target); err != nil {
			return err
		}
		return errors.New("moved; checking again")
	})
}

type writeRound struct {
	at time.Time
	ok map[string]bool
}

// writer tries a small INSERT on both databases (127.0.0.1 on the host)
// every 50 ms and records which accepted it.
type writer struct {
	mu     sync.Mutex
	rounds []writeRound
	cancel context.CancelFunc
	done   chan struct{}
}

func startWriter(t *testing.T, in *Info) *writer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{cancel: cancel, done: make(chan struct{})}
	t.Cleanup(func() { w.stop() })
	// The table is made on west's primary and reaches east's standby.
	c := connect(ctx, in.Region(West).Postgres)
	if c == nil {
		t.Fatal("the writer cannot connect to west's database")
	}
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS lab_writer (id bigserial PRIMARY KEY, region text NOT NULL, at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	go func() {
		defer close(w.done)
		conns := map[string]*pgx.Conn{}
		defer func() {
			for _, c := range conns {
				c.Close(context.Background())
			}
		}()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			r := writeRound{at: time.Now(), ok: map[string]bool{}}
			after := map[string]*pgx.Conn{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, region := range []string{West, East} {
				wg.Add(1)
				go func(c *pgx.Conn) {
					defer wg.Done()
					if c == nil {
						c = connect(ctx, in.Region(region).Postgres)
					}
					ok := false
					if c != nil {
						actx, cancel := context.WithTimeout(ctx, time.Second)
						_, err := c.Exec(actx, `INSERT INTO lab_writer (region) VALUES ($1)`, region)
						cancel()
						ok = err == nil
						if c.IsClosed() {
							c = nil
						}
					}
					mu.Lock()
					after[region], r.ok[region] = c, ok
					mu.Unlock()
				}(conns[region])
			}
			wg.Wait()
			for region, c := range after {
				if c != nil {
					conns[region] = c
				} else {
					delete(conns, region)
				}
			}
			w.mu.Lock()
			w.rounds = append(w.rounds, r)
			w.mu.Unlock()
		}
	}()
	return w
}

func connect(ctx context.Context, pgAddr string) *pgx.Conn {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	host, p, _ := strings.Cut(pgAddr, ":")
	var n int
	fmt.Sscan(p, &n)
	c, err := pgx.Connect(cctx, postgres.Conninfo(host, n, DBUser, DBPassword, ShopDatabase, "lab-writer"))
	if err != nil {
		return nil
	}
	return c
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.rounds)
}

func (w *writer) waitRounds(t *testing.T, n int) {
	t.Helper()
	target := w.count() + n
	eventually(t, time.Minute, fmt.Sprintf("%d writer rounds", n), func() error {
		if c := w.count(); c < target {
			return fmt.Errorf("%d of %d", c, target)
		}
		return nil
	})
}

func (w *writer) waitFor(t *testing.T, what string, f func(writeRound) bool) {
	t.Helper()
	eventually(t, time.Minute, what, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, r := range w.rounds {
			if f(r) {
				return nil
			}
		}
		return errors.New("not yet")
	})
}

func (w *writer) stop() []writeRound {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]writeRound(nil), w.rounds...)
}
