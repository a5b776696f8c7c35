package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/api"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/dashboard"
	"github.com/lifeboat-dr/lifeboat/driver"
	"github.com/lifeboat-dr/lifeboat/driver/agent"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/driver/process"
	"github.com/lifeboat-dr/lifeboat/lab/netns"
	"github.com/lifeboat-dr/lifeboat/lab/wan"
	"github.com/lifeboat-dr/lifeboat/metrics"
	"github.com/lifeboat-dr/lifeboat/store"
	"github.com/lifeboat-dr/lifeboat/tenant/serve"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Names of the lab's links.
const (
	linkIngressWest = "ingress-west"
	linkIngressEast = "ingress-east"
	// pg-east-to-west is east's view of west's PostgreSQL (east's standby
	// streams through it); pg-west-to-east the reverse, for after a failover.
	linkPGEastToWest = "pg-east-to-west"
	linkPGWestToEast = "pg-west-to-east"
)

// daemon is what Serve runs: every process and listener of the lab.
type daemon struct {
	in  *Info
	log *slog.Logger

	links map[string]*wan.Link
	pg    *postgres.Driver
	proc  *process.Driver
	// traffic is the front door (drivers.frontdoor of the lab's spec).
	traffic *driver.Hosted
	store   lifeboat.Store
	spec    *lifeboat.Spec
	pids    *os.File

	agent atomic.Pointer[http.Handler]
	phase atomic.Pointer[string]
	ready atomic.Bool

	mu   sync.Mutex // faults
	down map[string]downRegion

	// The monitored lab (in.Monitor set): the regions' namespaces, their
	// controllers, an etcd client of their members for the views, and
	// the last state read.
	mux       http.Handler
	net       *netns.Net
	ctrlMu    sync.Mutex
	ctrls     map[string]*regionController
	etcd      *clientv3.Client
	lastState atomic.Pointer[lifeboat.State]
	stopping  atomic.Bool

	// The lab with tenants (in.Tenants > 0): the trial pool's west copy
	// and the tenants' gate and recovery.
	trial   *postgres.Instance
	tenants atomic.Pointer[serve.Hosted]
}

// downRegion is what region-down stopped in a region, for heal to restart.
type downRegion struct {
	postgres bool
	shops    map[string]lifeboat.ScaleSet // resource → what it was
	pools    []*postgres.Instance         // tenant pools killed with the region
}

// Serve runs the lab in dir (laid out by Up) until ctx ends, then stops
// everything it started and returns nil. It is what 'lifeboat lab serve'
// runs, detached, with its output in DIR/lab.log.
func Serve(ctx context.Context, dir string) (err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return err
	}
	in, err := LoadInfo(dir)
	if err != nil {
		return err
	}
	if pid, ok := runningPID(dir); ok && pid != os.Getpid() {
		return fmt.Errorf("a lab daemon already runs for %s (PID %d): use it, or stop it with 'lifeboat lab down --dir %s'", dir, pid, dir)
	}
	if err := os.WriteFile(pidPath(dir), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing the daemon's PID file: %w", err)
	}
	defer os.Remove(pidPath(dir))

	d := &daemon{in: in, log: slog.New(slog.NewTextHandler(os.Stderr, nil)), links: map[string]*wan.Link{}, down: map[string]downRegion{}}
	d.setPhase("starting")
	d.pids, err = os.OpenFile(pidsPath(dir), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening %s: %w", pidsPath(dir), err)
	}
	defer d.pids.Close()
	d.recordPID("daemon", os.Getpid())

	var stops []func()
	defer func() {
		// Stop in reverse order of start: traffic, compute, databases, links.
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		d.log.Info("lab stopped", "dir", dir)
	}()

	srv, err := d.listen()
	if err != nil {
		return err
	}
	stops = append(stops, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})

	if err := d.start(ctx, &stops); err != nil {
		d.setPhase("failed: " + err.Error())
		d.log.Error("the lab could not start", "err", err)
		return err
	}
	d.ready.Store(true)
	d.setPhase("ready")
	d.log.Info("lab ready", "url", in.URL, "front", in.Front)
	<-ctx.Done()
	d.setPhase("stopping")
	d.log.Info("stopping the lab")
	return nil
}

func (d *daemon) setPhase(s string) { d.phase.Store(&s) }

func (d *daemon) recordPID(kind string, pid int) {
	fmt.Fprintf(d.pids, "%s %d\n", kind, pid)
}

// listen serves the agent (once the drivers exist) and the lab's endpoints.
func (d *daemon) listen() (*http.Server, error) {
	ln, err := net.Listen("tcp", addr(d.in.Region(Central).PortBase+offPostgres))
	if err != nil {
		return nil, fmt.Errorf("the lab daemon cannot listen on %s (%w): another program holds the port; 'lifeboat lab down --dir %s' stops an old lab", d.in.URL, err, d.in.Dir)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /lab/status", d.handleStatus)
	mux.HandleFunc("POST /lab/fault", d.handleFault)
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		h := d.agent.Load()
		if h == nil {
			http.Error(w, "the lab is starting ("+*d.phase.Load()+"); try again shortly", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	})
	d.mux = mux
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

func (d *daemon) start(ctx context.Context, stops *[]func()) error {
	in := d.in
	west, east := in.Region(West), in.Region(East)

	// The namespaces first: the spec names their addresses.
	if in.Monitor != "" {
		if err := d.upNet(ctx, stops); err != nil {
			return err
		}
	}
	spec, diags, err := config.Load(in.Spec)
	if err != nil {
		return fmt.Errorf("reading the lab's spec: %w", err)
	}
	if diags.HasErrors() {
		return fmt.Errorf("the lab's spec %s is not valid: %v; run 'lifeboat validate -f %s'", in.Spec, diags, in.Spec)
	}
	d.spec = spec

	// Links first: the standby's base backup already crosses one.
	d.setPhase("opening WAN links")
	for _, l := range []wan.Config{
		{Name: linkPGEastToWest, Listen: east.PeerPostgres, Upstream: west.Postgres},
		{Name: linkPGWestToEast, Listen: west.PeerPostgres, Upstream: east.Postgres},
		{Name: linkIngressWest, Listen: west.Ingress, Upstream: addr(west.ShopPortBase)},
		{Name: linkIngressEast, Listen: east.Ingress, Upstream: addr(east.ShopPortBase)},
	} {
		link, err := wan.Open(l)
		if err != nil {
			return fmt.Errorf("opening WAN link %s: %w", l.Name, err)
		}
		d.links[l.Name] = link
		*stops = append(*stops, func() { _ = link.Close() })
	}

	// PostgreSQL: Lifeboat runs the hosts (DataDir set).
	d.setPhase("starting PostgreSQL")
	pcfg := postgres.DefaultConfig()
	pcfg.User, pcfg.Password = DBUser, DBPassword
	pcfg.ReplicationUser, pcfg.ReplicationPassword = ReplUser, ReplPassword
	pcfg.StateDir = filepath.Join(in.Dir, "pgstate")
	pcfg.Log = d.log
	pcfg.Nodes = map[string]postgres.Node{}
	// Each node is reached from the other region through that region's
	// WAN link, so a partition cuts replication whichever way it flows.
	peerOf := map[string]*RegionInfo{west.Name: east, east.Name: west}
	for _, r := range []*RegionInfo{west, east} {
		other := peerOf[r.Name]
		pcfg.Nodes[Resource(Orders, r.Name)] = postgres.Node{Region: r.Name, Host: loopback, Port: port(r.Postgres), DataDir: filepath.Join(r.Dir, "pg"),
			ReachedFrom: map[string]string{other.Name: other.PeerPostgres}}
	}
	if in.Replication == "sync" {
		r := postgres.Replication{Mode: postgres.ModeSync}
		if in.DegradeAfter != "" {
			if r.DegradeAfter, err = time.ParseDuration(in.DegradeAfter); err != nil {
				return fmt.Errorf("the lab's degrade-after %q: %w", in.DegradeAfter, err)
			}
		}
		pcfg.Replication = map[string]postgres.Replication{Service + "-" + Unit + "-" + Orders: r}
	}
	if in.Tenants > 0 {
		d.addPoolNodes(pcfg.Nodes)
	}
	if d.pg, err = postgres.New(pcfg); err != nil {
		return err
	}
	wi, ei := d.pg.Instance(Resource(Orders, West)), d.pg.Instance(Resource(Orders, East))
	*stops = append(*stops, func() { d.stopPostgres(wi); d.stopPostgres(ei) })
	if err := d.startPostgres(ctx, wi, ""); err != nil {
		return err
	}
	// East's standby streams from west through east's view of it.
	via := postgres.Conninfo(loopback, port(east.PeerPostgres), ReplUser, ReplPassword, "", ei.Name)
	if err := d.startPostgres(ctx, ei, via); err != nil {
		return err
	}
	if in.Replication == "sync" {
		// Whichever node is the primary now waits for its standby.
		for _, r := range []string{Resource(Orders, West), Resource(Orders, East)} {
			if st, err := d.pg.Status(ctx, lifeboat.Target{Resource: r}); err == nil && st.Role == lifeboat.DBPrimary {
				if err := d.pg.SetReplication(ctx, r); err != nil {
					return fmt.Errorf("synchronous replication on %s: %w", r, err)
				}
			}
		}
		if pcfg.Replication[Service+"-"+Unit+"-"+Orders].DegradeAfter > 0 {
			go func() { _ = d.pg.WatchSync(ctx, Service+"-"+Unit+"-"+Orders, 250*time.Millisecond) }()
		}
	}
	if in.Tenants > 0 {
		if err := d.startPools(ctx, stops); err != nil {
			return err
		}
	}

	// The shop's scale sets: the lab binary itself, per region.
	d.setPhase("starting the shop")
	ccfg := process.DefaultConfig()
	ccfg.BaseDir = in.Dir
	ccfg.Logger = d.log
	ccfg.Regions = map[string]process.Region{}
	for _, r := range []*RegionInfo{west, east} {
		ccfg.Regions[r.Name] = process.Region{Dir: r.Dir, Host: loopback, PortBase: r.ShopPortBase, Ports: blockSize - shopPortOffset,
			Env: map[string]string{"DATABASE_URL": postgres.Conninfo(loopback, port(r.Postgres), DBUser, DBPassword, ShopDatabase, "shop-"+r.Name)}}
	}
	ccfg.Events = func(e process.Event) {
		if e.Kind == process.EventStart {
			d.recordPID("instance "+e.Resource, e.PID)
		}
	}
	if d.proc, err = process.New(ccfg); err != nil {
		return err
	}
	*stops = append(*stops, func() { _ = d.proc.Close() })
	// A lab started again resumes where the control plane left the
	// service (a failover may have moved it), not at its initial state.
	var st *lifeboat.State
	if d.net != nil {
		if err := d.openGateways(stops); err != nil {
			return err
		}
		if err := d.forwardAPIs(stops); err != nil {
			return err
		}
		if st, err = d.startControlPlane(ctx, stops); err != nil {
			return err
		}
	} else {
		if st, err = d.controlState(ctx, stops); err != nil {
			return err
		}
		if err := d.proc.Seed(ctx, spec, st); err != nil {
			return fmt.Errorf("starting the shop: %w; see the instances' logs under %s/*/scalesets", err, in.Dir)
		}
	}

	// The front door, routed where the control plane left the traffic;
	// its lease is renewed while the state store answers.
	d.setPhase("opening the front door")
	if d.traffic, err = driver.Host(ctx, spec, st, d.log); err != nil {
		return err
	}
	*stops = append(*stops, func() { _ = d.traffic.Close() })
	leaseCtx, stopLease := context.WithCancel(context.WithoutCancel(ctx))
	*stops = append(*stops, stopLease)
	go d.traffic.Keep(leaseCtx, spec, d.store, d.log)

	h := agent.Handler(lifeboat.Drivers{Compute: d.proc, Database: d.pg, Traffic: d.traffic.Driver()})
	d.agent.Store(&h)
	if d.net == nil {
		if err := d.serveAPI(ctx, stops); err != nil {
			return err
		}
	}

	// Ready when the standby streams: the lab can fail over from here.
	d.setPhase("waiting for the standby to stream")
	if err := d.waitStreaming(ctx, time.Minute); err != nil {
		return err
	}
	if in.Tenants > 0 {
		return d.startTenants(ctx, stops, st)
	}
	return nil
}

// controlState opens the control plane's store in the lab's .lifeboat and
// keeps it open (the daemon owns the embedded etcd member; lifeboat
// commands join it), and returns the service's state there: the initial
// state for a new lab, or where the last failover left it.
func (d *daemon) controlState(ctx context.Context, stops *[]func()) (*lifeboat.State, error) {
	dir := filepath.Join(d.in.Dir, ".lifeboat")
	d.setPhase("opening the control plane's state")
	s, err := store.Open(ctx, store.Options{Dir: dir, Service: d.spec.Service})
	if err != nil {
		return nil, fmt.Errorf("opening the service's state in %s: %w (the lab resumes where the last failover left it)", dir, err)
	}
	*stops = append(*stops, func() { _ = s.Close() })
	d.store = s
	st, err := s.Init(ctx, lifeboat.InitialState(d.spec, time.Now().UTC()))
	if err != nil {
		return nil, fmt.Errorf("reading the service's state from %s: %w", dir, err)
	}
	d.log.Info("control plane state", "active", st.Active, "epoch", st.Epoch)
	return st, nil
}

// startPostgres starts a node: from its data dir when it has one (a lab
// started again), else a new primary (follow == "") or a base backup of it.
func (d *daemon) startPostgres(ctx context.Context, i *postgres.Instance, follow string) error {
	if _, err := os.Stat(filepath.Join(i.DataDir, "PG_VERSION")); err == nil {
		if err := i.Start(ctx); err != nil {
			return err
		}
	} else {
		if err := postgres.MkdirForPostgres(i.DataDir); err != nil {
			return fmt.Errorf("creating %s: %w", i.DataDir, err)
		}
		if follow == "" {
			err = postgres.StartPrimary(ctx, i, postgres.InitOptions{Superuser: DBUser, Password: DBPassword, ReplicationUser: ReplUser, ReplicationPassword: ReplPassword})
		} else {
			err = postgres.StartStandby(ctx, i, follow)
		}
		if err != nil {
			return err
		}
	}
	if pid, ok := i.PID(); ok {
		d.recordPID("postgres "+i.Name, pid)
	}
	return nil
}

// stopPostgres stops a node cleanly, or kills it if it will not stop.
func (d *daemon) stopPostgres(i *postgres.Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := i.Stop(ctx, "fast"); err != nil {
		d.log.Warn("PostgreSQL did not stop cleanly; killing it", "dir", i.DataDir, "err", err)
		_ = i.Kill(ctx)
	}
}

// waitStreaming waits until the database's replica (east's standby at
// first; after a failback or a restart, whichever node is the replica)
// streams from its primary. Two primaries (a failover not yet followed by a
// rejoin) have no replica to wait for.
func (d *daemon) waitStreaming(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	last := "no answer yet"
	for {
		replicas := 0
		for _, region := range []string{West, East} {
			t := lifeboat.Target{Service: Service, Unit: Unit, Component: Orders, Region: region, Resource: Resource(Orders, region)}
			ns, err := d.pg.Inspect(ctx, t)
			switch {
			case err != nil:
				replicas++ // not known yet: wait
				last = err.Error()
			case ns.Role == lifeboat.DBReplica && ns.ReplicationState == "streaming":
			case ns.Role == lifeboat.DBReplica:
				replicas++
				last = fmt.Sprintf("%s's replica is %q, not streaming yet", region, ns.ReplicationState)
			}
		}
		if replicas == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the database's replica does not stream after %s (%s): see %s/*/pg.log and the WAN links %s, %s", within, last, d.in.Dir, linkPGEastToWest, linkPGWestToEast)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Status is what GET /lab/status answers.
type Status struct {
	Ready bool   `json:"ready"`
	Phase string `json:"phase"`
	URL   string `json:"url"`
	Front struct {
		Addr   string `json:"addr"`
		Region string `json:"region"`
		Epoch  uint64 `json:"epoch"`
	} `json:"front"`
	Links     []LinkStatus     `json:"links"`
	Databases []DatabaseStatus `json:"databases"`
	ScaleSets []ScaleSetStatus `json:"scale_sets"`
	// Replication of the orders database, and the periods a synchronous
	// primary stopped waiting for its standby (RPO exposure).
	Replication string              `json:"replication"`
	Exposures   []postgres.Exposure `json:"exposures,omitempty"`
	// Down lists regions a region-down fault stopped.
	Down []string `json:"down,omitempty"`
	// The monitored lab: the monitor's mode, the service's state as the
	// controllers' store holds it, the controllers, and the faults in
	// force between the regions' namespaces (e.g. "cut east-west").
	Monitor     string             `json:"monitor,omitempty"`
	Active      string             `json:"active,omitempty"`
	Epoch       uint64             `json:"epoch,omitempty"`
	Run         string             `json:"run,omitempty"`
	Controllers []ControllerStatus `json:"controllers,omitempty"`
	NetFaults   []string           `json:"net_faults,omitempty"`
	// Tenants is the tenants' gate and recovery (the lab with --tenants).
	Tenants *serve.Status `json:"tenants,omitempty"`
	// PIDs of every process the lab runs now.
	PIDs []int `json:"pids"`
}

// LinkStatus is one WAN link.
type LinkStatus struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	Fault    string `json:"fault,omitempty"`
}

// DatabaseStatus is one PostgreSQL node.
type DatabaseStatus struct {
	Resource         string `json:"resource"`
	Region           string `json:"region"`
	Addr             string `json:"addr"`
	PID              int    `json:"pid,omitempty"`
	Running          bool   `json:"running"`
	Role             string `json:"role,omitempty"`
	Fenced           bool   `json:"fenced,omitempty"`
	Timeline         uint32 `json:"timeline,omitempty"`
	ReplicationState string `json:"replication_state,omitempty"`
	LagBytes         int64  `json:"lag_bytes,omitempty"`
	Error            string `json:"error,omitempty"`
}

// ScaleSetStatus is one region's shop scale set.
type ScaleSetStatus struct {
	Resource  string             `json:"resource"`
	Region    string             `json:"region"`
	Instances []process.Instance `json:"instances"`
}

func (d *daemon) status(ctx context.Context) Status {
	var s Status
	s.Ready, s.Phase, s.URL = d.ready.Load(), *d.phase.Load(), d.in.URL
	s.Front.Addr = d.in.Front
	s.Replication = d.in.Replication
	if s.Replication == "" {
		s.Replication = "async"
	} else if d.in.DegradeAfter != "" {
		s.Replication += ", degrade after " + d.in.DegradeAfter
	}
	if d.pg != nil {
		s.Exposures = d.pg.Exposures(Service + "-" + Unit + "-" + Orders)
	}
	if d.traffic != nil {
		if r, err := d.traffic.Traffic.Status(ctx, lifeboat.Target{Resource: lifeboat.TrafficName(Service, Unit, WWW)}, nil); err == nil {
			s.Front.Region, s.Front.Epoch = r.Region, r.Epoch
		}
	}
	names := make([]string, 0, len(d.links))
	for n := range d.links {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		l := d.links[n]
		s.Links = append(s.Links, LinkStatus{Name: n, Listen: l.Addr(), Upstream: l.Upstream(), Fault: string(l.Fault())})
	}
	for _, region := range []string{West, East} {
		r := d.in.Region(region)
		if d.pg != nil {
			res := Resource(Orders, region)
			ds := DatabaseStatus{Resource: res, Region: region, Addr: r.Postgres}
			if pid, ok := d.pg.Instance(res).PID(); ok {
				ds.PID = pid
				s.PIDs = append(s.PIDs, pid)
			}
			ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
			ns, err := d.pg.Inspect(ictx, lifeboat.Target{Service: Service, Unit: Unit, Component: Orders, Region: region, Resource: res})
			cancel()
			if err != nil {
				ds.Error = err.Error()
			} else {
				ds.Running, ds.Role, ds.Fenced, ds.Timeline = ns.Running, string(ns.Role), ns.Fenced, ns.Timeline
				ds.ReplicationState, ds.LagBytes = ns.ReplicationState, ns.LagBytes
			}
			s.Databases = append(s.Databases, ds)
		}
		if d.proc != nil {
			res := Resource(Web, region)
			ins := d.proc.Instances(lifeboat.Target{Service: Service, Unit: Unit, Component: Web, Region: region, Resource: res})
			for _, i := range ins {
				if i.PID != 0 {
					s.PIDs = append(s.PIDs, i.PID)
				}
			}
			s.ScaleSets = append(s.ScaleSets, ScaleSetStatus{Resource: res, Region: region, Instances: ins})
		}
	}
	if h := d.tenants.Load(); h != nil {
		ts := h.Status()
		s.Tenants = &ts
	}
	if d.trial != nil {
		if pid, ok := d.trial.PID(); ok {
			s.PIDs = append(s.PIDs, pid)
		}
		for _, p := range poolHomes {
			for _, r := range []string{West, East} {
				if pid, ok := d.pg.Instance(Resource(p.component, r)).PID(); ok {
					s.PIDs = append(s.PIDs, pid)
				}
			}
		}
	}
	d.mu.Lock()
	for r := range d.down {
		s.Down = append(s.Down, r)
	}
	d.mu.Unlock()
	sort.Strings(s.Down)
	s.Monitor = d.in.Monitor
	if st := d.lastState.Load(); st != nil {
		s.Active, s.Epoch, s.Run = st.Active, st.Epoch, st.Run
	}
	if d.net != nil {
		s.NetFaults = d.net.Faults()
		s.Controllers = d.controllers(ctx)
		for _, c := range s.Controllers {
			if c.Alive {
				s.PIDs = append(s.PIDs, c.PID)
			}
		}
	}
	return s
}

func (d *daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.status(r.Context()))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// errorBody is how the lab's endpoints report a failure.
type errorBody struct {
	Error     string `json:"error"`
	Retryable bool   `json:"retryable"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, errorBody{Error: err.Error(), Retryable: lifeboat.IsRetryable(err)})
}

var errNotReady = errors.New("the lab is not ready yet; wait for 'lifeboat lab up' to finish")

// forwardAPIs opens, on the host's loopback, each region controller's API
// port, forwarding into the region's namespace where the controller
// listens on the namespace's own loopback (api.listen-in). The API refuses
// an address other than loopback without TLS; loopback on both sides
// keeps the tokens off the bridge without certificates to manage, and the
// host (the CLI, a browser) reaches every controller at the address the
// spec names.
func (d *daemon) forwardAPIs(stops *[]func()) error {
	g := &gateways{conns: map[net.Conn]struct{}{}}
	*stops = append(*stops, g.close)
	for _, r := range []string{West, East, Central} {
		at := addr(d.in.Region(r).PortBase + offAPI)
		l, err := net.Listen("tcp", at)
		if err != nil {
			return fmt.Errorf("opening %s's API forwarder on %s (%w): another program holds the port; 'lifeboat lab down --dir %s' stops an old lab", r, at, err, d.in.Dir)
		}
		g.add(l)
		go g.forward(l, func(ctx context.Context) (net.Conn, error) { return d.net.DialContext(ctx, r, "tcp", at) })
	}
	return nil
}

// forward serves l, connecting each client through dial (e.g. into a
// namespace) and copying both ways until either side closes.
func (g *gateways) forward(l net.Listener, dial func(context.Context) (net.Conn, error)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if !g.track(c) {
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer g.untrack(c)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			up, err := dial(ctx)
			cancel()
			if err != nil {
				return // nothing listens there (starting, or its region is down): the client sees it as it is
			}
			if !g.track(up) {
				return
			}
			defer g.untrack(up)
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// serveAPI serves, in the plain lab (no controllers), what 'lifeboat
// serve' serves with an api section: the HTTP API, the dashboard and
// /metrics at api.listen, on loopback.
func (d *daemon) serveAPI(ctx context.Context, stops *[]func()) error {
	if d.spec.API == nil {
		return nil
	}
	srv, err := api.New(api.Config{Spec: d.spec, Store: d.store, DrillsDir: filepath.Join(d.in.Dir, "drills"), Log: d.log})
	if err != nil {
		return fmt.Errorf("the lab's API: %w", err)
	}
	at := api.Addr(d.spec, "")
	ln, err := srv.Listen(at)
	if err != nil {
		srv.Close()
		return fmt.Errorf("the lab's API cannot listen on %s (%w): another program holds the port; 'lifeboat lab down --dir %s' stops an old lab", at, err, d.in.Dir)
	}
	dash, err := dashboard.New(dashboard.Config{Spec: d.spec, Store: d.store, API: srv, Log: d.log})
	if err != nil {
		ln.Close()
		srv.Close()
		return fmt.Errorf("the lab's dashboard: %w", err)
	}
	mc := metrics.DefaultConfig()
	mc.Runs, mc.Log = d.store, d.log
	mc.DNS, mc.FrontDoor = d.traffic.DNS, d.traffic.FrontDoor
	reg, err := metrics.NewRegistry(mc)
	if err != nil {
		ln.Close()
		srv.Close()
		return fmt.Errorf("the lab's metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", srv)
	mux.Handle(dashboard.Prefix, dash)
	mux.Handle("GET /{$}", http.RedirectHandler(dashboard.Prefix, http.StatusSeeOther))
	mux.Handle("GET /metrics", metrics.Handler(reg))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	hs.RegisterOnShutdown(dash.Close) // end the live streams, so Shutdown does not wait on them
	go func() { _ = hs.Serve(ln) }()
	*stops = append(*stops, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		_ = srv.Close()
	})
	d.log.Info("api", "url", "http://"+ln.Addr().String(), "dashboard", "http://"+ln.Addr().String()+dashboard.Prefix)
	return nil
}
