package postgres_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
)

func TestConfigValidation(t *testing.T) {
	cfg := postgres.DefaultConfig()
	cfg.Nodes["shop-a-db-west"] = postgres.Node{Region: "east", Port: 70000, DataDir: "rel"}
	cfg.Replication["other"] = postgres.Replication{Mode: "semi"}
	cfg.FenceGrace = -time.Second
	err := postgres.ValidateConfig(cfg)
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"state-dir is empty", "not the end of its resource name", "host is empty", "not a TCP port",
		"absolute path", `replication mode "semi"`, "no node belongs to it", "fence-grace -1s is negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if _, err := postgres.New(cfg); err == nil || lifeboat.IsRetryable(err) {
		t.Errorf("New with a bad config: %v; want a permanent error", err)
	}
}

func TestStatusAndInspect(t *testing.T) {
	ctx := timeout(t)
	p := newPair(t, nil)
	if r := role(t, ctx, p.d, west); r != lifeboat.DBPrimary {
		t.Fatalf("west is %s, want primary", r)
	}
	if r := role(t, ctx, p.d, east); r != lifeboat.DBReplica {
		t.Fatalf("east is %s, want replica", r)
	}
	exec(t, ctx, p.west, "CREATE TABLE t AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 20000) g")
	caughtUp(t, ctx, p.d, east)

	w, err := p.d.Inspect(ctx, target(west, 0))
	must(t, err)
	e, err := p.d.Inspect(ctx, target(east, 0))
	must(t, err)
	if w.Timeline != 1 || e.Timeline != 1 {
		t.Errorf("timelines west %d east %d, want 1", w.Timeline, e.Timeline)
	}
	if w.SystemID == "" || w.SystemID != e.SystemID {
		t.Errorf("system ids %q and %q differ", w.SystemID, e.SystemID)
	}
	if e.ReplicationState != "streaming" || !strings.HasSuffix(e.Upstream, ":"+strconv.Itoa(p.west.Port)) {
		t.Errorf("east replication %q from %q, want streaming from port %d", e.ReplicationState, e.Upstream, p.west.Port)
	}
	if len(w.Standbys) != 1 || w.Standbys[0].Name != east || w.Standbys[0].State != "streaming" || w.Standbys[0].SyncState != "async" {
		t.Errorf("west's standbys: %+v", w.Standbys)
	}
	if e.ReplayLSN == 0 || e.ReplayLSN > w.CurrentLSN || e.Lag != 0 {
		t.Errorf("east replay %s, west current %s, lag %s", e.ReplayLSN, w.CurrentLSN, e.Lag)
	}
}

func TestPromoteFenceAndStaleEpoch(t *testing.T) {
	ctx := timeout(t)
	p := newPair(t, nil)

	// Failover: fence the old primary (a clean shutdown: Lifeboat runs
	// its host), promote the standby; both again change nothing.
	for range 2 {
		must(t, p.d.Fence(ctx, target(west, 2)))
	}
	if _, running := p.west.PID(); running {
		t.Fatal("west still runs after a fence by shutdown")
	}
	if r := role(t, ctx, p.d, west); r != lifeboat.DBFenced {
		t.Fatalf("west is %s after the fence, want fenced", r)
	}
	for range 2 {
		must(t, p.d.Promote(ctx, target(east, 2)))
	}
	st, err := p.d.Status(ctx, target(east, 2))
	must(t, err)
	if st.Role != lifeboat.DBPrimary || st.Epoch != 2 {
		t.Fatalf("east after promote: %+v", st)
	}
	ns, err := p.d.Inspect(ctx, target(east, 2))
	must(t, err)
	if ns.Timeline != 2 {
		t.Errorf("east timeline %d after promote, want 2", ns.Timeline)
	}
	exec(t, ctx, p.east, "CREATE TABLE after_promote (id int)")

	// The epoch is a fencing token.
	wantStale(t, p.d.Promote(ctx, target(east, 1)))
	wantStale(t, p.d.Fence(ctx, target(west, 1)))
	wantStale(t, p.d.Rejoin(ctx, target(west, 1), target(east, 1)))

	// A driver that does not run the hosts fences by read-only.
	cfg := config(t, p.west, p.east, false)
	remote, err := postgres.New(cfg)
	must(t, err)
	victim := dial(t, ctx, p.east) // a session open before the fence is ended
	must(t, remote.Fence(ctx, target(east, 3)))
	must(t, remote.Fence(ctx, target(east, 3)))
	if r := role(t, ctx, remote, east); r != lifeboat.DBFenced {
		t.Fatalf("east is %s after a read-only fence, want fenced", r)
	}
	if _, err := victim.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("a session opened before the fence still works")
	}
	_, err = dial(t, ctx, p.east).Exec(ctx, "INSERT INTO after_promote VALUES (1)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "25006" {
		t.Fatalf("write on a fenced primary: %v; want read_only_sql_transaction", err)
	}
	// A newer epoch may promote it again, which lifts the fence.
	must(t, remote.Promote(ctx, target(east, 4)))
	exec(t, ctx, p.east, "INSERT INTO after_promote VALUES (1)")

	// Unreachable: retryable.
	p.west.Kill(t)
	err = remote.Fence(ctx, target(west, 4))
	if err == nil || !lifeboat.IsRetryable(err) {
		t.Fatalf("fence of an unreachable node: %v; want a retryable error", err)
	}
}

// A primary that was down when it was fenced (its region was lost) comes
// back read-only whoever starts it, so it cannot take writes next to the
// new primary; a rejoin then makes it a standby that takes the new
// primary's writes.
func TestFencedWhileDownComesBackReadOnly(t *testing.T) {
	ctx := timeout(t)
	p := newPair(t, nil)
	exec(t, ctx, p.west, "CREATE TABLE t (id int)")
	caughtUp(t, ctx, p.d, east)
	p.west.Kill(t)
	must(t, p.d.Fence(ctx, target(west, 2)))
	must(t, p.d.Promote(ctx, target(east, 2)))
	p.west.Start(t) // the region comes back; someone starts its postgres
	_, err := dial(t, ctx, p.west).Exec(ctx, "INSERT INTO t VALUES (1)")
	var pgErr interface{ SQLState() string }
	if !errors.As(err, &pgErr) || pgErr.SQLState() != "25006" {
		t.Fatalf("a write on the old primary after it came back: %v; want read-only (25006)", err)
	}
	if r := role(t, ctx, p.d, west); r != lifeboat.DBFenced {
		t.Fatalf("old primary after it came back is %s, want fenced", r)
	}
	exec(t, ctx, p.east, "INSERT INTO t VALUES (2)")
	must(t, p.d.Rejoin(ctx, target(west, 2), target(east, 2)))
	eventually(t, ctx, "the rejoined node has the new primary's write", func() (bool, error) {
		var n int
		err := dial(t, ctx, p.west).QueryRow(ctx, "SELECT count(*) FROM t WHERE id = 2").Scan(&n)
		return n == 1, err
	})
	if r := role(t, ctx, p.d, west); r != lifeboat.DBReplica {
		t.Fatalf("after rejoin: %s, want replica", r)
	}
}
