package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/engine"
	"github.com/spf13/cobra"
)

func (a *app) resumeCommand() *cobra.Command {
	var approve []string
	cmd := &cobra.Command{
		Use:   "resume [RUN]",
		Short: "Continue an interrupted, failed or waiting run from its journal",
		Long: `Continue a run from its journal: steps that completed are not applied
again; a step that was under way is checked first and applied only if its
effect does not hold. RUN defaults to the run in progress.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if r, err := a.remoteFor(ctx); err != nil || r != nil {
				if err != nil {
					return err
				}
				return a.goOnRemote(ctx, r, args, "resume", approve)
			}
			s, run, pr, eng, err := a.openRun(ctx, args, "resume", true)
			if err != nil {
				return err
			}
			defer s.Close()
			if !a.json() {
				fmt.Fprintf(a.out, "resuming run %s: %s of %s %s → %s (epoch %d)\n", run.ID, run.Plan.Intent, run.Plan.Service, run.Plan.From, run.Plan.To, run.Plan.Epoch)
			}
			f, err := eng.Resume(ctx, run.ID, approve...)
			if err != nil {
				if errors.Is(err, lifeboat.ErrRunOwned) {
					return exit(exitRefused, "%v", err)
				}
				return err
			}
			pr.begin(run.ID)
			return a.follow(ctx, pr, f)
		},
	}
	a.apiFlags(cmd)
	cmd.Flags().StringArrayVar(&approve, "approve", nil, "approve this approval step (its id, as shown); repeatable")
	return cmd
}

// remoteFor loads the spec and finds its running API (nil: none, work on
// the store), preferring the leader's.
func (a *app) remoteFor(ctx context.Context) (*remote, error) {
	spec, _, err := a.loadSpec()
	if err != nil {
		return nil, err
	}
	return a.remote(ctx, spec, true)
}

// openRun opens the store and the run named in args (or the one in
// progress), with a progress view that already shows its journal, and an
// engine to go on with it (asking approvals on a terminal if ask).
func (a *app) openRun(ctx context.Context, args []string, verb string, ask bool) (*session, *lifeboat.Run, *progress, *engine.Engine, error) {
	s, err := a.open(ctx)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	fail := func(err error) (*session, *lifeboat.Run, *progress, *engine.Engine, error) {
		s.Close()
		return nil, nil, nil, nil, err
	}
	run, err := a.pickRun(ctx, s, args)
	if err != nil {
		return fail(err)
	}
	if run.Status.Done() {
		return fail(exit(exitRefused, "run %s has already %s; nothing to %s", run.ID, run.Status, verb))
	}
	pr := newProgress(a, run.Plan)
	if recs, err := s.store.Journal(ctx, run.ID); err == nil {
		pr.replay(recs)
	}
	var approve func(context.Context, string, *lifeboat.Step) (bool, error)
	if ask {
		approve = a.approver(pr)
	}
	eng, err := a.engine(s, approve, pr.event)
	if err != nil {
		return fail(err)
	}
	return s, run, pr, eng, nil
}

// pickRun returns the named run, or the one in progress.
func (a *app) pickRun(ctx context.Context, s *session, args []string) (*lifeboat.Run, error) {
	id := s.state.Run
	if len(args) == 1 {
		id = args[0]
	}
	if id == "" {
		return nil, exit(exitRefused, "no run is in progress ('lifeboat history' lists past runs)")
	}
	run, err := s.store.Run(ctx, id)
	if errors.Is(err, lifeboat.ErrNoRun) {
		return nil, exit(exitSpec, "no run %q ('lifeboat history' lists the runs)", id)
	}
	return run, err
}
