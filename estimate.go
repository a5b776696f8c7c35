package lifeboat

import (
	"math"
	"time"
)

// Estimates of how long actions take, for plans' RTO. They are deliberately
// conservative defaults for a cloud; a component can override the ones that
// depend on it (compute boot, database restore and lag), and drills measure
// the real numbers.
const (
	EstimateEpoch      = 10 * time.Millisecond
	EstimateProvision  = 60 * time.Second // stand up an empty scale set
	EstimateBoot       = 30 * time.Second // a new instance passes its probe
	EstimateScaleDown  = 10 * time.Second
	EstimateDelete     = 30 * time.Second
	EstimateFence      = 5 * time.Second
	EstimatePromote    = 10 * time.Second
	EstimateSwitchover = 30 * time.Second // fence, wait for replay, promote, demote
	EstimateRejoin     = 30 * time.Second
	EstimateBackup     = 60 * time.Second
	EstimateRestore    = 10 * time.Minute
	EstimateSwitch     = 2 * time.Second // change the routing; clients follow after the TTL
	EstimateScript     = 10 * time.Second
	DefaultTTL         = 30 * time.Second
	DefaultLag         = 5 * time.Second
)

// AllData is the RPO of a database with dr-mode none: everything is lost.
const AllData = time.Duration(math.MaxInt64)

// BootTime is how long a new instance of c takes to pass its probe.
func (c Compute) BootTime() time.Duration {
	if c.Boot > 0 {
		return c.Boot.D()
	}
	return EstimateBoot
}

// StandUp is how long it takes to bring c to full size in the secondary
// region from its standby mode: cold provisions and boots, warm boots, hot
// is already running.
func (c Compute) StandUp() time.Duration {
	switch c.Standby {
	case StandbyCold:
		return EstimateProvision + c.BootTime()
	case StandbyWarm:
		return c.BootTime()
	}
	return 0
}

// TTLOrDefault is how long clients may keep the old answer after a switch.
func (t Traffic) TTLOrDefault() time.Duration {
	if t.TTL > 0 {
		return t.TTL.D()
	}
	return DefaultTTL
}

// FailoverTime is how long a database takes to take writes in the other
// region after an unplanned failover.
func (d Database) FailoverTime() time.Duration {
	switch d.DRMode {
	case DRGeoReplica:
		return EstimateFence + EstimatePromote
	case DRBackup:
		return d.RestoreTime()
	}
	return 0
}

// RestoreTime is how long restoring the newest backup takes.
func (d Database) RestoreTime() time.Duration {
	if d.Restore > 0 {
		return d.Restore.D()
	}
	return EstimateRestore
}

// DataLoss is the worst-case data loss of an unplanned failover (its RPO).
func (d Database) DataLoss() time.Duration {
	switch d.DRMode {
	case DRGeoReplica:
		if d.Replication == ReplicationSync {
			return 0
		}
		if d.Lag > 0 {
			return d.Lag.D()
		}
		return DefaultLag
	case DRBackup:
		return d.BackupInterval.D()
	}
	return AllData
}
