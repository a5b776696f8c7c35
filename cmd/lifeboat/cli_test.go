package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// These tests run the real lifeboat binary, as a user would, on a copy of
// the example service (script driver, real /bin/sh processes, an embedded
// etcd member in the copy's .lifeboat directory).

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lifeboat-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "lifeboat")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// example copies the example service into a temporary directory.
func example(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "examples", "script")
	for _, f := range []string{"lifeboat.yaml", "world.sh"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type result struct {
	stdout, stderr string
	code           int
}

func lifeboatIn(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"WORLD_DELAY=0"}, env...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{o.String(), e.String(), code}
}

func mustRun(t *testing.T, dir string, args ...string) result {
	t.Helper()
	r := lifeboatIn(t, dir, nil, args...)
	if r.code != 0 {
		t.Fatalf("lifeboat %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func stateOf(t *testing.T, dir string) *lifeboat.State {
	t.Helper()
	r := mustRun(t, dir, "status", "-o", "json")
	var v struct {
		State *lifeboat.State `json:"state"`
		Run   *lifeboat.Run   `json:"run"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.stdout)
	}
	return v.State
}

func TestValidateExample(t *testing.T) {
	dir := example(t)
	r := mustRun(t, dir, "validate")
	if !strings.Contains(r.stdout, "is valid") {
		t.Fatalf("validate said:\n%s", r.stdout)
	}
}

func TestValidateBrokenSpecExitsTwo(t *testing.T) {
	dir := example(t)
	spec := filepath.Join(dir, "lifeboat.yaml")
	b, _ := os.ReadFile(spec)
	broken := strings.Replace(string(b), "standby: warm", "standby: lukewarm", 1)
	broken = strings.Replace(broken, "rto: 5m", "rto: 5 minutes", 1)
	os.WriteFile(spec, []byte(broken), 0o644)
	r := lifeboatIn(t, dir, nil, "validate")
	if r.code != exitSpec {
		t.Fatalf("exit %d, want %d\n%s%s", r.code, exitSpec, r.stdout, r.stderr)
	}
	for _, want := range []string{"lifeboat.yaml:", "objectives.rto", "units.storefront.compute.web.standby", "use cold, warm or hot"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	// Every command refuses a broken spec the same way, before touching anything.
	if r := lifeboatIn(t, dir, nil, "failover", "--yes"); r.code != exitSpec {
		t.Fatalf("failover on a broken spec: exit %d", r.code)
	}
	if _, err := os.Stat(filepath.Join(dir, "world")); err == nil {
		t.Fatal("failover on a broken spec touched the world")
	}
}

func TestMissingSpecSaysWhatToDo(t *testing.T) {
	r := lifeboatIn(t, t.TempDir(), nil, "status")
	if r.code != exitSpec || !strings.Contains(r.stderr, "-f FILE") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
}

func TestFailoverAndFailback(t *testing.T) {
	dir := example(t)
	st := stateOf(t, dir)
	if st.Active != "west" || st.Epoch != 1 {
		t.Fatalf("initial state: active %s epoch %d", st.Active, st.Epoch)
	}
	plan := mustRun(t, dir, "plan", "failover")
	for _, want := range []string{"database.promote shop-storefront-orders-east", "traffic.switch", "RTO", "RPO"} {
		if !strings.Contains(plan.stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan.stdout)
		}
	}
	// Without a terminal and without --yes, nothing happens.
	if r := lifeboatIn(t, dir, nil, "failover"); r.code != exitRefused {
		t.Fatalf("unconfirmed failover: exit %d\n%s", r.code, r.stderr)
	}
	mustRun(t, dir, "failover", "--yes")
	st = stateOf(t, dir)
	if st.Active != "east" || st.Epoch != 2 || st.Run != "" {
		t.Fatalf("after failover: active %s epoch %d run %q", st.Active, st.Epoch, st.Run)
	}
	if r := st.Resources["shop-storefront-orders-east"]; r.Role != lifeboat.DBPrimary {
		t.Fatalf("orders in east is %s, want primary", r.Role)
	}
	// The world agrees with the state: ask the script's own status.
	world, _ := os.ReadFile(filepath.Join(dir, "world", "shop-storefront-orders-east"))
	if !strings.Contains(string(world), "role=primary") {
		t.Fatalf("world's orders-east:\n%s", world)
	}
	// Failing over to where the service already is, is refused with a way out.
	if r := lifeboatIn(t, dir, nil, "failover", "--yes", "--to", "east"); r.code != exitRefused || !strings.Contains(r.stderr, "failback") {
		t.Fatalf("failover to the active region: exit %d\n%s", r.code, r.stderr)
	}
	if r := lifeboatIn(t, dir, nil, "failover", "--yes", "--to", "central"); r.code != exitRefused || !strings.Contains(r.stderr, "witness") {
		t.Fatalf("failover to the witness: exit %d\n%s", r.code, r.stderr)
	}
	mustRun(t, dir, "failback", "--yes")
	st = stateOf(t, dir)
	if st.Active != "west" || st.Epoch != 3 {
		t.Fatalf("after failback: active %s epoch %d", st.Active, st.Epoch)
	}
	if r := st.Resources["shop-storefront-orders-west"]; r.Role != lifeboat.DBPrimary {
		t.Fatalf("orders in west is %s, want primary", r.Role)
	}
	if r := st.Resources["shop-storefront-orders-east"]; r.Role != lifeboat.DBReplica {
		t.Fatalf("orders in east is %s, want replica", r.Role)
	}
	if r := st.Resources["shop-reports-worker-east"]; r.Exists {
		t.Fatal("the failover group's worker in east still exists after failback")
	}
	h := mustRun(t, dir, "history", "-o", "json")
	var runs []*lifeboat.Run
	if err := json.Unmarshal([]byte(h.stdout), &runs); err != nil || len(runs) != 2 {
		t.Fatalf("history: %v, %d runs\n%s", err, len(runs), h.stdout)
	}
	for _, r := range runs {
		if r.Status != lifeboat.RunSucceeded {
			t.Errorf("run %s is %s", r.ID, r.Status)
		}
	}
	u := mustRun(t, dir, "units")
	for _, want := range []string{"shop-storefront-web-east", "secondary/permanent", "secondary/failover", "prod"} {
		if !strings.Contains(u.stdout, want) {
			t.Errorf("units lacks %q:\n%s", want, u.stdout)
		}
	}
}

// A failing action fails the run; after the cause is fixed, resume finishes it.
func TestResumeAfterFailure(t *testing.T) {
	dir := example(t)
	spec := filepath.Join(dir, "lifeboat.yaml")
	b, _ := os.ReadFile(spec)
	// Make traffic switching fail for good until the file says otherwise.
	broken := strings.Replace(string(b), "traffic.switch: ./world.sh traffic-switch",
		"traffic.switch: test -f ./dns-fixed && ./world.sh traffic-switch", 1)
	os.WriteFile(spec, []byte(broken), 0o644)
	r := lifeboatIn(t, dir, nil, "failover", "--yes")
	if r.code != exitFailed {
		t.Fatalf("failover with broken traffic: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	st := stateOf(t, dir)
	if st.Run == "" || st.Active != "west" {
		t.Fatalf("after the failed run: run %q active %s", st.Run, st.Active)
	}
	if r := lifeboatIn(t, dir, nil, "failback", "--yes"); r.code != exitRefused {
		t.Fatalf("a new run while one is unfinished: exit %d", r.code)
	}
	os.WriteFile(filepath.Join(dir, "dns-fixed"), nil, 0o644)
	mustRun(t, dir, "resume")
	st = stateOf(t, dir)
	if st.Run != "" || st.Active != "east" {
		t.Fatalf("after resume: run %q active %s", st.Run, st.Active)
	}
}

// lifeboat cancel, from a second process, stops a failover that another
// process is running and undoes what can be undone.
func TestCancelFromAnotherProcess(t *testing.T) {
	dir := example(t)
	// Mutating actions take 30 s, so the failover is surely under way when
	// the cancel comes; cancelling kills them, so the test does not wait.
	fo := exec.Command(binary, "failover", "--yes")
	fo.Dir = dir
	fo.Env = append(os.Environ(), "WORLD_DELAY=30")
	var foOut bytes.Buffer
	fo.Stdout, fo.Stderr = &foOut, &foOut
	if err := fo.Start(); err != nil {
		t.Fatal(err)
	}
	defer fo.Process.Kill()
	// Wait (by condition, not by time) until the warm web tier is scaling.
	var run string
	for i := 0; ; i++ {
		if i > 600 {
			t.Fatalf("the failover never started scaling:\n%s", foOut.String())
		}
		time.Sleep(100 * time.Millisecond)
		r := lifeboatIn(t, dir, nil, "status", "-o", "json")
		var v struct {
			Run *lifeboat.Run `json:"run"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil || v.Run == nil {
			continue
		}
		run = v.Run.ID
		h := lifeboatIn(t, dir, nil, "history", run, "-o", "json")
		var j struct {
			Journal []lifeboat.Record `json:"journal"`
		}
		json.Unmarshal([]byte(h.stdout), &j)
		if slices.ContainsFunc(j.Journal, func(r lifeboat.Record) bool {
			return r.Step == "compute.scale shop-storefront-web-east" && r.Kind == lifeboat.RecAttempt
		}) {
			break
		}
	}
	c := mustRun(t, dir, "cancel")
	if !strings.Contains(c.stdout, "cancelled") {
		t.Fatalf("cancel said:\n%s", c.stdout)
	}
	err := fo.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailed {
		t.Fatalf("the cancelled failover exited with %v\n%s", err, foOut.String())
	}
	st := stateOf(t, dir)
	if st.Run != "" || st.Active != "west" {
		t.Fatalf("after cancel: run %q, active %s", st.Run, st.Active)
	}
	if r := st.Resources["shop-storefront-web-east"]; r.Instances != 0 {
		t.Fatalf("web in east has %d instances after cancel, want 0 (its warm standby level)", r.Instances)
	}
	world, _ := os.ReadFile(filepath.Join(dir, "world", "shop-storefront-web-east"))
	if strings.Contains(string(world), "instances=3") {
		t.Fatalf("the world still has 3 instances in east:\n%s", world)
	}
	h := mustRun(t, dir, "history", "-o", "json")
	if !strings.Contains(h.stdout, `"status": "cancelled"`) {
		t.Fatalf("history:\n%s", h.stdout)
	}
}

// Without a terminal, an approval step pauses the run (exit 3); status says
// what waits, and resume --approve goes on.
func TestApprovalWithoutATerminal(t *testing.T) {
	dir := example(t)
	spec := filepath.Join(dir, "lifeboat.yaml")
	b, _ := os.ReadFile(spec)
	withHook := strings.Replace(string(b), "hooks:\n", `hooks:
  - name: dashboards
    before: traffic.switch
    approval: "Are the dashboards green?"
`, 1)
	os.WriteFile(spec, []byte(withHook), 0o644)
	r := lifeboatIn(t, dir, nil, "failover", "--yes")
	if r.code != exitWaiting || !strings.Contains(r.stdout+r.stderr, `--approve "approval dashboards"`) {
		t.Fatalf("exit %d, want %d\n%s%s", r.code, exitWaiting, r.stdout, r.stderr)
	}
	if st := stateOf(t, dir); st.Active != "west" || st.Run == "" {
		t.Fatalf("traffic moved before the approval: active %s run %q", st.Active, st.Run)
	}
	s := mustRun(t, dir, "status")
	if !strings.Contains(s.stdout, "Are the dashboards green?") {
		t.Fatalf("status does not say what waits:\n%s", s.stdout)
	}
	mustRun(t, dir, "resume", "--approve", "approval dashboards")
	if st := stateOf(t, dir); st.Active != "east" || st.Run != "" {
		t.Fatalf("after approval: active %s run %q", st.Active, st.Run)
	}
}

// status asks the traffic driver (here world.sh's traffic.status) where the
// public names go now, and says when it fell back to the recorded state.
func TestStatusAsksTheTrafficDriver(t *testing.T) {
	dir := example(t)
	var v struct {
		Traffic []struct {
			Name, Region string
			Live         bool
			Error        string
		} `json:"traffic"`
	}
	r := mustRun(t, dir, "status", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || len(v.Traffic) != 2 {
		t.Fatalf("status traffic: %v\n%s", err, r.stdout)
	}
	for _, n := range v.Traffic {
		if !n.Live || n.Region != "west" {
			t.Errorf("%s: region %s live %v (%s), want west, asked of the driver", n.Name, n.Region, n.Live, n.Error)
		}
	}
	// A traffic driver that cannot answer: the recorded route, and why.
	spec := filepath.Join(dir, "lifeboat.yaml")
	b, _ := os.ReadFile(spec)
	os.WriteFile(spec, []byte(strings.Replace(string(b), "traffic.status: ./world.sh traffic-status", "traffic.status: exit 75", 1)), 0o644)
	r = mustRun(t, dir, "status")
	if !strings.Contains(r.stdout, "west (recorded)") || !strings.Contains(r.stdout, "did not answer") {
		t.Fatalf("status with a failing traffic driver:\n%s", r.stdout)
	}
}
