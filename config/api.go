package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// apiSection checks the api section: addresses that parse, regions that
// exist, and no address other than loopback without TLS (bearer tokens
// must not cross a network in clear). 'lifeboat serve' refuses the same at
// run time.
func (c *checker) apiSection() {
	a := c.s.API
	if a == nil || !c.ok("api") {
		return
	}
	tls := a.TLS != nil
	addrs := map[string]string{} // address → path, to catch two controllers on one port
	if a.Listen != "" {
		c.apiAddr("api.listen", a.Listen, tls, addrs)
	}
	regions := []string{c.s.Regions.Primary.Name, c.s.Regions.Secondary.Name}
	if c.s.Regions.Witness != nil {
		regions = append(regions, c.s.Regions.Witness.Name)
	}
	for _, r := range lifeboat.SortedKeys(a.ListenIn) {
		p := "api.listen-in." + r
		if !c.ok(p) {
			continue
		}
		if !c.s.Regions.Has(r) && c.s.RoleOf(r) != lifeboat.RoleWitness {
			hint := "regions: " + strings.Join(regions, ", ")
			if m := didYouMean(r, regions); m != "" {
				hint = fmt.Sprintf("did you mean %s?", m)
			}
			c.errorAt(p, true, fmt.Sprintf("region %q is not a region of this service: each region's controller ('lifeboat serve --region') listens at its own address", r), hint)
			continue
		}
		c.apiAddr(p, a.ListenIn[r], tls, addrs)
	}
	if a.TLS != nil && a.TLS.ClientCA == "" && c.ok("api.tls") && c.exposed(a) {
		c.warnAt("api.tls", true, "the API listens beyond loopback with TLS but without client-ca: anyone who reaches the port can try tokens",
			"add client-ca (the CA that signs your operators' client certificates) for mutual TLS")
	}
}

// exposed reports whether an address of the section is not loopback.
func (c *checker) exposed(a *lifeboat.API) bool {
	all := []string{a.Listen}
	for _, v := range a.ListenIn {
		all = append(all, v)
	}
	for _, addr := range all {
		if addr != "" && !loopback(addr) {
			return true
		}
	}
	return false
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// apiAddr checks one host:port of the API.
func (c *checker) apiAddr(path, addr string, tls bool, seen map[string]string) {
	if !c.ok(path) {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		c.errorAt(path, false, fmt.Sprintf("%q is not host:port", addr), "write e.g. 127.0.0.1:7480")
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		c.errorAt(path, false, fmt.Sprintf("port %q of %s is not a port number (1-65535)", port, addr), "write e.g. 127.0.0.1:7480")
		return
	}
	if prev, ok := seen[addr]; ok {
		c.errorAt(path, false, fmt.Sprintf("%s is also %s: two API servers cannot listen on one address", addr, prev), "give each its own port")
		return
	}
	seen[addr] = path
	if tls || loopback(addr) {
		return
	}
	what := fmt.Sprintf("host %q", host)
	if host == "" || host == "0.0.0.0" || host == "::" {
		what = "every interface"
	}
	c.errorAt(path, false, fmt.Sprintf("the API would listen on %s (%s) without TLS: bearer tokens would cross the network in clear", addr, what),
		"listen on 127.0.0.1 (reach it through an SSH tunnel), or add api.tls with cert and key (and client-ca for mutual TLS)")
}
