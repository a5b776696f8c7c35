package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// AuditRecord is one mutating call made through the API: who made it, in
// what role, what it asked for, and how it ended. Records are appended and
// never changed.
type AuditRecord struct {
	// Seq orders the records; the store assigns it.
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
	// Who is the caller: the token's name, or the client certificate's CN.
	Who  string        `json:"who"`
	Role lifeboat.Role `json:"role"`
	// Action is what was asked, e.g. "runs.start", "runs.approve".
	Action string `json:"action"`
	// Args are the call's arguments (intent, to, force, step…).
	Args map[string]string `json:"args,omitempty"`
	// Status is the HTTP status code the call was answered with.
	Status int `json:"status"`
	// Result says in a few words how it ended ("accepted", "refused: …").
	Result string `json:"result"`
	// Run is the run the call started or acted on, if any.
	Run string `json:"run,omitempty"`
	// Remote is the caller's address.
	Remote string `json:"remote,omitempty"`
}

// AuditLog is the append-only audit trail of a service.
type AuditLog interface {
	// Append stores rec with the next Seq (rec.Seq is ignored); it never
	// overwrites a record.
	Append(ctx context.Context, rec AuditRecord) (uint64, error)
	// Audit returns the records made at or after since (zero: all), oldest
	// first; with limit > 0, only the newest limit of them.
	Audit(ctx context.Context, since time.Time, limit int) ([]AuditRecord, error)
}

const (
	opAuditAppend lifeboat.Op = "store.audit.append"
	opAudit       lifeboat.Op = "store.audit"
)

func (k keys) audits() string          { return k.prefix + "audit/" }
func (k keys) audit(seq uint64) string { return fmt.Sprintf("%saudit/%020d", k.prefix, seq) }

// Audit returns the audit trail kept in s: under the service's prefix in
// etcd, or beside an in-memory store.
func Audit(s lifeboat.Store) (AuditLog, error) {
	switch s := s.(type) {
	case *etcdStore:
		return &etcdAudit{s: s}, nil
	case *memory:
		return memoryAuditOf(s), nil
	case *follower:
		return &followerAudit{f: s}, nil
	}
	return nil, lifeboat.Permanent(opAudit, "", fmt.Errorf("the store %T keeps no audit trail: open it with store.Open (or store.NewMemory in tests)", s))
}

// etcdAudit keeps records at audit/<seq>. A record is written only if its
// key was never created, so two writers racing for the same seq cannot
// overwrite each other: the loser reads the new last seq and tries again.
type etcdAudit struct{ s *etcdStore }

func (a *etcdAudit) Append(ctx context.Context, rec AuditRecord) (uint64, error) {
	if err := a.s.open(opAuditAppend); err != nil {
		return 0, err
	}
	for try := 0; ; try++ {
		last, err := a.s.cli.Get(ctx, a.s.k.audits(), clientv3.WithLastKey()...)
		if err != nil {
			return 0, a.s.ioErr(opAuditAppend, "audit", err)
		}
		var seq uint64 = 1
		if len(last.Kvs) > 0 {
			n, err := seqOf(string(last.Kvs[0].Key))
			if err != nil {
				return 0, lifeboat.Permanent(opAuditAppend, string(last.Kvs[0].Key), fmt.Errorf("audit key does not end in a number (written by another tool?): %w", err))
			}
			seq = n + 1
		}
		rec.Seq = seq
		b, err := encode(opAuditAppend, "audit record", rec)
		if err != nil {
			return 0, err
		}
		key := a.s.k.audit(seq)
		resp, err := a.s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return 0, a.s.ioErr(opAuditAppend, key, err)
		}
		if resp.Succeeded {
			return seq, nil
		}
		if try >= 50 {
			return 0, lifeboat.Transient(opAuditAppend, key, errors.New("another writer took every audit seq tried; try again"))
		}
	}
}

func (a *etcdAudit) Audit(ctx context.Context, since time.Time, limit int) ([]AuditRecord, error) {
	if err := a.s.open(opAudit); err != nil {
		return nil, err
	}
	// Newest first, a page at a time, until a record is older than since
	// or limit records are found.
	const page = 500
	var out []AuditRecord
	end := clientv3.GetPrefixRangeEnd(a.s.k.audits())
	for {
		resp, err := a.s.cli.Get(ctx, a.s.k.audits(), clientv3.WithRange(end), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(page))
		if err != nil {
			return nil, a.s.ioErr(opAudit, "audit", err)
		}
		for _, kv := range resp.Kvs {
			var r AuditRecord
			if err := decode(opAudit, string(kv.Key), kv.Value, &r); err != nil {
				return nil, err
			}
			if !since.IsZero() && r.At.Before(since) {
				return reverse(out), nil
			}
			out = append(out, r)
			if limit > 0 && len(out) >= limit {
				return reverse(out), nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return reverse(out), nil
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key) // exclusive: the next page is below it
	}
}

func reverse(rs []AuditRecord) []AuditRecord {
	for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
		rs[i], rs[j] = rs[j], rs[i]
	}
	return rs
}

// memoryAudit is the trail of an in-memory store; records are copied in
// and out, so callers cannot change them.
type memoryAudit struct {
	mu   sync.Mutex
	recs []AuditRecord
}

// memoryAudits gives each in-memory store its one trail. (A field of
// memory would do as well; this keeps memory.go untouched.)
var memoryAudits sync.Map // *memory → *memoryAudit

func memoryAuditOf(m *memory) *memoryAudit {
	a, _ := memoryAudits.LoadOrStore(m, &memoryAudit{})
	return a.(*memoryAudit)
}

func copyAudit(r AuditRecord) AuditRecord {
	if r.Args != nil {
		args := make(map[string]string, len(r.Args))
		for k, v := range r.Args {
			args[k] = v
		}
		r.Args = args
	}
	return r
}

func (a *memoryAudit) Append(ctx context.Context, rec AuditRecord) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec = copyAudit(rec)
	rec.Seq = uint64(len(a.recs)) + 1
	a.recs = append(a.recs, rec)
	return rec.Seq, nil
}

func (a *memoryAudit) Audit(ctx context.Context, since time.Time, limit int) ([]AuditRecord, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := 0
	if !since.IsZero() {
		i = sort.Search(len(a.recs), func(i int) bool { return !a.recs[i].At.Before(since) })
		// Records are appended in time order in practice; a clock step
		// back would only make since less exact, never lose the newest.
	}
	sel := a.recs[i:]
	if limit > 0 && len(sel) > limit {
		sel = sel[len(sel)-limit:]
	}
	out := make([]AuditRecord, len(sel))
	for j, r := range sel {
		out[j] = copyAudit(r)
	}
	return out, nil
}

// followerAudit follows the store a follower currently uses.
type followerAudit struct{ f *follower }

func (a *followerAudit) log() (AuditLog, error) { return Audit(a.f.cur()) }

func (a *followerAudit) Append(ctx context.Context, rec AuditRecord) (uint64, error) {
	l, err := a.log()
	if err != nil {
		return 0, err
	}
	return l.Append(ctx, rec)
}

func (a *followerAudit) Audit(ctx context.Context, since time.Time, limit int) ([]AuditRecord, error) {
	l, err := a.log()
	if err != nil {
		return nil, err
	}
	return l.Audit(ctx, since, limit)
}
