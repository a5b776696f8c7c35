package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// The conformance suite: every Store implementation must pass it.

func TestMemoryConformance(t *testing.T) {
	testConformance(t, func(t *testing.T) lifeboat.Store { return NewMemory() })
}

func TestEtcdConformance(t *testing.T) {
	testConformance(t, func(t *testing.T) lifeboat.Store { return openEtcd(t) })
}

// openEtcd starts a store with its own embedded member in a temp dir.
func openEtcd(t testing.TB) lifeboat.Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), Service: "shop"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testState(epoch uint64) *lifeboat.State {
	now := time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC)
	return &lifeboat.State{Service: "shop", Epoch: epoch, Active: "west", Since: now,
		Resources: map[string]*lifeboat.Resource{
			"shop-storefront-orders-west": {Name: "shop-storefront-orders-west", Unit: "storefront", Component: "orders",
				Kind: lifeboat.KindDatabase, Region: "west", Group: lifeboat.GroupPermanent, Exists: true, Role: lifeboat.DBPrimary, Epoch: epoch, Since: now},
		}}
}

func testRun(id string, started time.Time) *lifeboat.Run {
	return &lifeboat.Run{ID: id, Status: lifeboat.RunRunning, StartedAt: started, By: "sre@host",
		Plan: &lifeboat.Plan{Service: "shop", Intent: lifeboat.IntentFailover, From: "west", To: "east", Epoch: 2,
			Steps: []*lifeboat.Step{{ID: "epoch.raise", Op: lifeboat.OpRaiseEpoch, Epoch: 2}}}}
}

var t0 = time.Date(2026, 11, 22, 14, 15, 3, 0, time.UTC)

// begun returns a store with a state and a run r1 in progress.
func begun(t *testing.T, open func(*testing.T) lifeboat.Store) lifeboat.Store {
	t.Helper()
	s := open(t)
	ctx := context.Background()
	if _, err := s.Init(ctx, testState(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Begin(ctx, testRun("r1", t0)); err != nil {
		t.Fatal(err)
	}
	return s
}

func wantErr(t *testing.T, err, target error, retryable bool) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
	if lifeboat.IsRetryable(err) != retryable {
		t.Fatalf("error %q: retryable = %v, want %v", err, !retryable, retryable)
	}
}

func testConformance(t *testing.T, open func(*testing.T) lifeboat.Store) {
	ctx := context.Background()

	t.Run("init", func(t *testing.T) {
		s := open(t)
		_, err := s.State(ctx)
		wantErr(t, err, lifeboat.ErrNoState, false)
		got, err := s.Init(ctx, testState(1))
		if err != nil || got.Epoch != 1 || got.Resources["shop-storefront-orders-west"].Role != lifeboat.DBPrimary {
			t.Fatalf("Init = %+v, %v", got, err)
		}
		// A second Init keeps what is stored.
		got, err = s.Init(ctx, testState(5))
		if err != nil || got.Epoch != 1 {
			t.Fatalf("second Init = epoch %d, %v; want the stored epoch 1", got.Epoch, err)
		}
		st, err := s.State(ctx)
		if err != nil || st.Epoch != 1 || !st.Since.Equal(testState(1).Since) {
			t.Fatalf("State = %+v, %v", st, err)
		}
	})

	t.Run("begin", func(t *testing.T) {
		s := open(t)
		wantErr(t, s.Begin(ctx, testRun("r1", t0)), lifeboat.ErrNoState, false)
		s.Init(ctx, testState(1))
		if err := s.Begin(ctx, testRun("r1", t0)); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.State(ctx); st.Run != "r1" {
			t.Fatalf("state.Run = %q, want r1", st.Run)
		}
		err := s.Begin(ctx, testRun("r2", t0.Add(time.Second)))
		wantErr(t, err, lifeboat.ErrRunInProgress, false)
		for _, want := range []string{"r1", "lifeboat resume r1", "lifeboat cancel r1"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		// A failed run can be resumed: it still blocks others.
		r1, _ := s.Run(ctx, "r1")
		r1.Status = lifeboat.RunFailed
		if err := s.Update(ctx, r1); err != nil {
			t.Fatal(err)
		}
		wantErr(t, s.Begin(ctx, testRun("r2", t0.Add(time.Second))), lifeboat.ErrRunInProgress, false)
		r1.Status = lifeboat.RunSucceeded
		if err := s.Update(ctx, r1); err != nil {
			t.Fatal(err)
		}
		if err := s.Begin(ctx, testRun("r2", t0.Add(time.Second))); err != nil {
			t.Fatalf("Begin after r1 ended: %v", err)
		}
		// A reused id is a caller's bug, not a run in progress.
		r2, _ := s.Run(ctx, "r2")
		r2.Status = lifeboat.RunCancelled
		s.Update(ctx, r2)
		err = s.Begin(ctx, testRun("r1", t0))
		if err == nil || errors.Is(err, lifeboat.ErrRunInProgress) || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("Begin with a used id: %v", err)
		}
		if err := s.Begin(ctx, testRun("bad/id", t0)); err == nil || lifeboat.IsRetryable(err) {
			t.Fatalf("Begin with a '/' in the id: %v, want a permanent error", err)
		}
	})

	t.Run("begin race", func(t *testing.T) {
		s := open(t)
		s.Init(ctx, testState(1))
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = s.Begin(ctx, testRun(fmt.Sprintf("r%d", i), t0))
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("both r%d and r%d began", winner, i)
			case err == nil:
				winner = i
			default:
				wantErr(t, err, lifeboat.ErrRunInProgress, false)
			}
		}
		if winner < 0 {
			t.Fatal("no Begin won")
		}
		if st, _ := s.State(ctx); st.Run != fmt.Sprintf("r%d", winner) {
			t.Fatalf("state.Run = %q, want r%d", st.Run, winner)
		}
	})

	t.Run("append with state", func(t *testing.T) {
		s := begun(t, open)
		seq, err := s.Append(ctx, lifeboat.Record{Run: "r1", Step: "epoch.raise", Kind: lifeboat.RecStart, At: t0}, nil)
		if err != nil || seq != 1 {
			t.Fatalf("Append = %d, %v; want 1", seq, err)
		}
		if st, _ := s.State(ctx); st.Epoch != 1 {
			t.Fatalf("Append without state changed the state: epoch %d", st.Epoch)
		}
		st := testState(2)
		st.Run = "r1"
		seq, err = s.Append(ctx, lifeboat.Record{Run: "r1", Step: "epoch.raise", Kind: lifeboat.RecDone, At: t0}, st)
		if err != nil || seq != 2 {
			t.Fatalf("Append = %d, %v; want 2", seq, err)
		}
		if got, _ := s.State(ctx); got.Epoch != 2 || got.Run != "r1" {
			t.Fatalf("state after Append with state: epoch %d run %q", got.Epoch, got.Run)
		}
		_, err = s.Append(ctx, lifeboat.Record{Run: "nope", Kind: lifeboat.RecStart, At: t0}, testState(9))
		wantErr(t, err, lifeboat.ErrNoRun, false)
		if got, _ := s.State(ctx); got.Epoch != 2 {
			t.Fatalf("a failed Append wrote its state: epoch %d", got.Epoch)
		}
		// The failed Append did not use up a seq.
		if seq, _ := s.Append(ctx, lifeboat.Record{Run: "r1", Kind: lifeboat.RecStart, At: t0}, nil); seq != 3 {
			t.Fatalf("next seq = %d, want 3", seq)
		}
	})

	t.Run("concurrent appends", func(t *testing.T) {
		s := begun(t, open)
		const workers, each = 8, 40
		seqs := make([][]uint64, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					var st *lifeboat.State
					if i%4 == 0 {
						st = testState(uint64(w*each + i + 1))
					}
					seq, err := s.Append(ctx, lifeboat.Record{Run: "r1", Step: fmt.Sprintf("w%d-%d", w, i), Kind: lifeboat.RecDone, At: t0}, st)
					if err != nil {
						t.Error(err)
						return
					}
					seqs[w] = append(seqs[w], seq)
				}
			})
		}
		wg.Wait()
		seen := map[uint64]string{}
		for w := range workers {
			for i, seq := range seqs[w] {
				if i > 0 && seq <= seqs[w][i-1] {
					t.Fatalf("worker %d got seq %d after %d", w, seq, seqs[w][i-1])
				}
				step := fmt.Sprintf("w%d-%d", w, i)
				if other, dup := seen[seq]; dup {
					t.Fatalf("seq %d given to %s and %s", seq, other, step)
				}
				seen[seq] = step
			}
		}
		j, err := s.Journal(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		if len(j) != workers*each {
			t.Fatalf("journal has %d records, want %d", len(j), workers*each)
		}
		for i, rec := range j {
			if rec.Seq != uint64(i+1) {
				t.Fatalf("record %d has seq %d: gap or disorder", i, rec.Seq)
			}
			if seen[rec.Seq] != rec.Step {
				t.Fatalf("record seq %d is %s, but Append returned that seq for %s", rec.Seq, rec.Step, seen[rec.Seq])
			}
		}
	})

	t.Run("journal", func(t *testing.T) {
		s := begun(t, open)
		if j, err := s.Journal(ctx, "r1"); err != nil || len(j) != 0 {
			t.Fatalf("empty journal = %v, %v", j, err)
		}
		kinds := []lifeboat.RecordKind{lifeboat.RecStart, lifeboat.RecAttempt, lifeboat.RecError, lifeboat.RecAttempt, lifeboat.RecApplied, lifeboat.RecDone}
		for i, k := range kinds {
			rec := lifeboat.Record{Run: "r1", Step: "database.promote shop-storefront-orders-east", Kind: k, Attempt: (i + 1) / 2, At: t0.Add(time.Duration(i) * time.Millisecond)}
			if k == lifeboat.RecError {
				rec.Error, rec.Retryable = "connection refused", true
			}
			if k == lifeboat.RecDone {
				rec.Before = &lifeboat.Resource{Name: "shop-storefront-web-east", Kind: lifeboat.KindCompute, Instances: 3}
			}
			s.Append(ctx, rec, nil)
		}
		j, err := s.Journal(ctx, "r1")
		if err != nil || len(j) != len(kinds) {
			t.Fatalf("Journal = %d records, %v", len(j), err)
		}
		for i, rec := range j {
			if rec.Kind != kinds[i] || rec.Seq != uint64(i+1) || rec.Run != "r1" || !rec.At.Equal(t0.Add(time.Duration(i)*time.Millisecond)) {
				t.Fatalf("record %d = %+v", i, rec)
			}
		}
		if j[2].Error != "connection refused" || !j[2].Retryable {
			t.Fatalf("error record lost its fields: %+v", j[2])
		}
		if b := j[5].Before; b == nil || b.Name != "shop-storefront-web-east" || b.Instances != 3 {
			t.Fatalf("done record lost its Before: %+v", b)
		}
		_, err = s.Journal(ctx, "nope")
		wantErr(t, err, lifeboat.ErrNoRun, false)
	})

	t.Run("runs", func(t *testing.T) {
		s := begun(t, open)
		for i := 2; i <= 4; i++ {
			r, _ := s.Run(ctx, fmt.Sprintf("r%d", i-1))
			r.Status, r.EndedAt = lifeboat.RunSucceeded, t0.Add(time.Duration(i)*time.Minute)
			if err := s.Update(ctx, r); err != nil {
				t.Fatal(err)
			}
			if err := s.Begin(ctx, testRun(fmt.Sprintf("r%d", i), t0.Add(time.Duration(i)*time.Hour))); err != nil {
				t.Fatal(err)
			}
		}
		runs, err := s.Runs(ctx)
		if err != nil || len(runs) != 4 {
			t.Fatalf("Runs = %d, %v", len(runs), err)
		}
		for i, want := range []string{"r4", "r3", "r2", "r1"} {
			if runs[i].ID != want {
				t.Fatalf("Runs[%d] = %s, want %s (newest first)", i, runs[i].ID, want)
			}
		}
		r, err := s.Run(ctx, "r2")
		if err != nil || r.Status != lifeboat.RunSucceeded || r.Plan == nil || r.Plan.Intent != lifeboat.IntentFailover || r.By != "sre@host" {
			t.Fatalf("Run(r2) = %+v, %v", r, err)
		}
		_, err = s.Run(ctx, "nope")
		wantErr(t, err, lifeboat.ErrNoRun, false)
	})

	t.Run("update", func(t *testing.T) {
		for _, tc := range []struct {
			status lifeboat.RunStatus
			keeps  bool
		}{{lifeboat.RunRunning, true}, {lifeboat.RunWaiting, true}, {lifeboat.RunFailed, true}, {lifeboat.RunSucceeded, false}, {lifeboat.RunCancelled, false}} {
			s := begun(t, open)
			// A step's state write must survive the run's end.
			st := testState(2)
			st.Run = "r1"
			s.Append(ctx, lifeboat.Record{Run: "r1", Kind: lifeboat.RecDone, At: t0}, st)
			r := testRun("r1", t0)
			r.Status, r.Error = tc.status, "why"
			if err := s.Update(ctx, r); err != nil {
				t.Fatal(err)
			}
			got, _ := s.State(ctx)
			if (got.Run == "r1") != tc.keeps || got.Epoch != 2 {
				t.Fatalf("after Update to %s: state.Run = %q, epoch %d", tc.status, got.Run, got.Epoch)
			}
			if r, _ := s.Run(ctx, "r1"); r.Status != tc.status || r.Error != "why" {
				t.Fatalf("stored run = %+v", r)
			}
		}
		s := begun(t, open)
		wantErr(t, s.Update(ctx, testRun("nope", t0)), lifeboat.ErrNoRun, false)
	})

	t.Run("own", func(t *testing.T) {
		s := begun(t, open)
		owned := func(want bool) {
			t.Helper()
			if got, err := s.Owned(ctx, "r1"); err != nil || got != want {
				t.Fatalf("Owned = %v, %v; want %v", got, err, want)
			}
		}
		owned(false)
		release, err := s.Own(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		owned(true)
		owned(true) // asking does not take it
		_, err = s.Own(ctx, "r1")
		wantErr(t, err, lifeboat.ErrRunOwned, false)
		release()
		release() // twice is harmless
		owned(false)
		release2, err := s.Own(ctx, "r1")
		if err != nil {
			t.Fatalf("Own after release: %v", err)
		}
		defer release2()
		// The first release must not free the second owner's claim.
		release()
		_, err = s.Own(ctx, "r1")
		wantErr(t, err, lifeboat.ErrRunOwned, false)
		_, err = s.Own(ctx, "nope")
		wantErr(t, err, lifeboat.ErrNoRun, false)
		_, err = s.Owned(ctx, "nope")
		wantErr(t, err, lifeboat.ErrNoRun, false)
	})

	t.Run("own race", func(t *testing.T) {
		s := begun(t, open)
		const n = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for range n {
			wg.Go(func() {
				_, err := s.Own(ctx, "r1")
				if err == nil {
					mu.Lock()
					won++
					mu.Unlock()
				} else if !errors.Is(err, lifeboat.ErrRunOwned) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if won != 1 {
			t.Fatalf("%d owners at once, want 1", won)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		s := begun(t, open)
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		before, err := s.WatchCancel(wctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		select {
		case by := <-before:
			t.Fatalf("cancel delivered before any request: %q", by)
		default:
		}
		if err := s.RequestCancel(ctx, "r1", "alice@laptop"); err != nil {
			t.Fatal(err)
		}
		if by := <-before; by != "alice@laptop" {
			t.Fatalf("watch before request got %q", by)
		}
		after, err := s.WatchCancel(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		if by := <-after; by != "alice@laptop" {
			t.Fatalf("watch after request got %q", by)
		}
		wantErr(t, s.RequestCancel(ctx, "nope", "bob"), lifeboat.ErrNoRun, false)
		_, err = s.WatchCancel(ctx, "nope")
		wantErr(t, err, lifeboat.ErrNoRun, false)
	})

	t.Run("copies", func(t *testing.T) {
		s := begun(t, open)
		st, _ := s.State(ctx)
		st.Epoch = 99
		st.Resources["shop-storefront-orders-west"].Role = lifeboat.DBFenced
		if again, _ := s.State(ctx); again.Epoch != 1 || again.Resources["shop-storefront-orders-west"].Role != lifeboat.DBPrimary {
			t.Fatal("mutating a returned state changed the store")
		}
	})

	t.Run("closed", func(t *testing.T) {
		s := open(t)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.State(ctx); err == nil {
			t.Fatal("State after Close succeeded")
		}
	})
}
