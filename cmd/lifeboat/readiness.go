package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/driver"
	"github.com/lifeboat-dr/lifeboat/monitor"
)

// readiness evaluates the readiness checks now, asking the drivers.
func readiness(ctx context.Context, s *session) []monitor.Check {
	drivers, err := driver.FromSpec(s.spec, s.state)
	if err != nil {
		return []monitor.Check{{Name: "drivers", OK: false, Reason: err.Error(), At: time.Now()}}
	}
	facts := monitor.Gather(ctx, s.spec, drivers, s.state, s.store)
	return monitor.Evaluate(s.spec, s.state, facts, time.Now())
}

// blocking are the failed checks that would make a failover fail.
func blocking(checks []monitor.Check) []monitor.Check {
	var out []monitor.Check
	for _, c := range checks {
		if c.Blocks && !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// printReadiness prints the checks as a table, failed ones first.
func (a *app) printReadiness(checks []monitor.Check) {
	w := a.table()
	fmt.Fprintln(w, "READINESS\tCOMPONENT\tOK\tWHY")
	for _, pass := range []bool{false, true} {
		for _, c := range checks {
			if c.OK != pass {
				continue
			}
			mark := a.paint(green, "✓")
			switch {
			case !c.OK && c.Blocks:
				mark = a.paint(red, "✗ blocks failover")
			case !c.OK:
				mark = a.paint(yellow, "!")
			}
			comp := c.Component
			if comp == "" {
				comp = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.Name, comp, mark, truncate(c.Reason, 160))
		}
	}
	w.Flush()
}

// refuseUnready refuses a failover that readiness says would fail.
func refuseUnready(checks []monitor.Check, to string) error {
	b := blocking(checks)
	if len(b) == 0 {
		return nil
	}
	var why []string
	for _, c := range b {
		name := c.Name
		if c.Component != "" {
			name += " (" + c.Component + ")"
		}
		why = append(why, "  ✗ "+name+": "+c.Reason)
	}
	return exit(exitRefused, "refused: the failover to %s would fail:\n%s\nfix what is listed, or add --force to fail over anyway", to, strings.Join(why, "\n"))
}

