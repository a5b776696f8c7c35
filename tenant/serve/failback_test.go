package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

// fakeFailback records the failback's pool calls; block makes CopyBack of
// one tenant wait until its context ends (the process dying mid-copy).
type fakeFailback struct {
	mu       sync.Mutex
	changed  map[string]bool
	newInDR  map[string]bool // created in the DR region: no home copy until copied
	block    string
	blocked  chan struct{}
	pool     bool
	readOnly int
	copied   []string
	calls    []string
}

func (f *fakeFailback) SetReadOnly(_ context.Context, pool, region string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readOnly++
	f.calls = append(f.calls, "read-only "+pool+" "+region)
	return nil
}

func (f *fakeFailback) Changed(_ context.Context, _, _, name string) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed[name], "test", nil
}

func (f *fakeFailback) CopyBack(ctx context.Context, pool, from, to, name, kept string) error {
	f.mu.Lock()
	block := f.block == name
	f.mu.Unlock()
	if block {
		close(f.blocked)
		<-ctx.Done()
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.copied = append(f.copied, name)
	f.calls = append(f.calls, fmt.Sprintf("copy %s %s→%s keep %s", name, from, to, kept))
	return nil
}

func (f *fakeFailback) HasTenant(_ context.Context, _, region, name string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return region == "east" || !f.newInDR[name] || slices.Contains(f.copied, name), nil
}

func (f *fakeFailback) HasPool(context.Context, string, string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pool, nil
}

func (f *fakeFailback) DeletePool(_ context.Context, pool, region string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readOnly == 0 || len(f.copied) < len(f.changed)+len(f.newInDR) {
		return fmt.Errorf("pool deleted before the copies (%d of %d copied)", len(f.copied), len(f.changed)+len(f.newInDR))
	}
	f.pool = false
	f.calls = append(f.calls, "delete "+pool+" "+region)
	return nil
}

// The failback's steps after a failback plan brought the service back to
// west: cut short in the middle of a copy (the host closed, as a process
// dying), then finished by the next host, with every tenant home at the
// new epoch and the DR pool deleted only after the copies.
func TestHostFailbackResumes(t *testing.T) {
	spec := testSpec()
	st := lifeboat.InitialState(spec, time.Now())
	st.Epoch = 3
	cat := tenant.NewMemoryCatalog()
	ctx := context.Background()
	rec := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var trial []string
	for i := range 50 {
		tn := lifeboat.Tenant{Name: fmt.Sprintf("t%02d", i), Tier: "paid", Pool: "paid", Region: "east", Epoch: 2, State: lifeboat.TenantAvailable, Recovered: rec}
		if i%2 == 1 {
			tn.Tier, tn.Pool = "trial", "trial"
			trial = append(trial, tn.Name)
		}
		if err := cat.Create(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	// t49 was created in east during the failover: it has no home copy.
	fb := &fakeFailback{changed: map[string]bool{"t01": true, "t03": true, "t45": true}, newInDR: map[string]bool{"t49": true},
		block: "t03", blocked: make(chan struct{}), pool: true}
	c := DefaultConfig()
	c.Spec, c.Store, c.Backend, c.Failback, c.Poll = spec, &fakeStore{st: st}, fakeBackend{}, fb, 10*time.Millisecond
	c.Open = func(context.Context, *lifeboat.Spec, *lifeboat.State) (tenant.Catalog, error) {
		return nopClose{cat}, nil
	}

	h1, err := Host(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-fb.blocked:
	case <-time.After(30 * time.Second):
		t.Fatalf("the failback never reached the copy of t03: %+v", h1.Status().Failback)
	}
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	// Cut short: the trial tenants are still in east, read-only; the
	// paid ones are home already; the DR pool is still there.
	all, _ := cat.List(ctx, tenant.Filter{})
	for _, tn := range all {
		switch {
		case tn.Pool == "paid" && (tn.Region != "west" || tn.Epoch != 3 || tn.State != lifeboat.TenantAvailable):
			t.Errorf("paid tenant after step b: %+v", tn)
		case tn.Pool == "trial" && (tn.Region != "east" || tn.State != lifeboat.TenantReadOnly):
			t.Errorf("trial tenant cut short before step f: %+v", tn)
		}
	}
	if !fb.pool {
		t.Fatal("the DR pool was deleted before the copies were done")
	}

	fb.mu.Lock()
	fb.block = ""
	fb.mu.Unlock()
	h2, err := Host(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	deadline := time.Now().Add(30 * time.Second)
	var s Status
	for s = h2.Status(); s.Failback == nil || !s.Failback.Done; s = h2.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("the failback did not finish: %+v", s.Failback)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("steps: %q", s.Failback.Steps)
	all, _ = cat.List(ctx, tenant.Filter{})
	for _, tn := range all {
		if tn.Region != "west" || tn.Epoch != 3 || tn.State != lifeboat.TenantAvailable || tn.Reason != "" {
			t.Errorf("tenant after the failback: %+v", tn)
		}
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if fb.pool {
		t.Error("the DR pool was not deleted")
	}
	slices.Sort(fb.copied)
	if want := []string{"t01", "t01", "t03", "t45", "t49"}; !slices.Equal(fb.copied, want) {
		t.Errorf("copied back %v, want %v (t01 again: the copy back is idempotent)", fb.copied, want)
	}
	if got, want := s.Failback.Kept["t03"], tenant.KeptName("t03", rec); got != want {
		t.Errorf("t03 kept as %q, want %q", got, want)
	}
	if !slices.Equal(s.Failback.Changed, []string{"t01", "t03", "t45", "t49"}) || len(s.Failback.Unchanged) != len(trial)-4 {
		t.Errorf("changed %v, unchanged %v", s.Failback.Changed, s.Failback.Unchanged)
	}
	if _, kept := s.Failback.Kept["t49"]; kept || !slices.Equal(s.Failback.New, []string{"t49"}) {
		t.Errorf("t49, created in east during the failover: new %v, kept %v; want it new, with no kept copy", s.Failback.New, s.Failback.Kept)
	}
	t.Logf("calls: %q", fb.calls)
}

type fakeDumper struct{}

func (fakeDumper) Dump(_ context.Context, t lifeboat.Tenant, w io.Writer) error {
	_, err := fmt.Fprintf(w, "dump of %s\n", t.Name)
	return err
}

// The host runs the backups of the geo-restore tiers and reports their
// freshness as readiness checks: not fresh before the first backups, fresh
// once the scheduler has shipped them to the other region's directory.
func TestHostBackups(t *testing.T) {
	spec := testSpec()
	st := lifeboat.InitialState(spec, time.Now())
	cat := tenant.NewMemoryCatalog()
	ctx := context.Background()
	for i := range 10 {
		tier := "paid"
		if i%2 == 1 {
			tier = "trial"
		}
		if err := cat.Create(ctx, lifeboat.Tenant{Name: fmt.Sprintf("t%02d", i), Tier: tier, Pool: tier, Region: "west", Epoch: 1, State: lifeboat.TenantAvailable}); err != nil {
			t.Fatal(err)
		}
	}
	spec.File = filepath.Join(t.TempDir(), "lifeboat.yaml")
	dirs := BackupDirs(spec)
	if want := filepath.Join(filepath.Dir(spec.File), ".lifeboat", "tenant-backups", "east"); dirs["east"] != want {
		t.Fatalf("backup dir of east: %q, want %q", dirs["east"], want)
	}
	c := DefaultConfig()
	c.Spec, c.Store, c.Backend, c.Poll = spec, &fakeStore{st: st}, fakeBackend{}, time.Hour
	c.BackupDirs, c.BackupPoll, c.Dumper = dirs, 10*time.Millisecond, fakeDumper{}
	c.Open = func(context.Context, *lifeboat.Spec, *lifeboat.State) (tenant.Catalog, error) {
		return nopClose{cat}, nil
	}
	h, err := Host(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cs := h.Checks()
		if len(cs) == 1 && cs[0].OK && cs[0].Component == "tier trial" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backups never fresh: %+v", cs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 1; i < 10; i += 2 {
		if _, err := os.Stat(filepath.Join(dirs["east"], fmt.Sprintf("t%02d", i), "latest")); err != nil {
			t.Errorf("trial tenant t%02d not shipped to east: %v", i, err)
		}
	}
}

// gonePool is a DR pool that does not answer (HasPool false) until up is
// set, and that cannot be deleted (no provision.delete).
type gonePool struct {
	fakeFailback
	up bool
}

func (g *gonePool) HasPool(context.Context, string, string) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.up, nil
}

func (g *gonePool) DeletePool(_ context.Context, pool, region string) error {
	return fmt.Errorf("pool %s's DR copy in %s was not deleted: no provision.delete: %w", pool, region, errors.ErrUnsupported)
}

// A DR pool that does not answer while some of its tenants were served
// there (recovered there) must not make the failback record them home as
// unchanged, which would drop what was written there: the failback waits,
// saying why, and finishes once the pool answers again. A pool that cannot
// be deleted is left in place, and the failback still finishes.
func TestHostFailbackWaitsForDRPool(t *testing.T) {
	spec := testSpec()
	st := lifeboat.InitialState(spec, time.Now())
	st.Epoch = 3
	cat := tenant.NewMemoryCatalog()
	ctx := context.Background()
	rec := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := range 6 {
		tn := lifeboat.Tenant{Name: fmt.Sprintf("t%02d", i), Tier: "trial", Pool: "trial", Region: "east", Epoch: 2, State: lifeboat.TenantAvailable, Recovered: rec}
		if i >= 4 { // never restored in east: held no writes
			tn.State, tn.Recovered = lifeboat.TenantQueued, time.Time{}
		}
		if err := cat.Create(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	fb := &gonePool{fakeFailback: fakeFailback{changed: map[string]bool{"t01": true}}}
	c := DefaultConfig()
	c.Spec, c.Store, c.Backend, c.Failback, c.Poll = spec, &fakeStore{st: st}, fakeBackend{}, fb, 10*time.Millisecond
	c.Open = func(context.Context, *lifeboat.Spec, *lifeboat.State) (tenant.Catalog, error) {
		return nopClose{cat}, nil
	}
	h, err := Host(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	deadline := time.Now().Add(30 * time.Second)
	var s Status
	for s = h.Status(); s.Failback == nil || s.Failback.Attempts < 2; s = h.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("the failback never tried twice: %+v", s.Failback)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.Failback.Done || !strings.Contains(s.Failback.Error, "does not answer") || !strings.Contains(s.Failback.Error, "4 of its tenants were served there") {
		t.Fatalf("failback with the DR pool not answering: done %v, error %q; want it waiting, saying 4 tenants were served there", s.Failback.Done, s.Failback.Error)
	}
	t.Logf("waiting: %s", s.Failback.Error)
	all, _ := cat.List(ctx, tenant.Filter{})
	for _, tn := range all {
		if tn.Region != "east" || tn.Epoch != 2 {
			t.Errorf("tenant recorded while the DR pool did not answer: %+v", tn)
		}
	}

	fb.mu.Lock()
	fb.up = true
	fb.mu.Unlock()
	deadline = time.Now().Add(30 * time.Second)
	for s = h.Status(); s.Failback == nil || !s.Failback.Done; s = h.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("the failback did not finish once the DR pool answered: %+v", s.Failback)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("steps: %q", s.Failback.Steps)
	all, _ = cat.List(ctx, tenant.Filter{})
	for _, tn := range all {
		if tn.Region != "west" || tn.Epoch != 3 || tn.State != lifeboat.TenantAvailable {
			t.Errorf("tenant after the failback: %+v", tn)
		}
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if !slices.Equal(fb.copied, []string{"t01"}) || fb.readOnly == 0 {
		t.Errorf("copied %v, read-only calls %d; want t01 copied after the pool was made read-only", fb.copied, fb.readOnly)
	}
	if last := s.Failback.Steps[len(s.Failback.Steps)-1]; !strings.HasPrefix(last, "g. DR pool trial in east left in place") {
		t.Errorf("last step %q, want the DR pool left in place", last)
	}
}
