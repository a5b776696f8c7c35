package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/spf13/cobra"
)

func (a *app) tenantCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenant",
		Short: "Tenants of a multi-tenant service: create, list, show, move",
		Long: `Tenants are customers with a database (or schema) each in a pool, a
PostgreSQL cluster shared by many. The spec's tenants section names the
catalog (where each tenant lives: pool, region, epoch, state), the pools and
the tiers (which pool, and how the tier is recovered when a region is lost).
The catalog is reached at the endpoints of its database, in the region
where its primary is now.`,
	}
	cmd.AddCommand(a.tenantCreateCommand(), a.tenantListCommand(), a.tenantShowCommand(), a.tenantMoveCommand())
	return cmd
}

// tenantSession is an open session with its catalog.
type tenantSession struct {
	*session
	catalog *tenant.PostgresCatalog
}

func (t *tenantSession) Close() {
	_ = t.catalog.Close()
	t.session.Close()
}

func (a *app) openTenants(ctx context.Context) (*tenantSession, error) {
	s, err := a.open(ctx)
	if err != nil {
		return nil, err
	}
	if s.spec.Tenants == nil {
		s.Close()
		return nil, exit(exitSpec, "%s has no tenants section; add tenants: {catalog, pools, tiers} (see 'lifeboat tenant --help')", a.specPath)
	}
	cat, err := tenant.OpenCatalog(ctx, s.spec, s.state)
	if err != nil {
		s.Close()
		return nil, tenantExit(err)
	}
	return &tenantSession{session: s, catalog: cat}, nil
}

// tenantExit gives a tenant error its exit status: a wrong name or
// command line is 2, anything else 1 (with "retry" said when it may help).
func tenantExit(err error) error {
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return err
	case errors.Is(err, tenant.ErrBadName):
		return &exitError{code: exitSpec, err: err}
	case errors.Is(err, lifeboat.ErrStaleEpoch):
		return &exitError{code: exitRefused, err: err}
	case lifeboat.IsRetryable(err):
		return &exitError{code: exitFailed, err: fmt.Errorf("%w (this may pass if retried)", err)}
	}
	return &exitError{code: exitFailed, err: err}
}

func (a *app) paintState(s lifeboat.TenantState) string {
	switch s {
	case lifeboat.TenantAvailable:
		return a.paint(green, string(s))
	case lifeboat.TenantQueued, lifeboat.TenantRestoring:
		return a.paint(yellow, string(s))
	case lifeboat.TenantFailed:
		return a.paint(red, string(s))
	case lifeboat.TenantReadOnly:
		return a.paint(blue, string(s))
	}
	return string(s)
}

func (a *app) tenantCreateCommand() *cobra.Command {
	var tier string
	cmd := &cobra.Command{
		Use:   "create NAME --tier TIER",
		Short: "Create a tenant: its database (or schema) in its tier's pool, and its catalog entry",
		Long: `Create a tenant of a tier. It goes to the tier's pool (placement primary)
or to whichever of the tier's two pools holds fewer of its tenants
(placement split), in the region where that pool's primary is now: after a
failover, new tenants are created in the DR region at once. Its database
(isolation database) or schema (isolation schema) is created on the pool's
primary, then the catalog records it as available at the current epoch.

NAME is the tenant's database or schema name, and what its clients connect
to: lower-case letters, digits and underscores, starting with a letter, at
most 63 bytes, not starting with pg_, and not postgres, template0,
template1, public, information_schema or lifeboat.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if tier == "" {
				return exit(exitSpec, "--tier is required: the tier picks the tenant's pool and how it is recovered; usage: %s", cmd.UseLine())
			}
			if err := tenant.ValidName(name); err != nil {
				return tenantExit(err)
			}
			ctx := cmd.Context()
			s, err := a.openTenants(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			if _, ok := s.spec.Tenants.Tiers[tier]; !ok {
				return exit(exitSpec, "no tier %q in %s; use --tier with one of: %s", tier, a.specPath, strings.Join(lifeboat.SortedKeys(s.spec.Tenants.Tiers), ", "))
			}
			t, err := tenant.Create(ctx, s.spec, s.state, s.catalog, &tenant.PostgresPools{Spec: s.spec}, name, tier, time.Now())
			if err != nil {
				return tenantExit(err)
			}
			if a.json() {
				return a.printJSON(t)
			}
			fmt.Fprintf(a.out, "%s tenant %s (%s) created in pool %s, region %s, at epoch %d: %s\n",
				a.paint(green, "✓"), a.paint(bold, t.Name), t.Tier, t.Pool, t.Region, t.Epoch, a.paintState(t.State))
			return nil
		},
	}
	cmd.Flags().StringVar(&tier, "tier", "", "the tenant's tier (required)")
	return cmd
}

func (a *app) tenantListCommand() *cobra.Command {
	var f tenant.Filter
	var states []string
	cmd := &cobra.Command{
		Use:   "list [--tier T] [--pool P] [--region R] [--state S,...]",
		Short: "Tenants, where each lives and how it stands, with counts per state",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			valid := []string{string(lifeboat.TenantAvailable), string(lifeboat.TenantQueued), string(lifeboat.TenantRestoring), string(lifeboat.TenantFailed), string(lifeboat.TenantReadOnly)}
			for _, st := range states {
				if !slices.Contains(valid, st) {
					return exit(exitSpec, "--state %q: use %s", st, strings.Join(valid, ", "))
				}
				f.States = append(f.States, lifeboat.TenantState(st))
			}
			ctx := cmd.Context()
			s, err := a.openTenants(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			ts, err := s.catalog.List(ctx, f)
			if err != nil {
				return tenantExit(err)
			}
			if a.json() {
				return a.printJSON(ts)
			}
			if len(ts) == 0 {
				fmt.Fprintln(a.out, "no tenants match; create one with 'lifeboat tenant create NAME --tier TIER'")
				return nil
			}
			w := a.table()
			fmt.Fprintln(w, a.paint(dim, "NAME\tTIER\tPOOL\tREGION\tEPOCH\tSTATE\tUPDATED\tREASON"))
			counts := map[lifeboat.TenantState]int{}
			for _, t := range ts {
				counts[t.State]++
				reason := t.Reason
				if reason == "" {
					reason = "-"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", t.Name, t.Tier, t.Pool, t.Region, t.Epoch, a.paintState(t.State), since(t.Updated), reason)
			}
			_ = w.Flush()
			var parts []string
			for _, st := range valid {
				if n := counts[lifeboat.TenantState(st)]; n > 0 {
					parts = append(parts, fmt.Sprintf("%d %s", n, a.paintState(lifeboat.TenantState(st))))
				}
			}
			fmt.Fprintf(a.out, "%d tenants: %s\n", len(ts), strings.Join(parts, ", "))
			return nil
		},
	}
	cmd.Flags().StringVar(&f.Tier, "tier", "", "only tenants of this tier")
	cmd.Flags().StringVar(&f.Pool, "pool", "", "only tenants in this pool")
	cmd.Flags().StringVar(&f.Region, "region", "", "only tenants served from this region")
	cmd.Flags().StringSliceVar(&states, "state", nil, "only tenants in these states (available, queued, restoring, failed, read-only)")
	return cmd
}

func (a *app) tenantShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "One tenant: its tier, pool, region, epoch, state and times",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := a.openTenants(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			t, err := s.catalog.Get(ctx, args[0])
			if err != nil {
				return tenantExit(err)
			}
			if a.json() {
				return a.printJSON(t)
			}
			p := s.spec.Tenants.Pools[t.Pool]
			tier := s.spec.Tenants.Tiers[t.Tier]
			w := a.table()
			fmt.Fprintf(w, "tenant\t%s\n", a.paint(bold, t.Name))
			fmt.Fprintf(w, "tier\t%s (%s, priority %d)\n", t.Tier, tier.Strategy, tier.Priority)
			fmt.Fprintf(w, "pool\t%s (database %s, a %s per tenant)\n", t.Pool, p.Database, tenant.Isolation(p))
			fmt.Fprintf(w, "region\t%s\n", t.Region)
			fmt.Fprintf(w, "epoch\t%d\n", t.Epoch)
			state := a.paintState(t.State)
			if t.Reason != "" {
				state += ": " + t.Reason
			}
			fmt.Fprintf(w, "state\t%s\n", state)
			fmt.Fprintf(w, "created\t%s (%s)\n", stamp(t.Created), since(t.Created))
			fmt.Fprintf(w, "updated\t%s (%s)\n", stamp(t.Updated), since(t.Updated))
			if !t.Recovered.IsZero() {
				fmt.Fprintf(w, "recovered\t%s (%s)\n", stamp(t.Recovered), since(t.Recovered))
			}
			return w.Flush()
		},
	}
}

func (a *app) tenantMoveCommand() *cobra.Command {
	var pool, region string
	cmd := &cobra.Command{
		Use:   "move NAME --pool POOL [--region REGION]",
		Short: "Move one tenant to another pool of its tier (a planned move)",
		Long: `Move one tenant to another pool of its tier, e.g. to rebalance a split
placement. The old copy is renamed <name>_moved_<time> first (its clients
are disconnected, so nothing writes to it during the copy), copied with
pg_dump | pg_restore to the target pool's primary, and kept, never dropped;
then the catalog points at the new copy. If the copy fails, the old copy
gets its name back and the tenant stays where it was.

--region, if given, must be where the target pool's primary is now: a
tenant always lives where its pool takes writes.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pool == "" {
				return exit(exitSpec, "--pool is required: name the pool to move the tenant to; usage: %s", cmd.UseLine())
			}
			ctx := cmd.Context()
			s, err := a.openTenants(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			if _, ok := s.spec.Tenants.Pools[pool]; !ok {
				return exit(exitSpec, "no pool %q in %s; pools: %s", pool, a.specPath, strings.Join(lifeboat.SortedKeys(s.spec.Tenants.Pools), ", "))
			}
			r, err := tenant.Move(ctx, s.spec, s.state, s.catalog, &tenant.PostgresPools{Spec: s.spec}, args[0], pool, region, time.Now())
			if err != nil {
				if errors.Is(err, tenant.ErrRefused) {
					return &exitError{code: exitRefused, err: err}
				}
				_ = r
				return tenantExit(err)
			}
			if a.json() {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.out, "%s tenant %s moved from pool %s (%s) to pool %s (%s) at epoch %d\n  the old copy is kept as %s in pool %s; drop it when you no longer need it\n",
				a.paint(green, "✓"), a.paint(bold, r.Tenant.Name), r.From.Pool, r.From.Region, r.Tenant.Pool, r.Tenant.Region, r.Tenant.Epoch, r.Kept, r.From.Pool)
			return nil
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", "the pool to move to, one of the tenant's tier (required)")
	cmd.Flags().StringVar(&region, "region", "", "check that the target pool's primary is in this region")
	return cmd
}
