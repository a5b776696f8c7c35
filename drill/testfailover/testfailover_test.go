package testfailover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lifeboat-dr/lifeboat/drill"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/lab"
)

// The test binary is also the lab's program: 'lab serve' (the daemon) and
// 'lab shop' (the shop instances, the drill unit's among them), as the
// lifeboat binary would be.
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "lab" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		var err error
		switch os.Args[2] {
		case "serve":
			err = lab.Serve(ctx, os.Args[len(os.Args)-1])
		case "shop":
			err = lab.RunShop(ctx)
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

func needPostgres(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(postgres.DefaultBinDir, "postgres")); err != nil {
		t.Skipf("PostgreSQL 15 is not installed in %s: %v", postgres.DefaultBinDir, err)
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			t.Skip("running as root without a postgres user to run PostgreSQL as")
		}
	}
}

// startLab brings a lab up in a temporary directory the postgres user can
// reach, and takes it down when the test ends.
func startLab(t *testing.T) *lab.Info {
	t.Helper()
	needPostgres(t)
	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "lab")
	in, err := lab.Up(context.Background(), lab.Options{Dir: dir, Binary: bin, ReadyTimeout: 2 * time.Minute})
	t.Cleanup(func() {
		if _, err := lab.Down(context.Background(), dir); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func postOrder(t *testing.T, front, item string) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Post("http://"+front+"/orders", "application/json", bytes.NewReader([]byte(fmt.Sprintf(`{"item": %q, "qty": 1}`, item))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /orders through the front door: %s", resp.Status)
	}
}

func countOrders(t *testing.T, addr, item string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM orders WHERE item = $1`, item).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// gone asserts that the unit left nothing: no directory, no process, no
// listener.
func gone(t *testing.T, rep *Report) {
	t.Helper()
	if _, err := os.Stat(rep.Unit.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the drill unit's directory %s is still there (%v)", rep.Unit.Dir, err)
	}
	for what, pid := range map[string]int{"database copy": rep.Unit.DatabasePID, "compute": rep.Unit.ComputePID} {
		if pid != 0 && alive(pid) {
			t.Errorf("the drill unit's %s (PID %d) still runs", what, pid)
		}
	}
	for _, addr := range []string{rep.Unit.Database, rep.Unit.Compute} {
		if addr == "" {
			continue
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("something still listens on the drill unit's %s", addr)
		}
	}
	if len(rep.Left) > 0 {
		t.Errorf("left behind: %v", rep.Left)
	}
}

// A test failover in a real lab: the drill unit stands up in east from a
// snapshot of its standby, takes writes and an order through its own
// compute, and is deleted; production's replication and routes are as
// they were, and the drill's order is nowhere in production. Then a drill
// interrupted while its compute starts still deletes everything.
func TestTestFailoverInTheLab(t *testing.T) {
	in := startLab(t)
	ctx := context.Background()
	for i := range 3 {
		postOrder(t, in.Front, fmt.Sprintf("before-drill-%d", i))
	}
	before, err := lab.LabStatus(ctx, in.Dir)
	if err != nil {
		t.Fatal(err)
	}

	o := DefaultOptions()
	o.Dir = in.Dir
	o.Progress = func(s string) { t.Log(s) }
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	rep := res.Report
	for _, c := range rep.Checks {
		if c.Status != drill.Pass {
			t.Errorf("check %q: %s: %s", c.Name, c.Status, c.Reason)
		}
	}
	if !rep.OK() {
		var b strings.Builder
		_ = rep.Summary(&b, false)
		t.Errorf("the report is not OK:\n%s", b.String())
	}
	if rep.Region != lab.East || rep.Active != lab.West {
		t.Errorf("drill unit in %q with production in %q; want east and west", rep.Region, rep.Active)
	}
	if rep.StandUp.Total <= 0 || rep.Freshness == nil || !rep.Freshness.Measured || rep.Freshness.Staleness > rep.MaxStaleness {
		t.Errorf("stand-up %s, freshness %+v: want both measured, within %s", rep.StandUp.Total, rep.Freshness, rep.MaxStaleness)
	}
	gone(t, rep)

	// The drill's order went into the copy, never into production.
	if rep.ProbeOrder == "" {
		t.Fatal("the report names no order taken by the drill unit")
	}
	if n := countOrders(t, in.Region(lab.West).Postgres, rep.ProbeOrder); n != 0 {
		t.Errorf("the drill's order %s is in production's primary (%d)", rep.ProbeOrder, n)
	}
	if n := countOrders(t, in.Region(lab.West).Postgres, "before-drill-2"); n != 1 {
		t.Errorf("production lost an order during the drill (%d of before-drill-2)", n)
	}

	// Production: the standby streams, nothing moved.
	after, err := lab.LabStatus(ctx, in.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if after.Front.Region != before.Front.Region || after.Front.Epoch != before.Front.Epoch {
		t.Errorf("the front door moved: %s@%d before, %s@%d after", before.Front.Region, before.Front.Epoch, after.Front.Region, after.Front.Epoch)
	}
	for _, db := range after.Databases {
		if db.Region == lab.East && (db.Role != "replica" || db.ReplicationState != "streaming") {
			t.Errorf("east's database after the drill: role %q, replication %q; want a streaming replica", db.Role, db.ReplicationState)
		}
	}
	postOrder(t, in.Front, "after-drill")
	for _, f := range []string{res.JSON, res.HTML} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("report file %s: %v", f, err)
		}
	}

	// Interrupted (as by Ctrl-C) while its compute starts: the copy runs
	// and the compute is starting, and both are deleted all the same.
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	o.Progress = func(s string) {
		t.Log(s)
		if strings.HasPrefix(s, "starting the compute") {
			cancel()
		}
	}
	res, err = Run(ictx, o)
	if err != nil {
		t.Fatal(err)
	}
	rep = res.Report
	if rep.OK() || !strings.Contains(rep.Error, "interrupted") {
		t.Errorf("interrupted drill: OK %v, error %q; want not OK, saying it was interrupted", rep.OK(), rep.Error)
	}
	if rep.Unit.DatabasePID == 0 {
		t.Error("the interrupted drill's database copy never ran: the test interrupted it too early to test the deletion")
	}
	gone(t, rep)
	if n := countOrders(t, in.Region(lab.West).Postgres, "after-drill"); n != 1 {
		t.Errorf("production after two drills: %d of after-drill", n)
	}
}

// The report says what is left and is not OK when something is.
func TestReportLeftBehind(t *testing.T) {
	rep := &Report{Scenario: Scenario, Service: "shop", Region: "east", Active: "west",
		Checks:  []Check{{Name: "the drill unit is deleted", Status: drill.Fail, Reason: "left: x"}},
		Deleted: []string{"compute instance PID 1 on 127.0.0.1:1: stopped"},
		Left:    []string{"database copy PID 2 on 127.0.0.1:2: still running; stop it with 'kill -9 2'"}}
	rep.finish()
	if rep.OK() {
		t.Error("a report with something left behind is OK")
	}
	var b strings.Builder
	if err := rep.Summary(&b, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"LEFT BEHIND", "kill -9 2", "did not stand up", "not measured"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	var h bytes.Buffer
	if err := rep.WriteHTML(&h); err != nil || !strings.Contains(h.String(), "Left behind") {
		t.Errorf("HTML: %v\n%s", err, h.String())
	}
}
