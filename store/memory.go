package store

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// memory is the in-memory Store. Values are kept as JSON, like in etcd, so
// callers that mutate what they stored or got back can't change the store
// behind its back, and anything that doesn't survive JSON fails here too.
type memory struct {
	mu       sync.Mutex
	k        keys
	state    []byte
	runs     map[string][]byte
	journal  map[string][][]byte // seq n is at index n-1
	owners   map[string]uint64   // run → token of the owning Own call
	nextTok  uint64
	cancels  map[string]cancelRequest
	watchers map[string][]chan string
	closed   bool
}

// NewMemory returns an empty in-memory Store with the same semantics as the
// etcd one. Ownership is held until released (there is no process to die).
func NewMemory() lifeboat.Store {
	return &memory{
		k:        newKeys("memory"),
		runs:     map[string][]byte{},
		journal:  map[string][][]byte{},
		owners:   map[string]uint64{},
		cancels:  map[string]cancelRequest{},
		watchers: map[string][]chan string{},
	}
}

var errClosed = fmt.Errorf("the store is closed (a bug: it was used after Close)")

func (m *memory) lock(op lifeboat.Op) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return lifeboat.Permanent(op, "", errClosed)
	}
	return nil
}

func (m *memory) State(ctx context.Context) (*lifeboat.State, error) {
	if err := m.lock(opState); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if m.state == nil {
		return nil, noState(opState, "memory")
	}
	var st lifeboat.State
	return &st, decode(opState, m.k.state(), m.state, &st)
}

func (m *memory) Init(ctx context.Context, st *lifeboat.State) (*lifeboat.State, error) {
	if err := m.lock(opInit); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if m.state == nil {
		b, err := encode(opInit, "state", st)
		if err != nil {
			return nil, err
		}
		m.state = b
	}
	var out lifeboat.State
	return &out, decode(opInit, m.k.state(), m.state, &out)
}

func (m *memory) Begin(ctx context.Context, run *lifeboat.Run) error {
	if err := checkRunID(opBegin, run.ID); err != nil {
		return err
	}
	if err := m.lock(opBegin); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if m.state == nil {
		return noState(opBegin, "memory")
	}
	var st lifeboat.State
	if err := decode(opBegin, m.k.state(), m.state, &st); err != nil {
		return err
	}
	if st.Run != "" {
		if b, ok := m.runs[st.Run]; ok {
			var other lifeboat.Run
			if err := decode(opBegin, m.k.run(st.Run), b, &other); err != nil {
				return err
			}
			if !other.Status.Done() {
				return runInProgress(&other)
			}
		}
	}
	if _, ok := m.runs[run.ID]; ok {
		return runExists(run.ID)
	}
	rb, err := encode(opBegin, "run "+run.ID, run)
	if err != nil {
		return err
	}
	st.Run = run.ID
	sb, err := encode(opBegin, "state", &st)
	if err != nil {
		return err
	}
	m.runs[run.ID], m.state = rb, sb
	return nil
}

func (m *memory) Append(ctx context.Context, rec lifeboat.Record, st *lifeboat.State) (uint64, error) {
	if err := checkRunID(opAppend, rec.Run); err != nil {
		return 0, err
	}
	if err := m.lock(opAppend); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	if _, ok := m.runs[rec.Run]; !ok {
		return 0, noRun(opAppend, rec.Run)
	}
	rec.Seq = uint64(len(m.journal[rec.Run])) + 1
	rb, err := encode(opAppend, "record", rec)
	if err != nil {
		return 0, err
	}
	var sb []byte
	if st != nil {
		if sb, err = encode(opAppend, "state", st); err != nil {
			return 0, err
		}
	}
	m.journal[rec.Run] = append(m.journal[rec.Run], rb)
	if sb != nil {
		m.state = sb
	}
	return rec.Seq, nil
}

func (m *memory) Journal(ctx context.Context, run string) ([]lifeboat.Record, error) {
	if err := m.lock(opJournal); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if _, ok := m.runs[run]; !ok {
		return nil, noRun(opJournal, run)
	}
	j := m.journal[run]
	return decodeRecords(len(j), func(i int) (string, []byte) { return m.k.record(run, uint64(i+1)), j[i] })
}

func (m *memory) Run(ctx context.Context, id string) (*lifeboat.Run, error) {
	if err := m.lock(opRun); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	b, ok := m.runs[id]
	if !ok {
		return nil, noRun(opRun, id)
	}
	var r lifeboat.Run
	return &r, decode(opRun, m.k.run(id), b, &r)
}

func (m *memory) Runs(ctx context.Context) ([]*lifeboat.Run, error) {
	if err := m.lock(opRun); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	out := make([]*lifeboat.Run, 0, len(m.runs))
	for id, b := range m.runs {
		var r lifeboat.Run
		if err := decode(opRun, m.k.run(id), b, &r); err != nil {
			return nil, err
		}
		out = append(out, &r)
	}
	sortNewestFirst(out)
	return out, nil
}

func (m *memory) Update(ctx context.Context, run *lifeboat.Run) error {
	if err := checkRunID(opUpdate, run.ID); err != nil {
		return err
	}
	if err := m.lock(opUpdate); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if _, ok := m.runs[run.ID]; !ok {
		return noRun(opUpdate, run.ID)
	}
	rb, err := encode(opUpdate, "run "+run.ID, run)
	if err != nil {
		return err
	}
	var sb []byte
	if run.Status.Done() && m.state != nil {
		var st lifeboat.State
		if err := decode(opUpdate, m.k.state(), m.state, &st); err != nil {
			return err
		}
		if st.Run == run.ID {
			st.End(run)
			if sb, err = encode(opUpdate, "state", &st); err != nil {
				return err
			}
		}
	}
	m.runs[run.ID] = rb
	if sb != nil {
		m.state = sb
	}
	return nil
}

func (m *memory) Own(ctx context.Context, run string) (func(), error) {
	if err := checkRunID(opOwn, run); err != nil {
		return nil, err
	}
	if err := m.lock(opOwn); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if _, ok := m.runs[run]; !ok {
		return nil, noRun(opOwn, run)
	}
	if _, held := m.owners[run]; held {
		return nil, lifeboat.Permanent(opOwn, run, fmt.Errorf("%w: run %s is owned by another caller in this process (memory store); wait for it to release the run", lifeboat.ErrRunOwned, run))
	}
	m.nextTok++
	tok := m.nextTok
	m.owners[run] = tok
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.owners[run] == tok {
				delete(m.owners, run)
			}
		})
	}, nil
}

func (m *memory) Owned(ctx context.Context, run string) (bool, error) {
	if err := checkRunID(opOwn, run); err != nil {
		return false, err
	}
	if err := m.lock(opOwn); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	if _, ok := m.runs[run]; !ok {
		return false, noRun(opOwn, run)
	}
	_, held := m.owners[run]
	return held, nil
}

func (m *memory) RequestCancel(ctx context.Context, run, by string) error {
	if err := checkRunID(opCancel, run); err != nil {
		return err
	}
	if err := m.lock(opCancel); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if _, ok := m.runs[run]; !ok {
		return noRun(opCancel, run)
	}
	m.cancels[run] = cancelRequest{By: by, At: time.Now().UTC()}
	for _, ch := range m.watchers[run] {
		ch <- by // buffered, never sent to twice: watchers are dropped below
	}
	delete(m.watchers, run)
	return nil
}

func (m *memory) WatchCancel(ctx context.Context, run string) (<-chan string, error) {
	if err := checkRunID(opCancel, run); err != nil {
		return nil, err
	}
	if err := m.lock(opCancel); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if _, ok := m.runs[run]; !ok {
		return nil, noRun(opCancel, run)
	}
	ch := make(chan string, 1)
	if req, ok := m.cancels[run]; ok {
		ch <- req.By
		return ch, nil
	}
	m.watchers[run] = append(m.watchers[run], ch)
	if ctx.Done() == nil {
		return ch, nil
	}
	go func() {
		// Forget the watcher when its caller stops listening.
		<-ctx.Done()
		m.mu.Lock()
		defer m.mu.Unlock()
		ws := m.watchers[run]
		for i, w := range ws {
			if w == ch {
				m.watchers[run] = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
	}()
	return ch, nil
}

func (m *memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// sortNewestFirst orders runs by start time, newest first; ids break ties
// (they sort by time too).
func sortNewestFirst(runs []*lifeboat.Run) {
	sort.Slice(runs, func(i, j int) bool {
		a, b := runs[i], runs[j]
		if !a.StartedAt.Equal(b.StartedAt) {
			return a.StartedAt.After(b.StartedAt)
		}
		return a.ID > b.ID
	})
}

func runExists(id string) error {
	return lifeboat.Permanent(opBegin, id, fmt.Errorf("a run with id %s already exists: run ids must be unique (a bug in the caller)", id))
}
