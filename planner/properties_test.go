package planner_test

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/planner"
)

// corpus is every combination of standby mode and DR mode in a spec of two
// units (the second depends on the first and routes to the first's
// compute), with and without hooks, plus the example shop.
func corpus(t *testing.T) map[string]*lifeboat.Spec {
	t.Helper()
	out := map[string]*lifeboat.Spec{}
	drs := map[string]string{
		"async":  "{engine: postgres, dr-mode: geo-replica, replication: async}",
		"sync":   "{engine: postgres, dr-mode: geo-replica, replication: sync}",
		"backup": "{engine: postgres, dr-mode: backup, backup-interval: 5m}",
		"none":   "{engine: postgres, dr-mode: none}",
	}
	for _, standby := range []string{"hot", "warm", "cold"} {
		for drName, dr := range drs {
			for _, hooks := range []bool{false, true} {
				y := fmt.Sprintf(`
service: svc
regions:
  primary: {name: west}
  secondary: {name: east}
  witness: {name: central}
objectives: {rto: 3m, rpo: 10s}
units:
  core:
    compute:
      api:
        recipe: {artifact: ./api, command: [./api]}
        standby: %[1]s
        instances: {primary: 3, secondary: 2}
    databases:
      data: %[2]s
      more: {engine: postgres, dr-mode: geo-replica}
    traffic:
      www: {names: [svc.example.test], target: api}
  edge:
    depends-on: [core]
    compute:
      gw:
        recipe: {artifact: ./gw, command: [./gw]}
        standby: %[1]s
        instances: {primary: 1, secondary: 1}
    databases:
      sessions: %[2]s
    traffic:
      gw: {names: [gw.example.test], target: gw}
      api: {names: [api.example.test], target: core.api}
`, standby, dr)
				if hooks {
					y += `hooks:
  - {name: first, before: plan, run: ./a.sh}
  - {name: ask, before: traffic.switch, approval: "ok?"}
  - {name: check, after: core.data, run: ./check.sh}
  - {name: around, before: edge.gw, after: edge.gw, run: ./x.sh}
  - {name: smoke, after: traffic.switch, run: ./smoke.sh}
  - {name: last, after: plan, run: ./z.sh}
`
				}
				s, err := parseSpec(y)
				if err != nil {
					t.Fatalf("corpus spec %s/%s: %v", standby, drName, err)
				}
				out[fmt.Sprintf("%s-%s-hooks=%v", standby, drName, hooks)] = s
			}
		}
	}
	b, err := os.ReadFile("../examples/script/lifeboat.yaml")
	if err != nil {
		t.Fatalf("example spec: %v", err)
	}
	s, err := parseSpec(string(b))
	if err != nil {
		t.Fatalf("example spec: %v", err)
	}
	out["example"] = s
	return out
}

var intents = []lifeboat.Intent{lifeboat.IntentFailover, lifeboat.IntentFailback, lifeboat.IntentSwitchover}

// plans walks each spec through a few histories (initial, after failover,
// after switchover, after switchover and back) and yields every plan the
// planner makes from there.
func plans(t *testing.T, f func(name string, s *lifeboat.Spec, st *lifeboat.State, p *lifeboat.Plan)) {
	t.Helper()
	histories := [][]lifeboat.Intent{{}, {lifeboat.IntentFailover}, {lifeboat.IntentSwitchover},
		{lifeboat.IntentSwitchover, lifeboat.IntentSwitchover}, {lifeboat.IntentFailover, lifeboat.IntentFailback}}
	count := 0
	for name, s := range corpus(t) {
		for _, h := range histories {
			st := lifeboat.InitialState(s, t0)
			for _, in := range h {
				p, err := planner.Plan(s, st, in, "")
				if err != nil {
					t.Fatalf("%s: history %v: %s: %v", name, h, in, err)
				}
				apply(st, p)
			}
			for _, in := range intents {
				p, err := planner.Plan(s, st, in, "")
				if err != nil {
					if !errors.Is(err, planner.ErrRefused) || lifeboat.IsRetryable(err) {
						t.Fatalf("%s: %v then %s: error not a non-retryable refusal: %v", name, h, in, err)
					}
					continue
				}
				count++
				f(fmt.Sprintf("%s: %v then %s", name, h, in), s, st, p)
			}
		}
	}
	if count < 100 {
		t.Fatalf("only %d plans made: the corpus or the histories are broken", count)
	}
}

func apply(st *lifeboat.State, p *lifeboat.Plan) {
	for _, g := range p.Groups() {
		for _, step := range g {
			st.Apply(step, t0)
		}
	}
}

// upstream returns every step id waits for, directly or not.
func upstream(p *lifeboat.Plan, id string) map[string]bool {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(id string) {
		for _, d := range p.Step(id).DependsOn {
			if !seen[d] {
				seen[d] = true
				walk(d)
			}
		}
	}
	walk(id)
	return seen
}

func TestEveryPlanIsWellFormed(t *testing.T) {
	plans(t, func(name string, s *lifeboat.Spec, st *lifeboat.State, p *lifeboat.Plan) {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if p.Epoch != st.Epoch+1 {
			t.Errorf("%s: plan epoch %d, want %d", name, p.Epoch, st.Epoch+1)
		}
		if len(p.Steps) == 0 || p.Steps[0].Op != lifeboat.OpRaiseEpoch || len(p.Steps[0].DependsOn) != 0 {
			t.Fatalf("%s: the first step is not a bare epoch.raise", name)
		}
		for _, step := range p.Steps {
			if step.Epoch != p.Epoch {
				t.Errorf("%s: step %q has epoch %d, plan %d", name, step.ID, step.Epoch, p.Epoch)
			}
			if step.Why == "" {
				t.Errorf("%s: step %q has no why", name, step.ID)
			}
			if step.Op != lifeboat.OpRaiseEpoch && !upstream(p, step.ID)[p.Steps[0].ID] {
				t.Errorf("%s: step %q does not wait for epoch.raise", name, step.ID)
			}
			if step.Op.Kind() != "" && step.Op != lifeboat.OpTrafficSwitch && !strings.HasSuffix(step.ID, step.Resource) {
				t.Errorf("%s: step id %q does not name its resource %q", name, step.ID, step.Resource)
			}
		}
		if p.Objectives != s.Objectives {
			t.Errorf("%s: plan objectives %v, spec %v", name, p.Objectives, s.Objectives)
		}
		if _, rto := p.RecoveryPath(); rto != p.RTO {
			t.Errorf("%s: RTO %v is not the critical path %v", name, p.RTO, rto)
		}
	})
}

func TestTrafficSwitchesAfterTheirData(t *testing.T) {
	plans(t, func(name string, s *lifeboat.Spec, _ *lifeboat.State, p *lifeboat.Plan) {
		for _, sw := range p.Steps {
			if sw.Op != lifeboat.OpTrafficSwitch {
				continue
			}
			up := upstream(p, sw.ID)
			for _, st := range p.Steps {
				if st.Op.Kind() == lifeboat.KindDatabase && st.Unit == sw.Unit && !up[st.ID] {
					t.Errorf("%s: %q does not wait for %q", name, sw.ID, st.ID)
				}
				// Dependencies come back first.
				for _, dep := range s.Units[sw.Unit].DependsOn {
					if st.Op == lifeboat.OpTrafficSwitch && st.Unit == dep && !up[st.ID] {
						t.Errorf("%s: %q does not wait for %q of unit %s it depends on", name, sw.ID, st.ID, dep)
					}
				}
			}
		}
	})
}

func TestPlannedMovesLoseNothing(t *testing.T) {
	plans(t, func(name string, s *lifeboat.Spec, _ *lifeboat.State, p *lifeboat.Plan) {
		if p.Intent == lifeboat.IntentFailover {
			return
		}
		if p.RPO != 0 {
			t.Errorf("%s: RPO %v, want 0", name, p.RPO)
		}
		for _, st := range p.Steps {
			if st.Op == lifeboat.OpDatabasePromote || st.BestEffort {
				t.Errorf("%s: planned move has %q (promote or best effort)", name, st.ID)
			}
			// Writes stop before data moves: every stop of the unit comes first.
			if st.Op == lifeboat.OpDatabaseSwitchover || st.Op == lifeboat.OpDatabaseBackup {
				up := upstream(p, st.ID)
				for _, stop := range p.Steps {
					if stop.Op == lifeboat.OpComputeStop && stop.Unit == st.Unit && !up[stop.ID] {
						t.Errorf("%s: %q does not wait for %q", name, st.ID, stop.ID)
					}
				}
			}
			// Switchover stands everything up before it stops anything.
			if p.Intent == lifeboat.IntentSwitchover && st.Op == lifeboat.OpComputeStop {
				up := upstream(p, st.ID)
				for _, u := range p.Steps {
					if (u.Op == lifeboat.OpComputeProvision || u.Op == lifeboat.OpComputeScale) && u.Region == p.To && !up[u.ID] {
						t.Errorf("%s: %q does not wait for %q", name, st.ID, u.ID)
					}
				}
			}
		}
	})
}

func TestPlanIsPureAndStable(t *testing.T) {
	plans(t, func(name string, s *lifeboat.Spec, st *lifeboat.State, p *lifeboat.Plan) {
		before := st.Clone()
		again, err := planner.Plan(s, st, p.Intent, p.To)
		if err != nil {
			t.Fatalf("%s: second plan: %v", name, err)
		}
		if !reflect.DeepEqual(p, again) {
			t.Errorf("%s: two plans from the same input differ:\n%s\n%s", name, planner.Format(p), planner.Format(again))
		}
		if !reflect.DeepEqual(before, st) {
			t.Errorf("%s: planning changed the state", name)
		}
	})
}

// Hooks only add steps: every order between the procedure's steps holds
// with hooks as without.
func TestHooksKeepTheProcedureOrder(t *testing.T) {
	plans(t, func(name string, s *lifeboat.Spec, st *lifeboat.State, p *lifeboat.Plan) {
		if len(s.Hooks) == 0 {
			return
		}
		bare := *s
		bare.Hooks = nil
		q, err := planner.Plan(&bare, st, p.Intent, p.To)
		if err != nil {
			t.Fatalf("%s: without hooks: %v", name, err)
		}
		var hooked int
		for _, step := range p.Steps {
			if step.Op == lifeboat.OpScript || step.Op == lifeboat.OpApproval {
				hooked++
			}
		}
		if len(p.Steps)-hooked != len(q.Steps) {
			t.Fatalf("%s: %d steps with hooks (%d hooks), %d without", name, len(p.Steps), hooked, len(q.Steps))
		}
		for _, step := range q.Steps {
			if p.Step(step.ID) == nil {
				t.Fatalf("%s: hooks lost step %q", name, step.ID)
			}
			withHooks := upstream(p, step.ID)
			for d := range upstream(q, step.ID) {
				if !withHooks[d] {
					t.Errorf("%s: with hooks, %q no longer waits for %q", name, step.ID, d)
				}
			}
		}
	})
}

// A failover and a failback bring the service back where it started.
func TestFailoverThenFailbackComesHome(t *testing.T) {
	for name, s := range corpus(t) {
		st := lifeboat.InitialState(s, t0)
		want := lifeboat.InitialState(s, t0)
		for _, in := range []lifeboat.Intent{lifeboat.IntentFailover, lifeboat.IntentFailback} {
			p, err := planner.Plan(s, st, in, "")
			if err != nil {
				t.Fatalf("%s: %s: %v", name, in, err)
			}
			apply(st, p)
		}
		if st.Active != want.Active || st.Epoch != 3 {
			t.Errorf("%s: active %s epoch %d, want %s epoch 3", name, st.Active, st.Epoch, want.Active)
		}
		for id, w := range want.Resources {
			g := st.Resources[id]
			switch w.Kind {
			case lifeboat.KindCompute:
				if g.Exists != w.Exists || g.Instances != w.Instances {
					t.Errorf("%s: %s exists=%v instances=%d, want exists=%v instances=%d", name, id, g.Exists, g.Instances, w.Exists, w.Instances)
				}
			case lifeboat.KindTraffic:
				if g.Routes != w.Routes {
					t.Errorf("%s: %s routes to %s, want %s", name, id, g.Routes, w.Routes)
				}
			case lifeboat.KindDatabase:
				// The primary comes home; a backup-mode copy ends fenced
				// rather than "backups", which no op restores.
				if (g.Role == lifeboat.DBPrimary) != (w.Role == lifeboat.DBPrimary) {
					t.Errorf("%s: %s is %s, want %s", name, id, g.Role, w.Role)
				}
			}
		}
		// Once applied, the same move is refused: the service is there.
		if _, err := planner.Plan(s, st, lifeboat.IntentFailback, ""); !errors.Is(err, planner.ErrRefused) {
			t.Errorf("%s: a second failback was not refused: %v", name, err)
		}
	}
}

func TestFormatShowsTheVerdicts(t *testing.T) {
	s := corpus(t)["cold-backup-hooks=false"]
	p, err := planner.Plan(s, lifeboat.InitialState(s, t0), lifeboat.IntentFailover, "east")
	if err != nil {
		t.Fatal(err)
	}
	out := planner.Format(p)
	for _, want := range []string{"failover svc: west → east, new epoch 2", "estimated RTO 11m4s (objective 3m): MISSES", "core.data misses the RTO", "core.data misses the RPO: 5m > 10s"} {
		if !strings.Contains(out, want) {
			t.Errorf("Format lacks %q:\n%s", want, out)
		}
	}
}
