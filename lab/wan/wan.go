// Package wan is the WAN link between two regions of the lab (and in front of
// each region's ingress): a TCP proxy, Listen → Upstream, whose faults can be
// injected without root. It wraps Toxiproxy used as a library.
//
// A link has at most one fault at a time; setting a fault replaces the
// previous one, Heal removes it.
//
//   - Down: the listener is closed (new connections are refused, as from a
//     dead region) and every established connection is closed.
//   - Hang: connections are accepted but no byte passes in either direction;
//     bytes are held, not dropped, so that after Heal the streams resume
//     intact, as TCP does when a black-holed route comes back.
//   - Latency: every byte is delayed by d ± jitter in each direction (one-way
//     delay; a round trip gains 2d).
package wan

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"

	"github.com/lifeboat-dr/lifeboat"
)

// Fault is the fault currently injected on a link.
type Fault string

const (
	FaultNone    Fault = ""
	FaultDown    Fault = "down"
	FaultHang    Fault = "hang"
	FaultLatency Fault = "latency"
	FaultLoss    Fault = "loss"
)

// Ops name what a link was asked to do, in the errors it returns.
const (
	OpOpen    lifeboat.Op = "wan.open"
	OpDown    lifeboat.Op = "wan.down"
	OpHang    lifeboat.Op = "wan.hang"
	OpLatency lifeboat.Op = "wan.latency"
	OpLoss    lifeboat.Op = "wan.loss"
	OpHeal    lifeboat.Op = "wan.heal"
	OpClose   lifeboat.Op = "wan.close"
)

// ErrClosed is returned by a link used after Close.
var ErrClosed = errors.New("WAN link is closed")

// Config describes one link.
type Config struct {
	// Name names the link in errors and logs, e.g. "primary-secondary-pg".
	Name string
	// Listen is the address clients dial, host:port; port 0 picks a free one
	// (read it back with Addr).
	Listen string
	// Upstream is the address the link forwards to, host:port. It need not
	// be up when the link opens: each accepted connection dials it.
	Upstream string
}

// DefaultConfig returns a config listening on a free loopback port.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:0"}
}

// ValidateConfig reports every problem in c at once.
func ValidateConfig(c Config) error {
	var errs []error
	if strings.TrimSpace(c.Name) == "" {
		errs = append(errs, errors.New("wan: config: Name is empty; name the link after the regions it joins, e.g. \"primary-secondary-pg\""))
	}
	if err := checkAddr(c.Listen, true); err != nil {
		errs = append(errs, fmt.Errorf("wan: config %q: Listen: %w", c.Name, err))
	}
	if err := checkAddr(c.Upstream, false); err != nil {
		errs = append(errs, fmt.Errorf("wan: config %q: Upstream: %w", c.Name, err))
	}
	return errors.Join(errs...)
}

func checkAddr(addr string, portZeroOK bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (%v); use e.g. 127.0.0.1:15432", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host; give one explicitly, e.g. 127.0.0.1, so the link never listens on every interface", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port %q is not a number in 0..65535", addr, port)
	}
	if p == 0 && !portZeroOK {
		return fmt.Errorf("%q: port 0 is only allowed for Listen; give the upstream's real port", addr)
	}
	return nil
}

// hangToxic holds every byte until it is removed. Toxiproxy's own "timeout"
// toxic with timeout 0 drops the bytes instead, which would corrupt a
// PostgreSQL stream that resumes after Heal.
type hangToxic struct {
	// discard is set once the link's connections are closed (Down, Close):
	// removing the toxic then drops the held bytes instead of flushing them
	// into closed connections, which Toxiproxy would retry for 5 s a chunk.
	discard atomic.Bool
}

func (*hangToxic) Pipe(stub *toxics.ToxicStub) { <-stub.Interrupt }

// Cleanup runs when the toxic is removed. Closing the stub tells Toxiproxy
// not to flush; the drain lets the upstream stage see its input close.
func (t *hangToxic) Cleanup(stub *toxics.ToxicStub) {
	if !t.discard.Load() {
		return
	}
	go func(in <-chan *stream.StreamChunk) {
		for range in {
		}
	}(stub.Input)
	stub.Close()
}

// latencyToxic is Toxiproxy's latency, plus what hangToxic has: once the
// link is down, removing it drops the bytes it delays instead of pushing
// them into closed connections (which blocks Toxiproxy's RemoveToxic for
// good while it holds the proxy's lock).
type latencyToxic struct {
	Latency int64 `json:"latency"`
	Jitter  int64 `json:"jitter"`
	discard atomic.Bool
}

func (t *latencyToxic) delay() time.Duration {
	d := t.Latency
	if t.Jitter > 0 {
		d += rand.Int64N(2*t.Jitter+1) - t.Jitter
	}
	return time.Duration(d) * time.Millisecond
}

func (t *latencyToxic) Pipe(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			sleep := t.delay() - time.Since(c.Timestamp)
			select {
			case <-time.After(sleep):
				c.Timestamp = c.Timestamp.Add(sleep)
				stub.Output <- c
			case <-stub.Interrupt:
				if !t.discard.Load() {
					stub.Output <- c // healed: deliver it now
				}
				return
			}
		}
	}
}

func (t *latencyToxic) Cleanup(stub *toxics.ToxicStub) {
	if !t.discard.Load() {
		return
	}
	go func(in <-chan *stream.StreamChunk) {
		for range in {
		}
	}(stub.Input)
	stub.Close()
}

const latencyToxicType = "lifeboat_latency"

func init() { toxics.Register(latencyToxicType, new(latencyToxic)) }

// hangToxicType is registered once, process-wide, in Toxiproxy's registry.
const hangToxicType = "lifeboat_hang"

func init() { toxics.Register(hangToxicType, new(hangToxic)) }

// Link is one TCP proxy with injectable faults. Its methods are safe for
// concurrent use.
type Link struct {
	name     string
	addr     string
	upstream string

	mu     sync.Mutex // serialises fault changes
	proxy  *toxiproxy.Proxy
	fault  Fault
	toxics []string // names of the toxics installed for the current fault
	closed bool
}

// Open starts a link listening on c.Listen. The listener is bound when Open
// returns.
func Open(c Config) (*Link, error) {
	if err := ValidateConfig(c); err != nil {
		return nil, lifeboat.Permanent(OpOpen, c.Name, err)
	}
	// Toxiproxy wants an API server for its logger and metrics; it is never
	// started, so no HTTP port is opened.
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(server, c.Name, c.Listen, c.Upstream)
	if err := p.Start(); err != nil {
		return nil, lifeboat.Transient(OpOpen, c.Name, fmt.Errorf("listen on %s: %w; is another process (or another link) using that port?", c.Listen, err))
	}
	p.Lock()
	addr := p.Listen // resolved: the real port when Listen asked for 0
	p.Unlock()
	return &Link{name: c.Name, addr: addr, upstream: c.Upstream, proxy: p}, nil
}

// Addr is the address clients dial (the resolved port when Listen had 0).
func (l *Link) Addr() string { return l.addr }

// Upstream is the address the link forwards to.
func (l *Link) Upstream() string { return l.upstream }

// Name is the link's name.
func (l *Link) Name() string { return l.name }

// Fault reports the fault currently injected.
func (l *Link) Fault() Fault {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fault
}

// Down cuts the link: new connections are refused and established ones are
// closed. Toxiproxy's own "down" (disabling the proxy) does both.
func (l *Link) Down() error {
	return l.set(OpDown, FaultDown, nil)
}

// Hang makes the link accept connections but pass nothing, so clients see
// timeouts rather than refusals. Established connections stall too.
func (l *Link) Hang() error {
	return l.set(OpHang, FaultHang, []toxicSpec{
		{name: "hang_upstream", typ: hangToxicType, stream: "upstream"},
		{name: "hang_downstream", typ: hangToxicType, stream: "downstream"},
	})
}

// Latency delays every byte by d ± jitter in each direction. Toxiproxy works
// in whole milliseconds: d must be at least 1ms, jitter at most d.
func (l *Link) Latency(d, jitter time.Duration) error {
	if d < time.Millisecond || jitter < 0 || jitter > d {
		return lifeboat.Permanent(OpLatency, l.name, fmt.Errorf("latency %v ± %v is not allowed: latency must be ≥ 1ms and jitter between 0 and the latency; use Heal to remove latency", d, jitter))
	}
	attrs := fmt.Sprintf(`{"latency":%d,"jitter":%d}`, d.Milliseconds(), jitter.Milliseconds())
	return l.set(OpLatency, FaultLatency, []toxicSpec{
		{name: "latency_upstream", typ: latencyToxicType, stream: "upstream", attrs: attrs},
		{name: "latency_downstream", typ: latencyToxicType, stream: "downstream", attrs: attrs},
	})
}

// Loss makes a share p (0 < p < 1) of the connections opened through the
// link from now on pass nothing: the nearest Toxiproxy has to packet loss
// (this kernel has no netem). A client that opens a connection per request,
// like a probe, sees about p of its requests time out.
func (l *Link) Loss(p float64) error {
	if p <= 0 || p >= 1 {
		return lifeboat.Permanent(OpLoss, l.name, fmt.Errorf("loss %g is not allowed: give a share between 0 and 1 (0.05 for 5%%); use Heal to remove it", p))
	}
	return l.set(OpLoss, FaultLoss, []toxicSpec{
		{name: "loss_upstream", typ: hangToxicType, stream: "upstream", toxicity: p},
	})
}

// Heal removes every fault: the link listens again and passes bytes at full
// speed; bytes held by Hang are delivered.
func (l *Link) Heal() error {
	return l.set(OpHeal, FaultNone, nil)
}

// Close stops the link: the listener is closed and every connection through
// it is closed. Close is idempotent.
func (l *Link) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	// Stop first so held bytes are not flushed to either side, then release
	// the goroutines that hold them.
	l.proxy.Stop()
	l.removeToxics(l.toxics, true)
	l.toxics = nil
	l.fault = FaultNone
	return nil
}

type toxicSpec struct {
	name, typ, stream, attrs string
	// toxicity is the share of connections the toxic applies to; 0 means 1.
	toxicity float64
}

func (t toxicSpec) share() float64 {
	if t.toxicity == 0 {
		return 1
	}
	return t.toxicity
}

// set moves the link to fault f. The new fault is installed before the old
// one is removed, so there is no instant with no fault at all (Hang → Down
// never lets held bytes through).
func (l *Link) set(op lifeboat.Op, f Fault, want []toxicSpec) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return lifeboat.Permanent(op, l.name, fmt.Errorf("%w; open a new link", ErrClosed))
	}
	if f == l.fault && f != FaultLatency && f != FaultLoss {
		return nil // idempotent
	}

	var installed []string
	for _, t := range want {
		if contains(l.toxics, t.name) {
			// Same toxic, new attributes (Latency with other numbers).
			body := fmt.Sprintf(`{"attributes":%s,"toxicity":%g}`, orEmpty(t.attrs), t.share())
			if _, err := l.proxy.Toxics.UpdateToxicJson(t.name, strings.NewReader(body)); err != nil {
				return lifeboat.Transient(op, l.name, fmt.Errorf("update toxic %s: %w", t.name, err))
			}
			installed = append(installed, t.name)
			continue
		}
		attrs := t.attrs
		if attrs == "" {
			attrs = "{}"
		}
		body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":%g,"attributes":%s}`, t.name, t.typ, t.stream, t.share(), attrs)
		if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
			return lifeboat.Transient(op, l.name, fmt.Errorf("add toxic %s: %w", t.name, err))
		}
		installed = append(installed, t.name)
	}

	if f == FaultDown {
		l.proxy.Stop() // closes the listener and every connection
	} else if !l.running() {
		if err := l.proxy.Start(); err != nil {
			return lifeboat.Transient(op, l.name, fmt.Errorf("listen again on %s after down: %w; another process took the port while the link was down: stop it, or close this link and open one on another port", l.addr, err))
		}
	}

	var stale []string
	for _, n := range l.toxics {
		if !contains(installed, n) {
			stale = append(stale, n)
		}
	}
	l.removeToxics(stale, f == FaultDown)
	l.toxics = installed
	l.fault = f
	return nil
}

func (l *Link) running() bool {
	l.proxy.Lock()
	defer l.proxy.Unlock()
	return l.proxy.Enabled
}

// removeToxics removes the named toxics; discard drops the bytes a hang
// holds (the connections are already closed).
func (l *Link) removeToxics(names []string, discard bool) {
	for _, n := range names {
		if w := l.proxy.Toxics.GetToxic(n); w != nil && discard {
			if h, ok := w.Toxic.(*hangToxic); ok {
				h.discard.Store(true)
			}
			if l, ok := w.Toxic.(*latencyToxic); ok {
				l.discard.Store(true)
			}
		}
		// ErrToxicNotFound cannot happen: only this link adds toxics.
		_ = l.proxy.Toxics.RemoveToxic(context.Background(), n)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (l *Link) String() string {
	return fmt.Sprintf("wan link %s (%s → %s)", l.name, l.addr, l.upstream)
}

func orEmpty(attrs string) string {
	if attrs == "" {
		return "{}"
	}
	return attrs
}
