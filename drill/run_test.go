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
// beyond what the lag at the fault explains, the plan's steps come from the
// journal, and both report files are written.
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
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := lab.LabStatus(ctx, dir)
		if err == nil {
			err = st.Settled()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lab's controllers did not settle: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

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
	t.Logf("RTO p50 %s max %s; %d of %d acknowledged writes lost", r.RTO.P50, r.RTO.Max, len(r.Set.Lost), r.Set.Acknowledged)
}
