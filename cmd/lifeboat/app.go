package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/driver"
	"github.com/lifeboat-dr/lifeboat/engine"
	"github.com/lifeboat-dr/lifeboat/store"
	"golang.org/x/term"
)

// app holds what every subcommand shares: flags and the terminal.
type app struct {
	specPath string
	output   string
	out, err io.Writer
	tty      bool // stdout is a terminal: colours and the live view
	in       *os.File
	// tokenFile holds the API token (--token-file); "" reads $LIFEBOAT_TOKEN.
	tokenFile string
}

func newApp(out, errw io.Writer) *app {
	a := &app{out: out, err: errw, in: os.Stdin}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		a.tty = true
	}
	return a
}

const (
	red    = "31"
	green  = "32"
	yellow = "33"
	blue   = "34"
	dim    = "2"
	bold   = "1"
)

// paint colours s on a terminal (and never when NO_COLOR is set).
func (a *app) paint(color, s string) string {
	if !a.tty || os.Getenv("NO_COLOR") != "" {
		return s
	}
	return "\x1b[" + color + "m" + s + "\x1b[0m"
}

func (a *app) json() bool { return a.output == "json" }

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) table() *tabwriter.Writer {
	return tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
}

// loadSpec reads and validates the spec; problems are printed with their
// file:line:col, and the command exits 2.
func (a *app) loadSpec() (*lifeboat.Spec, config.Diagnostics, error) {
	spec, diags, err := config.Load(a.specPath)
	if err != nil {
		if os.IsNotExist(err) || strings.Contains(err.Error(), "no such file") {
			return nil, nil, exit(exitSpec, "%v\n  (run lifeboat in the directory of your lifeboat.yaml, or name it with -f FILE)", err)
		}
		return nil, nil, exit(exitSpec, "%v", err)
	}
	if diags.HasErrors() {
		if !a.json() {
			a.printDiagnostics(diags)
		} else {
			_ = a.printJSON(map[string]any{"valid": false, "diagnostics": diags})
		}
		return nil, diags, &exitError{code: exitSpec, err: errShown}
	}
	return spec, diags, nil
}

func (a *app) printDiagnostics(diags config.Diagnostics) {
	for _, d := range diags {
		line := d.String()
		if d.Severity == config.SeverityError {
			line = strings.Replace(line, "error:", a.paint(red, "error:"), 1)
		} else {
			line = strings.Replace(line, "warning:", a.paint(yellow, "warning:"), 1)
		}
		fmt.Fprintln(a.err, line)
	}
	if n := diags.Errors(); n > 0 {
		fmt.Fprintf(a.err, "%s: %d error(s), %d warning(s)\n", a.specPath, n, diags.Warnings())
	}
}

// session is an open spec + store: what commands that read or change the
// state share.
type session struct {
	spec  *lifeboat.Spec
	store lifeboat.Store
	state *lifeboat.State
}

func (s *session) Close() { _ = s.store.Close() }

// storeDir is where the embedded etcd member keeps its data.
func storeDir(spec *lifeboat.Spec) string {
	dir := spec.Store.Dir
	if dir == "" {
		dir = ".lifeboat"
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(spec.File), dir)
	}
	return dir
}

// open loads the spec and opens the store; the first open of a new service
// records its initial state (active in the primary region, epoch 1).
func (a *app) open(ctx context.Context) (*session, error) {
	spec, _, err := a.loadSpec()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, store.Options{Dir: storeDir(spec), Endpoints: spec.Store.Endpoints, Members: spec.Store.Members, Service: spec.Service})
	if err != nil {
		return nil, fmt.Errorf("opening the state store: %w", err)
	}
	state, err := st.Init(ctx, lifeboat.InitialState(spec, time.Now().UTC()))
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("reading the state: %w", err)
	}
	return &session{spec: spec, store: st, state: state}, nil
}

// engine builds an engine on the spec's drivers.
func (a *app) engine(s *session, approve func(context.Context, string, *lifeboat.Step) (bool, error), onEvent func(engine.Event)) (*engine.Engine, error) {
	drivers, err := driver.FromSpec(s.spec, s.state)
	if err != nil {
		return nil, exit(exitSpec, "drivers: %v", err)
	}
	cfg := engine.DefaultConfig()
	cfg.Store = s.store
	cfg.Bind = func(run string, step *lifeboat.Step) (lifeboat.Action, error) {
		return lifeboat.Bind(s.spec, drivers, run, step)
	}
	cfg.Approve = approve
	cfg.OnEvent = onEvent
	cfg.By = whoami()
	return engine.New(cfg)
}

func whoami() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func since(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return lifeboat.FormatDuration(time.Since(t)) + " ago"
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
