package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// The peers' load: one writer inserting a uniquely identified row every
// writeEvery through the system's own way to reach the primary (a libpq
// multi-host URI with target_session_attrs=read-write), recording each
// acknowledged id with the time it was sent.
const (
	writeEvery   = 10 * time.Millisecond
	writeTimeout = time.Second // a hung primary counts as failed writes, not a stalled load
)

// write is one attempt.
type write struct {
	id     int64
	sent   time.Time
	took   time.Duration
	acked  bool
	errMsg string
}

// connectTimeout bounds one connection attempt, over every host of a
// multi-host URI (each tried in turn for connect_timeout, as libpq does):
// a cut-off host listed first must not make every attempt fail.
const connectTimeout = 3 * time.Second

// sqlLoad writes until stopped.
type sqlLoad struct {
	uri    string
	dial   func(ctx context.Context, network, addr string) (net.Conn, error) // nil: the host's
	idBase int64                                                             // ids are idBase+1, idBase+2, …
	mu     sync.Mutex
	writes []write
	stop   context.CancelFunc
	done   chan struct{}
}

// createTable makes the load's table on the primary behind uri.
func createTable(ctx context.Context, uri string) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, uri)
	if err != nil {
		return fmt.Errorf("connecting to the primary (%s) to create the load's table: %w", uri, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	_, err = c.Exec(cctx, `CREATE TABLE IF NOT EXISTS bench_writes (id bigint PRIMARY KEY, sent timestamptz NOT NULL)`)
	return err
}

func startSQLLoad(ctx context.Context, uri string) *sqlLoad {
	return startSQLLoadFrom(ctx, uri, nil, 0)
}

// startSQLLoadFrom is startSQLLoad with its own dialer (a client inside a
// site) and ids from idBase+1.
func startSQLLoadFrom(ctx context.Context, uri string, dial func(ctx context.Context, network, addr string) (net.Conn, error), idBase int64) *sqlLoad {
	ctx, cancel := context.WithCancel(ctx)
	l := &sqlLoad{uri: uri, dial: dial, idBase: idBase, stop: cancel, done: make(chan struct{})}
	go l.run(ctx)
	return l
}

func (l *sqlLoad) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(l.uri)
	if err != nil {
		return nil, err
	}
	if l.dial != nil {
		cfg.DialFunc = l.dial
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

func (l *sqlLoad) run(ctx context.Context) {
	defer close(l.done)
	var c *pgx.Conn
	defer func() {
		if c != nil {
			c.Close(context.Background())
		}
	}()
	tick := time.NewTicker(writeEvery)
	defer tick.Stop()
	for id := l.idBase + 1; ; id++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w := write{id: id, sent: time.Now()}
		var err error
		if c == nil {
			c, err = l.connect(ctx)
			if err != nil {
				c = nil
			}
		}
		actx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		if err == nil {
			_, err = c.Exec(actx, `INSERT INTO bench_writes (id, sent) VALUES ($1, $2)`, w.id, w.sent)
			if err != nil {
				// The session may be dead or on a demoted primary: reconnect.
				c.Close(context.Background())
				c = nil
			}
		}
		cancel()
		w.took = time.Since(w.sent)
		if err != nil {
			w.errMsg = err.Error()
		} else {
			w.acked = true
		}
		l.mu.Lock()
		l.writes = append(l.writes, w)
		l.mu.Unlock()
	}
}

// rto is from the fault to the acknowledgement of the first write sent
// after it (a write in flight at the fault does not count) and after the
// last failed one; ok once writes have gone on being acknowledged for
// steady since.
func (l *sqlLoad) rto(fault time.Time, steady time.Duration) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	as := make([]attempt, len(l.writes))
	for i, w := range l.writes {
		as[i] = attempt{sent: w.sent, took: w.took, ok: w.acked}
	}
	return recovery(as, fault, steady)
}

// attempt is one write, of either load.
type attempt struct {
	sent time.Time
	took time.Duration
	ok   bool
}

// recovery is the RTO of attempts (in the order sent): fault → the
// acknowledgement of the first write sent after the fault and after the
// last failed write. A SIGKILLed postmaster's backends may still commit a
// write or two on their open sessions before they notice, and a primary
// restarted in place may take writes until it is failed over: neither is
// the recovery. ok when such a write exists and writes sent for steady
// after it were all acknowledged.
func recovery(as []attempt, fault time.Time, steady time.Duration) (time.Duration, bool) {
	first := -1
	for i, a := range as {
		if a.sent.Before(fault) {
			continue
		}
		switch {
		case !a.ok:
			first = -1
		case first < 0:
			first = i
		}
	}
	if first < 0 || as[len(as)-1].sent.Sub(as[first].sent) < steady {
		return 0, false
	}
	return as[first].sent.Add(as[first].took).Sub(fault), true
}

func (l *sqlLoad) halt() []write {
	l.stop()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writes
}

// lostWrites counts the acknowledged writes missing on the primary behind uri.
func lostWrites(ctx context.Context, uri string, ws []write) (lost, acked int, err error) {
	var ids []int64
	for _, w := range ws {
		if w.acked {
			ids = append(ids, w.id)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var c *pgx.Conn
	for {
		c, err = pgx.Connect(cctx, uri)
		if err == nil {
			break
		}
		if cctx.Err() != nil {
			return 0, len(ids), fmt.Errorf("no writable primary behind %s within 30s to check the writes: %w", uri, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer c.Close(context.WithoutCancel(ctx))
	var present int
	if err := c.QueryRow(cctx, `SELECT count(*) FROM bench_writes WHERE id = ANY($1)`, ids).Scan(&present); err != nil {
		return 0, len(ids), fmt.Errorf("reading the writes back: %w", err)
	}
	return len(ids) - present, len(ids), nil
}

// waitFor polls cond every 50 ms until it holds or within passes.
func waitFor(ctx context.Context, within time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
