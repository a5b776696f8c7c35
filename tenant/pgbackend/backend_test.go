package pgbackend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// TestBackupShipAndRestore: database- and schema-isolated tenants backed
// up on west land in east's directory with a latest pointer and a valid
// checksum; restored into east they hold exactly the rows of the backup
// (not those written after it); a second restore changes nothing; a
// corrupted backup is refused.
func TestBackupShipAndRestore(t *testing.T) {
	west := pgtest.StartPrimary(t, pgtest.Name("west"))
	east := pgtest.StartPrimary(t, pgtest.Name("east"))
	spec := testSpec()
	addPool(spec, "basic", lifeboat.IsolationDatabase, lifeboat.StrategyGeoRestore, 2, endpoints{"west": pgURL(west.Port, "postgres"), "east": pgURL(east.Port, "postgres")})
	addPool(spec, "trial", lifeboat.IsolationSchema, lifeboat.StrategyGeoRestore, 3, endpoints{"west": pgURL(west.Port, "trial"), "east": pgURL(east.Port, "trial")})
	dbs, schemas := names("b", 2), names("s", 3)
	seedDatabaseTenants(t, west.Port, dbs, 50)
	seedSchemaTenants(t, west.Port, "trial", schemas, 30)
	cat := tenant.NewMemoryCatalog()
	addTenants(t, cat, "basic", "west", dbs)
	addTenants(t, cat, "trial", "west", schemas)
	dirs := backupDirs(t)

	r := backupAll(t, spec, cat, dirs, t0)
	if len(r.Taken) != 5 {
		t.Fatalf("%d backups taken, want 5", len(r.Taken))
	}
	for _, b := range r.Taken {
		if !strings.HasPrefix(b.Path, dirs["east"]+"/"+b.Tenant+"/") {
			t.Fatalf("backup of %s at %s, not in east's dir %s", b.Tenant, b.Path, dirs["east"])
		}
		l, err := backup.NewStore(dirs["east"]).Latest(b.Tenant)
		if err != nil || l != b {
			t.Fatalf("latest of %s = %+v, %v; want %+v", b.Tenant, l, err, b)
		}
		if err := backup.Verify(l); err != nil {
			t.Fatal(err)
		}
	}
	// Written after the backup: lost with west (beyond the backup point).
	mustExec(t, connect(t, pgURL(west.Port, "b000")), `INSERT INTO items VALUES (51, 'late')`)
	mustExec(t, connect(t, pgURL(west.Port, "trial")), `INSERT INTO s000.items VALUES (31, 'late')`)

	be, err := New(Config{Spec: spec, Backups: dirs, Provisioner: &Command{Argv: []string{"true"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ctx := testCtx(t)
	for _, p := range []string{"basic", "trial"} {
		if err := be.CreatePool(ctx, p, "east"); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // the second time, each is found done
		for _, n := range dbs {
			if err := be.Restore(ctx, "basic", "east", n); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range schemas[:2] {
			if err := be.Restore(ctx, "trial", "east", n); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range dbs {
		if got := rows(t, pgURL(east.Port, n)); !slices.Equal(got, seq(50)) {
			t.Fatalf("restored %s has rows %v, want 1..50", n, got)
		}
	}
	for _, n := range schemas[:2] {
		if got := schemaRows(t, pgURL(east.Port, "trial"), n); !slices.Equal(got, seq(30)) {
			t.Fatalf("restored %s has rows %v, want 1..30", n, got)
		}
	}

	// A newer backup does not overwrite a copy restored from an older one:
	// it may have taken writes since.
	backupAll(t, spec, cat, dirs, t0.Add(time.Hour))
	if err := be.Restore(ctx, "basic", "east", "b001"); err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "restored from another backup") {
		t.Fatalf("restore over an older restore: %v", err)
	}
	// A damaged backup is refused, and nothing is created.
	l, _ := backup.NewStore(dirs["east"]).Latest("s002")
	data, _ := os.ReadFile(l.Path)
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(l.Path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	err = be.Restore(ctx, "trial", "east", "s002")
	if !errors.Is(err, backup.ErrCorrupt) || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "refusing to restore tenant s002") {
		t.Fatalf("restore of a corrupt backup: %v", err)
	}
	t.Logf("corrupt backup refused: %v", err)
	var there bool
	connect(t, pgURL(east.Port, "trial")).QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 's002')`).Scan(&there)
	if there {
		t.Fatal("schema s002 created from a corrupt backup")
	}
	// No backup at all: a clear, permanent error.
	if err := be.Restore(ctx, "trial", "east", "nobody"); !errors.Is(err, backup.ErrNoBackup) || lifeboat.IsRetryable(err) {
		t.Fatalf("restore with no backup: %v", err)
	}
}

// TestRestoreInterruptedThenRedone: a restore cut off after all its rows
// were sent but before it committed (pg_restore hangs, then the ctx is
// cancelled) leaves nothing; done again, the tenant has each row once.
func TestRestoreInterruptedThenRedone(t *testing.T) {
	west := pgtest.StartPrimary(t, pgtest.Name("west"))
	east := pgtest.StartPrimary(t, pgtest.Name("east"))
	spec := testSpec()
	addPool(spec, "basic", lifeboat.IsolationDatabase, lifeboat.StrategyGeoRestore, 2, endpoints{"west": pgURL(west.Port, "postgres"), "east": pgURL(east.Port, "postgres")})
	addPool(spec, "trial", lifeboat.IsolationSchema, lifeboat.StrategyGeoRestore, 3, endpoints{"west": pgURL(west.Port, "trial"), "east": pgURL(east.Port, "trial")})
	seedDatabaseTenants(t, west.Port, []string{"big"}, 20000)
	seedSchemaTenants(t, west.Port, "trial", []string{"wide"}, 20000)
	cat := tenant.NewMemoryCatalog()
	addTenants(t, cat, "basic", "west", []string{"big"})
	addTenants(t, cat, "trial", "west", []string{"wide"})
	dirs := backupDirs(t)
	backupAll(t, spec, cat, dirs, t0)

	// A pg_restore that writes everything, then hangs.
	bin := t.TempDir()
	script := "#!/bin/sh\n" + postgres.DefaultBinDir + "/pg_restore \"$@\" || exit 1\nexec sleep 3600\n"
	if err := os.WriteFile(filepath.Join(bin, "pg_restore"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(postgres.DefaultBinDir+"/psql", filepath.Join(bin, "psql")); err != nil {
		t.Fatal(err)
	}
	hanging, err := New(Config{Spec: spec, Backups: dirs, Provisioner: &Command{Argv: []string{"true"}}, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer hanging.Close()
	good, err := New(Config{Spec: spec, Backups: dirs})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	ctx := testCtx(t)
	if err := hanging.CreatePool(ctx, "trial", "east"); err != nil {
		t.Fatal(err)
	}
	admin := connect(t, pgURL(east.Port, "postgres"))
	for _, c := range []struct{ pool, name, db string }{{"basic", "big", "big"}, {"trial", "wide", "trial"}} {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- hanging.Restore(rctx, c.pool, "east", c.name) }()
		// Wait until psql has sent every row and waits, in its transaction,
		// for the rest of its input: the restore is half-way.
		for {
			var n int
			if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'psql' AND state = 'idle in transaction' AND query ILIKE '%ADD CONSTRAINT items_pkey%'`, c.db).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				break
			}
			select {
			case err := <-done:
				t.Fatalf("restore of %s ended before it hung: %v", c.name, err)
			case <-ctx.Done():
				t.Fatalf("restore of %s never reached its last statement", c.name)
			case <-time.After(20 * time.Millisecond):
			}
		}
		cancel()
		err := <-done
		if err == nil || !lifeboat.IsRetryable(err) {
			t.Fatalf("interrupted restore of %s: %v, want a retryable error", c.name, err)
		}
		// Nothing of the interrupted restore is visible.
		var committed bool
		q := `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`
		in := c.db
		if c.pool == "basic" {
			q, in = `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND shobj_description(oid, 'pg_database') IS NOT NULL)`, "postgres"
		}
		if err := connect(t, pgURL(east.Port, in)).QueryRow(ctx, q, c.name).Scan(&committed); err != nil || committed {
			t.Fatalf("after the interrupted restore of %s: committed=%v, %v", c.name, committed, err)
		}
		if err := good.Restore(ctx, c.pool, "east", c.name); err != nil {
			t.Fatalf("redoing %s: %v", c.name, err)
		}
		var got []int
		if c.pool == "basic" {
			got = rows(t, pgURL(east.Port, c.name))
		} else {
			got = schemaRows(t, pgURL(east.Port, "trial"), c.name)
		}
		if !slices.Equal(got, seq(20000)) {
			t.Fatalf("%s after an interrupted and a full restore: %d rows, want 1..20000 once", c.name, len(got))
		}
	}
}

// TestCreatePoolPostgres: the lab provisioner makes a pool that takes
// CREATE DATABASE and holds the endpoint's database; doing it again is a
// no-op.
func TestCreatePoolPostgres(t *testing.T) {
	spec := testSpec()
	eastURL := freeURL(t, "trial")
	addPool(spec, "trial", lifeboat.IsolationSchema, lifeboat.StrategyGeoRestore, 3, endpoints{"west": "postgres://u:p@127.0.0.1:1/trial", "east": eastURL})
	prov := &Postgres{Dir: labDir(t)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := prov.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	be, err := New(Config{Spec: spec, Provisioner: prov})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ctx := testCtx(t)
	for range 2 {
		if err := be.CreatePool(ctx, "trial", "east"); err != nil {
			t.Fatal(err)
		}
	}
	c := connect(t, eastURL)
	mustExec(t, c, `CREATE DATABASE acme`)
	mustExec(t, c, `CREATE SCHEMA initech`)
	if prov.Instance("trial", "east") == nil {
		t.Fatal("no instance recorded")
	}
	if err := (&Command{Argv: []string{"sh", "-c", `test "$LIFEBOAT_POOL/$LIFEBOAT_REGION" = trial/east && echo nope >&2 && exit 3`}}).Provision(ctx, PoolTarget{Pool: "trial", Region: "east"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("failing command: %v", err)
	}
}

// TestMakeAvailable: 40 database tenants and 200 schema tenants on a
// standby in east, promoted: every batch of 20 is found, a database whose
// connections were disallowed is opened again, a batch before promotion
// is a retryable error, a missing tenant a permanent one.
func TestMakeAvailable(t *testing.T) {
	west := pgtest.StartPrimary(t, pgtest.Name("west"))
	dbs, schemas := names("p", 40), names("s", 200)
	seedDatabaseTenants(t, west.Port, dbs, 3)
	seedSchemaTenants(t, west.Port, "bulk", schemas, 3)
	mustExec(t, connect(t, pgURL(west.Port, "postgres")), `ALTER DATABASE p003 ALLOW_CONNECTIONS false`)
	east := pgtest.StartStandby(t, west, pgtest.Name("east"))
	spec := testSpec()
	addPool(spec, "paid", lifeboat.IsolationDatabase, lifeboat.StrategyGeoReplicate, 1, endpoints{"west": pgURL(west.Port, "postgres"), "east": pgURL(east.Port, "postgres")})
	addPool(spec, "bulk", lifeboat.IsolationSchema, lifeboat.StrategyGeoReplicate, 1, endpoints{"west": pgURL(west.Port, "bulk"), "east": pgURL(east.Port, "bulk")})
	be, err := New(Config{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ctx := testCtx(t)
	if err := be.MakeAvailable(ctx, "bulk", "east", schemas[:20]); err == nil || !lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "still a standby") {
		t.Fatalf("before promotion: %v", err)
	}
	west.Kill(t)
	var done bool
	if err := connect(t, pgURL(east.Port, "postgres")).QueryRow(ctx, `SELECT pg_promote(true, 60)`).Scan(&done); err != nil || !done {
		t.Fatalf("promote: %v %v", done, err)
	}
	start := time.Now()
	if err := batches(ctx, be, "bulk", schemas, 20, 4); err != nil {
		t.Fatal(err)
	}
	schemaTook := time.Since(start)
	start = time.Now()
	if err := batches(ctx, be, "paid", dbs, 20, 4); err != nil {
		t.Fatal(err)
	}
	t.Logf("made available: 200 schema tenants in %v, 40 database tenants in %v (batches of 20, 4 at once)", schemaTook, time.Since(start))
	var allow bool
	connect(t, pgURL(east.Port, "postgres")).QueryRow(ctx, `SELECT datallowconn FROM pg_database WHERE datname = 'p003'`).Scan(&allow)
	if !allow {
		t.Fatal("p003 still refuses connections")
	}
	err = be.MakeAvailable(ctx, "paid", "east", []string{"p001", "ghost"})
	if err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("missing tenant: %v", err)
	}
	t.Logf("missing tenant: %v", err)
}

// batches runs MakeAvailable over names in batches of size, conc at once,
// as the recovery scheduler does.
func batches(ctx context.Context, be *Backend, pool string, names []string, size, conc int) error {
	sem := make(chan struct{}, conc)
	errs := make(chan error, len(names)/size+1)
	for b := range slices.Chunk(names, size) {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- be.MakeAvailable(ctx, pool, "east", b)
		}()
	}
	for range conc {
		sem <- struct{}{}
	}
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		return fmt.Errorf("pool %s: %w", pool, err)
	}
	return nil
}

// ident quotes a tenant name.
func ident(n string) string { return pgx.Identifier{n}.Sanitize() }
