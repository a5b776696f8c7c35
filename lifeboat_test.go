package lifeboat

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func exampleSpec() *Spec {
	return &Spec{
		Service: "shop",
		Regions: Regions{Primary: Region{Name: "west"}, Secondary: Region{Name: "east"}},
		Units: map[string]Unit{
			"store": {
				Compute: map[string]Compute{
					"web":  {Standby: StandbyWarm, Instances: Instances{Primary: 3, Secondary: 2}},
					"cron": {Standby: StandbyCold, Instances: Instances{Primary: 1, Secondary: 1}},
					"api":  {Standby: StandbyHot, Instances: Instances{Primary: 2, Secondary: 2}},
				},
				Databases: map[string]Database{
					"orders": {DRMode: DRGeoReplica},
					"cache":  {DRMode: DRNone},
					"blobs":  {DRMode: DRBackup},
				},
				Traffic: map[string]Traffic{"www": {Names: []string{"shop.test"}, Target: "web"}},
			},
		},
	}
}

func TestInitialStateNamesAndQuadrants(t *testing.T) {
	s := exampleSpec()
	st := InitialState(s, time.Unix(0, 0))
	want := map[string]string{
		"shop-store-web-west":    "primary/permanent 3",
		"shop-store-web-east":    "secondary/permanent 0",
		"shop-store-cron-east":   "secondary/failover absent",
		"shop-store-api-east":    "secondary/permanent 2",
		"shop-store-orders-east": "secondary/permanent replica",
		"shop-store-cache-east":  "secondary/permanent absent",
		"shop-store-blobs-east":  "secondary/permanent backups",
		"shop-store-www":         "global west",
	}
	for name, w := range want {
		r := st.Resources[name]
		if r == nil {
			t.Errorf("no resource %s", name)
			continue
		}
		got := r.Quadrant(s) + " "
		switch {
		case !r.Exists:
			got += "absent"
		case r.Kind == KindCompute:
			got += fmt.Sprint(r.Instances)
		case r.Kind == KindDatabase:
			got += string(r.Role)
		default:
			got += r.Routes
		}
		if got != w {
			t.Errorf("%s: %s, want %s", name, got, w)
		}
	}
	if st.Epoch != 1 || st.Active != "west" {
		t.Errorf("epoch %d active %s", st.Epoch, st.Active)
	}
}

// Applying a completed step twice gives the same state as once: the engine
// may record a step's effect again after a crash.
func TestApplyIsIdempotent(t *testing.T) {
	s := exampleSpec()
	steps := []*Step{
		{Op: OpRaiseEpoch, Epoch: 2},
		{Op: OpDatabaseFence, Resource: "shop-store-orders-west", Epoch: 2},
		{Op: OpDatabasePromote, Resource: "shop-store-orders-east", Epoch: 2},
		{Op: OpComputeProvision, Resource: "shop-store-cron-east", Epoch: 2},
		{Op: OpComputeScale, Resource: "shop-store-cron-east", Instances: 1, Epoch: 2},
		{Op: OpDatabaseRestore, Resource: "shop-store-blobs-east", Epoch: 2},
		{Op: OpTrafficSwitch, Resource: "shop-store-www", Region: "east", Epoch: 2},
	}
	now := time.Unix(100, 0)
	once := InitialState(s, time.Unix(0, 0))
	twice := once.Clone()
	for _, st := range steps {
		once.Apply(st, now)
		twice.Apply(st, now)
		twice.Apply(st, now)
	}
	if !reflect.DeepEqual(once, twice) {
		t.Fatal("applying each step twice changed the state")
	}
	if once.Epoch != 2 || once.Active != "east" {
		t.Fatalf("epoch %d active %s", once.Epoch, once.Active)
	}
	if r := once.Resources["shop-store-orders-west"]; r.Role != DBFenced {
		t.Errorf("old primary is %s", r.Role)
	}
	if r := once.Resources["shop-store-orders-east"]; r.Role != DBPrimary || r.Epoch != 2 {
		t.Errorf("new primary is %s at epoch %d", r.Role, r.Epoch)
	}
}

func TestPlanGroupsAndPaths(t *testing.T) {
	p := &Plan{Steps: []*Step{
		{ID: "epoch", Estimate: time.Millisecond},
		{ID: "promote", DependsOn: []string{"epoch"}, Estimate: 10 * time.Second},
		{ID: "scale", DependsOn: []string{"epoch"}, Estimate: 30 * time.Second},
		{ID: "switch", Op: OpTrafficSwitch, DependsOn: []string{"promote", "scale"}, Estimate: 5 * time.Second},
		{ID: "delete", DependsOn: []string{"switch"}, Estimate: time.Minute, Cleanup: true},
	}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	var groups []string
	for _, g := range p.Groups() {
		var ids []string
		for _, s := range g {
			ids = append(ids, s.ID)
		}
		groups = append(groups, strings.Join(ids, ","))
	}
	if got := strings.Join(groups, " | "); got != "epoch | promote,scale | switch | delete" {
		t.Fatalf("groups %s", got)
	}
	path, total := p.CriticalPath()
	if total != time.Millisecond+35*time.Second+time.Minute || len(path) != 4 || path[1].ID != "scale" {
		t.Fatalf("critical path %v, %v", total, path)
	}
	path, rto := p.RecoveryPath()
	if rto != time.Millisecond+35*time.Second || path[len(path)-1].ID != "switch" {
		t.Fatalf("recovery path %v ending %s", rto, path[len(path)-1].ID)
	}
}

func TestPlanValidateFindsMistakes(t *testing.T) {
	for name, steps := range map[string][]*Step{
		"duplicate": {{ID: "a"}, {ID: "a"}},
		"dangling":  {{ID: "a", DependsOn: []string{"b"}}},
		"cycle":     {{ID: "a", DependsOn: []string{"b"}}, {ID: "b", DependsOn: []string{"a"}}},
		"no id":     {{Op: OpScript}},
	} {
		if err := (&Plan{Steps: steps}).Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{"30s": 30 * time.Second, "1h30m": 90 * time.Minute, "0": 0} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || d.D() != want {
			t.Errorf("%s: %v, %v", in, d, err)
		}
	}
	var d Duration
	if err := d.UnmarshalText([]byte("5 minutes")); err == nil || !strings.Contains(err.Error(), "5m") {
		t.Errorf("a bad duration says %v", err)
	}
	for d, want := range map[time.Duration]string{0: "0s", 450 * time.Millisecond: "450ms", 90 * time.Second: "1m30s", 5 * time.Minute: "5m", 2 * time.Hour: "2h"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestRetryable(t *testing.T) {
	if !IsRetryable(Transient(OpDatabasePromote, "db", errors.New("timeout"))) {
		t.Error("transient is not retryable")
	}
	if IsRetryable(Permanent(OpDatabasePromote, "db", errors.New("no such db"))) {
		t.Error("permanent is retryable")
	}
	stale := fmt.Errorf("wrapped: %w", StaleEpoch("db", 2, 3))
	if IsRetryable(Transient(OpDatabasePromote, "db", stale)) {
		t.Error("a stale epoch is retryable")
	}
	if !IsRetryable(errors.New("unknown")) {
		t.Error("an error that does not say is not retried")
	}
}

// A move that succeeded leaves the service active in its target region,
// also when no traffic.switch took it there (a service of databases only);
// a failed one, or a drill's, does not.
func TestStateEnd(t *testing.T) {
	ended := time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		intent Intent
		status RunStatus
		want   string
	}{
		{IntentFailover, RunSucceeded, "east"},
		{IntentSwitchover, RunSucceeded, "east"},
		{IntentFailover, RunFailed, "west"},
		{IntentFailover, RunCancelled, "west"},
		{IntentRejoin, RunSucceeded, "west"},
	} {
		st := &State{Service: "shop", Epoch: 2, Active: "west", Run: "r1"}
		st.End(&Run{ID: "r1", Status: c.status, EndedAt: ended, Plan: &Plan{Intent: c.intent, From: "west", To: "east"}})
		if st.Run != "" || st.Active != c.want {
			t.Errorf("%s %s: run %q, active %s; want no run, active %s", c.intent, c.status, st.Run, st.Active, c.want)
		}
		if c.want == "east" && !st.Since.Equal(ended) {
			t.Errorf("%s: since %s, want the run's end", c.intent, st.Since)
		}
	}
}
