package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/lab/wan"
)

// Kinds of fault the lab injects (POST /lab/fault).
const (
	FaultRegionDown = "region-down" // the region's links down, its PostgreSQL and shop stopped
	FaultRegionHang = "region-hang" // the region's links pass nothing
	FaultPartition  = "partition"   // west and east cannot reach each other; ingress untouched
	FaultLatency    = "latency"     // delay on the links between west and east
	FaultHeal       = "heal"        // every link healed, what region-down stopped started again
	// FaultIsolate (monitored lab only): the region's links down and its
	// namespace cut from every other region's, but not from the host, so
	// its controller still reaches its own data plane (to fence it).
	FaultIsolate = "isolate"
)

// OpFault names fault injection in errors.
const OpFault lifeboat.Op = "lab.fault"

// FaultRequest is the body of POST /lab/fault.
type FaultRequest struct {
	Kind   string `json:"kind"`
	Region string `json:"region,omitempty"`
	// Latency is a Go duration, for kind latency (one way; a round trip
	// gains twice as much).
	Latency string `json:"latency,omitempty"`
}

// FaultResult says what a fault did.
type FaultResult struct {
	Done []string `json:"done"`
}

// linksOf returns the links that touch a region: its ingress and both
// directions of replication.
func linksOf(region string) []string {
	switch region {
	case West:
		return []string{linkIngressWest, linkPGEastToWest, linkPGWestToEast}
	case East:
		return []string{linkIngressEast, linkPGEastToWest, linkPGWestToEast}
	}
	return nil
}

var interRegion = []string{linkPGEastToWest, linkPGWestToEast}

func (d *daemon) handleFault(w http.ResponseWriter, r *http.Request) {
	var req FaultRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, lifeboat.Permanent(OpFault, "", fmt.Errorf("the body is not a fault request (%v): send {\"kind\": \"region-down\", \"region\": \"west\"}", err)))
		return
	}
	if !d.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, lifeboat.Transient(OpFault, "", errNotReady))
		return
	}
	res, err := d.fault(r.Context(), req)
	if err != nil {
		code := http.StatusInternalServerError
		if !lifeboat.IsRetryable(err) {
			code = http.StatusBadRequest
		}
		writeError(w, code, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// fault injects one fault. Faults are serialised: region-down and heal
// start and stop processes and must not interleave.
func (d *daemon) fault(ctx context.Context, req FaultRequest) (FaultResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var res FaultResult
	did := func(format string, a ...any) {
		s := fmt.Sprintf(format, a...)
		res.Done = append(res.Done, s)
		d.log.Info("fault", "kind", req.Kind, "region", req.Region, "did", s)
	}
	bad := func(format string, a ...any) (FaultResult, error) {
		return res, lifeboat.Permanent(OpFault, req.Region, fmt.Errorf(format, a...))
	}
	needRegion := func() error {
		if req.Region != West && req.Region != East && req.Region != Central {
			return lifeboat.Permanent(OpFault, req.Region, fmt.Errorf("%s needs a region: west, east or central (got %q)", req.Kind, req.Region))
		}
		return nil
	}
	each := func(names []string, what string, f func(*wan.Link) error) error {
		var errs []error
		for _, n := range names {
			if err := f(d.links[n]); err != nil {
				errs = append(errs, fmt.Errorf("link %s: %w", n, err))
				continue
			}
			did("%s %s", what, n)
		}
		return errors.Join(errs...)
	}

	switch req.Kind {
	case FaultRegionDown:
		if err := needRegion(); err != nil {
			return res, err
		}
		if d.net != nil {
			// Its controller, etcd member and observer go with it.
			if err := d.net.Isolate(req.Region); err != nil {
				return res, lifeboat.Transient(OpFault, req.Region, err)
			}
			did("isolated %s's namespace from everyone (its controller, etcd member and observer)", req.Region)
		}
		if err := each(linksOf(req.Region), "down", (*wan.Link).Down); err != nil {
			return res, lifeboat.Transient(OpFault, req.Region, err)
		}
		if req.Region == Central {
			did("central is the witness: it runs no database or shop in this lab")
			return res, nil
		}
		if _, ok := d.down[req.Region]; ok {
			did("%s was already down", req.Region)
			return res, nil
		}
		dr := downRegion{shops: map[string]lifeboat.ScaleSet{}}
		// The shop first, so no instance sees its database vanish and
		// reports a confusing error before it goes too.
		t := d.webTarget(req.Region)
		ss, err := d.proc.Status(ctx, t)
		if err != nil {
			return res, lifeboat.Transient(OpFault, t.Resource, err)
		}
		if ss.Exists && ss.Instances > 0 {
			t.Epoch = ss.Epoch
			if err := d.proc.Scale(ctx, t, 0); err != nil {
				return res, lifeboat.Transient(OpFault, t.Resource, fmt.Errorf("stopping the shop in %s: %w", req.Region, err))
			}
			dr.shops[t.Resource] = ss
			did("stopped %d shop instances of %s", ss.Instances, t.Resource)
		}
		inst := d.pg.Instance(Resource(Orders, req.Region))
		if pid, running := inst.PID(); running {
			if err := inst.Kill(ctx); err != nil {
				return res, lifeboat.Transient(OpFault, inst.Name, fmt.Errorf("killing PostgreSQL in %s: %w", inst.DataDir, err))
			}
			// Until init reaps it, the dead postmaster is a zombie that a
			// new postmaster takes for a live one (kill(pid, 0) succeeds).
			if !reaped(ctx, pid, 10*time.Second) {
				return res, lifeboat.Transient(OpFault, inst.Name, fmt.Errorf("the killed postmaster (PID %d) of %s has not been reaped after 10s; heal may fail to start it", pid, inst.DataDir))
			}
			dr.postgres = true
			did("killed PostgreSQL %s", inst.Name)
		}
		// A dead region leaves no process behind: not even the backends
		// of the killed postmaster, which would keep heal from starting it.
		if pids := killPostgresIn(ctx, inst.DataDir); len(pids) > 0 {
			did("killed %d PostgreSQL backends left in %s", len(pids), inst.DataDir)
		}
		// The tenants' pools in the region go down with it.
		for _, pi := range d.tenantPoolsIn(req.Region) {
			pid, running := pi.PID()
			if !running {
				continue
			}
			if err := pi.Kill(ctx); err != nil {
				return res, lifeboat.Transient(OpFault, pi.Name, fmt.Errorf("killing the tenant pool in %s: %w", pi.DataDir, err))
			}
			if !reaped(ctx, pid, 10*time.Second) {
				return res, lifeboat.Transient(OpFault, pi.Name, fmt.Errorf("the killed postmaster (PID %d) of %s has not been reaped after 10s; heal may fail to start it", pid, pi.DataDir))
			}
			killPostgresIn(ctx, pi.DataDir)
			dr.pools = append(dr.pools, pi)
			did("killed the tenant pool %s", pi.Name)
		}
		d.down[req.Region] = dr
	case FaultRegionHang:
		if err := needRegion(); err != nil {
			return res, err
		}
		if d.net != nil {
			// What the controllers probe (the region's gateways) must hang
			// too, or they see a healthy region behind a hung ingress.
			if err := d.net.Isolate(req.Region); err != nil {
				return res, lifeboat.Transient(OpFault, req.Region, err)
			}
			did("cut %s's namespace off (its veth down: packets vanish, as in a hang)", req.Region)
		}
		if err := each(linksOf(req.Region), "hang", (*wan.Link).Hang); err != nil {
			return res, lifeboat.Transient(OpFault, req.Region, err)
		}
	case FaultPartition:
		if err := each(interRegion, "down", (*wan.Link).Down); err != nil {
			return res, lifeboat.Transient(OpFault, "", err)
		}
		if d.net != nil {
			if err := d.net.Cut(West, East); err != nil {
				return res, lifeboat.Transient(OpFault, "", err)
			}
			did("cut west's and east's namespaces from each other (central still reaches both)")
		}
	case FaultIsolate:
		if err := needRegion(); err != nil {
			return res, err
		}
		if d.net == nil {
			return bad("isolate needs the regions' namespaces: start the lab with 'lifeboat lab up --monitor MODE' (use region-down or partition here)")
		}
		if err := each(linksOf(req.Region), "down", (*wan.Link).Down); err != nil {
			return res, lifeboat.Transient(OpFault, req.Region, err)
		}
		for _, other := range []string{West, East, Central} {
			if other == req.Region {
				continue
			}
			if err := d.net.Cut(req.Region, other); err != nil {
				return res, lifeboat.Transient(OpFault, req.Region, err)
			}
			did("cut %s's namespace from %s's", req.Region, other)
		}
	case FaultLatency:
		lat, err := time.ParseDuration(req.Latency)
		if err != nil || lat < time.Millisecond {
			return bad("latency needs a one-way delay of at least 1ms, such as --latency 50ms (got %q)", req.Latency)
		}
		if err := each(interRegion, "latency "+lat.String()+" on", func(l *wan.Link) error { return l.Latency(lat, 0) }); err != nil {
			return res, lifeboat.Transient(OpFault, "", err)
		}
	case FaultHeal:
		if d.net != nil {
			if err := d.net.HealAll(); err != nil {
				return res, lifeboat.Transient(OpFault, "", err)
			}
			did("healed every cut between the regions' namespaces")
		}
		var names []string
		for n := range d.links {
			names = append(names, n)
		}
		if err := each(names, "healed", (*wan.Link).Heal); err != nil {
			return res, lifeboat.Transient(OpFault, "", err)
		}
		var errs []error
		for region, dr := range d.down {
			if dr.postgres {
				// As it was: a returning old primary is not rejoined here;
				// that is the failback's job (fence, quarantine, rewind).
				inst := d.pg.Instance(Resource(Orders, region))
				if err := inst.Start(ctx); err != nil {
					errs = append(errs, fmt.Errorf("starting PostgreSQL in %s again: %w", region, err))
					continue
				}
				if pid, ok := inst.PID(); ok {
					d.recordPID("postgres "+inst.Name, pid)
				}
				did("started PostgreSQL %s again", inst.Name)
				dr.postgres = false
			}
			for res, ss := range dr.shops {
				t := d.webTarget(region)
				t.Epoch = ss.Epoch
				if err := d.proc.Scale(ctx, t, ss.Instances); err != nil {
					if errors.Is(err, lifeboat.ErrStaleEpoch) {
						// A failover or failback owns the scale set now.
						did("left %s to the control plane (%v)", res, err)
						delete(dr.shops, res)
						continue
					}
					errs = append(errs, fmt.Errorf("starting the shop in %s again: %w", region, err))
					continue
				}
				did("started %d shop instances of %s again", ss.Instances, res)
				delete(dr.shops, res)
			}
			var still []*postgres.Instance
			for _, pi := range dr.pools {
				if err := pi.Start(ctx); err != nil {
					errs = append(errs, fmt.Errorf("starting the tenant pool %s again: %w", pi.Name, err))
					still = append(still, pi)
					continue
				}
				if pid, ok := pi.PID(); ok {
					d.recordPID("postgres "+pi.Name, pid)
				}
				did("started the tenant pool %s again", pi.Name)
			}
			dr.pools = still
			if dr.postgres || len(dr.shops) > 0 || len(dr.pools) > 0 {
				d.down[region] = dr
			} else {
				delete(d.down, region)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return res, lifeboat.Transient(OpFault, "", err)
		}
	default:
		return bad("unknown fault %q: use one of %s", req.Kind, strings.Join([]string{FaultRegionDown, FaultRegionHang, FaultPartition, FaultIsolate, FaultLatency, FaultHeal}, ", "))
	}
	return res, nil
}

func (d *daemon) webTarget(region string) lifeboat.Target {
	return lifeboat.Target{Service: Service, Unit: Unit, Component: Web, Region: region, Resource: Resource(Web, region)}
}

// tenantPoolsIn are the tenant pools' PostgreSQL instances the lab runs in
// region (none without --tenants).
func (d *daemon) tenantPoolsIn(region string) []*postgres.Instance {
	if d.in.Tenants == 0 {
		return nil
	}
	var out []*postgres.Instance
	for _, p := range poolHomes {
		if i := d.pg.Instance(Resource(p.component, region)); i != nil {
			out = append(out, i)
		}
	}
	if region == West && d.trial != nil {
		out = append(out, d.trial)
	}
	return out
}
