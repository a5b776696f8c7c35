package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pgBin is Debian's PostgreSQL 15: the same binaries for every system.
const pgBin = "/usr/lib/postgresql/15/bin"

// proc is a process this program started; it is stopped by its PID only.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// postgresCred is the postgres OS user's, when this program runs as root
// (PostgreSQL refuses to run as root); nil otherwise.
func postgresCred() (*syscall.Credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, os.Getuid(), os.Getgid(), nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("PostgreSQL cannot run as root and there is no postgres user (install postgresql-15): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

// ownedDir makes dir for the postgres user.
func ownedDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	_, uid, gid, err := postgresCred()
	if err != nil {
		return err
	}
	return os.Chown(dir, uid, gid)
}

// start runs name with args, its output in dir/<logName>.log, as the
// postgres user if asPostgres.
func start(dir, logName string, asPostgres bool, env []string, name string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, logName+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if asPostgres {
		cred, uid, gid, err := postgresCred()
		if err != nil {
			return nil, err
		}
		cmd.SysProcAttr.Credential = cred
		_ = os.Chown(logPath, uid, gid)
	}
	return startCmd(cmd, f, dir, logName, env)
}

// startCmd starts cmd in dir with its output in log f (kept open by the
// child) and env added to this process's.
func startCmd(cmd *exec.Cmd, f *os.File, dir, logName string, env []string) (*proc, error) {
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	cmd.Env = append(os.Environ(), env...)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Its own process group: a Ctrl-C at the terminal reaches this program
	// only, which then stops every process in order.
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w (is it installed? run scripts/peers.sh)", strings.Join(cmd.Args, " "), err)
	}
	p := &proc{name: logName, cmd: cmd, done: make(chan struct{}), log: f.Name()}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process, then SIGKILL after grace; then
// SIGKILL to whatever is left in its process group (its own, created at
// start, whose id is its PID), so that no child of an agent killed before
// it stopped them (pg_autoctl's services) outlives the round.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	defer func() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }()
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail is the end of the process's log, for an error message.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	s := strings.TrimSpace(string(b))
	if len(s) > 1500 {
		s = "…" + s[len(s)-1500:]
	}
	return s
}

// postmasterPID reads the postmaster's PID from dataDir/postmaster.pid.
func postmasterPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("no postmaster.pid in %s (is PostgreSQL running there?): %w", dataDir, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("postmaster.pid in %s does not start with a PID: %q", dataDir, line)
	}
	return pid, nil
}

// stopPostgres stops whatever postmaster still runs in dataDir (its agent
// is gone): immediate shutdown, as the postgres user.
func stopPostgres(dataDir string) {
	pid, err := postmasterPID(dataDir)
	if err != nil || syscall.Kill(pid, 0) != nil {
		return
	}
	cred, _, _, _ := postgresCred()
	cmd := exec.Command(filepath.Join(pgBin, "pg_ctl"), "stop", "-D", dataDir, "-m", "immediate", "-w", "-t", "20")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if cmd.Run() != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// freePorts picks n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// httpStatus is the status of GET url (0 when it could not be reached).
func httpStatus(ctx context.Context, url string) int {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// installed says which of the programs are missing.
func missing(programs ...string) error {
	var errs []error
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			errs = append(errs, fmt.Errorf("%s not found", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return notRun{strings.ReplaceAll(err.Error(), "\n", ", ") + ": run scripts/peers.sh"}
	}
	return nil
}
