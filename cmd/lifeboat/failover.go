package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/engine"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

var intentHelp = map[string]struct{ short, long string }{
	"failover": {"Move the service to the other region now (unplanned: may lose up to the RPO)",
		`Fail the service over to the other region: in parallel, fail over each
database per its DR mode and stand up compute per its standby mode; then
switch traffic. The old primary is fenced wherever it can be reached.
Writes not yet replicated may be lost (up to the plan's RPO).`},
	"failback": {"Bring the service home with zero data loss (planned)",
		`Fail back to the primary region: stop writes, fail data back with zero
loss, switch traffic back, delete the failover resource group.`},
	"rejoin": {"Make the other region ready again after a failover (the service stays)",
		`Rebuild the copies of the databases in the region that is not active as
replicas of the active ones: an old primary is fenced first if the state
still calls it primary, and the writes it took that never replicated go to
quarantine, with a report. Nothing else moves; afterwards readiness turns
green and failback is a planned, zero-loss operation.`},
	"switchover": {"Move the service to the other region with zero data loss (planned)",
		`A planned, zero-loss move of everything to the other region, for drills
and maintenance: stand up compute there, stop writes, switch the databases
over, switch traffic.`},
}

func (a *app) intentCommand(name string) *cobra.Command {
	var to string
	var yes, force bool
	h := intentHelp[name]
	cmd := &cobra.Command{
		Use:   name,
		Short: h.short,
		Long: h.long + `

The plan is shown first and must be confirmed by typing the destination
region (or --yes). Progress is journaled: if lifeboat is interrupted,
'lifeboat resume' goes on and 'lifeboat cancel' cleans up.

When the spec has an api section and a controller answers, the run is
started through the API (token from $LIFEBOAT_TOKEN or --token-file; the
token's role decides what is allowed, and the call is audited) and runs in
the controller; this command follows it. An approval step then pauses the
run: 'lifeboat resume --approve STEP' goes on.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			spec, _, err := a.loadSpec()
			if err != nil {
				return err
			}
			r, err := a.remote(ctx, spec, true)
			if err != nil {
				return err
			}
			if r != nil {
				return a.runRemote(ctx, r, lifeboat.Intent(name), to, yes, force)
			}
			s, err := a.open(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			if s.state.Run != "" {
				return a.runInProgress(ctx, s)
			}
			p, err := a.makePlan(ctx, s, lifeboat.Intent(name), to)
			if err != nil {
				return err
			}
			if !a.json() {
				a.printPlan(p)
				fmt.Fprintln(a.out)
			}
			if lifeboat.Intent(name) == lifeboat.IntentFailover {
				ctrls, _ := controllers(ctx, s)
				if err := refuseUnready(readiness(ctx, s, ctrls), p.To); err != nil {
					if !force {
						return err
					}
					fmt.Fprintln(a.err, a.paint(yellow, "forced: ")+err.Error())
				}
			}
			if !yes {
				if err := a.confirm(p); err != nil {
					return err
				}
			}
			pr := newProgress(a, p)
			eng, err := a.engine(s, a.approver(pr), pr.event)
			if err != nil {
				return err
			}
			f, err := eng.Start(ctx, p)
			if err != nil {
				if errors.Is(err, lifeboat.ErrRunInProgress) {
					return exit(exitRefused, "%v", err)
				}
				return err
			}
			pr.begin(f.RunID())
			return a.follow(ctx, pr, f)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "destination region (default: the other region; home for failback)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (for scripts)")
	a.apiFlags(cmd)
	if name == "failover" {
		cmd.Flags().BoolVar(&force, "force", false, "fail over even when readiness says it would fail")
	}
	return cmd
}

// runInProgress refuses a new run while one has not ended.
func (a *app) runInProgress(ctx context.Context, s *session) error {
	r, err := s.store.Run(ctx, s.state.Run)
	if err != nil {
		return exit(exitRefused, "run %s is in progress; 'lifeboat resume' to go on or 'lifeboat cancel' to clean up", s.state.Run)
	}
	return exit(exitRefused, "run %s (%s %s → %s, %s) has not ended; 'lifeboat resume' to go on or 'lifeboat cancel' to clean up first",
		r.ID, r.Plan.Intent, r.Plan.From, r.Plan.To, r.Status)
}

// confirm asks a person to type the destination region.
func (a *app) confirm(p *lifeboat.Plan) error {
	if !term.IsTerminal(int(a.in.Fd())) {
		return exit(exitRefused, "not confirmed: %s of %s to %s needs a person to confirm; add --yes to run it from a script", p.Intent, p.Service, p.To)
	}
	warn := ""
	if p.Intent == lifeboat.IntentFailover && p.RPO > 0 {
		rpo := lifeboat.FormatDuration(p.RPO)
		if p.RPO == lifeboat.AllData {
			rpo = "all data of some databases"
		}
		warn = fmt.Sprintf(" Writes not yet replicated to %s may be lost (up to %s).", p.To, rpo)
	}
	fmt.Fprintf(a.err, "%s moves %s from %s to %s.%s\nType %s to go on, anything else to stop: ",
		a.paint(bold, string(p.Intent)), p.Service, p.From, p.To, warn, a.paint(bold, p.To))
	line, _ := bufio.NewReader(a.in).ReadString('\n')
	if strings.TrimSpace(line) != p.To {
		return exit(exitRefused, "not confirmed; nothing was changed")
	}
	return nil
}

// approver prompts for approval steps on a terminal; elsewhere the run
// pauses until 'lifeboat resume --approve'.
func (a *app) approver(pr *progress) func(context.Context, string, *lifeboat.Step) (bool, error) {
	if !term.IsTerminal(int(a.in.Fd())) || a.json() {
		return nil
	}
	var once sync.Mutex
	stdin := bufio.NewReader(a.in)
	return func(ctx context.Context, run string, s *lifeboat.Step) (bool, error) {
		once.Lock()
		defer once.Unlock()
		pr.pause()
		defer pr.unpause()
		fmt.Fprintf(a.err, "\n%s %s\n  %s\nApprove? [y/N] ", a.paint(yellow, "approval needed:"), s.ID, s.Approval)
		// Read in the background so a cancel request (ctx) ends the wait.
		answer := make(chan string, 1)
		go func() {
			line, _ := stdin.ReadString('\n')
			answer <- line
		}()
		var line string
		select {
		case line = <-answer:
		case <-ctx.Done():
			fmt.Fprintln(a.err, "(the run was cancelled; no answer needed)")
			return false, ctx.Err()
		}
		ans := strings.ToLower(strings.TrimSpace(line))
		return ans == "y" || ans == "yes", nil
	}
}

// follow waits for a run to end and says how it ended.
func (a *app) follow(ctx context.Context, pr *progress, f *engine.Future) error {
	select {
	case <-f.Done():
	case <-ctx.Done():
		<-f.Done()
	}
	pr.end()
	run := f.Run()
	err := f.Error()
	if a.json() {
		_ = a.printJSON(run)
	}
	id := pr.run
	if run != nil {
		id = run.ID
	}
	switch {
	case err == nil && run != nil && run.Status == lifeboat.RunCancelled:
		a.say(yellow, "■", "run %s cancelled; completed steps that could be undone were undone", id)
		if run.Error != "" {
			fmt.Fprintln(a.err, "  "+run.Error)
		}
		return nil
	case err == nil:
		took := ""
		if run != nil && !run.EndedAt.IsZero() {
			took = " in " + lifeboat.FormatDuration(run.EndedAt.Sub(run.StartedAt))
		}
		a.say(green, "✓", "%s of %s to %s done%s (estimated %s) · epoch %d · run %s",
			pr.plan.Intent, pr.plan.Service, pr.plan.To, took, lifeboat.FormatDuration(pr.plan.RTO), pr.plan.Epoch, id)
		return nil
	case errors.Is(err, engine.ErrCancelled):
		// Someone ran 'lifeboat cancel' while this process ran the plan.
		a.say(yellow, "■", "%v", err)
		return &exitError{code: exitFailed, err: errShown}
	case errors.Is(err, engine.ErrWaitingApproval):
		a.say(yellow, "?", "%v", err)
		return &exitError{code: exitWaiting, err: errShown}
	case ctx.Err() != nil:
		a.say(yellow, "■", "interrupted; run %s is journaled: 'lifeboat resume' goes on, 'lifeboat cancel' cleans up", id)
		return &exitError{code: 130, err: errShown}
	default:
		a.say(red, "✗", "run %s failed: %v", id, err)
		return &exitError{code: exitFailed, err: errShown}
	}
}

func (a *app) say(color, mark, format string, args ...any) {
	w := a.out
	if a.json() {
		w = a.err
	}
	fmt.Fprintf(w, "%s %s\n", a.paint(color, mark), fmt.Sprintf(format, args...))
}
