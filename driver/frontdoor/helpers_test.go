package frontdoor

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// upstream is a region's endpoint for one listener: it echoes every byte
// back and records, per connection, every byte it received. The record is
// what the upstream itself observed.
type upstream struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	bytes [][]byte // by connection number
	ended []bool   // the connection's read side ended
}

func newUpstream(t testing.TB, name string) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{name: name, ln: ln}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			id := len(u.bytes)
			u.bytes = append(u.bytes, nil)
			u.ended = append(u.ended, false)
			u.mu.Unlock()
			u.wg.Add(1)
			go u.serve(id, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); u.wg.Wait() })
	return u
}

func (u *upstream) serve(id int, c net.Conn) {
	defer u.wg.Done()
	defer c.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			u.mu.Lock()
			u.bytes[id] = append(u.bytes[id], buf[:n]...)
			u.mu.Unlock()
			if _, werr := c.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			// Keep reading nothing more: the record is final.
			u.mu.Lock()
			u.ended[id] = true
			u.mu.Unlock()
			return
		}
	}
}

func (u *upstream) addr() string { return u.ln.Addr().String() }

// record returns a copy of the bytes received, by connection.
func (u *upstream) record() [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([][]byte, len(u.bytes))
	for i, b := range u.bytes {
		out[i] = append([]byte(nil), b...)
	}
	return out
}

func (u *upstream) total() int {
	n := 0
	for _, b := range u.record() {
		n += len(b)
	}
	return n
}

func (u *upstream) allEnded() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, e := range u.ended {
		if !e {
			return false
		}
	}
	return true
}

// clock is an injected clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// lab is a front door with an "http" and a "postgres" listener, each with
// a west and an east upstream.
type lab struct {
	fd  *FrontDoor
	clk *clock
	up  map[string]map[string]*upstream // listener → region → upstream
}

func newLab(t testing.TB, edit func(*Config)) *lab {
	t.Helper()
	l := &lab{clk: &clock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}, up: map[string]map[string]*upstream{}}
	c := DefaultConfig()
	c.Now = l.clk.Now
	c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		c.Log = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	}
	for _, ln := range []string{"http", "postgres"} {
		l.up[ln] = map[string]*upstream{}
		lc := ListenerConfig{Listen: "127.0.0.1:0", Upstreams: map[string]string{}}
		for _, r := range []string{"west", "east"} {
			u := newUpstream(t, ln+"-"+r)
			l.up[ln][r] = u
			lc.Upstreams[r] = u.addr()
		}
		c.Listeners[ln] = lc
	}
	if edit != nil {
		edit(&c)
	}
	fd, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	l.fd = fd
	if err := fd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	return l
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func target(region string, epoch uint64) lifeboat.Target {
	return lifeboat.Target{Service: "shop", Unit: "store", Component: "front", Region: region, Resource: "shop-store-front", Epoch: epoch}
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// roundTrip dials addr, writes msg and reads its echo.
func roundTrip(t testing.TB, addr string, msg string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo of %q through %s: %v", msg, addr, err)
	}
	if string(got) != msg {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

func dialTCP(addr string) (*net.TCPConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func readAll(c net.Conn) ([]byte, error) { return io.ReadAll(c) }
