package rfc2136_test

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/drivertest"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
	"github.com/lifeboat-dr/lifeboat/driver/rfc2136"
	"github.com/lifeboat-dr/lifeboat/driver/rfc2136/bindtest"
	"github.com/miekg/dns"
)

var ctx = context.Background()

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// names: www has two IPv4 and one IPv6 endpoint in west, one IPv4 in east.
func names() map[string]map[string][]netip.Addr {
	return map[string]map[string][]netip.Addr{
		"www": {
			"west": addrs("10.0.1.1", "10.0.1.2", "2001:db8:1::1"),
			"east": addrs("10.0.2.1"),
		},
		"api.shop.example.test.": {
			"west": addrs("10.0.1.10"),
			"east": addrs("10.0.2.10", "2001:db8:2::10"),
		},
	}
}

func config(srv *bindtest.Server) rfc2136.Config {
	c := rfc2136.DefaultConfig()
	c.Server = srv.Addr
	c.Zone = srv.Zone
	c.TSIG = rfc2136.TSIGKey{Name: srv.KeyName, Algorithm: "hmac-sha256", Secret: srv.Secret}
	c.Names = names()
	c.TTL = 30 * time.Second
	return c
}

func newDriver(t *testing.T, c rfc2136.Config) *rfc2136.Driver {
	t.Helper()
	d, err := rfc2136.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func target(region string, epoch uint64) lifeboat.Target {
	return lifeboat.Target{Service: "shop", Unit: "storefront", Component: "www", Region: region,
		Resource: "shop-storefront-www", Epoch: epoch}
}

var both = []string{"www", "api.shop.example.test."}

// lookup asks the server with miekg/dns for name's A and AAAA, sorted.
func lookup(t *testing.T, srv *bindtest.Server, name string) []string {
	t.Helper()
	var out []string
	for _, q := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := srv.Query(ctx, name, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, rr := range rrs {
			switch v := rr.(type) {
			case *dns.A:
				out = append(out, v.A.String())
			case *dns.AAAA:
				out = append(out, v.AAAA.String())
			}
			if rr.Header().Ttl != 30 {
				t.Errorf("%s has ttl %d, want 30", rr, rr.Header().Ttl)
			}
		}
	}
	sort.Strings(out)
	return out
}

// dig asks the server with the real dig.
func dig(t *testing.T, srv *bindtest.Server, name, qtype string) []string {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig not found: run scripts/deps.sh (it installs Debian's dnsutils)")
	}
	out, err := exec.Command("dig", "@127.0.0.1", "-p", itoa(srv.Port), "+short", "+norecurse", "+time=5", "+tries=2", name, qtype).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s %s: %v\n%s", name, qtype, err, out)
	}
	lines := strings.Fields(strings.TrimSpace(string(out)))
	sort.Strings(lines)
	return lines
}

func itoa(i int) string { return strconv.Itoa(i) }

func serial(t *testing.T, srv *bindtest.Server) uint32 {
	t.Helper()
	s, err := srv.Serial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustStatus(t *testing.T, d *rfc2136.Driver, names []string) lifeboat.Route {
	t.Helper()
	r, err := d.Status(ctx, target("", 0), names)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return r
}

func TestSwitchWestEastWest(t *testing.T) {
	srv := bindtest.Start(t, bindtest.Options{})
	d := newDriver(t, config(srv))

	if r := mustStatus(t, d, both); r.Region != "" || r.Epoch != 0 {
		t.Fatalf("status of an empty zone = %+v, want no region, epoch 0", r)
	}
	want := map[string]map[string][]string{
		"west": {"www": {"10.0.1.1", "10.0.1.2", "2001:db8:1::1"}, "api": {"10.0.1.10"}},
		"east": {"www": {"10.0.2.1"}, "api": {"10.0.2.10", "2001:db8:2::10"}},
	}
	var lastSince time.Time
	for i, region := range []string{"west", "east", "west"} {
		epoch := uint64(i + 1)
		if err := d.Switch(ctx, target(region, epoch), both); err != nil {
			t.Fatalf("switch to %s at epoch %d: %v", region, epoch, err)
		}
		for _, n := range []string{"www", "api"} {
			fqdn := n + ".shop.example.test."
			if got := lookup(t, srv, fqdn); !reflect.DeepEqual(got, want[region][n]) {
				t.Errorf("epoch %d: %s = %v, want %v (miekg/dns)", epoch, n, got, want[region][n])
			}
			got := append(dig(t, srv, fqdn, "A"), dig(t, srv, fqdn, "AAAA")...)
			sort.Strings(got)
			if !reflect.DeepEqual(got, want[region][n]) {
				t.Errorf("epoch %d: dig %s = %v, want %v", epoch, n, got, want[region][n])
			}
			txt := strings.Join(dig(t, srv, "_lifeboat."+fqdn, "TXT"), " ")
			if !strings.Contains(txt, "epoch="+itoa(int(epoch))+" ") {
				t.Errorf("epoch %d: TXT of %s = %s, want the epoch", epoch, n, txt)
			}
			if !strings.Contains(txt, "region="+region) {
				t.Errorf("epoch %d: TXT of %s = %s, want region=%s", epoch, n, txt, region)
			}
		}
		r := mustStatus(t, d, both)
		if r.Region != region || r.Epoch != epoch {
			t.Errorf("status = %+v, want %s at epoch %d", r, region, epoch)
		}
		if !r.Since.After(lastSince) && !r.Since.Equal(lastSince) || r.Since.IsZero() {
			t.Errorf("status since = %v, want a time not before %v", r.Since, lastSince)
		}
		lastSince = r.Since
		if got := r.Answers["www"]; !reflect.DeepEqual(got, want[region]["www"]) {
			t.Errorf("status answers www = %v, want %v", got, want[region]["www"])
		}
	}
}

func TestSwitchIsIdempotent(t *testing.T) {
	srv := bindtest.Start(t, bindtest.Options{})
	d := newDriver(t, config(srv))
	if err := d.Switch(ctx, target("east", 1), both); err != nil {
		t.Fatal(err)
	}
	s1 := serial(t, srv)
	r1 := mustStatus(t, d, both)
	if err := d.Switch(ctx, target("east", 1), both); err != nil {
		t.Fatalf("second switch: %v", err)
	}
	if s2 := serial(t, srv); s2 != s1 {
		t.Errorf("a second identical switch changed the SOA serial %d → %d: it must send nothing", s1, s2)
	}
	if r2 := mustStatus(t, d, both); !reflect.DeepEqual(r1, r2) {
		t.Errorf("status changed by an identical switch: %+v → %+v", r1, r2)
	}

	// A new epoch for the same region rewrites only the marks, and keeps
	// the time since the names have pointed there.
	if err := d.Switch(ctx, target("east", 2), both); err != nil {
		t.Fatal(err)
	}
	if s3 := serial(t, srv); s3 == s1 {
		t.Error("the serial did not change although the epoch in the marks did")
	}
	r3 := mustStatus(t, d, both)
	if r3.Region != "east" || r3.Epoch != 2 || !r3.Since.Equal(r1.Since) {
		t.Errorf("status = %+v, want east at epoch 2 since %v", r3, r1.Since)
	}
}

func TestStaleEpochIsRefused(t *testing.T) {
	srv := bindtest.Start(t, bindtest.Options{})
	d := newDriver(t, config(srv))
	if err := d.Switch(ctx, target("east", 5), both); err != nil {
		t.Fatal(err)
	}
	before := serial(t, srv)
	err := d.Switch(ctx, target("west", 4), both)
	if !errors.Is(err, lifeboat.ErrStaleEpoch) || lifeboat.IsRetryable(err) {
		t.Fatalf("switch for epoch 4 after 5: %v; want a permanent stale-epoch refusal", err)
	}
	t.Logf("refusal: %v", err)
	if after := serial(t, srv); after != before {
		t.Errorf("a refused switch changed the zone: serial %d → %d", before, after)
	}
	if r := mustStatus(t, d, both); r.Region != "east" || r.Epoch != 5 {
		t.Errorf("status = %+v, want east at epoch 5", r)
	}
	// One name behind is enough to refuse: a single name switched alone
	// at a newer epoch fences the whole set.
	if err := d.Switch(ctx, target("west", 7), []string{"www"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Switch(ctx, target("east", 6), both); !errors.Is(err, lifeboat.ErrStaleEpoch) {
		t.Errorf("switch for epoch 6 with www at 7: %v; want stale epoch", err)
	}
	if got := lookup(t, srv, "api.shop.example.test."); !reflect.DeepEqual(got, []string{"10.0.2.10", "2001:db8:2::10"}) {
		t.Errorf("api = %v after a refused switch, want it untouched in east", got)
	}
}

func TestWrongSecretIsPermanent(t *testing.T) {
	srv := bindtest.Start(t, bindtest.Options{})
	c := config(srv)
	c.TSIG.Secret = "d3Jvbmctc2VjcmV0LWZvci10aGUtbGlmZWJvYXQta2V5" // valid base64, wrong key
	d := newDriver(t, c)
	before := serial(t, srv)
	for name, call := range map[string]func() error{
		"switch": func() error { return d.Switch(ctx, target("west", 1), both) },
		"status": func() error { _, err := d.Status(ctx, target("", 0), both); return err },
	} {
		err := call()
		if err == nil || lifeboat.IsRetryable(err) {
			t.Fatalf("%s with a wrong secret: %v; want a permanent error", name, err)
		}
		for _, s := range []string{"TSIG key", "secret", "allow-update", "update-policy", srv.Addr} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not mention %q", name, err, s)
			}
		}
		t.Logf("%s: %v", name, err)
	}
	// An unknown key name is the same kind of mistake.
	c.TSIG.Name = "nobody-key."
	if err := newDriver(t, c).Switch(ctx, target("west", 1), both); err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "TSIG key") {
		t.Errorf("switch with an unknown key: %v; want a permanent TSIG error", err)
	}
	if after := serial(t, srv); after != before {
		t.Errorf("unsigned updates changed the zone: serial %d → %d", before, after)
	}
}

func TestServerDownIsRetryable(t *testing.T) {
	srv := bindtest.Start(t, bindtest.Options{})
	d := newDriver(t, config(srv))
	srv.Stop()
	err := d.Switch(ctx, target("west", 1), both)
	if err == nil || !lifeboat.IsRetryable(err) {
		t.Fatalf("switch with the server stopped: %v; want a retryable error", err)
	}
	if !strings.Contains(err.Error(), srv.Addr) || !strings.Contains(err.Error(), "running") {
		t.Errorf("error %q should say which server and what to check", err)
	}
	t.Logf("server down: %v", err)
	if _, err := d.Status(ctx, target("", 0), both); err == nil || !lifeboat.IsRetryable(err) {
		t.Errorf("status with the server stopped: %v; want a retryable error", err)
	}
}

// A record changed by hand (drift) makes Status report no region, and the
// next Switch repairs it, deleting only what differs.
func TestDriftIsRepaired(t *testing.T) {
	srv := bindtest.Start(t, bindtest.Options{Records: []string{"www 300 IN A 192.0.2.99"}})
	d := newDriver(t, config(srv))
	if r := mustStatus(t, d, []string{"www"}); r.Region != "" || !reflect.DeepEqual(r.Answers["www"], []string{"192.0.2.99"}) {
		t.Fatalf("status of a hand-made record = %+v", r)
	}
	if err := d.Switch(ctx, target("east", 1), []string{"www"}); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, srv, "www.shop.example.test."); !reflect.DeepEqual(got, []string{"10.0.2.1"}) {
		t.Errorf("www = %v, want [10.0.2.1]", got)
	}
	if r := mustStatus(t, d, []string{"www"}); r.Region != "east" || r.Epoch != 1 {
		t.Errorf("status = %+v, want east at 1", r)
	}
}

// The spec's names lack the final dot, and one is the zone's apex: the
// planner's real plans run through the driver with the fake world for the
// rest.
func TestProcedures(t *testing.T) {
	srv := bindtest.Start(t, bindtest.Options{})
	c := config(srv)
	c.Names = map[string]map[string][]netip.Addr{
		"shop.example.test": {"west": addrs("10.0.1.1"), "east": addrs("10.0.2.1")},
	}
	w := fake.New()
	s := drivertest.Spec()
	w.Seed(s, lifeboat.InitialState(s, time.Unix(0, 0)))
	drivers := w.Drivers()
	drivers.Traffic = newDriver(t, c)
	st := drivertest.Procedures(t, s, drivers)
	if got := lookup(t, srv, "shop.example.test."); !reflect.DeepEqual(got, []string{"10.0.1.1"}) {
		t.Errorf("apex = %v after the procedures, want back in west", got)
	}
	r := mustStatus(t, drivers.Traffic.(*rfc2136.Driver), []string{"shop.example.test"})
	if r.Region != "west" || r.Epoch != st.Epoch {
		t.Errorf("status = %+v, want west at epoch %d", r, st.Epoch)
	}
}

func TestValidateConfig(t *testing.T) {
	good := rfc2136.DefaultConfig()
	good.Server = "127.0.0.1:53"
	good.Zone = "shop.example.test."
	good.TSIG = rfc2136.TSIGKey{Name: "k.", Algorithm: "hmac-sha256", Secret: bindtest.DefaultSecret}
	good.Names = names()
	if err := rfc2136.ValidateConfig(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, mutate := range map[string]func(*rfc2136.Config){
		"server":       func(c *rfc2136.Config) { c.Server = "127.0.0.1" },
		"zone":         func(c *rfc2136.Config) { c.Zone = "" },
		"algorithm":    func(c *rfc2136.Config) { c.TSIG.Algorithm = "md5" },
		"secret":       func(c *rfc2136.Config) { c.TSIG.Secret = "not base64!" },
		"outside zone": func(c *rfc2136.Config) { c.Names["www.other.test."] = names()["www"] },
		"no addresses": func(c *rfc2136.Config) { c.Names["www"]["east"] = nil },
		"region":       func(c *rfc2136.Config) { c.Names["www"]["east west"] = addrs("10.0.0.1") },
		"duplicate":    func(c *rfc2136.Config) { c.Names["www.shop.example.test"] = names()["www"] },
		"ttl":          func(c *rfc2136.Config) { c.TTL = 0 },
		"timeout":      func(c *rfc2136.Config) { c.Timeout = 0 },
	} {
		c := good
		c.Names = names()
		mutate(&c)
		if err := rfc2136.ValidateConfig(c); err == nil {
			t.Errorf("%s: bad config accepted", name)
		}
	}
}

// A right key that the zone does not let update is refused for good, and
// the error says where to look.
func TestUpdateNotAllowedIsPermanent(t *testing.T) {
	srv := bindtest.Start(t, bindtest.Options{AllowUpdate: "none"})
	d := newDriver(t, config(srv))
	err := d.Switch(ctx, target("west", 1), both)
	if err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "REFUSED") || !strings.Contains(err.Error(), "allow-update") {
		t.Fatalf("switch without allow-update: %v; want a permanent REFUSED that names allow-update", err)
	}
	t.Logf("not allowed: %v", err)
	// Reading is still allowed: Status works.
	if _, err := d.Status(ctx, target("", 0), both); err != nil {
		t.Errorf("status: %v", err)
	}
}

func BenchmarkSwitch(b *testing.B) {
	srv := bindtest.Start(b, bindtest.Options{})
	c := config(srv)
	d, err := rfc2136.New(c)
	if err != nil {
		b.Fatal(err)
	}
	regions := []string{"west", "east"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.Switch(ctx, target(regions[i%2], uint64(i+1)), both); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSwitchNoChange(b *testing.B) {
	srv := bindtest.Start(b, bindtest.Options{})
	d, err := rfc2136.New(config(srv))
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Switch(ctx, target("west", 1), both); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.Switch(ctx, target("west", 1), both); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStatus(b *testing.B) {
	srv := bindtest.Start(b, bindtest.Options{})
	d, err := rfc2136.New(config(srv))
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Switch(ctx, target("west", 1), both); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Status(ctx, target("", 0), both); err != nil {
			b.Fatal(err)
		}
	}
}
