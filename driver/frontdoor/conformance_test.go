package frontdoor

import (
	"context"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/drivertest"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
)

// TestProcedures runs the planner's real failover, failback and
// switchovers with the front door as the traffic driver (the fake world
// for the rest), through real sockets.
func TestProcedures(t *testing.T) {
	s := drivertest.Spec()
	l := newLab(t, nil)
	// The world starts as the initial state: routed to the primary region.
	if err := l.fd.Switch(context.Background(), target(s.Regions.Primary.Name, 1), nil); err != nil {
		t.Fatal(err)
	}
	w := fake.New()
	w.Seed(s, lifeboat.InitialState(s, time.Unix(0, 0)))
	d := w.Drivers()
	d.Traffic = l.fd
	drivertest.Procedures(t, s, d)
	roundTrip(t, l.fd.Addr("http"), "still routing")
}

// TestHalfClose: a client that half-closes still reads the whole answer.
func TestHalfClose(t *testing.T) {
	l := newLab(t, nil)
	if err := l.fd.Switch(context.Background(), target("west", 1), nil); err != nil {
		t.Fatal(err)
	}
	c, err := dialTCP(l.fd.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := readAll(c)
	if err != nil || string(got) != "GET / HTTP/1.0\r\n\r\n" {
		t.Fatalf("after a half-close: %q, %v", got, err)
	}
}
