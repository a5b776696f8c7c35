package store

import (
	"context"
	"sync"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// followCallTimeout bounds each call of a follower: its member lives in
// another process on this machine, so a call that takes this long means the
// member is gone, not slow.
var followCallTimeout = 5 * time.Second

// follower is the store of a process that joined the member another
// lifeboat process embeds (say, `lifeboat cancel` while `lifeboat failover`
// runs). When that process exits, its member goes with it; the follower
// then opens the store again — joining a newer member or embedding its own —
// and retries the call once, instead of waiting forever on a dead endpoint.
type follower struct {
	o  Options
	mu sync.Mutex
	s  lifeboat.Store
}

func follow(s lifeboat.Store, o Options) lifeboat.Store { return &follower{o: o, s: s} }

func (f *follower) cur() lifeboat.Store {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s
}

// reopen replaces a store whose member went away.
func (f *follower) reopen(ctx context.Context, dead lifeboat.Store) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.s != dead {
		return nil // another call reopened it already
	}
	s, err := Open(ctx, f.o)
	if err != nil {
		return err
	}
	_ = dead.Close()
	if fs, ok := s.(*follower); ok {
		s = fs.s
	}
	f.s = s
	return nil
}

// call runs op with a deadline; if it fails for want of an answer (a
// timeout, or an error that says retrying may help), it reopens the store
// and tries once more.
func call[T any](f *follower, ctx context.Context, op func(ctx context.Context, s lifeboat.Store) (T, error)) (T, error) {
	s := f.cur()
	c, cancel := context.WithTimeout(ctx, followCallTimeout)
	v, err := op(c, s)
	gone := err != nil && ctx.Err() == nil && (c.Err() != nil || lifeboat.IsRetryable(err))
	cancel()
	if !gone {
		return v, err
	}
	if rerr := f.reopen(ctx, s); rerr != nil {
		return v, err
	}
	c, cancel = context.WithTimeout(ctx, followCallTimeout)
	defer cancel()
	return op(c, f.cur())
}

func (f *follower) State(ctx context.Context) (*lifeboat.State, error) {
	return call(f, ctx, func(ctx context.Context, s lifeboat.Store) (*lifeboat.State, error) { return s.State(ctx) })
}

func (f *follower) Init(ctx context.Context, st *lifeboat.State) (*lifeboat.State, error) {
	return call(f, ctx, func(ctx context.Context, s lifeboat.Store) (*lifeboat.State, error) { return s.Init(ctx, st) })
}

func (f *follower) Begin(ctx context.Context, run *lifeboat.Run) error {
	_, err := call(f, ctx, func(ctx context.Context, s lifeboat.Store) (struct{}, error) { return struct{}{}, s.Begin(ctx, run) })
	return err
}

func (f *follower) Append(ctx context.Context, rec lifeboat.Record, st *lifeboat.State) (uint64, error) {
	return call(f, ctx, func(ctx context.Context, s lifeboat.Store) (uint64, error) { return s.Append(ctx, rec, st) })
}

func (f *follower) Journal(ctx context.Context, run string) ([]lifeboat.Record, error) {
	return call(f, ctx, func(ctx context.Context, s lifeboat.Store) ([]lifeboat.Record, error) { return s.Journal(ctx, run) })
}

func (f *follower) Run(ctx context.Context, id string) (*lifeboat.Run, error) {
	return call(f, ctx, func(ctx context.Context, s lifeboat.Store) (*lifeboat.Run, error) { return s.Run(ctx, id) })
}

func (f *follower) Runs(ctx context.Context) ([]*lifeboat.Run, error) {
	return call(f, ctx, func(ctx context.Context, s lifeboat.Store) ([]*lifeboat.Run, error) { return s.Runs(ctx) })
}

func (f *follower) Update(ctx context.Context, run *lifeboat.Run) error {
	_, err := call(f, ctx, func(ctx context.Context, s lifeboat.Store) (struct{}, error) { return struct{}{}, s.Update(ctx, run) })
	return err
}

func (f *follower) Own(ctx context.Context, run string) (func(), error) {
	return call(f, ctx, func(ctx context.Context, s lifeboat.Store) (func(), error) { return s.Own(ctx, run) })
}

func (f *follower) Owned(ctx context.Context, run string) (bool, error) {
	return call(f, ctx, func(ctx context.Context, s lifeboat.Store) (bool, error) { return s.Owned(ctx, run) })
}

func (f *follower) RequestCancel(ctx context.Context, run, by string) error {
	_, err := call(f, ctx, func(ctx context.Context, s lifeboat.Store) (struct{}, error) {
		return struct{}{}, s.RequestCancel(ctx, run, by)
	})
	return err
}

// WatchCancel is not bounded: a watch waits by design.
func (f *follower) WatchCancel(ctx context.Context, run string) (<-chan string, error) {
	return f.cur().WatchCancel(ctx, run)
}

func (f *follower) Close() error { return f.cur().Close() }
