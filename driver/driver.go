// Package driver builds the drivers a spec names. Each kind of component
// (compute, database, backup, traffic) gets the driver named for it in
// drivers.<kind>, or drivers.default; the backends live in subpackages
// (script: the user's shell commands; agent: drivers served over HTTP by a
// region's agent, such as the lab's daemon; fake: an in-memory world;
// rfc2136: an external DNS server). The built-in DNS server and the front
// door are hosted by a long-running process (see Host) and reached through
// its agent.
//
// Hook steps run through the script driver, unless no kind uses it and the
// spec chose the fake (a test or a dry run): then the fake's runner records
// them without running anything.
package driver

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/agent"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
	"github.com/lifeboat-dr/lifeboat/driver/rfc2136"
	"github.com/lifeboat-dr/lifeboat/driver/script"
)

// Driver names, as written in drivers.default and drivers.<kind>.
const (
	Script  = "script"
	Agent   = "agent"
	RFC2136 = "rfc2136"
	Fake    = "fake"
)

// FromSpec builds the drivers the spec names. A "fake" world is seeded from
// st (nil: the spec's initial state) so that it agrees with the stored
// state; all fake kinds share one world. A kind the spec has no component
// for may be left unnamed, and then has no driver.
func FromSpec(s *lifeboat.Spec, st *lifeboat.State) (lifeboat.Drivers, error) {
	ds := s.Drivers
	needs := kindsNeeded(s)
	choice := map[string]string{}
	for _, k := range []struct{ kind, name string }{
		{"compute", ds.Compute}, {"database", ds.Database}, {"backup", ds.Backup}, {"traffic", ds.Traffic},
	} {
		name := k.name
		if name == "" {
			name = ds.Default
		}
		switch name {
		case Script, Agent, Fake:
			choice[k.kind] = name
		case RFC2136, DNS, FrontDoor:
			if k.kind != "traffic" {
				return lifeboat.Drivers{}, fmt.Errorf("drivers.%s is %s, which only drives traffic: use script, agent or fake", k.kind, name)
			}
			choice[k.kind] = name
		case "":
			if needs[k.kind] {
				return lifeboat.Drivers{}, fmt.Errorf("%s has %s components but no driver for them: set drivers.default (or drivers.%s) to script, agent or fake", s.Service, k.kind, k.kind)
			}
		default:
			key := "drivers." + k.kind
			if k.name == "" {
				key = "drivers.default"
			}
			return lifeboat.Drivers{}, fmt.Errorf("%s is %q, which is not a driver: use script, agent or fake", key, name)
		}
	}

	// Traffic served by the regions' controllers, with no 'lifeboat serve'
	// to reach: every copy follows the stored state.
	routed := (choice["traffic"] == DNS || choice["traffic"] == FrontDoor) && ServedInRegions(s) && (ds.Agent == nil || ds.Agent.URL == "")
	usesScript, usesFake, usesAgent := false, false, false
	for kind, name := range choice {
		usesScript = usesScript || name == Script
		usesFake = usesFake || name == Fake
		// The hosted traffic drivers live in 'lifeboat serve': reach them
		// through its agent.
		usesAgent = usesAgent || name == Agent || (name == DNS || name == FrontDoor) && !(kind == "traffic" && routed)
	}
	var remote lifeboat.Drivers
	if usesAgent {
		if ds.Agent == nil || ds.Agent.URL == "" {
			if ht := choice["traffic"]; ht == DNS || ht == FrontDoor {
				return lifeboat.Drivers{}, fmt.Errorf("drivers.traffic is %s, which 'lifeboat serve' hosts, but drivers.agent.url is not set: add the address it listens on, e.g. url: http://127.0.0.1:7402", ht)
			}
			return lifeboat.Drivers{}, fmt.Errorf("the agent driver is chosen but drivers.agent.url is not set: add the agent's address (lifeboat lab up writes it for the lab)")
		}
		remote = agent.NewClient(ds.Agent.URL, nil)
	}
	var dnsUpdates lifeboat.TrafficDriver
	if choice["traffic"] == RFC2136 {
		var err error
		if dnsUpdates, err = rfc2136FromSpec(s); err != nil {
			return lifeboat.Drivers{}, err
		}
	}
	// Hooks are the user's commands: run them unless the spec chose the
	// fake world for everything (a test or a dry run).
	hooksFake := !usesScript && (ds.Default == Fake || ds.Default == "" && usesFake)
	var (
		sd    *script.Driver
		world *fake.World
		err   error
	)
	if usesScript || !hooksFake {
		if sd, err = script.New(s); err != nil {
			return lifeboat.Drivers{}, fmt.Errorf("script driver: %w", err)
		}
	}
	if usesFake || hooksFake {
		world = fake.New()
		world.Seed(s, st)
	}
	pick := func(kind string) lifeboat.Drivers {
		switch choice[kind] {
		case Script:
			return sd.Drivers()
		case Fake:
			return world.Drivers()
		case DNS, FrontDoor:
			if routed {
				return lifeboat.Drivers{Traffic: &Routed{Spec: s}}
			}
			return remote
		case Agent:
			return remote
		case RFC2136:
			return lifeboat.Drivers{Traffic: dnsUpdates}
		}
		return lifeboat.Drivers{}
	}
	out := lifeboat.Drivers{
		Compute:  pick("compute").Compute,
		Database: pick("database").Database,
		Backup:   pick("backup").Backup,
		Traffic:  pick("traffic").Traffic,
	}
	if hooksFake {
		out.Scripts = world.Drivers().Scripts
	} else {
		out.Scripts = sd
	}
	return out, nil
}

// rfc2136FromSpec builds the RFC 2136 driver: every traffic name of the
// spec resolves to drivers.rfc2136.endpoints of the active region.
func rfc2136FromSpec(s *lifeboat.Spec) (lifeboat.TrafficDriver, error) {
	r := s.Drivers.RFC2136
	if r == nil {
		return nil, fmt.Errorf("drivers.traffic is rfc2136 but drivers.rfc2136 is missing: add server, zone, tsig and endpoints")
	}
	secretPath := r.TSIG.SecretFile
	if !filepath.IsAbs(secretPath) {
		secretPath = filepath.Join(filepath.Dir(s.File), secretPath)
	}
	secret, err := os.ReadFile(secretPath)
	if err != nil {
		return nil, fmt.Errorf("drivers.rfc2136.tsig.secret-file: %w (write the key's base64 secret there, as tsig-keygen prints it)", err)
	}
	c := rfc2136.DefaultConfig()
	c.Server, c.Zone = r.Server, r.Zone
	c.TSIG.Name, c.TSIG.Secret = r.TSIG.Name, strings.TrimSpace(string(secret))
	if r.TSIG.Algorithm != "" {
		c.TSIG.Algorithm = r.TSIG.Algorithm
	}
	if r.TTL > 0 {
		c.TTL = r.TTL.D()
	}
	byRegion := map[string][]netip.Addr{}
	for region, addrs := range r.Endpoints {
		for _, a := range addrs {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return nil, fmt.Errorf("drivers.rfc2136.endpoints.%s: %q is not an IP address", region, a)
			}
			byRegion[region] = append(byRegion[region], ip)
		}
	}
	c.Names = map[string]map[string][]netip.Addr{}
	for _, u := range s.Units {
		for _, t := range u.Traffic {
			for _, n := range t.Names {
				c.Names[n] = byRegion
			}
		}
	}
	d, err := rfc2136.New(c)
	if err != nil {
		return nil, fmt.Errorf("drivers.rfc2136: %w", err)
	}
	return d, nil
}

// kindsNeeded reports which kinds of driver the spec's components use.
func kindsNeeded(s *lifeboat.Spec) map[string]bool {
	n := map[string]bool{}
	for _, u := range s.Units {
		if len(u.Compute) > 0 {
			n["compute"] = true
		}
		if len(u.Traffic) > 0 {
			n["traffic"] = true
		}
		for _, db := range u.Databases {
			n["database"] = true
			if db.DRMode == lifeboat.DRBackup {
				n["backup"] = true
			}
		}
	}
	return n
}
