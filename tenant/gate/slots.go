package gate

import (
	"context"
	"sync"
)

// slots bounds the concurrent sessions to one pool in one region. The
// limit changes at run time (a failover raises a standby pool's), and
// waiters are served first come, first served, so a burst of new
// connections cannot starve one that has waited longer.
type slots struct {
	mu    sync.Mutex
	limit int // 0: no limit
	used  int
	queue []*slotWaiter
}

type slotWaiter struct {
	ready   chan struct{}
	granted bool // under slots.mu
}

// acquire takes a slot, waiting until one is free or ctx ends.
func (s *slots) acquire(ctx context.Context) error {
	s.mu.Lock()
	if len(s.queue) == 0 && s.freeLocked() {
		s.used++
		s.mu.Unlock()
		return nil
	}
	w := &slotWaiter{ready: make(chan struct{})}
	s.queue = append(s.queue, w)
	s.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted {
		// Granted as ctx ended: hand the slot on.
		s.used--
		s.grantLocked()
		return ctx.Err()
	}
	for i, q := range s.queue {
		if q == w {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			break
		}
	}
	return ctx.Err()
}

func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used--
	s.grantLocked()
}

func (s *slots) setLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = max(n, 0)
	s.grantLocked()
}

func (s *slots) freeLocked() bool { return s.limit == 0 || s.used < s.limit }

func (s *slots) grantLocked() {
	for len(s.queue) > 0 && s.freeLocked() {
		w := s.queue[0]
		s.queue = s.queue[1:]
		s.used++
		w.granted = true
		close(w.ready)
	}
}

// Usage is one pool's sessions in one region.
type Usage struct {
	Pool, Region string
	Limit        int // 0: no limit
	InUse        int // relayed sessions
	Waiting      int // connections waiting for a slot
}

func (s *slots) usage() (limit, used, waiting int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit, s.used, len(s.queue)
}
