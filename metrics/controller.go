package metrics

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/controller"
	"github.com/lifeboat-dr/lifeboat/monitor"
)

// ControllerSource is what the controller metrics read at scrape time;
// *controller.Controller is one.
type ControllerSource interface {
	// Status is the controller's last published status: leadership,
	// quorum, the decision, readiness, RPO exposure, the probed targets.
	Status() controller.Status
	// Views are this controller's own observer's views, one per region.
	Views() []monitor.View
	// LastState is the state the controller read last (nil before).
	LastState() *lifeboat.State
}

var _ ControllerSource = (*controller.Controller)(nil)

// Every controller metric has the label controller: the region of the
// controller that reports it (each region runs one, and each sees the
// service from where it stands).
var (
	descLeader = prometheus.NewDesc("lifeboat_controller_leader",
		"1 if this controller holds the election (only the leader starts an automatic failover), 0 if not.",
		[]string{"controller"}, nil)
	descQuorum = prometheus.NewDesc("lifeboat_controller_quorum",
		"1 if this controller's lease in the state store is alive (it reaches a majority), 0 if not: a controller of the active region without quorum fences its region.",
		[]string{"controller"}, nil)
	descFenced = prometheus.NewDesc("lifeboat_controller_fenced",
		"1 if this controller fenced its own region (made its databases read-only) after losing the quorum, 0 if not.",
		[]string{"controller"}, nil)
	descRenewed = prometheus.NewDesc("lifeboat_controller_lease_renewed_timestamp_seconds",
		"When this controller last renewed its lease in the state store (Unix time); time() minus this growing past the monitor lease means it is cut off.",
		[]string{"controller"}, nil)
	descDecision = prometheus.NewDesc("lifeboat_controller_decision",
		"The controller's latest decision, as labels (value always 1): action is none, advise, wait, fence-self or failover; from is the active region, to the region it would fail over to. 'lifeboat status' shows the reasons.",
		[]string{"controller", "action", "from", "to"}, nil)
	descDecidedAt = prometheus.NewDesc("lifeboat_controller_decision_timestamp_seconds",
		"When the controller last decided (Unix time); it decides every monitor interval, so a stale value means its loop is stuck.",
		[]string{"controller"}, nil)
	descEpoch = prometheus.NewDesc("lifeboat_epoch",
		"The service's epoch in the state this controller read last: raised by every failover and switchover; drivers refuse actions from an older one.",
		[]string{"controller"}, nil)
	descActive = prometheus.NewDesc("lifeboat_active_region",
		"The region that serves the service, as a label (value always 1), in the state this controller read last.",
		[]string{"controller", "region"}, nil)
	descActiveSince = prometheus.NewDesc("lifeboat_active_region_since_timestamp_seconds",
		"When the active region last changed (Unix time), in the state this controller read last.",
		[]string{"controller"}, nil)
	descRunning = prometheus.NewDesc("lifeboat_run_in_progress",
		"1 if a run (failover, switchover, failback, rejoin) is in progress or stopped unfinished, 0 if not: no other run can start meanwhile.",
		[]string{"controller"}, nil)
	descRegionUp = prometheus.NewDesc("lifeboat_region_up",
		"1 if this controller's observer sees the region healthy, 0 if a critical target there is down (the active region's databases and compute, every region's databases).",
		[]string{"controller", "region"}, nil)
	descRegionSince = prometheus.NewDesc("lifeboat_region_verdict_since_timestamp_seconds",
		"When this controller's observer's verdict on the region (lifeboat_region_up) last changed (Unix time).",
		[]string{"controller", "region"}, nil)
	descComponent = prometheus.NewDesc("lifeboat_component_health",
		"A probed component's health as this controller's observer sees it, one series per state (up, down, unknown), the current one 1: down after the configured failures in a row, up after one success, unknown before either. critical is true when it decides its region's verdict.",
		[]string{"controller", "region", "component", "probe", "critical", "health"}, nil)
	descFailures = prometheus.NewDesc("lifeboat_component_probe_failures",
		"Failed probes in a row now for the component (0 when the last probe succeeded).",
		[]string{"controller", "region", "component", "probe"}, nil)
	descProbeDuration = prometheus.NewDesc("lifeboat_component_probe_duration_seconds",
		"How long the component's latest probe took.",
		[]string{"controller", "region", "component", "probe"}, nil)
	descCheckOK = prometheus.NewDesc("lifeboat_readiness_check_ok",
		"1 if the readiness check passes, 0 if not (check names what is checked, component what it is about; 'lifeboat status' gives the reason). Only the leader evaluates readiness.",
		[]string{"controller", "check", "component"}, nil)
	descCheckBlocks = prometheus.NewDesc("lifeboat_readiness_check_blocking",
		"1 if the readiness check fails in a way that makes a failover fail now (an automatic failover is refused; a person must force it), 0 if not.",
		[]string{"controller", "check", "component"}, nil)
	descReady = prometheus.NewDesc("lifeboat_failover_ready",
		"1 if no readiness check blocks a failover now, 0 if one does. Absent when this controller has no readiness evaluation (it does not lead).",
		[]string{"controller"}, nil)
	descExposureSeconds = prometheus.NewDesc("lifeboat_rpo_exposure_seconds",
		"Worst-case data loss if the active primary died now, as time: the writes of this many seconds would be lost. +Inf when it cannot be bounded (standby not streaming, or lag unknown). Reported by the active region's controller.",
		[]string{"controller", "database"}, nil)
	descExposureBytes = prometheus.NewDesc("lifeboat_rpo_exposure_bytes",
		"Worst-case data loss if the active primary died now, as WAL bytes the standby has not flushed. +Inf when it cannot be bounded.",
		[]string{"controller", "database"}, nil)
	descBounded = prometheus.NewDesc("lifeboat_rpo_exposure_bounded",
		"1 if the RPO exposure is bounded (a fresh lag sample, standby streaming), 0 if the loss is unknown and may be unbounded.",
		[]string{"controller", "database"}, nil)
	descLagSeconds = prometheus.NewDesc("lifeboat_replication_lag_seconds",
		"The standby's replication lag as time at the latest sample that bounded it (when lifeboat_rpo_exposure_bounded is 0 this is the last known value, not a bound).",
		[]string{"controller", "database"}, nil)
	descLagBytes = prometheus.NewDesc("lifeboat_replication_lag_bytes",
		"The standby's replication lag as WAL bytes not flushed, at the latest sample that bounded it (last known value when unbounded).",
		[]string{"controller", "database"}, nil)
	descLagMaxSeconds = prometheus.NewDesc("lifeboat_replication_lag_window_max_seconds",
		"The worst replication lag as time over the exposure window (default 5 minutes), over the samples that bounded it.",
		[]string{"controller", "database"}, nil)
	descLagMaxBytes = prometheus.NewDesc("lifeboat_replication_lag_window_max_bytes",
		"The worst replication lag as WAL bytes over the exposure window, over the samples that bounded it.",
		[]string{"controller", "database"}, nil)
	descStreaming = prometheus.NewDesc("lifeboat_replication_streaming",
		"1 if the standby is connected and streaming from the primary at the latest sample, 0 if not.",
		[]string{"controller", "database"}, nil)
	descLastBounded = prometheus.NewDesc("lifeboat_replication_lag_last_bounded_timestamp_seconds",
		"When the RPO exposure was last bounded (Unix time). Absent if never.",
		[]string{"controller", "database"}, nil)
)

var componentStates = []monitor.ProbeHealth{monitor.HealthUp, monitor.HealthDown, monitor.HealthUnknown}

// ControllerCollector exports a controller's view of the service.
type ControllerCollector struct{ src ControllerSource }

// NewControllerCollector reads src at every scrape.
func NewControllerCollector(src ControllerSource) *ControllerCollector {
	return &ControllerCollector{src: src}
}

// Describe implements prometheus.Collector.
func (c *ControllerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeader, descQuorum, descFenced, descRenewed, descDecision, descDecidedAt,
		descEpoch, descActive, descActiveSince, descRunning, descRegionUp, descRegionSince, descComponent, descFailures,
		descProbeDuration, descCheckOK, descCheckBlocks, descReady, descExposureSeconds, descExposureBytes, descBounded,
		descLagSeconds, descLagBytes, descLagMaxSeconds, descLagMaxBytes, descStreaming, descLastBounded} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ControllerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	ctl := st.Region
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{ctl}, labels...)...)
	}
	gauge(descLeader, flag(st.Leader))
	gauge(descQuorum, flag(st.Quorum))
	gauge(descFenced, flag(st.Fenced))
	if !st.LastRenewed.IsZero() {
		gauge(descRenewed, unix(st.LastRenewed))
	}
	if !st.DecidedAt.IsZero() {
		d := st.Decision
		gauge(descDecision, 1, string(d.Action), d.From, d.To)
		gauge(descDecidedAt, unix(st.DecidedAt))
	}

	if s := c.src.LastState(); s != nil {
		gauge(descEpoch, float64(s.Epoch))
		if s.Active != "" {
			gauge(descActive, 1, s.Active)
		}
		if !s.Since.IsZero() {
			gauge(descActiveSince, unix(s.Since))
		}
		gauge(descRunning, flag(s.Run != ""))
	}

	seenRegion := map[string]bool{}
	for _, v := range c.src.Views() {
		if seenRegion[v.Region] {
			continue
		}
		seenRegion[v.Region] = true
		gauge(descRegionUp, flag(!v.Failing), v.Region)
		if !v.Since.IsZero() {
			gauge(descRegionSince, unix(v.Since), v.Region)
		}
	}

	seenTarget := map[string]bool{}
	for _, t := range st.Targets {
		if seenTarget[t.Target.Name()] {
			continue
		}
		seenTarget[t.Target.Name()] = true
		region, comp, probe := t.Target.Region, t.Target.Component, string(t.Target.Probe.Kind)
		health := t.Verdict.Health
		if health == "" {
			health = monitor.HealthUnknown
		}
		critical := "false"
		if t.Target.Critical {
			critical = "true"
		}
		for _, h := range componentStates {
			gauge(descComponent, flag(h == health), region, comp, probe, critical, string(h))
		}
		gauge(descFailures, float64(t.Verdict.Failures), region, comp, probe)
		if !t.Verdict.Last.Start.IsZero() {
			gauge(descProbeDuration, t.Verdict.Last.Duration.Seconds(), region, comp, probe)
		}
	}

	seenCheck := map[[2]string]bool{}
	blocked := false
	for _, k := range st.Readiness {
		key := [2]string{k.Name, k.Component}
		if seenCheck[key] {
			continue
		}
		seenCheck[key] = true
		gauge(descCheckOK, flag(k.OK), k.Name, k.Component)
		gauge(descCheckBlocks, flag(k.Blocks && !k.OK), k.Name, k.Component)
		blocked = blocked || k.Blocks && !k.OK
	}
	if len(st.Readiness) > 0 {
		gauge(descReady, flag(!blocked))
	}

	seenDB := map[string]bool{}
	for _, e := range st.Exposure {
		if seenDB[e.Database] {
			continue
		}
		seenDB[e.Database] = true
		db := e.Database
		secs, bytes := e.LagTime.Seconds(), float64(e.LagBytes)
		if !e.Bounded {
			// Unknown is not zero: an alert on "exposure > RPO" must fire.
			secs, bytes = math.Inf(1), math.Inf(1)
		}
		gauge(descExposureSeconds, secs, db)
		gauge(descExposureBytes, bytes, db)
		gauge(descBounded, flag(e.Bounded), db)
		gauge(descLagSeconds, e.LagTime.Seconds(), db)
		gauge(descLagBytes, float64(e.LagBytes), db)
		gauge(descLagMaxSeconds, e.MaxLagTime.Seconds(), db)
		gauge(descLagMaxBytes, float64(e.MaxLagBytes), db)
		gauge(descStreaming, flag(e.Streaming), db)
		if !e.LastBounded.IsZero() {
			gauge(descLastBounded, unix(e.LastBounded), db)
		}
	}
}
