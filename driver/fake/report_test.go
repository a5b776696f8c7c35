package fake

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/monitor"
)

func TestReportsReadiness(t *testing.T) {
	_, d := seeded(t)
	for name, ok := range map[string]bool{
		"RecipeReporter":   implements[monitor.RecipeReporter](d.Compute),
		"CapacityReporter": implements[monitor.CapacityReporter](d.Compute),
		"StreamReporter":   implements[monitor.StreamReporter](d.Database),
	} {
		if !ok {
			t.Errorf("the fake's drivers do not implement monitor.%s", name)
		}
	}
	w := New()
	p := w.PlainDrivers()
	if implements[monitor.RecipeReporter](p.Compute) || implements[monitor.CapacityReporter](p.Compute) || implements[monitor.StreamReporter](p.Database) {
		t.Error("PlainDrivers still answers the optional readiness questions")
	}
}

func implements[I any](v any) bool { _, ok := v.(I); return ok }

func TestStreamState(t *testing.T) {
	ctx := context.Background()
	w, d := seeded(t)
	sr := d.Database.(monitor.StreamReporter)
	west, east := tg("storefront", "orders", "west", 2), tg("storefront", "orders", "east", 2)

	state := func(tg lifeboat.Target) (string, string) {
		t.Helper()
		st, up, err := sr.StreamState(ctx, tg)
		must(t, err)
		return st, up
	}
	if st, up := state(east); st != "streaming" || up != west.Resource {
		t.Errorf("seeded replica: %q from %q, want streaming from %s", st, up, west.Resource)
	}
	if st, up := state(west); !strings.Contains(st, "not a replica (primary)") || up != "" {
		t.Errorf("the primary: %q from %q", st, up)
	}

	w.StopStreaming(east.Resource)
	if st, _ := state(east); st != "stopped" {
		t.Errorf("after StopStreaming: %q, want stopped", st)
	}
	w.ResumeStreaming(east.Resource)
	if st, _ := state(east); st != "streaming" {
		t.Errorf("after ResumeStreaming: %q, want streaming", st)
	}

	// The primary's region lost: the replica has nothing to stream from.
	w.Cut("west")
	if st, up := state(east); st != "stopped" || up != "" {
		t.Errorf("west cut: %q from %q, want stopped", st, up)
	}
	w.Heal("west")
	// The replica's own region lost: the question cannot be asked.
	w.Cut("east")
	if _, _, err := sr.StreamState(ctx, east); !errors.Is(err, ErrRegionUnreachable) || !lifeboat.IsRetryable(err) {
		t.Errorf("east cut: %v, want a retryable region-unreachable error", err)
	}
	w.Heal("east")

	// A fenced primary streams to nobody.
	must(t, d.Database.Fence(ctx, west))
	if st, _ := state(east); st != "stopped" {
		t.Errorf("primary fenced: %q, want stopped", st)
	}

	w.FailNext(ActDatabaseStream, 1, false)
	if _, _, err := sr.StreamState(ctx, east); !errors.Is(err, ErrInjected) {
		t.Errorf("FailNext(%s): %v", ActDatabaseStream, err)
	}
}

func TestRecipeReadyAndCanStandUp(t *testing.T) {
	ctx := context.Background()
	w, d := seeded(t)
	rr := d.Compute.(monitor.RecipeReporter)
	cr := d.Compute.(monitor.CapacityReporter)
	s := spec()
	web := s.Units["storefront"].Compute["web"]
	east := tg("storefront", "web", "east", 2)

	if ok, why, err := rr.RecipeReady(ctx, east, web); err != nil || !ok {
		t.Errorf("seeded recipe: ok=%v %q %v", ok, why, err)
	}
	newer := web
	newer.Recipe.Checksum = "sha256:" + strings.Repeat("1", 64)
	if ok, why, err := rr.RecipeReady(ctx, east, newer); err != nil || ok || !strings.Contains(why, "provision") {
		t.Errorf("another version: ok=%v %q %v", ok, why, err)
	}
	must(t, d.Compute.Provision(ctx, east, newer))
	if ok, why, err := rr.RecipeReady(ctx, east, newer); err != nil || !ok {
		t.Errorf("after provisioning the new version: ok=%v %q %v", ok, why, err)
	}
	if ok, why, err := rr.RecipeReady(ctx, tg("nothing", "web", "east", 2), web); err != nil || ok || !strings.Contains(why, "not transferred") {
		t.Errorf("never provisioned: ok=%v %q %v", ok, why, err)
	}

	if ok, why, err := cr.CanStandUp(ctx, east, web, 3); err != nil || !ok {
		t.Errorf("room by default: ok=%v %q %v", ok, why, err)
	}
	w.NoRoom("east", "port 20001 is in use")
	if ok, why, err := cr.CanStandUp(ctx, east, web, 3); err != nil || ok || why != "port 20001 is in use" {
		t.Errorf("NoRoom: ok=%v %q %v", ok, why, err)
	}
	if ok, _, err := cr.CanStandUp(ctx, tg("storefront", "web", "west", 2), web, 3); err != nil || !ok {
		t.Errorf("NoRoom in east took room in west: ok=%v %v", ok, err)
	}
	w.NoRoom("east", "")
	if ok, _, _ := cr.CanStandUp(ctx, east, web, 3); !ok {
		t.Error("room not given back")
	}
	w.Cut("east")
	if _, _, err := cr.CanStandUp(ctx, east, web, 3); !errors.Is(err, ErrRegionUnreachable) {
		t.Errorf("east cut: %v", err)
	}
	if _, _, err := rr.RecipeReady(ctx, east, web); !errors.Is(err, ErrRegionUnreachable) {
		t.Errorf("east cut: %v", err)
	}
}
