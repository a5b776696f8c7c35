package lifeboat

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Intent is what a person (or the monitor) asks for.
type Intent string

const (
	// Failover moves the service to the other region after it was lost:
	// data may be lost up to the RPO.
	IntentFailover Intent = "failover"
	// Failback returns the service home, planned and with zero data loss.
	IntentFailback Intent = "failback"
	// Switchover is a planned, zero-loss move in either direction.
	IntentSwitchover Intent = "switchover"
	// Rejoin makes the region that is not active ready again after a
	// failover, without moving the service: each old primary there is fenced
	// if the state still calls it primary, then rebuilt as a replica of the
	// active copy (writes that never replicated go to quarantine).
	IntentRejoin Intent = "rejoin"
)

// Op is what a step does. Each op maps to one idempotent driver action.
type Op string

const (
	OpRaiseEpoch         Op = "epoch.raise"         // raise the service's epoch (first step of every plan)
	OpApproval           Op = "approval"            // wait for a person
	OpScript             Op = "script"              // run a user's command
	OpComputeProvision   Op = "compute.provision"   // stand up a scale set (0 instances)
	OpComputeScale       Op = "compute.scale"       // scale a scale set to Instances
	OpComputeStop        Op = "compute.stop"        // scale to 0 so no more data changes (stop writes)
	OpComputeDelete      Op = "compute.delete"      // delete a scale set of the failover group
	OpDatabaseFence      Op = "database.fence"      // make a primary unable to take writes
	OpDatabasePromote    Op = "database.promote"    // make a replica the primary (may lose up to RPO)
	OpDatabaseSwitchover Op = "database.switchover" // planned zero-loss promote of Resource, demote FromResource
	OpDatabaseRejoin     Op = "database.rejoin"     // make an old primary a replica of the new one
	OpDatabaseBackup     Op = "database.backup"     // take a backup now (zero-loss failback of dr-mode backup)
	OpDatabaseRestore    Op = "database.restore"    // restore the latest backup into Region
	OpTrafficSwitch      Op = "traffic.switch"      // point a traffic name at Region
)

// Ops lists every op, for validation and documentation.
var Ops = []Op{OpRaiseEpoch, OpApproval, OpScript, OpComputeProvision, OpComputeScale, OpComputeStop,
	OpComputeDelete, OpDatabaseFence, OpDatabasePromote, OpDatabaseSwitchover, OpDatabaseRejoin,
	OpDatabaseBackup, OpDatabaseRestore, OpTrafficSwitch}

// Kind returns the kind of component the op acts on ("" for epoch, approval, script).
func (o Op) Kind() Kind {
	switch {
	case strings.HasPrefix(string(o), "compute."):
		return KindCompute
	case strings.HasPrefix(string(o), "database."):
		return KindDatabase
	case strings.HasPrefix(string(o), "traffic."):
		return KindTraffic
	}
	return ""
}

// Step is one idempotent action of a plan.
type Step struct {
	// ID is unique in the plan and stable across re-planning, e.g.
	// "promote shop-orders-db-east".
	ID string `json:"id"`
	Op Op     `json:"op"`
	// Unit and Component the step acts on (empty for epoch, hooks).
	Unit      string `json:"unit,omitempty"`
	Component string `json:"component,omitempty"`
	// Resource is the systematic name of what the step changes.
	Resource string `json:"resource,omitempty"`
	// Region where the step acts (for traffic.switch: where names will point).
	Region string `json:"region,omitempty"`
	// FromResource and FromRegion: the old primary of a switchover or rejoin.
	FromResource string `json:"from_resource,omitempty"`
	FromRegion   string `json:"from_region,omitempty"`
	// Instances is the target size (compute.scale, compute.stop).
	Instances int `json:"instances,omitempty"`
	// Epoch the step acts for: the plan's epoch. Drivers refuse older ones.
	Epoch uint64 `json:"epoch"`
	// Run and Approval: a hook's command or question.
	Run      string            `json:"run,omitempty"`
	Approval string            `json:"approval,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	// DependsOn lists the IDs of steps that must complete first.
	DependsOn []string `json:"depends_on,omitempty"`
	// Estimate is how long the step is expected to take.
	Estimate time.Duration `json:"estimate"`
	// Timeout is the step's deadline across all attempts (0: the engine's default).
	Timeout time.Duration `json:"timeout,omitempty"`
	// Cleanup steps run after the service is back (deleting the failover
	// group, scaling the old region down): they are not part of the RTO.
	Cleanup bool `json:"cleanup,omitempty"`
	// BestEffort steps may fail without failing the plan: fencing an old
	// primary in a region that cannot be reached.
	BestEffort bool `json:"best_effort,omitempty"`
	// Why says in a few words why the plan has this step.
	Why string `json:"why,omitempty"`
}

// Plan is a DAG of steps that carries out an intent.
type Plan struct {
	Service string `json:"service"`
	Intent  Intent `json:"intent"`
	From    string `json:"from"`
	To      string `json:"to"`
	// Epoch is the epoch the plan raises the service to.
	Epoch uint64  `json:"epoch"`
	Steps []*Step `json:"steps"`
	// Estimates next to the objectives.
	RTO        time.Duration `json:"rto"`
	RPO        time.Duration `json:"rpo"`
	Objectives Objectives    `json:"objectives"`
	// Misses says which components make the plan miss an objective.
	Misses []Miss `json:"misses,omitempty"`
	// Notes are things a person should know (e.g. a database with dr-mode
	// none loses its data).
	Notes []string `json:"notes,omitempty"`
}

// Miss is an objective the plan is estimated to miss, and the culprit.
type Miss struct {
	Objective string        `json:"objective"` // "rto" or "rpo"
	Component string        `json:"component"` // "unit.component"
	Estimate  time.Duration `json:"estimate"`
	Target    time.Duration `json:"target"`
	Why       string        `json:"why"`
}

func (m Miss) String() string {
	return fmt.Sprintf("%s %s misses the %s objective: %s > %s (%s)", m.Component, strings.ToUpper(m.Objective),
		strings.ToUpper(m.Objective), FormatDuration(m.Estimate), FormatDuration(m.Target), m.Why)
}

// Step returns the step with the given ID, or nil.
func (p *Plan) Step(id string) *Step {
	for _, s := range p.Steps {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// Validate checks that IDs are unique, dependencies exist and there is no cycle.
func (p *Plan) Validate() error {
	seen := map[string]bool{}
	for _, s := range p.Steps {
		if s.ID == "" {
			return fmt.Errorf("plan has a step with no id (op %s)", s.Op)
		}
		if seen[s.ID] {
			return fmt.Errorf("plan has two steps with id %q", s.ID)
		}
		seen[s.ID] = true
	}
	for _, s := range p.Steps {
		for _, d := range s.DependsOn {
			if !seen[d] {
				return fmt.Errorf("step %q depends on %q, which is not in the plan", s.ID, d)
			}
		}
	}
	if _, err := p.levels(); err != nil {
		return err
	}
	return nil
}

// Groups returns the steps in parallel groups: every step of group i depends
// only on steps of earlier groups, so a group's steps can run together.
func (p *Plan) Groups() [][]*Step {
	lv, err := p.levels()
	if err != nil {
		return nil
	}
	var groups [][]*Step
	for _, s := range p.Steps {
		l := lv[s.ID]
		for len(groups) <= l {
			groups = append(groups, nil)
		}
		groups[l] = append(groups[l], s)
	}
	return groups
}

func (p *Plan) levels() (map[string]int, error) {
	byID := make(map[string]*Step, len(p.Steps))
	for _, s := range p.Steps {
		byID[s.ID] = s
	}
	lv := make(map[string]int, len(p.Steps))
	const visiting = -1
	var visit func(s *Step, path []string) (int, error)
	visit = func(s *Step, path []string) (int, error) {
		if l, ok := lv[s.ID]; ok {
			if l == visiting {
				return 0, fmt.Errorf("plan has a cycle: %s -> %s", strings.Join(path, " -> "), s.ID)
			}
			return l, nil
		}
		lv[s.ID] = visiting
		l := 0
		for _, d := range s.DependsOn {
			ds := byID[d]
			if ds == nil {
				continue
			}
			dl, err := visit(ds, append(path, s.ID))
			if err != nil {
				return 0, err
			}
			if dl+1 > l {
				l = dl + 1
			}
		}
		lv[s.ID] = l
		return l, nil
	}
	for _, s := range p.Steps {
		if _, err := visit(s, nil); err != nil {
			return nil, err
		}
	}
	return lv, nil
}

// CriticalPath returns the longest chain of estimates through the DAG and
// its length: the plan's estimated duration if every group runs in parallel.
func (p *Plan) CriticalPath() ([]*Step, time.Duration) {
	return p.longestPathTo(func(*Step) bool { return true })
}

// RecoveryPath returns the longest chain of steps that ends at a step that
// is not cleanup, and its length: the estimated time until the service is
// back (the RTO). Cleanup after it, such as deleting the failover group at
// failback, is not downtime.
func (p *Plan) RecoveryPath() ([]*Step, time.Duration) {
	return p.longestPathTo(func(s *Step) bool { return !s.Cleanup })
}

// longestPathTo returns the longest chain of estimates that ends at a step
// for which end is true.
func (p *Plan) longestPathTo(isEnd func(*Step) bool) ([]*Step, time.Duration) {
	byID := make(map[string]*Step, len(p.Steps))
	for _, s := range p.Steps {
		byID[s.ID] = s
	}
	finish := map[string]time.Duration{}
	prev := map[string]string{}
	var end func(s *Step) time.Duration
	end = func(s *Step) time.Duration {
		if f, ok := finish[s.ID]; ok {
			return f
		}
		var start time.Duration
		for _, d := range s.DependsOn {
			if ds := byID[d]; ds != nil {
				if f := end(ds); f > start {
					start, prev[s.ID] = f, d
				}
			}
		}
		finish[s.ID] = start + s.Estimate
		return finish[s.ID]
	}
	var last *Step
	var total time.Duration
	ids := make([]string, 0, len(p.Steps))
	for _, s := range p.Steps {
		ids = append(ids, s.ID)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := byID[id]
		if !isEnd(s) {
			continue
		}
		if f := end(s); last == nil || f > total {
			last, total = s, f
		}
	}
	var path []*Step
	for s := last; s != nil; {
		path = append([]*Step{s}, path...)
		id, ok := prev[s.ID]
		if !ok {
			break
		}
		s = byID[id]
	}
	return path, total
}
