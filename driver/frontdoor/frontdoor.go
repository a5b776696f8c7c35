// Package frontdoor is a set of TCP listeners (say one for HTTP and one for
// PostgreSQL, like a failover group's read-write listener) that forward every
// connection to the active region. It is a lifeboat.TrafficDriver.
//
// A switch happens in two steps, as Stolon's proxy does it:
//
//  1. every listener stops routing, closes every established connection to
//     the old region, waits until the goroutines that wrote to it have
//     returned, and confirms (an ack on a channel);
//  2. only when every listener has confirmed does any of them route to the
//     new region.
//
// So once step 1 has confirmed, no byte from a client can reach the old
// region through the front door.
//
// New connections that arrive while a listener routes nowhere (between the
// two steps, or before the first switch) are held for up to
// Config.HoldTimeout waiting for the new route, then forwarded to it; if no
// route comes in time they are refused.
//
// Each listener holds a lease from the control plane, renewed by Renew (and
// by Switch). A listener whose lease ran out fences itself: it refuses new
// connections and closes the established ones, until the next Renew. It
// must not keep sending writes to a region a newer controller may have
// moved away from while this one could not tell it.
//
// What a refused client sees: its TCP connect succeeds (the kernel accepts
// it before the front door does), then the connection is closed without a
// byte forwarded or answered: a read returns io.EOF, or ECONNRESET if the
// client had already written (Linux resets a socket closed with unread
// data). Nothing the client wrote reaches any upstream.
package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// Ops, in the errors the front door returns.
const (
	OpStart  lifeboat.Op = "frontdoor.start"
	OpSwitch lifeboat.Op = "frontdoor.switch"
)

// Trace events (see FrontDoor.trace), in the order a switch makes them.
const (
	evClosedOld = "closed old" // a listener confirmed step 1
	evConfirmed = "confirmed"  // every listener confirmed step 1
	evRouteNew  = "route new"  // a listener routes to the new region
)

// Stats counts a listener's connections. The counters (Accepted, Routed,
// Refused, Closed) only grow; Active and Held are how many there are now.
type Stats struct {
	Accepted uint64 // accepted from clients
	Routed   uint64 // forwarded to an upstream
	Refused  uint64 // closed unforwarded: fenced, no route in time, or the upstream did not answer
	Closed   uint64 // established, then closed by a switch or a fence
	// Active are the connections forwarded now (client and upstream legs
	// both open).
	Active int64
	// Held are the connections waiting now for a route (during a switch,
	// or before the first one), up to HoldTimeout each.
	Held int64
	// Fenced: the listener is started and its lease ran out (or was never
	// granted); it refuses every connection until the control plane
	// renews it.
	Fenced bool
}

// FrontDoor is the set of listeners and their route.
type FrontDoor struct {
	c         Config
	listeners map[string]*listener
	names     []string // sorted
	regions   map[string]bool

	switchMu sync.Mutex // one switch at a time
	mu       sync.Mutex
	region   string // "" until the first switch completes, and during one
	epoch    uint64
	since    time.Time
	started  bool
	closed   bool
	stop     chan struct{}
	wg       sync.WaitGroup

	// trace, if set (tests), is called with each step of a switch.
	trace func(event, listener string)
}

var _ lifeboat.TrafficDriver = (*FrontDoor)(nil)

// New checks c and builds a front door that listens nowhere until Start.
func New(c Config) (*FrontDoor, error) {
	if err := ValidateConfig(c); err != nil {
		return nil, err
	}
	f := &FrontDoor{c: c, listeners: map[string]*listener{}, regions: map[string]bool{}, stop: make(chan struct{})}
	f.names = lifeboat.SortedKeys(c.Listeners)
	for _, n := range f.names {
		lc := c.Listeners[n]
		f.listeners[n] = &listener{f: f, name: n, listen: lc.Listen, upstreams: lc.Upstreams, conns: map[*conn]struct{}{}, routed: make(chan struct{})}
		for r := range lc.Upstreams {
			f.regions[r] = true
		}
	}
	return f, nil
}

// Start listens on every listener's address and starts the lease check.
// Nothing is routed until the first Switch, and nothing while the lease
// has not been granted by Renew or Switch.
func (f *FrontDoor) Start() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.started {
		return lifeboat.Permanent(OpStart, "", errors.New("the front door was already started or closed: build a new one with New"))
	}
	for _, n := range f.names {
		l := f.listeners[n]
		ln, err := net.Listen("tcp", l.listen)
		if err != nil {
			for _, m := range f.names {
				if o := f.listeners[m]; o.ln != nil {
					o.ln.Close()
				}
			}
			return lifeboat.Transient(OpStart, n, fmt.Errorf("listener %q cannot listen on %s (%w): is another front door or program using that port?", n, l.listen, err))
		}
		l.ln = ln
	}
	f.started = true
	for _, n := range f.names {
		l := f.listeners[n]
		f.wg.Add(1)
		go l.accept()
	}
	f.wg.Add(1)
	go f.leaseLoop()
	return nil
}

// Lease is how long a listener routes without a Renew or a Switch.
func (f *FrontDoor) Lease() time.Duration { return f.c.Lease }

// Listeners are the listeners' names, sorted.
func (f *FrontDoor) Listeners() []string { return slices.Clone(f.names) }

// Addr is the address listener listens on ("" if unknown or not started).
func (f *FrontDoor) Addr(listener string) string {
	l := f.listeners[listener]
	if l == nil || l.ln == nil {
		return ""
	}
	return l.ln.Addr().String()
}

// Stats returns listener's counters (zero if unknown).
func (f *FrontDoor) Stats(listener string) Stats {
	l := f.listeners[listener]
	if l == nil {
		return Stats{}
	}
	f.mu.Lock()
	started := f.started
	f.mu.Unlock()
	l.mu.Lock()
	fenced := started && l.expiredLocked(l.f.c.Now())
	l.mu.Unlock()
	return Stats{Accepted: l.acceptedN.Load(), Routed: l.routedN.Load(), Refused: l.refusedN.Load(), Closed: l.closedN.Load(),
		Active: l.activeN.Load(), Held: l.heldN.Load(), Fenced: fenced}
}

// Renew extends every listener's lease to Lease from now, and lifts a
// fence. The control plane calls it periodically (in Lifeboat, the
// controller holding the election). It refuses nothing: the epoch is only
// logged, because fencing stale controllers is Switch's job.
func (f *FrontDoor) Renew(epoch uint64) {
	until := f.c.Now().Add(f.c.Lease)
	for _, n := range f.names {
		f.listeners[n].renew(until, epoch)
	}
}

// Tick checks every listener's lease now, fencing those whose lease ran
// out. A background loop calls it every Lease/10; tests that inject a
// clock call it to fence without waiting.
func (f *FrontDoor) Tick() {
	now := f.c.Now()
	for _, n := range f.names {
		f.listeners[n].checkLease(now)
	}
}

func (f *FrontDoor) leaseLoop() {
	defer f.wg.Done()
	every := max(f.c.Lease/10, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			f.Tick()
		}
	}
}

// Status reports where the front door routes: Region is "" before the
// first switch and while one is under way. A fenced listener (lease ran
// out) still reports the route it will resume on Renew. Answers maps each name to the
// listeners' addresses.
func (f *FrontDoor) Status(ctx context.Context, t lifeboat.Target, names []string) (lifeboat.Route, error) {
	f.mu.Lock()
	r := lifeboat.Route{Region: f.region, Epoch: f.epoch, Since: f.since}
	f.mu.Unlock()
	if len(names) > 0 {
		addrs := make([]string, 0, len(f.names))
		for _, n := range f.names {
			if a := f.Addr(n); a != "" {
				addrs = append(addrs, a)
			}
		}
		r.Answers = map[string][]string{}
		for _, n := range names {
			r.Answers[n] = addrs
		}
	}
	return r, nil
}

// Switch routes every listener to t.Region, in two steps (see the package
// comment). It refuses an epoch older than one it already acted for, is a
// no-op (but for recording the epoch) when already routed there, and
// renews the lease. If ctx ends during step 1 nothing routes (fail closed)
// and the error is retryable: a retry completes the switch.
func (f *FrontDoor) Switch(ctx context.Context, t lifeboat.Target, names []string) error {
	if !f.regions[t.Region] {
		return lifeboat.Permanent(OpSwitch, t.Resource, fmt.Errorf("region %q has no upstream in the front door (regions with one: %v): check the spec's region names against the front door's Upstreams", t.Region, lifeboat.SortedKeys(f.regions)))
	}
	f.switchMu.Lock()
	defer f.switchMu.Unlock()

	f.mu.Lock()
	if f.closed || !f.started {
		f.mu.Unlock()
		return lifeboat.Permanent(OpSwitch, t.Resource, errors.New("the front door is not running (closed, or never started): the process hosting it is stopping or misconfigured"))
	}
	if t.Epoch < f.epoch {
		seen := f.epoch
		f.mu.Unlock()
		return lifeboat.StaleEpoch(t.Resource, t.Epoch, seen)
	}
	f.epoch = t.Epoch // before step 1: an interrupted switch still fences older epochs
	if f.region == t.Region {
		f.mu.Unlock()
		f.Renew(t.Epoch)
		return nil
	}
	old := f.region
	f.region = ""
	f.mu.Unlock()
	// Contact from the control plane: a switch must not be undone by a
	// lease that ran out while nobody renewed it.
	f.Renew(t.Epoch)

	// Step 1: every listener stops routing and closes its connections, each
	// confirming on ack.
	type confirm struct {
		listener string
		closed   int
		err      error
	}
	ack := make(chan confirm, len(f.names))
	for _, n := range f.names {
		l := f.listeners[n]
		go func() {
			k, err := l.stopRouting(ctx)
			ack <- confirm{n, k, err}
		}()
	}
	var errs []error
	for range f.names {
		a := <-ack
		if a.err != nil {
			errs = append(errs, fmt.Errorf("listener %q: %w", a.listener, a.err))
			continue
		}
		f.event(evClosedOld, a.listener)
		f.c.Log.Info("frontdoor: listener stopped routing", "listener", a.listener, "from", old, "to", t.Region, "epoch", t.Epoch, "closed", a.closed)
	}
	if len(errs) > 0 {
		return lifeboat.Transient(OpSwitch, t.Resource, fmt.Errorf("step 1 of the switch from %q to %q did not complete (%w); nothing routes now (fail closed): retry the switch", old, t.Region, errors.Join(errs...)))
	}
	f.event(evConfirmed, "")

	// Step 2: every listener confirmed; route to the new region.
	for _, n := range f.names {
		f.listeners[n].route(t.Region)
		f.event(evRouteNew, n)
	}
	f.mu.Lock()
	f.region, f.since = t.Region, f.c.Now()
	f.mu.Unlock()
	f.c.Log.Info("frontdoor: switched", "from", old, "to", t.Region, "epoch", t.Epoch)
	return nil
}

func (f *FrontDoor) event(ev, listener string) {
	if f.trace != nil {
		f.trace(ev, listener)
	}
}

// Close stops every listener and connection and waits for their goroutines.
func (f *FrontDoor) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	started := f.started
	f.mu.Unlock()
	if !started {
		return nil
	}
	close(f.stop)
	var errs []error
	for _, n := range f.names {
		if err := f.listeners[n].close(); err != nil {
			errs = append(errs, err)
		}
	}
	f.wg.Wait()
	return errors.Join(errs...)
}

// listener is one listening socket and its connections.
type listener struct {
	f         *FrontDoor
	name      string
	listen    string
	upstreams map[string]string
	ln        net.Listener

	mu     sync.Mutex
	region string        // "" routes nowhere
	routed chan struct{} // closed (and replaced) when region is set
	until  time.Time     // the lease
	fenced bool          // the lease ran out and the connections were closed
	closed bool
	conns  map[*conn]struct{}

	routedN, refusedN, closedN, acceptedN atomic.Uint64
	activeN, heldN                        atomic.Int64
}

// conn is one client connection and its upstream leg.
type conn struct {
	client net.Conn
	up     net.Conn // nil until dialled
	region string
	cut    bool // closed by a switch, fence or Close
	cancel context.CancelFunc
	done   chan struct{} // closed when nothing writes to up any more
}

// cutLocked closes both legs; l.mu is held.
func (c *conn) cutLocked() {
	c.cut = true
	c.cancel()
	c.client.Close()
	if c.up != nil {
		c.up.Close()
	}
}

func (l *listener) accept() {
	defer l.f.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		l.acceptedN.Add(1)
		l.f.wg.Add(1)
		go l.handle(c)
	}
}

// handle routes c, holding it while the listener routes nowhere.
func (l *listener) handle(c net.Conn) {
	defer l.f.wg.Done()
	var hold <-chan time.Time
	holding := false // counted in heldN
	unhold := func() {
		if holding {
			l.heldN.Add(-1)
			holding = false
		}
	}
	defer unhold()
	for {
		l.mu.Lock()
		switch {
		case l.closed || l.expiredLocked(l.f.c.Now()):
			l.mu.Unlock()
			l.refuse(c)
			return
		case l.region != "":
			ctx, cancel := context.WithCancel(context.Background())
			cn := &conn{client: c, region: l.region, cancel: cancel, done: make(chan struct{})}
			l.conns[cn] = struct{}{}
			up := l.upstreams[l.region]
			l.mu.Unlock()
			unhold()
			l.forward(ctx, cn, up)
			return
		}
		routed := l.routed
		l.mu.Unlock()
		if hold == nil {
			if l.f.c.HoldTimeout == 0 {
				l.refuse(c)
				return
			}
			t := time.NewTimer(l.f.c.HoldTimeout)
			defer t.Stop()
			hold = t.C
			l.heldN.Add(1)
			holding = true
		}
		select {
		case <-routed:
		case <-hold:
			l.refuse(c)
			return
		case <-l.f.stop:
			l.refuse(c)
			return
		}
	}
}

func (l *listener) refuse(c net.Conn) {
	l.refusedN.Add(1)
	c.Close()
}

// expiredLocked says whether the lease ran out; l.mu is held.
func (l *listener) expiredLocked(now time.Time) bool {
	return l.fenced || !now.Before(l.until)
}

func (l *listener) forward(ctx context.Context, cn *conn, upstream string) {
	defer func() {
		l.mu.Lock()
		delete(l.conns, cn)
		l.mu.Unlock()
		cn.cancel()
		cn.client.Close()
		if cn.up != nil {
			cn.up.Close()
		}
		close(cn.done)
	}()
	d := net.Dialer{Timeout: l.f.c.DialTimeout}
	u, err := d.DialContext(ctx, "tcp", upstream)
	if err != nil {
		if ctx.Err() == nil {
			l.refusedN.Add(1)
			l.f.c.Log.Warn("frontdoor: upstream did not answer; client connection closed", "listener", l.name, "region", cn.region, "upstream", upstream, "err", err)
		}
		return
	}
	l.mu.Lock()
	if cn.cut {
		l.mu.Unlock()
		u.Close()
		return
	}
	cn.up = u
	l.mu.Unlock()
	l.routedN.Add(1)
	l.activeN.Add(1)
	defer l.activeN.Add(-1)

	pipe := func(dst, src net.Conn, done chan<- error) {
		// io.Copy between TCP conns splices on Linux: no copy through user space.
		_, err := io.Copy(dst, src)
		// Pass the half-close on, so the peer can finish its answer.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- err
	}
	toUp, toClient := make(chan error, 1), make(chan error, 1)
	go pipe(u, cn.client, toUp)
	go pipe(cn.client, u, toClient)
	select {
	case err := <-toUp:
		if err == nil {
			// The client half-closed cleanly: it still reads the answer,
			// until the upstream ends it.
			<-toClient
		} else {
			cn.client.Close()
			u.Close()
			<-toClient
		}
	case <-toClient:
		// The upstream ended: nobody is left to receive the client's bytes.
		cn.client.Close()
		u.Close()
		<-toUp
	}
	// Both pipes have returned: nothing can write to u any more.
}

// stopRouting is step 1 of a switch for this listener: route nowhere, close
// every connection, and return once no goroutine can write to an upstream.
func (l *listener) stopRouting(ctx context.Context) (int, error) {
	l.mu.Lock()
	l.region = ""
	cut := make([]*conn, 0, len(l.conns))
	for cn := range l.conns {
		cn.cutLocked()
		cut = append(cut, cn)
	}
	l.mu.Unlock()
	l.closedN.Add(uint64(len(cut)))
	for i, cn := range cut {
		select {
		case <-cn.done:
		case <-ctx.Done():
			return i, fmt.Errorf("%d of its %d connections to the old region still closing (%w)", len(cut)-i, len(cut), ctx.Err())
		}
	}
	return len(cut), nil
}

// route is step 2: route new connections to region and wake held ones.
func (l *listener) route(region string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.region = region
	close(l.routed)
	l.routed = make(chan struct{})
}

func (l *listener) renew(until time.Time, epoch uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fenced && !l.until.IsZero() {
		l.f.c.Log.Info("frontdoor: lease renewed, routing again", "listener", l.name, "epoch", epoch)
	}
	l.fenced = false
	if until.After(l.until) {
		l.until = until
	}
}

func (l *listener) checkLease(now time.Time) {
	l.mu.Lock()
	if l.fenced || now.Before(l.until) {
		l.mu.Unlock()
		return
	}
	l.fenced = true
	n := len(l.conns)
	for cn := range l.conns {
		cn.cutLocked()
	}
	region, granted := l.region, !l.until.IsZero()
	l.mu.Unlock()
	l.closedN.Add(uint64(n))
	if granted || n > 0 {
		l.f.c.Log.Warn("frontdoor: lease expired: fenced, refusing connections until the control plane renews it; check that the controller is running and can reach this front door",
			"listener", l.name, "region", region, "closed", n)
	}
}

func (l *listener) close() error {
	l.mu.Lock()
	l.closed = true
	for cn := range l.conns {
		cn.cutLocked()
	}
	l.mu.Unlock()
	return l.ln.Close()
}
