package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

func testSpec() *lifeboat.Spec {
	return &lifeboat.Spec{
		Regions:    lifeboat.Regions{Primary: lifeboat.Region{Name: "west"}, Secondary: lifeboat.Region{Name: "east"}},
		Objectives: lifeboat.Objectives{RPO: lifeboat.Duration(4 * time.Hour)},
		Units: map[string]lifeboat.Unit{"data": {Databases: map[string]lifeboat.Database{
			"trial": {Engine: "postgres", DRMode: lifeboat.DRBackup, Endpoints: map[string]string{"west": "postgres://u:p@127.0.0.1:1/trial", "east": "postgres://u:p@127.0.0.1:2/trial"}},
			"paid":  {Engine: "postgres", DRMode: lifeboat.DRGeoReplica, Endpoints: map[string]string{"west": "postgres://u:p@127.0.0.1:3/paid", "east": "postgres://u:p@127.0.0.1:4/paid"}},
		}}},
		Tenants: &lifeboat.Tenants{Catalog: "data.paid",
			Pools: map[string]lifeboat.Pool{"trial": {Database: "data.trial", Isolation: lifeboat.IsolationSchema}, "paid": {Database: "data.paid"}},
			Tiers: map[string]lifeboat.Tier{
				"trial": {Pool: "trial", Strategy: lifeboat.StrategyGeoRestore, Priority: 2, BackupInterval: lifeboat.Duration(time.Hour),
					Objectives: &lifeboat.Objectives{RTO: lifeboat.Duration(time.Hour), RPO: lifeboat.Duration(2 * time.Hour)}},
				"paid": {Pool: "paid", Strategy: lifeboat.StrategyGeoReplicate, Priority: 1},
			}},
	}
}

func TestStoreWriteLatestVerifyPrune(t *testing.T) {
	s := NewStore(t.TempDir())
	ctx := context.Background()
	if _, err := s.Latest("acme"); !errors.Is(err, ErrNoBackup) || lifeboat.IsRetryable(err) {
		t.Fatalf("Latest with none = %v, want permanent ErrNoBackup", err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	var last Backup
	for k := range 5 {
		b, err := s.Write(ctx, "acme", t0.Add(time.Duration(k)*time.Hour), func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "dump %d", k)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		last = b
	}
	got, err := s.Latest("acme")
	if err != nil {
		t.Fatal(err)
	}
	if got != last || !got.Taken.Equal(t0.Add(4*time.Hour)) || got.Size != 6 || !strings.HasPrefix(got.Checksum, "sha256:") {
		t.Fatalf("Latest = %+v, want %+v", got, last)
	}
	if filepath.Base(got.Path) != "20260102T070405.000000006Z.dump" {
		t.Fatalf("path %s", got.Path)
	}
	if err := Verify(got); err != nil {
		t.Fatal(err)
	}
	// Prune keeps 3 by default in the scheduler; here, 2.
	if n, err := s.Prune("acme", 2); err != nil || n != 3 {
		t.Fatalf("Prune = %d, %v; want 3 removed", n, err)
	}
	list, _ := s.List("acme")
	if len(list) != 2 || list[1].Path != got.Path {
		t.Fatalf("after prune: %+v", list)
	}
	// A failed dump leaves the latest as it was, and no file behind.
	if _, err := s.Write(ctx, "acme", t0.Add(9*time.Hour), func(w io.Writer) error {
		w.Write([]byte("half"))
		return errors.New("pg_dump died")
	}); err == nil {
		t.Fatal("a failed dump was stored")
	}
	if b, _ := s.Latest("acme"); b != got {
		t.Fatalf("latest moved to %+v after a failed dump", b)
	}
	ents, _ := os.ReadDir(filepath.Dir(got.Path))
	if len(ents) != 5 { // 2 dumps, 2 checksums, latest
		t.Fatalf("dir has %d entries, want 5 (no temp file left)", len(ents))
	}
	// Corruption is detected.
	if err := os.WriteFile(got.Path, []byte("dump X"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Verify(got); !errors.Is(err, ErrCorrupt) || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "restore an older backup") {
		t.Fatalf("Verify of a corrupt file = %v", err)
	}
	// The latest is never pruned even when older ones are newer by name.
	if n, err := s.Prune("acme", 1); err != nil || n != 1 {
		t.Fatalf("Prune(1) = %d, %v", n, err)
	}
	if _, err := os.Stat(got.Path); err != nil {
		t.Fatalf("latest pruned: %v", err)
	}
	if _, err := s.Latest("../etc"); err == nil {
		t.Fatal("a bad tenant name was accepted")
	}
}

func TestSlotSpreads(t *testing.T) {
	const n, interval = 600, time.Hour
	buckets := make([]int, 6)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for k := range n {
		name := fmt.Sprintf("t%04d", k)
		s := Slot(name, interval, now)
		if s.After(now) || now.Sub(s) >= interval {
			t.Fatalf("slot %v not within the interval before %v", s, now)
		}
		// The slot is periodic and fixed by the name.
		if s2 := Slot(name, interval, now.Add(interval)); !s2.Equal(s.Add(interval)) {
			t.Fatalf("slot not periodic: %v then %v", s, s2)
		}
		buckets[int(now.Sub(s)/(10*time.Minute))]++
	}
	for k, b := range buckets {
		if b < n/6/2 || b > n/6*2 {
			t.Fatalf("10-minute bucket %d has %d of %d slots: not spread (%v)", k, b, n, buckets)
		}
	}
}

// gatedDumper blocks each dump until released, and counts what runs.
type gatedDumper struct {
	mu        sync.Mutex
	running   int
	peak      int
	started   chan string
	release   chan struct{}
	dumped    []string
	failTimes map[string]int
}

func (g *gatedDumper) Dump(ctx context.Context, t lifeboat.Tenant, w io.Writer) error {
	g.mu.Lock()
	g.running++
	g.peak = max(g.peak, g.running)
	g.mu.Unlock()
	defer func() { g.mu.Lock(); g.running--; g.mu.Unlock() }()
	if g.started != nil {
		g.started <- t.Name
	}
	if g.release != nil {
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failTimes[t.Name] > 0 {
		g.failTimes[t.Name]--
		return lifeboat.Transient(OpBackup, t.Name, errors.New("pool unreachable"))
	}
	g.dumped = append(g.dumped, t.Name)
	_, err := fmt.Fprintf(w, "dump of %s", t.Name)
	return err
}

func catalogWith(t *testing.T, n int) *tenant.MemoryCatalog {
	cat := tenant.NewMemoryCatalog()
	ctx := context.Background()
	for k := range n {
		for _, tr := range []string{"trial", "paid"} {
			if err := cat.Create(ctx, lifeboat.Tenant{Name: fmt.Sprintf("%s%03d", tr, k), Tier: tr, Pool: tr, Region: "west", Epoch: 1, State: lifeboat.TenantAvailable}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// One trial tenant in the middle of a recovery: not backed up.
	if _, err := cat.Set(ctx, []string{"trial000"}, lifeboat.TenantChange{State: lifeboat.TenantRestoring}); err != nil {
		t.Fatal(err)
	}
	return cat
}

func TestSchedulerLimitSpreadAndSkip(t *testing.T) {
	cat := catalogWith(t, 60)
	dirs := map[string]string{"east": t.TempDir(), "west": t.TempDir()}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	d := &gatedDumper{started: make(chan string, 100), release: make(chan struct{})}
	s, err := NewScheduler(Config{Spec: testSpec(), Dirs: dirs, Concurrency: 3, Now: clock}, cat, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan Result)
	go func() { r, _ := s.Tick(ctx); done <- r }()
	// Exactly 3 start; the fourth starts only when one is released.
	for range 3 {
		<-d.started
	}
	select {
	case n := <-d.started:
		t.Fatalf("a fourth backup (%s) started with concurrency 3", n)
	default:
	}
	go func() {
		for {
			select {
			case d.release <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		for range d.started {
		}
	}()
	r := <-done
	if r.Due != 59 || len(r.Taken) != 59 || len(r.Failed) != 0 {
		t.Fatalf("first tick: due %d, taken %d, failed %v; want 59 (60 trial, one restoring; no paid)", r.Due, len(r.Taken), r.Failed)
	}
	if d.peak > 3 || s.Peak() > 3 {
		t.Fatalf("peak %d/%d backups at once, limit 3", d.peak, s.Peak())
	}
	for _, b := range r.Taken {
		if !strings.HasPrefix(b.Path, dirs["east"]) || !strings.HasPrefix(b.Tenant, "trial") {
			t.Fatalf("backup %+v not a trial tenant's shipped to east", b)
		}
	}
	// Right after: nothing due.
	if r, _ := s.Tick(ctx); r.Due != 0 {
		t.Fatalf("due again at once: %d", r.Due)
	}
	// Over the next hour, in 10-minute steps, each tenant is backed up
	// once, a few at each step: spread, not all at once.
	total := 0
	for step := 1; step <= 6; step++ {
		now = now.Add(10 * time.Minute)
		r, err := s.Tick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Due > 25 {
			t.Fatalf("step %d: %d of 59 due at once: not spread", step, r.Due)
		}
		total += r.Due
	}
	if total != 59 {
		t.Fatalf("%d backups over one interval, want 59 (each tenant once)", total)
	}
	// Freshness: within the tier's 2h RPO.
	fs, err := s.Fresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Tier != "trial" || fs[0].Tenants != 59 || len(fs[0].Missing)+len(fs[0].Stale) != 0 || fs[0].Bound != 2*time.Hour {
		t.Fatalf("freshness %+v", fs)
	}
	cs := Checks(fs, now)
	if len(cs) != 1 || !cs[0].OK || cs[0].Blocks || cs[0].Name != CheckTenantBackups {
		t.Fatalf("checks %+v", cs)
	}
	t.Logf("check: %s: %s", cs[0].Component, cs[0].Reason)
	// Kept: 3 per tenant at most.
	list, _ := s.Store("west").List("trial001")
	if len(list) != 2 {
		t.Fatalf("trial001 has %d backups, want 2", len(list))
	}
}

func TestFreshnessStaleAndMissing(t *testing.T) {
	spec := testSpec()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ts := []lifeboat.Tenant{
		{Name: "a", Tier: "trial", State: lifeboat.TenantAvailable},
		{Name: "b", Tier: "trial", State: lifeboat.TenantAvailable},
		{Name: "c", Tier: "trial", State: lifeboat.TenantAvailable},
		{Name: "p", Tier: "paid", State: lifeboat.TenantAvailable},
	}
	latest := func(t lifeboat.Tenant) (Backup, error) {
		switch t.Name {
		case "a":
			return Backup{Taken: now.Add(-30 * time.Minute)}, nil
		case "b":
			return Backup{Taken: now.Add(-3 * time.Hour)}, nil
		}
		return Backup{}, lifeboat.Permanent(OpLatest, t.Name, ErrNoBackup)
	}
	fs := Fresh(spec, ts, latest, now)
	if len(fs) != 1 || fs[0].Tenants != 3 || fs[0].OldestTenant != "b" || fmt.Sprint(fs[0].Stale) != "[b]" || fmt.Sprint(fs[0].Missing) != "[c]" {
		t.Fatalf("freshness %+v", fs)
	}
	cs := Checks(fs, now)
	if cs[0].OK || cs[0].Blocks || !strings.Contains(cs[0].Reason, "1 of 3 tenants have no backup") || !strings.Contains(cs[0].Reason, "older than 2h") {
		t.Fatalf("check %+v", cs[0])
	}
	t.Log(cs[0].Reason)
}

func TestTickRetriesFailedNextTime(t *testing.T) {
	cat := catalogWith(t, 3)
	dirs := map[string]string{"east": t.TempDir(), "west": t.TempDir()}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	d := &gatedDumper{failTimes: map[string]int{"trial001": 1}}
	s, err := NewScheduler(Config{Spec: testSpec(), Dirs: dirs, Now: func() time.Time { return now }}, cat, d)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := s.Tick(context.Background())
	if len(r.Taken) != 1 || r.Failed["trial001"] == nil {
		t.Fatalf("tick %+v", r)
	}
	if r, _ := s.Tick(context.Background()); r.Due != 1 || len(r.Taken) != 1 {
		t.Fatalf("second tick %+v, want the failed one retried", r)
	}
	if err := ValidateConfig(Config{Spec: testSpec(), Dirs: map[string]string{"east": "/x"}}); err == nil || !strings.Contains(err.Error(), "region west") {
		t.Fatalf("missing dir accepted: %v", err)
	}
}

// TestRunTicksOnItsClock: Run ticks at once, then at each tick of its
// clock, and stops with its ctx; no real time passes.
func TestRunTicksOnItsClock(t *testing.T) {
	cat := catalogWith(t, 4)
	dirs := map[string]string{"east": t.TempDir(), "west": t.TempDir()}
	var mu sync.Mutex
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ticks := make(chan time.Time)
	asked := make(chan time.Duration, 10)
	d := &gatedDumper{}
	s, err := NewScheduler(Config{Spec: testSpec(), Dirs: dirs, Poll: 5 * time.Minute,
		Now:   func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		After: func(d time.Duration) <-chan time.Time { asked <- d; return ticks }}, cat, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error)
	go func() { ended <- s.Run(ctx) }()
	if p := <-asked; p != 5*time.Minute {
		t.Fatalf("Run waits %v, want the poll of 5m", p)
	}
	d.mu.Lock()
	first := len(d.dumped)
	d.mu.Unlock()
	if first != 3 { // trial000 is restoring
		t.Fatalf("first tick dumped %d, want 3", first)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour) // every slot passed: all due again
	mu.Unlock()
	ticks <- now
	<-asked
	d.mu.Lock()
	second := len(d.dumped)
	d.mu.Unlock()
	if second != 6 {
		t.Fatalf("after the second tick %d dumps, want 6", second)
	}
	cancel()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run ended with %v", err)
	}
}
