package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat"
)

// ProbeKind is how a target is probed.
type ProbeKind string

const (
	// ProbeHTTP GETs a URL: any 2xx is healthy; redirects are not followed
	// (a 3xx fails: a health endpoint that redirects is misconfigured).
	ProbeHTTP ProbeKind = "http"
	// ProbeTCP connects to host:port and closes.
	ProbeTCP ProbeKind = "tcp"
	// ProbeSQL connects to PostgreSQL and runs a query (default SELECT 1).
	ProbeSQL ProbeKind = "sql"
)

// DefaultProbeQuery is what a SQL probe runs when no query is given.
const DefaultProbeQuery = "SELECT 1"

// OpProbe names probe errors (lifeboat.Error.Op).
const OpProbe lifeboat.Op = "monitor.probe"

// ProbeConfig is one probe: what it checks and how often.
type ProbeConfig struct {
	Kind ProbeKind `json:"kind"`
	// Address is what is probed: a URL for http, host:port for tcp, a
	// PostgreSQL connection string (key=value or URL) for sql.
	Address string `json:"address"`
	// Query is what a sql probe runs; default DefaultProbeQuery.
	Query string `json:"query,omitempty"`
	// Interval between the starts of two probes; Timeout bounds one probe
	// (connect included). Failures is how many failures in a row make the
	// target down.
	Interval time.Duration `json:"interval"`
	Timeout  time.Duration `json:"timeout"`
	Failures int           `json:"failures"`
	// History is how many results are kept (a ring buffer).
	History int `json:"history"`
}

// DefaultProbeConfig returns the monitor's defaults (1s, 1s, 3 failures,
// 120 results); set Kind and Address.
func DefaultProbeConfig() ProbeConfig {
	return ProbeConfig{Interval: time.Second, Timeout: time.Second, Failures: 3, History: 120}
}

// ProbeConfigFor turns a spec's probe settings (p may be nil), with the
// monitor's defaults, into a config for kind at address. The address is the
// caller's: the spec has only an HTTP path, the controller knows the host.
func ProbeConfigFor(kind ProbeKind, address string, p *lifeboat.Probe, m lifeboat.Monitor) ProbeConfig {
	m = m.WithDefaults()
	c := DefaultProbeConfig()
	c.Kind, c.Address = kind, address
	c.Interval, c.Timeout, c.Failures = m.Interval.D(), m.Timeout.D(), m.Failures
	if p != nil {
		if p.Interval > 0 {
			c.Interval = p.Interval.D()
		}
		if p.Timeout > 0 {
			c.Timeout = p.Timeout.D()
		}
		if p.Failures > 0 {
			c.Failures = p.Failures
		}
		if kind == ProbeSQL {
			c.Query = p.SQL
		}
	}
	return c
}

// ValidateProbeConfig reports every problem of c at once.
func ValidateProbeConfig(c ProbeConfig) error {
	var errs []error
	at := c.Address
	if c.Kind == ProbeSQL {
		at = redactDSN(c.Address)
	}
	switch c.Kind {
	case ProbeHTTP:
		u, err := url.Parse(c.Address)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("http probe address %q is not an http(s) URL: give e.g. http://127.0.0.1:8080/healthz", c.Address))
		}
	case ProbeTCP:
		if _, _, err := net.SplitHostPort(c.Address); err != nil {
			errs = append(errs, fmt.Errorf("tcp probe address %q is not host:port: %w", c.Address, err))
		}
	case ProbeSQL:
		if _, err := pgx.ParseConfig(c.Address); c.Address == "" || err != nil {
			errs = append(errs, fmt.Errorf("sql probe connection string %q does not parse: give e.g. \"host=127.0.0.1 port=5432 user=... dbname=postgres\"", at))
		}
	default:
		errs = append(errs, fmt.Errorf("probe kind %q is unknown: use http, tcp or sql", c.Kind))
	}
	if c.Interval <= 0 || c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("probe %s: interval %s and timeout %s must be positive", at, c.Interval, c.Timeout))
	}
	if c.Failures < 1 {
		errs = append(errs, fmt.Errorf("probe %s: failures is %d: at least 1 failure must make a target down", at, c.Failures))
	}
	if c.History < 1 {
		errs = append(errs, fmt.Errorf("probe %s: history is %d: keep at least 1 result", at, c.History))
	}
	return errors.Join(errs...)
}

// ProbeResult is one probe's outcome.
type ProbeResult struct {
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	OK       bool          `json:"ok"`
	Error    string        `json:"error,omitempty"`
}

// ProbeHealth is a prober's verdict.
type ProbeHealth string

const (
	// HealthUnknown: no verdict yet (fewer than Failures failures and no
	// success since the prober started).
	HealthUnknown ProbeHealth = "unknown"
	HealthUp      ProbeHealth = "up"
	HealthDown    ProbeHealth = "down"
)

// ProbeVerdict is what a prober concludes from its results.
type ProbeVerdict struct {
	Health ProbeHealth `json:"health"`
	// Since is when Health last changed (the start of the probe that
	// changed it).
	Since time.Time `json:"since"`
	// Failures is the number of failures in a row now.
	Failures int `json:"failures"`
	// Last is the latest result.
	Last ProbeResult `json:"last"`
}

// Prober runs one target's probe every Interval and keeps its results.
//
// Verdict: down after Failures failures in a row; up again after one
// success. A single success is enough to come back because the decision
// side already damps flapping (grace period, majority of observers, block
// window); a recovery threshold here would only delay failback readiness.
type Prober struct {
	name  string
	cfg   ProbeConfig
	probe func(ctx context.Context) error
	// onChange is called (outside the lock) after the verdict changes.
	onChange func(ProbeVerdict)

	mu      sync.Mutex
	ring    []ProbeResult
	next    int // where the next result goes
	count   int // results in ring
	verdict ProbeVerdict
}

// NewProber builds a prober; name says what it probes in errors and
// status (e.g. "west/shop.db"). onChange, if not nil, is called after each
// verdict change, from the prober's goroutine: it must not block for long.
func NewProber(name string, c ProbeConfig, onChange func(ProbeVerdict)) (*Prober, error) {
	if c.History == 0 {
		c.History = DefaultProbeConfig().History
	}
	if c.Kind == ProbeSQL && c.Query == "" {
		c.Query = DefaultProbeQuery
	}
	if err := ValidateProbeConfig(c); err != nil {
		return nil, lifeboat.Permanent(OpProbe, name, err)
	}
	p := &Prober{name: name, cfg: c, onChange: onChange, ring: make([]ProbeResult, c.History),
		verdict: ProbeVerdict{Health: HealthUnknown, Since: time.Now()}}
	switch c.Kind {
	case ProbeHTTP:
		p.probe = httpProbe(c)
	case ProbeTCP:
		p.probe = tcpProbe(c)
	case ProbeSQL:
		p.probe = sqlProbe(c)
	}
	return p, nil
}

// Name is what the prober probes.
func (p *Prober) Name() string { return p.name }

// Config is the prober's config, defaults applied.
func (p *Prober) Config() ProbeConfig { return p.cfg }

// Run probes at once, then every Interval, until ctx is done. A probe that
// outlasts Interval delays the next one (probes never overlap).
func (p *Prober) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		p.ProbeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ProbeOnce runs the probe now, records the result and returns it. It
// returns within Timeout (plus a little to close what it opened).
func (p *Prober) ProbeOnce(ctx context.Context) ProbeResult {
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	err := p.probe(pctx)
	cancel()
	r := ProbeResult{Start: start, Duration: time.Since(start), OK: err == nil}
	if err != nil {
		if ctx.Err() != nil {
			// Stopping, not a failure of the target: do not record it.
			return ProbeResult{Start: start, Duration: r.Duration, Error: "probe stopped: " + ctx.Err().Error()}
		}
		if errors.Is(pctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within the %s timeout: %w", p.cfg.Timeout, err)
		}
		r.Error = err.Error()
	}
	p.record(r)
	return r
}

// record adds r to the history and updates the verdict.
func (p *Prober) record(r ProbeResult) {
	p.mu.Lock()
	p.ring[p.next] = r
	p.next = (p.next + 1) % len(p.ring)
	if p.count < len(p.ring) {
		p.count++
	}
	v := p.verdict
	v.Last = r
	health := v.Health
	if r.OK {
		v.Failures = 0
		health = HealthUp
	} else {
		v.Failures++
		if v.Failures >= p.cfg.Failures {
			health = HealthDown
		}
	}
	changed := health != v.Health
	if changed {
		v.Health, v.Since = health, r.Start
	}
	p.verdict = v
	p.mu.Unlock()
	if changed && p.onChange != nil {
		p.onChange(v)
	}
}

// Verdict is the current verdict.
func (p *Prober) Verdict() ProbeVerdict {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.verdict
}

// Results returns the kept results, oldest first.
func (p *Prober) Results() []ProbeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ProbeResult, 0, p.count)
	first := (p.next - p.count + len(p.ring)) % len(p.ring)
	for i := 0; i < p.count; i++ {
		out = append(out, p.ring[(first+i)%len(p.ring)])
	}
	return out
}

func httpProbe(c ProbeConfig) func(context.Context) error {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// A probe opens a new connection each time: a pooled connection could
	// hide a listener that no longer accepts, and a proxy from the
	// environment would probe the proxy instead of the target.
	tr.DisableKeepAlives = true
	tr.Proxy = nil
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Address, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		// Drain (bounded) so the server sees a complete exchange.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("GET %s: status %s, want 2xx", c.Address, resp.Status)
		}
		return nil
	}
}

func tcpProbe(c ProbeConfig) func(context.Context) error {
	var d net.Dialer
	return func(ctx context.Context) error {
		conn, err := d.DialContext(ctx, "tcp", c.Address)
		if err != nil {
			return err
		}
		return conn.Close()
	}
}

// sqlProbe opens a new connection for every probe, on purpose: it checks
// what a client needs (the postmaster accepts connections and a backend
// answers), a dead or shutting-down postmaster shows as a refused
// connection at once, and no half-open kept connection can stall a probe
// beyond its Timeout. The cost, a few ms on a LAN, is small next to an
// interval of 250 ms or more.
func sqlProbe(c ProbeConfig) func(context.Context) error {
	return func(ctx context.Context) error {
		cfg, err := pgx.ParseConfig(c.Address)
		if err != nil {
			return err
		}
		cfg.ConnectTimeout = c.Timeout
		// Probes must not leave an application name that looks like a
		// standby in pg_stat_activity.
		cfg.RuntimeParams["application_name"] = "lifeboat-probe"
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.Timeout)
			defer cancel()
			_ = conn.Close(cctx)
		}()
		rows, err := conn.Query(ctx, c.Query)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Query, err)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("%s: %w", c.Query, err)
		}
		return nil
	}
}

// redactDSN hides a password in a connection string for error messages.
func redactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	f := strings.Fields(dsn)
	for i, kv := range f {
		if strings.HasPrefix(kv, "password=") {
			f[i] = "password=xxxxx"
		}
	}
	return strings.Join(f, " ")
}
