package dns

import (
	"context"
	"fmt"
	"slices"

	"github.com/lifeboat-dr/lifeboat"
)

var _ lifeboat.TrafficDriver = (*Server)(nil)

// Status says where names point: the region and epoch they share (Region
// is "" when they disagree, so a switch is not taken as done), the newest
// Since, and what each name answers with now. For a weighted name Answers
// lists every address its regions may answer with.
func (s *Server) Status(ctx context.Context, t lifeboat.Target, names []string) (lifeboat.Route, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var rt lifeboat.Route
	rt.Answers = make(map[string][]string, len(names))
	for i, n := range names {
		r := s.names[canon(n)]
		if r == nil {
			return lifeboat.Route{}, lifeboat.Permanent(lifeboat.OpTrafficSwitch, t.Resource,
				fmt.Errorf("dns: name %s is not served by zone %s on %s; add it (SetName) with its endpoints per region", n, s.zone, s.addr))
		}
		region := r.route.region
		if r.weighted() {
			region = "" // active/active: no single region
		}
		if i == 0 {
			rt.Region, rt.Epoch, rt.Since = region, r.route.epoch, r.route.since
		} else {
			if rt.Region != region {
				rt.Region = ""
			}
			rt.Epoch = min(rt.Epoch, r.route.epoch)
			if r.route.since.After(rt.Since) {
				rt.Since = r.route.since
			}
		}
		regions, _ := r.candidates()
		ans := []string{}
		for _, reg := range regions {
			for _, a := range r.serving(reg) {
				ans = append(ans, a.String())
			}
		}
		rt.Answers[n] = ans
	}
	return rt, nil
}

// Switch points names at t.Region for epoch t.Epoch, all at once: a query
// sees either the old region or the new one, never a mix and never
// nothing. DNS has no connections to close, so the two steps of a switch
// (stop routing to the old region, route to the new) are one atomic swap
// here; resolvers may still hold the old answer for the name's TTL.
// It refuses an epoch older than one a name was switched at.
func (s *Server) Switch(ctx context.Context, t lifeboat.Target, names []string) error {
	if t.Region == "" {
		return lifeboat.Permanent(lifeboat.OpTrafficSwitch, t.Resource,
			fmt.Errorf("dns: cannot switch %v: the target names no region to route to", names))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.gen.Add(1) // before the unlock: cached answers are stale from now on
	var rs []*record
	for _, n := range names {
		r := s.names[canon(n)]
		if r == nil {
			return lifeboat.Permanent(lifeboat.OpTrafficSwitch, t.Resource,
				fmt.Errorf("dns: cannot switch %s to %s: the name is not served by zone %s; add it (SetName) with its endpoints per region", n, t.Region, s.zone))
		}
		if r.route.epoch > t.Epoch {
			return lifeboat.Permanent(lifeboat.OpTrafficSwitch, t.Resource,
				fmt.Errorf("dns: name %s: %w", n, lifeboat.StaleEpoch(t.Resource, t.Epoch, r.route.epoch)))
		}
		if _, ok := r.Endpoints[t.Region]; !ok {
			return lifeboat.Permanent(lifeboat.OpTrafficSwitch, t.Resource,
				fmt.Errorf("dns: cannot switch %s to %s: the name has no endpoints there (it has %v); add them (SetName) first", n, t.Region, regionsOf(r)))
		}
		rs = append(rs, r)
	}
	now := s.now()
	for _, r := range rs {
		if r.route.region == t.Region && r.route.epoch == t.Epoch && !r.weighted() {
			continue // idempotent: nothing changes, not even the serial
		}
		from := r.route.region
		if r.route.region != t.Region || r.weighted() {
			r.route.since = now
		}
		r.route.region, r.route.epoch, r.route.pinned = t.Region, t.Epoch, true
		s.changed(r)
		s.log.Info("dns: switched", "name", r.Name.Name, "from", from, "to", t.Region, "epoch", t.Epoch, "serial", s.serial, "run", t.Run, "step", t.Step)
	}
	return nil
}

func regionsOf(r *record) []string {
	var out []string
	for reg := range r.Endpoints {
		out = append(out, reg)
	}
	slices.Sort(out)
	return out
}
