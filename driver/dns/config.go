// Package dns is Lifeboat's built-in authoritative DNS server for a
// service's zone. Each traffic name answers with the healthy endpoints of
// its active region for the current epoch (priority routing), or of several
// regions in proportion to their weights (active/active). It fails closed:
// when every endpoint it could answer with is unhealthy it keeps serving the
// last known good answer and raises an alert, and it never answers with
// every endpoint regardless of health, as managed DNS failover does.
//
// The server is a lifeboat.TrafficDriver: Switch moves names to a region at
// an epoch, refusing older epochs, and Status says where they point.
//
// The rules, exactly:
//
//   - Priority (the default): a name answers with the healthy endpoints of
//     its active region, A for IPv4 and AAAA for IPv6, with the name's TTL.
//   - Weighted (Name.Weighted set, active/active): each query picks one
//     region with probability weight/sum over the regions with weight > 0
//     that have a healthy endpoint, and answers with that region's healthy
//     endpoints; regions are never mixed in one answer. Picks come from
//     Config.Rand. A Switch pins the name to one region again.
//   - Fail closed: when no region a name may answer from has a healthy
//     endpoint, it answers with each region's last known good answer (its
//     last healthy endpoints, kept per address family) and an Alert is
//     raised; a region that never had a healthy endpoint answers nothing.
//     It never falls back to every endpoint because all look unhealthy
//     (managed DNS's fail-open).
//   - The zone: SOA and NS at the apex, glue A/AAAA for name servers inside
//     the zone, NXDOMAIN or NODATA with the SOA (TTL = SOA minimum) in the
//     authority section, REFUSED outside the zone and for zone transfers,
//     AA set on every answer from the zone, TC set when a UDP answer does
//     not fit the client's buffer (512 bytes, or its EDNS0 size), and the
//     full answer over TCP. The SOA serial is bumped on every change.
//
// For people debugging, every traffic name N has a TXT record at
// _lifeboat.N (not at N, so the name's own TXT records stay the user's),
// with TTL 0 so it is never cached:
//
//	"epoch=3 region=east since=2025-03-01T12:00:00Z"
//
// A weighted name shows region=west:3,east:1; a name failing closed adds
// fail-closed=true.
package dns

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// NameServer is one of the zone's name servers, one per region: it gets an
// NS record at the apex and, when its name is inside the zone, glue.
type NameServer struct {
	Name string     // e.g. "ns-west.shop.lab.test."
	Addr netip.Addr // where it answers (glue A or AAAA)
}

// SOA holds the zone's SOA fields other than the serial, which the server
// keeps: it starts at the Unix time of New (so a restarted server never
// goes backwards) and is bumped on every change of the zone's answers.
type SOA struct {
	// MName is the primary name server; "" means the first of Config.NS.
	MName string
	// RName is the mailbox of the people responsible, as a domain name.
	RName   string
	TTL     time.Duration
	Refresh time.Duration
	Retry   time.Duration
	Expire  time.Duration
	// Minimum is the negative-caching TTL (RFC 2308): how long resolvers
	// remember NXDOMAIN and NODATA. Keep it short: a name added during a
	// failover must not stay "missing" for long.
	Minimum time.Duration
}

// Config configures a Server.
type Config struct {
	Zone string // e.g. "shop.lab.test."
	// Listen is where to serve, UDP and TCP on the same port.
	Listen string
	NS     []NameServer
	SOA    SOA
	// Rand picks regions for weighted names; nil seeds one at random.
	// Tests pass a seeded source to make the picks reproducible.
	Rand *rand.Rand
	Log  *slog.Logger
}

// DefaultConfig returns a config serving on 127.0.0.1 on a free port, with
// the SOA timers short enough for failover: resolvers re-ask quickly.
func DefaultConfig() Config {
	return Config{
		Listen: "127.0.0.1:0",
		SOA: SOA{
			RName:   "hostmaster",
			TTL:     60 * time.Second,
			Refresh: 60 * time.Second,
			Retry:   10 * time.Second,
			Expire:  7 * 24 * time.Hour,
			Minimum: 5 * time.Second,
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// ValidateConfig says what is wrong with c, all at once.
func ValidateConfig(c Config) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Zone == "" {
		bad("dns: zone is empty; set it to the service's zone, e.g. \"shop.lab.test.\"")
	} else if _, ok := dns.IsDomainName(c.Zone); !ok {
		bad("dns: zone %q is not a domain name", c.Zone)
	}
	if c.Listen == "" {
		bad("dns: listen is empty; set it to an address like \"127.0.0.1:0\"")
	}
	if len(c.NS) == 0 {
		bad("dns: no name servers; list one per region (name and address) so the zone has NS records")
	}
	for i, ns := range c.NS {
		if _, ok := dns.IsDomainName(ns.Name); !ok || ns.Name == "" {
			bad("dns: name server %d: %q is not a domain name", i, ns.Name)
		}
		if c.Zone != "" && dns.IsSubDomain(canon(c.Zone), canon(ns.Name)) && !ns.Addr.IsValid() {
			bad("dns: name server %s is inside the zone, so it needs an address for its glue record", ns.Name)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ttl", c.SOA.TTL}, {"refresh", c.SOA.Refresh}, {"retry", c.SOA.Retry}, {"expire", c.SOA.Expire}, {"minimum", c.SOA.Minimum}} {
		if d.v < time.Second || d.v > 1<<31*time.Second {
			bad("dns: soa %s is %v; it must be between 1s and 68 years (start from DefaultConfig)", d.name, d.v)
		}
	}
	if c.SOA.RName == "" {
		bad("dns: soa rname is empty; set the mailbox of the people responsible, e.g. \"hostmaster\"")
	}
	return errors.Join(errs...)
}

// canon returns a name in the form the server keys its records by: fully
// qualified and lower case (DNS names are case-insensitive).
func canon(name string) string { return strings.ToLower(dns.Fqdn(name)) }

func seconds(d time.Duration) uint32 { return uint32(d / time.Second) }
