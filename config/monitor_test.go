package config

import (
	"strings"
	"testing"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/planner"
)

// automaticHead is a spec with a witness and no monitor or store yet.
const automaticHead = `service: shop
regions:
  primary: {name: west}
  secondary: {name: east}
  witness: {name: central}
objectives: {rto: 2m, rpo: 5s}
units:
  storefront:
    compute:
      web:
        recipe: {artifact: ./bin/shop, command: [./shop]}
        standby: warm
        instances: {primary: 2, secondary: 2}
        probe: {http: /healthz, interval: 500ms, timeout: 250ms}
        boot: 5s
        connects-to: [orders]
    databases:
      orders:
        engine: postgres
        dr-mode: geo-replica
        replication: sync
        probe: {sql: "SELECT 1 FROM pg_stat_replication LIMIT 1", failures: 5}
    traffic:
      www: {names: [www.shop.example.test], ttl: 5s, target: web}
drivers: {default: fake}
`

const threeMembers = `store:
  dir: .lifeboat
  members:
    west: {peer: "127.0.0.1:2380", client: "127.0.0.1:2379"}
    east: {peer: "127.0.0.2:2380", client: "127.0.0.2:2379"}
    central: {peer: "localhost:12380", client: "[::1]:2379"}
`

// Valid automatic specs: a witness and a quorum (three members, or an
// external cluster) parse with no diagnostics at all.
func TestAutomaticSpecsHaveNoDiagnostics(t *testing.T) {
	for _, tc := range []struct{ name, tail string }{
		{"three members, the lab's probes", `monitor:
  mode: automatic
  interval: 250ms
  timeout: 250ms
  failures: 3
  grace: 1s
  block-window: 30m
  lease: 2s
` + threeMembers},
		{"three members, the defaults", "monitor: {mode: automatic}\n" + threeMembers},
		{"external cluster", `monitor: {mode: automatic, lease: 5s}
store: {endpoints: ["10.0.9.1:2379", "10.0.9.2:2379", "10.0.9.3:2379"]}
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, diags := Parse("lifeboat.yaml", []byte(automaticHead+tc.tail))
			if spec == nil || len(diags) != 0 {
				t.Fatalf("want a spec and no diagnostics, got spec %v:\n%s", spec != nil, diags)
			}
		})
	}
	spec, _ := Parse("lifeboat.yaml", []byte(automaticHead+"monitor: {mode: automatic}\n"+threeMembers))
	if got := spec.Store.Members["central"]; got.Peer != "localhost:12380" || got.Client != "[::1]:2379" {
		t.Errorf("store.members.central = %+v", got)
	}
	if spec.Units["storefront"].Databases["orders"].Probe.Failures != 5 {
		t.Errorf("database probe not decoded: %+v", spec.Units["storefront"].Databases["orders"].Probe)
	}
}

// Without monitor or store.members, nothing new is reported: the monitor
// defaults (notify, 1s/1s/3) are valid on their own.
func TestMonitorDefaultsAreValid(t *testing.T) {
	spec, diags := Parse("lifeboat.yaml", []byte(minimal+"monitor: {mode: notify}\n"))
	if spec == nil || len(diags) != 0 {
		t.Fatalf("want a spec and no diagnostics, got:\n%s", diags)
	}
}

// The detection warning adds the planner's own RTO estimate to the time
// it takes to declare the region lost, and stays quiet just under the
// objective.
func TestDetectionWarningUsesThePlansRTO(t *testing.T) {
	base, diags := Parse("lifeboat.yaml", []byte(automaticHead+"monitor: {mode: automatic}\n"+threeMembers))
	if base == nil {
		t.Fatalf("base spec has errors:\n%s", diags)
	}
	plan, err := planner.Plan(base, lifeboat.InitialState(base, time.Time{}), lifeboat.IntentFailover, "")
	if err != nil {
		t.Fatal(err)
	}
	// interval 1s × 5 failures + grace 5s = 10s; the lease (5s) is shorter.
	const detect = 10 * time.Second
	monitor := "monitor: {mode: automatic, failures: 5, grace: 5s}\n"
	for _, tc := range []struct {
		rto  time.Duration
		warn bool
	}{
		{plan.RTO + detect, false},
		{plan.RTO + detect - time.Second, true},
	} {
		src := strings.Replace(automaticHead, "rto: 2m", "rto: "+tc.rto.String(), 1) + monitor + threeMembers
		spec, diags := Parse("lifeboat.yaml", []byte(src))
		if spec == nil {
			t.Fatalf("rto %s: errors:\n%s", tc.rto, diags)
		}
		want := "an automatic failover may take about " + lifeboat.FormatDuration(plan.RTO+detect)
		got := diags.String()
		if tc.warn != strings.Contains(got, want) || tc.warn != (len(diags) == 1) {
			t.Errorf("rto %s: want warning %v (%q), got:\n%s", tc.rto, tc.warn, want, got)
		}
	}
}

// The majority waits for the old primary's lease, so a lease longer than
// detection is what counts.
func TestDetectionWarningCountsTheLease(t *testing.T) {
	src := strings.Replace(automaticHead, "rto: 2m", "rto: 30s", 1) + "monitor: {mode: automatic, lease: 25s}\n" + threeMembers
	_, diags := Parse("lifeboat.yaml", []byte(src))
	if got := diags.String(); !strings.Contains(got, "25s for the old primary's lease to run out (declaring west lost takes 3s)") {
		t.Errorf("want the lease in the warning, got:\n%s", got)
	}
}

// Monitor modes other than automatic need no witness or shared store.
func TestManualAndNotifyNeedNoQuorum(t *testing.T) {
	for _, mode := range []string{"manual", "notify"} {
		spec, diags := Parse("lifeboat.yaml", []byte(minimal+"monitor: {mode: "+mode+", lease: 1s, interval: 2s}\n"))
		if spec == nil || len(diags) != 0 {
			t.Errorf("mode %s: want no diagnostics, got:\n%s", mode, diags)
		}
	}
}
