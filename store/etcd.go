package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// etcdStore is the Store on an etcd client: an embedded member's or an
// external cluster's, the code is the same.
type etcdStore struct {
	cli     *clientv3.Client
	k       keys
	service string
	where   string // where etcd is, for error messages
	me      owner

	// ctx lives until Close; ownership leases are kept alive under it.
	ctx  context.Context
	stop context.CancelFunc

	seqMu sync.Mutex
	seqs  map[string]*runSeq

	ownMu    sync.Mutex
	sessions map[*concurrency.Session]struct{}

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	onClose   func() error // stops an embedded member; nil for a client
}

// runSeq allocates a run's journal sequence numbers in this process.
type runSeq struct {
	mu     sync.Mutex
	loaded bool
	next   uint64
}

func newEtcdStore(cli *clientv3.Client, service, where string, onClose func() error) *etcdStore {
	ctx, stop := context.WithCancel(context.Background())
	return &etcdStore{cli: cli, k: newKeys(service), service: service, where: where, me: self(),
		ctx: ctx, stop: stop, seqs: map[string]*runSeq{}, sessions: map[*concurrency.Session]struct{}{}, onClose: onClose}
}

// open fails fast once the store is closed, instead of letting the client
// retry against a closed connection.
func (s *etcdStore) open(op lifeboat.Op) error {
	if s.closed.Load() {
		return lifeboat.Permanent(op, s.service, errClosed)
	}
	return nil
}

// ioErr wraps a failed etcd call: retryable, and says where etcd is.
func (s *etcdStore) ioErr(op lifeboat.Op, resource string, err error) error {
	return lifeboat.Transient(op, resource, fmt.Errorf("etcd (%s) did not complete the request: %w", s.where, err))
}

func (s *etcdStore) State(ctx context.Context) (*lifeboat.State, error) {
	if err := s.open(opState); err != nil {
		return nil, err
	}
	// A member cut off from the raft leader fails at once instead of
	// waiting out ctx: the client's next call tries another member, and a
	// lease renewed on reads (the front door's) does not lapse meanwhile.
	resp, err := s.cli.Get(clientv3.WithRequireLeader(ctx), s.k.state())
	if err != nil {
		return nil, s.ioErr(opState, s.service, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, noState(opState, s.service)
	}
	var st lifeboat.State
	return &st, decode(opState, s.k.state(), resp.Kvs[0].Value, &st)
}

func (s *etcdStore) Init(ctx context.Context, st *lifeboat.State) (*lifeboat.State, error) {
	if err := s.open(opInit); err != nil {
		return nil, err
	}
	b, err := encode(opInit, "state", st)
	if err != nil {
		return nil, err
	}
	key := s.k.state()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, s.ioErr(opInit, s.service, err)
	}
	if !resp.Succeeded {
		b = resp.Responses[0].GetResponseRange().Kvs[0].Value
	}
	var out lifeboat.State
	return &out, decode(opInit, key, b, &out)
}

func (s *etcdStore) Begin(ctx context.Context, run *lifeboat.Run) error {
	if err := s.open(opBegin); err != nil {
		return err
	}
	if err := checkRunID(opBegin, run.ID); err != nil {
		return err
	}
	rb, err := encode(opBegin, "run "+run.ID, run)
	if err != nil {
		return err
	}
	skey, rkey := s.k.state(), s.k.run(run.ID)
	for {
		resp, err := s.cli.Get(ctx, skey)
		if err != nil {
			return s.ioErr(opBegin, run.ID, err)
		}
		if len(resp.Kvs) == 0 {
			return noState(opBegin, s.service)
		}
		var st lifeboat.State
		if err := decode(opBegin, skey, resp.Kvs[0].Value, &st); err != nil {
			return err
		}
		if st.Run != "" {
			other, err := s.Run(ctx, st.Run)
			switch {
			case errors.Is(err, lifeboat.ErrNoRun):
				// The state names a run that is gone: nothing is in progress.
			case err != nil:
				return err
			case !other.Status.Done():
				return runInProgress(other)
			}
		}
		st.Run = run.ID
		sb, err := encode(opBegin, "state", &st)
		if err != nil {
			return err
		}
		// The ModRevision compare makes racing Begins serialise: only one
		// sees the state it read.
		tx, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(skey), "=", resp.Kvs[0].ModRevision),
				clientv3.Compare(clientv3.CreateRevision(rkey), "=", 0)).
			Then(clientv3.OpPut(rkey, string(rb)), clientv3.OpPut(skey, string(sb))).
			Else(clientv3.OpGet(rkey, clientv3.WithCountOnly())).Commit()
		if err != nil {
			return s.ioErr(opBegin, run.ID, err)
		}
		if tx.Succeeded {
			return nil
		}
		if tx.Responses[0].GetResponseRange().Count > 0 {
			return runExists(run.ID)
		}
		// The state changed since we read it: look again.
	}
}

func (s *etcdStore) seqFor(run string) *runSeq {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	rs := s.seqs[run]
	if rs == nil {
		rs = &runSeq{}
		s.seqs[run] = rs
	}
	return rs
}

// lastSeq is the seq of a run's last journal record (0 if none).
func lastSeq(kvs []*mvccKV) (uint64, error) {
	if len(kvs) == 0 {
		return 0, nil
	}
	return seqOf(string(kvs[0].Key))
}

// maxAppendTries bounds how often Append takes a fresh seq because the one
// it had was already written: once is normal after an Append whose outcome
// was unknown; more means a second process appends without owning the run.
const maxAppendTries = 5

func (s *etcdStore) Append(ctx context.Context, rec lifeboat.Record, st *lifeboat.State) (uint64, error) {
	if err := s.open(opAppend); err != nil {
		return 0, err
	}
	if err := checkRunID(opAppend, rec.Run); err != nil {
		return 0, err
	}
	var sb []byte
	if st != nil {
		var err error
		if sb, err = encode(opAppend, "state", st); err != nil {
			return 0, err
		}
	}
	rkey, jprefix := s.k.run(rec.Run), s.k.journal(rec.Run)
	lastKeyOpts := append(clientv3.WithLastKey(), clientv3.WithKeysOnly())

	rs := s.seqFor(rec.Run)
	rs.mu.Lock()
	if !rs.loaded {
		// First append to this run by this process: go on from the journal.
		resp, err := s.cli.Get(ctx, jprefix, lastKeyOpts...)
		if err != nil {
			rs.mu.Unlock()
			return 0, s.ioErr(opAppend, rec.Run, err)
		}
		last, err := lastSeq(resp.Kvs)
		if err != nil {
			rs.mu.Unlock()
			return 0, lifeboat.Permanent(opAppend, rec.Run, fmt.Errorf("journal key of run %s does not end in a sequence number: %w", rec.Run, err))
		}
		// The run is checked once here, not in every append's Txn: a
		// compare on the run key makes etcd read the whole stored plan on
		// each append, which cost a quarter of the throughput.
		rr, err := s.cli.Get(ctx, rkey, clientv3.WithCountOnly())
		if err != nil {
			rs.mu.Unlock()
			return 0, s.ioErr(opAppend, rec.Run, err)
		}
		if rr.Count == 0 {
			rs.mu.Unlock()
			return 0, noRun(opAppend, rec.Run)
		}
		rs.next, rs.loaded = last+1, true
	}
	seq := rs.next
	rs.next++
	rs.mu.Unlock()
	// giveBack returns an unused seq when no later one was handed out, so
	// a failed Append leaves no gap.
	giveBack := func(seq uint64) {
		rs.mu.Lock()
		if rs.next == seq+1 {
			rs.next = seq
		}
		rs.mu.Unlock()
	}

	for try := 1; ; try++ {
		rec.Seq = seq
		rb, err := encode(opAppend, "record", rec)
		if err != nil {
			giveBack(seq)
			return 0, err
		}
		jkey := s.k.record(rec.Run, seq)
		ops := []clientv3.Op{clientv3.OpPut(jkey, string(rb))}
		if sb != nil {
			ops = append(ops, clientv3.OpPut(s.k.state(), string(sb)))
		}
		tx, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(jkey), "=", 0)).
			Then(ops...).
			Else(clientv3.OpGet(jprefix, lastKeyOpts...)).Commit()
		if err != nil {
			giveBack(seq)
			return 0, s.ioErr(opAppend, rec.Run, err)
		}
		if tx.Succeeded {
			return seq, nil
		}
		// The seq was taken: by an earlier Append whose outcome was
		// unknown, or by another process. Take one past the last.
		last, err := lastSeq(tx.Responses[0].GetResponseRange().Kvs)
		if err != nil {
			return 0, lifeboat.Permanent(opAppend, rec.Run, fmt.Errorf("journal key of run %s does not end in a sequence number: %w", rec.Run, err))
		}
		if try >= maxAppendTries {
			return 0, lifeboat.Permanent(opAppend, rec.Run, fmt.Errorf("journal of run %s: seq %d was already written %d times in a row: another process is appending to this run without owning it (only the process that holds `own/%s` may append); stop the other process", rec.Run, seq, try, rec.Run))
		}
		rs.mu.Lock()
		if rs.next <= last {
			rs.next = last + 1
		}
		seq = rs.next
		rs.next++
		rs.mu.Unlock()
	}
}

func (s *etcdStore) Journal(ctx context.Context, run string) ([]lifeboat.Record, error) {
	if err := s.open(opJournal); err != nil {
		return nil, err
	}
	if err := checkRunID(opJournal, run); err != nil {
		return nil, err
	}
	// One read of the run's existence and its whole journal, consistent
	// with each other.
	tx, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.k.run(run), clientv3.WithCountOnly()),
		clientv3.OpGet(s.k.journal(run), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, s.ioErr(opJournal, run, err)
	}
	if tx.Responses[0].GetResponseRange().Count == 0 {
		return nil, noRun(opJournal, run)
	}
	return decodeKVs(tx.Responses[1].GetResponseRange().Kvs)
}

func (s *etcdStore) Run(ctx context.Context, id string) (*lifeboat.Run, error) {
	if err := s.open(opRun); err != nil {
		return nil, err
	}
	if err := checkRunID(opRun, id); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, s.k.run(id))
	if err != nil {
		return nil, s.ioErr(opRun, id, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, noRun(opRun, id)
	}
	var r lifeboat.Run
	return &r, decode(opRun, s.k.run(id), resp.Kvs[0].Value, &r)
}

func (s *etcdStore) Runs(ctx context.Context) ([]*lifeboat.Run, error) {
	if err := s.open(opRun); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, s.k.runs(), clientv3.WithPrefix())
	if err != nil {
		return nil, s.ioErr(opRun, s.service, err)
	}
	out := make([]*lifeboat.Run, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r lifeboat.Run
		if err := decode(opRun, string(kv.Key), kv.Value, &r); err != nil {
			return nil, err
		}
		out = append(out, &r)
	}
	sortNewestFirst(out)
	return out, nil
}

func (s *etcdStore) Update(ctx context.Context, run *lifeboat.Run) error {
	if err := s.open(opUpdate); err != nil {
		return err
	}
	if err := checkRunID(opUpdate, run.ID); err != nil {
		return err
	}
	rb, err := encode(opUpdate, "run "+run.ID, run)
	if err != nil {
		return err
	}
	skey, rkey := s.k.state(), s.k.run(run.ID)
	for {
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(rkey), ">", 0)}
		ops := []clientv3.Op{clientv3.OpPut(rkey, string(rb))}
		if run.Status.Done() {
			// A run that ended frees the state for the next one; a failed
			// or waiting run keeps it, because it can be resumed.
			resp, err := s.cli.Get(ctx, skey)
			if err != nil {
				return s.ioErr(opUpdate, run.ID, err)
			}
			if len(resp.Kvs) > 0 {
				var st lifeboat.State
				if err := decode(opUpdate, skey, resp.Kvs[0].Value, &st); err != nil {
					return err
				}
				if st.Run == run.ID {
					st.End(run)
					sb, err := encode(opUpdate, "state", &st)
					if err != nil {
						return err
					}
					cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(skey), "=", resp.Kvs[0].ModRevision))
					ops = append(ops, clientv3.OpPut(skey, string(sb)))
				}
			}
		}
		tx, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).
			Else(clientv3.OpGet(rkey, clientv3.WithCountOnly())).Commit()
		if err != nil {
			return s.ioErr(opUpdate, run.ID, err)
		}
		if tx.Succeeded {
			return nil
		}
		if tx.Responses[0].GetResponseRange().Count == 0 {
			return noRun(opUpdate, run.ID)
		}
		// The state changed since we read it (a step's Append): again.
	}
}

func (s *etcdStore) Own(ctx context.Context, run string) (func(), error) {
	if err := s.open(opOwn); err != nil {
		return nil, err
	}
	if err := checkRunID(opOwn, run); err != nil {
		return nil, err
	}
	lease, err := s.cli.Grant(ctx, int64(OwnTTL/time.Second))
	if err != nil {
		return nil, s.ioErr(opOwn, run, err)
	}
	revoke := func() {
		// Best effort: an unrevoked lease just lapses after OwnTTL.
		ctx, cancel := context.WithTimeout(s.ctx, time.Second)
		defer cancel()
		_, _ = s.cli.Revoke(ctx, lease.ID)
	}
	me := s.me
	me.Lease, me.Since = int64(lease.ID), time.Now().UTC()
	val, err := encode(opOwn, "owner", me)
	if err != nil {
		revoke()
		return nil, err
	}
	rkey, okey := s.k.run(run), s.k.own(run)
	for try := 0; ; try++ {
		tx, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(rkey), ">", 0),
				clientv3.Compare(clientv3.CreateRevision(okey), "=", 0)).
			Then(clientv3.OpPut(okey, string(val), clientv3.WithLease(lease.ID))).
			Else(clientv3.OpGet(rkey, clientv3.WithCountOnly()), clientv3.OpGet(okey)).Commit()
		if err != nil {
			revoke()
			return nil, s.ioErr(opOwn, run, err)
		}
		if tx.Succeeded {
			break
		}
		if tx.Responses[0].GetResponseRange().Count == 0 {
			revoke()
			return nil, noRun(opOwn, run)
		}
		kvs := tx.Responses[1].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // released in between
		}
		var holder owner
		if err := decode(opOwn, okey, kvs[0].Value, &holder); err != nil {
			revoke()
			return nil, err
		}
		if try == 0 && holder.deadHere(s.me) {
			// The owner died on this host (its pid is gone): don't make a
			// resume wait out the lease etcd restored on restart.
			if _, err := s.cli.Txn(ctx).
				If(clientv3.Compare(clientv3.ModRevision(okey), "=", kvs[0].ModRevision)).
				Then(clientv3.OpDelete(okey)).Commit(); err != nil {
				revoke()
				return nil, s.ioErr(opOwn, run, err)
			}
			if _, err := s.cli.Revoke(ctx, clientv3.LeaseID(holder.Lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				revoke()
				return nil, s.ioErr(opOwn, run, err)
			}
			continue
		}
		revoke()
		return nil, lifeboat.Permanent(opOwn, run, fmt.Errorf("%w: run %s is being run by %s; cancel it with `lifeboat cancel %s`, or if that process is gone (another host), its claim lapses %s after it stopped",
			lifeboat.ErrRunOwned, run, holder, run, OwnTTL))
	}
	// Keep the lease alive for as long as the store is open.
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(lease.ID), concurrency.WithContext(s.ctx))
	if err != nil {
		revoke()
		return nil, s.ioErr(opOwn, run, err)
	}
	s.ownMu.Lock()
	s.sessions[sess] = struct{}{}
	s.ownMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.ownMu.Lock()
			delete(s.sessions, sess)
			s.ownMu.Unlock()
			_ = sess.Close() // revokes the lease, which deletes own/<run>
		})
	}, nil
}

func (s *etcdStore) Owned(ctx context.Context, run string) (bool, error) {
	if err := s.open(opOwn); err != nil {
		return false, err
	}
	if err := checkRunID(opOwn, run); err != nil {
		return false, err
	}
	okey := s.k.own(run)
	tx, err := s.cli.Txn(ctx).Then(clientv3.OpGet(s.k.run(run), clientv3.WithCountOnly()), clientv3.OpGet(okey)).Commit()
	if err != nil {
		return false, s.ioErr(opOwn, run, err)
	}
	if tx.Responses[0].GetResponseRange().Count == 0 {
		return false, noRun(opOwn, run)
	}
	kvs := tx.Responses[1].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return false, nil
	}
	var holder owner
	if err := decode(opOwn, okey, kvs[0].Value, &holder); err != nil {
		return false, err
	}
	// An owner that died on this host owns nothing, though etcd may still
	// keep its claim until its lease lapses.
	return !holder.deadHere(s.me), nil
}

func (s *etcdStore) RequestCancel(ctx context.Context, run, by string) error {
	if err := s.open(opCancel); err != nil {
		return err
	}
	if err := checkRunID(opCancel, run); err != nil {
		return err
	}
	b, err := encode(opCancel, "cancel request", cancelRequest{By: by, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	rkey := s.k.run(run)
	tx, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(rkey), ">", 0)).
		Then(clientv3.OpPut(s.k.cancel(run), string(b))).Commit()
	if err != nil {
		return s.ioErr(opCancel, run, err)
	}
	if !tx.Succeeded {
		return noRun(opCancel, run)
	}
	return nil
}

func (s *etcdStore) WatchCancel(ctx context.Context, run string) (<-chan string, error) {
	if err := s.open(opCancel); err != nil {
		return nil, err
	}
	if err := checkRunID(opCancel, run); err != nil {
		return nil, err
	}
	ckey := s.k.cancel(run)
	tx, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.k.run(run), clientv3.WithCountOnly()),
		clientv3.OpGet(ckey),
	).Commit()
	if err != nil {
		return nil, s.ioErr(opCancel, run, err)
	}
	if tx.Responses[0].GetResponseRange().Count == 0 {
		return nil, noRun(opCancel, run)
	}
	ch := make(chan string, 1)
	if kvs := tx.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		var req cancelRequest
		if err := decode(opCancel, ckey, kvs[0].Value, &req); err != nil {
			return nil, err
		}
		ch <- req.By
		return ch, nil
	}
	go s.watchCancel(ctx, ckey, tx.Header.Revision+1, ch)
	return ch, nil
}

// watchCancel delivers the first put of key at or after rev. It follows
// the key across lost leaders and compactions until ctx is done or the
// store closes.
func (s *etcdStore) watchCancel(ctx context.Context, key string, rev int64, ch chan<- string) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	deliver := func(v []byte) {
		var req cancelRequest
		if decode(opCancel, key, v, &req) != nil {
			req.By = "unknown (unreadable cancel request)"
		}
		ch <- req.By
	}
	for wait := 50 * time.Millisecond; ; {
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(rev), clientv3.WithFilterDelete())
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					deliver(ev.Kv.Value)
					return
				}
			}
		}
		// The watch ended: compacted, no leader, or closing. Read the key
		// again and watch from there.
		for {
			if ctx.Err() != nil {
				return
			}
			resp, err := s.cli.Get(ctx, key)
			if err == nil {
				if len(resp.Kvs) > 0 {
					deliver(resp.Kvs[0].Value)
					return
				}
				rev = resp.Header.Revision + 1
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 2*time.Second)
		}
	}
}

func (s *etcdStore) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		// Give up ownership first, so the next process need not wait.
		s.ownMu.Lock()
		sessions := s.sessions
		s.sessions = map[*concurrency.Session]struct{}{}
		s.ownMu.Unlock()
		for sess := range sessions {
			_ = sess.Close()
		}
		s.stop()
		var errs []error
		if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
		if s.onClose != nil {
			if err := s.onClose(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = lifeboat.Transient(opClose, s.service, fmt.Errorf("closing etcd (%s): %w", s.where, err))
		}
	})
	return s.closeErr
}
