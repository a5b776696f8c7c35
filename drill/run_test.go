package drill

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/lab"
)

// A region outage drilled in a real lab whose controllers fail over on
// their own: every client recovers in east, no acknowledged write is lost
// beyond what the lag at the fault explains, the register history is
// linearizable unless writes were lost, the plan's steps come from the
// journal, and both report files are written. Then a failback in the same
// lab brings the service home with nothing lost.
func TestRegionOutageDrillInTheLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the monitored lab puts each region in a network namespace, which needs root")
	}
	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil { // PostgreSQL runs as postgres
			t.Fatal(err)
		}
	}
	bin := filepath.Join(base, "lifeboat")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(goBin, "build", "-o", bin, "../cmd/lifeboat").CombinedOutput(); err != nil {
		t.Fatalf("building the lifeboat program: %v\n%s", err, out)
	}
	dir := filepath.Join(base, "lab")
	ctx := context.Background()
	if _, err := lab.Up(ctx, lab.Options{Dir: dir, Binary: bin, Monitor: "automatic", ReadyTimeout: 3 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := lab.Down(context.Background(), dir); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	// Start from a settled quorum: one leader, every controller in it.
	waitSettled(t, dir)

	o := DefaultOptions()
	o.Dir, o.Scenario, o.Duration, o.Warmup, o.Clients = dir, ScenarioRegionOutage, 10*time.Second, 2*time.Second, 4
	o.Progress = func(s string) { t.Log(s) }
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	r := res.Report
	if r.RTO.Unrecovered > 0 {
		t.Errorf("%d clients never wrote again after the fault", r.RTO.Unrecovered)
	}
	for _, c := range r.RTO.Clients {
		if !c.Recovered || c.Region != "east" {
			t.Errorf("client %d: recovered %v in %q; want recovered in east", c.Client, c.Recovered, c.Region)
		}
	}
	if len(r.Set.Lost) > 0 && !r.RPO.Consistent {
		t.Errorf("%d acknowledged writes lost, not explained by the lag at the fault: %s", len(r.Set.Lost), r.RPO.Note)
	}
	if len(r.Set.Duplicated) > 0 {
		t.Errorf("duplicated writes: %+v", r.Set.Duplicated)
	}
	var ops []string
	for _, s := range r.Steps {
		ops = append(ops, s.Op)
	}
	if !strings.Contains(strings.Join(ops, " "), "database.promote") {
		t.Errorf("the report's steps %v do not show the promotion of east", ops)
	}
	for _, f := range []string{res.JSON, res.HTML} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("report file %s: %v (size 0?)", f, err)
		}
	}
	// The register workload ran beside the orders, through the same front
	// door; with nothing lost it must be linearizable, and a violation
	// must come with its visualisation.
	if reg := r.Register; reg == nil || reg.Operations == 0 {
		t.Errorf("no register history was checked: %+v", reg)
	} else if reg.Result == NotLinearizable && len(r.Set.Lost) == 0 {
		t.Errorf("register not linearizable although no acknowledged write was lost: see %s", reg.Visualization)
	} else if reg.Result == NotLinearizable && reg.Visualization == "" {
		t.Errorf("register not linearizable and no visualisation written: %+v", reg)
	}
	t.Logf("RTO p50 %s max %s; %d of %d acknowledged writes lost; register %s (%d operations)", r.RTO.P50, r.RTO.Max, len(r.Set.Lost), r.Set.Acknowledged, r.Register.Result, r.Register.Operations)

	// Then home again in the same lab: west comes back (fenced, behind
	// east), and the failback drill rejoins it and moves the service
	// there with nothing lost.
	if _, err := lab.Fault(ctx, dir, lab.FaultRequest{Kind: lab.FaultHeal}); err != nil {
		t.Fatal(err)
	}
	// The controllers rejoin west as a standby on their own once it is
	// back: wait for that run to end with west streaming from east.
	waitFor(t, dir, "west to stream from east, no run in progress", func(st *lab.Status) bool {
		if st.Settled() != nil || st.Run != "" {
			return false
		}
		for _, d := range st.Databases {
			if d.Region == "west" && d.Role == "replica" && d.ReplicationState == "streaming" {
				return true
			}
		}
		return false
	})
	o.Scenario, o.Duration = ScenarioFailback, 15*time.Second
	res, err = Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	r = res.Report
	if len(r.Set.Lost) > 0 || len(r.Set.Duplicated) > 0 {
		t.Errorf("failback: %d acknowledged writes lost, %d duplicated; want none", len(r.Set.Lost), len(r.Set.Duplicated))
	}
	done := map[string]bool{}
	for _, s := range r.Steps {
		if s.Status == "done" {
			done[s.Op] = true
		}
	}
	// (database.rejoin too, unless west is already streaming again.)
	for _, op := range []string{"database.switchover", "traffic.switch"} {
		if !done[op] {
			t.Errorf("failback: no %s step done in %+v", op, r.Steps)
		}
	}
	if reg := r.Register; reg == nil || reg.Result == NotLinearizable {
		t.Errorf("failback: register %+v, want linearizable (a planned move loses nothing)", reg)
	}
	t.Logf("failback: RTO p50 %s max %s; write-unavailable %v", r.RTO.P50, r.RTO.Max, r.Windows)
}

// waitSettled waits for one leader and every controller in the quorum.
func waitSettled(t *testing.T, dir string) {
	t.Helper()
	waitFor(t, dir, "the lab's controllers to settle", func(st *lab.Status) bool { return st.Settled() == nil })
}

// waitFor polls the lab's status until cond holds, for at most two
// minutes.
func waitFor(t *testing.T, dir, what string, cond func(*lab.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := lab.LabStatus(context.Background(), dir)
		if err == nil && cond(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s: last status %+v, error %v", what, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
