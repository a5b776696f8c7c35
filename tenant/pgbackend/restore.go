package pgbackend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
)

// markPrefix starts the comment a restored database or schema carries:
// which backup it was restored from. It is written in the restore's own
// transaction, so a database or schema with the mark is complete.
const markPrefix = "lifeboat restore "

func mark(b backup.Backup) string {
	return markPrefix + filepath.Base(b.Path) + " " + b.Checksum
}

// Restore restores name into pool's copy in region from its latest backup
// shipped there, after checking the backup's checksum. The data is loaded
// in one transaction that ends by marking the database (or schema) with
// the backup it came from, so a restore cut short leaves nothing (schema)
// or an empty unmarked database, which the next attempt drops and redoes;
// a tenant already marked with this backup is done.
func (b *Backend) Restore(ctx context.Context, pool, region, name string) error {
	if err := tenant.ValidName(name); err != nil {
		return lifeboat.Permanent(OpRestore, name, err)
	}
	dir := b.cfg.Backups[region]
	if dir == "" {
		return lifeboat.Permanent(OpRestore, name, fmt.Errorf("no backup directory configured for region %s, so tenant %s cannot be restored there; configure where backups are shipped to %s", region, name, region))
	}
	bk, err := backup.NewStore(dir).Latest(name)
	if err != nil {
		return err
	}
	if err := backup.Verify(bk); err != nil {
		return fmt.Errorf("refusing to restore tenant %s into pool %s in %s: %w", name, pool, region, err)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RestoreTimeout)
	defer cancel()
	c, p, u, err := b.conn(ctx, OpRestore, pool, region)
	if err != nil {
		return err
	}
	schema := tenant.Isolation(p) == lifeboat.IsolationSchema
	where := fmt.Sprintf("pool %s in %s", pool, region)
	id := pgx.Identifier{name}.Sanitize()
	want := mark(bk)

	var have *string
	var exists bool
	q := `SELECT true, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1`
	if schema {
		q = `SELECT true, obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1`
	}
	if err := c.QueryRow(ctx, q, name).Scan(&exists, &have); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return classify(OpRestore, name, fmt.Errorf("%s: looking for tenant %s: %w", where, name, err))
	}
	if exists {
		switch {
		case have != nil && *have == want:
			return nil // restored from this backup already
		case have != nil && strings.HasPrefix(*have, markPrefix):
			return lifeboat.Permanent(OpRestore, name, fmt.Errorf("%s already holds tenant %s restored from another backup (%s), and its latest is %s: it may hold changes made since; rename or drop it there, then retry",
				where, name, strings.TrimPrefix(*have, markPrefix), filepath.Base(bk.Path)))
		}
		// Unmarked: an earlier attempt of ours cut short, unless it holds
		// data (then it is someone else's and is left alone).
		if err := b.dropUnmarked(ctx, c, u, schema, name, where); err != nil {
			return err
		}
	}
	if !schema {
		if _, err := c.Exec(ctx, `CREATE DATABASE `+id); err != nil {
			return classify(OpRestore, name, fmt.Errorf("%s: creating database %s: %w", where, name, err))
		}
	}
	target := u
	comment := `COMMENT ON SCHEMA ` + id + ` IS ` + literal(want)
	if !schema {
		target = backup.WithDB(u, name)
		comment = `COMMENT ON DATABASE ` + id + ` IS ` + literal(want)
	}
	if err := b.load(ctx, bk.Path, target, comment); err != nil {
		err = fmt.Errorf("%s: restoring tenant %s from %s: %w", where, name, bk.Path, err)
		if ctx.Err() != nil {
			return lifeboat.Transient(OpRestore, name, err)
		}
		return lifeboat.Permanent(OpRestore, name, fmt.Errorf("%w; the partial copy is dropped by the next attempt", err))
	}
	return nil
}

// dropUnmarked removes an unmarked, empty copy of a tenant.
func (b *Backend) dropUnmarked(ctx context.Context, c *pgxpool.Pool, u string, schema bool, name, where string) error {
	id := pgx.Identifier{name}.Sanitize()
	var rels int
	if schema {
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE n.nspname = $1`, name).Scan(&rels); err != nil {
			return classify(OpRestore, name, err)
		}
	} else {
		tc, err := pgx.Connect(ctx, backup.WithDB(u, name))
		if err != nil {
			return classify(OpRestore, name, fmt.Errorf("%s: inspecting the unfinished copy of %s: %w", where, name, err))
		}
		err = tc.QueryRow(ctx, `SELECT count(*) FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`).Scan(&rels)
		tc.Close(context.WithoutCancel(ctx))
		if err != nil {
			return classify(OpRestore, name, err)
		}
	}
	if rels > 0 {
		what := map[bool]string{true: "schema", false: "database"}[schema]
		return lifeboat.Permanent(OpRestore, name, fmt.Errorf("%s already has a %s %s holding %d relations that Lifeboat did not restore; rename or drop it there, then retry", where, what, name, rels))
	}
	var err error
	if schema {
		_, err = c.Exec(ctx, `DROP SCHEMA IF EXISTS `+id+` CASCADE`)
	} else {
		_, err = c.Exec(ctx, `DROP DATABASE IF EXISTS `+id+` WITH (FORCE)`)
	}
	if err != nil {
		return classify(OpRestore, name, fmt.Errorf("%s: dropping the unfinished copy of %s: %w", where, name, err))
	}
	return nil
}

// load runs pg_restore of file as SQL into psql, in one transaction that
// ends with the statement last and commits only if pg_restore finished:
// if it fails or is cut short, psql reaches the end of its input without
// COMMIT, and PostgreSQL rolls everything back.
func (b *Backend) load(ctx context.Context, file, target, last string) error {
	rs := exec.CommandContext(ctx, backup.Tool(b.cfg.BinDir, "pg_restore"), "--no-owner", "--no-privileges", "-f", "-", file)
	return b.loadFrom(ctx, rs, target, last)
}

// loadFrom is load with any producer of SQL text (pg_restore -f -, or
// pg_dump in plain format for a failback's copy).
func (b *Backend) loadFrom(ctx context.Context, rs *exec.Cmd, target, last string) error {
	ps := exec.CommandContext(ctx, backup.Tool(b.cfg.BinDir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target)
	out, err := rs.StdoutPipe()
	if err != nil {
		return err
	}
	var re, pe bytes.Buffer
	rs.Stderr = &re
	ps.Stderr, ps.Stdout = &pe, io.Discard
	if err := rs.Start(); err != nil {
		return err
	}
	var rerr error
	tail := &lazyReader{open: func() io.Reader {
		if rerr = rs.Wait(); rerr != nil {
			return strings.NewReader("")
		}
		return strings.NewReader("\n" + last + ";\nCOMMIT;\n")
	}}
	ps.Stdin = io.MultiReader(strings.NewReader("BEGIN;\n"), out, tail)
	perr := ps.Run()
	if !tail.opened {
		_ = rs.Process.Kill()
		rerr = rs.Wait()
	}
	if rerr != nil {
		return fmt.Errorf("%s: %v: %s (nothing was committed)", filepath.Base(rs.Path), rerr, strings.TrimSpace(re.String()))
	}
	if perr != nil {
		return fmt.Errorf("psql: %v: %s", perr, strings.TrimSpace(pe.String()))
	}
	return nil
}

// lazyReader reads from what open returns, calling it at the first read:
// after the readers before it in a MultiReader are exhausted.
type lazyReader struct {
	open   func() io.Reader
	r      io.Reader
	opened bool
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if !l.opened {
		l.opened, l.r = true, l.open()
	}
	return l.r.Read(p)
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
