package gate

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// waiter watches one tenant that clients are held for. Every connection
// held for the same tenant shares it: the catalog is polled once per Poll
// per tenant, not once per connection, and the recovery is hurried once.
type waiter struct {
	name string
	refs int           // held connections; under Gate.mu
	wake chan struct{} // Wake: look up now
	quit chan struct{} // closed when the last held connection left
	done chan struct{} // closed when the outcome is known

	mu      sync.Mutex
	loc     Location // the last successful look-up
	err     error    // the last look-up's error
	outcome error    // set before done is closed: nil (routable) or ErrUnknownTenant
}

func (w *waiter) observe(loc Location, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.loc = loc
	}
	w.err = err
}

func (w *waiter) last() (Location, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.loc, w.err
}

// await holds the caller until name is routable, unknown, or ctx ends
// (a *holdError). loc and err are the caller's own first look-up.
func (g *Gate) await(ctx context.Context, name string, loc Location, err error) (Location, error) {
	g.mu.Lock()
	w := g.waiters[name]
	if w == nil {
		w = &waiter{name: name, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
		w.observe(loc, err)
		g.waiters[name] = w
		g.wg.Add(1)
		go g.poll(w)
	}
	w.refs++
	g.mu.Unlock()
	defer g.leave(w)
	select {
	case <-w.done:
		loc, _ := w.last()
		if w.outcome != nil {
			return loc, w.outcome
		}
		return loc, nil
	case <-ctx.Done():
		loc, err := w.last()
		return loc, &holdError{loc: loc, err: err}
	}
}

func (g *Gate) leave(w *waiter) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w.refs--
	if w.refs == 0 && g.waiters[w.name] == w {
		delete(g.waiters, w.name)
		close(w.quit)
	}
}

func (g *Gate) finish(w *waiter, outcome error) {
	g.mu.Lock()
	if g.waiters[w.name] == w {
		delete(g.waiters, w.name)
	}
	g.mu.Unlock()
	w.outcome = outcome
	close(w.done)
}

// poll looks w's tenant up every Poll (or on Wake) until it is routable
// or unknown, or nobody waits for it any more. It hurries the recovery
// the first time it sees the tenant waiting for one.
func (g *Gate) poll(w *waiter) {
	defer g.wg.Done()
	hurried := false
	check := func() bool {
		loc, err := w.last()
		switch {
		case errors.Is(err, ErrUnknownTenant):
			g.finish(w, ErrUnknownTenant)
			return true
		case err != nil:
			return false // the catalog is unreachable: look again
		case routable(loc):
			g.finish(w, nil)
			return true
		}
		if !hurried && g.rec != nil && loc.Tenant.State != lifeboat.TenantAvailable && loc.Tenant.State != lifeboat.TenantReadOnly {
			hurried = true
			g.rec.Hurry(w.name)
			g.c.Log.Info("tenant gate: client waiting; recovery hurried", "tenant", w.name, "state", loc.Tenant.State, "region", loc.Tenant.Region)
		}
		return false
	}
	if check() {
		return
	}
	t := time.NewTicker(g.c.Poll)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-g.ctx.Done():
			return
		case <-t.C:
		case <-w.wake:
		}
		ctx, cancel := context.WithTimeout(g.ctx, g.c.LocateTimeout)
		loc, err := g.dir.Locate(ctx, w.name)
		cancel()
		w.observe(loc, err)
		if check() {
			return
		}
	}
}
