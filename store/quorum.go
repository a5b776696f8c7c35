package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

const (
	opQuorum  lifeboat.Op = "store.quorum"
	opPublish lifeboat.Op = "store.publish"
	opViews   lifeboat.Op = "store.views"
	opActive  lifeboat.Op = "store.active"
	opElect   lifeboat.Op = "store.elect"
)

// Quorum is one region controller's handle on the quorum: one etcd lease,
// renewed by this handle, under which the controller campaigns for the
// right to act, publishes what its observers see, and marks itself the
// active controller. Everything it holds vanishes when the lease does, so a
// controller cut off from the majority loses its leadership, its views and
// its active key by itself, TTL after its last renewal.
//
// A lease is not a fence: the controller must stop acting (fence its region)
// once Alive turns false, before the lease really expires on the majority
// side; and every driver action still carries the epoch.
//
// When etcd says the lease is gone (it lapsed during a partition, or was
// revoked), the handle grants itself a new one as soon as a majority
// answers: Alive turns true again, but leadership, views and the active key
// are not carried over; the controller campaigns and publishes again, as
// a returning region must.
type Quorum struct {
	// paths are clients that reach the cluster through different members:
	// the controller's own member first, then a client of each other
	// member (Member.Quorum). A member cut off from etcd's raft leader alone
	// (a partial partition) has no leader and answers nothing, although
	// the others are reachable; renewing through every path keeps such a
	// controller alive, and only one that reaches no connected member
	// loses its lease. path is the index of the path that renewed last.
	paths  []*clientv3.Client
	owned  []*clientv3.Client // paths this handle opened, closed by Close
	path   atomic.Int32
	k      keys
	region string
	where  string
	ttl    time.Duration

	mu      sync.Mutex
	cur     *leaseGen // the lease in use, and the election on it
	renewed time.Time // send time of the last renewal (or grant) etcd acknowledged
	elected *leaseGen // the lease under which this region won the election; nil if not leader
	wonKey  string    // this region's candidate key when it won (Resign deletes it)

	elMu sync.Mutex // one campaign or resignation at a time

	ctx       context.Context // lives until Close
	stop      context.CancelFunc
	renewCtx  context.Context // the renewal loop runs under it
	stopRenew context.CancelFunc
	renewing  chan struct{} // closed when the renewal loop has ended
	gone      chan struct{} // a write found the lease gone: the loop replaces it now

	closeOnce sync.Once
	closeErr  error
	onClose   func()
}

// leaseGen is one lease of a Quorum and the election session on it.
type leaseGen struct {
	id        clientv3.LeaseID
	elections []*concurrency.Election // one per path
	replaced  chan struct{}           // closed when a new lease replaces this one
}

// OpenQuorum opens region's handle on the quorum through a store returned
// by Open with Endpoints or Members (an external cluster, or a client of
// the embedded members). A controller that embeds a member uses
// Member.Quorum instead, so that its lease lives and dies with its member's
// link to the majority.
func OpenQuorum(ctx context.Context, s lifeboat.Store, region string, ttl time.Duration) (*Quorum, error) {
	es, ok := s.(*etcdStore)
	if !ok {
		return nil, lifeboat.Permanent(opQuorum, region, fmt.Errorf("the quorum needs an etcd cluster: set store.members (one embedded member per region) or store.endpoints in lifeboat.yaml; a single embedded member or the in-memory store cannot hold an election between regions"))
	}
	return newQuorum(ctx, []*clientv3.Client{es.cli}, nil, es.service, region, ttl, es.where)
}

func newQuorum(ctx context.Context, paths, owned []*clientv3.Client, service, region string, ttl time.Duration, where string) (_ *Quorum, err error) {
	defer func() {
		if err != nil {
			for _, c := range owned {
				_ = c.Close()
			}
		}
	}()
	if region == "" || strings.ContainsAny(region, "/ \t\n") {
		return nil, lifeboat.Permanent(opQuorum, region, fmt.Errorf("region %q cannot name quorum keys: use a region name from the spec (no '/' or spaces)", region))
	}
	if ttl < time.Second {
		return nil, lifeboat.Permanent(opQuorum, region, fmt.Errorf("monitor.lease is %s: etcd leases count whole seconds; use at least 1s (default 5s)", ttl))
	}
	q := &Quorum{paths: paths, owned: owned, k: newKeys(service), region: region, where: where, ttl: ttl,
		renewing: make(chan struct{}), gone: make(chan struct{}, 1)}
	gen, sent, granted, err := q.grant(ctx)
	if err != nil {
		return nil, err
	}
	// etcd may raise a short TTL to its minimum (1.5 election timeouts):
	// the margins follow the TTL it granted.
	q.ttl, q.cur, q.renewed = granted, gen, sent
	q.ctx, q.stop = context.WithCancel(context.Background())
	q.renewCtx, q.stopRenew = context.WithCancel(q.ctx)
	go q.renew()
	return q, nil
}

// grant creates a lease of q.ttl and an election session on it.
func (q *Quorum) grant(ctx context.Context) (gen *leaseGen, sent time.Time, ttl time.Duration, err error) {
	sent = time.Now()
	g, err := q.client().Grant(ctx, int64(math.Ceil(q.ttl.Seconds())))
	if err != nil {
		return nil, sent, 0, lifeboat.Transient(opQuorum, q.region, fmt.Errorf("grant region %s's lease on etcd (%s): %w; is a majority of the store's members up and reachable?", q.region, q.where, err))
	}
	gen = &leaseGen{id: g.ID, replaced: make(chan struct{})}
	for _, cli := range q.paths {
		sess, err := concurrency.NewSession(cli, concurrency.WithLease(g.ID), concurrency.WithContext(ctx))
		if err != nil {
			revokeQuietly(q.client(), g.ID)
			return nil, sent, 0, lifeboat.Transient(opQuorum, q.region, fmt.Errorf("attach region %s's lease to an election session on etcd (%s): %w", q.region, q.where, err))
		}
		// The election only needs the session's client and lease; the
		// session's own keep-alive is stopped so that this handle alone
		// renews the lease and knows when it last did.
		sess.Orphan()
		gen.elections = append(gen.elections, concurrency.NewElection(sess, q.k.leader()))
	}
	return gen, sent, time.Duration(g.TTL) * time.Second, nil
}

// client is the path in use.
func (q *Quorum) client() *clientv3.Client { return q.paths[q.path.Load()] }

// election is gen's election on the path in use.
func (q *Quorum) election(gen *leaseGen) *concurrency.Election { return gen.elections[q.path.Load()] }

func (q *Quorum) closeOwned() {
	for _, c := range q.owned {
		_ = c.Close()
	}
}

// renewOnce renews gen through every path at once: renewed as soon as one
// path gets an acknowledgement (that path becomes the one in use; the
// caller's cancel stops the others), gone if none did and one heard from
// etcd that the lease is gone.
func (q *Quorum) renewOnce(ctx context.Context, gen *leaseGen) (renewed, gone bool) {
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(q.paths))
	for i, cli := range q.paths {
		go func() {
			_, err := cli.KeepAliveOnce(ctx, gen.id)
			results <- result{i, err}
		}()
	}
	for range q.paths {
		r := <-results
		if r.err == nil {
			q.path.Store(int32(r.i))
			return true, false
		}
		if errors.Is(r.err, rpctypes.ErrLeaseNotFound) {
			gone = true
		}
	}
	return false, gone
}

func (q *Quorum) current() *leaseGen {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cur
}

// renewInterval is how often the lease is renewed: TTL/6, so that Alive
// (TTL/2) turns false only after about three renewals in a row failed, not
// because one was late.
func (q *Quorum) renewInterval() time.Duration { return q.ttl / 6 }

// renew keeps the lease alive until Close, and replaces it once etcd says
// it is gone. It renews with one request at a time instead of clientv3's
// KeepAlive stream, for two reasons: the send time of each acknowledged
// renewal is a safe lower bound of when etcd renewed the lease (the lease
// cannot expire before that time + TTL), and a stalled request is noticed at
// once.
func (q *Quorum) renew() {
	defer close(q.renewing)
	interval := q.renewInterval()
	for {
		gen := q.current()
		sent := time.Now()
		ctx, cancel := context.WithTimeout(q.renewCtx, q.ttl/3)
		ok, gone := q.renewOnce(ctx, gen)
		cancel()
		if gone {
			ctx, cancel := context.WithTimeout(q.renewCtx, q.ttl/3)
			q.replace(ctx, gen)
			cancel()
		}
		if ok {
			q.mu.Lock()
			if q.cur == gen && sent.After(q.renewed) {
				q.renewed = sent
			}
			q.mu.Unlock()
		}
		select {
		case <-q.renewCtx.Done():
			return
		case <-q.gone:
		case <-time.After(time.Until(sent.Add(interval))):
		}
	}
}

// replace swaps a lease etcd no longer knows for a new one. Until it
// succeeds, Alive stays false (nothing renews).
func (q *Quorum) replace(ctx context.Context, old *leaseGen) {
	q.mu.Lock()
	if q.elected == old {
		q.elected = nil
	}
	q.mu.Unlock()
	gen, sent, _, err := q.grant(ctx)
	if err != nil {
		return // the loop tries again at the next renewal
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cur != old || q.ctx.Err() != nil {
		revokeQuietly(q.client(), gen.id)
		return
	}
	close(old.replaced)
	q.cur, q.renewed = gen, sent
}

// leaseGone tells the renewal loop that a write found gen's lease gone.
func (q *Quorum) leaseGone(gen *leaseGen) {
	if q.current() != gen {
		return
	}
	select {
	case q.gone <- struct{}{}:
	default:
	}
}

// stopRenewing ends the renewal loop without revoking the lease, as a
// crash or a partition would: the lease then lapses TTL after the last
// renewal. Tests use it; Close revokes instead.
func (q *Quorum) stopRenewing() {
	q.stopRenew()
	<-q.renewing
}

// Region is the region this handle speaks for.
func (q *Quorum) Region() string { return q.region }

// TTL is the lease's TTL as etcd granted it (at least etcd's minimum).
func (q *Quorum) TTL() time.Duration { return q.ttl }

// Lease is the id of the etcd lease in use, for logs.
func (q *Quorum) Lease() int64 { return int64(q.current().id) }

// LastRenewed is when the last renewal that etcd acknowledged was sent
// (the grant's, at first). The lease cannot expire on the majority side
// before LastRenewed + TTL.
func (q *Quorum) LastRenewed() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.renewed
}

// Alive reports whether the lease was renewed less than TTL/2 before now.
// The controller fences its own region as soon as Alive turns false: the
// other half of the TTL is the margin in which the fence (front door stops
// routing, database read-only) must complete before the lease expires on
// the majority side and another region may promote. It also absorbs a
// late renewal's latency and clock rate differences.
func (q *Quorum) Alive(now time.Time) bool {
	return now.Sub(q.LastRenewed()) < q.ttl/2
}

// Campaign blocks until this region is the leader, ctx ends or the lease is
// gone. Only the leader may start an automatic failover. Campaign and
// Resign are serialised; cancel ctx to stop campaigning.
//
// It follows etcd's election recipe (concurrency.Election's: one key per
// lease under the leader prefix; the lowest create revision leads), but
// sends each request through the path the renewals last found answering,
// each with a deadline, and looks again at least every renewal interval.
// concurrency.Election.Campaign waits on one client's watch for ever, so a
// campaign that began through a member that then died never won; and when
// cancelled it resigns with a context nothing cancels, which hung the
// caller as long as that member was down.
func (q *Quorum) Campaign(ctx context.Context) error {
	q.elMu.Lock()
	defer q.elMu.Unlock()
	if q.ctx.Err() != nil {
		return lifeboat.Permanent(opElect, q.region, errClosed)
	}
	gen := q.current()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(q.ctx, cancel)
	defer stop()
	// A campaign on a lease that lapsed would wait on a key that is gone.
	go func() {
		select {
		case <-gen.replaced:
			cancel()
		case <-ctx.Done():
		}
	}()
	key := q.k.candidate(gen.id)
	rev, err := q.enqueue(ctx, gen, key)
	if err == nil {
		err = q.awaitTurn(ctx, key, rev)
	}
	if err != nil {
		select {
		case <-gen.replaced:
			return q.goneErr(opElect, gen)
		default:
		}
		if errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, errCandidateGone) {
			q.leaseGone(gen)
			return q.goneErr(opElect, gen)
		}
		// Leave the queue (also when the put's answer was lost to the
		// cancel): a key left behind would lead, once the keys ahead of
		// it go, for a region that does not know it. Should no member
		// answer now, the next campaign takes the key up again, or Close
		// revokes it with the lease.
		_ = q.withdraw(q.ctx, key, gen.id) // ctx, the campaign's, has ended
		return lifeboat.Transient(opElect, q.region, fmt.Errorf("region %s campaigning for leadership on etcd (%s): %w", q.region, q.where, err))
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cur != gen {
		// Won on a lease that has since been replaced: its key is gone.
		return q.goneErr(opElect, gen)
	}
	q.elected, q.wonKey = gen, key
	return nil
}

// errCandidateGone: this region's candidate key vanished while it waited,
// with the lease it was attached to.
var errCandidateGone = errors.New("the candidate key is gone")

// request runs one request through the path in use with a deadline, and
// again (through the path in use then) after a renewal interval while it
// fails and ctx lasts. Errors that retrying cannot fix end it at once.
func (q *Quorum) request(ctx context.Context, do func(context.Context, *clientv3.Client) error) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, q.ttl/3)
		err := do(rctx, q.client())
		cancel()
		if err == nil || ctx.Err() != nil || errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, errCandidateGone) {
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(q.renewInterval()):
		}
	}
}

// enqueue puts this region's candidate key, attached to gen's lease, unless
// it is there already (a campaign before this one, or a retried request,
// put it), and returns its create revision: its place in the queue.
func (q *Quorum) enqueue(ctx context.Context, gen *leaseGen, key string) (rev int64, err error) {
	err = q.request(ctx, func(ctx context.Context, c *clientv3.Client) error {
		resp, err := c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, q.region, clientv3.WithLease(gen.id))).
			Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			rev = resp.Header.Revision
			return nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return errCandidateGone
		}
		rev = kvs[0].CreateRevision
		return nil
	})
	return rev, err
}

// awaitTurn returns once no candidate key older than this region's (rev)
// is left, or its own key is gone. It waits for the newest older key to be
// deleted through the path in use, no longer than a renewal interval at a
// time, so that a watch through a member that died is given up.
func (q *Quorum) awaitTurn(ctx context.Context, key string, rev int64) error {
	for {
		var ahead *mvccpb.KeyValue
		var seen int64
		err := q.request(ctx, func(ctx context.Context, c *clientv3.Client) error {
			resp, err := c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
				Then(clientv3.OpGet(q.k.leader()+"/", append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(rev-1))...)).Commit()
			if err != nil {
				return err
			}
			if !resp.Succeeded {
				return errCandidateGone
			}
			ahead, seen = nil, resp.Header.Revision
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
				ahead = kvs[0]
			}
			return nil
		})
		if err != nil || ahead == nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, q.renewInterval())
		for resp := range q.client().Watch(clientv3.WithRequireLeader(wctx), string(ahead.Key), clientv3.WithRev(seen+1), clientv3.WithFilterPut()) {
			if len(resp.Events) > 0 {
				break
			}
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// withdraw deletes this region's candidate key (if it is still attached to
// lease) through every path at once, and returns when one did it or none
// could within a third of the TTL.
func (q *Quorum) withdraw(ctx context.Context, key string, lease clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(ctx, q.ttl/3)
	defer cancel()
	errs := make(chan error, len(q.paths))
	for _, c := range q.paths {
		go func() {
			_, err := c.Txn(ctx).If(clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).Then(clientv3.OpDelete(key)).Commit()
			errs <- err
		}()
	}
	var err error
	for range q.paths {
		if err = <-errs; err == nil {
			return nil
		}
	}
	return err
}

// Resign gives up leadership (if held) so another region's campaign wins
// at once; the lease and what else it holds stay.
func (q *Quorum) Resign(ctx context.Context) error {
	q.elMu.Lock()
	defer q.elMu.Unlock()
	q.mu.Lock()
	won := q.elected
	q.elected = nil
	key := q.wonKey
	q.wonKey = ""
	q.mu.Unlock()
	if key == "" || won == nil {
		return nil
	}
	if err := q.withdraw(ctx, key, won.id); err != nil {
		return lifeboat.Transient(opElect, q.region, fmt.Errorf("region %s resigning leadership on etcd (%s): %w; it lapses with the lease anyway", q.region, q.where, err))
	}
	return nil
}

// IsLeader reports whether this region won the election and still holds it
// as far as it can tell: elected under the lease in use, and Alive now. A
// leader that is not Alive may already have been replaced on the majority
// side.
func (q *Quorum) IsLeader() bool {
	q.mu.Lock()
	elected := q.elected != nil && q.elected == q.cur
	q.mu.Unlock()
	return elected && q.Alive(time.Now())
}

// Leader returns the region that holds the leadership now ("" if none).
func (q *Quorum) Leader(ctx context.Context) (string, error) {
	resp, err := q.client().Get(ctx, q.k.leader()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", lifeboat.Transient(opElect, q.region, fmt.Errorf("read the leader from etcd (%s): %w", q.where, err))
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// WatchLeader sends the leader's region each time a region becomes leader,
// starting with the current one, until ctx ends. It does not report a
// leadership left vacant; Leader does.
func (q *Quorum) WatchLeader(ctx context.Context) <-chan string {
	out := make(chan string)
	go func() {
		defer close(out)
		for resp := range q.election(q.current()).Observe(ctx) {
			if len(resp.Kvs) == 0 {
				continue
			}
			select {
			case out <- string(resp.Kvs[0].Value):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Publish writes this region's view under key, attached to the lease: it
// vanishes when this controller stops renewing.
func (q *Quorum) Publish(ctx context.Context, key string, value []byte) error {
	if key == "" || strings.ContainsAny(key, " \t\n") {
		return lifeboat.Permanent(opPublish, key, fmt.Errorf("view key %q is empty or has spaces", key))
	}
	return q.putLeased(ctx, opPublish, q.current(), q.k.view(q.region, key), value)
}

// Views reads every region's published views: region → key → value.
func (q *Quorum) Views(ctx context.Context) (map[string]map[string][]byte, error) {
	out, err := readViews(ctx, q.client(), q.k.views())
	if err != nil {
		return nil, lifeboat.Transient(opViews, q.region, fmt.Errorf("read the observers' views from etcd (%s): %w", q.where, err))
	}
	return out, nil
}

// readViews reads every key under prefix as region → key → value.
func readViews(ctx context.Context, cli *clientv3.Client, prefix string) (map[string]map[string][]byte, error) {
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := map[string]map[string][]byte{}
	for _, kv := range resp.Kvs {
		region, key, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), prefix), "/")
		if !ok {
			continue
		}
		if out[region] == nil {
			out[region] = map[string][]byte{}
		}
		out[region][key] = kv.Value
	}
	return out, nil
}

// activeValue is the value of active-controller/<region>.
type activeValue struct {
	Region string    `json:"region"`
	Owner  owner     `json:"owner"`
	Since  time.Time `json:"since"`
}

// HoldActive marks this region's controller as active, under the lease:
// the mark lapses with the lease, which is what the majority side waits for
// before it promotes.
func (q *Quorum) HoldActive(ctx context.Context) error {
	gen := q.current()
	me := self()
	me.Lease = int64(gen.id)
	b, err := encode(opActive, "active controller", activeValue{Region: q.region, Owner: me, Since: time.Now().UTC()})
	if err != nil {
		return err
	}
	return q.putLeased(ctx, opActive, gen, q.k.active(q.region), b)
}

// ActiveHeld reports whether region's active-controller key still exists,
// i.e. its controller's lease has not expired or been revoked.
func (q *Quorum) ActiveHeld(ctx context.Context, region string) (bool, error) {
	resp, err := q.client().Get(ctx, q.k.active(region), clientv3.WithCountOnly())
	if err != nil {
		return false, lifeboat.Transient(opActive, region, fmt.Errorf("read region %s's active-controller key from etcd (%s): %w", region, q.where, err))
	}
	return resp.Count > 0, nil
}

// ActiveGone returns a channel closed once region's active-controller key
// is gone (at once if it is gone now): its lease lapsed or was revoked. A
// leader waiting for a lost region to fence itself can act on the close
// instead of polling ActiveHeld every tick. The channel stays open if ctx
// ends first; a broken watch (no etcd leader for this member, compaction)
// is opened again.
func (q *Quorum) ActiveGone(ctx context.Context, region string) <-chan struct{} {
	out := make(chan struct{})
	key := q.k.active(region)
	go func() {
		for ctx.Err() == nil {
			resp, err := q.client().Get(ctx, key, clientv3.WithCountOnly())
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(q.renewInterval()):
				}
				continue
			}
			if resp.Count == 0 {
				close(out)
				return
			}
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			for wr := range q.client().Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterPut()) {
				if wr.Err() != nil {
					break
				}
				if len(wr.Events) > 0 {
					cancel()
					close(out)
					return
				}
			}
			cancel()
		}
	}()
	return out
}

func (q *Quorum) putLeased(ctx context.Context, op lifeboat.Op, gen *leaseGen, key string, value []byte) error {
	if q.ctx.Err() != nil {
		return lifeboat.Permanent(op, key, errClosed)
	}
	if _, err := q.client().Put(ctx, key, string(value), clientv3.WithLease(gen.id)); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			q.leaseGone(gen)
			return q.goneErr(op, gen)
		}
		return lifeboat.Transient(op, key, fmt.Errorf("write %s on etcd (%s): %w", key, q.where, err))
	}
	return nil
}

// goneErr says a lease lapsed. Retryable: the handle is granting itself a
// new lease; what the old one held has to be written again.
func (q *Quorum) goneErr(op lifeboat.Op, gen *leaseGen) error {
	return lifeboat.Transient(op, q.region, fmt.Errorf("region %s's quorum lease %x is gone (this controller was cut off from the majority for longer than %s, or the lease was revoked): its leadership, views and active key went with it; a new lease is being granted, retry to publish and campaign again", q.region, int64(gen.id), q.ttl))
}

// Close revokes the lease: leadership, views and the active key go at once,
// so the election moves on in milliseconds instead of a TTL.
func (q *Quorum) Close() error {
	q.closeOnce.Do(func() {
		q.stopRenewing()
		q.stop()
		q.mu.Lock()
		q.elected = nil
		gen := q.cur
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), min(q.ttl, 5*time.Second))
		defer cancel()
		if _, err := q.client().Revoke(ctx, gen.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			q.closeErr = lifeboat.Transient(opQuorum, q.region, fmt.Errorf("revoke region %s's lease on etcd (%s): %w; it lapses by itself within %s", q.region, q.where, err, q.ttl))
		}
		q.closeOwned()
		if q.onClose != nil {
			q.onClose()
		}
	})
	return q.closeErr
}

func revokeQuietly(cli *clientv3.Client, id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = cli.Revoke(ctx, id)
}

// Keys of the quorum (see doc.go).
func (k keys) leader() string { return k.prefix + "leader" }
func (k keys) candidate(lease clientv3.LeaseID) string {
	return fmt.Sprintf("%s/%x", k.leader(), int64(lease)) // as concurrency.Election names it
}
func (k keys) views() string                  { return k.prefix + "views/" }
func (k keys) view(region, key string) string { return k.prefix + "views/" + region + "/" + key }
func (k keys) active(region string) string    { return k.prefix + "active-controller/" + region }

// ViewEvent is a change of one published view.
type ViewEvent struct {
	Region, Key string
	Value       []byte // nil when the view vanished: deleted, or its controller's lease lapsed
}

// WatchViews returns every region's views now and a channel of their
// changes after that snapshot, with no gap between the two. The channel is
// closed when ctx ends or the watch breaks (no etcd leader for this member,
// compaction): call WatchViews again to resynchronise.
func (q *Quorum) WatchViews(ctx context.Context) (map[string]map[string][]byte, <-chan ViewEvent, error) {
	prefix := q.k.views()
	resp, err := q.client().Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, lifeboat.Transient(opViews, q.region, fmt.Errorf("read the observers' views from etcd (%s): %w", q.where, err))
	}
	views := map[string]map[string][]byte{}
	for _, kv := range resp.Kvs {
		if region, key, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), prefix), "/"); ok {
			if views[region] == nil {
				views[region] = map[string][]byte{}
			}
			views[region][key] = kv.Value
		}
	}
	out := make(chan ViewEvent)
	wch := q.client().Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	go func() {
		defer close(out)
		for wr := range wch {
			if wr.Err() != nil {
				return
			}
			for _, ev := range wr.Events {
				region, key, ok := strings.Cut(strings.TrimPrefix(string(ev.Kv.Key), prefix), "/")
				if !ok {
					continue
				}
				e := ViewEvent{Region: region, Key: key}
				if ev.Type == clientv3.EventTypePut {
					e.Value = ev.Kv.Value
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return views, out, nil
}

// ReadViews reads what every region's controller published (region → key
// → value) through any store on an etcd cluster, without a lease of its
// own: for status, which only looks.
func ReadViews(ctx context.Context, s lifeboat.Store) (map[string]map[string][]byte, error) {
	es, ok := s.(*etcdStore)
	if !ok {
		return nil, lifeboat.Permanent(opViews, "", errors.New("no controllers publish here: the store is not an etcd cluster (set store.members or store.endpoints)"))
	}
	out, err := readViews(clientv3.WithRequireLeader(ctx), es.cli, es.k.views())
	if err != nil {
		return nil, lifeboat.Transient(opViews, "", fmt.Errorf("read the controllers' views from etcd (%s): %w", es.where, err))
	}
	return out, nil
}
