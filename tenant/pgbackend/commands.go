package pgbackend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
)

// SpecCommands creates and retires each geo-restore pool's DR copy with
// the commands of its tenants.pools.<pool>.provision in the spec: what
// 'lifeboat serve' uses outside the lab, where the copy is made by the
// user's cloud, Terraform or script.
//
//   - A pool without provision is not created by Lifeboat: Provision
//     waits (until its context ends) for the copy to answer at its
//     endpoint, made by hand, and says so in the log.
//   - A pool without read-only or delete: ReadOnly or Remove returns an
//     error wrapping errors.ErrUnsupported, and the Backend falls back
//     (default_transaction_read_only; the copy left in place).
//
// It cannot tell whether a copy exists (no Provisioned): the Backend asks
// the copy's endpoint instead.
type SpecCommands struct {
	Spec *lifeboat.Spec
	// Dir is where a relative program ("./pool.sh") is found and where
	// every command runs; default the spec file's directory.
	Dir string
	// Env is added to every command's environment.
	Env []string
	// Poll is how often a pool without provision is asked whether it
	// answers yet; default 2s.
	Poll time.Duration
	Log  *slog.Logger
}

var (
	_ PoolProvisioner = (*SpecCommands)(nil)
	_ PoolSealer      = (*SpecCommands)(nil)
	_ PoolRemover     = (*SpecCommands)(nil)
)

// answerTimeout bounds one "does the copy answer?" connection: a server
// that is there answers (or refuses the login) well within it.
const answerTimeout = 5 * time.Second

func (s *SpecCommands) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// dir is where the commands run and relative programs are found.
func (s *SpecCommands) dir() string {
	if s.Dir != "" {
		return s.Dir
	}
	if s.Spec == nil || s.Spec.File == "" {
		return ""
	}
	d, err := filepath.Abs(filepath.Dir(s.Spec.File))
	if err != nil {
		return filepath.Dir(s.Spec.File)
	}
	return d
}

// provision is pool's provision section (nil when it has none).
func (s *SpecCommands) provision(op lifeboat.Op, pool string) (*lifeboat.PoolProvision, error) {
	if s.Spec == nil || s.Spec.Tenants == nil {
		return nil, lifeboat.Permanent(op, pool, errors.New("the spec has no tenants section"))
	}
	p, ok := s.Spec.Tenants.Pools[pool]
	if !ok {
		return nil, lifeboat.Permanent(op, pool, fmt.Errorf("no pool %q under tenants.pools in the spec", pool))
	}
	return p.Provision, nil
}

// run runs one of pool's commands, its program resolved against dir.
func (s *SpecCommands) run(ctx context.Context, op lifeboat.Op, what string, argv []string, t PoolTarget) error {
	if len(argv) == 0 || argv[0] == "" {
		return lifeboat.Permanent(op, t.Pool, fmt.Errorf("tenants.pools.%s.provision.%s is empty in the spec; give it a command, e.g. %s: [./pool.sh, %s]", t.Pool, what, what, what))
	}
	dir := s.dir()
	argv = append([]string(nil), argv...)
	if !filepath.IsAbs(argv[0]) && strings.ContainsRune(argv[0], filepath.Separator) && dir != "" {
		argv[0] = filepath.Join(dir, argv[0])
	}
	env := append(append([]string(nil), s.Env...), "LIFEBOAT_SPEC_DIR="+dir)
	return runPoolCommand(ctx, op, what, argv, dir, env, t)
}

// Provision runs the pool's provision.create; without one, it waits for
// the copy to be made by hand and answer at its endpoint.
func (s *SpecCommands) Provision(ctx context.Context, t PoolTarget) error {
	pv, err := s.provision(OpCreatePool, t.Pool)
	if err != nil {
		return err
	}
	if pv != nil {
		return s.run(ctx, OpCreatePool, "create", pv.Create, t)
	}
	poll := s.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	at := redactURL(t.Endpoint)
	s.log().Warn("the spec gives this pool no provision.create, so Lifeboat cannot create its DR copy: the recovery of its tenants waits until the copy is created by hand and answers at its endpoint; add tenants.pools.<pool>.provision.create to have it created",
		"pool", t.Pool, "region", t.Region, "endpoint", at)
	for {
		up, err := answers(ctx, t.Endpoint)
		if up {
			return nil
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return lifeboat.Transient(OpCreatePool, t.Pool, fmt.Errorf("pool %s has no provision.create in the spec and its copy in %s never answered at %s (created by hand?): %w", t.Pool, t.Region, at, err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(poll):
		}
	}
}

// ReadOnly runs the pool's provision.read-only; without one, it returns an
// error wrapping errors.ErrUnsupported.
func (s *SpecCommands) ReadOnly(ctx context.Context, t PoolTarget) error {
	pv, err := s.provision(OpReadOnly, t.Pool)
	if err != nil {
		return err
	}
	if pv == nil || pv.ReadOnly == nil {
		return fmt.Errorf("tenants.pools.%s.provision.read-only is not set: %w", t.Pool, errors.ErrUnsupported)
	}
	return s.run(ctx, OpReadOnly, "read-only", pv.ReadOnly, t)
}

// Remove runs the pool's provision.delete; without one, it returns an
// error wrapping errors.ErrUnsupported.
func (s *SpecCommands) Remove(ctx context.Context, t PoolTarget) error {
	pv, err := s.provision(OpDeletePool, t.Pool)
	if err != nil {
		return err
	}
	if pv == nil || pv.Delete == nil {
		return fmt.Errorf("tenants.pools.%s.provision.delete is not set: %w", t.Pool, errors.ErrUnsupported)
	}
	return s.run(ctx, OpDeletePool, "delete", pv.Delete, t)
}

// answers reports whether a PostgreSQL server answers at the endpoint u
// (its postgres database) within answerTimeout. Any reply counts, even a
// refused login or "starting up": a server is there. No reply (refused,
// unreachable, timed out) is (false, nil); only ctx ending is an error.
func answers(ctx context.Context, u string) (bool, error) {
	cfg, err := pgx.ParseConfig(backup.WithDB(u, "postgres"))
	if err != nil {
		return false, lifeboat.Permanent(OpCreatePool, "", fmt.Errorf("endpoint %s is not a postgres:// URL: %w", redactURL(u), err))
	}
	cfg.ConnectTimeout = answerTimeout
	cctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	c, err := pgx.ConnectConfig(cctx, cfg)
	if err == nil {
		_ = c.Close(context.WithoutCancel(ctx))
		return true, nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return true, nil
	}
	return false, ctx.Err()
}

// redactURL is u without its password, for errors and logs.
func redactURL(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "(an endpoint that is not a URL)"
	}
	return pu.Redacted()
}
