package planner_test

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"gopkg.in/yaml.v3"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/planner"
)

// t0 is the fixed time of every state change in tests: plans are pure and
// the state's clock is the caller's.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// scenario is what a testdata script builds up, command by command.
type scenario struct {
	spec *lifeboat.Spec
	st   *lifeboat.State
	last *lifeboat.Plan
}

// TestScenarios runs testdata/*.txt. Commands:
//
//	spec                      inline YAML → spec, and a fresh InitialState
//	plan intent=X [to=R]      the plan's Format, or the refusal
//	apply                     apply the last plan's steps (group by group)
//	set resource=R [role=..] [instances=N] [exists=B] [routes=R]
//	set [active=R] [epoch=N]  tweak the state
//	state                     print the state
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		sc := &scenario{}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return sc.run(t, d)
		})
	})
}

func (sc *scenario) run(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "spec":
		s, err := parseSpec(d.Input)
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		sc.spec, sc.st, sc.last = s, lifeboat.InitialState(s, t0), nil
		return "ok\n"
	case "plan":
		var intent, to string
		d.ScanArgs(t, "intent", &intent)
		d.MaybeScanArgs(t, "to", &to)
		before := sc.st.Clone()
		p, err := planner.Plan(sc.spec, sc.st, lifeboat.Intent(intent), to)
		if summary(before) != summary(sc.st) {
			t.Fatalf("%s: Plan changed the state it was given", d.Pos)
		}
		if err != nil {
			kind := "error"
			if errors.Is(err, planner.ErrRefused) && !lifeboat.IsRetryable(err) {
				kind = "refused"
			}
			return kind + ": " + err.Error() + "\n"
		}
		sc.last = p
		return planner.Format(p)
	case "apply":
		if sc.last == nil {
			d.Fatalf(t, "apply: no plan to apply")
		}
		for _, g := range sc.last.Groups() {
			for _, st := range g {
				sc.st.Apply(st, t0)
			}
		}
		sc.last = nil
		return summary(sc.st)
	case "set":
		for _, a := range d.CmdArgs {
			if err := set(sc.st, d.CmdArgs, a); err != nil {
				d.Fatalf(t, "set: %v", err)
			}
		}
		return summary(sc.st)
	case "state":
		return summary(sc.st)
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return ""
}

// parseSpec decodes a spec strictly, as package config will (which these
// tests do not import: it is built alongside).
func parseSpec(in string) (*lifeboat.Spec, error) {
	dec := yaml.NewDecoder(bytes.NewBufferString(in))
	dec.KnownFields(true)
	var s lifeboat.Spec
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

func set(st *lifeboat.State, all []datadriven.CmdArg, a datadriven.CmdArg) error {
	val := ""
	if len(a.Vals) > 0 {
		val = a.Vals[0]
	}
	var r *lifeboat.Resource
	for _, o := range all {
		if o.Key == "resource" {
			if r = st.Resources[o.Vals[0]]; r == nil {
				return fmt.Errorf("no resource %q", o.Vals[0])
			}
		}
	}
	need := func() error {
		if r == nil {
			return fmt.Errorf("%s= needs resource=", a.Key)
		}
		return nil
	}
	switch a.Key {
	case "resource":
	case "active":
		st.Active = val
	case "epoch":
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			return err
		}
		st.Epoch = n
	case "role":
		if err := need(); err != nil {
			return err
		}
		r.Role = lifeboat.DatabaseRole(val)
	case "instances":
		if err := need(); err != nil {
			return err
		}
		n, err := strconv.Atoi(val)
		if err != nil {
			return err
		}
		r.Instances = n
	case "exists":
		if err := need(); err != nil {
			return err
		}
		r.Exists = val == "true"
	case "routes":
		if err := need(); err != nil {
			return err
		}
		r.Routes = val
	default:
		return fmt.Errorf("unknown key %q", a.Key)
	}
	return nil
}

// summary prints the state in a few lines: what a person checks after a run.
func summary(st *lifeboat.State) string {
	var w strings.Builder
	fmt.Fprintf(&w, "epoch %d, active %s\n", st.Epoch, st.Active)
	for _, r := range st.SortedResources() {
		fmt.Fprintf(&w, "%s: ", r.Name)
		switch {
		case r.Kind == lifeboat.KindTraffic:
			fmt.Fprintf(&w, "routes to %s", r.Routes)
		case !r.Exists:
			fmt.Fprintf(&w, "absent")
		case r.Kind == lifeboat.KindCompute:
			fmt.Fprintf(&w, "%d instance(s)", r.Instances)
		default:
			fmt.Fprintf(&w, "%s", r.Role)
		}
		fmt.Fprintf(&w, " (%s)\n", r.Group)
	}
	return w.String()
}
