package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

// TestTenantCommands runs 'lifeboat tenant' end to end against real
// PostgreSQL servers: one holds the catalog, the paid1 pool (a database per
// tenant) and the trial pool (a schema per tenant); the other holds paid2.
func TestTenantCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	one, two := pgtest.StartPrimary(t), pgtest.StartPrimary(t)
	url := func(c *pgtest.Cluster, db string) string {
		return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", pgtest.User, pgtest.Password, c.Port, db)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sql := func(c *pgtest.Cluster, db, q string) int {
		t.Helper()
		conn, err := pgx.Connect(ctx, url(c, db))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		n := 0
		if strings.HasPrefix(q, "SELECT") {
			err = conn.QueryRow(ctx, q).Scan(&n)
		} else {
			_, err = conn.Exec(ctx, q)
		}
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	sql(one, "postgres", "CREATE DATABASE catalog")
	sql(one, "postgres", "CREATE DATABASE trial")

	eps := func(c *pgtest.Cluster, db string) string {
		return fmt.Sprintf("{west: %q, east: %q}", url(c, db), url(c, db))
	}
	spec := `service: shop
regions:
  primary: {name: west}
  secondary: {name: east}
objectives: {rto: 5m, rpo: 30s}
units:
  data:
    databases:
      catalog: {engine: postgres, dr-mode: geo-replica, endpoints: ` + eps(one, "catalog") + `}
      paida: {engine: postgres, dr-mode: geo-replica, endpoints: ` + eps(one, "postgres") + `}
      paidb: {engine: postgres, dr-mode: geo-replica, endpoints: ` + eps(two, "postgres") + `}
      trial: {engine: postgres, dr-mode: backup, backup-interval: 15m, endpoints: ` + eps(one, "trial") + `}
tenants:
  catalog: data.catalog
  pools:
    paid1: {database: data.paida}
    paid2: {database: data.paidb, region: east}
    trial: {database: data.trial, isolation: schema}
  tiers:
    paid: {placement: split, pools: [paid1, paid2], strategy: geo-replicate, priority: 1}
    trial: {pool: trial, strategy: geo-restore, priority: 2, backup-interval: 15m, objectives: {rto: 4h, rpo: 1h}}
`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lifeboat.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := lifeboatIn(t, dir, nil, "validate"); r.code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r := mustRun(t, dir, "tenant", "create", "acme", "--tier", "paid")
	if !strings.Contains(r.stdout, "tenant acme (paid) created in pool paid1, region west, at epoch 1: available") {
		t.Fatalf("create acme said:\n%s", r.stdout)
	}
	if n := sql(one, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'acme'"); n != 1 {
		t.Fatal("acme's database was not created in paid1")
	}
	// Split placement: the next paid tenant goes to the other pool.
	var globex lifeboat.Tenant
	r = mustRun(t, dir, "tenant", "create", "globex", "--tier", "paid", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &globex); err != nil || globex.Pool != "paid2" {
		t.Fatalf("globex: %+v, %v\n%s", globex, err, r.stdout)
	}
	mustRun(t, dir, "tenant", "create", "initech", "--tier", "trial")
	if n := sql(one, "trial", "SELECT count(*) FROM pg_namespace WHERE nspname = 'initech'"); n != 1 {
		t.Fatal("initech's schema was not created in the trial pool")
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tenant", "create", "acme", "--tier", "paid"}, exitFailed, "acme is in the catalog already"},
		{[]string{"tenant", "create", "Bad-Name", "--tier", "paid"}, exitSpec, "e.g. bad_name"},
		{[]string{"tenant", "create", "hooli", "--tier", "gold"}, exitSpec, "use --tier with one of: paid, trial"},
		{[]string{"tenant", "create", "hooli"}, exitSpec, "tier"},
		{[]string{"tenant", "show", "nobody"}, exitFailed, `no such tenant "nobody"`},
		{[]string{"tenant", "list", "--state", "lost"}, exitSpec, "use available, queued"},
		{[]string{"tenant", "move", "acme", "--pool", "trial"}, exitRefused, "not a pool of tier paid"},
		{[]string{"tenant", "move", "acme", "--pool", "paid9"}, exitSpec, "pools: paid1, paid2, trial"},
	} {
		r := lifeboatIn(t, dir, nil, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("lifeboat %s: exit %d, want %d with %q\nstderr: %s", strings.Join(c.args, " "), r.code, c.code, c.want, r.stderr)
		}
	}

	r = mustRun(t, dir, "tenant", "list")
	for _, want := range []string{"NAME", "acme", "globex", "initech", "3 tenants: 3 available"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("tenant list lacks %q:\n%s", want, r.stdout)
		}
	}
	var ts []lifeboat.Tenant
	// paid2 is placed in east, so it starts primary there (Spec.HomeOf):
	// split placement puts globex's primary in east.
	r = mustRun(t, dir, "tenant", "list", "--tier", "paid", "--region", "west", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &ts); err != nil || len(ts) != 1 || ts[0].Name != "acme" {
		t.Fatalf("list --tier paid --region west: %v\n%s", err, r.stdout)
	}
	r = mustRun(t, dir, "tenant", "list", "--tier", "paid", "--region", "east", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &ts); err != nil || len(ts) != 1 || ts[0].Name != "globex" {
		t.Fatalf("list --tier paid --region east: %v\n%s", err, r.stdout)
	}
	r = mustRun(t, dir, "tenant", "show", "initech")
	if !strings.Contains(r.stdout, "a schema per tenant") || !strings.Contains(r.stdout, "geo-restore") {
		t.Fatalf("show initech:\n%s", r.stdout)
	}

	// A planned move of acme to paid2, on the other server; its rows go
	// with it, the old copy is kept renamed.
	sql(one, "acme", "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 25)")
	r = mustRun(t, dir, "tenant", "move", "acme", "--pool", "paid2")
	if !strings.Contains(r.stdout, "moved from pool paid1 (west) to pool paid2") || !strings.Contains(r.stdout, "kept as acme_moved_") {
		t.Fatalf("move said:\n%s", r.stdout)
	}
	if n := sql(two, "acme", "SELECT count(*) FROM orders"); n != 25 {
		t.Fatalf("acme has %d of 25 orders in paid2", n)
	}
	if n := sql(one, "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'acme_moved_%'"); n != 1 {
		t.Fatal("the old copy of acme was not kept")
	}
	var acme lifeboat.Tenant
	r = mustRun(t, dir, "tenant", "show", "acme", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &acme); err != nil || acme.Pool != "paid2" || acme.State != lifeboat.TenantAvailable {
		t.Fatalf("acme after the move: %+v, %v", acme, err)
	}
}
