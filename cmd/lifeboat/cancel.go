package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func (a *app) cancelCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cancel [RUN]",
		Short: "Stop a run and clean up so that nothing is left half-done",
		Long: `Stop a run: no new step starts, steps under way are stopped, and the
steps that can be undone safely are undone (a scale set stood up is deleted,
a scale set scaled up is scaled back). Steps that cannot be undone without
losing data (a promoted database, a switched name) are kept and listed.
The epoch never goes back. RUN defaults to the run in progress; if the
process running it is alive, it is asked to stop and clean up.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if r, err := a.remoteFor(ctx); err != nil || r != nil {
				if err != nil {
					return err
				}
				return a.goOnRemote(ctx, r, args, "cancel", nil)
			}
			s, run, pr, eng, err := a.openRun(ctx, args, "cancel", false)
			if err != nil {
				return err
			}
			defer s.Close()
			if !a.json() {
				fmt.Fprintf(a.out, "cancelling run %s: %s of %s %s → %s\n", run.ID, run.Plan.Intent, run.Plan.Service, run.Plan.From, run.Plan.To)
			}
			f, err := eng.Cancel(ctx, run.ID)
			if err != nil {
				return err
			}
			pr.begin(run.ID)
			return a.follow(ctx, pr, f)
		},
	}
	a.apiFlags(cmd)
	return cmd
}
