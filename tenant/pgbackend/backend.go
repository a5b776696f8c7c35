// Package pgbackend is tenant/recovery's Backend on real PostgreSQL pools,
// reached at the endpoints the spec gives each pool's database in the
// target region: it checks a promoted pool's tenants answer, restores
// geo-restore tenants from the backups shipped to that region (package
// tenant/backup), creates DR pools through a PoolProvisioner, and raises a
// pool's connection limit through the gate.
package pgbackend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
	"github.com/lifeboat-dr/lifeboat/tenant/recovery"
)

// Ops of this package's errors.
const (
	OpMakeAvailable lifeboat.Op = "tenant.make-available"
	OpRestore       lifeboat.Op = "tenant.restore"
	OpCreatePool    lifeboat.Op = "tenant.create-pool"
	OpCapacity      lifeboat.Op = "tenant.raise-capacity"
)

// CapacitySetter sets a pool's connection limit in a region: the gate's
// SetCapacity.
type CapacitySetter interface {
	SetCapacity(pool, region string, n int)
}

// Config is what the backend needs.
type Config struct {
	Spec *lifeboat.Spec
	// Backups are the backup directories by region: where backups of
	// tenants are shipped to that region (the same as backup.Config.Dirs).
	Backups map[string]string
	// Provisioner creates a DR pool (CreatePool); nil: CreatePool fails
	// with a permanent error.
	Provisioner PoolProvisioner
	// Capacity receives RaiseCapacity; nil: there is no gate, nothing to
	// raise.
	Capacity CapacitySetter
	// Timeout bounds each connection and statement; default 30s. A restore
	// is bounded by RestoreTimeout; default 1h.
	Timeout, RestoreTimeout time.Duration
	// Probes is how many tenant databases MakeAvailable connects to at
	// once per batch (isolation database); default 5, so 4 batches at
	// once open 20 connections, well under max_connections.
	Probes int
	// BinDir holds pg_restore and psql; default tenant.BinDir.
	BinDir string
	Log    *slog.Logger
}

// DefaultConfig returns the defaults; set Spec, Backups, Provisioner and
// Capacity.
func DefaultConfig() Config {
	return Config{Timeout: 30 * time.Second, RestoreTimeout: time.Hour, Probes: 5, BinDir: tenant.BinDir}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.RestoreTimeout == 0 {
		c.RestoreTimeout = d.RestoreTimeout
	}
	if c.Probes == 0 {
		c.Probes = d.Probes
	}
	if c.BinDir == "" {
		c.BinDir = d.BinDir
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// ValidateConfig says what is wrong with c (a permanent error).
func ValidateConfig(c Config) error {
	c = c.withDefaults()
	var problems []string
	if c.Spec == nil || c.Spec.Tenants == nil {
		problems = append(problems, "the spec has no tenants section")
	}
	if c.Timeout < 0 || c.RestoreTimeout < 0 {
		problems = append(problems, "timeouts must be positive")
	}
	if c.Probes < 1 {
		problems = append(problems, fmt.Sprintf("probes %d must be at least 1", c.Probes))
	}
	if len(problems) > 0 {
		return lifeboat.Permanent(OpMakeAvailable, "", fmt.Errorf("invalid tenant backend config: %s", strings.Join(problems, "; ")))
	}
	return nil
}

// Backend implements recovery.Backend on PostgreSQL.
type Backend struct {
	cfg Config

	mu    sync.Mutex
	admin map[string]*pgxpool.Pool // by pool/region: the pool database's connections
}

var _ recovery.Backend = (*Backend)(nil)

// New checks cfg and returns a backend. Close it to release its
// connections.
func New(cfg Config) (*Backend, error) {
	cfg = cfg.withDefaults()
	if err := ValidateConfig(cfg); err != nil {
		return nil, err
	}
	return &Backend{cfg: cfg, admin: map[string]*pgxpool.Pool{}}, nil
}

// Close closes the backend's connections.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, p := range b.admin {
		p.Close()
		delete(b.admin, k)
	}
}

// conn returns a connection pool to the pool database of pool in region.
func (b *Backend) conn(ctx context.Context, op lifeboat.Op, pool, region string) (*pgxpool.Pool, lifeboat.Pool, string, error) {
	p, u, err := backup.PoolURL(b.cfg.Spec, pool, region)
	if err != nil {
		return nil, p, "", err
	}
	key := pool + "/" + region
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.admin[key]; c != nil {
		return c, p, u, nil
	}
	pc, err := pgxpool.ParseConfig(u)
	if err != nil {
		return nil, p, u, lifeboat.Permanent(op, pool, fmt.Errorf("pool %s's endpoint in %s is not a valid URL: %w", pool, region, err))
	}
	pc.MaxConns = 8
	pc.ConnConfig.ConnectTimeout = b.cfg.Timeout
	c, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, p, u, classify(op, pool, err)
	}
	b.admin[key] = c
	return c, p, u, nil
}

// forget drops a cached connection pool (after a pool was re-created).
func (b *Backend) forget(pool, region string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.admin[pool+"/"+region]; c != nil {
		c.Close()
		delete(b.admin, pool+"/"+region)
	}
}

// MakeAvailable checks that every tenant of the batch answers on pool's
// promoted copy in region, and allows connections to tenant databases
// that had them disallowed (a failback fences them so). Isolation
// database: one connection per tenant database, Probes at once; isolation
// schema: one query for the whole batch.
func (b *Backend) MakeAvailable(ctx context.Context, pool, region string, names []string) error {
	for _, n := range names {
		if err := tenant.ValidName(n); err != nil {
			return lifeboat.Permanent(OpMakeAvailable, n, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	c, p, u, err := b.conn(ctx, OpMakeAvailable, pool, region)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("pool %s in %s", pool, region)
	if tenant.Isolation(p) == lifeboat.IsolationSchema {
		var inRecovery bool
		var found []string
		err := c.QueryRow(ctx, `SELECT pg_is_in_recovery(), array(SELECT nspname::text FROM pg_namespace WHERE nspname = ANY($1))`, names).Scan(&inRecovery, &found)
		if err != nil {
			return classify(OpMakeAvailable, pool, fmt.Errorf("%s: checking the batch's schemas: %w", where, err))
		}
		if inRecovery {
			return notPromoted(pool, region)
		}
		return missing(pool, region, "schemas", names, found)
	}
	var inRecovery bool
	var found, closed []string
	err = c.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		array(SELECT datname::text FROM pg_database WHERE datname = ANY($1)),
		array(SELECT datname::text FROM pg_database WHERE datname = ANY($1) AND NOT datallowconn)`, names).Scan(&inRecovery, &found, &closed)
	if err != nil {
		return classify(OpMakeAvailable, pool, fmt.Errorf("%s: checking the batch's databases: %w", where, err))
	}
	if inRecovery {
		return notPromoted(pool, region)
	}
	if err := missing(pool, region, "databases", names, found); err != nil {
		return err
	}
	for _, n := range closed {
		if _, err := c.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{n}.Sanitize()+` ALLOW_CONNECTIONS true`); err != nil {
			return classify(OpMakeAvailable, n, fmt.Errorf("%s: allowing connections to tenant %s again: %w", where, n, err))
		}
	}
	// Each tenant database must take a connection: what its users will do.
	sem := make(chan struct{}, b.cfg.Probes)
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for k, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tc, err := pgx.Connect(ctx, backup.WithDB(u, n))
			if err == nil {
				_, err = tc.Exec(ctx, `SELECT 1`)
				tc.Close(context.WithoutCancel(ctx))
			}
			if err != nil {
				errs[k] = fmt.Errorf("tenant %s: %w", n, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return classify(OpMakeAvailable, pool, fmt.Errorf("%s: tenant databases do not answer after promotion: %w", where, err))
	}
	return nil
}

func notPromoted(pool, region string) error {
	return lifeboat.Transient(OpMakeAvailable, pool, fmt.Errorf("pool %s in %s is still a standby (pg_is_in_recovery): it was not promoted yet, or the promotion is not finished; the batch is retried", pool, region))
}

func missing(pool, region, what string, names, found []string) error {
	have := map[string]bool{}
	for _, f := range found {
		have[f] = true
	}
	var gone []string
	for _, n := range names {
		if !have[n] {
			gone = append(gone, n)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return lifeboat.Permanent(OpMakeAvailable, pool, fmt.Errorf("pool %s in %s has no %s for tenants %s: they were not replicated there (created after the standby stopped streaming?); restore them by hand, then lifeboat tenant move",
		pool, region, what, strings.Join(gone, ", ")))
}

// RaiseCapacity sets pool's connection limit in region to n at the gate.
func (b *Backend) RaiseCapacity(ctx context.Context, pool, region string, n int) error {
	if b.cfg.Capacity == nil {
		b.cfg.Log.Info("no gate to raise the capacity of", "pool", pool, "region", region, "capacity", n)
		return nil
	}
	b.cfg.Capacity.SetCapacity(pool, region, n)
	return nil
}

// classify marks err retryable or not, as package tenant does; a
// cancelled restore may be done again.
func classify(op lifeboat.Op, resource string, err error) error {
	if errors.Is(err, context.Canceled) {
		var le *lifeboat.Error
		if !errors.As(err, &le) {
			return lifeboat.Transient(op, resource, err)
		}
	}
	return tenant.Classify(op, resource, err)
}

func retryable(err error) bool { return tenant.Retryable(err) || errors.Is(err, context.Canceled) }
