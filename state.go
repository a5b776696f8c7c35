package lifeboat

import (
	"fmt"
	"sort"
	"time"
)

// RegionRole is a region's place in the spec: primary (home), secondary
// (standby) or witness (votes only).
type RegionRole string

const (
	RolePrimary   RegionRole = "primary"
	RoleSecondary RegionRole = "secondary"
	RoleWitness   RegionRole = "witness"
)

// RoleOf returns the role of the named region in the spec, or "".
func (s *Spec) RoleOf(region string) RegionRole {
	switch {
	case region == s.Regions.Primary.Name:
		return RolePrimary
	case region == s.Regions.Secondary.Name:
		return RoleSecondary
	case s.Regions.Witness != nil && region == s.Regions.Witness.Name:
		return RoleWitness
	}
	return ""
}

// Kind of a component.
type Kind string

const (
	KindCompute  Kind = "compute"
	KindDatabase Kind = "database"
	KindTraffic  Kind = "traffic"
)

// ResourceName is the systematic name of a component in a region (seed 002):
// <service>-<unit>-<component>-<region>.
func ResourceName(service, unit, component, region string) string {
	return service + "-" + unit + "-" + component + "-" + region
}

// TrafficName is the name of a traffic component's resource. Traffic is
// global, so unlike other resources its name has no region.
func TrafficName(service, unit, component string) string {
	return service + "-" + unit + "-" + component
}

// Ref names a component of a unit, written "unit.component".
type Ref struct {
	Unit      string `json:"unit"`
	Component string `json:"component"`
}

func (r Ref) String() string { return r.Unit + "." + r.Component }

// DatabaseRole is what a copy of a database is doing.
type DatabaseRole string

const (
	DBPrimary  DatabaseRole = "primary" // takes writes
	DBReplica  DatabaseRole = "replica" // streams from the primary
	DBFenced   DatabaseRole = "fenced"  // cannot take writes; waits to rejoin
	DBBackupOf DatabaseRole = "backups" // holds backups of the primary (dr-mode: backup)
	DBAbsent   DatabaseRole = "absent"  // nothing here
)

// Resource is one thing that exists (or is planned) in one region: a scale
// set, a copy of a database, or the routing of a traffic name. The unit
// registry is the set of resources grouped by unit.
type Resource struct {
	Name      string        `json:"name"`
	Unit      string        `json:"unit"`
	Component string        `json:"component"`
	Kind      Kind          `json:"kind"`
	Region    string        `json:"region"`
	Group     ResourceGroup `json:"group"`
	Purpose   Purpose       `json:"purpose"`
	// Exists is false for a cold scale set not yet stood up, or a failover
	// group deleted at failback.
	Exists bool `json:"exists"`
	// Instances running (compute).
	Instances int `json:"instances,omitempty"`
	// Role of this copy (database).
	Role DatabaseRole `json:"role,omitempty"`
	// Routes is the region the names point at (traffic).
	Routes string `json:"routes,omitempty"`
	// Epoch of the last action that changed this resource.
	Epoch uint64 `json:"epoch"`
	// Since is when the resource last changed.
	Since time.Time `json:"since"`
}

// Quadrant is region × resource group, as seed 000 draws it. Traffic is
// served from every region: its quadrant is "global".
func (r Resource) Quadrant(s *Spec) string {
	if r.Kind == KindTraffic {
		return "global"
	}
	return string(s.RoleOf(r.Region)) + "/" + string(r.Group)
}

// State is what Lifeboat knows of the service: the current epoch, the active
// region, and every resource. It is stored with the journal, and each step
// that completes changes it in the same transaction.
type State struct {
	Service string `json:"service"`
	// Epoch is raised by every failover or switchover; drivers refuse
	// actions that carry an older one.
	Epoch uint64 `json:"epoch"`
	// Active is the region that serves the service.
	Active string `json:"active"`
	// Since is when Active last changed.
	Since time.Time `json:"since"`
	// Resources by name.
	Resources map[string]*Resource `json:"resources"`
	// Run is the id of the run in progress, if any.
	Run string `json:"run,omitempty"`
}

// InitialState is the state of a service freshly provisioned from its spec:
// active in the primary region at epoch 1, the secondary ready per each
// component's standby and DR mode.
func InitialState(s *Spec, now time.Time) *State {
	st := &State{Service: s.Service, Epoch: 1, Active: s.Regions.Primary.Name, Since: now, Resources: map[string]*Resource{}}
	p, sec := s.Regions.Primary.Name, s.Regions.Secondary.Name
	for _, un := range s.UnitNames() {
		u := s.Units[un]
		purpose := u.Purpose
		if purpose == "" {
			purpose = PurposeProd
		}
		add := func(comp string, kind Kind, region string, group ResourceGroup, fill func(*Resource)) {
			r := &Resource{Name: ResourceName(s.Service, un, comp, region), Unit: un, Component: comp, Kind: kind,
				Region: region, Group: group, Purpose: purpose, Exists: true, Epoch: 1, Since: now}
			fill(r)
			st.Resources[r.Name] = r
		}
		for cn, c := range u.Compute {
			add(cn, KindCompute, p, GroupPermanent, func(r *Resource) { r.Instances = c.Instances.Primary })
			add(cn, KindCompute, sec, c.Group(), func(r *Resource) {
				switch c.Standby {
				case StandbyHot:
					r.Instances = c.Instances.Secondary
				case StandbyCold:
					r.Exists = false
				}
			})
		}
		for dn, d := range u.Databases {
			// A database starts primary in its home: the primary region,
			// or the region a tenant pool it hosts names (split placement).
			home, away := p, sec
			if s.HomeOf(un, dn) == sec {
				home, away = sec, p
			}
			add(dn, KindDatabase, home, GroupPermanent, func(r *Resource) { r.Role = DBPrimary })
			add(dn, KindDatabase, away, GroupPermanent, func(r *Resource) {
				switch d.DRMode {
				case DRGeoReplica:
					r.Role = DBReplica
				case DRBackup:
					r.Role = DBBackupOf
				default:
					r.Role, r.Exists = DBAbsent, false
				}
			})
		}
		for tn := range u.Traffic {
			// Traffic is global (served from every region), so it is one
			// resource without a region; Region holds where it routes.
			add(tn, KindTraffic, p, GroupPermanent, func(r *Resource) {
				r.Name = TrafficName(s.Service, un, tn)
				r.Routes = p
			})
		}
	}
	return st
}

// HomeOf is the region where a database's primary belongs: the region of
// the tenant pool it hosts, if that pool names one (seed 004's split
// placement puts half the paid tenants' primaries in the secondary), else
// the primary region. Failback brings each database to its home.
func (s *Spec) HomeOf(unit, database string) string {
	if s.Tenants != nil {
		ref := unit + "." + database
		for _, pn := range SortedKeys(s.Tenants.Pools) {
			if p := s.Tenants.Pools[pn]; p.Database == ref && p.Region != "" && s.Regions.Has(p.Region) {
				return p.Region
			}
		}
	}
	return s.Regions.Primary.Name
}

// Resource returns the resource of a component in a region (nil if none).
func (st *State) Resource(s *Spec, unit, component, region string) *Resource {
	return st.Resources[ResourceName(s.Service, unit, component, region)]
}

// SortedResources returns the resources ordered by unit, component, region.
func (st *State) SortedResources() []*Resource {
	out := make([]*Resource, 0, len(st.Resources))
	for _, r := range st.Resources {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Clone returns a deep copy.
func (st *State) Clone() *State {
	c := *st
	c.Resources = make(map[string]*Resource, len(st.Resources))
	for k, v := range st.Resources {
		r := *v
		c.Resources[k] = &r
	}
	return &c
}

// UnitNames returns the unit names in a stable order.
func (s *Spec) UnitNames() []string {
	names := make([]string, 0, len(s.Units))
	for n := range s.Units {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SortedKeys returns a map's keys in order; handy for deterministic plans.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Apply records in the state the effect of a completed step. It is pure and
// idempotent: applying the same step twice gives the same state.
func (st *State) Apply(step *Step, now time.Time) {
	touch := func(r *Resource) {
		if r == nil {
			return
		}
		r.Epoch, r.Since = step.Epoch, now
	}
	r := st.Resources[step.Resource]
	switch step.Op {
	case OpRaiseEpoch:
		if step.Epoch > st.Epoch {
			st.Epoch = step.Epoch
		}
	case OpComputeProvision:
		if r != nil {
			r.Exists = true
			touch(r)
		}
	case OpComputeScale, OpComputeStop:
		if r != nil {
			r.Exists, r.Instances = true, step.Instances
			touch(r)
		}
	case OpComputeDelete:
		if r != nil {
			r.Exists, r.Instances = false, 0
			touch(r)
		}
	case OpDatabaseFence:
		if r != nil && r.Role == DBPrimary {
			r.Role = DBFenced
			touch(r)
		}
	case OpDatabasePromote, OpDatabaseRestore:
		if r != nil {
			r.Exists, r.Role = true, DBPrimary
			touch(r)
		}
	case OpDatabaseRejoin:
		if r != nil {
			r.Exists, r.Role = true, DBReplica
			touch(r)
		}
	case OpDatabaseSwitchover:
		// Resource is the new primary; From names the old one.
		if r != nil {
			r.Exists, r.Role = true, DBPrimary
			touch(r)
		}
		if old := st.Resources[step.FromResource]; old != nil {
			old.Role = DBReplica
			touch(old)
		}
	case OpDatabaseBackup:
		// A final backup changes nothing that the state tracks.
	case OpTrafficSwitch:
		if r != nil {
			r.Routes = step.Region
			touch(r)
		}
		if st.Active != step.Region {
			st.Active, st.Since = step.Region, now
		}
	}
}

// End is what a run's end does to the state: no run holds it any more,
// and a failover, switchover or failback that succeeded leaves the service
// active in the plan's target region. A service with traffic got there
// at its traffic.switch already; one of databases only (say, tenant
// pools) has no such step.
func (st *State) End(run *Run) {
	st.Run = ""
	if run.Status != RunSucceeded || run.Plan == nil || run.Plan.To == "" || st.Active == run.Plan.To {
		return
	}
	switch run.Plan.Intent {
	case IntentFailover, IntentSwitchover, IntentFailback:
		st.Active, st.Since = run.Plan.To, run.EndedAt
		if st.Since.IsZero() {
			st.Since = time.Now().UTC()
		}
	}
}

// Validate reports a state that contradicts itself.
func (st *State) Validate() error {
	if st.Epoch == 0 {
		return fmt.Errorf("state of %s has epoch 0: epochs start at 1", st.Service)
	}
	return nil
}
