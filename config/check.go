package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// checker runs the checks that need more than one field: names, references
// between components, cycles, drivers, and the objectives' warnings. It
// works on whatever decoded, skipping fields that failed to decode so that
// one mistake yields one diagnostic.
type checker struct {
	d *decoder
	s *lifeboat.Spec
}

func check(d *decoder, s *lifeboat.Spec) {
	c := &checker{d: d, s: s}
	c.regions()
	c.objectives("objectives", s.Objectives)
	c.units()
	c.dependencies()
	c.tenants()
	c.apiSection()
	c.hooks()
	c.drivers()
	c.monitor()
	c.storeMembers()
	c.probes()
	c.estimates()
	c.detection() // last: it plans, so only a spec without errors
}

func (c *checker) errorAt(path string, key bool, msg, hint string) {
	c.d.add(c.d.node(path, key), SeverityError, path, msg, hint)
}

func (c *checker) warnAt(path string, key bool, msg, hint string) {
	c.d.add(c.d.node(path, key), SeverityWarning, path, msg, hint)
}

func (c *checker) ok(path string) bool { return !c.d.isBad(path) }

// Names of units and components become parts of resource names joined by
// dashes (<service>-<unit>-<component>-<region>), so they may not contain
// dashes: "a-b"+"c" and "a"+"b-c" would name the same resource.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

func (c *checker) name(path, what, name string) {
	if nameRE.MatchString(name) {
		return
	}
	why := "only lower-case letters and digits keep resource names unambiguous"
	if strings.Contains(name, "-") {
		why = "resource names are <service>-<unit>-<component>-<region>, so a dash would let two resources collide"
	}
	c.errorAt(path, true, fmt.Sprintf("%s name %q must be lower-case letters and digits, starting with a letter", what, name),
		suggestName(name, why))
}

func (c *checker) regions() {
	r := c.s.Regions
	if r.Primary.Name != "" && r.Primary.Name == r.Secondary.Name && c.ok("regions.secondary.name") {
		c.errorAt("regions.secondary.name", false, fmt.Sprintf("secondary region %q is the same as the primary region", r.Secondary.Name),
			"the standby must be a different failure domain; name another region")
	}
	if r.Witness != nil && r.Witness.Name != "" && c.ok("regions.witness.name") {
		for _, other := range []struct{ role, name string }{{"primary", r.Primary.Name}, {"secondary", r.Secondary.Name}} {
			if r.Witness.Name == other.name {
				c.errorAt("regions.witness.name", false, fmt.Sprintf("witness region %q is also the %s region", r.Witness.Name, other.role),
					"the witness breaks ties between primary and secondary, so it must be a third region; name another one or remove witness")
				break
			}
		}
	}
}

func (c *checker) objectives(path string, o lifeboat.Objectives) {
	if o.RTO <= 0 && c.ok(path+".rto") {
		c.errorAt(path+".rto", false, "the RTO objective must be more than 0",
			"set how long the service may be down during a failover, e.g. rto: 5m")
	}
}

func (c *checker) units() {
	if len(c.s.Units) == 0 && c.ok("units") {
		if _, written := c.d.vals["units"]; written {
			c.errorAt("units", false, "there are no units", "define at least one unit with its compute, databases and traffic")
		}
	}
	for _, un := range lifeboat.SortedKeys(c.s.Units) {
		u := c.s.Units[un]
		up := "units." + un
		c.name(up, "unit", un)
		if len(u.Compute)+len(u.Databases)+len(u.Traffic) == 0 && c.ok(up) {
			c.warnAt(up, true, fmt.Sprintf("unit %s has no compute, databases or traffic, so a failover does nothing for it", un),
				"define its components, or remove the unit")
		}
		c.componentNames(un, u)
		for _, cn := range lifeboat.SortedKeys(u.Compute) {
			c.compute(up+".compute."+cn, un, u, u.Compute[cn])
		}
		for _, dn := range lifeboat.SortedKeys(u.Databases) {
			c.database(up+".databases."+dn, u.Databases[dn])
		}
		for _, tn := range lifeboat.SortedKeys(u.Traffic) {
			c.target(up+".traffic."+tn+".target", un, u.Traffic[tn].Target)
		}
	}
}

// componentNames checks names and that each is used once per unit: the
// resource name does not say the kind, so a compute and a traffic both
// called "web" would be the same resource.
func (c *checker) componentNames(un string, u lifeboat.Unit) {
	type seen struct{ kind, path string }
	first := map[string]seen{}
	for _, kind := range []struct {
		key   string
		names []string
	}{
		{"compute", lifeboat.SortedKeys(u.Compute)},
		{"databases", lifeboat.SortedKeys(u.Databases)},
		{"traffic", lifeboat.SortedKeys(u.Traffic)},
	} {
		for _, n := range kind.names {
			p := "units." + un + "." + kind.key + "." + n
			c.name(p, "component", n)
			prev, dup := first[n]
			if !dup {
				first[n] = seen{kind.key, p}
				continue
			}
			// Point at whichever of the two comes later in the file.
			at, other := p, prev
			if a, b := c.d.node(p, true), c.d.node(prev.path, true); a != nil && b != nil && a.Line < b.Line {
				at, other = prev.path, seen{kind.key, p}
			}
			c.errorAt(at, true, fmt.Sprintf("component name %q is used twice in unit %s (under %s and under %s)", n, un, other.kind, kindOf(at)),
				"components of a unit share one name space (resource names are <service>-<unit>-<component>-<region>); rename one")
		}
	}
}

// kindOf returns "compute", "databases" or "traffic" from a component path.
func kindOf(path string) string {
	parts := strings.Split(path, ".")
	if len(parts) >= 3 {
		return parts[2]
	}
	return ""
}

func (c *checker) compute(path, un string, u lifeboat.Unit, cp lifeboat.Compute) {
	if cp.ResourceGroup == lifeboat.GroupFailover && c.ok(path+".standby") && c.ok(path+".resource-group") {
		switch cp.Standby {
		case lifeboat.StandbyHot:
			c.errorAt(path+".resource-group", false, "a hot standby cannot be in the failover resource group: hot instances run before a failover, and the failover group is only created at failover",
				"remove resource-group (hot standby defaults to permanent), or use standby: cold")
		case lifeboat.StandbyWarm:
			c.errorAt(path+".resource-group", false, "a warm standby cannot be in the failover resource group: a warm scale set exists before a failover, and the failover group is only created at failover",
				"remove resource-group (warm standby defaults to permanent), or use standby: cold")
		}
	}
	for i, db := range cp.ConnectsTo {
		p := fmt.Sprintf("%s.connects-to[%d]", path, i)
		if _, ok := u.Databases[db]; ok || !c.ok(p) {
			continue
		}
		dbs := lifeboat.SortedKeys(u.Databases)
		switch {
		case has(u.Compute, db) || has(u.Traffic, db):
			c.errorAt(p, false, fmt.Sprintf("%q is not a database of unit %s", db, un), dbHint(un, dbs))
		case strings.Contains(db, "."):
			c.errorAt(p, false, fmt.Sprintf("%q: connects-to names databases of the same unit, not of other units", db), dbHint(un, dbs))
		default:
			hint := dbHint(un, dbs)
			if m := didYouMean(db, dbs); m != "" {
				hint = fmt.Sprintf("did you mean %s?", m)
			}
			c.errorAt(p, false, fmt.Sprintf("unit %s has no database named %q", un, db), hint)
		}
	}
}

func dbHint(un string, dbs []string) string {
	if len(dbs) == 0 {
		return fmt.Sprintf("unit %s has no databases; define one under databases: or remove this entry", un)
	}
	return fmt.Sprintf("databases of unit %s: %s", un, strings.Join(dbs, ", "))
}

func has[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

func (c *checker) database(path string, db lifeboat.Database) {
	if !c.ok(path + ".dr-mode") {
		return
	}
	if db.DRMode == lifeboat.DRBackup && db.BackupInterval == 0 && c.ok(path+".backup-interval") {
		c.errorAt(path+".dr-mode", false, "dr-mode backup needs backup-interval",
			"add backup-interval: with how often a backup is taken (it bounds the data lost), e.g. backup-interval: 15m")
	}
	if db.Replication != "" && db.DRMode != lifeboat.DRGeoReplica && c.ok(path+".replication") {
		c.errorAt(path+".replication", false, fmt.Sprintf("replication applies only to dr-mode geo-replica, and this database has dr-mode %s", db.DRMode),
			"remove replication, or use dr-mode: geo-replica")
	}
	if db.DegradeAfter > 0 && db.Replication != lifeboat.ReplicationSync && c.ok(path+".degrade-after") {
		c.errorAt(path+".degrade-after", false, "degrade-after applies only to replication: sync (it says when a synchronous standby stops being waited for)",
			"remove degrade-after, or set replication: sync")
	}
}

// rfc2136 checks the external DNS server's section: the traffic names need
// addresses in both regions.
func (c *checker) rfc2136(r *lifeboat.RFC2136Driver) {
	if r == nil {
		if c.ok("drivers.rfc2136") {
			c.errorAt("drivers.traffic", false, "the rfc2136 driver is chosen here, but drivers.rfc2136 is missing",
				"add drivers.rfc2136 with server, zone, tsig {name, secret-file} and endpoints {<region>: [addresses]}")
		}
		return
	}
	if c.ok("drivers.rfc2136") {
		c.endpoints("drivers.rfc2136.endpoints", r.Endpoints, "the traffic names have nothing to resolve to")
	}
}

// target checks that a traffic component points at a compute component:
// "web" in the same unit or "unit.component".
func (c *checker) target(path, un, target string) {
	if target == "" || !c.ok(path) {
		return
	}
	tu, tc, qualified := strings.Cut(target, ".")
	if !qualified {
		tu, tc = un, target
	}
	u, ok := c.s.Units[tu]
	if !ok {
		c.errorAt(path, false, fmt.Sprintf("target %q names unit %s, which does not exist", target, tu), c.unitHint(tu))
		return
	}
	computes := lifeboat.SortedKeys(u.Compute)
	computeHint := fmt.Sprintf("compute components of unit %s: %s", tu, strings.Join(computes, ", "))
	if len(computes) == 0 {
		computeHint = fmt.Sprintf("unit %s has no compute; define one under compute:", tu)
	}
	switch {
	case has(u.Compute, tc):
		return
	case has(u.Databases, tc):
		c.errorAt(path, false, fmt.Sprintf("target %q is a database; traffic must point at a compute component", target), computeHint)
	case has(u.Traffic, tc):
		c.errorAt(path, false, fmt.Sprintf("target %q is a traffic component; traffic must point at a compute component", target), computeHint)
	default:
		hint := computeHint
		if m := didYouMean(tc, computes); m != "" {
			hint = fmt.Sprintf("did you mean %s?", m)
		}
		c.errorAt(path, false, fmt.Sprintf("target %q: unit %s has no compute component named %s", target, tu, tc), hint)
	}
}

func (c *checker) unitHint(name string) string {
	units := lifeboat.SortedKeys(c.s.Units)
	if m := didYouMean(name, units); m != "" {
		return fmt.Sprintf("did you mean %s?", m)
	}
	return "units: " + strings.Join(units, ", ")
}

// dependencies checks depends-on: known units, and no cycle (failover
// follows the dependency order, which must therefore exist).
func (c *checker) dependencies() {
	graph := map[string][]string{}
	for _, un := range lifeboat.SortedKeys(c.s.Units) {
		for i, dep := range c.s.Units[un].DependsOn {
			p := fmt.Sprintf("units.%s.depends-on[%d]", un, i)
			switch {
			case !c.ok(p):
			case dep == un:
				c.errorAt(p, false, fmt.Sprintf("unit %s depends on itself", un), "remove this entry")
			case !has(c.s.Units, dep):
				c.errorAt(p, false, fmt.Sprintf("unit %s depends on %q, which is not a unit", un, dep), c.unitHint(dep))
			default:
				graph[un] = append(graph[un], dep)
			}
		}
	}
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	reported := map[string]bool{}
	var stack []string
	var visit func(u string)
	visit = func(u string) {
		state[u] = visiting
		stack = append(stack, u)
		for _, dep := range graph[u] {
			switch state[dep] {
			case visiting:
				i := slices.Index(stack, dep)
				c.cycle(append(slices.Clone(stack[i:]), dep), reported)
			case 0:
				visit(dep)
			}
		}
		stack = stack[:len(stack)-1]
		state[u] = done
	}
	for _, un := range lifeboat.SortedKeys(c.s.Units) {
		if state[un] == 0 {
			visit(un)
		}
	}
}

// cycle reports a dependency cycle once, written from its first unit in
// alphabetical order: "reports → storefront → reports".
func (c *checker) cycle(loop []string, reported map[string]bool) {
	loop = loop[:len(loop)-1]
	start := 0
	for i, u := range loop {
		if u < loop[start] {
			start = i
		}
	}
	loop = append(slices.Clone(loop[start:]), loop[:start]...)
	loop = append(loop, loop[0])
	key := strings.Join(loop, " ")
	if reported[key] {
		return
	}
	reported[key] = true
	first, next := loop[0], loop[1]
	path := "units." + first + ".depends-on"
	if i := slices.Index(c.s.Units[first].DependsOn, next); i >= 0 {
		path = fmt.Sprintf("%s[%d]", path, i)
	}
	c.errorAt(path, false, "units depend on each other in a cycle: "+strings.Join(loop, " → "),
		"remove one of these depends-on entries; units fail over after the units they depend on, so the order cannot loop")
}

// databaseRef checks a "unit.component" reference to a database.
func (c *checker) databaseRef(path, ref string) {
	if ref == "" || !c.ok(path) {
		return
	}
	var all []string
	for _, un := range lifeboat.SortedKeys(c.s.Units) {
		for _, dn := range lifeboat.SortedKeys(c.s.Units[un].Databases) {
			all = append(all, un+"."+dn)
		}
	}
	hint := "databases: " + strings.Join(all, ", ")
	if len(all) == 0 {
		hint = "no unit has a database; define one under a unit's databases:"
	}
	un, dn, qualified := strings.Cut(ref, ".")
	if !qualified {
		for _, a := range all {
			if strings.HasSuffix(a, "."+ref) {
				hint = fmt.Sprintf("write it as %s", a)
				break
			}
		}
		c.errorAt(path, false, fmt.Sprintf("%q must name a database as unit.component", ref), hint)
		return
	}
	u, ok := c.s.Units[un]
	switch {
	case !ok:
		c.errorAt(path, false, fmt.Sprintf("%q names unit %s, which does not exist", ref, un), c.unitHint(un))
	case has(u.Databases, dn):
	case has(u.Compute, dn):
		c.errorAt(path, false, fmt.Sprintf("%q is a compute component, not a database", ref), hint)
	case has(u.Traffic, dn):
		c.errorAt(path, false, fmt.Sprintf("%q is a traffic component, not a database", ref), hint)
	default:
		if m := didYouMean(ref, all); m != "" {
			hint = fmt.Sprintf("did you mean %s?", m)
		}
		c.errorAt(path, false, fmt.Sprintf("unit %s has no database named %s", un, dn), hint)
	}
}

// intents are the values a hook's `on` may hold.
var intents = []string{string(lifeboat.IntentFailover), string(lifeboat.IntentFailback), string(lifeboat.IntentSwitchover), string(lifeboat.IntentRejoin)}

func (c *checker) hooks() {
	for i, h := range c.s.Hooks {
		hp := fmt.Sprintf("hooks[%d]", i)
		if !c.ok(hp) {
			continue
		}
		label := "this hook"
		if h.Name != "" {
			label = fmt.Sprintf("hook %q", h.Name)
		}
		switch {
		case h.Run != "" && h.Approval != "":
			c.errorAt(hp+".approval", true, label+" has both run and approval; a hook runs a command or asks a person, not both",
				"split it into two hooks")
		case h.Run == "" && h.Approval == "" && c.ok(hp+".run") && c.ok(hp+".approval"):
			c.errorAt(hp, false, label+" has neither run nor approval",
				"add run: with a command, or approval: with the question a person must approve")
		}
		if h.Before == "" && h.After == "" && c.ok(hp+".before") && c.ok(hp+".after") {
			c.errorAt(hp, false, label+" has neither before nor after, so it never runs",
				"add before: or after: with plan, an operation such as traffic.switch, or a component such as unit.component")
		}
		for _, sel := range []struct{ key, value string }{{"before", h.Before}, {"after", h.After}} {
			if sel.value != "" && c.ok(hp+"."+sel.key) {
				c.selector(hp+"."+sel.key, sel.key, sel.value)
			}
		}
		for j, on := range h.On {
			p := fmt.Sprintf("%s.on[%d]", hp, j)
			if c.ok(p) && !slices.Contains(intents, string(on)) {
				c.errorAt(p, false, fmt.Sprintf("%q is not an intent", on), "use "+orList(intents))
			}
		}
	}
}

// selector checks a hook's before/after: "plan", an op, or a component.
func (c *checker) selector(path, key, sel string) {
	candidates := []string{"plan"}
	for _, op := range lifeboat.Ops {
		candidates = append(candidates, string(op))
	}
	ops := len(candidates)
	for _, un := range lifeboat.SortedKeys(c.s.Units) {
		u := c.s.Units[un]
		for _, m := range [][]string{lifeboat.SortedKeys(u.Compute), lifeboat.SortedKeys(u.Databases), lifeboat.SortedKeys(u.Traffic)} {
			for _, cn := range m {
				candidates = append(candidates, un+"."+cn)
			}
		}
	}
	if slices.Contains(candidates, sel) {
		return
	}
	hint := fmt.Sprintf("use plan, an operation (%s) or a component (%s)", strings.Join(candidates[1:ops], ", "), strings.Join(candidates[ops:], ", "))
	if m := didYouMean(sel, candidates); m != "" {
		hint = fmt.Sprintf("did you mean %s?", m)
	}
	c.errorAt(path, false, fmt.Sprintf("%s %q is not plan, an operation or a component", key, sel), hint)
}

func (c *checker) drivers() {
	ds := c.s.Drivers
	if !c.ok("drivers") {
		return
	}
	// Which kinds of component this spec has.
	uses := map[string]bool{}
	for _, u := range c.s.Units {
		uses["compute"] = uses["compute"] || len(u.Compute) > 0
		uses["database"] = uses["database"] || len(u.Databases) > 0
		uses["traffic"] = uses["traffic"] || len(u.Traffic) > 0
		for _, db := range u.Databases {
			uses["backup"] = uses["backup"] || db.DRMode == lifeboat.DRBackup
		}
	}
	chosen := map[string]string{"compute": ds.Compute, "database": ds.Database, "backup": ds.Backup, "traffic": ds.Traffic}
	var missing, all []string
	chosenAt := ""
	for _, k := range lifeboat.DriverActions {
		all = append(all, k.Actions...)
		driver, at := chosen[k.Kind], "drivers."+k.Kind
		if driver == "" {
			driver, at = ds.Default, "drivers.default"
		}
		if driver != "script" || !uses[k.Kind] || !c.ok(at) {
			continue
		}
		if chosenAt == "" {
			chosenAt = at
		}
		for _, a := range k.Actions {
			if ds.Script == nil || !has(ds.Script.Actions, a) {
				missing = append(missing, a)
			}
		}
	}
	if ds.Script != nil && c.ok("drivers.script.actions") {
		for _, a := range lifeboat.SortedKeys(ds.Script.Actions) {
			if !slices.Contains(all, a) {
				hint := "valid actions: " + strings.Join(all, ", ")
				if m := didYouMean(a, all); m != "" {
					hint = fmt.Sprintf("did you mean %s?", m)
				}
				c.errorAt("drivers.script.actions."+a, true, fmt.Sprintf("unknown action %q", a), hint)
			}
		}
	}
	agentAt := ""
	for _, k := range lifeboat.DriverActions {
		driver, at := chosen[k.Kind], "drivers."+k.Kind
		if driver == "" {
			driver, at = ds.Default, "drivers.default"
		}
		if driver == "agent" && uses[k.Kind] && c.ok(at) && agentAt == "" {
			agentAt = at
		}
	}
	c.trafficDrivers(uses["traffic"], agentAt != "" && ds.Agent == nil)
	if agentAt != "" && ds.Agent == nil && c.ok("drivers.agent") {
		c.errorAt(agentAt, false, "the agent driver is chosen here, but drivers.agent is missing",
			"add drivers.agent.url with the agent's address, e.g. url: http://127.0.0.1:7401 (lifeboat lab up writes it for the lab)")
	}
	switch {
	case len(missing) == 0:
	case ds.Script == nil && c.ok("drivers.script"):
		c.errorAt(chosenAt, false, "the script driver is chosen here, but drivers.script is missing",
			"add drivers.script.actions with a command for each of: "+strings.Join(missing, ", "))
	case ds.Script != nil && c.ok("drivers.script.actions"):
		noun := "action"
		if len(missing) > 1 {
			noun = "actions"
		}
		c.errorAt("drivers.script.actions", false, fmt.Sprintf("the script driver has no command for %d %s this spec needs: %s", len(missing), noun, strings.Join(missing, ", ")),
			`add each under drivers.script.actions as action: command`)
	}
}

// estimates warns when a component is likely to miss an objective. These
// are estimates (see estimate.go); drills measure the real numbers.
func (c *checker) estimates() {
	o := c.s.Objectives
	rtoOK := o.RTO > 0 && c.ok("objectives.rto")
	rpoOK := c.ok("objectives.rpo")
	for _, un := range lifeboat.SortedKeys(c.s.Units) {
		u := c.s.Units[un]
		up := "units." + un
		// Clients follow a switch after the longest TTL of the unit's names.
		var traffic time.Duration
		for _, t := range u.Traffic {
			traffic = max(traffic, t.TTLOrDefault()+lifeboat.EstimateSwitch)
		}
		for _, cn := range lifeboat.SortedKeys(u.Compute) {
			cp := u.Compute[cn]
			p := up + ".compute." + cn + ".standby"
			if cp.Standby != lifeboat.StandbyCold || !rtoOK || !c.ok(p) {
				continue
			}
			if est := cp.StandUp() + traffic; est > o.RTO.D() {
				c.warnAt(p, false, fmt.Sprintf("cold standby stands up in about %s, more than the RTO objective of %s", lifeboat.FormatDuration(est), o.RTO),
					"use warm or hot standby, or raise the objective")
			}
		}
		for _, dn := range lifeboat.SortedKeys(u.Databases) {
			db := u.Databases[dn]
			dp := up + ".databases." + dn
			if !c.ok(dp + ".dr-mode") {
				continue
			}
			switch db.DRMode {
			case lifeboat.DRNone:
				c.warnAt(dp+".dr-mode", false, "dr-mode none: this database's data is lost on failover",
					"use geo-replica or backup if the data matters")
			case lifeboat.DRGeoReplica:
				if !rpoOK || db.Replication == lifeboat.ReplicationSync || db.DataLoss() <= o.RPO.D() {
					continue
				}
				at, lag := dp+".lag", fmt.Sprintf("about %s", db.Lag)
				if db.Lag == 0 {
					at, lag = dp+".replication", fmt.Sprintf("about %s (the default estimate)", lifeboat.FormatDuration(db.DataLoss()))
					if db.Replication == "" {
						at = dp + ".dr-mode"
					}
				}
				c.warnAt(at, false, fmt.Sprintf("async replication may lose %s of writes, more than the RPO objective of %s", lag, o.RPO),
					"use replication: sync, or raise the objective")
			case lifeboat.DRBackup:
				if rpoOK && db.BackupInterval > 0 && db.BackupInterval > o.RPO {
					c.warnAt(dp+".backup-interval", false, fmt.Sprintf("with a backup every %s, a failover may lose up to %s of writes, more than the RPO objective of %s", db.BackupInterval, db.BackupInterval, o.RPO),
						"take backups more often, use dr-mode: geo-replica, or raise the objective")
				}
			}
		}
	}
}
