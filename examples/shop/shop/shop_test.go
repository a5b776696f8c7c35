package shop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
	"github.com/lifeboat-dr/lifeboat/lab/wan"
)

// patience bounds every wait for a condition; tests never depend on it
// being short.
const patience = 60 * time.Second

type shopUnderTest struct {
	t    *testing.T
	url  string
	stop func()
}

// startShop runs the shop on a free loopback port against dsn until the
// test ends (or stop is called).
func startShop(t *testing.T, dsn, region string, tweak ...func(*Config)) *shopUnderTest {
	t.Helper()
	c := DefaultConfig()
	c.Addr = "127.0.0.1:0"
	c.DatabaseURL = dsn
	c.Region = region
	c.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	for _, f := range tweak {
		f(&c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c, func(a string) { addr <- a }) }()
	var s *shopUnderTest
	select {
	case a := <-addr:
		s = &shopUnderTest{t: t, url: "http://" + a}
	case err := <-done:
		cancel()
		t.Fatalf("shop did not start: %v", err)
	case <-time.After(patience):
		cancel()
		t.Fatal("shop did not start listening")
	}
	stopped := false
	s.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shop stopped with: %v", err)
		}
	}
	t.Cleanup(s.stop)
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var client = &http.Client{Timeout: 30 * time.Second}

func (s *shopUnderTest) do(method, path, body string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *shopUnderTest) order(item string, qty int) Placed {
	s.t.Helper()
	code, body := s.do("POST", "/orders", fmt.Sprintf(`{"item": %q, "qty": %d}`, item, qty))
	if code != http.StatusCreated {
		s.t.Fatalf("POST /orders: %d %s", code, body)
	}
	var p Placed
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		s.t.Fatalf("POST /orders answer %q: %v", body, err)
	}
	return p
}

// eventually polls cond until it holds or patience runs out.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s; last: %s", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *shopUnderTest) waitHealth(want int, contains string) {
	s.t.Helper()
	s.waitProbe("/healthz", want, contains)
}

// waitReady waits until the shop takes orders (its database takes writes).
func (s *shopUnderTest) waitReady() {
	s.t.Helper()
	s.waitProbe("/readyz", http.StatusOK, "ok")
}

func (s *shopUnderTest) waitProbe(path string, want int, contains string) {
	s.t.Helper()
	eventually(s.t, fmt.Sprintf("%s %d %q", path, want, contains), func() (bool, string) {
		code, body := s.do("GET", path, "")
		return code == want && strings.Contains(body, contains), fmt.Sprintf("%d %s", code, body)
	})
}

func TestFromEnv(t *testing.T) {
	env := map[string]string{"PORT": "8081", "DATABASE_URL": "postgres://u:p@127.0.0.1:5432/shop", "LIFEBOAT_REGION": "primary"}
	c, err := FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8081" || c.Region != "primary" || c.DatabaseURL != env["DATABASE_URL"] {
		t.Fatalf("config = %+v", c)
	}
	for _, k := range []string{"PORT", "DATABASE_URL", "LIFEBOAT_REGION"} {
		saved := env[k]
		env[k] = ""
		_, err := FromEnv(func(k string) string { return env[k] })
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("without %s: err = %v, want it to name %s", k, err, k)
		}
		env[k] = saved
	}
	env["PORT"] = "http"
	if _, err := FromEnv(func(k string) string { return env[k] }); err == nil {
		t.Error("PORT=http accepted")
	}
	env["PORT"] = "8081"
	env["DATABASE_URL"] = "postgres://u:secret@127.0.0.1:notaport/shop"
	if _, err := FromEnv(func(k string) string { return env[k] }); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad DATABASE_URL: err = %v, want an error that does not show the password", err)
	}
}

func TestOrdersOnPrimary(t *testing.T) {
	pg := pgtest.StartPrimary(t)
	s := startShop(t, pg.DSN("postgres"), "primary")
	s.waitHealth(http.StatusOK, "ok")

	var last int64
	for i := 1; i <= 5; i++ {
		p := s.order(fmt.Sprintf("tea-%d", i), i)
		if p.Region != "primary" || p.ID <= last {
			t.Fatalf("order %d: %+v; want region primary and id > %d", i, p, last)
		}
		last = p.ID
		code, body := s.do("GET", fmt.Sprintf("/orders/%d", p.ID), "")
		var o Order
		if code != http.StatusOK || json.Unmarshal([]byte(body), &o) != nil {
			t.Fatalf("GET order %d: %d %s", p.ID, code, body)
		}
		if o.ID != p.ID || o.Item != fmt.Sprintf("tea-%d", i) || o.Qty != i || o.Region != "primary" {
			t.Fatalf("GET order %d = %+v", p.ID, o)
		}
	}
	for path, want := range map[string]int{"/orders/999999": 404, "/orders/x": 400, "/orders/0": 400} {
		if code, body := s.do("GET", path, ""); code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, want)
		}
	}
	for _, body := range []string{`{`, `{"item": "", "qty": 1}`, `{"item": "tea", "qty": 0}`, `{"item": "tea", "qty": 1, "price": 3}`} {
		if code, resp := s.do("POST", "/orders", body); code != http.StatusBadRequest {
			t.Errorf("POST %s: %d %s, want 400", body, code, resp)
		}
	}
	// A second shop on the same database (a restart) finds the table.
	s2 := startShop(t, pg.DSN("postgres"), "primary")
	if p := s2.order("coffee", 1); p.ID <= last {
		t.Fatalf("second shop's order id %d, want > %d", p.ID, last)
	}
}

func TestAcknowledgedOrdersSurviveCrash(t *testing.T) {
	pg := pgtest.StartPrimary(t)
	s := startShop(t, pg.DSN("postgres"), "primary")
	acked := map[int64]string{}
	for i := 0; i < 20; i++ {
		item := fmt.Sprintf("item-%d", i)
		acked[s.order(item, 1).ID] = item
	}
	// Stop the shop, then crash the database: every 201 must still be there.
	s.stop()
	pg.Kill(t)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	// Kill waits for the postmaster only; its backends may hold the shared
	// memory a moment longer, and pg_ctl start refuses until they are gone.
	eventually(t, "PostgreSQL to restart after the crash", func() (bool, string) {
		err := pg.Instance.Start(ctx)
		return err == nil, fmt.Sprint(err)
	})
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id, item FROM orders")
	if err != nil {
		t.Fatal(err)
	}
	found := map[int64]string{}
	for rows.Next() {
		var id int64
		var item string
		if err := rows.Scan(&id, &item); err != nil {
			t.Fatal(err)
		}
		found[id] = item
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id, item := range acked {
		if found[id] != item {
			t.Errorf("acknowledged order %d (%s) lost after crash: found %q", id, item, found[id])
		}
	}
}

func TestReconnectsAfterDatabaseRestart(t *testing.T) {
	pg := pgtest.StartPrimary(t)
	s := startShop(t, pg.DSN("postgres"), "primary")
	first := s.order("before", 1)
	pg.Stop(t)
	s.waitHealth(http.StatusServiceUnavailable, "database")
	if code, body := s.do("POST", "/orders", `{"item": "during", "qty": 1}`); code != http.StatusServiceUnavailable {
		t.Fatalf("POST with the database down: %d %s, want 503", code, body)
	}
	pg.Start(t)
	s.waitHealth(http.StatusOK, "ok")
	// Pooled connections died with the server; the shop must not need a
	// restart. The first POST after recovery may still meet a dead pooled
	// connection only if it cannot be retried safely, so wait for one 201.
	eventually(t, "an order after the restart", func() (bool, string) {
		code, body := s.do("POST", "/orders", `{"item": "after", "qty": 1}`)
		return code == http.StatusCreated, fmt.Sprintf("%d %s", code, body)
	})
	if code, _ := s.do("GET", fmt.Sprintf("/orders/%d", first.ID), ""); code != http.StatusOK {
		t.Fatalf("order %d before the restart: %d", first.ID, code)
	}
}

func TestStandbyThenPromote(t *testing.T) {
	primary := pgtest.StartPrimary(t, pgtest.Name("west"))
	standby := pgtest.StartStandby(t, primary, pgtest.Name("east"))

	west := startShop(t, primary.DSN("postgres"), "primary")
	east := startShop(t, standby.DSN("postgres"), "secondary")

	placed := west.order("tea", 2)
	east.waitHealth(http.StatusOK, "database is read-only (standby)")
	if code, body := east.do("GET", "/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "read-only (standby)") {
		t.Fatalf("readyz of the standby's shop: %d %s, want 503 read-only", code, body)
	}
	code, body := east.do("POST", "/orders", `{"item": "tea", "qty": 1}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "read-only") {
		t.Fatalf("POST to the standby's shop: %d %s, want 503 read-only", code, body)
	}
	// Reads work on a hot standby once the order has replayed.
	eventually(t, "the order to replay on the standby", func() (bool, string) {
		code, body := east.do("GET", fmt.Sprintf("/orders/%d", placed.ID), "")
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	})

	// Failover: promote the standby; the same shop process takes orders.
	west.stop()
	promote(t, standby)
	east.waitReady()
	p := east.order("coffee", 1)
	if p.Region != "secondary" || p.ID <= placed.ID {
		t.Fatalf("order after promotion: %+v; want region secondary and id > %d", p, placed.ID)
	}
}

func TestStandbyWithoutTableThenPromote(t *testing.T) {
	// The primary's shop never ran: the table does not exist anywhere, and
	// the standby's shop must still start, then create it after promotion.
	primary := pgtest.StartPrimary(t)
	standby := pgtest.StartStandby(t, primary)
	east := startShop(t, standby.DSN("postgres"), "secondary")
	east.waitHealth(http.StatusOK, "database is read-only (standby)")
	if code, body := east.do("GET", "/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "read-only (standby)") {
		t.Fatalf("readyz of the standby's shop: %d %s, want 503 read-only", code, body)
	}
	if code, body := east.do("GET", "/orders/1", ""); code != http.StatusNotFound {
		t.Fatalf("GET with no table: %d %s, want 404", code, body)
	}
	if code, body := east.do("POST", "/orders", `{"item": "tea", "qty": 1}`); code != http.StatusServiceUnavailable {
		t.Fatalf("POST to the standby's shop: %d %s, want 503", code, body)
	}
	promote(t, standby)
	east.waitReady()
	east.order("tea", 1)
}

func TestHungDatabaseFailsHealthFast(t *testing.T) {
	pg := pgtest.StartPrimary(t)
	link, err := wan.Open(wan.Config{Name: "shop-db", Listen: "127.0.0.1:0", Upstream: fmt.Sprintf("127.0.0.1:%d", pg.Port)})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	dsn := strings.Replace(pg.DSN("postgres"), fmt.Sprintf("port=%d", pg.Port), "port="+portOf(t, link.Addr()), 1)
	s := startShop(t, dsn, "primary", func(c *Config) {
		c.HealthTimeout = 300 * time.Millisecond
		c.RequestTimeout = time.Second
	})
	s.waitHealth(http.StatusOK, "ok")
	s.order("tea", 1)

	if err := link.Hang(); err != nil {
		t.Fatal(err)
	}
	s.waitHealth(http.StatusServiceUnavailable, "did not answer")
	if code, body := s.do("POST", "/orders", `{"item": "tea", "qty": 1}`); code != http.StatusServiceUnavailable {
		t.Fatalf("POST through a hung link: %d %s, want 503", code, body)
	}
	if err := link.Down(); err != nil {
		t.Fatal(err)
	}
	s.waitHealth(http.StatusServiceUnavailable, "database")
	if err := link.Heal(); err != nil {
		t.Fatal(err)
	}
	s.waitHealth(http.StatusOK, "ok")
	eventually(t, "an order after heal", func() (bool, string) {
		code, body := s.do("POST", "/orders", `{"item": "after", "qty": 1}`)
		return code == http.StatusCreated, fmt.Sprintf("%d %s", code, body)
	})
}

func portOf(t *testing.T, addr string) string {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("address %q has no port", addr)
	}
	return addr[i+1:]
}

func promote(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_promote: %v, %v", ok, err)
	}
}

func TestFencedPrimaryIsNotHealthy(t *testing.T) {
	pg := pgtest.StartPrimary(t)
	s := startShop(t, pg.DSN("postgres"), "primary")
	s.order("tea", 1)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// One way to fence a primary: new transactions default to read-only.
	for _, sql := range []string{"ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()"} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	s.waitHealth(http.StatusOK, "fenced")
	if code, body := s.do("GET", "/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "fenced") {
		t.Fatalf("readyz of a fenced primary's shop: %d %s, want 503 fenced", code, body)
	}
	eventually(t, "POST to be refused as read-only", func() (bool, string) {
		code, body := s.do("POST", "/orders", `{"item": "tea", "qty": 1}`)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "read-only"), fmt.Sprintf("%d %s", code, body)
	})
}

// BenchmarkPlaceOrder measures POST /orders end to end (HTTP, pool,
// committed INSERT) against a local primary.
func BenchmarkPlaceOrder(b *testing.B) {
	pg := pgtest.StartPrimary(b)
	c := DefaultConfig()
	c.Addr, c.DatabaseURL, c.Region = "127.0.0.1:0", pg.DSN("postgres"), "primary"
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(context.Background(), c)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := srv.Client().Post(srv.URL+"/orders", "application/json", strings.NewReader(`{"item": "tea", "qty": 1}`))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b.Fatalf("POST: %d", resp.StatusCode)
		}
	}
}

// The register: a PUT answers after commit, a GET reads the primary's
// value ("" when never written), and neither a standby nor a fenced
// primary answers a read, so that no stale value is ever served.
func TestRegisterReadsOnlyThePrimary(t *testing.T) {
	primary := pgtest.StartPrimary(t, pgtest.Name("west"))
	standby := pgtest.StartStandby(t, primary, pgtest.Name("east"))
	west := startShop(t, primary.DSN("postgres"), "primary")
	east := startShop(t, standby.DSN("postgres"), "secondary")

	if code, body := west.do("GET", "/register/k1", ""); code != http.StatusOK || !strings.Contains(body, `"value":""`) {
		t.Fatalf("GET of a register never written: %d %s, want 200 with value \"\"", code, body)
	}
	for _, v := range []string{"v1", "v2"} {
		if code, body := west.do("PUT", "/register/k1", fmt.Sprintf(`{"value": %q}`, v)); code != http.StatusOK {
			t.Fatalf("PUT /register/k1 %s: %d %s", v, code, body)
		}
	}
	code, body := west.do("GET", "/register/k1", "")
	var got Register
	if err := json.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil || got.Value != "v2" || got.Region != "primary" {
		t.Fatalf("GET /register/k1: %d %s, want v2 from primary", code, body)
	}
	if code, body := west.do("PUT", "/register/k1", `{"value": ""}`); code != http.StatusBadRequest {
		t.Fatalf("PUT of an empty value: %d %s, want 400", code, body)
	}

	east.waitHealth(http.StatusOK, "database is read-only (standby)")
	if code, body := east.do("GET", "/register/k1", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "read-only") {
		t.Fatalf("GET on the standby's shop: %d %s, want 503 read-only", code, body)
	}
	if code, body := east.do("PUT", "/register/k1", `{"value": "v3"}`); code != http.StatusServiceUnavailable {
		t.Fatalf("PUT on the standby's shop: %d %s, want 503", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	conn, err := pgx.Connect(ctx, primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, sql := range []string{"ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()"} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	eventually(t, "GET on a fenced primary to be refused as read-only", func() (bool, string) {
		code, body := west.do("GET", "/register/k1", "")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "read-only"), fmt.Sprintf("%d %s", code, body)
	})
}
