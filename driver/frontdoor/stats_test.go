package frontdoor

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

func TestStatsAcceptedHeldActive(t *testing.T) {
	// A hold far longer than the test: a held connection must be released
	// by the switch, never by the timer.
	l := newLab(t, func(c *Config) { c.HoldTimeout = time.Hour })
	addr := l.fd.Addr("http")
	if s := l.fd.Stats("http"); !s.Fenced || s.Accepted != 0 {
		t.Fatalf("before any lease: want fenced and nothing accepted, got %+v", s)
	}
	l.fd.Renew(1)
	if s := l.fd.Stats("http"); s.Fenced {
		t.Fatalf("after Renew: want not fenced, got %+v", s)
	}

	// No route yet: the connection is held.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the connection to be held", func() bool {
		s := l.fd.Stats("http")
		return s.Accepted == 1 && s.Held == 1 && s.Active == 0
	})

	// The switch releases it to west: forwarded, active, no longer held.
	if err := l.fd.Switch(context.Background(), target("west", 1), nil); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatalf("reading the echo through the front door: %v", err)
	}
	if s := l.fd.Stats("http"); s.Held != 0 || s.Active != 1 || s.Routed != 1 {
		t.Fatalf("after the switch: want 0 held, 1 active, 1 routed; got %+v", s)
	}
	roundTrip(t, addr, "second")

	// The client leaves: nothing active any more.
	c.Close()
	waitFor(t, "no active connection", func() bool {
		s := l.fd.Stats("http")
		return s.Active == 0 && s.Accepted == 2 && s.Routed == 2
	})
	if s := l.fd.Stats("postgres"); s.Accepted != 0 || s.Active != 0 {
		t.Errorf("postgres had no client: %+v", s)
	}
	if s := l.fd.Stats("nope"); s != (Stats{}) {
		t.Errorf("an unknown listener's stats: %+v, want zero", s)
	}
}
