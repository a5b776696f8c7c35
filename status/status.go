// Package status builds the view of a service that 'lifeboat status' prints
// and the API serves: where it is active, the run in progress, where each
// public name routes, every resource, readiness with reasons, and what the
// regions' controllers publish. The CLI and the API build it here so that
// both always tell the same truth.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/controller"
	"github.com/lifeboat-dr/lifeboat/driver"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/store"
)

// Route is where one public name goes now, asked of the traffic driver
// (live) or, when it cannot answer, as the state recorded it.
type Route struct {
	Name    string    `json:"name"`
	Region  string    `json:"region"`
	Answers []string  `json:"answers,omitempty"`
	Since   time.Time `json:"since"`
	Epoch   uint64    `json:"epoch"`
	TTL     string    `json:"ttl"`
	Live    bool      `json:"live"`
	Error   string    `json:"error,omitempty"`
}

// Routes asks the traffic driver what each public name resolves to now.
func Routes(ctx context.Context, spec *lifeboat.Spec, st *lifeboat.State) []Route {
	drivers, derr := driver.FromSpec(spec, st)
	var out []Route
	for _, un := range spec.UnitNames() {
		u := spec.Units[un]
		for _, tn := range lifeboat.SortedKeys(u.Traffic) {
			t := u.Traffic[tn]
			res := lifeboat.TrafficName(spec.Service, un, tn)
			rec := st.Resources[res]
			var live lifeboat.Route
			err := derr
			if err == nil && drivers.Traffic != nil {
				c, cancel := context.WithTimeout(ctx, 3*time.Second)
				live, err = drivers.Traffic.Status(c, lifeboat.Target{Service: spec.Service, Unit: un, Component: tn, Resource: res, Epoch: st.Epoch}, t.Names)
				cancel()
			}
			for _, name := range t.Names {
				r := Route{Name: name, TTL: lifeboat.FormatDuration(t.TTLOrDefault())}
				switch {
				case err == nil && live.Region != "":
					r.Region, r.Since, r.Epoch, r.Live = live.Region, live.Since, live.Epoch, true
					r.Answers = live.Answers[name]
				case rec != nil:
					r.Region, r.Since, r.Epoch = rec.Routes, rec.Since, rec.Epoch
					if err != nil {
						r.Error = err.Error()
					}
				}
				out = append(out, r)
			}
		}
	}
	return out
}

// Readiness evaluates the readiness checks now, asking the drivers; ctrls
// (what the regions' controllers published, nil when none run) says
// whether the witness is reachable. With geo-restore tenant tiers it adds
// a "tenant backups fresh" check per tier, read from the tenants' catalog
// (bounded by TenantTimeout); those never block a failover.
func Readiness(ctx context.Context, spec *lifeboat.Spec, state *lifeboat.State, st lifeboat.Store, ctrls map[string]controller.Status) []monitor.Check {
	return append(FailoverReadiness(ctx, spec, state, st, ctrls), tenantReadiness(ctx, spec, state, OpenCatalog)...)
}

// FailoverReadiness is Readiness without the tenant backup checks: every
// check that may block a failover, and nothing that needs the tenants'
// catalog, whose primary may be in the region being left (deciding
// whether to fail over must not wait for it).
func FailoverReadiness(ctx context.Context, spec *lifeboat.Spec, state *lifeboat.State, st lifeboat.Store, ctrls map[string]controller.Status) []monitor.Check {
	drivers, err := driver.FromSpec(spec, state)
	if err != nil {
		return []monitor.Check{{Name: "drivers", OK: false, Reason: err.Error(), At: time.Now()}}
	}
	facts := monitor.Gather(ctx, spec, drivers, state, st)
	if w := spec.Regions.Witness; w != nil && ctrls != nil {
		c, ok := ctrls[w.Name]
		facts.Witness.Known = true
		facts.Witness.Reachable = ok && c.Quorum
		if facts.Witness.Reachable {
			facts.Witness.Detail = fmt.Sprintf("%s's controller is in the quorum (decided %s)", w.Name, Ago(c.DecidedAt))
		} else {
			facts.Witness.Detail = fmt.Sprintf("%s's controller publishes nothing under a live lease", w.Name)
		}
	}
	return monitor.Evaluate(spec, state, facts, time.Now())
}

// Controllers reads what each region's controller last published; nil
// when the spec has no shared store (no controllers).
func Controllers(ctx context.Context, spec *lifeboat.Spec, st lifeboat.Store) (map[string]controller.Status, error) {
	if len(spec.Store.Members) == 0 && len(spec.Store.Endpoints) == 0 {
		return nil, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	views, err := store.ReadViews(rctx, st)
	if err != nil {
		return nil, err
	}
	out := map[string]controller.Status{}
	for region, keys := range views {
		var c controller.Status
		if b, ok := keys["controller"]; ok && json.Unmarshal(b, &c) == nil {
			out[region] = c
		}
	}
	return out, nil
}

// Blocking are the failed checks that would make a failover fail.
func Blocking(checks []monitor.Check) []monitor.Check {
	var out []monitor.Check
	for _, c := range checks {
		if c.Blocks && !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// Describe says in a few words what a resource is doing.
func Describe(r *lifeboat.Resource) string {
	if !r.Exists {
		return "absent"
	}
	switch r.Kind {
	case lifeboat.KindCompute:
		return fmt.Sprintf("%d instance(s)", r.Instances)
	case lifeboat.KindDatabase:
		return string(r.Role)
	case lifeboat.KindTraffic:
		return "→ " + r.Routes
	}
	return strings.TrimSpace(string(r.Kind))
}

// Ago says how long ago t was, "-" when it is zero.
func Ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return lifeboat.FormatDuration(time.Since(t)) + " ago"
}

// Unit is one resource of the unit registry, as 'lifeboat units' lists it.
type Unit struct {
	Name      string `json:"name"`
	Unit      string `json:"unit"`
	Component string `json:"component"`
	Kind      string `json:"kind"`
	Region    string `json:"region"`
	Quadrant  string `json:"quadrant"`
	Purpose   string `json:"purpose"`
	State     string `json:"state"`
	Epoch     uint64 `json:"epoch"`
}

// Units lists the state's resources with their quadrant and purpose.
func Units(spec *lifeboat.Spec, st *lifeboat.State) []Unit {
	out := []Unit{}
	for _, r := range st.SortedResources() {
		out = append(out, Unit{r.Name, r.Unit, r.Component, string(r.Kind), r.Region, r.Quadrant(spec), string(r.Purpose), Describe(r), r.Epoch})
	}
	return out
}

// RunView is the run in progress, as status shows it.
type RunView struct {
	Run *lifeboat.Run `json:"run"`
	// Status is the run's status, or "interrupted (…)" when it says
	// running but no lifeboat process owns it.
	Status      string `json:"status"`
	Interrupted bool   `json:"interrupted,omitempty"`
	Done        int    `json:"done"`
	Total       int    `json:"total"`
	// Waiting are the approval steps that wait for a person.
	Waiting []Approval `json:"waiting,omitempty"`
}

// Approval is an approval step that waits for a person.
type Approval struct {
	Step     string `json:"step"`
	Question string `json:"question"`
}

// Run describes a run from its journal; st, when not nil, is asked
// whether a running run still has a live owner.
func Run(ctx context.Context, st lifeboat.Store, run *lifeboat.Run, recs []lifeboat.Record) *RunView {
	v := &RunView{Run: run, Status: string(run.Status), Total: len(run.Plan.Steps)}
	for _, r := range recs {
		if r.Kind == lifeboat.RecDone || r.Kind == lifeboat.RecSkipped {
			v.Done++
		}
	}
	if run.Status == lifeboat.RunRunning && st != nil {
		// Nobody owns a run whose process died: say so.
		if owned, err := st.Owned(ctx, run.ID); err == nil && !owned {
			// The run may have parked for an approval or ended (and its
			// process let go of it) since run was read: read it again.
			fresh, ferr := st.Run(ctx, run.ID)
			freshRecs, jerr := st.Journal(ctx, run.ID)
			if ferr == nil && jerr == nil && fresh.Status != lifeboat.RunRunning {
				return Run(ctx, nil, fresh, freshRecs)
			}
			v.Status = "interrupted (no lifeboat process is running it)"
			v.Interrupted = true
		}
	}
	waiting := map[string]bool{}
	for _, r := range recs {
		switch r.Kind {
		case lifeboat.RecWaiting:
			waiting[r.Step] = true
		case lifeboat.RecApproved, lifeboat.RecDone, lifeboat.RecFailed, lifeboat.RecCancelled:
			delete(waiting, r.Step)
		}
	}
	for _, id := range lifeboat.SortedKeys(waiting) {
		if s := run.Plan.Step(id); s != nil {
			v.Waiting = append(v.Waiting, Approval{Step: id, Question: s.Approval})
		}
	}
	return v
}

// View is everything 'lifeboat status' shows.
type View struct {
	Service string `json:"service"`
	Active  string `json:"active"`
	// Home is the primary region; Away says the service runs elsewhere.
	Home  string    `json:"home"`
	Away  bool      `json:"away"`
	Since time.Time `json:"since"`
	Epoch uint64    `json:"epoch"`
	// Run is the run in progress, if any.
	Run       *RunView        `json:"run,omitempty"`
	Traffic   []Route         `json:"traffic"`
	Resources []Unit          `json:"resources"`
	Readiness []monitor.Check `json:"readiness"`
	// Ready is false when a check blocks a failover.
	Ready bool `json:"ready"`
	// Controllers are what each region's controller published (absent
	// when the spec has no shared store); ControllersError why they could
	// not be read.
	Controllers      map[string]controller.Status `json:"controllers,omitempty"`
	ControllersError string                       `json:"controllers_error,omitempty"`
	// Leader is the region whose controller leads, and Decision what it
	// decided last, with its reasons.
	Leader   string            `json:"leader,omitempty"`
	Decision *monitor.Decision `json:"decision,omitempty"`
	// Exposure is the RPO exposure the active region's controller measures.
	Exposure []monitor.Exposure `json:"exposure,omitempty"`
	// Tenants sums up the tenants' catalog, when the spec has tenants.
	Tenants *TenantsView    `json:"tenants,omitempty"`
	State   *lifeboat.State `json:"state"`
}

// TenantsView sums up the tenants: how many in each state, overall and by
// tier, and what a recovery in progress waits for.
type TenantsView struct {
	Total  int                                     `json:"total"`
	Counts map[lifeboat.TenantState]int            `json:"counts"`
	ByTier map[string]map[lifeboat.TenantState]int `json:"by_tier"`
	// Recovery says what a tenants' recovery in progress waits for ("" when none).
	Recovery string `json:"recovery,omitempty"`
	// Error says why the catalog could not be read.
	Error string `json:"error,omitempty"`
}

// Build reads the state and the run in progress from st and asks the
// drivers, the controllers and the tenants' catalog, as 'lifeboat status'
// does.
func Build(ctx context.Context, spec *lifeboat.Spec, st lifeboat.Store) (*View, error) {
	return BuildWith(ctx, spec, st, OpenCatalog)
}

// BuildWith is Build with the tenants' catalog opened by open. The catalog
// is opened once (bounded by TenantTimeout) for the tenant counts and the
// tenant backup checks; when it cannot be read, View.Tenants.Error says
// why and the rest of the view is still built.
func BuildWith(ctx context.Context, spec *lifeboat.Spec, st lifeboat.Store, open CatalogOpener) (*View, error) {
	state, err := st.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the state: %w", err)
	}
	v := &View{Service: spec.Service, Active: state.Active, Home: spec.Regions.Primary.Name, Away: state.Active != spec.Regions.Primary.Name,
		Since: state.Since, Epoch: state.Epoch, State: state}
	if state.Run != "" {
		run, err := st.Run(ctx, state.Run)
		if err != nil {
			return nil, fmt.Errorf("reading run %s: %w", state.Run, err)
		}
		recs, err := st.Journal(ctx, run.ID)
		if err != nil {
			return nil, fmt.Errorf("reading the journal of run %s: %w", run.ID, err)
		}
		v.Run = Run(ctx, st, run, recs)
	}
	v.Traffic = Routes(ctx, spec, state)
	v.Resources = Units(spec, state)
	ctrls, cerr := Controllers(ctx, spec, st)
	v.Readiness = FailoverReadiness(ctx, spec, state, st, ctrls)
	if spec.Tenants != nil {
		tctx, cancel := context.WithTimeout(ctx, TenantTimeout)
		cat, err := openCatalog(tctx, spec, state, open)
		v.Tenants = TenantsFrom(tctx, spec, cat, err)
		v.Readiness = append(v.Readiness, TenantBackupChecks(tctx, spec, cat, err, time.Now())...)
		if cat != nil {
			_ = cat.Close()
		}
		cancel()
	}
	v.Ready = len(Blocking(v.Readiness)) == 0
	if cerr != nil {
		v.ControllersError = cerr.Error()
	}
	v.Controllers = ctrls
	for region, c := range ctrls {
		if c.Leader {
			d := c.Decision
			v.Leader, v.Decision = region, &d
		}
	}
	if c, ok := ctrls[state.Active]; ok {
		v.Exposure = c.Exposure
	}
	return v, nil
}
