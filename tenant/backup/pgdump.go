package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

// PgDump dumps tenants with pg_dump -Fc from their pool's copy in the
// tenant's region, at the endpoint the spec gives the pool's database
// there: the tenant's database (isolation database) or its schema in the
// pool's database (isolation schema).
type PgDump struct {
	Spec *lifeboat.Spec
	// BinDir holds pg_dump; default tenant.BinDir.
	BinDir string
}

var _ Dumper = (*PgDump)(nil)

// PoolURL returns the spec's pool and the URL of its copy in region.
func PoolURL(spec *lifeboat.Spec, pool, region string) (lifeboat.Pool, string, error) {
	if spec == nil || spec.Tenants == nil {
		return lifeboat.Pool{}, "", lifeboat.Permanent(OpBackup, pool, errors.New("the spec has no tenants section"))
	}
	p, ok := spec.Tenants.Pools[pool]
	if !ok {
		return p, "", lifeboat.Permanent(OpBackup, pool, fmt.Errorf("no pool %q under tenants.pools", pool))
	}
	unit, comp, _ := strings.Cut(p.Database, ".")
	db, ok := spec.Units[unit].Databases[comp]
	if !ok {
		return p, "", lifeboat.Permanent(OpBackup, pool, fmt.Errorf("pool %s names database %s, which the spec does not have", pool, p.Database))
	}
	u := db.Endpoints[region]
	if u == "" {
		return p, "", lifeboat.Permanent(OpBackup, pool, fmt.Errorf("pool %s's database %s has no endpoint for region %s; add endpoints: {%s: postgres://user@host:port/db} to it in the spec", pool, p.Database, region, region))
	}
	return p, u, nil
}

// WithDB returns the postgres:// URL u aimed at database db.
func WithDB(u, db string) string {
	if pu, err := url.Parse(u); err == nil && (pu.Scheme == "postgres" || pu.Scheme == "postgresql") {
		pu.Path = "/" + db
		pu.RawPath = ""
		return pu.String()
	}
	return u + " dbname=" + db
}

// Tool returns the path of a PostgreSQL client program in binDir (or
// tenant.BinDir), else its bare name (looked up on PATH).
func Tool(binDir, name string) string {
	if binDir == "" {
		binDir = tenant.BinDir
	}
	if p, err := exec.LookPath(filepath.Join(binDir, name)); err == nil {
		return p
	}
	return name
}

func (d *PgDump) Dump(ctx context.Context, t lifeboat.Tenant, w io.Writer) error {
	if err := tenant.ValidName(t.Name); err != nil {
		return err
	}
	p, u, err := PoolURL(d.Spec, t.Pool, t.Region)
	if err != nil {
		return err
	}
	args := []string{"-Fc", "--no-owner", "--no-privileges"}
	if tenant.Isolation(p) == lifeboat.IsolationSchema {
		// -n takes a pattern; a valid tenant name has no pattern characters.
		args = append(args, "-n", t.Name, "-d", u)
	} else {
		args = append(args, "-d", WithDB(u, t.Name))
	}
	cmd := exec.CommandContext(ctx, Tool(d.BinDir, "pg_dump"), args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		err = fmt.Errorf("pg_dump of tenant %s from pool %s in %s: %w: %s", t.Name, t.Pool, t.Region, err, msg)
		if ctx.Err() != nil || strings.Contains(msg, "connection") || strings.Contains(msg, "could not connect") {
			return lifeboat.Transient(OpBackup, t.Name, err)
		}
		return lifeboat.Permanent(OpBackup, t.Name, err)
	}
	return nil
}
