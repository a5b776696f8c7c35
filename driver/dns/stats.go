package dns

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Stats counts what the server answered since it was built (across Close
// and Start: the counts never go back, as Prometheus counters must not).
type Stats struct {
	// Queries are the answers sent, by protocol, question type and
	// response code; only non-zero counts, sorted.
	Queries []QueryCount
	// Dropped counts queries that got no answer: UDP datagrams that are
	// not a DNS query (shorter than a header, unparseable, or a response),
	// answers that could not be packed, and answers that could not be
	// written back (the TCP client was gone).
	Dropped uint64
	// FailingClosed is the number of names answering now with their last
	// known good endpoints because every endpoint they may answer with is
	// unhealthy (see Alerts).
	FailingClosed int
	// Serial is the zone's SOA serial now.
	Serial uint32
}

// QueryCount is the number of answers of one kind.
type QueryCount struct {
	Protocol string // "udp" or "tcp"
	// Type is the question's type ("A", "AAAA", "SOA"…), "other" for a
	// type not listed in QueryTypes, "none" for a query with no single
	// question.
	Type string
	// Rcode is the answer's response code ("NOERROR", "NXDOMAIN",
	// "REFUSED"…), "other" for a code not listed in Rcodes.
	Rcode string
	Count uint64
}

// QueryTypes are the question types counted on their own; every other type
// is counted as "other". A fixed set keeps the counters a flat array (no
// map, no allocation per query) and the metric's cardinality bounded.
var QueryTypes = []uint16{
	dns.TypeA, dns.TypeAAAA, dns.TypeANY, dns.TypeCNAME, dns.TypeMX, dns.TypeNS,
	dns.TypeSOA, dns.TypeTXT, dns.TypeSRV, dns.TypePTR, dns.TypeCAA, dns.TypeHTTPS,
	dns.TypeSVCB, dns.TypeDS, dns.TypeDNSKEY, dns.TypeAXFR, dns.TypeIXFR,
}

// Rcodes are the response codes counted on their own (the ones the server
// sends); any other is counted as "other".
var Rcodes = []int{
	dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError,
	dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers,
}

const (
	numTypes  = 17 + 2 // QueryTypes, "other", "none"
	typeOther = 17
	typeNone  = 18
	numRcodes = 7 + 1 // Rcodes, "other"
)

// typeIndex maps a question type to its counter (QueryTypes order).
func typeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeANY:
		return 2
	case dns.TypeCNAME:
		return 3
	case dns.TypeMX:
		return 4
	case dns.TypeNS:
		return 5
	case dns.TypeSOA:
		return 6
	case dns.TypeTXT:
		return 7
	case dns.TypeSRV:
		return 8
	case dns.TypePTR:
		return 9
	case dns.TypeCAA:
		return 10
	case dns.TypeHTTPS:
		return 11
	case dns.TypeSVCB:
		return 12
	case dns.TypeDS:
		return 13
	case dns.TypeDNSKEY:
		return 14
	case dns.TypeAXFR:
		return 15
	case dns.TypeIXFR:
		return 16
	}
	return typeOther
}

// rcodeIndex maps a response code to its counter (Rcodes order).
func rcodeIndex(r int) int {
	switch r {
	case dns.RcodeSuccess:
		return 0
	case dns.RcodeFormatError:
		return 1
	case dns.RcodeServerFailure:
		return 2
	case dns.RcodeNameError:
		return 3
	case dns.RcodeNotImplemented:
		return 4
	case dns.RcodeRefused:
		return 5
	case dns.RcodeBadVers:
		return 6
	}
	return numRcodes - 1
}

// statKey is a (rcode, type) counter's index, computed once per answer and
// kept with a cached answer so a cache hit counts without parsing.
func statKey(req, resp *dns.Msg) uint16 {
	t := typeNone
	if len(req.Question) == 1 {
		t = typeIndex(req.Question[0].Qtype)
	}
	return uint16(rcodeIndex(resp.Rcode)*numTypes + t)
}

// counters is one set of query counters. Each UDP read loop owns one, so
// the loops never write to a shared cache line; TCP queries (served by
// goroutines of their own) share one. Atomic adds on a line one core owns
// cost a few nanoseconds; no lock, no allocation.
type counters struct {
	n       [numRcodes * numTypes]atomic.Uint64
	dropped atomic.Uint64
	_       [64]byte // keep the next loop's counters off this cache line
}

func (c *counters) count(key uint16) { c.n[key].Add(1) }

// stats are the server's counters, kept across Close and Start.
type stats struct {
	tcp counters
	// udpServed: UDP queries answered through ServeDNS (a caller's own
	// dns.Server), not by the server's read loops.
	udpServed counters
	mu        sync.Mutex  // guards udp (appended by Start, read by Stats)
	udp       []*counters // one per UDP read loop ever started
}

// newLoopCounters returns counters for a new UDP read loop.
func (st *stats) newLoopCounters() *counters {
	c := new(counters)
	st.mu.Lock()
	st.udp = append(st.udp, c)
	st.mu.Unlock()
	return c
}

// Stats returns the query counts so far. It is meant for scrapes: it sums
// every loop's counters and takes the zone's read lock briefly.
func (s *Server) Stats() Stats {
	var udp, tcp [numRcodes * numTypes]uint64
	var dropped uint64
	s.stats.mu.Lock()
	loops := append([]*counters{&s.stats.udpServed}, s.stats.udp...)
	s.stats.mu.Unlock()
	for _, c := range loops {
		for i := range c.n {
			udp[i] += c.n[i].Load()
		}
		dropped += c.dropped.Load()
	}
	for i := range s.stats.tcp.n {
		tcp[i] = s.stats.tcp.n[i].Load()
	}
	dropped += s.stats.tcp.dropped.Load()
	out := Stats{Dropped: dropped}
	add := func(proto string, n []uint64) {
		for i, v := range n {
			if v == 0 {
				continue
			}
			out.Queries = append(out.Queries, QueryCount{Protocol: proto, Type: typeName(i % numTypes), Rcode: rcodeName(i / numTypes), Count: v})
		}
	}
	add("tcp", tcp[:])
	add("udp", udp[:])
	sort.Slice(out.Queries, func(i, j int) bool {
		a, b := out.Queries[i], out.Queries[j]
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return a.Rcode < b.Rcode
	})
	s.mu.RLock()
	for _, r := range s.names {
		if r.failClosed {
			out.FailingClosed++
		}
	}
	out.Serial = s.serial
	s.mu.RUnlock()
	return out
}

func typeName(i int) string {
	switch i {
	case typeOther:
		return "other"
	case typeNone:
		return "none"
	}
	return dns.TypeToString[QueryTypes[i]]
}

// rcodeNames are Rcodes' names (miekg/dns names 16 BADSIG; in an answer
// to a query it is BADVERS, RFC 6891).
var rcodeNames = [numRcodes]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other"}

func rcodeName(i int) string { return rcodeNames[i] }
