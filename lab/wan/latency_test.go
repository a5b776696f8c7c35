package wan

import (
	"net"
	"testing"
	"time"
)

// A link cut while it delays bytes in flight goes down and heals: the
// delayed bytes are dropped, never pushed into closed connections (which
// blocked Toxiproxy's RemoveToxic for good, and the lab daemon with it).
func TestDownWhileDelayingDoesNotHang(t *testing.T) {
	l := openLink(t, echo(t))
	if err := l.Latency(200*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	// Keep bytes in flight through the delay on a few connections.
	stop := make(chan struct{})
	defer close(stop)
	for range 4 {
		c, err := net.Dial("tcp", l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A writer that never waits for the echo, and a reader that drains
		// it: chunks pile up inside the delay in both directions.
		go func() {
			buf := make([]byte, 512)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // let chunks queue in the delay

	done := make(chan error, 1)
	go func() { done <- l.Down() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Down of a delaying link did not return within 30 s: the latency toxic blocks its removal")
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	if !roundTrips(t, l.Addr()) {
		t.Fatal("a new connection stalled after Heal")
	}
}
