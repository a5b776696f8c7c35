package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/drill"
	"github.com/lifeboat-dr/lifeboat/lab"
)

// The drill targets of issue 6, measured by 'lifeboat drill' in the lab
// under load (8 clients through the front door).
const (
	targetUnplannedP50 = 2 * time.Second
	targetUnplannedMax = 3 * time.Second
	targetPlannedGap   = time.Second
)

// drillRows drills a planned switchover in a plain lab, and region outages
// in labs whose controllers fail over on their own (root: namespaces):
// async, async with a lagging standby, and sync.
func drillRows(ctx context.Context, dir string) ([]row, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // the lab's PostgreSQL runs as postgres
		return nil, err
	}
	var rows []row
	sw, err := drillIn(ctx, filepath.Join(dir, "planned"), labSetup{}, drill.ScenarioPlannedSwitchover, 0)
	if err != nil {
		return nil, fmt.Errorf("planned switchover drill: %w", err)
	}
	var gap time.Duration
	for _, w := range sw.Windows {
		gap = max(gap, w.Duration)
	}
	rows = append(rows,
		row{"drill planned-switchover: longest write-unavailable window (8 clients)", "lab", lifeboat.FormatDuration(gap), "<= " + lifeboat.FormatDuration(targetPlannedGap), okOr(gap <= targetPlannedGap)},
		row{"  acknowledged writes lost", "lab", fmt.Sprintf("%d of %d", len(sw.Set.Lost), sw.Set.Acknowledged), "0", okOr(len(sw.Set.Lost) == 0)})
	if os.Geteuid() != 0 {
		return append(rows, row{"drill region-outage (needs root for the controllers' namespaces: skipped)", "lab", "-", "", ""}), nil
	}
	ro, err := drillIn(ctx, filepath.Join(dir, "outage"), labSetup{monitor: string(lifeboat.MonitorAutomatic)}, drill.ScenarioRegionOutage, 0)
	if err != nil {
		return nil, fmt.Errorf("region outage drill: %w", err)
	}
	explained := "none lost"
	if len(ro.Set.Lost) > 0 {
		explained = fmt.Sprintf("consistent with the lag at the fault: %v", ro.RPO.Consistent)
	}
	rows = append(rows,
		row{"drill region-outage, automatic (async): RTO p50 over 8 clients", "lab", lifeboat.FormatDuration(ro.RTO.P50), "<= " + lifeboat.FormatDuration(targetUnplannedP50), okOr(ro.RTO.P50 <= targetUnplannedP50 && ro.RTO.Unrecovered == 0)},
		row{"  RTO max", "lab", lifeboat.FormatDuration(ro.RTO.Max), "<= " + lifeboat.FormatDuration(targetUnplannedMax), okOr(ro.RTO.Max <= targetUnplannedMax && ro.RTO.Unrecovered == 0)},
		row{"  acknowledged writes lost", "lab", fmt.Sprintf("%d of %d (%s)", len(ro.Set.Lost), ro.Set.Acknowledged, explained), "every loss reported", okOr(len(ro.Set.Lost) == 0 || ro.RPO.Consistent)},
		registerRow(ro))

	// A lagging standby: the replication link delayed, so that the writes
	// in flight at the fault are lost and the report must account for
	// every one of them with the lag it sampled.
	lg, err := drillIn(ctx, filepath.Join(dir, "lagging"), labSetup{monitor: string(lifeboat.MonitorAutomatic)}, drill.ScenarioRegionOutage, lagDelay)
	if err != nil {
		rows = append(rows, row{"drill region-outage, async, lagging standby", "lab", "error: " + err.Error(), "every loss reported", okOr(false)})
	} else {
		var lag time.Duration
		if s := lg.RPO.LagAtFault; s != nil {
			lag = s.Lag
		}
		rows = append(rows,
			row{fmt.Sprintf("drill region-outage, async, lagging standby (link +%s each way): lost", lifeboat.FormatDuration(lagDelay)), "lab",
				fmt.Sprintf("%d of %d, lag at fault %s, consistent: %s", len(lg.Set.Lost), lg.Set.Acknowledged, lifeboat.FormatDuration(lag), yesNo(lg.RPO.Consistent)),
				"> 0, consistent with the lag", okOr(len(lg.Set.Lost) > 0 && lg.RPO.Consistent)},
			registerRow(lg))
	}

	// Sync replication: nothing acknowledged may be lost. Strict sync
	// would block every write after the failover (no standby is left to
	// confirm); degrade-after lets the new primary go on alone.
	sy, err := drillIn(ctx, filepath.Join(dir, "sync"), labSetup{monitor: string(lifeboat.MonitorAutomatic), replication: "sync", degradeAfter: time.Second}, drill.ScenarioRegionOutage, 0)
	if err != nil {
		rows = append(rows, row{"drill region-outage, sync", "lab", "error: " + err.Error(), "0 lost", okOr(false)})
	} else {
		rows = append(rows,
			row{"drill region-outage, sync (degrade-after 1s): acknowledged writes lost", "lab", fmt.Sprintf("%d of %d", len(sy.Set.Lost), sy.Set.Acknowledged), "0", okOr(len(sy.Set.Lost) == 0)},
			row{"  RTO p50 / max", "lab", lifeboat.FormatDuration(sy.RTO.P50) + " / " + lifeboat.FormatDuration(sy.RTO.Max), "<= " + lifeboat.FormatDuration(targetUnplannedP50) + " / " + lifeboat.FormatDuration(targetUnplannedMax),
				okOr(sy.RTO.P50 <= targetUnplannedP50 && sy.RTO.Max <= targetUnplannedMax && sy.RTO.Unrecovered == 0)})
	}
	return rows, nil
}

// lagDelay is the one-way delay on the replication link of the lagging
// standby's drill: a few hundred milliseconds of writes in flight.
const lagDelay = 200 * time.Millisecond

// registerRow says what the register check found, and why when it failed.
func registerRow(r *drill.Report) row {
	reg := r.Register
	if reg == nil {
		return row{"  register linearizable", "lab", "not checked", "", ""}
	}
	what := fmt.Sprintf("%s (%d operations)", reg.Result, reg.Operations)
	ok := reg.Result == drill.Linearizable
	if reg.Result == drill.NotLinearizable && len(r.Set.Lost) > 0 {
		// A true finding: an async failover loses acknowledged writes, the
		// register's among them.
		what += fmt.Sprintf(", as %d lost writes imply", len(r.Set.Lost))
		ok = true
	}
	return row{"  register linearizable", "lab", what, "yes, or explained by lost writes", okOr(ok)}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// labSetup is how a drill's lab is brought up.
type labSetup struct {
	monitor, replication string
	degradeAfter         time.Duration
}

// drillIn brings up a lab, drills scenario with 8 clients for 12 s (the
// replication link delayed by delay, if set), and takes the lab down.
func drillIn(ctx context.Context, dir string, ls labSetup, scenario string, delay time.Duration) (*drill.Report, error) {
	o := lab.DefaultOptions()
	o.Dir, o.Monitor, o.Replication, o.DegradeAfter = dir, ls.monitor, ls.replication, ls.degradeAfter
	bin, err := labBinary()
	if err != nil {
		return nil, err
	}
	o.Binary = bin
	if _, err := lab.Up(ctx, o); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	defer func() { _, _ = lab.Down(context.WithoutCancel(ctx), dir) }()
	if err := settled(ctx, dir, ls.monitor != ""); err != nil {
		return nil, err
	}
	do := drill.DefaultOptions()
	do.Dir, do.Scenario, do.Duration, do.Warmup, do.Clients, do.ReplicationDelay = dir, scenario, 12*time.Second, 3*time.Second, 8, delay
	res, err := drill.Run(ctx, do)
	if err != nil {
		return nil, err
	}
	return res.Report, nil
}

// settled waits for the lab's controllers to form their quorum under one
// leader (monitored), or for a plain lab's standby to stream.
func settled(ctx context.Context, dir string, monitored bool) error {
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := lab.LabStatus(ctx, dir)
		if err == nil && monitored {
			err = st.Settled()
		}
		if err == nil && !monitored {
			err = errors.New("the standby does not stream yet")
			for _, d := range st.Databases {
				if d.ReplicationState == "streaming" {
					err = nil
				}
			}
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the lab in %s did not settle within a minute: %w", dir, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
