package pgbackend

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
)

func pgURL(port int, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s", pgtest.User, pgtest.Password, port, db)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// endpoints of one pool database: URL by region.
type endpoints map[string]string

// testSpec is west primary, east secondary, with no pools; addPool adds
// them.
func testSpec() *lifeboat.Spec {
	return &lifeboat.Spec{
		Regions:    lifeboat.Regions{Primary: lifeboat.Region{Name: "west"}, Secondary: lifeboat.Region{Name: "east"}},
		Objectives: lifeboat.Objectives{RTO: lifeboat.Duration(time.Hour), RPO: lifeboat.Duration(time.Hour)},
		Units:      map[string]lifeboat.Unit{"data": {Databases: map[string]lifeboat.Database{}}},
		Tenants: &lifeboat.Tenants{Catalog: "data.catalog", Batch: 20, Concurrency: 4,
			Pools: map[string]lifeboat.Pool{}, Tiers: map[string]lifeboat.Tier{}},
	}
}

// addPool adds a database component, a pool and a tier, all named name.
// geo-replicate pools are geo-replica databases; geo-restore ones backup.
func addPool(spec *lifeboat.Spec, name string, iso lifeboat.TenantIsolation, strategy lifeboat.TenantStrategy, priority int, eps endpoints) {
	mode := lifeboat.DRGeoReplica
	if strategy == lifeboat.StrategyGeoRestore {
		mode = lifeboat.DRBackup
	}
	spec.Units["data"].Databases[name] = lifeboat.Database{Engine: "postgres", DRMode: mode, Endpoints: eps}
	spec.Tenants.Pools[name] = lifeboat.Pool{Database: "data." + name, Isolation: iso}
	spec.Tenants.Tiers[name] = lifeboat.Tier{Pool: name, Strategy: strategy, Priority: priority, BackupInterval: lifeboat.Duration(time.Hour)}
}

func connect(t testing.TB, u string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(testCtx(t), u)
	if err != nil {
		t.Fatalf("connect %s: %v", u, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func mustExec(t testing.TB, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(testCtx(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// rows of a tenant: the ids in its table "items", in order.
func rows(t testing.TB, u string) []int {
	t.Helper()
	c := connect(t, u)
	var ids []int
	if err := c.QueryRow(testCtx(t), `SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM items`).Scan(&ids); err != nil {
		t.Fatalf("rows at %s: %v", u, err)
	}
	return ids
}

// seedDatabaseTenants creates n tenant databases on the cluster at port,
// each with rows ids 1..k in table items.
func seedDatabaseTenants(t testing.TB, port int, names []string, k int) {
	t.Helper()
	admin := connect(t, pgURL(port, "postgres"))
	for _, n := range names {
		mustExec(t, admin, `CREATE DATABASE `+pgx.Identifier{n}.Sanitize())
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := pgx.Connect(testCtx(t), pgURL(port, n))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(context.Background())
			if _, err := c.Exec(testCtx(t), `CREATE TABLE items (id int PRIMARY KEY, note text); INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, `+fmt.Sprint(k)+`) g`); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

// seedSchemaTenants creates the pool database db with a schema per
// tenant, each with rows 1..k in items.
func seedSchemaTenants(t testing.TB, port int, db string, names []string, k int) {
	t.Helper()
	admin := connect(t, pgURL(port, "postgres"))
	var there bool
	_ = admin.QueryRow(testCtx(t), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&there)
	if !there {
		mustExec(t, admin, `CREATE DATABASE `+pgx.Identifier{db}.Sanitize())
	}
	c := connect(t, pgURL(port, db))
	for _, n := range names {
		id := pgx.Identifier{n}.Sanitize()
		mustExec(t, c, fmt.Sprintf(`CREATE SCHEMA %s; CREATE TABLE %s.items (id int PRIMARY KEY, note text); INSERT INTO %s.items SELECT g, 'row ' || g FROM generate_series(1, %d) g`, id, id, id, k))
	}
}

func schemaRows(t testing.TB, u, schema string) []int {
	t.Helper()
	c := connect(t, u)
	var ids []int
	if err := c.QueryRow(testCtx(t), `SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM `+pgx.Identifier{schema, "items"}.Sanitize()).Scan(&ids); err != nil {
		t.Fatalf("rows of %s at %s: %v", schema, u, err)
	}
	return ids
}

func seq(n int) []int {
	out := make([]int, n)
	for k := range out {
		out[k] = k + 1
	}
	return out
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for k := range out {
		out[k] = fmt.Sprintf("%s%03d", prefix, k)
	}
	return out
}

// backupDirs makes the two regions' backup dirs.
func backupDirs(t testing.TB) map[string]string {
	base := t.TempDir()
	return map[string]string{"west": filepath.Join(base, "west"), "east": filepath.Join(base, "east")}
}

// labDir is a dir the postgres OS user can use (t.TempDir is root-only).
func labDir(t testing.TB) string {
	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(base, "pools")
}

// freeURL is an endpoint on a free port of 127.0.0.1 for a pool that does
// not exist yet.
func freeURL(t testing.TB, db string) string {
	port, err := postgres.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return pgURL(port, db)
}

// backupAll takes one backup of every geo-restore tenant in cat.
func backupAll(t testing.TB, spec *lifeboat.Spec, cat *tenant.MemoryCatalog, dirs map[string]string, now time.Time) backup.Result {
	t.Helper()
	s, err := backup.NewScheduler(backup.Config{Spec: spec, Dirs: dirs, Concurrency: 4, Now: func() time.Time { return now }}, cat, &backup.PgDump{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Tick(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for n, err := range r.Failed {
		t.Fatalf("backup of %s: %v", n, err)
	}
	return r
}

func addTenants(t testing.TB, cat *tenant.MemoryCatalog, tier, region string, ns []string) {
	t.Helper()
	for _, n := range ns {
		if err := cat.Create(context.Background(), lifeboat.Tenant{Name: n, Tier: tier, Pool: tier, Region: region, Epoch: 1, State: lifeboat.TenantAvailable}); err != nil {
			t.Fatal(err)
		}
	}
}
