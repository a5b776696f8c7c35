// Package api is the HTTP API of 'lifeboat serve': status, readiness,
// plans, runs (start, approve, cancel, resume), history, units, drills and
// the audit trail, as JSON under /v1, with an OpenAPI 3 document generated
// from the route table at /v1/openapi.json.
//
// Callers authenticate with a bearer token from the api.tokens file (only
// its SHA-256 is stored) or, with mutual TLS, a client certificate whose CN
// a "cert" line of that file names. Roles: viewer reads; operator also
// starts planned runs (switchover, failback, rejoin, and a failover that
// readiness allows), approves, cancels and resumes; admin also forces a
// failover. Every mutating call, allowed or not, is appended to the audit
// trail in the store.
package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver"
	"github.com/lifeboat-dr/lifeboat/store"
)

// DefaultListen is where plain 'lifeboat serve' listens when api.listen
// is not set.
const DefaultListen = "127.0.0.1:7480"

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	Spec  *lifeboat.Spec
	Store lifeboat.Store
	// Audit is the audit trail; nil: store.Audit(Store).
	Audit store.AuditLog
	// Tokens are the callers; nil: loaded from the spec's api.tokens.
	Tokens Tokens
	// Drivers builds the drivers from the spec and the current state
	// (default driver.FromSpec, as the CLI does).
	Drivers func(*lifeboat.Spec, *lifeboat.State) (lifeboat.Drivers, error)
	// DrillsDir holds drill reports (*.json, *.html, *.md); empty: none.
	DrillsDir string
	// Region is the controller's region ('serve --region'); "" for plain
	// serve. It is journaled with the caller ("alice via api@east").
	Region string
	Log    *slog.Logger
	Now    func() time.Time
}

// DefaultConfig returns the defaults; set Spec and Store.
func DefaultConfig() Config {
	return Config{Drivers: driver.FromSpec, Now: time.Now, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
}

// ValidateConfig says what is missing, all at once.
func ValidateConfig(c Config) error {
	var errs []error
	if c.Spec == nil {
		errs = append(errs, errors.New("api config: Spec is nil: load it with config.Load"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("api config: Store is nil: open it with store.Open (store.NewMemory in tests)"))
	}
	if c.Drivers == nil || c.Now == nil || c.Log == nil {
		errs = append(errs, errors.New("api config: Drivers, Now and Log must be set: start from api.DefaultConfig()"))
	}
	if c.Spec != nil && c.Tokens == nil && (c.Spec.API == nil || c.Spec.API.Tokens == "") {
		errs = append(errs, errors.New("api config: no tokens: set api.tokens in the spec (a file of \"<name> <role> sha256:<hex>\" lines)"))
	}
	if len(errs) > 0 {
		return lifeboat.Permanent("api.new", "", errors.Join(errs...))
	}
	return nil
}

// Server serves the API. It is an http.Handler; Close stops the runs it
// started (they stay journaled and resumable) and waits for them.
type Server struct {
	c      Config
	mux    *http.ServeMux
	routes []route

	ctx  context.Context // lives until Close: runs started through the API
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// New builds a Server. Zero fields of c take their defaults.
func New(c Config) (*Server, error) {
	d := DefaultConfig()
	if c.Drivers == nil {
		c.Drivers = d.Drivers
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Log == nil {
		c.Log = d.Log
	}
	if err := ValidateConfig(c); err != nil {
		return nil, err
	}
	if c.Tokens == nil {
		ts, err := LoadTokens(SpecPath(c.Spec, c.Spec.API.Tokens))
		if err != nil {
			return nil, lifeboat.Permanent("api.new", "api.tokens", err)
		}
		c.Tokens = ts
	}
	if c.Audit == nil {
		a, err := store.Audit(c.Store)
		if err != nil {
			return nil, err
		}
		c.Audit = a
	}
	s := &Server{c: c, mux: http.NewServeMux()}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.routes = s.table()
	for _, r := range s.routes {
		s.mux.Handle(r.Method+" "+r.Path, s.guard(r))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path), "GET /v1/openapi.json lists every endpoint")
	})
	return s, nil
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close interrupts the runs this server started (they stay journaled:
// 'lifeboat resume' goes on) and waits until they have stopped.
func (s *Server) Close() error {
	s.stop()
	s.wg.Wait()
	return nil
}

// SpecPath resolves a path of the spec relative to the spec file.
func SpecPath(spec *lifeboat.Spec, p string) string {
	if p == "" || filepath.IsAbs(p) || spec.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(spec.File), p)
}

// Addr is where the API listens: api.listen-in[region] for a region's
// controller, else api.listen, else DefaultListen.
func Addr(spec *lifeboat.Spec, region string) string {
	if spec.API != nil {
		if a := spec.API.ListenIn[region]; region != "" && a != "" {
			return a
		}
		if spec.API.Listen != "" {
			return spec.API.Listen
		}
	}
	return DefaultListen
}

// IsLoopback reports whether host:port names a loopback address only
// ("localhost", 127.0.0.0/8, ::1). An empty host means every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TLSConfig builds the server's TLS config from api.tls (nil when it is
// not set). With client-ca, every client must present a certificate that
// CA signed.
func TLSConfig(spec *lifeboat.Spec) (*tls.Config, error) {
	if spec.API == nil || spec.API.TLS == nil {
		return nil, nil
	}
	t := spec.API.TLS
	cert, err := tls.LoadX509KeyPair(SpecPath(spec, t.Cert), SpecPath(spec, t.Key))
	if err != nil {
		return nil, fmt.Errorf("api.tls: loading cert %s and key %s: %w", t.Cert, t.Key, err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCA != "" {
		pem, err := os.ReadFile(SpecPath(spec, t.ClientCA))
		if err != nil {
			return nil, fmt.Errorf("api.tls.client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("api.tls.client-ca %s holds no PEM certificate: give the CA that signs the clients' certificates", t.ClientCA)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// Listen listens on addr for this server: it refuses an address other than
// loopback unless api.tls is set, and wraps the listener in TLS when it is.
func (s *Server) Listen(addr string) (net.Listener, error) {
	tc, err := TLSConfig(s.c.Spec)
	if err != nil {
		return nil, err
	}
	if tc == nil && !IsLoopback(addr) {
		return nil, fmt.Errorf("api: refusing to listen on %s without TLS: bearer tokens would cross the network in clear; listen on 127.0.0.1, or set api.tls (cert, key, and client-ca for mutual TLS)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: cannot listen on %s: %w (is another 'lifeboat serve' running?)", addr, err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return ln, nil
}

// Serve listens on addr (see Listen) and serves until ctx ends; then it
// shuts the HTTP server down and closes s.
func (s *Server) Serve(ctx context.Context, addr string) error {
	ln, err := s.Listen(addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		return s.Close()
	case err := <-served:
		s.Close()
		return fmt.Errorf("api on %s stopped: %w", addr, err)
	}
}

// Error is the body of every error answer.
type Error struct {
	// Error says what is wrong; Hint how to fix it.
	Error string `json:"error"`
	Hint  string `json:"hint,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg, hint string) {
	writeJSON(w, code, Error{Error: msg, Hint: hint})
}

// statusOf maps an error to a status code: retryable ones are 503.
func statusOf(err error) int {
	switch {
	case errors.Is(err, lifeboat.ErrNoRun):
		return http.StatusNotFound
	case errors.Is(err, lifeboat.ErrRunInProgress), errors.Is(err, lifeboat.ErrRunOwned):
		return http.StatusConflict
	case lifeboat.IsRetryable(err):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func hintOf(code int) string {
	switch code {
	case http.StatusServiceUnavailable:
		return "the state store did not answer: retry; if it persists, check the etcd members ('lifeboat status')"
	case http.StatusConflict:
		return "one run at a time: GET /v1/status shows the run in progress; resume or cancel it first"
	case http.StatusNotFound:
		return "GET /v1/runs lists the runs"
	}
	return ""
}

func (s *Server) errorFrom(w http.ResponseWriter, err error) (int, string) {
	code := statusOf(err)
	writeError(w, code, err.Error(), hintOf(code))
	return code, "error: " + err.Error()
}

func clientIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return strings.TrimSpace(r.RemoteAddr)
}
