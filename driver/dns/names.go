package dns

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Name is one traffic name of the zone and where it can point.
type Name struct {
	Name string
	TTL  time.Duration
	// Endpoints by region.
	Endpoints map[string][]Endpoint
	// Weighted, when set, makes the name active/active: each answer comes
	// from one region, picked at random in proportion to these weights
	// among the regions that have a healthy endpoint. A Switch pins the name
	// to its region again (the other region is being drained or is lost);
	// setting the name again with weights makes it active/active again.
	Weighted map[string]int
	// Active is the region the name points at until the first Switch; it
	// is ignored when the name is already routed (SetName keeps the route).
	Active string
}

// Endpoint is one address a name can answer with.
type Endpoint struct {
	Addr    netip.Addr
	Healthy bool
}

// Alert is a fail-closed event: a name whose endpoints in every region it
// may answer from are unhealthy (Recovered false), or came back (true).
type Alert struct {
	Time   time.Time
	Name   string
	Region string
	Epoch  uint64
	// Serving is what the name answers with meanwhile: the last known good
	// answer, or nothing when the region never had a healthy endpoint.
	Serving   []netip.Addr
	Recovered bool
	Message   string
}

// route is where a name points: the state Switch changes.
type route struct {
	region string
	epoch  uint64
	since  time.Time
	pinned bool // a Switch overrode the weights
}

// record is a traffic name's configuration and state.
type record struct {
	Name
	route route
	// lkg is the last known good answer of each region: its healthy
	// endpoints the last time it had any.
	lkg        map[string][]netip.Addr
	failClosed bool
}

// weighted reports whether the name answers from several regions now.
func (r *record) weighted() bool { return len(r.Weighted) > 0 && !r.route.pinned }

// candidates returns the regions the name may answer from, with weights.
func (r *record) candidates() (regions []string, weights []int) {
	if !r.weighted() {
		if r.route.region == "" {
			return nil, nil
		}
		return []string{r.route.region}, []int{1}
	}
	for reg, w := range r.Weighted {
		if w > 0 {
			regions = append(regions, reg)
		}
	}
	sort.Strings(regions) // map order is random; picks must be reproducible
	for _, reg := range regions {
		weights = append(weights, r.Weighted[reg])
	}
	return regions, weights
}

func (r *record) healthy(region string) []netip.Addr {
	var out []netip.Addr
	for _, e := range r.Endpoints[region] {
		if e.Healthy {
			out = append(out, e.Addr)
		}
	}
	return out
}

// refresh records the last known good answers and returns whether the name
// has no healthy endpoint in any region it may answer from.
func (r *record) refresh() (failClosed bool) {
	regions, _ := r.candidates()
	failClosed = true
	for reg := range r.Endpoints {
		r.lkg[reg] = lastKnownGood(r.lkg[reg], r.healthy(reg))
	}
	for _, reg := range regions {
		if len(r.healthy(reg)) > 0 {
			failClosed = false
		}
	}
	return failClosed
}

// lastKnownGood updates a region's last known good answer with its healthy
// endpoints, per address family: when the last IPv4 endpoint goes down
// before the last IPv6 one, IPv4 clients keep their last good addresses.
func lastKnownGood(lkg, healthy []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, is4 := range []bool{true, false} {
		src := lkg
		if slices.ContainsFunc(healthy, func(a netip.Addr) bool { return a.Unmap().Is4() == is4 }) {
			src = healthy
		}
		for _, a := range src {
			if a.Unmap().Is4() == is4 {
				out = append(out, a)
			}
		}
	}
	return out
}

// serving returns what the name answers with from region: its healthy
// endpoints, else its last known good answer (fail closed), never all.
func (r *record) serving(region string) []netip.Addr {
	if h := r.healthy(region); len(h) > 0 {
		return h
	}
	return r.lkg[region]
}

// validateName checks n against the zone.
func validateName(zone string, n Name) error {
	if _, ok := dns.IsDomainName(n.Name); !ok || n.Name == "" {
		return fmt.Errorf("dns: name %q is not a domain name", n.Name)
	}
	if !dns.IsSubDomain(zone, canon(n.Name)) {
		return fmt.Errorf("dns: name %s is outside the zone %s; the server answers only for its zone (use a name ending in .%s)", n.Name, zone, zone)
	}
	if n.TTL < time.Second {
		return fmt.Errorf("dns: name %s: ttl %v is under 1s; set it (e.g. 30s: how long resolvers may keep the old region after a switch)", n.Name, n.TTL)
	}
	if len(n.Endpoints) == 0 {
		return fmt.Errorf("dns: name %s has no endpoints; give it addresses per region", n.Name)
	}
	for reg, eps := range n.Endpoints {
		for _, e := range eps {
			if !e.Addr.IsValid() {
				return fmt.Errorf("dns: name %s, region %s: an endpoint has no address", n.Name, reg)
			}
		}
	}
	sum := 0
	for reg, w := range n.Weighted {
		if w < 0 {
			return fmt.Errorf("dns: name %s: region %s has weight %d; weights must be 0 or more", n.Name, reg, w)
		}
		if _, ok := n.Endpoints[reg]; !ok && w > 0 {
			return fmt.Errorf("dns: name %s: region %s has a weight but no endpoints", n.Name, reg)
		}
		sum += w
	}
	if len(n.Weighted) > 0 && sum == 0 {
		return fmt.Errorf("dns: name %s: every weight is 0; give at least one region a weight, or drop the weights for priority routing", n.Name)
	}
	if n.Active != "" {
		if _, ok := n.Endpoints[n.Active]; !ok {
			return fmt.Errorf("dns: name %s: active region %s has no endpoints", n.Name, n.Active)
		}
	}
	return nil
}

// SetName adds or replaces a traffic name. Its route (region, epoch, since)
// is kept when it already exists; otherwise it points at n.Active at epoch 0.
func (s *Server) SetName(n Name) error {
	if err := validateName(s.zone, n); err != nil {
		return err
	}
	key := canon(n.Name)
	n.Name = key
	n.Endpoints = cloneEndpoints(n.Endpoints)
	n.Weighted = maps.Clone(n.Weighted)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.gen.Add(1) // before the unlock: cached answers are stale from now on
	r := &record{Name: n, lkg: map[string][]netip.Addr{}}
	if old := s.names[key]; old != nil {
		r.route, r.lkg = old.route, old.lkg
		r.failClosed = old.failClosed
		r.route.pinned = false // weights given again: active/active again
	} else {
		r.route = route{region: n.Active, since: s.now()}
	}
	s.names[key] = r
	s.changed(r)
	s.log.Info("dns: name set", "name", key, "region", r.route.region, "epoch", r.route.epoch, "weighted", r.weighted())
	return nil
}

// SetHealth marks one endpoint healthy or not (from a health probe).
// Unknown names or endpoints are logged and ignored: a probe of a name
// being reconfigured must not fail.
func (s *Server) SetHealth(name, region string, addr netip.Addr, healthy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.gen.Add(1) // before the unlock: cached answers are stale from now on
	r := s.names[canon(name)]
	if r == nil {
		s.log.Warn("dns: health of an unknown name ignored", "name", name, "region", region, "addr", addr)
		return
	}
	eps := r.Endpoints[region]
	i := slices.IndexFunc(eps, func(e Endpoint) bool { return e.Addr == addr })
	if i < 0 {
		s.log.Warn("dns: health of an unknown endpoint ignored", "name", name, "region", region, "addr", addr)
		return
	}
	if eps[i].Healthy == healthy {
		return
	}
	eps[i].Healthy = healthy
	s.log.Info("dns: endpoint health changed", "name", r.Name.Name, "region", region, "addr", addr, "healthy", healthy)
	s.changed(r)
}

// changed re-evaluates r after a change, raises or clears its alert and
// bumps the serial. s.mu must be held.
func (s *Server) changed(r *record) {
	s.serial++
	fc := r.refresh()
	if fc == r.failClosed {
		return
	}
	r.failClosed = fc
	regions, _ := r.candidates()
	a := Alert{Time: s.now(), Name: r.Name.Name, Region: r.route.region, Epoch: r.route.epoch, Recovered: !fc}
	for _, reg := range regions {
		a.Serving = append(a.Serving, r.serving(reg)...)
	}
	if fc {
		what := "the last known good answer"
		if len(a.Serving) == 0 {
			what = "no address (the region never had a healthy endpoint)"
		}
		a.Message = fmt.Sprintf("%s: every endpoint in %s is unhealthy; failing closed: answering with %s, not with every endpoint. Check the endpoints' health probes, or switch the name to a region that is up.",
			r.Name.Name, strings.Join(regions, ","), what)
		s.log.Error("dns: failing closed", "name", r.Name.Name, "regions", regions, "epoch", r.route.epoch, "serving", a.Serving)
	} else {
		a.Message = fmt.Sprintf("%s: healthy endpoints again in %s; answering with them", r.Name.Name, strings.Join(regions, ","))
		s.log.Info("dns: recovered", "name", r.Name.Name, "regions", regions)
	}
	s.alerts = append(s.alerts, a)
}

// Alerts returns the fail-closed events so far, oldest first.
func (s *Server) Alerts() []Alert {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.alerts)
}

func cloneEndpoints(m map[string][]Endpoint) map[string][]Endpoint {
	out := make(map[string][]Endpoint, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}
