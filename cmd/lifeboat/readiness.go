package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/controller"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/status"
)

// readiness evaluates the checks that may refuse a failover now, asking
// the drivers; ctrls (what the regions' controllers published, nil when
// none run) says whether the witness is reachable.
func readiness(ctx context.Context, s *session, ctrls map[string]controller.Status) []monitor.Check {
	// The checks that may refuse a failover only: the tenants' backup
	// checks never block, and their catalog may be in the region being left.
	return status.FailoverReadiness(ctx, s.spec, s.state, s.store, ctrls)
}

// controllers reads what each region's controller last published; nil
// when the spec has no shared store (no controllers).
func controllers(ctx context.Context, s *session) (map[string]controller.Status, error) {
	return status.Controllers(ctx, s.spec, s.store)
}

// printControllers prints the controllers' table, the leader's reasons and
// the RPO exposure the active region's controller measures.
func (a *app) printControllers(spec *lifeboat.Spec, st *lifeboat.State, ctrls map[string]controller.Status, err error) {
	if err != nil {
		fmt.Fprintln(a.out, a.paint(yellow, "controllers: ")+err.Error())
		return
	}
	m := spec.Monitor.WithDefaults()
	w := a.table()
	fmt.Fprintf(w, "CONTROLLER\tQUORUM\tLEADER\tDECISION\tDECIDED\t(mode %s)\n", m.Mode)
	var leader *controller.Status
	regions := []string{spec.Regions.Primary.Name, spec.Regions.Secondary.Name}
	if spec.Regions.Witness != nil {
		regions = append(regions, spec.Regions.Witness.Name)
	}
	for _, r := range regions {
		c, ok := ctrls[r]
		if !ok {
			fmt.Fprintf(w, "%s\t%s\t-\t-\t-\t\n", r, a.paint(red, "not publishing"))
			continue
		}
		q := a.paint(green, "ok")
		if !c.Quorum {
			q = a.paint(red, "lost")
		}
		l := ""
		if c.Leader {
			l = a.paint(bold, "leader")
			leader = &c
		}
		d := string(c.Decision.Action)
		if c.Fenced {
			d += a.paint(yellow, " (fenced itself)")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t\n", r, q, l, d, since(c.DecidedAt))
	}
	w.Flush()
	if leader != nil {
		for i, r := range leader.Decision.Reasons {
			if i == 4 {
				fmt.Fprintf(a.out, "  … (%d more: lifeboat status -o json)\n", len(leader.Decision.Reasons)-i)
				break
			}
			fmt.Fprintln(a.out, "  "+truncate(r, 200))
		}
	}
	if c, ok := ctrls[st.Active]; ok {
		for _, e := range c.Exposure {
			if e.Bounded {
				fmt.Fprintf(a.out, "RPO exposure of %s: %s / %d B behind now, worst %s / %d B over %s (objective %s)\n",
					e.Database, lifeboat.FormatDuration(e.LagTime), e.LagBytes, lifeboat.FormatDuration(e.MaxLagTime), e.MaxLagBytes,
					lifeboat.FormatDuration(e.Window), lifeboat.FormatDuration(spec.Objectives.RPO.D()))
			} else {
				fmt.Fprintf(a.out, "RPO exposure of %s: %s\n", e.Database, a.paint(yellow, "unbounded: "+e.Reason))
			}
		}
	}
}

// blocking are the failed checks that would make a failover fail.
func blocking(checks []monitor.Check) []monitor.Check { return status.Blocking(checks) }

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
