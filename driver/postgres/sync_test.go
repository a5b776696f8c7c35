package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/driver/postgres"
)

// Strict sync: a write blocks while the standby is gone, and completes
// when it comes back (seed 002: consistency over availability).
func TestSyncStrictBlocksWritesWhileTheStandbyIsGone(t *testing.T) {
	ctx := timeout(t)
	p := newPair(t, &postgres.Replication{Mode: postgres.ModeSync})
	must(t, p.d.SetReplication(ctx, west))
	exec(t, ctx, p.west, "CREATE TABLE t (id int)")
	eventually(t, ctx, "east to be the sync standby", func() (bool, error) {
		ns, err := p.d.Inspect(ctx, target(east, 0))
		return err == nil && ns.SyncState == "sync", err
	})

	p.east.Stop(t)
	done := make(chan error, 1)
	conn := dial(t, ctx, p.west)
	go func() { _, err := conn.Exec(ctx, "INSERT INTO t VALUES (1)"); done <- err }()
	// The write waits for the standby: the primary says so.
	watch := dial(t, ctx, p.west)
	eventually(t, ctx, "the insert to wait for the sync standby", func() (bool, error) {
		var n int
		err := watch.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'").Scan(&n)
		return n == 1, err
	})
	select {
	case err := <-done:
		t.Fatalf("the write completed while the sync standby was down: %v", err)
	default:
	}
	p.east.Start(t)
	select {
	case err := <-done:
		must(t, err)
	case <-ctx.Done():
		t.Fatal("the write never completed after the standby came back")
	}
	if len(p.d.Exposures(db)) != 0 {
		t.Errorf("strict sync recorded an exposure: %+v", p.d.Exposures(db))
	}
}

// Degrade-after: once the standby has been gone for D, writes go on, and the
// period is recorded as RPO exposure; sync is restored when it returns.
func TestSyncDegradesAfterAndRecordsTheExposure(t *testing.T) {
	ctx := timeout(t)
	p := newPair(t, &postgres.Replication{Mode: postgres.ModeSync, DegradeAfter: 300 * time.Millisecond})
	must(t, p.d.SetReplication(ctx, west))
	exec(t, ctx, p.west, "CREATE TABLE t (id int)")
	wctx, stop := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- p.d.WatchSync(wctx, db, 20*time.Millisecond) }()
	defer func() { stop(); <-watched }()

	gone := time.Now()
	p.east.Stop(t)
	done := make(chan error, 1)
	go func() { _, err := dial(t, ctx, p.west).Exec(ctx, "INSERT INTO t VALUES (1)"); done <- err }()
	select {
	case err := <-done:
		must(t, err)
	case <-ctx.Done():
		t.Fatal("the write never completed: the watcher did not degrade to async")
	}
	ex := p.d.Exposures(db)
	if len(ex) != 1 || ex[0].Start.Before(gone) || !ex[0].End.IsZero() || ex[0].Primary != west {
		t.Fatalf("exposures while degraded: %+v (standby gone at %s)", ex, gone)
	}
	p.east.Start(t)
	eventually(t, ctx, "the exposure to end and sync to return", func() (bool, error) {
		ex := p.d.Exposures(db)
		if len(ex) != 1 || ex[0].End.IsZero() {
			return false, nil
		}
		var names string
		err := dial(t, ctx, p.west).QueryRow(ctx, "SELECT current_setting('synchronous_standby_names')").Scan(&names)
		return names != "", err
	})
	t.Logf("exposure: %+v", p.d.Exposures(db))
}
