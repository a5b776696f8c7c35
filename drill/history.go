package drill

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lifeboat-dr/lifeboat"
)

// Span is a time window, both ends included.
type Span struct {
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// Duration is Last − First.
func (s Span) Duration() time.Duration { return s.Last.Sub(s.First) }

// Duplicate is an id present more than once after recovery.
type Duplicate struct {
	ID    string `json:"id"`
	Count int    `json:"count"`
}

// SetResult is the set check of a write workload: every acknowledged write
// must be present after recovery, exactly once.
type SetResult struct {
	// Writes is the number of distinct ids written (retries share an id).
	Writes       int `json:"writes"`
	Acknowledged int `json:"acknowledged"`
	// Present: acknowledged ids found after recovery.
	Present int `json:"present"`
	// Lost: acknowledged but absent, one attempt per id (the first that
	// was acknowledged), by acknowledgement time.
	Lost []Attempt `json:"lost"`
	// LostWindow spans the acknowledgements of the lost writes.
	LostWindow *Span `json:"lost_window,omitempty"`
	// Unexpected: present although no attempt was acknowledged (the write
	// committed but its answer was lost). Allowed, reported.
	Unexpected []string `json:"unexpected"`
	// Duplicated: present more than once (an idempotency key not honoured,
	// or a write replayed by a failover).
	Duplicated []Duplicate `json:"duplicated"`
	// Stray: ids present that no attempt wrote (data from before the
	// drill, or another writer): counted only.
	Stray int `json:"stray"`
}

// OK: nothing acknowledged was lost and nothing was written twice.
func (r SetResult) OK() bool { return len(r.Lost) == 0 && len(r.Duplicated) == 0 }

// CheckSet is the Jepsen-style set check: acknowledged writes minus those
// present after recovery are lost. final counts how many times each id is
// present after recovery (a count above 1 is a duplicate); an id absent
// from final, or counted 0, is absent. Reads are ignored.
func CheckSet(attempts []Attempt, final map[string]int) SetResult {
	type write struct {
		ack   *Attempt // first acknowledged attempt
		tries int
	}
	writes := map[string]*write{}
	var order []string
	for i := range attempts {
		a := &attempts[i]
		if a.Kind != KindWrite {
			continue
		}
		w := writes[a.ID]
		if w == nil {
			w = &write{}
			writes[a.ID] = w
			order = append(order, a.ID)
		}
		w.tries++
		if a.OK && (w.ack == nil || a.End.Before(w.ack.End)) {
			w.ack = a
		}
	}
	r := SetResult{Writes: len(writes), Lost: []Attempt{}, Unexpected: []string{}, Duplicated: []Duplicate{}}
	for _, id := range order {
		w := writes[id]
		n := final[id]
		switch {
		case w.ack != nil && n > 0:
			r.Acknowledged++
			r.Present++
		case w.ack != nil:
			r.Acknowledged++
			r.Lost = append(r.Lost, *w.ack)
		case n > 0:
			r.Unexpected = append(r.Unexpected, id)
		}
		if n > 1 {
			r.Duplicated = append(r.Duplicated, Duplicate{ID: id, Count: n})
		}
	}
	for id, n := range final {
		if writes[id] == nil && n > 0 {
			r.Stray++
		}
	}
	sort.SliceStable(r.Lost, func(i, j int) bool { return r.Lost[i].End.Before(r.Lost[j].End) })
	if len(r.Lost) > 0 {
		r.LostWindow = &Span{First: r.Lost[0].End, Last: r.Lost[len(r.Lost)-1].End}
	}
	sort.Strings(r.Unexpected)
	sort.Slice(r.Duplicated, func(i, j int) bool { return r.Duplicated[i].ID < r.Duplicated[j].ID })
	return r
}

// RegisterOptions says how to check a register workload.
type RegisterOptions struct {
	// Visualization is the HTML file porcupine's visualisation is written
	// to when the history is not linearizable; "" writes none.
	Visualization string
	// Timeout bounds the search (linearizability checking is NP-hard); on
	// timeout the result is "unknown", not a failure.
	Timeout time.Duration
}

// DefaultRegisterOptions checks for at most 30 s and writes no
// visualisation.
func DefaultRegisterOptions() RegisterOptions {
	return RegisterOptions{Timeout: 30 * time.Second}
}

// ValidateRegisterOptions says what is wrong with o.
func ValidateRegisterOptions(o RegisterOptions) error {
	if o.Timeout <= 0 {
		return lifeboat.Permanent("drill.check", "", fmt.Errorf("register check timeout %s: want a positive duration (30s is plenty for a few thousand operations)", o.Timeout))
	}
	return nil
}

// Linearizability verdicts.
const (
	Linearizable    = "linearizable"
	NotLinearizable = "not linearizable"
	CheckTimedOut   = "unknown (check timed out)"
	NotChecked      = "not checked"
)

// RegisterResult is the linearizability check of a register workload.
type RegisterResult struct {
	Result string `json:"result"` // Linearizable, NotLinearizable, CheckTimedOut or NotChecked
	// Operations checked: acknowledged writes, answered reads, and the
	// writes of unknown outcome whose value some read returned.
	Operations int `json:"operations"`
	// Unknown counts the writes of unknown outcome, checked or not (one
	// whose value nobody read is left out: it changes no verdict).
	Unknown int `json:"unknown_writes"`
	// Keys is how many registers (distinct ids) were checked.
	Keys int `json:"keys"`
	// Visualization is where porcupine's visualisation was written (only
	// when the history is not linearizable).
	Visualization string `json:"visualization,omitempty"`
	// Error says why the check or the visualisation could not be made.
	Error string `json:"error,omitempty"`
}

// OK: the history is linearizable (a check that timed out is not OK).
func (r RegisterResult) OK() bool { return r.Result == Linearizable && r.Error == "" }

// registerIn and registerOut are porcupine's inputs and outputs.
type registerIn struct {
	Key   string
	Write bool
	Value string
}

type registerOut struct{ Value string }

// registerModel is one register per key, empty ("") at first. A write of
// unknown outcome is given an open end, so it may take effect at any point
// after it was sent, or never: the checker may linearize it after the last
// operation, where it changes nothing observed.
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(registerIn).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(registerIn)
		if in.Write {
			return true, in.Value
		}
		return output.(registerOut).Value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(registerIn)
		if in.Write {
			return fmt.Sprintf("write(%s, %q)", in.Key, in.Value)
		}
		return fmt.Sprintf("read(%s) → %q", in.Key, output.(registerOut).Value)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state.(string)) },
}

// CheckRegister checks that a register workload (writes of unique values,
// reads) is linearizable, with porcupine. Failed reads say nothing and are
// left out; failed writes have an unknown outcome (they may have
// committed) unless their Outcome is OutcomeFailed, and are left out too. When the history is not linearizable and o.Visualization is
// set, porcupine's visualisation is written there.
func CheckRegister(ops []Attempt, o RegisterOptions) RegisterResult {
	if err := ValidateRegisterOptions(o); err != nil {
		return RegisterResult{Result: NotChecked, Error: err.Error()}
	}
	var t0, tEnd time.Time
	for _, a := range ops {
		if t0.IsZero() || a.Start.Before(t0) {
			t0 = a.Start
		}
		if a.End.After(tEnd) {
			tEnd = a.End
		}
	}
	// After every operation: an unknown write's open return.
	open := tEnd.Sub(t0).Nanoseconds() + 1
	var h []porcupine.Operation
	keys := map[string]bool{}
	r := RegisterResult{}
	// An unknown write whose value no read returned can be left out: the
	// history is linearizable with it (at its open end) exactly when it is
	// without it, and each such write left in multiplies the search.
	read := map[string]bool{}
	for _, a := range ops {
		if a.Kind == KindRead && a.OK {
			read[a.ID+"\x00"+a.Value] = true
		}
	}
	for _, a := range ops {
		var in registerIn
		switch {
		case a.Kind == KindWrite && !a.OK && a.Outcome == OutcomeFailed:
			continue // known not to have taken effect
		case a.Kind == KindWrite && !a.OK && !read[a.ID+"\x00"+a.Value]:
			r.Unknown++
			keys[a.ID] = true
			continue
		case a.Kind == KindWrite:
			in = registerIn{Key: a.ID, Write: true, Value: a.Value}
		case a.Kind == KindRead && a.OK:
			in = registerIn{Key: a.ID}
		default:
			continue
		}
		ret := a.End.Sub(t0).Nanoseconds()
		if a.Kind == KindWrite && !a.OK {
			ret = open
			r.Unknown++
		}
		keys[a.ID] = true
		h = append(h, porcupine.Operation{
			ClientId: a.Client,
			Input:    in,
			Call:     a.Start.Sub(t0).Nanoseconds(),
			Output:   registerOut{Value: a.Value},
			Return:   ret,
		})
	}
	r.Operations, r.Keys = len(h), len(keys)
	res, info := porcupine.CheckOperationsVerbose(registerModel, h, o.Timeout)
	switch res {
	case porcupine.Ok:
		r.Result = Linearizable
	case porcupine.Illegal:
		r.Result = NotLinearizable
	default:
		r.Result = CheckTimedOut
		return r
	}
	if r.Result == NotLinearizable && o.Visualization != "" {
		if err := writeVisualization(info, o.Visualization); err != nil {
			r.Error = err.Error()
		} else {
			r.Visualization = o.Visualization
		}
	}
	return r
}

func writeVisualization(info porcupine.LinearizationInfo, path string) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return lifeboat.Permanent("drill.check", "", fmt.Errorf("creating the directory of the linearizability visualisation %s: %w", path, err))
		}
	}
	if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
		return lifeboat.Permanent("drill.check", "", fmt.Errorf("writing the linearizability visualisation to %s: %w (the check's verdict stands; rerun with a writable --out)", path, err))
	}
	return nil
}
