package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

// hungLink forwards TCP on 127.0.0.1 to upstream until Hang: from then on
// it forwards nothing either way and closes nothing, as a link whose
// packets vanish (a hung region).
type hungLink struct {
	l        net.Listener
	upstream string
	hung     chan struct{}
	hangOnce sync.Once
	mu       sync.Mutex
	conns    []net.Conn
}

func newHungLink(t testing.TB, upstream string) *hungLink {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hungLink{l: l, upstream: upstream, hung: make(chan struct{})}
	done := make(chan struct{})
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { h.serve(c, done) })
		}
	}()
	t.Cleanup(func() {
		l.Close()
		close(done)
		h.mu.Lock()
		for _, c := range h.conns {
			c.Close()
		}
		h.mu.Unlock()
		wg.Wait()
	})
	return h
}

func (h *hungLink) Addr() string { return h.l.Addr().String() }

// Hang stops the link for good.
func (h *hungLink) Hang() { h.hangOnce.Do(func() { close(h.hung) }) }

func (h *hungLink) serve(c net.Conn, done chan struct{}) {
	up, err := net.Dial("tcp", h.upstream)
	if err != nil {
		c.Close()
		return
	}
	h.mu.Lock()
	h.conns = append(h.conns, c, up)
	h.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-h.hung:
				<-done // hold the bytes and the connection until the test ends
				return
			default:
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					dst.Close()
				}
				return
			}
		}
	}
	wg.Go(func() { pipe(up, c) })
	wg.Go(func() { pipe(c, up) })
	wg.Wait()
}

// A fence must be quick and certain even when the old primary's standby
// sits behind a hung link: a clean ("fast") shutdown waits for the standby
// to acknowledge the shutdown checkpoint, which never comes (here not
// before wal_sender_timeout, set to 10 minutes so that an unbounded fence
// would run into the test's deadline).
func TestFenceReturnsOnAHungLink(t *testing.T) {
	ctx := timeout(t)
	w := pgtest.StartPrimary(t, pgtest.Name(west), pgtest.Setting("wal_sender_timeout", "10min"))
	link := newHungLink(t, fmt.Sprintf("127.0.0.1:%d", w.Port))
	e := pgtest.StartStandby(t, w, pgtest.Name(east), pgtest.Via(link.Addr()))
	d, err := postgres.New(config(t, w, e, true))
	must(t, err)
	exec(t, ctx, w, "CREATE TABLE t (id int)")
	caughtUp(t, ctx, d, east)

	link.Hang()
	exec(t, ctx, w, "INSERT INTO t VALUES (1)") // WAL the standby will never get
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	must(t, d.Fence(fctx, target(west, 2)))

	// After Fence returns, the node takes no write: nothing listens…
	if c, err := pgx.Connect(ctx, w.DSN("postgres")); err == nil {
		c.Close(ctx)
		t.Fatal("the fenced primary still accepts connections")
	}
	if r := role(t, ctx, d, west); r != lifeboat.DBFenced {
		t.Fatalf("west is %s after the fence, want fenced", r)
	}
	// …and whoever starts it again gets a read-only server.
	w.Start(t)
	_, err = dial(t, ctx, w).Exec(ctx, "INSERT INTO t VALUES (2)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "25006" {
		t.Fatalf("a write on the restarted fenced primary: %v; want read_only_sql_transaction (25006)", err)
	}
}

// During a failover two copies are out of recovery: the old primary,
// fenced read-only (Lifeboat does not run its host here), and the new one.
// The sync watcher must watch the new one. Before the failover it had
// already degraded the old one (its standby stopped streaming), the
// sequence that left the new primary waiting for a standby that could not
// come back: writes timed out until the drill ended.
func TestSyncWatcherFollowsTheFailover(t *testing.T) {
	ctx := timeout(t)
	w := pgtest.StartPrimary(t, pgtest.Name(west))
	e := pgtest.StartStandby(t, w, pgtest.Name(east))
	cfg := config(t, w, e, false)
	cfg.Replication[db] = postgres.Replication{Mode: postgres.ModeSync, DegradeAfter: 200 * time.Millisecond}
	d, err := postgres.New(cfg)
	must(t, err)
	must(t, d.SetReplication(ctx, west))
	exec(t, ctx, w, "CREATE TABLE t (id int)")
	wctx, stop := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- d.WatchSync(wctx, db, 20*time.Millisecond) }()
	defer func() { stop(); <-watched }()

	// The standby stops streaming: the watcher degrades west.
	exec(t, ctx, e, "ALTER SYSTEM SET primary_conninfo = ''")
	exec(t, ctx, e, "SELECT pg_reload_conf()")
	eventually(t, ctx, "the watcher to degrade west", func() (bool, error) {
		ex := d.Exposures(db)
		return len(ex) == 1 && ex[0].Primary == west && ex[0].End.IsZero(), nil
	})

	// Failover: west fenced read-only (still a primary, not in recovery),
	// east promoted.
	must(t, d.Fence(ctx, target(west, 2)))
	must(t, d.Promote(ctx, target(east, 2)))
	for range 10 { // the view once took the first primary in map order
		p, err := d.SyncPrimary(ctx, db)
		must(t, err)
		if p != east {
			t.Fatalf("the sync watcher looks at %s after the failover, want %s", p, east)
		}
	}
	wctx2, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := dial(t, ctx, e).Exec(wctx2, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatalf("a write on the new primary: %v (it waits for a sync standby that is the fenced old primary)", err)
	}
	ex := d.Exposures(db)
	if len(ex) != 2 || ex[0].Primary != west || ex[0].End.IsZero() || ex[1].Primary != east || !ex[1].End.IsZero() {
		t.Fatalf("exposures after the failover: %+v; want west's ended and east's open", ex)
	}
}

// A standby the driver cannot ask (starting up, or hot_standby off) is
// still a standby: a fence leaves it running. It used to stop it, which
// made a start in progress fail (the lab's heal, raced by the fence of a
// region that had lost the quorum).
func TestFenceLeavesAStandbyItCannotAsk(t *testing.T) {
	ctx := timeout(t)
	w := pgtest.StartPrimary(t, pgtest.Name(west))
	e := pgtest.StartStandby(t, w, pgtest.Name(east), pgtest.Setting("hot_standby", "off"))
	d, err := postgres.New(config(t, w, e, true))
	must(t, err)
	pid, ok := e.Instance.PID()
	if !ok {
		t.Fatal("the standby is not running")
	}
	must(t, d.Fence(ctx, target(east, 1)))
	if now, ok := e.Instance.PID(); !ok || now != pid {
		t.Fatalf("the fence stopped the standby (PID %d before, %d running %v after)", pid, now, ok)
	}
}
