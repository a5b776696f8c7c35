package serve

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/gate"
)

// fakeStore serves a state the test changes; the other methods are not used.
type fakeStore struct {
	lifeboat.Store
	mu  sync.Mutex
	st  *lifeboat.State
	run *lifeboat.Run
}

func (f *fakeStore) State(context.Context) (*lifeboat.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Clone(), nil
}

// failoverToEast stores what a failover to east leaves: east active at
// the next epoch, the catalog's and paid pool's east copies primary.
func (f *fakeStore) failoverToEast() {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st.Clone()
	st.Active, st.Epoch = "east", st.Epoch+1
	for _, r := range st.Resources {
		if r.Component == "catalog" || r.Component == "paid" {
			if r.Region == "east" {
				r.Role = lifeboat.DBPrimary
			} else {
				r.Role = lifeboat.DBFenced
			}
		}
	}
	f.st = st
}

func (f *fakeStore) Run(_ context.Context, id string) (*lifeboat.Run, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.run == nil || f.run.ID != id {
		return nil, errors.New("no such run")
	}
	return f.run, nil
}

type fakeBackend struct{}

func (fakeBackend) MakeAvailable(context.Context, string, string, []string) error { return nil }
func (fakeBackend) Restore(context.Context, string, string, string) error         { return nil }
func (fakeBackend) CreatePool(context.Context, string, string) error              { return nil }
func (fakeBackend) RaiseCapacity(context.Context, string, string, int) error      { return nil }

func testSpec() *lifeboat.Spec {
	ep := func(db string) map[string]string {
		return map[string]string{"west": "postgres://u@127.0.0.1:5001/" + db, "east": "postgres://u@127.0.0.1:5002/" + db}
	}
	return &lifeboat.Spec{
		Service: "shop",
		Regions: lifeboat.Regions{Primary: lifeboat.Region{Name: "west"}, Secondary: lifeboat.Region{Name: "east"}},
		Units: map[string]lifeboat.Unit{"data": {Databases: map[string]lifeboat.Database{
			"catalog": {Engine: "postgres", DRMode: lifeboat.DRGeoReplica, Endpoints: ep("postgres")},
			"paid":    {Engine: "postgres", DRMode: lifeboat.DRGeoReplica, Endpoints: ep("pool")},
			"trial":   {Engine: "postgres", DRMode: lifeboat.DRNone, Endpoints: ep("postgres")},
		}}},
		Tenants: &lifeboat.Tenants{Catalog: "data.catalog",
			Pools: map[string]lifeboat.Pool{"paid": {Database: "data.paid", Isolation: lifeboat.IsolationSchema}, "trial": {Database: "data.trial"}},
			Tiers: map[string]lifeboat.Tier{"paid": {Pool: "paid", Strategy: lifeboat.StrategyGeoReplicate, Priority: 1},
				"trial": {Pool: "trial", Strategy: lifeboat.StrategyGeoRestore, Priority: 2}},
			Gate: &lifeboat.TenantGate{Listen: "127.0.0.1:0"}},
	}
}

// A failover seen in the stored state starts the recovery: paid tenants
// made available in east, trial tenants restored; the directory routes by
// the catalog, with schema isolation, and holds tenants of the lost region.
func TestHostRecoversAfterFailover(t *testing.T) {
	spec := testSpec()
	st0 := lifeboat.InitialState(spec, time.Now())
	fs := &fakeStore{st: st0}
	cat := tenant.NewMemoryCatalog()
	ctx := context.Background()
	for i := range 30 {
		tier, pool := "paid", "paid"
		if i%2 == 1 {
			tier, pool = "trial", "trial"
		}
		if err := cat.Create(ctx, lifeboat.Tenant{Name: fmt.Sprintf("t%02d", i), Tier: tier, Pool: pool, Region: "west", Epoch: 1, State: lifeboat.TenantAvailable}); err != nil {
			t.Fatal(err)
		}
	}
	c := DefaultConfig()
	c.Spec, c.Store, c.Backend, c.Poll = spec, fs, fakeBackend{}, 10*time.Millisecond
	c.Open = func(context.Context, *lifeboat.Spec, *lifeboat.State) (tenant.Catalog, error) {
		return nopClose{cat}, nil
	}
	h, err := Host(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	loc, err := h.locate(ctx, "t00")
	if err != nil || loc.Addr != "127.0.0.1:5001" || loc.Database != "pool" || loc.Schema != "t00" {
		t.Fatalf("locate t00 before the failover: %+v %v", loc, err)
	}
	if _, err := h.locate(ctx, "nobody"); !errors.Is(err, gate.ErrUnknownTenant) {
		t.Fatalf("locate an unknown tenant: %v", err)
	}

	// The failover: the run ends with east active at epoch 2.
	fs.failoverToEast()

	deadline := time.Now().Add(20 * time.Second)
	for {
		s := h.Status()
		if s.Recovery != nil && s.Recovery.Done {
			if s.Recovery.Counts[lifeboat.TenantAvailable] != 30 || len(s.Recovery.Available) != 30 {
				t.Fatalf("recovery ended with %+v", s.Recovery)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery done: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	all, _ := cat.List(ctx, tenant.Filter{})
	for _, tn := range all {
		if tn.Region != "east" || tn.Epoch != 2 || tn.State != lifeboat.TenantAvailable {
			t.Errorf("tenant after the recovery: %+v", tn)
		}
	}
	loc, err = h.locate(ctx, "t00")
	if err != nil || loc.Addr != "127.0.0.1:5002" {
		t.Fatalf("locate t00 after the failover: %+v %v", loc, err)
	}
}

// nopClose keeps the shared memory catalog open when the host reopens it.
type nopClose struct{ tenant.Catalog }

func (nopClose) Close() error { return nil }

// countingBackend counts the recovery's calls, to tell which host acted.
type countingBackend struct {
	fakeBackend
	mu    sync.Mutex
	calls int
}

func (b *countingBackend) MakeAvailable(ctx context.Context, pool, region string, names []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	return nil
}

func (b *countingBackend) Restore(ctx context.Context, pool, region, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	return nil
}

func (b *countingBackend) n() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

// With a host per region ('lifeboat serve --region'), both gates route,
// and only the new active region's host recovers the tenants after a
// failover; the other follows the catalog.
func TestHostsPerRegionOneActs(t *testing.T) {
	spec := testSpec()
	st0 := lifeboat.InitialState(spec, time.Now())
	fs := &fakeStore{st: st0}
	cat := tenant.NewMemoryCatalog()
	ctx := context.Background()
	for i := range 10 {
		tier, pool := "paid", "paid"
		if i%2 == 1 {
			tier, pool = "trial", "trial"
		}
		if err := cat.Create(ctx, lifeboat.Tenant{Name: fmt.Sprintf("t%02d", i), Tier: tier, Pool: pool, Region: "west", Epoch: 1, State: lifeboat.TenantAvailable}); err != nil {
			t.Fatal(err)
		}
	}
	hosts, backends := map[string]*Hosted{}, map[string]*countingBackend{}
	for _, region := range []string{"west", "east"} {
		b := &countingBackend{}
		c := DefaultConfig()
		c.Spec, c.Store, c.Backend, c.Poll, c.Region = spec, fs, b, 10*time.Millisecond, region
		c.Open = func(context.Context, *lifeboat.Spec, *lifeboat.State) (tenant.Catalog, error) {
			return nopClose{cat}, nil
		}
		h, err := Host(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		hosts[region], backends[region] = h, b
	}
	for region, h := range hosts {
		if loc, err := h.locate(ctx, "t00"); err != nil || loc.Addr != "127.0.0.1:5001" {
			t.Fatalf("%s's gate locates t00 before the failover: %+v %v", region, loc, err)
		}
	}

	fs.failoverToEast()

	deadline := time.Now().Add(20 * time.Second)
	for s := hosts["east"].Status(); s.Recovery == nil || !s.Recovery.Done; s = hosts["east"].Status() {
		if time.Now().After(deadline) {
			t.Fatalf("east's host did not recover the tenants: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// West's host saw the same failover: it must have followed, not acted.
	for s := hosts["west"].Status(); s.Epoch != 2; s = hosts["west"].Status() {
		if time.Now().After(deadline) {
			t.Fatalf("west's host did not follow the failover: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := hosts["west"].Status(); s.Recovery != nil || s.Runs != 0 || backends["west"].n() != 0 {
		t.Errorf("west's host acted on a failover away from it: %+v, %d backend calls", s, backends["west"].n())
	}
	if backends["east"].n() == 0 {
		t.Error("east's host made no backend call")
	}
	for region, h := range hosts {
		if loc, err := h.locate(ctx, "t00"); err != nil || loc.Addr != "127.0.0.1:5002" {
			t.Errorf("%s's gate locates t00 after the failover: %+v %v", region, loc, err)
		}
	}
}
