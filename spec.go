// Package lifeboat holds the vocabulary of a disaster-recovery control plane:
// the service spec, its state, plans of steps, journals of runs, and the
// interfaces of the drivers and the store. Everything that acts on the world
// lives in subpackages; this package has no I/O.
package lifeboat

import (
	"encoding/json"
	"fmt"
	"time"
)

// Spec is a service as its owners describe it in lifeboat.yaml.
//
// The struct tags drive both the YAML decoder (package config) and the JSON
// Schema shipped for editors (schema/lifeboat.schema.json), so the schema is
// generated from this model and never kept by hand.
type Spec struct {
	// Service names the service; it is the first part of every resource name.
	Service string `yaml:"service" json:"service" jsonschema:"required,pattern=^[a-z][a-z0-9]*$,description=Name of the service: lower-case letters and digits; the first part of every resource name."`
	// Regions are the failure domains the service runs in.
	Regions Regions `yaml:"regions" json:"regions" jsonschema:"required"`
	// Objectives are the service's recovery time and recovery point objectives.
	Objectives Objectives `yaml:"objectives" json:"objectives" jsonschema:"required"`
	// Units are the deployment units, by name.
	Units map[string]Unit `yaml:"units" json:"units" jsonschema:"required,description=Deployment units by name (lower-case letters and digits)."`
	// Tenants describes a multi-tenant catalog and its pools (optional).
	Tenants *Tenants `yaml:"tenants,omitempty" json:"tenants,omitempty"`
	// Hooks are approval and script steps inserted before or after steps.
	Hooks []Hook `yaml:"hooks,omitempty" json:"hooks,omitempty"`
	// Drivers chooses and configures the driver for each kind of component.
	Drivers DriverSpec `yaml:"drivers,omitempty" json:"drivers,omitempty"`
	// Store says where the control plane keeps its state and journal.
	Store StoreSpec `yaml:"store,omitempty" json:"store,omitempty"`
	// Monitor says how the service is watched, and whether Lifeboat fails
	// over on its own.
	Monitor Monitor `yaml:"monitor,omitempty" json:"monitor,omitempty"`
	// API is where 'lifeboat serve' serves the HTTP API, the metrics and
	// the dashboard, and who may use them.
	API *API `yaml:"api,omitempty" json:"api,omitempty"`

	// File is the path the spec was read from (not part of the YAML).
	File string `yaml:"-" json:"-"`
}

// Regions names the primary (home) region, the secondary (standby) region
// and an optional witness that only votes.
type Regions struct {
	Primary   Region  `yaml:"primary" json:"primary" jsonschema:"required"`
	Secondary Region  `yaml:"secondary" json:"secondary" jsonschema:"required"`
	Witness   *Region `yaml:"witness,omitempty" json:"witness,omitempty"`
}

// Region is one failure domain.
type Region struct {
	Name string `yaml:"name" json:"name" jsonschema:"required,pattern=^[a-z][a-z0-9-]*$,description=Region name: lower-case letters, digits and dashes."`
}

// Other returns the name of the region that is not r (primary or secondary).
func (r Regions) Other(name string) string {
	if name == r.Primary.Name {
		return r.Secondary.Name
	}
	return r.Primary.Name
}

// Has reports whether name is the primary or the secondary region.
func (r Regions) Has(name string) bool {
	return name == r.Primary.Name || name == r.Secondary.Name
}

// Objectives are the recovery objectives: how long the service may be down
// (RTO) and how much recent data it may lose (RPO).
type Objectives struct {
	RTO Duration `yaml:"rto" json:"rto" jsonschema:"required,description=Recovery time objective as a Go duration (e.g. 5m)."`
	RPO Duration `yaml:"rpo" json:"rpo" jsonschema:"required,description=Recovery point objective as a Go duration (e.g. 30s; 0 means no data loss)."`
}

// Unit is a deployment unit: a named template of one service instance.
type Unit struct {
	// Purpose says what the provisioned unit is for: prod, drill, staging.
	Purpose Purpose `yaml:"purpose,omitempty" json:"purpose,omitempty" jsonschema:"enum=prod,enum=drill,enum=staging,default=prod"`
	// DependsOn lists units that must be failed over before this one.
	DependsOn []string `yaml:"depends-on,omitempty" json:"depends-on,omitempty"`
	// Compute are the unit's scale sets, by component name.
	Compute map[string]Compute `yaml:"compute,omitempty" json:"compute,omitempty"`
	// Databases are the unit's stateful components, by component name.
	Databases map[string]Database `yaml:"databases,omitempty" json:"databases,omitempty"`
	// Traffic are the names clients use, by component name.
	Traffic map[string]Traffic `yaml:"traffic,omitempty" json:"traffic,omitempty"`
}

// Purpose of a provisioned unit.
type Purpose string

const (
	PurposeProd    Purpose = "prod"
	PurposeDrill   Purpose = "drill"
	PurposeStaging Purpose = "staging"
)

// Compute is a scale set of stateless instances built from a recipe.
type Compute struct {
	Recipe Recipe `yaml:"recipe" json:"recipe" jsonschema:"required"`
	// Standby is how ready the secondary region is: cold (created at
	// failover), warm (exists with zero instances) or hot (instances run).
	Standby StandbyMode `yaml:"standby" json:"standby" jsonschema:"required,enum=cold,enum=warm,enum=hot"`
	// Instances is the size of the scale set when each region is active.
	Instances Instances `yaml:"instances" json:"instances" jsonschema:"required"`
	Probe     *Probe    `yaml:"probe,omitempty" json:"probe,omitempty"`
	// FaultDomains and UpdateDomains spread instances (seed 003).
	FaultDomains  int `yaml:"fault-domains,omitempty" json:"fault-domains,omitempty" jsonschema:"minimum=1,default=1"`
	UpdateDomains int `yaml:"update-domains,omitempty" json:"update-domains,omitempty" jsonschema:"minimum=1,default=1"`
	// ResourceGroup of the scale set in the secondary region: permanent
	// (exists all the time) or failover (stood up at failover, deleted at
	// failback). Defaults to failover for cold standby, permanent otherwise.
	ResourceGroup ResourceGroup `yaml:"resource-group,omitempty" json:"resource-group,omitempty" jsonschema:"enum=permanent,enum=failover"`
	// ConnectsTo names the databases (in this unit) the instances use; in
	// each region they connect to that region's copy.
	ConnectsTo []string `yaml:"connects-to,omitempty" json:"connects-to,omitempty"`
	// Boot is how long a new instance takes to pass its probe; used for
	// estimates. Default 30s.
	Boot Duration `yaml:"boot,omitempty" json:"boot,omitempty" jsonschema:"description=How long a new instance takes to pass its probe (estimates); default 30s."`
}

// Recipe is what builds a stateless instance.
type Recipe struct {
	Artifact string            `yaml:"artifact" json:"artifact" jsonschema:"required,description=Path or URL of the artifact (binary, image)."`
	Checksum string            `yaml:"checksum,omitempty" json:"checksum,omitempty" jsonschema:"pattern=^sha256:[0-9a-f]{64}$"`
	Command  []string          `yaml:"command" json:"command" jsonschema:"required,minItems=1"`
	Settings map[string]string `yaml:"settings,omitempty" json:"settings,omitempty"`
}

// Instances is the scale set's size when each region is the active one.
type Instances struct {
	Primary   int `yaml:"primary" json:"primary" jsonschema:"required,minimum=0"`
	Secondary int `yaml:"secondary" json:"secondary" jsonschema:"required,minimum=0"`
}

// In returns the size for the region with the given role.
func (i Instances) In(role RegionRole) int {
	if role == RolePrimary {
		return i.Primary
	}
	return i.Secondary
}

// Probe is a health probe of an instance.
type Probe struct {
	HTTP string `yaml:"http,omitempty" json:"http,omitempty" jsonschema:"description=HTTP path to GET (2xx is healthy)."`
	TCP  bool   `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	// SQL is a query a database must answer (default SELECT 1).
	SQL      string   `yaml:"sql,omitempty" json:"sql,omitempty"`
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	Timeout  Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Failures int      `yaml:"failures,omitempty" json:"failures,omitempty" jsonschema:"minimum=1"`
}

// StandbyMode is the RTO/cost dial of a scale set in the secondary region.
type StandbyMode string

const (
	StandbyCold StandbyMode = "cold"
	StandbyWarm StandbyMode = "warm"
	StandbyHot  StandbyMode = "hot"
)

// ResourceGroup is permanent or failover (seed 000's quadrants).
type ResourceGroup string

const (
	GroupPermanent ResourceGroup = "permanent"
	GroupFailover  ResourceGroup = "failover"
)

// Group returns the compute's resource group in the secondary region, with
// the default applied.
func (c Compute) Group() ResourceGroup {
	if c.ResourceGroup != "" {
		return c.ResourceGroup
	}
	if c.Standby == StandbyCold {
		return GroupFailover
	}
	return GroupPermanent
}

// Database is a stateful component with a DR mode.
type Database struct {
	Engine string `yaml:"engine" json:"engine" jsonschema:"required,enum=postgres"`
	// DRMode: geo-replica (streaming; failover = promote), backup (copies at
	// an interval; failover = restore), none.
	DRMode DRMode `yaml:"dr-mode" json:"dr-mode" jsonschema:"required,enum=geo-replica,enum=backup,enum=none"`
	// Replication of a geo-replica: async or sync.
	Replication Replication `yaml:"replication,omitempty" json:"replication,omitempty" jsonschema:"enum=async,enum=sync"`
	// DegradeAfter (sync only): once the standby has been gone this long,
	// stop waiting for it, so writes go on; the degraded period is reported
	// as RPO exposure. Absent: strict, writes wait for the standby (seed
	// 002's trade-off).
	DegradeAfter Duration `yaml:"degrade-after,omitempty" json:"degrade-after,omitempty"`
	// BackupInterval is how often a backup is taken (dr-mode: backup).
	BackupInterval Duration `yaml:"backup-interval,omitempty" json:"backup-interval,omitempty"`
	// Restore is how long a restore takes (dr-mode: backup); used for
	// estimates. Default 10m.
	Restore Duration `yaml:"restore,omitempty" json:"restore,omitempty"`
	// Lag is the replication lag to expect (dr-mode: geo-replica, async);
	// used for the RPO estimate until the monitor measures it. Default 5s.
	Lag Duration `yaml:"lag,omitempty" json:"lag,omitempty"`
	// Probe is how observers check the database (default: SELECT 1 every
	// monitor.interval).
	Probe *Probe `yaml:"probe,omitempty" json:"probe,omitempty"`
	// Endpoints are where Lifeboat itself connects to each region's copy,
	// as postgres:// URLs by region: the tenant catalog and the tenant
	// pools are reached there.
	Endpoints map[string]string `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
}

// DRMode of a database.
type DRMode string

const (
	DRGeoReplica DRMode = "geo-replica"
	DRBackup     DRMode = "backup"
	DRNone       DRMode = "none"
)

// Replication of a geo-replica.
type Replication string

const (
	ReplicationAsync Replication = "async"
	ReplicationSync  Replication = "sync"
)

// Traffic is a set of public names that clients use to reach compute.
type Traffic struct {
	Names []string `yaml:"names" json:"names" jsonschema:"required,minItems=1"`
	TTL   Duration `yaml:"ttl,omitempty" json:"ttl,omitempty" jsonschema:"description=Time to live of the records; clients may use the old answer this long after a switch. Default 30s."`
	// Target is the compute the names point at: "component" in this unit
	// or "unit.component" in another.
	Target string `yaml:"target" json:"target" jsonschema:"required"`
}

// Tenants: a management catalog, pools and tiers (seed 004). Each tenant
// has its own database (or schema) in one pool; its tier picks the pool and
// how it is recovered when its pool's region is lost.
type Tenants struct {
	// Catalog is the geo-replicated database ("unit.component") that
	// records where each tenant lives; it fails over first.
	Catalog string          `yaml:"catalog" json:"catalog" jsonschema:"required"`
	Pools   map[string]Pool `yaml:"pools" json:"pools" jsonschema:"required"`
	Tiers   map[string]Tier `yaml:"tiers" json:"tiers" jsonschema:"required"`
	// Batch is how many tenants are made available or failed back
	// together; default 20 (seed 004: batches of at least 20).
	Batch int `yaml:"batch,omitempty" json:"batch,omitempty" jsonschema:"minimum=1"`
	// Concurrency is how many batches, or geo-restores, run at once;
	// default 4.
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty" jsonschema:"minimum=1"`
	// Backups are where each region receives the other region's tenant
	// backups (geo-restore tiers), by region name: a tenant whose primary
	// is in west ships its backups to backups.east. Relative to the spec
	// file. Default: .lifeboat/tenant-backups/<region> next to the spec.
	Backups map[string]string `yaml:"backups,omitempty" json:"backups,omitempty"`
	// Gate is the PostgreSQL-protocol front door for tenants: it routes
	// each connection to its tenant's pool by the startup message's
	// database, and a connection to a tenant waiting for recovery moves
	// it to the head of the queue.
	Gate *TenantGate `yaml:"gate,omitempty" json:"gate,omitempty"`
}

// TenantGate is where the tenants' PostgreSQL front door listens.
type TenantGate struct {
	// Listen is host:port where plain 'lifeboat serve' runs the gate. Set
	// it, or listen-in, or both.
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// ListenIn is where each region's controller ('lifeboat serve
	// --region') runs a gate, by region name. Every region's gate routes
	// by the catalog; only the active region's controller runs the
	// tenants' recovery, failback and backups.
	ListenIn map[string]string `yaml:"listen-in,omitempty" json:"listen-in,omitempty"`
	// Wait bounds how long a connection is held while its tenant is
	// recovered; then it gets a clear error. Default 30s.
	Wait Duration `yaml:"wait,omitempty" json:"wait,omitempty"`
}

// Pool is a set of tenant databases sharing one PostgreSQL cluster: the
// database component ("unit.component") that hosts it. The component's
// dr-mode says how the pool itself survives a region: geo-replica (a
// standby pool in the other region, promoted) or backup (no standby: the
// pool is created again in the other region and its tenants geo-restored
// one by one from their own backups).
type Pool struct {
	// Database is the database component ("unit.component") that hosts the pool.
	Database string `yaml:"database" json:"database" jsonschema:"required"`
	// Region the pool's primary lives in (primary or secondary region name);
	// default the primary region.
	Region string `yaml:"region,omitempty" json:"region,omitempty"`
	// Isolation: a database per tenant (default), or a schema per tenant
	// in one database, for large tenant counts.
	Isolation TenantIsolation `yaml:"isolation,omitempty" json:"isolation,omitempty" jsonschema:"enum=database,enum=schema"`
	// Capacity is how many connections the gate lets through to the pool
	// at once. A failover raises a geo-replica pool's standby from Standby
	// to Active (seed 004: a secondary pool sized only to apply the change
	// log). Absent: no limit.
	Capacity *PoolCapacity `yaml:"capacity,omitempty" json:"capacity,omitempty"`
	// Provision, for a pool whose database is not geo-replica, are the
	// commands that create its copy in the other region at a failover and
	// retire it at the failback (seed 004: "create the elastic pool in the
	// DR region", "delete the DR pool"). Absent: a failover waits for the
	// copy to be created by hand.
	Provision *PoolProvision `yaml:"provision,omitempty" json:"provision,omitempty"`
}

// PoolProvision are a geo-restore pool's commands for its DR copy, each an
// argv list (no shell). A program with a relative path is resolved
// against the spec file's directory, where each command runs, with
// LIFEBOAT_POOL, LIFEBOAT_REGION, LIFEBOAT_ENDPOINT (the pool database's
// URL in that region, with its credentials), LIFEBOAT_ISOLATION and
// LIFEBOAT_SPEC_DIR in its environment; a non-zero exit fails (and is
// retried).
type PoolProvision struct {
	// Create makes the copy exist and answer at the endpoint, then exits
	// 0; run again on a copy that exists, it must exit 0 (idempotent).
	Create []string `yaml:"create" json:"create" jsonschema:"required,description=Command (argv) that creates the pool's DR copy and returns once it answers at the pool database's endpoint in LIFEBOAT_REGION; idempotent."`
	// ReadOnly makes the copy refuse every write (failback step c).
	// Absent: each database of the copy gets default_transaction_read_only,
	// which a client can still SET off.
	ReadOnly []string `yaml:"read-only,omitempty" json:"read-only,omitempty" jsonschema:"description=Command (argv) that makes the DR copy refuse every write at failback; absent: default_transaction_read_only on each database (a client can SET it off)."`
	// Delete removes the copy once its tenants are home (failback step g).
	// Absent: the failback leaves the copy and says to delete it by hand.
	Delete []string `yaml:"delete,omitempty" json:"delete,omitempty" jsonschema:"description=Command (argv) that deletes the DR copy once the failback copied its tenants home; absent: the copy is left for you to delete."`
}

// PoolCapacity is a pool's connection limit as primary and as standby.
type PoolCapacity struct {
	Active int `yaml:"active" json:"active" jsonschema:"required,minimum=1"`
	// Standby is the limit before a failover; default Active.
	Standby int `yaml:"standby,omitempty" json:"standby,omitempty" jsonschema:"minimum=1"`
}

// TenantIsolation is how tenants share a pool.
type TenantIsolation string

const (
	IsolationDatabase TenantIsolation = "database"
	IsolationSchema   TenantIsolation = "schema"
)

// Tier is a class of tenants with its own pool and DR strategy.
type Tier struct {
	// Pool new tenants of this tier are placed in (placement: primary).
	Pool string `yaml:"pool,omitempty" json:"pool,omitempty"`
	// Pools, for placement: split, are two pools whose primaries are in
	// different regions; new tenants alternate between them, so losing a
	// region fails over only half of them (seed 004, scenario 3).
	Pools     []string        `yaml:"pools,omitempty" json:"pools,omitempty"`
	Placement TenantPlacement `yaml:"placement,omitempty" json:"placement,omitempty" jsonschema:"enum=primary,enum=split"`
	// Strategy: geo-replicate (failed over in batches) or geo-restore
	// (restored from the tenant's latest backup, in priority order or on
	// demand).
	Strategy   TenantStrategy `yaml:"strategy" json:"strategy" jsonschema:"required,enum=geo-replicate,enum=geo-restore"`
	Objectives *Objectives    `yaml:"objectives,omitempty" json:"objectives,omitempty"`
	// Priority orders tiers during recovery: lower first.
	Priority int `yaml:"priority,omitempty" json:"priority,omitempty"`
	// BackupInterval is how often each tenant of a geo-restore tier is
	// backed up and shipped to the other region; default 1h. It bounds
	// the tier's RPO.
	BackupInterval Duration `yaml:"backup-interval,omitempty" json:"backup-interval,omitempty"`
}

// TenantPlacement is where a tier's tenants' primaries go.
type TenantPlacement string

const (
	PlacementPrimary TenantPlacement = "primary" // all in the tier's pool
	PlacementSplit   TenantPlacement = "split"   // half in each region
)

// TenantStrategy is how a tier's tenants are recovered.
type TenantStrategy string

const (
	StrategyGeoReplicate TenantStrategy = "geo-replicate"
	StrategyGeoRestore   TenantStrategy = "geo-restore"
)

// API is the operator surface of 'lifeboat serve': the HTTP API (JSON,
// with an OpenAPI document), /metrics and the dashboard.
type API struct {
	// Listen is where plain 'lifeboat serve' listens, host:port; default
	// 127.0.0.1:7480. An address other than loopback needs tls.
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// ListenIn is where each region's controller ('lifeboat serve
	// --region') listens, by region name. The CLI talks to the first that
	// answers, the leader's first.
	ListenIn map[string]string `yaml:"listen-in,omitempty" json:"listen-in,omitempty"`
	// Tokens is a file of bearer tokens, one per line: "<name> <role>
	// sha256:<hex of the token's SHA-256>"; roles are viewer, operator and
	// admin. Relative to the spec file.
	Tokens string `yaml:"tokens" json:"tokens" jsonschema:"required"`
	// TLS, if set, serves HTTPS; with client-ca, clients must present a
	// certificate it signed (mutual TLS).
	TLS *APITLS `yaml:"tls,omitempty" json:"tls,omitempty"`
}

// APITLS are the API's certificate files, relative to the spec file.
type APITLS struct {
	Cert     string `yaml:"cert" json:"cert" jsonschema:"required"`
	Key      string `yaml:"key" json:"key" jsonschema:"required"`
	ClientCA string `yaml:"client-ca,omitempty" json:"client-ca,omitempty"`
}

// Role is what an API caller may do.
type Role string

const (
	RoleViewer   Role = "viewer"   // read
	RoleOperator Role = "operator" // drills, planned switchovers, approvals
	RoleAdmin    Role = "admin"    // forced failover, policy changes
)

// Hook inserts an approval or a script step before or after steps of a plan.
type Hook struct {
	Name string `yaml:"name" json:"name" jsonschema:"required"`
	// Before or After selects the steps: an operation ("traffic.switch"),
	// a component ("unit.component"), or "plan" for the start or the end.
	Before string `yaml:"before,omitempty" json:"before,omitempty"`
	After  string `yaml:"after,omitempty" json:"after,omitempty"`
	// On limits the hook to some intents; default all.
	On []Intent `yaml:"on,omitempty" json:"on,omitempty"`
	// Run is a command run by /bin/sh; non-zero exit fails the step.
	Run string `yaml:"run,omitempty" json:"run,omitempty"`
	// Approval is a question a person must approve before the plan goes on.
	Approval string            `yaml:"approval,omitempty" json:"approval,omitempty"`
	Timeout  Duration          `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Env      map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
}

// DriverSpec chooses a driver for each kind of component.
type DriverSpec struct {
	// Default is the driver for every kind not named below: script (a
	// command per action), agent (drivers served over HTTP by a region's
	// agent, such as the lab's daemon) or fake (in memory, for tests).
	// Traffic may also be dns (the built-in authoritative DNS server) or
	// frontdoor (TCP listeners that forward to the active region), both
	// hosted by 'lifeboat serve' at drivers.agent.url, or rfc2136 (an
	// external DNS server).
	Default  string `yaml:"default,omitempty" json:"default,omitempty" jsonschema:"enum=script,enum=agent,enum=fake"`
	Compute  string `yaml:"compute,omitempty" json:"compute,omitempty" jsonschema:"enum=script,enum=agent,enum=fake"`
	Database string `yaml:"database,omitempty" json:"database,omitempty" jsonschema:"enum=script,enum=agent,enum=fake"`
	Traffic  string `yaml:"traffic,omitempty" json:"traffic,omitempty" jsonschema:"enum=script,enum=agent,enum=dns,enum=frontdoor,enum=rfc2136,enum=fake"`
	Backup   string `yaml:"backup,omitempty" json:"backup,omitempty" jsonschema:"enum=script,enum=agent,enum=fake"`
	// Script configures the script driver: one command per action.
	Script *ScriptDriver `yaml:"script,omitempty" json:"script,omitempty"`
	// Agent says where the agent that serves drivers listens.
	Agent *AgentDriver `yaml:"agent,omitempty" json:"agent,omitempty"`
	// RFC2136 switches traffic names in an external DNS server (BIND,
	// PowerDNS, …) by dynamic updates signed with TSIG.
	RFC2136 *RFC2136Driver `yaml:"rfc2136,omitempty" json:"rfc2136,omitempty"`
	// DNS is the built-in authoritative DNS server for the service's zone.
	DNS *DNSDriver `yaml:"dns,omitempty" json:"dns,omitempty"`
	// FrontDoor is the front door's listeners.
	FrontDoor *FrontDoorDriver `yaml:"frontdoor,omitempty" json:"frontdoor,omitempty"`
}

// DNSDriver is Lifeboat's built-in authoritative DNS server: every traffic
// name answers with the healthy endpoints of the active region, and fails
// closed. 'lifeboat serve' hosts it.
type DNSDriver struct {
	// Zone that holds the traffic names, e.g. shop.example.test.
	Zone string `yaml:"zone" json:"zone" jsonschema:"required"`
	// Listen is where 'lifeboat serve' (without --region) answers, UDP and
	// TCP, host:port. Set it, or name-servers.<region>.listen, or both.
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// NameServers are the zone's NS records, one per region.
	NameServers map[string]NameServer `yaml:"name-servers" json:"name-servers" jsonschema:"required"`
	// Endpoints are the addresses the traffic names answer with when each
	// region is active, by region name.
	Endpoints map[string][]string `yaml:"endpoints" json:"endpoints" jsonschema:"required"`
	// Weights make the names active/active: each answer comes from one
	// region, picked in proportion to its weight (a region not listed has
	// weight 0). A failover pins them to one region again.
	Weights map[string]int `yaml:"weights,omitempty" json:"weights,omitempty"`
}

// NameServer is one of the zone's name servers.
type NameServer struct {
	// Name of the server, e.g. ns-west.shop.example.test.
	Name string `yaml:"name" json:"name" jsonschema:"required"`
	// Address it answers on (the glue record when the name is in the zone).
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Listen, if set, is where this region's controller ('lifeboat serve
	// --region') serves the zone, host:port; it follows the stored state.
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
}

// FrontDoorDriver is the front door: TCP listeners that forward to the
// active region and switch in two steps. 'lifeboat serve' hosts it.
type FrontDoorDriver struct {
	// Listeners by name (e.g. http, postgres).
	Listeners map[string]FrontDoorListener `yaml:"listeners" json:"listeners" jsonschema:"required"`
	// Lease is how long a listener keeps routing without contact with the
	// control plane before it fences itself; default 10s.
	Lease Duration `yaml:"lease,omitempty" json:"lease,omitempty"`
	// HoldTimeout is how long a new connection waits for a route during a
	// switch before it is refused; default 2s.
	HoldTimeout Duration `yaml:"hold-timeout,omitempty" json:"hold-timeout,omitempty"`
}

// FrontDoorListener is one listener of the front door.
type FrontDoorListener struct {
	// Listen is the public address where 'lifeboat serve' (without
	// --region) listens, host:port. Set it, or listen-in, or both.
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// ListenIn is where each region's controller ('lifeboat serve
	// --region') runs this listener, by region name; each follows the
	// stored state and fences itself when its region loses the quorum.
	ListenIn map[string]string `yaml:"listen-in,omitempty" json:"listen-in,omitempty"`
	// Upstreams is the host:port this listener forwards to when each
	// region is active, by region name.
	Upstreams map[string]string `yaml:"upstreams" json:"upstreams" jsonschema:"required"`
}

// RFC2136Driver is an external DNS server that takes dynamic updates.
type RFC2136Driver struct {
	// Server is the zone's primary, host:port.
	Server string `yaml:"server" json:"server" jsonschema:"required"`
	// Zone that holds the traffic names, e.g. example.test.
	Zone string `yaml:"zone" json:"zone" jsonschema:"required"`
	TSIG TSIG   `yaml:"tsig" json:"tsig" jsonschema:"required"`
	// TTL of the records Lifeboat writes; default 30s.
	TTL Duration `yaml:"ttl,omitempty" json:"ttl,omitempty"`
	// Endpoints are the addresses the traffic names resolve to when each
	// region is active, by region name.
	Endpoints map[string][]string `yaml:"endpoints" json:"endpoints" jsonschema:"required"`
}

// TSIG is the key that signs dynamic updates.
type TSIG struct {
	Name      string `yaml:"name" json:"name" jsonschema:"required"`
	Algorithm string `yaml:"algorithm,omitempty" json:"algorithm,omitempty" jsonschema:"enum=hmac-sha256,enum=hmac-sha384,enum=hmac-sha512,enum=hmac-sha224,enum=hmac-sha1"`
	// SecretFile holds the base64 secret (as tsig-keygen prints it);
	// relative to the spec file. The secret itself never goes in the spec.
	SecretFile string `yaml:"secret-file" json:"secret-file" jsonschema:"required"`
}

// AgentDriver is an agent that serves drivers over HTTP.
type AgentDriver struct {
	// URL of the agent, e.g. http://127.0.0.1:7401: the lab's daemon, or
	// 'lifeboat serve', which listens there and hosts drivers.traffic dns
	// or frontdoor.
	URL string `yaml:"url" json:"url" jsonschema:"required,pattern=^https?://"`
}

// ScriptDriver maps each driver action to a user's command.
type ScriptDriver struct {
	// Dir is where commands run; relative to the spec file. Default: the
	// spec file's directory.
	Dir     string   `yaml:"dir,omitempty" json:"dir,omitempty"`
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Actions maps an action ("database.promote", "compute.status", …) to
	// a command run by /bin/sh.
	Actions map[string]string `yaml:"actions" json:"actions" jsonschema:"required"`
}

// StoreSpec says where state and journal live.
type StoreSpec struct {
	// Dir of the embedded etcd member; relative to the spec file. Default
	// ".lifeboat".
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
	// Endpoints of an external etcd cluster; when set, nothing is embedded.
	Endpoints []string `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
	// Members make the store one etcd cluster of embedded members, one in
	// each region's controller ('lifeboat serve --region R'), by region:
	// the primary's, the secondary's and the witness's members are the
	// quorum. Each member keeps its data in Dir/<region>.
	Members map[string]StoreMember `yaml:"members,omitempty" json:"members,omitempty"`
}

// StoreMember is where one region's etcd member listens.
type StoreMember struct {
	// Peer is the host:port other members reach it on.
	Peer string `yaml:"peer" json:"peer" jsonschema:"required"`
	// Client is the host:port lifeboat commands reach it on.
	Client string `yaml:"client" json:"client" jsonschema:"required"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return FormatDuration(time.Duration(d)) }

// MarshalText writes the duration as "1m30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration: write it like 30s, 5m or 1h30m", string(b))
	}
	*d = Duration(v)
	return nil
}

// JSONSchema makes the schema say a duration is a string.
func (Duration) JSONSchema() json.RawMessage {
	return json.RawMessage(`{"type":"string","pattern":"^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$","description":"A Go duration such as 30s, 5m or 1h30m."}`)
}

// FormatDuration prints a duration the way a person reads it: 1m30s, 450ms, 2h.
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		s := d.Round(time.Second).String()
		// "5m0s" reads better as "5m"; "2h0m0s" as "2h".
		for _, suf := range []string{"0s", "0m"} {
			if len(s) > len(suf)+1 && s[len(s)-len(suf):] == suf && (s[len(s)-len(suf)-1] == 'm' || s[len(s)-len(suf)-1] == 'h') {
				s = s[:len(s)-len(suf)]
			}
		}
		return s
	}
}

// Monitor is how Lifeboat watches the service and decides to fail over.
type Monitor struct {
	// Mode: manual (watch and report), notify (also say when a failover is
	// advised and why) or automatic (fail over when a majority of
	// observers have seen the active region lost for Grace). Default notify.
	Mode MonitorMode `yaml:"mode,omitempty" json:"mode,omitempty" jsonschema:"enum=manual,enum=notify,enum=automatic"`
	// Interval, Timeout and Failures are the probes' defaults: every
	// Interval, a probe that takes longer than Timeout fails, and a target
	// is down after Failures failures in a row. Defaults 1s, 1s, 3.
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	Timeout  Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Failures int      `yaml:"failures,omitempty" json:"failures,omitempty" jsonschema:"minimum=1"`
	// Grace is how long a majority of observers must agree that the active
	// region is lost before it is declared lost. Default 0: as soon as the
	// probes' tolerated failures are spent.
	Grace Duration `yaml:"grace,omitempty" json:"grace,omitempty"`
	// BlockWindow: after an automatic failover, no other automatic one
	// within this window unless a person acknowledges it. Default 1h.
	BlockWindow Duration `yaml:"block-window,omitempty" json:"block-window,omitempty"`
	// Lease is the controllers' etcd lease. A controller that cannot renew
	// it (it lost the quorum) fences its own region before it runs out;
	// the other side waits for it to run out before promoting. Default 5s.
	Lease Duration `yaml:"lease,omitempty" json:"lease,omitempty"`
	// Targets are what the observers probe, by region, then by
	// "unit.component": http://host:port/path for compute, tcp://host:port,
	// or a PostgreSQL URL (postgres://user:password@host:port/db) for
	// databases. A region is failing when any of its targets is down.
	Targets map[string]map[string]string `yaml:"targets,omitempty" json:"targets,omitempty"`
}

// MonitorMode says whether the monitor may fail over on its own.
type MonitorMode string

const (
	MonitorManual    MonitorMode = "manual"
	MonitorNotify    MonitorMode = "notify"
	MonitorAutomatic MonitorMode = "automatic"
)

// WithDefaults fills in the monitor's defaults.
func (m Monitor) WithDefaults() Monitor {
	if m.Mode == "" {
		m.Mode = MonitorNotify
	}
	if m.Interval == 0 {
		m.Interval = Duration(time.Second)
	}
	if m.Timeout == 0 {
		m.Timeout = Duration(time.Second)
	}
	if m.Failures == 0 {
		m.Failures = 3
	}
	if m.BlockWindow == 0 {
		m.BlockWindow = Duration(time.Hour)
	}
	if m.Lease == 0 {
		m.Lease = Duration(5 * time.Second)
	}
	return m
}
