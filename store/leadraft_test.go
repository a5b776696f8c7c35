package store

import (
	"context"
	"testing"
	"time"
)

// LeadRaft moves etcd's raft leadership to the member that asks, and is a
// no-op once it leads.
func TestLeadRaftMovesLeadershipToTheWitness(t *testing.T) {
	all := loopbackMembers(t, "west", "east", "central")
	members := startMembers(t, t.TempDir(), all, "west", "east", "central")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := members["central"]
	for {
		if _, err := w.LeadRaft(ctx); err == nil && uint64(w.e.Server.Leader()) == uint64(w.e.Server.MemberID()) {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("central's member never became the raft leader")
		}
		time.Sleep(50 * time.Millisecond)
	}
	moved, err := w.LeadRaft(ctx)
	if err != nil || moved {
		t.Fatalf("LeadRaft by the leader itself: moved %v, %v; want a no-op", moved, err)
	}
	for _, r := range []string{"west", "east"} {
		if got := uint64(members[r].e.Server.Leader()); got != uint64(w.e.Server.MemberID()) {
			t.Errorf("%s's member sees leader %x, want central's %x", r, got, uint64(w.e.Server.MemberID()))
		}
	}
}
