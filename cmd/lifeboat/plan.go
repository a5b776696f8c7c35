package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/planner"
	"github.com/spf13/cobra"
)

func (a *app) planCommand() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "plan failover|failback|switchover|rejoin",
		Short: "Show the plan for a failover, failback, switchover or rejoin, without running it",
		Long: `Show the plan as a DAG of steps in parallel groups, each with its
estimated duration, and the plan's estimated RTO and RPO next to the
objectives. Nothing is changed.`,
		Args:      args(cobra.ExactArgs(1)),
		ValidArgs: []string{"failover", "failback", "switchover"},
		RunE: func(cmd *cobra.Command, args []string) error {
			intent, err := parseIntent(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := a.open(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			p, err := a.makePlan(ctx, s, intent, to)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(p)
			}
			a.printPlan(p)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "destination region (default: the other region; home for failback)")
	return cmd
}

func parseIntent(s string) (lifeboat.Intent, error) {
	switch i := lifeboat.Intent(s); i {
	case lifeboat.IntentFailover, lifeboat.IntentFailback, lifeboat.IntentSwitchover, lifeboat.IntentRejoin:
		return i, nil
	}
	return "", exit(exitSpec, "%q is not something lifeboat plans: use failover, failback, switchover or rejoin", s)
}

func (a *app) makePlan(ctx context.Context, s *session, intent lifeboat.Intent, to string) (*lifeboat.Plan, error) {
	p, err := planner.Plan(s.spec, s.state, intent, to)
	if err != nil {
		return nil, exit(exitRefused, "%v", err)
	}
	return p, nil
}

// printPlan prints the planner's rendering, with the verdicts coloured.
func (a *app) printPlan(p *lifeboat.Plan) {
	text := planner.Format(p)
	if a.tty {
		var b strings.Builder
		for _, line := range strings.SplitAfter(text, "\n") {
			switch {
			case strings.Contains(line, "MISSES") || strings.Contains(line, "✗"):
				line = a.paint(red, strings.TrimRight(line, "\n")) + "\n"
			case strings.Contains(line, "✓"):
				line = a.paint(green, strings.TrimRight(line, "\n")) + "\n"
			}
			b.WriteString(line)
		}
		text = b.String()
	}
	fmt.Fprint(a.out, text)
}
