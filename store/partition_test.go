package store

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Partitions inside one process: etcd's raft transport can drop all
// messages between two members (EtcdServer.CutPeer, both ways), which is a
// pairwise partition of the members. Client traffic is not cut, so the
// controllers' handles, on their own member's in-process client, see
// exactly what their member sees. Real partitions (every port, with
// nftables in network namespaces) are the lab's.

func memberID(from *Member, region string) types.ID {
	for _, m := range from.e.Server.Cluster().Members() {
		if m.Name == region {
			return m.ID
		}
	}
	panic("no member " + region)
}

// cut drops raft traffic between a and b, both ways; mend restores it.
func cut(a, b *Member) {
	a.e.Server.CutPeer(memberID(a, b.region))
	b.e.Server.CutPeer(memberID(b, a.region))
}

func mend(a, b *Member) {
	a.e.Server.MendPeer(memberID(a, b.region))
	b.e.Server.MendPeer(memberID(b, a.region))
}

// raftLeader is the region whose member leads etcd's raft, as m sees it.
func raftLeader(m *Member) string {
	id := m.e.Server.Leader()
	for _, mm := range m.e.Server.Cluster().Members() {
		if mm.ID == id {
			return mm.Name
		}
	}
	return ""
}

// A member cut off from etcd's raft leader alone (the witness still sees
// both) has no leader: pre-vote and check-quorum keep it from disrupting
// the others, so it never gets one until the link is mended. Its
// controller must not lose its lease for that: it renews through the
// members it can still reach.
func TestPartitionFromTheRaftLeaderOnly(t *testing.T) {
	dir := t.TempDir()
	members := loopbackMembers(t, clusterRegions...)
	ms := startMembers(t, dir, members, clusterRegions...)
	const ttl = 4 * time.Second
	qs := quorums(t, ms, ttl)
	ctx := context.Background()
	var leader string
	eventually(t, "etcd has a raft leader", func() bool { leader = raftLeader(ms["central"]); return leader != "" })
	var cutoff string
	for _, r := range clusterRegions {
		if r != leader {
			cutoff = r
			break
		}
	}
	if err := qs[cutoff].Publish(ctx, "probe", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	cut(ms[cutoff], ms[leader])
	defer mend(ms[cutoff], ms[leader])
	eventually(t, cutoff+"'s member loses the raft leader", func() bool { return raftLeader(ms[cutoff]) == "" })
	since := time.Now()
	renewed := qs[cutoff].LastRenewed()
	eventually(t, "two TTLs pass", func() bool {
		if !qs[cutoff].Alive(time.Now()) {
			t.Fatalf("%s, cut from the raft leader %s only, stopped being alive (last renewed %s ago)", cutoff, leader, time.Since(qs[cutoff].LastRenewed()))
		}
		return time.Since(since) > 2*ttl
	})
	if !qs[cutoff].LastRenewed().After(renewed) {
		t.Fatal("no renewal while cut from the leader")
	}
	views, err := qs[leader].Views(ctx)
	if err != nil || string(views[cutoff]["probe"]) != "ok" {
		t.Fatalf("%s's views seen by %s: %q, %v", cutoff, leader, views, err)
	}
	if err := qs[cutoff].Publish(ctx, "probe", []byte("still")); err != nil {
		t.Fatalf("publish while cut from the leader only: %v", err)
	}
}

// A member cut off from both others, with a handle that can only reach
// its own member (as in a real partition, where the others' client ports
// are cut too): the controller stops being alive before its keys vanish on
// the majority side, the majority elects a leader once the lease lapsed,
// and after the partition heals the controller gets a new lease.
func TestPartitionIsolatedMember(t *testing.T) {
	dir := t.TempDir()
	members := loopbackMembers(t, clusterRegions...)
	ms := startMembers(t, dir, members, clusterRegions...)
	const ttl = 4 * time.Second
	ctx := context.Background()
	west, err := newQuorum(ctx, []*clientv3.Client{ms["west"].store.cli}, nil, "shop", "west", ttl, "west's member only")
	if err != nil {
		t.Fatal(err)
	}
	defer west.Close()
	east, err := ms["east"].Quorum(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := west.Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := west.HoldActive(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	won := make(chan error, 1)
	go func() {
		// As a controller does: stand again after an error (a request may
		// time out while etcd elects a new raft leader).
		for {
			err := east.Campaign(cctx)
			if err == nil || cctx.Err() != nil {
				won <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	cut(ms["west"], ms["east"])
	cut(ms["west"], ms["central"])
	start := time.Now()
	eventually(t, "west stops being alive", func() bool { return !west.Alive(time.Now()) })
	if west.IsLeader() {
		t.Fatal("west still believes it leads without being alive")
	}
	if held, err := east.ActiveHeld(ctx, "west"); err != nil || !held {
		t.Fatalf("west's active key vanished before west knew it was cut off: held %v, %v", held, err)
	}
	notAlive := time.Since(start)
	if err := <-won; err != nil {
		t.Fatal(err)
	}
	t.Logf("west isolated (lease %s): not alive after %s, east leads after %s", ttl, notAlive.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if held, err := east.ActiveHeld(ctx, "west"); err != nil || held {
		t.Fatalf("west's active key when east took over: held %v, %v", held, err)
	}

	mend(ms["west"], ms["east"])
	mend(ms["west"], ms["central"])
	old := west.Lease()
	eventually(t, "west gets a new lease after the partition heals", func() bool { return west.Lease() != old && west.Alive(time.Now()) })
	if west.IsLeader() || !east.IsLeader() {
		t.Fatalf("after healing: west leads %v, east leads %v", west.IsLeader(), east.IsLeader())
	}
}
