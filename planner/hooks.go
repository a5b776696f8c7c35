package planner

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// attachment is one place a hook goes: before or after a block of steps.
type attachment struct {
	before bool   // where the step goes: before or after the block
	side   string // what the spec said: "before" or "after"
	key    string // identifies the block, so hooks on the same block chain
	label  string // what the hook attaches to, for IDs and Why
	block  []*lifeboat.Step
}

// hooks inserts the spec's approval and script steps. Selectors match only
// the procedure's own steps (never epoch.raise or other hooks), so every
// hook step still waits for the new epoch.
func (b *builder) hooks() error {
	core := slices.Clone(b.p.Steps)
	after := map[string][]*lifeboat.Step{} // block key → block grown by its after-hooks
	approvals := false
	for _, h := range b.s.Hooks {
		if len(h.On) > 0 && !slices.Contains(h.On, b.intent) {
			continue
		}
		op := lifeboat.OpScript
		switch {
		case h.Run != "" && h.Approval != "":
			return refuse(b.s, b.intent, "spec %s: hook %q has both run and approval; a hook is one or the other: split it into two hooks", specFile(b.s), h.Name)
		case h.Approval != "":
			op, approvals = lifeboat.OpApproval, true
		case h.Run == "":
			return refuse(b.s, b.intent, "spec %s: hook %q has neither run (a command) nor approval (a question): add one, or remove the hook", specFile(b.s), h.Name)
		}
		var atts []attachment
		for _, sel := range []struct {
			before bool
			what   string
		}{{true, h.Before}, {false, h.After}} {
			if sel.what == "" {
				continue
			}
			found := b.match(sel.what, sel.before, core)
			if len(found) == 0 {
				b.note("hook %s (%s %s) matches no step of this %s plan, so it does not run.", h.Name, beforeAfter(sel.before), sel.what, b.intent)
			}
			atts = append(atts, found...)
		}
		for _, a := range atts {
			id := string(op) + " " + h.Name
			if len(atts) > 1 {
				id += " " + a.side + " " + a.label
			}
			if b.p.Step(id) != nil {
				return refuse(b.s, b.intent, "spec %s: two hooks are named %q: give each hook its own name", specFile(b.s), h.Name)
			}
			st := &lifeboat.Step{ID: id, Op: op, Run: h.Run, Approval: h.Approval, Env: maps.Clone(h.Env), Timeout: h.Timeout.D(),
				Epoch: b.p.Epoch, Why: fmt.Sprintf("hook %s, %s %s", h.Name, a.side, a.label)}
			if op == lifeboat.OpScript {
				st.Estimate = lifeboat.EstimateScript
				if st.Timeout > 0 && st.Timeout < st.Estimate {
					st.Estimate = st.Timeout
				}
			}
			if a.before {
				b.insertBefore(st, a.block)
				continue
			}
			block := a.block
			if grown, ok := after[a.key]; ok {
				block = grown
			}
			b.insertAfter(st, block)
			after[a.key] = append(slices.Clone(block), st) // never append into core's array
		}
	}
	if approvals {
		b.note("approvals wait for a person: that wait is not in the estimated RTO.")
	}
	return nil
}

func beforeAfter(before bool) string {
	if before {
		return "before"
	}
	return "after"
}

// match finds the blocks a selector names in the procedure's steps.
func (b *builder) match(sel string, before bool, core []*lifeboat.Step) []attachment {
	if sel == "plan" {
		if before {
			// Before everything, but after the epoch: the hook acts for it.
			return []attachment{{before: false, side: "before", key: "plan", label: "plan", block: slices.Clone(core[:1])}}
		}
		return []attachment{{before: false, side: "after", key: "plan-end", label: "plan", block: slices.Clone(b.p.Steps)}}
	}
	if slices.Contains(lifeboat.Ops, lifeboat.Op(sel)) {
		var out []attachment
		for _, st := range core {
			if string(st.Op) == sel && st.Op != lifeboat.OpRaiseEpoch {
				out = append(out, attachment{before: before, side: beforeAfter(before), key: "step " + st.ID, label: st.ID, block: []*lifeboat.Step{st}})
			}
		}
		return out
	}
	unit, comp, ok := strings.Cut(sel, ".")
	if !ok {
		return nil
	}
	var block []*lifeboat.Step
	for _, st := range core {
		if st.Unit == unit && st.Component == comp {
			block = append(block, st)
		}
	}
	if len(block) == 0 {
		return nil
	}
	return []attachment{{before: before, side: beforeAfter(before), key: "component " + sel, label: sel, block: block}}
}

// insertBefore makes h run before the block: h takes over what the block's
// first steps waited for, and they wait for h. A first step is one that
// waits for no other step of the block, not even through steps outside it
// (a component's traffic switch waits for its compute through a hook).
func (b *builder) insertBefore(h *lifeboat.Step, block []*lifeboat.Step) {
	var entries []*lifeboat.Step
	for _, st := range block {
		up := b.upstream([]*lifeboat.Step{st})
		if !slices.ContainsFunc(block, func(o *lifeboat.Step) bool { return up[o.ID] }) {
			entries = append(entries, st)
		}
	}
	var deps []string
	first := len(b.p.Steps)
	for _, st := range entries {
		deps = append(deps, st.DependsOn...)
		st.DependsOn = []string{h.ID}
		first = min(first, b.index(st.ID))
	}
	h.DependsOn = uniq(deps)
	b.p.Steps = slices.Insert(b.p.Steps, first, h)
}

// insertAfter makes h run after the block, and every step that waited for
// part of the block wait for h instead, except a step the block itself
// waits for: a component's cleanup comes after the traffic switch that
// waited for its stand-up, and that switch cannot wait for the cleanup.
func (b *builder) insertAfter(h *lifeboat.Step, block []*lifeboat.Step) {
	in := ids(block)
	upstream := b.upstream(block)
	waited := map[string]bool{}
	for _, st := range block {
		for _, d := range st.DependsOn {
			waited[d] = true
		}
	}
	var deps []string
	last := 0
	for _, st := range block {
		if !waited[st.ID] {
			deps = append(deps, st.ID) // an exit: nothing in the block waits for it
		}
		last = max(last, b.index(st.ID))
	}
	h.DependsOn = uniq(deps)
	for _, st := range b.p.Steps {
		if in[st.ID] || upstream[st.ID] {
			continue
		}
		replaced := false
		var keep []string
		for _, d := range st.DependsOn {
			if in[d] {
				replaced = true
				continue
			}
			keep = append(keep, d)
		}
		if replaced {
			st.DependsOn = uniq(append(keep, h.ID))
		}
	}
	b.p.Steps = slices.Insert(b.p.Steps, last+1, h)
}

func ids(steps []*lifeboat.Step) map[string]bool {
	m := make(map[string]bool, len(steps))
	for _, st := range steps {
		m[st.ID] = true
	}
	return m
}

func (b *builder) index(id string) int {
	return slices.IndexFunc(b.p.Steps, func(st *lifeboat.Step) bool { return st.ID == id })
}

// upstream returns every step that a step of block waits for, directly or not.
func (b *builder) upstream(block []*lifeboat.Step) map[string]bool {
	seen := map[string]bool{}
	var walk func(st *lifeboat.Step)
	walk = func(st *lifeboat.Step) {
		for _, d := range st.DependsOn {
			if !seen[d] {
				seen[d] = true
				if ds := b.p.Step(d); ds != nil {
					walk(ds)
				}
			}
		}
	}
	for _, st := range block {
		walk(st)
	}
	return seen
}
