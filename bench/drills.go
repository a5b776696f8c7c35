package main

import (
	"context"
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

// drillRows drills a planned switchover in a plain lab, and a region outage
// in a lab whose controllers fail over on their own (root: namespaces).
func drillRows(ctx context.Context, dir string) ([]row, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // the lab's PostgreSQL runs as postgres
		return nil, err
	}
	var rows []row
	sw, err := drillIn(ctx, filepath.Join(dir, "planned"), "", drill.ScenarioPlannedSwitchover)
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
	ro, err := drillIn(ctx, filepath.Join(dir, "outage"), string(lifeboat.MonitorAutomatic), drill.ScenarioRegionOutage)
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
		row{"  acknowledged writes lost", "lab", fmt.Sprintf("%d of %d (%s)", len(ro.Set.Lost), ro.Set.Acknowledged, explained), "every loss reported", okOr(len(ro.Set.Lost) == 0 || ro.RPO.Consistent)})
	return rows, nil
}

// drillIn brings up a lab (monitor "" or a mode), drills scenario with 8
// clients for 12 s, and takes the lab down.
func drillIn(ctx context.Context, dir, monitor, scenario string) (*drill.Report, error) {
	o := lab.DefaultOptions()
	o.Dir, o.Monitor = dir, monitor
	bin, err := labBinary()
	if err != nil {
		return nil, err
	}
	o.Binary = bin
	if _, err := lab.Up(ctx, o); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	defer func() { _, _ = lab.Down(context.WithoutCancel(ctx), dir) }()
	// Settle: the controllers in the quorum and the witness leading raft
	// (it checks every 2 s), or a plain lab's standby streaming.
	time.Sleep(4 * time.Second)
	do := drill.DefaultOptions()
	do.Dir, do.Scenario, do.Duration, do.Warmup, do.Clients = dir, scenario, 12*time.Second, 3*time.Second, 8
	res, err := drill.Run(ctx, do)
	if err != nil {
		return nil, err
	}
	return res.Report, nil
}
