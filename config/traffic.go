package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// Traffic drivers that take a section of their own under drivers.
const (
	trafficDNS       = "dns"
	trafficFrontDoor = "frontdoor"
	trafficRFC2136   = "rfc2136"
)

// hostedTraffic are the traffic drivers 'lifeboat serve' hosts; the CLI
// reaches them at drivers.agent.url.
func hostedTraffic(driver string) bool {
	return driver == trafficDNS || driver == trafficFrontDoor
}

// trafficDrivers checks the section of the traffic driver chosen, that
// 'lifeboat serve' can be reached when it hosts that driver, and warns
// about sections no driver uses (usually a half-edited spec).
func (c *checker) trafficDrivers(usesTraffic, agentReported bool) {
	ds := c.s.Drivers
	if !c.ok("drivers.traffic") {
		return
	}
	switch ds.Traffic {
	case trafficRFC2136:
		if usesTraffic {
			c.rfc2136(ds.RFC2136)
		}
	case trafficDNS:
		if ds.DNS != nil || usesTraffic {
			c.dnsServer(ds.DNS)
		}
	case trafficFrontDoor:
		if ds.FrontDoor != nil || usesTraffic {
			c.frontDoor(ds.FrontDoor)
		}
	}
	// agentReported: the agent driver is chosen for another kind and its
	// missing section is already reported; one missing section, one error.
	if hostedTraffic(ds.Traffic) && usesTraffic && ds.Agent == nil && c.ok("drivers.agent") && !agentReported && !servedInRegionsOnly(ds) && !dnsWithoutAddress(ds) {
		c.errorAt("drivers.traffic", false, fmt.Sprintf("the %s driver is chosen here, but drivers.agent is missing: 'lifeboat serve' hosts the %s driver and the CLI reaches it through drivers.agent.url", ds.Traffic, ds.Traffic),
			"add drivers.agent.url with the address 'lifeboat serve' listens on, e.g. url: http://127.0.0.1:7402")
	}
	for _, sec := range []struct {
		driver string
		set    bool
	}{{trafficDNS, ds.DNS != nil}, {trafficFrontDoor, ds.FrontDoor != nil}, {trafficRFC2136, ds.RFC2136 != nil}} {
		if !sec.set || ds.Traffic == sec.driver {
			continue
		}
		now := "drivers.traffic is " + ds.Traffic
		if ds.Traffic == "" {
			now = "drivers.traffic is not set"
			if ds.Default != "" {
				now += " (traffic uses drivers.default, " + ds.Default + ")"
			}
		}
		c.warnAt("drivers."+sec.driver, true, fmt.Sprintf("drivers.%s is set but %s: it is not used", sec.driver, now),
			fmt.Sprintf("set drivers.traffic: %s to use it, or remove drivers.%s", sec.driver, sec.driver))
	}
}

// servedInRegionsOnly reports whether the hosted traffic driver runs only
// in the regions' controllers (no single address for 'lifeboat serve'),
// so no drivers.agent is needed to reach it.
func servedInRegionsOnly(ds lifeboat.DriverSpec) bool {
	switch ds.Traffic {
	case trafficDNS:
		if ds.DNS == nil || ds.DNS.Listen != "" {
			return false
		}
		for _, ns := range ds.DNS.NameServers {
			if ns.Listen != "" {
				return true
			}
		}
	case trafficFrontDoor:
		if ds.FrontDoor == nil {
			return false
		}
		in := false
		for _, l := range ds.FrontDoor.Listeners {
			if l.Listen != "" {
				return false
			}
			in = in || len(l.ListenIn) > 0
		}
		return in
	}
	return false
}

// dnsWithoutAddress: the dns section gives no address at all, which is
// reported once, as that; whether an agent is needed depends on the fix.
func dnsWithoutAddress(ds lifeboat.DriverSpec) bool {
	if ds.Traffic != trafficDNS || ds.DNS == nil || ds.DNS.Listen != "" || ds.DNS.NameServers == nil {
		return false
	}
	for _, ns := range ds.DNS.NameServers {
		if ns.Listen != "" {
			return false
		}
	}
	return true
}

// orIP is ip, or an example address when it is empty.
func orIP(ip string) string {
	if ip == "" {
		return "192.0.2.53"
	}
	return ip
}

// dnsServer checks the built-in DNS server's section: a zone that holds
// every traffic name, an address to answer on, a name server per region
// (with glue when it is inside the zone), and what to answer with.
func (c *checker) dnsServer(d *lifeboat.DNSDriver) {
	const at = "drivers.dns"
	if d == nil {
		if c.ok(at) {
			c.errorAt("drivers.traffic", false, "the dns driver is chosen here, but drivers.dns is missing",
				"add drivers.dns with zone (e.g. shop.example.test), listen (host:port), name-servers {<region>: {name, address}} and endpoints {<region>: [addresses]}")
		}
		return
	}
	if !c.ok(at) {
		return
	}
	zoneOK := false
	if p := at + ".zone"; d.Zone != "" && c.ok(p) {
		if why := domainProblem(d.Zone); why != "" {
			c.errorAt(p, false, fmt.Sprintf("zone %q is not a domain name: %s", d.Zone, why),
				"write the zone the traffic names are in, e.g. zone: shop.example.test")
		} else {
			zoneOK = true
		}
	}
	if p := at + ".listen"; d.Listen != "" && c.ok(p) {
		if msg, hint := hostPortProblem(d.Listen, true); msg != "" {
			c.errorAt(p, false, msg, hint+", e.g. listen: 127.0.0.1:5353 (the server answers UDP and TCP there)")
		} else {
			c.notAgentAddress(p, d.Listen)
		}
	}
	perRegion := false
	for _, ns := range d.NameServers {
		perRegion = perRegion || ns.Listen != ""
	}
	if d.Listen == "" && !perRegion && d.NameServers != nil && c.ok(at+".listen") {
		c.errorAt(at, true, "no address to answer on: neither drivers.dns.listen nor any name-servers.<region>.listen is set",
			"add listen: 127.0.0.1:5353 (one server, hosted by 'lifeboat serve'), or listen: under each region's name server (each region's controller, 'lifeboat serve --region', serves the zone there)")
	}
	c.nameServers(at+".name-servers", d, zoneOK)
	c.endpoints(at+".endpoints", d.Endpoints, "the traffic names have nothing to answer with")
	c.weights(at+".weights", d.Weights)
	if zoneOK {
		c.namesInZone(strings.TrimSuffix(d.Zone, "."))
	}
}

// nameServers checks the zone's NS records: one per primary and secondary
// region, so the zone still answers when either region is down.
func (c *checker) nameServers(path string, d *lifeboat.DNSDriver, zoneOK bool) {
	if !c.ok(path) || d.NameServers == nil {
		return // missing: the decoder reported it (the field is required)
	}
	r := c.s.Regions
	for _, region := range []string{r.Primary.Name, r.Secondary.Name} {
		if region != "" && !has(d.NameServers, region) {
			c.errorAt(path, true, fmt.Sprintf("no name server for region %s: the zone must stay reachable when the other region is down", region),
				fmt.Sprintf("add %s: {name: ns-%s.%s, address: <IP>}", region, region, zoneOr(d.Zone, zoneOK)))
		}
	}
	regions := c.regionNames(true)
	for _, region := range lifeboat.SortedKeys(d.NameServers) {
		p := path + "." + region
		if c.s.RoleOf(region) == "" {
			c.errorAt(p, true, fmt.Sprintf("%q is not a region of this service", region), regionHint(region, regions))
			continue
		}
		ns := d.NameServers[region]
		nameOK := false
		if np := p + ".name"; ns.Name != "" && c.ok(np) {
			if why := domainProblem(ns.Name); why != "" {
				c.errorAt(np, false, fmt.Sprintf("name server %q is not a domain name: %s", ns.Name, why),
					fmt.Sprintf("write the server's host name, e.g. name: ns-%s.%s", region, zoneOr(d.Zone, zoneOK)))
			} else {
				nameOK = true
			}
		}
		if lp := p + ".listen"; ns.Listen != "" && c.ok(lp) {
			if msg, hint := hostPortProblem(ns.Listen, true); msg != "" {
				c.errorAt(lp, false, msg, hint+", e.g. listen: "+orIP(ns.Address)+":53 (where "+region+"'s controller answers, UDP and TCP)")
			}
		}
		ap := p + ".address"
		switch {
		case ns.Address != "" && c.ok(ap):
			if _, err := netip.ParseAddr(ns.Address); err != nil {
				hint := "write an IPv4 or IPv6 address, e.g. address: 192.0.2.53"
				if host, _, err := net.SplitHostPort(ns.Address); err == nil {
					hint = fmt.Sprintf("the address is an IP without a port (the port is drivers.dns.listen): address: %s", host)
				}
				c.errorAt(ap, false, fmt.Sprintf("name server address %q is not an IP address", ns.Address), hint)
			}
		case ns.Address == "" && nameOK && zoneOK && c.ok(ap) && inZone(ns.Name, d.Zone):
			// A resolver cannot look up ns-west.shop.example.test in the
			// zone it is trying to reach: the parent must hand out the
			// address along with the NS record.
			c.errorAt(p+".name", false, fmt.Sprintf("name server %s is inside the zone %s, so it needs an address (the glue record resolvers use to reach it)", ns.Name, zoneOr(d.Zone, zoneOK)),
				"add address: with the IP it answers on, e.g. address: 192.0.2.53")
		}
	}
}

// endpoints checks the addresses traffic names answer with when each
// region is active: both regions need some, and they must be IPs.
func (c *checker) endpoints(path string, eps map[string][]string, nothing string) {
	if !c.ok(path) || eps == nil {
		return
	}
	for _, region := range []string{c.s.Regions.Primary.Name, c.s.Regions.Secondary.Name} {
		if region != "" && len(eps[region]) == 0 {
			c.errorAt(path, true, fmt.Sprintf("no addresses for region %s: %s when %s is active", region, nothing, region),
				fmt.Sprintf("add %s: [<address>, …]", region))
		}
	}
	for _, region := range lifeboat.SortedKeys(eps) {
		p := path + "." + region
		if !c.activeRegion(p, region) {
			continue
		}
		for i, a := range eps[region] {
			if ip := fmt.Sprintf("%s[%d]", p, i); c.ok(ip) {
				if _, err := netip.ParseAddr(a); err != nil {
					c.errorAt(ip, false, fmt.Sprintf("%q is not an IP address", a), "write an IPv4 or IPv6 address, e.g. 192.0.2.10")
				}
			}
		}
	}
}

// weights checks the active/active weights: by primary or secondary
// region, never negative, and not all zero (no region would answer).
func (c *checker) weights(path string, ws map[string]int) {
	if !c.ok(path) || len(ws) == 0 {
		return
	}
	positive, counted := false, 0
	for _, region := range lifeboat.SortedKeys(ws) {
		p := path + "." + region
		if !c.activeRegion(p, region) || !c.ok(p) {
			continue
		}
		counted++
		switch w := ws[region]; {
		case w < 0:
			c.errorAt(p, false, fmt.Sprintf("weight %d is negative", w), "use 0 (this region gets no answers) or more")
		case w > 0:
			positive = true
		}
	}
	if counted == len(ws) && !positive {
		c.errorAt(path, true, "every weight is 0, so no region would get any answers",
			fmt.Sprintf("give at least one region a weight above 0 (e.g. %s: 1), or remove weights for active/passive", c.s.Regions.Primary.Name))
	}
}

// namesInZone checks that the dns driver can answer for every traffic
// name: it is authoritative for its zone only.
func (c *checker) namesInZone(zone string) {
	for _, un := range lifeboat.SortedKeys(c.s.Units) {
		u := c.s.Units[un]
		for _, tn := range lifeboat.SortedKeys(u.Traffic) {
			for i, name := range u.Traffic[tn].Names {
				p := fmt.Sprintf("units.%s.traffic.%s.names[%d]", un, tn, i)
				if name == "" || !c.ok(p) || inZone(name, zone) {
					continue
				}
				c.errorAt(p, false, fmt.Sprintf("traffic name %s is not inside the zone %s, so the dns driver cannot answer for it", name, zone),
					fmt.Sprintf("rename it under %s (e.g. %s.%s) or change drivers.dns.zone", zone, firstLabel(name), zone))
			}
		}
	}
}

// frontDoor checks the front door's listeners: each forwards to an
// upstream in both regions, and no two fight over one address.
func (c *checker) frontDoor(f *lifeboat.FrontDoorDriver) {
	const at = "drivers.frontdoor"
	if f == nil {
		if c.ok(at) {
			c.errorAt("drivers.traffic", false, "the frontdoor driver is chosen here, but drivers.frontdoor is missing",
				"add drivers.frontdoor with listeners {<name>: {listen: host:port, upstreams: {<region>: host:port}}}")
		}
		return
	}
	if !c.ok(at) {
		return
	}
	lp := at + ".listeners"
	if f.Listeners != nil && len(f.Listeners) == 0 && c.ok(lp) {
		c.errorAt(lp, true, "the front door has no listeners, so clients have nothing to connect to",
			"add one, e.g. http: {listen: 127.0.0.1:8080, upstreams: {"+c.s.Regions.Primary.Name+": 127.0.0.1:8081, "+c.s.Regions.Secondary.Name+": 127.0.0.1:8082}}")
	}
	var listening []listenAddr
	for _, name := range lifeboat.SortedKeys(f.Listeners) {
		l := f.Listeners[name]
		p := lp + "." + name
		if !c.ok(p) {
			continue
		}
		if l.Listen == "" && len(l.ListenIn) == 0 && c.ok(p+".listen") && c.ok(p+".listen-in") {
			c.errorAt(p, true, fmt.Sprintf("listener %s has no address: neither listen nor listen-in is set", name),
				"add listen: 127.0.0.1:8080 (hosted by 'lifeboat serve'), or listen-in: {<region>: host:port} (each region's controller, 'lifeboat serve --region', runs it there)")
		}
		for _, region := range lifeboat.SortedKeys(l.ListenIn) {
			rp := p + ".listen-in." + region
			if !c.ok(rp) {
				continue
			}
			if c.s.RoleOf(region) == "" {
				c.errorAt(rp, true, fmt.Sprintf("%q is not a region of this service", region), regionHint(region, c.regionNames(true)))
				continue
			}
			if msg, hint := hostPortProblem(l.ListenIn[region], true); msg != "" {
				c.errorAt(rp, false, msg, hint+", e.g. "+region+": 127.0.0.1:8080")
			}
		}
		if l.Listen != "" && c.ok(p+".listen") {
			if msg, hint := hostPortProblem(l.Listen, true); msg != "" {
				c.errorAt(p+".listen", false, msg, hint+", e.g. listen: 127.0.0.1:8080")
			} else {
				c.notAgentAddress(p+".listen", l.Listen)
				host, port, _ := net.SplitHostPort(l.Listen)
				n, _ := strconv.ParseUint(port, 10, 16)
				listening = append(listening, listenAddr{name, l.Listen, host, n})
			}
		}
		up := p + ".upstreams"
		if l.Upstreams == nil || !c.ok(up) {
			continue
		}
		for _, region := range []string{c.s.Regions.Primary.Name, c.s.Regions.Secondary.Name} {
			if region != "" && l.Upstreams[region] == "" && c.ok(up+"."+region) {
				c.errorAt(up, true, fmt.Sprintf("listener %s has no upstream for region %s: it has nowhere to forward when %s is active", name, region, region),
					fmt.Sprintf("add %s: <host:port> under upstreams", region))
			}
		}
		for _, region := range lifeboat.SortedKeys(l.Upstreams) {
			rp := up + "." + region
			if !c.activeRegion(rp, region) || l.Upstreams[region] == "" || !c.ok(rp) {
				continue
			}
			if msg, hint := hostPortProblem(l.Upstreams[region], false); msg != "" {
				c.errorAt(rp, false, msg, hint+", e.g. 127.0.0.1:8081")
			}
		}
	}
	c.sharedListen(lp, listening)
	if p := at + ".lease"; f.Lease == 0 && c.written(p) && c.ok(p) {
		c.errorAt(p, false, "lease is 0: every listener would fence itself at once and refuse all connections",
			"set how long a listener keeps routing without the control plane, e.g. lease: 10s, or remove lease for the default 10s")
	}
}

// listenAddr is a front door listener's parsed listen address.
type listenAddr struct {
	name, listen, host string
	port               uint64
}

// sharedListen reports a listener that listens where another already
// does: the second could not bind. A wildcard host (empty, 0.0.0.0, ::)
// takes the port on every address.
func (c *checker) sharedListen(path string, ls []listenAddr) {
	for i := range ls {
		for j := range i {
			a, b := ls[j], ls[i]
			if a.port == 0 || a.port != b.port || !(a.host == b.host || wildcard(a.host) || wildcard(b.host)) {
				continue
			}
			// Point at whichever of the two comes later in the file.
			ap, bp := path+"."+a.name+".listen", path+"."+b.name+".listen"
			if na, nb := c.d.node(ap, false), c.d.node(bp, false); na != nil && nb != nil && (nb.Line < na.Line || nb.Line == na.Line && nb.Column < na.Column) {
				a, b, bp = b, a, ap
			}
			c.errorAt(bp, false, fmt.Sprintf("listener %s listens on %s, which listener %s already uses (%s)", b.name, b.listen, a.name, a.listen),
				"give each listener its own port")
			break
		}
	}
}

// notAgentAddress reports a listen address that is also where
// drivers.agent.url points: 'lifeboat serve' takes that port for the CLI
// in the same process, so the driver could not bind it.
func (c *checker) notAgentAddress(path, listen string) {
	a := c.s.Drivers.Agent
	if a == nil || !c.ok("drivers.agent.url") {
		return
	}
	u, err := url.Parse(a.URL)
	if err != nil || u.Host == "" {
		return
	}
	agentPort := u.Port()
	if agentPort == "" {
		agentPort = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	host, port, _ := net.SplitHostPort(listen)
	// A wildcard listen takes the port on loopback too; other hosts may be
	// other machines, which only the operator knows.
	agentHost := u.Hostname()
	local := agentHost == "localhost" || wildcard(agentHost)
	if ip, err := netip.ParseAddr(agentHost); err == nil && ip.IsLoopback() {
		local = true
	}
	if port != agentPort || !(host == agentHost || wildcard(host) && local) {
		return
	}
	c.errorAt(path, false, fmt.Sprintf("%s takes port %s, which drivers.agent.url (%s) uses: 'lifeboat serve' listens there for the CLI, in the same process", listen, port, a.URL),
		"use another port here, or move drivers.agent.url")
}

func wildcard(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

// activeRegion reports whether region (a key at path) is the primary or
// the secondary region, reporting the key when it is not: only those two
// ever take traffic.
func (c *checker) activeRegion(path, region string) bool {
	if c.s.Regions.Has(region) {
		return true
	}
	use := "use " + orList(c.regionNames(false))
	if c.s.RoleOf(region) == lifeboat.RoleWitness {
		c.errorAt(path, true, fmt.Sprintf("%q is the witness region, which only votes and never takes traffic", region), use)
		return false
	}
	c.errorAt(path, true, fmt.Sprintf("%q is not the primary or the secondary region", region), regionHint(region, c.regionNames(false)))
	return false
}

// regionNames lists the spec's region names, the witness too if asked.
func (c *checker) regionNames(witness bool) []string {
	var out []string
	for _, n := range []string{c.s.Regions.Primary.Name, c.s.Regions.Secondary.Name} {
		if n != "" {
			out = append(out, n)
		}
	}
	if w := c.s.Regions.Witness; witness && w != nil && w.Name != "" {
		out = append(out, w.Name)
	}
	return out
}

func regionHint(region string, regions []string) string {
	if m := didYouMean(region, regions); m != "" {
		return fmt.Sprintf("did you mean %s?", m)
	}
	return "use " + orList(regions)
}

// written reports whether path was given a non-empty value in the file.
func (c *checker) written(path string) bool {
	n := c.d.vals[path]
	return n != nil && !isNull(resolve(n))
}

// domainProblem says why s is not a usable domain name, or "". dns's
// IsDomainName only checks lengths and empty labels, so the labels are
// checked here too: letters, digits, dashes and underscores (_dmarc).
func domainProblem(s string) string {
	if _, ok := dns.IsDomainName(s); !ok {
		return "it has an empty label (two dots in a row) or a label longer than 63 characters"
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return "it is an IP address"
	}
	trimmed := strings.TrimSuffix(s, ".")
	if trimmed == "" {
		return "it is the root zone"
	}
	for _, label := range strings.Split(trimmed, ".") {
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				what := fmt.Sprintf("%q", r)
				if r == ' ' {
					what = "a space"
				}
				return fmt.Sprintf("the label %q contains %s (only letters, digits and dashes are allowed)", label, what)
			}
		}
		if strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return fmt.Sprintf("label %q starts or ends with a dash", label)
		}
	}
	return ""
}

// inZone reports whether name is zone or below it, ignoring case and a
// trailing dot (dns.IsSubDomain compares them as written).
func inZone(name, zone string) bool {
	return dns.IsSubDomain(dns.CanonicalName(zone), dns.CanonicalName(name))
}

func zoneOr(zone string, ok bool) string {
	if ok {
		return strings.TrimSuffix(zone, ".")
	}
	return "<zone>"
}

func firstLabel(name string) string {
	label, _, _ := strings.Cut(name, ".")
	if label == "" {
		return "www"
	}
	return label
}

// hostPortProblem says why s is not host:port with a numeric port, as a
// message and the start of a hint, or "" when it is. A listen address may
// leave the host empty (every interface); an upstream may not.
func hostPortProblem(s string, listen bool) (msg, hint string) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		hint = "write host:port"
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			hint = "write host:port, with an IPv6 host in brackets ([::1]:8080)"
		}
		return fmt.Sprintf("%q is not host:port", s), hint
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Sprintf("%q: port %q is not a number from 0 to 65535", s, port), "write host:port with a numeric port"
	}
	if host == "" && !listen {
		return fmt.Sprintf("%q has no host", s), "write the host to connect to"
	}
	return "", ""
}
