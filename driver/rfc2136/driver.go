package rfc2136

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/miekg/dns"
)

var opStatus = lifeboat.Op(lifeboat.ActTrafficStatus)

// Driver is a lifeboat.TrafficDriver over RFC 2136. It keeps no state
// between calls: the zone is the truth. It is safe for concurrent use.
type Driver struct {
	c     Config
	zone  string
	key   string // canonical key name
	alg   string
	ttl   uint32
	names map[string]map[string][]netip.Addr // fqdn → region → sorted, unmapped addresses
	all   []string                           // configured fqdns, sorted
	now   func() time.Time
}

var _ lifeboat.TrafficDriver = (*Driver)(nil)

// New checks c and returns a driver. It does not contact the server.
func New(c Config) (*Driver, error) {
	if err := ValidateConfig(c); err != nil {
		return nil, err
	}
	d := &Driver{
		c:     c,
		zone:  dns.CanonicalName(c.Zone),
		key:   dns.CanonicalName(c.TSIG.Name),
		alg:   algorithms[strings.ToLower(strings.TrimSuffix(c.TSIG.Algorithm, "."))],
		ttl:   uint32(c.TTL / time.Second),
		names: map[string]map[string][]netip.Addr{},
		now:   time.Now,
	}
	for name, regions := range c.Names {
		fqdn, _ := canonical(name, d.zone) // checked by ValidateConfig
		byRegion := map[string][]netip.Addr{}
		for region, addrs := range regions {
			byRegion[region] = normalize(addrs)
		}
		d.names[fqdn] = byRegion
		d.all = append(d.all, fqdn)
	}
	sort.Strings(d.all)
	return d, nil
}

func normalize(addrs []netip.Addr) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// mark is the parsed TXT record _lifeboat.<name>.
type mark struct {
	ok     bool
	epoch  uint64
	region string
	since  string // as written, so that an unchanged mark compares equal
}

func (m mark) text() string {
	return fmt.Sprintf("epoch=%d region=%s since=%s", m.epoch, m.region, m.since)
}

func parseMark(txt []dns.RR) mark {
	var best mark
	for _, rr := range txt {
		t, ok := rr.(*dns.TXT)
		if !ok {
			continue
		}
		var m mark
		var haveEpoch bool
		for _, f := range strings.Fields(strings.Join(t.Txt, "")) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "epoch":
				e, err := strconv.ParseUint(v, 10, 64)
				m.epoch, haveEpoch = e, err == nil
			case "region":
				m.region = v
			case "since":
				m.since = v
			}
		}
		m.ok = haveEpoch && m.region != ""
		if m.ok && (!best.ok || m.epoch > best.epoch) {
			best = m
		}
	}
	return best
}

// record is what the primary holds for one traffic name now.
type record struct {
	name         string // fqdn
	a, aaaa, txt []dns.RR
	mark         mark
}

func markName(fqdn string) string { return MarkPrefix + "." + fqdn }

func (r record) addrs() []netip.Addr {
	var out []netip.Addr
	for _, rr := range append(append([]dns.RR{}, r.a...), r.aaaa...) {
		if a, ok := addrOf(rr); ok {
			out = append(out, a)
		}
	}
	return normalize(out)
}

func addrOf(rr dns.RR) (netip.Addr, bool) {
	switch v := rr.(type) {
	case *dns.A:
		a, ok := netip.AddrFromSlice(v.A)
		return a.Unmap(), ok
	case *dns.AAAA:
		a, ok := netip.AddrFromSlice(v.AAAA)
		return a, ok
	}
	return netip.Addr{}, false
}

// resolve maps the caller's names to configured fqdns; no names means all.
func (d *Driver) resolve(op lifeboat.Op, t lifeboat.Target, names []string) ([]string, []string, error) {
	if len(names) == 0 {
		return d.all, d.all, nil
	}
	out := make([]string, len(names))
	for i, n := range names {
		fqdn, err := canonical(n, d.zone)
		if err != nil {
			return nil, nil, lifeboat.Permanent(op, t.Resource, fmt.Errorf("traffic name %q: %v", n, err))
		}
		if _, ok := d.names[fqdn]; !ok {
			return nil, nil, lifeboat.Permanent(op, t.Resource, fmt.Errorf(
				"traffic name %q (%s) has no addresses in the rfc2136 driver's config: add it to names with its addresses per region", n, fqdn))
		}
		out[i] = fqdn
	}
	return names, out, nil
}

// Status reads the names' records from the zone's primary and says which
// region they point at. Region is set only when every name resolves to
// exactly the configured addresses of the region its TXT mark names (or, for
// a name with no mark, of one region); Epoch is the oldest mark's epoch and
// Since the newest mark's time.
func (d *Driver) Status(ctx context.Context, t lifeboat.Target, names []string) (lifeboat.Route, error) {
	given, fqdns, err := d.resolve(opStatus, t, names)
	if err != nil {
		return lifeboat.Route{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.c.Timeout)
	defer cancel()
	s, err := d.dial(ctx, opStatus, t)
	if err != nil {
		return lifeboat.Route{}, err
	}
	defer s.close()
	recs, err := s.readAll(ctx, fqdns)
	if err != nil {
		return lifeboat.Route{}, err
	}
	route := lifeboat.Route{Answers: map[string][]string{}}
	var regions []string
	for i, rec := range recs {
		addrs := rec.addrs()
		ans := make([]string, len(addrs))
		for j, a := range addrs {
			ans[j] = a.String()
		}
		route.Answers[given[i]] = ans
		regions = append(regions, d.regionOf(rec, addrs))
		if i == 0 || rec.mark.epoch < route.Epoch {
			route.Epoch = rec.mark.epoch
		}
		if since, err := time.Parse(time.RFC3339, rec.mark.since); err == nil && since.After(route.Since) {
			route.Since = since
		}
	}
	if len(regions) > 0 {
		route.Region = regions[0]
		for _, r := range regions[1:] {
			if r != route.Region {
				route.Region = "" // split: not pointing at one region
			}
		}
	}
	return route, nil
}

// regionOf says which region a name's addresses are exactly those of.
func (d *Driver) regionOf(rec record, addrs []netip.Addr) string {
	byRegion := d.names[rec.name]
	if rec.mark.ok {
		if equalAddrs(byRegion[rec.mark.region], addrs) {
			return rec.mark.region
		}
		return "" // drift: the records say something else than the mark
	}
	match := ""
	for _, region := range lifeboat.SortedKeys(byRegion) {
		if equalAddrs(byRegion[region], addrs) {
			if match != "" {
				return "" // ambiguous
			}
			match = region
		}
	}
	return match
}

func equalAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Switch points the names at t.Region with one signed update, or sends
// nothing when they already point there with t.Epoch's mark. It refuses an
// epoch older than a name's mark with lifeboat.ErrStaleEpoch.
func (d *Driver) Switch(ctx context.Context, t lifeboat.Target, names []string) error {
	op := lifeboat.OpTrafficSwitch
	if t.Region == "" {
		return lifeboat.Permanent(op, t.Resource, errors.New("the target names no region to route to"))
	}
	_, fqdns, err := d.resolve(op, t, names)
	if err != nil {
		return err
	}
	for _, fqdn := range fqdns {
		if _, ok := d.names[fqdn][t.Region]; !ok {
			return lifeboat.Permanent(op, t.Resource, fmt.Errorf(
				"traffic name %s has no addresses for region %q in the rfc2136 driver's config: add them under names", fqdn, t.Region))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, d.c.Timeout)
	defer cancel()
	s, err := d.dial(ctx, op, t)
	if err != nil {
		return err
	}
	defer s.close()
	recs, err := s.readAll(ctx, fqdns)
	if err != nil {
		return err
	}
	return s.update(ctx, t, recs)
}

// update sends the update that turns recs (as read) into t's route.
func (s *session) update(ctx context.Context, t lifeboat.Target, recs []record) error {
	d, op := s.d, lifeboat.OpTrafficSwitch
	if err := staleCheck(t, recs); err != nil {
		return err
	}
	m, changed := d.build(t, recs)
	if !changed {
		return nil
	}
	r, err := s.exchange(ctx, m)
	if err == nil && r.Rcode == dns.RcodeSuccess {
		return nil
	}
	if err != nil {
		return d.exchangeErr(op, t, "update", r, err)
	}
	switch r.Rcode {
	case dns.RcodeNXRrset, dns.RcodeYXRrset, dns.RcodeNameError, dns.RcodeYXDomain:
		// A prerequisite failed: someone changed the records after we read
		// them. A newer epoch is final; anything else is worth a fresh try.
		fqdns := make([]string, len(recs))
		for i, rec := range recs {
			fqdns[i] = rec.name
		}
		now, rerr := s.readAll(ctx, fqdns)
		if rerr == nil {
			if err := staleCheck(t, now); err != nil {
				return err
			}
		}
		return lifeboat.Transient(op, t.Resource, fmt.Errorf(
			"update of zone %s at %s refused by its prerequisites (%s): the records changed between read and update, another writer is at work; retrying re-reads them",
			d.zone, d.c.Server, dns.RcodeToString[r.Rcode]))
	}
	return d.rcodeErr(op, t, "update", r)
}

func staleCheck(t lifeboat.Target, recs []record) error {
	for _, rec := range recs {
		if rec.mark.ok && rec.mark.epoch > t.Epoch {
			return lifeboat.Permanent(lifeboat.OpTrafficSwitch, t.Resource, lifeboat.StaleEpoch(rec.name, t.Epoch, rec.mark.epoch))
		}
	}
	return nil
}

// build makes the update: prerequisites that every record set is still as
// read, then per name delete what differs and add what is missing.
func (d *Driver) build(t lifeboat.Target, recs []record) (*dns.Msg, bool) {
	m := new(dns.Msg)
	m.SetUpdate(d.zone)
	changed := false
	for _, rec := range recs {
		want := d.names[rec.name][t.Region]
		var wantA, wantAAAA []dns.RR
		for _, a := range want {
			if a.Is4() {
				wantA = append(wantA, &dns.A{Hdr: d.hdr(rec.name, dns.TypeA), A: a.AsSlice()})
			} else {
				wantAAAA = append(wantAAAA, &dns.AAAA{Hdr: d.hdr(rec.name, dns.TypeAAAA), AAAA: a.AsSlice()})
			}
		}
		changed = d.diff(m, rec.a, wantA) || changed
		changed = d.diff(m, rec.aaaa, wantAAAA) || changed

		mk := mark{ok: true, epoch: t.Epoch, region: t.Region, since: d.now().UTC().Format(time.RFC3339)}
		if rec.mark.ok && rec.mark.region == t.Region && rec.mark.since != "" {
			mk.since = rec.mark.since // same region: it has pointed there since then
		}
		wantTXT := &dns.TXT{Hdr: d.hdr(markName(rec.name), dns.TypeTXT), Txt: []string{mk.text()}}
		if !(len(rec.txt) == 1 && rec.mark.ok && rec.mark.text() == mk.text() && rec.txt[0].Header().Ttl == d.ttl) {
			m.RemoveRRset([]dns.RR{wantTXT})
			m.Insert([]dns.RR{dns.Copy(wantTXT)})
			changed = true
		}
		prereq(m, rec.name, dns.TypeA, rec.a)
		prereq(m, rec.name, dns.TypeAAAA, rec.aaaa)
		prereq(m, markName(rec.name), dns.TypeTXT, rec.txt)
	}
	return m, changed
}

func (d *Driver) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: d.ttl}
}

// prereq requires the record set to be exactly as read (RFC 2136 §2.4.2),
// or absent if it was (§2.4.3).
func prereq(m *dns.Msg, name string, t uint16, cur []dns.RR) {
	if len(cur) == 0 {
		m.RRsetNotUsed([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: name, Rrtype: t}}})
		return
	}
	cp := make([]dns.RR, len(cur))
	for i, rr := range cur {
		cp[i] = dns.Copy(rr) // Used rewrites the headers
	}
	m.Used(cp)
}

// diff adds to m what turns the record set cur into want.
func (d *Driver) diff(m *dns.Msg, cur, want []dns.RR) bool {
	key := func(rr dns.RR) string { a, _ := addrOf(rr); return a.String() }
	have := map[string]bool{}
	ttlOff := false
	for _, rr := range cur {
		have[key(rr)] = true
		ttlOff = ttlOff || rr.Header().Ttl != d.ttl
	}
	wanted := map[string]bool{}
	for _, rr := range want {
		wanted[key(rr)] = true
	}
	if len(want) == 0 || ttlOff {
		if len(cur) == 0 {
			return false
		}
		// Replace the whole set: deletes come before adds in one update,
		// and the update is applied atomically.
		m.RemoveRRset([]dns.RR{dns.Copy(cur[0])})
		m.Insert(want)
		return true
	}
	changed := false
	for _, rr := range cur {
		if !wanted[key(rr)] {
			m.Remove([]dns.RR{dns.Copy(rr)})
			changed = true
		}
	}
	for _, rr := range want {
		if !have[key(rr)] {
			m.Insert([]dns.RR{rr})
			changed = true
		}
	}
	return changed
}
