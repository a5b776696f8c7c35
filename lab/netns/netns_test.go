package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test binary doubles as the echo server run inside namespaces (which
// exercises Command): NETNS_TEST_ECHO=<addr> makes it serve and print
// "ready".
func TestMain(m *testing.M) {
	if addr := os.Getenv("NETNS_TEST_ECHO"); addr != "" {
		serveEcho(addr)
		return
	}
	os.Exit(m.Run())
}

func serveEcho(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() { _, _ = io.Copy(c, c); c.Close() }()
	}
}

const (
	west, east, central = "west", "east", "central"
	echoPort            = 7000
	// Generous bounds: a reachable peer answers in milliseconds, and an
	// established connection resumes after a heal within a few TCP
	// retransmission intervals.
	reachTimeout = 20 * time.Second
	resumeWithin = 90 * time.Second
	// How long a blocked dial or read is given before it counts as failed.
	// Faults drop silently, so failure is a timeout; any bound is correct,
	// a short one only keeps the test quick.
	blockedTimeout = 1500 * time.Millisecond
)

var regions3 = []string{west, east, central}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN); run go test as root")
	}
}

func up(t *testing.T, regions ...string) *Net {
	t.Helper()
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	n, err := Up(ctx, Options{Prefix: "t" + RandomPrefix()[3:], Regions: regions})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("Up %s (%s, %d regions) took %s", n.Prefix(), n.Subnet(), len(regions), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		start := time.Now()
		if err := n.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
		t.Logf("Down took %s", time.Since(start).Round(time.Millisecond))
	})
	return n
}

// startEcho runs the echo server in the region (through Command), on
// 0.0.0.0, and returns the address others dial.
func startEcho(t *testing.T, n *Net, region string) netip.AddrPort {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.Command(region, exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("NETNS_TEST_ECHO=0.0.0.0:%d", echoPort))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start echo server in %s: %v", region, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by PID: ip netns exec execs in place
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		t.Fatalf("echo server in %s did not start: %q %v", region, line, err)
	}
	return netip.AddrPortFrom(n.Addr(region), echoPort)
}

// hostEcho serves echo on the host's bridge address.
func hostEcho(t *testing.T, n *Net) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(n.HostAddr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	return netip.MustParseAddrPort(l.Addr().String())
}

// dial connects from a region ("" for the host) within timeout.
func dial(n *Net, from string, to netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if from == "" {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", to.String())
	}
	return n.DialContext(ctx, from, "tcp", to.String())
}

func name(region string) string {
	if region == "" {
		return "host"
	}
	return region
}

// conn is an established connection to an echo server.
type conn struct {
	c net.Conn
	r *bufio.Reader
}

func (c *conn) send(msg string) error {
	_, err := c.c.Write([]byte(msg + "\n"))
	return err
}

func (c *conn) recv(timeout time.Duration) (string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(timeout))
	s, err := c.r.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

func connect(t *testing.T, n *Net, from string, to netip.AddrPort) *conn {
	t.Helper()
	c, err := dial(n, from, to, reachTimeout)
	if err != nil {
		t.Fatalf("%s → %s: %v", name(from), to, err)
	}
	t.Cleanup(func() { c.Close() })
	cn := &conn{c: c, r: bufio.NewReader(c)}
	if err := cn.send("hello"); err != nil {
		t.Fatal(err)
	}
	if got, err := cn.recv(reachTimeout); err != nil || got != "hello" {
		t.Fatalf("%s → %s: echo %q, %v", name(from), to, got, err)
	}
	return cn
}

// reaches asserts a new connection from → to echoes.
func reaches(t *testing.T, n *Net, from string, to netip.AddrPort) {
	t.Helper()
	c, err := dial(n, from, to, reachTimeout)
	if err != nil {
		t.Errorf("%s → %s should connect: %v", name(from), to, err)
		return
	}
	defer c.Close()
	cn := &conn{c: c, r: bufio.NewReader(c)}
	if err := cn.send("ping"); err != nil {
		t.Errorf("%s → %s: write: %v", name(from), to, err)
		return
	}
	if got, err := cn.recv(reachTimeout); err != nil || got != "ping" {
		t.Errorf("%s → %s: echo %q, %v", name(from), to, got, err)
	}
}

// blocked asserts a new connection from → to fails.
func blocked(t *testing.T, n *Net, from string, to netip.AddrPort) {
	t.Helper()
	c, err := dial(n, from, to, blockedTimeout)
	if err == nil {
		c.Close()
		t.Errorf("%s → %s connected, want no connection", name(from), to)
	}
}

// silent asserts a message on an established connection gets no echo.
func silent(t *testing.T, c *conn, what, msg string) {
	t.Helper()
	if err := c.send(msg); err != nil {
		t.Errorf("%s: write during the fault failed (%v); a silent drop should buffer it", what, err)
		return
	}
	got, err := c.recv(blockedTimeout)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%s: got %q, %v during the fault, want a read timeout", what, got, err)
	}
}

// resumes asserts the echo of what was written during the fault arrives.
func resumes(t *testing.T, c *conn, what, msg string) {
	t.Helper()
	if got, err := c.recv(resumeWithin); err != nil || got != msg {
		t.Errorf("%s after heal: got %q, %v, want %q", what, got, err, msg)
	}
}

// each runs f for every pair concurrently: blocked checks wait out their
// timeout, and there are many.
func each(pairs [][2]string, f func(from, to string)) {
	var wg sync.WaitGroup
	for _, p := range pairs {
		wg.Add(1)
		go func() { defer wg.Done(); f(p[0], p[1]) }()
	}
	wg.Wait()
}

type lab struct {
	n    *Net
	echo map[string]netip.AddrPort // "" is the host
}

func newLab(t *testing.T) *lab {
	n := up(t, regions3...)
	l := &lab{n: n, echo: map[string]netip.AddrPort{"": hostEcho(t, n)}}
	for _, r := range regions3 {
		l.echo[r] = startEcho(t, n, r)
	}
	return l
}

var allPairs = func() [][2]string {
	var ps [][2]string
	for _, a := range append([]string{""}, regions3...) {
		for _, b := range append([]string{""}, regions3...) {
			if a != b {
				ps = append(ps, [2]string{a, b})
			}
		}
	}
	return ps
}()

func (l *lab) expect(t *testing.T, cut func(a, b string) bool) {
	t.Helper()
	each(allPairs, func(a, b string) {
		if cut(a, b) {
			blocked(t, l.n, a, l.echo[b])
		} else {
			reaches(t, l.n, a, l.echo[b])
		}
	})
}

func none(a, b string) bool { return false }

func TestEveryoneReachesEveryone(t *testing.T) {
	l := newLab(t)
	l.expect(t, none)
	// Each region sees itself at its own address and at loopback.
	for _, r := range regions3 {
		reaches(t, l.n, r, l.echo[r])
		reaches(t, l.n, r, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), echoPort))
	}
}

func TestCutAndHeal(t *testing.T) {
	l := newLab(t)
	n := l.n
	we := connect(t, n, west, l.echo[east])
	ew := connect(t, n, east, l.echo[west])
	wc := connect(t, n, west, l.echo[central])

	for range 2 { // idempotent
		if err := n.Cut(west, east); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.Faults(); len(got) != 1 || got[0] != "cut east-west" {
		t.Errorf("Faults() = %v", got)
	}
	westEast := func(a, b string) bool { return (a == west && b == east) || (a == east && b == west) }
	l.expect(t, westEast)
	var wg sync.WaitGroup
	for _, c := range []struct {
		c    *conn
		what string
	}{{we, "established west → east"}, {ew, "established east → west"}} {
		wg.Add(1)
		go func() { defer wg.Done(); silent(t, c.c, c.what, "during-cut") }()
	}
	wg.Wait()
	if err := wc.send("still"); err != nil {
		t.Fatal(err)
	}
	if got, err := wc.recv(reachTimeout); err != nil || got != "still" {
		t.Errorf("established west → central during the west/east cut: %q, %v", got, err)
	}

	for range 2 {
		if err := n.Heal(east, west); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.Faults(); len(got) != 0 {
		t.Errorf("Faults() after heal = %v", got)
	}
	l.expect(t, none)
	resumes(t, we, "established west → east", "during-cut")
	resumes(t, ew, "established east → west", "during-cut")
}

func TestIsolateAndHealAll(t *testing.T) {
	l := newLab(t)
	n := l.n
	hw := connect(t, n, "", l.echo[west])
	cw := connect(t, n, central, l.echo[west])
	wh := connect(t, n, west, l.echo[""])
	ce := connect(t, n, central, l.echo[east])

	for range 2 {
		if err := n.Isolate(west); err != nil {
			t.Fatal(err)
		}
	}
	l.expect(t, func(a, b string) bool { return a == west || b == west })
	var wg sync.WaitGroup
	for _, c := range []struct {
		c    *conn
		what string
	}{{hw, "established host → west"}, {cw, "established central → west"}, {wh, "established west → host"}} {
		wg.Add(1)
		go func() { defer wg.Done(); silent(t, c.c, c.what, "during-isolation") }()
	}
	wg.Wait()
	if err := ce.send("still"); err != nil {
		t.Fatal(err)
	}
	if got, err := ce.recv(reachTimeout); err != nil || got != "still" {
		t.Errorf("established central → east while west is isolated: %q, %v", got, err)
	}

	// HealAll also clears a Cut made on top of the isolation.
	if err := n.Cut(east, central); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := n.HealAll(); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.Faults(); len(got) != 0 {
		t.Errorf("Faults() after HealAll = %v", got)
	}
	l.expect(t, none)
	resumes(t, hw, "established host → west", "during-isolation")
	resumes(t, cw, "established central → west", "during-isolation")
	resumes(t, wh, "established west → host", "during-isolation")
}

func TestDownRemovesEverything(t *testing.T) {
	n := up(t, regions3...)
	startEcho(t, n, west) // a process inside must not stop Down
	names := append([]string{n.Bridge()}, n.linkNames()...)
	if err := n.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if err := n.Down(); err != nil {
		t.Fatalf("second Down: %v", err)
	}
	assertGone(t, n, names)
	if err := n.Cut(west, east); err == nil {
		t.Error("Cut after Down succeeded")
	}
}

func assertGone(t *testing.T, n *Net, links []string) {
	prefix := n.Prefix()
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, r := range n.Regions() {
			if f := strings.Fields(line); len(f) > 0 && f[0] == n.Name(r) {
				t.Errorf("namespace %s left behind", f[0])
			}
		}
	}
	out, err = exec.Command("ip", "-br", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v %s", err, out)
	}
	for _, l := range links {
		if strings.Contains(string(out), l+" ") || strings.Contains(string(out), l+"@") {
			t.Errorf("link %s left behind:\n%s", l, out)
		}
	}
	if _, err := os.Stat(recordPath(prefix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record %s left behind: %v", recordPath(prefix), err)
	}
}

func TestSweepRemovesACrashedRun(t *testing.T) {
	crashed := up(t, west, east)
	// Another lab network whose names start with the crashed one's prefix
	// and '-': Sweep must not touch it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	other, err := Up(ctx, Options{Prefix: crashed.Prefix() + "-q", Regions: []string{west}})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() { _ = other.Down() })
	links := crashed.linkNames()

	// As if the process had died: nothing calls Down before Sweep.
	if err := Sweep(crashed.Prefix()); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	assertGone(t, crashed, links)
	if err := Sweep(crashed.Prefix()); err != nil {
		t.Errorf("second Sweep: %v", err)
	}
	if err := crashed.Down(); err != nil {
		t.Errorf("Down after Sweep: %v", err)
	}
	// The neighbour is intact.
	reaches(t, other, "", startEcho(t, other, west))
}

func TestSweepRefusesALiveRun(t *testing.T) {
	needRoot(t)
	prefix := "t" + RandomPrefix()[3:]
	// Pid 1 is alive: this record belongs to a running process.
	rec := record{Prefix: prefix, Subnet: "10.77.255.0/24", PID: 1, PIDStart: procStart(1)}
	if err := os.MkdirAll(StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeRecord(rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(recordPath(prefix)) })
	if err := Sweep(prefix); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Errorf("Sweep of a live run: %v, want a refusal", err)
	}
	swept, err := SweepStale()
	if err != nil {
		t.Errorf("SweepStale: %v", err)
	}
	for _, p := range swept {
		if p == prefix {
			t.Errorf("SweepStale swept the live run %s", prefix)
		}
	}
}

func TestCommandUnknownRegion(t *testing.T) {
	n := up(t, west)
	if err := n.Command("mars", "true").Run(); err == nil || !strings.Contains(err.Error(), "mars") {
		t.Errorf("Command in an unknown region: %v", err)
	}
	if err := n.Cut(west, west); err == nil {
		t.Error("Cut(west, west) succeeded")
	}
	if err := n.Isolate("mars"); err == nil {
		t.Error("Isolate(mars) succeeded")
	}
}
