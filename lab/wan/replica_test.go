package wan

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

// TestReplicaThroughLink streams a PostgreSQL standby from its primary
// through a link: Down cuts replication (the standby falls behind and stays
// behind), Heal lets it catch up.
func TestReplicaThroughLink(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary := pgtest.StartPrimary(t, pgtest.Name("west"))
	// Retry the WAL source quickly: the default 5 s would dominate the test.
	standby := pgtest.StartStandby(t, primary, pgtest.Name("east"), pgtest.Setting("wal_retrieve_retry_interval", "100ms"))
	link := openLink(t, fmt.Sprintf("127.0.0.1:%d", primary.Port))

	pc := connect(ctx, t, primary.DSN("postgres"))
	sc := connect(ctx, t, standby.DSN("postgres"))

	// Re-point the standby's WAL receiver at the link: changing
	// primary_conninfo and reloading restarts the receiver.
	conninfo := strings.Replace(primary.ReplicationConninfo("east"), fmt.Sprintf("port=%d", primary.Port), "port="+port(link.Addr()), 1)
	exec(ctx, t, sc, fmt.Sprintf("ALTER SYSTEM SET primary_conninfo = '%s'", strings.ReplaceAll(conninfo, "'", "''")))
	exec(ctx, t, sc, "SELECT pg_reload_conf()")
	linkPort := port(link.Addr())
	waitFor(ctx, t, "the standby to stream through the link", func() bool {
		var status, p string
		err := sc.QueryRow(ctx, "SELECT status, sender_port::text FROM pg_stat_wal_receiver").Scan(&status, &p)
		return err == nil && status == "streaming" && p == linkPort
	})

	exec(ctx, t, pc, "CREATE TABLE t (id int PRIMARY KEY)")
	exec(ctx, t, pc, "INSERT INTO t VALUES (1)")
	waitFor(ctx, t, "row 1 on the standby", func() bool { return has(ctx, sc, 1) })

	if err := link.Down(); err != nil {
		t.Fatal(err)
	}
	// The receiver's connection was closed and reconnecting is refused.
	waitFor(ctx, t, "the primary to lose its walsender", func() bool {
		var n int
		return pc.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'east'").Scan(&n) == nil && n == 0
	})
	exec(ctx, t, pc, "INSERT INTO t VALUES (2)")
	var target string
	if err := pc.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&target); err != nil {
		t.Fatal(err)
	}
	// Row 2 cannot have reached the standby: no walsender serves it.
	if has(ctx, sc, 2) {
		t.Fatal("row 2 reached the standby while the link was down")
	}
	var behind bool
	if err := sc.QueryRow(ctx, "SELECT coalesce(pg_last_wal_receive_lsn() < $1::pg_lsn, true)", target).Scan(&behind); err != nil || !behind {
		t.Fatalf("standby behind the primary while the link is down: %v, %v", behind, err)
	}

	if err := link.Heal(); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "row 2 on the standby after heal", func() bool { return has(ctx, sc, 2) })
}

func connect(ctx context.Context, t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func exec(ctx context.Context, t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func has(ctx context.Context, c *pgx.Conn, id int) bool {
	var n int
	return c.QueryRow(ctx, "SELECT count(*) FROM t WHERE id = $1", id).Scan(&n) == nil && n == 1
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
