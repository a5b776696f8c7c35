package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// Traffic ops, in the errors Front returns.
const (
	OpFrontOpen   lifeboat.Op = "front.open"
	OpFrontSwitch lifeboat.Op = "front.switch"
)

// Front is the service's public address: a TCP listener that forwards every
// connection to the active region's ingress. It is the lab's
// lifeboat.TrafficDriver: Switch moves it to another region in two steps
// (close every connection to the old region and stop routing, then route to
// the new one), and refuses an epoch older than one it already acted for.
type Front struct {
	ln       net.Listener
	ingress  map[string]string // region → ingress address
	mu       sync.Mutex
	region   string // "" while between regions: connections are refused
	epoch    uint64
	since    time.Time
	conns    map[net.Conn]*leg // client connection → where it goes
	closed   bool
	wg       sync.WaitGroup
	resource string
}

var _ lifeboat.TrafficDriver = (*Front)(nil)

// leg is one forwarded connection's upstream side.
type leg struct {
	region string
	up     net.Conn // nil until dialled
}

func (l *leg) close(c net.Conn) {
	c.Close()
	if l.up != nil {
		l.up.Close()
	}
}

// OpenFront listens on listen and routes nowhere until the first Switch.
func OpenFront(listen string, ingress map[string]string) (*Front, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, lifeboat.Transient(OpFrontOpen, "", fmt.Errorf("the front listener cannot listen on %s (%w): is another lab or program using it? 'lifeboat lab down' stops an old lab", listen, err))
	}
	f := &Front{ln: ln, ingress: ingress, conns: map[net.Conn]*leg{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// Addr is the public address.
func (f *Front) Addr() string { return f.ln.Addr().String() }

func (f *Front) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		region := f.region
		if f.closed || region == "" {
			// Between the two steps of a switch nothing is routed: a
			// client retries rather than writing to the old region.
			f.mu.Unlock()
			c.Close()
			continue
		}
		up := f.ingress[region]
		f.conns[c] = &leg{region: region}
		f.wg.Add(1)
		f.mu.Unlock()
		go f.forward(c, up)
	}
}

func (f *Front) forward(c net.Conn, upstream string) {
	defer f.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		c.Close()
	}()
	u, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	f.mu.Lock()
	l, ok := f.conns[c]
	if ok {
		l.up = u
	}
	f.mu.Unlock()
	if !ok {
		return // switched away while dialling
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Half-close so the other direction can finish its answer.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	// One direction ended (HTTP clients do not half-close): end the other,
	// so a hung upstream cannot keep this connection forever.
	c.Close()
	u.Close()
	<-done
}

// Status reports where the front routes. Answers maps each name to the
// front's address and the ingress behind it.
func (f *Front) Status(ctx context.Context, t lifeboat.Target, names []string) (lifeboat.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := lifeboat.Route{Region: f.region, Epoch: f.epoch, Since: f.since}
	if f.region != "" {
		r.Answers = map[string][]string{}
		for _, n := range names {
			r.Answers[n] = []string{f.Addr(), f.ingress[f.region]}
		}
	}
	return r, nil
}

// Switch routes the front to t.Region's ingress: first every connection to
// the old region is closed and nothing is routed, then the new region is.
func (f *Front) Switch(ctx context.Context, t lifeboat.Target, names []string) error {
	if _, ok := f.ingress[t.Region]; !ok {
		regions := make([]string, 0, len(f.ingress))
		for r := range f.ingress {
			regions = append(regions, r)
		}
		sort.Strings(regions)
		return lifeboat.Permanent(OpFrontSwitch, t.Resource, fmt.Errorf("region %q has no ingress in the lab (regions with one: %v): check the spec's region names against the lab's", t.Region, regions))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return lifeboat.Permanent(OpFrontSwitch, t.Resource, errors.New("the front listener is closed: the lab daemon is stopping"))
	}
	if t.Epoch < f.epoch {
		return lifeboat.StaleEpoch(t.Resource, t.Epoch, f.epoch)
	}
	if f.region == t.Region {
		// Already there: a retry, or a newer epoch that routes the same way.
		f.epoch = t.Epoch
		return nil
	}
	// Step 1: stop routing to the old region.
	f.region = ""
	for c, l := range f.conns {
		l.close(c)
		delete(f.conns, c)
	}
	// Step 2: route to the new one.
	f.region, f.epoch, f.since = t.Region, t.Epoch, time.Now()
	return nil
}

// Route returns the region and epoch the front routes to now.
func (f *Front) Route() (region string, epoch uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.region, f.epoch
}

// Close stops the listener and every connection through it, and waits for
// its goroutines.
func (f *Front) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	err := f.ln.Close()
	for c, l := range f.conns {
		l.close(c)
	}
	f.mu.Unlock()
	f.wg.Wait()
	return err
}
