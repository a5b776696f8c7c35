package pgbackend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

// TestFailbackSteps runs the failback's pool steps on real PostgreSQL, for
// both isolations: tenants restored into a DR pool in east, some changed
// there; the DR pool made read-only (a superuser's write with
// default_transaction_read_only turned off is still refused); the changed
// ones found; each copied back to west while being cut short again and
// again (a context that ends after 1ms, 2ms, 4ms…) until it finishes,
// the home copy kept renamed; then the DR pool deleted.
func TestFailbackSteps(t *testing.T) {
	for _, iso := range []lifeboat.TenantIsolation{lifeboat.IsolationSchema, lifeboat.IsolationDatabase} {
		t.Run(string(iso), func(t *testing.T) { testFailback(t, iso) })
	}
}

func testFailback(t *testing.T, iso lifeboat.TenantIsolation) {
	ctx := testCtx(t)
	west := pgtest.StartPrimary(t, pgtest.Name("trial-west"))
	ts := names("t", 6)
	schema := iso == lifeboat.IsolationSchema
	// url of a tenant's data in a pool copy, and its table.
	db := "postgres"
	if schema {
		db = "trial"
		seedSchemaTenants(t, west.Port, db, ts, 10)
	} else {
		seedDatabaseTenants(t, west.Port, ts, 10)
	}
	eastURL := freeURL(t, db)
	spec := testSpec()
	addPool(spec, "trial", iso, lifeboat.StrategyGeoRestore, 2, endpoints{"west": pgURL(west.Port, db), "east": eastURL})
	cat := tenant.NewMemoryCatalog()
	addTenants(t, cat, "trial", "west", ts)
	dirs := backupDirs(t)
	backupAll(t, spec, cat, dirs, t0)

	where := func(base, name string) (string, string) { // connection URL, table
		if schema {
			return base, pgx.Identifier{name, "items"}.Sanitize()
		}
		u := strings.Replace(base, "/"+db, "/"+name, 1)
		return u, "items"
	}
	exec := func(base, name, sql string) error {
		u, tbl := where(base, name)
		c, err := pgx.Connect(ctx, u)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, strings.ReplaceAll(sql, "ITEMS", tbl))
		return err
	}
	ids := func(base, name string) []int {
		u, tbl := where(base, name)
		var out []int
		if err := connect(t, u).QueryRow(ctx, `SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM `+tbl).Scan(&out); err != nil {
			t.Fatalf("rows of %s at %s: %v", name, u, err)
		}
		return out
	}
	westURL := pgURL(west.Port, db)
	// After the backup, west gets row 11 (the home copy has it; the DR
	// copies will not).
	for _, n := range ts {
		if err := exec(westURL, n, `INSERT INTO ITEMS VALUES (11, 'home only')`); err != nil {
			t.Fatal(err)
		}
	}

	prov := &Postgres{Dir: labDir(t)}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = prov.Stop(c)
	})
	be, err := New(Config{Spec: spec, Backups: dirs, Provisioner: prov})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if err := be.CreatePool(ctx, "trial", "east"); err != nil {
		t.Fatal(err)
	}
	for _, n := range ts[:5] { // t005 is never restored (a cancelled restore)
		if err := be.Restore(ctx, "trial", "east", n); err != nil {
			t.Fatal(err)
		}
	}
	// Writes in east: t000 and t001 insert, t002 deletes a row.
	for _, n := range ts[:2] {
		if err := exec(eastURL, n, `INSERT INTO ITEMS VALUES (20, 'written in east')`); err != nil {
			t.Fatal(err)
		}
	}
	if err := exec(eastURL, ts[2], `DELETE FROM ITEMS WHERE id = 1`); err != nil {
		t.Fatal(err)
	}

	// c. Read-only, twice (idempotent).
	for range 2 {
		if err := be.SetReadOnly(ctx, "trial", "east"); err != nil {
			t.Fatal(err)
		}
	}
	err = exec(eastURL, ts[3], `SET default_transaction_read_only = off; INSERT INTO ITEMS VALUES (30, 'must be refused')`)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "25006" {
		t.Fatalf("a superuser's write to the read-only DR pool: %v, want SQLSTATE 25006 (read_only_sql_transaction)", err)
	}
	if err := exec(eastURL, ts[3], `BEGIN; SET transaction_read_only = off; INSERT INTO ITEMS VALUES (30, 'must be refused'); COMMIT`); err == nil {
		t.Fatal("a read-write transaction was allowed on the read-only DR pool")
	}

	// d. Changed since the restore.
	var changed []string
	for _, n := range ts {
		ch, why, err := be.Changed(ctx, "trial", "east", n)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: changed %v (%s)", n, ch, why)
		if ch {
			changed = append(changed, n)
		}
	}
	if !slices.Equal(changed, ts[:3]) {
		t.Fatalf("changed %v, want %v", changed, ts[:3])
	}
	eastRows := map[string][]int{}
	for _, n := range changed {
		eastRows[n] = ids(eastURL, n)
	}

	// e. Copy back, cut short again and again.
	for _, n := range changed {
		kept := tenant.KeptName(n, t0)
		attempts := 0
		for d := time.Millisecond; ; d *= 2 {
			attempts++
			cctx, cancel := context.WithTimeout(ctx, d)
			err := be.CopyBack(cctx, "trial", "east", "west", n, kept)
			cancel()
			if err == nil {
				break
			}
			if d > time.Minute {
				t.Fatalf("copy back of %s: %v", n, err)
			}
		}
		if err := be.CopyBack(ctx, "trial", "east", "west", n, kept); err != nil {
			t.Fatalf("copy back of %s again: %v", n, err)
		}
		t.Logf("%s copied back after %d attempts", n, attempts)
		if got := ids(westURL, n); !slices.Equal(got, eastRows[n]) {
			t.Errorf("%s in west after the copy back: %v, want the DR copy's %v", n, got, eastRows[n])
		}
		if got := ids(westURL, kept); !slices.Equal(got, seq(11)) {
			t.Errorf("%s's kept home copy %s: %v, want 1..11", n, kept, got)
		}
	}
	for _, n := range ts[3:] {
		if got := ids(westURL, n); !slices.Equal(got, seq(11)) {
			t.Errorf("unchanged %s in west: %v, want its home rows 1..11", n, got)
		}
	}

	// g. The DR pool goes.
	inst := prov.Instance("trial", "east")
	pid, ok := inst.PID()
	if !ok {
		t.Fatal("the DR pool is not running")
	}
	if has, err := be.HasPool(ctx, "trial", "east"); err != nil || !has {
		t.Fatalf("HasPool before delete: %v %v", has, err)
	}
	if err := be.DeletePool(ctx, "trial", "east"); err != nil {
		t.Fatal(err)
	}
	if has, err := be.HasPool(ctx, "trial", "east"); err != nil || has {
		t.Fatalf("HasPool after delete: %v %v", has, err)
	}
	if _, err := os.Stat(filepath.Join(prov.Dir, "trial-east")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the DR pool's directory is still there: %v", err)
	}
	if processAlive(pid) {
		t.Errorf("the DR pool's postmaster %d is still alive", pid)
	}
}

// processAlive: signal 0 answers, and it is not a zombie waiting for a
// parent (a container's init) to reap it.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	k := bytes.LastIndexByte(data, ')')
	return k < 0 || k+2 >= len(data) || data[k+2] != 'Z'
}
