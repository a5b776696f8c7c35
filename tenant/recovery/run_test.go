package recovery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// fakeBackend is an in-memory Backend. It measures how many batches and
// restores run at once; with gated set, every batch and restore waits
// for release (or the context) before it ends.
type fakeBackend struct {
	mu        sync.Mutex
	gated     bool
	gates     map[string]chan struct{} // by first tenant: closed to end it
	batches   int
	restores  int
	maxB      int
	maxR      int
	started   []string // first tenant of each batch or restore, in order
	calls     map[string]int
	available map[string]string // tenant → region
	fail      func(kind ActionKind, name string, attempt int) error
	pools     []string
	raised    map[string]int
	jitter    bool
}

func newFakeBackend(gated bool) *fakeBackend {
	return &fakeBackend{gated: gated, gates: map[string]chan struct{}{}, calls: map[string]int{},
		available: map[string]string{}, raised: map[string]int{}}
}

func (f *fakeBackend) enter(kind ActionKind, names []string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		if f.available[n] != "" {
			return 0, lifeboat.Permanent("fake", n, fmt.Errorf("%s of %s, already available", kind, n))
		}
	}
	if kind == MakeAvailable {
		f.batches++
		f.maxB = max(f.maxB, f.batches)
	} else {
		f.restores++
		f.maxR = max(f.maxR, f.restores)
	}
	f.started = append(f.started, names[0])
	if f.gated {
		f.gates[names[0]] = make(chan struct{})
	}
	f.calls[names[0]]++
	return f.calls[names[0]], nil
}

func (f *fakeBackend) leave(ctx context.Context, kind ActionKind, region string, names []string, attempt int) error {
	var err error
	if f.gated {
		f.mu.Lock()
		gate := f.gates[names[0]]
		f.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			err = ctx.Err()
		}
	} else if f.jitter {
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond) // lets calls overlap
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if kind == MakeAvailable {
		f.batches--
	} else {
		f.restores--
	}
	if err == nil && f.fail != nil {
		err = f.fail(kind, names[0], attempt)
	}
	if err == nil {
		for _, n := range names {
			f.available[n] = region
		}
	}
	return err
}

func (f *fakeBackend) MakeAvailable(ctx context.Context, pool, region string, names []string) error {
	attempt, err := f.enter(MakeAvailable, names)
	if err != nil {
		return err
	}
	return f.leave(ctx, MakeAvailable, region, names, attempt)
}

func (f *fakeBackend) Restore(ctx context.Context, pool, region, name string) error {
	attempt, err := f.enter(Restore, []string{name})
	if err != nil {
		return err
	}
	return f.leave(ctx, Restore, region, []string{name}, attempt)
}

func (f *fakeBackend) CreatePool(ctx context.Context, pool, region string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pools = append(f.pools, pool+"@"+region)
	return nil
}

func (f *fakeBackend) RaiseCapacity(ctx context.Context, pool, region string, n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.raised[pool+"@"+region] = n
	return nil
}

// end lets the batch or restore that starts with name end, once started.
func (f *fakeBackend) end(t *testing.T, name string) {
	t.Helper()
	waitFor(t, name+" started", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		if g := f.gates[name]; g != nil {
			close(g)
			delete(f.gates, name)
			return true
		}
		return false
	})
}

// waitStarted waits until the backend has started n batches or restores in
// all, and returns their first tenants.
func (f *fakeBackend) waitStarted(t *testing.T, n int) []string {
	t.Helper()
	var got []string
	waitFor(t, fmt.Sprintf("%d batches or restores started", n), func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		got = slices.Clone(f.started)
		return len(got) >= n
	})
	return got
}

// fakeCatalog is an in-memory Catalog.
type fakeCatalog struct {
	mu      sync.Mutex
	tenants map[string]lifeboat.Tenant
	sets    int
	history map[string][]lifeboat.TenantState
}

func newFakeCatalog(ts []lifeboat.Tenant) *fakeCatalog {
	c := &fakeCatalog{tenants: map[string]lifeboat.Tenant{}, history: map[string][]lifeboat.TenantState{}}
	for _, t := range ts {
		c.tenants[t.Name] = t
	}
	return c
}

func (c *fakeCatalog) Set(ctx context.Context, names []string, ch lifeboat.TenantChange) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sets++
	n := 0
	for _, name := range names {
		t, ok := c.tenants[name]
		if !ok || (ch.Region != "" && ch.Epoch < t.Epoch) {
			continue
		}
		if ch.State != "" {
			t.State = ch.State
			c.history[name] = append(c.history[name], ch.State)
		}
		t.Reason = ch.Reason
		if ch.Region != "" {
			t.Region, t.Epoch = ch.Region, ch.Epoch
		}
		if !ch.Recovered.IsZero() {
			t.Recovered = ch.Recovered
		}
		c.tenants[name] = t
		n++
	}
	return n, nil
}

func (c *fakeCatalog) get(name string) lifeboat.Tenant {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tenants[name]
}

// waitFor polls cond until it holds, within a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func scenario2(paid, trial, batch, conc int) (Config, []lifeboat.Tenant) {
	cfg := Config{Lost: "west", Target: "east", Epoch: 5, Tenants: lifeboat.Tenants{
		Catalog: "app.catalog", Batch: batch, Concurrency: conc,
		Pools: map[string]lifeboat.Pool{
			"paid":  {Database: "app.paid", Capacity: &lifeboat.PoolCapacity{Active: 100, Standby: 10}},
			"trial": {Database: "app.trial"},
		},
		Tiers: map[string]lifeboat.Tier{
			"paid":  {Pool: "paid", Strategy: lifeboat.StrategyGeoReplicate},
			"trial": {Pool: "trial", Strategy: lifeboat.StrategyGeoRestore, Priority: 1},
		},
	}}
	var ts []lifeboat.Tenant
	for i := range paid {
		ts = append(ts, lifeboat.Tenant{Name: fmt.Sprintf("p%03d", i+1), Tier: "paid", Pool: "paid", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable})
	}
	for i := range trial {
		ts = append(ts, lifeboat.Tenant{Name: fmt.Sprintf("t%03d", i+1), Tier: "trial", Pool: "trial", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable})
	}
	return cfg, ts
}

// TestRunLimits: 45 paid tenants, batches of 20, concurrency 2: two
// batches start, the third (5) only when one ends; nothing before the
// catalog and the pool are promoted.
func TestRunLimits(t *testing.T) {
	cfg, ts := scenario2(45, 0, 20, 2)
	s, err := New(cfg, ts)
	if err != nil {
		t.Fatal(err)
	}
	b, c := newFakeBackend(true), newFakeCatalog(ts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := Start(ctx, s, b, c, nil)
	waitFor(t, "tenants recorded queued", func() bool { return c.get("p045").State == lifeboat.TenantQueued })
	if err := run.PoolPromoted("paid"); err != nil {
		t.Fatal(err)
	}
	if st := run.Status(); st.Batches != 0 || !strings.Contains(st.String(), "catalog") {
		t.Fatalf("started before the catalog: %s", st)
	}
	if err := run.CatalogPromoted(); err != nil {
		t.Fatal(err)
	}
	got := b.waitStarted(t, 2)
	if !slices.Equal(got, []string{"p001", "p021"}) && !slices.Equal(got, []string{"p021", "p001"}) {
		t.Fatalf("first batches start with %v, want p001 and p021", got)
	}
	if st := run.Status(); st.Batches != 2 {
		t.Fatalf("%d batches running, want 2: %s", st.Batches, st)
	}
	b.end(t, "p021")
	got = b.waitStarted(t, 3)
	if got[2] != "p041" {
		t.Fatalf("third batch starts with %s, want p041", got[2])
	}
	b.end(t, "p001")
	b.end(t, "p041")
	st, err := run.Wait(ctx)
	if err != nil || !st.Done || st.Counts[lifeboat.TenantAvailable] != 45 {
		t.Fatalf("wait: %v\n%s", err, st)
	}
	if b.maxB != 2 {
		t.Fatalf("at most %d batches at once, want 2", b.maxB)
	}
	if b.raised["paid@east"] != 100 {
		t.Fatalf("capacity not raised: %v", b.raised)
	}
	// One Set for the queued, one per batch.
	if c.sets != 4 {
		t.Fatalf("%d catalog writes, want 4 (queued + 3 batches)", c.sets)
	}
	for _, tn := range ts {
		got := c.get(tn.Name)
		if got.State != lifeboat.TenantAvailable || got.Region != "east" || got.Epoch != 5 || got.Recovered.IsZero() {
			t.Fatalf("catalog: %+v", got)
		}
	}
}

// TestRunHurry: a connection to a queued trial tenant (the gate calls
// Hurry, then Await) gets its restore before the others, and Await
// returns once the catalog records it available.
func TestRunHurry(t *testing.T) {
	cfg, ts := scenario2(0, 10, 20, 1)
	s, err := New(cfg, ts)
	if err != nil {
		t.Fatal(err)
	}
	b, c := newFakeBackend(true), newFakeCatalog(ts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var seen []Status
	run := Start(ctx, s, b, c, func(st Status) { mu.Lock(); seen = append(seen, st); mu.Unlock() })
	if err := run.CatalogPromoted(); err != nil {
		t.Fatal(err)
	}
	b.waitStarted(t, 1) // t001 restoring, the only slot

	type result struct {
		ts  TenantStatus
		err error
	}
	awaited := make(chan result, 1)
	go func() {
		if ts, ok := run.Hurry("t009"); !ok || ts.State != lifeboat.TenantQueued || !ts.Hurried {
			awaited <- result{ts, fmt.Errorf("hurry: %+v %v", ts, ok)}
			return
		}
		ts, err := run.Await(ctx, "t009")
		awaited <- result{ts, err}
	}()
	waitFor(t, "t009 hurried", func() bool { ts, _ := run.Hurry("t009"); return ts.Hurried })
	// A bounded wait: the gate's error while it is still queued.
	short, stop := context.WithTimeout(ctx, time.Millisecond)
	_, err = run.Await(short, "t009")
	stop()
	if err == nil || !lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "t009 is still") {
		t.Fatalf("await with a short deadline: %v", err)
	}
	b.end(t, "t001")
	if got := b.waitStarted(t, 2); got[1] != "t009" {
		t.Fatalf("after t001, %s was restored, want the hurried t009", got[1])
	}
	b.end(t, "t009")
	r := <-awaited
	if r.err != nil || r.ts.State != lifeboat.TenantAvailable || c.get("t009").State != lifeboat.TenantAvailable {
		t.Fatalf("await t009: %+v %v; catalog %+v", r.ts, r.err, c.get("t009"))
	}
	if _, err := run.Await(ctx, "nobody"); !errors.Is(err, ErrNotRecovering) {
		t.Fatalf("await of an unknown tenant: %v", err)
	}
	for _, n := range []string{"t002", "t003", "t004", "t005", "t006", "t007", "t008", "t010"} {
		b.end(t, n)
	}
	st, err := run.Wait(ctx)
	if err != nil || st.Counts[lifeboat.TenantAvailable] != 10 {
		t.Fatalf("wait: %v\n%s", err, st)
	}
	for _, n := range []string{"t001", "t009"} {
		if h := c.history[n]; !slices.Equal(h, []lifeboat.TenantState{lifeboat.TenantQueued, lifeboat.TenantRestoring, lifeboat.TenantAvailable}) {
			t.Fatalf("%s's states in the catalog: %v", n, h)
		}
	}
	<-run.Done()
	waitFor(t, "the final progress", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1].Done
	})
}

// TestRunCancel: cancel mid-way (failback's first step): the restores
// running finish, nothing new starts, the rest stay queued; Await says so.
func TestRunCancel(t *testing.T) {
	cfg, ts := scenario2(0, 6, 20, 2)
	s, err := New(cfg, ts)
	if err != nil {
		t.Fatal(err)
	}
	b, c := newFakeBackend(true), newFakeCatalog(ts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := Start(ctx, s, b, c, nil)
	run.CatalogPromoted()
	b.waitStarted(t, 2)
	run.Cancel()
	b.end(t, "t001")
	b.end(t, "t002")
	st, err := run.Wait(ctx)
	if err != nil || !st.Cancelled || st.Counts[lifeboat.TenantAvailable] != 2 || st.Counts[lifeboat.TenantQueued] != 4 {
		t.Fatalf("wait: %v\n%s", err, st)
	}
	if len(b.started) != 2 {
		t.Fatalf("%d restores started, want 2", len(b.started))
	}
	if _, err := run.Await(ctx, "t003"); err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "ended") {
		t.Fatalf("await of a tenant left queued: %v", err)
	}
	if got := c.get("t003").State; got != lifeboat.TenantQueued {
		t.Fatalf("t003 is %s in the catalog, want queued", got)
	}
}

// TestRunRandom runs scenario 2 with many tenants against a backend that
// fails at random, under -race, with concurrent Hurry calls: the limits
// hold, and every tenant ends available or failed, as the catalog says.
func TestRunRandom(t *testing.T) {
	for i := range 5 {
		cfg, ts := scenario2(130, 40, 1+i*5, 1+i)
		cfg.MaxAttempts = 2
		s, err := New(cfg, ts)
		if err != nil {
			t.Fatal(err)
		}
		b, c := newFakeBackend(false), newFakeCatalog(ts)
		b.jitter = true
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		var rmu sync.Mutex
		b.fail = func(kind ActionKind, name string, attempt int) error {
			rmu.Lock()
			defer rmu.Unlock()
			switch rng.IntN(10) {
			case 0:
				return lifeboat.Transient("fake", name, errors.New("timeout"))
			case 1:
				if kind == Restore {
					return lifeboat.Permanent("fake", name, errors.New("no backup in east"))
				}
			}
			return nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		run := Start(ctx, s, b, c, func(Status) {}, WithBackoff(time.Microsecond))
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for k := range 50 {
					run.Hurry(fmt.Sprintf("t%03d", (g*50+k)%45+1))
				}
			})
		}
		run.CatalogPromoted()
		run.PoolPromoted("paid")
		wg.Wait()
		st, err := run.Wait(ctx)
		cancel()
		if err != nil || !st.Done {
			t.Fatalf("case %d: %v\n%s", i, err, st)
		}
		if b.maxB > cfg.Tenants.Concurrency || b.maxR > cfg.Tenants.Concurrency {
			t.Fatalf("case %d: %d batches and %d restores at once, concurrency %d", i, b.maxB, b.maxR, cfg.Tenants.Concurrency)
		}
		for _, ts := range run.Tenants() {
			rec := c.get(ts.Name)
			if ts.State != lifeboat.TenantAvailable && ts.State != lifeboat.TenantFailed || rec.State != ts.State {
				t.Fatalf("case %d: %s is %s, recorded %s", i, ts.Name, ts.State, rec.State)
			}
			if (ts.State == lifeboat.TenantAvailable) != (b.available[ts.Name] == "east") {
				t.Fatalf("case %d: %s is %s but the backend says %q", i, ts.Name, ts.State, b.available[ts.Name])
			}
		}
		t.Logf("case %d: batch %d concurrency %d: at most %d batches and %d restores at once; %s", i, cfg.Tenants.Batch,
			cfg.Tenants.Concurrency, b.maxB, b.maxR, strings.SplitN(st.String(), "\n", 2)[0])
	}
}
