// Package serve is the tenants' long-running part (seed 004): what a
// process that lives next to the service's front door runs for tenants.
// It hosts the gate (the tenants' PostgreSQL front door), routes it by the
// catalog, and watches the stored state: when a failover moves the
// service from X to Y it starts the tenants' recovery (tenant/recovery)
// for the tenants that lived in X, tells it the catalog and the pools are
// promoted, and lets connections through the gate hurry their tenant.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
	"github.com/lifeboat-dr/lifeboat/tenant/gate"
	"github.com/lifeboat-dr/lifeboat/tenant/recovery"
)

// Op is the Op of this package's errors.
const Op lifeboat.Op = "tenant.serve"

// Opener opens the catalog where the state says its primary is now
// (tenant.OpenCatalog, as a function so tests can use a memory catalog).
type Opener func(ctx context.Context, spec *lifeboat.Spec, st *lifeboat.State) (tenant.Catalog, error)

// OpenPostgres is the Opener of package tenant's PostgreSQL catalog.
func OpenPostgres(ctx context.Context, spec *lifeboat.Spec, st *lifeboat.State) (tenant.Catalog, error) {
	return tenant.OpenCatalog(ctx, spec, st)
}

// Config is what Host needs.
type Config struct {
	Spec    *lifeboat.Spec
	Store   lifeboat.Store
	Backend recovery.Backend
	Open    Opener
	// Gate overrides the gate's settings (zero: from tenants.gate).
	Gate *gate.Config
	// Poll is how often the stored state is read; default 250ms.
	Poll time.Duration
	// RecoveryOptions are passed to every recovery.Start (backoff, clock).
	RecoveryOptions []recovery.RunOption
	// Failback does the failback's steps on the pools (nil: Backend, if
	// it implements FailbackBackend; else no failback).
	Failback FailbackBackend
	// BackupDirs are where each region receives the other's tenant
	// backups (BackupDirs(spec)); nil: no backups are taken here.
	BackupDirs map[string]string
	// BackupPoll is how often due backups are looked for; default 1m.
	BackupPoll time.Duration
	// Dumper takes the backups; default backup.PgDump.
	Dumper backup.Dumper
	// Region is the region this host runs in, when each region's
	// controller hosts one ('lifeboat serve --region'): its gate routes
	// always, but the recovery, the failback and the backups run only
	// while Region is the active region, so that exactly one host acts.
	// "" (plain 'lifeboat serve'): this host always acts.
	Region string
	Log    *slog.Logger
}

// DefaultConfig returns the defaults; set Spec, Store, Backend.
func DefaultConfig() Config {
	return Config{Open: OpenPostgres, Poll: 250 * time.Millisecond}
}

// ValidateConfig reports every problem of c at once (permanent).
func ValidateConfig(c Config) error {
	var errs []string
	if c.Spec == nil || c.Spec.Tenants == nil {
		errs = append(errs, "the spec has no tenants section: add tenants: {catalog, pools, tiers}")
	}
	if c.Store == nil {
		errs = append(errs, "no state store: the tenants' host follows the service's state to know when a failover happened")
	}
	if c.Backend == nil {
		errs = append(errs, "no recovery backend (tenant/pgbackend for PostgreSQL pools)")
	}
	if c.Open == nil {
		errs = append(errs, "no catalog opener (serve.OpenPostgres)")
	}
	if c.Poll < 0 {
		errs = append(errs, fmt.Sprintf("poll %s must be positive", c.Poll))
	}
	if len(errs) > 0 {
		return lifeboat.Permanent(Op, "", errors.New("tenants host: "+strings.Join(errs, "; ")))
	}
	return nil
}

// Hosted is the running gate and state watcher.
type Hosted struct {
	c    Config
	gate *gate.Gate
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	cat     tenant.Catalog
	state   *lifeboat.State
	lost    string // region a failover left, while its tenants are not all recovered
	run     *recovery.Run
	runs    int
	pending []string // hurried before the recovery started
	order   []string // tenants made available by the last recovery, in order
	err     string   // the last problem starting a recovery
	fb      *Failback
	backups *backup.Scheduler
}

// Host opens the catalog, starts the gate on tenants.gate.listen and
// watches the stored state until ctx ends or Close is called.
func Host(ctx context.Context, c Config) (*Hosted, error) {
	d := DefaultConfig()
	if c.Open == nil {
		c.Open = d.Open
	}
	if c.Poll == 0 {
		c.Poll = d.Poll
	}
	if err := ValidateConfig(c); err != nil {
		return nil, err
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	st, err := c.Store.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("tenants host: reading the service's state: %w", err)
	}
	cat, err := c.Open(ctx, c.Spec, st)
	if err != nil {
		return nil, fmt.Errorf("tenants host: opening the catalog: %w", err)
	}
	h := &Hosted{c: c, log: c.Log, cat: cat, state: st}
	gc := gate.ConfigFromSpec(c.Spec.Tenants.Gate)
	if c.Gate != nil {
		gc = *c.Gate
	}
	gc.Log = c.Log
	g, err := gate.New(gc, gate.LocateFunc(h.locate), gate.HurryFunc(h.hurry))
	if err != nil {
		cat.Close()
		return nil, err
	}
	h.gate = g
	h.setCapacities(st)
	if err := g.Start(); err != nil {
		cat.Close()
		return nil, err
	}
	h.ctx, h.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := h.startBackups(); err != nil {
		h.cancel()
		g.Close()
		cat.Close()
		return nil, err
	}
	h.wg.Add(1)
	go h.watch(ctx)
	return h, nil
}

// Gate is the running gate.
func (h *Hosted) Gate() *gate.Gate { return h.gate }

// Close stops the watcher, cancels a recovery in progress, closes the gate
// and the catalog.
func (h *Hosted) Close() error {
	h.cancel()
	h.mu.Lock()
	run := h.run
	h.mu.Unlock()
	if run != nil {
		run.Cancel()
	}
	err := h.gate.Close()
	h.wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cat != nil {
		if cerr := h.cat.Close(); err == nil {
			err = cerr
		}
		h.cat = nil
	}
	return err
}

// setCapacities sets each pool's limit in each region: active where its
// database is primary, standby elsewhere.
func (h *Hosted) setCapacities(st *lifeboat.State) {
	spec := h.c.Spec
	for _, pn := range lifeboat.SortedKeys(spec.Tenants.Pools) {
		p := spec.Tenants.Pools[pn]
		prim, _ := tenant.PrimaryRegion(spec, st, p.Database)
		for _, r := range []string{spec.Regions.Primary.Name, spec.Regions.Secondary.Name} {
			h.gate.SetCapacity(pn, r, gate.Capacity(p, r != prim))
		}
	}
}

// locate is the gate's Directory: the catalog entry plus the pool's
// address in the tenant's region.
func (h *Hosted) locate(ctx context.Context, name string) (gate.Location, error) {
	h.mu.Lock()
	cat, lost := h.cat, h.lost
	h.mu.Unlock()
	if cat == nil {
		return gate.Location{}, lifeboat.Transient(Op, name, errors.New("the catalog is being reopened after a failover"))
	}
	t, err := cat.Get(ctx, name)
	if errors.Is(err, tenant.ErrNoTenant) {
		return gate.Location{}, fmt.Errorf("%w: %v", gate.ErrUnknownTenant, err)
	}
	if err != nil {
		return gate.Location{}, err
	}
	loc := gate.Location{Tenant: t}
	if lost != "" && t.Region == lost && t.State == lifeboat.TenantAvailable {
		// Its region is lost and its recovery has not recorded it queued
		// yet: hold the client rather than send it to the lost copy.
		loc.Tenant.State = lifeboat.TenantQueued
		return loc, nil
	}
	p, ok := h.c.Spec.Tenants.Pools[t.Pool]
	if !ok {
		return gate.Location{}, lifeboat.Permanent(Op, name, fmt.Errorf("tenant %s is in pool %q, which the spec does not have under tenants.pools", name, t.Pool))
	}
	raw := endpoint(h.c.Spec, p.Database, t.Region)
	if raw == "" {
		return loc, nil // no copy there: the gate holds the client
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return gate.Location{}, lifeboat.Permanent(Op, name, fmt.Errorf("pool %s's endpoint in %s is not a postgres:// URL with a host (%q); fix endpoints of %s in the spec", t.Pool, t.Region, raw, p.Database))
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	loc.Addr = host
	if tenant.Isolation(p) == lifeboat.IsolationSchema {
		db := strings.TrimPrefix(u.Path, "/")
		if db == "" {
			db = "postgres"
		}
		loc.Database, loc.Schema = db, name
	}
	return loc, nil
}

func endpoint(spec *lifeboat.Spec, ref, region string) string {
	un, dn, _ := strings.Cut(ref, ".")
	u, ok := spec.Units[un]
	if !ok {
		return ""
	}
	return u.Databases[dn].Endpoints[region]
}

// hurry is the gate's Recovery: the tenant goes to the head of the queue;
// the gate is woken when it is available.
func (h *Hosted) hurry(name string) {
	h.mu.Lock()
	run := h.run
	if run == nil {
		if h.lost != "" && !slices.Contains(h.pending, name) {
			h.pending = append(h.pending, name)
		}
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	h.hurryRun(run, name)
}

func (h *Hosted) hurryRun(run *recovery.Run, name string) {
	if _, ok := run.Hurry(name); !ok {
		return
	}
	h.log.Info("tenant recovery hurried by a connection", "tenant", name)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(h.ctx, time.Hour)
		defer cancel()
		if _, err := run.Await(ctx, name); err == nil {
			h.gate.Wake(name)
		}
	}()
}

// watch polls the state; a failover run that ended with the active region
// moved starts the tenants' recovery.
func (h *Hosted) watch(ctx context.Context) {
	defer h.wg.Done()
	t := time.NewTicker(h.c.Poll)
	defer t.Stop()
	lastRun := ""
	h.mu.Lock()
	first := h.state
	h.mu.Unlock()
	if first.Run == "" && first.Active == h.c.Spec.Regions.Primary.Name && h.acting(first) {
		// A failback cut short (the process died) is finished now.
		h.failback(first)
	}
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		st, err := h.c.Store.State(rctx)
		cancel()
		if err != nil {
			continue
		}
		if st.Run != "" {
			lastRun = st.Run
			continue
		}
		h.mu.Lock()
		prev := h.state
		h.mu.Unlock()
		if prev.Active == st.Active || st.Epoch <= prev.Epoch {
			h.mu.Lock()
			if st.Epoch >= prev.Epoch {
				h.state = st
			}
			h.mu.Unlock()
			continue
		}
		intent := lifeboat.IntentFailover
		if lastRun != "" {
			rctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
			if r, err := h.c.Store.Run(rctx, lastRun); err == nil && r.Plan != nil {
				intent = r.Plan.Intent
			}
			cancel()
		}
		if intent != lifeboat.IntentFailover {
			// A planned move (switchover, failback) moved every pool with
			// zero loss; the tenants' rows say where they are. Follow it.
			h.log.Info("service moved without a failover; tenants' recovery not started", "intent", intent, "active", st.Active)
			h.mu.Lock()
			h.state = st
			h.mu.Unlock()
			h.setCapacities(st)
			h.reopen(st)
			if !h.acting(st) {
				h.mu.Lock()
				h.lost = ""
				h.mu.Unlock()
				continue
			}
			if st.Active == h.c.Spec.Regions.Primary.Name {
				h.failback(st)
			}
			continue
		}
		if !h.acting(st) {
			// The new active region's host recovers the tenants; this
			// gate holds clients of the lost region's tenants until the
			// catalog says where they are.
			h.log.Info("failover seen: the tenants' recovery runs in the active region's controller", "lost", prev.Active, "active", st.Active, "here", h.c.Region)
			h.mu.Lock()
			h.state, h.lost = st, prev.Active
			h.mu.Unlock()
			h.setCapacities(st)
			h.reopen(st)
			continue
		}
		h.failover(prev.Active, st)
	}
}

// acting reports whether this host runs the recovery, the failback and
// the backups when the state is st: always, or while its region is active.
func (h *Hosted) acting(st *lifeboat.State) bool {
	return h.c.Region == "" || st == nil || st.Active == h.c.Region
}

// reopen points the catalog at its primary per st, retrying until it
// answers or the host stops.
func (h *Hosted) reopen(st *lifeboat.State) tenant.Catalog {
	h.mu.Lock()
	old := h.cat
	h.cat = nil
	h.mu.Unlock()
	if old != nil {
		old.Close()
	}
	for {
		ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		cat, err := h.c.Open(ctx, h.c.Spec, st)
		cancel()
		if err == nil {
			h.mu.Lock()
			h.cat = cat
			h.mu.Unlock()
			return cat
		}
		h.setErr(fmt.Errorf("reopening the catalog in %s: %w", st.Active, err))
		select {
		case <-h.ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (h *Hosted) setErr(err error) {
	h.log.Warn("tenants host", "err", err)
	h.mu.Lock()
	h.err = err.Error()
	h.mu.Unlock()
}

// failover starts the recovery of the tenants that lived in lost.
func (h *Hosted) failover(lost string, st *lifeboat.State) {
	target := st.Active
	h.log.Info("failover seen: recovering the tenants", "lost", lost, "target", target, "epoch", st.Epoch)
	h.mu.Lock()
	if h.run != nil {
		h.run.Cancel()
	}
	h.state, h.lost, h.run, h.order, h.err = st, lost, nil, nil, ""
	h.mu.Unlock()
	h.setCapacities(st)
	cat := h.reopen(st)
	if cat == nil {
		return
	}
	var tenants []lifeboat.Tenant
	for {
		ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
		ts, err := cat.List(ctx, tenant.Filter{})
		cancel()
		if err == nil {
			tenants = ts
			break
		}
		h.setErr(fmt.Errorf("listing the tenants in the catalog: %w", err))
		select {
		case <-h.ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
	rc := recovery.DefaultConfig()
	rc.Tenants = *h.c.Spec.Tenants
	rc.Primary = h.c.Spec.Regions.Primary.Name
	rc.Lost, rc.Target, rc.Epoch = lost, target, st.Epoch
	sched, err := recovery.New(rc, tenants)
	if err != nil {
		h.setErr(fmt.Errorf("the tenants' recovery cannot start: %w", err))
		return
	}
	run := recovery.Start(h.ctx, sched, &recorder{Backend: h.c.Backend, h: h}, cat, nil, h.c.RecoveryOptions...)
	h.mu.Lock()
	h.run = run
	h.runs++
	pending := h.pending
	h.pending = nil
	h.mu.Unlock()
	for _, n := range pending {
		h.hurryRun(run, n)
	}
	if err := run.CatalogPromoted(); err != nil {
		h.setErr(fmt.Errorf("recovery: catalog promoted: %w", err))
	}
	spec := h.c.Spec
	for _, pn := range lifeboat.SortedKeys(spec.Tenants.Pools) {
		p := spec.Tenants.Pools[pn]
		un, dn, _ := strings.Cut(p.Database, ".")
		if spec.Units[un].Databases[dn].DRMode != lifeboat.DRGeoReplica {
			continue
		}
		if r, err := tenant.PrimaryRegion(spec, st, p.Database); err != nil || r != target || !lostTenants(tenants, pn, lost) {
			continue
		}
		if err := run.PoolPromoted(pn); err != nil {
			h.setErr(fmt.Errorf("recovery: pool %s promoted: %w", pn, err))
		}
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		s, err := run.Wait(h.ctx)
		h.log.Info("tenants' recovery ended", "status", s.String(), "err", err)
		h.mu.Lock()
		if h.run == run && (s.Done || s.Cancelled) {
			h.lost = ""
		}
		h.mu.Unlock()
	}()
}

func lostTenants(ts []lifeboat.Tenant, pool, lost string) bool {
	for _, t := range ts {
		if t.Pool == pool && t.Region == lost {
			return true
		}
	}
	return false
}

// recorder wraps the backend: it keeps the order tenants are made
// available in (for status), and forwards capacity raises to the gate.
type recorder struct {
	recovery.Backend
	h *Hosted
}

func (r *recorder) note(names ...string) {
	r.h.mu.Lock()
	r.h.order = append(r.h.order, names...)
	r.h.mu.Unlock()
	for _, n := range names {
		r.h.gate.Wake(n)
	}
}

func (r *recorder) MakeAvailable(ctx context.Context, pool, region string, names []string) error {
	err := r.Backend.MakeAvailable(ctx, pool, region, names)
	if err == nil {
		r.note(names...)
	}
	return err
}

func (r *recorder) Restore(ctx context.Context, pool, region, name string) error {
	err := r.Backend.Restore(ctx, pool, region, name)
	if err == nil {
		r.note(name)
	}
	return err
}

func (r *recorder) RaiseCapacity(ctx context.Context, pool, region string, n int) error {
	if err := r.Backend.RaiseCapacity(ctx, pool, region, n); err != nil {
		return err
	}
	r.h.gate.SetCapacity(pool, region, n)
	return nil
}

// Status is what the host reports for 'lab status' and 'lifeboat status'.
type Status struct {
	Gate     string     `json:"gate"`
	Stats    gate.Stats `json:"stats"`
	Active   string     `json:"active"`
	Epoch    uint64     `json:"epoch"`
	Lost     string     `json:"lost,omitempty"`
	Runs     int        `json:"recoveries"`
	Error    string     `json:"error,omitempty"`
	Recovery *Recovery  `json:"recovery,omitempty"`
	Failback *Failback  `json:"failback,omitempty"`
}

// Recovery is the last recovery's progress.
type Recovery struct {
	Lost     string                       `json:"lost"`
	Target   string                       `json:"target"`
	Total    int                          `json:"total"`
	Counts   map[lifeboat.TenantState]int `json:"counts"`
	Batches  int                          `json:"batches"`
	Restores int                          `json:"restores"`
	Done     bool                         `json:"done"`
	Waiting  []string                     `json:"waiting,omitempty"`
	Hurried  []string                     `json:"hurried,omitempty"`
	// Available lists the tenants made available, in the order they were.
	Available []string `json:"available,omitempty"`
	Text      string   `json:"text"`
}

// Status reports the gate and the last recovery.
func (h *Hosted) Status() Status {
	h.mu.Lock()
	s := Status{Gate: h.gate.Addr(), Active: h.state.Active, Epoch: h.state.Epoch, Lost: h.lost, Runs: h.runs, Error: h.err}
	run := h.run
	order := slices.Clone(h.order)
	if h.fb != nil {
		fb := *h.fb
		fb.Steps, fb.Changed, fb.Unchanged, fb.New = slices.Clone(fb.Steps), slices.Clone(fb.Changed), slices.Clone(fb.Unchanged), slices.Clone(fb.New)
		fb.Kept = maps.Clone(fb.Kept)
		s.Failback = &fb
	}
	h.mu.Unlock()
	s.Stats = h.gate.Stats()
	if run != nil {
		rs := run.Status()
		r := &Recovery{Lost: rs.Lost, Target: rs.Target, Total: rs.Total, Counts: rs.Counts, Batches: rs.Batches, Restores: rs.Restores,
			Done: rs.Done, Waiting: rs.Waiting, Available: order, Text: rs.String()}
		for _, t := range run.Tenants() {
			if t.Hurried {
				r.Hurried = append(r.Hurried, t.Name)
			}
		}
		s.Recovery = r
	}
	return s
}

// Run is the recovery in progress or last ended (nil if none).
func (h *Hosted) Run() *recovery.Run {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.run
}
