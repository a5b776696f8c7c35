package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
)

// The test binary is also the lab's program: 'lab serve' (the daemon, which
// Up starts as a real detached process) and 'lab shop' (the shop instances
// the daemon's process driver starts from a copy of it), as the lifeboat
// binary would be.
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "lab" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		var err error
		switch os.Args[2] {
		case "serve":
			err = Serve(ctx, os.Args[len(os.Args)-1])
		case "shop":
			err = RunShop(ctx)
		default:
			err = fmt.Errorf("unknown lab command %q", os.Args[2])
		}
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// labDir returns a directory for a lab that the postgres user can reach
// (t.TempDir and its parent are root-only).
func labDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(base, "lab")
}

func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type placed struct {
	ID     int64  `json:"id"`
	Region string `json:"region"`
}

func order(front string) (placed, error) {
	var p placed
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Post("http://"+front+"/orders", "application/json", bytes.NewReader([]byte(`{"item":"tea","qty":2}`)))
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return p, fmt.Errorf("POST /orders: %s", resp.Status)
	}
	return p, json.NewDecoder(resp.Body).Decode(&p)
}

func hasOrder(ctx context.Context, pgAddr string, id int64) error {
	host, p, _ := net.SplitHostPort(pgAddr)
	n, _ := strconv.Atoi(p)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, postgres.Conninfo(host, n, DBUser, DBPassword, ShopDatabase, "lab-test"))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	var got int64
	return c.QueryRow(ctx, `SELECT id FROM orders WHERE id = $1`, id).Scan(&got)
}

func TestUpOrderDown(t *testing.T) {
	dir := labDir(t)
	ctx := context.Background()
	in, err := Up(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, tail(logPath(dir), 40))
	}
	downed := false
	t.Cleanup(func() {
		if !downed {
			if rep, err := Down(context.Background(), dir); err != nil {
				t.Errorf("lab down (cleanup): %v (%+v)", err, rep)
			}
		}
		if t.Failed() {
			t.Logf("lab.log:\n%s", tail(logPath(dir), 60))
		}
	})
	t.Logf("lab up to ready: %s (target 20s)", in.Ready.Round(time.Millisecond))
	for _, r := range in.Regions {
		if r.PortBase+r.Ports > 32768 {
			t.Errorf("region %s port block %d+%d reaches the ephemeral range", r.Name, r.PortBase, r.Ports)
		}
	}

	// The spec the lab wrote is valid.
	if _, diags, err := config.Load(in.Spec); err != nil || diags.HasErrors() {
		t.Fatalf("the lab's spec does not validate: %v %v", err, diags)
	}
	// The agent answers.
	resp, err := http.Get(in.URL + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/health: %s", resp.Status)
	}

	// An order through the front door lands on west's primary, then on
	// east's standby.
	var p placed
	eventually(t, 30*time.Second, "POST /orders through the front", func() (err error) { p, err = order(in.Front); return err })
	if p.Region != West {
		t.Fatalf("order %d taken in %q, want west", p.ID, p.Region)
	}
	if err := hasOrder(ctx, in.Region(West).Postgres, p.ID); err != nil {
		t.Fatalf("order %d not on west's primary: %v", p.ID, err)
	}
	eventually(t, 30*time.Second, "the order replicated to east", func() error { return hasOrder(ctx, in.Region(East).Postgres, p.ID) })

	faults(t, dir, in)

	// lab up on a running lab says so.
	again, err := Up(ctx, Options{Dir: dir})
	if err != nil || !again.AlreadyRunning {
		t.Fatalf("second lab up: %v (already running: %v)", err, again != nil && again.AlreadyRunning)
	}

	st, err := LabStatus(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := RecordedPIDs(dir)
	if err != nil {
		t.Fatal(err)
	}
	pids := append(append([]int{in.PID}, st.PIDs...), recorded...)
	if len(st.PIDs) < 4 { // two postmasters, two west instances
		t.Fatalf("status lists %d PIDs, want at least 4: %+v", len(st.PIDs), st)
	}

	rep, err := Down(ctx, dir)
	downed = true
	if err != nil {
		t.Fatalf("lab down: %v (%+v)", err, rep)
	}
	t.Logf("lab down took %s", rep.Took.Round(time.Millisecond))
	if len(rep.Leftovers) > 0 {
		t.Errorf("the daemon left processes behind that Down had to kill: %+v", rep.Leftovers)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("PID %d still runs after lab down", pid)
		}
	}
	for _, r := range in.Regions {
		for port := r.PortBase; port < r.PortBase+r.Ports; port++ {
			if c, err := net.DialTimeout("tcp", addr(port), time.Second); err == nil {
				c.Close()
				t.Errorf("port %d (%s's block) still accepts connections after lab down", port, r.Name)
			}
		}
	}
	if _, err := os.Stat(pidPath(dir)); !os.IsNotExist(err) {
		t.Errorf("lab.pid is still there after lab down: %v", err)
	}
}

func statusOf(t *testing.T, dir string) *Status {
	t.Helper()
	st, err := LabStatus(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func dbOf(st *Status, region string) DatabaseStatus {
	for _, d := range st.Databases {
		if d.Region == region {
			return d
		}
	}
	return DatabaseStatus{}
}

func fault(t *testing.T, dir string, req FaultRequest) {
	t.Helper()
	res, err := Fault(context.Background(), dir, req)
	if err != nil {
		t.Fatalf("fault %+v: %v", req, err)
	}
	t.Logf("fault %s %s: %v", req.Kind, req.Region, res.Done)
}

// faults injects each kind of fault into a running lab and checks its
// effect and that heal undoes it.
func faults(t *testing.T, dir string, in *Info) {
	ctx := context.Background()
	healed := func() {
		fault(t, dir, FaultRequest{Kind: FaultHeal})
		eventually(t, 30*time.Second, "east streams again after heal", func() error {
			if d := dbOf(statusOf(t, dir), East); d.ReplicationState != "streaming" {
				return fmt.Errorf("east: %+v", d)
			}
			return nil
		})
	}

	// Partition: replication stops, the front still takes orders in west;
	// after heal the order reaches east.
	fault(t, dir, FaultRequest{Kind: FaultPartition})
	eventually(t, 30*time.Second, "east stops streaming in a partition", func() error {
		if d := dbOf(statusOf(t, dir), East); d.ReplicationState == "streaming" {
			return fmt.Errorf("east still streams: %+v", d)
		}
		return nil
	})
	var p placed
	eventually(t, 30*time.Second, "an order in west during the partition", func() (err error) { p, err = order(in.Front); return err })
	healed()
	eventually(t, 30*time.Second, "the partition's order replicated to east", func() error { return hasOrder(ctx, in.Region(East).Postgres, p.ID) })

	// Latency on the links between the regions.
	fault(t, dir, FaultRequest{Kind: FaultLatency, Latency: "20ms"})
	for _, l := range statusOf(t, dir).Links {
		want := ""
		if l.Name == linkPGEastToWest || l.Name == linkPGWestToEast {
			want = "latency"
		}
		if l.Fault != want {
			t.Errorf("link %s has fault %q, want %q", l.Name, l.Fault, want)
		}
	}
	healed()

	// Region down: west's shop and database are gone, the front cannot
	// reach west; heal starts them again as they were.
	fault(t, dir, FaultRequest{Kind: FaultRegionDown, Region: West})
	st := statusOf(t, dir)
	if d := dbOf(st, West); d.Running || d.PID != 0 {
		t.Errorf("west's PostgreSQL still runs after region-down: %+v", d)
	}
	for _, ss := range st.ScaleSets {
		if ss.Region == West && len(ss.Instances) != 0 {
			t.Errorf("west still has shop instances after region-down: %+v", ss.Instances)
		}
	}
	if _, err := order(in.Front); err == nil {
		t.Errorf("an order went through while west, the active region, is down")
	}
	fault(t, dir, FaultRequest{Kind: FaultHeal})
	eventually(t, 30*time.Second, "west's PostgreSQL back after heal", func() error {
		if d := dbOf(statusOf(t, dir), West); !d.Running || d.Role != "primary" {
			return fmt.Errorf("west: %+v", d)
		}
		return nil
	})
	eventually(t, 30*time.Second, "an order after west came back", func() (err error) { p, err = order(in.Front); return err })
	eventually(t, 30*time.Second, "east streams after west came back", func() error {
		if d := dbOf(statusOf(t, dir), East); d.ReplicationState != "streaming" {
			return fmt.Errorf("east: %+v", d)
		}
		return nil
	})

	// A fault the lab does not know is refused, not retried.
	if _, err := Fault(ctx, dir, FaultRequest{Kind: "meteor"}); err == nil || lifeboat.IsRetryable(err) {
		t.Errorf("an unknown fault: %v, want a permanent error", err)
	}
}

// A daemon that dies without cleaning up (SIGKILL) leaves PostgreSQL
// running; lab down finds and stops it, and says so.
func TestDownAfterDaemonCrash(t *testing.T) {
	dir := labDir(t)
	ctx := context.Background()
	in, err := Up(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, tail(logPath(dir), 40))
	}
	st := statusOf(t, dir)
	if err := syscall.Kill(in.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the daemon gone", func() error {
		if alive(in.PID) {
			return fmt.Errorf("PID %d alive", in.PID)
		}
		return nil
	})
	rep, err := Down(ctx, dir)
	if err != nil {
		t.Fatalf("lab down: %v (%+v)", err, rep)
	}
	t.Logf("leftovers: %+v", rep.Leftovers)
	postmasters := 0
	for _, l := range rep.Leftovers {
		for _, d := range st.Databases {
			if l.PID == d.PID {
				postmasters++
			}
		}
	}
	if postmasters != 2 {
		t.Errorf("lab down reported %d of the 2 postmasters the dead daemon left: %+v", postmasters, rep.Leftovers)
	}
	for _, pid := range append(st.PIDs, in.PID) {
		if alive(pid) {
			t.Errorf("PID %d still runs after lab down", pid)
		}
	}
	if ports := listeningPorts(ctx, in, 0); len(ports) > 0 {
		t.Errorf("ports still listening after lab down: %v", ports)
	}
}

func TestReplicationOptions(t *testing.T) {
	o := DefaultOptions()
	o.Replication = "semi-sync"
	if err := ValidateOptions(o); err == nil || !strings.Contains(err.Error(), "use async or sync") {
		t.Errorf("a bad replication: %v", err)
	}
	o.Replication, o.DegradeAfter = "async", time.Second
	if err := ValidateOptions(o); err == nil || !strings.Contains(err.Error(), "only to --replication sync") {
		t.Errorf("degrade-after with async: %v", err)
	}
	o.Replication = "sync"
	if err := ValidateOptions(o); err != nil {
		t.Errorf("sync with degrade-after: %v", err)
	}
}
