package monitor

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// The failover decision is a pure function (the etcd-io/raft way): the
// controller gathers the views, the quorum and the stored state, calls
// Decide, and does what the Decision says. Nothing here reads a clock or a
// network, so every case is a scenario script in testdata/decision.

// Policy is the part of the spec's monitor settings the decision uses.
type Policy struct {
	// Mode: manual (never act), notify (advise a person) or automatic.
	Mode lifeboat.MonitorMode
	// Grace is how long a majority of observers must have seen the active
	// region failing, without a break, before it is lost.
	Grace time.Duration
	// BlockWindow: no second automatic failover within it unless a person
	// acknowledged the first (anti-flapping).
	BlockWindow time.Duration
	// Lease is the controllers' and observers' etcd lease: a view older
	// than this is stale, and a controller that lost the quorum has fenced
	// itself by the time this much has passed since its last renewal.
	Lease time.Duration
}

// DefaultPolicy is the policy of a spec with no monitor settings.
func DefaultPolicy() Policy { return PolicyFrom(lifeboat.Monitor{}) }

// PolicyFrom takes the policy from the spec's monitor settings, defaults
// filled in.
func PolicyFrom(m lifeboat.Monitor) Policy {
	m = m.WithDefaults()
	return Policy{Mode: m.Mode, Grace: m.Grace.D(), BlockWindow: m.BlockWindow.D(), Lease: m.Lease.D()}
}

// errPolicy marks a policy Decide cannot work with.
var errPolicy = errors.New("invalid monitor policy")

// Validate says what is wrong with the policy, if anything. The error is
// permanent: only a spec change fixes it.
func (p Policy) Validate() error {
	var problems []string
	switch p.Mode {
	case lifeboat.MonitorManual, lifeboat.MonitorNotify, lifeboat.MonitorAutomatic:
	default:
		problems = append(problems, fmt.Sprintf("mode %q is not manual, notify or automatic", p.Mode))
	}
	if p.Grace < 0 {
		problems = append(problems, fmt.Sprintf("grace %s is negative", p.Grace))
	}
	if p.BlockWindow < 0 {
		problems = append(problems, fmt.Sprintf("block-window %s is negative", p.BlockWindow))
	}
	if p.Lease <= 0 {
		problems = append(problems, fmt.Sprintf("lease %s must be positive (default 5s)", p.Lease))
	}
	if len(problems) == 0 {
		return nil
	}
	return lifeboat.Permanent("monitor.decide", "", fmt.Errorf("%w: %s; fix monitor: in the spec", errPolicy, strings.Join(problems, "; ")))
}

// Situation is everything the decision depends on, as one controller sees
// it at one instant.
type Situation struct {
	// Now is the deciding controller's clock.
	Now    time.Time
	Policy Policy
	// Self is the region of the controller deciding.
	Self string
	// Primary, Secondary and Witness come from the spec ("" witness: none).
	Primary, Secondary, Witness string
	// Active and Epoch come from the stored state.
	Active string
	Epoch  uint64
	// Observers are the regions that run an observer (all regions). A
	// region is lost when a strict majority of them see it failing.
	Observers []string
	// Views are the latest views published, per (observer, region); a
	// view older than Policy.Lease is stale and does not count. When
	// several are given for one pair, the latest (by At) is used.
	Views []View
	// Quorum: Self's etcd session is alive (it reaches a majority).
	Quorum bool
	// QuorumLostAt is when Self last renewed its lease, if !Quorum.
	QuorumLostAt time.Time
	// Leader: Self holds the election, the only controller that may act.
	Leader bool
	// ActiveControllerKey: the active region's controller key still
	// exists, i.e. its lease has not run out, so it may not have fenced
	// itself yet.
	ActiveControllerKey bool
	// LastAutomatic is the last automatic failover (zero: never).
	LastAutomatic time.Time
	// Acknowledged: a person acknowledged LastAutomatic, lifting the
	// block window.
	Acknowledged bool
	// RunInProgress: a failover, failback or switchover is running.
	RunInProgress bool
	// Readiness: a check with Blocks && !OK refuses a failover unless
	// Forced.
	Readiness []Check
	Forced    bool
}

// Action is what the controller should do.
type Action string

const (
	// ActionNone: do nothing (the Reasons say why).
	ActionNone Action = "none"
	// ActionFailover: start the failover plan From → To now, provided the
	// stored epoch is still Decision.Epoch.
	ActionFailover Action = "failover"
	// ActionAdvise (notify mode): tell people a failover From → To is
	// advised, and why.
	ActionAdvise Action = "advise"
	// ActionFenceSelf: Self is the active region and lost the quorum:
	// stop its front door routing and make its databases read-only
	// before Decision.Deadline, when the majority side may promote.
	ActionFenceSelf Action = "fence-self"
	// ActionWait: the active region is lost but may not have fenced
	// itself yet; decide again when its controller key is gone.
	ActionWait Action = "wait"
)

// Decision is what Decide returns: an action and why.
type Decision struct {
	Action Action
	// From is the active region; To the region to fail over to (failover,
	// advise, wait).
	From, To string
	// Epoch is the epoch decided at: the controller starts a failover only
	// if the stored epoch is still this one (another leader may have acted).
	Epoch uint64
	// Deadline (fence-self) is when Self's lease runs out: the fence must
	// hold by then.
	Deadline time.Time
	// Reasons say, in order, what was observed and the rule that made the
	// call, in plain words.
	Reasons []string
}

// String renders the decision on one line per reason, for logs and status.
func (d Decision) String() string {
	var b strings.Builder
	b.WriteString(string(d.Action))
	switch d.Action {
	case ActionFailover, ActionAdvise, ActionWait:
		fmt.Fprintf(&b, " %s → %s", d.From, d.To)
	case ActionFenceSelf:
		fmt.Fprintf(&b, " %s by %s", d.From, decClock(d.Deadline))
	}
	for _, r := range d.Reasons {
		b.WriteString("\n- ")
		b.WriteString(r)
	}
	return b.String()
}

// Decide says whether to fail over, fence, wait or do nothing, and why.
// It is pure: same Situation, same Decision.
func Decide(s Situation) Decision {
	d := Decision{Action: ActionNone, From: s.Active, Epoch: s.Epoch}
	say := func(format string, a ...any) { d.Reasons = append(d.Reasons, fmt.Sprintf(format, a...)) }

	// Safety before anything: a controller that cannot reach the majority
	// must not act, and if its region takes writes it must stop them
	// before the majority side may promote.
	if !s.Quorum {
		if s.Self != "" && s.Self == s.Active {
			d.Action = ActionFenceSelf
			if s.QuorumLostAt.IsZero() {
				// No last renewal known: the lease may be out already.
				d.Deadline = s.Now
				say("%s (this controller) lost the quorum: its etcd lease cannot be renewed, last renewal unknown", s.Self)
				say("%s is the active region: fence it at once (front door stops routing, databases read-only): the majority side may promote as soon as the lease (%s) runs out",
					s.Self, decDur(s.Policy.Lease))
			} else {
				d.Deadline = s.QuorumLostAt.Add(s.Policy.Lease)
				say("%s (this controller) lost the quorum: its etcd lease was last renewed at %s (%s ago)", s.Self, decClock(s.QuorumLostAt), decAgo(s.Now, s.QuorumLostAt))
				say("%s is the active region: fence it now (front door stops routing, databases read-only), before its lease runs out at %s (lease %s), after which the majority side may promote",
					s.Self, decClock(d.Deadline), decDur(s.Policy.Lease))
			}
			return d
		}
		say("%s (this controller) has no quorum: it cannot reach a majority of the etcd cluster, so it may not act; the majority side decides", decName(s.Self))
		return d
	}
	if err := s.validate(); err != nil {
		say("cannot decide: %v", err)
		return d
	}

	target := s.other()
	active := s.assess(s.Active, true)
	d.Reasons = append(d.Reasons, active.lines...)
	if !s.Leader {
		say("not the leader: %s does not hold the election; only the leader may act", s.Self)
		return d
	}
	if !active.lost {
		return d
	}

	// Lost. Failing over to a region the majority sees failing too would
	// not bring the service back; it would only burn an epoch.
	standby := s.assess(target, false)
	if standby.seen > 0 {
		d.Reasons = append(d.Reasons, standby.lines...)
	}
	if standby.seen >= s.majority() {
		say("no failover: %s, the region to fail over to, is failing too (seen by a majority)", target)
		return d
	}
	if s.RunInProgress {
		say("no failover: a run is in progress; it must end first (lifeboat status; lifeboat resume or lifeboat cancel)")
		return d
	}

	// Wait for the active region to fence itself when nobody can reach it
	// to fence it: its key outliving its lease is the only proof.
	wait := false
	switch {
	case s.Self == s.Active:
		say("this controller is %s's and holds the quorum: the plan's fence step fences %s, no need to wait for a lease", s.Active, s.Active)
	case active.ownAfter:
		say("%s's own observer published at %s, after the majority began seeing %s fail: %s is in the quorum and the plan's fence step reaches it, no need to wait for its lease",
			s.Active, decClock(active.ownAt), s.Active, s.Active)
	case s.ActiveControllerKey:
		wait = true
		say("%s's controller key still exists and its observer has published nothing since the majority began seeing it fail: %s may be cut off and not fenced yet; it fences itself before its lease (%s) runs out, and then its key goes",
			s.Active, s.Active, decDur(s.Policy.Lease))
	default:
		say("%s's controller key is gone: its lease ran out, so %s has fenced itself", s.Active, s.Active)
	}

	window := s.blockWindow()
	refusals, notes := s.readiness()

	switch s.Policy.Mode {
	case lifeboat.MonitorManual:
		switch {
		case wait:
			say("mode manual: Lifeboat does not fail over on its own (automatic mode would wait for %s's key to go, then fail over to %s)", s.Active, target)
		default:
			for _, r := range append(append(window.lines(), refusals...), notes...) {
				say("%s", r)
			}
			would := "would fail over to " + target + " now"
			if window.blocks || (len(refusals) > 0 && !s.Forced) {
				would = "would not fail over now either, see above"
			}
			say("mode manual: Lifeboat does not fail over on its own (automatic mode %s); a person decides: lifeboat failover --to %s", would, target)
		}
		return d
	case lifeboat.MonitorNotify:
		d.To = target
		if wait {
			d.Action = ActionWait
			say("wait: advise a failover to %s once %s's key is gone (decide again then)", target, s.Active)
			return d
		}
		for _, r := range append(refusals, notes...) {
			say("%s", r)
		}
		if len(refusals) > 0 && !s.Forced {
			say("a failover now would be refused by readiness unless forced: fix the check first if you can")
		}
		d.Action = ActionAdvise
		say("mode notify: a failover %s → %s is advised: lifeboat failover --to %s", s.Active, target, target)
		return d
	}

	// Automatic.
	d.To = target
	if wait {
		d.Action = ActionWait
		say("wait: fail over to %s once %s's key is gone (decide again then)", target, s.Active)
		return d
	}
	for _, r := range window.lines() {
		say("%s", r)
	}
	if window.blocks {
		d.To = ""
		return d
	}
	for _, r := range append(refusals, notes...) {
		say("%s", r)
	}
	if len(refusals) > 0 && !s.Forced {
		d.To = ""
		say("no failover: refused by readiness (see above); fix the check, or force it")
		return d
	}
	d.Action = ActionFailover
	say("mode automatic: fail over %s → %s (decided at epoch %d; the plan raises it)", s.Active, target, s.Epoch)
	return d
}

// validate says what in the situation makes a decision impossible. It
// points at the caller (the controller) or the spec.
func (s Situation) validate() error {
	if err := s.Policy.Validate(); err != nil {
		return err
	}
	var problems []string
	if s.Primary == "" || s.Secondary == "" || s.Primary == s.Secondary {
		problems = append(problems, fmt.Sprintf("primary %q and secondary %q must be two named regions", s.Primary, s.Secondary))
	}
	if s.Active == "" || (s.Active != s.Primary && s.Active != s.Secondary) {
		problems = append(problems, fmt.Sprintf("the stored active region %q is neither the primary %q nor the secondary %q", s.Active, s.Primary, s.Secondary))
	}
	if len(s.Observers) == 0 {
		problems = append(problems, "no observers: every region must run one")
	}
	if s.Self == "" {
		problems = append(problems, "the deciding controller's region (Self) is not set")
	}
	if len(problems) == 0 {
		return nil
	}
	return lifeboat.Permanent("monitor.decide", "", fmt.Errorf("%s (a controller bug or a bad state; check lifeboat status)", strings.Join(problems, "; ")))
}

func (s Situation) other() string {
	if s.Active == s.Primary {
		return s.Secondary
	}
	return s.Primary
}

// majority is a strict majority of the observers.
func (s Situation) majority() int { return len(s.Observers)/2 + 1 }

// decAssessment is what the observers say about one region.
type decAssessment struct {
	lost bool // a majority saw it failing for the grace
	seen int  // observers with a fresh failing view (grace or not)
	// ownAfter: the region's own observer published a fresh view after
	// the majority began seeing it fail (at ownAt), so the region was in
	// the quorum then. A view merely within the lease proves nothing:
	// a dead observer's last view stays "fresh" until its lease ends.
	ownAfter bool
	ownAt    time.Time
	lines    []string
}

// latest returns the newest view observer published of region.
func (s Situation) latest(observer, region string) (View, bool) {
	var best View
	found := false
	for _, v := range s.Views {
		if v.Observer == observer && v.Region == region && (!found || v.At.After(best.At)) {
			best, found = v, true
		}
	}
	return best, found
}

// fresh: published within the lease. A view from the future (clock skew)
// counts as fresh; its Since is judged as is.
func (s Situation) fresh(v View) bool {
	return !v.At.IsZero() && s.Now.Sub(v.At) <= s.Policy.Lease
}

// assess counts the observers' views of region. detail adds one line per
// observer (for the active region); otherwise one summary line.
func (s Situation) assess(region string, detail bool) decAssessment {
	var a decAssessment
	var past, short, ok, silent []string
	var starts []time.Time
	cutoff := s.Now.Add(-s.Policy.Grace)
	var lines []string
	for _, o := range s.Observers {
		v, found := s.latest(o, region)
		switch {
		case !found:
			silent = append(silent, o)
			lines = append(lines, fmt.Sprintf("%s has published no view of %s", o, region))
			continue
		case !s.fresh(v):
			silent = append(silent, o)
			lines = append(lines, fmt.Sprintf("%s has no fresh view of %s: last published %s (%s ago > lease %s)",
				o, region, decClock(v.At), decAgo(s.Now, v.At), decDur(s.Policy.Lease)))
			continue
		}
		if o == region {
			a.ownAt = v.At
		}
		why, age := "", ""
		if v.Reason != "" && v.Reason != "ok" {
			why = ": " + v.Reason
		}
		if d := s.Now.Sub(v.At); d > 0 {
			age = " (published " + decDur(d) + " ago)"
			why += age
		}
		switch {
		case !v.Failing:
			ok = append(ok, o)
			lines = append(lines, fmt.Sprintf("%s sees %s ok%s", o, region, age))
		case v.Since.IsZero():
			// Without a start we cannot tell how long: count it as new.
			a.seen++
			short = append(short, o)
			lines = append(lines, fmt.Sprintf("%s sees %s failing since an unknown time (counted as under the grace)%s", o, region, why))
		case !v.Since.After(cutoff):
			a.seen++
			past = append(past, o)
			starts = append(starts, v.Since)
			lines = append(lines, fmt.Sprintf("%s sees %s failing since %s (for %s ≥ grace %s)%s",
				o, region, decClock(v.Since), decAgo(s.Now, v.Since), decDur(s.Policy.Grace), why))
		default:
			a.seen++
			short = append(short, o)
			lines = append(lines, fmt.Sprintf("%s sees %s failing since %s (for %s < grace %s)%s",
				o, region, decClock(v.Since), decAgo(s.Now, v.Since), decDur(s.Policy.Grace), why))
		}
	}
	n, m := len(s.Observers), s.majority()
	if !detail {
		failing := append(append([]string{}, past...), short...)
		sort.Strings(failing)
		a.lines = []string{fmt.Sprintf("%d of %d observers (%s) see %s failing", len(failing), n, strings.Join(failing, ", "), region)}
		return a
	}
	a.lines = lines
	a.lost = len(past) >= m
	if a.lost {
		// The majority formed when its m-th member started seeing it.
		sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
		since := starts[m-1]
		a.ownAfter = a.ownAt.After(since)
		sorted := append([]string{}, past...)
		sort.Strings(sorted)
		a.lines = append(a.lines, fmt.Sprintf("%s is lost: %d of %d observers (%s) see it failing, a majority since %s (for %s ≥ grace %s)",
			region, len(past), n, strings.Join(sorted, ", "), decClock(since), decAgo(s.Now, since), decDur(s.Policy.Grace)))
		return a
	}
	verdict := fmt.Sprintf("%s is not lost: %d of %d observers see it failing for the grace %s; a region is lost only when a majority (%d) do",
		region, len(past), n, decDur(s.Policy.Grace), m)
	if len(short) > 0 {
		verdict += fmt.Sprintf(" (%d more failing for less than the grace)", len(short))
	}
	a.lines = append(a.lines, verdict)
	if len(silent) > 0 && n-len(silent) < m {
		a.lines = append(a.lines, fmt.Sprintf("only %d of %d observers publish fresh views: no majority can form until more come back (silence is never counted as failing)", n-len(silent), n))
	} else if s.Witness == "" && n <= 2 && len(past) > 0 {
		a.lines = append(a.lines, fmt.Sprintf("without a witness, a majority of %d observers needs %s's own: a dead region cannot be told from a cut link", n, region))
	}
	return a
}

// decWindow is the anti-flapping verdict.
type decWindow struct {
	blocks bool
	line   string
}

func (w decWindow) lines() []string {
	if w.line == "" {
		return nil
	}
	return []string{w.line}
}

func (s Situation) blockWindow() decWindow {
	if s.LastAutomatic.IsZero() {
		return decWindow{}
	}
	until := s.LastAutomatic.Add(s.Policy.BlockWindow)
	if !s.Now.Before(until) {
		return decWindow{}
	}
	last := fmt.Sprintf("the last automatic failover was at %s (%s ago), within the block window %s",
		decClock(s.LastAutomatic), decAgo(s.Now, s.LastAutomatic), decDur(s.Policy.BlockWindow))
	if s.Acknowledged {
		return decWindow{line: last + ", but a person acknowledged it: the window is lifted"}
	}
	return decWindow{blocks: true, line: "no failover (anti-flapping): " + last + fmt.Sprintf(
		"; no automatic failover before %s unless a person acknowledges it (or fails over by hand: lifeboat failover --to %s)", decClock(until), s.other())}
}

// readiness returns the blocking failures (refusals) and, when forced, the
// override notes.
func (s Situation) readiness() (refusals, notes []string) {
	for _, c := range s.Readiness {
		if c.OK || !c.Blocks {
			continue
		}
		name := fmt.Sprintf("%q", c.Name)
		if c.Component != "" {
			name += " (" + c.Component + ")"
		}
		if s.Forced {
			notes = append(notes, fmt.Sprintf("readiness check %s fails: %s; the failover is forced anyway", name, c.Reason))
			continue
		}
		refusals = append(refusals, fmt.Sprintf("readiness check %s fails and blocks a failover: %s", name, c.Reason))
	}
	return refusals, notes
}

// decClock renders an instant to the millisecond, trailing zeros dropped.
func decClock(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format("15:04:05.999")
}

func decAgo(now, t time.Time) string { return decDur(now.Sub(t)) }

// decDur keeps milliseconds under a minute: "2.999s < grace 3s" must not
// read "3s < grace 3s".
func decDur(d time.Duration) string {
	if d > -time.Minute && d < time.Minute {
		return d.Round(time.Millisecond).String()
	}
	return lifeboat.FormatDuration(d)
}

func decName(r string) string {
	if r == "" {
		return "this controller's region (unset)"
	}
	return r
}
