package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Regions of the test cluster, as in the lab.
var clusterRegions = []string{"west", "east", "central"}

// waitLimit bounds every wait for a condition: generous, it only decides
// how long a broken test hangs before failing.
const waitLimit = 60 * time.Second

// loopbackMembers picks free loopback ports for every region's peer and
// client address. All listeners are held open until every port is chosen,
// so no two addresses collide.
func loopbackMembers(t *testing.T, regions ...string) map[string]lifeboat.StoreMember {
	t.Helper()
	var ls []net.Listener
	next := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		return l.Addr().String()
	}
	out := map[string]lifeboat.StoreMember{}
	for _, r := range regions {
		out[r] = lifeboat.StoreMember{Peer: next(), Client: next()}
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func memberOpts(dir, region string, members map[string]lifeboat.StoreMember) MemberOptions {
	return MemberOptions{Dir: dir, Service: "shop", Region: region, Members: members}
}

// startMembers opens the given regions' members at the same time (each
// waits for a majority) and closes them at the end of the test.
func startMembers(t *testing.T, dir string, members map[string]lifeboat.StoreMember, regions ...string) map[string]*Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var mu sync.Mutex
	out := map[string]*Member{}
	var errs []error
	var wg sync.WaitGroup
	for _, r := range regions {
		wg.Go(func() {
			m, err := OpenMember(ctx, memberOpts(dir, r, members))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out[r] = m
		})
	}
	wg.Wait()
	// Closed together: one at a time, the last ones would wait for a
	// quorum that is gone.
	// Quorum handles first, while there is a quorum to revoke their leases.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, m := range out {
			m.mu.Lock()
			for q := range m.quorums {
				wg.Go(func() { q.Close() })
			}
			m.mu.Unlock()
		}
		wg.Wait()
		for _, m := range out {
			wg.Go(func() { m.Close() })
		}
		wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

// crash stops a member the way a dead process or a cut link would: its
// quorum handles stop renewing and nothing is revoked.
func crash(m *Member) {
	m.mu.Lock()
	var qs []*Quorum
	for q := range m.quorums {
		qs = append(qs, q)
	}
	m.mu.Unlock()
	for _, q := range qs {
		q.stopRenewing()
	}
	m.stopEtcd()
}

// eventually polls cond until it holds, failing the test after waitLimit.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not true after %s: %s", waitLimit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMemberOptionsValidate(t *testing.T) {
	members := map[string]lifeboat.StoreMember{
		"west": {Peer: "127.0.0.1:2380", Client: "127.0.0.1:2379"},
		"east": {Peer: "10.0.2.1:2380", Client: "10.0.2.1:2379"},
	}
	ok := memberOpts("d", "west", members)
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid options rejected: %v", err)
	}
	for name, o := range map[string]MemberOptions{
		"unknown region": memberOpts("d", "south", members),
		"no members":     memberOpts("d", "west", nil),
		"no dir":         memberOpts("", "west", members),
		"port zero": memberOpts("d", "west", map[string]lifeboat.StoreMember{
			"west": {Peer: "127.0.0.1:0", Client: "127.0.0.1:2379"}}),
		"no port": memberOpts("d", "west", map[string]lifeboat.StoreMember{
			"west": {Peer: "127.0.0.1", Client: "127.0.0.1:2379"}}),
		"shared address": memberOpts("d", "west", map[string]lifeboat.StoreMember{
			"west": {Peer: "127.0.0.1:2380", Client: "127.0.0.1:2379"},
			"east": {Peer: "127.0.0.1:2380", Client: "127.0.0.1:2381"}}),
		"bad region name": memberOpts("d", "we st", map[string]lifeboat.StoreMember{
			"we st": {Peer: "127.0.0.1:2380", Client: "127.0.0.1:2379"}}),
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (Options{Service: "shop", Members: members, Endpoints: []string{"http://127.0.0.1:2379"}}).Validate(); err == nil {
		t.Error("members and endpoints together: accepted")
	}
	if err := (Options{Service: "shop", Members: members}).Validate(); err != nil {
		t.Errorf("members without dir rejected: %v", err)
	}
}

// A member alone cannot serve: it waits for a majority until its ctx ends,
// and the error says which members to start.
func TestMemberAloneWaitsForMajority(t *testing.T) {
	dir := t.TempDir()
	members := loopbackMembers(t, clusterRegions...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := OpenMember(ctx, memberOpts(dir, "west", members))
	if err == nil {
		m.Close()
		t.Fatal("a lone member of three became ready")
	}
	if !lifeboat.IsRetryable(err) {
		t.Errorf("want a retryable error, got %v", err)
	}
	t.Logf("alone: %v", err)
	// Started again with a second member, the first attempt's data does
	// not stand in the way.
	startMembers(t, dir, members, "west", "east")
}

// Three members form one cluster; a client reads and writes through any
// majority; a stopped member rejoins with its data.
func TestClusterOfMembers(t *testing.T) {
	dir := t.TempDir()
	members := loopbackMembers(t, clusterRegions...)
	start := time.Now()
	ms := startMembers(t, dir, members, clusterRegions...)
	t.Logf("3 members formed a cluster in %s", time.Since(start).Round(time.Millisecond))

	ctx := context.Background()
	cli, err := Open(ctx, Options{Service: "shop", Members: members})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Init(ctx, testState(1)); err != nil {
		t.Fatal(err)
	}
	if err := cli.Begin(ctx, testRun("r1", t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Append(ctx, lifeboat.Record{Run: "r1", Step: "s1", Kind: lifeboat.RecDone, At: t0}, nil); err != nil {
		t.Fatal(err)
	}
	// What the client wrote, every member's own store reads.
	for r, m := range ms {
		st, err := m.Store().State(ctx)
		if err != nil || st.Run != "r1" {
			t.Fatalf("%s's store: state %+v, %v", r, st, err)
		}
	}

	// east goes away: west and central are still a majority.
	if err := ms["east"].Close(); err != nil {
		t.Fatal(err)
	}
	st := testState(2)
	st.Run = "r1"
	if _, err := cli.Append(ctx, lifeboat.Record{Run: "r1", Step: "s2", Kind: lifeboat.RecDone, At: t0}, st); err != nil {
		t.Fatalf("append with one member of three down: %v", err)
	}
	if got, err := cli.State(ctx); err != nil || got.Epoch != 2 {
		t.Fatalf("state with one member down: %+v, %v", got, err)
	}
	// A new client opens while a majority is up.
	late, err := Open(ctx, Options{Service: "shop", Members: members})
	if err != nil {
		t.Fatalf("open with one member of three down: %v", err)
	}
	if got, err := late.State(ctx); err != nil || got.Epoch != 2 {
		t.Fatalf("state through a client opened with one member down: %+v, %v", got, err)
	}
	late.Close()

	// east comes back with its data and catches up on what it missed.
	start = time.Now()
	rctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	east, err := OpenMember(rctx, memberOpts(dir, "east", members))
	if err != nil {
		t.Fatal(err)
	}
	defer east.Close()
	t.Logf("east rejoined in %s", time.Since(start).Round(time.Millisecond))
	got, err := east.Store().State(ctx)
	if err != nil || got.Epoch != 2 {
		t.Fatalf("east after rejoining: state %+v, %v", got, err)
	}
	recs, err := east.Store().Journal(ctx, "r1")
	if err != nil || len(recs) != 2 {
		t.Fatalf("east after rejoining: journal %+v, %v", recs, err)
	}

	// Two members down: no majority, the client's calls fail (retryable).
	ms["west"].Close()
	east.Close()
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	defer ccancel()
	if _, err := cli.State(cctx); err == nil || !lifeboat.IsRetryable(err) {
		t.Fatalf("read without a majority: want a retryable error, got %v", err)
	}
}

// quorums opens one quorum handle per member, with lease ttl.
func quorums(t *testing.T, ms map[string]*Member, ttl time.Duration) map[string]*Quorum {
	t.Helper()
	out := map[string]*Quorum{}
	for r, m := range ms {
		q, err := m.Quorum(context.Background(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		out[r] = q
	}
	return out
}

// leaders lists the handles that believe they lead.
func leaders(qs map[string]*Quorum) []string {
	var out []string
	for _, r := range clusterRegions {
		if q := qs[r]; q != nil && q.IsLeader() {
			out = append(out, r)
		}
	}
	return out
}

func TestElection(t *testing.T) {
	dir := t.TempDir()
	members := loopbackMembers(t, clusterRegions...)
	ms := startMembers(t, dir, members, clusterRegions...)
	const ttl = 2 * time.Second
	qs := quorums(t, ms, ttl)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// Campaign as a controller does: stand again after a failed campaign
	// (a lease replaced under load ends one), until elected or done.
	for _, q := range qs {
		wg.Go(func() {
			for ctx.Err() == nil {
				if q.Campaign(ctx) == nil {
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
	var first string
	eventually(t, "one region leads", func() bool {
		l := leaders(qs)
		if len(l) > 1 {
			t.Fatalf("two leaders at once: %v", l)
		}
		if len(l) == 1 {
			first = l[0]
		}
		return first != ""
	})
	// Everyone agrees on who leads.
	for r, q := range qs {
		if got, err := q.Leader(ctx); err != nil || got != first {
			t.Fatalf("%s sees leader %q (%v), want %s", r, got, err, first)
		}
	}

	// A clean hand-over: the leader closes its handle (revoking its lease).
	start := time.Now()
	if err := qs[first].Close(); err != nil {
		t.Fatal(err)
	}
	delete(qs, first)
	var second string
	eventually(t, "another region leads after a clean close", func() bool {
		l := leaders(qs)
		if len(l) > 1 {
			t.Fatalf("two leaders at once: %v", l)
		}
		if len(l) == 1 {
			second = l[0]
		}
		return second != ""
	})
	t.Logf("hand-over after a clean close of %s's handle: %s to %s", first, time.Since(start).Round(time.Millisecond), second)

	// The new leader's member dies: nothing is revoked, so the last region
	// leads only once the dead one's lease has lapsed.
	if err := qs[second].HoldActive(ctx); err != nil {
		t.Fatal(err)
	}
	var third string
	for r := range qs {
		if r != second {
			third = r
		}
	}
	dead := qs[second]
	start = time.Now()
	crash(ms[second])
	delete(qs, second)
	eventually(t, third+" leads after "+second+"'s member died", func() bool { return qs[third].IsLeader() })
	t.Logf("hand-over after %s's member died (lease %s): %s", second, dead.TTL(), time.Since(start).Round(time.Millisecond))
	if dead.IsLeader() {
		t.Error("the dead member's handle still believes it leads")
	}
	if held, err := qs[third].ActiveHeld(ctx, second); err != nil || held {
		t.Errorf("%s's active key after its lease lapsed: held %v, %v", second, held, err)
	}
	// The survivors see the new leader.
	if got, err := qs[third].Leader(ctx); err != nil || got != third {
		t.Errorf("leader after the crash: %q, %v", got, err)
	}
}

// A campaign that waits through another region's member goes on when that
// member dies, and wins when its turn comes; one cancelled while its path
// is dead returns. With concurrency.Election.Campaign the first waited on
// the dead member's watch for ever, and the second hung resigning (CI's
// 15-minute TestElection).
func TestCampaignOutlivesItsPath(t *testing.T) {
	dir := t.TempDir()
	members := loopbackMembers(t, clusterRegions...)
	ms := startMembers(t, dir, members, clusterRegions...)
	qs := quorums(t, ms, 2*time.Second)
	ctx := context.Background()
	if err := qs["west"].Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	central := qs["central"]
	// Central's paths: its own member, then east's, then west's.
	if central.paths[1] == central.paths[0] || len(central.paths) != 3 {
		t.Fatalf("central's paths: %d", len(central.paths))
	}
	central.path.Store(1)
	won := make(chan error, 1)
	go func() { won <- central.Campaign(ctx) }()
	eventually(t, "central's candidate key is in the queue", func() bool {
		resp, err := central.paths[0].Get(ctx, central.k.candidate(central.current().id))
		return err == nil && len(resp.Kvs) == 1
	})
	crash(ms["east"])
	if err := qs["west"].Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-won:
		if err != nil {
			t.Fatalf("central's campaign after east's member died: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("central's campaign through east's dead member never won (%s after west resigned)", waitLimit)
	}
	if !central.IsLeader() {
		t.Fatal("central won but does not lead")
	}
	if got, err := central.Leader(ctx); err != nil || got != "central" {
		t.Fatalf("leader: %q, %v", got, err)
	}

	// A cancelled campaign through the dead member returns, and leaves no
	// key behind that would lead for it.
	if err := central.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := central.Campaign(ctx); err != nil { // leads again, alone
		t.Fatal(err)
	}
	late, err := ms["west"].Quorum(ctx, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	late.path.Store(2) // west's paths: west, central, east: point it at east
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- late.Campaign(cctx) }()
	eventually(t, "west's second campaign is in the queue", func() bool {
		resp, err := central.paths[0].Get(ctx, late.k.candidate(late.current().id))
		return err == nil && len(resp.Kvs) == 1
	})
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled campaign reports that it won")
		}
	case <-time.After(waitLimit):
		t.Fatalf("a cancelled campaign did not return within %s", waitLimit)
	}
	resp, err := central.paths[0].Get(ctx, late.k.candidate(late.current().id))
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("the cancelled campaign's key: %v %v; want it withdrawn", resp, err)
	}
}

// A clean Resign moves leadership at once and keeps the lease.
func TestResign(t *testing.T) {
	dir := t.TempDir()
	members := loopbackMembers(t, clusterRegions...)
	ms := startMembers(t, dir, members, clusterRegions...)
	qs := quorums(t, ms, 2*time.Second)
	ctx := context.Background()
	if err := qs["west"].Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	if !qs["west"].IsLeader() {
		t.Fatal("west won the campaign but does not lead")
	}
	won := make(chan error, 1)
	go func() { won <- qs["east"].Campaign(ctx) }()
	watch, stop := context.WithCancel(ctx)
	defer stop()
	seen := qs["central"].WatchLeader(watch)
	if got := <-seen; got != "west" {
		t.Fatalf("watch: first leader %q, want west", got)
	}
	start := time.Now()
	if err := qs["west"].Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-won; err != nil {
		t.Fatal(err)
	}
	t.Logf("hand-over after a resign: %s", time.Since(start).Round(time.Millisecond))
	if got := <-seen; got != "east" {
		t.Fatalf("watch: next leader %q, want east", got)
	}
	if qs["west"].IsLeader() || !qs["east"].IsLeader() {
		t.Fatalf("after the resign: west leads %v, east leads %v", qs["west"].IsLeader(), qs["east"].IsLeader())
	}
	// West's lease lives on: its views still publish.
	if err := qs["west"].Publish(ctx, "probe", []byte("ok")); err != nil {
		t.Fatalf("publish after resigning: %v", err)
	}
}

// Views and the active key live while their controller renews its lease,
// and vanish once it stops; the controller knows it is no longer alive
// before they vanish on the other side.
func TestViewsLapseWithTheLease(t *testing.T) {
	dir := t.TempDir()
	members := loopbackMembers(t, clusterRegions...)
	ms := startMembers(t, dir, members, clusterRegions...)
	// A longer lease than the other tests: the check that the key is still
	// there when west stops being alive then has a margin of seconds.
	const ttl = 4 * time.Second
	qs := quorums(t, ms, ttl)
	ctx := context.Background()
	west, east := qs["west"], qs["east"]
	for r, q := range qs {
		if err := q.Publish(ctx, "sees/west", []byte(fmt.Sprintf(`{"by":%q,"ok":true}`, r))); err != nil {
			t.Fatal(err)
		}
	}
	if err := west.HoldActive(ctx); err != nil {
		t.Fatal(err)
	}
	views, err := east.Views(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != 3 || string(views["west"]["sees/west"]) != `{"by":"west","ok":true}` {
		t.Fatalf("views: %q", views)
	}

	// Renewals keep everything past the TTL.
	granted := west.LastRenewed()
	eventually(t, "west renews its lease", func() bool { return west.LastRenewed().After(granted) })
	eventually(t, "two TTLs pass", func() bool { return time.Since(granted) > 2*ttl })
	if !west.Alive(time.Now()) {
		t.Fatal("west is not alive while it renews")
	}
	if held, err := east.ActiveHeld(ctx, "west"); err != nil || !held {
		t.Fatalf("west's active key after 2 TTLs of renewals: held %v, %v", held, err)
	}

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	snap, changes, err := qs["central"].WatchViews(wctx)
	if err != nil || len(snap) != 3 {
		t.Fatalf("watch views: snapshot %q, %v", snap, err)
	}

	// West stops renewing (its keep-alive cancelled, nothing revoked).
	west.stopRenewing()
	last := west.LastRenewed()
	eventually(t, "west stops being alive", func() bool { return !west.Alive(time.Now()) })
	if held, err := east.ActiveHeld(ctx, "west"); err != nil || !held {
		t.Fatalf("west's active key vanished before west knew it was not alive: held %v, %v", held, err)
	}
	if views, err := east.Views(ctx); err != nil || views["west"] == nil {
		t.Fatalf("west's views vanished before west knew it was not alive: %q, %v", views, err)
	}
	if !west.LastRenewed().Equal(last) {
		t.Fatal("LastRenewed advanced after renewals stopped")
	}
	eventually(t, "west's active key lapses", func() bool {
		held, err := east.ActiveHeld(ctx, "west")
		return err == nil && !held
	})
	lapsed := time.Since(last)
	views, err = east.Views(ctx)
	if err != nil || views["west"] != nil || len(views) != 2 {
		t.Fatalf("after west's lease lapsed: views %q, %v", views, err)
	}
	t.Logf("lease %s: west not alive after %s, its keys gone after %s", ttl, ttl/2, lapsed.Round(time.Millisecond))
	// A watcher saw west's view go.
	gone := false
	for ev := range changes {
		if ev.Region == "west" && ev.Key == "sees/west" {
			if ev.Value != nil {
				t.Fatalf("watch: west's view changed to %q instead of vanishing", ev.Value)
			}
			gone = true
			break
		}
	}
	if !gone {
		t.Fatal("watch: ended without west's view vanishing")
	}
	// Writing under the lapsed lease says so.
	if err := west.Publish(ctx, "sees/east", []byte("x")); err == nil || !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("publish under a lapsed lease: want an error that says so, got %v", err)
	}
}

// A lease that etcd no longer knows (lapsed in a partition that has healed,
// or revoked) is replaced: the region is alive again, but it lost its
// leadership and views, and must campaign and publish again.
func TestQuorumReplacesALostLease(t *testing.T) {
	dir := t.TempDir()
	members := loopbackMembers(t, clusterRegions...)
	ms := startMembers(t, dir, members, clusterRegions...)
	qs := quorums(t, ms, 2*time.Second)
	ctx := context.Background()
	west := qs["west"]
	if err := west.Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := west.Publish(ctx, "probe", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	old := west.Lease()
	// The majority side drops west's lease, as its expiry would.
	if _, err := ms["east"].store.cli.Revoke(ctx, clientv3.LeaseID(old)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "west gets a new lease", func() bool { return west.Lease() != old })
	if west.IsLeader() {
		t.Fatal("west still leads after its lease was revoked")
	}
	eventually(t, "west is alive on its new lease", func() bool { return west.Alive(time.Now()) })
	views, err := qs["east"].Views(ctx)
	if err != nil || views["west"] != nil {
		t.Fatalf("west's views after its lease went: %q, %v", views, err)
	}
	if err := west.Publish(ctx, "probe", []byte("again")); err != nil {
		t.Fatalf("publish on the new lease: %v", err)
	}
	if err := west.Campaign(ctx); err != nil {
		t.Fatalf("campaign on the new lease: %v", err)
	}
	if !west.IsLeader() {
		t.Fatal("west won again but does not lead")
	}
}

// The quorum also works for a client of the members (OpenQuorum), e.g. a
// controller that uses an external cluster.
func TestOpenQuorumOnClient(t *testing.T) {
	dir := t.TempDir()
	members := loopbackMembers(t, clusterRegions...)
	startMembers(t, dir, members, clusterRegions...)
	ctx := context.Background()
	s, err := Open(ctx, Options{Service: "shop", Members: members})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q, err := OpenQuorum(ctx, s, "central", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := q.Leader(ctx); err != nil || got != "central" {
		t.Fatalf("leader %q, %v", got, err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := q.Leader(ctx); err != nil || got != "" {
		t.Fatalf("leader after close %q, %v", got, err)
	}
	if _, err := OpenQuorum(ctx, NewMemory(), "west", 2*time.Second); err == nil {
		t.Fatal("a quorum on the in-memory store")
	}
}
