package tenant

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

func pgURL(c *pgtest.Cluster, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", pgtest.User, pgtest.Password, c.Port, db)
}

// TestPostgres runs everything that needs a real PostgreSQL against one
// cluster (one start keeps the tests fast): the catalog contract, batch
// speed, creating tenants in both isolations, and moves.
func TestPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	pg := pgtest.StartPrimary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, pgURL(pg, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, db := range []string{"catalog", "contract", "paida", "paidb", "trial", "trialb"} {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("catalog", func(t *testing.T) {
		cat, err := OpenPostgres(ctx, DefaultPostgresConfig(pgURL(pg, "contract")))
		if err != nil {
			t.Fatal(err)
		}
		defer cat.Close()
		// Opening again finds the table there.
		again, err := OpenPostgres(ctx, DefaultPostgresConfig(pgURL(pg, "contract")))
		if err != nil {
			t.Fatal(err)
		}
		again.Close()
		catalogContract(t, cat)

		// The bench's target is 500 tenants available within 5 s of a
		// promotion; one batch of 1,000 is one UPDATE. Logged, not asserted.
		var names []string
		for i := range 1000 {
			names = append(names, fmt.Sprintf("t%04d", i))
		}
		start := time.Now()
		n, err := cat.Set(ctx, names, lifeboat.TenantChange{State: lifeboat.TenantAvailable, Region: "west", Epoch: 5})
		if err != nil || n != 1000 {
			t.Fatalf("set = %d, %v", n, err)
		}
		t.Logf("Set of 1,000 tenants: %v", time.Since(start))
	})

	t.Run("unreachable", func(t *testing.T) {
		cfg := DefaultPostgresConfig("postgres://lifeboat@127.0.0.1:1/x?sslmode=disable&connect_timeout=2")
		_, err := OpenPostgres(ctx, cfg)
		if err == nil || !lifeboat.IsRetryable(err) {
			t.Fatalf("open of a closed port: %v, want a retryable error", err)
		}
	})

	spec := testSpec()
	eps := func(db string) map[string]string {
		return map[string]string{"west": pgURL(pg, db), "east": pgURL(pg, db)}
	}
	u := spec.Units["data"]
	for comp, db := range map[string]string{"catalog": "catalog", "paida": "paida", "paidb": "paidb", "trial": "trial", "trialb": "trialb"} {
		d := u.Databases[comp]
		if comp == "trialb" {
			d = u.Databases["trial"]
		}
		d.Endpoints = eps(db)
		u.Databases[comp] = d
	}
	spec.Tenants.Pools["trialb"] = lifeboat.Pool{Database: "data.trialb", Isolation: lifeboat.IsolationSchema}
	tr := spec.Tenants.Tiers["trial"]
	tr.Pools = []string{"trial", "trialb"}
	spec.Tenants.Tiers["trial"] = tr
	st := testState(spec)

	cat, err := OpenCatalog(ctx, spec, st)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	pools := &PostgresPools{Spec: spec}

	exec := func(db, sql string) {
		t.Helper()
		c, err := pgx.Connect(ctx, pgURL(pg, db))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %s: %v", db, sql, err)
		}
	}
	count := func(db, sql string) int {
		t.Helper()
		c, err := pgx.Connect(ctx, pgURL(pg, db))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var n int
		if err := c.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatalf("%s: %s: %v", db, sql, err)
		}
		return n
	}

	t.Run("create and move a database tenant", func(t *testing.T) {
		now := time.Now()
		for _, n := range []string{"acme", "globex"} {
			if _, err := Create(ctx, spec, st, cat, pools, n, "paid", now); err != nil {
				t.Fatal(err)
			}
		}
		// paid1 (data.paida) and paid2 (data.paidb) share one server here,
		// so database names collide: move acme only after checking.
		exec("acme", "CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders SELECT g, 'x' FROM generate_series(1, 100) g")
		// A connected client is ended by the move, not waited for.
		client, err := pgx.Connect(ctx, pgURL(pg, "acme"))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close(context.Background())
		// The two paid pools are one server in this test: a tenant
		// database of the same name exists in the target, and the move
		// refuses to overwrite it.
		_, err = Move(ctx, spec, st, cat, pools, "acme", "paid2", "", now)
		if err == nil || !contains(err.Error(), "already has a database named acme") {
			t.Fatalf("move onto an existing database: %v", err)
		}
		if got := count("acme", "SELECT count(*) FROM orders"); got != 100 {
			t.Fatalf("acme has %d orders after a refused move", got)
		}
	})

	t.Run("create and move a schema tenant", func(t *testing.T) {
		now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
		// Split the trial tier over two schema pools for this test.
		tr := spec.Tenants.Tiers["trial"]
		tr.Placement = lifeboat.PlacementSplit
		spec.Tenants.Tiers["trial"] = tr
		st.Resource(spec, "data", "trialb", "west").Role = lifeboat.DBPrimary
		if _, err := Create(ctx, spec, st, cat, pools, "initech", "trial", now); err != nil {
			t.Fatal(err)
		}
		got, _ := cat.Get(ctx, "initech")
		if got.Pool != "trial" {
			t.Fatalf("initech placed in %s", got.Pool)
		}
		exec("trial", "CREATE TABLE initech.orders (id int PRIMARY KEY); INSERT INTO initech.orders SELECT generate_series(1, 42)")
		// Idempotent: creating the schema again keeps its data.
		if err := pools.CreateTenant(ctx, "trial", "west", "initech"); err != nil {
			t.Fatal(err)
		}
		r, err := Move(ctx, spec, st, cat, pools, "initech", "trialb", "", now)
		if err != nil {
			t.Fatal(err)
		}
		if r.Tenant.Pool != "trialb" || r.Kept != "initech_moved_20260506070809" {
			t.Fatalf("move = %+v", r)
		}
		if n := count("trialb", "SELECT count(*) FROM initech.orders"); n != 42 {
			t.Fatalf("trialb has %d of initech's 42 orders", n)
		}
		if n := count("trial", "SELECT count(*) FROM initech_moved_20260506070809.orders"); n != 42 {
			t.Fatalf("the kept copy has %d of 42 orders", n)
		}
		if n := count("trial", "SELECT count(*) FROM pg_namespace WHERE nspname = 'initech'"); n != 0 {
			t.Fatal("the old schema is still under the tenant's name")
		}
		if c, _ := cat.Get(ctx, "initech"); c.Pool != "trialb" || c.State != lifeboat.TenantAvailable {
			t.Fatalf("catalog after the move: %+v", c)
		}
	})

	t.Run("move a database tenant between servers", func(t *testing.T) {
		other := pgtest.StartPrimary(t)
		d := u.Databases["paidb"]
		d.Endpoints = map[string]string{"west": pgURL(other, "postgres"), "east": pgURL(other, "postgres")}
		u.Databases["paidb"] = d
		pools := &PostgresPools{Spec: spec}
		// Cut short again and again (a context that ends after 1 ms,
		// 2 ms, 4 ms…) until it goes through: after every failed move
		// the tenant is where the catalog says, reachable, whole.
		for d, tries := time.Millisecond, 1; ; d, tries = 2*d, tries+1 {
			cctx, cancel := context.WithTimeout(ctx, d)
			_, err := Move(cctx, spec, st, cat, pools, "acme", "paid2", "", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			cancel()
			if err == nil {
				t.Logf("the move went through on try %d (%s)", tries, d)
				break
			}
			if d > time.Minute {
				t.Fatalf("the move never went through: %v", err)
			}
			a, _ := cat.Get(ctx, "acme")
			if a.Pool == "paid2" {
				break // recorded: the checks below look at it
			}
			if got := count("acme", "SELECT count(*) FROM orders"); got != 100 {
				t.Fatalf("try %d (%s, %v): acme in paid1 has %d orders", tries, d, err, got)
			}
			if c, err := pgx.Connect(ctx, pgURL(other, "acme")); err == nil {
				c.Close(ctx)
				t.Fatalf("try %d (%s): a partial copy of acme is left in paid2", tries, d)
			}
		}
		c, err := pgx.Connect(ctx, pgURL(other, "acme"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 100 {
			t.Fatalf("acme in paid2 has %d orders, %v; want 100", n, err)
		}
		if n := count("acme_moved_20260101000000", "SELECT count(*) FROM orders"); n != 100 {
			t.Fatalf("the kept copy has %d orders", n)
		}
		if _, err := pgx.Connect(ctx, pgURL(pg, "acme")); err == nil {
			t.Fatal("the old copy still answers under the tenant's name")
		}
		a, _ := cat.Get(ctx, "acme")
		if a.Pool != "paid2" || a.Region != "east" {
			t.Fatalf("catalog: %+v", a)
		}
	})

	t.Run("bad names never reach SQL", func(t *testing.T) {
		err := pools.CreateTenant(ctx, "paid1", "west", `x"; DROP DATABASE catalog; --`)
		if !errors.Is(err, ErrBadName) {
			t.Fatalf("create with a hostile name: %v", err)
		}
	})
}
