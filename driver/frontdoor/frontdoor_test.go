package frontdoor

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

func TestValidateConfig(t *testing.T) {
	c := DefaultConfig()
	if err := ValidateConfig(c); err == nil || !strings.Contains(err.Error(), "no listeners") {
		t.Fatalf("empty config: %v", err)
	}
	c.Listeners["http"] = ListenerConfig{Listen: "127.0.0.1:0", Upstreams: map[string]string{"west": "127.0.0.1:1", "east": "127.0.0.1:2"}}
	c.Listeners["postgres"] = ListenerConfig{Listen: "127.0.0.1:0", Upstreams: map[string]string{"west": "127.0.0.1:3"}}
	err := ValidateConfig(c)
	if err == nil || !strings.Contains(err.Error(), "every listener needs an upstream in every region") {
		t.Fatalf("mismatched regions: %v", err)
	}
	c.Listeners["postgres"] = ListenerConfig{Listen: "127.0.0.1:0", Upstreams: map[string]string{"west": "127.0.0.1:3", "east": "127.0.0.1:4"}}
	if err := ValidateConfig(c); err != nil {
		t.Fatal(err)
	}
}

func TestForwardsBothListeners(t *testing.T) {
	l := newLab(t, nil)
	ctx := context.Background()
	l.fd.Renew(1)
	if err := l.fd.Switch(ctx, target("west", 1), nil); err != nil {
		t.Fatal(err)
	}
	msgs := map[string]string{
		"http":     "GET / HTTP/1.1\r\nHost: shop\r\n\r\n",
		"postgres": "\x00\x00\x00\x08\x04\xd2\x16\x2f", // an SSLRequest
	}
	for ln, msg := range msgs {
		roundTrip(t, l.fd.Addr(ln), msg)
	}
	for ln, msg := range msgs {
		west := l.up[ln]["west"]
		waitFor(t, ln+" west's record", func() bool { return west.total() == len(msg) })
		rec := west.record()
		if len(rec) != 1 || string(rec[0]) != msg {
			t.Errorf("%s west received %q, want one connection with %q", ln, rec, msg)
		}
		if n := l.up[ln]["east"].total(); n != 0 {
			t.Errorf("%s east received %d bytes before any switch to it", ln, n)
		}
		if s := l.fd.Stats(ln); s.Routed != 1 || s.Refused != 0 {
			t.Errorf("%s stats %+v", ln, s)
		}
	}
}

// frame is what the clients of the headline test write: a sequence number,
// whether the switch's step 1 had confirmed when the client wrote it, and
// which client wrote it.
const frameLen = 24

func frame(seq, after, who uint64) []byte {
	b := make([]byte, frameLen)
	binary.BigEndian.PutUint64(b[0:], seq)
	binary.BigEndian.PutUint64(b[8:], after)
	binary.BigEndian.PutUint64(b[16:], who)
	return b
}

// frames decodes a connection's record: (after, who) of each frame, with a
// trailing partial frame decoded as far as it goes.
func frames(rec []byte) (after, who []uint64) {
	for i := 0; i < len(rec); i += frameLen {
		f := rec[i:min(i+frameLen, len(rec))]
		if len(f) >= 16 {
			after = append(after, binary.BigEndian.Uint64(f[8:16]))
		}
		if len(f) >= 24 {
			who = append(who, binary.BigEndian.Uint64(f[16:24]))
		}
	}
	return after, who
}

const (
	writer = 1 // one connection written continuously, reconnecting when cut
	opener = 2 // a new connection for each frame
)

// TestSwitchNoByteReachesOldRegion is the headline: once step 1 of a
// switch has confirmed, not one byte a client writes reaches the old
// region, as recorded by the old region's upstream itself.
//
// Clients stamp every frame with whether step 1 had confirmed when they
// wrote it (the flag is set by the switch's own "confirmed" event, after
// every listener acked). A byte written before the confirmation may still
// be in a socket buffer on its way to west; a byte written after it must
// never arrive there, through a connection cut by the switch or a new one.
func TestSwitchNoByteReachesOldRegion(t *testing.T) {
	l := newLab(t, nil)
	ctx := context.Background()
	var after atomic.Uint64
	l.fd.Renew(1)
	if err := l.fd.Switch(ctx, target("west", 1), nil); err != nil {
		t.Fatal(err)
	}
	l.fd.trace = func(ev, _ string) {
		if ev == evConfirmed {
			after.Store(1)
		}
	}
	addr := l.fd.Addr("postgres")
	west, east := l.up["postgres"]["west"], l.up["postgres"]["east"]

	var seq atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reconnects atomic.Int64
	wg.Add(2)
	go func() { // writer: one connection, ping-pong without pause
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				continue
			}
			reconnects.Add(1)
			buf := make([]byte, frameLen)
			for {
				select {
				case <-stop:
					c.Close()
					return
				default:
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(frame(seq.Add(1), after.Load(), writer)); err != nil {
					break
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					break
				}
			}
			c.Close()
		}
	}()
	go func() { // opener: new connections all through the switch
		defer wg.Done()
		buf := make([]byte, frameLen)
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				continue
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(frame(seq.Add(1), after.Load(), opener)); err == nil {
				_, _ = io.ReadFull(c, buf)
			}
			c.Close()
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	waitFor(t, "west to receive traffic from both clients", func() bool {
		return west.total() > 500*frameLen && len(west.record()) > 20
	})
	if err := l.fd.Switch(ctx, target("east", 2), nil); err != nil {
		t.Fatal(err)
	}
	if after.Load() != 1 {
		t.Fatal("the switch returned without its step 1 confirming")
	}
	// East gets the frames written after the confirmation, from the
	// writer's new connection and from new connections.
	waitFor(t, "east to receive post-switch frames from both clients", func() bool {
		got := map[uint64]int{}
		for _, rec := range east.record() {
			a, w := frames(rec)
			for i := range w {
				if a[i] == 1 {
					got[w[i]]++
				}
			}
		}
		return got[writer] > 100 && got[opener] > 10
	})
	// West's record is final once each of its connections has ended.
	waitFor(t, "every west connection to end", west.allEnded)

	recs := west.record()
	var n int
	for i, rec := range recs {
		a, _ := frames(rec)
		n += len(a)
		for j, f := range a {
			if f != 0 {
				t.Fatalf("west connection %d, frame %d: written after step 1 confirmed, yet west received it", i, j)
			}
		}
	}
	if n == 0 {
		t.Fatal("west received nothing: the test exercised nothing")
	}
	if s := l.fd.Stats("postgres"); s.Closed == 0 {
		t.Errorf("the switch closed no established connection (stats %+v): the writer was not cut", s)
	}
	if reconnects.Load() < 2 {
		t.Errorf("the writer never reconnected")
	}
	t.Logf("west: %d connections, %d frames, all written before step 1 confirmed; east: %d connections", len(recs), n, len(east.record()))
}

// TestListenersConfirmBeforeRouting: no listener routes to the new region
// before every listener has closed its connections to the old one.
func TestListenersConfirmBeforeRouting(t *testing.T) {
	l := newLab(t, nil)
	ctx := context.Background()
	var mu sync.Mutex
	var events []string
	l.fd.trace = func(ev, ln string) {
		mu.Lock()
		events = append(events, ev+":"+ln)
		mu.Unlock()
	}
	l.fd.Renew(1)
	if err := l.fd.Switch(ctx, target("west", 1), nil); err != nil {
		t.Fatal(err)
	}
	// An established connection on each listener, for step 1 to close.
	var open []net.Conn
	for _, ln := range []string{"http", "postgres"} {
		c, err := net.Dial("tcp", l.fd.Addr(ln))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTripOn(t, c, "hello")
		open = append(open, c)
	}
	mu.Lock()
	events = nil
	mu.Unlock()
	if err := l.fd.Switch(ctx, target("east", 2), nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := slices.Clone(events)
	mu.Unlock()
	firstRoute := slices.IndexFunc(got, func(e string) bool { return strings.HasPrefix(e, evRouteNew) })
	if firstRoute < 0 {
		t.Fatalf("no listener routed to the new region: %q", got)
	}
	for _, ln := range []string{"http", "postgres"} {
		i := slices.Index(got, evClosedOld+":"+ln)
		if i < 0 || i > firstRoute {
			t.Fatalf("listener %s confirmed at %d, after the first route to the new region at %d: %q", ln, i, firstRoute, got)
		}
		if !slices.Contains(got, evRouteNew+":"+ln) {
			t.Fatalf("listener %s never routed to the new region: %q", ln, got)
		}
	}
	for i, c := range open {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("connection %d to the old region still open after the switch", i)
		}
	}
	t.Logf("events: %q", got)
}

func roundTripOn(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo of %q: got %q, %v", msg, got, err)
	}
}

// TestLeaseExpiryFences: a listener whose lease ran out closes its
// connections and refuses new ones, forwarding nothing, until Renew.
//
// What the refused client sees: the dial succeeds, then its read returns
// io.EOF (or ECONNRESET: it had written, and Linux resets a socket closed
// with unread data); no byte it wrote reaches any upstream.
func TestLeaseExpiryFences(t *testing.T) {
	l := newLab(t, func(c *Config) { c.Lease = 5 * time.Second })
	ctx := context.Background()
	l.fd.Renew(1)
	if err := l.fd.Switch(ctx, target("west", 1), nil); err != nil {
		t.Fatal(err)
	}
	addr := l.fd.Addr("http")
	west := l.up["http"]["west"]
	established, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer established.Close()
	roundTripOn(t, established, "before")

	// Past the lease, before any lease check ran: new connections are
	// refused on the clock alone.
	l.clk.Advance(5*time.Second + time.Millisecond)
	before := west.total()
	conns := len(west.record())
	refused := l.fd.Stats("http").Refused
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial to a fenced listener: %v (the kernel should accept it)", err)
	}
	_, _ = c.Write([]byte("must not arrive"))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := c.Read(make([]byte, 16))
	c.Close()
	if n != 0 || !(errors.Is(err, io.EOF) || isReset(err)) {
		t.Fatalf("fenced listener: read got %d bytes, %v; want 0 bytes and io.EOF or a reset", n, err)
	}
	if got := l.fd.Stats("http").Refused; got != refused+1 {
		t.Errorf("Refused: got %d, want %d", got, refused+1)
	}
	// The lease check closes the established connection.
	l.fd.Tick()
	established.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := established.Read(make([]byte, 1)); err == nil {
		t.Fatal("the established connection survived the fence")
	}
	if s := l.fd.Stats("http"); s.Closed != 1 {
		t.Errorf("Closed: got %d, want 1", s.Closed)
	}
	waitFor(t, "west's connection to end", west.allEnded)
	if got, gotConns := west.total(), len(west.record()); got != before || gotConns != conns {
		t.Fatalf("west received %d bytes on %d connections while fenced (had %d on %d)", got, gotConns, before, conns)
	}

	// Renew lifts the fence.
	l.fd.Renew(1)
	roundTrip(t, addr, "after renew")
	if got := west.total(); got != before+len("after renew") {
		t.Fatalf("west: got %d bytes, want %d", got, before+len("after renew"))
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func TestSwitchEpochsAndStatus(t *testing.T) {
	l := newLab(t, nil)
	ctx := context.Background()
	r, err := l.fd.Status(ctx, target("west", 0), []string{"shop.example"})
	if err != nil || r.Region != "" {
		t.Fatalf("before any switch: %+v, %v", r, err)
	}
	if err := l.fd.Switch(ctx, target("west", 3), nil); err != nil {
		t.Fatal(err)
	}
	r, _ = l.fd.Status(ctx, target("west", 3), []string{"shop.example"})
	if r.Region != "west" || r.Epoch != 3 || !r.Since.Equal(l.clk.Now()) || len(r.Answers["shop.example"]) != 2 {
		t.Fatalf("status: %+v", r)
	}
	since := r.Since

	// Idempotent: the same switch again changes nothing, and cuts nothing.
	c, err := net.Dial("tcp", l.fd.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTripOn(t, c, "one")
	l.clk.Advance(time.Second)
	if err := l.fd.Switch(ctx, target("west", 3), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.fd.Switch(ctx, target("west", 4), nil); err != nil {
		t.Fatal(err)
	}
	roundTripOn(t, c, "two")
	r, _ = l.fd.Status(ctx, target("west", 4), nil)
	if r.Region != "west" || r.Epoch != 4 || !r.Since.Equal(since) {
		t.Fatalf("status after idempotent switches: %+v (since %v)", r, since)
	}

	// Stale epoch refused, and not retryable.
	err = l.fd.Switch(ctx, target("east", 2), nil)
	if !errors.Is(err, lifeboat.ErrStaleEpoch) || lifeboat.IsRetryable(err) {
		t.Fatalf("stale switch: %v", err)
	}
	roundTripOn(t, c, "three") // still routed to west, untouched

	// Unknown region: permanent.
	err = l.fd.Switch(ctx, target("north", 5), nil)
	if err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "north") {
		t.Fatalf("unknown region: %v", err)
	}

	if err := l.fd.Switch(ctx, target("east", 5), nil); err != nil {
		t.Fatal(err)
	}
	r, _ = l.fd.Status(ctx, target("east", 5), nil)
	if r.Region != "east" || r.Epoch != 5 || !r.Since.After(since) {
		t.Fatalf("status after switch: %+v", r)
	}
	roundTrip(t, l.fd.Addr("http"), "to east")
	if l.up["http"]["east"].total() != len("to east") {
		t.Fatal("east did not receive the new connection")
	}
}

// TestHeldUntilRouted: a connection that arrives before any route waits
// (HoldTimeout) and is forwarded to the region the switch routes to.
func TestHeldUntilRouted(t *testing.T) {
	l := newLab(t, func(c *Config) { c.HoldTimeout = time.Minute })
	l.fd.Renew(1) // without a lease it would be refused, not held
	c, err := net.Dial("tcp", l.fd.Addr("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	if err := l.fd.Switch(context.Background(), target("east", 1), nil); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "early" {
		t.Fatalf("held connection: %q, %v", got, err)
	}
	if l.up["postgres"]["west"].total() != 0 {
		t.Fatal("west received bytes")
	}
}

// TestNoRouteRefused: with HoldTimeout 0 a connection with no route is
// refused at once, and forwarded nowhere.
func TestNoRouteRefused(t *testing.T) {
	l := newLab(t, func(c *Config) { c.HoldTimeout = 0 })
	l.fd.Renew(1)
	c, err := net.Dial("tcp", l.fd.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("got %d, %v; want io.EOF", n, err)
	}
	waitFor(t, "the refusal to be counted", func() bool { return l.fd.Stats("http").Refused == 1 })
}
