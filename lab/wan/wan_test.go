package wan

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// patience bounds every wait for something that should happen; tests never
// depend on it being short.
const patience = 10 * time.Second

// echo starts a line echo server on loopback and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func openLink(t *testing.T, upstream string) *Link {
	t.Helper()
	c := DefaultConfig()
	c.Name = "test-" + strings.ToLower(t.Name())
	c.Upstream = upstream
	l, err := Open(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, patience)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) send(line string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(patience))
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recv reads one line, waiting at most d.
func (c *client) recv(d time.Duration) (string, error) {
	c.c.SetReadDeadline(time.Now().Add(d))
	s, err := c.r.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

func (c *client) roundTrip(line string) {
	c.t.Helper()
	c.send(line)
	got, err := c.recv(patience)
	if err != nil || got != line {
		c.t.Fatalf("round trip %q: got %q, %v", line, got, err)
	}
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func TestBytesPass(t *testing.T) {
	l := openLink(t, echo(t))
	if l.Fault() != FaultNone {
		t.Fatalf("fresh link has fault %q", l.Fault())
	}
	c := dial(t, l.Addr())
	for _, s := range []string{"hello", "world", strings.Repeat("x", 100000)} {
		c.roundTrip(s)
	}
}

func TestDownRefusesNewAndBreaksEstablished(t *testing.T) {
	l := openLink(t, echo(t))
	c := dial(t, l.Addr())
	c.roundTrip("before")

	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	if l.Fault() != FaultDown {
		t.Fatalf("fault = %q, want down", l.Fault())
	}
	if _, err := c.recv(patience); err == nil || isTimeout(err) {
		t.Fatalf("established connection after Down: read returned %v, want it closed (EOF or reset)", err)
	}
	if nc, err := net.DialTimeout("tcp", l.Addr(), patience); err == nil {
		nc.Close()
		t.Fatal("dial after Down succeeded, want refused")
	}
	if err := l.Down(); err != nil {
		t.Fatalf("second Down: %v (want idempotent)", err)
	}

	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	dial(t, l.Addr()).roundTrip("after heal")
}

func TestHangStallsWithoutRefusing(t *testing.T) {
	l := openLink(t, echo(t))
	old := dial(t, l.Addr())
	old.roundTrip("before")

	if err := l.Hang(); err != nil {
		t.Fatal(err)
	}
	if l.Fault() != FaultHang {
		t.Fatalf("fault = %q, want hang", l.Fault())
	}

	// New connections are accepted (no refusal), but nothing comes back.
	fresh := dial(t, l.Addr())
	fresh.send("new")
	if got, err := fresh.recv(300 * time.Millisecond); !isTimeout(err) {
		t.Fatalf("read through a hung link: got %q, %v; want a timeout", got, err)
	}
	// Established connections stall too.
	old.send("during")
	if got, err := old.recv(300 * time.Millisecond); !isTimeout(err) {
		t.Fatalf("read on an established connection through a hung link: got %q, %v; want a timeout", got, err)
	}

	// Heal delivers what was held, in order, on both connections.
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    *client
		want string
	}{{fresh, "new"}, {old, "during"}} {
		got, err := tc.c.recv(patience)
		if err != nil || got != tc.want {
			t.Fatalf("after heal: got %q, %v; want %q", got, err, tc.want)
		}
	}
	old.roundTrip("after")
}

func TestHangThenDownBreaksHeldConnections(t *testing.T) {
	l := openLink(t, echo(t))
	c := dial(t, l.Addr())
	if err := l.Hang(); err != nil {
		t.Fatal(err)
	}
	c.send("held")
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	// The held bytes are dropped with the connection, not delivered.
	if got, err := c.recv(patience); err == nil || isTimeout(err) {
		t.Fatalf("held connection after Down: got %q, %v; want it closed", got, err)
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	dial(t, l.Addr()).roundTrip("after")
}

func TestLatencyStillDelivers(t *testing.T) {
	l := openLink(t, echo(t))
	c := dial(t, l.Addr())
	if err := l.Latency(20*time.Millisecond, 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if l.Fault() != FaultLatency {
		t.Fatalf("fault = %q, want latency", l.Fault())
	}
	c.roundTrip("slow")
	dial(t, l.Addr()).roundTrip("new and slow")
	// Changing the numbers updates the fault in place.
	if err := l.Latency(5*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	c.roundTrip("slow again")
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	c.roundTrip("fast")
}

func TestLatencyRejectsBadNumbers(t *testing.T) {
	l := openLink(t, echo(t))
	for _, tc := range []struct{ d, j time.Duration }{
		{0, 0}, {500 * time.Microsecond, 0}, {10 * time.Millisecond, 20 * time.Millisecond}, {10 * time.Millisecond, -1},
	} {
		err := l.Latency(tc.d, tc.j)
		if err == nil || lifeboat.IsRetryable(err) {
			t.Errorf("Latency(%v, %v) = %v, want a permanent error", tc.d, tc.j, err)
		}
	}
	if l.Fault() != FaultNone {
		t.Fatalf("fault = %q after rejected calls, want none", l.Fault())
	}
}

func TestFaultTransitions(t *testing.T) {
	l := openLink(t, echo(t))
	c := dial(t, l.Addr())
	steps := []struct {
		name string
		do   func() error
		want Fault
	}{
		{"latency", func() error { return l.Latency(2*time.Millisecond, 0) }, FaultLatency},
		{"hang", l.Hang, FaultHang},
		{"latency", func() error { return l.Latency(2*time.Millisecond, 1*time.Millisecond) }, FaultLatency},
		{"down", l.Down, FaultDown},
		{"hang", l.Hang, FaultHang},
		{"heal", l.Heal, FaultNone},
		{"heal", l.Heal, FaultNone},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := l.Fault(); got != s.want {
			t.Fatalf("after %s: fault = %q, want %q", s.name, got, s.want)
		}
	}
	_ = c // broken by Down; a new connection must work
	dial(t, l.Addr()).roundTrip("end")
}

func TestCloseFreesThePort(t *testing.T) {
	l := openLink(t, echo(t))
	c := dial(t, l.Addr())
	c.roundTrip("x")
	if err := l.Hang(); err != nil {
		t.Fatal(err)
	}
	c.send("held")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if nc, err := net.DialTimeout("tcp", l.Addr(), patience); err == nil {
		nc.Close()
		t.Fatal("dial after Close succeeded, want refused")
	}
	if _, err := c.recv(patience); err == nil || isTimeout(err) {
		t.Fatalf("connection after Close: %v, want closed", err)
	}
	err := l.Heal()
	if !errors.Is(err, ErrClosed) || lifeboat.IsRetryable(err) {
		t.Fatalf("Heal after Close = %v, want permanent ErrClosed", err)
	}
}

func TestUpstreamDownIsRefusedNotHung(t *testing.T) {
	// A link whose upstream is not listening closes each connection at once:
	// the client learns quickly, as from a dead region.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	l := openLink(t, dead)
	c := dial(t, l.Addr())
	if _, err := c.recv(patience); err == nil || isTimeout(err) {
		t.Fatalf("read through a link to a dead upstream: %v, want closed", err)
	}
}

func TestValidateConfig(t *testing.T) {
	good := DefaultConfig()
	good.Name = "a-b"
	good.Upstream = "127.0.0.1:5432"
	if err := ValidateConfig(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"no name":             func(c *Config) { c.Name = " " },
		"listen not hostport": func(c *Config) { c.Listen = "5432" },
		"listen no host":      func(c *Config) { c.Listen = ":5432" },
		"upstream port 0":     func(c *Config) { c.Upstream = "127.0.0.1:0" },
		"upstream bad port":   func(c *Config) { c.Upstream = "127.0.0.1:pg" },
	} {
		c := good
		mut(&c)
		if err := ValidateConfig(c); err == nil {
			t.Errorf("%s: ValidateConfig(%+v) = nil, want an error", name, c)
		}
		if _, err := Open(c); err == nil || lifeboat.IsRetryable(err) {
			t.Errorf("%s: Open = %v, want a permanent error", name, err)
		}
	}
}

func TestOpenOnBusyPortIsRetryable(t *testing.T) {
	l := openLink(t, echo(t))
	c := DefaultConfig()
	c.Name = "dup"
	c.Listen = l.Addr()
	c.Upstream = l.Upstream()
	if l2, err := Open(c); err == nil {
		l2.Close()
		t.Fatal("second link on the same port opened")
	} else if !lifeboat.IsRetryable(err) {
		t.Fatalf("busy port: %v, want retryable", err)
	}
}

// BenchmarkLatencyRoundTrip measures a round trip through a link with 5ms of
// one-way latency (so ≈ 10ms expected), reported as ms/rtt.
func BenchmarkLatencyRoundTrip(b *testing.B) {
	for _, lat := range []time.Duration{0, 5 * time.Millisecond} {
		b.Run(lat.String(), func(b *testing.B) {
			up := benchEcho(b)
			c := DefaultConfig()
			c.Name = "bench"
			c.Upstream = up
			l, err := Open(c)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			if lat > 0 {
				if err := l.Latency(lat, 0); err != nil {
					b.Fatal(err)
				}
			}
			conn, err := net.Dial("tcp", l.Addr())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				io.WriteString(conn, "ping\n")
				if _, err := r.ReadString('\n'); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/rtt")
		})
	}
}

func benchEcho(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}
