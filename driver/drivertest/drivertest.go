// Package drivertest checks that a set of drivers can carry out the
// planner's real plans: every later driver (PostgreSQL, processes, DNS) runs
// the same suite as the fake and the script drivers.
package drivertest

import (
	"context"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/planner"
)

// Procedures runs a failover, a failback and two switchovers of s, as the
// planner plans them from the state, step by step through lifeboat.Bind
// against d, whose world must start as lifeboat.InitialState(s). For every
// step it checks that its effect does not hold before it is applied, that
// it holds after, and that applying it again changes nothing. At the end it
// checks that an action for an old epoch is refused. It returns the state
// the steps led to.
func Procedures(t *testing.T, s *lifeboat.Spec, d lifeboat.Drivers) *lifeboat.State {
	t.Helper()
	ctx := context.Background()
	st := lifeboat.InitialState(s, time.Unix(0, 0))
	moves := []struct {
		intent lifeboat.Intent
		to     string
	}{
		{lifeboat.IntentFailover, s.Regions.Secondary.Name},
		{lifeboat.IntentFailback, s.Regions.Primary.Name},
		{lifeboat.IntentSwitchover, s.Regions.Secondary.Name},
		{lifeboat.IntentSwitchover, s.Regions.Primary.Name},
	}
	for _, m := range moves {
		p, err := planner.Plan(s, st, m.intent, m.to)
		if err != nil {
			t.Fatalf("%s to %s: %v", m.intent, m.to, err)
		}
		run := string(m.intent) + "-" + m.to
		for _, g := range p.Groups() {
			for _, step := range g {
				apply(t, ctx, s, d, run, step)
				st.Apply(step, time.Unix(int64(step.Epoch), 0))
			}
		}
		if st.Active != m.to {
			t.Fatalf("after the %s to %s the state says active in %s", m.intent, m.to, st.Active)
		}
	}
	staleEpochRefused(t, ctx, s, d, st)
	return st
}

func apply(t *testing.T, ctx context.Context, s *lifeboat.Spec, d lifeboat.Drivers, run string, step *lifeboat.Step) {
	t.Helper()
	if step.Op == lifeboat.OpApproval {
		return
	}
	a, err := lifeboat.Bind(s, d, run, step)
	if err != nil {
		t.Fatalf("%s: bind: %v", step.ID, err)
	}
	// Steps that change nothing a driver reports (the epoch, hooks, a
	// backup) have no check of their own; the rest must not hold yet.
	checked := step.Op != lifeboat.OpRaiseEpoch && step.Op != lifeboat.OpScript
	if checked {
		if holds, err := a.Holds(ctx); err != nil || holds {
			t.Fatalf("%s (%s): holds=%v err=%v before it was applied", step.ID, run, holds, err)
		}
	}
	if err := a.Apply(ctx); err != nil {
		t.Fatalf("%s (%s): %v", step.ID, run, err)
	}
	if step.Op == lifeboat.OpScript {
		return // a user's hook need not be idempotent
	}
	if err := a.Apply(ctx); err != nil {
		t.Fatalf("%s (%s): applying it again: %v", step.ID, run, err)
	}
	if checked {
		if holds, err := a.Holds(ctx); err != nil || !holds {
			t.Fatalf("%s (%s): holds=%v err=%v after it was applied", step.ID, run, holds, err)
		}
	}
}

// staleEpochRefused asks every database to promote for epoch 1: each has
// been acted on since at a newer epoch, so each must refuse, for good (the
// epoch is the fencing token).
func staleEpochRefused(t *testing.T, ctx context.Context, s *lifeboat.Spec, d lifeboat.Drivers, st *lifeboat.State) {
	t.Helper()
	if d.Database == nil {
		return
	}
	for _, r := range st.SortedResources() {
		if r.Kind != lifeboat.KindDatabase || r.Epoch <= 1 {
			continue
		}
		tg := lifeboat.Target{Service: s.Service, Unit: r.Unit, Component: r.Component, Region: r.Region, Resource: r.Name, Epoch: 1}
		err := d.Database.Promote(ctx, tg)
		// Drivers written in Go say lifeboat.ErrStaleEpoch; a script can
		// only fail, for good.
		if err == nil || lifeboat.IsRetryable(err) {
			t.Errorf("promote %s for epoch 1 after epoch %d: %v; want a permanent refusal", r.Name, r.Epoch, err)
		}
	}
}

// Spec is a service with every kind of component, for driver tests: a
// storefront unit (a warm web tier, a geo-replicated orders database, a
// public name) and a reports unit (a cold worker, a warehouse database kept
// by backups every 15 minutes), in regions west and east.
func Spec() *lifeboat.Spec {
	return &lifeboat.Spec{
		Service: "shop",
		Regions: lifeboat.Regions{Primary: lifeboat.Region{Name: "west"}, Secondary: lifeboat.Region{Name: "east"}},
		Units: map[string]lifeboat.Unit{
			"storefront": {
				Compute: map[string]lifeboat.Compute{"web": {
					Recipe:  lifeboat.Recipe{Artifact: "./bin/shop", Command: []string{"./shop"}},
					Standby: lifeboat.StandbyWarm, Instances: lifeboat.Instances{Primary: 3, Secondary: 3}}},
				Databases: map[string]lifeboat.Database{"orders": {Engine: "postgres", DRMode: lifeboat.DRGeoReplica}},
				Traffic:   map[string]lifeboat.Traffic{"www": {Names: []string{"shop.example.test"}, Target: "web"}},
			},
			"reports": {
				Compute: map[string]lifeboat.Compute{"worker": {
					Recipe:  lifeboat.Recipe{Artifact: "./bin/reports", Command: []string{"./reports"}},
					Standby: lifeboat.StandbyCold, Instances: lifeboat.Instances{Primary: 2, Secondary: 1}}},
				Databases: map[string]lifeboat.Database{"warehouse": {Engine: "postgres", DRMode: lifeboat.DRBackup,
					BackupInterval: lifeboat.Duration(15 * time.Minute)}},
			},
		},
	}
}
