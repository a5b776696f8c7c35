package postgres_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

const (
	db   = "shop-storefront-orders"
	west = db + "-west"
	east = db + "-east"
)

// pair is a primary in west streaming to a standby in east, and a driver
// that runs both hosts.
type pair struct {
	west, east *pgtest.Cluster
	cfg        postgres.Config
	d          *postgres.Driver
}

func newPair(t testing.TB, repl *postgres.Replication) *pair {
	t.Helper()
	p := &pair{}
	p.west = pgtest.StartPrimary(t, pgtest.Name(west))
	p.east = pgtest.StartStandby(t, p.west, pgtest.Name(east))
	p.cfg = config(t, p.west, p.east, true)
	if repl != nil {
		p.cfg.Replication[db] = *repl
	}
	var err error
	p.d, err = postgres.New(p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func config(t testing.TB, w, e *pgtest.Cluster, dataDirs bool) postgres.Config {
	cfg := postgres.DefaultConfig()
	cfg.User, cfg.Password = pgtest.User, pgtest.Password
	cfg.ReplicationUser, cfg.ReplicationPassword = pgtest.ReplUser, pgtest.ReplPassword
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	for name, c := range map[string]*pgtest.Cluster{west: w, east: e} {
		n := postgres.Node{Region: name[len(db)+1:], Host: "127.0.0.1", Port: c.Port}
		if dataDirs {
			n.DataDir = c.Dir
		}
		cfg.Nodes[name] = n
	}
	return cfg
}

func target(resource string, epoch uint64) lifeboat.Target {
	region := resource[len(db)+1:]
	return lifeboat.Target{Service: "shop", Unit: "storefront", Component: "orders", Region: region, Resource: resource, Epoch: epoch}
}

func timeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func dial(t testing.TB, ctx context.Context, c *pgtest.Cluster) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec(t testing.TB, ctx context.Context, c *pgtest.Cluster, sql string, args ...any) {
	t.Helper()
	if _, err := dial(t, ctx, c).Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// eventually polls cond until it is true or ctx ends.
func eventually(t testing.TB, ctx context.Context, what string, cond func() (bool, error)) {
	t.Helper()
	var last error
	for {
		ok, err := cond()
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("never happened: %s (last error: %v)", what, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func role(t testing.TB, ctx context.Context, d *postgres.Driver, resource string) lifeboat.DatabaseRole {
	t.Helper()
	st, err := d.Status(ctx, target(resource, 0))
	if err != nil {
		t.Fatalf("status of %s: %v", resource, err)
	}
	return st.Role
}

func wantStale(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, lifeboat.ErrStaleEpoch) || lifeboat.IsRetryable(err) {
		t.Fatalf("want a permanent stale-epoch refusal, got %v (retryable=%v)", err, lifeboat.IsRetryable(err))
	}
}

// caughtUp waits until the standby's replay reaches the primary.
func caughtUp(t testing.TB, ctx context.Context, d *postgres.Driver, standby string) {
	t.Helper()
	eventually(t, ctx, standby+" lag 0", func() (bool, error) {
		ns, err := d.Inspect(ctx, target(standby, 0))
		return err == nil && ns.Role == lifeboat.DBReplica && ns.LagBytes == 0, err
	})
}
