package postgres_test

import (
	"strconv"
	"strings"
	"testing"
)

// The readiness check's view of replication: a standby streams from its
// primary, names it, stops streaming when the primary goes away and
// streams again when it comes back.
func TestStreamState(t *testing.T) {
	ctx := timeout(t)
	p := newPair(t, nil)
	addr := "127.0.0.1:" + strconv.Itoa(p.west.Port)

	eventually(t, ctx, "east streams", func() (bool, error) {
		st, _, err := p.d.StreamState(ctx, target(east, 0))
		return st == "streaming", err
	})
	st, up, err := p.d.StreamState(ctx, target(east, 0))
	must(t, err)
	if st != "streaming" || up != west+" ("+addr+")" {
		t.Errorf("east: %q from %q, want streaming from %q", st, up, west+" ("+addr+")")
	}
	st, up, err = p.d.StreamState(ctx, target(west, 0))
	must(t, err)
	if st == "streaming" || !strings.Contains(st, "not a replica") || up != "" {
		t.Errorf("west (the primary): %q from %q, want not a replica and no upstream", st, up)
	}

	// The primary stops: the standby is still a replica, but no longer
	// streams (its WAL receiver restarts and waits for the primary).
	p.west.Stop(t)
	var last string
	eventually(t, ctx, "east stops streaming", func() (bool, error) {
		st, _, err := p.d.StreamState(ctx, target(east, 0))
		last = st
		return st != "" && st != "streaming", err
	})
	t.Logf("east with its primary stopped: %q", last)

	p.west.Start(t)
	eventually(t, ctx, "east streams again", func() (bool, error) {
		st, _, err := p.d.StreamState(ctx, target(east, 0))
		return st == "streaming", err
	})
}
