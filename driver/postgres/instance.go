package postgres

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// DefaultBinDir is where Debian's postgresql-15 puts its programs.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// settingsFile holds the settings that belong to one node (port, where it
// streams from). postgresql.conf includes it last; pg_rewind and
// pg_basebackup copy it from the source, so Lifeboat writes it again after
// either.
const settingsFile = "lifeboat.conf"

// nodeKeys are the settings that must never come from another node's copy.
// postgresql.auto.conf (ALTER SYSTEM) is read after lifeboat.conf, so these
// are removed from it whenever a node is (re)built.
var nodeKeys = []string{"port", "listen_addresses", "unix_socket_directories", "primary_conninfo",
	"primary_slot_name", "default_transaction_read_only", "synchronous_standby_names", "cluster_name"}

// Instance is one PostgreSQL data directory on this host and the postmaster
// that serves it. Its methods run the PostgreSQL programs, as the postgres
// OS user when this process is root (PostgreSQL refuses to run as root).
type Instance struct {
	BinDir  string
	DataDir string
	Host    string // listen address; 127.0.0.1 in labs and tests
	Port    int
	// Name is the cluster_name and the application_name it streams as.
	Name string
	// Settings are extra per-node settings written to lifeboat.conf.
	Settings map[string]string
	Log      *slog.Logger

	mu sync.Mutex // serialises writes of lifeboat.conf
}

// InitOptions are what initdb needs.
type InitOptions struct {
	Superuser, Password string
	// ReplicationUser is created with REPLICATION LOGIN when set.
	ReplicationUser, ReplicationPassword string
}

func (i *Instance) log() *slog.Logger {
	if i.Log != nil {
		return i.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (i *Instance) bin(name string) string {
	dir := i.BinDir
	if dir == "" {
		dir = DefaultBinDir
	}
	return filepath.Join(dir, name)
}

// LogFile is where the postmaster writes its log (outside the data dir, so
// that a rewind or base backup does not carry it between nodes).
func (i *Instance) LogFile() string { return i.DataDir + ".log" }

// runAs returns the uid/gid to run PostgreSQL programs as: the postgres user
// when this process is root, otherwise nil (run as ourselves).
var runAs = sync.OnceValues(func() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses root: need the postgres OS user to run it as, but %w (install postgresql-15 or run Lifeboat as a non-root user)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
})

// Chown gives path to the user PostgreSQL runs as (a no-op unless root).
func Chown(path string) error {
	cred, err := runAs()
	if err != nil || cred == nil {
		return err
	}
	return os.Lchown(path, int(cred.Uid), int(cred.Gid))
}

// MkdirForPostgres creates dir (and its parents) so that the PostgreSQL user
// can use it: owned by that user, mode 0700 for the dir itself. Parents it
// creates are made traversable.
func MkdirForPostgres(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return Chown(dir)
}

// run runs a PostgreSQL program and returns its standard output; the error
// carries the program's standard error, which is what explains a failure.
func (i *Instance) run(ctx context.Context, asPostgres bool, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, i.bin(name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	cmd.Dir = "/"
	if asPostgres {
		cred, err := runAs()
		if err != nil {
			return nil, err
		}
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	i.log().Debug("ran", "program", name, "args", args, "took", time.Since(start), "err", err)
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(redact(args), " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// redact hides passwords of connection strings in logs and errors.
func redact(args []string) []string {
	out := make([]string, len(args))
	for k, a := range args {
		out[k] = redactConninfo(a)
	}
	return out
}

func redactConninfo(s string) string {
	fs := strings.Fields(s)
	for k, f := range fs {
		if strings.HasPrefix(f, "password=") {
			fs[k] = "password=xxx"
		}
	}
	if len(fs) == 0 {
		return s
	}
	return strings.Join(fs, " ")
}

// Init creates the data dir with initdb and the settings streaming
// replication and pg_rewind need. It refuses a data dir that already holds a
// cluster.
func (i *Instance) Init(ctx context.Context, o InitOptions) error {
	if _, err := os.Stat(filepath.Join(i.DataDir, "PG_VERSION")); err == nil {
		return fmt.Errorf("initdb %s: a cluster already exists there; remove it or use another data dir", i.DataDir)
	}
	if err := MkdirForPostgres(i.DataDir); err != nil {
		return fmt.Errorf("initdb: cannot create %s for the postgres user: %w", i.DataDir, err)
	}
	pw := i.DataDir + ".pw"
	if err := os.WriteFile(pw, []byte(o.Password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pw)
	if err := Chown(pw); err != nil {
		return err
	}
	if _, err := i.run(ctx, true, "initdb", "-D", i.DataDir, "-U", o.Superuser, "--pwfile="+pw,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return err
	}
	conf := filepath.Join(i.DataDir, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	// Shared by every node (pg_rewind and pg_basebackup copy this file).
	_, err = fmt.Fprintf(f, "\n# Lifeboat: streaming replication and pg_rewind\nwal_level = replica\nwal_log_hints = on\n"+
		"max_wal_senders = 10\nmax_replication_slots = 10\nhot_standby = on\nwal_keep_size = '256MB'\n"+
		"hot_standby_feedback = on\nwal_receiver_status_interval = 1s\nfsync = on\n"+
		"include_if_exists = '%s'\n", settingsFile)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := i.WriteSettings(""); err != nil {
		return err
	}
	if o.ReplicationUser != "" && o.ReplicationUser != o.Superuser {
		if err := i.Start(ctx); err != nil {
			return err
		}
		conn, err := connect(ctx, i.DSN(o.Superuser, o.Password, "postgres"))
		if err != nil {
			return fmt.Errorf("create the replication user on %s: %w", i.DataDir, err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		sql := fmt.Sprintf("CREATE ROLE %s WITH REPLICATION LOGIN PASSWORD %s", quoteIdent(o.ReplicationUser), quoteLiteral(o.ReplicationPassword))
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create the replication user %s on %s: %w", o.ReplicationUser, i.DataDir, err)
		}
	}
	return nil
}

func (i *Instance) host() string {
	if i.Host == "" {
		return "127.0.0.1"
	}
	return i.Host
}

// WriteSettings writes lifeboat.conf: the node's own settings, and, when
// primaryConninfo is set, where it streams from. It also removes per-node
// settings from postgresql.auto.conf, which may have come from another node.
// Call it while the postmaster is stopped (or reload after).
func (i *Instance) WriteSettings(primaryConninfo string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	var b strings.Builder
	b.WriteString("# Written by Lifeboat for this node; rewritten after every rewind or base backup.\n")
	fmt.Fprintf(&b, "listen_addresses = %s\nport = %d\nunix_socket_directories = ''\n", quoteLiteral(i.host()), i.Port)
	if i.Name != "" {
		fmt.Fprintf(&b, "cluster_name = %s\n", quoteLiteral(i.Name))
	}
	fmt.Fprintf(&b, "primary_conninfo = %s\n", quoteLiteral(primaryConninfo))
	for _, k := range lifeboat.SortedKeys(i.Settings) {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteLiteral(i.Settings[k]))
	}
	if err := writeFileAtomic(filepath.Join(i.DataDir, settingsFile), []byte(b.String()), 0o600, true); err != nil {
		return err
	}
	return i.stripAutoConf()
}

// fenceMark ends the line SetFence adds to lifeboat.conf.
const fenceMark = "# fenced by Lifeboat"

// SetFence adds (on) or removes the fence in lifeboat.conf: with it, the
// node comes up read-only whoever starts it next (a person, an init
// system, the lab healing a region), so an old primary that was down when
// it was fenced cannot take writes when it returns. WriteSettings (rewind,
// base backup, rejoin as a standby) drops it; Promote removes it.
func (i *Instance) SetFence(on bool) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	path := filepath.Join(i.DataDir, settingsFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var out []string
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line != "" && !strings.Contains(line, fenceMark) {
			out = append(out, line)
		}
	}
	if on {
		out = append(out, "default_transaction_read_only = on "+fenceMark+"\n")
	}
	return writeFileAtomic(path, []byte(strings.Join(out, "")), 0o600, true)
}

// Fenced reports whether lifeboat.conf holds the fence.
func (i *Instance) Fenced() bool {
	data, err := os.ReadFile(filepath.Join(i.DataDir, settingsFile))
	return err == nil && strings.Contains(string(data), fenceMark)
}

func (i *Instance) stripAutoConf() error {
	path := filepath.Join(i.DataDir, "postgresql.auto.conf")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		key, _, _ := strings.Cut(strings.TrimSpace(line), "=")
		drop := false
		for _, k := range nodeKeys {
			if strings.TrimSpace(key) == k {
				drop = true
			}
		}
		if !drop {
			out = append(out, line)
		}
	}
	return writeFileAtomic(path, []byte(strings.Join(out, "\n")+"\n"), 0o600, true)
}

// Follow makes the data dir a standby of primaryConninfo at its next start:
// standby.signal plus primary_conninfo in lifeboat.conf.
func (i *Instance) Follow(primaryConninfo string) error {
	if err := i.WriteSettings(primaryConninfo); err != nil {
		return err
	}
	sig := filepath.Join(i.DataDir, "standby.signal")
	if err := os.WriteFile(sig, nil, 0o600); err != nil {
		return err
	}
	return Chown(sig)
}

// IsStandbyConfigured reports whether the data dir will start as a standby.
func (i *Instance) IsStandbyConfigured() bool {
	_, err := os.Stat(filepath.Join(i.DataDir, "standby.signal"))
	return err == nil
}

// Start starts the postmaster and waits until it accepts connections (a
// standby: until it accepts read-only connections).
func (i *Instance) Start(ctx context.Context) error {
	if pid, ok := i.PID(); ok {
		i.log().Debug("already running", "datadir", i.DataDir, "pid", pid)
		return nil
	}
	if err := i.clearStaleLock(ctx); err != nil {
		return err
	}
	if err := touchForPostgres(i.LogFile()); err != nil {
		return err
	}
	_, err := i.run(ctx, true, "pg_ctl", "start", "-D", i.DataDir, "-w", "-t", "120", "-l", i.LogFile())
	if err != nil {
		return fmt.Errorf("start PostgreSQL in %s (port %d): %w; see %s", i.DataDir, i.Port, err, i.LogFile())
	}
	return nil
}

func touchForPostgres(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	return Chown(path)
}

// Stop shuts the postmaster down with pg_ctl: mode "fast" (a clean shutdown:
// a primary sends all its WAL to connected standbys first), "smart" or
// "immediate". Stopping a stopped instance is not an error.
func (i *Instance) Stop(ctx context.Context, mode string) error {
	if _, ok := i.PID(); !ok {
		return nil
	}
	if mode == "" {
		mode = "fast"
	}
	_, err := i.run(ctx, true, "pg_ctl", "stop", "-D", i.DataDir, "-m", mode, "-w", "-t", "120")
	if err != nil {
		if _, ok := i.PID(); !ok {
			return nil // stopped meanwhile
		}
		return fmt.Errorf("stop PostgreSQL in %s: %w; see %s", i.DataDir, err, i.LogFile())
	}
	return nil
}

// StopWithin shuts the postmaster down cleanly ("fast": SIGINT) but gives
// that at most grace, then stops it "immediate" (SIGQUIT: no shutdown
// checkpoint; the next start does crash recovery). A fast shutdown lets
// the walsenders hand the shutdown checkpoint to the standbys and waits
// for their acknowledgement: over a hung link that lasts until
// wal_sender_timeout, too long for a fence. clean reports whether the fast
// shutdown finished within grace. When it returns nil the postmaster has
// exited, and a postmaster exits only after all its children (backends
// included; it SIGKILLs stragglers after 5s), so nothing of it can take a
// write. Stopping a stopped instance is clean.
func (i *Instance) StopWithin(ctx context.Context, grace time.Duration) (clean bool, err error) {
	pid, ok := i.PID()
	if !ok {
		return true, nil
	}
	// Signals rather than pg_ctl: pg_ctl polls every 100ms, and a fence
	// is on the failover's critical path.
	signal := func(sig syscall.Signal) error {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal %v to postmaster %d of %s: %w", sig, pid, i.DataDir, err)
		}
		return nil
	}
	gone := func(ctx context.Context) bool {
		for alive(pid) {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(5 * time.Millisecond):
			}
		}
		return true
	}
	if err := signal(syscall.SIGINT); err != nil {
		return false, err
	}
	gctx, cancel := context.WithTimeout(ctx, grace)
	clean = gone(gctx)
	cancel()
	if clean {
		return true, nil
	}
	if ctx.Err() != nil {
		return false, fmt.Errorf("stop PostgreSQL in %s: postmaster %d still runs: %w; see %s", i.DataDir, pid, ctx.Err(), i.LogFile())
	}
	if err := signal(syscall.SIGQUIT); err != nil {
		return false, err
	}
	if !gone(ctx) {
		return false, fmt.Errorf("stop PostgreSQL in %s: postmaster %d still runs after an immediate shutdown: %w; see %s (kill -9 it by PID if it is stuck)", i.DataDir, pid, ctx.Err(), i.LogFile())
	}
	return false, nil
}

// Kill sends SIGKILL to the postmaster (by the PID in postmaster.pid) and
// waits until it is gone: a crash, for tests and drills.
func (i *Instance) Kill(ctx context.Context) error {
	pid, ok := i.PID()
	if !ok {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill postmaster %d of %s: %w", pid, i.DataDir, err)
	}
	// The children notice the postmaster is gone and exit; wait until the
	// shared memory is released so that a restart does not trip on it.
	for {
		if !alive(pid) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postmaster %d of %s still alive after SIGKILL: %w", pid, i.DataDir, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// clearStaleLock removes the postmaster.pid of a dead postmaster. One that
// was killed stays a zombie when nothing reaps it (its parent was pg_ctl,
// and PID 1 of a container may not reap): PostgreSQL's own check sees the
// zombie answer signal 0 and refuses to start. The file is removed only
// once every child of the dead postmaster has exited, so nothing still
// holds its shared memory.
func (i *Instance) clearStaleLock(ctx context.Context) error {
	path := filepath.Join(i.DataDir, "postmaster.pid")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 || alive(pid) {
		return nil
	}
	for childrenOf(pid) > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the children of the dead postmaster %d of %s have not exited: %w", pid, i.DataDir, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the stale %s of the dead postmaster %d: %w", path, pid, err)
	}
	return nil
}

// childrenOf counts the live processes whose parent is pid.
func childrenOf(pid int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		k := bytes.LastIndexByte(data, ')')
		if k < 0 || k+2 >= len(data) {
			continue
		}
		// After ") ": the state, then the parent's PID.
		fields := strings.Fields(string(data[k+2:]))
		if len(fields) >= 2 && fields[0] != "Z" && fields[1] == strconv.Itoa(pid) && alive(child) {
			n++
		}
	}
	return n
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil {
		return false
	}
	// A zombie (our own dead child) still answers signal 0.
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if k := bytes.LastIndexByte(data, ')'); k > 0 && k+2 < len(data) {
		return data[k+2] != 'Z'
	}
	return true
}

// PID returns the postmaster's PID when one runs for this data dir.
func (i *Instance) PID() (int, bool) {
	data, err := os.ReadFile(filepath.Join(i.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, alive(pid)
}

// BaseBackup fills the (absent or empty) data dir with pg_basebackup from
// source, streaming the WAL it needs, and writes this node's settings.
func (i *Instance) BaseBackup(ctx context.Context, source string) error {
	if err := MkdirForPostgres(i.DataDir); err != nil {
		return fmt.Errorf("base backup: cannot create %s: %w", i.DataDir, err)
	}
	if _, err := i.run(ctx, true, "pg_basebackup", "-D", i.DataDir, "-d", source, "-X", "stream",
		"-c", "fast", "--no-sync"); err != nil {
		return err
	}
	return i.WriteSettings("")
}

// Rewind runs pg_rewind against a running source so that the (stopped) data
// dir can follow it, then writes this node's settings again (pg_rewind
// copies the source's).
func (i *Instance) Rewind(ctx context.Context, source string) error {
	if _, err := i.run(ctx, true, "pg_rewind", "-D", i.DataDir, "--source-server="+source, "--no-sync"); err != nil {
		return err
	}
	return i.WriteSettings("")
}

// ControlData returns pg_controldata's fields ("Latest checkpoint location"…).
func (i *Instance) ControlData(ctx context.Context) (map[string]string, error) {
	out, err := i.run(ctx, false, "pg_controldata", "-D", i.DataDir)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// writeFileAtomic writes data to a temporary file, syncs it and renames it
// over path, so that a crash leaves the old or the new content, never half.
func writeFileAtomic(path string, data []byte, perm os.FileMode, forPostgres bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if forPostgres {
		// Owned by PostgreSQL's user before it takes the name: a server
		// starting or reloading in between must never find the file
		// unreadable (root's, 0600), which makes a start fail.
		if err := Chown(tmp.Name()); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
