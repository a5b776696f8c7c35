package testfailover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/driver/process"
	"github.com/lifeboat-dr/lifeboat/lab"
)

const loopback = "127.0.0.1"

// unit is the drill unit: the database copy and the compute instance, as
// far as they were stood up. Every field may be unset: delete copes.
type unit struct {
	dir string
	db  *postgres.Instance
	// dbPID is the copy's postmaster, remembered once it runs: its
	// postmaster.pid goes when it stops, and the check that it is gone
	// must still name it.
	dbPID    int
	shop     *exec.Cmd
	shopPID  int
	shopAddr string
	exited   chan error // the shop's Wait
}

func (u *unit) dbLog() string   { return filepath.Join(u.dir, "db.log") }
func (u *unit) shopLog() string { return filepath.Join(u.dir, "shop.log") }

// standUp makes the drill unit: a snapshot of the secondary's standby
// started as a primary of its own, then one instance of the compute that
// connects to it, and measures each stage. The unit it returns is never
// nil, so that whatever was stood up can be deleted.
func (d *run) standUp(ctx context.Context, spec *lifeboat.Spec) (*unit, error) {
	rep := d.rep
	u := &unit{dir: rep.Unit.Dir}
	ctx, cancel := context.WithTimeout(ctx, d.o.StandUp)
	defer cancel()
	if err := os.MkdirAll(u.dir, 0o755); err != nil {
		return u, d.fail("stand up the drill unit", fmt.Errorf("creating %s: %w; check the permissions of %s", u.dir, err, filepath.Dir(u.dir)))
	}
	// The postgres user must reach the data dir inside it.
	if err := os.Chmod(u.dir, 0o755); err != nil {
		return u, d.fail("stand up the drill unit", err)
	}
	port, err := postgres.FreePort()
	if err != nil {
		return u, d.fail("stand up the drill unit", err)
	}
	u.db = &postgres.Instance{DataDir: filepath.Join(u.dir, "db"), Host: loopback, Port: port, Name: "test-failover-" + d.rep.Region}
	source := postgres.Conninfo(hostOf(d.standby.Postgres), portOf(d.standby.Postgres), lab.ReplUser, lab.ReplPassword, "", u.db.Name)
	rep.Unit.Source = d.standby.Postgres
	rep.Unit.Database = net.JoinHostPort(loopback, strconv.Itoa(port))

	// What production had just before the copy was taken: the freshness is
	// measured against it (see measureFreshness).
	d.prodBefore = d.newestOrder(ctx, d.prod.Postgres)

	t0 := time.Now()
	d.say("snapshot: pg_basebackup from %s's standby %s into %s", d.rep.Region, d.standby.Postgres, u.db.DataDir)
	if err := u.db.Snapshot(ctx, source); err != nil {
		if ctx.Err() == nil {
			err = fmt.Errorf("%w; is %s's standby up and streaming ('lifeboat lab status --dir %s')?", err, d.rep.Region, d.in.Dir)
		} else if d.interrupted() == nil {
			err = fmt.Errorf("%w: the snapshot took longer than %s", err, d.o.StandUp)
		}
		return u, d.fail("snapshot of the standby", err)
	}
	rep.StandUp.Snapshot = time.Since(t0)
	// Production's newest order and lag now: the copy is at most this old.
	d.prodAfter = d.newestOrder(ctx, d.prod.Postgres)
	d.lagAtSnapshot(ctx)

	t1 := time.Now()
	d.say("starting the copy as a primary of its own on %s", rep.Unit.Database)
	if err := u.db.Start(ctx); err != nil {
		return u, d.fail("start the database copy", err)
	}
	if pid, ok := u.db.PID(); ok {
		u.dbPID, rep.Unit.DatabasePID = pid, pid
	}
	rep.StandUp.Start = time.Since(t1)

	t2 := time.Now()
	if err := d.startShop(ctx, spec, u); err != nil {
		return u, d.fail("start the drill unit's compute", err)
	}
	rep.StandUp.FirstAnswer = time.Since(t2)
	rep.StandUp.Total = time.Since(t0)
	d.check("stand up the drill unit", true, fmt.Sprintf("snapshot %s, start %s, first answer %s: %s in all",
		round(rep.StandUp.Snapshot), round(rep.StandUp.Start), round(rep.StandUp.FirstAnswer), round(rep.StandUp.Total)))
	return u, nil
}

// startShop runs one instance of the compute that connects to the
// database, from the spec's recipe as the process driver would run it, and
// waits until it answers that it takes writes.
func (d *run) startShop(ctx context.Context, spec *lifeboat.Spec, u *unit) error {
	un, ok := spec.Units[lab.Unit]
	if !ok {
		return fmt.Errorf("the lab's spec %s has no unit %q", d.in.Spec, lab.Unit)
	}
	c, ok := un.Compute[lab.Web]
	if !ok {
		return fmt.Errorf("the lab's spec %s has no compute %s.%s", d.in.Spec, lab.Unit, lab.Web)
	}
	artifact := c.Recipe.Artifact
	if !filepath.IsAbs(artifact) {
		artifact = filepath.Join(filepath.Dir(d.in.Spec), artifact)
	}
	if c.Recipe.Checksum != "" {
		sum, err := process.Checksum(artifact)
		if err != nil {
			return fmt.Errorf("the recipe's artifact %s: %w", artifact, err)
		}
		if sum != c.Recipe.Checksum {
			return fmt.Errorf("the recipe's artifact %s has checksum %s, the spec pins %s: 'lifeboat lab up --dir %s' installs it again", artifact, sum, c.Recipe.Checksum, d.in.Dir)
		}
	}
	port, err := postgres.FreePort()
	if err != nil {
		return err
	}
	u.shopAddr = net.JoinHostPort(loopback, strconv.Itoa(port))
	d.rep.Unit.Compute = u.shopAddr
	env := map[string]string{}
	if p := os.Getenv("PATH"); p != "" {
		env["PATH"] = p
	}
	for k, v := range c.Recipe.Settings {
		env[k] = v
	}
	env["PORT"] = strconv.Itoa(port)
	env["LIFEBOAT_HOST"] = loopback
	env["LIFEBOAT_REGION"] = d.rep.Region
	env["LIFEBOAT_INSTANCE"] = d.rep.ID
	env["LIFEBOAT_ARTIFACT"] = artifact
	env["DATABASE_URL"] = postgres.Conninfo(loopback, u.db.Port, lab.DBUser, lab.DBPassword, lab.ShopDatabase, "shop-"+d.rep.ID)
	args := make([]string, len(c.Recipe.Command))
	for i, a := range c.Recipe.Command {
		args[i] = os.Expand(a, func(k string) string { return env[k] })
	}
	// A relative program names a file beside the artifact, as the process
	// driver resolves it in the instance's directory.
	if strings.Contains(args[0], "/") && !filepath.IsAbs(args[0]) {
		args[0] = filepath.Join(filepath.Dir(artifact), args[0])
	}
	work := filepath.Join(u.dir, "shop")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(u.shopLog(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = work
	for _, k := range lifeboat.SortedKeys(env) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: the terminal's ^C reaches only this drill,
	// which then deletes the unit in order. Pdeathsig: the instance does
	// not outlive a drill that was killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	d.say("starting the compute (%s) on %s, connected to the copy", strings.Join(c.Recipe.Command, " "), u.shopAddr)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", args[0], err)
	}
	u.shop, u.shopPID, d.rep.Unit.ComputePID = cmd, cmd.Process.Pid, cmd.Process.Pid
	u.exited = make(chan error, 1)
	go func() { u.exited <- cmd.Wait() }()

	hc := &http.Client{Timeout: 2 * time.Second}
	last := "no answer yet"
	for {
		code, body, err := get(ctx, hc, "http://"+u.shopAddr+"/readyz")
		switch {
		case err == nil && code == http.StatusOK:
			return nil
		case err == nil:
			last = fmt.Sprintf("%d %s", code, body)
		default:
			last = err.Error()
		}
		select {
		case err := <-u.exited:
			u.exited <- err // for delete
			return fmt.Errorf("the instance exited before it answered (%v); its last words, from %s:\n%s", err, u.shopLog(), tail(u.shopLog(), 10))
		case <-ctx.Done():
			return fmt.Errorf("the instance on %s does not answer GET /readyz with 200 (last: %s): %w; see %s", u.shopAddr, last, ctx.Err(), u.shopLog())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// teardown is what delete did.
type teardown struct {
	Deleted []string
	Left    []string
	Logs    []string
}

// delete stops the unit's processes by PID and removes its directory,
// and says what it deleted and what, if anything, is left. keepLogs moves
// the unit's logs beside the report first (a failed drill needs them).
func (u *unit) delete(keepLogs bool, out, id string) teardown {
	var t teardown
	if u == nil {
		return t
	}
	if u.shop != nil {
		if err := u.stopShop(10 * time.Second); err != nil {
			t.Left = append(t.Left, err.Error())
		} else {
			t.Deleted = append(t.Deleted, fmt.Sprintf("compute instance PID %d on %s: stopped", u.shopPID, u.shopAddr))
		}
	}
	if u.db != nil {
		if err := u.stopDB(); err != nil {
			t.Left = append(t.Left, err.Error())
		} else if u.dbPID != 0 {
			t.Deleted = append(t.Deleted, fmt.Sprintf("database copy PID %d on %s:%d: stopped", u.dbPID, loopback, u.db.Port))
		}
	}
	if u.dir == "" {
		return t
	}
	if _, err := os.Stat(u.dir); errors.Is(err, os.ErrNotExist) {
		return t
	}
	if keepLogs {
		for _, l := range []struct{ from, to string }{{u.dbLog(), id + ".db.log"}, {u.shopLog(), id + ".compute.log"}} {
			to := filepath.Join(out, l.to)
			if err := os.Rename(l.from, to); err == nil {
				t.Logs = append(t.Logs, to)
			}
		}
	}
	if len(t.Left) > 0 {
		// A process still runs in it: removing the files under it would
		// hide what is left, not delete it.
		t.Left = append(t.Left, fmt.Sprintf("directory %s: kept, a process of the unit may still use it; remove it once they are stopped", u.dir))
		return t
	}
	size := dirSize(u.dir)
	if err := os.RemoveAll(u.dir); err != nil {
		t.Left = append(t.Left, fmt.Sprintf("directory %s: not removed (%v); remove it by hand: rm -rf %s", u.dir, err, u.dir))
		return t
	}
	t.Deleted = append(t.Deleted, fmt.Sprintf("directory %s (database copy and compute, %s): removed", u.dir, bytesText(size)))
	return t
}

// stopShop sends SIGTERM to the instance's process group, and SIGKILL
// after grace.
func (u *unit) stopShop(grace time.Duration) error {
	pid := u.shopPID
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-u.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		select {
		case <-u.exited:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("compute instance PID %d on %s: still running after SIGKILL; stop it with 'kill -9 %d'", pid, u.shopAddr, pid)
		}
	}
	// Its children, if any, went with its group; the group is empty when
	// signal 0 finds nobody.
	if err := syscall.Kill(-pid, 0); err == nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return nil
}

// stopDB stops the copy with a fast shutdown (nothing of it needs
// keeping), or kills it, and checks that its postmaster is gone.
func (u *unit) stopDB() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if pid, ok := u.db.PID(); ok && u.dbPID == 0 {
		u.dbPID = pid // started, but the stand-up failed before it was noted
	}
	if err := u.db.Stop(ctx, "fast"); err != nil {
		_ = u.db.Kill(ctx)
	}
	if u.dbPID != 0 {
		deadline := time.Now().Add(10 * time.Second)
		for alive(u.dbPID) {
			if time.Now().After(deadline) {
				return fmt.Errorf("database copy PID %d on %s:%d: still running; stop it with 'kill -9 %d', then remove %s", u.dbPID, loopback, u.db.Port, u.dbPID, u.db.DataDir)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// alive reports whether pid is a process that has not exited (a zombie has).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

func get(ctx context.Context, hc *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

func portOf(hostport string) int {
	_, p, _ := net.SplitHostPort(hostport)
	n, _ := strconv.Atoi(p)
	return n
}
