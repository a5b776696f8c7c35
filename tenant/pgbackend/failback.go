package pgbackend

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
	"net/url"
	"strconv"
)

// Ops of the failback's errors.
const (
	OpReadOnly   lifeboat.Op = "tenant.read-only"
	OpChanged    lifeboat.Op = "tenant.changed"
	OpCopyBack   lifeboat.Op = "tenant.copy-back"
	OpDeletePool lifeboat.Op = "tenant.delete-pool"
)

// What a provisioner can also do for a failback, each optional, so that a
// provisioner offers what it has: make the DR copy it created refuse every
// write (PoolSealer), tell whether the copy still exists (PoolTracker),
// delete it (PoolRemover). A ReadOnly or Remove error wrapping
// errors.ErrUnsupported means "not for this pool" (SpecCommands: a pool
// without that command): the Backend falls back as if it were absent.
type (
	PoolSealer interface {
		ReadOnly(ctx context.Context, t PoolTarget) error
	}
	PoolTracker interface {
		Provisioned(t PoolTarget) bool
	}
	PoolRemover interface {
		Remove(ctx context.Context, t PoolTarget) error
	}
)

// PoolRetirer does all three; Postgres (the lab's) implements it.
type PoolRetirer interface {
	PoolSealer
	PoolTracker
	PoolRemover
}

var _ PoolRetirer = (*Postgres)(nil)

// failbackPrefix starts the comment a tenant copied back home carries; it
// is written in the copy's own transaction, so a copy with it is complete.
const failbackPrefix = "lifeboat failback "

func (b *Backend) target(pool, region string) (PoolTarget, error) {
	p, u, err := backup.PoolURL(b.cfg.Spec, pool, region)
	if err != nil {
		return PoolTarget{}, err
	}
	return PoolTarget{Pool: pool, Region: region, Endpoint: u, Isolation: tenant.Isolation(p)}, nil
}

// SetReadOnly makes pool's copy in region refuse writes. With a provisioner
// that can (PoolSealer: the lab's restarts the cluster as a standby with no
// primary, a spec's provision.read-only runs the user's command),
// PostgreSQL then refuses every write, a superuser's too. Otherwise each
// database of the pool gets default_transaction_read_only and its
// sessions are ended, which a client can still override with SET: the
// log says so.
func (b *Backend) SetReadOnly(ctx context.Context, pool, region string) error {
	t, err := b.target(pool, region)
	if err != nil {
		return err
	}
	if r, ok := b.cfg.Provisioner.(PoolSealer); ok {
		err := r.ReadOnly(ctx, t)
		if err == nil {
			b.forget(pool, region)
			return nil
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			b.forget(pool, region)
			return lifeboat.Transient(OpReadOnly, pool, fmt.Errorf("making pool %s in %s read-only: %w", pool, region, err))
		}
	}
	c, _, _, err := b.conn(ctx, OpReadOnly, pool, region)
	if err != nil {
		return err
	}
	rows, err := c.Query(ctx, `SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND datname <> 'postgres'`)
	if err != nil {
		return classify(OpReadOnly, pool, err)
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return classify(OpReadOnly, pool, err)
	}
	for _, db := range dbs {
		if _, err := c.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` SET default_transaction_read_only = on`); err != nil {
			return classify(OpReadOnly, pool, fmt.Errorf("pool %s in %s: making database %s read-only: %w", pool, region, db, err))
		}
	}
	if _, err := c.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY($1) AND pid <> pg_backend_pid()`, dbs); err != nil {
		return classify(OpReadOnly, pool, err)
	}
	b.cfg.Log.Warn("DR pool made read-only by default_transaction_read_only only: a client may still SET it off and write, and such a write made after the comparison would not be copied back; add tenants.pools.<pool>.provision.read-only (a command that makes the copy refuse every write) to the spec",
		"pool", pool, "region", region)
	return nil
}

// HasPool reports whether pool's copy in region exists: the provisioner
// says so when it can tell (PoolTracker); otherwise the copy's endpoint is
// asked, and a server that answers there (even refusing the login) is the
// copy. Saying "no" for a copy that exists would let the failback record
// its tenants home unchanged and drop what was written there.
func (b *Backend) HasPool(ctx context.Context, pool, region string) (bool, error) {
	t, err := b.target(pool, region)
	if err != nil {
		return false, err
	}
	if r, ok := b.cfg.Provisioner.(PoolTracker); ok {
		return r.Provisioned(t), nil
	}
	up, err := answers(ctx, t.Endpoint)
	if err != nil {
		return false, lifeboat.Transient(OpDeletePool, pool, fmt.Errorf("asking whether pool %s has a copy in %s: %w", pool, region, err))
	}
	return up, nil
}

// DeletePool removes pool's copy in region through the provisioner
// (PoolRemover). A provisioner that cannot (none, or a pool without
// provision.delete) gets a permanent error wrapping errors.ErrUnsupported
// that names the copy to delete by hand: the failback leaves the copy in
// place then, since every tenant is home and nothing is lost by keeping it.
func (b *Backend) DeletePool(ctx context.Context, pool, region string) error {
	t, err := b.target(pool, region)
	if err != nil {
		return err
	}
	left := func(why error) error {
		return lifeboat.Permanent(OpDeletePool, pool, fmt.Errorf("pool %s's DR copy in %s (at %s) was not deleted: %w; its tenants are all back home, so delete that copy by hand, or add tenants.pools.%s.provision.delete to the spec for the next failback",
			pool, region, redactURL(t.Endpoint), why, pool))
	}
	r, ok := b.cfg.Provisioner.(PoolRemover)
	if !ok {
		return left(fmt.Errorf("the pool provisioner cannot delete pools: %w", errors.ErrUnsupported))
	}
	b.forget(pool, region)
	if err := r.Remove(ctx, t); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			return left(err)
		}
		return lifeboat.Transient(OpDeletePool, pool, fmt.Errorf("deleting pool %s in %s: %w", pool, region, err))
	}
	return nil
}

// describe returns whether name exists in the pool and its comment.
func describe(ctx context.Context, c *pgxpool.Pool, schema bool, name string) (bool, string, error) {
	q := `SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1`
	if schema {
		q = `SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1`
	}
	var have *string
	err := c.QueryRow(ctx, q, name).Scan(&have)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	if have == nil {
		return true, "", nil
	}
	return true, *have, nil
}

// HasTenant reports whether tenant name has a copy (its schema or
// database) in pool's copy in region.
func (b *Backend) HasTenant(ctx context.Context, pool, region, name string) (bool, error) {
	c, p, _, err := b.conn(ctx, OpChanged, pool, region)
	if err != nil {
		return false, err
	}
	ok, _, err := describe(ctx, c, tenant.Isolation(p) == lifeboat.IsolationSchema, name)
	if err != nil {
		return false, classify(OpChanged, name, err)
	}
	return ok, nil
}

// Changed reports whether tenant name's copy in pool's DR copy (region)
// differs from the backup it was restored from. Both sides are turned
// into SQL text (pg_restore -f - of the backup; pg_dump of the copy, same
// flags as the backup's) and compared after dropping comments, the
// restore's mark and pg_dump's per-run \restrict keys, with each table's
// rows sorted: any row inserted, updated or deleted, and any DDL, shows.
// Statistics counters (pg_stat_user_tables) are not used: the restore's
// own COPY counts as inserts and a crash resets them. The comparison errs
// towards "changed" (a copy back that was not needed), never the other
// way. A copy that is missing or unmarked (a restore that never finished)
// held no writes: unchanged, unless it holds tables Lifeboat did not
// restore.
func (b *Backend) Changed(ctx context.Context, pool, region, name string) (bool, string, error) {
	c, p, u, err := b.conn(ctx, OpChanged, pool, region)
	if err != nil {
		return false, "", err
	}
	schema := tenant.Isolation(p) == lifeboat.IsolationSchema
	exists, comment, err := describe(ctx, c, schema, name)
	if err != nil {
		return false, "", classify(OpChanged, name, err)
	}
	if !exists {
		return false, "no copy in the DR pool (never restored)", nil
	}
	if !strings.HasPrefix(comment, markPrefix) {
		if err := b.dropUnmarkedCheck(ctx, c, u, schema, name); err != nil {
			return true, "a copy Lifeboat did not restore", nil
		}
		return false, "an unfinished restore (no rows were served)", nil
	}
	file, _, _ := strings.Cut(strings.TrimPrefix(comment, markPrefix), " ")
	path := filepath.Join(b.cfg.Backups[region], name, file)
	if _, err := os.Stat(path); err != nil {
		return true, fmt.Sprintf("its backup %s is gone: copied back to be safe", path), nil
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.RestoreTimeout)
	defer cancel()
	want, err := sqlText(exec.CommandContext(cctx, backup.Tool(b.cfg.BinDir, "pg_restore"), "--no-owner", "--no-privileges", "-f", "-", path))
	if err != nil {
		return false, "", lifeboat.Transient(OpChanged, name, fmt.Errorf("reading backup %s: %w", path, err))
	}
	args := []string{"--no-owner", "--no-privileges"}
	if schema {
		args = append(args, "-n", pgx.Identifier{name}.Sanitize(), "-d", u)
	} else {
		args = append(args, "-d", backup.WithDB(u, name))
	}
	have, err := sqlText(exec.CommandContext(cctx, backup.Tool(b.cfg.BinDir, "pg_dump"), args...))
	if err != nil {
		return false, "", lifeboat.Transient(OpChanged, name, fmt.Errorf("dumping tenant %s from pool %s in %s: %w", name, pool, region, err))
	}
	if slices.Equal(want, have) {
		return false, "same as its backup " + file, nil
	}
	return true, "differs from its backup " + file, nil
}

// dropUnmarkedCheck returns an error when an unmarked copy holds relations.
func (b *Backend) dropUnmarkedCheck(ctx context.Context, c *pgxpool.Pool, u string, schema bool, name string) error {
	var rels int
	if schema {
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE n.nspname = $1`, name).Scan(&rels); err != nil {
			return err
		}
	} else {
		tc, err := pgx.Connect(ctx, backup.WithDB(u, name))
		if err != nil {
			return err
		}
		defer tc.Close(context.WithoutCancel(ctx))
		if err := tc.QueryRow(ctx, `SELECT count(*) FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`).Scan(&rels); err != nil {
			return err
		}
	}
	if rels > 0 {
		return fmt.Errorf("%d relations", rels)
	}
	return nil
}

// sqlText runs cmd and returns its SQL output normalized for comparison.
func sqlText(cmd *exec.Cmd) ([]string, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %v: %s", filepath.Base(cmd.Path), err, strings.TrimSpace(errb.String()))
	}
	var lines, block []string
	inCopy := false
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for sc.Scan() {
		l := sc.Text()
		if inCopy {
			if l == `\.` {
				slices.Sort(block)
				lines = append(append(lines, block...), l)
				block, inCopy = nil, false
				continue
			}
			block = append(block, l)
			continue
		}
		switch {
		case l == "", strings.HasPrefix(l, "--"), strings.HasPrefix(l, `\restrict`), strings.HasPrefix(l, `\unrestrict`),
			strings.HasPrefix(l, "COMMENT ON SCHEMA "), strings.HasPrefix(l, "COMMENT ON DATABASE "):
			continue
		case strings.HasPrefix(l, "COPY ") && strings.HasSuffix(l, "FROM stdin;"):
			inCopy = true
		}
		lines = append(lines, l)
	}
	return lines, sc.Err()
}

// CopyBack copies tenant name from pool's copy in from (the DR copy, read
// only) to its copy in to (home), keeping the home copy renamed kept,
// never dropped. It can be cut short anywhere and run again:
//   - a home copy marked as copied back: done;
//   - the home copy not yet renamed: renamed to kept (a database's
//     sessions are ended first);
//   - kept there and an unmarked copy of name: our own copy cut short,
//     dropped and redone (the home copy is kept, untouched).
//
// The copy is pg_dump (plain) into psql in one transaction that ends by
// marking the copy, so a schema copy is all or nothing; a database copy
// can leave an empty unmarked database, which the next attempt drops.
func (b *Backend) CopyBack(ctx context.Context, pool, from, to, name, kept string) error {
	if err := tenant.ValidName(name); err != nil {
		return lifeboat.Permanent(OpCopyBack, name, err)
	}
	if err := tenant.ValidName(kept); err != nil {
		return lifeboat.Permanent(OpCopyBack, name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RestoreTimeout)
	defer cancel()
	src, p, srcURL, err := b.conn(ctx, OpCopyBack, pool, from)
	if err != nil {
		return err
	}
	dst, _, dstURL, err := b.conn(ctx, OpCopyBack, pool, to)
	if err != nil {
		return err
	}
	schema := tenant.Isolation(p) == lifeboat.IsolationSchema
	what := map[bool]string{true: "schema", false: "database"}[schema]
	id, keptID := pgx.Identifier{name}.Sanitize(), pgx.Identifier{kept}.Sanitize()
	want := failbackPrefix + "from " + pool + " in " + from
	where := fmt.Sprintf("pool %s in %s", pool, to)

	hasName, comment, err := describe(ctx, dst, schema, name)
	if err != nil {
		return classify(OpCopyBack, name, err)
	}
	if hasName && comment == want {
		return nil
	}
	hasKept, _, err := describe(ctx, dst, schema, kept)
	if err != nil {
		return classify(OpCopyBack, name, err)
	}
	switch {
	case hasName && !hasKept:
		if schema {
			_, err = dst.Exec(ctx, `ALTER SCHEMA `+id+` RENAME TO `+keptID)
		} else {
			err = tenant.RenameDatabase(ctx, dst, name, kept)
		}
		if err != nil {
			return classify(OpCopyBack, name, fmt.Errorf("%s: keeping the home copy of %s as %s: %w", where, name, kept, err))
		}
	case hasName && hasKept:
		// The home copy is kept already: this unmarked one is our copy
		// cut short.
		if schema {
			_, err = dst.Exec(ctx, `DROP SCHEMA `+id+` CASCADE`)
		} else {
			_, err = dst.Exec(ctx, `DROP DATABASE `+id+` WITH (FORCE)`)
		}
		if err != nil {
			return classify(OpCopyBack, name, fmt.Errorf("%s: dropping an unfinished copy back of %s: %w", where, name, err))
		}
	}
	if !schema && (hasName || hasKept) {
		// A rename cut off after the rename but before connections were
		// allowed again leaves the kept copy closed: open it on every
		// attempt (idempotent).
		if _, err := dst.Exec(ctx, `ALTER DATABASE `+keptID+` ALLOW_CONNECTIONS true`); err != nil {
			return classify(OpCopyBack, name, fmt.Errorf("%s: opening the kept home copy %s again: %w", where, kept, err))
		}
	}
	exists, _, err := describe(ctx, src, schema, name)
	if err != nil {
		return classify(OpCopyBack, name, err)
	}
	if !exists {
		return lifeboat.Permanent(OpCopyBack, name, fmt.Errorf("pool %s in %s has no %s %s to copy back; its home copy is kept as %s in %s: rename it back if the tenant should keep it", pool, from, what, name, kept, where))
	}
	target := dstURL
	args := []string{"--no-owner", "--no-privileges"}
	last := `COMMENT ON SCHEMA ` + id + ` IS ` + literal(want)
	if schema {
		args = append(args, "-n", id, "-d", srcURL)
	} else {
		if _, err := dst.Exec(ctx, `CREATE DATABASE `+id); err != nil {
			return classify(OpCopyBack, name, fmt.Errorf("%s: creating database %s: %w", where, name, err))
		}
		target = backup.WithDB(dstURL, name)
		args = append(args, "-d", backup.WithDB(srcURL, name))
		last = `COMMENT ON DATABASE ` + id + ` IS ` + literal(want)
	}
	dump := exec.CommandContext(ctx, backup.Tool(b.cfg.BinDir, "pg_dump"), args...)
	if err := b.loadFrom(ctx, dump, target, last); err != nil {
		err = fmt.Errorf("%s: copying tenant %s back from %s: %w; the home copy is kept as %s, and the next attempt redoes the copy", where, name, from, err, kept)
		return lifeboat.Transient(OpCopyBack, name, err)
	}
	return nil
}

// ReadOnly restarts the cluster provisioned for t as a standby with no
// primary: it serves reads and refuses every write. Idempotent.
func (p *Postgres) ReadOnly(ctx context.Context, t PoolTarget) error {
	inst := p.instance(t)
	if inst == nil {
		return fmt.Errorf("no cluster of pool %s in %s under %s", t.Pool, t.Region, p.Dir)
	}
	if inst.IsStandbyConfigured() {
		return inst.Start(ctx)
	}
	if err := inst.Stop(ctx, "fast"); err != nil {
		return err
	}
	if err := inst.Follow(""); err != nil {
		return err
	}
	return inst.Start(ctx)
}

// Provisioned reports whether t's data directory exists.
func (p *Postgres) Provisioned(t PoolTarget) bool {
	_, err := os.Stat(filepath.Join(p.Dir, t.Pool+"-"+t.Region))
	return err == nil
}

// Remove stops t's cluster (by its PID file) and removes its directory.
func (p *Postgres) Remove(ctx context.Context, t PoolTarget) error {
	if inst := p.instance(t); inst != nil {
		if err := inst.Stop(ctx, "fast"); err != nil {
			return err
		}
	}
	p.mu.Lock()
	delete(p.instances, t.Pool+"-"+t.Region)
	p.mu.Unlock()
	dir := filepath.Join(p.Dir, t.Pool+"-"+t.Region)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	_ = os.Remove(dir + ".log")
	return nil
}

// instance is t's cluster: the one provisioned by this process, or one
// found on disk (a process that restarted mid-failback).
func (p *Postgres) instance(t PoolTarget) *postgres.Instance {
	name := t.Pool + "-" + t.Region
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := p.instances[name]; i != nil {
		return i
	}
	dir := filepath.Join(p.Dir, name)
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		return nil
	}
	u, err := url.Parse(t.Endpoint)
	if err != nil {
		return nil
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return nil
	}
	bin := p.BinDir
	if bin == "" {
		bin = postgres.DefaultBinDir
	}
	if p.instances == nil {
		p.instances = map[string]*postgres.Instance{}
	}
	i := &postgres.Instance{BinDir: bin, DataDir: dir, Host: u.Hostname(), Port: port, Name: name}
	p.instances[name] = i
	return i
}
