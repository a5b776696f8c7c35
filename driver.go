package lifeboat

import (
	"context"
	"time"
)

// Driver actions: one per call of the driver interfaces, named
// "<kind>.<call>". They are the keys of drivers.script.actions and the
// names the fake driver injects faults by.
const (
	ActComputeStatus      = "compute.status"
	ActComputeProvision   = "compute.provision"
	ActComputeScale       = "compute.scale"
	ActComputeDelete      = "compute.delete"
	ActDatabaseStatus     = "database.status"
	ActDatabaseFence      = "database.fence"
	ActDatabasePromote    = "database.promote"
	ActDatabaseSwitchover = "database.switchover"
	ActDatabaseRejoin     = "database.rejoin"
	ActBackupLatest       = "backup.latest"
	ActBackupTake         = "backup.take"
	ActBackupRestore      = "backup.restore"
	ActTrafficStatus      = "traffic.status"
	ActTrafficSwitch      = "traffic.switch"
)

// DriverActions lists the driver actions of each kind of driver, in the
// order a person reads them.
var DriverActions = []struct {
	Kind    string // the key under drivers:
	Actions []string
}{
	{"compute", []string{ActComputeStatus, ActComputeProvision, ActComputeScale, ActComputeDelete}},
	{"database", []string{ActDatabaseStatus, ActDatabaseFence, ActDatabasePromote, ActDatabaseSwitchover, ActDatabaseRejoin}},
	{"backup", []string{ActBackupLatest, ActBackupTake, ActBackupRestore}},
	{"traffic", []string{ActTrafficStatus, ActTrafficSwitch}},
}

// Target tells a driver which resource an action is for, and carries the
// epoch as a fencing token: a driver refuses (with ErrStaleEpoch) an action
// whose epoch is older than one it has already acted for.
type Target struct {
	Service   string `json:"service"`
	Unit      string `json:"unit"`
	Component string `json:"component"`
	Region    string `json:"region"`
	// Resource is the systematic name <service>-<unit>-<component>-<region>.
	Resource string `json:"resource"`
	Epoch    uint64 `json:"epoch"`
	// Run and Step identify the run, for logs and scripts.
	Run  string `json:"run,omitempty"`
	Step string `json:"step,omitempty"`
}

// ScaleSet is what a compute driver reports of a scale set.
type ScaleSet struct {
	Exists    bool `json:"exists"`
	Instances int  `json:"instances"` // running
	Healthy   int  `json:"healthy"`   // passing their probe
	// Epoch is the newest epoch the driver acted for on this resource.
	Epoch uint64 `json:"epoch"`
}

// ComputeDriver runs scale sets built from a recipe. Every method is idempotent.
type ComputeDriver interface {
	Status(ctx context.Context, t Target) (ScaleSet, error)
	// Provision stands up the scale set with zero instances (its recipe copied).
	Provision(ctx context.Context, t Target, c Compute) error
	// Scale sets the number of instances; 0 stops them (stop writes).
	Scale(ctx context.Context, t Target, instances int) error
	// Delete removes the scale set (the failover resource group at failback).
	Delete(ctx context.Context, t Target) error
}

// DatabaseStatus is what a database driver reports of one copy.
type DatabaseStatus struct {
	Role DatabaseRole `json:"role"`
	// Epoch is the newest epoch the driver acted for on this copy.
	Epoch uint64 `json:"epoch"`
	// Lag behind the primary (replica only).
	LagBytes int64         `json:"lag_bytes,omitempty"`
	Lag      time.Duration `json:"lag,omitempty"`
}

// DatabaseDriver fails data over and back. Every method is idempotent.
type DatabaseDriver interface {
	Status(ctx context.Context, t Target) (DatabaseStatus, error)
	// Fence makes a primary unable to take writes.
	Fence(ctx context.Context, t Target) error
	// Promote makes a replica the primary, accepting the loss of what it
	// had not received (unplanned failover).
	Promote(ctx context.Context, t Target) error
	// Switchover moves the primary from `from` to t with zero data loss:
	// fence from, wait until t has replayed everything, promote t, and
	// restart from as a replica of t.
	Switchover(ctx context.Context, from, t Target) error
	// Rejoin makes a fenced old primary a replica of primary, keeping any
	// writes that never replicated in quarantine.
	Rejoin(ctx context.Context, t Target, primary Target) error
}

// BackupInfo describes the newest backup of a database.
type BackupInfo struct {
	ID    string    `json:"id"`
	Taken time.Time `json:"taken"`
	// Region where the copy is kept.
	Region string `json:"region"`
	// Epoch the backup was taken for (0 for scheduled backups).
	Epoch uint64 `json:"epoch"`
}

// BackupDriver takes and restores backups (dr-mode: backup). Idempotent.
type BackupDriver interface {
	Latest(ctx context.Context, t Target) (BackupInfo, error)
	// Take makes a backup of t now (zero-loss failback).
	Take(ctx context.Context, t Target) (BackupInfo, error)
	// Restore restores the newest backup into t (a region) as a primary.
	// Whatever t held before (writes that were never backed up) is moved
	// to quarantine first, never overwritten.
	Restore(ctx context.Context, t Target) error
}

// Route is where a traffic component's names point.
type Route struct {
	Region string    `json:"region"`
	Epoch  uint64    `json:"epoch"`
	Since  time.Time `json:"since"`
	// Answers are what the names resolve to now, if the driver knows.
	Answers map[string][]string `json:"answers,omitempty"`
}

// TrafficDriver routes public names to a region. Idempotent.
type TrafficDriver interface {
	Status(ctx context.Context, t Target, names []string) (Route, error)
	// Switch points the names at region t.Region. It happens in two steps:
	// stop routing to the old region, then route to the new one.
	Switch(ctx context.Context, t Target, names []string) error
}

// ScriptRunner runs the user's script steps.
type ScriptRunner interface {
	// Exec runs command with the environment describing the run; a
	// non-zero exit is an error.
	Exec(ctx context.Context, t Target, command string, env map[string]string) error
}

// Drivers are the drivers a run uses, one per kind of component.
type Drivers struct {
	Compute  ComputeDriver
	Database DatabaseDriver
	Backup   BackupDriver
	Traffic  TrafficDriver
	Scripts  ScriptRunner
}
