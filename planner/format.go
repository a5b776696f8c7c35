package planner

import (
	"fmt"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// Format renders a plan for a terminal (no colour): the header, the
// parallel groups with each step's op, resource, region, estimate and what
// it waits for, the critical path, then RTO and RPO next to the objectives
// with ok/MISSES, the culprits and the notes.
func Format(p *lifeboat.Plan) string {
	if p == nil {
		return "no plan\n"
	}
	var w strings.Builder
	if p.Intent == lifeboat.IntentRejoin {
		fmt.Fprintf(&w, "%s %s: stays in %s; the other region's copies become its replicas, new epoch %d\n", p.Intent, p.Service, p.From, p.Epoch)
	} else {
		fmt.Fprintf(&w, "%s %s: %s → %s, new epoch %d\n", p.Intent, p.Service, p.From, p.To, p.Epoch)
	}
	groups := p.Groups()
	for i, g := range groups {
		if len(g) > 1 {
			fmt.Fprintf(&w, "group %d of %d, %d steps in parallel:\n", i+1, len(groups), len(g))
		} else {
			fmt.Fprintf(&w, "group %d of %d:\n", i+1, len(groups))
		}
		for _, st := range g {
			fmt.Fprintf(&w, "  %s — %s\n", st.ID, strings.Join(stepFacts(st), ", "))
			if st.Why != "" {
				fmt.Fprintf(&w, "      why: %s\n", st.Why)
			}
			if len(st.DependsOn) > 0 {
				fmt.Fprintf(&w, "      waits for: %s\n", strings.Join(st.DependsOn, "; "))
			}
		}
	}
	path, _ := p.RecoveryPath()
	names := make([]string, len(path))
	for i, st := range path {
		names[i] = st.ID
	}
	fmt.Fprintf(&w, "critical path to recovery: %s\n", strings.Join(names, " → "))
	missed := map[string]bool{}
	for _, m := range p.Misses {
		missed[m.Objective] = true
	}
	verdict := func(obj string) string {
		if missed[obj] {
			return "MISSES"
		}
		return "ok"
	}
	rto := "none set"
	if p.Objectives.RTO > 0 {
		rto = lifeboat.FormatDuration(p.Objectives.RTO.D())
	}
	fmt.Fprintf(&w, "estimated RTO %s (objective %s): %s\n", amount(p.RTO), rto, verdict("rto"))
	fmt.Fprintf(&w, "estimated RPO %s (objective %s): %s\n", amount(p.RPO), lifeboat.FormatDuration(p.Objectives.RPO.D()), verdict("rpo"))
	for _, m := range p.Misses {
		fmt.Fprintf(&w, "  %s misses the %s: %s > %s; %s\n", m.Component, strings.ToUpper(m.Objective), amount(m.Estimate), lifeboat.FormatDuration(m.Target), m.Why)
	}
	if len(p.Notes) > 0 {
		fmt.Fprintf(&w, "notes:\n")
		for _, n := range p.Notes {
			fmt.Fprintf(&w, "  - %s\n", n)
		}
	}
	return w.String()
}

// amount prints a duration, or "all data" for lifeboat.AllData.
func amount(d time.Duration) string {
	if d == lifeboat.AllData {
		return "all data"
	}
	return lifeboat.FormatDuration(d)
}

// stepFacts are the short facts of a step's line: where, how many, how long.
func stepFacts(st *lifeboat.Step) []string {
	var f []string
	switch {
	case st.Op == lifeboat.OpRaiseEpoch:
		f = append(f, fmt.Sprintf("to %d", st.Epoch))
	case st.Op == lifeboat.OpTrafficSwitch:
		f = append(f, "to "+st.Region)
	case st.Op == lifeboat.OpDatabaseRejoin:
		f = append(f, fmt.Sprintf("in %s, as a replica of %s", st.Region, st.FromResource))
	case st.FromResource != "":
		f = append(f, fmt.Sprintf("in %s, from %s", st.Region, st.FromResource))
	case st.Region != "":
		f = append(f, "in "+st.Region)
	}
	if st.Op == lifeboat.OpComputeScale || st.Op == lifeboat.OpComputeStop {
		f = append(f, "to "+plural(st.Instances, "instance"))
	}
	if st.Approval != "" {
		f = append(f, fmt.Sprintf("asks %q", st.Approval))
	}
	if st.Run != "" {
		f = append(f, "runs "+st.Run)
	}
	if st.Op == lifeboat.OpApproval {
		f = append(f, "waits for a person")
	} else {
		f = append(f, lifeboat.FormatDuration(st.Estimate))
	}
	if st.BestEffort {
		f = append(f, "best effort")
	}
	if st.Cleanup {
		f = append(f, "cleanup (after recovery: not in the RTO)")
	}
	if st.Timeout > 0 {
		f = append(f, "timeout "+lifeboat.FormatDuration(st.Timeout))
	}
	return f
}
