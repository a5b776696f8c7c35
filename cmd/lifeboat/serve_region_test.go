package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
	"github.com/miekg/dns"
)

// These tests run one 'lifeboat serve --region R' process per region, as
// a user would: each embeds its region's etcd member and serves its
// region's copy of the traffic driver, which follows the stored state.

const regionsSpec = `service: shop
regions:
  primary: {name: west}
  secondary: {name: east}
  witness: {name: central}
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
monitor:
  mode: manual
  lease: 2s
store:
  members:
    west: {peer: %s, client: %s}
    east: {peer: %s, client: %s}
    central: {peer: %s, client: %s}
drivers:
  default: fake
%s`

// writeRegionsSpec writes regionsSpec with fresh member addresses and the
// traffic section given.
func writeRegionsSpec(t *testing.T, dir, traffic string) {
	t.Helper()
	var addrs []any
	for range 6 {
		addrs = append(addrs, freeAddr(t))
	}
	spec := fmt.Sprintf(regionsSpec, append(addrs, traffic)...)
	if err := os.WriteFile(filepath.Join(dir, "lifeboat.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "validate")
}

// regionProcess is one running 'lifeboat serve --region'.
type regionProcess struct {
	log    string
	stop   func()
	exited chan struct{}
}

// startRegions starts the controllers of regions together (their members
// need a majority to start) and waits until each has said it serves.
func startRegions(t *testing.T, dir string, regions ...string) map[string]*regionProcess {
	t.Helper()
	out := map[string]*regionProcess{}
	for _, region := range regions {
		out[region] = startRegion(t, dir, region)
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, region := range regions {
		p := out[region]
		for {
			b, _ := os.ReadFile(p.log)
			if strings.Contains(string(b), "Ctrl-C stops") {
				break
			}
			select {
			case <-p.exited:
				t.Fatalf("serve --region %s exited before it served:\n%s", region, b)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("serve --region %s did not start within 90 s:\n%s", region, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return out
}

func startRegion(t *testing.T, dir, region string) *regionProcess {
	t.Helper()
	cmd := exec.Command(binary, "serve", "--region", region)
	cmd.Dir = dir
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("serve-%s-%d.log", region, time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &regionProcess{log: logf.Name(), exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.exited) }()
	p.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
	}
	t.Cleanup(p.stop)
	return p
}

// eventually waits up to a minute for cond, then fails with what it last said.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute (last: %s)", what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// answers asks a DNS server for name's A records, "" with the error on
// failure (a server not up yet).
func answers(server, name string) string {
	var out []string
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, server)
	if err != nil {
		return "error: " + err.Error()
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return strings.Join(out, ",")
}

func TestServeRegionsEachServeTheZoneAndFollowAFailover(t *testing.T) {
	dir := t.TempDir()
	ns := map[string]string{"west": freeAddr(t), "east": freeAddr(t), "central": freeAddr(t)}
	writeRegionsSpec(t, dir, fmt.Sprintf(`  traffic: dns
  dns:
    zone: shop.example.test
    name-servers:
      west: {name: ns-west.shop.example.test, address: 127.0.0.1, listen: %s}
      east: {name: ns-east.shop.example.test, address: 127.0.0.1, listen: %s}
      central: {name: ns-central.shop.example.test, address: 127.0.0.1, listen: %s}
    endpoints:
      west: [127.0.1.1]
      east: [127.0.2.1]
`, ns["west"], ns["east"], ns["central"]))

	// Each controller also serves the API and /metrics.
	apiAddr := map[string]string{"west": freeAddr(t), "east": freeAddr(t), "central": freeAddr(t)}
	sum := sha256.Sum256([]byte("viewer-secret"))
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte("vera viewer sha256:"+hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lifeboat.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "api:\n  tokens: tokens\n  listen-in: {west: %s, east: %s, central: %s}\n", apiAddr["west"], apiAddr["east"], apiAddr["central"])
	f.Close()
	mustRun(t, dir, "validate")

	procs := startRegions(t, dir, "west", "east", "central")
	for region, addr := range apiAddr {
		if code, _ := get(t, "http://"+addr+"/v1/status", ""); code != http.StatusUnauthorized {
			t.Errorf("%s's API without a token: %d; want 401", region, code)
		}
		if code, body := get(t, "http://"+addr+"/v1/status", "viewer-secret"); code != http.StatusOK || !strings.Contains(body, `"active"`) {
			t.Errorf("%s's API status for a viewer: %d %s; want 200 with the status", region, code, body)
		}
		if code, body := get(t, "http://"+addr+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "lifeboat_epoch") || !strings.Contains(body, "lifeboat_dns_") {
			t.Errorf("%s's /metrics: %d, epoch or DNS series missing:\n%.2000s", region, code, body)
		}
	}
	for region, addr := range ns {
		if got := answers(addr, "www.shop.example.test"); got != "127.0.1.1" {
			t.Fatalf("%s's DNS server answers www with %q before any failover; want west's 127.0.1.1", region, got)
		}
	}

	// A failover made from the CLI, which hosts nothing: the plan records
	// the route, and every region's server follows the stored state.
	mustRun(t, dir, "failover", "--yes")
	for region, addr := range ns {
		eventually(t, region+"'s DNS server answers east after the failover", func() (bool, string) {
			got := answers(addr, "www.shop.example.test")
			return got == "127.0.2.1", got
		})
	}
	// The CLI hosts no server, so status asks the regions' servers.
	st := mustRun(t, dir, "status")
	if !strings.Contains(st.stdout, "127.0.2.1") || strings.Contains(st.stdout, "(recorded)") {
		t.Errorf("status after the failover does not show what the servers answer (east's 127.0.2.1):\n%s", st.stdout)
	}

	// A restarted controller answers as the store says from its start.
	procs["central"].stop()
	startRegions(t, dir, "central")
	if got := answers(ns["central"], "www.shop.example.test"); got != "127.0.2.1" {
		t.Fatalf("central's restarted DNS server answers %q; want east's 127.0.2.1 (the stored route)", got)
	}
}

func TestServeRegionFrontDoorStopsRoutingWithoutTheQuorum(t *testing.T) {
	dir := t.TempDir()
	westUp, eastUp := echoServer(t, "west"), echoServer(t, "east")
	doors := map[string]string{"west": freeAddr(t), "east": freeAddr(t)}
	writeRegionsSpec(t, dir, fmt.Sprintf(`  traffic: frontdoor
  frontdoor:
    listeners:
      http:
        listen-in: {west: %s, east: %s}
        upstreams: {west: %s, east: %s}
`, doors["west"], doors["east"], westUp, eastUp))

	procs := startRegions(t, dir, "west", "east", "central")
	for region, addr := range doors {
		eventually(t, region+"'s front door routes to west", func() (bool, string) {
			got, err := dialRoundTrip(addr, "hello")
			return err == nil && got == "west:hello", fmt.Sprint(got, err)
		})
	}

	// West alone has no majority: its lease is not renewed, so its front
	// door fences itself and stops routing, while nobody fails over
	// (manual mode).
	procs["east"].stop()
	procs["central"].stop()
	eventually(t, "west's front door stops routing without the quorum", func() (bool, string) {
		got, err := dialRoundTrip(doors["west"], "hello")
		return err != nil, fmt.Sprint(got, err)
	})
	b, _ := os.ReadFile(procs["west"].log)
	if !strings.Contains(string(b), "no quorum: the front door's lease is not renewed") {
		t.Errorf("west's log does not say why its front door stopped:\n%s", b)
	}

	// The quorum back: west routes again.
	startRegions(t, dir, "east", "central")
	eventually(t, "west's front door routes again with the quorum back", func() (bool, string) {
		got, err := dialRoundTrip(doors["west"], "hello")
		return err == nil && got == "west:hello", fmt.Sprint(got, err)
	})
}

// dialRoundTrip opens a connection to addr and sends one line.
func dialRoundTrip(addr, line string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return roundTrip(c, bufio.NewReader(c), line)
}

// get fetches url with a bearer token (none if empty).
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Each region's controller runs a tenants' gate (tenants.gate.listen-in):
// both route a tenant by the catalog, and after a failover only the new
// active region's controller recovers the tenants.
func TestServeRegionsHostTheTenantsGate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	pg := pgtest.StartPrimary(t)
	url := func(db string) string {
		return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", pgtest.User, pgtest.Password, pg.Port, db)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE catalog")
	admin.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var a []any
	for range 6 {
		a = append(a, freeAddr(t))
	}
	gates := map[string]string{"west": freeAddr(t), "east": freeAddr(t)}
	eps := func(db string) string { return fmt.Sprintf("{west: %q, east: %q}", url(db), url(db)) }
	spec := fmt.Sprintf(`service: shop
regions:
  primary: {name: west}
  secondary: {name: east}
  witness: {name: central}
objectives: {rto: 1m, rpo: 5s}
units:
  data:
    databases:
      catalog: {engine: postgres, dr-mode: geo-replica, endpoints: %s}
      paid: {engine: postgres, dr-mode: geo-replica, endpoints: %s}
monitor:
  mode: manual
  lease: 2s
store:
  members:
    west: {peer: %s, client: %s}
    east: {peer: %s, client: %s}
    central: {peer: %s, client: %s}
drivers:
  default: fake
tenants:
  catalog: data.catalog
  gate: {listen-in: {west: %s, east: %s}, wait: 10s}
  pools:
    paid: {database: data.paid}
  tiers:
    paid: {pool: paid, strategy: geo-replicate, priority: 1}
`, append(append([]any{eps("catalog"), eps("postgres")}, a...), gates["west"], gates["east"])...)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lifeboat.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "validate")
	ps := startRegions(t, dir, "west", "east", "central")
	t.Cleanup(func() {
		if t.Failed() {
			for _, region := range []string{"west", "east"} {
				b, _ := os.ReadFile(ps[region].log)
				t.Logf("serve --region %s:\n%s", region, b)
			}
		}
	})
	for _, region := range []string{"west", "east"} {
		if b, _ := os.ReadFile(ps[region].log); !strings.Contains(string(b), "tenants' gate "+gates[region]) {
			t.Fatalf("serve --region %s does not say where its tenants' gate is:\n%s", region, b)
		}
	}
	mustRun(t, dir, "tenant", "create", "acme", "--tier", "paid")
	tc, err := pgx.Connect(ctx, url("acme"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tc.Exec(ctx, "CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 7)")
	tc.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	throughGate := func(region string) (bool, string) {
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/acme?sslmode=disable&connect_timeout=5", pgtest.User, pgtest.Password, gates[region]))
		if err != nil {
			return false, err.Error()
		}
		defer c.Close(ctx)
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 7 {
			return false, fmt.Sprintf("%d orders, %v", n, err)
		}
		return true, ""
	}
	for _, region := range []string{"west", "east"} {
		eventually(t, "acme through "+region+"'s gate", func() (bool, string) { return throughGate(region) })
	}

	mustRun(t, dir, "failover", "--yes")
	eventually(t, "acme recovered in east at epoch 2", func() (bool, string) {
		r := lifeboatIn(t, dir, nil, "tenant", "show", "acme", "-o", "json")
		var tn lifeboat.Tenant
		if err := json.Unmarshal([]byte(r.stdout), &tn); err != nil {
			return false, r.stdout + r.stderr
		}
		return tn.Region == "east" && tn.Epoch == 2 && tn.State == lifeboat.TenantAvailable, fmt.Sprintf("%+v", tn)
	})
	east, _ := os.ReadFile(ps["east"].log)
	west, _ := os.ReadFile(ps["west"].log)
	if !strings.Contains(string(east), "failover seen: recovering the tenants") {
		t.Errorf("east's controller did not recover the tenants:\n%s", east)
	}
	if strings.Contains(string(west), "failover seen: recovering the tenants") || !strings.Contains(string(west), "the tenants' recovery runs in the active region's controller") {
		t.Errorf("west's controller did not leave the recovery to east:\n%s", west)
	}
	for _, region := range []string{"west", "east"} {
		eventually(t, "acme through "+region+"'s gate after the failover", func() (bool, string) { return throughGate(region) })
	}
}
