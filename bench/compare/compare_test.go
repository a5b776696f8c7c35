package main

import (
	"strings"
	"testing"
	"time"
)

func TestDirectURIKeepsOneHostAndDropsTheSessionAttribute(t *testing.T) {
	got, err := directURI("postgres://postgres:bench@10.77.0.1:5001,10.77.0.2:5002/postgres?target_session_attrs=read-write&connect_timeout=1&sslmode=disable", "10.77.0.2:5002")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "postgres://postgres:bench@10.77.0.2:5002/postgres?") || strings.Contains(got, "target_session_attrs") || !strings.Contains(got, "connect_timeout=1") {
		t.Fatalf("directURI = %q", got)
	}
}

func TestMedianAndNone(t *testing.T) {
	if m := median([]time.Duration{3, 1, 2}); m != 2 {
		t.Fatalf("median of 3, 1, 2 = %d", m)
	}
	if m := median([]time.Duration{4, 1, 2, 3}); m != 2 {
		t.Fatalf("median of 4, 1, 2, 3 = %d", m)
	}
	if !allNone([]result{{none: true}, {none: true}}) || allNone([]result{{none: true}, {}}) {
		t.Fatal("allNone")
	}
	if got := joinNotes([]string{"", "a", "", "b"}); got != "a; b" {
		t.Fatalf("joinNotes = %q", got)
	}
}

func TestRecoveryIsTheFirstAckAfterTheLastFailure(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int, ok bool) attempt {
		return attempt{sent: t0.Add(time.Duration(ms) * time.Millisecond), took: 5 * time.Millisecond, ok: ok}
	}
	fault := t0.Add(100 * time.Millisecond)
	// In flight at the fault, a dying backend's ack just after, failures,
	// then writes again from 2 s.
	as := []attempt{at(90, true), at(110, true), at(120, false), at(1000, false), at(2000, true), at(2500, true), at(3100, true)}
	d, ok := recovery(as, fault, time.Second)
	if !ok || d != 1905*time.Millisecond {
		t.Fatalf("recovery = %s, %v; want 1.905s, true", d, ok)
	}
	if _, ok := recovery(as[:6], fault, time.Second); ok {
		t.Fatal("recovery with only 0.5 s of acknowledged writes since: want not yet")
	}
	if _, ok := recovery(as[:4], fault, 0); ok {
		t.Fatal("recovery with no ack after the last failure: want not yet")
	}
	if d, ok := recovery([]attempt{at(150, true)}, fault, 0); !ok || d != 55*time.Millisecond {
		t.Fatalf("no failure at all: recovery = %s, %v; want 55ms, true", d, ok)
	}
}
