package monitor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// decDay is the date of every scenario; scripts give times of day.
var decDay = time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)

// decScenario is the world a testdata/decision script builds: the
// controller's situation and what each observer sees and publishes.
type decScenario struct {
	s       Situation
	verdict map[[2]string]View // (observer, region) → current verdict
	silent  map[string]bool    // observers that stopped publishing
}

// TestDecisionScenarios runs testdata/decision/*.txt (-rewrite to
// regenerate the expected output; review the diff by eye). Commands:
//
//	setup [primary=R] [secondary=R] [witness=R|none] [active=R] [self=R]
//	      [mode=M] [grace=D] [block-window=D] [lease=D] [now=HH:MM:SS]
//	          every observer sees every region ok and publishes; self has
//	          the quorum and the election; the active region's key exists
//	see by=(O, ...) region=R failing|ok [reason=WORD]
//	          the observers' verdict; Since moves only when it changes
//	silence by=(O, ...)     the observers stop publishing (cut off or dead)
//	publish by=(O, ...)     they publish again
//	tick D                  time passes; publishing observers republish
//	set [self=R] [quorum=B] [quorum-lost-at=T] [leader=B] [key=B] [run=B]
//	    [ack=B] [forced=B] [last-automatic=T] [mode=M] [active=R] [epoch=N]
//	          (times: HH:MM:SS[.fff], or never)
//	check name=N [component=C] ok=B [blocks=B]   (input: the reason)
//	decide                  Decide's output
func TestDecisionScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata/decision", func(t *testing.T, path string) {
		var sc *decScenario
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "setup" && sc == nil {
				d.Fatalf(t, "%s before setup", d.Cmd)
			}
			switch d.Cmd {
			case "setup":
				sc = decSetup(t, d)
				return "ok\n"
			case "see":
				var region string
				d.ScanArgs(t, "region", &region)
				failing := d.HasArg("failing")
				if !failing && !d.HasArg("ok") {
					d.Fatalf(t, "see: say failing or ok")
				}
				reason := ""
				if d.HasArg("reason") {
					d.ScanArgs(t, "reason", &reason)
				}
				for _, o := range decArgList(t, d, "by") {
					key := [2]string{o, region}
					v := sc.verdict[key]
					if v.Failing != failing || v.Since.IsZero() {
						v.Since = sc.s.Now
					}
					v.Observer, v.Region, v.Failing, v.Reason = o, region, failing, reason
					sc.verdict[key] = v
				}
				sc.publish()
				return "ok\n"
			case "silence", "publish":
				for _, o := range decArgList(t, d, "by") {
					sc.silent[o] = d.Cmd == "silence"
				}
				sc.publish()
				return "ok\n"
			case "tick":
				if len(d.CmdArgs) != 1 {
					d.Fatalf(t, "tick: give one duration")
				}
				dur, err := time.ParseDuration(d.CmdArgs[0].Key)
				if err != nil {
					d.Fatalf(t, "tick: %v", err)
				}
				sc.s.Now = sc.s.Now.Add(dur)
				sc.publish()
				return "now " + decClock(sc.s.Now) + "\n"
			case "set":
				decSet(t, d, &sc.s)
				return "ok\n"
			case "check":
				c := Check{Reason: strings.TrimSpace(d.Input), At: sc.s.Now}
				d.ScanArgs(t, "name", &c.Name)
				d.ScanArgs(t, "ok", &c.OK)
				if d.HasArg("component") {
					d.ScanArgs(t, "component", &c.Component)
				}
				if d.HasArg("blocks") {
					d.ScanArgs(t, "blocks", &c.Blocks)
				}
				sc.s.Readiness = slices.DeleteFunc(sc.s.Readiness, func(o Check) bool { return o.Name == c.Name })
				sc.s.Readiness = append(sc.s.Readiness, c)
				return "ok\n"
			case "decide":
				before := fmt.Sprintf("%+v", sc.s)
				dec := Decide(sc.s)
				if fmt.Sprintf("%+v", sc.s) != before {
					d.Fatalf(t, "Decide changed its situation")
				}
				if again := Decide(sc.s); again.String() != dec.String() {
					d.Fatalf(t, "Decide is not deterministic:\n%s\n%s", dec, again)
				}
				return dec.String() + "\n"
			}
			d.Fatalf(t, "unknown command %q", d.Cmd)
			return ""
		})
	})
}

func decSetup(t *testing.T, d *datadriven.TestData) *decScenario {
	s := Situation{Primary: "west", Secondary: "east", Witness: "central", Policy: DefaultPolicy(),
		Quorum: true, Leader: true, ActiveControllerKey: true, Epoch: 1}
	s.Policy.Mode = lifeboat.MonitorAutomatic
	s.Policy.Grace = time.Second
	now := "12:00:00"
	for _, a := range d.CmdArgs {
		v := ""
		if len(a.Vals) > 0 {
			v = a.Vals[0]
		}
		switch a.Key {
		case "primary":
			s.Primary = v
		case "secondary":
			s.Secondary = v
		case "witness":
			s.Witness = v
			if v == "none" {
				s.Witness = ""
			}
		case "active":
			s.Active = v
		case "self":
			s.Self = v
		case "now":
			now = v
		default:
			if !decPolicyArg(t, d, a.Key, v, &s.Policy) {
				d.Fatalf(t, "setup: unknown argument %q", a.Key)
			}
		}
	}
	if s.Active == "" {
		s.Active = s.Primary
	}
	if s.Self == "" {
		s.Self = s.Secondary
	}
	s.Now = decTime(t, d, now)
	s.Observers = []string{s.Primary, s.Secondary}
	if s.Witness != "" {
		s.Observers = append(s.Observers, s.Witness)
	}
	sc := &decScenario{s: s, verdict: map[[2]string]View{}, silent: map[string]bool{}}
	for _, o := range s.Observers {
		for _, r := range s.Observers {
			sc.verdict[[2]string{o, r}] = View{Observer: o, Region: r, Since: s.Now.Add(-time.Hour), Reason: "ok"}
		}
	}
	sc.publish()
	return sc
}

// publish rebuilds the views: a publishing observer's views are stamped
// now; a silent one's keep their last stamp and go stale.
func (sc *decScenario) publish() {
	old := map[[2]string]View{}
	for _, v := range sc.s.Views {
		old[[2]string{v.Observer, v.Region}] = v
	}
	keys := make([][2]string, 0, len(sc.verdict))
	for k := range sc.verdict {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
	})
	sc.s.Views = sc.s.Views[:0:0]
	for _, k := range keys {
		if sc.silent[k[0]] {
			if v, ok := old[k]; ok {
				sc.s.Views = append(sc.s.Views, v)
			}
			continue
		}
		v := sc.verdict[k]
		v.At = sc.s.Now
		sc.s.Views = append(sc.s.Views, v)
	}
}

func decSet(t *testing.T, d *datadriven.TestData, s *Situation) {
	for _, a := range d.CmdArgs {
		v := ""
		if len(a.Vals) > 0 {
			v = a.Vals[0]
		}
		b := func() bool {
			x, err := strconv.ParseBool(v)
			if err != nil {
				d.Fatalf(t, "set %s: %v", a.Key, err)
			}
			return x
		}
		switch a.Key {
		case "self":
			s.Self = v
		case "quorum":
			s.Quorum = b()
		case "quorum-lost-at":
			s.QuorumLostAt = decTime(t, d, v)
		case "leader":
			s.Leader = b()
		case "key":
			s.ActiveControllerKey = b()
		case "run":
			s.RunInProgress = b()
		case "ack":
			s.Acknowledged = b()
		case "forced":
			s.Forced = b()
		case "last-automatic":
			s.LastAutomatic = decTime(t, d, v)
		case "active":
			s.Active = v
		case "epoch":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				d.Fatalf(t, "set epoch: %v", err)
			}
			s.Epoch = n
		default:
			if !decPolicyArg(t, d, a.Key, v, &s.Policy) {
				d.Fatalf(t, "set: unknown argument %q", a.Key)
			}
		}
	}
}

func decPolicyArg(t *testing.T, d *datadriven.TestData, key, v string, p *Policy) bool {
	dur := func() time.Duration {
		x, err := time.ParseDuration(v)
		if err != nil {
			d.Fatalf(t, "%s: %v", key, err)
		}
		return x
	}
	switch key {
	case "mode":
		p.Mode = lifeboat.MonitorMode(v)
	case "grace":
		p.Grace = dur()
	case "block-window":
		p.BlockWindow = dur()
	case "lease":
		p.Lease = dur()
	default:
		return false
	}
	return true
}

func decTime(t *testing.T, d *datadriven.TestData, v string) time.Time {
	if v == "never" {
		return time.Time{}
	}
	c, err := time.Parse("15:04:05.999999999", v)
	if err != nil {
		d.Fatalf(t, "time %q: want HH:MM:SS[.fff]: %v", v, err)
	}
	return decDay.Add(time.Duration(c.Hour())*time.Hour + time.Duration(c.Minute())*time.Minute +
		time.Duration(c.Second())*time.Second + time.Duration(c.Nanosecond()))
}

func decArgList(t *testing.T, d *datadriven.TestData, key string) []string {
	for _, a := range d.CmdArgs {
		if a.Key == key {
			if len(a.Vals) == 0 {
				d.Fatalf(t, "%s: give %s=(a, b)", d.Cmd, key)
			}
			return a.Vals
		}
	}
	d.Fatalf(t, "%s: missing %s=", d.Cmd, key)
	return nil
}

// TestDecideNeverFailsOverUnsafely checks the safety rules over random
// situations built from a small alphabet, so that edge cases (exactly the
// grace, exactly the lease, duplicate and foreign views) come up often.
func TestDecideNeverFailsOverUnsafely(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	regions := []string{"west", "east", "central"}
	now := decDay.Add(12 * time.Hour)
	durs := []time.Duration{0, time.Millisecond, 500 * time.Millisecond, time.Second, 5 * time.Second, 10 * time.Second, time.Hour}
	pick := func(xs []time.Duration) time.Duration { return xs[rng.IntN(len(xs))] }
	when := func() time.Time {
		switch rng.IntN(4) {
		case 0:
			return time.Time{}
		case 1:
			return now.Add(pick(durs)) // the future: clock skew
		default:
			return now.Add(-pick(durs))
		}
	}
	modes := []lifeboat.MonitorMode{lifeboat.MonitorManual, lifeboat.MonitorNotify, lifeboat.MonitorAutomatic, lifeboat.MonitorAutomatic, "bogus"}
	counts := map[Action]int{}
	for i := 0; i < 200000; i++ {
		s := Situation{
			Now:    now,
			Policy: Policy{Mode: modes[rng.IntN(len(modes))], Grace: pick(durs), BlockWindow: pick(durs), Lease: []time.Duration{0, time.Second, 5 * time.Second}[rng.IntN(3)]},
			Self:   regions[rng.IntN(3)], Primary: "west", Secondary: "east", Witness: "central",
			Active: []string{"west", "east", "west", "east", "central", ""}[rng.IntN(6)], Epoch: uint64(rng.IntN(3)),
			Observers: regions[:2+rng.IntN(2)],
			Quorum:    rng.IntN(4) > 0, QuorumLostAt: when(), Leader: rng.IntN(4) > 0,
			ActiveControllerKey: rng.IntN(2) == 0, LastAutomatic: when(), Acknowledged: rng.IntN(2) == 0,
			RunInProgress: rng.IntN(5) == 0, Forced: rng.IntN(2) == 0,
		}
		if len(s.Observers) == 2 {
			s.Witness = ""
		}
		// Mostly one view per observer and region, the active one often
		// failing, so that failovers are common enough to test; then a
		// few random ones (duplicates, foreign observers, odd times).
		recent := []time.Duration{0, 100 * time.Millisecond, time.Second, 5 * time.Second, 6 * time.Second}
		for _, o := range regions {
			for _, r := range regions {
				if rng.IntN(5) == 0 {
					continue
				}
				failing := rng.IntN(5) == 0
				if r == s.Active {
					failing = rng.IntN(5) > 0
				}
				s.Views = append(s.Views, View{Observer: o, Region: r, Failing: failing,
					Since: now.Add(-pick(durs)), At: now.Add(-pick(recent))})
			}
		}
		for n := rng.IntN(3); n > 0; n-- {
			s.Views = append(s.Views, View{Observer: regions[rng.IntN(3)], Region: regions[rng.IntN(3)],
				Failing: rng.IntN(3) > 0, Since: when(), At: when()})
		}
		for n := rng.IntN(3); n > 0; n-- {
			s.Readiness = append(s.Readiness, Check{Name: "c" + strconv.Itoa(n), OK: rng.IntN(2) == 0, Blocks: rng.IntN(2) == 0})
		}
		d := Decide(s)
		counts[d.Action]++
		fail := func(why string) {
			t.Fatalf("case %d: %s\nsituation: %+v\ndecision: %s", i, why, s, d)
		}
		if len(d.Reasons) == 0 {
			fail("a decision without reasons")
		}
		if d.Action == ActionFenceSelf && (s.Quorum || s.Self != s.Active) {
			fail("fence-self by a controller that has the quorum or is not active")
		}
		if !s.Quorum && d.Action != ActionFenceSelf && d.Action != ActionNone {
			fail("acted without the quorum")
		}
		if !s.Quorum && s.Self == s.Active && s.Self != "" && d.Action != ActionFenceSelf {
			fail("the active region lost the quorum and did not fence itself")
		}
		if d.Action != ActionFailover && d.Action != ActionAdvise && d.Action != ActionWait {
			continue
		}
		// A move (or an advice or a wait to move): the leader, with the
		// quorum, the active region lost, the other one not failing.
		if !s.Quorum || !s.Leader || s.RunInProgress {
			fail("moved without quorum, without the election, or during a run")
		}
		if d.From != s.Active || d.To == d.From || (d.To != "west" && d.To != "east") {
			fail("moved between the wrong regions")
		}
		if got := decOracleFailing(s, s.Active, s.Policy.Grace); got < len(s.Observers)/2+1 {
			fail(fmt.Sprintf("moved with %d fresh failing views past the grace, fewer than a majority", got))
		}
		if decOracleFailing(s, d.To, -1) >= len(s.Observers)/2+1 {
			fail("moved to a region a majority sees failing")
		}
		if d.Action == ActionAdvise && s.Policy.Mode != lifeboat.MonitorNotify {
			fail("advised outside notify mode")
		}
		if d.Action != ActionFailover {
			continue
		}
		if s.Policy.Mode != lifeboat.MonitorAutomatic {
			fail("failed over outside automatic mode")
		}
		if s.ActiveControllerKey && s.Self != s.Active && !decOracleFresh(s, s.Active, s.Active) {
			fail("failed over while the cut-off active region may not have fenced itself")
		}
		if !s.LastAutomatic.IsZero() && now.Before(s.LastAutomatic.Add(s.Policy.BlockWindow)) && !s.Acknowledged {
			fail("failed over within the block window, unacknowledged")
		}
		if !s.Forced && slices.ContainsFunc(s.Readiness, func(c Check) bool { return c.Blocks && !c.OK }) {
			fail("failed over against a blocking readiness check, not forced")
		}
	}
	for _, a := range []Action{ActionNone, ActionFailover, ActionAdvise, ActionFenceSelf, ActionWait} {
		if counts[a] == 0 {
			t.Errorf("no random case led to %q: the generator misses part of the space", a)
		}
	}
	t.Logf("actions over random situations: %v", counts)
}

// decOracleFresh is the property test's own reading of freshness.
func decOracleFresh(s Situation, observer, region string) bool {
	var latest *View
	for i, v := range s.Views {
		if v.Observer == observer && v.Region == region && (latest == nil || v.At.After(latest.At)) {
			latest = &s.Views[i]
		}
	}
	return latest != nil && !latest.At.IsZero() && s.Now.Sub(latest.At) <= s.Policy.Lease
}

// decOracleFailing counts observers whose latest view of region is fresh
// and failing since at least grace ago (grace < 0: failing at all).
func decOracleFailing(s Situation, region string, grace time.Duration) int {
	n := 0
	for _, o := range s.Observers {
		var latest *View
		for i, v := range s.Views {
			if v.Observer == o && v.Region == region && (latest == nil || v.At.After(latest.At)) {
				latest = &s.Views[i]
			}
		}
		if latest == nil || latest.At.IsZero() || s.Now.Sub(latest.At) > s.Policy.Lease || !latest.Failing {
			continue
		}
		if grace >= 0 && (latest.Since.IsZero() || s.Now.Sub(latest.Since) < grace) {
			continue
		}
		n++
	}
	return n
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	p := DefaultPolicy()
	if p.Mode != lifeboat.MonitorNotify || p.Lease != 5*time.Second || p.BlockWindow != time.Hour {
		t.Fatalf("defaults: %+v", p)
	}
	bad := Policy{Mode: "auto", Grace: -1, Lease: 0}
	err := bad.Validate()
	if err == nil || lifeboat.IsRetryable(err) {
		t.Fatalf("bad policy: want a permanent error, got %v", err)
	}
	for _, want := range []string{`"auto"`, "grace", "lease"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	d := Decide(Situation{Policy: bad, Quorum: true, Leader: true, Self: "east", Primary: "west", Secondary: "east", Active: "west", Observers: []string{"west", "east", "central"}})
	if d.Action != ActionNone || !strings.Contains(d.String(), "cannot decide") {
		t.Fatalf("bad policy: %s", d)
	}
}
