package frontdoor

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"
)

// server runs a loopback TCP server with serve per connection.
func server(b *testing.B, serve func(net.Conn)) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	b.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func echo(c net.Conn) { _, _ = io.Copy(c, c) }

// sink reads until EOF, then answers the byte count (8 bytes).
func sink(c net.Conn) {
	n, _ := io.Copy(io.Discard, c)
	_ = binary.Write(c, binary.BigEndian, n)
}

// front builds a started front door with one listener routed to addr.
func front(b *testing.B, addr string) *FrontDoor {
	b.Helper()
	c := DefaultConfig()
	c.Lease = time.Hour
	c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	c.Listeners["bench"] = ListenerConfig{Listen: "127.0.0.1:0", Upstreams: map[string]string{"west": addr, "east": addr}}
	fd, err := New(c)
	if err != nil {
		b.Fatal(err)
	}
	if err := fd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fd.Close() })
	if err := fd.Switch(context.Background(), target("west", 1), nil); err != nil {
		b.Fatal(err)
	}
	return fd
}

func percentile(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(d[int(float64(len(d)-1)*p)].Nanoseconds()) / 1e3
}

// BenchmarkLatency: round trips of a 64-byte message, alternately on a
// direct connection to the upstream and on one through the front door, so
// both see the same machine load. Reports the p50 and p99 of each and the
// p50 the front door adds.
func BenchmarkLatency(b *testing.B) {
	up := server(b, echo)
	fd := front(b, up)
	dial := func(addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	direct, via := dial(up), dial(fd.Addr("bench"))
	msg, got := make([]byte, 64), make([]byte, 64)
	rt := func(c net.Conn) time.Duration {
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	for range 100 { // warm up
		rt(direct)
		rt(via)
	}
	ds, vs := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		ds = append(ds, rt(direct))
		vs = append(vs, rt(via))
	}
	b.StopTimer()
	d50, v50 := percentile(ds, 0.5), percentile(vs, 0.5)
	b.ReportMetric(d50, "direct-p50-µs")
	b.ReportMetric(v50, "front-p50-µs")
	b.ReportMetric(v50-d50, "added-p50-µs")
	b.ReportMetric(percentile(ds, 0.99), "direct-p99-µs")
	b.ReportMetric(percentile(vs, 0.99), "front-p99-µs")
}

// BenchmarkThroughput: one connection streaming 64 KiB writes to an
// upstream that discards them, direct and through the front door.
func BenchmarkThroughput(b *testing.B) {
	const chunk = 64 << 10
	up := server(b, sink)
	for _, via := range []string{"direct", "frontdoor"} {
		b.Run(via, func(b *testing.B) {
			addr := up
			if via == "frontdoor" {
				addr = front(b, up).Addr("bench")
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.(*net.TCPConn).CloseWrite()
			var n int64
			if err := binary.Read(c, binary.BigEndian, &n); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if n != int64(b.N)*chunk {
				b.Fatalf("upstream received %d bytes, want %d", n, int64(b.N)*chunk)
			}
		})
	}
}

// BenchmarkConnect: a new connection per 64-byte round trip (connect,
// write, read the echo, close), direct and through the front door.
func BenchmarkConnect(b *testing.B) {
	up := server(b, echo)
	for _, via := range []string{"direct", "frontdoor"} {
		b.Run(via, func(b *testing.B) {
			addr := up
			if via == "frontdoor" {
				addr = front(b, up).Addr("bench")
			}
			msg, got := make([]byte, 64), make([]byte, 64)
			ds := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, got); err != nil {
					b.Fatal(err)
				}
				c.Close()
				ds = append(ds, time.Since(t0))
			}
			b.StopTimer()
			b.ReportMetric(percentile(ds, 0.5), "p50-µs")
		})
	}
}
