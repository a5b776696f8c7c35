package pgbackend

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

// specDir is a spec directory the postgres OS user can traverse, with the
// spec file's path set on spec.
func specDir(t *testing.T, spec *lifeboat.Spec) string {
	dir := filepath.Dir(labDir(t))
	spec.File = filepath.Join(dir, "lifeboat.yaml")
	return dir
}

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func setProvision(spec *lifeboat.Spec, pool string, pv *lifeboat.PoolProvision) {
	p := spec.Tenants.Pools[pool]
	p.Provision = pv
	spec.Tenants.Pools[pool] = p
}

// TestSpecCommandsPostgres runs a pool's provision commands for real:
// examples/tenant-pool.sh, copied next to the spec as ./pool.sh, creates
// a PostgreSQL cluster at the pool's endpoint in east (initdb + pg_ctl
// start; a second create is a no-op), tenants are restored into it and
// written to; its read-only command makes it refuse a superuser's write
// even with default_transaction_read_only SET off; the failback still
// sees the write (Changed); the Backend, which the commands cannot tell
// whether the copy exists, asks its endpoint (HasPool); the delete
// command stops it and removes its directory. Every postmaster the test
// saw is killed by PID in the cleanup, whatever happens.
func TestSpecCommandsPostgres(t *testing.T) {
	ctx := testCtx(t)
	west := pgtest.StartPrimary(t, pgtest.Name("prov-west"))
	ts := names("t", 3)
	seedSchemaTenants(t, west.Port, "trial", ts, 10)
	eastURL := freeURL(t, "trial")
	spec := testSpec()
	addPool(spec, "trial", lifeboat.IsolationSchema, lifeboat.StrategyGeoRestore, 2, endpoints{"west": pgURL(west.Port, "trial"), "east": eastURL})
	dir := specDir(t, spec)
	script, err := os.ReadFile(filepath.Join("..", "..", "examples", "tenant-pool.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pool.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	setProvision(spec, "trial", &lifeboat.PoolProvision{
		Create: []string{"./pool.sh", "create"}, ReadOnly: []string{"./pool.sh", "read-only"}, Delete: []string{"./pool.sh", "delete"}})
	data := filepath.Join(dir, "pools", "trial-east")
	inst := &postgres.Instance{DataDir: data}
	var pids []int
	seen := func() {
		if pid, ok := inst.PID(); ok && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	t.Cleanup(func() {
		seen()
		for _, pid := range pids {
			if processAlive(pid) {
				_ = syscall.Kill(pid, syscall.SIGQUIT) // immediate shutdown: the postmaster ends its children
			}
		}
	})

	cat := tenant.NewMemoryCatalog()
	addTenants(t, cat, "trial", "west", ts)
	dirs := backupDirs(t)
	backupAll(t, spec, cat, dirs, t0)
	be, err := New(Config{Spec: spec, Backups: dirs, Provisioner: &SpecCommands{Spec: spec, Env: []string{"PG_BIN=" + postgres.DefaultBinDir}}})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()

	if has, err := be.HasPool(ctx, "trial", "east"); err != nil || has {
		t.Fatalf("HasPool before the create: %v %v, want false", has, err)
	}
	start := time.Now()
	if err := be.CreatePool(ctx, "trial", "east"); err != nil {
		t.Fatal(err)
	}
	t.Logf("create (initdb + start by the spec's command): %v", time.Since(start))
	seen()
	if len(pids) != 1 {
		t.Fatalf("no postmaster after the create command: %v", pids)
	}
	if err := be.CreatePool(ctx, "trial", "east"); err != nil {
		t.Fatalf("create again (idempotent): %v", err)
	}
	if pid, _ := inst.PID(); pid != pids[0] {
		t.Errorf("the second create restarted the cluster: pid %d, was %d", pid, pids[0])
	}
	for _, n := range ts {
		if err := be.Restore(ctx, "trial", "east", n); err != nil {
			t.Fatal(err)
		}
		if got := schemaRows(t, eastURL, n); !slices.Equal(got, seq(10)) {
			t.Fatalf("%s restored into the DR pool: %v, want 1..10", n, got)
		}
	}
	mustExec(t, connect(t, eastURL), `INSERT INTO t000.items VALUES (20, 'written in east')`)

	if err := be.SetReadOnly(ctx, "trial", "east"); err != nil {
		t.Fatal(err)
	}
	seen()
	c, err := pgx.Connect(ctx, eastURL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, `SET default_transaction_read_only = off; INSERT INTO t001.items VALUES (30, 'must be refused')`)
	c.Close(context.Background())
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "25006" {
		t.Fatalf("a superuser's write to the DR pool after its read-only command: %v, want SQLSTATE 25006", err)
	}
	for k, n := range ts {
		ch, why, err := be.Changed(ctx, "trial", "east", n)
		if err != nil {
			t.Fatal(err)
		}
		if ch != (k == 0) {
			t.Errorf("%s: changed %v (%s); only t000 was written in east", n, ch, why)
		}
	}

	if has, err := be.HasPool(ctx, "trial", "east"); err != nil || !has {
		t.Fatalf("HasPool of a running DR pool (asked at its endpoint): %v %v", has, err)
	}
	if err := be.DeletePool(ctx, "trial", "east"); err != nil {
		t.Fatal(err)
	}
	if has, err := be.HasPool(ctx, "trial", "east"); err != nil || has {
		t.Fatalf("HasPool after the delete command: %v %v", has, err)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the DR pool's directory is still there: %v", err)
	}
	for _, pid := range pids {
		if processAlive(pid) {
			t.Errorf("postmaster %d still alive after the delete command", pid)
		}
	}
}

// The commands get the target in their environment and run in the spec's
// directory, a relative program found there; a failing command's output
// is in its (retryable) error.
func TestSpecCommandsEnvironment(t *testing.T) {
	ctx := testCtx(t)
	spec := testSpec()
	addPool(spec, "trial", lifeboat.IsolationSchema, lifeboat.StrategyGeoRestore, 2, endpoints{"west": "postgres://u:secret@127.0.0.1:1/trial", "east": "postgres://u:secret@127.0.0.1:2/trial"})
	dir := specDir(t, spec)
	out := filepath.Join(dir, "env.out")
	writeScript(t, filepath.Join(dir, "bin", "pool.sh"), `echo "$1 $LIFEBOAT_POOL $LIFEBOAT_REGION $LIFEBOAT_ENDPOINT $LIFEBOAT_ISOLATION $LIFEBOAT_SPEC_DIR $EXTRA $(pwd)" >> env.out
test "$1" != fail || { echo "the cloud said no: quota exceeded" >&2; exit 4; }
`)
	setProvision(spec, "trial", &lifeboat.PoolProvision{Create: []string{"./bin/pool.sh", "create"}, ReadOnly: []string{"./bin/pool.sh", "fail"}})
	sc := &SpecCommands{Spec: spec, Env: []string{"EXTRA=extra"}}
	tg := PoolTarget{Pool: "trial", Region: "east", Endpoint: "postgres://u:secret@127.0.0.1:2/trial", Isolation: lifeboat.IsolationSchema}
	if err := sc.Provision(ctx, tg); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "create trial east postgres://u:secret@127.0.0.1:2/trial schema " + dir + " extra " + dir + "\n"; string(got) != want {
		t.Errorf("the create command saw\n%q, want\n%q", got, want)
	}
	err = sc.ReadOnly(ctx, tg)
	if err == nil || !lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "quota exceeded") || !strings.Contains(err.Error(), "exit status 4") {
		t.Fatalf("failing command: %v; want a retryable error with its output", err)
	}
	t.Logf("failing command: %v", err)
	if err := sc.Remove(ctx, tg); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Remove without provision.delete: %v, want errors.ErrUnsupported", err)
	}
}

// Without read-only and delete commands the Backend falls back: the DR
// pool's databases get default_transaction_read_only, and DeletePool
// leaves the copy with a permanent error (wrapping errors.ErrUnsupported,
// which the failback records as a step) that names it, without its
// password. A pool without provision at all: Provision waits for the copy
// to be made by hand (it answers: done at once; it never does: an error
// when the context ends).
func TestSpecCommandsFallbacks(t *testing.T) {
	ctx := testCtx(t)
	east := pgtest.StartPrimary(t, pgtest.Name("prov-fallback"))
	seedSchemaTenants(t, east.Port, "trial", []string{"t000"}, 3)
	spec := testSpec()
	eastURL := pgURL(east.Port, "trial")
	addPool(spec, "trial", lifeboat.IsolationSchema, lifeboat.StrategyGeoRestore, 2, endpoints{"west": freeURL(t, "trial"), "east": eastURL})
	dir := specDir(t, spec)
	writeScript(t, filepath.Join(dir, "create.sh"), "exit 0\n")
	setProvision(spec, "trial", &lifeboat.PoolProvision{Create: []string{"./create.sh"}})
	be, err := New(Config{Spec: spec, Provisioner: &SpecCommands{Spec: spec}})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if err := be.CreatePool(ctx, "trial", "east"); err != nil {
		t.Fatal(err)
	}
	if err := be.SetReadOnly(ctx, "trial", "east"); err != nil {
		t.Fatal(err)
	}
	var ro string
	if err := connect(t, eastURL).QueryRow(ctx, `SHOW default_transaction_read_only`).Scan(&ro); err != nil || ro != "on" {
		t.Fatalf("default_transaction_read_only of the DR pool without a read-only command: %q %v, want on", ro, err)
	}
	err = be.DeletePool(ctx, "trial", "east")
	if !errors.Is(err, errors.ErrUnsupported) || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(east.Port)) ||
		strings.Contains(err.Error(), pgtest.Password) || !strings.Contains(err.Error(), "delete that copy by hand") {
		t.Fatalf("DeletePool without a delete command: %v; want a permanent ErrUnsupported naming the copy, without its password", err)
	}
	t.Logf("no delete command: %v", err)
	if has, err := be.HasPool(ctx, "trial", "east"); err != nil || !has {
		t.Fatalf("HasPool of the copy left in place: %v %v", has, err)
	}

	// No provision at all: made by hand.
	setProvision(spec, "trial", nil)
	sc := &SpecCommands{Spec: spec, Poll: 10 * time.Millisecond}
	if err := sc.Provision(ctx, PoolTarget{Pool: "trial", Region: "east", Endpoint: eastURL}); err != nil {
		t.Fatalf("a pool made by hand that answers: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err = sc.Provision(wctx, PoolTarget{Pool: "trial", Region: "east", Endpoint: freeURL(t, "trial")})
	if err == nil || !strings.Contains(err.Error(), "no provision.create") || strings.Contains(err.Error(), pgtest.Password) {
		t.Fatalf("a pool without provision that never answers: %v", err)
	}
	t.Logf("never made by hand: %v", err)
}
