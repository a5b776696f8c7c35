package lab

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/lab/netns"
)

// DownReport says what Down stopped and what it had to clean up.
type DownReport struct {
	Dir string `json:"dir"`
	// PID of the daemon, if it was running.
	PID int `json:"pid,omitempty"`
	// Took is how long the daemon took to stop.
	Took time.Duration `json:"took"`
	// Leftovers are processes of the lab that outlived the daemon's own
	// shutdown; Down killed them.
	Leftovers []Leftover `json:"leftovers,omitempty"`
	// Listening are ports of the lab's blocks that still accept
	// connections after all that (then Down fails).
	Listening []int `json:"listening,omitempty"`
}

// Leftover is one process Down had to kill.
type Leftover struct {
	PID  int    `json:"pid"`
	What string `json:"what"`
}

// Down stops the lab in dir: SIGTERM to the daemon (which stops what it
// started), a bounded wait, then it makes sure that no process of the lab is
// left (killing leftovers by PID) and that no port of the lab's blocks
// accepts connections.
func Down(ctx context.Context, dir string) (*DownReport, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	in, err := LoadInfo(dir)
	if err != nil {
		return nil, err
	}
	rep := &DownReport{Dir: dir}
	start := time.Now()
	if pid, ok := runningPID(dir); ok {
		rep.PID = pid
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && err != syscall.ESRCH {
			return rep, lifeboat.Permanent(OpDown, "", fmt.Errorf("cannot signal the lab daemon (PID %d): %w; are you the user who ran 'lab up'?", pid, err))
		}
		// The daemon stops the shop, then PostgreSQL with a fast shutdown.
		if !waitGone(ctx, pid, time.Minute) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			rep.Leftovers = append(rep.Leftovers, Leftover{PID: pid, What: "the lab daemon (did not stop within 1m of SIGTERM; see " + logPath(dir) + ")"})
			waitGone(ctx, pid, 10*time.Second)
		}
	}
	rep.Took = time.Since(start)
	_ = os.Remove(pidPath(dir))

	for _, l := range leftovers(in) {
		rep.Leftovers = append(rep.Leftovers, l)
		// A postmaster takes SIGQUIT as an immediate shutdown that ends its
		// backends too; SIGKILL if it does not go.
		sig := syscall.SIGKILL
		if strings.HasPrefix(l.What, "postgres") {
			sig = syscall.SIGQUIT
		}
		_ = syscall.Kill(l.PID, sig)
	}
	for _, l := range rep.Leftovers {
		if !waitGone(ctx, l.PID, 5*time.Second) {
			_ = syscall.Kill(l.PID, syscall.SIGKILL)
			waitGone(ctx, l.PID, 5*time.Second)
		}
	}
	// Orphaned PostgreSQL backends of a killed postmaster end on their own
	// shortly; look again for anything still there.
	for _, l := range leftovers(in) {
		rep.Leftovers = append(rep.Leftovers, l)
		_ = syscall.Kill(l.PID, syscall.SIGKILL)
		waitGone(ctx, l.PID, 5*time.Second)
	}

	// The regions' namespaces (monitored lab): the daemon removes them
	// when it stops; after a crash they are still there.
	if in.Monitor != "" {
		if err := netns.Sweep(netPrefix(in.Dir)); err != nil {
			return rep, lifeboat.Transient(OpDown, "", fmt.Errorf("removing the lab's network namespaces (prefix %s): %w; 'ip netns list' and 'ip link' show what is left", netPrefix(in.Dir), err))
		}
	}

	rep.Listening = listeningPorts(ctx, in, 10*time.Second)
	if len(rep.Listening) > 0 {
		return rep, lifeboat.Permanent(OpDown, "", fmt.Errorf("ports of the lab still accept connections after every process of the lab stopped: %v; find their owner with 'ss -ltnp' and stop it", rep.Listening))
	}
	if still := leftovers(in); len(still) > 0 {
		return rep, lifeboat.Permanent(OpDown, "", fmt.Errorf("processes of the lab survived SIGKILL: %v", still))
	}
	return rep, nil
}

// waitGone waits until pid has exited, at most d.
func waitGone(ctx context.Context, pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// listeningPorts waits (at most d) until no port of the lab's blocks accepts
// connections, and returns those that still do.
func listeningPorts(ctx context.Context, in *Info, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		var open []int
		for _, r := range in.Regions {
			for p := r.PortBase; p < r.PortBase+r.Ports; p++ {
				if listening(p) {
					open = append(open, p)
				}
			}
		}
		if len(open) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return open
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// RecordedPIDs returns every PID the lab's daemon recorded starting (itself,
// postmasters, shop instances).
func RecordedPIDs(dir string) ([]int, error) {
	f, err := os.Open(pidsPath(dir))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		if pid, err := strconv.Atoi(fs[len(fs)-1]); err == nil {
			out = append(out, pid)
		}
	}
	return out, sc.Err()
}

// leftovers finds live processes of the lab: the postmasters named by the
// data dirs' postmaster.pid, the PIDs the daemon recorded, and any process
// whose working directory is inside the lab and whose program is PostgreSQL
// or the lab's artifact (a user's shell in the lab directory is neither).
// A PID counts only while it still looks like the lab's, so a reused PID is
// never killed.
func leftovers(in *Info) []Leftover {
	seen := map[int]bool{os.Getpid(): true}
	var out []Leftover
	add := func(pid int) {
		if seen[pid] || !alive(pid) {
			return
		}
		seen[pid] = true
		if what, ok := ofLab(in, pid); ok {
			out = append(out, Leftover{PID: pid, What: what})
		}
	}
	for _, r := range in.Regions {
		if b, err := os.ReadFile(filepath.Join(r.Dir, "pg", "postmaster.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0]); err == nil {
				add(pid)
			}
		}
	}
	if pids, err := RecordedPIDs(in.Dir); err == nil {
		for _, pid := range pids {
			add(pid)
		}
	}
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, e := range ents {
			if pid, err := strconv.Atoi(e.Name()); err == nil {
				add(pid)
			}
		}
	}
	// Children of a leftover (a postmaster's backends) go with it: list
	// and signal only the top of each tree.
	found := map[int]bool{}
	for _, l := range out {
		found[l.PID] = true
	}
	top := out[:0]
	for _, l := range out {
		if !found[parentOf(l.PID)] {
			top = append(top, l)
		}
	}
	sort.Slice(top, func(i, j int) bool { return top[i].PID < top[j].PID })
	return top
}

// parentOf returns pid's parent PID (0 if unknown).
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// ofLab says whether pid is a process of the lab in, and what it is.
func ofLab(in *Info, pid int) (string, bool) {
	proc := "/proc/" + strconv.Itoa(pid)
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil || !within(in.Dir, cwd) {
		return "", false
	}
	exe, err := os.Readlink(proc + "/exe")
	if err != nil {
		return "", false
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	switch {
	case filepath.Base(exe) == "postgres":
		return "postgres in " + cwd, true
	case within(in.Dir, exe):
		return "shop instance in " + cwd, true
	case cwd == in.Dir:
		// The daemon runs in the lab's directory (whatever program it is).
		if b, err := os.ReadFile(proc + "/cmdline"); err == nil && strings.Contains(string(b), "serve") {
			return "lab daemon", true
		}
	}
	return "", false
}

func within(dir, path string) bool {
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

// killPostgresIn kills every PostgreSQL process working in dataDir (the
// backends a killed postmaster leaves behind hold its shared memory, and a
// new postmaster refuses to start until they are gone) and waits until they
// have exited.
func killPostgresIn(ctx context.Context, dataDir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		proc := "/proc/" + e.Name()
		cwd, err1 := os.Readlink(proc + "/cwd")
		exe, err2 := os.Readlink(proc + "/exe")
		if err1 != nil || err2 != nil || !within(dataDir, cwd) || filepath.Base(strings.TrimSuffix(exe, " (deleted)")) != "postgres" {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		waitGone(ctx, pid, 10*time.Second)
	}
	return pids
}

// reaped waits (at most d) until pid no longer exists at all, zombie
// included.
func reaped(ctx context.Context, pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for syscall.Kill(pid, 0) != syscall.ESRCH {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
