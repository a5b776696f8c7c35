package planner

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// ErrRefused is wrapped by every error of Plan: the request does not fit the
// spec or the state. Trying again does not help; changing the request (or
// fixing the spec or state) does.
var ErrRefused = errors.New("plan refused")

// RefusedError says why no plan was made and what to do instead.
type RefusedError struct {
	Service string
	Intent  lifeboat.Intent
	Reason  string
}

func (e *RefusedError) Error() string { return e.Reason }

// Unwrap lets callers test errors.Is(err, ErrRefused).
func (e *RefusedError) Unwrap() error { return ErrRefused }

// Retryable is false: lifeboat.IsRetryable reads it, so the engine and the
// CLI never retry a refused plan.
func (e *RefusedError) Retryable() bool { return false }

func refuse(s *lifeboat.Spec, intent lifeboat.Intent, format string, args ...any) error {
	svc := ""
	if s != nil {
		svc = s.Service
	}
	return &RefusedError{Service: svc, Intent: intent, Reason: fmt.Sprintf(format, args...)}
}

// Fence timeout of an unplanned failover: the old region may be gone, and
// waiting longer only delays the new primary.
const failoverFenceTimeout = 15 * time.Second

const epochStep = "epoch.raise"

// Plan derives the plan for intent. to is the destination region name; ""
// means the default: failover/switchover → the region that is not active;
// failback → the primary (home) region.
func Plan(s *lifeboat.Spec, st *lifeboat.State, intent lifeboat.Intent, to string) (*lifeboat.Plan, error) {
	if s == nil || st == nil {
		return nil, refuse(s, intent, "planner: no spec or no state given (a bug in the caller: load both before planning)")
	}
	if err := checkState(s, st, intent); err != nil {
		return nil, err
	}
	from := st.Active
	to, err := destination(s, st, intent, to)
	if err != nil {
		return nil, err
	}
	if err := checkSpec(s, intent); err != nil {
		return nil, err
	}
	b := newBuilder(s, st, intent, from, to)
	switch intent {
	case lifeboat.IntentFailover:
		err = b.failover()
	case lifeboat.IntentFailback:
		err = b.move(false)
	case lifeboat.IntentSwitchover:
		err = b.move(true)
	case lifeboat.IntentRejoin:
		err = b.rejoin()
	}
	if err != nil {
		return nil, err
	}
	b.rootAtEpoch()
	if err := b.hooks(); err != nil {
		return nil, err
	}
	b.reduce()
	// Validate before estimating: the critical path assumes no cycle.
	if err := b.p.Validate(); err != nil {
		return nil, refuse(s, intent, "planner made an invalid %s plan for %s (a bug in lifeboat; please report it with the spec and `lifeboat status`): %v", intent, s.Service, err)
	}
	b.objectives()
	if b.idle() {
		b.note("nothing to do: the state shows every component of %s already as this plan would leave it in %s; the plan only raises the epoch.", s.Service, to)
	}
	return b.p, nil
}

func checkState(s *lifeboat.Spec, st *lifeboat.State, intent lifeboat.Intent) error {
	switch intent {
	case lifeboat.IntentFailover, lifeboat.IntentFailback, lifeboat.IntentSwitchover, lifeboat.IntentRejoin:
	default:
		return refuse(s, intent, "unknown intent %q: use failover, failback, switchover or rejoin", intent)
	}
	if st.Service != "" && st.Service != s.Service {
		return refuse(s, intent, "the state is of service %q but the spec %s is of %q: point lifeboat at the right spec or store", st.Service, specFile(s), s.Service)
	}
	if err := st.Validate(); err != nil {
		return refuse(s, intent, "%v", err)
	}
	if !s.Regions.Has(st.Active) {
		return refuse(s, intent, "the state says %s is active in %q, but %s has regions %s: did the spec's regions change? Fix the spec, or the state with `lifeboat status`", s.Service, st.Active, s.Service, regionList(s))
	}
	return nil
}

func specFile(s *lifeboat.Spec) string {
	if s.File != "" {
		return s.File
	}
	return "(lifeboat.yaml)"
}

// regionList names the regions with their roles, for error messages.
func regionList(s *lifeboat.Spec) string {
	out := fmt.Sprintf("%s (primary) and %s (secondary)", s.Regions.Primary.Name, s.Regions.Secondary.Name)
	if w := s.Regions.Witness; w != nil {
		out = fmt.Sprintf("%s (primary), %s (secondary) and %s (witness, votes only)", s.Regions.Primary.Name, s.Regions.Secondary.Name, w.Name)
	}
	return out
}

// destination resolves and checks the target region of intent.
func destination(s *lifeboat.Spec, st *lifeboat.State, intent lifeboat.Intent, to string) (string, error) {
	from, home := st.Active, s.Regions.Primary.Name
	cmd := "lifeboat " + string(intent)
	if intent == lifeboat.IntentRejoin {
		// The service stays where it is; the other region is repaired.
		if to != "" && to != from {
			return "", refuse(s, intent, "rejoin does not move %s: it stays active in %s and rebuilds %s's copies as replicas; drop --to", s.Service, from, s.Regions.Other(from))
		}
		return from, nil
	}
	if to == "" {
		if intent == lifeboat.IntentFailback {
			to = home
		} else {
			to = s.Regions.Other(from)
		}
	} else {
		switch s.RoleOf(to) {
		case lifeboat.RoleWitness:
			return "", refuse(s, intent, "--to %s: %s is %s's witness region, and the witness only votes: it runs no part of the service. Use %s (primary) or %s (secondary)", to, to, s.Service, s.Regions.Primary.Name, s.Regions.Secondary.Name)
		case "":
			return "", refuse(s, intent, "--to %s: %s has regions %s", to, s.Service, regionList(s))
		}
	}
	switch intent {
	case lifeboat.IntentFailback:
		if to != home {
			return "", refuse(s, intent, "failback goes home to %s, not %s; to move %s to %s use `lifeboat switchover --to %s`", home, to, s.Service, to, to)
		}
		if from == home {
			return "", refuse(s, intent, "%s is already home in %s: there is nothing to fail back. To move it to %s use `lifeboat switchover`", s.Service, home, s.Regions.Secondary.Name)
		}
	default:
		if to == from {
			if from == home {
				return "", refuse(s, intent, "%s is already active in %s (its primary); to leave %s use `%s --to %s`", s.Service, from, from, cmd, s.Regions.Other(from))
			}
			return "", refuse(s, intent, "%s is already active in %s; to go home use `lifeboat failback`", s.Service, from)
		}
	}
	return to, nil
}

// checkSpec refuses what would make a wrong plan: traffic aimed at compute
// that does not exist, dependencies on unknown units or in a cycle.
func checkSpec(s *lifeboat.Spec, intent lifeboat.Intent) error {
	// Report every problem at once: one fix-and-retry round at 3 a.m.
	var problems []string
	for _, un := range s.UnitNames() {
		u := s.Units[un]
		for _, tn := range lifeboat.SortedKeys(u.Traffic) {
			if _, err := trafficTarget(s, un, u.Traffic[tn]); err != nil {
				problems = append(problems, fmt.Sprintf("units.%s.traffic.%s: %v", un, tn, err))
			}
		}
		for _, d := range u.DependsOn {
			if _, ok := s.Units[d]; !ok {
				problems = append(problems, fmt.Sprintf("units.%s.depends-on names unit %q, which does not exist (units are %s)", un, d, strings.Join(s.UnitNames(), ", ")))
			}
		}
	}
	if len(problems) > 0 {
		return refuse(s, intent, "spec %s: %s", specFile(s), strings.Join(problems, "; "))
	}
	// A cycle would deadlock the traffic switches: find it and name it.
	state := map[string]int{}
	var path []string
	var visit func(string) []string
	visit = func(un string) []string {
		switch state[un] {
		case 1:
			return append(append([]string{}, path...), un)
		case 2:
			return nil
		}
		state[un] = 1
		path = append(path, un)
		for _, d := range s.Units[un].DependsOn {
			if c := visit(d); c != nil {
				return c
			}
		}
		path = path[:len(path)-1]
		state[un] = 2
		return nil
	}
	for _, un := range s.UnitNames() {
		if c := visit(un); c != nil {
			return refuse(s, intent, "spec %s: units depend on each other in a cycle (%s): no unit could come back first; remove one depends-on", specFile(s), strings.Join(c, " → "))
		}
	}
	return nil
}

// trafficTarget resolves a traffic component's target compute.
func trafficTarget(s *lifeboat.Spec, unit string, t lifeboat.Traffic) (lifeboat.Ref, error) {
	ref := lifeboat.Ref{Unit: unit, Component: t.Target}
	if u, c, ok := strings.Cut(t.Target, "."); ok {
		ref = lifeboat.Ref{Unit: u, Component: c}
	}
	u, ok := s.Units[ref.Unit]
	if !ok {
		return ref, fmt.Errorf("target %q names unit %q, which does not exist", t.Target, ref.Unit)
	}
	if _, ok := u.Compute[ref.Component]; !ok {
		return ref, fmt.Errorf("target %q is not a compute component of unit %s (it has %s)", t.Target, ref.Unit, orNone(lifeboat.SortedKeys(u.Compute)))
	}
	return ref, nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// uniq returns ids without duplicates, sorted, so dependency lists are stable.
func uniq(ids []string) []string {
	seen := map[string]bool{}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
