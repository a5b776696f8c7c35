package driver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	mdns "github.com/miekg/dns"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// A hosted DNS server answers where the stored state routes the names, and
// a Switch through it moves them.
func TestHostDNSRoutesAsTheStateSays(t *testing.T) {
	s := spec(t, lifeboat.DriverSpec{Default: Fake, Traffic: DNS, DNS: &lifeboat.DNSDriver{
		Zone: "example.test", Listen: "127.0.0.1:0",
		NameServers: map[string]lifeboat.NameServer{"west": {Name: "ns-west.example.test", Address: "127.0.0.1"}, "east": {Name: "ns-east.example.test", Address: "127.0.0.1"}},
		Endpoints:   map[string][]string{"west": {"192.0.2.10"}, "east": {"198.51.100.10", "198.51.100.11"}},
	}})
	st := lifeboat.InitialState(s, time.Now())
	r := st.Resources[lifeboat.TrafficName("shop", "storefront", "www")]
	r.Routes, r.Epoch = "east", 4
	st.Resources[r.Name] = r
	st.Active, st.Epoch = "east", 4

	h, err := Host(context.Background(), s, st, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := resolve(t, h.DNS.Addr(), "shop.example.test"); !slices.Equal(got, []string{"198.51.100.10", "198.51.100.11"}) {
		t.Fatalf("hosted DNS answers %v; want east's endpoints, as the stored state routes", got)
	}
	// An older epoch is refused; the current one moves the name.
	tgt := lifeboat.Target{Service: "shop", Unit: "storefront", Component: "www", Resource: r.Name, Region: "west", Epoch: 3}
	if err := h.Traffic.Switch(context.Background(), tgt, []string{"shop.example.test"}); err == nil {
		t.Fatal("a switch at epoch 3 after the state's epoch 4 was accepted")
	}
	tgt.Epoch = 5
	if err := h.Traffic.Switch(context.Background(), tgt, []string{"shop.example.test"}); err != nil {
		t.Fatal(err)
	}
	if got := resolve(t, h.DNS.Addr(), "shop.example.test"); !slices.Equal(got, []string{"192.0.2.10"}) {
		t.Fatalf("after the switch to west: %v", got)
	}
}

func resolve(t *testing.T, server, name string) []string {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	r, _, err := new(mdns.Client).Exchange(m, server)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

// A hosted front door routes as the state says, and fences itself when its
// lease is not renewed.
func TestHostFrontDoorFencesWithoutRenewal(t *testing.T) {
	west := listenEcho(t)
	s := spec(t, lifeboat.DriverSpec{Default: Fake, Traffic: FrontDoor, FrontDoor: &lifeboat.FrontDoorDriver{
		Lease:     lifeboat.Duration(200 * time.Millisecond),
		Listeners: map[string]lifeboat.FrontDoorListener{"http": {Listen: "127.0.0.1:0", Upstreams: map[string]string{"west": west, "east": west}}},
	}})
	h, err := Host(context.Background(), s, lifeboat.InitialState(s, time.Now()), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.Lease != 200*time.Millisecond {
		t.Fatalf("lease %v, want the spec's 200ms", h.Lease)
	}
	rt, err := h.Traffic.Status(context.Background(), lifeboat.Target{}, nil)
	if err != nil || rt.Region != "west" {
		t.Fatalf("status %+v, %v; want routed to west", rt, err)
	}
	// Nobody renews: the lease runs out and the listener refuses.
	addr := h.FrontDoor.Addr("http")
	deadline := time.Now().Add(30 * time.Second)
	for h.FrontDoor.Stats("http").Refused == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the front door still routes long after its lease ran out")
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = io.ReadAll(c)
			c.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func listenEcho(t *testing.T) string {
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
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}
