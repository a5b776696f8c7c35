package monitor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat"
)

// OpExposure names exposure errors (lifeboat.Error.Op).
const OpExposure lifeboat.Op = "monitor.exposure"

// LagSample is one measurement of how far a standby is behind its primary.
type LagSample struct {
	At time.Time `json:"at"`
	// Standby is the standby measured (its application_name).
	Standby string `json:"standby,omitempty"`
	// Streaming: the standby is connected and streaming. When false the
	// loss if the primary died now cannot be bounded.
	Streaming bool `json:"streaming"`
	// State is the replication state as the primary reports it (streaming,
	// catchup, startup…), "" when no standby is connected.
	State string `json:"state,omitempty"`
	// LagBytes is the WAL the primary has written that the standby has not
	// flushed: what would be lost if the primary died now (WAL the standby
	// flushed but has not replayed is applied at promotion, so it is not
	// lost; it costs time, see ReplayBytes).
	LagBytes int64 `json:"lag_bytes"`
	// LagTime is how old the oldest write the standby does not have is:
	// the writes of the last LagTime would be lost. 0 when caught up.
	LagTime time.Duration `json:"lag_time"`
	// ReplayBytes is the WAL the standby has not replayed yet (promotion
	// must apply it first: RTO, not RPO).
	ReplayBytes int64 `json:"replay_bytes"`
	// Err is why the sample could not be taken ("" when it was).
	Err string `json:"error,omitempty"`
}

// LagSampler measures the lag now.
type LagSampler func(ctx context.Context) (LagSample, error)

// PostgresLagSampler measures a standby's lag from its primary's
// pg_stat_replication, over a new connection per sample (dsn is the
// primary's). standby is the standby's application_name; "" takes the
// streaming standby that has flushed the most (the one a failover would
// lose the least with).
//
// LagTime is the larger of PostgreSQL's flush_lag and what the sampler
// saw itself: the time since the primary first reported a WAL position
// beyond what the standby has flushed. PostgreSQL's flush_lag freezes when
// the standby stops acknowledging, so a stuck standby would look current;
// the sampler's own bound keeps growing.
func PostgresLagSampler(dsn, standby string, timeout time.Duration) LagSampler {
	var mu sync.Mutex
	// seen: (time, primary's WAL position) of past samples, oldest first,
	// pruned to what can still matter.
	type mark struct {
		at  time.Time
		lsn int64
	}
	var seen []mark
	return func(ctx context.Context) (LagSample, error) {
		mu.Lock()
		defer mu.Unlock()
		s := LagSample{At: time.Now(), Standby: standby}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return s, lifeboat.Permanent(OpExposure, standby, fmt.Errorf("primary connection string %q does not parse: fix the database's address", redactDSN(dsn)))
		}
		cfg.ConnectTimeout = timeout
		cfg.RuntimeParams["application_name"] = "lifeboat-exposure"
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return s, lifeboat.Transient(OpExposure, standby, fmt.Errorf("cannot reach the primary to measure replication lag: %w", err))
		}
		defer func() {
			cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
			defer ccancel()
			_ = c.Close(cctx)
		}()
		var inRecovery bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			return s, lifeboat.Transient(OpExposure, standby, fmt.Errorf("asking the primary whether it is in recovery: %w", err))
		}
		if inRecovery {
			return s, lifeboat.Transient(OpExposure, standby, fmt.Errorf("the server at %s is a standby, not a primary: replication lag is measured on the primary; point the sampler at the active region's database", cfg.Host))
		}
		rows, err := c.Query(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,
			r.application_name, coalesce(r.state, ''),
			pg_wal_lsn_diff(r.flush_lsn, '0/0')::bigint, pg_wal_lsn_diff(r.replay_lsn, '0/0')::bigint,
			extract(epoch FROM r.flush_lag)::float8
			FROM (SELECT 1) one LEFT JOIN pg_stat_replication r ON true`)
		if err != nil {
			return s, lifeboat.Transient(OpExposure, standby, fmt.Errorf("reading pg_stat_replication on the primary: %w", err))
		}
		var cur int64
		found := false
		for rows.Next() {
			var name *string
			var state string
			var flush, replay *int64
			var flushLag *float64
			if err := rows.Scan(&cur, &name, &state, &flush, &replay, &flushLag); err != nil {
				rows.Close()
				return s, lifeboat.Transient(OpExposure, standby, fmt.Errorf("reading pg_stat_replication on the primary: %w", err))
			}
			if name == nil || (standby != "" && *name != standby) || flush == nil {
				continue
			}
			streaming := state == "streaming"
			// Prefer the streaming standby that has flushed the most.
			if found && (s.Streaming && !streaming || s.Streaming == streaming && cur-*flush >= s.LagBytes) {
				continue
			}
			found = true
			s.Standby, s.State, s.Streaming = *name, state, streaming
			s.LagBytes = max(cur-*flush, 0)
			if replay != nil {
				s.ReplayBytes = max(cur-*replay, 0)
			}
			s.LagTime = 0
			if flushLag != nil && s.LagBytes > 0 {
				s.LagTime = time.Duration(*flushLag * float64(time.Second))
			}
			// Own bound: the first sample whose WAL position is past the
			// standby's flush position was taken after the oldest missing
			// write; that write is at least this old.
			if s.LagBytes > 0 {
				for _, m := range seen {
					if m.lsn > *flush {
						s.LagTime = max(s.LagTime, s.At.Sub(m.at))
						break
					}
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s, lifeboat.Transient(OpExposure, standby, fmt.Errorf("reading pg_stat_replication on the primary: %w", err))
		}
		// Keep the marks the standby has not flushed past, and the last
		// one it has (where the missing WAL starts); bounded either way.
		flushed := cur
		if found {
			flushed = cur - s.LagBytes
		}
		keep := 0
		for i, m := range seen {
			if m.lsn <= flushed {
				keep = i
			}
		}
		seen = append(seen[keep:], mark{s.At, cur})
		if len(seen) > 4096 {
			seen = seen[len(seen)-4096:]
		}
		if !found {
			s.State = ""
			if standby != "" {
				s.Err = fmt.Sprintf("standby %s is not connected to the primary (no row in pg_stat_replication): check that it runs and can reach the primary", standby)
			} else {
				s.Err = "no standby is connected to the primary (pg_stat_replication is empty): check that the standby runs and can reach the primary"
			}
		}
		return s, nil
	}
}

// ExposureConfig says how often the lag is sampled and how much is kept.
type ExposureConfig struct {
	// Interval between samples; Timeout bounds one sample.
	Interval time.Duration
	Timeout  time.Duration
	// History is how many samples are kept (a ring buffer).
	History int
	// Window is how far back Exposure looks for the worst lag.
	Window time.Duration
	// Stale: a latest sample older than this no longer bounds the exposure
	// (the sampler is stuck or stopped). Default 3 × Interval.
	Stale time.Duration
}

// DefaultExposureConfig samples every second and keeps an hour.
func DefaultExposureConfig() ExposureConfig {
	return ExposureConfig{Interval: time.Second, Timeout: time.Second, History: 3600, Window: 5 * time.Minute}
}

// ValidateExposureConfig reports every problem of c at once.
func ValidateExposureConfig(c ExposureConfig) error {
	var errs []error
	if c.Interval <= 0 || c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("exposure: interval %s and timeout %s must be positive", c.Interval, c.Timeout))
	}
	if c.History < 1 {
		errs = append(errs, fmt.Errorf("exposure: history is %d: keep at least 1 sample", c.History))
	}
	if c.Window <= 0 {
		errs = append(errs, fmt.Errorf("exposure: window is %s: it must be positive (how far back the worst lag is taken)", c.Window))
	}
	if c.Stale < 0 {
		errs = append(errs, fmt.Errorf("exposure: stale is %s: it must not be negative", c.Stale))
	}
	return errors.Join(errs...)
}

// Exposure is the worst-case data loss if the primary died now.
type Exposure struct {
	// Database is what the meter measures (its name).
	Database string    `json:"database"`
	At       time.Time `json:"at"`
	// Bounded: the latest sample is fresh and the standby streams, so
	// LagBytes and LagTime bound the loss. When false the loss is unknown
	// and may be unbounded; LagBytes and LagTime are then the last known
	// values (at LastBounded), not a bound, and must never be read as 0.
	Bounded   bool          `json:"bounded"`
	Reason    string        `json:"reason"`
	Standby   string        `json:"standby,omitempty"`
	Streaming bool          `json:"streaming"`
	LagBytes  int64         `json:"lag_bytes"`
	LagTime   time.Duration `json:"lag_time"`
	// LastBounded is when the exposure was last bounded (zero: never).
	LastBounded time.Time `json:"last_bounded,omitempty"`
	// Window, and the worst lag over it. WindowBounded is false when the
	// exposure was unbounded at some sample in the window (or there is no
	// sample in it): then the maxima are over the bounded samples only.
	Window        time.Duration `json:"window"`
	MaxLagBytes   int64         `json:"max_lag_bytes"`
	MaxLagTime    time.Duration `json:"max_lag_time"`
	WindowBounded bool          `json:"window_bounded"`
	Samples       int           `json:"samples"`
}

// ExposureMeter samples a database's replication lag over time.
type ExposureMeter struct {
	name    string
	cfg     ExposureConfig
	sampler LagSampler

	mu    sync.Mutex
	ring  []LagSample
	next  int
	count int
	// lastBounded is the latest sample that bounded the exposure.
	lastBounded LagSample
}

// NewExposureMeter builds a meter for the database named name.
func NewExposureMeter(name string, c ExposureConfig, s LagSampler) (*ExposureMeter, error) {
	if c.Stale == 0 {
		c.Stale = 3 * c.Interval
	}
	if err := ValidateExposureConfig(c); err != nil {
		return nil, lifeboat.Permanent(OpExposure, name, err)
	}
	if s == nil {
		return nil, lifeboat.Permanent(OpExposure, name, errors.New("exposure: no sampler: give one, e.g. PostgresLagSampler(primary DSN, standby name, timeout)"))
	}
	return &ExposureMeter{name: name, cfg: c, sampler: s, ring: make([]LagSample, c.History)}, nil
}

// Run samples at once, then every Interval, until ctx is done.
func (m *ExposureMeter) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.SampleOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SampleOnce takes a sample now, records it and returns it. A failed
// sample is recorded too (with Err): it is a gap in what is known.
func (m *ExposureMeter) SampleOnce(ctx context.Context) LagSample {
	sctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	start := time.Now()
	s, err := m.sampler(sctx)
	cancel()
	if ctx.Err() != nil {
		return s // stopping: not a gap in what is known
	}
	if s.At.IsZero() {
		s.At = start
	}
	if err != nil {
		s.Streaming = false
		s.Err = err.Error()
	}
	m.record(s)
	return s
}

func (m *ExposureMeter) record(s LagSample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ring[m.next] = s
	m.next = (m.next + 1) % len(m.ring)
	if m.count < len(m.ring) {
		m.count++
	}
	if sampleBounds(s) {
		m.lastBounded = s
	}
}

func sampleBounds(s LagSample) bool { return s.Err == "" && s.Streaming }

// History returns the kept samples, oldest first.
func (m *ExposureMeter) History() []LagSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]LagSample, 0, m.count)
	first := (m.next - m.count + len(m.ring)) % len(m.ring)
	for i := 0; i < m.count; i++ {
		out = append(out, m.ring[(first+i)%len(m.ring)])
	}
	return out
}

// Exposure is the worst-case data loss if the primary died now.
func (m *ExposureMeter) Exposure() Exposure { return m.ExposureAt(time.Now()) }

// ExposureAt is Exposure as of now (for tests and replay).
func (m *ExposureMeter) ExposureAt(now time.Time) Exposure {
	hist := m.History()
	m.mu.Lock()
	lb := m.lastBounded
	m.mu.Unlock()
	e := Exposure{Database: m.name, At: now, Window: m.cfg.Window, WindowBounded: true, LastBounded: lb.At}
	for _, s := range hist {
		if now.Sub(s.At) > m.cfg.Window || s.At.After(now) {
			continue
		}
		e.Samples++
		if !sampleBounds(s) {
			e.WindowBounded = false
			continue
		}
		e.MaxLagBytes = max(e.MaxLagBytes, s.LagBytes)
		e.MaxLagTime = max(e.MaxLagTime, s.LagTime)
	}
	if e.Samples == 0 {
		e.WindowBounded = false
	}
	if len(hist) == 0 {
		e.Reason = fmt.Sprintf("no lag sample of %s yet: the loss if the primary died now is unknown", m.name)
		return e
	}
	last := hist[len(hist)-1]
	e.Standby, e.Streaming = last.Standby, last.Streaming
	e.LagBytes, e.LagTime = lb.LagBytes, lb.LagTime
	known := "never measured"
	if !lb.At.IsZero() {
		known = fmt.Sprintf("last known %d bytes, %s behind at %s", lb.LagBytes, lb.LagTime, lb.At.UTC().Format(time.RFC3339))
	}
	switch {
	case last.Err != "":
		e.Reason = fmt.Sprintf("%s: lag unknown (%s): %s", m.name, known, last.Err)
	case !last.Streaming:
		e.Reason = fmt.Sprintf("%s: standby %s is not streaming (state %q): the loss is unbounded (%s)", m.name, orNone(last.Standby), last.State, known)
	case now.Sub(last.At) > m.cfg.Stale:
		e.Reason = fmt.Sprintf("%s: the latest lag sample is %s old (more than %s): the sampler is stuck or stopped; %s", m.name, now.Sub(last.At).Round(time.Millisecond), m.cfg.Stale, known)
	default:
		e.Bounded = true
		e.LagBytes, e.LagTime = last.LagBytes, last.LagTime
		if last.LagBytes == 0 {
			e.Reason = fmt.Sprintf("%s: standby %s has everything the primary wrote: no loss", m.name, last.Standby)
		} else {
			e.Reason = fmt.Sprintf("%s: standby %s is %d bytes, %s behind: the writes of the last %s would be lost", m.name, last.Standby, last.LagBytes, last.LagTime, last.LagTime)
		}
	}
	return e
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
