package tenant

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// Copier copies one tenant's data between pools for a planned move. The
// old copy is renamed to kept first (so nothing writes to it during the
// copy) and is kept, never dropped.
type Copier interface {
	CopyTenant(ctx context.Context, name string, from, to Placement, kept string) error
	// UncopyTenant rolls a copy back: the old copy under its name again,
	// the new one removed (a move whose catalog record failed).
	UncopyTenant(ctx context.Context, name string, from, to Placement, kept string) error
}

// KeptName is what the old copy of a moved tenant is renamed to:
// <name>_moved_<UTC time>, cut to PostgreSQL's 63 bytes.
func KeptName(name string, now time.Time) string {
	suffix := "_moved_" + now.UTC().Format("20060102150405")
	if len(name)+len(suffix) > MaxNameLen {
		name = name[:MaxNameLen-len(suffix)]
	}
	return name + suffix
}

// MoveResult says what a move did.
type MoveResult struct {
	Tenant lifeboat.Tenant `json:"tenant"`
	From   Placement       `json:"from"`
	// Kept is the name the old copy was renamed to, in From's pool.
	Kept string `json:"kept"`
}

// Move moves a tenant to another pool of its tier (a planned move, not a
// recovery): the target pool must be one of the tier's and have the same
// isolation; region, if set, must be where the target pool's primary is
// now. The old copy is renamed and kept; the catalog then points at the
// new copy, at the current epoch.
func Move(ctx context.Context, spec *lifeboat.Spec, st *lifeboat.State, cat Catalog, cp Copier, name, pool, region string, now time.Time) (MoveResult, error) {
	refuse := func(format string, a ...any) (MoveResult, error) {
		return MoveResult{}, lifeboat.Permanent(OpMove, name, fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, a...)))
	}
	mv, ok := cat.(Mover)
	if !ok {
		return refuse("this catalog cannot record moves between pools")
	}
	if spec.Tenants == nil {
		return refuse("the spec has no tenants section")
	}
	t, err := cat.Get(ctx, name)
	if err != nil {
		return MoveResult{}, err
	}
	tier, ok := spec.Tenants.Tiers[t.Tier]
	if !ok {
		return refuse("tenant %s is of tier %q, which the spec no longer has; add the tier back to move it", name, t.Tier)
	}
	pools := TierPools(tier)
	if !slices.Contains(pools, pool) {
		return refuse("pool %q is not a pool of tier %s, so its tenants' recovery would not cover it; move it to one of: %s (or add the pool to the tier in the spec)",
			pool, t.Tier, strings.Join(pools, ", "))
	}
	if pool == t.Pool {
		return refuse("tenant %s is in pool %s already", name, pool)
	}
	if t.State != lifeboat.TenantAvailable {
		return refuse("tenant %s is %s, not available: a recovery owns it; move it once 'lifeboat tenant show %s' says available", name, t.State, name)
	}
	src, dst := spec.Tenants.Pools[t.Pool], spec.Tenants.Pools[pool]
	if Isolation(src) != Isolation(dst) {
		return refuse("pool %s keeps a %s per tenant and pool %s a %s: a move copies like for like; pick a pool with %s isolation",
			t.Pool, Isolation(src), pool, Isolation(dst), Isolation(src))
	}
	fromRegion, err := PrimaryRegion(spec, st, src.Database)
	if err != nil {
		return MoveResult{}, fmt.Errorf("pool %s: %w", t.Pool, err)
	}
	toRegion, err := PrimaryRegion(spec, st, dst.Database)
	if err != nil {
		return MoveResult{}, fmt.Errorf("pool %s: %w", pool, err)
	}
	if region != "" && region != toRegion {
		return refuse("pool %s's primary is in %s now, not %s: a tenant lives where its pool takes writes; leave out --region, or move it after a switchover", pool, toRegion, region)
	}
	from := Placement{Pool: t.Pool, Region: fromRegion, Epoch: t.Epoch}
	to := Placement{Pool: pool, Region: toRegion, Epoch: st.Epoch}
	kept := KeptName(name, now)
	if err := cp.CopyTenant(ctx, name, from, to, kept); err != nil {
		return MoveResult{}, err
	}
	moved, err := mv.Move(ctx, name, pool, toRegion, st.Epoch)
	if err != nil {
		// Cut short (Ctrl-C) or the catalog failed: if the record did not
		// land, roll the copy back, so that the catalog and the data
		// agree and the tenant is reachable where it was.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if now, gerr := cat.Get(bctx, name); gerr == nil && now.Pool == pool {
			return MoveResult{Tenant: now, From: from, Kept: kept}, nil // it landed; only the answer was lost
		} else if gerr == nil {
			if uerr := cp.UncopyTenant(bctx, name, from, to, kept); uerr == nil {
				return MoveResult{}, fmt.Errorf("tenant %s: the move's catalog record failed (%w), so the copy was rolled back: the tenant stays in pool %s; move it again", name, err, t.Pool)
			}
		}
		return MoveResult{From: from, Kept: kept}, fmt.Errorf("tenant %s was copied to pool %s (the old copy is %s in pool %s) but the catalog was not updated and the copy could not be rolled back: %w; rename %s back to %s in pool %s (and drop %s in pool %s), then move again",
			name, pool, kept, t.Pool, err, kept, name, t.Pool, name, pool)
	}
	return MoveResult{Tenant: moved, From: from, Kept: kept}, nil
}

// BinDir is where pg_dump and pg_restore are looked for when they are
// not on PATH (Debian's PostgreSQL 15).
const BinDir = "/usr/lib/postgresql/15/bin"

func tool(name string) string {
	if p, err := exec.LookPath(filepath.Join(BinDir, name)); err == nil {
		return p
	}
	return name
}

// withDB returns the connection string u aimed at database db.
func withDB(u, db string) string {
	if pu, err := url.Parse(u); err == nil && (pu.Scheme == "postgres" || pu.Scheme == "postgresql") {
		pu.Path = "/" + db
		return pu.String()
	}
	return u + " dbname=" + db // key=value conninfo: the last one wins
}

// CopyTenant renames the old copy to kept, then pipes pg_dump of it into
// pg_restore on the target pool's primary. On failure the old copy is
// renamed back and the partial new copy removed (nothing ever pointed at
// it), so the tenant stays where it was.
func (p *PostgresPools) CopyTenant(ctx context.Context, name string, from, to Placement, kept string) error {
	src, srcURL, err := p.pool(from.Pool, from.Region)
	if err != nil {
		return err
	}
	_, dstURL, err := p.pool(to.Pool, to.Region)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*p.timeout())
	defer cancel()
	sc, err := pgx.Connect(ctx, srcURL)
	if err != nil {
		return classify(OpMove, name, fmt.Errorf("connecting to pool %s in %s: %w", from.Pool, from.Region, err))
	}
	defer sc.Close(context.Background())
	dc, err := pgx.Connect(ctx, dstURL)
	if err != nil {
		return classify(OpMove, name, fmt.Errorf("connecting to pool %s in %s: %w", to.Pool, to.Region, err))
	}
	defer dc.Close(context.Background())

	schema := Isolation(src) == lifeboat.IsolationSchema
	id, keptID := pgx.Identifier{name}.Sanitize(), pgx.Identifier{kept}.Sanitize()
	exists := `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`
	if schema {
		exists = `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`
	}
	var there bool
	if err := dc.QueryRow(ctx, exists, name).Scan(&there); err != nil {
		return classify(OpMove, name, err)
	}
	if there {
		what := map[bool]string{true: "schema", false: "database"}[schema]
		return lifeboat.Permanent(OpMove, name, fmt.Errorf("pool %s in %s already has a %s named %s (left over from an earlier copy?); rename or drop it there, then move again", to.Pool, to.Region, what, name))
	}

	var dump, restore []string
	if schema {
		if _, err := sc.Exec(ctx, `ALTER SCHEMA `+id+` RENAME TO `+keptID); err != nil {
			return classify(OpMove, name, fmt.Errorf("renaming schema %s to %s in pool %s: %w", name, kept, from.Pool, err))
		}
		dump = []string{"-Fc", "--no-owner", "-n", kept, "-d", srcURL}
		restore = []string{"--no-owner", "--exit-on-error", "-d", dstURL}
	} else {
		if err := RenameDatabase(ctx, sc, name, kept); err != nil {
			// Cut short, it may have closed the old copy to connections
			// or renamed it already: put it back as it was.
			p.undo(srcURL, dstURL, schema, name, kept, false)
			return classify(OpMove, name, fmt.Errorf("renaming database %s to %s in pool %s: %w", name, kept, from.Pool, err))
		}
		if _, err := dc.Exec(ctx, `CREATE DATABASE `+id); err != nil {
			p.undo(srcURL, dstURL, schema, name, kept, false)
			return classify(OpMove, name, fmt.Errorf("creating database %s in pool %s: %w", name, to.Pool, err))
		}
		dump = []string{"-Fc", "--no-owner", "-d", withDB(srcURL, kept)}
		restore = []string{"--no-owner", "--exit-on-error", "-d", withDB(dstURL, name)}
	}
	if err := pipe(ctx, dump, restore); err != nil {
		p.undo(srcURL, dstURL, schema, name, kept, true)
		return lifeboat.Permanent(OpMove, name, fmt.Errorf("copying %s from pool %s to pool %s: %w; the tenant stays in pool %s", name, from.Pool, to.Pool, err, from.Pool))
	}
	if schema {
		// The dump names the kept schema; the new copy takes the tenant's name.
		if _, err := dc.Exec(ctx, `ALTER SCHEMA `+keptID+` RENAME TO `+id); err != nil {
			p.undo(srcURL, dstURL, schema, name, kept, true)
			return classify(OpMove, name, fmt.Errorf("renaming the copied schema in pool %s: %w", to.Pool, err))
		}
	}
	return nil
}

// UncopyTenant puts the old copy back under its name and removes the new
// one.
func (p *PostgresPools) UncopyTenant(ctx context.Context, name string, from, to Placement, kept string) error {
	src, srcURL, err := p.pool(from.Pool, from.Region)
	if err != nil {
		return err
	}
	_, dstURL, err := p.pool(to.Pool, to.Region)
	if err != nil {
		return err
	}
	return p.undo(srcURL, dstURL, Isolation(src) == lifeboat.IsolationSchema, name, kept, true)
}

// undo puts the old copy back under its name, open to connections, and
// removes the partial new one. It opens its own connections: a statement
// cut short by a cancel leaves pgx's connection unusable, while the
// server may have done it. Each step is best effort (a move cut short may
// have got anywhere); the error is that of reaching the old copy.
func (p *PostgresPools) undo(srcURL, dstURL string, schema bool, name, kept string, copied bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout())
	defer cancel()
	id, keptID := pgx.Identifier{name}.Sanitize(), pgx.Identifier{kept}.Sanitize()
	if dc, err := pgx.Connect(ctx, dstURL); err == nil {
		if schema {
			if copied {
				_, _ = dc.Exec(ctx, `DROP SCHEMA IF EXISTS `+keptID+` CASCADE`)
				_, _ = dc.Exec(ctx, `DROP SCHEMA IF EXISTS `+id+` CASCADE`)
			}
		} else {
			_, _ = dc.Exec(ctx, `DROP DATABASE IF EXISTS `+id+` WITH (FORCE)`)
		}
		dc.Close(context.Background())
	}
	sc, err := pgx.Connect(ctx, srcURL)
	if err != nil {
		return classify(OpMove, name, err)
	}
	defer sc.Close(context.Background())
	if schema {
		_, _ = sc.Exec(ctx, `ALTER SCHEMA `+keptID+` RENAME TO `+id)
		return nil
	}
	if err := RenameDatabase(ctx, sc, kept, name); err != nil {
		// Not renamed yet: the old copy is name, maybe closed.
		if _, err := sc.Exec(ctx, `ALTER DATABASE `+id+` ALLOW_CONNECTIONS true`); err != nil {
			return classify(OpMove, name, err)
		}
	}
	return nil
}

// Execer runs a statement: a *pgx.Conn or a *pgxpool.Pool.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// RenameDatabase renames a database that clients may be connected to:
// no new connections, the present ones ended, then the rename (retried
// while the ended sessions are still going away).
func RenameDatabase(ctx context.Context, c Execer, from, to string) error {
	fid, tid := pgx.Identifier{from}.Sanitize(), pgx.Identifier{to}.Sanitize()
	if _, err := c.Exec(ctx, `ALTER DATABASE `+fid+` ALLOW_CONNECTIONS false`); err != nil {
		return err
	}
	for {
		if _, err := c.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, from); err != nil {
			return err
		}
		_, err := c.Exec(ctx, `ALTER DATABASE `+fid+` RENAME TO `+tid)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55006" { // object_in_use: sessions still exiting
			select {
			case <-ctx.Done():
				return err
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	_, err := c.Exec(ctx, `ALTER DATABASE `+tid+` ALLOW_CONNECTIONS true`)
	return err
}

// pipe runs pg_dump | pg_restore.
func pipe(ctx context.Context, dumpArgs, restoreArgs []string) error {
	dump := exec.CommandContext(ctx, tool("pg_dump"), dumpArgs...)
	restore := exec.CommandContext(ctx, tool("pg_restore"), restoreArgs...)
	out, err := dump.StdoutPipe()
	if err != nil {
		return err
	}
	restore.Stdin = out
	var de, re bytes.Buffer
	dump.Stderr, restore.Stderr = &de, &re
	if err := restore.Start(); err != nil {
		return err
	}
	if err := dump.Run(); err != nil {
		_ = restore.Wait()
		return fmt.Errorf("pg_dump: %v: %s", err, strings.TrimSpace(de.String()))
	}
	if err := restore.Wait(); err != nil {
		return fmt.Errorf("pg_restore: %v: %s", err, strings.TrimSpace(re.String()))
	}
	return nil
}
