package gate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/lifeboat-dr/lifeboat"
)

// TestGate runs every scenario against two real PostgreSQL 15 clusters
// (regions east and west), started once.
func TestGate(t *testing.T) {
	l := startLab(t)

	t.Run("routes each tenant to its database, psql and pgx", func(t *testing.T) {
		t.Parallel()
		cat := newCatalog()
		cat.put(l.tenant("acme", "east", lifeboat.TenantAvailable))
		cat.put(l.tenant("globex", "east", lifeboat.TenantAvailable))
		cat.put(l.tenant("umbrella", "west", lifeboat.TenantAvailable))
		g := startGate(t, testConfig(), cat, newRecovery(cat))
		for _, tc := range []struct{ db, port string }{
			{"acme", fmt.Sprint(l.east.Port)}, {"globex", fmt.Sprint(l.east.Port)}, {"umbrella", fmt.Sprint(l.west.Port)},
		} {
			c := mustConnect(t, g.Addr(), tc.db)
			if got := currentDatabase(t, c); got != tc.db {
				t.Errorf("pgx through the gate to %s reached database %s", tc.db, got)
			}
			// psql: sslmode=prefer asks for TLS first; the gate declines and
			// psql goes on in clear text.
			for _, mode := range []string{"prefer", "disable"} {
				out, stderr, err := psql(t, gateConninfo(g, tc.db, mode), "SELECT current_database() || ' ' || current_setting('port')")
				if err != nil {
					t.Fatalf("psql sslmode=%s to %s through the gate: %v: %s", mode, tc.db, err, stderr)
				}
				if want := tc.db + " " + tc.port; out != want {
					t.Errorf("psql sslmode=%s to %s: got %q, want %q", mode, tc.db, out, want)
				}
			}
		}
		// pgx with sslmode=prefer: TLS declined, then clear text.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgxConnect(ctx, dsn(g.Addr(), "acme", "prefer"))
		if err != nil {
			t.Fatalf("pgx sslmode=prefer: %v", err)
		}
		defer c.Close(ctx)
		if got := currentDatabase(t, c); got != "acme" {
			t.Errorf("pgx sslmode=prefer reached %s", got)
		}
		// A wrong password is refused by the pool's PostgreSQL: auth is end to end.
		_, err = pgxConnect(ctx, strings.Replace(dsn(g.Addr(), "acme", "disable"), "lifeboat-test", "wrong", 1))
		if code, _ := sqlstate(err); code != "28P01" {
			t.Errorf("wrong password through the gate: got %v (SQLSTATE %q), want 28P01 from PostgreSQL", err, code)
		}
	})

	t.Run("schema isolation: shared database, search_path set", func(t *testing.T) {
		t.Parallel()
		cat := newCatalog()
		loc := l.tenant("initech", "east", lifeboat.TenantAvailable)
		loc.Database, loc.Schema = "shared", "initech"
		cat.put(loc)
		g := startGate(t, testConfig(), cat, nil)
		c := mustConnect(t, g.Addr(), "initech")
		var db, schema string
		var id int
		if err := c.QueryRow(context.Background(), "SELECT current_database(), current_schema(), (SELECT id FROM staplers)").Scan(&db, &schema, &id); err != nil {
			t.Fatal(err)
		}
		if db != "shared" || schema != "initech" || id != 42 {
			t.Errorf("got database %s schema %s id %d, want shared initech 42", db, schema, id)
		}
	})

	t.Run("held tenant gets through once recovered; hurried once", func(t *testing.T) {
		t.Parallel()
		cat := newCatalog()
		cat.put(l.tenant("hooli", "east", lifeboat.TenantQueued))
		rec := newRecovery(cat)
		rec.flip, rec.delay = true, 300*time.Millisecond
		g := startGate(t, testConfig(), cat, rec)
		// Three clients at once for the same tenant: one hurry, one poller.
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := connect(t, g.Addr(), "hooli")
				if err == nil {
					defer c.Close(context.Background())
					if got := currentDatabase(t, c); got != "hooli" {
						err = fmt.Errorf("reached %s", got)
					}
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		}
		if n := rec.hurries("hooli"); n != 1 {
			t.Errorf("Hurry(hooli) called %d times, want 1", n)
		}
		// A client scheduled late may find hooli already available: at
		// least the first was held.
		if s := g.Stats(); s.Held < 1 || s.Relayed != 3 {
			t.Errorf("stats %+v: want at least 1 held, 3 relayed", s)
		}
	})

	t.Run("Wake lets a held client through without waiting for the poll", func(t *testing.T) {
		t.Parallel()
		cat := newCatalog()
		cat.put(l.tenant("globex", "east", lifeboat.TenantFailed))
		rec := newRecovery(cat)
		rec.flip = true
		cfg := testConfig()
		cfg.Poll = time.Hour // only Wake can end the hold within the test
		g := startGate(t, cfg, cat, rec)
		rec.gate.Store(g)
		c := mustConnect(t, g.Addr(), "globex")
		if got := currentDatabase(t, c); got != "globex" || rec.hurries("globex") != 1 {
			t.Errorf("reached %s, hurried %d times", got, rec.hurries("globex"))
		}
	})

	t.Run("tenant never recovered: 57P03 saying what is happening", func(t *testing.T) {
		t.Parallel()
		cat := newCatalog()
		cat.put(l.tenant("pied", "east", lifeboat.TenantRestoring))
		rec := newRecovery(cat)
		rec.pos["pied"] = [2]int{3, 41}
		cfg := testConfig()
		cfg.Wait = 400 * time.Millisecond
		g := startGate(t, cfg, cat, rec)
		_, err := connect(t, g.Addr(), "pied")
		code, msg := sqlstate(err)
		if code != "57P03" {
			t.Fatalf("got %v (SQLSTATE %q), want 57P03", err, code)
		}
		if want := "tenant pied is being restored in east (position 3 of 41)"; !strings.Contains(msg, want) || !strings.Contains(msg, "try again shortly") {
			t.Errorf("message %q does not say %q ... try again shortly", msg, want)
		}
		if rec.hurries("pied") != 1 {
			t.Errorf("Hurry(pied) called %d times, want 1", rec.hurries("pied"))
		}
		// psql shows the same message to a person.
		_, stderr, err := psql(t, gateConninfo(g, "pied", "prefer"), "SELECT 1")
		if err == nil || !strings.Contains(stderr, "is being restored in east") {
			t.Errorf("psql: err %v, stderr %q", err, stderr)
		}
		// The poller stops once nobody waits.
		eventually(t, "no waiter left", func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			return len(g.waiters) == 0
		})
	})

	t.Run("unknown tenant: 3D000", func(t *testing.T) {
		t.Parallel()
		g := startGate(t, testConfig(), newCatalog(), nil)
		_, err := connect(t, g.Addr(), "nosuch")
		if code, msg := sqlstate(err); code != "3D000" || !strings.Contains(msg, `tenant "nosuch" does not exist in the catalog`) {
			t.Errorf("got %v (SQLSTATE %q)", err, code)
		}
		_, stderr, err := psql(t, gateConninfo(g, "nosuch", "prefer"), "SELECT 1")
		if err == nil || !strings.Contains(stderr, "does not exist in the catalog") {
			t.Errorf("psql: err %v, stderr %q", err, stderr)
		}
	})

	t.Run("capacity 1: second session waits for the first", func(t *testing.T) {
		t.Parallel()
		cat := newCatalog()
		cat.put(l.tenant("acme", "east", lifeboat.TenantAvailable))
		cat.put(l.tenant("globex", "east", lifeboat.TenantAvailable))
		g := startGate(t, testConfig(), cat, nil)
		g.SetCapacity("main", "east", 1)
		first := mustConnect(t, g.Addr(), "acme")
		type result struct {
			db  string
			err error
		}
		second := make(chan result, 1)
		go func() {
			c, err := connect(t, g.Addr(), "globex")
			if err != nil {
				second <- result{err: err}
				return
			}
			defer c.Close(context.Background())
			var db string
			err = c.QueryRow(context.Background(), "SELECT current_database()").Scan(&db)
			second <- result{db, err}
		}()
		eventually(t, "the second session to wait for a slot", func() bool { return g.Usage("main", "east").Waiting == 1 })
		select {
		case r := <-second:
			t.Fatalf("second session got through while the first held the only slot: %+v", r)
		default:
		}
		first.Close(context.Background())
		r := <-second
		if r.err != nil || r.db != "globex" {
			t.Fatalf("second session after the first closed: %+v", r)
		}
		if u := g.Usage("main", "east"); u.Limit != 1 {
			t.Errorf("usage %+v", u)
		}
	})

	t.Run("capacity full for the whole wait: 53300", func(t *testing.T) {
		t.Parallel()
		cat := newCatalog()
		cat.put(l.tenant("acme", "east", lifeboat.TenantAvailable))
		cfg := testConfig()
		cfg.Wait = 300 * time.Millisecond
		g := startGate(t, cfg, cat, nil)
		g.SetCapacity("main", "east", 1)
		mustConnect(t, g.Addr(), "acme")
		_, err := connect(t, g.Addr(), "acme")
		if code, msg := sqlstate(err); code != "53300" || !strings.Contains(msg, "pool main in east is at its limit of 1 sessions") {
			t.Fatalf("got %v (SQLSTATE %q)", err, code)
		}
		// Raising the capacity (a failover) lets the next one through.
		g.SetCapacity("main", "east", 2)
		mustConnect(t, g.Addr(), "acme")
	})

	t.Run("cancel request forwarded to the session's pool", func(t *testing.T) {
		t.Parallel()
		cat := newCatalog()
		cat.put(l.tenant("umbrella", "west", lifeboat.TenantAvailable))
		g := startGate(t, testConfig(), cat, nil)
		c := mustConnect(t, g.Addr(), "umbrella")
		done := make(chan error, 1)
		go func() {
			_, err := c.Exec(context.Background(), "SELECT pg_sleep(60)")
			done <- err
		}()
		direct := mustConnect(t, l.addr(l.west), "umbrella")
		eventually(t, "pg_sleep to run", func() bool {
			var n int
			_ = direct.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'").Scan(&n)
			return n == 1
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// pgconn sends the cancel to the address it connected to: the gate.
		if err := c.PgConn().CancelRequest(ctx); err != nil {
			t.Fatal(err)
		}
		err := <-done
		if code, _ := sqlstate(err); code != "57014" {
			t.Fatalf("query after cancel: %v (SQLSTATE %q), want 57014 query_canceled", err, code)
		}
		eventually(t, "the cancel counted", func() bool { return g.Stats().Cancels == 1 })
	})

	t.Run("pgbench -c 4 -T 3 through the gate", func(t *testing.T) {
		t.Parallel()
		cat := newCatalog()
		cat.put(l.tenant("bench", "east", lifeboat.TenantAvailable))
		g := startGate(t, testConfig(), cat, nil)
		host, port, _ := net.SplitHostPort(g.Addr())
		run := func(args ...string) string {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, binDir+"/pgbench", append([]string{"-h", host, "-p", port, "-U", "lifeboat"}, args...)...)
			cmd.Env = append(cmd.Environ(), "PGPASSWORD=lifeboat-test")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("pgbench %v: %v\n%s", args, err, out)
			}
			return string(out)
		}
		run("-i", "-s", "1", "bench")
		out := run("-n", "-c", "4", "-T", "3", "bench")
		if !strings.Contains(out, "number of failed transactions: 0") {
			t.Errorf("pgbench through the gate:\n%s", out)
		}
		t.Logf("pgbench through the gate:\n%s", out)
	})

	t.Run("close ends relayed and held sessions", func(t *testing.T) {
		t.Parallel()
		cat := newCatalog()
		cat.put(l.tenant("acme", "east", lifeboat.TenantAvailable))
		cat.put(l.tenant("hooli", "east", lifeboat.TenantQueued))
		g := startGate(t, testConfig(), cat, nil)
		c := mustConnect(t, g.Addr(), "acme")
		held := make(chan error, 1)
		go func() {
			_, err := connect(t, g.Addr(), "hooli")
			held <- err
		}()
		eventually(t, "a held connection", func() bool { return g.Stats().Held == 1 })
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Ping(context.Background()); err == nil {
			t.Error("a relayed session survived Close")
		}
		if err := <-held; err == nil {
			t.Error("a held connection got through after Close")
		}
	})

	t.Run("disconnect a moved tenant's sessions", func(t *testing.T) {
		t.Parallel()
		cat := newCatalog()
		cat.put(l.tenant("acme", "east", lifeboat.TenantAvailable))
		g := startGate(t, testConfig(), cat, nil)
		c := mustConnect(t, g.Addr(), "acme")
		if n := g.Disconnect("acme"); n != 1 {
			t.Errorf("Disconnect closed %d sessions, want 1", n)
		}
		if err := c.Ping(context.Background()); err == nil {
			t.Error("session survived Disconnect")
		}
	})
}

// TestStartupMessage drives the gate with raw protocol messages: no
// PostgreSQL needed.
func TestStartupMessage(t *testing.T) {
	g := startGate(t, testConfig(), newCatalog(), nil)
	dial := func() (net.Conn, *pgproto3.Frontend) {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		return c, pgproto3.NewFrontend(c, c)
	}

	t.Run("GSSENCRequest and SSLRequest declined, then the user names the tenant", func(t *testing.T) {
		c, fe := dial()
		for _, m := range []pgproto3.FrontendMessage{&pgproto3.GSSEncRequest{}, &pgproto3.SSLRequest{}} {
			fe.Send(m)
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			var b [1]byte
			if _, err := c.Read(b[:]); err != nil || b[0] != 'N' {
				t.Fatalf("answer to %T: %q, %v", m, b[0], err)
			}
		}
		// No database: PostgreSQL's default is the user's name.
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "wile"}})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		e, ok := m.(*pgproto3.ErrorResponse)
		if !ok || e.Code != "3D000" || e.Severity != "FATAL" || !strings.Contains(e.Message, `"wile"`) {
			t.Fatalf("got %#v", m)
		}
	})

	t.Run("cancel request for no session is dropped", func(t *testing.T) {
		c, fe := dial()
		fe.Send(&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if n, err := c.Read(b[:]); n != 0 || err == nil {
			t.Fatalf("got %d bytes, %v; want the connection closed", n, err)
		}
	})

	t.Run("garbage is closed", func(t *testing.T) {
		c, _ := dial()
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := c.Read(b[:]); err == nil {
			t.Fatal("the gate answered garbage")
		}
	})
}

func TestSlots(t *testing.T) {
	var s slots
	s.setLimit(1)
	ctx := context.Background()
	if err := s.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	// A waiter that gives up leaves the line.
	short, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.acquire(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	// First come, first served.
	order := make(chan int, 2)
	for i := range 2 {
		go func() {
			if err := s.acquire(ctx); err == nil {
				order <- i
			}
		}()
		eventually(t, "waiter in line", func() bool { _, _, w := s.usage(); return w == i+1 })
	}
	s.release()
	if got := <-order; got != 0 {
		t.Errorf("slot went to waiter %d, want 0", got)
	}
	// Raising the limit lets the rest in at once.
	s.setLimit(3)
	if got := <-order; got != 1 {
		t.Errorf("got waiter %d", got)
	}
	if l, u, w := s.usage(); l != 3 || u != 2 || w != 0 {
		t.Errorf("usage %d %d %d", l, u, w)
	}
}

func TestConfig(t *testing.T) {
	if err := ValidateConfig(DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	err := ValidateConfig(Config{})
	for _, want := range []string{"Listen is empty", "Wait (tenants.gate.wait) is 0s", "Log is nil"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateConfig(zero) = %v, want it to say %q", err, want)
		}
	}
	c := ConfigFromSpec(&lifeboat.TenantGate{Listen: "127.0.0.1:7432", Wait: lifeboat.Duration(5 * time.Second)})
	if c.Listen != "127.0.0.1:7432" || c.Wait != 5*time.Second {
		t.Errorf("ConfigFromSpec: %+v", c)
	}
	p := lifeboat.Pool{Capacity: &lifeboat.PoolCapacity{Active: 100, Standby: 10}}
	if Capacity(p, true) != 10 || Capacity(p, false) != 100 || Capacity(lifeboat.Pool{}, true) != 0 {
		t.Error("Capacity")
	}
	p.Capacity.Standby = 0
	if Capacity(p, true) != 100 {
		t.Error("Capacity: Standby defaults to Active")
	}
	if _, err := New(DefaultConfig(), nil, nil); err == nil {
		t.Error("New without a Directory succeeded")
	}
}

func TestRewriteStartup(t *testing.T) {
	m := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u", "database": "t1", "options": "-c work_mem=8MB"}}
	raw, err := rewriteStartup(m, Location{Database: "shared", Schema: `we ird"`})
	if err != nil {
		t.Fatal(err)
	}
	var got pgproto3.StartupMessage
	if err := got.Decode(raw[4:]); err != nil {
		t.Fatal(err)
	}
	if got.Parameters["database"] != "shared" || got.Parameters["options"] != `-c work_mem=8MB -c search_path="we\ ird"""` {
		t.Errorf("got %v", got.Parameters)
	}
	if m.Parameters["database"] != "t1" {
		t.Error("the client's message was changed")
	}
}
