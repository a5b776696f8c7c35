package monitor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

// probeWaitFor polls cond until it holds or a generous deadline passes: tests
// wait for conditions, never for time.
func probeWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runProber runs p until the test ends and waits for its goroutine.
func runProber(t *testing.T, p *Prober) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func fastProbe(kind ProbeKind, addr string) ProbeConfig {
	c := DefaultProbeConfig()
	c.Kind, c.Address = kind, addr
	c.Interval, c.Timeout, c.Failures = 10*time.Millisecond, 500*time.Millisecond, 2
	return c
}

func TestProberVerdict(t *testing.T) {
	c := fastProbe(ProbeTCP, "127.0.0.1:1")
	c.Failures, c.History = 3, 4
	var changes []ProbeVerdict
	p, err := NewProber("west/shop.db", c, func(v ProbeVerdict) { changes = append(changes, v) })
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Verdict(); v.Health != HealthUnknown {
		t.Fatalf("initial verdict %s, want unknown", v.Health)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	fail := func(i int) { p.record(ProbeResult{Start: at(i), Error: fmt.Sprintf("fail %d", i)}) }
	ok := func(i int) { p.record(ProbeResult{Start: at(i), OK: true}) }

	ok(0)
	if v := p.Verdict(); v.Health != HealthUp || !v.Since.Equal(at(0)) {
		t.Fatalf("after a success: %+v, want up since t0", v)
	}
	fail(1)
	fail(2)
	if v := p.Verdict(); v.Health != HealthUp || v.Failures != 2 {
		t.Fatalf("2 of 3 tolerated failures: %+v, want still up with 2 failures", v)
	}
	ok(3) // a success resets the count
	fail(4)
	fail(5)
	if v := p.Verdict(); v.Health != HealthUp {
		t.Fatalf("failures not in a row made it %s", v.Health)
	}
	fail(6)
	if v := p.Verdict(); v.Health != HealthDown || !v.Since.Equal(at(6)) || v.Last.Error != "fail 6" {
		t.Fatalf("3 failures in a row: %+v, want down since t6", v)
	}
	fail(7)
	if v := p.Verdict(); !v.Since.Equal(at(6)) {
		t.Fatalf("Since moved without a change: %+v", v)
	}
	ok(8)
	if v := p.Verdict(); v.Health != HealthUp || !v.Since.Equal(at(8)) || v.Failures != 0 {
		t.Fatalf("one success after down: %+v, want up since t8", v)
	}
	if len(changes) != 3 || changes[0].Health != HealthUp || changes[1].Health != HealthDown || changes[2].Health != HealthUp {
		t.Fatalf("changes = %+v, want up, down, up", changes)
	}
	// The ring keeps the last 4, oldest first.
	rs := p.Results()
	if len(rs) != 4 {
		t.Fatalf("kept %d results, want 4", len(rs))
	}
	for i, r := range rs {
		if !r.Start.Equal(at(5 + i)) {
			t.Fatalf("result %d starts at %s, want %s", i, r.Start, at(5+i))
		}
	}
}

func TestProberUnknownToDown(t *testing.T) {
	c := fastProbe(ProbeTCP, "127.0.0.1:1")
	p, err := NewProber("x", c, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.record(ProbeResult{Start: time.Now(), Error: "e"})
	if v := p.Verdict(); v.Health != HealthUnknown {
		t.Fatalf("1 failure of 2 from unknown: %s, want unknown", v.Health)
	}
	p.record(ProbeResult{Start: time.Now(), Error: "e"})
	if v := p.Verdict(); v.Health != HealthDown {
		t.Fatalf("2 failures of 2 from unknown: %s, want down", v.Health)
	}
}

func TestValidateProbeConfig(t *testing.T) {
	for _, c := range []ProbeConfig{
		{Kind: "ping", Address: "x", Interval: 1, Timeout: 1, Failures: 1, History: 1},
		{Kind: ProbeHTTP, Address: "127.0.0.1:80", Interval: 1, Timeout: 1, Failures: 1, History: 1},
		{Kind: ProbeTCP, Address: "localhost", Interval: 1, Timeout: 1, Failures: 1, History: 1},
		{Kind: ProbeSQL, Address: "", Interval: 1, Timeout: 1, Failures: 1, History: 1},
		{Kind: ProbeTCP, Address: "127.0.0.1:1", Interval: 0, Timeout: 1, Failures: 1, History: 1},
		{Kind: ProbeTCP, Address: "127.0.0.1:1", Interval: 1, Timeout: 1, Failures: 0, History: 1},
	} {
		if err := ValidateProbeConfig(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if err := ValidateProbeConfig(fastProbe(ProbeHTTP, "http://127.0.0.1:1/healthz")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewProber("x", ProbeConfig{Kind: ProbeSQL, Address: "postgres://u:secret@127.0.0.1:1/db?x=%zz"}, nil); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad DSN error %v: want an error that hides the password", err)
	}
}

// switchHandler answers as its mode says: ok, 500, redirect, or hang until
// the client gives up.
type switchHandler struct{ mode atomic.Value }

func (h *switchHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch h.mode.Load().(string) {
	case "ok":
		fmt.Fprintln(w, "ok")
	case "500":
		http.Error(w, "broken", http.StatusInternalServerError)
	case "redirect":
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	case "hang":
		<-r.Context().Done()
	}
}

func TestHTTPProbe(t *testing.T) {
	h := &switchHandler{}
	h.mode.Store("ok")
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := fastProbe(ProbeHTTP, srv.URL+"/healthz")
	c.Timeout = 200 * time.Millisecond
	p, err := NewProber("west/shop.web", c, nil)
	if err != nil {
		t.Fatal(err)
	}
	runProber(t, p)
	health := func(want ProbeHealth) func() bool { return func() bool { return p.Verdict().Health == want } }
	probeWaitFor(t, "up", health(HealthUp))

	h.mode.Store("500")
	probeWaitFor(t, "down on 500", health(HealthDown))
	if e := p.Verdict().Last.Error; !strings.Contains(e, "500") {
		t.Fatalf("error %q does not say 500", e)
	}
	h.mode.Store("ok")
	probeWaitFor(t, "up again", health(HealthUp))

	h.mode.Store("redirect")
	probeWaitFor(t, "down on a redirect (not followed)", health(HealthDown))
	if e := p.Verdict().Last.Error; !strings.Contains(e, "302") {
		t.Fatalf("error %q does not say 302", e)
	}
	h.mode.Store("ok")
	probeWaitFor(t, "up again", health(HealthUp))

	h.mode.Store("hang")
	probeWaitFor(t, "down on a hang", health(HealthDown))
	if e := p.Verdict().Last.Error; !strings.Contains(e, "timeout") {
		t.Fatalf("error %q does not say timeout", e)
	}
	h.mode.Store("ok")
	probeWaitFor(t, "up after the hang", health(HealthUp))

	srv.Close()
	probeWaitFor(t, "down with the server closed", health(HealthDown))
}

func TestTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	p, err := NewProber("west/shop.web", fastProbe(ProbeTCP, ln.Addr().String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	runProber(t, p)
	probeWaitFor(t, "up", func() bool { return p.Verdict().Health == HealthUp })
	ln.Close()
	wg.Wait()
	probeWaitFor(t, "down with the listener closed", func() bool { return p.Verdict().Health == HealthDown })
	if e := p.Verdict().Last.Error; !strings.Contains(e, "refused") {
		t.Fatalf("error %q does not say refused", e)
	}
}

func TestSQLProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	pg := pgtest.StartPrimary(t, pgtest.Name("west"))
	c := fastProbe(ProbeSQL, pg.DSN("postgres"))
	c.Interval, c.Timeout, c.Failures = 50*time.Millisecond, time.Second, 3
	p, err := NewProber("west/shop.db", c, nil)
	if err != nil {
		t.Fatal(err)
	}
	runProber(t, p)
	probeWaitFor(t, "up", func() bool { return p.Verdict().Health == HealthUp })
	var ok []ProbeResult
	for _, r := range p.Results() {
		if r.OK {
			ok = append(ok, r)
		}
	}
	t.Logf("SQL probe (new connection + SELECT 1) on loopback: %s", ok[0].Duration)

	killed := time.Now()
	pg.Kill(t)
	probeWaitFor(t, "down after the postmaster was killed", func() bool { return p.Verdict().Health == HealthDown })
	v := p.Verdict()
	t.Logf("dead postmaster seen down %s after the kill (interval %s, %d failures): %s", v.Since.Sub(killed), c.Interval, c.Failures, v.Last.Error)

	pg.Start(t)
	probeWaitFor(t, "up after restart", func() bool { return p.Verdict().Health == HealthUp })

	// A query that fails is a failure too.
	bad := fastProbe(ProbeSQL, pg.DSN("postgres"))
	bad.Query = "SELECT * FROM no_such_table"
	bp, err := NewProber("west/shop.db", bad, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := bp.ProbeOnce(context.Background())
	if r.OK || !strings.Contains(r.Error, "no_such_table") {
		t.Fatalf("bad query result %+v, want a failure naming the table", r)
	}
}

func TestSQLProbeHungServer(t *testing.T) {
	// A server that accepts and never answers (a stopped postmaster, a
	// black-holed link): the probe fails at its timeout, it does not hang.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	c := fastProbe(ProbeSQL, fmt.Sprintf("host=%s port=%s user=x dbname=postgres sslmode=disable", host, port))
	c.Timeout = 200 * time.Millisecond
	p, err := NewProber("west/shop.db", c, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := p.ProbeOnce(context.Background())
	if r.OK || !strings.Contains(r.Error, "timeout") {
		t.Fatalf("result %+v, want a timeout failure", r)
	}
}
