package tenant

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// MemoryCatalog is a Catalog kept in memory: for tests of whatever uses a
// catalog, and for the pure core's tests. Now stamps Updated (default
// time.Now).
type MemoryCatalog struct {
	Now func() time.Time

	mu      sync.Mutex
	tenants map[string]lifeboat.Tenant
}

// NewMemoryCatalog returns an empty catalog.
func NewMemoryCatalog() *MemoryCatalog {
	return &MemoryCatalog{tenants: map[string]lifeboat.Tenant{}}
}

var (
	_ Catalog = (*MemoryCatalog)(nil)
	_ Mover   = (*MemoryCatalog)(nil)
)

func (m *MemoryCatalog) now() time.Time {
	if m.Now != nil {
		return m.Now().UTC()
	}
	return time.Now().UTC()
}

func (m *MemoryCatalog) Create(ctx context.Context, t lifeboat.Tenant) error {
	if err := ValidName(t.Name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tenants[t.Name]; ok {
		return lifeboat.Permanent(OpCreate, t.Name, fmt.Errorf("%w: %s is in the catalog already (pick another name, or 'lifeboat tenant show %s')", ErrTenantExists, t.Name, t.Name))
	}
	now := m.now()
	if t.Created.IsZero() {
		t.Created = now
	}
	if t.Updated.IsZero() {
		t.Updated = t.Created
	}
	m.tenants[t.Name] = t
	return nil
}

func (m *MemoryCatalog) Get(ctx context.Context, name string) (lifeboat.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tenants[name]
	if !ok {
		return lifeboat.Tenant{}, noTenant(OpGet, name)
	}
	return t, nil
}

func (m *MemoryCatalog) List(ctx context.Context, f Filter) ([]lifeboat.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []lifeboat.Tenant{}
	for _, t := range m.tenants {
		if f.Match(t) {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *MemoryCatalog) Set(ctx context.Context, names []string, ch lifeboat.TenantChange) (int, error) {
	if err := validChange(ch); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now, changed := m.now(), 0
	seen := map[string]bool{}
	for _, n := range names {
		t, ok := m.tenants[n]
		if !ok || seen[n] {
			continue
		}
		seen[n] = true
		if apply(&t, ch) {
			t.Updated = now
			m.tenants[n] = t
			changed++
		}
	}
	return changed, nil
}

func (m *MemoryCatalog) Move(ctx context.Context, name, pool, region string, epoch uint64) (lifeboat.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tenants[name]
	if !ok {
		return t, noTenant(OpMove, name)
	}
	if t.Epoch > epoch {
		return t, lifeboat.StaleEpoch("tenant "+name, epoch, t.Epoch)
	}
	t.Pool, t.Region, t.Epoch, t.State, t.Reason, t.Updated = pool, region, epoch, lifeboat.TenantAvailable, "", m.now()
	m.tenants[name] = t
	return t, nil
}

func (m *MemoryCatalog) Close() error { return nil }

func noTenant(op lifeboat.Op, name string) error {
	return lifeboat.Permanent(op, name, fmt.Errorf("%w %q in the catalog (see 'lifeboat tenant list')", ErrNoTenant, name))
}
