package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"go.etcd.io/etcd/client/pkg/v3/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// MemberOptions say which region's member of the store's etcd cluster this
// process embeds, and who the other members are.
type MemberOptions struct {
	// Dir holds every region's member data as Dir/<region> (the CLI passes
	// store.dir, default <spec dir>/.lifeboat); this process uses Dir/<Region>.
	Dir     string
	Service string // keys live under /lifeboat/<service>/; also names the cluster
	Region  string // the region whose member this process embeds
	// Members is the whole cluster by region (spec store.members). Hosts
	// may be any address this machine has (a lab namespace's, a WAN
	// interface's), not only loopback; ports must be fixed, since every
	// member names the others in its initial cluster.
	Members map[string]lifeboat.StoreMember
	// Lease is the quorum lease the controllers will hold on this cluster
	// (spec monitor.lease). Zero means the spec's default, 5 s. The raft
	// timings are derived from it (RaftTimings) unless Heartbeat and
	// Election are set.
	Lease time.Duration
	// Heartbeat and Election are etcd's raft timings; zero means derived
	// from Lease. Set them only to override the derivation.
	Heartbeat, Election time.Duration
}

// DefaultLease is the spec's default monitor.lease, which MemberOptions
// assume when Lease is zero.
const DefaultLease = 5 * time.Second

// DefaultMemberOptions returns the options of region's member for a spec
// in the current directory; Members still has to be filled from the spec,
// and Lease from monitor.lease.
func DefaultMemberOptions(service, region string) MemberOptions {
	return MemberOptions{Dir: ".lifeboat", Service: service, Region: region}
}

// RaftTimings returns the etcd heartbeat and election timeouts that fit a
// quorum lease: election = lease/10 (100 ms to 1 s), heartbeat =
// election/10 (10 to 100 ms). Why lease/10:
//
//   - etcd grants no lease shorter than 1.5 election timeouts: with its
//     default 1 s election a 1 s lease silently becomes 2 s.
//   - When etcd's raft leader is lost, nothing renews a lease until a new
//     leader is elected, after 1 to 2 election timeouts. The active
//     controller fences its own region when its lease has gone unrenewed
//     for lease/2 (Quorum.Alive), and renewals come every lease/6: the
//     election must end within lease/2 - lease/6 = lease/3, or losing the
//     witness (which holds raft leadership) fences the healthy active
//     region. Two elections of lease/10 leave lease/7 of margin.
//   - A raft leader change extends every lease by its TTL plus an election
//     timeout: a short election keeps that delay short too.
//
// etcd's tuning guide asks for a heartbeat of about the members' round-trip
// time and an election of at least 10 round trips, so a lease L needs
// links between the members of at most L/100 round trip: 10 ms for a 1 s
// lease, 50 ms for the default 5 s. Slower links need a longer lease.
func RaftTimings(lease time.Duration) (heartbeat, election time.Duration) {
	if lease <= 0 {
		lease = DefaultLease
	}
	election = min(max(lease/10, 100*time.Millisecond), time.Second).Truncate(time.Millisecond)
	heartbeat = min(max(election/10, 10*time.Millisecond), 100*time.Millisecond).Truncate(time.Millisecond)
	return heartbeat, election
}

// raftTimings are the timings the member runs with: the options' own, or
// the ones derived from the lease.
func (o MemberOptions) raftTimings() (heartbeat, election time.Duration) {
	heartbeat, election = RaftTimings(o.Lease)
	if o.Heartbeat > 0 {
		heartbeat = o.Heartbeat
	}
	if o.Election > 0 {
		election = o.Election
	}
	return heartbeat, election
}

// minLeaseTTL is the shortest lease etcd grants with this election timeout
// (etcdserver: 1.5 elections, rounded up to whole seconds); a shorter
// request is silently raised to it.
func minLeaseTTL(heartbeat, election time.Duration) time.Duration {
	ticks := int64(election / heartbeat)
	return time.Duration(math.Ceil((time.Duration((3*ticks)/2) * heartbeat).Seconds())) * time.Second
}

// Validate reports options OpenMember cannot use.
func (o MemberOptions) Validate() error {
	if err := checkService(o.Service); err != nil {
		return err
	}
	if o.Dir == "" {
		return fmt.Errorf("no store dir: set store.dir in lifeboat.yaml (default .lifeboat)")
	}
	if len(o.Members) == 0 {
		return fmt.Errorf("store.members is empty: list one etcd member per region (peer and client host:port) in lifeboat.yaml")
	}
	if _, ok := o.Members[o.Region]; !ok {
		return fmt.Errorf("region %q has no entry in store.members (it lists %s): add its peer and client host:port, or start `lifeboat serve` with one of those regions",
			o.Region, strings.Join(lifeboat.SortedKeys(o.Members), ", "))
	}
	if err := checkMembers(o.Members); err != nil {
		return err
	}
	if o.Lease < 0 {
		return fmt.Errorf("monitor.lease is %s: it must be positive (default 5s)", o.Lease)
	}
	if o.Heartbeat < 0 || o.Election < 0 {
		return fmt.Errorf("etcd timings heartbeat %s, election %s: negative; leave them zero to derive them from monitor.lease", o.Heartbeat, o.Election)
	}
	if hb, el := o.raftTimings(); hb < time.Millisecond || el < 5*hb {
		return fmt.Errorf("etcd timings heartbeat %s, election %s: the heartbeat must be at least 1ms and the election timeout at least 5 heartbeats; leave them zero to derive them from monitor.lease", hb, el)
	}
	return nil
}

// checkMembers reports store.members entries that cannot make a cluster.
func checkMembers(members map[string]lifeboat.StoreMember) error {
	seen := map[string]string{}
	for _, region := range lifeboat.SortedKeys(members) {
		if region == "" || strings.ContainsAny(region, "/ =,\t\n") {
			return fmt.Errorf("store.members has region %q: region names are used as etcd member names and key segments, so no '/', '=', ',' or spaces", region)
		}
		m := members[region]
		for _, a := range []struct{ what, addr string }{{"peer", m.Peer}, {"client", m.Client}} {
			host, port, err := net.SplitHostPort(a.addr)
			if err != nil || host == "" {
				return fmt.Errorf("store.members.%s.%s is %q: write host:port, e.g. 10.0.1.1:2380", region, a.what, a.addr)
			}
			if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
				return fmt.Errorf("store.members.%s.%s is %q: the port must be a fixed number (1-65535); other members and the CLI dial it", region, a.what, a.addr)
			}
			if other, dup := seen[a.addr]; dup {
				return fmt.Errorf("store.members.%s.%s and %s both use %s: give every member its own peer and client address", region, a.what, other, a.addr)
			}
			seen[a.addr] = "store.members." + region + "." + a.what
		}
	}
	return nil
}

// clientURLs are the members' client URLs, in region order.
func clientURLs(members map[string]lifeboat.StoreMember) []string {
	var out []string
	for _, r := range lifeboat.SortedKeys(members) {
		out = append(out, "http://"+members[r].Client)
	}
	return out
}

// Member is one region's member of the store's etcd cluster, embedded in
// that region's controller. Store and Quorum share its in-process client,
// so what they see is what this member sees: cut off from the majority,
// their calls fail and the quorum's lease stops being renewed.
type Member struct {
	region  string
	members map[string]lifeboat.StoreMember
	dir     string // Dir/<region>
	e       *embed.Etcd
	store   *etcdStore
	// heartbeat and election are the raft timings the member runs with.
	heartbeat, election time.Duration
	// stopEtcd stops the embedded etcd once (embed.Etcd.Close is not
	// idempotent).
	stopEtcd func()

	mu       sync.Mutex
	quorums  map[*Quorum]struct{}
	closed   bool
	closeErr error
}

// Timeouts of OpenMember. The start itself is bounded by the caller's ctx
// (a member alone waits for a majority); these only bound hung starts.
var memberStartTimeout = 60 * time.Second

// OpenMember embeds o.Region's member of the cluster of o.Members, with its
// data in o.Dir/<region>, and returns it once it has joined a majority:
// a member that starts alone waits (bounded by ctx) for enough others. The
// first start bootstraps the cluster statically from o.Members; later starts
// rejoin it with their data, whatever o.Members says then.
func OpenMember(ctx context.Context, o MemberOptions) (*Member, error) {
	if err := o.Validate(); err != nil {
		return nil, lifeboat.Permanent(opOpen, o.Region, err)
	}
	base, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, lifeboat.Permanent(opOpen, o.Dir, err)
	}
	dir := filepath.Join(base, o.Region)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, lifeboat.Permanent(opOpen, dir, fmt.Errorf("create region %s's store dir: %w; check its parent's permissions or set store.dir", o.Region, err))
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, lifeboat.Permanent(opOpen, dir, fmt.Errorf("open the member's lock file: %w", err))
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		holder := "another process"
		if b, rerr := os.ReadFile(filepath.Join(dir, lockFile)); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
			holder = strings.TrimSpace(string(b))
		}
		return nil, lifeboat.Permanent(opOpen, dir, fmt.Errorf("region %s's etcd member in %s is already embedded by %s: run one `lifeboat serve --region %s` per region; stop the other by its pid if it is stale: %w",
			o.Region, dir, holder, o.Region, err))
	}
	host, _ := os.Hostname()
	_ = lock.Truncate(0)
	_, _ = lock.WriteAt([]byte("lifeboat pid "+strconv.Itoa(os.Getpid())+" on "+host+" (member "+o.Region+")\n"), 0)
	unlock := func() {
		_ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		lock.Close()
	}

	e, err := startMember(ctx, o, dir)
	if err != nil {
		unlock()
		return nil, err
	}
	m := &Member{region: o.Region, members: o.Members, dir: dir, e: e, stopEtcd: sync.OnceFunc(e.Close), quorums: map[*Quorum]struct{}{}}
	m.heartbeat, m.election = o.raftTimings()
	where := fmt.Sprintf("region %s's member (client %s) of the cluster %s", o.Region, o.Members[o.Region].Client, strings.Join(lifeboat.SortedKeys(o.Members), "+"))
	m.store = newEtcdStore(v3client.New(e.Server), o.Service, where, func() error {
		m.stopEtcd()
		unlock()
		return nil
	})
	return m, nil
}

// startMember starts the embedded etcd and waits until it serves: joined
// to a majority, its attributes published.
func startMember(ctx context.Context, o MemberOptions, dir string) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = o.Region
	cfg.Dir = filepath.Join(dir, memberDir)
	self := o.Members[o.Region]
	peer := url.URL{Scheme: "http", Host: self.Peer}
	client := url.URL{Scheme: "http", Host: self.Client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	var initial []string
	for _, r := range lifeboat.SortedKeys(o.Members) {
		initial = append(initial, r+"=http://"+o.Members[r].Peer)
	}
	cfg.InitialCluster = strings.Join(initial, ",")
	cfg.ClusterState = embed.ClusterStateFlagNew
	// Derived from the service: two services' members never merge into
	// one cluster by a mistyped address.
	cfg.InitialClusterToken = "lifeboat-" + o.Service
	cfg.ListenClientHttpUrls, cfg.ListenMetricsUrls = nil, nil
	cfg.EnableGRPCGateway = false
	// Clients ping every second to notice a member cut off by a partition
	// (its TCP connection stays up while packets are dropped); allow it.
	cfg.GRPCKeepAliveMinTime = 500 * time.Millisecond
	hb, el := o.raftTimings()
	cfg.TickMs, cfg.ElectionMs = uint(hb/time.Millisecond), uint(el/time.Millisecond)
	cfg.Logger, cfg.LogLevel = "zap", "error"
	cfg.LogOutputs = []string{filepath.Join(dir, logFile)}
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "periodic", "10m"

	where := fmt.Sprintf("region %s's etcd member in %s (peer %s, client %s)", o.Region, cfg.Dir, self.Peer, self.Client)
	fail := func(err error, hint string) (*embed.Etcd, error) {
		return nil, lifeboat.Transient(opOpen, o.Region, fmt.Errorf("start %s: %w; %s (its log: %s)", where, err, hint, filepath.Join(dir, logFile)))
	}
	type started struct {
		e   *embed.Etcd
		err error
	}
	done := make(chan started, 1)
	go func() {
		e, err := embed.StartEtcd(cfg)
		done <- started{e, err}
	}()
	timer := time.NewTimer(memberStartTimeout)
	defer timer.Stop()
	var e *embed.Etcd
	select {
	case r := <-done:
		if r.err != nil {
			return fail(r.err, "check that nothing else listens on its peer and client addresses and that this machine has those addresses")
		}
		e = r.e
	case <-timer.C:
		return fail(fmt.Errorf("not started after %s", memberStartTimeout), "is another program using this data dir?")
	case <-ctx.Done():
		// StartEtcd cannot be interrupted: close what it returns.
		go func() {
			if r := <-done; r.e != nil {
				closeUnready(r.e)
			}
		}()
		return fail(ctx.Err(), "gave up before it started")
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		closeUnready(e)
		return fail(err, "")
	case <-ctx.Done():
		closeUnready(e)
		var others []string
		for _, r := range lifeboat.SortedKeys(o.Members) {
			if r != o.Region {
				others = append(others, r+" (peer "+o.Members[r].Peer+")")
			}
		}
		return fail(ctx.Err(), fmt.Sprintf("it never joined a majority of the %d members: start the members of %s (`lifeboat serve --region R`) and check that their peer addresses are reachable from here", len(o.Members), strings.Join(others, ", ")))
	}
}

// closeUnready stops a member that may not have become ready: embed's
// Close waits for the client listeners, which only start once the member is
// ready or its server is stopping, so the server is stopped first.
func closeUnready(e *embed.Etcd) {
	e.Server.HardStop()
	e.Close()
}

// Region is the region whose member this is.
func (m *Member) Region() string { return m.region }

// RaftTimings are the heartbeat and election timeouts this member runs with.
func (m *Member) RaftTimings() (heartbeat, election time.Duration) { return m.heartbeat, m.election }

// Store is the state and journal store on this member; closing it closes
// the member.
func (m *Member) Store() lifeboat.Store { return m.store }

// Quorum opens this region's handle on the quorum: a lease of ttl (spec
// monitor.lease) kept alive through this member.
func (m *Member) Quorum(ctx context.Context, ttl time.Duration) (*Quorum, error) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return nil, lifeboat.Permanent(opQuorum, m.region, errClosed)
	}
	if floor := minLeaseTTL(m.heartbeat, m.election); ttl < floor {
		// etcd would grant floor instead: the controllers would wait for a
		// lease longer than the spec says.
		return nil, lifeboat.Permanent(opQuorum, m.region, fmt.Errorf("monitor.lease %s is shorter than the %s etcd grants with region %s's election timeout %s: open the member with MemberOptions.Lease = monitor.lease so that its raft timings fit (RaftTimings), or lengthen monitor.lease",
			ttl, floor, m.region, m.election))
	}
	// Its own member first, then every other member's client address: a
	// controller whose member lost etcd's leader (cut from it alone) still
	// renews through a member that has one.
	paths := []*clientv3.Client{m.store.cli}
	var owned []*clientv3.Client
	for _, r := range lifeboat.SortedKeys(m.members) {
		if r == m.region {
			continue
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + m.members[r].Client}, DialTimeout: ttl, Logger: zap.NewNop()})
		if err != nil {
			for _, c := range owned {
				c.Close()
			}
			return nil, lifeboat.Permanent(opQuorum, m.region, fmt.Errorf("client of region %s's member at %s: %w", r, m.members[r].Client, err))
		}
		paths, owned = append(paths, cli), append(owned, cli)
	}
	q, err := newQuorum(ctx, paths, owned, m.store.service, m.region, ttl, m.store.where)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		_ = q.Close()
		return nil, lifeboat.Permanent(opQuorum, m.region, errClosed)
	}
	m.quorums[q] = struct{}{}
	q.onClose = func() {
		m.mu.Lock()
		delete(m.quorums, q)
		m.mu.Unlock()
	}
	return q, nil
}

// Close hands over cleanly: it revokes the leases of this member's quorum
// handles (the election moves on in milliseconds), then stops the member.
func (m *Member) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return m.closeErr
	}
	m.closed = true
	qs := slices.Collect(func(yield func(*Quorum) bool) {
		for q := range m.quorums {
			if !yield(q) {
				return
			}
		}
	})
	m.mu.Unlock()
	var errs []error
	for _, q := range qs {
		if err := q.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.store.Close(); err != nil {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	m.mu.Lock()
	m.closeErr = err
	m.mu.Unlock()
	return err
}

// openMembers is Open for a cluster of embedded members: a client of all
// their client addresses, which works once a majority of them is up.
func openMembers(ctx context.Context, o Options) (lifeboat.Store, error) {
	eps := clientURLs(o.Members)
	where := "the regions' etcd members " + strings.Join(eps, ",")
	cli, err := dial(ctx, eps, 5*time.Second)
	if err != nil {
		return nil, lifeboat.Transient(opOpen, o.Service, fmt.Errorf("%s do not answer: %w; a majority of the members (`lifeboat serve --region R` in each region of store.members) must be up and reachable from here", where, err))
	}
	return newEtcdStore(cli, o.Service, where, nil), nil
}

// LeadRaft makes this member etcd's raft leader if it is not: it asks the
// current leader to hand leadership over. The witness's controller calls it
// now and then, so that losing the primary or the secondary region never
// costs a raft election: an election pauses the cluster and, when it
// elects a new leader, etcd renews every lease by its TTL, which would
// delay the failover by that much again.
func (m *Member) LeadRaft(ctx context.Context) (moved bool, err error) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return false, lifeboat.Permanent(opOpen, m.region, errClosed)
	}
	srv := m.e.Server
	me, lead := uint64(srv.MemberID()), uint64(srv.Leader())
	if lead == 0 {
		return false, lifeboat.Transient(opOpen, m.region, errors.New("no raft leader now: try again after the election"))
	}
	if lead == me {
		return false, nil
	}
	leader := srv.Cluster().Member(types.ID(lead))
	if leader == nil || len(leader.ClientURLs) == 0 {
		return false, lifeboat.Transient(opOpen, m.region, fmt.Errorf("the raft leader %x has no client URL in the membership yet", lead))
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: leader.ClientURLs, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return false, lifeboat.Transient(opOpen, m.region, err)
	}
	defer cli.Close()
	if _, err := cli.MoveLeader(ctx, me); err != nil {
		return false, lifeboat.Transient(opOpen, m.region, fmt.Errorf("asking raft leader %x to hand over to %s's member: %w", lead, m.region, err))
	}
	return true, nil
}
