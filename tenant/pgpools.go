package tenant

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// OpenCatalog opens the spec's catalog (tenants.catalog) at the endpoint
// of the region where its primary is now, as st says.
func OpenCatalog(ctx context.Context, spec *lifeboat.Spec, st *lifeboat.State) (*PostgresCatalog, error) {
	if spec.Tenants == nil {
		return nil, lifeboat.Permanent(OpOpen, "", errors.New("the spec has no tenants section; add tenants: {catalog, pools, tiers}"))
	}
	url, _, err := Endpoint(spec, st, spec.Tenants.Catalog)
	if err != nil {
		return nil, fmt.Errorf("tenant catalog: %w", err)
	}
	return OpenPostgres(ctx, DefaultPostgresConfig(url))
}

// PostgresPools creates tenants on the pools' primaries, at the
// endpoints the spec gives each pool's database.
type PostgresPools struct {
	Spec *lifeboat.Spec
	// Timeout bounds each connection and statement; default 30s.
	Timeout time.Duration
}

var _ Pools = (*PostgresPools)(nil)

func (p *PostgresPools) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return 30 * time.Second
}

// pool returns the spec's pool and the URL of its copy in region.
func (p *PostgresPools) pool(name, region string) (lifeboat.Pool, string, error) {
	if p.Spec.Tenants == nil {
		return lifeboat.Pool{}, "", lifeboat.Permanent(OpCreate, name, errors.New("the spec has no tenants section"))
	}
	pl, ok := p.Spec.Tenants.Pools[name]
	if !ok {
		return pl, "", lifeboat.Permanent(OpCreate, name, fmt.Errorf("no pool %q under tenants.pools", name))
	}
	db, err := database(p.Spec, pl.Database)
	if err != nil {
		return pl, "", err
	}
	url := db.Endpoints[region]
	if url == "" {
		return pl, "", lifeboat.Permanent(OpCreate, name, fmt.Errorf("pool %s's database %s has no endpoint for region %s; add endpoints: {%s: postgres://user@host:port/db} to it in the spec", name, pl.Database, region, region))
	}
	return pl, url, nil
}

// Isolation is the pool's isolation with the default applied.
func Isolation(p lifeboat.Pool) lifeboat.TenantIsolation {
	if p.Isolation == "" {
		return lifeboat.IsolationDatabase
	}
	return p.Isolation
}

func (p *PostgresPools) CreateTenant(ctx context.Context, pool, region, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	pl, url, err := p.pool(pool, region)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return classify(OpCreate, name, fmt.Errorf("connecting to pool %s in %s: %w", pool, region, err))
	}
	defer conn.Close(context.Background())
	// The name passed ValidName: a plain identifier, safe to quote as is.
	ident := pgx.Identifier{name}.Sanitize()
	if Isolation(pl) == lifeboat.IsolationSchema {
		_, err = conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+ident)
	} else {
		_, err = conn.Exec(ctx, `CREATE DATABASE `+ident)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P04" { // duplicate_database: an earlier, interrupted create
			err = nil
		}
	}
	if err != nil {
		return classify(OpCreate, name, fmt.Errorf("pool %s in %s: %w", pool, region, err))
	}
	return nil
}
