package process

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// instance is one member of a scale set. Its supervisor goroutine owns the
// process; the fields below the line are guarded by the driver's mu.
type instance struct {
	set    *scaleSet
	name   string
	index  int
	port   int // guarded by d.mu: moves if another process takes it
	fd, ud int
	dir    string
	host   string
	region Region

	// guarded by d.mu
	pid      int
	gen      int // process generation: a probe of an old process must not count
	healthy  bool
	restarts int
	lastExit string
	startErr error         // why the last start failed (nil once a process runs)
	stop     chan struct{} // closed to ask the supervisor to stop the process
	done     chan struct{} // closed when the supervisor has stopped and the process is gone
}

func (in *instance) infoLocked() Instance {
	return Instance{Name: in.name, Index: in.index, PID: in.pid, Port: in.port, FaultDomain: in.fd,
		UpdateDomain: in.ud, Restarts: in.restarts, Healthy: in.healthy, Dir: in.dir, LastExit: in.lastExit}
}

// newInstanceLocked makes instance index of s with a free port of the
// region's block; d.mu is held. The caller starts its supervisor.
func (d *Driver) newInstanceLocked(s *scaleSet, reg Region, index int) (*instance, error) {
	fds, uds := max(s.compute.FaultDomains, 1), max(s.compute.UpdateDomains, 1)
	name := s.resource + "-" + strconv.Itoa(index)
	port, err := d.allocPortLocked(s.region, reg, name)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(setDir(reg, s.resource), strconv.Itoa(index))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		d.releasePortLocked(s.region, port)
		return nil, fmt.Errorf("cannot create instance directory %s: %w: check permissions of %s", dir, err, reg.Dir)
	}
	return &instance{set: s, name: name, index: index, port: port, fd: index % fds, ud: index % uds,
		dir: dir, host: reg.Host, region: reg, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// allocPortLocked takes the lowest port of the region's block that no
// instance holds and that nothing else listens on.
func (d *Driver) allocPortLocked(region string, reg Region, owner string) (int, error) {
	used := d.ports[region]
	if used == nil {
		used = map[int]string{}
		d.ports[region] = used
	}
	for p := reg.PortBase; p < reg.PortBase+reg.Ports; p++ {
		if _, taken := used[p]; taken {
			continue
		}
		if !bindable(reg.Host, p) {
			continue // someone else's: skip it
		}
		used[p] = owner
		return p, nil
	}
	return 0, fmt.Errorf("region %s has no free port in %d..%d on %s (%d held by instances): raise Ports or move PortBase", region, reg.PortBase, reg.PortBase+reg.Ports-1, reg.Host, len(used))
}

func (d *Driver) releasePortLocked(region string, port int) {
	delete(d.ports[region], port)
}

// eventLocked snapshots in for Config.Events. d.mu is held: Seq orders
// events as the changes they report happened.
func (d *Driver) eventLocked(kind EventKind, in *instance, pid int, errText string) Event {
	d.seq++
	return Event{Seq: d.seq, Kind: kind, Resource: in.set.resource, Region: in.set.region, Index: in.index, PID: pid,
		Port: in.port, FaultDomain: in.fd, UpdateDomain: in.ud, Restarts: in.restarts, Time: time.Now(), Err: errText}
}

// deliver calls Config.Events, one event at a time.
func (d *Driver) deliver(ev Event) {
	if d.cfg.Events == nil {
		return
	}
	d.events.Lock()
	defer d.events.Unlock()
	d.cfg.Events(ev)
}

// emit reports an event that goes with no change of state.
func (d *Driver) emit(kind EventKind, in *instance, pid int, errText string) {
	d.mu.Lock()
	ev := d.eventLocked(kind, in, pid, errText)
	d.mu.Unlock()
	d.deliver(ev)
}

// movePort gives in another port when something else took its port while
// it was down (a port of the block may be any process's ephemeral port).
func (d *Driver) movePort(in *instance) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if bindable(in.host, in.port) {
		return
	}
	port, err := d.allocPortLocked(in.set.region, in.region, in.name)
	if err != nil {
		return // keep trying the old one; the exit status says why it fails
	}
	d.log.Warn("instance port taken by another process; moving the instance", "instance", in.name, "from", in.port, "to", port)
	d.releasePortLocked(in.set.region, in.port)
	in.port = port
}

func bindable(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// command builds the process of in from its scale set's current recipe.
func (d *Driver) command(in *instance) (*exec.Cmd, error) {
	d.mu.Lock()
	c, artifact, port := in.set.compute, in.set.artifact, in.port
	d.mu.Unlock()
	env := map[string]string{}
	if p := os.Getenv("PATH"); p != "" {
		env["PATH"] = p
	}
	for k, v := range c.Recipe.Settings {
		env[k] = v
	}
	for k, v := range in.region.Env {
		env[k] = v
	}
	env["PORT"] = strconv.Itoa(port)
	env["LIFEBOAT_HOST"] = in.host
	env["LIFEBOAT_REGION"] = in.set.region
	env["LIFEBOAT_INSTANCE"] = in.name
	env["LIFEBOAT_FAULT_DOMAIN"] = strconv.Itoa(in.fd)
	env["LIFEBOAT_UPDATE_DOMAIN"] = strconv.Itoa(in.ud)
	env["LIFEBOAT_ARTIFACT"] = artifact

	// ${PORT} and the like in the arguments, so a recipe can say
	// [./shop, --listen, "${LIFEBOAT_HOST}:${PORT}"].
	args := make([]string, len(c.Recipe.Command))
	for i, a := range c.Recipe.Command {
		args[i] = os.Expand(a, func(k string) string { return env[k] })
	}
	// A relative program path names a file of the transferred recipe.
	if strings.Contains(args[0], "/") && !filepath.IsAbs(args[0]) {
		args[0] = filepath.Join(filepath.Dir(artifact), args[0])
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = in.dir
	for _, k := range lifeboat.SortedKeys(env) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	// Own process group, so a stop reaches the instance's children too;
	// Pdeathsig so an instance does not outlive a driver that crashed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, nil
}

// startProcess starts one process of in with its output appended to the
// log files in its directory.
func (d *Driver) startProcess(in *instance) (*exec.Cmd, error) {
	cmd, err := d.command(in)
	if err != nil {
		return nil, err
	}
	open := func(name string) (*os.File, error) {
		return os.OpenFile(filepath.Join(in.dir, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	}
	stdout, err := open("stdout.log")
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := open("stderr.log")
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// supervise runs in's process until in.stop is closed, restarting it with
// exponential backoff whenever it exits on its own (seed 003's fabric
// controller). It closes in.done when the process is gone.
func (d *Driver) supervise(in *instance) {
	// Pdeathsig fires when the thread that started the process exits, not
	// the driver: keep this goroutine on a thread of its own for the
	// process's lifetime, so another goroutine (one that switches network
	// namespaces and ends locked, say) cannot take the thread down with
	// our instance. The thread ends with this goroutine.
	runtime.LockOSThread()
	d.mu.Lock()
	stop, done := in.stop, in.done
	d.mu.Unlock()
	defer close(done)
	b := d.cfg.Backoff
	wait := b.Initial
	pause := func() bool { // false: asked to stop
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-stop:
			return false
		case <-t.C:
		}
		wait = min(wait*2, b.Max)
		d.mu.Lock()
		in.restarts++
		d.mu.Unlock()
		return true
	}
	for restart := false; ; restart = true {
		select {
		case <-stop:
			return
		default:
		}
		if restart {
			d.movePort(in)
		}
		cmd, err := d.startProcess(in)
		if err != nil {
			d.mu.Lock()
			in.lastExit, in.startErr = "cannot start: "+err.Error(), err
			ev := d.eventLocked(EventExit, in, 0, in.lastExit)
			d.notifyLocked()
			d.mu.Unlock()
			d.log.Error("instance cannot start", "instance", in.name, "err", err)
			d.deliver(ev)
			if !pause() {
				return
			}
			continue
		}
		pid := cmd.Process.Pid
		started := time.Now()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		d.mu.Lock()
		in.pid, in.startErr = pid, nil
		in.gen++
		gen := in.gen
		ev := d.eventLocked(EventStart, in, pid, "")
		d.notifyLocked()
		d.mu.Unlock()
		d.log.Info("instance started", "instance", in.name, "pid", pid, "port", ev.Port)
		d.deliver(ev)

		pctx, pcancel := context.WithCancel(context.Background())
		probing := make(chan struct{})
		go func() { defer close(probing); d.probe(pctx, in, gen) }()

		select {
		case <-stop:
			pcancel()
			<-probing
			d.emit(EventStop, in, pid, "")
			d.terminate(cmd, exited)
			d.mu.Lock()
			in.pid, in.healthy = 0, false
			ev := d.eventLocked(EventGone, in, pid, "")
			d.notifyLocked()
			d.mu.Unlock()
			d.log.Info("instance stopped", "instance", in.name, "pid", pid)
			d.deliver(ev)
			return
		case err := <-exited:
			pcancel()
			<-probing
			killGroup(pid) // leftovers of the crashed instance would hold its port
			why := exitText(err)
			d.mu.Lock()
			in.pid, in.healthy, in.lastExit = 0, false, why
			ev := d.eventLocked(EventExit, in, pid, why)
			d.notifyLocked()
			d.mu.Unlock()
			d.log.Warn("instance exited; restarting after backoff", "instance", in.name, "pid", pid, "exit", why, "backoff", wait)
			d.deliver(ev)
			if time.Since(started) >= b.Reset {
				wait = b.Initial
			}
			if !pause() {
				return
			}
		}
	}
}

func exitText(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	return err.Error()
}

// terminate sends SIGTERM to the process, SIGKILL to its group after the
// grace period, and waits until it has exited.
func (d *Driver) terminate(cmd *exec.Cmd, exited <-chan error) {
	// os.Process.Signal is safe against PID reuse (it knows whether the
	// process was waited for); an error means it has exited already.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(d.cfg.StopGrace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		d.log.Warn("instance ignored SIGTERM; killing it", "pid", cmd.Process.Pid, "grace", d.cfg.StopGrace)
		_ = cmd.Process.Kill()
		<-exited
	}
	killGroup(cmd.Process.Pid)
}

// killGroup kills what is left of an instance's process group (its
// children). The group id cannot be reused while any member lives.
func killGroup(pgid int) {
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = err // EPERM cannot happen for our own children; nothing to do either way
	}
}

// stopInstances asks each supervisor to stop and waits until every
// process is gone.
func (d *Driver) stopInstances(ins []*instance) {
	d.mu.Lock()
	var dones []chan struct{}
	for _, in := range ins {
		select {
		case <-in.stop:
		default:
			close(in.stop)
		}
		dones = append(dones, in.done)
	}
	d.mu.Unlock()
	for _, done := range dones {
		<-done
	}
}

// stopAll stops the instances and gives back their ports.
func (d *Driver) stopAll(ins []*instance) {
	d.stopInstances(ins)
	d.mu.Lock()
	for _, in := range ins {
		d.releasePortLocked(in.set.region, in.port)
	}
	d.notifyLocked()
	d.mu.Unlock()
}

// probe checks the health of process gen of in until ctx ends. Without a
// probe an instance is healthy while it runs.
func (d *Driver) probe(ctx context.Context, in *instance, gen int) {
	d.mu.Lock()
	p, port := in.set.compute.Probe, in.port
	d.mu.Unlock()
	set := func(ok bool) {
		d.mu.Lock()
		changed := in.gen == gen && in.pid != 0 && in.healthy != ok
		var ev Event
		if changed {
			in.healthy = ok
			kind := EventHealthy
			if !ok {
				kind = EventUnhealthy
			}
			ev = d.eventLocked(kind, in, in.pid, "")
			d.notifyLocked()
		}
		d.mu.Unlock()
		if changed {
			d.deliver(ev)
		}
	}
	if p == nil || (p.HTTP == "" && !p.TCP) {
		set(true)
		return
	}
	interval, timeout, failures := p.Interval.D(), p.Timeout.D(), p.Failures
	if interval <= 0 {
		interval = d.cfg.ProbeInterval
	}
	if timeout <= 0 {
		timeout = d.cfg.ProbeTimeout
	}
	if failures < 1 {
		failures = d.cfg.ProbeFailures
	}
	addr := net.JoinHostPort(in.host, strconv.Itoa(port))
	check := func() bool {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if p.HTTP == "" {
			var dl net.Dialer
			c, err := dl.DialContext(cctx, "tcp", addr)
			if err != nil {
				return false
			}
			c.Close()
			return true
		}
		path := p.HTTP
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(cctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return false
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 300
	}
	// Until the first success, poll faster than the interval: a new
	// instance's boot time is part of the RTO.
	boot := min(interval, 50*time.Millisecond)
	up, fails := false, 0
	for {
		if check() {
			up, fails = true, 0
			set(true)
		} else if fails++; up && fails >= failures {
			set(false)
		}
		next := interval
		if !up {
			next = boot
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// probeClient keeps no idle connections: instances come and go.
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
