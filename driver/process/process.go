// Package process is a compute driver whose scale sets are groups of local
// processes built from a recipe: the lab's stand-in for a cloud's VM scale
// sets (seed 003's fabric controller, on one machine).
//
// Each region has a directory and a block of loopback ports. Provision is
// seed 000's "recipe transfer": the artifact is copied into the region and
// checked against the recipe's sha256, so a region never runs a version it
// was not meant to. Scale starts or stops instances; a supervisor restarts
// crashed ones with exponential backoff and probes their health. Every
// mutating call carries the epoch as a fencing token, checked per scale set.
//
// On disk, in a region's Dir:
//
//	artifacts/<resource>/<artifact file>    the transferred recipe (kept by Delete)
//	scalesets/<resource>/<n>/stdout.log     one directory per instance
//	scalesets/<resource>/<n>/stderr.log
package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// Region is where one region's scale sets live on this machine.
type Region struct {
	// Dir holds the region's artifacts and instance directories.
	Dir string
	// Host is the address instances listen on and are probed at.
	Host string
	// PortBase is the first port of the region's block; Ports its size.
	PortBase int
	Ports    int
	// Env is added to every instance started in the region, such as
	// DATABASE_URL pointing at that region's copy of the database. It wins
	// over the recipe's settings; the LIFEBOAT_* variables and PORT win
	// over it.
	Env map[string]string
}

// Backoff is how the supervisor waits before restarting a crashed instance:
// Initial, doubling up to Max; an instance that stayed up for Reset starts
// again from Initial.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Reset   time.Duration
}

// Config configures the driver.
type Config struct {
	// Regions by region name.
	Regions map[string]Region
	// BaseDir is where relative artifact paths start (the spec file's
	// directory); "" is the current directory.
	BaseDir string
	Backoff Backoff
	// ProbeInterval, ProbeTimeout and ProbeFailures apply where the
	// compute's probe leaves them unset.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	ProbeFailures int
	// StopGrace is how long an instance has to exit after SIGTERM before
	// it gets SIGKILL.
	StopGrace time.Duration
	// BootTimeout bounds how long Scale and RollingRestart wait for new
	// instances to pass their probe when the context has no deadline.
	BootTimeout time.Duration
	// Logger receives starts, exits and restarts (nil: discarded).
	Logger *slog.Logger
	// Events, if set, is called for every instance start, stop, exit and
	// change of health, one at a time, in order per instance; keep it quick.
	Events func(Event)
}

// EventKind is what happened to an instance.
type EventKind string

const (
	EventStart EventKind = "start" // a process was started (PID set)
	EventStop  EventKind = "stop"  // the driver is stopping it (scale down, rolling restart, delete, close)
	EventExit  EventKind = "exit"  // the process exited on its own (crash)
	EventGone  EventKind = "gone"  // a stopped process has exited

	EventHealthy   EventKind = "healthy"   // passes its probe (again)
	EventUnhealthy EventKind = "unhealthy" // failed its probe Failures times in a row
)

// Event is one change of an instance, for tests and live views.
type Event struct {
	// Seq orders events as the changes happened; events of different
	// instances may be delivered out of that order.
	Seq          uint64
	Kind         EventKind
	Resource     string
	Region       string
	Index        int
	PID          int
	Port         int
	FaultDomain  int
	UpdateDomain int
	Restarts     int
	Time         time.Time
	Err          string // exit status of an EventExit
}

// Instance is one instance of a scale set, for status displays.
type Instance struct {
	Name         string `json:"name"` // <resource>-<index>
	Index        int    `json:"index"`
	PID          int    `json:"pid"` // 0 while not running (between restarts)
	Port         int    `json:"port"`
	FaultDomain  int    `json:"fault_domain"`
	UpdateDomain int    `json:"update_domain"`
	Restarts     int    `json:"restarts"`
	Healthy      bool   `json:"healthy"`
	Dir          string `json:"dir"`
	// LastExit is how the last process of this instance ended, if it crashed.
	LastExit string `json:"last_exit,omitempty"`
}

// DefaultConfig returns the defaults; add Regions before New.
func DefaultConfig() Config {
	return Config{
		Regions:       map[string]Region{},
		Backoff:       Backoff{Initial: 200 * time.Millisecond, Max: 30 * time.Second, Reset: 30 * time.Second},
		ProbeInterval: 2 * time.Second,
		ProbeTimeout:  time.Second,
		ProbeFailures: 3,
		StopGrace:     10 * time.Second,
		BootTimeout:   2 * time.Minute,
	}
}

// DefaultPorts is the size of a region's port block when Ports is 0.
const DefaultPorts = 100

// ValidateConfig reports every problem of c at once.
func ValidateConfig(c Config) error {
	var errs []error
	if len(c.Regions) == 0 {
		errs = append(errs, errors.New("process driver: no regions: add one Region (Dir, Host, PortBase) per region name"))
	}
	type block struct {
		name      string
		first, to int
	}
	var blocks []block
	for _, name := range lifeboat.SortedKeys(c.Regions) {
		r := c.Regions[name]
		if r.Dir == "" {
			errs = append(errs, fmt.Errorf("process driver: region %s has no Dir: give the directory its artifacts and instances live in", name))
		}
		if r.Host == "" {
			errs = append(errs, fmt.Errorf("process driver: region %s has no Host: use 127.0.0.1 (or the region's loopback address in the lab)", name))
		}
		ports := r.Ports
		if ports == 0 {
			ports = DefaultPorts
		}
		if r.PortBase < 1024 || r.PortBase+ports > 65536 || ports < 0 {
			errs = append(errs, fmt.Errorf("process driver: region %s port block %d+%d is outside 1024..65535: pick a PortBase such as 20000", name, r.PortBase, ports))
		}
		blocks = append(blocks, block{name, r.PortBase, r.PortBase + ports})
	}
	for i := range blocks {
		for j := i + 1; j < len(blocks); j++ {
			a, b := blocks[i], blocks[j]
			if a.first < b.to && b.first < a.to && c.Regions[a.name].Host == c.Regions[b.name].Host {
				errs = append(errs, fmt.Errorf("process driver: regions %s and %s share ports (%d..%d and %d..%d on %s): give each region its own block", a.name, b.name, a.first, a.to-1, b.first, b.to-1, c.Regions[a.name].Host))
			}
		}
	}
	if c.Backoff.Initial <= 0 || c.Backoff.Max < c.Backoff.Initial {
		errs = append(errs, fmt.Errorf("process driver: Backoff Initial %s and Max %s: need 0 < Initial <= Max", c.Backoff.Initial, c.Backoff.Max))
	}
	if c.Backoff.Reset <= 0 {
		errs = append(errs, fmt.Errorf("process driver: Backoff Reset is %s: it must be positive (how long an instance must stay up to forget its crashes)", c.Backoff.Reset))
	}
	if c.ProbeInterval <= 0 || c.ProbeTimeout <= 0 || c.ProbeFailures < 1 {
		errs = append(errs, fmt.Errorf("process driver: probe defaults interval %s, timeout %s, failures %d: need positive durations and at least 1 failure", c.ProbeInterval, c.ProbeTimeout, c.ProbeFailures))
	}
	if c.StopGrace <= 0 {
		errs = append(errs, fmt.Errorf("process driver: StopGrace is %s: it must be positive (time between SIGTERM and SIGKILL)", c.StopGrace))
	}
	if c.BootTimeout <= 0 {
		errs = append(errs, fmt.Errorf("process driver: BootTimeout is %s: it must be positive", c.BootTimeout))
	}
	return errors.Join(errs...)
}

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("process driver is closed")

// Driver runs scale sets as local processes. It is safe for concurrent use.
type Driver struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	closed  bool
	sets    map[string]*scaleSet // by resource
	epochs  map[string]uint64    // newest epoch acted for, per resource; survives Delete
	ports   map[string]map[int]string
	changed chan struct{} // closed and replaced on every change: waiters wake up
	seq     uint64        // of the last event
	events  sync.Mutex    // keeps Events calls in order
}

var _ lifeboat.ComputeDriver = (*Driver)(nil)

// New checks cfg and returns a driver with no scale sets.
func New(cfg Config) (*Driver, error) {
	if err := ValidateConfig(cfg); err != nil {
		return nil, err
	}
	regions := make(map[string]Region, len(cfg.Regions))
	for name, r := range cfg.Regions {
		if r.Ports == 0 {
			r.Ports = DefaultPorts
		}
		dir, err := filepath.Abs(r.Dir)
		if err != nil {
			return nil, fmt.Errorf("process driver: region %s dir %s: %w", name, r.Dir, err)
		}
		r.Dir = dir
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("process driver: cannot create region %s dir: %w: check the path and its permissions", name, err)
		}
		regions[name] = r
	}
	cfg.Regions = regions
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Driver{cfg: cfg, log: log, sets: map[string]*scaleSet{}, epochs: map[string]uint64{},
		ports: map[string]map[int]string{}, changed: make(chan struct{})}
	lo, hi := ephemeralPorts()
	for name, r := range regions {
		if r.PortBase <= hi && lo < r.PortBase+r.Ports {
			// Not an error: it works, but an outgoing connection may hold
			// a port of the block, and an instance then moves to another.
			log.Warn("region port block overlaps the kernel's ephemeral ports; pick a PortBase below them", "region", name,
				"ports", fmt.Sprintf("%d..%d", r.PortBase, r.PortBase+r.Ports-1), "ephemeral", fmt.Sprintf("%d..%d", lo, hi))
		}
		if err := loadEpochs(r, d.epochs); err != nil {
			return nil, fmt.Errorf("process driver: region %s: %w", name, err)
		}
	}
	return d, nil
}

// The newest epoch acted for on each scale set is kept on disk, one file
// per resource, so that a restarted driver still refuses an old run.
func epochFile(r Region, resource string) string {
	return filepath.Join(r.Dir, "epochs", resource)
}

func saveEpoch(r Region, resource string, epoch uint64) error {
	path := epochFile(r, resource)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("cannot record epoch %d: %w: check permissions of %s", epoch, err, r.Dir)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(epoch, 10)+"\n"), 0o644); err != nil {
		return fmt.Errorf("cannot record epoch %d: %w", epoch, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cannot record epoch %d: %w", epoch, err)
	}
	return nil
}

func loadEpochs(r Region, into map[string]uint64) error {
	dir := filepath.Join(r.Dir, "epochs")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the recorded epochs: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("reading the recorded epoch of %s: %w", e.Name(), err)
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return fmt.Errorf("%s holds %q, not an epoch: remove the file only if no newer run acted on %s", filepath.Join(dir, e.Name()), b, e.Name())
		}
		into[e.Name()] = max(into[e.Name()], n)
	}
	return nil
}

// Close stops every instance the driver started (SIGTERM, then SIGKILL
// after the grace period, by PID) and waits until they have exited. Later
// calls fail with ErrClosed.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closed = true
	var all []*instance
	for _, s := range d.sets {
		all = append(all, s.instances...)
	}
	d.mu.Unlock()
	d.stopAll(all)
	return nil
}

// region returns the configured region of t.
func (d *Driver) region(op lifeboat.Op, t lifeboat.Target) (Region, error) {
	r, ok := d.cfg.Regions[t.Region]
	if !ok {
		return Region{}, lifeboat.Permanent(op, t.Resource, fmt.Errorf("region %q is not configured in the process driver (configured: %v): add it to Config.Regions", t.Region, lifeboat.SortedKeys(d.cfg.Regions)))
	}
	return r, nil
}

// fence checks t's epoch against the newest acted for on the resource and
// records it: a mutating call holds the scale set from here on.
// lockedSet checks t's region and epoch, finds its scale set and takes the
// set's lock (the caller unlocks it). missing says what to do when the set
// does not exist.
func (d *Driver) lockedSet(ctx context.Context, op lifeboat.Op, t lifeboat.Target, missing string) (*scaleSet, Region, error) {
	reg, err := d.region(op, t)
	if err != nil {
		return nil, reg, err
	}
	if err := d.fence(op, t); err != nil {
		return nil, reg, err
	}
	d.mu.Lock()
	s := d.sets[t.Resource]
	d.mu.Unlock()
	if s == nil {
		return nil, reg, lifeboat.Permanent(op, t.Resource, fmt.Errorf("scale set %s does not exist in region %s: %s", t.Resource, t.Region, missing))
	}
	if err := s.lock(ctx); err != nil {
		return nil, reg, lifeboat.Transient(op, t.Resource, err)
	}
	return s, reg, nil
}

func (d *Driver) fence(op lifeboat.Op, t lifeboat.Target) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return lifeboat.Permanent(op, t.Resource, ErrClosed)
	}
	if seen := d.epochs[t.Resource]; t.Epoch < seen {
		return lifeboat.Permanent(op, t.Resource, lifeboat.StaleEpoch(t.Resource, t.Epoch, seen))
	}
	if t.Epoch > d.epochs[t.Resource] {
		if err := saveEpoch(d.cfg.Regions[t.Region], t.Resource, t.Epoch); err != nil {
			return lifeboat.Transient(op, t.Resource, err)
		}
	}
	d.epochs[t.Resource] = t.Epoch
	if s := d.sets[t.Resource]; s != nil {
		s.epoch = t.Epoch
	}
	return nil
}

// notifyLocked wakes every waiter; d.mu is held.
func (d *Driver) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// waitFor waits until cond (called with d.mu held) is true or ctx ends.
func (d *Driver) waitFor(ctx context.Context, cond func() bool) error {
	for {
		d.mu.Lock()
		ok, ch := cond(), d.changed
		d.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Status reports whether the scale set exists, how many of its instances
// run a process and how many pass their probe, and the newest epoch acted
// for on it.
func (d *Driver) Status(ctx context.Context, t lifeboat.Target) (lifeboat.ScaleSet, error) {
	if _, err := d.region(lifeboat.OpComputeScale, t); err != nil {
		return lifeboat.ScaleSet{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ss := lifeboat.ScaleSet{Epoch: d.epochs[t.Resource]}
	s := d.sets[t.Resource]
	if s == nil {
		return ss, nil
	}
	ss.Exists = true
	for _, in := range s.instances {
		if in.pid != 0 {
			ss.Instances++
		}
		if in.healthy {
			ss.Healthy++
		}
	}
	return ss, nil
}

// Instances lists the scale set's instances by index (nil if it does not exist).
func (d *Driver) Instances(t lifeboat.Target) []Instance {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sets[t.Resource]
	if s == nil {
		return nil
	}
	out := make([]Instance, 0, len(s.instances))
	for _, in := range s.instances {
		out = append(out, in.infoLocked())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// lock takes the scale set's operation lock: one Scale, RollingRestart or
// Delete at a time per scale set, since each waits on its instances.
func (s *scaleSet) lock(ctx context.Context) error {
	select {
	case s.op <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *scaleSet) unlock() { <-s.op }

// bootContext bounds waits for new instances by BootTimeout when ctx has
// no deadline of its own.
func (d *Driver) bootContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d.cfg.BootTimeout)
}

// Scale starts or stops instances until the scale set has n. New instances
// are spread round-robin over fault and update domains; scaling down stops
// the newest first. It returns when the instances it started run and pass
// their probe (if the compute has one).
//
// An instance runs the recipe's command in its own directory, with the
// recipe's settings, then the region's Env, then PORT, LIFEBOAT_HOST,
// LIFEBOAT_REGION, LIFEBOAT_INSTANCE, LIFEBOAT_FAULT_DOMAIN,
// LIFEBOAT_UPDATE_DOMAIN and LIFEBOAT_ARTIFACT in its environment (later
// ones win); ${VAR} in the arguments is replaced from that environment.
func (d *Driver) Scale(ctx context.Context, t lifeboat.Target, n int) error {
	op := lifeboat.OpComputeScale
	if n < 0 {
		return lifeboat.Permanent(op, t.Resource, fmt.Errorf("cannot scale %s to %d instances: the count must be 0 or more", t.Resource, n))
	}
	s, reg, err := d.lockedSet(ctx, op, t, "provision it first (compute.provision)")
	if err != nil {
		return err
	}
	defer s.unlock()

	d.mu.Lock()
	if d.closed || d.sets[t.Resource] != s {
		d.mu.Unlock()
		return lifeboat.Transient(op, t.Resource, fmt.Errorf("scale set %s was deleted or the driver closed while this scale waited: try again", t.Resource))
	}
	var stop, started []*instance
	for len(s.instances) > n {
		last := s.instances[len(s.instances)-1]
		s.instances = s.instances[:len(s.instances)-1]
		stop = append(stop, last)
	}
	var startErr error
	for len(s.instances) < n {
		in, err := d.newInstanceLocked(s, reg, len(s.instances))
		if err != nil {
			startErr = err
			break
		}
		s.instances = append(s.instances, in)
		started = append(started, in)
	}
	d.notifyLocked()
	d.mu.Unlock()

	d.stopAll(stop)
	for _, in := range started {
		go d.supervise(in)
	}
	if startErr != nil {
		return lifeboat.Transient(op, t.Resource, startErr)
	}
	return d.waitReady(ctx, op, t, started)
}

// waitReady waits until every instance in ins runs and passes its probe.
func (d *Driver) waitReady(ctx context.Context, op lifeboat.Op, t lifeboat.Target, ins []*instance) error {
	if len(ins) == 0 {
		return nil
	}
	wctx, cancel := d.bootContext(ctx)
	defer cancel()
	var cannotStart error
	err := d.waitFor(wctx, func() bool {
		all := true
		if d.closed {
			return true
		}
		for _, in := range ins {
			if e := in.startErr; e != nil && (errors.Is(e, fs.ErrNotExist) || errors.Is(e, fs.ErrPermission) || errors.Is(e, syscall.ENOEXEC)) {
				// The recipe cannot run here (no such program, not
				// executable): waiting will not help, provisioning will.
				cannotStart = in.startErr
				return true
			}
			all = all && in.healthy
		}
		return all
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return lifeboat.Permanent(op, t.Resource, ErrClosed)
	case cannotStart != nil:
		return lifeboat.Permanent(op, t.Resource, fmt.Errorf("instances in region %s cannot start: %w: fix recipe.command (a relative program path names a file next to the artifact, %s) and provision again", t.Region, cannotStart, filepath.Dir(ins[0].set.artifact)))
	case err == nil:
		return nil
	}
	var bad []string
	for _, in := range ins {
		if !in.healthy {
			what := "does not pass its probe"
			if in.pid == 0 {
				what = "is not running"
				if in.lastExit != "" {
					what += " (last exit: " + in.lastExit + ")"
				}
			}
			bad = append(bad, fmt.Sprintf("%s on port %d %s; logs in %s", in.name, in.port, what, in.dir))
		}
	}
	return lifeboat.Transient(op, t.Resource, fmt.Errorf("instances started but not ready (%w): %v", err, bad))
}

// Delete stops every instance of the scale set (by PID) and removes its
// instance directories. The artifact copy stays: the recipe is still in
// the region for the next provision.
func (d *Driver) Delete(ctx context.Context, t lifeboat.Target) error {
	op := lifeboat.OpComputeDelete
	reg, err := d.region(op, t)
	if err != nil {
		return err
	}
	if err := d.fence(op, t); err != nil {
		return err
	}
	d.mu.Lock()
	s := d.sets[t.Resource]
	d.mu.Unlock()
	if s != nil {
		if err := s.lock(ctx); err != nil {
			return lifeboat.Transient(op, t.Resource, err)
		}
		d.mu.Lock()
		ins := s.instances
		s.instances = nil
		if d.sets[t.Resource] == s {
			delete(d.sets, t.Resource)
		}
		d.notifyLocked()
		d.mu.Unlock()
		d.stopAll(ins)
		s.unlock()
	}
	if err := os.RemoveAll(setDir(reg, t.Resource)); err != nil {
		return lifeboat.Transient(op, t.Resource, fmt.Errorf("instances stopped but their directories remain: %w: check permissions of %s", err, setDir(reg, t.Resource)))
	}
	return nil
}

func setDir(r Region, resource string) string {
	return filepath.Join(r.Dir, "scalesets", resource)
}

// Seed stands up every scale set that exists in st (a state of the service
// s, nil for its initial state): the recipe is provisioned and the scale
// set scaled to the state's instances, at the resource's epoch. It brings
// a lab's world to where the control plane's state says it is.
func (d *Driver) Seed(ctx context.Context, s *lifeboat.Spec, st *lifeboat.State) error {
	if st == nil {
		st = lifeboat.InitialState(s, time.Now())
	}
	for _, r := range st.SortedResources() {
		if r.Kind != lifeboat.KindCompute || !r.Exists {
			continue
		}
		c, ok := s.Units[r.Unit].Compute[r.Component]
		if !ok {
			return fmt.Errorf("seeding %s: the spec has no compute %s in unit %s", r.Name, r.Component, r.Unit)
		}
		t := lifeboat.Target{Service: s.Service, Unit: r.Unit, Component: r.Component, Region: r.Region, Resource: r.Name, Epoch: r.Epoch}
		if err := d.Provision(ctx, t, c); err != nil {
			return fmt.Errorf("seeding: %w", err)
		}
		if err := d.Scale(ctx, t, r.Instances); err != nil {
			return fmt.Errorf("seeding: %w", err)
		}
	}
	return nil
}

// ephemeralPorts returns the kernel's range of local ports for outgoing
// connections (Linux's default when it cannot be read).
func ephemeralPorts() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		a, err1 := strconv.Atoi(f[0])
		b, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil {
			return a, b
		}
	}
	return lo, hi
}
