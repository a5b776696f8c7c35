package pgbackend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
)

// PoolTarget is a pool copy to create.
type PoolTarget struct {
	Pool, Region string
	// Endpoint is the spec's URL of the pool's database in Region: where
	// the new copy must answer.
	Endpoint  string
	Isolation lifeboat.TenantIsolation
}

// PoolProvisioner makes a DR copy of a pool exist (a PostgreSQL cluster
// answering at the target's endpoint). It is idempotent: a copy that
// exists already is left as is (started if stopped).
type PoolProvisioner interface {
	Provision(ctx context.Context, t PoolTarget) error
}

// CreatePool makes pool's copy in region exist through the provisioner,
// waits until it answers at its endpoint, and creates the pool database
// the endpoint names if it is missing.
func (b *Backend) CreatePool(ctx context.Context, pool, region string) error {
	p, u, err := backup.PoolURL(b.cfg.Spec, pool, region)
	if err != nil {
		return err
	}
	if b.cfg.Provisioner == nil {
		return lifeboat.Permanent(OpCreatePool, pool, fmt.Errorf("no pool provisioner configured, so pool %s cannot be created in %s; configure one (SpecCommands runs the spec's tenants.pools.%s.provision.create; the lab uses its own PostgreSQL)", pool, region, pool))
	}
	if err := b.cfg.Provisioner.Provision(ctx, PoolTarget{Pool: pool, Region: region, Endpoint: u, Isolation: tenant.Isolation(p)}); err != nil {
		return fmt.Errorf("creating pool %s in %s: %w", pool, region, err)
	}
	b.forget(pool, region)
	pu, err := url.Parse(u)
	if err != nil {
		return lifeboat.Permanent(OpCreatePool, pool, fmt.Errorf("pool %s's endpoint in %s is not a URL: %w", pool, region, err))
	}
	dbname := strings.TrimPrefix(pu.Path, "/")
	if dbname == "" {
		dbname = pu.User.Username()
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	c, err := waitConnect(ctx, backup.WithDB(u, "postgres"))
	if err != nil {
		return classify(OpCreatePool, pool, fmt.Errorf("pool %s in %s was provisioned but does not answer at its endpoint: %w", pool, region, err))
	}
	defer c.Close(context.WithoutCancel(ctx))
	var there bool
	if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, dbname).Scan(&there); err != nil {
		return classify(OpCreatePool, pool, err)
	}
	if !there {
		_, err := c.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{dbname}.Sanitize())
		var pe *pgconn.PgError
		if err != nil && !(errors.As(err, &pe) && pe.Code == "42P04") {
			return classify(OpCreatePool, pool, fmt.Errorf("pool %s in %s: creating its database %s: %w", pool, region, dbname, err))
		}
	}
	return nil
}

// waitConnect connects to u, retrying while the server is starting.
func waitConnect(ctx context.Context, u string) (*pgx.Conn, error) {
	for {
		c, err := pgx.Connect(ctx, u)
		if err == nil {
			return c, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Command provisions every pool by running one user's command (production:
// a hook that asks the cloud for a cluster). It gets the target in its
// environment: LIFEBOAT_POOL, LIFEBOAT_REGION, LIFEBOAT_ENDPOINT (the URL,
// with its credentials), LIFEBOAT_ISOLATION. It must be idempotent and
// return once the cluster answers at the endpoint. SpecCommands runs the
// spec's own commands per pool.
type Command struct {
	Argv []string
	// Env is added to the command's environment.
	Env []string
	// Dir is where it runs; default this process's directory.
	Dir string
}

func (c *Command) Provision(ctx context.Context, t PoolTarget) error {
	if len(c.Argv) == 0 {
		return lifeboat.Permanent(OpCreatePool, t.Pool, errors.New("the pool provisioning command is empty"))
	}
	return runPoolCommand(ctx, OpCreatePool, "create", c.Argv, c.Dir, c.Env, t)
}

// runPoolCommand runs argv (what: create, read-only or delete) for t with
// the target in its environment. A failure is transient (whether a second
// try helps is the command's business; assume it may) and carries the
// command's last output, which is what explains it.
func runPoolCommand(ctx context.Context, op lifeboat.Op, what string, argv []string, dir string, env []string, t PoolTarget) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), env...), "LIFEBOAT_POOL="+t.Pool, "LIFEBOAT_REGION="+t.Region,
		"LIFEBOAT_ENDPOINT="+t.Endpoint, "LIFEBOAT_ISOLATION="+string(t.Isolation))
	// A command that leaves a child holding its output (a server started
	// without redirecting it) must not hang the failover: stop waiting
	// for the output shortly after the command itself exits.
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil && !(errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success()) {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 2000 {
			msg = "…" + msg[len(msg)-2000:]
		}
		if msg == "" {
			msg = "(no output)"
		}
		where := ""
		if dir != "" {
			where = " (in " + dir + ")"
		}
		return lifeboat.Transient(op, t.Pool, fmt.Errorf("pool %s command %q%s for pool %s in %s: %w: %s",
			what, strings.Join(argv, " "), where, t.Pool, t.Region, err, msg))
	}
	return nil
}

// Postgres provisions a pool as a local PostgreSQL cluster (the lab): in
// Dir/<pool>-<region>, listening on the endpoint's host and port, with the
// endpoint's user as superuser and its password, run as the postgres OS
// user when this process is root. Dir's parents must be traversable by
// that user.
type Postgres struct {
	Dir    string
	BinDir string // default postgres.DefaultBinDir

	mu        sync.Mutex
	instances map[string]*postgres.Instance
}

// Instance returns the cluster provisioned for pool in region, if any.
func (p *Postgres) Instance(pool, region string) *postgres.Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.instances[pool+"-"+region]
}

func (p *Postgres) Provision(ctx context.Context, t PoolTarget) error {
	u, err := url.Parse(t.Endpoint)
	if err != nil || u.Host == "" {
		return lifeboat.Permanent(OpCreatePool, t.Pool, fmt.Errorf("pool %s's endpoint in %s is not a postgres:// URL with a host: %v", t.Pool, t.Region, err))
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return lifeboat.Permanent(OpCreatePool, t.Pool, fmt.Errorf("pool %s's endpoint in %s has no port; the lab provisioner needs one", t.Pool, t.Region))
	}
	pw, _ := u.User.Password()
	name := t.Pool + "-" + t.Region
	bin := p.BinDir
	if bin == "" {
		bin = postgres.DefaultBinDir
	}
	p.mu.Lock()
	if p.instances == nil {
		p.instances = map[string]*postgres.Instance{}
	}
	inst := p.instances[name]
	if inst == nil {
		inst = &postgres.Instance{BinDir: bin, DataDir: filepath.Join(p.Dir, name), Host: u.Hostname(), Port: port, Name: name}
		p.instances[name] = inst
	}
	p.mu.Unlock()
	if _, err := os.Stat(filepath.Join(inst.DataDir, "PG_VERSION")); err == nil {
		if err := inst.Start(ctx); err != nil {
			return lifeboat.Transient(OpCreatePool, t.Pool, err)
		}
		return nil
	}
	// A data dir without PG_VERSION is an initdb that died: start over.
	if err := os.RemoveAll(inst.DataDir); err != nil {
		return lifeboat.Transient(OpCreatePool, t.Pool, err)
	}
	if err := postgres.StartPrimary(ctx, inst, postgres.InitOptions{Superuser: u.User.Username(), Password: pw}); err != nil {
		return lifeboat.Transient(OpCreatePool, t.Pool, fmt.Errorf("lab pool %s in %s: %w", t.Pool, t.Region, err))
	}
	return nil
}

// Stop stops every cluster this provisioner started (by their PIDs).
func (p *Postgres) Stop(ctx context.Context) error {
	p.mu.Lock()
	insts := make([]*postgres.Instance, 0, len(p.instances))
	for _, i := range p.instances {
		insts = append(insts, i)
	}
	p.mu.Unlock()
	var errs []error
	for _, i := range insts {
		if err := i.Stop(ctx, "fast"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
