package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
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

	mu      sync.Mutex
	applied map[string]appliedRoute // by traffic resource: what this host routes now
}

// appliedRoute is where a hosted driver routes one traffic resource.
type appliedRoute struct {
	region string
	epoch  uint64
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
	at := hostAt{dnsPath: "drivers.dns.listen", listeners: map[string]string{}}
	switch s.Drivers.Traffic {
	case DNS:
		if s.Drivers.DNS != nil {
			at.dns = s.Drivers.DNS.Listen
		}
		if at.dns == "" {
			return nil, errors.New("drivers.dns.listen is not set, so 'lifeboat serve' has no address to answer on: set it, or run the regions' controllers ('lifeboat serve --region R'), which serve at name-servers.<region>.listen")
		}
	case FrontDoor:
		if s.Drivers.FrontDoor != nil {
			for name, l := range s.Drivers.FrontDoor.Listeners {
				if l.Listen != "" {
					at.listeners[name] = l.Listen
				}
			}
		}
		if len(at.listeners) == 0 {
			return nil, errors.New("no listener of drivers.frontdoor has listen set, so 'lifeboat serve' has nothing to listen on: set it, or run the regions' controllers ('lifeboat serve --region R'), which listen at listen-in.<region>")
		}
	}
	return host(ctx, s, st, at, log)
}

// HostIn builds, starts and routes the traffic driver that region's
// controller runs: the DNS server at drivers.dns.name-servers.<region>.listen,
// or the front door listeners that have listen-in.<region>. It returns nil
// (and no error) when the spec gives region nothing to host.
func HostIn(ctx context.Context, s *lifeboat.Spec, region string, st *lifeboat.State, log *slog.Logger) (*Hosted, error) {
	at := hostAt{dnsPath: "drivers.dns.name-servers." + region + ".listen", listeners: map[string]string{}}
	switch s.Drivers.Traffic {
	case DNS:
		if s.Drivers.DNS == nil || s.Drivers.DNS.NameServers[region].Listen == "" {
			return nil, nil
		}
		at.dns = s.Drivers.DNS.NameServers[region].Listen
	case FrontDoor:
		if s.Drivers.FrontDoor == nil {
			return nil, nil
		}
		for name, l := range s.Drivers.FrontDoor.Listeners {
			if a := l.ListenIn[region]; a != "" {
				at.listeners[name] = a
			}
		}
		if len(at.listeners) == 0 {
			return nil, nil
		}
		// The controller renews it while its quorum lease is alive (renewed
		// within half the lease); capped at half the quorum lease, the
		// front door stops routing before the lease expires and the
		// majority side may promote.
		at.maxLease = s.Monitor.WithDefaults().Lease.D() / 2
	default:
		return nil, nil
	}
	return host(ctx, s, st, at, log)
}

// ServedInRegions reports whether the spec has its DNS servers or front
// door listeners run by the regions' controllers (name-servers.<r>.listen,
// listen-in): then every copy follows the stored state.
func ServedInRegions(s *lifeboat.Spec) bool {
	switch s.Drivers.Traffic {
	case DNS:
		if s.Drivers.DNS != nil {
			for _, ns := range s.Drivers.DNS.NameServers {
				if ns.Listen != "" {
					return true
				}
			}
		}
	case FrontDoor:
		if s.Drivers.FrontDoor != nil {
			for _, l := range s.Drivers.FrontDoor.Listeners {
				if len(l.ListenIn) > 0 {
					return true
				}
			}
		}
	}
	return false
}

// hostAt is where one host of the traffic driver listens.
type hostAt struct {
	dns, dnsPath string
	listeners    map[string]string // front door listener name → listen address
	// maxLease caps the front door's lease (0: no cap).
	maxLease time.Duration
}

func host(ctx context.Context, s *lifeboat.Spec, st *lifeboat.State, at hostAt, log *slog.Logger) (*Hosted, error) {
	if log == nil {
		log = slog.Default()
	}
	h := &Hosted{applied: map[string]appliedRoute{}}
	switch s.Drivers.Traffic {
	case DNS:
		srv, err := dnsFromSpec(s, at.dns, log)
		if err != nil {
			return nil, err
		}
		if err := srv.Start(); err != nil {
			return nil, fmt.Errorf("%s: %w (is another DNS server using %s?)", at.dnsPath, err, at.dns)
		}
		h.DNS, h.Traffic = srv, srv
	case FrontDoor:
		fd, err := frontDoorFromSpec(s, at.listeners, at.maxLease, log)
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
	_, err := h.Follow(ctx, s, st)
	return err
}

// Follow routes every traffic name whose stored route is newer than the
// one this host applied (a name never routed goes where the state says,
// or to the primary). It returns the resources it switched. A host only
// moves forward: a switch made here at a newer epoch than the state
// records yet is kept.
func (h *Hosted) Follow(ctx context.Context, s *lifeboat.Spec, st *lifeboat.State) ([]string, error) {
	var moved []string
	for _, un := range lifeboat.SortedKeys(s.Units) {
		u := s.Units[un]
		for _, cn := range lifeboat.SortedKeys(u.Traffic) {
			name := lifeboat.TrafficName(s.Service, un, cn)
			want := appliedRoute{region: s.Regions.Primary.Name}
			if st != nil {
				if r, ok := st.Resources[name]; ok && r.Routes != "" {
					want = appliedRoute{region: r.Routes, epoch: r.Epoch}
				}
			}
			h.mu.Lock()
			have, ok := h.applied[name]
			h.mu.Unlock()
			if ok && (want.epoch < have.epoch || want == have) {
				continue
			}
			t := lifeboat.Target{Service: s.Service, Unit: un, Component: cn, Region: want.region, Resource: name, Epoch: want.epoch}
			if err := h.switchTo(ctx, t, u.Traffic[cn].Names); err != nil {
				return moved, fmt.Errorf("routing %s to %s as the stored state says: %w", name, want.region, err)
			}
			moved = append(moved, name)
		}
	}
	return moved, nil
}

// switchTo switches the hosted driver and remembers the route.
func (h *Hosted) switchTo(ctx context.Context, t lifeboat.Target, names []string) error {
	if err := h.Traffic.Switch(ctx, t, names); err != nil {
		return err
	}
	h.mu.Lock()
	if h.applied == nil {
		h.applied = map[string]appliedRoute{}
	}
	if a := (appliedRoute{region: t.Region, epoch: t.Epoch}); a.epoch >= h.applied[t.Resource].epoch {
		h.applied[t.Resource] = a
	}
	h.mu.Unlock()
	return nil
}

// SetRegionHealth marks the DNS endpoints of region healthy or not, for
// every traffic name: the DNS server answers only healthy endpoints, and
// keeps its last good answer when none is. The front door has no
// per-endpoint health.
func (h *Hosted) SetRegionHealth(s *lifeboat.Spec, region string, healthy bool) {
	if h.DNS == nil || s.Drivers.DNS == nil {
		return
	}
	for _, a := range s.Drivers.DNS.Endpoints[region] {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		for _, u := range s.Units {
			for _, tr := range u.Traffic {
				for _, name := range tr.Names {
					h.DNS.SetHealth(name, region, ip, healthy)
				}
			}
		}
	}
}

// Routed is the traffic driver of a spec whose DNS servers or front doors
// run in the regions' controllers: each copy follows the stored state, so
// a switch is done when the plan records it. Local, if set, is the copy in
// this process: it switches at once, and answers Status. Without one,
// Status asks the regions' DNS servers over the wire (Spec's name-servers).
type Routed struct {
	Local *Hosted
	Spec  *lifeboat.Spec
}

// Switch switches the local copy, if any; the others follow the state the
// plan records after this step.
func (r *Routed) Switch(ctx context.Context, t lifeboat.Target, names []string) error {
	if r.Local == nil {
		return nil
	}
	return r.Local.switchTo(ctx, t, names)
}

// Status is the local copy's route or, for DNS, the first region's server
// that answers (the primary's first).
func (r *Routed) Status(ctx context.Context, t lifeboat.Target, names []string) (lifeboat.Route, error) {
	if r.Local != nil {
		return r.Local.Traffic.Status(ctx, t, names)
	}
	if s := r.Spec; s != nil && s.Drivers.Traffic == DNS && s.Drivers.DNS != nil {
		regions := lifeboat.SortedKeys(s.Drivers.DNS.NameServers)
		sort.SliceStable(regions, func(i, j int) bool { return regionRank(s, regions[i]) < regionRank(s, regions[j]) })
		var errs []error
		for _, region := range regions {
			if addr := s.Drivers.DNS.NameServers[region].Listen; addr != "" {
				rt, err := dns.Ask(ctx, addr, t, names)
				if err == nil {
					return rt, nil
				}
				errs = append(errs, fmt.Errorf("%s's server: %w", region, err))
			}
		}
		return lifeboat.Route{}, errors.Join(errs...)
	}
	return lifeboat.Route{}, fmt.Errorf("the front door runs in the regions' controllers, and this process cannot ask them where %s routes: %w", t.Resource, errors.ErrUnsupported)
}

// Driver is the hosted driver as an agent serves it: a switch through it
// is remembered, so Keep does not make it again.
func (h *Hosted) Driver() lifeboat.TrafficDriver { return &Routed{Local: h} }

// Renew tells the front door the control plane is reachable, for another
// lease. The DNS server has no lease.
func (h *Hosted) Renew(epoch uint64) {
	if h.FrontDoor != nil {
		h.FrontDoor.Renew(epoch)
	}
}

// Keep reads the state store every third of the front door's lease (every
// second for DNS), renews the lease while the store answers (that is
// contact with the control plane) and routes as the stored state says, so
// a switch made by any process reaches this host. When the store stops
// answering, the lease runs out and the front door fences itself. It
// returns when ctx ends.
func (h *Hosted) Keep(ctx context.Context, s *lifeboat.Spec, st lifeboat.Store, log *slog.Logger) {
	every := time.Second
	if h.Lease > 0 {
		every = h.Lease / 3
	}
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
				if h.Lease > 0 {
					log.Warn("cannot read the state store; the front door fences itself when its lease runs out unless contact returns", "lease", h.Lease, "err", err)
				} else {
					log.Warn("cannot read the state store; the DNS server answers as it did until contact returns", "err", err)
				}
			}
			continue
		}
		if !lost.IsZero() {
			log.Info("the state store answers again; lease renewed", "after", time.Since(lost).Round(time.Millisecond))
			lost = time.Time{}
		}
		h.Renew(state.Epoch)
		if moved, err := h.Follow(ctx, s, state); err != nil {
			log.Warn("following the stored route", "err", err)
		} else if len(moved) > 0 {
			log.Info("routes follow the stored state", "moved", moved, "epoch", state.Epoch)
		}
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
func dnsFromSpec(s *lifeboat.Spec, listen string, log *slog.Logger) (*dns.Server, error) {
	d := s.Drivers.DNS
	if d == nil {
		return nil, errors.New("drivers.traffic is dns but drivers.dns is missing: add zone, listen, name-servers and endpoints")
	}
	c := dns.DefaultConfig()
	c.Zone, c.Listen, c.Log = d.Zone, listen, log
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

// frontDoorFromSpec builds the front door of drivers.frontdoor, with the
// listeners of listen (name → address).
func frontDoorFromSpec(s *lifeboat.Spec, listen map[string]string, maxLease time.Duration, log *slog.Logger) (*frontdoor.FrontDoor, error) {
	d := s.Drivers.FrontDoor
	if d == nil {
		return nil, errors.New("drivers.traffic is frontdoor but drivers.frontdoor is missing: add listeners {<name>: {listen, upstreams {<region>: host:port}}}")
	}
	c := frontdoor.DefaultConfig()
	c.Log = log
	if d.Lease > 0 {
		c.Lease = d.Lease.D()
	}
	if maxLease > 0 && c.Lease > maxLease {
		c.Lease = maxLease
	}
	if d.HoldTimeout > 0 {
		c.HoldTimeout = d.HoldTimeout.D()
	}
	for name, addr := range listen {
		c.Listeners[name] = frontdoor.ListenerConfig{Listen: addr, Upstreams: d.Listeners[name].Upstreams}
	}
	fd, err := frontdoor.New(c)
	if err != nil {
		return nil, fmt.Errorf("drivers.frontdoor: %w", err)
	}
	return fd, nil
}
