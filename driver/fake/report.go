package fake

import (
	"context"
	"fmt"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
)

// The readiness questions the fake answers (monitor.RecipeReporter,
// monitor.CapacityReporter, monitor.StreamReporter), named like the driver
// actions so that FailNext, Delay and Calls work on them. The root package
// does not declare them (they are optional calls, not plan steps); the
// agent uses the same names for its endpoints.
const (
	ActComputeRecipe   = "compute.recipe"
	ActComputeCapacity = "compute.capacity"
	ActDatabaseStream  = "database.stream"
)

// PlainDrivers returns the world behind the five driver interfaces only,
// without the optional readiness questions above: for tests of what a
// caller does with a driver that does not say.
func (w *World) PlainDrivers() lifeboat.Drivers {
	d := w.Drivers()
	return lifeboat.Drivers{
		Compute:  struct{ lifeboat.ComputeDriver }{d.Compute},
		Database: struct{ lifeboat.DatabaseDriver }{d.Database},
		Backup:   d.Backup, Traffic: d.Traffic, Scripts: d.Scripts,
	}
}

// StopStreaming makes a replica's WAL receiver stop, as when its WAN link
// or its primary's sender broke: it stays a replica, StreamState says
// "stopped". ResumeStreaming undoes it.
func (w *World) StopStreaming(resource string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped == nil {
		w.stopped = map[string]bool{}
	}
	w.stopped[resource] = true
}

// ResumeStreaming undoes StopStreaming.
func (w *World) ResumeStreaming(resource string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.stopped, resource)
}

// NoRoom makes CanStandUp answer "no" in region, with why (say what is
// missing, e.g. "port 20001 is in use"); why "" gives room back.
func (w *World) NoRoom(region, why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.noRoom == nil {
		w.noRoom = map[string]string{}
	}
	if why == "" {
		delete(w.noRoom, region)
		return
	}
	w.noRoom[region] = why
}

// RecipeReady reports whether region t.Region holds c's recipe: the scale
// set t.Resource was provisioned (or seeded) with the same artifact and
// checksum. The recipe stays in the region after Delete, as a transferred
// artifact would.
func (c compute) RecipeReady(ctx context.Context, t lifeboat.Target, want lifeboat.Compute) (ready bool, why string, err error) {
	err = c.w.call(ctx, callOf(ActComputeRecipe, t), false, []string{t.Region}, func() error {
		got, ok := c.w.recipes[t.Resource]
		switch {
		case !ok:
			why = fmt.Sprintf("the recipe is not transferred to region %s (%s was never provisioned): provision it (compute.provision)", t.Region, t.Resource)
		case got.Recipe.Artifact != want.Recipe.Artifact || got.Recipe.Checksum != want.Recipe.Checksum:
			why = fmt.Sprintf("region %s holds %s %s but the recipe wants %s %s: provision %s again", t.Region,
				got.Recipe.Artifact, got.Recipe.Checksum, want.Recipe.Artifact, want.Recipe.Checksum, t.Resource)
		default:
			ready, why = true, fmt.Sprintf("region %s holds the artifact %s", t.Region, want.Recipe.Artifact)
			if want.Recipe.Checksum != "" {
				why += ", checksum " + want.Recipe.Checksum
			}
		}
		return nil
	})
	return ready, why, err
}

// CanStandUp reports room for n instances in region t.Region: always,
// unless NoRoom says otherwise.
func (c compute) CanStandUp(ctx context.Context, t lifeboat.Target, _ lifeboat.Compute, n int) (ok bool, why string, err error) {
	err = c.w.call(ctx, callOf(ActComputeCapacity, t), false, []string{t.Region}, func() error {
		if n < 0 {
			return fmt.Errorf("cannot judge room for %d instances of %s: the count must be 0 or more", n, t.Resource)
		}
		if r, no := c.w.noRoom[t.Region]; no {
			why = r
			return nil
		}
		unit := "instances"
		if n == 1 {
			unit = "instance"
		}
		ok, why = true, fmt.Sprintf("the fake world has room for %d %s in %s", n, unit, t.Region)
		return nil
	})
	return ok, why, err
}

// StreamState reports a replica's WAL receiver as PostgreSQL would:
// "streaming" from the primary copy of the same database, unless
// StopStreaming stopped it, there is no primary (fenced, absent), or the
// primary's region is cut off ("stopped"). A copy that is not a replica
// says what it is. A cut region of the copy itself is an error, as for
// every call.
func (d database) StreamState(ctx context.Context, t lifeboat.Target) (state, upstream string, err error) {
	err = d.w.call(ctx, callOf(ActDatabaseStream, t), false, []string{t.Region}, func() error {
		role := d.w.databaseLocked(t.Resource).Role
		if role != lifeboat.DBReplica {
			state = "not a replica (" + string(role) + ")"
			return nil
		}
		state = "stopped"
		if d.w.stopped[t.Resource] {
			return nil
		}
		prefix := databaseOf(t) + "-"
		regions := d.w.regions
		if len(regions) == 0 { // not seeded: every copy of the database is a candidate
			for _, name := range lifeboat.SortedKeys(d.w.databases) {
				if r, ok := strings.CutPrefix(name, prefix); ok {
					regions = append(regions, r)
				}
			}
		}
		for _, r := range regions {
			name := prefix + r
			if name == t.Resource || d.w.databaseLocked(name).Role != lifeboat.DBPrimary {
				continue
			}
			if d.w.cut[r] {
				return nil // the primary's region is lost: nothing to stream from
			}
			state, upstream = "streaming", name
			return nil
		}
		return nil
	})
	return state, upstream, err
}
