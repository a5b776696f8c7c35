package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lifeboat-dr/lifeboat/tenant/serve"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/driver"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/engine"
	"github.com/lifeboat-dr/lifeboat/planner"
	"github.com/lifeboat-dr/lifeboat/store"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

// gateConn connects to a tenant through the lab's gate.
func gateConn(ctx context.Context, in *Info, name string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=40", DBUser, DBPassword, in.Gate, name))
}

// tenantRows returns how many rows a tenant has per id, through the gate.
func tenantRows(ctx context.Context, in *Info, name string) (map[int]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	c, err := gateConn(ctx, in, name)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, `SELECT id, count(*) FROM items GROUP BY id`)
	if err != nil {
		return nil, err
	}
	out := map[int]int{}
	for rows.Next() {
		var id, n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

// failover runs a failover plan to completion, as 'lifeboat failover
// --yes' would.
func failover(t *testing.T, in *Info) *lifeboat.State {
	t.Helper()
	return runPlan(t, in, lifeboat.IntentFailover)
}

// runPlan runs a plan of intent to completion, as 'lifeboat <intent>
// --yes' would.
func runPlan(t *testing.T, in *Info, intent lifeboat.Intent) *lifeboat.State {
	t.Helper()
	ctx := context.Background()
	spec, _, err := config.Load(in.Spec)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Options{Dir: filepath.Join(in.Dir, ".lifeboat"), Service: spec.Service})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	state, err := st.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := planner.Plan(spec, state, intent, "")
	if err != nil {
		t.Fatal(err)
	}
	drivers, err := driver.FromSpec(spec, state)
	if err != nil {
		t.Fatal(err)
	}
	ec := engine.DefaultConfig()
	ec.Store, ec.By = st, "lab tenants test"
	ec.Bind = func(run string, step *lifeboat.Step) (lifeboat.Action, error) {
		return lifeboat.Bind(spec, drivers, run, step)
	}
	eng, err := engine.New(ec)
	if err != nil {
		t.Fatal(err)
	}
	f, err := eng.Start(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Error(); err != nil {
		t.Fatalf("%s: %v", intent, err)
	}
	after, err := st.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return after
}

// tenantLab starts a lab with tenants (o.Dir is set here), takes it
// down at the end, and checks that its spec validates.
func tenantLab(t *testing.T, o Options) (*Info, *lifeboat.Spec) {
	t.Helper()
	o.Dir = labDir(t)
	in, err := Up(context.Background(), o)
	t.Cleanup(func() {
		if rep, err := Down(context.Background(), o.Dir); err != nil {
			t.Errorf("lab down: %v (%+v)", err, rep)
		}
		if t.Failed() {
			t.Logf("lab.log:\n%s", tail(logPath(o.Dir), 80))
		}
	})
	if err != nil {
		t.Fatalf("lab up --tenants %d (scenario %d): %v\n%s", o.Tenants, o.TenantScenario, err, tail(logPath(o.Dir), 40))
	}
	t.Logf("lab up with %d tenants: %s", o.Tenants, in.Ready.Round(time.Millisecond))
	spec, diags, err := config.Load(in.Spec)
	if err != nil || diags.HasErrors() {
		t.Fatalf("the lab's spec does not validate: %v %v", err, diags)
	}
	return in, spec
}

// catalogTenants lists every tenant of the lab's catalog, read where st
// says its primary is.
func catalogTenants(t *testing.T, in *Info, st *lifeboat.State) []lifeboat.Tenant {
	t.Helper()
	spec, _, err := config.Load(in.Spec)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := tenant.OpenCatalog(context.Background(), spec, st)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	all, err := cat.List(context.Background(), tenant.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// Seed 004's scenarios 2 and 3 in one lab: west is failed over; the paid
// tenants of west's pool are made available in east in batches, those of
// paideast (primary in east) are not touched, the trial tenants are
// geo-restored into a trial pool created in east, and a psql connection to
// the last trial tenant in line gets it restored ahead of the others.
// Every tenant's rows are checked at the end.
func TestTenantsInTheLab(t *testing.T) {
	if _, err := os.Stat(filepath.Join(postgres.DefaultBinDir, "psql")); err != nil {
		t.Skipf("no PostgreSQL 15 client: %v", err)
	}
	const n = 60
	ctx := context.Background()
	in, _ := tenantLab(t, Options{Tenants: n, TenantConcurrency: 1})
	dir := in.Dir
	paid, trial := TenantCounts(n, 0)

	// Before: every tenant answers through the gate with its rows.
	for _, name := range []string{TenantName(TierPaid, 1), TenantName(TierPaid, 2), TenantName(TierTrial, 1)} {
		rows, err := tenantRows(ctx, in, name)
		if err != nil || rows[1] != 1 || rows[TenantRows] != 1 {
			t.Fatalf("tenant %s through the gate before the failover: %v %v", name, rows, err)
		}
	}

	state := failover(t, in)
	if state.Active != East || state.Epoch < 2 {
		t.Fatalf("after the failover: active %s at epoch %d", state.Active, state.Epoch)
	}

	// The recovery begins; the last trial tenant in line is asked for
	// by psql and is restored ahead of the others.
	hurried := TenantName(TierTrial, trial)
	eventually(t, 30*time.Second, "the tenants' recovery started", func() error {
		ts := statusOf(t, dir).Tenants
		if ts == nil || ts.Recovery == nil {
			return fmt.Errorf("no recovery yet: %+v", ts)
		}
		return nil
	})
	psql := exec.Command(filepath.Join(postgres.DefaultBinDir, "psql"), "-X", "-At", "-c", "SELECT count(*) FROM items WHERE id <= 3",
		fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=60", port(in.Gate), DBUser, hurried))
	psql.Env = append(os.Environ(), "PGPASSWORD="+DBPassword)
	out, err := psql.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "3" {
		t.Fatalf("psql to the queued tenant %s through the gate: %v: %s", hurried, err, out)
	}

	var ts = statusOf(t, dir).Tenants
	eventually(t, 60*time.Second, "the tenants' recovery done", func() error {
		ts = statusOf(t, dir).Tenants
		if ts.Recovery == nil || !ts.Recovery.Done {
			return fmt.Errorf("%+v", ts.Recovery)
		}
		return nil
	})
	rec := ts.Recovery
	t.Logf("recovery: %s", rec.Text)
	if !slices.Contains(rec.Hurried, hurried) {
		t.Errorf("%s is not recorded as hurried: %v", hurried, rec.Hurried)
	}
	var restored []string
	for _, name := range rec.Available {
		if strings.HasPrefix(name, TierTrial[:1]) {
			restored = append(restored, name)
		}
	}
	t.Logf("trial tenants in the order they were restored: %v", restored)
	if len(restored) != trial {
		t.Errorf("%d trial tenants restored, want %d: %v", len(restored), trial, restored)
	}
	// With one restore at a time, at most the one already running when
	// psql connected can come before it.
	if i := slices.Index(restored, hurried); i < 0 || i > 1 {
		t.Errorf("hurried tenant %s was restored %d-th (0-based), want first or second: %v", hurried, i, restored)
	}

	// The catalog: west's paid tenants and every trial tenant in east at
	// the failover's epoch; paideast's tenants untouched (scenario 3).
	all := catalogTenants(t, in, state)
	if len(all) != n {
		t.Fatalf("%d tenants in the catalog, want %d", len(all), n)
	}
	moved, untouched := 0, 0
	for _, tn := range all {
		if tn.State != lifeboat.TenantAvailable || tn.Region != East {
			t.Errorf("tenant %s after the recovery: %s in %s (%s)", tn.Name, tn.State, tn.Region, tn.Reason)
		}
		switch {
		case tn.Pool == PoolPaidEast:
			untouched++
			if tn.Epoch != 1 || !tn.Recovered.IsZero() {
				t.Errorf("tenant %s of the east-homed pool was touched: %+v", tn.Name, tn)
			}
		default:
			moved++
			if tn.Epoch != state.Epoch || tn.Recovered.IsZero() {
				t.Errorf("tenant %s: epoch %d, recovered %v; want epoch %d and a recovery time", tn.Name, tn.Epoch, tn.Recovered, state.Epoch)
			}
		}
	}
	if untouched != paid/2 || moved != n-paid/2 {
		t.Errorf("%d tenants moved and %d untouched, want %d and %d", moved, untouched, n-paid/2, paid/2)
	}
	// paideast's primary is still east's, its standby still west's.
	for region, want := range map[string]bool{East: false, West: true} {
		c, err := pgx.Connect(ctx, in.TenantPoolURL(PoolPaidEast, region))
		if err != nil {
			t.Fatal(err)
		}
		var inRecovery bool
		if err := c.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
		if inRecovery != want {
			t.Errorf("pool %s in %s: in recovery %v, want %v", PoolPaidEast, region, inRecovery, want)
		}
	}

	// Every tenant's rows, through the gate: nothing lost beyond its
	// tier's RPO (trial may lose the row written after its backup),
	// nothing duplicated.
	for _, tn := range all {
		rows, err := tenantRows(ctx, in, tn.Name)
		if err != nil {
			t.Errorf("tenant %s through the gate after the recovery: %v", tn.Name, err)
			continue
		}
		for id := 1; id <= TenantRows; id++ {
			if rows[id] != 1 {
				t.Errorf("tenant %s has %d rows of id %d, want 1: %v", tn.Name, rows[id], id, rows)
			}
		}
		extra := rows[TenantRows+1]
		if tn.Tier == TierPaid && extra != 0 || extra > 1 || len(rows) > TenantRows+1 {
			t.Errorf("tenant %s (%s) has rows %v", tn.Name, tn.Tier, rows)
		}
	}

	failback(t, in, all, nil)
}

// Seed 004's scenario 1, the cost-sensitive startup: every tenant is on
// the trial tier (geo-restore) and only the catalog is geo-replicated.
// West is failed over: the catalog first, a tenant created at once in
// east, the trial pool created in east and every tenant geo-restored
// there. Then the failback: the changed tenants and the one created in
// east are copied home, the DR pool is deleted, and every tenant's rows
// are checked.
func TestTenantsScenario1(t *testing.T) {
	if _, err := os.Stat(filepath.Join(postgres.DefaultBinDir, "psql")); err != nil {
		t.Skipf("no PostgreSQL 15 client: %v", err)
	}
	const n = 24
	ctx := context.Background()
	in, spec := tenantLab(t, Options{Tenants: n, TenantConcurrency: 2, TenantScenario: 1})
	dir := in.Dir
	if paid, trial := TenantCounts(n, 1); paid != 0 || trial != n {
		t.Fatalf("scenario 1 splits %d tenants into %d paid and %d trial", n, paid, trial)
	}
	if rows, err := tenantRows(ctx, in, TenantName(TierTrial, 1)); err != nil || rows[1] != 1 {
		t.Fatalf("a tenant through the gate before the failover: %v %v", rows, err)
	}

	state := failover(t, in)
	if state.Active != East {
		t.Fatalf("after the failover: active %s", state.Active)
	}
	cat, err := tenant.OpenCatalog(ctx, spec, state)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()

	// "All new accounts and tenant databases are created in the DR
	// region": as soon as the DR pool exists, while the restores run.
	const fresh = "newcomer"
	var created lifeboat.Tenant
	eventually(t, 60*time.Second, "a new tenant created in east", func() error {
		created, err = tenant.Create(ctx, spec, state, cat, &tenant.PostgresPools{Spec: spec}, fresh, TierTrial, time.Now())
		return err
	})
	if created.Region != East || created.Pool != PoolTrial {
		t.Fatalf("the tenant created during the failover: %+v, want pool %s in east", created, PoolTrial)
	}
	c, err := gateConn(ctx, in, fresh)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, `CREATE TABLE items (id int NOT NULL, note text NOT NULL); INSERT INTO items VALUES (1, 'new'), (20, 'new in east')`)
	c.Close(ctx)
	if err != nil {
		t.Fatalf("writing into %s in east: %v", fresh, err)
	}

	var ts *serve.Status
	eventually(t, 90*time.Second, "the tenants' recovery done", func() error {
		ts = statusOf(t, dir).Tenants
		if ts == nil || ts.Recovery == nil || !ts.Recovery.Done {
			return fmt.Errorf("%+v", ts)
		}
		return nil
	})
	t.Logf("recovery: %s", ts.Recovery.Text)
	if len(ts.Recovery.Available) != n {
		t.Errorf("%d tenants made available by the recovery, want %d: %v", len(ts.Recovery.Available), n, ts.Recovery.Available)
	}
	all, err := cat.List(ctx, tenant.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n+1 {
		t.Fatalf("%d tenants in the catalog, want %d", len(all), n+1)
	}
	for _, tn := range all {
		if tn.State != lifeboat.TenantAvailable || tn.Region != East || tn.Pool != PoolTrial || tn.Epoch != state.Epoch {
			t.Errorf("tenant %s after the recovery: %s in %s/%s at epoch %d (%s)", tn.Name, tn.State, tn.Pool, tn.Region, tn.Epoch, tn.Reason)
		}
		if tn.Name == fresh {
			continue
		}
		// Nothing lost beyond the tier's RPO (the row written after
		// the backup may be), nothing duplicated.
		rows, err := tenantRows(ctx, in, tn.Name)
		if err != nil {
			t.Errorf("tenant %s through the gate after the recovery: %v", tn.Name, err)
			continue
		}
		for id := 1; id <= TenantRows; id++ {
			if rows[id] != 1 {
				t.Errorf("tenant %s has %d rows of id %d, want 1: %v", tn.Name, rows[id], id, rows)
			}
		}
		if rows[TenantRows+1] > 1 || len(rows) > TenantRows+1 {
			t.Errorf("tenant %s has rows %v", tn.Name, rows)
		}
	}

	failback(t, in, all, map[string]map[int]int{fresh: {1: 1, 20: 1}})
}

// failback writes into some trial tenants in east (others stay as
// restored), runs 'lifeboat failback' and checks seed 004's failback
// steps: every tenant home at the new epoch, the changed trial tenants
// copied back with their old home copy kept renamed, the unchanged ones
// back on their home copy with exactly its rows, the paid tenants' rows
// intact, the DR pool gone, and no write taken by the DR pool once it
// was made read-only. created are the tenants created in east during the
// failover, with their rows: copied home with nothing kept.
func failback(t *testing.T, in *Info, before []lifeboat.Tenant, created map[string]map[int]int) {
	ctx := context.Background()
	changed := []string{TenantName(TierTrial, 1), TenantName(TierTrial, 2), TenantName(TierTrial, 3)}
	for _, name := range changed {
		c, err := gateConn(ctx, in, name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Exec(ctx, `INSERT INTO items VALUES (10, 'written in east')`)
		c.Close(ctx)
		if err != nil {
			t.Fatalf("writing into %s in east: %v", name, err)
		}
	}
	drDir := filepath.Join(in.Dir, "pools", PoolTrial+"-"+East)
	pidText, err := os.ReadFile(filepath.Join(drDir, "postmaster.pid"))
	if err != nil {
		t.Fatalf("the DR pool is not running: %v", err)
	}
	drPID, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(pidText), "\n", 2)[0]))

	// A writer straight into the DR pool while the failback runs: each of
	// its writes is either refused or copied back, and none is accepted
	// after the first refusal.
	racer := TenantName(TierTrial, 4)
	stop := make(chan struct{})
	type raced struct {
		ok      []int
		refused bool
		late    error
	}
	done := make(chan raced)
	go func() {
		var r raced
		defer func() { done <- r }()
		for i := 100; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c, err := pgx.Connect(cctx, in.TenantPoolURL(PoolTrial, East)+"&connect_timeout=5")
			if err != nil {
				cancel()
				continue
			}
			_, err = c.Exec(cctx, fmt.Sprintf(`INSERT INTO %s.items VALUES (%d, 'racer')`, racer, i))
			c.Close(context.Background())
			cancel()
			var pe *pgconn.PgError
			switch {
			case err == nil && r.refused:
				r.late = fmt.Errorf("write %d accepted after the DR pool refused writes", i)
			case err == nil:
				r.ok = append(r.ok, i)
			case errors.As(err, &pe) && pe.Code == "25006":
				r.refused = true
			}
		}
	}()

	back := runPlan(t, in, lifeboat.IntentFailback)
	if back.Active != West {
		t.Fatalf("after the failback: active %s", back.Active)
	}
	var fb *serve.Failback
	eventually(t, 90*time.Second, "the tenants' failback done", func() error {
		ts := statusOf(t, in.Dir).Tenants
		if ts == nil || ts.Failback == nil || !ts.Failback.Done || ts.Failback.Epoch != back.Epoch {
			if ts != nil {
				return fmt.Errorf("%+v (%s)", ts.Failback, ts.Error)
			}
			return errors.New("no tenants' status")
		}
		fb = ts.Failback
		return nil
	})
	close(stop)
	r := <-done
	for _, s := range fb.Steps {
		t.Logf("failback: %s", s)
	}
	t.Logf("racer into %s: %d writes accepted before the DR pool refused writes (refusal seen: %v)", racer, len(r.ok), r.refused)
	if r.late != nil {
		t.Error(r.late)
	}

	all := catalogTenants(t, in, back)
	if len(all) != len(before) {
		t.Fatalf("%d tenants after the failback, want %d", len(all), len(before))
	}
	for _, tn := range all {
		want, epoch := West, back.Epoch
		if tn.Pool == PoolPaidEast {
			want, epoch = East, 1 // split placement: its home is east
		}
		if tn.State != lifeboat.TenantAvailable || tn.Region != want || tn.Epoch != epoch {
			t.Errorf("tenant %s after the failback: %s in %s at epoch %d, want available in %s at %d", tn.Name, tn.State, tn.Region, tn.Epoch, want, epoch)
		}
	}
	wantChanged := slices.Clone(changed)
	if len(r.ok) > 0 {
		wantChanged = append(wantChanged, racer)
	}
	wantNew := slices.Sorted(maps.Keys(created))
	wantChanged = slices.Sorted(slices.Values(append(wantChanged, wantNew...)))
	gotChanged := slices.Sorted(slices.Values(fb.Changed))
	if !slices.Equal(gotChanged, wantChanged) {
		t.Errorf("failback found changed %v, want %v", gotChanged, wantChanged)
	}
	if got := slices.Sorted(slices.Values(fb.New)); !slices.Equal(got, wantNew) {
		t.Errorf("failback found created in east %v, want %v", got, wantNew)
	}
	wc, err := pgx.Connect(ctx, in.TenantPoolURL(PoolTrial, West))
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close(ctx)
	keptRows := func(schema string) map[int]int {
		out := map[int]int{}
		rows, err := wc.Query(ctx, fmt.Sprintf(`SELECT id, count(*) FROM %s.items GROUP BY id`, pgx.Identifier{schema}.Sanitize()))
		if err != nil {
			t.Errorf("kept copy %s in west: %v", schema, err)
			return nil
		}
		for rows.Next() {
			var id, n int
			_ = rows.Scan(&id, &n)
			out[id] = n
		}
		return out
	}
	home := map[int]int{1: 1, 2: 1, 3: 1, 4: 1} // rows 1..3 and the one after the backup
	for _, tn := range all {
		rows, err := tenantRows(ctx, in, tn.Name)
		if err != nil {
			t.Errorf("tenant %s through the gate after the failback: %v", tn.Name, err)
			continue
		}
		want := map[int]int{1: 1, 2: 1, 3: 1}
		switch {
		case tn.Tier == TierPaid:
		case created[tn.Name] != nil:
			want = created[tn.Name]
			if kept, ok := fb.Kept[tn.Name]; ok {
				t.Errorf("tenant %s, created in east, has a kept home copy %q recorded", tn.Name, kept)
			}
		case slices.Contains(wantChanged, tn.Name):
			if slices.Contains(changed, tn.Name) {
				want[10] = 1
			}
			if tn.Name == racer {
				for _, id := range r.ok {
					want[id] = 1
				}
			}
			kept := fb.Kept[tn.Name]
			if kept == "" {
				t.Errorf("changed tenant %s: no kept home copy recorded (%v)", tn.Name, fb.Kept)
			} else if got := keptRows(kept); !maps.Equal(got, home) {
				t.Errorf("changed tenant %s: kept home copy %s has %v, want %v", tn.Name, kept, got, home)
			}
		default:
			want = home
		}
		if !maps.Equal(rows, want) {
			t.Errorf("tenant %s (%s) after the failback has rows %v, want %v", tn.Name, tn.Tier, rows, want)
		}
	}
	if _, err := os.Stat(drDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the DR pool's directory %s is still there (%v)", drDir, err)
	}
	if drPID <= 0 || processAlive(drPID) {
		t.Errorf("the DR pool's postmaster %d is still alive", drPID)
	}
}

// processAlive: signal 0 answers and it is not a zombie.
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
