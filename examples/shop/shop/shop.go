// Package shop is Lifeboat's sample workload: a tiny order service on
// PostgreSQL that runs in every region. In the active region it takes
// orders; in a standby region (its database a read-only replica) it runs
// anyway and says so on /healthz, so that a failover only has to promote the
// database and switch traffic, not start the service.
//
//	POST /orders        {"item": "tea", "qty": 2} → 201 {"id": 7, "region": "west"}
//	                    (answered only after the INSERT has committed)
//	GET  /orders/{id}   → 200 the order, or 404
//	PUT  /register/{key} {"value": "v1"} → 200 {"key": "k", "value": "v1", "region": "west"}
//	                    (answered only after the write has committed)
//	GET  /register/{key} → 200 {"key": "k", "value": "v1", "region": "west"}, value ""
//	                    when never written; only from a writable primary (503 on a
//	                    standby or a fenced primary), so a read never sees a stale copy
//	GET  /healthz       → 200 when the database answers (even read-only), or 503 with the reason
//	GET  /readyz        → 200 only when the database takes writes, or 503 with the reason
package shop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config is the shop's configuration; FromEnv reads it from the environment.
type Config struct {
	// Addr is where the HTTP server listens: 127.0.0.1:$PORT.
	Addr string
	// DatabaseURL is this region's database (a URL or key=value conninfo).
	DatabaseURL string
	// Region is this instance's region, returned with every order.
	Region string
	// RequestTimeout bounds every request, database work included.
	RequestTimeout time.Duration
	// HealthTimeout bounds the /healthz query: a hung database must make
	// the probe fail fast, not hang the prober.
	HealthTimeout time.Duration
	// ConnectTimeout bounds one connection attempt to the database when
	// DatabaseURL does not set connect_timeout.
	ConnectTimeout time.Duration
	// MaxConns caps the pool.
	MaxConns int32
	// Logger gets one line per request; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; Addr, DatabaseURL and Region must
// still be set.
func DefaultConfig() Config {
	return Config{
		RequestTimeout: 5 * time.Second,
		HealthTimeout:  time.Second,
		ConnectTimeout: 2 * time.Second,
		MaxConns:       8,
	}
}

// ValidateConfig reports every problem in c at once.
func ValidateConfig(c Config) error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("shop: listen address is empty: set PORT (the shop listens on 127.0.0.1:$PORT)"))
	} else if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("shop: listen address %q is not host:port: %v", c.Addr, err))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("shop: DATABASE_URL is empty: set it to this region's database, e.g. postgres://user:pass@127.0.0.1:5432/shop"))
	} else if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		// The parse error may echo the password; say only that it failed.
		errs = append(errs, errors.New("shop: DATABASE_URL does not parse as a PostgreSQL URL or key=value conninfo; check its quoting"))
	}
	if c.Region == "" {
		errs = append(errs, errors.New("shop: LIFEBOAT_REGION is empty: set it to this instance's region, e.g. primary"))
	}
	if c.RequestTimeout <= 0 || c.HealthTimeout <= 0 || c.ConnectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shop: timeouts must be positive (request %v, health %v, connect %v)", c.RequestTimeout, c.HealthTimeout, c.ConnectTimeout))
	}
	if c.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("shop: MaxConns is %d, want at least 1", c.MaxConns))
	}
	return errors.Join(errs...)
}

// FromEnv builds a config from PORT, DATABASE_URL and LIFEBOAT_REGION
// (getenv is os.Getenv in main).
func FromEnv(getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	if p := getenv("PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return c, fmt.Errorf("shop: PORT=%q is not a port number (1..65535)", p)
		}
		c.Addr = net.JoinHostPort("127.0.0.1", p)
	}
	c.DatabaseURL = getenv("DATABASE_URL")
	c.Region = getenv("LIFEBOAT_REGION")
	return c, ValidateConfig(c)
}

// Shop serves orders from one region's database.
type Shop struct {
	cfg    Config
	log    *slog.Logger
	pool   *pgxpool.Pool
	schema atomic.Bool // the orders and registers tables are known to exist
}

// New creates the shop and its connection pool. It does not need the
// database to be up, nor writable: the pool connects lazily and reconnects
// after failures, and the table is created on the first chance.
func New(ctx context.Context, c Config) (*Shop, error) {
	if err := ValidateConfig(c); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		return nil, errors.New("shop: DATABASE_URL does not parse; check its quoting")
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = c.ConnectTimeout
	}
	pc.MaxConns = c.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("shop: create connection pool for %s:%d: %w", pc.ConnConfig.Host, pc.ConnConfig.Port, err)
	}
	s := &Shop{cfg: c, log: c.Logger, pool: pool}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("region", c.Region)
	// Best effort: a standby or an unreachable database must not stop the
	// shop from starting; POST retries it.
	cx, cancel := context.WithTimeout(ctx, c.RequestTimeout)
	defer cancel()
	if err := s.ensureSchema(cx); err != nil {
		s.log.Warn("orders table not ensured at start; will retry on the first order", "reason", describe(err))
	}
	return s, nil
}

// Close closes the pool.
func (s *Shop) Close() { s.pool.Close() }

const schemaSQL = `CREATE TABLE IF NOT EXISTS orders (
	id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	item       text NOT NULL,
	qty        integer NOT NULL CHECK (qty > 0),
	region     text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
)`

// registerSQL is the register workload's table: one value per key, the
// last write wins. A drill checks its history for linearizability.
const registerSQL = `CREATE TABLE IF NOT EXISTS registers (
	key        text PRIMARY KEY,
	value      text NOT NULL,
	region     text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
)`

func (s *Shop) ensureSchema(ctx context.Context) error {
	if s.schema.Load() {
		return nil
	}
	for _, sql := range []string{schemaSQL, registerSQL} {
		_, err := s.pool.Exec(ctx, sql)
		var pe *pgconn.PgError
		// Two shops creating a table at once: one wins, the other sees a
		// duplicate in the catalog; the table exists either way.
		if err != nil && !(errors.As(err, &pe) && (pe.Code == "42P07" || pe.Code == "23505")) {
			return err
		}
	}
	s.schema.Store(true)
	return nil
}

// Handler routes the shop's endpoints, with a timeout and one log line per
// request.
func (s *Shop) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", s.postOrder)
	mux.HandleFunc("GET /orders/{id}", s.getOrder)
	mux.HandleFunc("PUT /register/{key}", s.putRegister)
	mux.HandleFunc("GET /register/{key}", s.getRegister)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	return s.logged(mux)
}

// Order is one order as GET returns it. Region is the region whose
// database accepted it.
type Order struct {
	ID        int64     `json:"id"`
	Item      string    `json:"item"`
	Qty       int       `json:"qty"`
	Region    string    `json:"region"`
	CreatedAt time.Time `json:"created_at"`
}

// Placed is POST's answer: the new order's id and the region that took it.
type Placed struct {
	ID     int64  `json:"id"`
	Region string `json:"region"`
}

type orderRequest struct {
	Item string `json:"item"`
	Qty  int    `json:"qty"`
}

func (s *Shop) postOrder(w http.ResponseWriter, r *http.Request) {
	var req orderRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Sprintf(`body is not an order: %v; send {"item": "tea", "qty": 2}`, err))
		return
	}
	req.Item = strings.TrimSpace(req.Item)
	if req.Item == "" || len(req.Item) > 200 || req.Qty < 1 || req.Qty > 1_000_000 {
		s.fail(w, http.StatusBadRequest, "an order needs a non-empty item (at most 200 bytes) and a qty between 1 and 1000000")
		return
	}
	ctx := r.Context()
	if err := s.ensureSchema(ctx); err != nil {
		s.dbFail(w, "create the orders table", err)
		return
	}
	var id int64
	// Autocommit: the statement returns only once the commit is durable
	// (synchronous_commit as the database is configured), so a 201 is an
	// acknowledged write that a failover must not lose beyond the RPO.
	err := s.withRetry(ctx, func() error {
		return s.pool.QueryRow(ctx, `INSERT INTO orders (item, qty, region) VALUES ($1, $2, $3) RETURNING id`,
			req.Item, req.Qty, s.cfg.Region).Scan(&id)
	})
	if err != nil {
		s.dbFail(w, "insert the order", err)
		return
	}
	s.reply(w, http.StatusCreated, Placed{ID: id, Region: s.cfg.Region})
}

func (s *Shop) getOrder(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		s.fail(w, http.StatusBadRequest, fmt.Sprintf("order id %q is not a positive integer", r.PathValue("id")))
		return
	}
	ctx := r.Context()
	var o Order
	err = s.withRetry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT id, item, qty, region, created_at FROM orders WHERE id = $1`, id).
			Scan(&o.ID, &o.Item, &o.Qty, &o.Region, &o.CreatedAt)
	})
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pe) && pe.Code == "42P01": // no such row, or no table yet
		s.fail(w, http.StatusNotFound, fmt.Sprintf("no order %d in region %s", id, s.cfg.Region))
	case err != nil:
		s.dbFail(w, "read the order", err)
	default:
		s.reply(w, http.StatusOK, o)
	}
}

// Register is a register's value as PUT and GET answer it; Region is the
// region whose database wrote (PUT) or read (GET) it.
type Register struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Region string `json:"region"`
}

func validKey(w http.ResponseWriter, s *Shop, key string) bool {
	if key == "" || len(key) > 200 {
		s.fail(w, http.StatusBadRequest, "a register key is 1 to 200 bytes: PUT or GET /register/{key}")
		return false
	}
	return true
}

func (s *Shop) putRegister(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !validKey(w, s, key) {
		return
	}
	var req struct {
		Value string `json:"value"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Value == "" || len(req.Value) > 1000 {
		s.fail(w, http.StatusBadRequest, `body is not a register write: send {"value": "v1"} with a non-empty value of at most 1000 bytes`)
		return
	}
	ctx := r.Context()
	if err := s.ensureSchema(ctx); err != nil {
		s.dbFail(w, "create the registers table", err)
		return
	}
	// Autocommit, like an order: a 200 is a committed write.
	err := s.withRetry(ctx, func() error {
		_, err := s.pool.Exec(ctx, `INSERT INTO registers (key, value, region) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, region = EXCLUDED.region, updated_at = now()`,
			key, req.Value, s.cfg.Region)
		return err
	})
	if err != nil {
		s.dbFail(w, "write the register", err)
		return
	}
	s.reply(w, http.StatusOK, Register{Key: key, Value: req.Value, Region: s.cfg.Region})
}

// getRegister reads with FOR SHARE, which PostgreSQL refuses on a standby
// and in a read-only (fenced) transaction: a replica, possibly behind,
// answers 503 instead of a stale value, so the register's reads are only
// ever the primary's.
func (s *Shop) getRegister(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !validKey(w, s, key) {
		return
	}
	ctx := r.Context()
	if err := s.ensureSchema(ctx); err != nil {
		s.dbFail(w, "create the registers table", err)
		return
	}
	var value string
	err := s.withRetry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT value FROM registers WHERE key = $1 FOR SHARE`, key).Scan(&value)
	})
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		s.dbFail(w, "read the register", err)
		return
	}
	s.reply(w, http.StatusOK, Register{Key: key, Value: value, Region: s.cfg.Region})
}

// healthz answers 200 when this region's database answers quickly, even if
// it is read-only (a standby, or a fenced primary): the instance is healthy
// and a warm or hot standby counts as stood up; the body says why it would
// not take orders. readyz answers 200 only when the database takes writes:
// that is the probe for routing traffic.
func (s *Shop) healthz(w http.ResponseWriter, r *http.Request) { s.health(w, r, false) }

func (s *Shop) readyz(w http.ResponseWriter, r *http.Request) { s.health(w, r, true) }

func (s *Shop) health(w http.ResponseWriter, r *http.Request, needWrites bool) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.HealthTimeout)
	defer cancel()
	var inRecovery bool
	var readOnly string
	err := s.pool.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('transaction_read_only')`).Scan(&inRecovery, &readOnly)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	switch {
	case err != nil && ctx.Err() != nil:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "database did not answer within %v (hung or unreachable): %s\n", s.cfg.HealthTimeout, describe(err))
	case err != nil:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "database unavailable: %s\n", describe(err))
	case inRecovery || readOnly == "on":
		msg := msgFenced
		if inRecovery {
			msg = msgStandby
		}
		if needWrites {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, msg)
		} else {
			fmt.Fprintln(w, "ok, but "+msg)
		}
	default:
		fmt.Fprintln(w, "ok")
	}
}

const (
	msgStandby = "database is read-only (standby)"
	msgFenced  = "database is read-only (default_transaction_read_only is on: fenced)"
)

// withRetry runs f again once when it failed before anything reached the
// server (a pooled connection the server had already closed): safe even for
// an INSERT, and it hides a restart of the database from one request.
func (s *Shop) withRetry(ctx context.Context, f func() error) error {
	err := f()
	if err != nil && pgconn.SafeToRetry(err) && ctx.Err() == nil {
		err = f()
	}
	return err
}

// dbFail answers a database error: 503 when trying again (here or in the
// other region) may help, 500 when it will not.
func (s *Shop) dbFail(w http.ResponseWriter, what string, err error) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "25006": // read_only_sql_transaction
			s.fail(w, http.StatusServiceUnavailable, "database is read-only (standby, or a fenced primary): this region does not take orders now")
			return
		case strings.HasPrefix(pe.Code, "57P"), strings.HasPrefix(pe.Code, "08"), pe.Code == "53300":
			// shutting down, starting up, connection trouble, too many connections
			s.fail(w, http.StatusServiceUnavailable, fmt.Sprintf("could not %s: database unavailable: %s", what, describe(err)))
			return
		}
		s.fail(w, http.StatusInternalServerError, fmt.Sprintf("could not %s: %s", what, describe(err)))
		return
	}
	// Not an answer from PostgreSQL: refused, reset, timed out.
	s.fail(w, http.StatusServiceUnavailable, fmt.Sprintf("could not %s: database unreachable: %s", what, describe(err)))
}

// describe says what went wrong without the connection string.
func describe(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	// pgx lists one line per address tried; keep the log to one line.
	return strings.NewReplacer("\n\t", "; ", "\n", " ").Replace(err.Error())
}

type errorBody struct {
	Error  string `json:"error"`
	Region string `json:"region"`
}

func (s *Shop) fail(w http.ResponseWriter, code int, msg string) {
	s.reply(w, code, errorBody{Error: msg, Region: s.cfg.Region})
}

func (s *Shop) reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// logged bounds each request by RequestTimeout, tags the answer with the
// serving region, and logs one line per request.
func (s *Shop) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		w.Header().Set("X-Lifeboat-Region", s.cfg.Region)
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.code,
			"ms", float64(time.Since(start).Microseconds())/1000, "remote", r.RemoteAddr)
	})
}

// Run serves the shop on c.Addr until ctx is done, then shuts down
// gracefully. ready, if not nil, receives the bound address once the
// listener is up.
func Run(ctx context.Context, c Config, ready func(addr string)) error {
	s, err := New(ctx, c)
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("shop: listen on %s: %w; is another shop (or something else) using PORT?", c.Addr, err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       c.RequestTimeout + 5*time.Second,
		WriteTimeout:      c.RequestTimeout + 5*time.Second,
		IdleTimeout:       time.Minute,
	}
	s.log.Info("shop listening", "addr", ln.Addr().String())
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("shop: serve on %s: %w", c.Addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), c.RequestTimeout+time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shop: shut down: %w", err)
	}
	return nil
}
