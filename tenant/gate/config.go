package gate

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// Config configures a Gate.
type Config struct {
	// Listen is host:port, e.g. "127.0.0.1:6432".
	Listen string
	// Wait bounds how long a connection is held, in total, for its tenant
	// to be recovered and for a free slot in its pool; then the client
	// gets an error saying why (spec: tenants.gate.wait).
	Wait time.Duration
	// Poll is how often a held tenant is looked up again while it is
	// being recovered (Wake cuts the wait short).
	Poll time.Duration
	// DialTimeout bounds the dial to a pool.
	DialTimeout time.Duration
	// StartupTimeout bounds how long a client takes to send its startup
	// message (a client that connects and says nothing holds a
	// goroutine and a socket).
	StartupTimeout time.Duration
	// LocateTimeout bounds one catalog look-up.
	LocateTimeout time.Duration
	Log           *slog.Logger
}

// DefaultConfig listens on 127.0.0.1:6432 and holds connections up to 30s.
func DefaultConfig() Config {
	return Config{
		Listen:         "127.0.0.1:6432",
		Wait:           30 * time.Second,
		Poll:           50 * time.Millisecond,
		DialTimeout:    2 * time.Second,
		StartupTimeout: 10 * time.Second,
		LocateTimeout:  2 * time.Second,
		Log:            slog.Default(),
	}
}

// ConfigFromSpec is DefaultConfig with the spec's tenants.gate applied.
func ConfigFromSpec(g *lifeboat.TenantGate) Config {
	c := DefaultConfig()
	if g == nil {
		return c
	}
	if g.Listen != "" {
		c.Listen = g.Listen
	}
	if g.Wait > 0 {
		c.Wait = time.Duration(g.Wait)
	}
	return c
}

// ValidateConfig reports every problem of c at once.
func ValidateConfig(c Config) error {
	var errs []error
	d := DefaultConfig()
	if c.Listen == "" {
		errs = append(errs, errors.New("tenant gate: Listen is empty: set tenants.gate.listen to host:port, e.g. \"127.0.0.1:6432\""))
	}
	pos := func(name string, v, def time.Duration) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("tenant gate: %s is %v: it must be positive (the default is %v)", name, v, def))
		}
	}
	pos("Wait (tenants.gate.wait)", c.Wait, d.Wait)
	pos("Poll", c.Poll, d.Poll)
	pos("DialTimeout", c.DialTimeout, d.DialTimeout)
	pos("StartupTimeout", c.StartupTimeout, d.StartupTimeout)
	pos("LocateTimeout", c.LocateTimeout, d.LocateTimeout)
	if c.Log == nil {
		errs = append(errs, errors.New("tenant gate: Log is nil: use slog.Default() (DefaultConfig sets it)"))
	}
	return errors.Join(errs...)
}

// Capacity is the session limit SetCapacity should get for a copy of p:
// Active for the copy serving as primary, Standby (default Active) for
// the other before a failover raises it. 0: no limit (p has none).
func Capacity(p lifeboat.Pool, standby bool) int {
	if p.Capacity == nil {
		return 0
	}
	if standby && p.Capacity.Standby > 0 {
		return p.Capacity.Standby
	}
	return p.Capacity.Active
}
