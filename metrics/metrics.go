// Package metrics serves Lifeboat's Prometheus metrics at /metrics.
//
// Every collector reads its source at scrape time, through a small
// interface (a controller's status, the store's runs and journals, the
// hosted DNS server's and front door's counters): no goroutine, no copy of
// the state that could drift from what the API and the dashboard show.
//
// Names follow the Prometheus conventions: a lifeboat_ prefix, base units
// (seconds, bytes) in the name, _total on counters, _timestamp_seconds on
// Unix times. Gauges that say yes or no are 1 or 0. A value that cannot be
// bounded is +Inf, never 0 (see lifeboat_rpo_exposure_seconds).
package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config says which sources a registry reads. Every source is optional: a
// nil one (or a nil pointer, e.g. a *dns.Server that is not there) adds no
// metrics (plain 'lifeboat serve' has no controller; a witness hosts no
// traffic).
type Config struct {
	Controller ControllerSource
	Runs       RunSource
	DNS        DNSSource
	FrontDoor  FrontDoorSource
	// StoreTimeout bounds the store reads of one scrape (the runs and the
	// journals of runs not seen before).
	StoreTimeout time.Duration
	// Runtime adds the Go runtime's and the process's own metrics
	// (go_*, process_*).
	Runtime bool
	Log     *slog.Logger
}

// DefaultConfig has no source, a 5 s store timeout and the runtime's
// metrics; set the sources this process has.
func DefaultConfig() Config {
	return Config{StoreTimeout: 5 * time.Second, Runtime: true, Log: slog.Default()}
}

// ValidateConfig reports every problem of c at once.
func ValidateConfig(c Config) error {
	var errs []error
	if present(c.Runs) && c.StoreTimeout <= 0 {
		errs = append(errs, fmt.Errorf("metrics: StoreTimeout is %s: it must be positive (it bounds the store reads of one scrape; the default is %s)", c.StoreTimeout, DefaultConfig().StoreTimeout))
	}
	return errors.Join(errs...)
}

// NewRegistry builds a registry with a collector for every source c has.
func NewRegistry(c Config) (*prometheus.Registry, error) {
	if err := ValidateConfig(c); err != nil {
		return nil, err
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	reg := prometheus.NewRegistry()
	var cs []prometheus.Collector
	if present(c.Controller) {
		cs = append(cs, NewControllerCollector(c.Controller))
	}
	if present(c.Runs) {
		cs = append(cs, NewRunCollector(c.Runs, c.StoreTimeout, c.Log))
	}
	if present(c.DNS) {
		cs = append(cs, NewDNSCollector(c.DNS))
	}
	if present(c.FrontDoor) {
		cs = append(cs, NewFrontDoorCollector(c.FrontDoor))
	}
	if c.Runtime {
		cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("metrics: registering a collector: %w (a bug: two collectors export the same metric)", err)
		}
	}
	return reg, nil
}

// Handler serves reg in the Prometheus text format, for /metrics. A
// collector that fails is reported in the scrape's
// promhttp_metric_handler_errors_total and the rest is still served:
// during an outage a partial scrape beats none.
func Handler(reg *prometheus.Registry) http.Handler {
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            reg,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})
	return promhttp.InstrumentMetricHandler(reg, h)
}

// present says whether a source is set: a nil interface, or one holding a
// nil pointer (cfg.DNS = hosted.DNS when the process hosts no DNS server),
// is absent rather than a panic at the first scrape.
func present(src any) bool {
	if src == nil {
		return false
	}
	v := reflect.ValueOf(src)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Interface, reflect.Chan:
		return !v.IsNil()
	}
	return true
}

// flag is a yes/no gauge's value.
func flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unix is a time as a Prometheus timestamp value (seconds, fractional).
func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
