package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/dns"
	"github.com/lifeboat-dr/lifeboat/driver/frontdoor"
)

// Drivers that only a long-running process can host (see Hosted).
const (
	DNS       = "dns"
	FrontDoor = "frontdoor"
)

// Hosted are the traffic drivers that must outlive a CLI command: the
// built-in DNS server and the front door hold sockets and leases. A
// region's agent ('lifeboat serve', or the lab's daemon) hosts them and
// serves them over the agent protocol; the CLI reaches them through
// drivers.agent.url.
type Hosted struct {
	// Traffic is the hosted driver: DNS or FrontDoor, whichever the spec names.
	Traffic   lifeboat.TrafficDriver
	DNS       *dns.Server
	FrontDoor *frontdoor.FrontDoor
	// Lease is how long the front door routes without Renew (0 for DNS,
	// which has no lease).
	Lease time.Duration
}

// HostsTraffic reports whether the spec's traffic driver is one a
// long-running process hosts (dns or frontdoor).
func HostsTraffic(s *lifeboat.Spec) bool {
	t := s.Drivers.Traffic
	return t == DNS || t == FrontDoor
}

// Host builds, starts and routes the traffic driver the spec names, where
// st (the stored state) says each name points: a restarted host answers
// as the control plane left the service, not as the spec first had it.
func Host(ctx context.Context, s *lifeboat.Spec, st *lifeboat.State, log *slog.Logger) (*Hosted, error) {
	if log == nil {
		log = slog.Default()
	}
	h := &Hosted{}
	switch s.Drivers.Traffic {
	case DNS:
		srv, err := dnsFromSpec(s, st, log)
		if err != nil {
			return nil, err
		}
		if err := srv.Start(); err != nil {
			return nil, fmt.Errorf("drivers.dns.listen: %w (is another DNS server using %s?)", err, s.Drivers.DNS.Listen)
		}
		h.DNS, h.Traffic = srv, srv
	case FrontDoor:
		fd, err := frontDoorFromSpec(s, log)
		if err != nil {
			return nil, err
		}
		if err := fd.Start(); err != nil {
			return nil, fmt.Errorf("drivers.frontdoor: %w", err)
		}
		h.FrontDoor, h.Traffic, h.Lease = fd, fd, fd.Lease()
	default:
		return nil, fmt.Errorf("drivers.traffic is %q: nothing to host (a region's agent hosts dns or frontdoor)", s.Drivers.Traffic)
	}
	if err := h.restore(ctx, s, st); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// restore routes every traffic name where the state says it points.
func (h *Hosted) restore(ctx context.Context, s *lifeboat.Spec, st *lifeboat.State) error {
	for _, un := range lifeboat.SortedKeys(s.Units) {
		u := s.Units[un]
		for _, cn := range lifeboat.SortedKeys(u.Traffic) {
			name := lifeboat.TrafficName(s.Service, un, cn)
			region, epoch := s.Regions.Primary.Name, uint64(0)
			if st != nil {
				if r, ok := st.Resources[name]; ok && r.Routes != "" {
					region, epoch = r.Routes, r.Epoch
				}
			}
			t := lifeboat.Target{Service: s.Service, Unit: un, Component: cn, Region: region, Resource: name, Epoch: epoch}
			if err := h.Traffic.Switch(ctx, t, u.Traffic[cn].Names); err != nil {
				return fmt.Errorf("routing %s to %s as the stored state says: %w", name, region, err)
			}
		}
	}
	return nil
}

// Renew tells the front door the control plane is reachable, for another
// lease. The DNS server has no lease.
func (h *Hosted) Renew(epoch uint64) {
	if h.FrontDoor != nil {
		h.FrontDoor.Renew(epoch)
	}
}

// KeepLease renews the front door's lease every third of it for as long
// as the state store can be read: that is contact with the control plane.
// When the store stops answering the lease runs out and the front door
// fences itself. It returns when ctx ends; a DNS server has no lease.
func (h *Hosted) KeepLease(ctx context.Context, st lifeboat.Store, log *slog.Logger) {
	if h.Lease <= 0 {
		return
	}
	every := h.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	var lost time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Two tries of half a period each: a member cut off by a partition
		// hangs the first, and the client's next call goes to another.
		var state *lifeboat.State
		var err error
		for try := 0; try < 2 && ctx.Err() == nil; try++ {
			rctx, cancel := context.WithTimeout(ctx, every/2)
			state, err = st.State(rctx)
			cancel()
			if err == nil {
				break
			}
		}
		if err != nil {
			if lost.IsZero() && ctx.Err() == nil {
				lost = time.Now()
				log.Warn("cannot read the state store; the front door fences itself when its lease runs out unless contact returns", "lease", h.Lease, "err", err)
			}
			continue
		}
		if !lost.IsZero() {
			log.Info("the state store answers again; lease renewed", "after", time.Since(lost).Round(time.Millisecond))
			lost = time.Time{}
		}
		h.Renew(state.Epoch)
	}
}

// Addrs are the addresses the hosted driver serves on, for people: "dns
// 127.0.0.1:5353" or "frontdoor http 127.0.0.1:8080".
func (h *Hosted) Addrs() []string {
	var out []string
	if h.DNS != nil {
		out = append(out, "dns "+h.DNS.Addr())
	}
	if h.FrontDoor != nil {
		for _, n := range h.FrontDoor.Listeners() {
			out = append(out, "frontdoor "+n+" "+h.FrontDoor.Addr(n))
		}
	}
	return out
}

// Close stops the hosted driver.
func (h *Hosted) Close() error {
	var errs []error
	if h.DNS != nil {
		errs = append(errs, h.DNS.Close())
	}
	if h.FrontDoor != nil {
		errs = append(errs, h.FrontDoor.Close())
	}
	return errors.Join(errs...)
}

// dnsFromSpec builds the DNS server of drivers.dns: every traffic name of
// the spec answers with drivers.dns.endpoints of its region, with its
// component's TTL. Endpoints start healthy: until a monitor reports on
// them, the server answers as the spec says.
func dnsFromSpec(s *lifeboat.Spec, st *lifeboat.State, log *slog.Logger) (*dns.Server, error) {
	d := s.Drivers.DNS
	if d == nil {
		return nil, errors.New("drivers.traffic is dns but drivers.dns is missing: add zone, listen, name-servers and endpoints")
	}
	c := dns.DefaultConfig()
	c.Zone, c.Listen, c.Log = d.Zone, d.Listen, log
	regions := lifeboat.SortedKeys(d.NameServers)
	sort.SliceStable(regions, func(i, j int) bool { return regionRank(s, regions[i]) < regionRank(s, regions[j]) })
	for _, region := range regions {
		ns := d.NameServers[region]
		n := dns.NameServer{Name: ns.Name}
		if ns.Address != "" {
			a, err := netip.ParseAddr(ns.Address)
			if err != nil {
				return nil, fmt.Errorf("drivers.dns.name-servers.%s.address: %q is not an IP address", region, ns.Address)
			}
			n.Addr = a
		}
		c.NS = append(c.NS, n)
	}
	srv, err := dns.New(c)
	if err != nil {
		return nil, fmt.Errorf("drivers.dns: %w", err)
	}
	endpoints := map[string][]dns.Endpoint{}
	for region, addrs := range d.Endpoints {
		for _, a := range addrs {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return nil, fmt.Errorf("drivers.dns.endpoints.%s: %q is not an IP address", region, a)
			}
			endpoints[region] = append(endpoints[region], dns.Endpoint{Addr: ip, Healthy: true})
		}
	}
	for _, un := range lifeboat.SortedKeys(s.Units) {
		for _, cn := range lifeboat.SortedKeys(s.Units[un].Traffic) {
			tr := s.Units[un].Traffic[cn]
			ttl := tr.TTL.D()
			if ttl == 0 {
				ttl = 30 * time.Second
			}
			for _, name := range tr.Names {
				n := dns.Name{Name: name, TTL: ttl, Endpoints: endpoints, Weighted: d.Weights, Active: s.Regions.Primary.Name}
				if err := srv.SetName(n); err != nil {
					return nil, fmt.Errorf("units.%s.traffic.%s: %w", un, cn, err)
				}
			}
		}
	}
	return srv, nil
}

// regionRank orders the primary's name server first: it is the SOA's MNAME.
func regionRank(s *lifeboat.Spec, region string) int {
	switch region {
	case s.Regions.Primary.Name:
		return 0
	case s.Regions.Secondary.Name:
		return 1
	}
	return 2
}

// frontDoorFromSpec builds the front door of drivers.frontdoor.
func frontDoorFromSpec(s *lifeboat.Spec, log *slog.Logger) (*frontdoor.FrontDoor, error) {
	d := s.Drivers.FrontDoor
	if d == nil {
		return nil, errors.New("drivers.traffic is frontdoor but drivers.frontdoor is missing: add listeners {<name>: {listen, upstreams {<region>: host:port}}}")
	}
	c := frontdoor.DefaultConfig()
	c.Log = log
	if d.Lease > 0 {
		c.Lease = d.Lease.D()
	}
	if d.HoldTimeout > 0 {
		c.HoldTimeout = d.HoldTimeout.D()
	}
	for name, l := range d.Listeners {
		c.Listeners[name] = frontdoor.ListenerConfig{Listen: l.Listen, Upstreams: l.Upstreams}
	}
	fd, err := frontdoor.New(c)
	if err != nil {
		return nil, fmt.Errorf("drivers.frontdoor: %w", err)
	}
	return fd, nil
}
