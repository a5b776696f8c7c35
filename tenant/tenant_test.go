package tenant

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// testSpec is seed 004's scenario 3: a geo-replicated catalog, paid
// tenants split between two geo-replicated pools, trial tenants in a pool
// recovered by geo-restore.
func testSpec() *lifeboat.Spec {
	geo := lifeboat.Database{Engine: "postgres", DRMode: lifeboat.DRGeoReplica}
	backup := lifeboat.Database{Engine: "postgres", DRMode: lifeboat.DRBackup, BackupInterval: lifeboat.Duration(time.Hour)}
	return &lifeboat.Spec{
		Service: "shop",
		Regions: lifeboat.Regions{Primary: lifeboat.Region{Name: "west"}, Secondary: lifeboat.Region{Name: "east"}},
		Units: map[string]lifeboat.Unit{"data": {Databases: map[string]lifeboat.Database{
			"catalog": geo, "paida": geo, "paidb": geo, "trial": backup,
		}}},
		Tenants: &lifeboat.Tenants{
			Catalog: "data.catalog",
			Pools: map[string]lifeboat.Pool{
				"paid1": {Database: "data.paida"},
				"paid2": {Database: "data.paidb", Region: "east"},
				"trial": {Database: "data.trial", Isolation: lifeboat.IsolationSchema},
			},
			Tiers: map[string]lifeboat.Tier{
				"paid":  {Pools: []string{"paid1", "paid2"}, Placement: lifeboat.PlacementSplit, Strategy: lifeboat.StrategyGeoReplicate},
				"trial": {Pool: "trial", Strategy: lifeboat.StrategyGeoRestore},
			},
		},
	}
}

// testState is the initial state with paid2's primary in east, as its
// pool's region says.
func testState(spec *lifeboat.Spec) *lifeboat.State {
	st := lifeboat.InitialState(spec, time.Now())
	st.Resource(spec, "data", "paidb", "west").Role = lifeboat.DBReplica
	st.Resource(spec, "data", "paidb", "east").Role = lifeboat.DBPrimary
	return st
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"acme", "a", "acme_2", "x123456789012345678901234567890123456789012345678901234567890ab"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "Acme", "1acme", "ac-me", "ac me", "acme;drop", "pg_acme", "postgres", "template1", "public", "lifeboat",
		"x1234567890123456789012345678901234567890123456789012345678901ab", "acmé"} {
		err := ValidName(bad)
		if !errors.Is(err, ErrBadName) || lifeboat.IsRetryable(err) {
			t.Errorf("ValidName(%q) = %v, want a permanent ErrBadName", bad, err)
		}
	}
	if err := ValidName("Acme-Corp"); err == nil || !contains(err.Error(), "acme_corp") {
		t.Errorf("ValidName(Acme-Corp) = %v, want a suggestion acme_corp", err)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

// catalogContract runs the Catalog contract against any implementation.
func catalogContract(t *testing.T, cat Catalog) {
	ctx := context.Background()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mk := func(name, tier, pool, region string, epoch uint64) lifeboat.Tenant {
		return lifeboat.Tenant{Name: name, Tier: tier, Pool: pool, Region: region, Epoch: epoch, State: lifeboat.TenantAvailable, Created: at, Updated: at}
	}
	for i, name := range []string{"carol", "dave", "alice", "bob"} {
		tier, pool := "paid", "paid1"
		if i >= 2 {
			tier, pool = "trial", "trial"
		}
		if err := cat.Create(ctx, mk(name, tier, pool, "west", 1)); err != nil {
			t.Fatal(err)
		}
	}
	err := cat.Create(ctx, mk("alice", "paid", "paid1", "west", 1))
	if !errors.Is(err, ErrTenantExists) || lifeboat.IsRetryable(err) {
		t.Fatalf("second create of alice: %v, want a permanent ErrTenantExists", err)
	}
	if err := cat.Create(ctx, mk("Bad-Name", "paid", "paid1", "west", 1)); !errors.Is(err, ErrBadName) {
		t.Fatalf("create Bad-Name: %v, want ErrBadName", err)
	}
	got, err := cat.Get(ctx, "alice")
	if err != nil || got != mk("alice", "trial", "trial", "west", 1) {
		t.Fatalf("get alice = %+v, %v", got, err)
	}
	if _, err := cat.Get(ctx, "nobody"); !errors.Is(err, ErrNoTenant) || lifeboat.IsRetryable(err) {
		t.Fatalf("get nobody: %v, want a permanent ErrNoTenant", err)
	}
	names := func(f Filter) string {
		ts, err := cat.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		s := ""
		for _, x := range ts {
			s += x.Name + " "
		}
		return s
	}
	if got := names(Filter{}); got != "alice bob carol dave " {
		t.Fatalf("list all = %q, want sorted by name", got)
	}
	if got := names(Filter{Tier: "paid"}); got != "carol dave " {
		t.Fatalf("list paid = %q", got)
	}

	// A failover batch moves the paid tenants to east at epoch 2.
	rec := at.Add(time.Hour)
	n, err := cat.Set(ctx, []string{"carol", "dave", "nobody"}, lifeboat.TenantChange{State: lifeboat.TenantAvailable, Region: "east", Epoch: 2, Recovered: rec})
	if err != nil || n != 2 {
		t.Fatalf("set = %d, %v; want 2 changed", n, err)
	}
	c, _ := cat.Get(ctx, "carol")
	if c.Region != "east" || c.Epoch != 2 || !c.Recovered.Equal(rec) || !c.Updated.After(at) {
		t.Fatalf("carol after the batch: %+v", c)
	}
	// A late batch of epoch 1 is fenced: carol stays in east.
	n, err = cat.Set(ctx, []string{"carol", "alice"}, lifeboat.TenantChange{State: lifeboat.TenantFailed, Reason: "late", Region: "west", Epoch: 1})
	if err != nil || n != 1 {
		t.Fatalf("stale set = %d, %v; want only alice changed", n, err)
	}
	if c, _ := cat.Get(ctx, "carol"); c.Region != "east" || c.State != lifeboat.TenantAvailable {
		t.Fatalf("carol was changed by a stale batch: %+v", c)
	}
	if got := names(Filter{States: []lifeboat.TenantState{lifeboat.TenantFailed, lifeboat.TenantQueued}}); got != "alice " {
		t.Fatalf("list failed = %q", got)
	}
	if got := names(Filter{Region: "east", Pool: "paid1"}); got != "carol dave " {
		t.Fatalf("list east/paid1 = %q", got)
	}
	// A state change clears the old reason.
	if _, err := cat.Set(ctx, []string{"alice"}, lifeboat.TenantChange{State: lifeboat.TenantQueued}); err != nil {
		t.Fatal(err)
	}
	if a, _ := cat.Get(ctx, "alice"); a.State != lifeboat.TenantQueued || a.Reason != "" || a.Region != "west" || a.Epoch != 1 {
		t.Fatalf("alice queued: %+v", a)
	}
	for _, bad := range []lifeboat.TenantChange{{}, {Region: "east"}, {Epoch: 3}} {
		if _, err := cat.Set(ctx, []string{"alice"}, bad); err == nil || lifeboat.IsRetryable(err) {
			t.Errorf("set %+v: %v, want a permanent error", bad, err)
		}
	}
	// Moves between pools are fenced too.
	mv := cat.(Mover)
	if _, err := mv.Move(ctx, "carol", "paid2", "east", 1); !errors.Is(err, lifeboat.ErrStaleEpoch) {
		t.Fatalf("stale move: %v", err)
	}
	m, err := mv.Move(ctx, "carol", "paid2", "east", 3)
	if err != nil || m.Pool != "paid2" || m.Epoch != 3 || m.State != lifeboat.TenantAvailable {
		t.Fatalf("move = %+v, %v", m, err)
	}
	if _, err := mv.Move(ctx, "nobody", "paid2", "east", 3); !errors.Is(err, ErrNoTenant) {
		t.Fatalf("move nobody: %v", err)
	}

	// A batch of 1,000 is one change.
	var many []string
	for i := range 1000 {
		name := fmt.Sprintf("t%04d", i)
		many = append(many, name)
		if err := cat.Create(ctx, mk(name, "paid", "paid1", "west", 1)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := cat.Set(ctx, many, lifeboat.TenantChange{State: lifeboat.TenantAvailable, Region: "east", Epoch: 2}); err != nil || n != 1000 {
		t.Fatalf("set 1000 = %d, %v", n, err)
	}
	if ts, _ := cat.List(ctx, Filter{Region: "east", Pool: "paid1"}); len(ts) != 1001 {
		t.Fatalf("%d tenants in east/paid1, want 1001", len(ts))
	}
}

func TestMemoryCatalog(t *testing.T) { catalogContract(t, NewMemoryCatalog()) }

func TestChoosePrimaryAndSplit(t *testing.T) {
	spec := testSpec()
	st := testState(spec)
	p, err := Choose(spec, st, "trial", nil)
	if err != nil || p != (Placement{Pool: "trial", Region: "west", Epoch: 1}) {
		t.Fatalf("trial placed at %+v, %v", p, err)
	}
	// Split: fewest of the tier's tenants first, ties by name.
	for _, c := range []struct {
		counts    map[string]int
		pool, reg string
	}{
		{nil, "paid1", "west"},
		{map[string]int{"paid1": 1}, "paid2", "east"},
		{map[string]int{"paid1": 1, "paid2": 1}, "paid1", "west"},
		{map[string]int{"paid1": 5, "paid2": 2}, "paid2", "east"},
	} {
		p, err := Choose(spec, st, "paid", c.counts)
		if err != nil || p.Pool != c.pool || p.Region != c.reg {
			t.Errorf("counts %v: placed at %+v, %v; want %s in %s", c.counts, p, err, c.pool, c.reg)
		}
	}
	if _, err := Choose(spec, st, "gold", nil); err == nil || !contains(err.Error(), "paid, trial") {
		t.Errorf("unknown tier: %v", err)
	}
}

func TestChooseAfterFailover(t *testing.T) {
	spec := testSpec()
	st := testState(spec)
	// west is lost: paid1 promoted in east, trial not yet restored there.
	st.Epoch, st.Active = 2, "east"
	st.Resource(spec, "data", "paida", "west").Role = lifeboat.DBFenced
	st.Resource(spec, "data", "paida", "east").Role = lifeboat.DBPrimary
	st.Resource(spec, "data", "trial", "west").Role = lifeboat.DBFenced
	p, err := Choose(spec, st, "paid", nil)
	if err != nil || p != (Placement{Pool: "paid1", Region: "east", Epoch: 2}) {
		t.Fatalf("paid after failover: %+v, %v; want paid1 in east at epoch 2", p, err)
	}
	_, err = Choose(spec, st, "trial", nil)
	if !errors.Is(err, ErrNoPrimary) || !lifeboat.IsRetryable(err) {
		t.Fatalf("trial before its DR pool exists: %v, want a retryable ErrNoPrimary", err)
	}
	// A geo-restore pool with dr-mode none keeps its lost copy "primary"
	// in the state: once the service runs in east, new trials go to the
	// DR pool there all the same.
	none := testState(spec)
	none.Epoch, none.Active = 2, "east"
	if p, err := Choose(spec, none, "trial", nil); err != nil || p != (Placement{Pool: "trial", Region: "east", Epoch: 2}) {
		t.Fatalf("trial after a failover, its lost copy still primary in the state: %+v, %v; want trial in east", p, err)
	}
	// The recovery restores the trial pool in east: new trials go there.
	st.Resource(spec, "data", "trial", "east").Role = lifeboat.DBPrimary
	if p, err := Choose(spec, st, "trial", nil); err != nil || p.Region != "east" {
		t.Fatalf("trial after its DR pool: %+v, %v", p, err)
	}
}

type fakePools struct {
	created []string
	fail    error
}

func (f *fakePools) CreateTenant(ctx context.Context, pool, region, name string) error {
	if f.fail != nil {
		return f.fail
	}
	f.created = append(f.created, pool+"/"+region+"/"+name)
	return nil
}

func TestCreateAlternatesSplitPools(t *testing.T) {
	ctx := context.Background()
	spec := testSpec()
	st := testState(spec)
	cat, pools := NewMemoryCatalog(), &fakePools{}
	now := time.Now()
	for _, n := range []string{"a1", "a2", "a3", "a4"} {
		if _, err := Create(ctx, spec, st, cat, pools, n, "paid", now); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"paid1/west/a1", "paid2/east/a2", "paid1/west/a3", "paid2/east/a4"}
	if fmt.Sprint(pools.created) != fmt.Sprint(want) {
		t.Fatalf("created %v, want %v", pools.created, want)
	}
	a2, _ := cat.Get(ctx, "a2")
	if a2.Pool != "paid2" || a2.Region != "east" || a2.State != lifeboat.TenantAvailable || a2.Epoch != 1 {
		t.Fatalf("a2 = %+v", a2)
	}
	if _, err := Create(ctx, spec, st, cat, pools, "a1", "paid", now); !errors.Is(err, ErrTenantExists) {
		t.Fatalf("create a1 again: %v", err)
	}
	if len(pools.created) != 4 {
		t.Fatalf("a duplicate created a database: %v", pools.created)
	}
	// A pool that fails leaves no catalog entry.
	pools.fail = lifeboat.Transient(OpCreate, "x", errors.New("connection refused"))
	if _, err := Create(ctx, spec, st, cat, pools, "b1", "trial", now); !lifeboat.IsRetryable(err) {
		t.Fatalf("create with a failing pool: %v, want retryable", err)
	}
	if _, err := cat.Get(ctx, "b1"); !errors.Is(err, ErrNoTenant) {
		t.Fatalf("b1 is in the catalog after a failed create: %v", err)
	}
}

type fakeCopier struct{ calls []string }

func (f *fakeCopier) CopyTenant(ctx context.Context, name string, from, to Placement, kept string) error {
	f.calls = append(f.calls, fmt.Sprintf("%s %s/%s->%s/%s %s", name, from.Pool, from.Region, to.Pool, to.Region, kept))
	return nil
}

func (f *fakeCopier) UncopyTenant(ctx context.Context, name string, from, to Placement, kept string) error {
	f.calls = append(f.calls, fmt.Sprintf("uncopy %s", name))
	return nil
}

func TestMoveChecks(t *testing.T) {
	ctx := context.Background()
	spec := testSpec()
	st := testState(spec)
	cat, cp := NewMemoryCatalog(), &fakeCopier{}
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	if _, err := Create(ctx, spec, st, cat, &fakePools{}, "acme", "paid", now); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ pool, region, want string }{
		{"trial", "", "not a pool of tier paid"},
		{"paid1", "", "in pool paid1 already"},
		{"paid2", "west", "primary is in east now"},
	} {
		if _, err := Move(ctx, spec, st, cat, cp, "acme", c.pool, c.region, now); err == nil || !contains(err.Error(), c.want) {
			t.Errorf("move to %s %s: %v, want %q", c.pool, c.region, err, c.want)
		}
	}
	r, err := Move(ctx, spec, st, cat, cp, "acme", "paid2", "", now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tenant.Pool != "paid2" || r.Tenant.Region != "east" || r.Kept != "acme_moved_20260506070809" {
		t.Fatalf("move = %+v", r)
	}
	if fmt.Sprint(cp.calls) != "[acme paid1/west->paid2/east acme_moved_20260506070809]" {
		t.Fatalf("copies: %v", cp.calls)
	}
	if len(KeptName(string(make([]byte, 63)), now)) != 63 {
		t.Fatal("a kept name is longer than 63 bytes")
	}
}
