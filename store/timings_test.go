package store

import (
	"context"
	"sync"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

func TestRaftTimings(t *testing.T) {
	for _, c := range []struct {
		lease, heartbeat, election time.Duration
	}{
		{time.Second, 10 * time.Millisecond, 100 * time.Millisecond},
		{2 * time.Second, 20 * time.Millisecond, 200 * time.Millisecond},
		{5 * time.Second, 50 * time.Millisecond, 500 * time.Millisecond},
		{0, 50 * time.Millisecond, 500 * time.Millisecond}, // the spec's default lease
		{10 * time.Second, 100 * time.Millisecond, time.Second},
		{time.Minute, 100 * time.Millisecond, time.Second}, // etcd's defaults at most
		{1500 * time.Millisecond, 15 * time.Millisecond, 150 * time.Millisecond},
	} {
		hb, el := RaftTimings(c.lease)
		if hb != c.heartbeat || el != c.election {
			t.Errorf("lease %s: heartbeat %s, election %s; want %s, %s", c.lease, hb, el, c.heartbeat, c.election)
		}
	}
	// What the derivation promises, for every lease a spec may give.
	for lease := time.Second; lease <= 2*time.Minute; lease += 250 * time.Millisecond {
		hb, el := RaftTimings(lease)
		if el < 5*hb || hb < time.Millisecond {
			t.Errorf("lease %s: heartbeat %s, election %s: etcd refuses an election under 5 heartbeats", lease, hb, el)
		}
		if floor := minLeaseTTL(hb, el); floor > lease {
			t.Errorf("lease %s: etcd would grant %s with election %s", lease, floor, el)
		}
		// A raft leader lost: at most two election timeouts without
		// renewals, after a renewal up to lease/6 old, must stay under
		// lease/2, when the active controller fences itself.
		if 2*el+lease/6 >= lease/2 {
			t.Errorf("lease %s: election %s: a raft election (up to %s) would cost the active region its quorum", lease, el, 2*el)
		}
	}
}

func TestMinLeaseTTL(t *testing.T) {
	for _, c := range []struct{ heartbeat, election, want time.Duration }{
		{100 * time.Millisecond, time.Second, 2 * time.Second}, // etcd's defaults: a 1 s lease becomes 2 s
		{50 * time.Millisecond, 500 * time.Millisecond, time.Second},
		{10 * time.Millisecond, 100 * time.Millisecond, time.Second},
		{100 * time.Millisecond, 2 * time.Second, 3 * time.Second},
	} {
		if got := minLeaseTTL(c.heartbeat, c.election); got != c.want {
			t.Errorf("heartbeat %s, election %s: min lease %s, want %s", c.heartbeat, c.election, got, c.want)
		}
	}
}

func TestMemberOptionsTimings(t *testing.T) {
	members := map[string]lifeboat.StoreMember{"west": {Peer: "127.0.0.1:2380", Client: "127.0.0.1:2379"}}
	o := memberOpts("d", "west", members)
	o.Lease = time.Second
	if hb, el := o.raftTimings(); hb != 10*time.Millisecond || el != 100*time.Millisecond {
		t.Errorf("lease 1s: heartbeat %s, election %s; want 10ms, 100ms", hb, el)
	}
	o.Election = 300 * time.Millisecond // an override wins over the derivation
	if hb, el := o.raftTimings(); hb != 10*time.Millisecond || el != 300*time.Millisecond {
		t.Errorf("lease 1s, election 300ms: heartbeat %s, election %s", hb, el)
	}
	for name, bad := range map[string]func(*MemberOptions){
		"negative lease":             func(o *MemberOptions) { o.Lease = -time.Second },
		"negative heartbeat":         func(o *MemberOptions) { o.Heartbeat = -time.Millisecond },
		"election under 5 heartbeat": func(o *MemberOptions) { o.Heartbeat, o.Election = 100*time.Millisecond, 400*time.Millisecond },
		"sub-millisecond heartbeat":  func(o *MemberOptions) { o.Heartbeat = time.Microsecond },
	} {
		o := memberOpts("d", "west", members)
		bad(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// startMembersWith is startMembers with the options edit changes.
func startMembersWith(t *testing.T, dir string, members map[string]lifeboat.StoreMember, edit func(*MemberOptions)) map[string]*Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var mu sync.Mutex
	out := map[string]*Member{}
	var errs []error
	var wg sync.WaitGroup
	for _, r := range clusterRegions {
		wg.Go(func() {
			o := memberOpts(dir, r, members)
			edit(&o)
			m, err := OpenMember(ctx, o)
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
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, m := range out {
			wg.Go(func() { _ = m.Close() })
		}
		wg.Wait()
	})
	if len(errs) > 0 {
		t.Fatalf("starting the members: %v", errs)
	}
	return out
}

// Members opened with a 1 s lease run raft timings etcd grants a 1 s lease
// with; etcd's default timings would silently make it 2 s, which a member
// refuses to hand out as if it were 1 s.
func TestOneSecondLease(t *testing.T) {
	ctx := context.Background()
	members := loopbackMembers(t, clusterRegions...)
	ms := startMembersWith(t, t.TempDir(), members, func(o *MemberOptions) { o.Lease = time.Second })
	for _, r := range clusterRegions {
		if hb, el := ms[r].RaftTimings(); hb != 10*time.Millisecond || el != 100*time.Millisecond {
			t.Errorf("%s runs heartbeat %s, election %s; want 10ms, 100ms", r, hb, el)
		}
	}
	var q *Quorum
	eventually(t, "west opens a quorum handle", func() bool {
		var err error
		q, err = ms["west"].Quorum(ctx, time.Second)
		if err != nil && !lifeboat.IsRetryable(err) {
			t.Fatalf("a 1 s lease refused: %v", err)
		}
		return err == nil
	})
	defer q.Close()
	if q.TTL() != time.Second {
		t.Errorf("etcd granted %s for a 1 s lease", q.TTL())
	}

	slow := loopbackMembers(t, clusterRegions...)
	ms = startMembersWith(t, t.TempDir(), slow, func(o *MemberOptions) {
		o.Heartbeat, o.Election = 100*time.Millisecond, time.Second
	})
	q, err := ms["west"].Quorum(ctx, time.Second)
	if err == nil {
		q.Close()
		t.Fatal("a 1 s lease on members with a 1 s election timeout: accepted (etcd grants 2 s)")
	}
	if lifeboat.IsRetryable(err) {
		t.Errorf("want a permanent error (only the options or the spec fix it), got %v", err)
	}
	t.Logf("refused: %v", err)
}

// ActiveGone closes once the active region's key goes with its lease, and
// at once for a region that holds none.
func TestActiveGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	members := loopbackMembers(t, clusterRegions...)
	ms := startMembers(t, t.TempDir(), members, clusterRegions...)
	qs := quorums(t, ms, 2*time.Second)
	if err := qs["west"].HoldActive(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-qs["east"].ActiveGone(ctx, "east"):
	case <-ctx.Done():
		t.Fatal("east holds no active key, but ActiveGone never closed")
	}
	gone := qs["east"].ActiveGone(ctx, "west")
	if held, err := qs["east"].ActiveHeld(ctx, "west"); err != nil || !held {
		t.Fatalf("west's key: held %v, %v", held, err)
	}
	select {
	case <-gone:
		t.Fatal("closed while west still holds its key")
	default:
	}
	if err := qs["west"].Close(); err != nil { // revokes the lease
		t.Fatal(err)
	}
	select {
	case <-gone:
	case <-ctx.Done():
		t.Fatal("west's lease was revoked, but ActiveGone never closed")
	}
	for _, r := range []string{"east", "central"} {
		_ = qs[r].Close()
	}
}
