package backup

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

// Defaults.
const (
	DefaultInterval    = time.Hour // a tier's backup-interval when unset
	DefaultConcurrency = 2
	DefaultKeep        = 3
	DefaultPoll        = time.Minute
	DefaultTimeout     = time.Hour
)

// Config is how tenants are backed up.
type Config struct {
	Spec *lifeboat.Spec
	// Dirs are the backup directories by region: a tenant whose primary is
	// in region A is shipped to Dirs[the other region]. The spec has no
	// field for them yet (proposed: tenants.pools.<pool>.backups:
	// {<region>: <dir>}), so they come from here.
	Dirs map[string]string
	// Concurrency is how many backups run at once; default 2.
	Concurrency int
	// Keep is how many backups of each tenant are kept; default 3. The
	// latest is never removed.
	Keep int
	// Poll is how often Run looks for backups that are due; default 1m.
	Poll time.Duration
	// Timeout bounds one backup; default 1h.
	Timeout time.Duration
	// Now and After are the clock (tests inject one); default the wall clock.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	Log   *slog.Logger
}

// DefaultConfig returns a config with the defaults; set Spec and Dirs.
func DefaultConfig() Config {
	return Config{Concurrency: DefaultConcurrency, Keep: DefaultKeep, Poll: DefaultPoll, Timeout: DefaultTimeout,
		Now: time.Now, After: time.After}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Keep == 0 {
		c.Keep = d.Keep
	}
	if c.Poll == 0 {
		c.Poll = d.Poll
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.After == nil {
		c.After = d.After
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
	} else {
		for _, r := range []string{c.Spec.Regions.Primary.Name, c.Spec.Regions.Secondary.Name} {
			if c.Dirs[r] == "" && hasGeoRestore(c.Spec) {
				problems = append(problems, fmt.Sprintf("no backup directory for region %s: tenants whose primary is in %s have nowhere to ship their backups", r, c.Spec.Regions.Other(r)))
			}
		}
	}
	if c.Concurrency < 1 {
		problems = append(problems, fmt.Sprintf("concurrency %d must be at least 1", c.Concurrency))
	}
	if c.Keep < 1 {
		problems = append(problems, fmt.Sprintf("keep %d must be at least 1 (the latest backup is always kept)", c.Keep))
	}
	if len(problems) > 0 {
		return lifeboat.Permanent(OpBackup, "", fmt.Errorf("invalid tenant backup config: %s", strings.Join(problems, "; ")))
	}
	return nil
}

func hasGeoRestore(s *lifeboat.Spec) bool {
	for _, t := range s.Tenants.Tiers {
		if t.Strategy == lifeboat.StrategyGeoRestore {
			return true
		}
	}
	return false
}

// Interval is a tier's backup interval with the default applied.
func Interval(t lifeboat.Tier) time.Duration {
	if t.BackupInterval > 0 {
		return t.BackupInterval.D()
	}
	return DefaultInterval
}

// Lister lists tenants: package tenant's Catalog.
type Lister interface {
	List(ctx context.Context, f tenant.Filter) ([]lifeboat.Tenant, error)
}

// Dumper writes a backup of a tenant, from its pool's primary (the pool
// copy in t.Region), to w.
type Dumper interface {
	Dump(ctx context.Context, t lifeboat.Tenant, w io.Writer) error
}

// Scheduler backs up the tenants of geo-restore tiers, each at its tier's
// interval, spread over the interval, at most Concurrency at once.
type Scheduler struct {
	cfg    Config
	list   Lister
	dumper Dumper

	mu      sync.Mutex
	running int
	peak    int
}

// NewScheduler checks cfg and returns a scheduler.
func NewScheduler(cfg Config, l Lister, d Dumper) (*Scheduler, error) {
	cfg = cfg.withDefaults()
	if err := ValidateConfig(cfg); err != nil {
		return nil, err
	}
	return &Scheduler{cfg: cfg, list: l, dumper: d}, nil
}

// Store returns where backups of tenants whose primary is in region are
// shipped: the other region's directory.
func (s *Scheduler) Store(region string) *Store {
	return NewStore(s.cfg.Dirs[s.cfg.Spec.Regions.Other(region)])
}

// Job is one backup due.
type Job struct {
	Tenant lifeboat.Tenant
	// Slot is the time the backup was due; Last the latest backup's time
	// (zero: none).
	Slot, Last time.Time
}

// Slot is the latest time at or before now when name's backup falls due:
// every interval, at an offset within the interval fixed by the name, so a
// tier's backups are spread evenly over the interval, not taken at once.
func Slot(name string, interval time.Duration, now time.Time) time.Time {
	h := fnv.New64a()
	h.Write([]byte(name))
	off := int64(h.Sum64() % uint64(interval))
	t := now.UnixNano() - off
	m := t % int64(interval)
	if m < 0 {
		m += int64(interval)
	}
	return time.Unix(0, now.UnixNano()-m).UTC()
}

// Due returns the backups due at now among tenants: those of geo-restore
// tiers, available, whose latest backup is older than their last slot;
// latest gives a tenant's latest backup time (false: none). The most
// exposed come first: no backup, then the oldest.
func Due(spec *lifeboat.Spec, tenants []lifeboat.Tenant, latest func(lifeboat.Tenant) (time.Time, bool), now time.Time) []Job {
	var jobs []Job
	for _, t := range tenants {
		tier, ok := spec.Tenants.Tiers[t.Tier]
		if !ok || tier.Strategy != lifeboat.StrategyGeoRestore || t.State != lifeboat.TenantAvailable {
			continue // geo-replicated tenants need no backup; others have no primary to dump now
		}
		slot := Slot(t.Name, Interval(tier), now)
		last, have := latest(t)
		if have && !last.Before(slot) {
			continue
		}
		jobs = append(jobs, Job{Tenant: t, Slot: slot, Last: last})
	}
	slices.SortStableFunc(jobs, func(a, b Job) int {
		if c := a.Last.Compare(b.Last); c != 0 {
			return c
		}
		return strings.Compare(a.Tenant.Name, b.Tenant.Name)
	})
	return jobs
}

// Result is what one Tick did.
type Result struct {
	Due    int
	Taken  []Backup
	Failed map[string]error
}

// Tick takes the backups due now, at most Concurrency at once, and waits
// for them. Old backups beyond Keep are pruned after each.
func (s *Scheduler) Tick(ctx context.Context) (Result, error) {
	all, err := s.list.List(ctx, tenant.Filter{})
	if err != nil {
		return Result{}, fmt.Errorf("listing tenants to back up: %w", err)
	}
	now := s.cfg.Now()
	jobs := Due(s.cfg.Spec, all, func(t lifeboat.Tenant) (time.Time, bool) {
		b, err := s.Store(t.Region).Latest(t.Name)
		return b.Taken, err == nil
	}, now)
	res := Result{Due: len(jobs), Failed: map[string]error{}}
	var mu sync.Mutex
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, j := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return res, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b, err := s.One(ctx, j.Tenant)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed[j.Tenant.Name] = err
				s.cfg.Log.Warn("tenant backup failed", "tenant", j.Tenant.Name, "err", err)
				return
			}
			res.Taken = append(res.Taken, b)
		}()
	}
	wg.Wait()
	slices.SortFunc(res.Taken, func(a, b Backup) int { return strings.Compare(a.Tenant, b.Tenant) })
	return res, nil
}

// One backs up one tenant now and prunes its old backups.
func (s *Scheduler) One(ctx context.Context, t lifeboat.Tenant) (Backup, error) {
	s.mu.Lock()
	s.running++
	s.peak = max(s.peak, s.running)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running--
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	st := s.Store(t.Region)
	if st.Dir == "" {
		return Backup{}, lifeboat.Permanent(OpBackup, t.Name, fmt.Errorf("no backup directory for region %s, where tenant %s's backups are shipped; configure one", s.cfg.Spec.Regions.Other(t.Region), t.Name))
	}
	b, err := st.Write(ctx, t.Name, s.cfg.Now(), func(w io.Writer) error { return s.dumper.Dump(ctx, t, w) })
	if err != nil {
		return Backup{}, err
	}
	if _, err := st.Prune(t.Name, s.cfg.Keep); err != nil {
		s.cfg.Log.Warn("pruning old tenant backups", "tenant", t.Name, "err", err)
	}
	return b, nil
}

// Peak is the most backups that ran at once so far.
func (s *Scheduler) Peak() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// Run ticks every Poll until ctx ends. Errors of one tick are logged; the
// next tick retries what failed.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		if _, err := s.Tick(ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.cfg.Log.Warn("tenant backup tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.cfg.After(s.cfg.Poll):
		}
	}
}
