package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/api"
	"github.com/lifeboat-dr/lifeboat/dashboard"
	"github.com/lifeboat-dr/lifeboat/driver"
	"github.com/lifeboat-dr/lifeboat/driver/agent"
	"github.com/lifeboat-dr/lifeboat/metrics"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
	"github.com/lifeboat-dr/lifeboat/tenant/gate"
	"github.com/lifeboat-dr/lifeboat/tenant/pgbackend"
	tenantserve "github.com/lifeboat-dr/lifeboat/tenant/serve"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

func (a *app) serveCommand() *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:   "serve [--region REGION]",
		Short: "Run a region's controller, or host the built-in DNS server or front door",
		Long: `With --region, run that region's controller: it embeds the region's etcd
member (store.members), observes every region with the probes of
monitor.targets and publishes what it sees under its lease, stands for the
election, and decides on every tick whether to fail over (monitor.mode:
manual, notify or automatic). A controller whose region is active and that
loses the quorum fences its region's databases before its lease runs out.
Run one in every region, the witness included.

Without --region, host the traffic driver that drivers.traffic names when it
is dns (the built-in authoritative DNS server) or frontdoor (TCP listeners
that forward to the active region). Other lifeboat commands reach it at
drivers.agent.url, where serve listens. On start, every name is routed where
the stored state says (a restarted serve picks up after the last failover).
While serve can read the state store it renews the front door's lease; if it
cannot for longer than the lease, the front door fences itself.

Stop it with Ctrl-C or SIGTERM.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if region != "" {
				return a.serveRegion(ctx, region)
			}
			return a.serve(ctx)
		},
	}
	cmd.Flags().StringVar(&region, "region", "", "run this region's controller (a region of the spec, the witness included)")
	return cmd
}

func (a *app) serve(ctx context.Context) error {
	spec, _, err := a.loadSpec()
	if err != nil {
		return err
	}
	hostTraffic := driver.HostsTraffic(spec)
	hostTenants := spec.Tenants != nil && spec.Tenants.Gate != nil && spec.Tenants.Gate.Listen != ""
	if !hostTraffic && !hostTenants {
		return exit(exitSpec, "%s: drivers.traffic is %q and there is no tenants.gate.listen, so serve has nothing to host: set drivers.traffic to dns or frontdoor (with its drivers.dns or drivers.frontdoor section), or add tenants.gate.listen (tenants.gate.listen-in is run by 'lifeboat serve --region')", a.specPath, spec.Drivers.Traffic)
	}
	var (
		ln     net.Listener
		listen string
	)
	if hostTraffic {
		if listen, err = agentListenAddr(spec); err != nil {
			return exit(exitSpec, "%s: %v", a.specPath, err)
		}
		// Bind first: a second serve for the same spec must fail before it
		// touches any listener the first one holds.
		if ln, err = net.Listen("tcp", listen); err != nil {
			return exit(exitFailed, "cannot listen on %s for drivers.agent.url (%v): is another 'lifeboat serve' running for this spec?", listen, err)
		}
		defer ln.Close()
	}

	s, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	log := slog.New(slog.NewTextHandler(a.err, &slog.HandlerOptions{Level: slog.LevelInfo}))
	served := make(chan error, 1)
	var lines []string
	if hostTraffic {
		h, err := driver.Host(ctx, s.spec, s.state, log)
		if err != nil {
			return exit(exitFailed, "%v", err)
		}
		defer h.Close()
		mc := metrics.DefaultConfig()
		mc.Runs, mc.Log = s.store, log
		mc.DNS, mc.FrontDoor = h.DNS, h.FrontDoor // the one not hosted is a nil pointer: left out
		reg, err := metrics.NewRegistry(mc)
		if err != nil {
			return exit(exitFailed, "%v", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler(reg))
		mux.Handle("/", agent.Handler(lifeboat.Drivers{Traffic: h.Driver()}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { served <- srv.Serve(ln) }()
		defer srv.Close()
		go h.Keep(ctx, s.spec, s.store, log)
		lines = append(lines, h.Addrs()...)
		lines = append(lines, fmt.Sprintf("agent %s (metrics at %s/metrics)", spec.Drivers.Agent.URL, strings.TrimSuffix(spec.Drivers.Agent.URL, "/")))
		if h.Lease > 0 {
			lines = append(lines, fmt.Sprintf("lease %s, renewed while the state store answers", lifeboat.FormatDuration(h.Lease)))
		}
	}
	if hostTenants {
		th, closeTenants, err := a.hostTenants(ctx, s.spec, s.store, "", log)
		if err != nil {
			return err
		}
		defer closeTenants()
		lines = append(lines, fmt.Sprintf("tenants' gate %s (PostgreSQL; a connection to a tenant being recovered hurries it)", th.Gate().Addr()))
	}
	apiAt, err := a.serveAPI(ctx, s.spec, s.store, "", nil, log)
	if err != nil {
		return err
	}
	if apiAt != "" {
		lines = append(lines, fmt.Sprintf("dashboard %s/ui/ · api %s/v1/", apiAt, apiAt))
	}

	if !a.json() {
		what := "the tenants' gate"
		if hostTraffic {
			what = spec.Drivers.Traffic + " traffic"
			if hostTenants {
				what += " and the tenants' gate"
			}
		}
		fmt.Fprintf(a.out, "%s: serving %s for %s (epoch %d, active %s)\n", a.paint(bold, "lifeboat serve"), what, spec.Service, s.state.Epoch, s.state.Active)
		for _, l := range lines {
			fmt.Fprintf(a.out, "  %s\n", l)
		}
		fmt.Fprintln(a.out, "Ctrl-C stops.")
	} else {
		_ = a.printJSON(map[string]any{"serving": lines, "epoch": s.state.Epoch})
	}

	select {
	case <-ctx.Done():
		log.Info("stopping")
		return nil
	case err := <-served:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return exit(exitFailed, "the agent on %s stopped: %v", listen, err)
	}
}

// hostTenants runs the tenants' gate, their backups and the recovery that
// follows a failover (tenant/serve), with the PostgreSQL backend. A
// geo-restore pool's DR copy is created, made read-only and deleted by the
// commands of its tenants.pools.<pool>.provision (run in the spec's
// directory); a pool without them waits for its copy to be made by hand,
// and the failback then falls back to default_transaction_read_only and
// leaves the copy for a person to delete.
//
// With region set ('lifeboat serve --region'), the gate listens at
// tenants.gate.listen-in[region], and the recovery, the failback and the
// backups run only while region is active.
func (a *app) hostTenants(ctx context.Context, spec *lifeboat.Spec, st lifeboat.Store, region string, log *slog.Logger) (*tenantserve.Hosted, func(), error) {
	bc := pgbackend.DefaultConfig()
	bc.Spec, bc.Backups, bc.Log = spec, backup.Dirs(spec), log
	bc.Provisioner = &pgbackend.SpecCommands{Spec: spec, Log: log}
	be, err := pgbackend.New(bc)
	if err != nil {
		return nil, nil, exit(exitSpec, "%s: tenants: %v", a.specPath, err)
	}
	hc := tenantserve.DefaultConfig()
	hc.Spec, hc.Store, hc.Backend, hc.Log, hc.Region = spec, st, be, log, region
	hc.BackupDirs = backup.Dirs(spec)
	if region != "" {
		gc := gate.ConfigFromSpec(spec.Tenants.Gate)
		gc.Listen = spec.Tenants.Gate.ListenIn[region]
		hc.Gate = &gc
	}
	h, err := tenantserve.Host(ctx, hc)
	if err != nil {
		be.Close()
		return nil, nil, exit(exitFailed, "hosting the tenants' gate: %v", err)
	}
	return h, func() { _ = h.Close(); be.Close() }, nil
}

// agentListenAddr is the host:port of drivers.agent.url, where serve listens.
func agentListenAddr(spec *lifeboat.Spec) (string, error) {
	if spec.Drivers.Agent == nil || spec.Drivers.Agent.URL == "" {
		return "", errors.New("drivers.agent.url is not set: serve listens there and the other commands reach it there; add e.g. agent: {url: http://127.0.0.1:7402}")
	}
	u, err := url.Parse(spec.Drivers.Agent.URL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("drivers.agent.url %q is not a URL like http://127.0.0.1:7402", spec.Drivers.Agent.URL)
	}
	if u.Scheme != "http" {
		return "", fmt.Errorf("drivers.agent.url %q: serve speaks plain http on loopback; use http://", spec.Drivers.Agent.URL)
	}
	if u.Port() == "" {
		return "", fmt.Errorf("drivers.agent.url %q has no port: add one, e.g. http://%s:7402", spec.Drivers.Agent.URL, u.Hostname())
	}
	return u.Host, nil
}

// serveAPI serves the HTTP API of the spec's api section (nothing without
// one) at api.Addr(spec, region), with /metrics beside it when reg is set,
// until ctx ends. It returns the URL it serves at ("" when there is no api
// section).
func (a *app) serveAPI(ctx context.Context, spec *lifeboat.Spec, st lifeboat.Store, region string, reg *prometheus.Registry, log *slog.Logger) (string, error) {
	if spec.API == nil {
		return "", nil
	}
	srv, err := api.New(api.Config{Spec: spec, Store: st, Region: region, DrillsDir: filepath.Join(filepath.Dir(spec.File), "drills"), Log: log})
	if err != nil {
		return "", exit(exitSpec, "%s: api: %v", a.specPath, err)
	}
	addr := api.Addr(spec, region)
	ln, err := srv.Listen(addr)
	if err != nil {
		srv.Close()
		return "", exit(exitFailed, "api: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", srv)
	dash, err := dashboard.New(dashboard.Config{Spec: spec, Store: st, API: srv, Log: log})
	if err != nil {
		srv.Close()
		return "", exit(exitSpec, "%s: dashboard: %v", a.specPath, err)
	}
	mux.Handle(dashboard.Prefix, dash)
	mux.Handle("GET /{$}", http.RedirectHandler(dashboard.Prefix, http.StatusSeeOther))
	if reg != nil {
		mux.Handle("GET /metrics", metrics.Handler(reg))
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	hs.RegisterOnShutdown(dash.Close) // end the live streams, so Shutdown does not wait on them
	go func() { _ = hs.Serve(ln) }()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		_ = srv.Close()
	}()
	scheme := "http"
	if spec.API.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + ln.Addr().String(), nil
}
