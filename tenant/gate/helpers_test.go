package gate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

const binDir = "/usr/lib/postgresql/15/bin"

// catalog is an in-memory Directory.
type catalog struct {
	mu   sync.Mutex
	locs map[string]Location
}

func newCatalog() *catalog { return &catalog{locs: map[string]Location{}} }

func (c *catalog) Locate(ctx context.Context, name string) (Location, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.locs[name]
	if !ok {
		return Location{}, fmt.Errorf("catalog: %q: %w", name, ErrUnknownTenant)
	}
	return l, nil
}

func (c *catalog) put(l Location) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.locs[l.Tenant.Name] = l
}

func (c *catalog) setState(name string, s lifeboat.TenantState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.locs[name]
	l.Tenant.State = s
	c.locs[name] = l
}

// recovery is a fake scheduler: Hurry counts, and, if flip is set, makes
// the tenant available after delay (then wakes the gate, if set).
type recovery struct {
	cat   *catalog
	delay time.Duration
	flip  bool
	gate  atomic.Pointer[Gate] // woken when set

	mu      sync.Mutex
	hurried map[string]int
	pos     map[string][2]int
}

func newRecovery(cat *catalog) *recovery {
	return &recovery{cat: cat, hurried: map[string]int{}, pos: map[string][2]int{}}
}

func (r *recovery) Hurry(name string) {
	r.mu.Lock()
	r.hurried[name]++
	r.mu.Unlock()
	if r.flip {
		time.AfterFunc(r.delay, func() {
			r.cat.setState(name, lifeboat.TenantAvailable)
			if g := r.gate.Load(); g != nil {
				g.Wake(name)
			}
		})
	}
}

func (r *recovery) Position(name string) (int, int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pos[name]
	return p[0], p[1], ok
}

func (r *recovery) hurries(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hurried[name]
}

// lab is two "regions", each a PostgreSQL cluster hosting one pool.
type lab struct {
	east, west *pgtest.Cluster
}

func (l *lab) addr(c *pgtest.Cluster) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port))
}

func startLab(t testing.TB) *lab {
	t.Helper()
	if _, err := os.Stat(binDir + "/postgres"); err != nil {
		t.Skipf("PostgreSQL 15 is not installed at %s", binDir)
	}
	var l lab
	var wg sync.WaitGroup
	wg.Add(2)
	// Both at once: each takes a second or so.
	go func() { defer wg.Done(); l.east = pgtest.StartPrimary(t, pgtest.Name("east")) }()
	go func() { defer wg.Done(); l.west = pgtest.StartPrimary(t, pgtest.Name("west")) }()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	exec := func(c *pgtest.Cluster, db string, stmts ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.DSN(db))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, s := range stmts {
			if _, err := conn.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
	exec(l.east, "postgres", "CREATE DATABASE acme", "CREATE DATABASE globex", "CREATE DATABASE hooli",
		"CREATE DATABASE pied", "CREATE DATABASE bench", "CREATE DATABASE shared")
	exec(l.east, "shared", "CREATE SCHEMA initech", "CREATE TABLE initech.staplers (id int)", "INSERT INTO initech.staplers VALUES (42)")
	exec(l.west, "postgres", "CREATE DATABASE umbrella")
	return &l
}

// tenant is a catalog entry for name in pool "main" (east) or "west".
func (l *lab) tenant(name, region string, state lifeboat.TenantState) Location {
	c := l.east
	if region == "west" {
		c = l.west
	}
	return Location{Tenant: lifeboat.Tenant{Name: name, Tier: "paid", Pool: "main", Region: region, State: state, Epoch: 1}, Addr: l.addr(c)}
}

func testConfig() Config {
	c := DefaultConfig()
	c.Listen = "127.0.0.1:0"
	c.Wait = 20 * time.Second
	c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	return c
}

func startGate(t testing.TB, c Config, dir Directory, rec Recovery) *Gate {
	t.Helper()
	g, err := New(c, dir, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// dsn is the URL of database db through the gate (or any host:port).
func dsn(addr, db, sslmode string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=%s&connect_timeout=30", pgtest.User, pgtest.Password, addr, db, sslmode)
}

func connect(t testing.TB, addr, db string) (*pgx.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return pgx.Connect(ctx, dsn(addr, db, "disable"))
}

func mustConnect(t testing.TB, addr, db string) *pgx.Conn {
	t.Helper()
	c, err := connect(t, addr, db)
	if err != nil {
		t.Fatalf("connect to %s through %s: %v", db, addr, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func currentDatabase(t testing.TB, c *pgx.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var db string
	if err := c.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	return db
}

// sqlstate is err's SQLSTATE and message, if it carries one.
func sqlstate(err error) (code, msg string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.Message
	}
	return "", ""
}

// psql runs Debian's psql against conninfo; it returns stdout and stderr.
func psql(t testing.TB, conninfo, query string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binDir+"/psql", conninfo, "-XAtc", query)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pgtest.Password, "PGCONNECT_TIMEOUT=30")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return strings.TrimSpace(out.String()), strings.TrimSpace(errb.String()), err
}

func gateConninfo(g *Gate, db, sslmode string) string {
	host, port, _ := net.SplitHostPort(g.Addr())
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=%s", host, port, pgtest.User, db, sslmode)
}

// eventually waits (bounded) for cond.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pgxConnect(ctx context.Context, dsn string) (*pgx.Conn, error) { return pgx.Connect(ctx, dsn) }
