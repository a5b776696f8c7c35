package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

// writer inserts increasing ids into whichever cluster takes writes and
// records which inserts were acknowledged (committed without error).
type writer struct {
	clusters []*pgtest.Cluster
	mu       sync.Mutex
	acked    []int64
	failed   int
	stop     chan struct{}
	done     chan struct{}
}

func startWriter(t *testing.T, clusters ...*pgtest.Cluster) *writer {
	w := &writer{clusters: clusters, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	t.Cleanup(w.halt)
	return w
}

func (w *writer) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	ctx := context.Background()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(ctx)
		}
	}()
	for id := int64(1); ; id++ {
		select {
		case <-w.stop:
			return
		default:
		}
		if conn == nil {
			conn = w.primary(ctx)
			if conn == nil {
				time.Sleep(5 * time.Millisecond) // nobody takes writes yet: try again
				continue
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := conn.Exec(cctx, "INSERT INTO load (id) VALUES ($1)", id)
		cancel()
		w.mu.Lock()
		if err == nil {
			w.acked = append(w.acked, id)
		} else {
			w.failed++
		}
		w.mu.Unlock()
		if err != nil {
			conn.Close(ctx)
			conn = nil
		}
	}
}

// primary connects to a cluster that takes writes.
func (w *writer) primary(ctx context.Context) *pgx.Conn {
	for _, c := range w.clusters {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, c.DSN("postgres"))
		if err != nil {
			cancel()
			continue
		}
		var rec, ro bool
		err = conn.QueryRow(cctx, "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')::bool").Scan(&rec, &ro)
		cancel()
		if err == nil && !rec && !ro {
			return conn
		}
		conn.Close(ctx)
	}
	return nil
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func TestSwitchoverUnderLoadLosesNothing(t *testing.T) {
	ctx := timeout(t)
	p := newPair(t, nil)
	exec(t, ctx, p.west, "CREATE TABLE load (id bigint PRIMARY KEY)")
	w := startWriter(t, p.west, p.east)
	waitWrites := func(n int) {
		base := w.count()
		eventually(t, ctx, "writes acknowledged", func() (bool, error) { return w.count() >= base+n, nil })
	}
	waitWrites(50)

	// west → east, then east → west, each applied twice (idempotent).
	for _, move := range []struct {
		from, to string
		epoch    uint64
	}{{west, east, 2}, {east, west, 3}} {
		for range 2 {
			must(t, p.d.Switchover(ctx, target(move.from, move.epoch), target(move.to, move.epoch)))
		}
		if r := role(t, ctx, p.d, move.to); r != lifeboat.DBPrimary {
			t.Fatalf("after the switchover to %s it is %s", move.to, r)
		}
		if r := role(t, ctx, p.d, move.from); r != lifeboat.DBReplica {
			t.Fatalf("after the switchover from %s it is %s", move.from, r)
		}
		rep, ok := p.d.LastSwitchover(move.to)
		if !ok || rep.FinalLSN == 0 {
			t.Fatalf("no switchover report: %+v", rep)
		}
		t.Logf("switchover %s → %s: final LSN %s, write-unavailable %s (stop %s, catch-up %s, promote %s), streaming again after %s",
			move.from, move.to, rep.FinalLSN, rep.WriteUnavailable, rep.Stopped, rep.CaughtUp, rep.Promoted, rep.Streaming)
		waitWrites(50) // writes go on at the new primary
	}
	w.halt()

	final := dial(t, ctx, p.west)
	rows, err := final.Query(ctx, "SELECT id FROM load")
	must(t, err)
	have := map[int64]bool{}
	for rows.Next() {
		var id int64
		must(t, rows.Scan(&id))
		have[id] = true
	}
	must(t, rows.Err())
	missing := 0
	for _, id := range w.acked {
		if !have[id] {
			missing++
			t.Errorf("acknowledged id %d is not on the final primary", id)
		}
	}
	t.Logf("%d acknowledged writes (%d failed during the switchovers), %d missing", len(w.acked), w.failed, missing)
	// The new standby streams from the final primary.
	caughtUp(t, ctx, p.d, east)
}
