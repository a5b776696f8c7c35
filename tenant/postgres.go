package tenant

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// PostgresConfig says where the catalog lives.
type PostgresConfig struct {
	// URL is a postgres:// URL (or key=value conninfo) of the catalog
	// database's primary.
	URL string
	// Table is the catalog table, schema-qualified; default
	// lifeboat.tenants. It is created if missing.
	Table string
	// MaxConns bounds the pool of connections; default 8 (a recovery
	// writes a few batches at once).
	MaxConns int32
	// Timeout bounds each statement; default 10s.
	Timeout time.Duration
}

// DefaultPostgresConfig returns the defaults for url.
func DefaultPostgresConfig(url string) PostgresConfig {
	return PostgresConfig{URL: url, Table: "lifeboat.tenants", MaxConns: 8, Timeout: 10 * time.Second}
}

// ValidatePostgresConfig says what is wrong with c.
func ValidatePostgresConfig(c PostgresConfig) error {
	if c.URL == "" {
		return errors.New("tenant catalog: no URL; set the catalog database's endpoints in the spec")
	}
	if _, err := pgxpool.ParseConfig(c.URL); err != nil {
		return fmt.Errorf("tenant catalog: URL: %w", err)
	}
	if c.Table != "lifeboat.tenants" && !tableRE.MatchString(c.Table) {
		return fmt.Errorf("tenant catalog: table %q: write schema.table in lower-case letters, digits and underscores", c.Table)
	}
	if c.MaxConns < 1 || c.Timeout <= 0 {
		return errors.New("tenant catalog: MaxConns and Timeout must be positive")
	}
	return nil
}

// PostgresCatalog keeps the catalog in a table of the catalog database.
type PostgresCatalog struct {
	cfg  PostgresConfig
	pool *pgxpool.Pool
	q    queries
}

var (
	_ Catalog = (*PostgresCatalog)(nil)
	_ Mover   = (*PostgresCatalog)(nil)
)

type queries struct{ create, get, list, set, move string }

const columns = "name, tier, pool, region, epoch, state, reason, created, updated, recovered"

func queriesFor(table string) queries {
	return queries{
		create: `INSERT INTO ` + table + ` (` + columns + `) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`,
		get:    `SELECT ` + columns + ` FROM ` + table + ` WHERE name = $1`,
		list: `SELECT ` + columns + ` FROM ` + table + ` WHERE ($1 = '' OR tier = $1) AND ($2 = '' OR pool = $2)
			AND ($3 = '' OR region = $3) AND (cardinality($4::text[]) = 0 OR state = ANY($4)) ORDER BY name COLLATE "C"`,
		// One statement, so a batch is atomic; the epoch test is the fence.
		set: `UPDATE ` + table + ` SET
			state = CASE WHEN $2 <> '' THEN $2 ELSE state END,
			reason = CASE WHEN $2 <> '' OR $3 <> '' THEN $3 ELSE reason END,
			region = CASE WHEN $4 <> '' THEN $4 ELSE region END,
			epoch = CASE WHEN $4 <> '' THEN $5 ELSE epoch END,
			recovered = COALESCE($6, recovered),
			updated = $7
			WHERE name = ANY($1) AND ($5 = 0 OR epoch <= $5)`,
		move: `UPDATE ` + table + ` SET pool = $2, region = $3, epoch = $4, state = 'available', reason = '', updated = $5
			WHERE name = $1 AND epoch <= $4 RETURNING ` + columns,
	}
}

// OpenPostgres connects to the catalog database and creates the table if
// it is missing.
func OpenPostgres(ctx context.Context, cfg PostgresConfig) (*PostgresCatalog, error) {
	if err := ValidatePostgresConfig(cfg); err != nil {
		return nil, lifeboat.Permanent(OpOpen, "", err)
	}
	pc, _ := pgxpool.ParseConfig(cfg.URL)
	pc.MaxConns = cfg.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, classify(OpOpen, "", fmt.Errorf("connecting to the tenant catalog: %w", err))
	}
	c := &PostgresCatalog{cfg: cfg, pool: pool, q: queriesFor(cfg.Table)}
	if err := c.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return c, nil
}

func (c *PostgresCatalog) migrate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	schema, _, _ := cut(c.cfg.Table)
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		// Two processes creating the table at once would collide on the
		// catalog's unique names: one at a time.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, c.cfg.Table); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+schema+`;
			CREATE TABLE IF NOT EXISTS `+c.cfg.Table+` (
				name text PRIMARY KEY,
				tier text NOT NULL,
				pool text NOT NULL,
				region text NOT NULL,
				epoch bigint NOT NULL CHECK (epoch >= 0),
				state text NOT NULL,
				reason text NOT NULL DEFAULT '',
				created timestamptz NOT NULL,
				updated timestamptz NOT NULL,
				recovered timestamptz);
			CREATE INDEX IF NOT EXISTS tenants_pool_state ON `+c.cfg.Table+` (pool, state)`)
		return err
	})
	if err != nil {
		return classify(OpOpen, c.cfg.Table, fmt.Errorf("creating the catalog table %s: %w", c.cfg.Table, err))
	}
	return nil
}

func (c *PostgresCatalog) Create(ctx context.Context, t lifeboat.Tenant) error {
	if err := ValidName(t.Name); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	now := time.Now().UTC()
	if t.Created.IsZero() {
		t.Created = now
	}
	if t.Updated.IsZero() {
		t.Updated = t.Created
	}
	_, err := c.pool.Exec(ctx, c.q.create, t.Name, t.Tier, t.Pool, t.Region, int64(t.Epoch), string(t.State), t.Reason, t.Created, t.Updated, nullTime(t.Recovered))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return lifeboat.Permanent(OpCreate, t.Name, fmt.Errorf("%w: %s is in the catalog already (pick another name, or 'lifeboat tenant show %s')", ErrTenantExists, t.Name, t.Name))
	}
	return classify(OpCreate, t.Name, err)
}

func (c *PostgresCatalog) Get(ctx context.Context, name string) (lifeboat.Tenant, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	t, err := scan(c.pool.QueryRow(ctx, c.q.get, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, noTenant(OpGet, name)
	}
	return t, classify(OpGet, name, err)
}

func (c *PostgresCatalog) List(ctx context.Context, f Filter) ([]lifeboat.Tenant, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	states := make([]string, len(f.States))
	for i, s := range f.States {
		states[i] = string(s)
	}
	rows, err := c.pool.Query(ctx, c.q.list, f.Tier, f.Pool, f.Region, states)
	if err != nil {
		return nil, classify(OpList, "", err)
	}
	out := []lifeboat.Tenant{}
	for rows.Next() {
		t, err := scan(rows)
		if err != nil {
			rows.Close()
			return nil, classify(OpList, "", err)
		}
		out = append(out, t)
	}
	return out, classify(OpList, "", rows.Err())
}

func (c *PostgresCatalog) Set(ctx context.Context, names []string, ch lifeboat.TenantChange) (int, error) {
	if err := validChange(ch); err != nil {
		return 0, err
	}
	if len(names) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	tag, err := c.pool.Exec(ctx, c.q.set, names, string(ch.State), ch.Reason, ch.Region, int64(ch.Epoch), nullTime(ch.Recovered), time.Now().UTC())
	if err != nil {
		return 0, classify(OpSet, fmt.Sprintf("%d tenants", len(names)), err)
	}
	return int(tag.RowsAffected()), nil
}

func (c *PostgresCatalog) Move(ctx context.Context, name, pool, region string, epoch uint64) (lifeboat.Tenant, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	t, err := scan(c.pool.QueryRow(ctx, c.q.move, name, pool, region, int64(epoch), time.Now().UTC()))
	if errors.Is(err, pgx.ErrNoRows) {
		old, gerr := c.Get(ctx, name)
		if gerr != nil {
			return old, gerr
		}
		return old, lifeboat.StaleEpoch("tenant "+name, epoch, old.Epoch)
	}
	return t, classify(OpMove, name, err)
}

// Close closes the connections.
func (c *PostgresCatalog) Close() error {
	c.pool.Close()
	return nil
}

func scan(row pgx.Row) (lifeboat.Tenant, error) {
	var t lifeboat.Tenant
	var epoch int64
	var state string
	var rec *time.Time
	err := row.Scan(&t.Name, &t.Tier, &t.Pool, &t.Region, &epoch, &state, &t.Reason, &t.Created, &t.Updated, &rec)
	t.Epoch, t.State = uint64(epoch), lifeboat.TenantState(state)
	t.Created, t.Updated = t.Created.UTC(), t.Updated.UTC()
	if rec != nil {
		t.Recovered = rec.UTC()
	}
	return t, err
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// classify wraps err as retryable or not: a lost connection, a timeout, a
// server shutting down, a serialization failure or too many connections
// may pass; a bad statement, a missing table or a permission will not.
func classify(op lifeboat.Op, resource string, err error) error { return Classify(op, resource, err) }

// Classify wraps err as a lifeboat.Error, retryable when Retryable says
// so; an error that is one already is returned as it is.
func Classify(op lifeboat.Op, resource string, err error) error {
	if err == nil {
		return nil
	}
	var le *lifeboat.Error
	if errors.As(err, &le) {
		return err
	}
	if retryable(err) {
		return lifeboat.Transient(op, resource, err)
	}
	return lifeboat.Permanent(op, resource, err)
}

func retryable(err error) bool { return Retryable(err) }

// Retryable reports whether a PostgreSQL error may pass on a retry: a
// lost connection, a timeout, a server shutting down, a serialization
// failure, too many connections, a lock or an object in use.
func Retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", "40", "53", "57", "58":
			return true
		}
		return pe.Code == "55P03" || pe.Code == "55006" // lock not available, object in use
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	return errors.As(err, &ne) || errors.As(err, &ce) || pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}
