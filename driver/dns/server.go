package dns

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Server is the authoritative server of one zone. It is safe for
// concurrent use.
type Server struct {
	cfg  Config
	zone string
	log  *slog.Logger
	now  func() time.Time

	mu     sync.RWMutex
	serial uint32
	names  map[string]*record // by canonical name
	alerts []Alert

	randMu sync.Mutex
	rand   *rand.Rand

	udp   []net.PacketConn // one per CPU, sharing the port (SO_REUSEPORT)
	tcp   *dns.Server
	loops sync.WaitGroup
	// gen counts changes (names, health, switches); a cached answer is
	// served only while gen is what it was before the answer was built.
	gen  atomic.Uint64
	addr string
	// stats count the answers (Stats); per read loop, so counting costs
	// an uncontended atomic add.
	stats stats
}

// New returns a server for c; Start serves it.
func New(c Config) (*Server, error) {
	if err := ValidateConfig(c); err != nil {
		return nil, err
	}
	c.Zone = canon(c.Zone)
	if !dns.IsFqdn(c.SOA.RName) {
		c.SOA.RName = c.SOA.RName + "." + c.Zone
	}
	if c.SOA.MName == "" {
		c.SOA.MName = c.NS[0].Name
	}
	c.SOA.MName, c.SOA.RName = canon(c.SOA.MName), canon(c.SOA.RName)
	for i := range c.NS {
		c.NS[i].Name = canon(c.NS[i].Name)
	}
	if c.Log == nil {
		c.Log = DefaultConfig().Log
	}
	r := c.Rand
	if r == nil {
		var seed [16]byte
		_, _ = crand.Read(seed[:])
		r = rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	}
	return &Server{cfg: c, zone: c.Zone, log: c.Log.With("zone", c.Zone), now: time.Now,
		serial: uint32(time.Now().Unix()), names: map[string]*record{}, rand: r}, nil
}

// Start listens on UDP and TCP (same port) and serves in the background.
// UDP is served by one read loop per CPU, each on its own socket sharing
// the port (SO_REUSEPORT), answering in place: no goroutine per query.
func (s *Server) Start() error {
	if s.tcp != nil {
		return errors.New("dns: server already started")
	}
	pc, ln, err := listenBoth(s.cfg.Listen)
	if err != nil {
		return err
	}
	s.addr = pc.LocalAddr().String()
	s.udp = []net.PacketConn{pc}
	for i := 1; i < runtime.NumCPU(); i++ {
		more, err := reusePort.ListenPacket(context.Background(), "udp", s.addr)
		if err != nil {
			break // the sockets we have still serve
		}
		s.udp = append(s.udp, more)
	}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
	started, failed := make(chan struct{}), make(chan error, 1)
	s.tcp.NotifyStartedFunc = func() { close(started) }
	go func() { failed <- s.tcp.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-failed:
		for _, c := range s.udp {
			c.Close()
		}
		ln.Close()
		s.udp, s.tcp = nil, nil
		return fmt.Errorf("dns: cannot serve on %s: %w", s.addr, err)
	}
	for _, c := range s.udp {
		s.loops.Add(1)
		go s.serveUDP(c, s.stats.newLoopCounters())
	}
	s.log.Info("dns: serving", "addr", s.addr, "serial", s.Serial(), "udp_sockets", len(s.udp))
	return nil
}

// serveUDP answers the queries that arrive on one socket until it closes.
// Each loop keeps the packed answers it built, keyed by the query's bytes
// after its ID (so the asked name's case and the EDNS size are part of the
// key), and serves one again only while nothing changed since it was built
// (gen); weighted names, which pick a region per query, are never cached.
func (s *Server) serveUDP(c net.PacketConn, st *counters) {
	defer s.loops.Done()
	in := make([]byte, dns.MaxMsgSize)
	out := make([]byte, 0, maxUDP)
	type cached struct {
		gen  uint64
		stat uint16 // the answer's statKey: a hit counts without parsing
		msg  []byte
	}
	cache := map[string]cached{}
	for {
		n, from, err := c.ReadFrom(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n < 12 {
			st.dropped.Add(1)
			continue // not even a DNS header
		}
		gen := s.gen.Load()
		if e, ok := cache[string(in[2:n])]; ok && e.gen == gen {
			out = append(out[:0], e.msg...)
			out[0], out[1] = in[0], in[1] // the query's ID
			_, _ = c.WriteTo(out, from)
			st.count(e.stat)
			continue
		}
		req := new(dns.Msg)
		if err := req.Unpack(in[:n]); err != nil || req.Response {
			st.dropped.Add(1)
			continue // not a query we can read: no answer, as a resolver expects
		}
		m := s.answer(req)
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = max(int(o.UDPSize()), dns.MinMsgSize)
		}
		m.Truncate(size)
		if out, err = m.PackBuffer(out[:0]); err != nil {
			st.dropped.Add(1)
			continue
		}
		_, _ = c.WriteTo(out, from)
		key := statKey(req, m)
		st.count(key)
		if len(req.Question) == 1 && !s.weightedName(req.Question[0].Name) {
			if len(cache) >= maxCached {
				clear(cache)
			}
			cache[string(in[2:n])] = cached{gen: gen, stat: key, msg: bytes.Clone(out)}
		}
	}
}

// maxCached bounds each UDP loop's answer cache.
const maxCached = 4096

// weightedName reports whether name answers from a region picked per query.
func (s *Server) weightedName(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.names[canon(name)]
	return r != nil && r.weighted()
}

// reusePort lets several UDP sockets share the port, each with its own read
// loop (as BIND has one per thread): one socket's loop was the bottleneck.
var reusePort = net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}}

func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 10 {
		pc, err := reusePort.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: cannot listen on udp %s: %w (is another server on that port?)", addr, err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if _, port, _ := net.SplitHostPort(addr); port != "0" {
			break
		}
	}
	return nil, nil, fmt.Errorf("dns: cannot listen on tcp next to udp %s: %w (is another server on that port?)", addr, lastErr)
}

// Addr is the host:port the server answers on (after Start).
func (s *Server) Addr() string { return s.addr }

// Close stops serving.
func (s *Server) Close() error {
	if s.tcp == nil {
		return nil
	}
	errs := []error{s.tcp.Shutdown()}
	for _, c := range s.udp {
		errs = append(errs, c.Close())
	}
	s.loops.Wait()
	s.udp, s.tcp = nil, nil
	return errors.Join(errs...)
}

// Serial is the zone's current SOA serial.
func (s *Server) Serial() uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.serial
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := s.answer(req)
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	st := &s.stats.tcp
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		st = &s.stats.udpServed
	}
	if err := w.WriteMsg(m); err != nil {
		st.dropped.Add(1)
		return
	}
	st.count(statKey(req, m))
}

// maxUDP is the EDNS0 buffer size we advertise: the DNS flag day 2020
// value, which avoids IP fragmentation.
const maxUDP = 1232

// answer builds the response to req, before truncation.
func (s *Server) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Compress = true
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(maxUDP, false)
		if o.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m
		}
	}
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	qname := canon(q.Name)
	if (q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY) || !dns.IsSubDomain(s.zone, qname) {
		m.Rcode = dns.RcodeRefused // not ours: we are no resolver
		return m
	}
	m.Authoritative = true
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		m.Rcode = dns.RcodeRefused // no zone transfers: every server is a primary
		return m
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	rrs, exists := s.lookup(q.Name, qname, q.Qtype)
	switch {
	case len(rrs) > 0:
		m.Answer = rrs
		if qname == s.zone && q.Qtype == dns.TypeNS {
			m.Extra = append(m.Extra, s.glue()...)
		}
	case exists:
		m.Ns = []dns.RR{s.negativeSOA()} // NODATA
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.negativeSOA()}
	}
	return m
}

// lookup returns the records of qtype at qname, and whether qname exists
// at all (has records of some type, or names below it do: an empty
// non-terminal exists). s.mu must be held.
func (s *Server) lookup(asked, qname string, qtype uint16) ([]dns.RR, bool) {
	var rrs []dns.RR
	want := func(t uint16) bool { return qtype == t || qtype == dns.TypeANY }
	hdr := func(t uint16, ttl uint32) dns.RR_Header {
		return dns.RR_Header{Name: asked, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	exists := false
	if qname == s.zone {
		exists = true
		if want(dns.TypeSOA) {
			soa := s.soa()
			soa.Hdr.Name = asked
			rrs = append(rrs, soa)
		}
		if want(dns.TypeNS) {
			for _, ns := range s.cfg.NS {
				rrs = append(rrs, &dns.NS{Hdr: hdr(dns.TypeNS, seconds(s.cfg.SOA.TTL)), Ns: ns.Name})
			}
		}
	}
	for _, ns := range s.cfg.NS {
		if ns.Name == qname && dns.IsSubDomain(s.zone, ns.Name) {
			exists = true
			if rr := addrRR(hdr, ns.Addr, seconds(s.cfg.SOA.TTL), qtype); rr != nil {
				rrs = append(rrs, rr)
			}
		}
	}
	if r := s.names[qname]; r != nil {
		exists = true
		ttl := seconds(r.TTL)
		for _, a := range s.pick(r) {
			if rr := addrRR(hdr, a, ttl, qtype); rr != nil {
				rrs = append(rrs, rr)
			}
		}
	}
	if base, ok := cutDebugLabel(qname); ok {
		if r := s.names[base]; r != nil {
			exists = true
			if want(dns.TypeTXT) {
				rrs = append(rrs, &dns.TXT{Hdr: hdr(dns.TypeTXT, 0), Txt: []string{debugText(r)}})
			}
		}
	}
	if !exists {
		exists = s.hasBelow(qname)
	}
	return rrs, exists
}

// debugLabel prefixes a traffic name to get its TXT record for people.
const debugLabel = "_lifeboat."

func cutDebugLabel(qname string) (string, bool) {
	if len(qname) > len(debugLabel) && qname[:len(debugLabel)] == debugLabel {
		return qname[len(debugLabel):], true
	}
	return "", false
}

func debugText(r *record) string {
	region := r.route.region
	if r.weighted() {
		regions, weights := r.candidates()
		region = ""
		for i, reg := range regions {
			if i > 0 {
				region += ","
			}
			region += fmt.Sprintf("%s:%d", reg, weights[i])
		}
	}
	txt := fmt.Sprintf("epoch=%d region=%s since=%s", r.route.epoch, region, r.route.since.UTC().Format(time.RFC3339))
	if r.failClosed {
		txt += " fail-closed=true"
	}
	return txt
}

// hasBelow reports whether some record lives under qname (an empty
// non-terminal, which is NODATA, not NXDOMAIN).
func (s *Server) hasBelow(qname string) bool {
	for n := range s.names {
		if dns.IsSubDomain(qname, n) {
			return true
		}
	}
	for _, ns := range s.cfg.NS {
		if dns.IsSubDomain(qname, ns.Name) {
			return true
		}
	}
	return false
}

func addrRR(hdr func(uint16, uint32) dns.RR_Header, a netip.Addr, ttl uint32, qtype uint16) dns.RR {
	a = a.Unmap()
	switch {
	case a.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY):
		return &dns.A{Hdr: hdr(dns.TypeA, ttl), A: a.AsSlice()}
	case a.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
		return &dns.AAAA{Hdr: hdr(dns.TypeAAAA, ttl), AAAA: a.AsSlice()}
	}
	return nil
}

// glue returns the addresses of the name servers inside the zone.
func (s *Server) glue() []dns.RR {
	var out []dns.RR
	for _, ns := range s.cfg.NS {
		if !dns.IsSubDomain(s.zone, ns.Name) || !ns.Addr.IsValid() {
			continue
		}
		hdr := func(t uint16, ttl uint32) dns.RR_Header {
			return dns.RR_Header{Name: ns.Name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
		}
		out = append(out, addrRR(hdr, ns.Addr, seconds(s.cfg.SOA.TTL), dns.TypeANY))
	}
	return out
}

func (s *Server) soa() *dns.SOA {
	c := s.cfg.SOA
	return &dns.SOA{Hdr: dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: seconds(c.TTL)},
		Ns: c.MName, Mbox: c.RName, Serial: s.serial,
		Refresh: seconds(c.Refresh), Retry: seconds(c.Retry), Expire: seconds(c.Expire), Minttl: seconds(c.Minimum)}
}

// negativeSOA is the SOA for the authority section of NXDOMAIN and NODATA:
// its TTL is the negative-caching time (RFC 2308 §3).
func (s *Server) negativeSOA() *dns.SOA {
	soa := s.soa()
	soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	return soa
}

// pick returns the addresses a query for r gets now: for a priority name,
// its active region's; for a weighted name, one region's, picked with
// probability weight/sum among the regions that have a healthy endpoint
// (or, failing closed, a last known good answer). s.mu must be held.
func (s *Server) pick(r *record) []netip.Addr {
	regions, weights := r.candidates()
	if len(regions) == 1 {
		return r.serving(regions[0])
	}
	total := 0
	live := make([]int, len(regions))
	for i, reg := range regions {
		if len(r.healthy(reg)) > 0 || r.failClosed && len(r.lkg[reg]) > 0 {
			live[i] = weights[i]
			total += weights[i]
		}
	}
	if total == 0 {
		return nil
	}
	s.randMu.Lock()
	n := s.rand.IntN(total)
	s.randMu.Unlock()
	for i, w := range live {
		if n < w {
			return r.serving(regions[i])
		}
		n -= w
	}
	return nil
}
