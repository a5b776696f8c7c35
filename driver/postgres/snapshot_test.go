package postgres_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

// A snapshot of a standby comes up as a primary of its own, with the data
// the standby had, takes writes that reach neither the standby nor the
// primary, and leaves the primary's replication as it was.
func TestSnapshotOfStandbyIsIndependent(t *testing.T) {
	p := newPair(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pw := snapshotConnect(t, ctx, p.west.DSN("postgres"))
	if _, err := pw.Exec(ctx, `CREATE TABLE orders (id int PRIMARY KEY, item text)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Exec(ctx, `INSERT INTO orders VALUES (1, 'before')`); err != nil {
		t.Fatal(err)
	}
	var lsn string
	if err := pw.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	pe := snapshotConnect(t, ctx, p.east.DSN("postgres"))
	snapshotWait(t, "the standby to replay the row", func() bool {
		var ok bool
		return pe.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, lsn).Scan(&ok) == nil && ok
	})

	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port, err := postgres.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cp := &postgres.Instance{DataDir: filepath.Join(base, "copy"), Host: "127.0.0.1", Port: port, Name: "drill"}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cp.Stop(c, "immediate"); err != nil {
			_ = cp.Kill(c)
		}
	})
	if err := postgres.StartSnapshot(ctx, cp, p.east.ReplicationConninfo("drill")); err != nil {
		t.Fatal(err)
	}
	if cp.IsStandbyConfigured() {
		t.Error("the copy has standby.signal")
	}
	pc := snapshotConnect(t, ctx, cp.DSN(pgtest.User, pgtest.Password, "postgres"))
	var inRecovery bool
	var conninfo string
	if err := pc.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('primary_conninfo')`).Scan(&inRecovery, &conninfo); err != nil {
		t.Fatal(err)
	}
	if inRecovery || conninfo != "" {
		t.Errorf("copy: in recovery %v, primary_conninfo %q; want a primary that follows nobody", inRecovery, conninfo)
	}
	var n int
	if err := pc.QueryRow(ctx, `SELECT count(*) FROM orders WHERE item = 'before'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("the copy has %d rows 'before' (%v); want the standby's data", n, err)
	}
	if _, err := pc.Exec(ctx, `INSERT INTO orders VALUES (2, 'drill')`); err != nil {
		t.Fatalf("the copy does not take writes: %v", err)
	}
	// Something the primary writes after the snapshot still reaches the
	// standby, never the copy; the copy's row reaches neither.
	if _, err := pw.Exec(ctx, `INSERT INTO orders VALUES (3, 'after')`); err != nil {
		t.Fatal(err)
	}
	snapshotWait(t, "the standby to replay the row written after the snapshot", func() bool {
		var n int
		return pe.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = 3`).Scan(&n) == nil && n == 1
	})
	var state string
	if err := pw.QueryRow(ctx, `SELECT state FROM pg_stat_replication WHERE application_name = $1`, east).Scan(&state); err != nil || state != "streaming" {
		t.Errorf("the primary's standby %s: state %q (%v); want streaming", east, state, err)
	}
	for name, c := range map[string]*pgx.Conn{"primary": pw, "standby": pe} {
		if err := c.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = 2`).Scan(&n); err != nil || n != 0 {
			t.Errorf("the copy's row is on the %s (%d, %v)", name, n, err)
		}
	}
	if err := pc.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = 3`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the primary's later row reached the copy (%d, %v)", n, err)
	}
	if err := cp.Snapshot(ctx, p.east.ReplicationConninfo("drill")); err == nil {
		t.Error("a snapshot into a data dir that holds a cluster: no error")
	}
}

func snapshotConnect(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func snapshotWait(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
