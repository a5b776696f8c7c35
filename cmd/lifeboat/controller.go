package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/controller"
	"github.com/lifeboat-dr/lifeboat/driver"
	"github.com/lifeboat-dr/lifeboat/metrics"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/store"
)

// serveRegion runs region's controller until ctx ends.
func (a *app) serveRegion(ctx context.Context, region string) error {
	spec, _, err := a.loadSpec()
	if err != nil {
		return err
	}
	known := []string{spec.Regions.Primary.Name, spec.Regions.Secondary.Name}
	if spec.Regions.Witness != nil {
		known = append(known, spec.Regions.Witness.Name)
	}
	if !slices.Contains(known, region) {
		return exit(exitSpec, "--region %s: %s has regions %s", region, spec.Service, strings.Join(known, ", "))
	}
	m := spec.Monitor.WithDefaults()
	log := slog.New(slog.NewTextHandler(a.err, &slog.HandlerOptions{Level: slog.LevelInfo}))

	var (
		st     lifeboat.Store
		quorum *store.Quorum
	)
	switch {
	case len(spec.Store.Members) > 0:
		o := store.DefaultMemberOptions(spec.Service, region)
		o.Dir, o.Members, o.Lease = storeDir(spec), spec.Store.Members, m.Lease.D()
		if !a.json() {
			fmt.Fprintf(a.out, "%s: starting %s's etcd member; waiting for a majority of %s\n", a.paint(bold, "lifeboat serve"), region, strings.Join(lifeboat.SortedKeys(spec.Store.Members), ", "))
		}
		member, err := store.OpenMember(ctx, o)
		if err != nil {
			return exit(exitFailed, "%v", err)
		}
		defer member.Close()
		st = member.Store()
		if w := spec.Regions.Witness; w != nil && w.Name == region {
			// The witness keeps etcd's raft leadership, so that losing the
			// primary or the secondary never costs a raft election (and
			// the lease renewal that comes with one) before the failover.
			go keepRaftLeadership(ctx, member, log)
		}
		if err := retryTransient(ctx, func() (err error) { quorum, err = member.Quorum(ctx, m.Lease.D()); return err }); err != nil {
			return exit(exitFailed, "%v", err)
		}
	case len(spec.Store.Endpoints) > 0:
		s, err := store.Open(ctx, store.Options{Endpoints: spec.Store.Endpoints, Service: spec.Service})
		if err != nil {
			return exit(exitFailed, "opening the state store: %v", err)
		}
		defer s.Close()
		st = s
		if quorum, err = store.OpenQuorum(ctx, s, region, m.Lease.D()); err != nil {
			return exit(exitFailed, "%v", err)
		}
	default:
		return exit(exitSpec, "%s: serve --region needs a store shared by the regions' controllers: set store.members (an etcd member embedded in each controller) or store.endpoints (an external etcd cluster)", a.specPath)
	}
	defer quorum.Close()
	var state *lifeboat.State
	err = retryTransient(ctx, func() (err error) {
		state, err = st.Init(ctx, lifeboat.InitialState(spec, time.Now().UTC()))
		return err
	})
	if err != nil {
		return exit(exitFailed, "reading the state: %v", err)
	}
	drivers, err := driver.FromSpec(spec, state)
	if err != nil {
		return exit(exitSpec, "drivers: %v", err)
	}
	// This region's DNS server or front door listeners, if the spec puts
	// some here: they follow the stored state.
	hosted, err := driver.HostIn(ctx, spec, region, state, log)
	if err != nil {
		return exit(exitFailed, "%v", err)
	}
	if hosted != nil {
		defer hosted.Close()
		drivers.Traffic = &driver.Routed{Local: hosted, Spec: spec}
	}
	ready := func(ctx context.Context) []monitor.Check {
		state, err := st.State(ctx)
		if err != nil {
			return nil // unknown now: decide with no readiness rather than a stale one
		}
		return monitor.Evaluate(spec, state, monitor.Gather(ctx, spec, drivers, state, st), time.Now())
	}
	c, err := controller.New(controller.Config{Spec: spec, Region: region, Store: st, Quorum: quorum, Drivers: drivers, Readiness: ready, Log: log})
	if err != nil {
		return exit(exitSpec, "%v", err)
	}
	mc := metrics.DefaultConfig()
	mc.Controller, mc.Runs, mc.Log = c, st, log
	if hosted != nil {
		mc.DNS, mc.FrontDoor = hosted.DNS, hosted.FrontDoor // the one not hosted is a nil pointer: left out
	}
	reg, err := metrics.NewRegistry(mc)
	if err != nil {
		return exit(exitFailed, "%v", err)
	}
	apiAt, err := a.serveAPI(ctx, spec, st, region, reg, log)
	if err != nil {
		return err
	}
	// This region's tenants' gate, if the spec puts one here; its host
	// recovers the tenants only while this region is active.
	var tenantGate string
	if spec.Tenants != nil && spec.Tenants.Gate != nil && spec.Tenants.Gate.ListenIn[region] != "" {
		tenantGate = spec.Tenants.Gate.ListenIn[region]
		defer a.hostTenantsIn(ctx, spec, st, region, log)()
	}
	if !a.json() {
		if apiAt != "" {
			fmt.Fprintf(a.out, "%s: dashboard %s/ui/ · api %s/v1/ · metrics %s/metrics\n", a.paint(bold, "lifeboat serve"), apiAt, apiAt, apiAt)
		}
		targets, _ := controller.Targets(spec, state.Active)
		fmt.Fprintf(a.out, "%s: %s's controller for %s · mode %s · %d target(s) probed every %s, down after %d failures · lease %s\n",
			a.paint(bold, "lifeboat serve"), region, spec.Service, m.Mode, len(targets), lifeboat.FormatDuration(m.Interval.D()), m.Failures, lifeboat.FormatDuration(m.Lease.D()))
		if hosted != nil {
			fmt.Fprintf(a.out, "serving %s traffic here, routed as the stored state says:\n", spec.Drivers.Traffic)
			for _, addr := range hosted.Addrs() {
				fmt.Fprintf(a.out, "  %s\n", addr)
			}
			if hosted.Lease > 0 {
				fmt.Fprintf(a.out, "  lease %s, renewed while this region holds the quorum\n", lifeboat.FormatDuration(hosted.Lease))
			}
		}
		if tenantGate != "" {
			fmt.Fprintf(a.out, "tenants' gate %s (PostgreSQL); their recovery, failback and backups run here while %s is active\n", tenantGate, region)
		}
		fmt.Fprintf(a.out, "active %s at epoch %d. Ctrl-C stops (hands the election over).\n", state.Active, state.Epoch)
	}
	if hosted != nil {
		go followRoutes(ctx, spec, hosted, c, quorum, m.Interval.D(), log)
	}
	return c.Run(ctx)
}

// hostTenantsIn hosts region's part of the tenants in the background,
// retrying while it cannot start (the catalog's primary may be in the
// region just lost): a controller starts without its gate rather than not
// at all. The returned function stops it and waits.
func (a *app) hostTenantsIn(ctx context.Context, spec *lifeboat.Spec, st lifeboat.Store, region string, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
			_, closeTenants, err := a.hostTenants(ctx, spec, st, region, log)
			if err == nil {
				log.Info("tenants' gate serving", "region", region, "listen", spec.Tenants.Gate.ListenIn[region])
				<-ctx.Done()
				closeTenants()
				return
			}
			log.Warn("tenants' gate not started; retrying", "region", region, "in", wait, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// followRoutes keeps the traffic this region hosts in step with the
// control plane, every tick: routes as the state the controller last read
// says; DNS endpoints healthy as this region's observer sees their
// regions; the front door's lease renewed while the region holds the
// quorum, so a region cut off from the majority stops routing on its own.
func followRoutes(ctx context.Context, spec *lifeboat.Spec, h *driver.Hosted, c *controller.Controller, q *store.Quorum, tick time.Duration, log *slog.Logger) {
	t := time.NewTicker(tick)
	defer t.Stop()
	quorum := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := c.LastState()
		if st == nil {
			continue
		}
		if moved, err := h.Follow(ctx, spec, st); err != nil {
			log.Warn("following the stored route", "err", err)
		} else if len(moved) > 0 {
			log.Info("routes follow the stored state", "moved", moved, "active", st.Active, "epoch", st.Epoch)
		}
		for _, v := range c.Views() {
			if v.Region != "" {
				h.SetRegionHealth(spec, v.Region, !v.Failing)
			}
		}
		alive := q.Alive(time.Now())
		if alive {
			h.Renew(st.Epoch)
		}
		if h.Lease > 0 && alive != quorum {
			if alive {
				log.Info("quorum back: the front door's lease is renewed again")
			} else {
				log.Warn("no quorum: the front door's lease is not renewed; it stops routing when the lease runs out", "lease", h.Lease)
			}
		}
		quorum = alive
	}
}

// keepRaftLeadership moves etcd's raft leadership to member whenever it is
// elsewhere, checking every few seconds until ctx ends.
func keepRaftLeadership(ctx context.Context, member *store.Member, log *slog.Logger) {
	for {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		moved, err := member.LeadRaft(mctx)
		cancel()
		if moved {
			log.Info("the witness's etcd member leads raft again")
		} else if err != nil && ctx.Err() == nil {
			log.Debug("keeping raft leadership", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// retryTransient retries f while it fails with a retryable error, for up to
// about 10 s: a young cluster may be electing or handing over its raft
// leader while the controllers start.
func retryTransient(ctx context.Context, f func() error) error {
	var err error
	for attempt := 0; attempt < 40; attempt++ {
		if err = f(); err == nil || !lifeboat.IsRetryable(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
	return err
}
