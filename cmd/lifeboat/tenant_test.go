package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

	// 'lifeboat serve' hosts the tenants' gate: a PostgreSQL client reaches
	// its tenant where the catalog says it is now, by the database name.
	gateAddr := freeAddr(t)
	f, err := os.OpenFile(filepath.Join(dir, "lifeboat.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "  gate: {listen: %s, wait: 2s}\n", gateAddr)
	f.Close()
	mustRun(t, dir, "validate")
	cmd := exec.Command(binary, "serve")
	cmd.Dir = dir
	out := &syncWriter{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	through := func(db string) (int, error) {
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=5", pgtest.User, pgtest.Password, gateAddr, db))
		if err != nil {
			return 0, err
		}
		defer c.Close(context.Background())
		n := 0
		err = c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n)
		return n, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := through("acme")
		if err == nil {
			if n != 25 {
				t.Fatalf("acme through the gate has %d orders; want its 25 in paid2", n)
			}
			break
		}
		select {
		case <-exited:
			t.Fatalf("lifeboat serve exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("acme through the gate: %v\n%s", err, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := through("nobody"); err == nil || !strings.Contains(err.Error(), "3D000") {
		t.Errorf("an unknown tenant through the gate: %v; want SQLSTATE 3D000", err)
	}
}

// syncWriter lets a process's stdout and stderr share one buffer that the
// test may read while the process writes.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
