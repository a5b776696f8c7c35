package script

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/drivertest"
)

// example copies the example spec and world.sh into a temporary directory
// and loads the spec from there, so world.sh keeps its world in dir/world.
func example(t *testing.T) (*lifeboat.Spec, string) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"lifeboat.yaml", "world.sh"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "script", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "lifeboat.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var s lifeboat.Spec
	if err := yaml.Unmarshal(b, &s); err != nil {
		t.Fatalf("example spec: %v", err)
	}
	s.File = filepath.Join(dir, "lifeboat.yaml")
	t.Setenv("WORLD_DELAY", "0")
	t.Setenv("LIFEBOAT_WORLD", "") // world.sh falls back to $LIFEBOAT_SPEC_DIR/world
	return &s, dir
}

// driverWith builds a driver running in a temporary directory with the
// given actions.
func driverWith(t *testing.T, timeout time.Duration, actions map[string]string) (*Driver, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.SpecDir = cfg.Dir
	cfg.Actions = actions
	if timeout > 0 {
		cfg.Timeout = timeout
	}
	d, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, cfg.Dir
}

func target(unit, comp, region string, epoch uint64) lifeboat.Target {
	res := lifeboat.ResourceName("shop", unit, comp, region)
	if comp == "www" {
		res = lifeboat.TrafficName("shop", unit, comp)
	}
	return lifeboat.Target{Service: "shop", Unit: unit, Component: comp, Region: region, Resource: res, Epoch: epoch, Run: "run-1", Step: "step-1"}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestFailoverAndFailbackWithWorldScript drives a failover and a failback
// of the example through lifeboat.Bind and the script driver, each step a
// real world.sh process; each step must not hold before it runs and must
// hold after.
func TestFailoverAndFailbackWithWorldScript(t *testing.T) {
	ctx := context.Background()
	s, dir := example(t)
	sd, err := New(s)
	must(t, err)
	d := sd.Drivers()

	// Before anything ran, the world is the example's initial state.
	if ss, err := d.Compute.Status(ctx, target("storefront", "web", "east", 1)); err != nil || !ss.Exists || ss.Instances != 0 || ss.Epoch != 1 {
		t.Fatalf("east web = %+v, %v; want warm (exists, 0 instances) at epoch 1", ss, err)
	}
	if ss, _ := d.Compute.Status(ctx, target("reports", "worker", "east", 1)); ss.Exists {
		t.Fatalf("east worker = %+v, want cold (absent)", ss)
	}
	if r, err := d.Traffic.Status(ctx, target("storefront", "www", "west", 1), nil); err != nil || r.Region != "west" || r.Since.IsZero() {
		t.Fatalf("route = %+v, %v; want west with a since time", r, err)
	}
	if b, err := d.Backup.Latest(ctx, target("reports", "warehouse", "east", 1)); err != nil || b.Region != "east" || b.ID == "" {
		t.Fatalf("latest backup = %+v, %v; want a scheduled backup kept in east", b, err)
	}
	must(t, d.Scripts.Exec(ctx, target("", "", "", 2), "./world.sh notify", nil))

	end := drivertest.Procedures(t, s, d)
	e := end.Epoch

	for res, want := range map[string]lifeboat.DatabaseRole{
		"orders-west": lifeboat.DBPrimary, "orders-east": lifeboat.DBReplica, "warehouse-west": lifeboat.DBPrimary,
	} {
		comp, region, _ := strings.Cut(res, "-")
		unit := map[string]string{"orders": "storefront", "warehouse": "reports"}[comp]
		st, err := d.Database.Status(ctx, target(unit, comp, region, e))
		if err != nil || st.Role != want || st.Epoch != e {
			t.Errorf("%s = %+v, %v; want %s at epoch %d", res, st, err, want, e)
		}
	}
	if r, _ := d.Traffic.Status(ctx, target("storefront", "www", "west", e), nil); r.Region != "west" || r.Epoch != e {
		t.Errorf("route = %+v, want back in west at epoch %d", r, e)
	}
	web := s.Units["storefront"].Compute["web"].Instances.Primary
	if ss, _ := d.Compute.Status(ctx, target("storefront", "web", "west", e)); ss.Instances != web || ss.Healthy != web {
		t.Errorf("west web = %+v, want %d healthy instances", ss, web)
	}

	// A late action of the failover run (epoch 2) is refused by the world,
	// and the refusal names the epochs.
	err = d.Database.Promote(ctx, target("storefront", "orders", "east", 2))
	if err == nil || lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), fmt.Sprintf("older than epoch %d", e)) {
		t.Errorf("promote for epoch 2 after epoch %d = %v, want a permanent refusal naming the epochs", e, err)
	}
	// The world lives in the spec's directory, one file per resource.
	if _, err := os.Stat(filepath.Join(dir, "world", "shop-storefront-orders-west")); err != nil {
		t.Errorf("world file: %v", err)
	}
}

// gone reports whether a process has exited (a zombie waiting for a reaper
// counts: it runs nothing).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// waitGone waits for the process to exit; the bound only keeps a broken
// test from hanging.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 1000 && !gone(pid); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !gone(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL) // ours: started by this test's command
		t.Fatalf("process %d is still running after its command was killed", pid)
	}
}

func readPID(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("the command did not record its child's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	// The shell starts a child and waits for it; on timeout both must die,
	// not only the shell.
	d, dir := driverWith(t, 500*time.Millisecond, map[string]string{
		lifeboat.ActComputeScale: "sleep 1000 & echo $! > child.pid; echo about to wait >&2; wait",
	})
	err := d.Drivers().Compute.Scale(context.Background(), target("storefront", "web", "east", 2), 3)
	if err == nil {
		t.Fatal("want a timeout error")
	}
	t.Log(err)
	if !lifeboat.IsRetryable(err) {
		t.Errorf("a timeout should be retryable: %v", err)
	}
	for _, want := range []string{"timed out after 500ms", "process group", "was killed", "drivers.script.timeout", "about to wait", "sleep 1000"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q should mention %q", err, want)
		}
	}
	waitGone(t, readPID(t, filepath.Join(dir, "child.pid")))
}

func TestCancelKillsProcessGroup(t *testing.T) {
	d, dir := driverWith(t, time.Hour, map[string]string{
		lifeboat.ActComputeScale: "sleep 1000 & echo $! > child.tmp; mv child.tmp child.pid; wait",
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Drivers().Compute.Scale(ctx, target("storefront", "web", "east", 2), 3) }()
	pidFile := filepath.Join(dir, "child.pid")
	for i := 0; i < 1000; i++ {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	err := <-done
	if err == nil || !errors.Is(err, context.Canceled) || !lifeboat.IsRetryable(err) {
		t.Fatalf("cancelled scale = %v, want a retryable cancellation", err)
	}
	if !strings.Contains(err.Error(), "process group") {
		t.Errorf("error %q should say the process group was killed", err)
	}
	waitGone(t, readPID(t, pidFile))
}

func TestBackgroundChildDoesNotHangSuccess(t *testing.T) {
	// A command that leaves something running with its stdout open still
	// succeeds once it exits (after a short grace for the pipes).
	d, dir := driverWith(t, time.Minute, map[string]string{
		lifeboat.ActComputeDelete: "sleep 1000 & echo $! > child.pid; exit 0",
	})
	err := d.Drivers().Compute.Delete(context.Background(), target("storefront", "web", "east", 2))
	pid := readPID(t, filepath.Join(dir, "child.pid"))
	_ = syscall.Kill(pid, syscall.SIGKILL) // started by this test's command
	if err != nil {
		t.Fatalf("delete = %v, want success", err)
	}
}

func TestExitStatus(t *testing.T) {
	d, _ := driverWith(t, 0, map[string]string{
		lifeboat.ActDatabasePromote: "echo replica is catching up >&2; exit 75",
		lifeboat.ActDatabaseFence:   "for i in 1 2 3 4 5 6 7 8; do echo line $i >&2; done; exit 3",
		lifeboat.ActDatabaseRejoin:  "kill -9 $$",
	})
	db := d.Drivers().Database
	ctx := context.Background()
	err := db.Promote(ctx, target("storefront", "orders", "east", 2))
	if err == nil || !lifeboat.IsRetryable(err) || !strings.Contains(err.Error(), "status 75") || !strings.Contains(err.Error(), "replica is catching up") {
		t.Errorf("exit 75 = %v, want retryable with status and stderr", err)
	}
	err = db.Fence(ctx, target("storefront", "orders", "west", 2))
	t.Log(err)
	if err == nil || lifeboat.IsRetryable(err) {
		t.Fatalf("exit 3 = %v, want a permanent failure", err)
	}
	for _, want := range []string{"database.fence shop-storefront-orders-west", "status 3", "for i in", "line 4", "line 8"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q should mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "line 3") {
		t.Errorf("error %q should quote only the last 5 stderr lines", err)
	}
	err = db.Rejoin(ctx, target("storefront", "orders", "west", 2), target("storefront", "orders", "east", 2))
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("a command killed by a signal = %v, want an error saying so", err)
	}
}

func TestStatusParsing(t *testing.T) {
	ctx := context.Background()
	tg := target("storefront", "web", "east", 2)
	good := []struct {
		action, out string
		check       func(d lifeboat.Drivers) error
	}{
		{lifeboat.ActComputeStatus, "# a comment\n\nexists=true\ninstances=3\nhealthy=2\nepoch=7\n", func(d lifeboat.Drivers) error {
			ss, err := d.Compute.Status(ctx, tg)
			if err == nil && ss != (lifeboat.ScaleSet{Exists: true, Instances: 3, Healthy: 2, Epoch: 7}) {
				err = fmt.Errorf("got %+v", ss)
			}
			return err
		}},
		{lifeboat.ActDatabaseStatus, "role=replica\nepoch=2\nlag_bytes=1024\nlag=1.5s", func(d lifeboat.Drivers) error {
			st, err := d.Database.Status(ctx, tg)
			if err == nil && st != (lifeboat.DatabaseStatus{Role: lifeboat.DBReplica, Epoch: 2, LagBytes: 1024, Lag: 1500 * time.Millisecond}) {
				err = fmt.Errorf("got %+v", st)
			}
			return err
		}},
		{lifeboat.ActBackupLatest, "id=\n", func(d lifeboat.Drivers) error {
			b, err := d.Backup.Latest(ctx, tg)
			if err == nil && b != (lifeboat.BackupInfo{}) {
				err = fmt.Errorf("got %+v, want no backup", b)
			}
			return err
		}},
		{lifeboat.ActBackupLatest, "id=b1\ntaken=2025-03-01T12:00:00Z\nregion=east\nepoch=3", func(d lifeboat.Drivers) error {
			b, err := d.Backup.Latest(ctx, tg)
			want := lifeboat.BackupInfo{ID: "b1", Taken: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Region: "east", Epoch: 3}
			if err == nil && (b.ID != want.ID || !b.Taken.Equal(want.Taken) || b.Region != want.Region || b.Epoch != want.Epoch) {
				err = fmt.Errorf("got %+v", b)
			}
			return err
		}},
		{lifeboat.ActTrafficStatus, "region=\nepoch=4\nsince=", func(d lifeboat.Drivers) error {
			r, err := d.Traffic.Status(ctx, tg, nil)
			if err == nil && (r.Region != "" || r.Epoch != 4 || !r.Since.IsZero()) {
				err = fmt.Errorf("got %+v, want routed nowhere", r)
			}
			return err
		}},
	}
	for _, c := range good {
		d, dir := driverWith(t, 0, map[string]string{c.action: "cat out.txt"})
		must(t, os.WriteFile(filepath.Join(dir, "out.txt"), []byte(c.out), 0o644))
		if err := c.check(d.Drivers()); err != nil {
			t.Errorf("%s printing %q: %v", c.action, c.out, err)
		}
	}

	bad := []struct{ action, out, want string }{
		{lifeboat.ActComputeStatus, "exists=true\ninstances=three\n", `line 2 "instances=three": want a whole number`},
		{lifeboat.ActComputeStatus, "exists=yes\n", `line 1 "exists=yes": want true or false`},
		{lifeboat.ActComputeStatus, "exists=true\nsize=3\n", `unknown key "size"`},
		{lifeboat.ActComputeStatus, "exists true\n", `line 1 "exists true": want key=value`},
		{lifeboat.ActComputeStatus, "exists=true\nexists=false\n", "exists already given on line 1"},
		{lifeboat.ActComputeStatus, "instances=3\n", "missing exists="},
		{lifeboat.ActComputeStatus, "exists=true\ninstances=-1\n", "0 or more"},
		{lifeboat.ActDatabaseStatus, "role=leader\n", `"role=leader": want primary, replica, fenced, backups or absent`},
		{lifeboat.ActDatabaseStatus, "role=replica\nlag=2 seconds\n", "want a Go duration"},
		{lifeboat.ActBackupLatest, "id=b1\ntaken=yesterday\n", `"taken=yesterday": want an RFC 3339 time`},
		{lifeboat.ActBackupLatest, "id=b1\n", "missing taken="},
		{lifeboat.ActTrafficStatus, "epoch=1\n", "missing region="},
	}
	for _, c := range bad {
		d, dir := driverWith(t, 0, map[string]string{c.action: "cat out.txt"})
		must(t, os.WriteFile(filepath.Join(dir, "out.txt"), []byte(c.out), 0o644))
		var err error
		dr := d.Drivers()
		switch c.action {
		case lifeboat.ActComputeStatus:
			_, err = dr.Compute.Status(ctx, tg)
		case lifeboat.ActDatabaseStatus:
			_, err = dr.Database.Status(ctx, tg)
		case lifeboat.ActBackupLatest:
			_, err = dr.Backup.Latest(ctx, tg)
		case lifeboat.ActTrafficStatus:
			_, err = dr.Traffic.Status(ctx, tg, nil)
		}
		if err == nil {
			t.Errorf("%s printing %q: want an error", c.action, c.out)
			continue
		}
		t.Log(err)
		for _, want := range []string{c.want, c.action, "`cat out.txt`", tg.Resource} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s printing %q: error %q should mention %q", c.action, c.out, err, want)
			}
		}
		if lifeboat.IsRetryable(err) {
			t.Errorf("bad status output should not be retryable: %v", err)
		}
	}
}

func TestMissingAction(t *testing.T) {
	d, _ := driverWith(t, 0, map[string]string{lifeboat.ActComputeStatus: "true"})
	err := d.Drivers().Database.Promote(context.Background(), target("storefront", "orders", "east", 2))
	if err == nil || lifeboat.IsRetryable(err) {
		t.Fatalf("missing action = %v, want a permanent error", err)
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "add drivers.script.actions.database.promote") {
		t.Errorf("error %q should say which key to add", err)
	}
}

// env runs a command that saves its LIFEBOAT_* variables and returns them.
func env(t *testing.T, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		out[k] = v
	}
	return out
}

func TestEnvironment(t *testing.T) {
	save := "env | grep -E '^(LIFEBOAT_|HOOK_)' > env.txt"
	d, dir := driverWith(t, 0, map[string]string{
		lifeboat.ActComputeProvision: save, lifeboat.ActComputeScale: save, lifeboat.ActDatabaseSwitchover: save, lifeboat.ActDatabaseRejoin: save, lifeboat.ActTrafficSwitch: save,
	})
	dr := d.Drivers()
	ctx := context.Background()
	check := func(what string, want map[string]string) {
		t.Helper()
		got := env(t, dir)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s=%q, want %q", what, k, got[k], v)
			}
		}
	}
	tg := target("storefront", "web", "east", 7)
	base := map[string]string{"LIFEBOAT_SERVICE": "shop", "LIFEBOAT_UNIT": "storefront", "LIFEBOAT_COMPONENT": "web",
		"LIFEBOAT_REGION": "east", "LIFEBOAT_RESOURCE": "shop-storefront-web-east", "LIFEBOAT_EPOCH": "7",
		"LIFEBOAT_RUN": "run-1", "LIFEBOAT_STEP": "step-1", "LIFEBOAT_SPEC_DIR": dir}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	must(t, dr.Compute.Provision(ctx, tg, lifeboat.Compute{Recipe: lifeboat.Recipe{Artifact: "./bin/shop",
		Command: []string{"./shop", "--listen", ":8080"}, Checksum: "sha256:00"}}))
	check("provision", with(map[string]string{"LIFEBOAT_ACTION": "compute.provision", "LIFEBOAT_ARTIFACT": "./bin/shop",
		"LIFEBOAT_COMMAND": "./shop --listen :8080", "LIFEBOAT_CHECKSUM": "sha256:00"}))

	must(t, dr.Compute.Scale(ctx, tg, 5))
	check("scale", with(map[string]string{"LIFEBOAT_ACTION": "compute.scale", "LIFEBOAT_INSTANCES": "5"}))

	east, west := target("storefront", "orders", "east", 7), target("storefront", "orders", "west", 7)
	must(t, dr.Database.Switchover(ctx, east, west))
	check("switchover", map[string]string{"LIFEBOAT_ACTION": "database.switchover", "LIFEBOAT_RESOURCE": west.Resource,
		"LIFEBOAT_REGION": "west", "LIFEBOAT_FROM_RESOURCE": east.Resource, "LIFEBOAT_FROM_REGION": "east"})

	must(t, dr.Database.Rejoin(ctx, west, east))
	check("rejoin", map[string]string{"LIFEBOAT_ACTION": "database.rejoin", "LIFEBOAT_RESOURCE": west.Resource,
		"LIFEBOAT_FROM_RESOURCE": east.Resource, "LIFEBOAT_FROM_REGION": "east"})

	must(t, dr.Traffic.Switch(ctx, target("storefront", "www", "east", 7), []string{"shop.example.test", "api.shop.example.test"}))
	check("switch", map[string]string{"LIFEBOAT_ACTION": "traffic.switch", "LIFEBOAT_RESOURCE": "shop-storefront-www",
		"LIFEBOAT_NAMES": "api.shop.example.test shop.example.test"})

	// A hook gets the same variables plus its env, which cannot override them.
	must(t, dr.Scripts.Exec(ctx, tg, save, map[string]string{"HOOK_TEAM": "payments", "LIFEBOAT_EPOCH": "1"}))
	check("hook", with(map[string]string{"LIFEBOAT_ACTION": "script", "HOOK_TEAM": "payments"}))

	err := dr.Scripts.Exec(ctx, tg, "exit 75", nil)
	if err == nil || !lifeboat.IsRetryable(err) {
		t.Errorf("hook exit 75 = %v, want retryable", err)
	}
	err = dr.Scripts.Exec(ctx, tg, "exit 1", nil)
	if err == nil || lifeboat.IsRetryable(err) {
		t.Errorf("hook exit 1 = %v, want permanent", err)
	}
}

func TestTakePrintsOrFallsBackToLatest(t *testing.T) {
	d, _ := driverWith(t, 0, map[string]string{
		lifeboat.ActBackupTake:   "true",
		lifeboat.ActBackupLatest: "printf 'id=b9\\ntaken=2025-03-01T12:00:00Z\\nregion=west\\nepoch=3\\n'",
	})
	b, err := d.Drivers().Backup.Take(context.Background(), target("reports", "warehouse", "east", 3))
	must(t, err)
	if b.ID != "b9" || b.Epoch != 3 {
		t.Errorf("take = %+v, want what backup.latest reports", b)
	}
}

func TestValidateConfig(t *testing.T) {
	c := DefaultConfig()
	c.Dir = filepath.Join(t.TempDir(), "missing")
	c.Timeout = 0
	c.Actions = map[string]string{"database.promte": "x", lifeboat.ActComputeScale: " ", "frobnicate": "y"}
	err := ValidateConfig(c)
	if err == nil {
		t.Fatal("want errors")
	}
	t.Log(err)
	for _, want := range []string{
		"drivers.script.timeout", "drivers.script.dir", "did you mean database.promote?",
		"drivers.script.actions.compute.scale is empty", "drivers.script.actions.frobnicate is not an action;",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q should mention %q", err, want)
		}
	}
	if err := ValidateConfig(DefaultConfig()); err != nil {
		t.Errorf("default config: %v", err)
	}
}

func TestNewFromSpec(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "scripts"), 0o755))
	s := &lifeboat.Spec{Service: "shop", File: filepath.Join(dir, "lifeboat.yaml"), Drivers: lifeboat.DriverSpec{
		Script: &lifeboat.ScriptDriver{Dir: "scripts", Actions: map[string]string{lifeboat.ActComputeDelete: "pwd > where.txt; echo $LIFEBOAT_SPEC_DIR >> where.txt"}}}}
	d, err := New(s)
	must(t, err)
	if d.cfg.Timeout != DefaultTimeout {
		t.Errorf("timeout = %v, want the default %v", d.cfg.Timeout, DefaultTimeout)
	}
	must(t, d.Drivers().Compute.Delete(context.Background(), target("reports", "worker", "east", 2)))
	b, err := os.ReadFile(filepath.Join(dir, "scripts", "where.txt"))
	must(t, err)
	if want := filepath.Join(dir, "scripts") + "\n" + dir + "\n"; string(b) != want {
		t.Errorf("ran in / with spec dir %q, want %q", b, want)
	}

	// No drivers.script section: hooks still run in the spec's directory.
	s.Drivers.Script = nil
	d, err = New(s)
	must(t, err)
	must(t, d.Exec(context.Background(), target("", "", "", 2), "touch hook-ran", nil))
	if _, err := os.Stat(filepath.Join(dir, "hook-ran")); err != nil {
		t.Error(err)
	}

	s.Drivers.Script = &lifeboat.ScriptDriver{Dir: "nowhere"}
	if _, err := New(s); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("missing dir = %v, want an error naming it", err)
	}
}

func TestRecipeCommandRoundTrips(t *testing.T) {
	d, dir := driverWith(t, 0, map[string]string{
		lifeboat.ActComputeProvision: `eval set -- "$LIFEBOAT_COMMAND"; printf '%s\n' "$@" > words.txt`,
	})
	words := []string{"./shop", "--listen", ":8080", "--motd", "it's a 'shop' & more", ""}
	must(t, d.Drivers().Compute.Provision(context.Background(), target("storefront", "web", "east", 2),
		lifeboat.Compute{Recipe: lifeboat.Recipe{Command: words}}))
	b, err := os.ReadFile(filepath.Join(dir, "words.txt"))
	must(t, err)
	if got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); strings.Join(got, "|") != strings.Join(words, "|") {
		t.Errorf("the command read back as %q, want %q", got, words)
	}
}

func TestHookTimeoutComesFromContext(t *testing.T) {
	// The actions' timeout is tiny, but a hook with its own deadline (set
	// by the engine from the hook's timeout) runs to completion.
	d, _ := driverWith(t, time.Millisecond, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must(t, d.Exec(ctx, target("", "", "", 2), "sleep 0.2", nil))
	// Without a deadline, the actions' timeout bounds the hook.
	if err := d.Exec(context.Background(), target("", "", "", 2), "sleep 5", nil); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("hook without a deadline = %v, want a timeout", err)
	}
}
