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
		o.Dir, o.Members = storeDir(spec), spec.Store.Members
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
	if !a.json() {
		targets, _ := controller.Targets(spec, state.Active)
		fmt.Fprintf(a.out, "%s: %s's controller for %s · mode %s · %d target(s) probed every %s, down after %d failures · lease %s\n",
			a.paint(bold, "lifeboat serve"), region, spec.Service, m.Mode, len(targets), lifeboat.FormatDuration(m.Interval.D()), m.Failures, lifeboat.FormatDuration(m.Lease.D()))
		fmt.Fprintf(a.out, "active %s at epoch %d. Ctrl-C stops (hands the election over).\n", state.Active, state.Epoch)
	}
	return c.Run(ctx)
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
