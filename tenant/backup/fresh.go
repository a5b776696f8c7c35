package backup

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

// CheckTenantBackups is the readiness check's name (monitor.Check.Name).
const CheckTenantBackups = "tenant backups fresh"

// Freshness is how current one geo-restore tier's shipped backups are.
type Freshness struct {
	Tier     string        `json:"tier"`
	Interval time.Duration `json:"interval"`
	// Bound is what the oldest latest backup is held to: the tier's RPO,
	// else the service's RPO, else twice the interval (one missed backup).
	Bound   time.Duration `json:"bound"`
	Tenants int           `json:"tenants"`
	// Missing are the tenants with no backup shipped (sorted).
	Missing []string `json:"missing,omitempty"`
	// Oldest is the oldest latest backup, and whose it is.
	Oldest       time.Time `json:"oldest,omitzero"`
	OldestTenant string    `json:"oldest_tenant,omitempty"`
	// Stale are the tenants whose latest backup is older than Bound.
	Stale []string `json:"stale,omitempty"`
	// Unreadable: tenants whose backup directory could not be read.
	Unreadable []string `json:"unreadable,omitempty"`
}

// Bound returns what a tier's backups are held to.
func Bound(spec *lifeboat.Spec, t lifeboat.Tier) time.Duration {
	switch {
	case t.Objectives != nil && t.Objectives.RPO > 0:
		return t.Objectives.RPO.D()
	case spec.Objectives.RPO > 0:
		return spec.Objectives.RPO.D()
	}
	return 2 * Interval(t)
}

// Fresh reports, per geo-restore tier (sorted), how old its tenants'
// latest shipped backups are at now. Tenants not available (being
// recovered) are left out: they have no primary to back up.
func (s *Scheduler) Fresh(ctx context.Context) ([]Freshness, error) {
	all, err := s.list.List(ctx, tenant.Filter{States: []lifeboat.TenantState{lifeboat.TenantAvailable}})
	if err != nil {
		return nil, fmt.Errorf("listing tenants for the backup check: %w", err)
	}
	return Fresh(s.cfg.Spec, all, func(t lifeboat.Tenant) (Backup, error) { return s.Store(t.Region).Latest(t.Name) }, s.cfg.Now()), nil
}

// Fresh is the pure part of Scheduler.Fresh.
func Fresh(spec *lifeboat.Spec, tenants []lifeboat.Tenant, latest func(lifeboat.Tenant) (Backup, error), now time.Time) []Freshness {
	by := map[string]*Freshness{}
	for _, name := range lifeboat.SortedKeys(spec.Tenants.Tiers) {
		tier := spec.Tenants.Tiers[name]
		if tier.Strategy == lifeboat.StrategyGeoRestore {
			by[name] = &Freshness{Tier: name, Interval: Interval(tier), Bound: Bound(spec, tier)}
		}
	}
	for _, t := range tenants {
		f := by[t.Tier]
		if f == nil || t.State != lifeboat.TenantAvailable {
			continue
		}
		f.Tenants++
		b, err := latest(t)
		switch {
		case err != nil && !lifeboat.IsRetryable(err):
			f.Missing = append(f.Missing, t.Name)
			continue
		case err != nil:
			f.Unreadable = append(f.Unreadable, t.Name)
			continue
		}
		if f.Oldest.IsZero() || b.Taken.Before(f.Oldest) {
			f.Oldest, f.OldestTenant = b.Taken, t.Name
		}
		if now.Sub(b.Taken) > f.Bound {
			f.Stale = append(f.Stale, t.Name)
		}
	}
	var out []Freshness
	for _, name := range lifeboat.SortedKeys(by) {
		f := by[name]
		slices.Sort(f.Missing)
		slices.Sort(f.Stale)
		slices.Sort(f.Unreadable)
		out = append(out, *f)
	}
	return out
}

// Checks turns freshness into readiness checks, one per tier. They never
// block a failover: refusing it would keep every tenant down, paid ones
// included, for the sake of the trial tenants' data; the check says what
// would be lost instead.
func Checks(fs []Freshness, now time.Time) []monitor.Check {
	var out []monitor.Check
	for _, f := range fs {
		c := monitor.Check{Name: CheckTenantBackups, Component: "tier " + f.Tier, OK: true, At: now}
		var why []string
		if len(f.Missing) > 0 {
			why = append(why, fmt.Sprintf("%d of %d tenants have no backup in the other region (%s): they would be restored empty; check the backup scheduler's log", len(f.Missing), f.Tenants, names3(f.Missing)))
		}
		if len(f.Stale) > 0 {
			why = append(why, fmt.Sprintf("%d tenants' latest backups are older than %s (oldest: %s, %s old): a failover now loses more than the tier's RPO",
				len(f.Stale), lifeboat.FormatDuration(f.Bound), f.OldestTenant, lifeboat.FormatDuration(now.Sub(f.Oldest).Truncate(time.Second))))
		}
		if len(f.Unreadable) > 0 {
			why = append(why, fmt.Sprintf("the backups of %d tenants could not be read (%s); check the backup directory", len(f.Unreadable), names3(f.Unreadable)))
		}
		switch {
		case len(why) > 0:
			c.OK, c.Reason = false, strings.Join(why, "; ")
		case f.Tenants == 0:
			c.Reason = "no tenants to back up"
		default:
			c.Reason = fmt.Sprintf("%d tenants backed up every %s; oldest latest backup %s old (%s), within %s",
				f.Tenants, lifeboat.FormatDuration(f.Interval), lifeboat.FormatDuration(now.Sub(f.Oldest).Truncate(time.Second)), f.OldestTenant, lifeboat.FormatDuration(f.Bound))
		}
		out = append(out, c)
	}
	return out
}

func names3(ns []string) string {
	if len(ns) <= 3 {
		return strings.Join(ns, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ns[:3], ", "), len(ns)-3)
}
