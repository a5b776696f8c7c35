package pgbackend

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/recovery"
)

type capacities struct {
	mu  sync.Mutex
	set map[string]int
}

func (c *capacities) SetCapacity(pool, region string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.set[pool+"/"+region] = n
}

// waitReplayed waits until the standby has replayed everything the
// primary has written so far.
func waitReplayed(t *testing.T, primary, standby *pgtest.Cluster) {
	t.Helper()
	ctx := testCtx(t)
	var target string
	if err := connect(t, primary.DSN("postgres")).QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	want, _ := postgres.ParseLSN(target)
	sc := connect(t, standby.DSN("postgres"))
	for {
		var got string
		if err := sc.QueryRow(ctx, `SELECT coalesce(pg_last_wal_replay_lsn()::text, '0/0')`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if l, _ := postgres.ParseLSN(got); l >= want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("standby never replayed up to %s (at %s)", target, got)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestRecoveryEndToEnd runs the recovery executor with this backend on
// real PostgreSQL, west lost: the paid pool (database isolation, a
// streaming standby in east) promoted and its tenants made available in
// batches, its capacity raised; the trial pool (schema isolation, no
// standby) created in east by the lab provisioner and its tenants
// restored from the backups shipped there. At the end every tenant's
// rows are checked: paid tenants lost nothing, trial tenants have exactly
// the rows of their backup, none twice.
func TestRecoveryEndToEnd(t *testing.T) {
	paidW := pgtest.StartPrimary(t, pgtest.Name("paid-west"))
	trialW := pgtest.StartPrimary(t, pgtest.Name("trial-west"))
	paid, trial := names("paid", 30), names("trial", 25)
	seedDatabaseTenants(t, paidW.Port, paid, 10)
	seedSchemaTenants(t, trialW.Port, "trial", trial, 10)
	paidE := pgtest.StartStandby(t, paidW, pgtest.Name("paid-east"))
	trialEast := freeURL(t, "trial")

	spec := testSpec()
	addPool(spec, "paid", lifeboat.IsolationDatabase, lifeboat.StrategyGeoReplicate, 1, endpoints{"west": pgURL(paidW.Port, "postgres"), "east": pgURL(paidE.Port, "postgres")})
	addPool(spec, "trial", lifeboat.IsolationSchema, lifeboat.StrategyGeoRestore, 2, endpoints{"west": pgURL(trialW.Port, "trial"), "east": trialEast})
	p := spec.Tenants.Pools["paid"]
	p.Capacity = &lifeboat.PoolCapacity{Active: 100, Standby: 10}
	spec.Tenants.Pools["paid"] = p

	cat := tenant.NewMemoryCatalog()
	addTenants(t, cat, "paid", "west", paid)
	addTenants(t, cat, "trial", "west", trial)
	dirs := backupDirs(t)
	backupAll(t, spec, cat, dirs, t0)

	// After the backup: paid rows stream to east; trial rows are lost
	// with west (they are beyond the backup point).
	ctx := testCtx(t)
	for _, n := range paid {
		mustExec(t, connect(t, pgURL(paidW.Port, n)), `INSERT INTO items SELECT g, 'late' FROM generate_series(11, 15) g`)
	}
	tc := connect(t, pgURL(trialW.Port, "trial"))
	for _, n := range trial {
		mustExec(t, tc, fmt.Sprintf(`INSERT INTO %s.items VALUES (11, 'lost')`, ident(n)))
	}
	waitReplayed(t, paidW, paidE)
	paidW.Kill(t)
	trialW.Kill(t)

	prov := &Postgres{Dir: labDir(t)}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = prov.Stop(c)
	})
	caps := &capacities{set: map[string]int{}}
	be, err := New(Config{Spec: spec, Backups: dirs, Provisioner: prov, Capacity: caps})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	all, _ := cat.List(ctx, tenant.Filter{})
	s, err := recovery.New(recovery.Config{Tenants: *spec.Tenants, Primary: "west", Lost: "west", Target: "east", Epoch: 2}, all)
	if err != nil {
		t.Fatal(err)
	}
	run := recovery.Start(ctx, s, be, cat, nil, recovery.WithBackoff(20*time.Millisecond))
	if err := run.CatalogPromoted(); err != nil {
		t.Fatal(err)
	}
	var promoted bool
	if err := connect(t, paidE.DSN("postgres")).QueryRow(ctx, `SELECT pg_promote(true, 60)`).Scan(&promoted); err != nil || !promoted {
		t.Fatalf("promote: %v %v", promoted, err)
	}
	if err := run.PoolPromoted("paid"); err != nil {
		t.Fatal(err)
	}
	st, err := run.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recovery: %s", st)
	if st.Counts[lifeboat.TenantAvailable] != 55 {
		for _, ts := range run.Tenants() {
			if ts.State != lifeboat.TenantAvailable {
				t.Errorf("%s: %s %s", ts.Name, ts.State, ts.Reason)
			}
		}
		t.Fatalf("counts %v, want 55 available", st.Counts)
	}
	all, _ = cat.List(ctx, tenant.Filter{})
	for _, tn := range all {
		if tn.Region != "east" || tn.State != lifeboat.TenantAvailable || tn.Epoch != 2 {
			t.Fatalf("catalog: %+v", tn)
		}
	}
	for _, n := range paid {
		if got := rows(t, pgURL(paidE.Port, n)); !slices.Equal(got, seq(15)) {
			t.Fatalf("paid tenant %s: rows %v, want 1..15", n, got)
		}
	}
	for _, n := range trial {
		if got := schemaRows(t, trialEast, n); !slices.Equal(got, seq(10)) {
			t.Fatalf("trial tenant %s: rows %v, want 1..10 (its backup)", n, got)
		}
	}
	caps.mu.Lock()
	defer caps.mu.Unlock()
	if caps.set["paid/east"] != 100 {
		t.Fatalf("capacities %v, want paid/east raised to 100", caps.set)
	}
}
