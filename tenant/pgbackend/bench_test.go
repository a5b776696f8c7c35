package pgbackend

import (
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

// BenchmarkMakeAvailable500Schema: from a promoted standby, the time until
// 500 schema tenants are all made available (batches of 20, 4 at once),
// with a new backend each time (cold connections, as after a failover).
// The target (issue 7) is 500 paid tenants within 5 s of promotion.
func BenchmarkMakeAvailable500Schema(b *testing.B) {
	west := pgtest.StartPrimary(b, pgtest.Name("west"))
	schemas := names("s", 500)
	seedSchemaTenants(b, west.Port, "bulk", schemas, 3)
	east := pgtest.StartStandby(b, west, pgtest.Name("east"))
	spec := testSpec()
	addPool(spec, "bulk", lifeboat.IsolationSchema, lifeboat.StrategyGeoReplicate, 1, endpoints{"west": pgURL(west.Port, "bulk"), "east": pgURL(east.Port, "bulk")})
	ctx := testCtx(b)
	// The standby has every schema once it answers for the last one.
	for {
		var n int
		c, err := pgx.Connect(ctx, pgURL(east.Port, "bulk"))
		if err == nil {
			err = c.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 's%'`).Scan(&n)
			c.Close(ctx)
		}
		if n == 500 {
			break
		}
		select {
		case <-ctx.Done():
			b.Fatalf("standby has %d of 500 schemas: %v", n, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	west.Kill(b)
	start := time.Now()
	var ok bool
	if err := connect(b, pgURL(east.Port, "postgres")).QueryRow(ctx, `SELECT pg_promote(true, 60)`).Scan(&ok); err != nil || !ok {
		b.Fatal(err)
	}
	b.Logf("pg_promote(wait) took %v", time.Since(start))
	b.ResetTimer()
	for b.Loop() {
		be, err := New(Config{Spec: spec})
		if err != nil {
			b.Fatal(err)
		}
		if err := batches(ctx, be, "bulk", schemas, 20, 4); err != nil {
			b.Fatal(err)
		}
		be.Close()
	}
}

// BenchmarkRestore: restores per second of small schema tenants (100
// rows), 4 at once, into a DR pool.
func BenchmarkRestore(b *testing.B) {
	west := pgtest.StartPrimary(b, pgtest.Name("west"))
	east := pgtest.StartPrimary(b, pgtest.Name("east"))
	spec := testSpec()
	addPool(spec, "trial", lifeboat.IsolationSchema, lifeboat.StrategyGeoRestore, 2, endpoints{"west": pgURL(west.Port, "trial"), "east": pgURL(east.Port, "trial")})
	ts := names("t", 20)
	seedSchemaTenants(b, west.Port, "trial", ts, 100)
	cat := tenant.NewMemoryCatalog()
	addTenants(b, cat, "trial", "west", ts)
	dirs := backupDirs(b)
	backupAll(b, spec, cat, dirs, t0)
	be, err := New(Config{Spec: spec, Backups: dirs, Provisioner: &Command{Argv: []string{"true"}}})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	ctx := testCtx(b)
	if err := be.CreatePool(ctx, "trial", "east"); err != nil {
		b.Fatal(err)
	}
	ec := connect(b, pgURL(east.Port, "trial"))
	var took time.Duration
	restores := 0
	for b.Loop() {
		b.StopTimer()
		for _, n := range ts {
			mustExec(b, ec, `DROP SCHEMA IF EXISTS `+ident(n)+` CASCADE`)
		}
		b.StartTimer()
		start := time.Now()
		sem := make(chan struct{}, 4)
		errs := make(chan error, len(ts))
		for _, n := range ts {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				errs <- be.Restore(ctx, "trial", "east", n)
			}()
		}
		for range len(ts) {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		took += time.Since(start)
		restores += len(ts)
	}
	b.ReportMetric(float64(restores)/took.Seconds(), "restores/s")
	if got := schemaRows(b, pgURL(east.Port, "trial"), "t007"); !slices.Equal(got, seq(100)) {
		b.Fatalf("t007 has %d rows", len(got))
	}
}

// BenchmarkMakeAvailable100Database: as above for 100 database tenants
// (one connection per tenant database; 100 keeps the base backup small).
func BenchmarkMakeAvailable100Database(b *testing.B) {
	west := pgtest.StartPrimary(b, pgtest.Name("west"))
	dbs := names("p", 100)
	seedDatabaseTenants(b, west.Port, dbs, 3)
	east := pgtest.StartStandby(b, west, pgtest.Name("east"))
	spec := testSpec()
	addPool(spec, "paid", lifeboat.IsolationDatabase, lifeboat.StrategyGeoReplicate, 1, endpoints{"west": pgURL(west.Port, "postgres"), "east": pgURL(east.Port, "postgres")})
	ctx := testCtx(b)
	west.Kill(b)
	var ok bool
	if err := connect(b, pgURL(east.Port, "postgres")).QueryRow(ctx, `SELECT pg_promote(true, 60)`).Scan(&ok); err != nil || !ok {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		be, err := New(Config{Spec: spec})
		if err != nil {
			b.Fatal(err)
		}
		if err := batches(ctx, be, "paid", dbs, 20, 4); err != nil {
			b.Fatal(err)
		}
		be.Close()
	}
}
