package rfc2136

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/lifeboat-dr/lifeboat"
)

// TSIGKey is the key that signs every message (RFC 8945). It must match a
// `key` statement on the server that the zone's allow-update or
// update-policy grants.
type TSIGKey struct {
	Name      string // "lifeboat-key." (a domain name, like in named.conf)
	Algorithm string // hmac-sha256 (default), hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1
	Secret    string // base64, as in named.conf or tsig-keygen's output
}

// Config of the driver.
type Config struct {
	// Server is the zone's primary, "host:port". Updates must go to the
	// primary; the driver also reads the records there, so that it never
	// decides from a secondary that lags.
	Server string
	// Zone that holds the names, "shop.example.test.".
	Zone string
	TSIG TSIGKey
	// Names are the endpoints of each traffic name per region: what the
	// name resolves to (A and AAAA) when that region is active.
	// name → region → addresses. A name inside Zone is absolute
	// ("www.shop.example.test", with or without the final dot); any other is
	// relative to Zone ("www"); "@" is the zone's apex.
	Names map[string]map[string][]netip.Addr
	// TTL of the records the driver writes. Clients may keep the old
	// answer this long after a switch: keep it short.
	TTL time.Duration
	// Timeout bounds one Status or Switch call (every query and the update).
	Timeout time.Duration
}

// MarkPrefix is the label of the TXT record the driver keeps next to each
// name (_lifeboat.<name>): "epoch=N region=R since=RFC3339".
const MarkPrefix = "_lifeboat"

// DefaultConfig returns a config with the defaults filled in and no names.
func DefaultConfig() Config {
	return Config{
		TSIG:    TSIGKey{Algorithm: "hmac-sha256"},
		Names:   map[string]map[string][]netip.Addr{},
		TTL:     30 * time.Second,
		Timeout: 10 * time.Second,
	}
}

var algorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// ValidateConfig reports every problem of c, one per line.
func ValidateConfig(c Config) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("rfc2136: "+format, a...)) }

	if host, port, err := net.SplitHostPort(c.Server); err != nil || host == "" || port == "" {
		bad("server %q: want host:port of the zone's primary, e.g. 192.0.2.53:53", c.Server)
	}
	zone := dns.CanonicalName(c.Zone)
	if c.Zone == "" {
		bad("zone is empty: name the zone that holds the traffic names, e.g. shop.example.test.")
	} else if _, ok := dns.IsDomainName(zone); !ok {
		bad("zone %q is not a domain name", c.Zone)
	}
	if c.TSIG.Name == "" {
		bad("tsig.name is empty: name the key of the server's `key` statement that allow-update/update-policy grants")
	} else if _, ok := dns.IsDomainName(c.TSIG.Name); !ok {
		bad("tsig.name %q is not a domain name", c.TSIG.Name)
	}
	if _, ok := algorithms[strings.ToLower(strings.TrimSuffix(c.TSIG.Algorithm, "."))]; !ok {
		bad("tsig.algorithm %q: want one of %s", c.TSIG.Algorithm, strings.Join(lifeboat.SortedKeys(algorithms), ", "))
	}
	if c.TSIG.Secret == "" {
		bad("tsig.secret is empty: copy the base64 secret of key %q from the server's configuration", c.TSIG.Name)
	} else if _, err := base64.StdEncoding.DecodeString(c.TSIG.Secret); err != nil {
		bad("tsig.secret of key %q is not valid base64 (%v): copy it exactly as in the server's key statement", c.TSIG.Name, err)
	}
	if len(c.Names) == 0 {
		bad("names is empty: list each traffic name with its addresses per region")
	}
	seen := map[string]string{}
	for _, name := range lifeboat.SortedKeys(c.Names) {
		fqdn, err := canonical(name, zone)
		if err != nil {
			bad("name %q: %v", name, err)
			continue
		}
		if prev, dup := seen[fqdn]; dup {
			bad("names %q and %q are the same name %s", prev, name, fqdn)
		}
		seen[fqdn] = name
		regions := c.Names[name]
		if len(regions) == 0 {
			bad("name %q has no regions: give the addresses it resolves to in each region", name)
		}
		for _, region := range lifeboat.SortedKeys(regions) {
			if region == "" || strings.ContainsAny(region, " \t\"=;") {
				bad("name %q: region %q must be non-empty, without spaces, quotes, '=' or ';' (it is written into a TXT record)", name, region)
			}
			addrs := regions[region]
			if len(addrs) == 0 {
				// An empty answer would take the name out of the DNS: never route to nothing.
				bad("name %q region %q has no addresses: give at least one", name, region)
			}
			for _, a := range addrs {
				if !a.IsValid() {
					bad("name %q region %q: an address is invalid (zero netip.Addr)", name, region)
				} else if a.Zone() != "" {
					bad("name %q region %q: address %s has an IPv6 zone, which DNS cannot carry", name, region, a)
				}
			}
		}
	}
	if c.TTL < time.Second || c.TTL > 24*time.Hour {
		bad("ttl %s: want between 1s and 24h (short: clients keep the old answer this long after a switch)", c.TTL)
	}
	if c.TTL%time.Second != 0 {
		bad("ttl %s: DNS counts whole seconds", c.TTL)
	}
	if c.Timeout <= 0 {
		bad("timeout %s: want > 0, e.g. 10s", c.Timeout)
	}
	return errors.Join(errs...)
}

// canonical makes name absolute and lower case, and checks it is in zone.
func canonical(name, zone string) (string, error) {
	// A spec names "shop.example.test" without the final dot: a name that
	// is already inside the zone is absolute, anything else is relative.
	var fqdn string
	switch {
	case name == "@":
		fqdn = zone
	case strings.HasSuffix(name, ".") || dns.IsSubDomain(zone, dns.CanonicalName(name)):
		fqdn = dns.CanonicalName(name)
	default:
		fqdn = dns.CanonicalName(name + "." + zone)
	}
	if _, ok := dns.IsDomainName(fqdn); !ok {
		return "", fmt.Errorf("not a domain name")
	}
	if !dns.IsSubDomain(zone, fqdn) {
		return "", fmt.Errorf("%s is not in zone %s: an update to %s cannot change it", fqdn, zone, zone)
	}
	return fqdn, nil
}
