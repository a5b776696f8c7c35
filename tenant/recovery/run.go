package recovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// Backend does the work on the pools. Each call is idempotent (it may be
// tried again after a failure) and says whether a failure is retryable
// (lifeboat.Transient / lifeboat.Permanent; unmarked errors are retried).
type Backend interface {
	// MakeAvailable fails names (a batch, all in pool) over to their
	// copies in region, where the pool was promoted.
	MakeAvailable(ctx context.Context, pool, region string, names []string) error
	// Restore restores one tenant into pool in region from its latest
	// backup shipped there.
	Restore(ctx context.Context, pool, region, name string) error
	// CreatePool creates pool in region, configured as in its home region.
	CreatePool(ctx context.Context, pool, region string) error
	// RaiseCapacity raises pool's connection limit in region to n.
	RaiseCapacity(ctx context.Context, pool, region string, n int) error
}

// Catalog records the tenants' states: package tenant's catalog.
type Catalog interface {
	// Set writes ch to every tenant named, in one transaction, and says
	// how many it changed (a tenant at a newer epoch is left alone).
	Set(ctx context.Context, names []string, ch lifeboat.TenantChange) (int, error)
}

// Run is a recovery running: Start returns it at once; Wait blocks until
// it is over. Its methods are safe for concurrent use (the gate calls
// Hurry and Await from its connections' goroutines).
type Run struct {
	ctx      context.Context
	backend  Backend
	catalog  Catalog
	progress func(Status)
	backoff  time.Duration
	now      func() time.Time

	mu       sync.Mutex
	cond     *sync.Cond // records queued, or the run over
	s        *Scheduler
	running  int      // backend calls running
	records  []Action // catalog writes queued, in order
	writing  bool
	recorded map[string]lifeboat.TenantState // what this run wrote to the catalog
	errs     []error
	changed  chan struct{} // closed at every change, then replaced
	over     bool
	done     chan struct{}
	kick     chan struct{} // wakes the progress reporter
}

// RunOption tunes Start.
type RunOption func(*Run)

// WithBackoff sets the pause before the second attempt of a batch, restore
// or pool operation (doubled at each further attempt, at most 30s);
// default 1s.
func WithBackoff(d time.Duration) RunOption { return func(r *Run) { r.backoff = d } }

// WithClock sets the clock that stamps events (Tenant.Recovered); default
// time.Now.
func WithClock(now func() time.Time) RunOption { return func(r *Run) { r.now = now } }

// catalogAttempts bounds the tries of one catalog write.
const catalogAttempts = 5

// Start runs s: it records the tenants queued, then does what s decides as
// events come (CatalogPromoted, PoolPromoted, the ends of its own actions,
// Hurry, Cancel), each catalog change written by one Set, in order.
// progress (may be nil) is called with the status after changes (the
// latest status; intermediate ones may be skipped). When ctx ends, the
// run cancels: what runs is abandoned, its tenants stay queued.
func Start(ctx context.Context, s *Scheduler, b Backend, c Catalog, progress func(Status), opts ...RunOption) *Run {
	r := &Run{ctx: ctx, backend: b, catalog: c, progress: progress, backoff: time.Second, now: time.Now,
		s: s, recorded: map[string]lifeboat.TenantState{}, changed: make(chan struct{}),
		done: make(chan struct{}), kick: make(chan struct{}, 1)}
	for _, o := range opts {
		o(r)
	}
	r.cond = sync.NewCond(&r.mu)
	go r.write()
	go r.report()
	r.mu.Lock()
	r.apply(Event{Kind: Begin})
	r.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			r.Cancel()
		case <-r.done:
		}
	}()
	return r
}

// CatalogPromoted tells the run the catalog serves in the target region.
func (r *Run) CatalogPromoted() error { return r.tell(Event{Kind: CatalogPromoted}) }

// PoolPromoted tells the run a geo-replicated pool was promoted.
func (r *Run) PoolPromoted(pool string) error { return r.tell(Event{Kind: PoolPromoted, Pool: pool}) }

// Cancel is failback's first step: nothing new starts, what runs finishes.
func (r *Run) Cancel() { _ = r.tell(Event{Kind: Cancel}) }

// Hurry moves a tenant someone connects to to the head of its queue, and
// says where it stands; false if it is not being recovered.
func (r *Run) Hurry(name string) (TenantStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.over {
		r.apply(Event{Kind: Hurry, Tenants: []string{name}})
	}
	return r.s.Tenant(name)
}

func (r *Run) tell(ev Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.over {
		return nil
	}
	return r.apply(ev)
}

// apply steps the scheduler and starts its actions. r.mu is held.
func (r *Run) apply(ev Event) error {
	if ev.At.IsZero() {
		ev.At = r.now()
	}
	acts, err := r.s.Step(ev)
	if err != nil {
		r.errs = append(r.errs, err)
	}
	for _, a := range acts {
		if a.Kind == Record {
			r.records = append(r.records, a)
			r.cond.Broadcast()
			continue
		}
		r.running++
		go r.perform(a)
	}
	r.changedLocked()
	return err
}

// changedLocked wakes Await and the progress reporter, and ends the run
// when nothing is left to do.
func (r *Run) changedLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
	select {
	case r.kick <- struct{}{}:
	default:
	}
	if !r.over && r.s.Done() && r.running == 0 && len(r.records) == 0 && !r.writing {
		r.over = true
		r.cond.Broadcast()
		close(r.done)
	}
}

// perform does one action on the backend and feeds its end back.
func (r *Run) perform(a Action) {
	err := r.pause(a.Attempt)
	if err == nil {
		switch a.Kind {
		case MakeAvailable:
			err = r.backend.MakeAvailable(r.ctx, a.Pool, a.Region, a.Tenants)
		case Restore:
			err = r.backend.Restore(r.ctx, a.Pool, a.Region, a.Tenants[0])
		case CreatePool:
			err = r.backend.CreatePool(r.ctx, a.Pool, a.Region)
		case RaiseCapacity:
			err = r.backend.RaiseCapacity(r.ctx, a.Pool, a.Region, a.Capacity)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	r.apply(Done(a, err, r.now()))
}

// pause backs off before a retry.
func (r *Run) pause(attempt int) error {
	if attempt <= 1 || r.backoff <= 0 {
		return r.ctx.Err()
	}
	d := min(r.backoff<<min(attempt-2, 10), 30*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// write is the catalog writer: one Set per record, in the order decided,
// so a tenant's states are written in the order they happened.
func (r *Run) write() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		for len(r.records) == 0 && !r.over {
			r.cond.Wait()
		}
		if len(r.records) == 0 {
			return
		}
		a := r.records[0]
		r.records = r.records[1:]
		r.writing = true
		r.mu.Unlock()
		err := r.set(a)
		r.mu.Lock()
		r.writing = false
		if err == nil {
			for _, n := range a.Tenants {
				r.recorded[n] = a.Change.State
			}
		} else {
			r.errs = append(r.errs, err)
		}
		r.changedLocked()
	}
}

// set writes one record, retrying what may pass on a second try.
func (r *Run) set(a Action) error {
	var err error
	for attempt := 1; attempt <= catalogAttempts; attempt++ {
		var n int
		n, err = r.catalog.Set(r.ctx, a.Tenants, a.Change)
		if err == nil {
			if n < len(a.Tenants) {
				return lifeboat.Permanent(op, "catalog", fmt.Errorf("the catalog changed %d of %d tenants to %s (%s): the others are at a newer epoch (another run moved them) or gone; check them with lifeboat tenant show",
					n, len(a.Tenants), a.Change.State, names3(a.Tenants)))
			}
			return nil
		}
		if !lifeboat.IsRetryable(err) || r.ctx.Err() != nil {
			break
		}
		if r.pause(attempt+1) != nil {
			break
		}
	}
	return fmt.Errorf("recording %d tenants %s in the catalog (%s) failed: %w; the catalog does not show their state: fix the catalog's database, then lifeboat tenant show",
		len(a.Tenants), a.Change.State, names3(a.Tenants), err)
}

// names3 shows the first names of a list.
func names3(ns []string) string {
	if len(ns) <= 3 {
		return fmt.Sprint(ns)
	}
	return fmt.Sprintf("%v and %d more", ns[:3], len(ns)-3)
}

// report calls progress with the latest status after changes, and once
// more when the run is over.
func (r *Run) report() {
	for {
		select {
		case <-r.kick:
		case <-r.done:
			if r.progress != nil {
				r.progress(r.Status())
			}
			return
		}
		if r.progress != nil {
			r.progress(r.Status())
		}
	}
}

// Status is the recovery at a glance.
func (r *Run) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.s.Status()
}

// Tenants lists where every tenant being recovered stands.
func (r *Run) Tenants() []TenantStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.s.Tenants()
}

// ErrNotRecovering: the tenant is not in the lost region; it is served
// where the catalog says.
var ErrNotRecovering = errors.New("tenant is not being recovered")

// Await waits until name is available and recorded so in the catalog (the
// gate may route to it then), or failed, or the run is over without it,
// or ctx ends. It does not hurry the tenant (Hurry does).
func (r *Run) Await(ctx context.Context, name string) (TenantStatus, error) {
	for {
		r.mu.Lock()
		ts, ok := r.s.Tenant(name)
		rec, over, ch := r.recorded[name], r.over, r.changed
		r.mu.Unlock()
		switch {
		case !ok:
			return ts, fmt.Errorf("%s: %w (not in the lost region): it is served where the catalog says", name, ErrNotRecovering)
		case ts.State == lifeboat.TenantAvailable && rec == lifeboat.TenantAvailable:
			return ts, nil
		case ts.State == lifeboat.TenantFailed:
			return ts, lifeboat.Permanent(op, name, fmt.Errorf("recovery of tenant %s failed: %s; recover it by hand (lifeboat tenant move)", name, ts.Reason))
		case over:
			return ts, lifeboat.Permanent(op, name, fmt.Errorf("the recovery ended (cancelled, or the catalog could not record it) with tenant %s %s: it is handled by the failback, or by hand (lifeboat tenant move)", name, ts.State))
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ts, lifeboat.Transient(op, name, fmt.Errorf("tenant %s is still %s (its recovery is under way): %w", name, ts.State, ctx.Err()))
		}
	}
}

// Done is closed when the run is over: nothing runs, every catalog write
// is done.
func (r *Run) Done() <-chan struct{} { return r.done }

// Wait blocks until the run is over (or ctx ends) and returns the final
// status and what went wrong outside the tenants' own failures (refused
// events, catalog writes that failed).
func (r *Run) Wait(ctx context.Context) (Status, error) {
	select {
	case <-r.done:
	case <-ctx.Done():
		return r.Status(), lifeboat.Transient(op, "", fmt.Errorf("tenant recovery still running: %w", ctx.Err()))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.s.Status(), errors.Join(r.errs...)
}
