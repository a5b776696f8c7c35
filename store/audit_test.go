package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

func TestMemoryAudit(t *testing.T) {
	testAudit(t, func(t *testing.T) lifeboat.Store { return NewMemory() })
}

func TestEtcdAudit(t *testing.T) {
	testAudit(t, func(t *testing.T) lifeboat.Store { return openEtcd(t) })
}

func testAudit(t *testing.T, open func(*testing.T) lifeboat.Store) {
	ctx := context.Background()
	s := open(t)
	log, err := Audit(s)
	if err != nil {
		t.Fatal(err)
	}
	if recs, err := log.Audit(ctx, time.Time{}, 0); err != nil || len(recs) != 0 {
		t.Fatalf("empty trail: got %v, %v", recs, err)
	}
	for i := 0; i < 5; i++ {
		seq, err := log.Append(ctx, AuditRecord{Seq: 99, At: t0.Add(time.Duration(i) * time.Minute), Who: "ops", Role: lifeboat.RoleOperator,
			Action: "runs.start", Args: map[string]string{"intent": "switchover", "i": fmt.Sprint(i)}, Status: 202, Result: "accepted", Run: fmt.Sprintf("r-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i+1) {
			t.Fatalf("append %d: seq %d, want %d (the store assigns seqs in order)", i, seq, i+1)
		}
	}
	all, err := log.Audit(ctx, time.Time{}, 0)
	if err != nil || len(all) != 5 {
		t.Fatalf("all: %d records, %v; want 5", len(all), err)
	}
	for i, r := range all {
		if r.Seq != uint64(i+1) || r.Args["i"] != fmt.Sprint(i) || r.Who != "ops" || r.Run != fmt.Sprintf("r-%d", i) {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	since, err := log.Audit(ctx, t0.Add(3*time.Minute), 0)
	if err != nil || len(since) != 2 || since[0].Seq != 4 {
		t.Fatalf("since 3m: %+v, %v; want seqs 4, 5", since, err)
	}
	last, err := log.Audit(ctx, time.Time{}, 2)
	if err != nil || len(last) != 2 || last[0].Seq != 4 || last[1].Seq != 5 {
		t.Fatalf("limit 2: %+v, %v; want the newest two, oldest first", last, err)
	}
	// The same store gives the same trail.
	again, _ := Audit(s)
	if recs, _ := again.Audit(ctx, time.Time{}, 0); len(recs) != 5 {
		t.Fatalf("a second Audit(s) sees %d records, want 5", len(recs))
	}

	// Concurrent writers never overwrite each other.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := log.Append(ctx, AuditRecord{At: t0.Add(time.Hour), Who: "w", Action: "runs.cancel"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	all, _ = log.Audit(ctx, time.Time{}, 0)
	if len(all) != 13 {
		t.Fatalf("after 8 concurrent appends: %d records, want 13", len(all))
	}
	for i, r := range all {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d: seqs must be 1..n without gaps or repeats", i, r.Seq)
		}
	}
}
