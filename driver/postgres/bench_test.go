package postgres_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

// Run with: go test -run '^$' -bench . -benchtime 5x ./driver/postgres/
// Each iteration builds its own pair of clusters outside the timer.

func BenchmarkPromote(b *testing.B) {
	ctx := context.Background()
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := newPair(b, nil)
		b.StartTimer()
		start := time.Now()
		must(b, p.d.Promote(ctx, target(east, 2)))
		took = append(took, time.Since(start))
	}
	reportSpread(b, took)
}

// What Promote did before: pg_promote(wait => true), which looks every
// 100ms (the SQL alone, without the driver's records and settings).
func BenchmarkPromoteWaitSQL(b *testing.B) {
	ctx := context.Background()
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := newPair(b, nil)
		conn := dial(b, ctx, p.east)
		b.StartTimer()
		start := time.Now()
		var done bool
		must(b, conn.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&done))
		took = append(took, time.Since(start))
	}
	reportSpread(b, took)
}

// A fence of a primary Lifeboat runs (its shutdown, bounded), against
// what it was before: pg_ctl stop -m fast.
func BenchmarkFence(b *testing.B) {
	ctx := context.Background()
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := newPair(b, nil)
		exec(b, ctx, p.west, "CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g")
		b.StartTimer()
		start := time.Now()
		must(b, p.d.Fence(ctx, target(west, 2)))
		took = append(took, time.Since(start))
	}
	reportSpread(b, took)
}

func BenchmarkFencePgCtlStop(b *testing.B) {
	ctx := context.Background()
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := newPair(b, nil)
		exec(b, ctx, p.west, "CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g")
		b.StartTimer()
		start := time.Now()
		must(b, p.west.Instance.Stop(ctx, "fast"))
		took = append(took, time.Since(start))
	}
	reportSpread(b, took)
}

// reportSpread adds the median and the slowest iteration: the outliers
// matter on a failover's critical path, not only the mean.
func reportSpread(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "ms-max")
}

// The write-unavailable window: the old primary's clean shutdown, the
// catch-up wait, and pg_promote (ns/op is the whole switchover, including
// the wait until the old primary streams again).
func BenchmarkSwitchover(b *testing.B) {
	ctx := context.Background()
	var unavailable time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := newPair(b, nil)
		exec(b, ctx, p.west, "CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g")
		b.StartTimer()
		must(b, p.d.Switchover(ctx, target(west, 2), target(east, 2)))
		rep, _ := p.d.LastSwitchover(east)
		unavailable += rep.WriteUnavailable
	}
	b.ReportMetric(float64(unavailable.Milliseconds())/float64(b.N), "ms-write-unavailable/op")
}

// Rejoin by pg_rewind of an old primary that wrote past the divergence
// (with its quarantine).
func BenchmarkRejoinRewind(b *testing.B) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := newPair(b, nil)
		exec(b, ctx, p.west, "CREATE TABLE t (id int)")
		exec(b, ctx, p.east, "ALTER SYSTEM SET primary_conninfo = ''")
		exec(b, ctx, p.east, "SELECT pg_reload_conf()")
		eventually(b, ctx, "walreceiver stopped", func() (bool, error) {
			var n int
			err := dial(b, ctx, p.east).QueryRow(ctx, "SELECT count(*) FROM pg_stat_wal_receiver").Scan(&n)
			return n == 0, err
		})
		must(b, p.d.Promote(ctx, target(east, 2)))
		exec(b, ctx, p.west, "INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
		b.StartTimer()
		must(b, p.d.Rejoin(ctx, target(west, 2), target(east, 2)))
	}
}

func BenchmarkBaseBackup(b *testing.B) {
	ctx := context.Background()
	p := pgtest.StartPrimary(b)
	exec(b, ctx, p, "CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g")
	base := b.TempDir()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		port, err := postgres.FreePort()
		must(b, err)
		inst := &postgres.Instance{DataDir: filepath.Join(base, "bb", time.Now().Format("150405.000000")), Host: "127.0.0.1", Port: port}
		b.StartTimer()
		must(b, inst.BaseBackup(ctx, p.ReplicationConninfo("bench")))
	}
}
