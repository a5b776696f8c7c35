package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/planner"
)

// minLease is the shortest controller lease: etcd grants leases in whole
// seconds, and 0 would fence every controller at once.
const minLease = time.Second

// monitor checks the monitor section: probe timing that cannot overlap,
// a lease etcd can grant, and, for automatic failover, a quorum that can
// tell a dead region from a cut link.
func (c *checker) monitor() {
	const at = "monitor"
	if !c.ok(at) {
		return
	}
	m := c.s.Monitor.WithDefaults()
	for _, f := range []struct{ key, what, def string }{
		{"interval", "probes would run back to back with no pause", "1s"},
		{"timeout", "every probe would fail before it starts", "1s"},
	} {
		p := at + "." + f.key
		if c.writtenZero(p) {
			c.errorAt(p, false, fmt.Sprintf("%s is 0s: %s", f.key, f.what),
				fmt.Sprintf("remove %s for the default %s, or set a duration such as %s: %s", f.key, f.def, f.key, f.def))
		}
	}
	if c.ok(at+".interval") && c.ok(at+".timeout") && !c.writtenZero(at+".interval") && !c.writtenZero(at+".timeout") && m.Timeout > m.Interval {
		p := at + ".timeout"
		if !c.written(p) {
			p = at + ".interval"
		}
		c.errorAt(p, false, fmt.Sprintf("the probes' timeout %s%s is longer than their interval %s%s: a slow probe would still be running when the next one starts",
			m.Timeout, c.monitorSource("timeout"), m.Interval, c.monitorSource("interval")),
			fmt.Sprintf("set timeout: %s or less, or a longer interval", m.Interval))
	}
	c.lease(at+".lease", m)
	if p := at + ".block-window"; c.writtenZero(p) {
		c.warnAt(p, false, "block-window 0s means the default, 1h: anti-flapping cannot be turned off, because back-and-forth automatic failovers lose data each time",
			"write the window you want, e.g. block-window: 10m, or remove it for the default 1h")
	}
	if m.Mode == lifeboat.MonitorAutomatic && c.ok(at+".mode") {
		c.quorum()
		if c.leaseValid() && c.ok(at+".interval") && m.Lease < 2*m.Interval {
			c.warnAt(at+".lease", false, fmt.Sprintf("lease %s is shorter than two probe intervals (%s): a controller renews every third of its lease, so a single slow probe round could make it fence its own region",
				m.Lease, lifeboat.FormatDuration(2*m.Interval.D())),
				fmt.Sprintf("set lease: %s or more", lifeboat.FormatDuration(leaseFor(m.Interval.D()))))
		}
	}
}

// leaseFor is the shortest whole-second lease of at least two intervals.
func leaseFor(interval time.Duration) time.Duration {
	return max(minLease, (2*interval + time.Second - 1).Truncate(time.Second))
}

// monitorSource says where a monitor value came from, for messages about
// values the person may not have written.
func (c *checker) monitorSource(key string) string {
	if c.written("monitor." + key) {
		return ""
	}
	return " (the default)"
}

// leaseValid reports whether the lease decoded and passed lease().
func (c *checker) leaseValid() bool {
	l := c.s.Monitor.Lease.D()
	return c.ok("monitor.lease") && (l == 0 && !c.written("monitor.lease") || l >= minLease && l%time.Second == 0)
}

func (c *checker) lease(p string, m lifeboat.Monitor) {
	if !c.ok(p) || !c.written(p) {
		return
	}
	switch l := c.s.Monitor.Lease.D(); {
	case l == 0:
		c.errorAt(p, false, "lease is 0s: every controller would fence its own region at once",
			"remove lease for the default 5s, or set one such as lease: 5s")
	case l < minLease:
		c.errorAt(p, false, fmt.Sprintf("lease %s is shorter than 1s, the shortest lease etcd grants", m.Lease),
			"write a whole number of seconds, at least 1s, or remove lease for the default 5s")
	case l%time.Second != 0:
		// If etcd rounded down, the majority could promote before the old
		// primary's controller fences itself: two writable primaries.
		c.errorAt(p, false, fmt.Sprintf("lease %s is not a whole number of seconds: etcd grants leases in whole seconds, and fencing relies on both sides counting the same lease", m.Lease),
			fmt.Sprintf("write lease: %s", lifeboat.FormatDuration(l.Truncate(time.Second)+time.Second)))
	}
}

// writtenZero reports whether path was written in the file as a zero
// duration: for fields where 0 means "use the default", a written 0 is
// most likely a wish the default does not grant.
func (c *checker) writtenZero(path string) bool {
	n := c.d.vals[path]
	if n == nil || isNull(resolve(n)) || !c.ok(path) {
		return false
	}
	var d lifeboat.Duration
	return d.UnmarshalText([]byte(resolve(n).Value)) == nil && d == 0
}

// quorum checks that automatic failover has a majority to decide by: a
// witness region and a store spanning the three regions. With two sites
// neither can tell a dead peer from a cut link, so both would promote.
func (c *checker) quorum() {
	const at = "monitor.mode"
	r, st := c.s.Regions, c.s.Store
	if !c.ok("regions") || !c.ok("store") {
		return
	}
	if r.Witness == nil || r.Witness.Name == "" {
		if !c.ok("regions.witness") {
			return
		}
		c.errorAt(at, false, fmt.Sprintf("automatic failover needs a witness region: with only %s, neither side can tell a dead peer from a cut link (Patroni's documentation says the same), so both could promote", orAnd(c.regionNames(false))),
			"add regions.witness: {name: <a third region>} and a store member there (store.members), or use mode: notify")
		return
	}
	w := r.Witness.Name
	switch {
	case len(st.Endpoints) > 0:
		// An external etcd cluster: its own members are its quorum.
	case len(st.Members) == 0:
		if !c.ok("store.members") {
			return
		}
		c.errorAt(at, false, fmt.Sprintf("automatic failover needs a store shared by %s: the quorum that decides a failover is one etcd cluster across the three regions, and this spec embeds a separate store wherever lifeboat runs", orAnd(c.regionNames(true))),
			fmt.Sprintf("add store.members with a member in each of %s ({peer: host:port, client: host:port}), or store.endpoints of an external etcd cluster", orAnd(c.regionNames(true))))
	case !has(st.Members, w) && c.ok("store.members"):
		c.errorAt(at, false, fmt.Sprintf("automatic failover needs a store member in the witness region %s: without its vote, losing either %s leaves no majority to fail over", w, orList(c.regionNames(false))),
			fmt.Sprintf("add store.members.%s: {peer: host:port, client: host:port}", w))
	}
}

// orAnd joins names as "a, b and c".
func orAnd(vs []string) string {
	if len(vs) < 2 {
		return strings.Join(vs, "")
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " and " + vs[len(vs)-1]
}

// storeMembers checks store.members: one member per region of the spec,
// the primary's and the secondary's at least, each on addresses of its
// own that the others can reach.
func (c *checker) storeMembers() {
	const at = "store.members"
	st := c.s.Store
	if st.Members == nil || !c.ok(at) {
		return
	}
	if len(st.Endpoints) > 0 && c.ok("store.endpoints") {
		c.errorAt(at, true, "store has both members and endpoints: members embed etcd in each region's controller, endpoints use an external etcd cluster; pick one",
			"remove store.endpoints to embed the store, or store.members to use the external cluster")
		return
	}
	if len(st.Members) == 0 {
		c.errorAt(at, true, "store.members is empty",
			fmt.Sprintf("add a member for each of %s ({peer: host:port, client: host:port}), or remove members for a single local store", orAnd(c.regionNames(true))))
		return
	}
	var missing []string
	for _, region := range c.regionNames(false) {
		if !has(st.Members, region) {
			missing = append(missing, region)
		}
	}
	if len(missing) > 0 {
		noun := "region"
		if len(missing) > 1 {
			noun = "regions"
		}
		c.errorAt(at, true, fmt.Sprintf("no store member for the %s %s: the store's quorum must include the primary and the secondary, or a failover could not be recorded", noun, orAnd(missing)),
			fmt.Sprintf("add %s: {peer: host:port, client: host:port} under store.members", missing[0]))
	}
	var addrs []memberAddr
	valid := 0
	for _, region := range lifeboat.SortedKeys(st.Members) {
		p := at + "." + region
		if c.s.RoleOf(region) == "" || region == "" {
			hint := regionHint(region, c.regionNames(true))
			if c.s.Regions.Witness == nil {
				hint = fmt.Sprintf("members are by region (%s); for a witness, add regions.witness: {name: %s}", orList(c.regionNames(false)), region)
				if m := didYouMean(region, c.regionNames(false)); m != "" {
					hint = fmt.Sprintf("did you mean %s?", m)
				}
			}
			c.errorAt(p, true, fmt.Sprintf("%q is not a region of this service", region), hint)
			continue
		}
		valid++
		m := st.Members[region]
		for _, f := range []struct{ key, addr, who string }{{"peer", m.Peer, "the other members"}, {"client", m.Client, "lifeboat commands"}} {
			fp := p + "." + f.key
			if f.addr == "" || !c.ok(fp) {
				continue
			}
			if msg, hint := memberAddrProblem(f.key, f.addr, f.who); msg != "" {
				c.errorAt(fp, false, msg, hint)
				continue
			}
			addrs = append(addrs, memberAddr{region + " " + f.key, fp, f.addr, normalHostPort(f.addr)})
		}
	}
	c.sharedMemberAddrs(addrs)
	if valid%2 == 0 && valid == len(st.Members) && len(missing) == 0 {
		msg := fmt.Sprintf("with %d store members a quorum needs %d, so they survive no more lost members than %d would", valid, valid/2+1, valid-1)
		if valid == 2 {
			msg = "with 2 store members a quorum needs both, so losing either region stops the store (one member alone would survive as much)"
		}
		c.warnAt(at, true, msg, evenHint(c.s.Regions))
	}
}

func evenHint(r lifeboat.Regions) string {
	if r.Witness == nil || r.Witness.Name == "" {
		return "add a witness region (regions.witness) with a member of its own, so either region can be lost"
	}
	return fmt.Sprintf("add a member in the witness region %s, so either region can be lost", r.Witness.Name)
}

// memberAddr is one parsed store member address, for finding duplicates.
type memberAddr struct {
	label, path string
	written     string // as in the file
	addr        string // normalized
}

// memberAddrProblem says why a member's address is not one others can
// reach, or "".
func memberAddrProblem(key, s, who string) (msg, hint string) {
	example := map[string]string{"peer": "2380", "client": "2379"}[key] // etcd's usual ports
	if msg, hint := hostPortProblem(s, false); msg != "" {
		return msg, hint + ", e.g. 192.0.2.10:" + example
	}
	host, port, _ := net.SplitHostPort(s)
	if wildcard(host) {
		return fmt.Sprintf("%q listens everywhere but is not an address %s can reach", s, who),
			fmt.Sprintf("write the address this member is reached at, e.g. 192.0.2.10:%s", port)
	}
	if port == "0" {
		return fmt.Sprintf("%q: port 0 picks a random port, which %s could not find", s, who), "write a fixed port, e.g. " + net.JoinHostPort(host, example)
	}
	return "", ""
}

// normalHostPort makes equal addresses compare equal (case of host names,
// leading zeros of the port).
func normalHostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return s
	}
	if n, err := strconv.ParseUint(port, 10, 16); err == nil {
		port = strconv.FormatUint(n, 10)
	}
	return net.JoinHostPort(strings.ToLower(host), port)
}

// sharedMemberAddrs reports an address used twice: etcd could not bind
// the second, or would be reached at the wrong member.
func (c *checker) sharedMemberAddrs(addrs []memberAddr) {
	for i := range addrs {
		for j := range i {
			a, b := addrs[j], addrs[i]
			if a.addr != b.addr {
				continue
			}
			// Point at whichever of the two comes later in the file.
			if na, nb := c.d.node(a.path, false), c.d.node(b.path, false); na != nil && nb != nil && (nb.Line < na.Line || nb.Line == na.Line && nb.Column < na.Column) {
				a, b = b, a
			}
			same := "also"
			if a.written != b.written {
				same = fmt.Sprintf("the same as %s,", a.written)
			}
			c.errorAt(b.path, false, fmt.Sprintf("%s is %s the %s address: each member listens on addresses of its own", b.written, same, a.label),
				"give every peer and client address its own host:port")
			break
		}
	}
}

// probes checks each component's probe: one kind, the kind that fits the
// component, and a timeout that fits in its interval.
func (c *checker) probes() {
	m := c.s.Monitor.WithDefaults()
	for _, un := range lifeboat.SortedKeys(c.s.Units) {
		u := c.s.Units[un]
		for _, cn := range lifeboat.SortedKeys(u.Compute) {
			if pr := u.Compute[cn].Probe; pr != nil {
				c.probe("units."+un+".compute."+cn+".probe", pr, false, m)
			}
		}
		for _, dn := range lifeboat.SortedKeys(u.Databases) {
			if pr := u.Databases[dn].Probe; pr != nil {
				c.probe("units."+un+".databases."+dn+".probe", pr, true, m)
			}
		}
	}
}

func (c *checker) probe(path string, pr *lifeboat.Probe, database bool, m lifeboat.Monitor) {
	if !c.ok(path) {
		return
	}
	var kinds []string // the kinds that fit, in field order
	for _, k := range []struct {
		key string
		set bool
	}{{"http", pr.HTTP != ""}, {"tcp", pr.TCP}, {"sql", pr.SQL != ""}} {
		p := path + "." + k.key
		if !k.set || !c.ok(p) {
			continue
		}
		switch {
		case database && k.key != "sql":
			c.errorAt(p, true, fmt.Sprintf("a database is probed with sql, not %s", k.key),
				fmt.Sprintf("replace %s: with sql: and a query the database must answer, or remove it for the default SELECT 1", k.key))
		case !database && k.key == "sql":
			c.errorAt(p, true, "sql probes are for databases; compute is probed with http or tcp",
				"replace sql: with http: /healthz (a path that answers 2xx) or tcp: true")
		default:
			kinds = append(kinds, k.key)
		}
	}
	if len(kinds) > 1 {
		c.errorAt(path+"."+kinds[1], true, fmt.Sprintf("a probe has one kind, and this one has both %s and %s", kinds[0], kinds[1]),
			fmt.Sprintf("keep one: %s or %s", kinds[0], kinds[1]))
	}
	if pr.HTTP != "" && !database && c.ok(path+".http") && !strings.HasPrefix(pr.HTTP, "/") {
		c.errorAt(path+".http", false, fmt.Sprintf("http %q is not a path: the probe GETs this path on each instance", pr.HTTP),
			"write a path starting with /, e.g. http: /healthz")
	}
	c.probeTiming(path, pr, m)
}

// probeTiming checks a probe's timeout against its interval, each taken
// from the probe or else from the monitor. A probe that sets neither
// inherits the monitor's pair, which monitor() checks.
func (c *checker) probeTiming(path string, pr *lifeboat.Probe, m lifeboat.Monitor) {
	ip, tp := path+".interval", path+".timeout"
	if !c.ok(ip) || !c.ok(tp) {
		return
	}
	for _, f := range []struct{ key, what string }{
		{"interval", "probes would run back to back with no pause"},
		{"timeout", "every probe would fail before it starts"},
	} {
		if p := path + "." + f.key; c.writtenZero(p) {
			c.errorAt(p, false, fmt.Sprintf("%s is 0s: %s", f.key, f.what),
				fmt.Sprintf("remove %s to inherit monitor.%s (%s), or set a duration", f.key, f.key, map[string]lifeboat.Duration{"interval": m.Interval, "timeout": m.Timeout}[f.key]))
			return
		}
	}
	if pr.Interval == 0 && pr.Timeout == 0 {
		return
	}
	interval, iFrom := pr.Interval, ""
	if interval == 0 {
		interval, iFrom = m.Interval, " (from monitor.interval)"
		if !c.written("monitor.interval") {
			iFrom = " (the default)"
		}
	}
	timeout, tFrom := pr.Timeout, ""
	if timeout == 0 {
		timeout, tFrom = m.Timeout, " (from monitor.timeout)"
		if !c.written("monitor.timeout") {
			tFrom = " (the default)"
		}
	}
	if timeout <= interval {
		return
	}
	at := tp
	if pr.Timeout == 0 {
		at = ip
	}
	c.errorAt(at, false, fmt.Sprintf("the probe's timeout %s%s is longer than its interval %s%s: a slow probe would still be running when the next one starts",
		timeout, tFrom, interval, iFrom),
		fmt.Sprintf("set timeout: %s or less here, or a longer interval", interval))
}

// detection warns when an automatic failover is likely to miss the RTO
// objective: the region must first be declared lost (and the old
// primary's lease run out), then the failover plan runs. The plan's
// estimate is the planner's own, so the two numbers never disagree.
func (c *checker) detection() {
	m := c.s.Monitor.WithDefaults()
	o := c.s.Objectives
	if m.Mode != lifeboat.MonitorAutomatic || o.RTO <= 0 || c.d.diags.HasErrors() {
		return
	}
	plan, err := planner.Plan(c.s, lifeboat.InitialState(c.s, time.Time{}), lifeboat.IntentFailover, "")
	if err != nil {
		return // the planner's refusal is reported where plans are made
	}
	detect := time.Duration(m.Failures)*m.Interval.D() + m.Grace.D()
	wait, why := detect, fmt.Sprintf("%s to declare %s lost (%d failures × %s interval", lifeboat.FormatDuration(detect), c.s.Regions.Primary.Name, m.Failures, m.Interval)
	if m.Grace > 0 {
		why += fmt.Sprintf(" + %s grace", m.Grace)
	}
	why += ")"
	if m.Lease.D() > detect {
		// The majority waits for the old primary's lease to run out.
		wait = m.Lease.D()
		why = fmt.Sprintf("%s for the old primary's lease to run out (declaring %s lost takes %s)", m.Lease, c.s.Regions.Primary.Name, lifeboat.FormatDuration(detect))
	}
	if total := wait + plan.RTO; total > o.RTO.D() {
		c.warnAt("monitor.mode", false, fmt.Sprintf("an automatic failover may take about %s, more than the RTO objective of %s: %s, then %s for the failover plan",
			lifeboat.FormatDuration(total), o.RTO, why, lifeboat.FormatDuration(plan.RTO)),
			"probe more often (monitor.interval), tolerate fewer failures, shorten grace or lease, speed up the plan (`lifeboat plan failover` shows its critical path), or raise the objective")
	}
}
