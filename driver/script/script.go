// Package script is the driver that runs the user's shell commands: each
// driver action (compute.scale, database.promote, …) is a command from
// drivers.script.actions, run by /bin/sh -c in the script directory with
// LIFEBOAT_* variables describing the action. It also runs hook steps
// (lifeboat.ScriptRunner).
//
// Contract with the commands:
//   - exit 0 is success; exit 75 (EX_TEMPFAIL) is a failure worth retrying;
//     any other exit status is a failure for good.
//   - status actions print key=value lines on stdout (see the parse
//     functions in status.go); anything else is an error.
//   - a command that outlives drivers.script.timeout is killed with its whole
//     process group, and the failure is retryable.
//   - commands must be idempotent and must refuse an action whose
//     LIFEBOAT_EPOCH is older than one they already acted for on the
//     resource: the epoch is the fencing token.
package script

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agnivade/levenshtein"
	"github.com/lifeboat-dr/lifeboat"
)

// Actions lists every action a script driver can be given a command for.
var Actions = func() []string {
	var all []string
	for _, k := range lifeboat.DriverActions {
		all = append(all, k.Actions...)
	}
	return all
}()

// ExitTempFail is the exit status (EX_TEMPFAIL) that makes a failure retryable.
const ExitTempFail = 75

// Config configures the script driver.
type Config struct {
	// Dir is where commands run. It must be an existing directory.
	Dir string
	// SpecDir is the directory of the spec file, passed as LIFEBOAT_SPEC_DIR.
	SpecDir string
	// Timeout bounds each command; on expiry its process group is killed.
	Timeout time.Duration
	// Actions maps an action name (see Actions) to a command for /bin/sh -c.
	Actions map[string]string
	// StderrLines is how many of a failed command's last stderr lines its
	// error quotes.
	StderrLines int
	// Env adds variables to every command (the LIFEBOAT_* ones win).
	Env map[string]string
}

// DefaultTimeout is a command's timeout when the spec sets none.
const DefaultTimeout = 30 * time.Second

// DefaultConfig returns a configuration that runs commands in the current
// directory with a 30 s timeout and no actions.
func DefaultConfig() Config {
	return Config{Dir: ".", SpecDir: ".", Timeout: DefaultTimeout, Actions: map[string]string{}, StderrLines: 5}
}

// ValidateConfig reports every problem of c at once.
func ValidateConfig(c Config) error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("drivers.script.timeout is %v: set a positive duration such as 30s", c.Timeout))
	}
	if c.StderrLines < 0 {
		errs = append(errs, fmt.Errorf("script driver: StderrLines is %d: use 0 or more", c.StderrLines))
	}
	if fi, err := os.Stat(c.Dir); err != nil {
		errs = append(errs, fmt.Errorf("drivers.script.dir %s: %w: create it or fix the path (relative paths start at the spec file's directory)", c.Dir, err))
	} else if !fi.IsDir() {
		errs = append(errs, fmt.Errorf("drivers.script.dir %s is a file, not a directory: point it at the directory the commands run in", c.Dir))
	}
	for _, name := range lifeboat.SortedKeys(c.Actions) {
		if !known(name) {
			errs = append(errs, fmt.Errorf("drivers.script.actions.%s is not an action%s; the actions are %s", name, suggest(name), strings.Join(Actions, ", ")))
		} else if strings.TrimSpace(c.Actions[name]) == "" {
			errs = append(errs, fmt.Errorf("drivers.script.actions.%s is empty: give the command that does it, or remove the key", name))
		}
	}
	return errors.Join(errs...)
}

func known(action string) bool {
	for _, a := range Actions {
		if a == action {
			return true
		}
	}
	return false
}

// suggest names the closest action to a misspelt one.
func suggest(name string) string {
	best, dist := "", 4 // more than 3 edits away is not a typo
	for _, a := range Actions {
		if d := levenshtein.ComputeDistance(name, a); d < dist {
			best, dist = a, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// Driver runs the user's commands. It is safe for concurrent use.
type Driver struct {
	cfg Config
}

// New builds the driver from the spec's drivers.script section (which may
// be absent: hooks still run, and every driver action asks for its key).
// Dir is relative to the spec file's directory.
func New(s *lifeboat.Spec) (*Driver, error) {
	specDir, err := filepath.Abs(filepath.Dir(s.File))
	if err != nil {
		return nil, fmt.Errorf("script driver: locating the spec's directory: %w", err)
	}
	cfg := DefaultConfig()
	cfg.SpecDir, cfg.Dir = specDir, specDir
	if sd := s.Drivers.Script; sd != nil {
		if sd.Dir != "" {
			cfg.Dir = sd.Dir
			if !filepath.IsAbs(cfg.Dir) {
				cfg.Dir = filepath.Join(specDir, sd.Dir)
			}
		}
		if sd.Timeout > 0 {
			cfg.Timeout = sd.Timeout.D()
		}
		for k, v := range sd.Actions {
			cfg.Actions[k] = v
		}
	}
	return Open(cfg)
}

// Open builds the driver from a configuration.
func Open(c Config) (*Driver, error) {
	if err := ValidateConfig(c); err != nil {
		return nil, err
	}
	actions := make(map[string]string, len(c.Actions))
	for k, v := range c.Actions {
		actions[k] = v
	}
	c.Actions = actions
	return &Driver{cfg: c}, nil
}

// Drivers returns the driver behind all five interfaces.
func (d *Driver) Drivers() lifeboat.Drivers {
	return lifeboat.Drivers{Compute: compute{d}, Database: database{d}, Backup: backup{d}, Traffic: traffic{d}, Scripts: d}
}

// Exec runs a hook's command with the run's variables plus the hook's env.
// A non-zero exit fails; only exit 75 is retryable.
func (d *Driver) Exec(ctx context.Context, t lifeboat.Target, command string, env map[string]string) error {
	if strings.TrimSpace(command) == "" {
		return lifeboat.Permanent(lifeboat.OpScript, t.Step, errors.New("the hook has no command: set its run field"))
	}
	vars := d.vars("script", t)
	// A hook has its own timeout, which the engine puts on ctx; the
	// actions' timeout only bounds a hook run without one.
	timeout := d.cfg.Timeout
	if _, ok := ctx.Deadline(); ok {
		timeout = 0
	}
	_, err := d.run(ctx, lifeboat.OpScript, t.Step, command, timeout, env, vars)
	return err
}

// vars are the LIFEBOAT_* variables of an action.
func (d *Driver) vars(action string, t lifeboat.Target) map[string]string {
	return map[string]string{
		"LIFEBOAT_ACTION":    action,
		"LIFEBOAT_SERVICE":   t.Service,
		"LIFEBOAT_UNIT":      t.Unit,
		"LIFEBOAT_COMPONENT": t.Component,
		"LIFEBOAT_REGION":    t.Region,
		"LIFEBOAT_RESOURCE":  t.Resource,
		"LIFEBOAT_EPOCH":     strconv.FormatUint(t.Epoch, 10),
		"LIFEBOAT_RUN":       t.Run,
		"LIFEBOAT_STEP":      t.Step,
		"LIFEBOAT_SPEC_DIR":  d.cfg.SpecDir,
	}
}

// action runs the command configured for an action and returns its stdout.
func (d *Driver) action(ctx context.Context, action string, t lifeboat.Target, extra map[string]string) ([]byte, error) {
	op := lifeboat.Op(action)
	command, ok := d.cfg.Actions[action]
	if !ok {
		verb := strings.ReplaceAll(action, ".", "-")
		return nil, lifeboat.Permanent(op, t.Resource, fmt.Errorf(
			"the script driver has no command for %s: add drivers.script.actions.%s to the spec (e.g. `%s: ./world.sh %s`)",
			action, action, action, verb))
	}
	vars := d.vars(action, t)
	for k, v := range extra {
		vars[k] = v
	}
	return d.run(ctx, op, t.Resource, command, d.cfg.Timeout, nil, vars)
}

// run runs command in its own process group, so that a timeout kills
// everything it started, not only the shell. timeout 0 means none (the
// caller's context bounds it).
func (d *Driver) run(ctx context.Context, op lifeboat.Op, resource, command string, timeout time.Duration, env, vars map[string]string) ([]byte, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, errTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir = d.cfg.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A background child that keeps stdout open must not hang the run.
	cmd.WaitDelay = 2 * time.Second
	cmd.Env = cmd.Environ()
	for _, m := range []map[string]string{d.cfg.Env, env, vars} {
		for _, k := range lifeboat.SortedKeys(m) {
			cmd.Env = append(cmd.Env, k+"="+m[k])
		}
	}
	var stdout bytes.Buffer
	stderr := &tail{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = &stdout, stderr

	err := cmd.Run()
	where := fmt.Sprintf("`%s` (in %s)", command, d.cfg.Dir)
	switch {
	case err == nil:
		return stdout.Bytes(), nil
	case cmd.Process == nil:
		return nil, lifeboat.Permanent(op, resource, fmt.Errorf("could not start %s: %w: check that /bin/sh exists and drivers.script.dir is a directory", where, err))
	case ctx.Err() != nil:
		pg := cmd.Process.Pid
		if context.Cause(ctx) == errTimeout {
			return nil, lifeboat.Transient(op, resource, fmt.Errorf("%s timed out after %s and its process group %d was killed: raise drivers.script.timeout if the action needs longer, or find what it waits for%s",
				where, lifeboat.FormatDuration(timeout), pg, d.stderrLines(stderr)))
		}
		return nil, lifeboat.Transient(op, resource, fmt.Errorf("%s stopped: %w; its process group %d was killed%s", where, context.Cause(ctx), pg, d.stderrLines(stderr)))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if code == -1 {
			return nil, lifeboat.Transient(op, resource, fmt.Errorf("%s was killed by %v%s", where, ee.ProcessState, d.stderrLines(stderr)))
		}
		if code == ExitTempFail {
			return nil, lifeboat.Transient(op, resource, fmt.Errorf("%s exited with status 75 (temporary failure, will retry)%s", where, d.stderrLines(stderr)))
		}
		return nil, lifeboat.Permanent(op, resource, fmt.Errorf("%s exited with status %d (failed for good; a command exits 75 to ask for a retry)%s", where, code, d.stderrLines(stderr)))
	}
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// The command succeeded; something it left running held its output.
		return stdout.Bytes(), nil
	}
	return nil, lifeboat.Transient(op, resource, fmt.Errorf("%s: %w%s", where, err, d.stderrLines(stderr)))
}

// errTimeout tells our own timeout from the end of the caller's context.
var errTimeout = errors.New("drivers.script.timeout expired")

// stderrLines quotes the last lines of stderr for an error message.
func (d *Driver) stderrLines(t *tail) string {
	lines := t.lines(d.cfg.StderrLines)
	if len(lines) == 0 {
		return " (no stderr)"
	}
	return "; last stderr:\n    " + strings.Join(lines, "\n    ")
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) lines(n int) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(string(t.buf), "\n"), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// shellJoin writes a command line that sh reads back as the same words
// (`eval set -- "$LIFEBOAT_COMMAND"`), quoting only the words that need it.
func shellJoin(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=,@%+-") == "" {
			out[i] = w
		} else {
			out[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

type compute struct{ d *Driver }

func (c compute) Status(ctx context.Context, t lifeboat.Target) (lifeboat.ScaleSet, error) {
	out, err := c.d.action(ctx, lifeboat.ActComputeStatus, t, nil)
	if err != nil {
		return lifeboat.ScaleSet{}, err
	}
	return parseScaleSet(c.d.cfg.Actions[lifeboat.ActComputeStatus], t.Resource, out)
}

func (c compute) Provision(ctx context.Context, t lifeboat.Target, recipe lifeboat.Compute) error {
	_, err := c.d.action(ctx, lifeboat.ActComputeProvision, t, map[string]string{
		"LIFEBOAT_ARTIFACT": recipe.Recipe.Artifact,
		"LIFEBOAT_COMMAND":  shellJoin(recipe.Recipe.Command),
		"LIFEBOAT_CHECKSUM": recipe.Recipe.Checksum,
	})
	return err
}

func (c compute) Scale(ctx context.Context, t lifeboat.Target, instances int) error {
	_, err := c.d.action(ctx, lifeboat.ActComputeScale, t, map[string]string{"LIFEBOAT_INSTANCES": strconv.Itoa(instances)})
	return err
}

func (c compute) Delete(ctx context.Context, t lifeboat.Target) error {
	_, err := c.d.action(ctx, lifeboat.ActComputeDelete, t, nil)
	return err
}

type database struct{ d *Driver }

func from(t lifeboat.Target) map[string]string {
	return map[string]string{"LIFEBOAT_FROM_REGION": t.Region, "LIFEBOAT_FROM_RESOURCE": t.Resource}
}

func (db database) Status(ctx context.Context, t lifeboat.Target) (lifeboat.DatabaseStatus, error) {
	out, err := db.d.action(ctx, lifeboat.ActDatabaseStatus, t, nil)
	if err != nil {
		return lifeboat.DatabaseStatus{}, err
	}
	return parseDatabase(db.d.cfg.Actions[lifeboat.ActDatabaseStatus], t.Resource, out)
}

func (db database) Fence(ctx context.Context, t lifeboat.Target) error {
	_, err := db.d.action(ctx, lifeboat.ActDatabaseFence, t, nil)
	return err
}

func (db database) Promote(ctx context.Context, t lifeboat.Target) error {
	_, err := db.d.action(ctx, lifeboat.ActDatabasePromote, t, nil)
	return err
}

// Switchover runs with t (the new primary) as the target and from (the old
// primary) in LIFEBOAT_FROM_*.
func (db database) Switchover(ctx context.Context, f, t lifeboat.Target) error {
	_, err := db.d.action(ctx, lifeboat.ActDatabaseSwitchover, t, from(f))
	return err
}

// Rejoin runs with t (the old primary) as the target and the primary to
// follow in LIFEBOAT_FROM_*.
func (db database) Rejoin(ctx context.Context, t, primary lifeboat.Target) error {
	_, err := db.d.action(ctx, lifeboat.ActDatabaseRejoin, t, from(primary))
	return err
}

type backup struct{ d *Driver }

func (b backup) Latest(ctx context.Context, t lifeboat.Target) (lifeboat.BackupInfo, error) {
	out, err := b.d.action(ctx, lifeboat.ActBackupLatest, t, nil)
	if err != nil {
		return lifeboat.BackupInfo{}, err
	}
	return parseBackup(lifeboat.ActBackupLatest, b.d.cfg.Actions[lifeboat.ActBackupLatest], t.Resource, out)
}

// Take returns what the command prints (backup.latest's keys); a command
// that prints nothing is followed by backup.latest.
func (b backup) Take(ctx context.Context, t lifeboat.Target) (lifeboat.BackupInfo, error) {
	out, err := b.d.action(ctx, lifeboat.ActBackupTake, t, nil)
	if err != nil {
		return lifeboat.BackupInfo{}, err
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return b.Latest(ctx, t)
	}
	return parseBackup(lifeboat.ActBackupTake, b.d.cfg.Actions[lifeboat.ActBackupTake], t.Resource, out)
}

func (b backup) Restore(ctx context.Context, t lifeboat.Target) error {
	_, err := b.d.action(ctx, lifeboat.ActBackupRestore, t, nil)
	return err
}

type traffic struct{ d *Driver }

func names(ns []string) map[string]string {
	sorted := append([]string(nil), ns...)
	sort.Strings(sorted)
	return map[string]string{"LIFEBOAT_NAMES": strings.Join(sorted, " ")}
}

func (tr traffic) Status(ctx context.Context, t lifeboat.Target, ns []string) (lifeboat.Route, error) {
	out, err := tr.d.action(ctx, lifeboat.ActTrafficStatus, t, names(ns))
	if err != nil {
		return lifeboat.Route{}, err
	}
	return parseRoute(tr.d.cfg.Actions[lifeboat.ActTrafficStatus], t.Resource, out)
}

func (tr traffic) Switch(ctx context.Context, t lifeboat.Target, ns []string) error {
	_, err := tr.d.action(ctx, lifeboat.ActTrafficSwitch, t, names(ns))
	return err
}
