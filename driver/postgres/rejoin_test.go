package postgres_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
)

// An unplanned failover with a cut link: the old primary acknowledges
// writes the standby never receives. Rejoining it must keep them in
// quarantine, with a report, and make it stream from the new primary.
func TestRejoinQuarantinesWritesThatNeverReplicated(t *testing.T) {
	ctx := timeout(t)
	p := newPair(t, nil)
	exec(t, ctx, p.west, "CREATE TABLE orders (id int PRIMARY KEY, note text)")
	exec(t, ctx, p.west, "INSERT INTO orders SELECT g, 'replicated' FROM generate_series(1, 100) g")
	caughtUp(t, ctx, p.d, east)

	// Cut replication: east's WAL receiver stops.
	exec(t, ctx, p.east, "ALTER SYSTEM SET primary_conninfo = ''")
	exec(t, ctx, p.east, "SELECT pg_reload_conf()")
	eastConn := dial(t, ctx, p.east)
	eventually(t, ctx, "east's WAL receiver to stop", func() (bool, error) {
		var n int
		err := eastConn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_wal_receiver").Scan(&n)
		return n == 0, err
	})

	// Failover: the fence cannot reach west (it is cut off), east is promoted.
	must(t, p.d.Promote(ctx, target(east, 2)))
	exec(t, ctx, p.east, "INSERT INTO orders VALUES (1000, 'new primary')")

	// West still takes (and acknowledges) writes.
	const lost = 5
	for i := 1; i <= lost; i++ {
		exec(t, ctx, p.west, "INSERT INTO orders VALUES ($1, $2)", 100+i, fmt.Sprintf("lost-write-marker-%d", i))
	}

	must(t, p.d.Rejoin(ctx, target(west, 2), target(east, 2)))
	must(t, p.d.Rejoin(ctx, target(west, 2), target(east, 2))) // idempotent

	if r := role(t, ctx, p.d, west); r != lifeboat.DBReplica {
		t.Fatalf("west is %s after rejoin, want replica", r)
	}
	ns, err := p.d.Inspect(ctx, target(east, 2))
	must(t, err)
	if len(ns.Standbys) != 1 || ns.Standbys[0].Name != west || ns.Standbys[0].State != "streaming" {
		t.Fatalf("east's standbys after the rejoin: %+v", ns.Standbys)
	}
	caughtUp(t, ctx, p.d, west)
	var n int
	must(t, dial(t, ctx, p.west).QueryRow(ctx, "SELECT count(*) FROM orders WHERE id = 1000").Scan(&n))
	if n != 1 {
		t.Errorf("west does not have the new primary's write after the rejoin")
	}

	rep, ok := p.d.LastQuarantine(west)
	if !ok {
		t.Fatal("no quarantine report")
	}
	t.Logf("quarantine: %s, divergence %s, %d transactions, segments %v, method %s", rep.Dir, rep.DivergenceLSN, len(rep.Transactions), rep.WALSegments, rep.Method)
	if rep.DivergenceLSN == 0 || rep.OldTimeline != 1 || rep.NewTimeline != 2 || rep.Method != "rewind" {
		t.Errorf("report: %+v", rep)
	}
	if len(rep.Transactions) < lost {
		t.Errorf("report lists %d un-replicated transactions, want at least %d", len(rep.Transactions), lost)
	}
	for _, tx := range rep.Transactions {
		if tx.XID == 0 || tx.LSN < rep.DivergenceLSN || tx.Committed.IsZero() {
			t.Errorf("transaction %+v", tx)
		}
	}
	// The acknowledged rows are not silently lost: their bytes are in the
	// quarantined WAL.
	var wal []byte
	for _, s := range rep.WALSegments {
		b, err := os.ReadFile(filepath.Join(rep.Dir, "pg_wal", s))
		must(t, err)
		wal = append(wal, b...)
	}
	for i := 1; i <= lost; i++ {
		if !bytes.Contains(wal, fmt.Appendf(nil, "lost-write-marker-%d", i)) {
			t.Errorf("the quarantined WAL does not hold lost-write-marker-%d", i)
		}
	}
	for _, f := range []string{"report.json", "REPORT.txt", "waldump.txt"} {
		if _, err := os.Stat(filepath.Join(rep.Dir, f)); err != nil {
			t.Error(err)
		}
	}
	// Another process finds the report on disk.
	d2, err := postgres.New(p.cfg)
	must(t, err)
	if rep2, ok := d2.LastQuarantine(west); !ok || rep2.DivergenceLSN != rep.DivergenceLSN || len(rep2.Transactions) != len(rep.Transactions) {
		t.Errorf("report read back from disk: %+v", rep2)
	}
}

// When pg_rewind cannot work (here: the old node's data dir is another
// cluster altogether), the rejoin falls back to a base backup, and the old
// data dir goes to quarantine first: nothing is deleted without a copy.
func TestRejoinFallsBackToBaseBackupKeepingTheOldDataDir(t *testing.T) {
	ctx := timeout(t)
	p := newPair(t, nil)
	must(t, p.d.Fence(ctx, target(west, 2)))
	must(t, p.d.Promote(ctx, target(east, 2)))
	// Replace west's data dir by an unrelated cluster: pg_rewind refuses it.
	must(t, os.Rename(p.west.Dir, p.west.Dir+".orig"))
	other := &postgres.Instance{DataDir: p.west.Dir, Host: "127.0.0.1", Port: p.west.Port, Name: west}
	must(t, other.Init(ctx, postgres.InitOptions{Superuser: "lifeboat", Password: "x"}))

	must(t, p.d.Rejoin(ctx, target(west, 2), target(east, 2)))
	rep, ok := p.d.LastQuarantine(west)
	if !ok || rep.Method != "basebackup" || rep.DataDirCopy == "" {
		t.Fatalf("report: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(rep.DataDirCopy, "PG_VERSION")); err != nil {
		t.Errorf("the old data dir is not in quarantine: %v", err)
	}
	if r := role(t, ctx, p.d, west); r != lifeboat.DBReplica {
		t.Fatalf("west is %s, want replica", r)
	}
	w, err := p.d.Inspect(ctx, target(west, 2))
	must(t, err)
	e, err := p.d.Inspect(ctx, target(east, 2))
	must(t, err)
	if w.SystemID != e.SystemID {
		t.Errorf("west is cluster %s, east %s", w.SystemID, e.SystemID)
	}
}
