package tenant

import (
	"context"
	"errors"
	"fmt"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// Pools creates tenants' databases (or schemas) on a pool's primary.
type Pools interface {
	// CreateTenant creates the tenant's database (isolation database) or
	// schema (isolation schema) on the copy of pool in region. It is
	// idempotent: one that exists already is left as is, so an interrupted
	// create can be run again.
	CreateTenant(ctx context.Context, pool, region, name string) error
}

// Create places a new tenant of tier, creates its database or schema on
// its pool's primary, and records it in the catalog as available at the
// current epoch. The database is created before the catalog entry, so an
// entry never points at nothing; a create that fails in between leaves an
// empty database, which the next create of that name reuses.
func Create(ctx context.Context, spec *lifeboat.Spec, st *lifeboat.State, cat Catalog, pools Pools, name, tier string, now time.Time) (lifeboat.Tenant, error) {
	if err := ValidName(name); err != nil {
		return lifeboat.Tenant{}, err
	}
	if _, err := cat.Get(ctx, name); err == nil {
		return lifeboat.Tenant{}, lifeboat.Permanent(OpCreate, name, fmt.Errorf("%w: %s is in the catalog already (pick another name, or 'lifeboat tenant show %s')", ErrTenantExists, name, name))
	} else if !errors.Is(err, ErrNoTenant) {
		return lifeboat.Tenant{}, err
	}
	p, err := Place(ctx, spec, st, cat, tier)
	if err != nil {
		return lifeboat.Tenant{}, err
	}
	if err := pools.CreateTenant(ctx, p.Pool, p.Region, name); err != nil {
		return lifeboat.Tenant{}, fmt.Errorf("creating tenant %s in pool %s (%s): %w", name, p.Pool, p.Region, err)
	}
	now = now.UTC()
	t := lifeboat.Tenant{Name: name, Tier: tier, Pool: p.Pool, Region: p.Region, Epoch: p.Epoch,
		State: lifeboat.TenantAvailable, Created: now, Updated: now}
	if err := cat.Create(ctx, t); err != nil {
		return lifeboat.Tenant{}, err
	}
	return t, nil
}
