package dns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/miekg/dns"
)

const zone = "shop.lab.test."

// Endpoint addresses are records only: nothing ever connects to them.
var (
	west4 = []netip.Addr{netip.MustParseAddr("127.0.1.1"), netip.MustParseAddr("127.0.1.2")}
	east4 = []netip.Addr{netip.MustParseAddr("127.0.2.1"), netip.MustParseAddr("127.0.2.2")}
	west6 = netip.MustParseAddr("2001:db8::1:1")
	east6 = netip.MustParseAddr("2001:db8::2:1")
)

func testConfig() Config {
	c := DefaultConfig()
	c.Zone = zone
	c.NS = []NameServer{
		{Name: "ns-west." + zone, Addr: netip.MustParseAddr("127.0.0.1")},
		{Name: "ns-east." + zone, Addr: netip.MustParseAddr("127.0.0.2")},
	}
	c.Rand = rand.New(rand.NewPCG(1, 2))
	return c
}

// start serves c on 127.0.0.1 until the test ends.
func start(t testing.TB, c Config) *Server {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func eps(healthy bool, addrs ...netip.Addr) []Endpoint {
	var out []Endpoint
	for _, a := range addrs {
		out = append(out, Endpoint{Addr: a, Healthy: healthy})
	}
	return out
}

// www is a priority name with two IPv4 and one IPv6 endpoint per region.
func www() Name {
	return Name{Name: "www." + zone, TTL: 30 * time.Second, Active: "west", Endpoints: map[string][]Endpoint{
		"west": eps(true, west4[0], west4[1], west6),
		"east": eps(true, east4[0], east4[1], east6),
	}}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// query asks the server over net ("udp" or "tcp"); bufsize > 0 adds EDNS0.
func query(t testing.TB, s *Server, net, name string, qtype uint16, bufsize uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	if bufsize > 0 {
		m.SetEdns0(bufsize, false)
	}
	c := &dns.Client{Net: net, Timeout: 10 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], net, err)
	}
	return r
}

// addrs returns the A and AAAA of an answer, sorted.
func addrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

func strs(as ...netip.Addr) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	slices.Sort(out)
	return out
}

func wantRcode(t testing.TB, m *dns.Msg, rcode int) {
	t.Helper()
	if m.Rcode != rcode {
		t.Fatalf("rcode %s, want %s:\n%v", dns.RcodeToString[m.Rcode], dns.RcodeToString[rcode], m)
	}
}

func negativeSOA(t testing.TB, m *dns.Msg) {
	t.Helper()
	if len(m.Ns) != 1 {
		t.Fatalf("authority has %d records, want the SOA:\n%v", len(m.Ns), m)
	}
	soa, ok := m.Ns[0].(*dns.SOA)
	if !ok || soa.Hdr.Name != zone || soa.Hdr.Ttl != 5 {
		t.Fatalf("authority %v, want the zone's SOA with the negative TTL 5", m.Ns[0])
	}
}

func TestAnswers(t *testing.T) {
	s := start(t, testConfig())
	must(t, s.SetName(www()))
	for _, net := range []string{"udp", "tcp"} {
		t.Run(net, func(t *testing.T) {
			m := query(t, s, net, "www."+zone, dns.TypeA, 0)
			wantRcode(t, m, dns.RcodeSuccess)
			if !m.Authoritative {
				t.Error("AA bit not set")
			}
			if got, want := addrs(m), strs(west4...); !slices.Equal(got, want) {
				t.Errorf("A = %v, want %v", got, want)
			}
			if m.Answer[0].Header().Ttl != 30 {
				t.Errorf("TTL %d, want 30", m.Answer[0].Header().Ttl)
			}

			// Case-insensitive, and the answer keeps the asker's case.
			m = query(t, s, net, "WWW.Shop.Lab.Test.", dns.TypeAAAA, 0)
			if got := addrs(m); !slices.Equal(got, strs(west6)) || m.Answer[0].Header().Name != "WWW.Shop.Lab.Test." {
				t.Errorf("AAAA = %v", m.Answer)
			}

			m = query(t, s, net, "_lifeboat.www."+zone, dns.TypeTXT, 0)
			if len(m.Answer) != 1 || !strings.HasPrefix(m.Answer[0].(*dns.TXT).Txt[0], "epoch=0 region=west since=") {
				t.Errorf("TXT = %v", m.Answer)
			}

			m = query(t, s, net, zone, dns.TypeSOA, 0)
			soa, ok := m.Answer[0].(*dns.SOA)
			if !ok || soa.Ns != "ns-west."+zone || soa.Mbox != "hostmaster."+zone || soa.Serial != s.Serial() || soa.Minttl != 5 {
				t.Errorf("SOA = %v", m.Answer)
			}

			m = query(t, s, net, zone, dns.TypeNS, 0)
			var ns, glue []string
			for _, rr := range m.Answer {
				ns = append(ns, rr.(*dns.NS).Ns)
			}
			for _, rr := range m.Extra {
				if a, ok := rr.(*dns.A); ok {
					glue = append(glue, a.Hdr.Name+"="+a.A.String())
				}
			}
			slices.Sort(ns)
			slices.Sort(glue)
			if !slices.Equal(ns, []string{"ns-east." + zone, "ns-west." + zone}) ||
				!slices.Equal(glue, []string{"ns-east." + zone + "=127.0.0.2", "ns-west." + zone + "=127.0.0.1"}) {
				t.Errorf("NS = %v, glue = %v", ns, glue)
			}
			m = query(t, s, net, "ns-east."+zone, dns.TypeA, 0)
			if got := addrs(m); !slices.Equal(got, []string{"127.0.0.2"}) {
				t.Errorf("A of a name server = %v", got)
			}

			m = query(t, s, net, "nope."+zone, dns.TypeA, 0)
			wantRcode(t, m, dns.RcodeNameError)
			negativeSOA(t, m)
			if !m.Authoritative {
				t.Error("NXDOMAIN without the AA bit")
			}

			for _, q := range []struct {
				name  string
				qtype uint16
			}{{"www." + zone, dns.TypeMX}, {"www." + zone, dns.TypeTXT}, {"_lifeboat.www." + zone, dns.TypeA}, {zone, dns.TypeA}} {
				m = query(t, s, net, q.name, q.qtype, 0)
				wantRcode(t, m, dns.RcodeSuccess)
				if len(m.Answer) != 0 {
					t.Errorf("%s %s: answer %v, want NODATA", q.name, dns.TypeToString[q.qtype], m.Answer)
				}
				negativeSOA(t, m)
			}

			m = query(t, s, net, "www.example.com.", dns.TypeA, 0)
			wantRcode(t, m, dns.RcodeRefused)
			if m.Authoritative || len(m.Answer)+len(m.Ns) != 0 {
				t.Errorf("outside the zone: %v", m)
			}
		})
	}
}

// An empty non-terminal (a name with names below it) exists: NODATA.
func TestEmptyNonTerminal(t *testing.T) {
	s := start(t, testConfig())
	n := www()
	n.Name = "api.eu." + zone
	must(t, s.SetName(n))
	m := query(t, s, "udp", "eu."+zone, dns.TypeA, 0)
	wantRcode(t, m, dns.RcodeSuccess)
	negativeSOA(t, m)
}

func many(n int, region byte) []Endpoint {
	var out []Endpoint
	for i := range n {
		out = append(out, Endpoint{Addr: netip.AddrFrom4([4]byte{127, region, byte(i / 250), byte(1 + i%250)}), Healthy: true})
	}
	return out
}

func TestTruncation(t *testing.T) {
	s := start(t, testConfig())
	must(t, s.SetName(Name{Name: "big." + zone, TTL: time.Minute, Active: "west",
		Endpoints: map[string][]Endpoint{"west": many(100, 1), "east": many(100, 2)}}))

	m := query(t, s, "udp", "big."+zone, dns.TypeA, 0)
	m.Compress = true // as it came on the wire
	if !m.Truncated || len(m.Answer) >= 100 || m.Len() > 512 {
		t.Errorf("UDP without EDNS: tc=%v, %d answers, %d bytes; want TC and at most 512 bytes", m.Truncated, len(m.Answer), m.Len())
	}
	m = query(t, s, "udp", "big."+zone, dns.TypeA, 1232)
	m.Compress = true
	if !m.Truncated || m.Len() > 1232 || m.IsEdns0() == nil {
		t.Errorf("UDP with EDNS 1232: tc=%v, %d bytes, opt=%v; want TC within 1232 bytes", m.Truncated, m.Len(), m.IsEdns0())
	}
	m = query(t, s, "udp", "big."+zone, dns.TypeA, 4096)
	if m.Truncated || len(m.Answer) != 100 {
		t.Errorf("UDP with EDNS 4096: tc=%v, %d answers; want all 100", m.Truncated, len(m.Answer))
	}
	m = query(t, s, "tcp", "big."+zone, dns.TypeA, 0)
	if m.Truncated || len(m.Answer) != 100 {
		t.Errorf("TCP: tc=%v, %d answers; want all 100", m.Truncated, len(m.Answer))
	}
}

func target(region string, epoch uint64) lifeboat.Target {
	return lifeboat.Target{Service: "shop", Unit: "storefront", Component: "www", Region: region,
		Resource: lifeboat.TrafficName("shop", "storefront", "www"), Epoch: epoch}
}

func TestSwitch(t *testing.T) {
	s := start(t, testConfig())
	ctx := context.Background()
	must(t, s.SetName(www()))
	before := s.Serial()
	must(t, s.Switch(ctx, target("east", 2), []string{"www." + zone}))
	if s.Serial() <= before {
		t.Errorf("serial %d after a switch, was %d; want it bumped", s.Serial(), before)
	}
	m := query(t, s, "udp", "www."+zone, dns.TypeA, 0)
	if got := addrs(m); !slices.Equal(got, strs(east4...)) {
		t.Errorf("A after switching to east = %v", got)
	}
	m = query(t, s, "udp", zone, dns.TypeSOA, 0)
	if soa := m.Answer[0].(*dns.SOA); soa.Serial != s.Serial() {
		t.Errorf("SOA serial %d, want %d", soa.Serial, s.Serial())
	}
	m = query(t, s, "udp", "_lifeboat.www."+zone, dns.TypeTXT, 0)
	if txt := m.Answer[0].(*dns.TXT).Txt[0]; !strings.HasPrefix(txt, "epoch=2 region=east since=") {
		t.Errorf("TXT = %q", txt)
	}

	// Again: nothing changes, not even the serial.
	serial := s.Serial()
	must(t, s.Switch(ctx, target("east", 2), []string{"www." + zone}))
	if s.Serial() != serial {
		t.Errorf("an idempotent switch bumped the serial")
	}

	err := s.Switch(ctx, target("west", 1), []string{"www." + zone})
	if !errors.Is(err, lifeboat.ErrStaleEpoch) || lifeboat.IsRetryable(err) {
		t.Fatalf("switch for epoch 1 after epoch 2: %v; want a permanent stale epoch", err)
	}
	if got := addrs(query(t, s, "udp", "www."+zone, dns.TypeA, 0)); !slices.Equal(got, strs(east4...)) {
		t.Errorf("a refused switch moved the answer to %v", got)
	}

	for _, bad := range []struct {
		t     lifeboat.Target
		names []string
		want  string
	}{
		{target("", 3), []string{"www." + zone}, "no region"},
		{target("north", 3), []string{"www." + zone}, "no endpoints there"},
		{target("west", 3), []string{"nope." + zone}, "not served"},
	} {
		err := s.Switch(ctx, bad.t, bad.names)
		if err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("switch %+v %v: %v; want a permanent error saying %q", bad.t.Region, bad.names, err, bad.want)
		}
	}
}

func TestHealth(t *testing.T) {
	s := start(t, testConfig())
	must(t, s.SetName(www()))
	name := "www." + zone

	s.SetHealth(name, "west", west4[0], false)
	if got := addrs(query(t, s, "udp", name, dns.TypeA, 0)); !slices.Equal(got, strs(west4[1])) {
		t.Errorf("A with one endpoint down = %v, want only the healthy one", got)
	}
	if a := s.Alerts(); len(a) != 0 {
		t.Errorf("alerts with a healthy endpoint left: %v", a)
	}

	// All down: the last known good answer (west4[1] and west6), an
	// alert, and never every endpoint.
	s.SetHealth(name, "west", west4[1], false)
	s.SetHealth(name, "west", west6, false)
	if got := addrs(query(t, s, "udp", name, dns.TypeA, 0)); !slices.Equal(got, strs(west4[1])) {
		t.Errorf("A with every endpoint down = %v, want the last known good %v", got, west4[1])
	}
	if got := addrs(query(t, s, "udp", name, dns.TypeAAAA, 0)); !slices.Equal(got, strs(west6)) {
		t.Errorf("AAAA with every endpoint down = %v, want the last known good", got)
	}
	alerts := s.Alerts()
	if len(alerts) != 1 || alerts[0].Recovered || alerts[0].Name != name || alerts[0].Region != "west" ||
		!slices.Equal(strs(alerts[0].Serving...), strs(west4[1], west6)) || !strings.Contains(alerts[0].Message, "failing closed") {
		t.Fatalf("alerts = %+v, want one fail-closed alert serving the last known good", alerts)
	}
	m := query(t, s, "udp", "_lifeboat."+name, dns.TypeTXT, 0)
	if txt := m.Answer[0].(*dns.TXT).Txt[0]; !strings.HasSuffix(txt, "fail-closed=true") {
		t.Errorf("TXT while failing closed = %q", txt)
	}

	s.SetHealth(name, "west", west4[0], true)
	if got := addrs(query(t, s, "udp", name, dns.TypeA, 0)); !slices.Equal(got, strs(west4[0])) {
		t.Errorf("A after recovery = %v", got)
	}
	if alerts := s.Alerts(); len(alerts) != 2 || !alerts[1].Recovered {
		t.Errorf("alerts = %+v, want a recovery after the fail-closed one", alerts)
	}

	// A name whose region never had a healthy endpoint answers nothing,
	// not everything.
	n := www()
	n.Name = "cold." + zone
	n.Endpoints["west"] = eps(false, west4...)
	must(t, s.SetName(n))
	m = query(t, s, "udp", n.Name, dns.TypeA, 0)
	wantRcode(t, m, dns.RcodeSuccess)
	if len(m.Answer) != 0 {
		t.Errorf("A of a name never healthy = %v, want nothing", addrs(m))
	}
	if a := s.Alerts(); len(a) != 3 || a[2].Name != n.Name || len(a[2].Serving) != 0 {
		t.Errorf("alerts = %+v", a)
	}
}

func TestWeighted(t *testing.T) {
	c := testConfig()
	c.Rand = rand.New(rand.NewPCG(42, 42))
	s, err := New(c) // not started: answers are asked of the handler directly
	must(t, err)
	n := www()
	n.Name = "aa." + zone
	n.Weighted = map[string]int{"west": 3, "east": 1}
	must(t, s.SetName(n))
	const queries = 4000
	count := func() (west, east int) {
		for range queries {
			m := new(dns.Msg)
			m.SetQuestion(n.Name, dns.TypeA)
			got := addrs(s.answer(m))
			switch {
			case slices.Equal(got, strs(west4...)):
				west++
			case slices.Equal(got, strs(east4...)):
				east++
			default:
				t.Fatalf("weighted answer %v mixes or misses regions", got)
			}
		}
		return west, east
	}
	// 3:1 expects 3000/1000; the seed makes the count exact, the bound
	// says the rule is right (4 standard deviations ≈ 110).
	west, east := count()
	t.Logf("3:1 → west %d, east %d", west, east)
	if west < 2890 || west > 3110 || west+east != queries {
		t.Errorf("3:1 weights gave west %d, east %d of %d", west, east, queries)
	}

	// A region with no healthy endpoint gets nothing: its weight goes to
	// the others.
	for _, a := range west4 {
		s.SetHealth(n.Name, "west", a, false)
	}
	s.SetHealth(n.Name, "west", west6, false)
	if west, east := count(); west != 0 || east != queries {
		t.Errorf("with west down: west %d, east %d", west, east)
	}
	if a := s.Alerts(); len(a) != 0 {
		t.Errorf("alert while east is healthy: %v", a)
	}

	// A switch pins the name to one region.
	must(t, s.Switch(context.Background(), target("west", 2), []string{n.Name}))
	s.SetHealth(n.Name, "west", west4[0], true)
	m := new(dns.Msg)
	m.SetQuestion(n.Name, dns.TypeA)
	if got := addrs(s.answer(m)); !slices.Equal(got, strs(west4[0])) {
		t.Errorf("after a switch to west: %v", got)
	}
}

func TestValidate(t *testing.T) {
	c := Config{}
	err := ValidateConfig(c)
	for _, want := range []string{"zone is empty", "listen is empty", "no name servers", "soa ttl"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateConfig(empty) = %v; want it to say %q", err, want)
		}
	}
	must(t, ValidateConfig(testConfig()))
	s, err := New(testConfig())
	must(t, err)
	for _, bad := range []struct {
		n    Name
		want string
	}{
		{Name{Name: "www.example.com.", TTL: time.Second, Endpoints: www().Endpoints}, "outside the zone"},
		{Name{Name: "www." + zone, Endpoints: www().Endpoints}, "ttl"},
		{Name{Name: "www." + zone, TTL: time.Second}, "no endpoints"},
		{Name{Name: "www." + zone, TTL: time.Second, Endpoints: www().Endpoints, Weighted: map[string]int{"west": 0}}, "every weight is 0"},
		{Name{Name: "www." + zone, TTL: time.Second, Endpoints: www().Endpoints, Active: "north"}, "active region north"},
	} {
		if err := s.SetName(bad.n); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("SetName(%+v) = %v; want %q", bad.n, err, bad.want)
		}
	}
}

// TestTrafficDriver is the TrafficDriver contract as lifeboat.Bind uses it:
// after Switch, Status reports the region at the epoch; twice, idempotent.
func TestTrafficDriver(t *testing.T) {
	s := start(t, testConfig())
	ctx := context.Background()
	must(t, s.SetName(www()))
	api := www()
	api.Name = "api." + zone
	must(t, s.SetName(api))
	names := []string{"www." + zone, "api." + zone}
	var d lifeboat.TrafficDriver = s
	for i, region := range []string{"east", "east", "west", "west"} {
		epoch := uint64(2 + i/2)
		must(t, d.Switch(ctx, target(region, epoch), names))
		r, err := d.Status(ctx, target(region, epoch), names)
		must(t, err)
		if r.Region != region || r.Epoch != epoch || r.Since.IsZero() {
			t.Fatalf("status after switch %d to %s at epoch %d: %+v", i, region, epoch, r)
		}
		want := strs(west4[0], west4[1], west6)
		if region == "east" {
			want = strs(east4[0], east4[1], east6)
		}
		for _, n := range names {
			got := slices.Clone(r.Answers[n])
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("answers of %s = %v, want %v", n, got, want)
			}
		}
	}
	if _, err := d.Status(ctx, target("west", 3), []string{"nope." + zone}); err == nil || lifeboat.IsRetryable(err) {
		t.Errorf("status of an unknown name: %v", err)
	}
}

func ExampleServer() {
	c := DefaultConfig()
	c.Zone = "shop.lab.test."
	c.NS = []NameServer{{Name: "ns-west.shop.lab.test.", Addr: netip.MustParseAddr("127.0.0.1")}}
	s, _ := New(c)
	_ = s.SetName(Name{Name: "www.shop.lab.test.", TTL: 30 * time.Second, Active: "west",
		Endpoints: map[string][]Endpoint{"west": {{Addr: netip.MustParseAddr("127.0.1.1"), Healthy: true}}}})
	fmt.Println(s.Start() == nil)
	defer s.Close()
	// Output: true
}

// The UDP loops keep packed answers; a switch, a health change or a new name
// makes every kept answer stale at once, and a kept answer carries the
// query's own ID.
func TestCachedAnswersFollowEveryChange(t *testing.T) {
	s := start(t, testConfig())
	ctx := context.Background()
	must(t, s.SetName(www()))
	ask := func() []string {
		t.Helper()
		// Several times: every UDP loop may have its own copy.
		var got []string
		for range 8 {
			m := query(t, s, "udp", "www."+zone, dns.TypeA, 0)
			got = addrs(m)
		}
		return got
	}
	if got := ask(); !slices.Equal(got, strs(west4...)) {
		t.Fatalf("A = %v, want west", got)
	}
	must(t, s.Switch(ctx, target("east", 2), []string{"www." + zone}))
	if got := ask(); !slices.Equal(got, strs(east4...)) {
		t.Fatalf("A after a switch = %v, want east (a stale cached answer?)", got)
	}
	s.SetHealth("www."+zone, "east", east4[0], false)
	if got := ask(); !slices.Equal(got, strs(east4[1])) {
		t.Fatalf("A after an endpoint fell ill = %v, want only %s", got, east4[1])
	}
	// IDs: the client checks that the answer's ID is its query's.
	c := &dns.Client{Net: "udp", Timeout: 10 * time.Second}
	for i := range 20 {
		m := new(dns.Msg)
		m.SetQuestion("www."+zone, dns.TypeA)
		m.Id = uint16(1000 + i)
		r, _, err := c.Exchange(m, s.Addr())
		if err != nil || r.Id != m.Id {
			t.Fatalf("query %d: %v, answer ID %d", m.Id, err, r.Id)
		}
	}
}
