package drill

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func write(client int, id string, start, end int, ok bool) Attempt {
	a := Attempt{Client: client, Kind: KindWrite, ID: id, Start: at(start), End: at(end), OK: ok, Region: "west"}
	if !ok {
		a.Err = "connection refused"
		a.Region = ""
	}
	return a
}

func TestCheckSetNoneLost(t *testing.T) {
	h := []Attempt{write(0, "a", 0, 10, true), write(1, "b", 5, 15, true), {Client: 0, Kind: KindRead, ID: "a", Start: at(20), End: at(30), OK: true}}
	r := CheckSet(h, map[string]int{"a": 1, "b": 1})
	if !r.OK() || r.Writes != 2 || r.Acknowledged != 2 || r.Present != 2 || len(r.Lost) != 0 || r.LostWindow != nil || len(r.Unexpected) != 0 || len(r.Duplicated) != 0 || r.Stray != 0 {
		t.Fatalf("got %+v, want 2 acknowledged and present, nothing else", r)
	}
}

func TestCheckSetLostWindow(t *testing.T) {
	h := []Attempt{
		write(0, "a", 0, 10, true),
		write(0, "b", 100, 120, true), // lost
		write(1, "c", 130, 150, true),
		write(1, "d", 200, 230, true), // lost
		write(0, "e", 300, 310, true),
	}
	r := CheckSet(h, map[string]int{"a": 1, "c": 1, "e": 1})
	if r.OK() {
		t.Fatal("a set with lost writes passed")
	}
	if len(r.Lost) != 2 || r.Lost[0].ID != "b" || r.Lost[1].ID != "d" {
		t.Fatalf("lost = %+v, want b then d", r.Lost)
	}
	if r.LostWindow == nil || !r.LostWindow.First.Equal(at(120)) || !r.LostWindow.Last.Equal(at(230)) {
		t.Fatalf("lost window = %+v, want the acks of b (120ms) and d (230ms)", r.LostWindow)
	}
	if r.Acknowledged != 5 || r.Present != 3 {
		t.Fatalf("acknowledged %d present %d, want 5 and 3", r.Acknowledged, r.Present)
	}
}

func TestCheckSetUnexpectedAndRetries(t *testing.T) {
	h := []Attempt{
		write(0, "a", 0, 10, false), // failed, yet committed: unexpected
		write(0, "b", 20, 30, false),
		write(0, "b", 40, 50, true),  // a retry of b, acknowledged
		write(1, "c", 60, 70, false), // failed and absent: fine, not reported
	}
	r := CheckSet(h, map[string]int{"a": 1, "b": 1, "old": 1})
	if !r.OK() {
		t.Fatalf("unexpected writes must not fail the check: %+v", r)
	}
	if r.Writes != 3 || r.Acknowledged != 1 || r.Present != 1 {
		t.Fatalf("writes %d acknowledged %d present %d, want 3, 1, 1", r.Writes, r.Acknowledged, r.Present)
	}
	if len(r.Unexpected) != 1 || r.Unexpected[0] != "a" {
		t.Fatalf("unexpected = %v, want [a]", r.Unexpected)
	}
	if r.Stray != 1 {
		t.Fatalf("stray = %d, want 1 (old)", r.Stray)
	}
}

func TestCheckSetDuplicates(t *testing.T) {
	h := []Attempt{write(0, "a", 0, 10, true), write(0, "b", 20, 30, false)}
	r := CheckSet(h, map[string]int{"a": 2, "b": 3})
	if r.OK() {
		t.Fatal("duplicates passed")
	}
	if len(r.Duplicated) != 2 || r.Duplicated[0] != (Duplicate{ID: "a", Count: 2}) || r.Duplicated[1] != (Duplicate{ID: "b", Count: 3}) {
		t.Fatalf("duplicated = %+v, want a×2 and b×3", r.Duplicated)
	}
	if len(r.Lost) != 0 || len(r.Unexpected) != 1 {
		t.Fatalf("lost %v unexpected %v, want none and [b]", r.Lost, r.Unexpected)
	}
}

func reg(client int, kind, value string, start, end int, ok bool) Attempt {
	return Attempt{Client: client, Kind: kind, ID: "r", Value: value, Start: at(start), End: at(end), OK: ok}
}

func TestCheckRegisterLinearizable(t *testing.T) {
	h := []Attempt{
		reg(1, KindRead, "", 0, 5, true), // empty before any write
		reg(0, KindWrite, "a", 0, 10, true),
		reg(1, KindRead, "a", 20, 30, true),
		reg(0, KindWrite, "b", 40, 50, true),
		reg(1, KindRead, "a", 45, 55, true), // concurrent with the write of b
		reg(2, KindRead, "b", 46, 56, true),
		reg(1, KindRead, "zzz", 60, 70, false), // failed read: no information
	}
	dir := t.TempDir()
	vis := filepath.Join(dir, "register.html")
	o := DefaultRegisterOptions()
	o.Visualization = vis
	r := CheckRegister(h, o)
	if !r.OK() || r.Result != Linearizable || r.Operations != 6 || r.Keys != 1 {
		t.Fatalf("got %+v, want a linearizable history of 6 operations", r)
	}
	if r.Visualization != "" {
		t.Fatalf("visualisation written for a linearizable history: %s", r.Visualization)
	}
	if _, err := os.Stat(vis); !os.IsNotExist(err) {
		t.Fatalf("%s exists for a linearizable history", vis)
	}
}

func TestCheckRegisterStaleRead(t *testing.T) {
	h := []Attempt{
		reg(0, KindWrite, "a", 0, 10, true),
		reg(0, KindWrite, "b", 20, 30, true),
		reg(1, KindRead, "a", 40, 50, true), // b was acknowledged before: stale
	}
	vis := filepath.Join(t.TempDir(), "out", "register.html")
	o := DefaultRegisterOptions()
	o.Visualization = vis
	r := CheckRegister(h, o)
	if r.OK() || r.Result != NotLinearizable {
		t.Fatalf("got %+v, want not linearizable", r)
	}
	if r.Visualization != vis || r.Error != "" {
		t.Fatalf("visualisation %q error %q, want it written to %s", r.Visualization, r.Error, vis)
	}
	b, err := os.ReadFile(vis)
	if err != nil {
		t.Fatalf("the visualisation was not written: %v", err)
	}
	if !strings.Contains(string(b), "<html") {
		t.Fatalf("%s does not look like porcupine's HTML", vis)
	}
}

func TestCheckRegisterUnknownWrite(t *testing.T) {
	base := []Attempt{
		reg(0, KindWrite, "a", 0, 10, true),
		reg(0, KindWrite, "b", 20, 30, false), // the answer was lost: b may or may not be written
	}
	// Reading b long after the failed write: it took effect late.
	if r := CheckRegister(append(base, reg(1, KindRead, "b", 100, 110, true)), DefaultRegisterOptions()); r.Result != Linearizable || r.Unknown != 1 {
		t.Fatalf("reading an unknown write's value: %+v, want linearizable with 1 unknown write", r)
	}
	// Reading a: b never took effect (or not yet).
	if r := CheckRegister(append(base, reg(1, KindRead, "a", 100, 110, true)), DefaultRegisterOptions()); r.Result != Linearizable {
		t.Fatalf("reading the value before an unknown write: %+v, want linearizable", r)
	}
	// b then a: b cannot be undone.
	h := append(base, reg(1, KindRead, "b", 100, 110, true), reg(1, KindRead, "a", 120, 130, true))
	if r := CheckRegister(h, DefaultRegisterOptions()); r.Result != NotLinearizable {
		t.Fatalf("reading b then a: %+v, want not linearizable", r)
	}
}

func TestCheckRegisterKeysArePartitioned(t *testing.T) {
	h := []Attempt{
		{Client: 0, Kind: KindWrite, ID: "x", Value: "1", Start: at(0), End: at(10), OK: true},
		{Client: 1, Kind: KindWrite, ID: "y", Value: "2", Start: at(0), End: at(10), OK: true},
		{Client: 2, Kind: KindRead, ID: "x", Value: "1", Start: at(20), End: at(30), OK: true},
		{Client: 2, Kind: KindRead, ID: "y", Value: "2", Start: at(40), End: at(50), OK: true},
	}
	if r := CheckRegister(h, DefaultRegisterOptions()); r.Result != Linearizable || r.Keys != 2 {
		t.Fatalf("got %+v, want two linearizable registers", r)
	}
}

func TestCheckRegisterBadOptions(t *testing.T) {
	r := CheckRegister(nil, RegisterOptions{})
	if r.OK() || !strings.Contains(r.Error, "timeout") {
		t.Fatalf("got %+v, want an error about the timeout", r)
	}
}

// A write known not to have taken effect is no write at all; an unknown
// write whose value nobody read is left out without changing the verdict.
func TestCheckRegisterFailedAndUnreadWrites(t *testing.T) {
	failed := reg(0, KindWrite, "b", 20, 30, false)
	failed.Outcome = OutcomeFailed
	h := []Attempt{
		reg(0, KindWrite, "a", 0, 10, true),
		failed,
		reg(1, KindRead, "b", 100, 110, true), // b was never written: not linearizable
	}
	if r := CheckRegister(h, DefaultRegisterOptions()); r.Result != NotLinearizable || r.Unknown != 0 {
		t.Fatalf("reading the value of a write that failed for sure: %+v, want not linearizable, 0 unknown", r)
	}
	var many []Attempt
	many = append(many, reg(0, KindWrite, "a", 0, 10, true))
	for i := range 60 { // far more than porcupine could search if they were kept
		many = append(many, reg(2+i, KindWrite, fmt.Sprintf("u%d", i), 20+i, 25+i, false))
	}
	many = append(many, reg(1, KindRead, "a", 200, 210, true), reg(1, KindRead, "u7", 220, 230, true))
	r := CheckRegister(many, DefaultRegisterOptions())
	if r.Result != Linearizable || r.Unknown != 60 || r.Operations != 4 {
		t.Fatalf("got %+v, want linearizable, 60 unknown writes of which 1 checked (4 operations)", r)
	}
}
