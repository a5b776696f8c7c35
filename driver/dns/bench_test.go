package dns

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkQueryUDP measures queries/s over UDP on 127.0.0.1 from parallel
// clients, each on its own socket (as a load generator would). The
// lead's dnsperf run in bench/ is the figure to compare with BIND.
func BenchmarkQueryUDP(b *testing.B) {
	s := start(b, testConfig())
	must(b, s.SetName(www()))
	m := new(dns.Msg)
	m.SetQuestion("www."+zone, dns.TypeA)
	var failed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("udp", s.Addr())
		if err != nil {
			b.Error(err)
			return
		}
		co := &dns.Conn{Conn: conn}
		defer co.Close()
		for pb.Next() {
			_ = co.SetDeadline(time.Now().Add(5 * time.Second))
			if err := co.WriteMsg(m); err != nil {
				failed.Add(1)
				continue
			}
			if r, err := co.ReadMsg(); err != nil || len(r.Answer) != 2 {
				failed.Add(1)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
	if f := failed.Load(); f > 0 {
		b.Errorf("%d of %d queries failed", f, b.N)
	}
}

// BenchmarkAnswer measures building an answer without the network.
func BenchmarkAnswer(b *testing.B) {
	s, err := New(testConfig())
	must(b, err)
	must(b, s.SetName(www()))
	m := new(dns.Msg)
	m.SetQuestion("www."+zone, dns.TypeA)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := s.answer(m); len(r.Answer) != 2 {
				b.Fatal("bad answer")
			}
		}
	})
}
