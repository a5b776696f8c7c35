package main

// The traffic layer's figures (issue 4): dnsperf against the built-in DNS
// server and against BIND 9 serving the same zone, and the front door's
// added latency and throughput against a direct connection.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/dns"
	"github.com/lifeboat-dr/lifeboat/driver/frontdoor"
	"github.com/lifeboat-dr/lifeboat/driver/rfc2136/bindtest"
)

// Targets of issue 4.
const (
	targetDNSRatio  = 1.0 // built-in qps / BIND qps
	targetAddedP50  = 100 * time.Microsecond
	benchZone       = "shop.bench.test."
	frontRoundTrips = 20000
)

// trafficRows measures the DNS servers (dnsSeconds of dnsperf each) and
// the front door. A missing dnsperf or named gives a row saying so.
func trafficRows(ctx context.Context, dnsSeconds int) ([]row, error) {
	if dnsSeconds < 1 {
		return nil, fmt.Errorf("-dns-seconds is %d: dnsperf needs at least 1 second per run", dnsSeconds)
	}
	rows, err := dnsRows(ctx, dnsSeconds)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	fd, err := frontDoorRows()
	if err != nil {
		return nil, fmt.Errorf("front door: %w", err)
	}
	return append(rows, fd...), nil
}

// --- DNS ---------------------------------------------------------------

// benchNames are the zone's traffic names: A and AAAA (db has no IPv6, so
// its AAAA is NODATA), each with its _lifeboat TXT.
func benchNames() []dns.Name {
	ep := func(addrs ...string) []dns.Endpoint {
		var e []dns.Endpoint
		for _, a := range addrs {
			e = append(e, dns.Endpoint{Addr: netip.MustParseAddr(a), Healthy: true})
		}
		return e
	}
	return []dns.Name{
		{Name: "www." + benchZone, TTL: 30 * time.Second, Active: "west", Endpoints: map[string][]dns.Endpoint{
			"west": ep("192.0.2.10", "192.0.2.11", "2001:db8::10"), "east": ep("198.51.100.10", "198.51.100.11", "2001:db8:1::10")}},
		{Name: "api." + benchZone, TTL: 30 * time.Second, Active: "west", Endpoints: map[string][]dns.Endpoint{
			"west": ep("192.0.2.20", "2001:db8::20"), "east": ep("198.51.100.20", "2001:db8:1::20")}},
		{Name: "db." + benchZone, TTL: 5 * time.Second, Active: "west", Endpoints: map[string][]dns.Endpoint{
			"west": ep("192.0.2.30"), "east": ep("198.51.100.30")}},
	}
}

type question struct {
	name  string
	qtype uint16
}

// benchQueries is dnsperf's input: the traffic names' A, AAAA and TXT, the
// SOA, and names that do not exist (NXDOMAIN), about a fifth of the mix.
func benchQueries() []question {
	var qs []question
	for _, n := range benchNames() {
		qs = append(qs, question{n.Name, mdns.TypeA}, question{n.Name, mdns.TypeAAAA}, question{"_lifeboat." + n.Name, mdns.TypeTXT})
	}
	qs = append(qs, question{benchZone, mdns.TypeSOA})
	for _, n := range []string{"nope", "old-www", "x.www"} {
		qs = append(qs, question{n + "." + benchZone, mdns.TypeA})
	}
	return qs
}

func dnsRows(ctx context.Context, seconds int) ([]row, error) {
	what := fmt.Sprintf("dnsperf -c 4, %d s, %d-query mix (A/AAAA/TXT/SOA/NXDOMAIN/NODATA)", seconds, len(benchQueries()))
	if _, err := exec.LookPath("dnsperf"); err != nil {
		return []row{{what, "-", "SKIPPED: dnsperf not installed (apt-get install dnsperf)", "", ""}}, nil
	}
	dir, err := os.MkdirTemp("", "lifeboat-bench-dns-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	c := dns.DefaultConfig()
	c.Zone = benchZone
	c.NS = []dns.NameServer{
		{Name: "ns-west." + benchZone, Addr: netip.MustParseAddr("127.0.0.1")},
		{Name: "ns-east." + benchZone, Addr: netip.MustParseAddr("127.0.0.2")},
	}
	builtin, err := dns.New(c)
	if err != nil {
		return nil, err
	}
	for _, n := range benchNames() {
		if err := builtin.SetName(n); err != nil {
			return nil, err
		}
	}
	if err := builtin.Start(); err != nil {
		return nil, err
	}
	defer builtin.Close()

	queries := filepath.Join(dir, "queries.txt")
	var qf strings.Builder
	for _, q := range benchQueries() {
		fmt.Fprintf(&qf, "%s %s\n", q.name, mdns.TypeToString[q.qtype])
	}
	if err := os.WriteFile(queries, []byte(qf.String()), 0o644); err != nil {
		return nil, err
	}
	// BIND serves exactly what the built-in server answers, SOA serial and
	// TXT included, so both do the same work per query.
	zone, err := zoneFile(ctx, builtin.Addr())
	if err != nil {
		return nil, fmt.Errorf("reading the zone back from the built-in server: %w", err)
	}

	var rows []row
	own, err := dnsperf(ctx, builtin.Addr(), queries, seconds)
	if err != nil {
		return nil, fmt.Errorf("dnsperf against the built-in server on %s: %w", builtin.Addr(), err)
	}
	rows = append(rows, row{what, "built-in", own.String(), "", ""})

	// minimal-responses: answer sections only, as the built-in server does.
	if os.Geteuid() == 0 {
		// MkdirTemp makes dir 0700 root: let bind traverse it.
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, err
		}
	}
	bind, err := bindtest.Launch(ctx, bindtest.Options{Zone: benchZone, ZoneFile: zone, MinimalResponses: true}, filepath.Join(dir, "named"))
	if errors.Is(err, bindtest.ErrNoNamed) || errors.Is(err, bindtest.ErrNoBindUser) {
		return append(rows, row{what, "bind 9", "SKIPPED: " + err.Error(), "", ""}), nil
	}
	if err != nil {
		return nil, fmt.Errorf("starting BIND: %w", err)
	}
	defer bind.Stop()
	if err := sameAnswers(ctx, builtin.Addr(), bind.Addr); err != nil {
		return nil, err
	}
	theirs, err := dnsperf(ctx, bind.Addr, queries, seconds)
	if err != nil {
		return nil, fmt.Errorf("dnsperf against BIND on %s: %w", bind.Addr, err)
	}
	ratio := own.qps / theirs.qps
	return append(rows,
		row{what, "bind 9", theirs.String(), "", ""},
		row{"  built-in / BIND 9", "", fmt.Sprintf("%.2f", ratio), fmt.Sprintf(">= %.2f", targetDNSRatio), okOr(ratio >= targetDNSRatio)},
	), nil
}

func exchange(ctx context.Context, addr string, q question) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(q.name, q.qtype)
	m.RecursionDesired = false
	cl := &mdns.Client{Net: "tcp", Timeout: 5 * time.Second} // TCP: no truncation
	r, _, err := cl.ExchangeContext(ctx, m, addr)
	if err != nil {
		return nil, fmt.Errorf("asking %s for %s %s: %w", addr, q.name, mdns.TypeToString[q.qtype], err)
	}
	return r, nil
}

// zoneFile builds a BIND zone file from the built-in server's answers.
func zoneFile(ctx context.Context, addr string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n", benchZone)
	seen := map[string]bool{}
	add := func(rrs []mdns.RR) {
		for _, rr := range rrs {
			if s := rr.String(); !seen[s] {
				seen[s] = true
				b.WriteString(s + "\n")
			}
		}
	}
	for _, q := range append([]question{{benchZone, mdns.TypeNS}}, benchQueries()...) {
		r, err := exchange(ctx, addr, q)
		if err != nil {
			return "", err
		}
		add(r.Answer)
		add(r.Extra) // the NS glue
	}
	return b.String(), nil
}

// sameAnswers checks that BIND answers every query of the mix as the
// built-in server does; otherwise the comparison would mean nothing.
func sameAnswers(ctx context.Context, a, b string) error {
	flat := func(r *mdns.Msg) string {
		var ss []string
		for _, sec := range [][]mdns.RR{r.Answer, r.Ns} {
			for _, rr := range sec {
				ss = append(ss, rr.String())
			}
		}
		slices.Sort(ss)
		return fmt.Sprintf("%s aa=%v\n%s", mdns.RcodeToString[r.Rcode], r.Authoritative, strings.Join(ss, "\n"))
	}
	for _, q := range benchQueries() {
		ra, err := exchange(ctx, a, q)
		if err != nil {
			return err
		}
		rb, err := exchange(ctx, b, q)
		if err != nil {
			return err
		}
		if fa, fb := flat(ra), flat(rb); fa != fb {
			return fmt.Errorf("the built-in server and BIND answer %s %s differently, so their rates cannot be compared:\nbuilt-in:\n%s\nBIND:\n%s", q.name, mdns.TypeToString[q.qtype], fa, fb)
		}
	}
	return nil
}

type perf struct {
	qps       float64
	completed int
	lost      int
	codes     string
}

func (p perf) String() string {
	return fmt.Sprintf("%.0f qps (lost %d/%d, %s)", p.qps, p.lost, p.completed+p.lost, p.codes)
}

var (
	reQPS       = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	reLost      = regexp.MustCompile(`Queries lost:\s+([0-9]+)`)
	reCompleted = regexp.MustCompile(`Queries completed:\s+([0-9]+)`)
	reCodes     = regexp.MustCompile(`Response codes:\s+(.*)`)
	reCode      = regexp.MustCompile(`([A-Z]+) [0-9]+ \(([0-9.]+)%\)`)
)

// dnsperf runs dnsperf against addr for seconds and parses its summary.
func dnsperf(ctx context.Context, addr, queries string, seconds int) (perf, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return perf{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dnsperf", "-s", host, "-p", port, "-d", queries,
		"-l", strconv.Itoa(seconds), "-c", "4", "-Q", "500000")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return perf{}, fmt.Errorf("dnsperf failed (%w); its output:\n%s", err, out)
	}
	m := reQPS.FindSubmatch(out)
	if m == nil {
		return perf{}, fmt.Errorf("no \"Queries per second\" in dnsperf's output:\n%s", out)
	}
	var p perf
	p.qps, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := reLost.FindSubmatch(out); m != nil {
		p.lost, _ = strconv.Atoi(string(m[1]))
	}
	if m := reCompleted.FindSubmatch(out); m != nil {
		p.completed, _ = strconv.Atoi(string(m[1]))
	}
	if m := reCodes.FindSubmatch(out); m != nil {
		// "NOERROR 487410 (76.92%), NXDOMAIN ..." -> "NOERROR 77%, NXDOMAIN 23%"
		var cs []string
		for _, c := range reCode.FindAllStringSubmatch(string(m[1]), -1) {
			f, _ := strconv.ParseFloat(c[2], 64)
			cs = append(cs, fmt.Sprintf("%s %.0f%%", c[1], f))
		}
		p.codes = strings.Join(cs, ", ")
	}
	return p, nil
}

// --- front door ----------------------------------------------------------

// loopServer serves each connection of a loopback listener with serve.
type loopServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func newLoopServer(serve func(net.Conn)) (*loopServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &loopServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); defer c.Close(); serve(c) }()
		}
	}()
	return s, nil
}

func (s *loopServer) addr() string { return s.ln.Addr().String() }

// close stops accepting; the connections end when their clients close.
func (s *loopServer) close() { s.ln.Close(); s.wg.Wait() }

// sinkCount reads until EOF, then answers the byte count (8 bytes).
func sinkCount(c net.Conn) {
	n, _ := io.Copy(io.Discard, c)
	_ = binary.Write(c, binary.BigEndian, n)
}

func frontDoorRows() ([]row, error) {
	echo, err := newLoopServer(func(c net.Conn) { _, _ = io.Copy(c, c) })
	if err != nil {
		return nil, err
	}
	defer echo.close()
	sink, err := newLoopServer(sinkCount)
	if err != nil {
		return nil, err
	}
	defer sink.close()

	c := frontdoor.DefaultConfig()
	c.Lease = time.Hour // nobody renews during the bench
	c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	c.Listeners["echo"] = frontdoor.ListenerConfig{Listen: "127.0.0.1:0", Upstreams: map[string]string{"west": echo.addr(), "east": echo.addr()}}
	c.Listeners["sink"] = frontdoor.ListenerConfig{Listen: "127.0.0.1:0", Upstreams: map[string]string{"west": sink.addr(), "east": sink.addr()}}
	fd, err := frontdoor.New(c)
	if err != nil {
		return nil, err
	}
	if err := fd.Start(); err != nil {
		return nil, err
	}
	defer fd.Close()
	t := lifeboat.Target{Service: "bench", Unit: "traffic", Component: "front", Region: "west", Resource: "bench-traffic-front-west", Epoch: 1}
	if err := fd.Switch(context.Background(), t, nil); err != nil {
		return nil, err
	}

	direct, via, err := roundTrips(echo.addr(), fd.Addr("echo"), frontRoundTrips)
	if err != nil {
		return nil, err
	}
	d50, v50 := pct(direct, 0.50), pct(via, 0.50)
	added := v50 - d50
	what := fmt.Sprintf("64-byte round trip, one connection, %d alternating", frontRoundTrips)
	rows := []row{
		{what + ", p50", "direct", us(d50), "", ""},
		{what + ", p50", "frontdoor", us(v50), "", ""},
		{"  added by the front door, p50", "frontdoor", us(added), "< " + us(targetAddedP50), okOr(added < targetAddedP50)},
		{what + ", p99", "direct", us(pct(direct, 0.99)), "", ""},
		{what + ", p99", "frontdoor", us(pct(via, 0.99)), "", ""},
	}

	const rounds, each = 3, time.Second
	var rate [2]float64
	var bytes [2]int64
	var took [2]time.Duration
	for range rounds { // alternating, so both see the same machine load
		for i, addr := range []string{sink.addr(), fd.Addr("sink")} {
			n, d, err := stream(addr, each)
			if err != nil {
				return nil, fmt.Errorf("streaming to %s: %w", addr, err)
			}
			bytes[i] += n
			took[i] += d
		}
	}
	for i := range rate {
		rate[i] = float64(bytes[i]) / took[i].Seconds() / 1e6
	}
	what = fmt.Sprintf("streaming 64 KiB writes, one connection, %d × %s", rounds, each)
	return append(rows,
		row{what, "direct", fmt.Sprintf("%.0f MB/s", rate[0]), "", ""},
		row{what, "frontdoor", fmt.Sprintf("%.0f MB/s", rate[1]), "", ""},
		row{"  frontdoor / direct", "", fmt.Sprintf("%.2f", rate[1]/rate[0]), "", ""},
	), nil
}

// roundTrips times n 64-byte echoes on one direct connection and n on one
// through the front door, alternating so both see the same machine load.
func roundTrips(directAddr, viaAddr string, n int) (direct, via []time.Duration, err error) {
	dc, err := net.Dial("tcp", directAddr)
	if err != nil {
		return nil, nil, err
	}
	defer dc.Close()
	vc, err := net.Dial("tcp", viaAddr)
	if err != nil {
		return nil, nil, err
	}
	defer vc.Close()
	msg, got := make([]byte, 64), make([]byte, 64)
	rt := func(c net.Conn) (time.Duration, error) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return 0, err
		}
		return time.Since(t0), nil
	}
	direct, via = make([]time.Duration, 0, n), make([]time.Duration, 0, n)
	for i := range n + 200 { // the first 200 of each warm up
		d, err := rt(dc)
		if err != nil {
			return nil, nil, fmt.Errorf("direct round trip to %s: %w", directAddr, err)
		}
		v, err := rt(vc)
		if err != nil {
			return nil, nil, fmt.Errorf("round trip through the front door %s: %w", viaAddr, err)
		}
		if i >= 200 {
			direct, via = append(direct, d), append(via, v)
		}
	}
	return direct, via, nil
}

// stream writes 64 KiB chunks to a sink for about d, then half-closes and
// waits for the sink's byte count: the time covers every byte arriving.
func stream(addr string, d time.Duration) (int64, time.Duration, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d + 30*time.Second))
	buf := make([]byte, 64<<10)
	var sent int64
	t0 := time.Now()
	for time.Since(t0) < d {
		k, err := c.Write(buf)
		sent += int64(k)
		if err != nil {
			return 0, 0, err
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, 0, err
	}
	var got int64
	if err := binary.Read(c, binary.BigEndian, &got); err != nil {
		return 0, 0, fmt.Errorf("reading the sink's byte count: %w", err)
	}
	took := time.Since(t0)
	if got != sent {
		return 0, 0, fmt.Errorf("the sink received %d bytes, %d were sent", got, sent)
	}
	return sent, took, nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d.Nanoseconds())/1e3) }
