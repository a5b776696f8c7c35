package lab

import (
	"bytes"
	"context"
	"encoding/json"
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
)

// OpUp, OpDown name the lab's commands in errors.
const (
	OpUp   lifeboat.Op = "lab.up"
	OpDown lifeboat.Op = "lab.down"
)

// Options of Up.
type Options struct {
	// Dir is the lab's directory.
	Dir string
	// Binary is the lifeboat program: the daemon runs it with DaemonArgs,
	// and the shop instances are built from a copy of it. Default: this
	// program (os.Executable).
	Binary string
	// DaemonArgs run the daemon; "{dir}" is replaced by the lab's
	// directory. Default: lab serve --dir {dir}.
	DaemonArgs []string
	// ReadyTimeout bounds the wait for the daemon to report ready.
	ReadyTimeout time.Duration
	// Replication of the orders database when the lab is laid out: async
	// (default) or sync; DegradeAfter (sync only) stops waiting for a
	// missing standby after that long (0: strict).
	Replication  string
	DegradeAfter time.Duration
	// Monitor runs a controller per region ('lifeboat serve --region R')
	// in network namespaces, in this mode: manual, notify or automatic;
	// "" runs the lab without them. Fixed when the lab is laid out; only
	// the mode may change on a later up.
	Monitor string
	// Tenants, when positive, adds seed 004's tenants to the lab: a
	// catalog in orders, tenant pools (paid in west, paideast in east,
	// both geo-replicated; trial in west only), this many tenants (half
	// paid, half trial, each with a few rows), and the tenants' gate and
	// recovery in the daemon. Fixed when the lab is laid out.
	Tenants int
	// TenantConcurrency is tenants.concurrency (batches or restores at
	// once); default 4.
	TenantConcurrency int
	// TenantScenario 1 puts every tenant on the trial tier (seed 004's
	// scenario 1, the cost-sensitive startup: all tenants geo-restored,
	// only the catalog geo-replicated); 0 (default) is scenarios 2 and 3
	// together. Fixed when the lab is laid out.
	TenantScenario int
}

// DefaultOptions returns the defaults: the lab in ./lab.
func DefaultOptions() Options {
	return Options{Dir: "lab", DaemonArgs: []string{"lab", "serve", "--dir", "{dir}"}, ReadyTimeout: 2 * time.Minute}
}

// ValidateOptions reports every problem of o at once.
func ValidateOptions(o Options) error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("lab: no directory: set --dir (default ./lab)"))
	}
	if len(o.DaemonArgs) == 0 {
		errs = append(errs, errors.New("lab: no daemon arguments: leave DaemonArgs unset for 'lab serve --dir DIR'"))
	}
	if o.ReadyTimeout <= 0 {
		errs = append(errs, fmt.Errorf("lab: ReadyTimeout %s must be positive", o.ReadyTimeout))
	}
	switch o.Replication {
	case "", "async", "sync":
	default:
		errs = append(errs, fmt.Errorf("lab: --replication %q: use async or sync", o.Replication))
	}
	switch o.Monitor {
	case "", "manual", "notify", "automatic":
	default:
		errs = append(errs, fmt.Errorf("lab: --monitor %q: use manual, notify or automatic (or leave it unset for a lab without controllers)", o.Monitor))
	}
	if o.Monitor != "" && os.Geteuid() != 0 {
		errs = append(errs, errors.New("lab: --monitor runs each region in its own network namespace, which needs root: run 'lifeboat lab up' as root, or without --monitor"))
	}
	if o.Tenants < 0 || o.TenantConcurrency < 0 {
		errs = append(errs, fmt.Errorf("lab: --tenants %d and the tenants' concurrency %d must not be negative", o.Tenants, o.TenantConcurrency))
	}
	if o.TenantScenario != 0 && o.TenantScenario != 1 {
		errs = append(errs, fmt.Errorf("lab: --tenant-scenario %d: use 1 (seed 004's scenario 1: every tenant geo-restored), or leave it unset for scenarios 2 and 3 (paid tenants geo-replicated, trial tenants geo-restored)", o.TenantScenario))
	}
	if o.TenantScenario != 0 && o.Tenants == 0 {
		errs = append(errs, errors.New("lab: --tenant-scenario needs --tenants N"))
	}
	if o.DegradeAfter > 0 && o.Replication != "sync" {
		errs = append(errs, errors.New("lab: --degrade-after applies only to --replication sync"))
	}
	return errors.Join(errs...)
}

// Up lays out the lab in o.Dir (on the first run), starts its daemon
// detached and waits until the daemon reports the lab ready. On a lab that
// already runs it only returns its Info, with AlreadyRunning set.
func Up(ctx context.Context, o Options) (*Info, error) {
	def := DefaultOptions()
	if o.DaemonArgs == nil {
		o.DaemonArgs = def.DaemonArgs
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = def.ReadyTimeout
	}
	if err := ValidateOptions(o); err != nil {
		return nil, lifeboat.Permanent(OpUp, "", err)
	}
	start := time.Now()
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if o.Binary == "" {
		if o.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding the lifeboat program to run the lab with: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, lifeboat.Permanent(OpUp, "", fmt.Errorf("creating the lab's directory: %w", err))
	}
	// The postgres user runs the databases inside it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if err := traversable(dir); err != nil {
		return nil, lifeboat.Permanent(OpUp, "", err)
	}

	if pid, ok := runningPID(dir); ok {
		in, err := LoadInfo(dir)
		if err != nil {
			return nil, err
		}
		in.PID, in.AlreadyRunning = pid, true
		if err := waitReady(ctx, in, nil, o.ReadyTimeout); err != nil {
			return in, err
		}
		return in, nil
	}

	in, err := LoadInfo(dir)
	if err == nil {
		// Started before: same ports, same data.
		if (in.Monitor == "") != (o.Monitor == "") {
			return nil, lifeboat.Permanent(OpUp, "", fmt.Errorf("the lab in %s was laid out %s, and --monitor %q asks for the other kind: its control plane's store differs (one member, or one per region); run 'lifeboat lab up' with %s, or 'lifeboat lab down --dir %s' and remove the directory to lay it out afresh",
				dir, monitorWords(in.Monitor), o.Monitor, monitorFlag(in.Monitor), dir))
		}
		in.Monitor = o.Monitor
		if o.Tenants > 0 && o.Tenants != in.Tenants {
			return nil, lifeboat.Permanent(OpUp, "", fmt.Errorf("the lab in %s was laid out with %d tenants, and --tenants %d asks for another lab: run 'lifeboat lab up' without --tenants, or 'lifeboat lab down --dir %s' and remove the directory to lay it out afresh", dir, in.Tenants, o.Tenants, dir))
		}
		for _, r := range in.Regions {
			if !blockFree(r.PortBase) {
				return nil, lifeboat.Transient(OpUp, "", fmt.Errorf("the lab in %s uses ports %d..%d for %s, and some are taken now: stop what listens there (ss -ltnp), or run 'lifeboat lab down --dir %s' and remove the directory to lay the lab out afresh", dir, r.PortBase, r.PortBase+r.Ports-1, r.Name, dir))
			}
		}
	} else if errors.Is(err, os.ErrNotExist) {
		if in, err = newLayout(dir); err != nil {
			return nil, err
		}
		in.Replication = o.Replication
		in.Monitor = o.Monitor
		if o.Tenants > 0 {
			in.Tenants, in.TenantConcurrency, in.TenantScenario = o.Tenants, o.TenantConcurrency, o.TenantScenario
			in.Gate = addr(in.Region(Central).PortBase + offGate)
		}
		if o.DegradeAfter > 0 {
			in.DegradeAfter = o.DegradeAfter.String()
		}
	} else {
		return nil, err
	}
	if in.Checksum, err = installBinary(o.Binary, in.Binary); err != nil {
		return nil, err
	}
	if err := saveInfo(in); err != nil {
		return nil, err
	}
	if err := writeSpec(in); err != nil {
		return nil, err
	}

	log, err := os.OpenFile(logPath(dir), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	fmt.Fprintf(log, "---- lab up %s\n", time.Now().UTC().Format(time.RFC3339))
	args := make([]string, len(o.DaemonArgs))
	for i, a := range o.DaemonArgs {
		args[i] = strings.ReplaceAll(a, "{dir}", dir)
	}
	cmd := exec.Command(o.Binary, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	// Its own session: the daemon outlives this command and the terminal's
	// ^C does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the lab daemon %s: %w", o.Binary, err)
	}
	in.PID = cmd.Process.Pid
	exited := make(chan error, 1)
	// Reap it if it dies while we wait (or later, while this process
	// lives), so it never lingers as a zombie.
	go func() { exited <- cmd.Wait() }()
	if err := waitReady(ctx, in, exited, o.ReadyTimeout); err != nil {
		return in, err
	}
	in.Ready = time.Since(start)
	return in, nil
}

// waitReady polls the daemon's status until it is ready, it exits, or the
// time is up.
func waitReady(ctx context.Context, in *Info, exited <-chan error, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	last := "no answer yet"
	for {
		st, err := fetchStatus(ctx, in.URL)
		switch {
		case err == nil && st.Ready:
			return nil
		case err == nil && strings.HasPrefix(st.Phase, "failed"):
			return lifeboat.Permanent(OpUp, "", fmt.Errorf("the lab daemon %s; see %s", st.Phase, logPath(in.Dir)))
		case err == nil:
			last = st.Phase
		default:
			last = err.Error()
		}
		select {
		case err := <-exited:
			return lifeboat.Permanent(OpUp, "", fmt.Errorf("the lab daemon exited before it was ready (%v); its last words, from %s:\n%s", err, logPath(in.Dir), tail(logPath(in.Dir), 15)))
		case <-ctx.Done():
			return lifeboat.Transient(OpUp, "", fmt.Errorf("the lab is not ready after %s (last: %s); see %s, and 'lifeboat lab down --dir %s' to stop what started", within, last, logPath(in.Dir), in.Dir))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func fetchStatus(ctx context.Context, url string) (*Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/lab/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s/lab/status: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("GET %s/lab/status: %w", url, err)
	}
	return &st, nil
}

// LabStatus asks the daemon of the lab in dir for its state.
func LabStatus(ctx context.Context, dir string) (*Status, error) {
	in, err := LoadInfo(dir)
	if err != nil {
		return nil, err
	}
	if _, ok := runningPID(in.Dir); !ok {
		return nil, lifeboat.Permanent("lab.status", "", fmt.Errorf("the lab in %s is not running: start it with 'lifeboat lab up --dir %s'", in.Dir, in.Dir))
	}
	st, err := fetchStatus(ctx, in.URL)
	if err != nil {
		return nil, lifeboat.Transient("lab.status", "", fmt.Errorf("the lab daemon does not answer (%w); see %s", err, logPath(in.Dir)))
	}
	return st, nil
}

// Fault asks the daemon of the lab in dir to inject a fault.
func Fault(ctx context.Context, dir string, req FaultRequest) (*FaultResult, error) {
	in, err := LoadInfo(dir)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, in.URL+"/lab/fault", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	// region-down waits for processes to stop: longer than a status call.
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(hr)
	if err != nil {
		return nil, lifeboat.Transient(OpFault, req.Region, fmt.Errorf("the lab daemon at %s does not answer (%w): is the lab up? 'lifeboat lab status --dir %s'", in.URL, err, in.Dir))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error == "" {
			return nil, lifeboat.Transient(OpFault, req.Region, fmt.Errorf("POST %s/lab/fault: %s", in.URL, resp.Status))
		}
		return nil, &remoteError{msg: eb.Error, retryable: eb.Retryable}
	}
	var res FaultResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, err
	}
	return &res, nil
}

// runningPID returns the daemon's PID when its PID file names a live
// process.
func runningPID(dir string) (int, bool) {
	b, err := os.ReadFile(pidPath(dir))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, alive(pid)
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
	// state follows "(comm) ", and comm may hold spaces or parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// listening reports whether something accepts connections on a loopback port.
func listening(p int) bool {
	c, err := net.DialTimeout("tcp", addr(p), 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// remoteError is an error the daemon reported, already in full (op and
// resource included), with whether a retry may help.
type remoteError struct {
	msg       string
	retryable bool
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Retryable() bool { return e.retryable }

// traversable checks that the PostgreSQL user (other than us when we are
// root) can reach dir: every parent must let others search it.
func traversable(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("PostgreSQL runs as the postgres user, who cannot enter %s (mode %s) to reach the lab in %s: pick a --dir under a directory others can enter (such as /tmp/lab), or 'chmod o+x %s'", d, fi.Mode().Perm(), dir, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func monitorWords(mode string) string {
	if mode == "" {
		return "without controllers (no --monitor)"
	}
	return "with a controller per region (--monitor " + mode + ")"
}

func monitorFlag(mode string) string {
	if mode == "" {
		return "no --monitor"
	}
	return "--monitor manual, notify or automatic"
}
