package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// These tests run 'lifeboat serve' as a user would: a real process hosting
// the built-in DNS server or the front door, reached by the other commands
// through drivers.agent.url.

const serveSpec = `service: shop
regions:
  primary: {name: west}
  secondary: {name: east}
objectives: {rto: 1m, rpo: 5s}
units:
  storefront:
    compute:
      web:
        recipe: {artifact: ./shop, command: [./shop]}
        standby: warm
        instances: {primary: 2, secondary: 2}
    traffic:
      www:
        names: [www.shop.example.test]
        ttl: 5s
        target: web
drivers:
  default: fake
  agent: {url: "http://%s"}
%s`

// freeAddr returns a loopback host:port nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe starts 'lifeboat serve' in dir and waits until its agent
// answers. The returned func stops it (by its PID) and waits for it to
// exit; it also runs when the test ends.
func startServe(t *testing.T, dir, agentAddr string) (stop func()) {
	t.Helper()
	cmd := exec.Command(binary, "serve")
	cmd.Dir = dir
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("serve-%d.log", time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + agentAddr + "/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("lifeboat serve exited before it served:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("lifeboat serve did not answer on %s within a minute:\n%s", agentAddr, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func query(t *testing.T, server, name string, qtype uint16) []dns.RR {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s %s at %s: %v", name, dns.TypeToString[qtype], server, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("query %s: %s", name, dns.RcodeToString[r.Rcode])
	}
	return r.Answer
}

func aRecords(t *testing.T, server, name string) string {
	t.Helper()
	var out []string
	for _, rr := range query(t, server, name, dns.TypeA) {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return strings.Join(out, ",")
}

func TestServeDNSFollowsFailoverAndRestart(t *testing.T) {
	dir := t.TempDir()
	agentAddr, dnsAddr := freeAddr(t), freeAddr(t)
	section := fmt.Sprintf(`  traffic: dns
  dns:
    zone: shop.example.test
    listen: %s
    name-servers:
      west: {name: ns-west.shop.example.test, address: 127.0.0.1}
      east: {name: ns-east.shop.example.test, address: 127.0.0.1}
    endpoints:
      west: [127.0.1.1]
      east: [127.0.2.1]
`, dnsAddr)
	if err := os.WriteFile(filepath.Join(dir, "lifeboat.yaml"), []byte(fmt.Sprintf(serveSpec, agentAddr, section)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "validate")

	stopServe := startServe(t, dir, agentAddr)
	if got := aRecords(t, dnsAddr, "www.shop.example.test"); got != "127.0.1.1" {
		t.Fatalf("before any failover www answers %q; want west's 127.0.1.1", got)
	}
	st := mustRun(t, dir, "status")
	if !strings.Contains(st.stdout, "127.0.1.1") {
		t.Errorf("status does not show what www resolves to:\n%s", st.stdout)
	}

	mustRun(t, dir, "failover", "--yes")
	if got := aRecords(t, dnsAddr, "www.shop.example.test"); got != "127.0.2.1" {
		t.Fatalf("after the failover www answers %q; want east's 127.0.2.1", got)
	}
	txt := query(t, dnsAddr, "_lifeboat.www.shop.example.test", dns.TypeTXT)
	if len(txt) != 1 || !strings.Contains(txt[0].String(), "epoch=2 region=east") {
		t.Fatalf("debug TXT after the failover: %v; want epoch=2 region=east", txt)
	}
	st = mustRun(t, dir, "status")
	if !strings.Contains(st.stdout, "127.0.2.1") {
		t.Errorf("status after the failover does not show east's address:\n%s", st.stdout)
	}

	// A restarted serve answers where the store says, not where the spec
	// first pointed.
	stopServe()
	startServe(t, dir, agentAddr)
	if got := aRecords(t, dnsAddr, "www.shop.example.test"); got != "127.0.2.1" {
		t.Fatalf("a restarted serve answers %q; want east's 127.0.2.1 (the stored route)", got)
	}
}

// echoServer answers each line with name + ":" + line.
func echoServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(name + ":" + line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	s, err := r.ReadString('\n')
	return strings.TrimSpace(s), err
}

func TestServeFrontDoorSwitchesAndClosesOldConnections(t *testing.T) {
	dir := t.TempDir()
	agentAddr, front := freeAddr(t), freeAddr(t)
	west, east := echoServer(t, "west"), echoServer(t, "east")
	section := fmt.Sprintf(`  traffic: frontdoor
  frontdoor:
    listeners:
      http: {listen: %s, upstreams: {west: %s, east: %s}}
`, front, west, east)
	if err := os.WriteFile(filepath.Join(dir, "lifeboat.yaml"), []byte(fmt.Sprintf(serveSpec, agentAddr, section)), 0o644); err != nil {
		t.Fatal(err)
	}
	startServe(t, dir, agentAddr)

	c, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if got, err := roundTrip(c, r, "hello"); err != nil || got != "west:hello" {
		t.Fatalf("through the front door before the failover: %q, %v; want west:hello", got, err)
	}

	mustRun(t, dir, "failover", "--yes")

	// The connection to the old primary was closed by the switch: nothing
	// more written on it reaches west.
	if got, err := roundTrip(c, r, "after"); err == nil {
		t.Fatalf("a connection opened before the failover still answers %q; the switch must close it", got)
	}
	c2, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := roundTrip(c2, bufio.NewReader(c2), "hello"); err != nil || got != "east:hello" {
		t.Fatalf("through the front door after the failover: %q, %v; want east:hello", got, err)
	}
}

func TestServeRefusesADriverItDoesNotHost(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lifeboat.yaml"), []byte(fmt.Sprintf(serveSpec, freeAddr(t), "")), 0o644); err != nil {
		t.Fatal(err)
	}
	r := lifeboatIn(t, dir, nil, "serve")
	if r.code != exitSpec || !strings.Contains(r.stderr, "serve has nothing to host") {
		t.Fatalf("serve with drivers.traffic fake: exit %d\n%s%s; want exit 2 saying what serve hosts", r.code, r.stdout, r.stderr)
	}
}
