package dns

import (
	"slices"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/drivertest"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
	"github.com/miekg/dns"
)

// TestProcedures runs the planner's real failover, failback and two
// switchovers with this server as the traffic driver (the fake world does
// compute and databases), then checks what the name resolves to.
func TestProcedures(t *testing.T) {
	s := drivertest.Spec()
	c := testConfig()
	c.Zone = "shop.example.test."
	c.NS = []NameServer{{Name: "ns-west.shop.example.test.", Addr: west4[0]}, {Name: "ns-east.shop.example.test.", Addr: east4[0]}}
	srv := start(t, c)
	for _, u := range s.Units {
		for _, tr := range u.Traffic {
			for _, n := range tr.Names {
				must(t, srv.SetName(Name{Name: n, TTL: 30 * time.Second, Active: s.Regions.Primary.Name, Endpoints: map[string][]Endpoint{
					s.Regions.Primary.Name: eps(true, west4...), s.Regions.Secondary.Name: eps(true, east4...)}}))
			}
		}
	}
	w := fake.New()
	w.Seed(s, lifeboat.InitialState(s, time.Unix(0, 0)))
	d := w.Drivers()
	d.Traffic = srv
	st := drivertest.Procedures(t, s, d)

	m := query(t, srv, "udp", "shop.example.test.", dns.TypeA, 0)
	if got := addrs(m); st.Active != "west" || !slices.Equal(got, strs(west4...)) {
		t.Errorf("after the procedures (active %s) the name answers %v", st.Active, got)
	}
	m = query(t, srv, "udp", "_lifeboat.shop.example.test.", dns.TypeTXT, 0)
	if len(m.Answer) != 1 {
		t.Fatalf("TXT: %v", m)
	}
	t.Logf("TXT: %s; serial %d", m.Answer[0].(*dns.TXT).Txt[0], srv.Serial())
}
