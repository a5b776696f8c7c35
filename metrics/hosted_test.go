package metrics

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/lifeboat-dr/lifeboat/driver/dns"
	"github.com/lifeboat-dr/lifeboat/driver/frontdoor"
)

// TestHostedDrivers scrapes a real DNS server and a real front door, both
// on 127.0.0.1, after traffic went through them.
func TestHostedDrivers(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	dc := dns.DefaultConfig()
	dc.Zone = "shop.lab.test."
	dc.Listen = "127.0.0.1:0"
	dc.NS = []dns.NameServer{{Name: "ns-west.shop.lab.test.", Addr: netip.MustParseAddr("127.0.0.1")}}
	dc.Log = quiet
	srv, err := dns.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, name := range []string{"shop.lab.test.", "nope.shop.lab.test."} {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeSOA)
		c := &mdns.Client{Net: "udp", Timeout: 10 * time.Second}
		if _, _, err := c.Exchange(m, srv.Addr()); err != nil {
			t.Fatalf("asking the DNS server for %s: %v", name, err)
		}
	}

	// A front door with no route and no hold: the connection is refused.
	fc := frontdoor.DefaultConfig()
	fc.HoldTimeout = 0
	fc.Log = quiet
	fc.Listeners["http"] = frontdoor.ListenerConfig{Listen: "127.0.0.1:0", Upstreams: map[string]string{"west": "127.0.0.1:1"}}
	fd, err := frontdoor.New(fc)
	if err != nil {
		t.Fatal(err)
	}
	if err := fd.Start(); err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	conn, err := net.Dial("tcp", fd.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, _ = conn.Read(make([]byte, 1)) // returns once the front door closed it
	conn.Close()

	c := DefaultConfig()
	c.DNS, c.FrontDoor = srv, fd
	reg, err := NewRegistry(c)
	if err != nil {
		t.Fatal(err)
	}
	// The UDP answer is counted just after it is sent: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := gather(t, reg)
		if v[`lifeboat_dns_queries_total{protocol="udp",qtype="SOA",rcode="NOERROR"}`] == 1 &&
			v[`lifeboat_dns_queries_total{protocol="udp",qtype="SOA",rcode="NXDOMAIN"}`] == 1 &&
			v[`lifeboat_frontdoor_connections_refused_total{listener="http"}`] == 1 &&
			v[`lifeboat_frontdoor_connections_accepted_total{listener="http"}`] == 1 &&
			v[`lifeboat_frontdoor_fenced{listener="http"}`] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scrape does not show the traffic:\n%s", scrape(t, reg))
		}
		time.Sleep(10 * time.Millisecond)
	}
	promtool(t, scrape(t, reg))
}
