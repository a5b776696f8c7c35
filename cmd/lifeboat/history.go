package main

import (
	"context"
	"fmt"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/spf13/cobra"
)

func (a *app) historyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history [RUN]",
		Short: "Past runs; with RUN, that run's journal",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			runs, run, recs, err := a.historyOf(ctx, args)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if a.json() {
					return a.printJSON(map[string]any{"run": run, "journal": recs})
				}
				fmt.Fprintf(a.out, "run %s: %s of %s %s → %s, epoch %d, %s, by %s\n\n", run.ID, run.Plan.Intent, run.Plan.Service,
					run.Plan.From, run.Plan.To, run.Plan.Epoch, run.Status, run.By)
				w := a.table()
				fmt.Fprintln(w, "SEQ\tTIME\tRECORD\tSTEP\tDETAIL")
				for _, r := range recs {
					detail := r.Error
					if r.Kind == lifeboat.RecAttempt {
						detail = fmt.Sprintf("attempt %d", r.Attempt)
					} else if r.Kind == lifeboat.RecError {
						retry := "not retryable"
						if r.Retryable {
							retry = "retryable"
						}
						detail = fmt.Sprintf("attempt %d, %s: %s", r.Attempt, retry, truncate(r.Error, 80))
					}
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", r.Seq, r.At.Local().Format("15:04:05.000"), r.Kind, r.Step, detail)
				}
				return w.Flush()
			}
			if a.json() {
				return a.printJSON(runs)
			}
			if len(runs) == 0 {
				fmt.Fprintln(a.out, "no runs yet")
				return nil
			}
			w := a.table()
			fmt.Fprintln(w, "RUN\tINTENT\tFROM → TO\tEPOCH\tSTATUS\tSTARTED\tTOOK\tESTIMATED\tBY")
			for _, r := range runs {
				took := "-"
				if !r.EndedAt.IsZero() {
					took = lifeboat.FormatDuration(r.EndedAt.Sub(r.StartedAt))
				}
				fmt.Fprintf(w, "%s\t%s\t%s → %s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Plan.Intent, r.Plan.From, r.Plan.To, r.Plan.Epoch,
					r.Status, stamp(r.StartedAt), took, lifeboat.FormatDuration(r.Plan.RTO), r.By)
			}
			return w.Flush()
		},
	}
	a.apiFlags(cmd)
	return cmd
}

// historyOf reads the runs (no args) or the named run and its journal:
// through the API when a controller answers, else from the store.
func (a *app) historyOf(ctx context.Context, args []string) ([]*lifeboat.Run, *lifeboat.Run, []lifeboat.Record, error) {
	r, err := a.remoteFor(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if r != nil {
		if len(args) == 1 {
			d, err := a.pickRemoteRun(ctx, r, args, "")
			if err != nil {
				return nil, nil, nil, err
			}
			return nil, d.Run, d.Journal, nil
		}
		runs, err := r.c.Runs(ctx)
		if err != nil {
			return nil, nil, nil, a.apiError(r.url, err)
		}
		return runs, nil, nil, nil
	}
	s, err := a.open(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	defer s.Close()
	if len(args) == 1 {
		run, err := a.pickRun(ctx, s, args)
		if err != nil {
			return nil, nil, nil, err
		}
		recs, err := s.store.Journal(ctx, run.ID)
		if err != nil {
			return nil, nil, nil, err
		}
		return nil, run, recs, nil
	}
	runs, err := s.store.Runs(ctx)
	return runs, nil, nil, err
}
