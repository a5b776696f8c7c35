package dns

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// statsEventually waits (bounded) until Stats satisfies ok: a UDP answer
// is counted just after it is sent, so the client may read it first.
func statsEventually(t *testing.T, s *Server, what string, ok func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats are %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func count(st Stats, proto, qtype, rcode string) uint64 {
	for _, q := range st.Queries {
		if q.Protocol == proto && q.Type == qtype && q.Rcode == rcode {
			return q.Count
		}
	}
	return 0
}

func TestStatsCountAnswersByProtocolTypeAndRcode(t *testing.T) {
	s := start(t, testConfig())
	must(t, s.SetName(www()))
	if st := s.Stats(); len(st.Queries) != 0 || st.Dropped != 0 {
		t.Fatalf("a new server has counts: %+v", st)
	}
	// The second and third identical queries are answered from the read
	// loop's cache: they must count the same.
	for range 3 {
		wantRcode(t, query(t, s, "udp", "www."+zone, dns.TypeA, 0), dns.RcodeSuccess)
	}
	wantRcode(t, query(t, s, "udp", "nope."+zone, dns.TypeAAAA, 0), dns.RcodeNameError)
	wantRcode(t, query(t, s, "udp", "example.org.", dns.TypeA, 0), dns.RcodeRefused)
	wantRcode(t, query(t, s, "udp", zone, dns.TypeAXFR, 0), dns.RcodeRefused)
	wantRcode(t, query(t, s, "udp", "www."+zone, dns.TypeNAPTR, 0), dns.RcodeSuccess)
	wantRcode(t, query(t, s, "tcp", zone, dns.TypeSOA, 0), dns.RcodeSuccess)

	// A datagram that is no DNS query gets no answer and is counted.
	c, err := net.Dial("udp", s.Addr())
	must(t, err)
	defer c.Close()
	_, err = c.Write([]byte("not dns"))
	must(t, err)

	want := []QueryCount{
		{"tcp", "SOA", "NOERROR", 1},
		{"udp", "A", "NOERROR", 3},
		{"udp", "A", "REFUSED", 1},
		{"udp", "AAAA", "NXDOMAIN", 1},
		{"udp", "AXFR", "REFUSED", 1},
		{"udp", "other", "NOERROR", 1},
	}
	st := statsEventually(t, s, "every answer and the dropped datagram counted", func(st Stats) bool {
		return count(st, "udp", "A", "NOERROR") == 3 && count(st, "udp", "other", "NOERROR") == 1 && st.Dropped == 1
	})
	if len(st.Queries) != len(want) {
		t.Fatalf("queries: got %+v, want %+v", st.Queries, want)
	}
	for i, w := range want {
		if st.Queries[i] != w {
			t.Errorf("queries[%d]: got %+v, want %+v", i, st.Queries[i], w)
		}
	}
	if st.Serial != s.Serial() || st.FailingClosed != 0 {
		t.Errorf("serial %d (want %d), failing closed %d (want 0)", st.Serial, s.Serial(), st.FailingClosed)
	}

	// Counts survive a restart of the server: Prometheus counters never
	// go back.
	must(t, s.Close())
	must(t, s.Start())
	wantRcode(t, query(t, s, "udp", "www."+zone, dns.TypeA, 0), dns.RcodeSuccess)
	statsEventually(t, s, "the count kept across Close and Start", func(st Stats) bool {
		return count(st, "udp", "A", "NOERROR") == 4
	})
}

func TestStatsFailingClosed(t *testing.T) {
	s := start(t, testConfig())
	must(t, s.SetName(www()))
	for _, a := range append(west4, west6) {
		s.SetHealth("www."+zone, "west", a, false)
	}
	if st := s.Stats(); st.FailingClosed != 1 {
		t.Fatalf("every west endpoint is down: want 1 name failing closed, got %+v", st)
	}
}

func TestStatsNames(t *testing.T) {
	if len(QueryTypes) != typeOther || len(Rcodes) != numRcodes-1 {
		t.Fatalf("QueryTypes (%d) and Rcodes (%d) out of step with the counters (%d, %d)", len(QueryTypes), len(Rcodes), typeOther, numRcodes-1)
	}
	for i, qt := range QueryTypes {
		if typeIndex(qt) != i || typeName(i) != dns.TypeToString[qt] {
			t.Errorf("type %s: index %d, name %s", dns.TypeToString[qt], typeIndex(qt), typeName(i))
		}
	}
	for i, rc := range Rcodes {
		if rcodeIndex(rc) != i {
			t.Errorf("rcode %d: index %d, want %d", rc, rcodeIndex(rc), i)
		}
	}
}

// BenchmarkCount measures what counting adds to an answer built afresh
// (statKey and the add); a cached answer only adds.
func BenchmarkCount(b *testing.B) {
	var c counters
	req := new(dns.Msg)
	req.SetQuestion("www."+zone, dns.TypeA)
	resp := new(dns.Msg)
	resp.SetReply(req)
	b.ReportAllocs()
	for b.Loop() {
		c.count(statKey(req, resp))
	}
}
