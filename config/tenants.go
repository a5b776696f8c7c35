package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// minBatch is seed 004's advice: fail tenant databases over "in batches of
// at least 20", since each failover is asynchronous and small batches
// leave the pool idle between them.
const minBatch = 20

// defaultTenantBackupInterval is Tier.BackupInterval's default.
const defaultTenantBackupInterval = time.Hour

// tenants checks the tenants section: the catalog, the pools and the
// tiers, and that each tier's strategy matches how its pool's database
// survives a region.
func (c *checker) tenants() {
	t := c.s.Tenants
	if t == nil || !c.ok("tenants") {
		return
	}
	checked := map[string]bool{} // databases whose endpoints were checked
	if c.ok("tenants.catalog") {
		c.databaseRef("tenants.catalog", t.Catalog)
		if db, ok := c.tenantDB(t.Catalog); ok {
			if db.DRMode != lifeboat.DRGeoReplica && c.ok(dbPath(t.Catalog)+".dr-mode") {
				c.errorAt("tenants.catalog", false, fmt.Sprintf("the catalog %s has dr-mode %s, but it must be geo-replica: it records where every tenant lives and fails over first, so without a standby no tenant can be found, created or recovered after losing a region", t.Catalog, db.DRMode),
					fmt.Sprintf("set dr-mode: geo-replica on %s, or name a geo-replica database as catalog", t.Catalog))
			}
			c.tenantEndpoints(t.Catalog, "the catalog", db, checked)
		}
	}
	for _, pn := range lifeboat.SortedKeys(t.Pools) {
		c.pool(pn, t.Pools[pn], checked)
	}
	for _, tn := range lifeboat.SortedKeys(t.Tiers) {
		c.tier(tn, t.Tiers[tn])
	}
	if t.Batch > 0 && t.Batch < minBatch && c.ok("tenants.batch") {
		c.warnAt("tenants.batch", false, fmt.Sprintf("batch %d is below %d: seed 004 advises failing tenant databases over \"in batches of at least 20\", since each failover is asynchronous and small batches leave the pool waiting between them", t.Batch, minBatch),
			fmt.Sprintf("use batch: %d or more (the default is %d)", minBatch, minBatch))
	}
	if g := t.Gate; g != nil && g.Listen != "" && c.ok("tenants.gate.listen") {
		if msg, hint := hostPortProblem(g.Listen, true); msg != "" {
			c.errorAt("tenants.gate.listen", false, msg, hint+", e.g. listen: 127.0.0.1:6432 (clients connect there with the tenant as the database)")
		}
	}
	if g := t.Gate; g != nil && c.ok("tenants.gate") {
		if g.Listen == "" && len(g.ListenIn) == 0 && c.ok("tenants.gate.listen") && c.ok("tenants.gate.listen-in") {
			c.errorAt("tenants.gate", true, "the tenants' gate has no address: neither listen nor listen-in is set",
				"add listen: 127.0.0.1:6432 (hosted by 'lifeboat serve'), or listen-in: {<region>: host:port} (each region's controller, 'lifeboat serve --region', runs one there)")
		}
		for _, region := range lifeboat.SortedKeys(g.ListenIn) {
			rp := "tenants.gate.listen-in." + region
			if !c.ok(rp) {
				continue
			}
			if c.s.RoleOf(region) == "" {
				c.errorAt(rp, true, fmt.Sprintf("%q is not a region of this service", region), regionHint(region, c.regionNames(true)))
				continue
			}
			if msg, hint := hostPortProblem(g.ListenIn[region], true); msg != "" {
				c.errorAt(rp, false, msg, hint+", e.g. "+region+": 127.0.0.1:6432")
			}
		}
	}
}

func (c *checker) pool(pn string, p lifeboat.Pool, checked map[string]bool) {
	pp := "tenants.pools." + pn
	if c.ok(pp + ".database") {
		c.databaseRef(pp+".database", p.Database)
		if db, ok := c.tenantDB(p.Database); ok {
			c.tenantEndpoints(p.Database, "pool "+pn, db, checked)
		}
	}
	if p.Region != "" && c.ok(pp+".region") && !c.s.Regions.Has(p.Region) {
		regions := fmt.Sprintf("use %s or %s", c.s.Regions.Primary.Name, c.s.Regions.Secondary.Name)
		if c.s.RoleOf(p.Region) == lifeboat.RoleWitness {
			c.errorAt(pp+".region", false, fmt.Sprintf("pool region %q is the witness, which only votes and holds no data", p.Region), regions)
		} else {
			c.errorAt(pp+".region", false, fmt.Sprintf("pool region %q is not a region of this service", p.Region), regions)
		}
	}
	if cp := p.Capacity; cp != nil && c.ok(pp+".capacity") && cp.Standby > cp.Active && c.ok(pp+".capacity.standby") && c.ok(pp+".capacity.active") {
		c.errorAt(pp+".capacity.standby", false, fmt.Sprintf("standby capacity %d is more than active capacity %d: a failover raises the pool from standby to active, never lowers it", cp.Standby, cp.Active),
			fmt.Sprintf("set standby to %d or less (a standby pool only applies the change log), or raise active", cp.Active))
	}
	c.poolProvision(pn, p)
}

// provisionExample is a provision section to copy.
const provisionExample = "provision: {create: [./pool.sh, create], read-only: [./pool.sh, read-only], delete: [./pool.sh, delete]}"

// poolProvision checks a pool's provision commands, and warns when a
// geo-restore pool that a tier uses has none: its failover would wait for
// the DR copy to be made by hand.
func (c *checker) poolProvision(pn string, p lifeboat.Pool) {
	pp := "tenants.pools." + pn
	db, ok := c.tenantDB(p.Database)
	if !ok || !c.ok(dbPath(p.Database)+".dr-mode") || !c.ok(pp+".provision") {
		return
	}
	other := c.s.Regions.Other(c.poolRegion(p))
	if p.Provision == nil {
		if db.DRMode == lifeboat.DRGeoReplica || !c.ok(pp+".database") {
			return
		}
		tiers := c.tiersOf(pn)
		if len(tiers) == 0 {
			return
		}
		whose := "tier " + tiers[0]
		if len(tiers) > 1 {
			whose = "tiers " + strings.Join(tiers[:len(tiers)-1], ", ") + " and " + tiers[len(tiers)-1]
		}
		c.warnAt(pp, true, fmt.Sprintf("pool %s has no provision: its database %s has dr-mode %s, so a failover must create the pool in %s before restoring the tenants of %s into it, and Lifeboat has no command to do it: the recovery waits until the pool is created by hand and answers at %s's endpoint for %s",
			pn, p.Database, db.DRMode, other, whose, p.Database, other),
			"add "+provisionExample+" to the pool (the commands get LIFEBOAT_POOL, LIFEBOAT_REGION, LIFEBOAT_ENDPOINT and LIFEBOAT_ISOLATION), or use a geo-replica database for it")
		return
	}
	if db.DRMode == lifeboat.DRGeoReplica {
		c.errorAt(pp+".provision", true, fmt.Sprintf("pool %s's database %s is geo-replica: its copy in %s is the standby that a failover promotes, so there is no DR copy to create or delete", pn, p.Database, other),
			fmt.Sprintf("remove provision (it is for pools whose database has dr-mode backup or none), or set dr-mode: backup on %s", p.Database))
		return
	}
	for _, cmd := range []struct {
		key      string
		argv     []string
		required bool
		absent   string
	}{
		{"create", p.Provision.Create, true, ""},
		{"read-only", p.Provision.ReadOnly, false, "Lifeboat then sets default_transaction_read_only on each database"},
		{"delete", p.Provision.Delete, false, "the failback then leaves the DR copy for you to delete"},
	} {
		path := pp + ".provision." + cmd.key
		if !c.ok(path) || (cmd.argv == nil && !cmd.required) {
			continue
		}
		if len(cmd.argv) == 0 || strings.TrimSpace(cmd.argv[0]) == "" {
			hint := fmt.Sprintf("give the command as a list, e.g. %s: [./pool.sh, %s]", cmd.key, cmd.key)
			if !cmd.required {
				hint += ", or remove " + cmd.key + " (" + cmd.absent + ")"
			}
			what := map[string]string{"create": "creates pool " + pn + "'s copy in " + other + " at a failover",
				"read-only": "makes the DR copy refuse writes at the failback", "delete": "deletes the DR copy at the end of the failback"}[cmd.key]
			c.errorAt(path, len(cmd.argv) == 0 && cmd.argv == nil, fmt.Sprintf("the %s command is empty: it is the command (program and arguments, no shell) that %s", cmd.key, what), hint)
			continue
		}
		c.provisionProgram(path+"[0]", cmd.argv[0])
	}
}

// provisionProgram warns when a program given by a relative path is not
// next to the spec, where the commands run from. Only a warning: the spec
// may be checked on another machine than the one that runs the failover.
func (c *checker) provisionProgram(path, prog string) {
	file := c.d.file // c.s.File is set only once the spec is checked
	if file == "" || filepath.IsAbs(prog) || !strings.ContainsRune(prog, '/') {
		return
	}
	dir := filepath.Dir(file)
	if _, err := os.Stat(filepath.Join(dir, prog)); err == nil {
		return
	}
	c.warnAt(path, false, fmt.Sprintf("%s does not exist next to the spec file %s: relative programs are found in the spec's directory, where the commands run", prog, filepath.Base(file)),
		fmt.Sprintf("create %s there (executable), or give its absolute path", prog))
}

// tiersOf names the geo-restore tiers whose tenants are placed in pool
// pn (a geo-replicate tier there is an error of its own).
func (c *checker) tiersOf(pn string) []string {
	var out []string
	for _, tn := range lifeboat.SortedKeys(c.s.Tenants.Tiers) {
		t := c.s.Tenants.Tiers[tn]
		if t.Strategy == lifeboat.StrategyGeoRestore && (t.Pool == pn || slices.Contains(t.Pools, pn)) {
			out = append(out, tn)
		}
	}
	return out
}

func (c *checker) tier(tn string, tier lifeboat.Tier) {
	t := c.s.Tenants
	tp := "tenants.tiers." + tn
	pools := lifeboat.SortedKeys(t.Pools)
	undefined := func(path, pool string) bool {
		if has(t.Pools, pool) || !c.ok(path) || !c.ok("tenants.pools") {
			return !has(t.Pools, pool)
		}
		hint := "pools: " + strings.Join(pools, ", ")
		if m := didYouMean(pool, pools); m != "" {
			hint = fmt.Sprintf("did you mean %s?", m)
		}
		if len(pools) == 0 {
			hint = "define the pool under tenants.pools"
		}
		c.errorAt(path, false, fmt.Sprintf("tier %s uses pool %q, which is not defined", tn, pool), hint)
		return true
	}
	var use []string // pools whose strategy fit is checked
	if tier.Placement == lifeboat.PlacementSplit && c.ok(tp+".placement") {
		if tier.Pool != "" && c.ok(tp+".pool") {
			c.errorAt(tp+".pool", false, fmt.Sprintf("tier %s has placement split, which places tenants in the two pools of pools:, so pool: would be ignored", tn),
				"remove pool:, and list both pools under pools: [a, b]")
		}
		if c.ok(tp + ".pools") {
			if len(tier.Pools) != 2 {
				c.errorAt(tp+".pools", len(tier.Pools) == 0, fmt.Sprintf("placement split needs exactly two pools, one with its primary in each region; tier %s has %d", tn, len(tier.Pools)),
					fmt.Sprintf("list two pools, e.g. pools: [%s1, %s2], with region: %s on one and region: %s on the other", tn, tn, c.s.Regions.Primary.Name, c.s.Regions.Secondary.Name))
			} else {
				bad := false
				for i, pn := range tier.Pools {
					bad = undefined(fmt.Sprintf("%s.pools[%d]", tp, i), pn) || bad
				}
				if !bad {
					a, b := t.Pools[tier.Pools[0]], t.Pools[tier.Pools[1]]
					ra, rb := c.poolRegion(a), c.poolRegion(b)
					switch {
					case tier.Pools[0] == tier.Pools[1]:
						c.errorAt(tp+".pools[1]", false, fmt.Sprintf("placement split names pool %s twice", tier.Pools[0]), "list two different pools, one with its primary in each region")
					case ra == rb && c.ok("tenants.pools."+tier.Pools[0]+".region") && c.ok("tenants.pools."+tier.Pools[1]+".region"):
						c.errorAt(tp+".pools", false, fmt.Sprintf("placement split needs the two pools' primaries in different regions, but %s and %s are both in %s, so losing %s would fail over all of tier %s",
							tier.Pools[0], tier.Pools[1], ra, ra, tn),
							fmt.Sprintf("set region: %s on pool %s", c.s.Regions.Other(ra), tier.Pools[1]))
					default:
						use = tier.Pools
					}
				}
			}
		}
	} else if c.ok(tp + ".placement") {
		if len(tier.Pools) > 0 && c.ok(tp+".pools") {
			c.errorAt(tp+".pools", true, fmt.Sprintf("tier %s lists pools:, which only placement split uses", tn),
				"add placement: split to spread the tier over both pools, or name one pool with pool:")
		}
		switch {
		case tier.Pool == "" && c.ok(tp+".pool"):
			c.errorAt(tp, true, fmt.Sprintf("tier %s has no pool: new tenants of it would have nowhere to go", tn),
				"add pool: <name of a pool under tenants.pools>, or placement: split with pools: [a, b]")
		case tier.Pool != "" && c.ok(tp+".pool") && !undefined(tp+".pool", tier.Pool):
			use = []string{tier.Pool}
		}
	}
	if c.ok(tp + ".strategy") {
		for _, pn := range use {
			c.strategyFits(tn, tier, pn)
		}
	}
	if tier.Objectives != nil {
		c.objectives(tp+".objectives", *tier.Objectives)
	}
	c.tierBackups(tn, tier)
}

// strategyFits checks that the tier's strategy is what the pool's
// database can do when its region is lost.
func (c *checker) strategyFits(tn string, tier lifeboat.Tier, pn string) {
	p := c.s.Tenants.Pools[pn]
	db, ok := c.tenantDB(p.Database)
	if !ok || !c.ok(dbPath(p.Database)+".dr-mode") {
		return
	}
	tp := "tenants.tiers." + tn + ".strategy"
	switch {
	case tier.Strategy == lifeboat.StrategyGeoReplicate && db.DRMode != lifeboat.DRGeoReplica:
		c.errorAt(tp, false, fmt.Sprintf("tier %s is geo-replicate: its tenants fail over by promoting pool %s's standby, but the pool's database %s has dr-mode %s, so there is no standby to promote", tn, pn, p.Database, db.DRMode),
			fmt.Sprintf("set dr-mode: geo-replica on %s, or strategy: geo-restore for this tier", p.Database))
	case tier.Strategy == lifeboat.StrategyGeoRestore && db.DRMode == lifeboat.DRGeoReplica:
		c.errorAt(tp, false, fmt.Sprintf("tier %s is geo-restore: its pool is created anew in the other region and each tenant restored from its own backup, but pool %s's database %s is geo-replica, whose promoted standby would clash with those restores (and costs a standby the tier never uses)", tn, pn, p.Database),
			fmt.Sprintf("use strategy: geo-replicate for this tier, or a pool whose database has dr-mode: backup (or none)"))
	}
}

// tierBackups checks a tier's backup interval: only geo-restore tenants
// are backed up one by one, and the interval bounds what they may lose.
func (c *checker) tierBackups(tn string, tier lifeboat.Tier) {
	tp := "tenants.tiers." + tn
	if !c.ok(tp+".backup-interval") || !c.ok(tp+".strategy") {
		return
	}
	if tier.Strategy != lifeboat.StrategyGeoRestore {
		if tier.BackupInterval != 0 {
			c.errorAt(tp+".backup-interval", false, fmt.Sprintf("backup-interval applies only to geo-restore tiers (how often each tenant is backed up and shipped); tier %s is %s, whose tenants stream to the standby pool continuously", tn, tier.Strategy),
				"remove backup-interval, or use strategy: geo-restore")
		}
		return
	}
	rpo, whose := c.s.Objectives.RPO, "the service's"
	if tier.Objectives != nil && c.ok(tp+".objectives.rpo") {
		rpo, whose = tier.Objectives.RPO, fmt.Sprintf("tier %s's", tn)
	}
	every, path, why := time.Duration(tier.BackupInterval), tp+".backup-interval", ""
	if every == 0 {
		if tier.Objectives == nil {
			return // the service's RPO is for the service's own databases; a tier states its own
		}
		every, path, why = defaultTenantBackupInterval, tp, " (the default)"
	}
	if rpo > 0 && every > time.Duration(rpo) {
		c.warnAt(path, path == tp, fmt.Sprintf("tier %s's tenants are backed up every %s%s, longer than %s RPO objective of %s: a geo-restore loses up to a backup interval of changes",
			tn, lifeboat.FormatDuration(every), why, whose, lifeboat.FormatDuration(time.Duration(rpo))),
			fmt.Sprintf("set backup-interval: %s or less, or raise the RPO objective", lifeboat.FormatDuration(time.Duration(rpo))))
	}
}

// poolRegion is where the pool's primary lives by the spec.
func (c *checker) poolRegion(p lifeboat.Pool) string {
	if p.Region != "" {
		return p.Region
	}
	return c.s.Regions.Primary.Name
}

// tenantDB resolves a "unit.component" database reference (databaseRef
// has reported it if it does not resolve).
func (c *checker) tenantDB(ref string) (lifeboat.Database, bool) {
	un, dn, ok := strings.Cut(ref, ".")
	if !ok {
		return lifeboat.Database{}, false
	}
	db, ok := c.s.Units[un].Databases[dn]
	return db, ok && c.ok(dbPath(ref))
}

func dbPath(ref string) string {
	un, dn, _ := strings.Cut(ref, ".")
	return "units." + un + ".databases." + dn
}

// tenantEndpoints checks that Lifeboat can reach the catalog's or a
// pool's database in both regions: it creates tenants and moves the
// catalog wherever the primary is after a failover.
func (c *checker) tenantEndpoints(ref, what string, db lifeboat.Database, checked map[string]bool) {
	if checked[ref] {
		return
	}
	checked[ref] = true
	path := dbPath(ref) + ".endpoints"
	if !c.ok(path) {
		return
	}
	example := func(region string) string {
		return fmt.Sprintf("%s: postgres://lifeboat@%s-db.example.test:5432/postgres", region, region)
	}
	for _, region := range []string{c.s.Regions.Primary.Name, c.s.Regions.Secondary.Name} {
		if region == "" || db.Endpoints[region] != "" {
			continue
		}
		c.errorAt(path, db.Endpoints == nil, fmt.Sprintf("database %s (%s) has no endpoint for region %s: Lifeboat reaches %s there once %s's copy is the primary", ref, what, region, what, region),
			fmt.Sprintf("add endpoints: {%s} to %s (a postgres:// URL of the copy in %s)", example(region), ref, region))
	}
	for _, region := range lifeboat.SortedKeys(db.Endpoints) {
		p := path + "." + region
		if !c.ok(p) {
			continue
		}
		if !c.s.Regions.Has(region) {
			c.errorAt(p, true, fmt.Sprintf("endpoint for %q, which is not the primary or the secondary region", region),
				"key endpoints by "+orList(c.regionNames(false)))
			continue
		}
		u, err := url.Parse(db.Endpoints[region])
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			c.errorAt(p, false, fmt.Sprintf("%q is not a postgres:// URL", db.Endpoints[region]),
				"write postgres://user[:password]@host:port/database, e.g. "+example(region))
		}
	}
}
