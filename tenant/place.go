package tenant

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// PrimaryRegion returns the region whose copy of the database ref
// ("unit.component") is its primary now, as the stored state says. It is
// ErrNoPrimary (retryable) when no copy is: the region of the primary was
// lost and no copy has been promoted or restored yet.
func PrimaryRegion(spec *lifeboat.Spec, st *lifeboat.State, ref string) (string, error) {
	unit, comp, ok := strings.Cut(ref, ".")
	if !ok {
		return "", lifeboat.Permanent(OpOpen, ref, fmt.Errorf("%q must name a database as unit.component", ref))
	}
	var roles []string
	for _, region := range []string{spec.Regions.Primary.Name, spec.Regions.Secondary.Name} {
		r := st.Resource(spec, unit, comp, region)
		if r == nil {
			roles = append(roles, region+": none")
			continue
		}
		if r.Exists && r.Role == lifeboat.DBPrimary {
			return region, nil
		}
		roles = append(roles, fmt.Sprintf("%s: %s", region, r.Role))
	}
	return "", lifeboat.Transient(OpOpen, ref, fmt.Errorf("%w of %s now (%s): a failover is under way or the copy in the surviving region is not yet promoted or restored; retry when 'lifeboat status' shows a primary",
		ErrNoPrimary, ref, strings.Join(roles, ", ")))
}

// Endpoint returns where Lifeboat connects to the primary copy of database
// ref now, and its region.
func Endpoint(spec *lifeboat.Spec, st *lifeboat.State, ref string) (url, region string, err error) {
	region, err = PrimaryRegion(spec, st, ref)
	if err != nil {
		return "", "", err
	}
	db, err := database(spec, ref)
	if err != nil {
		return "", "", err
	}
	url = db.Endpoints[region]
	if url == "" {
		return "", "", lifeboat.Permanent(OpOpen, ref, fmt.Errorf("database %s has no endpoint for region %s, where its primary is now; add endpoints: {%s: postgres://user@host:port/db} to it in the spec", ref, region, region))
	}
	return url, region, nil
}

func database(spec *lifeboat.Spec, ref string) (lifeboat.Database, error) {
	unit, comp, _ := strings.Cut(ref, ".")
	db, ok := spec.Units[unit].Databases[comp]
	if !ok {
		return db, lifeboat.Permanent(OpOpen, ref, fmt.Errorf("the spec has no database %s (tenants name databases as unit.component)", ref))
	}
	return db, nil
}

// Placement is where a new tenant goes.
type Placement struct {
	Pool   string `json:"pool"`
	Region string `json:"region"`
	Epoch  uint64 `json:"epoch"`
}

// Choose places a new tenant of tier: in the tier's pool (placement
// primary), or in the one of its two pools holding fewer of the tier's
// tenants, ties by pool name (placement split), so each region holds the
// primaries of half the tier. counts are the tier's tenants per pool. The
// region is where the pool's primary is now, so after a failover new
// tenants are created in the DR region at once; for a geo-restore pool
// whose region is lost and whose DR copy the recovery has not created yet,
// Choose fails with ErrNoPrimary (retryable): the tenant is created when
// the DR pool is, never in a region that cannot take writes.
func Choose(spec *lifeboat.Spec, st *lifeboat.State, tier string, counts map[string]int) (Placement, error) {
	if spec.Tenants == nil {
		return Placement{}, lifeboat.Permanent(OpCreate, "", errors.New("the spec has no tenants section; add tenants: {catalog, pools, tiers}"))
	}
	tr, ok := spec.Tenants.Tiers[tier]
	if !ok {
		return Placement{}, lifeboat.Permanent(OpCreate, "", fmt.Errorf("no tier %q in the spec; tiers: %s", tier, strings.Join(lifeboat.SortedKeys(spec.Tenants.Tiers), ", ")))
	}
	pools := TierPools(tr)
	if len(pools) == 0 {
		return Placement{}, lifeboat.Permanent(OpCreate, "", fmt.Errorf("tier %s names no pool; set pool: (placement primary) or pools: [a, b] (placement split)", tier))
	}
	if tr.Placement == lifeboat.PlacementSplit {
		pools = append([]string(nil), pools...)
		sort.SliceStable(pools, func(i, j int) bool {
			if counts[pools[i]] != counts[pools[j]] {
				return counts[pools[i]] < counts[pools[j]]
			}
			return pools[i] < pools[j]
		})
	}
	name := pools[0]
	p, ok := spec.Tenants.Pools[name]
	if !ok {
		return Placement{}, lifeboat.Permanent(OpCreate, "", fmt.Errorf("tier %s names pool %q, which is not under tenants.pools", tier, name))
	}
	region, err := PrimaryRegion(spec, st, p.Database)
	if err != nil {
		return Placement{}, fmt.Errorf("pool %s: %w", name, err)
	}
	if tr.Strategy == lifeboat.StrategyGeoRestore && st.Active != region && spec.Regions.Has(st.Active) {
		// The pool's region was lost and the service failed over: its
		// copy there (dr-mode none) is no use. New tenants go to the DR
		// pool the recovery creates in the active region (seed 004: "all
		// new accounts and tenant databases are created in the DR
		// region"); until it exists, creating one fails and may be retried.
		region = st.Active
	}
	return Placement{Pool: name, Region: region, Epoch: st.Epoch}, nil
}

// TierPools are the pools a tier's tenants may live in.
func TierPools(t lifeboat.Tier) []string {
	if t.Placement == lifeboat.PlacementSplit || (t.Pool == "" && len(t.Pools) > 0) {
		return t.Pools
	}
	if t.Pool == "" {
		return nil
	}
	return []string{t.Pool}
}

// Place chooses where a new tenant of tier goes, counting the tier's
// tenants per pool in the catalog.
func Place(ctx context.Context, spec *lifeboat.Spec, st *lifeboat.State, cat Catalog, tier string) (Placement, error) {
	counts := map[string]int{}
	if spec.Tenants == nil {
		return Choose(spec, st, tier, counts)
	}
	if tr, ok := spec.Tenants.Tiers[tier]; ok && tr.Placement == lifeboat.PlacementSplit {
		ts, err := cat.List(ctx, Filter{Tier: tier})
		if err != nil {
			return Placement{}, err
		}
		for _, t := range ts {
			counts[t.Pool]++
		}
	}
	return Choose(spec, st, tier, counts)
}
