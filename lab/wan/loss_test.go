package wan

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// Loss stalls a share of the new connections and lets the others through;
// Heal lets every new one through again.
func TestLossStallsAShareOfConnections(t *testing.T) {
	l := openLink(t, echo(t))
	if err := l.Loss(0.5); err == nil {
		if err := l.Loss(1.5); err == nil {
			t.Fatal("a loss of 1.5 was accepted")
		}
	} else {
		t.Fatal(err)
	}
	if l.Fault() != FaultLoss {
		t.Fatalf("fault %q, want loss", l.Fault())
	}
	// 60 draws at one half, side by side (a stalled one waits out its
	// deadline): both outcomes show; the chance either count is 0 is 2^-59.
	results := make(chan bool, 60)
	for i := 0; i < 60; i++ {
		go func() { results <- roundTrips(t, l.Addr()) }()
	}
	passed, stalled := 0, 0
	for i := 0; i < 60; i++ {
		if <-results {
			passed++
		} else {
			stalled++
		}
	}
	if passed == 0 || stalled == 0 {
		t.Fatalf("with a loss of 0.5: %d connections passed, %d stalled; want some of each", passed, stalled)
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if !roundTrips(t, l.Addr()) {
			t.Fatal("a connection stalled after Heal")
		}
	}
}

// roundTrips reports whether a line sent on a new connection comes back.
// A stalled connection passes nothing at all, so the deadline only has to
// be longer than a loopback echo.
func roundTrips(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "ping\n"
}
