package frontdoor

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// ListenerConfig is one front-door listener (say "http" or "postgres").
type ListenerConfig struct {
	// Listen is the address to listen on, e.g. "127.0.0.1:0".
	Listen string
	// Upstreams maps each region to the host:port of that region's
	// endpoint for this listener.
	Upstreams map[string]string
}

// Config configures a FrontDoor.
type Config struct {
	// Listeners by name. Every listener must know the same regions, so
	// that a switch can move all of them.
	Listeners map[string]ListenerConfig
	// Lease is how long a listener keeps routing without hearing from the
	// control plane (Renew or Switch). When it runs out the listener fences
	// itself: it refuses new connections and closes established ones.
	Lease time.Duration
	// DialTimeout bounds the dial to an upstream.
	DialTimeout time.Duration
	// HoldTimeout is how long a new connection that arrives while a
	// listener routes nowhere (between the two steps of a switch, or before
	// the first switch) waits for a route before it is refused. 0 refuses
	// at once.
	HoldTimeout time.Duration
	// Now is the clock the leases are measured with (tests inject one).
	Now func() time.Time
	Log *slog.Logger
}

// DefaultConfig has no listeners; the caller adds them.
func DefaultConfig() Config {
	return Config{
		Listeners:   map[string]ListenerConfig{},
		Lease:       10 * time.Second,
		DialTimeout: 2 * time.Second,
		HoldTimeout: 2 * time.Second,
		Now:         time.Now,
		Log:         slog.Default(),
	}
}

// ValidateConfig reports every problem of c at once.
func ValidateConfig(c Config) error {
	var errs []error
	if len(c.Listeners) == 0 {
		errs = append(errs, errors.New("frontdoor: no listeners: add at least one under Listeners (e.g. \"http\": {Listen: \"127.0.0.1:8080\", Upstreams: {...}})"))
	}
	if c.Lease <= 0 {
		errs = append(errs, fmt.Errorf("frontdoor: Lease is %v: it must be positive (the default is %v)", c.Lease, DefaultConfig().Lease))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("frontdoor: DialTimeout is %v: it must be positive (the default is %v)", c.DialTimeout, DefaultConfig().DialTimeout))
	}
	if c.HoldTimeout < 0 {
		errs = append(errs, fmt.Errorf("frontdoor: HoldTimeout is %v: it must be 0 (refuse at once) or positive", c.HoldTimeout))
	}
	if c.Now == nil {
		errs = append(errs, errors.New("frontdoor: Now is nil: use time.Now (DefaultConfig sets it)"))
	}
	if c.Log == nil {
		errs = append(errs, errors.New("frontdoor: Log is nil: use slog.Default() (DefaultConfig sets it)"))
	}
	names := lifeboat.SortedKeys(c.Listeners)
	var want []string // the first listener's regions
	for _, n := range names {
		lc := c.Listeners[n]
		if lc.Listen == "" {
			errs = append(errs, fmt.Errorf("frontdoor: listener %q has no Listen address: set one such as \"127.0.0.1:0\"", n))
		}
		if len(lc.Upstreams) == 0 {
			errs = append(errs, fmt.Errorf("frontdoor: listener %q has no Upstreams: map each region to its endpoint's host:port", n))
			continue
		}
		for r, a := range lc.Upstreams {
			if r == "" || a == "" {
				errs = append(errs, fmt.Errorf("frontdoor: listener %q has an empty region or upstream address (%q: %q)", n, r, a))
			}
		}
		got := lifeboat.SortedKeys(lc.Upstreams)
		if want == nil {
			want = got
		} else if strings.Join(got, ",") != strings.Join(want, ",") {
			errs = append(errs, fmt.Errorf("frontdoor: listener %q has upstreams for regions %v but listener %q for %v: every listener needs an upstream in every region, or a switch would leave one behind", n, got, names[0], want))
		}
	}
	return errors.Join(errs...)
}
