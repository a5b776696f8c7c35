package process

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/drivertest"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
)

// healthsrv is the test instance binary (testdata/main.go), built once.
var healthsrv, healthsrvSum string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lifeboat-process-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	healthsrv = filepath.Join(dir, "healthsrv")
	out, err := exec.Command("go", "build", "-o", healthsrv, "./testdata").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the test instance: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	healthsrvSum = mustSum(healthsrv)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func mustSum(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

const (
	east = "east"
	west = "west"
)

// recorder keeps the driver's events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) add(e Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }
func (r *recorder) take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// newDriver returns a driver with regions east and west on loopback, each
// with a block of ports from a random base (busy ports are skipped), and
// quick backoff and probes. It is closed at the end of the test.
func newDriver(t *testing.T, edit ...func(*Config)) (*Driver, *recorder) {
	t.Helper()
	dir := t.TempDir()
	base := 20000 + rand.N(120)*100
	cfg := DefaultConfig()
	cfg.Regions = map[string]Region{
		east: {Dir: filepath.Join(dir, east), Host: "127.0.0.1", PortBase: base, Ports: 50,
			Env: map[string]string{"DATABASE_URL": "postgres://127.0.0.1/east"}},
		west: {Dir: filepath.Join(dir, west), Host: "127.0.0.1", PortBase: base + 50, Ports: 50,
			Env: map[string]string{"DATABASE_URL": "postgres://127.0.0.1/west"}},
	}
	cfg.Backoff = Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Reset: time.Second}
	cfg.ProbeInterval, cfg.ProbeTimeout, cfg.ProbeFailures = 50*time.Millisecond, time.Second, 2
	cfg.StopGrace = 5 * time.Second
	cfg.BootTimeout = 30 * time.Second
	rec := &recorder{}
	cfg.Events = rec.add
	for _, e := range edit {
		e(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, rec
}

func web() lifeboat.Compute {
	return lifeboat.Compute{
		Recipe: lifeboat.Recipe{Artifact: healthsrv, Checksum: healthsrvSum,
			Command:  []string{"./healthsrv", "-listen", "${LIFEBOAT_HOST}:${PORT}"},
			Settings: map[string]string{"GREETING": "hello", "PORT": "overridden"}},
		Standby:       lifeboat.StandbyWarm,
		Instances:     lifeboat.Instances{Primary: 3, Secondary: 3},
		Probe:         &lifeboat.Probe{HTTP: "/healthz", Interval: lifeboat.Duration(50 * time.Millisecond), Timeout: lifeboat.Duration(time.Second), Failures: 2},
		FaultDomains:  2,
		UpdateDomains: 3,
	}
}

func target(region string, epoch uint64) lifeboat.Target {
	return lifeboat.Target{Service: "shop", Unit: "storefront", Component: "web", Region: region,
		Resource: lifeboat.ResourceName("shop", "storefront", "web", region), Epoch: epoch}
}

// ctx bounds each driver call generously; tests never assert on time.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// eventually waits (up to a generous deadline) until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func listening(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(port int, path string) (string, error) {
	resp, err := client.Get("http://127.0.0.1:" + strconv.Itoa(port) + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return string(b), fmt.Errorf("GET %s on %d: %s", path, port, resp.Status)
	}
	return string(b), err
}

// provisioned returns a driver with the web scale set provisioned in east.
func provisioned(t *testing.T, edit ...func(*Config)) (*Driver, *recorder) {
	t.Helper()
	d, rec := newDriver(t, edit...)
	if err := d.Provision(ctx(t), target(east, 1), web()); err != nil {
		t.Fatal(err)
	}
	return d, rec
}

func TestValidateConfig(t *testing.T) {
	if err := ValidateConfig(DefaultConfig()); err == nil || !strings.Contains(err.Error(), "no regions") {
		t.Errorf("the default config without regions: %v", err)
	}
	c := DefaultConfig()
	c.Regions = map[string]Region{
		"a": {Dir: "/tmp/a", Host: "127.0.0.1", PortBase: 20000},
		"b": {Dir: "", Host: "127.0.0.1", PortBase: 20050},
	}
	c.StopGrace = 0
	err := ValidateConfig(c)
	for _, want := range []string{"share ports", "region b has no Dir", "StopGrace"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

func TestProvisionTransfersTheRecipe(t *testing.T) {
	d, _ := newDriver(t)
	c := ctx(t)
	tg := target(east, 1)
	if ready, why, err := d.RecipeReady(c, tg, web()); err != nil || ready || !strings.Contains(why, "not transferred") {
		t.Errorf("before provision: ready=%v %q %v", ready, why, err)
	}
	if err := d.Provision(c, tg, web()); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(d.cfg.Regions[east].Dir, "artifacts", tg.Resource, "healthsrv")
	if got := mustSum(cp); got != healthsrvSum {
		t.Errorf("region copy has %s, want %s", got, healthsrvSum)
	}
	if ready, why, err := d.RecipeReady(c, tg, web()); err != nil || !ready {
		t.Errorf("after provision: ready=%v %q %v", ready, why, err)
	}
	if st, err := d.Status(c, tg); err != nil || !st.Exists || st.Instances != 0 || st.Epoch != 1 {
		t.Errorf("status = %+v, %v; want an existing scale set with 0 instances at epoch 1", st, err)
	}
	// Provision is idempotent.
	if err := d.Provision(c, tg, web()); err != nil {
		t.Fatal(err)
	}

	// A wrong checksum is refused for good, naming both sums, and nothing
	// is installed in the region.
	bad := web()
	bad.Recipe.Checksum = "sha256:" + strings.Repeat("0", 64)
	wt := target(west, 1)
	err := d.Provision(c, wt, bad)
	if err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), healthsrvSum) || !strings.Contains(err.Error(), bad.Recipe.Checksum) {
		t.Fatalf("wrong checksum: %v; want a permanent error naming both sums", err)
	}
	if st, _ := d.Status(c, wt); st.Exists {
		t.Error("a scale set was created from an artifact with the wrong checksum")
	}
	if _, err := os.Stat(filepath.Join(d.cfg.Regions[west].Dir, "artifacts", wt.Resource, "healthsrv")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the wrong artifact was installed in west: %v", err)
	}
	if ready, _, _ := d.RecipeReady(c, wt, bad); ready {
		t.Error("west reported ready with the wrong artifact")
	}

	// A source that changed after the transfer: the region is not ready
	// until the new version is transferred.
	src := filepath.Join(t.TempDir(), "healthsrv")
	copyFile(t, healthsrv, src)
	moved := web()
	moved.Recipe.Artifact, moved.Recipe.Checksum = src, ""
	if err := d.Provision(c, wt, moved); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(src, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("new version")
	f.Close()
	if ready, why, err := d.RecipeReady(c, wt, moved); err != nil || ready || !strings.Contains(why, "changed") {
		t.Errorf("after the source changed: ready=%v %q %v", ready, why, err)
	}
	if err := d.Provision(c, wt, moved); err != nil {
		t.Fatal(err)
	}
	if ready, why, err := d.RecipeReady(c, wt, moved); err != nil || !ready {
		t.Errorf("after the new version was transferred: ready=%v %q %v", ready, why, err)
	}

	// A missing artifact is a permanent error that says where it looked.
	gone := web()
	gone.Recipe.Artifact, gone.Recipe.Checksum = "./no/such/binary", ""
	if err := d.Provision(c, target(west, 1), gone); err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing artifact: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestScaleUpAndDown(t *testing.T) {
	d, _ := provisioned(t)
	c, tg := ctx(t), target(east, 1)
	if err := d.Scale(c, tg, 3); err != nil {
		t.Fatal(err)
	}
	ins := d.Instances(tg)
	if len(ins) != 3 {
		t.Fatalf("instances = %+v, want 3", ins)
	}
	ports := map[int]bool{}
	for _, in := range ins {
		if !running(in.PID) || !in.Healthy || ports[in.Port] {
			t.Errorf("instance %+v: want running, healthy, on its own port", in)
		}
		ports[in.Port] = true
		if got, err := get(in.Port, "/pid"); err != nil || got != strconv.Itoa(in.PID) {
			t.Errorf("port %d answers pid %q (%v), want %d", in.Port, got, err, in.PID)
		}
		for _, log := range []string{"stdout.log", "stderr.log"} {
			if _, err := os.Stat(filepath.Join(in.Dir, log)); err != nil {
				t.Errorf("instance %s has no %s: %v", in.Name, log, err)
			}
		}
	}
	if st, err := d.Status(c, tg); err != nil || st.Instances != 3 || st.Healthy != 3 {
		t.Errorf("status = %+v, %v; want 3 running and healthy", st, err)
	}

	// The environment: settings, the region's Env, and the driver's own.
	body, err := get(ins[1].Port, "/env")
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"GREETING": "hello", "PORT": strconv.Itoa(ins[1].Port), "LIFEBOAT_REGION": east,
		"LIFEBOAT_INSTANCE": tg.Resource + "-1", "LIFEBOAT_FAULT_DOMAIN": "1", "LIFEBOAT_UPDATE_DOMAIN": "1",
		"DATABASE_URL": "postgres://127.0.0.1/east"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}

	// Scaling to the same size again changes nothing (drivertest-style
	// idempotency: Scale twice = once).
	if err := d.Scale(c, tg, 3); err != nil {
		t.Fatal(err)
	}
	for i, in := range d.Instances(tg) {
		if in.PID != ins[i].PID {
			t.Errorf("scaling to the same size restarted instance %d (pid %d → %d)", i, ins[i].PID, in.PID)
		}
	}

	// Down to 1: the newest go, the oldest stays as it was.
	if err := d.Scale(c, tg, 1); err != nil {
		t.Fatal(err)
	}
	left := d.Instances(tg)
	if len(left) != 1 || left[0].PID != ins[0].PID || !running(ins[0].PID) {
		t.Errorf("after scaling to 1: %+v, want instance 0 with pid %d", left, ins[0].PID)
	}
	for _, in := range ins[1:] {
		if running(in.PID) {
			t.Errorf("instance %s (pid %d) still runs after scaling down", in.Name, in.PID)
		}
		if listening(in.Port) {
			t.Errorf("port %d still listens after scaling down", in.Port)
		}
	}
	if st, _ := d.Status(c, tg); st.Instances != 1 {
		t.Errorf("status = %+v, want 1 instance", st)
	}
	if err := d.Scale(c, tg, 0); err != nil {
		t.Fatal(err)
	}
	if running(ins[0].PID) || listening(ins[0].Port) {
		t.Error("scaling to 0 left the last instance running")
	}
}

func TestScaleNeedsProvision(t *testing.T) {
	d, _ := newDriver(t)
	err := d.Scale(ctx(t), target(west, 1), 2)
	if err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "provision it first") {
		t.Errorf("scale before provision: %v", err)
	}
	if err := d.Scale(ctx(t), lifeboat.Target{Region: "mars", Resource: "x", Epoch: 1}, 1); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("unknown region: %v", err)
	}
}

func TestFaultAndUpdateDomains(t *testing.T) {
	d, _ := provisioned(t)
	tg := target(east, 1)
	if err := d.Scale(ctx(t), tg, 6); err != nil {
		t.Fatal(err)
	}
	fd, ud := map[int]int{}, map[int]int{}
	for i, in := range d.Instances(tg) {
		if in.FaultDomain != i%2 || in.UpdateDomain != i%3 {
			t.Errorf("instance %d in fault domain %d, update domain %d; want %d, %d", i, in.FaultDomain, in.UpdateDomain, i%2, i%3)
		}
		fd[in.FaultDomain]++
		ud[in.UpdateDomain]++
	}
	if fd[0] != 3 || fd[1] != 3 || ud[0] != 2 || ud[1] != 2 || ud[2] != 2 {
		t.Errorf("spread: fault domains %v, update domains %v; want even", fd, ud)
	}
}

func TestCrashedInstanceIsRestarted(t *testing.T) {
	d, _ := provisioned(t)
	tg := target(east, 1)
	if err := d.Scale(ctx(t), tg, 2); err != nil {
		t.Fatal(err)
	}
	before := d.Instances(tg)[0]
	get(before.Port, "/crash") // the connection dies with the process
	var after Instance
	eventually(t, "a new process answering on the crashed instance's port", func() bool {
		after = d.Instances(tg)[0]
		if after.PID == 0 || after.PID == before.PID || !after.Healthy {
			return false
		}
		got, err := get(after.Port, "/pid")
		return err == nil && got == strconv.Itoa(after.PID)
	})
	if after.Port != before.Port || after.Restarts != 1 || running(before.PID) {
		t.Errorf("after the crash: %+v (before %+v); want the same port, 1 restart, the old pid gone", after, before)
	}
	if !strings.Contains(after.LastExit, "exit status 1") {
		t.Errorf("last exit = %q, want exit status 1", after.LastExit)
	}
	if other := d.Instances(tg)[1]; other.Restarts != 0 {
		t.Errorf("the other instance was restarted: %+v", other)
	}

	// Killed from outside (by PID): restarted too.
	if err := syscall.Kill(after.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the killed instance restarted", func() bool {
		in := d.Instances(tg)[0]
		return in.PID != 0 && in.PID != after.PID && in.Healthy && in.Restarts == 2
	})
	if st, _ := d.Status(ctx(t), tg); st.Instances != 2 || st.Healthy != 2 {
		t.Errorf("status = %+v, want 2 running and healthy", st)
	}
}

func TestFailingProbeDropsHealthy(t *testing.T) {
	d, _ := provisioned(t)
	c, tg := ctx(t), target(east, 1)
	if err := d.Scale(c, tg, 2); err != nil {
		t.Fatal(err)
	}
	sick := d.Instances(tg)[1]
	if _, err := get(sick.Port, "/fail"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Healthy to drop to 1", func() bool {
		st, err := d.Status(c, tg)
		return err == nil && st.Healthy == 1
	})
	st, _ := d.Status(c, tg)
	if st.Instances != 2 {
		t.Errorf("status = %+v: a failing probe must not stop the instance", st)
	}
	if in := d.Instances(tg)[1]; in.Healthy || in.PID != sick.PID {
		t.Errorf("instance 1 = %+v, want unhealthy with pid %d", in, sick.PID)
	}
	if _, err := get(sick.Port, "/heal"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Healthy back to 2", func() bool {
		st, err := d.Status(c, tg)
		return err == nil && st.Healthy == 2
	})
}

func TestRollingRestartOneUpdateDomainAtATime(t *testing.T) {
	d, rec := provisioned(t)
	c, tg := ctx(t), target(east, 1)
	if err := d.Scale(c, tg, 6); err != nil {
		t.Fatal(err)
	}
	before := d.Instances(tg)
	rec.take()
	if err := d.RollingRestart(c, tg); err != nil {
		t.Fatal(err)
	}
	events := rec.take()
	sort.Slice(events, func(i, j int) bool { return events[i].Seq < events[j].Seq })

	stops, starts := map[int]int{}, map[int]int{}
	down := map[int]bool{} // instances stopped and not yet healthy again
	var order []int        // update domains in the order they went down
	for _, e := range events {
		switch e.Kind {
		case EventStop:
			stops[e.Index]++
			down[e.Index] = true
			if len(order) == 0 || order[len(order)-1] != e.UpdateDomain {
				order = append(order, e.UpdateDomain)
			}
		case EventStart:
			starts[e.Index]++
		case EventHealthy:
			delete(down, e.Index)
		case EventExit:
			t.Errorf("instance %d crashed during the rolling restart: %s", e.Index, e.Err)
		}
		domains := map[int]bool{}
		for i := range down {
			domains[before[i].UpdateDomain] = true
		}
		if len(domains) > 1 {
			t.Fatalf("at %s of instance %d, update domains %v were down at once", e.Kind, e.Index, domains)
		}
	}
	if fmt.Sprint(order) != "[0 1 2]" {
		t.Errorf("update domains went down in order %v, want [0 1 2]", order)
	}
	for i := range before {
		if stops[i] != 1 || starts[i] != 1 {
			t.Errorf("instance %d stopped %d and started %d times, want once each", i, stops[i], starts[i])
		}
	}
	for i, in := range d.Instances(tg) {
		if in.PID == before[i].PID || !in.Healthy || in.Port != before[i].Port || in.Restarts != 0 || running(before[i].PID) {
			t.Errorf("instance %d after the rolling restart: %+v (before: pid %d)", i, in, before[i].PID)
		}
	}
}

func TestStaleEpochRefused(t *testing.T) {
	d, _ := newDriver(t)
	c := ctx(t)
	if err := d.Provision(c, target(east, 5), web()); err != nil {
		t.Fatal(err)
	}
	if err := d.Scale(c, target(east, 5), 1); err != nil {
		t.Fatal(err)
	}
	stale := target(east, 4)
	for name, call := range map[string]func() error{
		"provision": func() error { return d.Provision(c, stale, web()) },
		"scale":     func() error { return d.Scale(c, stale, 3) },
		"restart":   func() error { return d.RollingRestart(c, stale) },
		"delete":    func() error { return d.Delete(c, stale) },
	} {
		err := call()
		if !errors.Is(err, lifeboat.ErrStaleEpoch) || lifeboat.IsRetryable(err) {
			t.Errorf("%s for epoch 4 after 5: %v; want a permanent stale epoch", name, err)
		}
	}
	if st, _ := d.Status(c, target(east, 5)); st.Epoch != 5 || st.Instances != 1 {
		t.Errorf("status = %+v, want epoch 5 and the 1 instance untouched", st)
	}
	// A newer epoch takes over, and the epoch survives a delete.
	if err := d.Delete(c, target(east, 6)); err != nil {
		t.Fatal(err)
	}
	if err := d.Provision(c, target(east, 5), web()); !errors.Is(err, lifeboat.ErrStaleEpoch) {
		t.Errorf("provision for epoch 5 after a delete at 6: %v", err)
	}
	if st, _ := d.Status(c, target(east, 6)); st.Exists || st.Epoch != 6 {
		t.Errorf("status after delete = %+v, want gone at epoch 6", st)
	}
	// A driver started again on the same directories remembers.
	d.Close()
	again, err := New(d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := again.Provision(c, target(east, 5), web()); !errors.Is(err, lifeboat.ErrStaleEpoch) {
		t.Errorf("a restarted driver accepted epoch 5 after 6: %v", err)
	}
	if st, _ := again.Status(c, target(east, 6)); st.Epoch != 6 {
		t.Errorf("a restarted driver reports %+v, want epoch 6", st)
	}
}

func TestDeleteAndCloseLeaveNothingBehind(t *testing.T) {
	d, _ := provisioned(t)
	c := ctx(t)
	te, tw := target(east, 1), target(west, 1)
	if err := d.Provision(c, tw, web()); err != nil {
		t.Fatal(err)
	}
	if err := d.Scale(c, te, 3); err != nil {
		t.Fatal(err)
	}
	if err := d.Scale(c, tw, 2); err != nil {
		t.Fatal(err)
	}
	inEast, inWest := d.Instances(te), d.Instances(tw)

	if err := d.Delete(c, te); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(c, te); err != nil { // idempotent
		t.Fatal(err)
	}
	for _, in := range inEast {
		if running(in.PID) || listening(in.Port) {
			t.Errorf("deleted instance %s: pid %d running=%v, port %d listening=%v", in.Name, in.PID, running(in.PID), in.Port, listening(in.Port))
		}
	}
	if st, _ := d.Status(c, te); st.Exists {
		t.Error("the deleted scale set still exists")
	}
	reg := d.cfg.Regions[east]
	if _, err := os.Stat(setDir(reg, te.Resource)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance dirs remain after delete: %v", err)
	}
	if ready, why, _ := d.RecipeReady(c, te, web()); !ready {
		t.Errorf("delete must keep the artifact copy: %s", why)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for _, in := range inWest {
		if running(in.PID) || listening(in.Port) {
			t.Errorf("after Close, instance %s: pid %d running=%v, port %d listening=%v", in.Name, in.PID, running(in.PID), in.Port, listening(in.Port))
		}
	}
	if err := d.Scale(c, tw, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("scale after close: %v, want ErrClosed", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	d, rec := newDriver(t, func(c *Config) { c.StopGrace = 100 * time.Millisecond })
	c, tg := ctx(t), target(east, 1)
	stubborn := web()
	stubborn.Recipe.Settings = map[string]string{"IGNORE_TERM": "1"}
	if err := d.Provision(c, tg, stubborn); err != nil {
		t.Fatal(err)
	}
	if err := d.Scale(c, tg, 1); err != nil {
		t.Fatal(err)
	}
	in := d.Instances(tg)[0]
	if err := d.Scale(c, tg, 0); err != nil {
		t.Fatal(err)
	}
	if running(in.PID) || listening(in.Port) {
		t.Errorf("an instance that ignores SIGTERM survived the scale down (pid %d)", in.PID)
	}
	for _, e := range rec.take() {
		if e.Kind == EventExit {
			t.Errorf("the stopped instance was taken for a crash: %+v", e)
		}
	}
}

func TestBadCommandIsReported(t *testing.T) {
	d, _ := newDriver(t)
	c := context.Background()
	tg := target(east, 1)
	broken := web()
	broken.Recipe.Command = []string{"./no-such-program"}
	if err := d.Provision(c, tg, broken); err != nil {
		t.Fatal(err)
	}
	err := d.Scale(c, tg, 1)
	if err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "cannot start") || !strings.Contains(err.Error(), "no-such-program") {
		t.Errorf("scale with a missing program: %v; want a permanent error saying it cannot start", err)
	}
	t.Log(err)
}

// The planner's failover, failback and switchovers through real processes
// (compute) and the fake for the rest.
func TestProcedures(t *testing.T) {
	d, _ := newDriver(t)
	worker := web()
	worker.Standby, worker.Instances, worker.Probe = lifeboat.StandbyCold, lifeboat.Instances{Primary: 2, Secondary: 1}, &lifeboat.Probe{TCP: true}
	s := &lifeboat.Spec{
		Service: "shop",
		Regions: lifeboat.Regions{Primary: lifeboat.Region{Name: west}, Secondary: lifeboat.Region{Name: east}},
		Units: map[string]lifeboat.Unit{
			"storefront": {
				Compute:   map[string]lifeboat.Compute{"web": web()},
				Databases: map[string]lifeboat.Database{"orders": {Engine: "postgres", DRMode: lifeboat.DRGeoReplica}},
				Traffic:   map[string]lifeboat.Traffic{"www": {Names: []string{"shop.example.test"}, Target: "web"}},
			},
			"reports": {Compute: map[string]lifeboat.Compute{"worker": worker}},
		},
	}
	w := fake.New()
	w.Seed(s, nil)
	if err := d.Seed(ctx(t), s, nil); err != nil {
		t.Fatal(err)
	}
	drivers := w.Drivers()
	drivers.Compute = d
	st := drivertest.Procedures(t, s, drivers)
	for _, r := range st.SortedResources() {
		if r.Kind != lifeboat.KindCompute {
			continue
		}
		tg := lifeboat.Target{Region: r.Region, Resource: r.Name, Epoch: st.Epoch}
		ss, err := d.Status(ctx(t), tg)
		if err != nil || ss.Exists != r.Exists || ss.Instances != r.Instances || ss.Healthy != r.Instances {
			t.Errorf("%s: driver says %+v (%v), state says exists=%v instances=%d", r.Name, ss, err, r.Exists, r.Instances)
		}
	}
}

// TestScaleToHealthyTime measures the time from 0 to 3 healthy instances
// (it asserts nothing about it).
func TestScaleToHealthyTime(t *testing.T) {
	d, _ := provisioned(t)
	tg := target(east, 1)
	start := time.Now()
	if err := d.Scale(ctx(t), tg, 3); err != nil {
		t.Fatal(err)
	}
	t.Logf("scale 0→3 healthy: %s", time.Since(start))
}

func BenchmarkScaleToThreeHealthy(b *testing.B) {
	dir := b.TempDir()
	cfg := DefaultConfig()
	cfg.Regions = map[string]Region{east: {Dir: dir, Host: "127.0.0.1", PortBase: 20000 + rand.N(120)*100, Ports: 50}}
	d, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	c, tg := context.Background(), target(east, 1)
	if err := d.Provision(c, tg, web()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := d.Scale(c, tg, 3); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := d.Scale(c, tg, 0); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// A port taken by another process while its instance was down: the
// instance comes back on another port of the block.
func TestRestartMovesOffATakenPort(t *testing.T) {
	d, _ := newDriver(t, func(c *Config) { c.Backoff.Initial, c.Backoff.Max = 3*time.Second, 3*time.Second })
	c, tg := ctx(t), target(east, 1)
	if err := d.Provision(c, tg, web()); err != nil {
		t.Fatal(err)
	}
	if err := d.Scale(c, tg, 1); err != nil {
		t.Fatal(err)
	}
	before := d.Instances(tg)[0]
	get(before.Port, "/crash")
	eventually(t, "the crashed instance to be down", func() bool { return d.Instances(tg)[0].PID == 0 })
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(before.Port)))
	if err != nil {
		t.Skipf("the instance restarted before the test could take its port: %v", err)
	}
	defer l.Close()
	var after Instance
	eventually(t, "the instance back on another port", func() bool {
		after = d.Instances(tg)[0]
		return after.PID != 0 && after.Healthy
	})
	if after.Port == before.Port {
		t.Fatalf("the instance is on its old port %d, which the test holds", after.Port)
	}
	if got, err := get(after.Port, "/pid"); err != nil || got != strconv.Itoa(after.PID) {
		t.Errorf("port %d answers %q (%v), want pid %d", after.Port, got, err, after.PID)
	}
}
