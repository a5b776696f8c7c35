package status

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
)

// TenantTimeout bounds what status and readiness spend on the tenants'
// catalog (open, count, list): its primary may be in a lost region, and
// status must still answer.
const TenantTimeout = 3 * time.Second

// CatalogOpener opens the tenants' catalog where the state says its
// database is primary now.
type CatalogOpener func(ctx context.Context, spec *lifeboat.Spec, st *lifeboat.State) (tenant.Catalog, error)

// OpenCatalog is the CatalogOpener of package tenant's PostgreSQL catalog
// (the spec's tenants.catalog database).
func OpenCatalog(ctx context.Context, spec *lifeboat.Spec, st *lifeboat.State) (tenant.Catalog, error) {
	return tenant.OpenCatalog(ctx, spec, st)
}

// openCatalog opens the catalog with open, and says in words where it
// looked when it cannot.
func openCatalog(ctx context.Context, spec *lifeboat.Spec, st *lifeboat.State, open CatalogOpener) (tenant.Catalog, error) {
	cat, err := open(ctx, spec, st)
	if err != nil {
		where := spec.Tenants.Catalog
		if region, rerr := tenant.PrimaryRegion(spec, st, where); rerr == nil {
			where += ", primary in " + region
		}
		return nil, fmt.Errorf("could not open the tenant catalog (%s): %w", where, err)
	}
	return cat, nil
}

// TenantBackupDirs are the directories each region receives the other
// region's tenant backups in: tenants.backups resolved against the spec
// file, by default .lifeboat/tenant-backups/<region> next to it.
func TenantBackupDirs(spec *lifeboat.Spec) map[string]string { return backup.Dirs(spec) }

// geoRestoreTiers are the spec's geo-restore tiers, sorted.
func geoRestoreTiers(spec *lifeboat.Spec) []string {
	var out []string
	if spec.Tenants == nil {
		return nil
	}
	for _, name := range lifeboat.SortedKeys(spec.Tenants.Tiers) {
		if spec.Tenants.Tiers[name].Strategy == lifeboat.StrategyGeoRestore {
			out = append(out, name)
		}
	}
	return out
}

// notBlocking is why a tenant backups check never blocks a failover.
const notBlocking = "this does not block a failover: refusing one would keep every tenant down, the geo-replicated ones included, for the sake of these backups"

// TenantBackupChecks are the "tenant backups fresh" readiness checks, one
// per geo-restore tier: how old the latest backup shipped to the other
// region is for each available tenant (tenant/backup's Fresh), read from
// the directories of TenantBackupDirs. cat may be nil, with catErr saying
// why: then each check says the freshness is unknown. They never block a
// failover. None when the spec has no geo-restore tier.
func TenantBackupChecks(ctx context.Context, spec *lifeboat.Spec, cat tenant.Catalog, catErr error, now time.Time) []monitor.Check {
	tiers := geoRestoreTiers(spec)
	if len(tiers) == 0 {
		return nil
	}
	unknown := func(err error) []monitor.Check {
		var out []monitor.Check
		for _, tier := range tiers {
			out = append(out, monitor.Check{Name: backup.CheckTenantBackups, Component: "tier " + tier, OK: false, At: now,
				Reason: fmt.Sprintf("unknown: %v; %s", err, notBlocking)})
		}
		return out
	}
	if cat == nil {
		if catErr == nil {
			catErr = errors.New("no tenant catalog")
		}
		return unknown(catErr)
	}
	var tenants []lifeboat.Tenant
	for _, tier := range tiers {
		ts, err := cat.List(ctx, tenant.Filter{Tier: tier, States: []lifeboat.TenantState{lifeboat.TenantAvailable}})
		if err != nil {
			return unknown(fmt.Errorf("could not list tier %s's tenants in the catalog: %w", tier, err))
		}
		tenants = append(tenants, ts...)
	}
	dirs := TenantBackupDirs(spec)
	stores := map[string]*backup.Store{}
	for region, dir := range dirs {
		stores[region] = backup.NewStore(dir)
	}
	fs := backup.Fresh(spec, tenants, func(t lifeboat.Tenant) (backup.Backup, error) {
		// A tenant's backups are shipped to the region other than its primary's.
		s := stores[spec.Regions.Other(t.Region)]
		if s == nil {
			return backup.Backup{}, lifeboat.Permanent(backup.OpLatest, t.Name, fmt.Errorf("tenant %s is in region %q, which the spec does not name", t.Name, t.Region))
		}
		return s.Latest(t.Name)
	}, now)
	checks := backup.Checks(fs, now)
	for i := range checks {
		c := &checks[i]
		c.Blocks = false
		if !c.OK {
			c.Reason += "; " + notBlocking
		}
		// Say where the backups were looked for: the first question at 3 a.m.
		if c.OK && c.Reason != "" {
			c.Reason += fmt.Sprintf(" (in %s)", strings.Join(sortedDirs(dirs), ", "))
		}
	}
	return checks
}

func sortedDirs(dirs map[string]string) []string {
	var out []string
	for _, region := range lifeboat.SortedKeys(dirs) {
		out = append(out, dirs[region])
	}
	return out
}

// tenantStates are the states in the order status shows them.
var tenantStates = []lifeboat.TenantState{lifeboat.TenantAvailable, lifeboat.TenantQueued, lifeboat.TenantRestoring,
	lifeboat.TenantFailed, lifeboat.TenantReadOnly}

// TenantsFrom sums up cat's tenants: how many in each state, overall and
// by tier (every tier of the spec, even one with no tenants), counted in
// one query when the catalog can (tenant.Counter). A catalog that cannot
// be read is said in Error; cat nil with catErr says why it could not be
// opened.
func TenantsFrom(ctx context.Context, spec *lifeboat.Spec, cat tenant.Catalog, catErr error) *TenantsView {
	v := &TenantsView{Counts: map[lifeboat.TenantState]int{}, ByTier: map[string]map[lifeboat.TenantState]int{}}
	for _, tier := range lifeboat.SortedKeys(spec.Tenants.Tiers) {
		v.ByTier[tier] = map[lifeboat.TenantState]int{}
	}
	if cat == nil {
		if catErr == nil {
			catErr = errors.New("no tenant catalog")
		}
		v.Error = catErr.Error()
		return v
	}
	counts, err := tenant.Count(ctx, cat)
	if err != nil {
		v.Error = fmt.Sprintf("could not count the tenants in the catalog (%s): %v", spec.Tenants.Catalog, err)
		return v
	}
	for tier, states := range counts {
		if v.ByTier[tier] == nil {
			v.ByTier[tier] = map[lifeboat.TenantState]int{}
		}
		for st, n := range states {
			v.ByTier[tier][st] += n
		}
	}
	v.Total, v.Counts = counts.Total()
	v.Recovery = recoverySummary(v)
	return v
}

// recoverySummary says what is not available yet, and where to look.
func recoverySummary(v *TenantsView) string {
	waiting := v.Counts[lifeboat.TenantQueued] + v.Counts[lifeboat.TenantRestoring]
	failed := v.Counts[lifeboat.TenantFailed]
	if waiting == 0 && failed == 0 {
		return ""
	}
	var parts []string
	if waiting > 0 {
		var by []string
		for _, tier := range lifeboat.SortedKeys(v.ByTier) {
			if n := v.ByTier[tier][lifeboat.TenantQueued] + v.ByTier[tier][lifeboat.TenantRestoring]; n > 0 {
				by = append(by, fmt.Sprintf("%s %d", tier, n))
			}
		}
		parts = append(parts, fmt.Sprintf("%d of %d tenants not available yet (%d queued, %d restoring; %s)",
			waiting, v.Total, v.Counts[lifeboat.TenantQueued], v.Counts[lifeboat.TenantRestoring], strings.Join(by, ", ")))
	}
	if failed > 0 {
		parts = append(parts, fmt.Sprintf("%d failed: 'lifeboat tenant list --state failed' says why; the next recovery retries them, or move them by hand", failed))
	}
	return strings.Join(parts, "; ")
}

// Tenants opens the catalog with open (bounded by TenantTimeout) and sums
// up its tenants; nil when the spec has no tenants section. It never
// fails: what went wrong is in the view's Error.
func Tenants(ctx context.Context, spec *lifeboat.Spec, state *lifeboat.State, open CatalogOpener) *TenantsView {
	if spec.Tenants == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, TenantTimeout)
	defer cancel()
	cat, err := openCatalog(ctx, spec, state, open)
	if err == nil {
		defer cat.Close()
	}
	return TenantsFrom(ctx, spec, cat, err)
}

// tenantReadiness is what Readiness adds for tenants: the backup checks,
// with the catalog opened (bounded by TenantTimeout) only when the spec
// has geo-restore tiers.
func tenantReadiness(ctx context.Context, spec *lifeboat.Spec, state *lifeboat.State, open CatalogOpener) []monitor.Check {
	if len(geoRestoreTiers(spec)) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, TenantTimeout)
	defer cancel()
	cat, err := openCatalog(ctx, spec, state, open)
	if err == nil {
		defer cat.Close()
	}
	return TenantBackupChecks(ctx, spec, cat, err, time.Now())
}
