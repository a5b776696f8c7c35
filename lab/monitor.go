package lab

// The monitored lab (Options.Monitor): each region lives in its own network
// namespace (lab/netns) and runs its controller there, 'lifeboat serve
// --region R', with R's etcd member. The data plane (PostgreSQL, the shop,
// the WAN links, the front door) stays on the host's loopback as in the plain
// lab; what the controllers' observers probe are the regions' gateways,
// listeners inside west's and east's namespaces that forward to the region's
// ingress link and PostgreSQL. So a partition between two namespaces really
// cuts one observer from one region, and the etcd members from each other,
// while the host (the daemon, its agent) still reaches everyone.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/controller"
	"github.com/lifeboat-dr/lifeboat/lab/netns"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/store"
)

// Ports inside every region's namespace. Each namespace has its own
// address, so the same ports serve in each.
const (
	gatewayWebPort   = 8080 // → the region's ingress link
	gatewayPGPort    = 5432 // → the region's PostgreSQL
	memberPeerPort   = 2380
	memberClientPort = 2379
)

// Bounds of the monitored lab's waits: generous, they only end waits on
// something broken.
var (
	membersTimeout  = 90 * time.Second // the controllers' etcd members form a cluster
	controllerGrace = 10 * time.Second // SIGTERM to SIGKILL
)

// NetInfo is where the regions' namespaces are.
type NetInfo struct {
	// Prefix names the namespaces, bridge and veths (derived from the
	// lab's directory, so that down and a later up find a crashed lab's).
	Prefix string `json:"prefix"`
	Subnet string `json:"subnet"`
	// Host is the host's address on the bridge: what the namespaces reach
	// the daemon's agent at.
	Host string `json:"host"`
	// Addrs are the regions' addresses, each inside its namespace.
	Addrs map[string]string `json:"addrs"`
	// AgentURL is the agent as the controllers (and the lab's spec) see it.
	AgentURL string `json:"agent_url"`
}

// Gateway is host:port of region's address.
func (n *NetInfo) Gateway(region string, port int) string {
	return net.JoinHostPort(n.Addrs[region], strconv.Itoa(port))
}

// netPrefix is the namespaces' prefix of the lab in dir: fixed per
// directory, so that a crashed lab's leftovers are found by name.
func netPrefix(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return "lab" + hex.EncodeToString(h[:3])
}

func controllerLog(dir, region string) string { return filepath.Join(dir, region, "controller.log") }
func stateCachePath(dir string) string        { return filepath.Join(dir, "state.json") }

// ControllerStatus is one region's controller, as the daemon sees its
// process and as it last published itself in the quorum.
type ControllerStatus struct {
	Region string `json:"region"`
	PID    int    `json:"pid,omitempty"`
	Alive  bool   `json:"alive"`
	Log    string `json:"log"`
	// Published: its status is in the quorum's views (its lease lives).
	Published bool             `json:"published"`
	Leader    bool             `json:"leader,omitempty"`
	Quorum    bool             `json:"quorum,omitempty"`
	Fenced    bool             `json:"fenced,omitempty"`
	Decision  monitor.Decision `json:"decision"`
	DecidedAt time.Time        `json:"decided_at,omitempty"`
	// Views are what its observer published of each region.
	Views []monitor.View `json:"views,omitempty"`
}

// regionController is a controller process the daemon started.
type regionController struct {
	region string
	pid    int
	done   chan struct{} // closed once it has exited and been reaped
}

// upNet makes the regions' namespaces, serves the agent on the host's
// bridge address and writes the spec with the namespaces' addresses.
func (d *daemon) upNet(ctx context.Context, stops *[]func()) error {
	d.setPhase("creating the regions' network namespaces")
	if swept, err := netns.SweepStale(); err != nil {
		d.log.Warn("removing the namespaces of crashed labs failed", "err", err)
	} else if len(swept) > 0 {
		d.log.Info("removed the namespaces of crashed labs", "prefixes", swept)
	}
	prefix := netPrefix(d.in.Dir)
	if err := netns.Sweep(prefix); err != nil {
		return fmt.Errorf("removing what an earlier run of this lab left in the network (prefix %s): %w", prefix, err)
	}
	n, err := netns.Up(ctx, netns.Options{Prefix: prefix, Regions: []string{West, East, Central}})
	if err != nil {
		return fmt.Errorf("creating the regions' network namespaces: %w", err)
	}
	d.net = n
	*stops = append(*stops, func() {
		if err := n.Down(); err != nil {
			d.log.Error("removing the regions' network namespaces failed; 'lifeboat lab down' retries", "err", err)
		}
	})

	// The agent, for the controllers inside the namespaces.
	agentAddr := netip.AddrPortFrom(n.HostAddr(), uint16(port(strings.TrimPrefix(d.in.URL, "http://"))))
	ln, err := net.Listen("tcp", agentAddr.String())
	if err != nil {
		return fmt.Errorf("the lab daemon cannot serve its agent on the bridge address %s (%w)", agentAddr, err)
	}
	srv := &http.Server{Handler: d.mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	*stops = append(*stops, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})

	ni := &NetInfo{Prefix: prefix, Subnet: n.Subnet().String(), Host: n.HostAddr().String(), Addrs: map[string]string{}, AgentURL: "http://" + agentAddr.String()}
	for _, r := range n.Regions() {
		ni.Addrs[r] = n.Addr(r).String()
	}
	d.in.Net = ni
	if err := saveInfo(d.in); err != nil {
		return err
	}
	return writeSpec(d.in)
}

// openGateways opens, inside west's and east's namespaces, the listeners
// the observers probe: each forwards to the region's ingress link or
// PostgreSQL on the host's loopback.
func (d *daemon) openGateways(stops *[]func()) error {
	g := &gateways{conns: map[net.Conn]struct{}{}}
	*stops = append(*stops, g.close)
	for _, region := range []string{West, East} {
		r := d.in.Region(region)
		for _, fw := range []struct {
			port     int
			upstream string
		}{{gatewayWebPort, r.Ingress}, {gatewayPGPort, r.Postgres}} {
			at := d.in.Net.Gateway(region, fw.port)
			l, err := d.net.Listen(region, "tcp", at)
			if err != nil {
				return fmt.Errorf("opening %s's gateway %s (to %s): %w", region, at, fw.upstream, err)
			}
			g.add(l)
			// Dialled from the daemon's own goroutine: the host's
			// namespace, where the data plane listens. A failed dial is the
			// region failing, as the probe should see it.
			go g.forward(l, func(ctx context.Context) (net.Conn, error) {
				return new(net.Dialer).DialContext(ctx, "tcp", fw.upstream)
			})
		}
	}
	return nil
}

// gateways are the namespaces' TCP forwarders.
type gateways struct {
	mu     sync.Mutex
	ls     []net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func (g *gateways) add(l net.Listener) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ls = append(g.ls, l)
}

func (g *gateways) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		c.Close()
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *gateways) untrack(c net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.conns, c)
	c.Close()
}

func (g *gateways) close() {
	g.mu.Lock()
	g.closed = true
	for _, l := range g.ls {
		l.Close()
	}
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// startControlPlane starts the regions' controllers (their etcd members),
// opens the store as their client and returns the service's state, with
// the shop seeded to it. The shop is seeded BEFORE the controllers start
// when the state is known (a new lab, or the state this daemon cached when
// it last stopped), so that no observer ever sees a region failing because
// the lab is still starting, which in automatic mode would fail it over.
func (d *daemon) startControlPlane(ctx context.Context, stops *[]func()) (*lifeboat.State, error) {
	var seeded *lifeboat.State
	if _, err := os.Stat(filepath.Join(d.in.Dir, ".lifeboat", West)); errors.Is(err, os.ErrNotExist) {
		seeded = lifeboat.InitialState(d.spec, time.Now().UTC())
	} else if st, err := loadStateCache(d.in.Dir); err == nil {
		seeded = st
	} else {
		d.log.Warn("the service's state is not known until the controllers are up; their observers may see the shop starting", "err", err)
	}
	if seeded != nil {
		d.setPhase("starting the shop")
		if err := d.proc.Seed(ctx, d.spec, seeded); err != nil {
			return nil, fmt.Errorf("starting the shop: %w; see the instances' logs under %s/*/scalesets", err, d.in.Dir)
		}
		d.lastState.Store(seeded)
	}

	d.setPhase("starting the regions' controllers")
	d.ctrls = map[string]*regionController{}
	*stops = append(*stops, d.stopControllers)
	for _, region := range []string{West, East, Central} {
		if err := d.startController(region); err != nil {
			return nil, err
		}
	}

	d.setPhase("waiting for the controllers' etcd members to form a cluster")
	s, err := d.openQuorumStore(ctx)
	if err != nil {
		return nil, err
	}
	*stops = append(*stops, func() { _ = s.Close() })
	d.store = s
	cli, err := clientv3.New(clientv3.Config{Endpoints: memberURLs(d.spec), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("an etcd client of the controllers' members: %w", err)
	}
	*stops = append(*stops, func() { _ = cli.Close() })
	d.etcd = cli

	// A young cluster may still hand raft leadership to the witness (its
	// controller asks for it): retry what that interrupts.
	var st *lifeboat.State
	for attempt := 1; ; attempt++ {
		st, err = s.Init(ctx, lifeboat.InitialState(d.spec, time.Now().UTC()))
		if err == nil || !lifeboat.IsRetryable(err) || attempt == 20 || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the service's state from the controllers' members: %w", err)
	}
	if seeded == nil || seeded.Epoch != st.Epoch || seeded.Active != st.Active {
		if seeded != nil {
			d.log.Warn("the service's state moved while the lab was down (the daemon did not stop cleanly?); seeding the shop again", "cached_active", seeded.Active, "cached_epoch", seeded.Epoch, "active", st.Active, "epoch", st.Epoch)
		}
		d.setPhase("starting the shop")
		if err := d.proc.Seed(ctx, d.spec, st); err != nil {
			return nil, fmt.Errorf("starting the shop: %w; see the instances' logs under %s/*/scalesets", err, d.in.Dir)
		}
	}
	d.noteState(st)
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	*stops = append(*stops, stopWatch)
	go d.watchState(wctx)
	d.log.Info("control plane state", "active", st.Active, "epoch", st.Epoch, "controllers", len(d.ctrls))
	return st, nil
}

func memberURLs(s *lifeboat.Spec) []string {
	var out []string
	for _, r := range lifeboat.SortedKeys(s.Store.Members) {
		out = append(out, "http://"+s.Store.Members[r].Client)
	}
	return out
}

// openQuorumStore opens the store as a client of the controllers' members,
// once a majority of them is up.
func (d *daemon) openQuorumStore(ctx context.Context) (lifeboat.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, membersTimeout)
	defer cancel()
	for {
		s, err := store.Open(ctx, store.Options{Service: d.spec.Service, Members: d.spec.Store.Members})
		if err == nil {
			return s, nil
		}
		for r, c := range d.ctrls {
			select {
			case <-c.done:
				return nil, fmt.Errorf("%s's controller (PID %d) exited while its etcd member was starting; its last words, from %s:\n%s", r, c.pid, controllerLog(d.in.Dir, r), tail(controllerLog(d.in.Dir, r), 15))
			default:
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the controllers' etcd members do not form a cluster after %s (%v): see %s/*/controller.log", membersTimeout, err, d.in.Dir)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// startController starts region's 'lifeboat serve' inside its namespace.
func (d *daemon) startController(region string) error {
	logPath := controllerLog(d.in.Dir, region)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close() // the child has its own copy
	fmt.Fprintf(lf, "---- lifeboat serve --region %s, started by the lab daemon %s\n", region, time.Now().UTC().Format(time.RFC3339))
	cmd := d.net.Command(region, d.in.Binary, "-f", d.in.Spec, "serve", "--region", region)
	cmd.Dir = filepath.Dir(logPath)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group: a signal meant for the daemon's group does
	// not stop the controllers behind the daemon's back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s's controller (%s serve --region %s) in namespace %s: %w", region, d.in.Binary, region, d.net.Name(region), err)
	}
	c := &regionController{region: region, pid: cmd.Process.Pid, done: make(chan struct{})}
	d.recordPID("controller "+region, c.pid)
	go func() {
		err := cmd.Wait()
		if !d.stopping.Load() {
			d.log.Error("a region's controller exited", "region", region, "pid", c.pid, "err", err, "log", logPath)
		}
		close(c.done)
	}()
	d.ctrlMu.Lock()
	d.ctrls[region] = c
	d.ctrlMu.Unlock()
	d.log.Info("controller started", "region", region, "pid", c.pid, "namespace", d.net.Name(region), "log", logPath)
	return nil
}

// stopControllers stops every controller, the active region's first: the
// last controllers standing lose their quorum, and an active region's
// controller that lost its quorum fences its databases, which a lab that
// is only stopping must not do.
func (d *daemon) stopControllers() {
	d.stopping.Store(true)
	if st := d.lastState.Load(); st != nil {
		_ = saveStateCache(d.in.Dir, st)
	}
	d.ctrlMu.Lock()
	ctrls := make([]*regionController, 0, len(d.ctrls))
	for _, c := range d.ctrls {
		ctrls = append(ctrls, c)
	}
	d.ctrlMu.Unlock()
	active := ""
	if st := d.lastState.Load(); st != nil {
		active = st.Active
	}
	sort.Slice(ctrls, func(i, j int) bool { return ctrls[i].region == active && ctrls[j].region != active })
	stop := func(c *regionController) {
		start := time.Now()
		_ = syscall.Kill(c.pid, syscall.SIGTERM)
		defer func() {
			d.log.Info("controller stopped", "region", c.region, "pid", c.pid, "took", time.Since(start).Round(time.Millisecond))
		}()
		select {
		case <-c.done:
		case <-time.After(controllerGrace):
			d.log.Warn("a controller did not stop within its grace; killing it", "region", c.region, "pid", c.pid)
			_ = syscall.Kill(c.pid, syscall.SIGKILL)
			<-c.done
		}
	}
	var wg sync.WaitGroup
	for i, c := range ctrls {
		if i == 0 && c.region == active {
			stop(c)
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); stop(c) }()
	}
	wg.Wait()
}

// watchState follows the service's state (an automatic failover moves
// it), for the status and for the next start.
func (d *daemon) watchState(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := d.store.State(rctx)
		cancel()
		if err == nil {
			d.noteState(st)
		}
	}
}

func (d *daemon) noteState(st *lifeboat.State) {
	old := d.lastState.Swap(st)
	if old == nil || old.Epoch != st.Epoch || old.Active != st.Active || old.Run != st.Run {
		if err := saveStateCache(d.in.Dir, st); err != nil {
			d.log.Warn("caching the service's state failed", "err", err)
		}
	}
}

func saveStateCache(dir string, st *lifeboat.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := stateCachePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, stateCachePath(dir))
}

func loadStateCache(dir string) (*lifeboat.State, error) {
	b, err := os.ReadFile(stateCachePath(dir))
	if err != nil {
		return nil, err
	}
	var st lifeboat.State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", stateCachePath(dir), err)
	}
	return &st, nil
}

// controllers describes the controllers: their processes and what each
// last published in the quorum's views.
func (d *daemon) controllers(ctx context.Context) []ControllerStatus {
	if d.net == nil {
		return nil
	}
	byRegion := map[string]map[string][]byte{}
	if d.etcd != nil {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		prefix := "/lifeboat/" + Service + "/views/"
		resp, err := d.etcd.Get(gctx, prefix, clientv3.WithPrefix())
		cancel()
		if err == nil {
			for _, kv := range resp.Kvs {
				region, key, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), prefix), "/")
				if !ok {
					continue
				}
				if byRegion[region] == nil {
					byRegion[region] = map[string][]byte{}
				}
				byRegion[region][key] = kv.Value
			}
		}
	}
	var out []ControllerStatus
	for _, region := range []string{West, East, Central} {
		cs := ControllerStatus{Region: region, Log: controllerLog(d.in.Dir, region)}
		d.ctrlMu.Lock()
		if c, ok := d.ctrls[region]; ok {
			cs.PID = c.pid
			select {
			case <-c.done:
			default:
				cs.Alive = true
			}
		}
		d.ctrlMu.Unlock()
		if b, ok := byRegion[region]["controller"]; ok {
			var st controller.Status
			if json.Unmarshal(b, &st) == nil {
				cs.Published = true
				cs.Leader, cs.Quorum, cs.Fenced = st.Leader, st.Quorum, st.Fenced
				cs.Decision, cs.DecidedAt = st.Decision, st.DecidedAt
			}
		}
		for _, key := range lifeboat.SortedKeys(byRegion[region]) {
			if !strings.HasPrefix(key, "view.") {
				continue
			}
			var v monitor.View
			if json.Unmarshal(byRegion[region][key], &v) == nil {
				cs.Views = append(cs.Views, v)
			}
		}
		out = append(out, cs)
	}
	return out
}

// Settled says whether the monitored lab's controllers are ready to act:
// all three alive and publishing, each in the quorum, exactly one leading.
// When not, the error says what is missing.
func (s *Status) Settled() error {
	if len(s.Controllers) != 3 {
		return fmt.Errorf("%d controllers, want 3 (west, east, central)", len(s.Controllers))
	}
	leaders := 0
	for _, c := range s.Controllers {
		if !c.Alive || !c.Published || !c.Quorum {
			return fmt.Errorf("controller %s: alive %v, publishing %v, in the quorum %v", c.Region, c.Alive, c.Published, c.Quorum)
		}
		if c.Leader {
			leaders++
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d controllers lead, want 1", leaders)
	}
	return nil
}
