// Command lifeboat moves a service between regions: it validates the spec,
// plans failover, failback and switchover, runs plans durably, and shows
// where everything is.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit statuses, so scripts can tell outcomes apart.
const (
	exitOK      = 0
	exitFailed  = 1 // a run failed, or a command could not do its job
	exitSpec    = 2 // the spec or the command line is wrong
	exitWaiting = 3 // the run waits for an approval
	exitRefused = 4 // refused for safety (another run in progress, not confirmed)
)

// exitError carries an exit status up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exit(code int, format string, a ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, a...)}
}

func main() {
	a := newApp(os.Stdout, os.Stderr)
	root := a.command()
	err := root.Execute()
	if err == nil {
		return
	}
	code := exitFailed
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	} else if strings.HasPrefix(err.Error(), "unknown command") {
		code = exitSpec
	}
	if !errors.Is(err, errShown) {
		fmt.Fprintln(os.Stderr, a.paint(red, "error: ")+err.Error())
	}
	os.Exit(code)
}

// errShown marks an error already printed in full (e.g. spec diagnostics).
var errShown = errors.New("shown")

func (a *app) command() *cobra.Command {
	root := &cobra.Command{
		Use:   "lifeboat",
		Short: "Move a whole service to another region and back, safely",
		Long: `Lifeboat keeps a standby region ready and moves a service — traffic,
compute, databases — to it and back: failover when a region is lost,
switchover for drills, failback to come home.

Every command reads lifeboat.yaml in the current directory unless -f names
another file. Runs are journaled: an interrupted run continues with
'lifeboat resume' or is cleaned up with 'lifeboat cancel'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			switch a.output {
			case "text", "json":
				return nil
			}
			return exit(exitSpec, "--output %q: use text or json", a.output)
		},
	}
	root.PersistentFlags().StringVarP(&a.specPath, "spec", "f", "lifeboat.yaml", "the service spec")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "text", "text or json (for scripts)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return exit(exitSpec, "%v (see '%s --help')", err, cmd.CommandPath())
	})
	root.AddCommand(
		a.validateCommand(),
		a.planCommand(),
		a.intentCommand("failover"),
		a.intentCommand("failback"),
		a.intentCommand("switchover"),
		a.intentCommand("rejoin"),
		a.drillCommand(),
		a.resumeCommand(),
		a.cancelCommand(),
		a.statusCommand(),
		a.historyCommand(),
		a.unitsCommand(),
		a.tenantCommand(),
		a.auditCommand(), a.apiCommand(),
		a.serveCommand(),
		a.labCommand(),
	)
	return root
}

// args wraps a cobra argument check so that a wrong command line exits 2
// and says how to call the command.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return exit(exitSpec, "%v; usage: %s", err, cmd.UseLine())
		}
		return nil
	}
}
