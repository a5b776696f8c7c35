package engine

// The crash-safety test: the engine runs in a real subprocess on the real
// embedded etcd store and is SIGKILLed (by pid, by this test) at every step
// boundary and in the middle of steps, then resumed in a fresh process,
// again and again, until the run succeeds. The world is files, so it
// survives the kills: a step holds when its marker file exists; applying it
// appends "<step>\t<process>" to an applies log and then creates the marker.
//
// The child reports every journal record written (OnEvent) and the middle
// of every apply (between the log line and the marker) to the parent
// through a pipe, and waits for the parent's go-ahead; so the parent kills
// it exactly after the point it chose, deterministically.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/store"
)

const (
	crashChildEnv = "LIFEBOAT_CRASH_CHILD"
	crashDirEnv   = "LIFEBOAT_CRASH_DIR"
	crashProcEnv  = "LIFEBOAT_CRASH_PROC"
	crashRunEnv   = "LIFEBOAT_CRASH_RUN"
)

// crashClock is the children's clock: fixed, so states from different
// histories compare equal.
var crashClock = time.Date(2026, 11, 22, 14, 15, 3, 0, time.UTC)

func crashInitialState() *lifeboat.State {
	st := &lifeboat.State{Service: "shop", Epoch: 1, Active: "west", Since: crashClock, Resources: map[string]*lifeboat.Resource{}}
	add := func(name string, kind lifeboat.Kind, region string, exists bool, n int, role lifeboat.DatabaseRole) {
		st.Resources[name] = &lifeboat.Resource{Name: name, Kind: kind, Region: region, Exists: exists, Instances: n,
			Role: role, Epoch: 1, Since: crashClock}
	}
	add("shop-store-web-west", lifeboat.KindCompute, "west", true, 3, "")
	add("shop-store-web-east", lifeboat.KindCompute, "east", true, 0, "")
	add("shop-store-worker-east", lifeboat.KindCompute, "east", false, 0, "")
	add("shop-store-cache-east", lifeboat.KindCompute, "east", false, 0, "")
	add("shop-store-orders-west", lifeboat.KindDatabase, "west", true, 0, lifeboat.DBPrimary)
	add("shop-store-orders-east", lifeboat.KindDatabase, "east", true, 0, lifeboat.DBReplica)
	st.Resources["shop-store-www"] = &lifeboat.Resource{Name: "shop-store-www", Kind: lifeboat.KindTraffic, Region: "west", Routes: "west", Exists: true, Epoch: 1, Since: crashClock}
	st.Resources["shop-store-api"] = &lifeboat.Resource{Name: "shop-store-api", Kind: lifeboat.KindTraffic, Region: "west", Routes: "west", Exists: true, Epoch: 1, Since: crashClock}
	return st
}

// crashPlan has 20 steps: the epoch, a group of 5, a group of 6, a join, a
// group of 4, two more and a tail.
func crashPlan() *lifeboat.Plan {
	p := &lifeboat.Plan{Service: "shop", Intent: lifeboat.IntentFailover, From: "west", To: "east", Epoch: 2}
	add := func(id string, op lifeboat.Op, res string, n int, deps ...string) {
		p.Steps = append(p.Steps, &lifeboat.Step{ID: id, Op: op, Resource: res, Instances: n, Region: "east", Epoch: 2, DependsOn: deps})
	}
	add("raise epoch", lifeboat.OpRaiseEpoch, "", 0)
	// group 1
	add("fence orders-west", lifeboat.OpDatabaseFence, "shop-store-orders-west", 0, "raise epoch")
	add("provision worker", lifeboat.OpComputeProvision, "shop-store-worker-east", 0, "raise epoch")
	add("provision cache", lifeboat.OpComputeProvision, "shop-store-cache-east", 0, "raise epoch")
	add("warm caches", lifeboat.OpScript, "", 0, "raise epoch")
	add("notify", lifeboat.OpScript, "", 0, "raise epoch")
	// group 2
	add("promote orders-east", lifeboat.OpDatabasePromote, "shop-store-orders-east", 0, "fence orders-west")
	add("scale worker", lifeboat.OpComputeScale, "shop-store-worker-east", 2, "provision worker")
	add("scale cache", lifeboat.OpComputeScale, "shop-store-cache-east", 2, "provision cache")
	add("scale web", lifeboat.OpComputeScale, "shop-store-web-east", 3, "raise epoch")
	add("check caches", lifeboat.OpScript, "", 0, "warm caches")
	add("check notify", lifeboat.OpScript, "", 0, "notify")
	// join
	add("smoke test", lifeboat.OpScript, "", 0, "promote orders-east", "scale worker", "scale cache", "scale web", "check caches", "check notify")
	// group 3
	add("switch www", lifeboat.OpTrafficSwitch, "shop-store-www", 0, "smoke test")
	add("switch api", lifeboat.OpTrafficSwitch, "shop-store-api", 0, "smoke test")
	add("backup orders-east", lifeboat.OpDatabaseBackup, "shop-store-orders-east", 0, "smoke test")
	add("tell the team", lifeboat.OpScript, "", 0, "smoke test")
	// tail
	add("rejoin orders-west", lifeboat.OpDatabaseRejoin, "shop-store-orders-west", 0, "switch www", "switch api")
	add("scale down web-west", lifeboat.OpComputeScale, "shop-store-web-west", 0, "switch www", "switch api")
	add("done", lifeboat.OpScript, "", 0, "rejoin orders-west", "scale down web-west", "backup orders-east", "tell the team")
	return p
}

// marker is the file whose existence says a step's effect holds.
func marker(dir, step string) string {
	return filepath.Join(dir, "markers", strings.ReplaceAll(step, " ", "_"))
}

// crashChild runs (or resumes) the crash plan, reporting to the parent
// through fd 3 and waiting for its go-ahead on fd 4.
func crashChild() int {
	dir, proc, runID := os.Getenv(crashDirEnv), os.Getenv(crashProcEnv), os.Getenv(crashRunEnv)
	events, acks := os.NewFile(3, "events"), os.NewFile(4, "acks")
	var hookMu sync.Mutex
	ack := make([]byte, 1)
	hook := func(what, run, step string) {
		hookMu.Lock()
		defer hookMu.Unlock()
		if _, err := fmt.Fprintf(events, "%s\t%s\t%s\n", what, run, step); err != nil {
			os.Exit(3)
		}
		if _, err := acks.Read(ack); err != nil {
			os.Exit(3)
		}
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "crash child %s: "+format+"\n", append([]any{proc}, args...)...)
		return 2
	}
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Dir: filepath.Join(dir, "store"), Service: "shop"})
	if err != nil {
		return fail("open store: %v", err)
	}
	defer st.Close()
	if _, err := st.Init(ctx, crashInitialState()); err != nil {
		return fail("init: %v", err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "applies.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fail("%v", err)
	}
	defer logf.Close()
	var logMu sync.Mutex
	cfg := DefaultConfig()
	cfg.Store, cfg.By, cfg.Now = st, "proc-"+proc, func() time.Time { return crashClock }
	cfg.OnEvent = func(e Event) {
		step := ""
		if e.Step != nil {
			step = e.Step.ID
		}
		hook(string(e.Kind), e.Run, step)
	}
	cfg.Bind = func(run string, s *lifeboat.Step) (lifeboat.Action, error) {
		m := marker(dir, s.ID)
		return lifeboat.ActionFunc{
			HoldsFunc: func(context.Context) (bool, error) {
				_, err := os.Stat(m)
				if os.IsNotExist(err) {
					return false, nil
				}
				return err == nil, err
			},
			ApplyFunc: func(context.Context) error {
				logMu.Lock()
				_, err := fmt.Fprintf(logf, "%s\t%s\n", s.ID, proc)
				if err == nil {
					err = logf.Sync()
				}
				logMu.Unlock()
				if err != nil {
					return err
				}
				hook("mid", run, s.ID)
				// Made atomically (write, fsync, rename), so a marker that
				// exists always names the process that made it.
				tmp := filepath.Join(dir, "tmp", filepath.Base(m)+"."+proc)
				f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					return err
				}
				if _, err := f.WriteString(proc); err != nil {
					f.Close()
					return err
				}
				if err := f.Sync(); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				if err := os.Rename(tmp, m); err != nil {
					return err
				}
				d, err := os.Open(filepath.Dir(m))
				if err != nil {
					return err
				}
				defer d.Close()
				return d.Sync()
			},
		}, nil
	}
	e, err := New(cfg)
	if err != nil {
		return fail("%v", err)
	}
	var fut *Future
	if runID == "" {
		fut, err = e.Start(ctx, crashPlan())
	} else {
		fut, err = e.Resume(ctx, runID)
	}
	if err != nil {
		return fail("start/resume %q: %v", runID, err)
	}
	if err := fut.Error(); err != nil {
		return fail("run %s: %v", fut.RunID(), err)
	}
	// Leave the outcome for the parent, which has no store open.
	final, err := st.State(ctx)
	if err != nil {
		return fail("state: %v", err)
	}
	recs, err := st.Journal(ctx, fut.RunID())
	if err != nil {
		return fail("journal: %v", err)
	}
	for name, v := range map[string]any{"state.json": final, "journal.json": recs} {
		b, _ := json.MarshalIndent(v, "", " ")
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fail("%v", err)
		}
	}
	return 0
}

// point is where a child can be killed: after a journal record of a step
// (its kind), or in the middle of its apply ("mid").
type point struct{ step, what string }

// kill is one SIGKILL the parent did.
type kill struct {
	dir  string // the run's world
	proc int
	at   point
}

// chain runs one run of the crash plan in dir, killing a child at the
// first point it reaches among todo (each point once), resuming until the
// run succeeds. It returns the kills.
func chain(t *testing.T, dir string, todo map[point]bool, opportunistic func(point) bool) []kill {
	t.Helper()
	for _, sub := range []string{"markers", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var kills []kill
	runID := ""
	for proc := 1; ; proc++ {
		if proc > 400 {
			t.Fatalf("%s: no success after %d processes", dir, proc)
		}
		evR, evW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		ackR, ackW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), crashChildEnv+"=1", crashDirEnv+"="+dir, crashProcEnv+"="+strconv.Itoa(proc), crashRunEnv+"="+runID)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.ExtraFiles = []*os.File{evW, ackR}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		evW.Close()
		ackR.Close()
		// A hung child fails the test instead of hanging it.
		watchdog := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
		killed := false
		r := bufio.NewReader(evR)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break // the child exited
			}
			f := strings.SplitN(strings.TrimSuffix(line, "\n"), "\t", 3)
			if len(f) != 3 {
				t.Fatalf("bad event line %q", line)
			}
			if runID == "" {
				runID = f[1]
			}
			p := point{step: f[2], what: f[0]}
			if todo[p] || (opportunistic != nil && opportunistic(p)) {
				delete(todo, p)
				// The child waits for our go-ahead: it is exactly after p.
				if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
				kills = append(kills, kill{dir: dir, proc: proc, at: p})
				break
			}
			if _, err := ackW.Write([]byte{1}); err != nil {
				break
			}
		}
		err = cmd.Wait()
		watchdog.Stop()
		evR.Close()
		ackW.Close()
		if killed {
			continue
		}
		if err != nil {
			t.Fatalf("%s: child %d (run %s) failed: %v\n%s", dir, proc, runID, err, stderr.String())
		}
		return kills
	}
}

type applyLine struct {
	step string
	proc int
}

func readApplies(t *testing.T, dir string) []applyLine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "applies.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []applyLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		step, p, ok := strings.Cut(l, "\t")
		n, err := strconv.Atoi(p)
		if !ok || err != nil {
			t.Fatalf("bad applies line %q", l)
		}
		out = append(out, applyLine{step, n})
	}
	return out
}

func readMarkers(t *testing.T, dir string) map[string]int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "markers"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "markers", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(string(b))
		if err != nil {
			t.Fatalf("marker %s holds %q", e.Name(), b)
		}
		out[e.Name()] = n
	}
	return out
}

func readJSON[T any](t *testing.T, path string) T {
	t.Helper()
	var v T
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &v)
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func procOf(t *testing.T, by string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(by, "proc-"))
	if err != nil {
		t.Fatalf("record by %q", by)
	}
	return n
}

func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs ~100 subprocesses with etcd; skipped in -short")
	}
	plan := crashPlan()
	var steps []string
	for _, s := range plan.Steps {
		steps = append(steps, s.ID)
	}
	// Every boundary of every step, and the middle of every apply.
	kinds := []string{string(lifeboat.RecStart), string(lifeboat.RecAttempt), "mid", string(lifeboat.RecApplied), string(lifeboat.RecDone)}
	const chains = 4
	shares := make([]map[point]bool, chains)
	for i := range shares {
		shares[i] = map[point]bool{}
	}
	for i, s := range steps {
		for j, k := range kinds {
			shares[(i*len(kinds)+j)%chains][point{s, k}] = true
		}
	}
	base := t.TempDir()

	// The uninterrupted run, and the chains of killed and resumed runs,
	// side by side (each with its own etcd member and world).
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := make([][]kill, chains)
	var holdsKills int
	wg.Add(chains + 1)
	go func() {
		defer wg.Done()
		chain(t, filepath.Join(base, "reference"), map[point]bool{}, nil)
	}()
	rounds := make([][]string, chains)
	for c := range chains {
		go func() {
			defer wg.Done()
			// A step found to hold after a kill is a boundary too: kill
			// there once per step where it happens.
			seenHolds := map[string]bool{}
			opp := func(p point) bool {
				if p.what != string(lifeboat.RecHolds) || seenHolds[p.step] {
					return false
				}
				seenHolds[p.step] = true
				mu.Lock()
				holdsKills++
				mu.Unlock()
				return true
			}
			// Steps in parallel run freely between the child's report
			// points, so a kill elsewhere can carry a step past one of
			// ours (it then holds on resume): run again for those.
			for round := 0; len(shares[c]) > 0 && round < 6 && !t.Failed(); round++ {
				dir := filepath.Join(base, fmt.Sprintf("chain%d-%d", c, round))
				results[c] = append(results[c], chain(t, dir, shares[c], opp)...)
				rounds[c] = append(rounds[c], dir)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	refDir := filepath.Join(base, "reference")
	refState := readJSON[lifeboat.State](t, filepath.Join(refDir, "state.json"))
	refMarkers := readMarkers(t, refDir)
	if refState.Epoch != 2 || refState.Active != "east" || len(refMarkers) != len(steps) {
		t.Fatalf("the reference run ended at epoch %d active %s with %d markers", refState.Epoch, refState.Active, len(refMarkers))
	}
	total, runs := 0, 0
	for c := range chains {
		total += len(results[c])
		for p := range shares[c] {
			t.Errorf("chain %d never reached kill point %q after %s", c, p.step, p.what)
		}
		for _, dir := range rounds[c] {
			runs++
			checkChain(t, dir, results[c], refState, refMarkers, steps)
		}
	}
	t.Logf("%d SIGKILLs (%d after a holds record) in %d runs, each resumed to success", total, holdsKills, runs)
	if total < len(steps)*len(kinds) {
		t.Errorf("only %d kills, want at least %d", total, len(steps)*len(kinds))
	}
}

// checkChain checks one chain's outcome against the uninterrupted run and
// the rule: a step journaled done is never applied again; a step may be
// applied more than once only by processes killed before it completed.
func checkChain(t *testing.T, dir string, all []kill, refState lifeboat.State, refMarkers map[string]int, steps []string) {
	t.Helper()
	name := filepath.Base(dir)
	var kills []kill
	for _, k := range all {
		if k.dir == dir {
			kills = append(kills, k)
		}
	}
	st := readJSON[lifeboat.State](t, filepath.Join(dir, "state.json"))
	a, _ := json.Marshal(st)
	b, _ := json.Marshal(refState)
	if !bytes.Equal(a, b) {
		t.Errorf("%s: final state differs from the uninterrupted run's:\n got %s\nwant %s", name, a, b)
	}
	markers := readMarkers(t, dir)
	if got, want := sortedKeys(markers), sortedKeys(refMarkers); !slices.Equal(got, want) {
		t.Errorf("%s: markers %v, want %v", name, got, want)
	}
	recs := readJSON[[]lifeboat.Record](t, filepath.Join(dir, "journal.json"))
	doneBy := map[string]int{}
	for _, r := range recs {
		if r.Kind == lifeboat.RecDone {
			if _, dup := doneBy[r.Step]; dup {
				t.Errorf("%s: step %q journaled done twice", name, r.Step)
			}
			doneBy[r.Step] = procOf(t, r.By)
		}
	}
	for _, s := range steps {
		if _, ok := doneBy[s]; !ok {
			t.Errorf("%s: step %q never journaled done", name, s)
		}
	}
	// Nothing happens to a step in a process after the one that
	// journaled it done: not even a start or a Holds check.
	for _, r := range recs {
		if r.Step != "" && procOf(t, r.By) > doneBy[r.Step] {
			t.Errorf("%s: process %d journaled %s for %q, which process %d had journaled done", name, procOf(t, r.By), r.Kind, r.Step, doneBy[r.Step])
		}
	}
	killedAt := map[int]point{}
	for _, k := range kills {
		killedAt[k.proc] = k.at
	}
	byStep := map[string][]int{}
	for _, l := range readApplies(t, dir) {
		byStep[l.step] = append(byStep[l.step], l.proc)
	}
	for _, s := range steps {
		procs := byStep[s]
		mk := markers[strings.ReplaceAll(s, " ", "_")]
		if len(procs) == 0 || procs[len(procs)-1] != mk {
			t.Errorf("%s: step %q applied by processes %v but its marker was made by %d", name, s, procs, mk)
			continue
		}
		for i, p := range procs {
			if p > doneBy[s] {
				t.Errorf("%s: step %q applied again by process %d after process %d journaled it done", name, s, p, doneBy[s])
			}
			if i > 0 && procs[i-1] == p {
				t.Errorf("%s: step %q applied twice by process %d", name, s, p)
			}
			if i < len(procs)-1 {
				// Applied again later: allowed only because this process
				// was killed in the middle of it (line written, no marker).
				if _, killed := killedAt[p]; !killed || p == mk {
					t.Errorf("%s: step %q applied by process %d and again by %d, though %d was not killed in the middle of it", name, s, p, procs[i+1], p)
				}
			}
		}
	}
	// Each kind of kill had the effect it should.
	for _, k := range kills {
		procs := byStep[k.at.step]
		switch k.at.what {
		case "mid":
			// Killed between the log line and the marker: a later process
			// applied it again.
			if i := slices.Index(procs, k.proc); i < 0 || i == len(procs)-1 {
				t.Errorf("%s: killed process %d in the middle of %q, but it was not applied again after: %v", name, k.proc, k.at.step, procs)
			}
		case string(lifeboat.RecApplied), string(lifeboat.RecDone), string(lifeboat.RecHolds):
			// The effect was there: it must never be applied again.
			if slices.ContainsFunc(procs, func(p int) bool { return p > k.proc }) {
				t.Errorf("%s: killed process %d after %s of %q, yet a later process applied it: %v", name, k.proc, k.at.what, k.at.step, procs)
			}
		}
	}
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
