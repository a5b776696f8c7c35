package monitor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
)

// readySpec is a service with one of everything the checks look at: west
// primary, east secondary, central witness; RPO 5s.
func readySpec() *lifeboat.Spec {
	return &lifeboat.Spec{
		Service: "shop",
		Regions: lifeboat.Regions{
			Primary:   lifeboat.Region{Name: "west"},
			Secondary: lifeboat.Region{Name: "east"},
			Witness:   &lifeboat.Region{Name: "central"},
		},
		Objectives: lifeboat.Objectives{RTO: lifeboat.Duration(5 * time.Minute), RPO: lifeboat.Duration(5 * time.Second)},
		Units: map[string]lifeboat.Unit{
			"app": {
				Compute: map[string]lifeboat.Compute{
					"web": {
						Recipe:    lifeboat.Recipe{Artifact: "bin/shop", Command: []string{"./shop"}},
						Standby:   lifeboat.StandbyWarm,
						Instances: lifeboat.Instances{Primary: 2, Secondary: 2},
					},
				},
				Databases: map[string]lifeboat.Database{
					"orders": {Engine: "postgres", DRMode: lifeboat.DRGeoReplica, Replication: lifeboat.ReplicationAsync},
					"ledger": {Engine: "postgres", DRMode: lifeboat.DRBackup, BackupInterval: lifeboat.Duration(time.Hour)},
					"cache":  {Engine: "postgres", DRMode: lifeboat.DRNone},
				},
				Traffic: map[string]lifeboat.Traffic{
					"www": {Names: []string{"shop.example.test", "api.example.test"}, Target: "web"},
				},
			},
		},
	}
}

var readyNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// greenFacts are facts under which every check passes.
func greenFacts() Facts {
	return Facts{
		At: readyNow, Active: "west", Standby: "east",
		Databases: map[string]DatabaseFacts{
			"app.orders": {
				DRMode: lifeboat.DRGeoReplica, Replication: lifeboat.ReplicationAsync,
				Region: "east", Resource: "shop-app-orders-east",
				Status: lifeboat.DatabaseStatus{Role: lifeboat.DBReplica, Epoch: 1, LagBytes: 120_000, Lag: 400 * time.Millisecond},
				Stream: Answer{Known: true, OK: true, Detail: "streaming from 127.0.0.1:5432"},
			},
			"app.ledger": {
				DRMode: lifeboat.DRBackup, Region: "east", Resource: "shop-app-ledger-east",
				Status: lifeboat.DatabaseStatus{Role: lifeboat.DBBackupOf, Epoch: 1},
				Backup: &BackupFacts{Latest: lifeboat.BackupInfo{ID: "b-7", Taken: readyNow.Add(-20 * time.Minute), Region: "east"}},
			},
		},
		Compute: map[string]ComputeFacts{
			"app.web": {
				Standby: lifeboat.StandbyWarm, Resource: "shop-app-web-east",
				ScaleSet: lifeboat.ScaleSet{Exists: true},
				Recipe: map[string]Answer{
					"west": {Known: true, OK: true, Detail: "region west holds the artifact, checksum sha256:aa"},
					"east": {Known: true, OK: true, Detail: "region east holds the artifact, checksum sha256:aa"},
				},
				Instances: 2,
				Capacity:  Answer{Known: true, OK: true, Detail: "ports 7100-7101 free, artifact present"},
			},
		},
		Traffic: map[string]TrafficFacts{
			"app.www": {
				Resource: "shop-app-www", Names: []string{"shop.example.test", "api.example.test"},
				Route: lifeboat.Route{Region: "west", Epoch: 1, Answers: map[string][]string{
					"shop.example.test": {"127.0.0.1"}, "api.example.test": {"127.0.0.1"}}},
			},
		},
		Witness: WitnessFacts{Region: "central", Known: true, Reachable: true, Detail: "etcd member healthy"},
		Drill:   DrillFacts{Known: true, Run: "run-42", Intent: lifeboat.IntentSwitchover, At: readyNow.Add(-72 * time.Hour)},
	}
}

// findCheck returns the check with the given name and component.
func findCheck(t *testing.T, checks []Check, name, comp string) Check {
	t.Helper()
	for _, c := range checks {
		if c.Name == name && c.Component == comp {
			return c
		}
	}
	var have []string
	for _, c := range checks {
		have = append(have, c.Name+"/"+c.Component)
	}
	t.Fatalf("no check %q for %q; have %v", name, comp, have)
	return Check{}
}

func TestEvaluateAllGreen(t *testing.T) {
	s := readySpec()
	checks := Evaluate(s, lifeboat.InitialState(s, readyNow), greenFacts(), readyNow)
	want := []string{
		CheckBackupFresh + "/app.ledger", CheckStandbyStreaming + "/app.orders",
		CheckRecipe + "/app.web", CheckCapacity + "/app.web",
		CheckNamesResolve + "/app.www", CheckWitness + "/central", CheckLastDrill + "/",
	}
	if len(checks) != len(want) {
		t.Fatalf("got %d checks, want %d: %+v", len(checks), len(want), checks)
	}
	for i, c := range checks {
		if got := c.Name + "/" + c.Component; got != want[i] {
			t.Errorf("check %d is %s, want %s (a stable order)", i, got, want[i])
		}
		if !c.OK || c.Blocks {
			t.Errorf("%s %s: ok=%v blocks=%v, want ok: %s", c.Name, c.Component, c.OK, c.Blocks, c.Reason)
		}
		t.Logf("%-18s %-11s ok=%-5v %s", c.Name, c.Component, c.OK, c.Reason)
		if c.Reason == "" || !c.At.Equal(readyNow) {
			t.Errorf("%s: reason %q at %v: want a reason, at now", c.Name, c.Reason, c.At)
		}
	}
	// The example of the brief, word for word.
	if got := findCheck(t, checks, CheckStandbyStreaming, "app.orders").Reason; got != "east's standby streams from west, lag 400ms / 120 kB, within the RPO of 5s" {
		t.Errorf("streaming reason = %q", got)
	}
}

func TestEvaluate(t *testing.T) {
	type tc struct {
		name   string
		spec   func(*lifeboat.Spec)
		facts  func(*Facts)
		check  string
		comp   string
		ok     bool
		blocks bool
		reason []string // substrings the reason must contain
	}
	db := func(f *Facts, key string, fn func(*DatabaseFacts)) {
		v := f.Databases[key]
		fn(&v)
		f.Databases[key] = v
	}
	cp := func(f *Facts, fn func(*ComputeFacts)) {
		v := f.Compute["app.web"]
		fn(&v)
		f.Compute["app.web"] = v
	}
	orders := func(fn func(*DatabaseFacts)) func(*Facts) { return func(f *Facts) { db(f, "app.orders", fn) } }
	ledger := func(fn func(*DatabaseFacts)) func(*Facts) { return func(f *Facts) { db(f, "app.ledger", fn) } }
	web := func(fn func(*ComputeFacts)) func(*Facts) { return func(f *Facts) { cp(f, fn) } }
	www := func(fn func(*TrafficFacts)) func(*Facts) {
		return func(f *Facts) { v := f.Traffic["app.www"]; fn(&v); f.Traffic["app.www"] = v }
	}

	cases := []tc{
		// standby streaming
		{name: "streaming within RPO", check: CheckStandbyStreaming, comp: "app.orders", ok: true,
			reason: []string{"streams from west", "within the RPO of 5s"}},
		{name: "lag over RPO does not block", facts: orders(func(d *DatabaseFacts) { d.Status.Lag = 7 * time.Second; d.Status.LagBytes = 3_400_000 }),
			check: CheckStandbyStreaming, comp: "app.orders", reason: []string{"lag 7s / 3.4 MB exceeds the RPO of 5s", "lose up to 7s"}},
		{name: "async not streaming does not block", facts: orders(func(d *DatabaseFacts) { d.Stream = Answer{Known: true, Detail: "stopped"} }),
			check: CheckStandbyStreaming, comp: "app.orders", reason: []string{"does not stream from west (stopped)", "would be lost"}},
		{name: "sync not streaming does not block", spec: func(s *lifeboat.Spec) {
			d := s.Units["app"].Databases["orders"]
			d.Replication = lifeboat.ReplicationSync
			s.Units["app"].Databases["orders"] = d
		}, facts: orders(func(d *DatabaseFacts) { d.Stream = Answer{Known: true} }),
			check: CheckStandbyStreaming, comp: "app.orders", reason: []string{"no WAL receiver", "writes wait for it"}},
		{name: "sync streaming over the RPO's lag is fine", spec: func(s *lifeboat.Spec) {
			d := s.Units["app"].Databases["orders"]
			d.Replication = lifeboat.ReplicationSync
			s.Units["app"].Databases["orders"] = d
		}, facts: orders(func(d *DatabaseFacts) { d.Status.Lag = time.Minute }),
			check: CheckStandbyStreaming, comp: "app.orders", ok: true, reason: []string{"synchronously"}},
		{name: "streaming unknown when the driver does not say", facts: orders(func(d *DatabaseFacts) { d.Stream = Answer{} }),
			check: CheckStandbyStreaming, comp: "app.orders", reason: []string{"unknown:", "StreamReporter"}},
		{name: "streaming could not be asked", facts: orders(func(d *DatabaseFacts) { d.Stream = Answer{Err: "could not ask whether x streams: boom"} }),
			check: CheckStandbyStreaming, comp: "app.orders", reason: []string{"unknown:", "boom"}},
		{name: "standby status could not be asked", facts: orders(func(d *DatabaseFacts) { d.Err = "could not ask the database driver: region east is cut off" }),
			check: CheckStandbyStreaming, comp: "app.orders", reason: []string{"unknown:", "cut off", "reachable"}},
		{name: "standby missing blocks", facts: orders(func(d *DatabaseFacts) { d.Status = lifeboat.DatabaseStatus{Role: lifeboat.DBAbsent} }),
			check: CheckStandbyStreaming, comp: "app.orders", blocks: true, reason: []string{"no standby copy", "nothing to promote"}},
		{name: "fenced standby blocks", facts: orders(func(d *DatabaseFacts) { d.Status.Role = lifeboat.DBFenced }),
			check: CheckStandbyStreaming, comp: "app.orders", blocks: true, reason: []string{"fenced old primary", "database.rejoin"}},
		{name: "two primaries warn", facts: orders(func(d *DatabaseFacts) { d.Status.Role = lifeboat.DBPrimary }),
			check: CheckStandbyStreaming, comp: "app.orders", reason: []string{"two primaries"}},
		{name: "a database homed in the standby region streams into the active one", facts: orders(func(d *DatabaseFacts) {
			d.Region, d.Resource = "west", "shop-app-orders-west"
		}), check: CheckStandbyStreaming, comp: "app.orders", ok: true, reason: []string{"west's standby streams from east"}},

		// backup fresh
		{name: "backup fresh", check: CheckBackupFresh, comp: "app.ledger", ok: true,
			reason: []string{"b-7 was taken 20m ago, kept in east", "within the backup interval of 1h"}},
		{name: "backup stale does not block", facts: ledger(func(d *DatabaseFacts) { d.Backup.Latest.Taken = readyNow.Add(-3 * time.Hour) }),
			check: CheckBackupFresh, comp: "app.ledger", reason: []string{"3h ago", "longer than the backup interval of 1h"}},
		{name: "no backup at all blocks", facts: ledger(func(d *DatabaseFacts) { d.Backup = &BackupFacts{} }),
			check: CheckBackupFresh, comp: "app.ledger", blocks: true, reason: []string{"no backup at all", "take one"}},
		{name: "backup kept in the active region", facts: ledger(func(d *DatabaseFacts) { d.Backup.Latest.Region = "west" }),
			check: CheckBackupFresh, comp: "app.ledger", reason: []string{"kept in west", "not in east"}},
		{name: "backup could not be asked", facts: ledger(func(d *DatabaseFacts) { d.Backup = &BackupFacts{Err: "could not ask the backup driver: timeout"} }),
			check: CheckBackupFresh, comp: "app.ledger", reason: []string{"unknown:", "timeout"}},

		// recipe
		{name: "recipe identical", check: CheckRecipe, comp: "app.web", ok: true, reason: []string{"region east holds the artifact"}},
		{name: "recipe missing blocks", facts: web(func(c *ComputeFacts) {
			c.Recipe = map[string]Answer{"west": c.Recipe["west"], "east": {Known: true, Detail: "the recipe is not transferred to region east"}}
		}), check: CheckRecipe, comp: "app.web", blocks: true, reason: []string{"not transferred to region east"}},
		{name: "recipe unknown when the driver does not say", facts: web(func(c *ComputeFacts) { c.Recipe = map[string]Answer{} }),
			check: CheckRecipe, comp: "app.web", reason: []string{"unknown:", "RecipeReporter"}},
		{name: "recipe could not be asked", facts: web(func(c *ComputeFacts) { c.Recipe = map[string]Answer{"east": {Err: "could not ask: io error"}} }),
			check: CheckRecipe, comp: "app.web", reason: []string{"unknown:", "io error"}},
		{name: "active region drifted is said", facts: web(func(c *ComputeFacts) {
			c.Recipe = map[string]Answer{"west": {Known: true, Detail: "the source changed"}, "east": c.Recipe["east"]}
		}), check: CheckRecipe, comp: "app.web", ok: true, reason: []string{"but the active region west does not: the source changed"}},

		// capacity
		{name: "warm capacity", check: CheckCapacity, comp: "app.web", ok: true,
			reason: []string{"warm standby, 0 instances running", "2 instances can start in east", "ports 7100-7101 free"}},
		{name: "warm scale set missing blocks", facts: web(func(c *ComputeFacts) { c.ScaleSet = lifeboat.ScaleSet{} }),
			check: CheckCapacity, comp: "app.web", blocks: true, reason: []string{"warm standby", "does not exist in east", "compute.provision"}},
		{name: "cold not stood up is expected", spec: func(s *lifeboat.Spec) {
			c := s.Units["app"].Compute["web"]
			c.Standby = lifeboat.StandbyCold
			s.Units["app"].Compute["web"] = c
		}, facts: web(func(c *ComputeFacts) { c.ScaleSet = lifeboat.ScaleSet{} }),
			check: CheckCapacity, comp: "app.web", ok: true, reason: []string{"cold standby, not stood up yet"}},
		{name: "ports taken blocks", facts: web(func(c *ComputeFacts) { c.Capacity = Answer{Known: true, Detail: "port 7100 is in use by pid 4242"} }),
			check: CheckCapacity, comp: "app.web", blocks: true, reason: []string{"2 instances cannot start in east", "port 7100 is in use"}},
		{name: "capacity unknown when the driver does not say", facts: web(func(c *ComputeFacts) { c.Capacity = Answer{} }),
			check: CheckCapacity, comp: "app.web", reason: []string{"unknown:", "CapacityReporter"}},
		{name: "compute status could not be asked", facts: web(func(c *ComputeFacts) { c.Err = "could not ask the compute driver: cut" }),
			check: CheckCapacity, comp: "app.web", reason: []string{"unknown:", "cut"}},
		{name: "hot standby short of instances", spec: func(s *lifeboat.Spec) {
			c := s.Units["app"].Compute["web"]
			c.Standby = lifeboat.StandbyHot
			s.Units["app"].Compute["web"] = c
		}, facts: web(func(c *ComputeFacts) { c.ScaleSet = lifeboat.ScaleSet{Exists: true, Instances: 2, Healthy: 1} }),
			check: CheckCapacity, comp: "app.web", reason: []string{"1 of 2 instances healthy", "can start the rest"}},

		// names
		{name: "names resolve", check: CheckNamesResolve, comp: "app.www", ok: true, reason: []string{"shop.example.test → 127.0.0.1"}},
		{name: "a name without answer", facts: www(func(tf *TrafficFacts) {
			tf.Route.Answers = map[string][]string{"shop.example.test": {"127.0.0.1"}}
		}), check: CheckNamesResolve, comp: "app.www", reason: []string{"api.example.test do not resolve"}},
		{name: "names route to the wrong region", facts: www(func(tf *TrafficFacts) { tf.Route.Region = "east" }),
			check: CheckNamesResolve, comp: "app.www", reason: []string{"route to east while west is active"}},
		{name: "names unknown", facts: www(func(tf *TrafficFacts) { tf.Route.Answers = nil }),
			check: CheckNamesResolve, comp: "app.www", reason: []string{"unknown:", "does not say"}},
		{name: "traffic could not be asked", facts: www(func(tf *TrafficFacts) { tf.Err = "could not ask the traffic driver: refused" }),
			check: CheckNamesResolve, comp: "app.www", reason: []string{"unknown:", "refused"}},

		// witness
		{name: "witness reachable", check: CheckWitness, comp: "central", ok: true, reason: []string{"witness central is reachable"}},
		{name: "witness unreachable does not block", facts: func(f *Facts) { f.Witness = WitnessFacts{Region: "central", Known: true} },
			check: CheckWitness, comp: "central", reason: []string{"unreachable", "automatic failover is impossible without it"}},
		{name: "witness not said", facts: func(f *Facts) { f.Witness = WitnessFacts{Region: "central"} },
			check: CheckWitness, comp: "central", reason: []string{"unknown:", "automatic failover is impossible"}},
		{name: "no witness in the spec", spec: func(s *lifeboat.Spec) { s.Regions.Witness = nil },
			check: CheckWitness, comp: "", reason: []string{"names no witness region", "manual failover still works"}},

		// drill
		{name: "recent drill", check: CheckLastDrill, ok: true, reason: []string{"switchover run-42", "3 days ago"}},
		{name: "old drill warns", facts: func(f *Facts) { f.Drill.At = readyNow.Add(-45 * 24 * time.Hour) },
			check: CheckLastDrill, reason: []string{"45 days ago", "more than 30 days"}},
		{name: "no drill ever", facts: func(f *Facts) { f.Drill = DrillFacts{Known: true} },
			check: CheckLastDrill, reason: []string{"no successful drill", "a switchover counts as a drill"}},
		{name: "history not readable", facts: func(f *Facts) { f.Drill = DrillFacts{Err: "could not ask the store: etcd down"} },
			check: CheckLastDrill, reason: []string{"unknown:", "etcd down"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := readySpec()
			if c.spec != nil {
				c.spec(s)
			}
			f := greenFacts()
			if c.facts != nil {
				c.facts(&f)
			}
			got := findCheck(t, Evaluate(s, nil, f, readyNow), c.check, c.comp)
			t.Logf("ok=%v blocks=%v %s", got.OK, got.Blocks, got.Reason)
			if got.OK != c.ok || got.Blocks != c.blocks {
				t.Errorf("ok=%v blocks=%v, want ok=%v blocks=%v; reason: %s", got.OK, got.Blocks, c.ok, c.blocks, got.Reason)
			}
			for _, sub := range c.reason {
				if !strings.Contains(got.Reason, sub) {
					t.Errorf("reason %q does not say %q", got.Reason, sub)
				}
			}
		})
	}
}

// TestEvaluateIsPure: the same input gives the same checks, and the facts
// are not changed.
func TestEvaluateIsPure(t *testing.T) {
	s := readySpec()
	f := greenFacts()
	f.Witness.Known = false
	a := Evaluate(s, nil, f, readyNow)
	b := Evaluate(s, nil, f, readyNow)
	if len(a) != len(b) {
		t.Fatalf("%d checks then %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("check %d differs: %+v vs %+v", i, a[i], b[i])
		}
	}
	if f.Witness.Known || f.Databases["app.orders"].Stream.Detail != "streaming from 127.0.0.1:5432" {
		t.Errorf("Evaluate changed the facts")
	}
}

// After a failover east is active and west is the standby.
func TestEvaluateAfterFailover(t *testing.T) {
	s := readySpec()
	f := greenFacts()
	f.Active, f.Standby = "east", "west"
	f.Databases["app.orders"] = DatabaseFacts{DRMode: lifeboat.DRGeoReplica, Region: "west", Resource: "shop-app-orders-west",
		Status: lifeboat.DatabaseStatus{Role: lifeboat.DBFenced}}
	c := findCheck(t, Evaluate(s, nil, f, readyNow), CheckStandbyStreaming, "app.orders")
	if c.OK || !c.Blocks || !strings.Contains(c.Reason, "west's copy shop-app-orders-west is a fenced old primary") ||
		!strings.Contains(c.Reason, "replica of east") {
		t.Errorf("after failover: %+v", c)
	}
}

func TestReadyBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 120_000: "120 kB", 3_400_000: "3.4 MB", 2_500_000_000: "2.5 GB"} {
		if got := readyBytes(n); got != want {
			t.Errorf("readyBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// ---- Gather ----

// runStore is a Store that only knows the run history.
type runStore struct {
	lifeboat.Store
	runs []*lifeboat.Run
	err  error
}

func (r runStore) Runs(context.Context) ([]*lifeboat.Run, error) { return r.runs, r.err }

// reporting adds the optional interfaces to the fake world's drivers, the
// way a real driver would answer them.
type reportingCompute struct {
	lifeboat.ComputeDriver
	w *fake.World
}

func (c reportingCompute) RecipeReady(ctx context.Context, t lifeboat.Target, want lifeboat.Compute) (bool, string, error) {
	if _, err := c.Status(ctx, t); err != nil { // reach the region as the real driver would
		return false, "", err
	}
	got, ok := c.w.Recipe(t.Resource)
	if !ok {
		return false, "the recipe is not transferred to region " + t.Region, nil
	}
	if got.Recipe.Artifact != want.Recipe.Artifact || got.Recipe.Checksum != want.Recipe.Checksum {
		return false, "region " + t.Region + " holds another version", nil
	}
	return true, "region " + t.Region + " holds " + got.Recipe.Artifact, nil
}

func (c reportingCompute) CanStandUp(ctx context.Context, t lifeboat.Target, _ lifeboat.Compute, n int) (bool, string, error) {
	if _, err := c.Status(ctx, t); err != nil {
		return false, "", err
	}
	return true, "the fake world has room", nil
}

type reportingDatabase struct {
	lifeboat.DatabaseDriver
	streaming map[string]string
}

func (d reportingDatabase) StreamState(ctx context.Context, t lifeboat.Target) (string, string, error) {
	st, err := d.Status(ctx, t)
	if err != nil {
		return "", "", err
	}
	if st.Role != lifeboat.DBReplica {
		return "", "", nil
	}
	if s, ok := d.streaming[t.Resource]; ok {
		return s, "", nil
	}
	return "streaming", "127.0.0.1:5432", nil
}

func reportingDrivers(w *fake.World, streaming map[string]string) lifeboat.Drivers {
	d := w.Drivers()
	d.Compute = reportingCompute{d.Compute, w}
	d.Database = reportingDatabase{d.Database, streaming}
	return d
}

func seededWorld(s *lifeboat.Spec) (*fake.World, *lifeboat.State) {
	w := fake.New()
	w.SetClock(func() time.Time { return readyNow })
	st := lifeboat.InitialState(s, readyNow.Add(-10*time.Minute))
	w.Seed(s, st)
	return w, st
}

// routeWest switches the names to west once: the fake seeds routes
// without answers, and a switch gives them.
func routeWest(t *testing.T, s *lifeboat.Spec, d lifeboat.Drivers) {
	t.Helper()
	www := lifeboat.Target{Service: "shop", Unit: "app", Component: "www", Region: "west", Resource: "shop-app-www", Epoch: 1}
	if err := d.Traffic.Switch(context.Background(), www, s.Units["app"].Traffic["www"].Names); err != nil {
		t.Fatal(err)
	}
}

func drillStore() runStore {
	return runStore{runs: []*lifeboat.Run{
		{ID: "run-3", Status: lifeboat.RunFailed, Plan: &lifeboat.Plan{Intent: lifeboat.IntentSwitchover}, EndedAt: readyNow.Add(-time.Hour)},
		{ID: "run-2", Status: lifeboat.RunSucceeded, Plan: &lifeboat.Plan{Intent: lifeboat.IntentFailover}, EndedAt: readyNow.Add(-2 * time.Hour)},
		{ID: "run-1", Status: lifeboat.RunSucceeded, Plan: &lifeboat.Plan{Intent: lifeboat.IntentSwitchover}, EndedAt: readyNow.Add(-48 * time.Hour)},
	}}
}

func TestGatherHealthyFakeWorld(t *testing.T) {
	s := readySpec()
	w, st := seededWorld(s)
	w.SetLag("shop-app-orders-east", 2048, 300*time.Millisecond)
	d := reportingDrivers(w, nil)
	routeWest(t, s, d)
	f := Gather(context.Background(), s, d, st, drillStore())
	f.Witness.Known, f.Witness.Reachable = true, true // the controller's part

	if f.Active != "west" || f.Standby != "east" || f.Witness.Region != "central" {
		t.Errorf("regions: %+v", f)
	}
	if _, ok := f.Databases["app.cache"]; ok {
		t.Errorf("a dr-mode none database has nothing to be ready: %+v", f.Databases["app.cache"])
	}
	if f.Drill.Run != "run-1" || f.Drill.Intent != lifeboat.IntentSwitchover {
		t.Errorf("last drill = %+v, want run-1, the newest succeeded switchover", f.Drill)
	}
	for _, c := range Evaluate(s, st, f, readyNow) {
		if !c.OK {
			t.Errorf("%s %s not ok in a healthy world: %s", c.Name, c.Component, c.Reason)
		}
	}
}

// TestGatherFaults turns faults of the fake world into failing checks.
func TestGatherFaults(t *testing.T) {
	type tc struct {
		name      string
		fault     func(t *testing.T, w *fake.World, d lifeboat.Drivers)
		streaming map[string]string
		check     string
		comp      string
		blocks    bool
		reason    string
	}
	eastWeb := lifeboat.Target{Service: "shop", Unit: "app", Component: "web", Region: "east", Resource: "shop-app-web-east", Epoch: 1}
	cases := []tc{
		{name: "east cut off", fault: func(t *testing.T, w *fake.World, _ lifeboat.Drivers) { w.Cut("east") },
			check: CheckStandbyStreaming, comp: "app.orders", reason: "region east is cut off"},
		{name: "east cut off: recipe unknown", fault: func(t *testing.T, w *fake.World, _ lifeboat.Drivers) { w.Cut("east") },
			check: CheckRecipe, comp: "app.web", reason: "region east is cut off"},
		{name: "replica stopped streaming", streaming: map[string]string{"shop-app-orders-east": "stopped"},
			check: CheckStandbyStreaming, comp: "app.orders", reason: "does not stream from west (stopped)"},
		{name: "replica lag over the RPO", fault: func(t *testing.T, w *fake.World, _ lifeboat.Drivers) {
			w.SetLag("shop-app-orders-east", 9_000_000, 12*time.Second)
		}, check: CheckStandbyStreaming, comp: "app.orders", reason: "lag 12s / 9.0 MB exceeds the RPO of 5s"},
		{name: "warm scale set deleted", fault: func(t *testing.T, w *fake.World, d lifeboat.Drivers) {
			if err := d.Compute.Delete(context.Background(), eastWeb); err != nil {
				t.Fatal(err)
			}
		}, check: CheckCapacity, comp: "app.web", blocks: true, reason: "does not exist in east"},
		{name: "backup driver fails", fault: func(t *testing.T, w *fake.World, _ lifeboat.Drivers) {
			w.FailNext(lifeboat.ActBackupLatest, 1, true)
		}, check: CheckBackupFresh, comp: "app.ledger", reason: "injected failure"},
		{name: "traffic driver fails", fault: func(t *testing.T, w *fake.World, _ lifeboat.Drivers) {
			w.FailNext(lifeboat.ActTrafficStatus, 1, false)
		}, check: CheckNamesResolve, comp: "app.www", reason: "could not ask the traffic driver for shop-app-www"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := readySpec()
			w, st := seededWorld(s)
			d := reportingDrivers(w, c.streaming)
			routeWest(t, s, d)
			if c.fault != nil {
				c.fault(t, w, d)
			}
			f := Gather(context.Background(), s, d, st, drillStore())
			got := findCheck(t, Evaluate(s, st, f, readyNow), c.check, c.comp)
			if got.OK || got.Blocks != c.blocks || !strings.Contains(got.Reason, c.reason) {
				t.Errorf("got ok=%v blocks=%v %q; want not ok, blocks=%v, saying %q", got.OK, got.Blocks, got.Reason, c.blocks, c.reason)
			}
		})
	}
}

// The plain fake world implements none of the optional interfaces: those
// checks are unknown, never OK by default.
func TestGatherWithoutOptionalInterfaces(t *testing.T) {
	s := readySpec()
	w, st := seededWorld(s)
	f := Gather(context.Background(), s, w.PlainDrivers(), st, nil)
	checks := Evaluate(s, st, f, readyNow)
	for _, want := range []struct{ name, comp, says string }{
		{CheckStandbyStreaming, "app.orders", "StreamReporter"},
		{CheckRecipe, "app.web", "RecipeReporter"},
		{CheckCapacity, "app.web", "CapacityReporter"},
		{CheckNamesResolve, "app.www", "does not say what"},
		{CheckWitness, "central", "has not said"},
		{CheckLastDrill, "", "no store"},
	} {
		c := findCheck(t, checks, want.name, want.comp)
		if c.OK || c.Blocks || !strings.HasPrefix(c.Reason, "unknown: ") || !strings.Contains(c.Reason, want.says) {
			t.Errorf("%s: ok=%v blocks=%v %q; want unknown, not blocking, saying %q", want.name, c.OK, c.Blocks, c.Reason, want.says)
		}
	}
	// What the plain fake does say is still checked.
	if c := findCheck(t, checks, CheckBackupFresh, "app.ledger"); !c.OK {
		t.Errorf("backup: %s", c.Reason)
	}
}

// stuckCompute never answers and ignores its context; panicDatabase panics.
type stuckCompute struct {
	lifeboat.ComputeDriver
	release chan struct{}
}

func (c stuckCompute) Status(ctx context.Context, t lifeboat.Target) (lifeboat.ScaleSet, error) {
	<-c.release
	return lifeboat.ScaleSet{}, errors.New("released")
}

type panicDatabase struct{ lifeboat.DatabaseDriver }

func (panicDatabase) Status(context.Context, lifeboat.Target) (lifeboat.DatabaseStatus, error) {
	panic("nil map in the driver")
}

// A driver that hangs (ignoring its context) or panics becomes a fact, and
// Gather returns.
func TestGatherSurvivesHangsAndPanics(t *testing.T) {
	s := readySpec()
	w, st := seededWorld(s)
	d := w.Drivers()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	d.Compute = stuckCompute{d.Compute, release}
	d.Database = panicDatabase{d.Database}
	d.Traffic = nil

	done := make(chan Facts, 1)
	go func() { done <- Gather(context.Background(), s, d, st, runStore{err: errors.New("etcd: no leader")}) }()
	var f Facts
	select {
	case f = <-done:
	case <-time.After(time.Minute): // generous: Gather bounds each call by a few seconds
		t.Fatal("Gather hung on a driver that never answers")
	}
	if e := f.Compute["app.web"].Err; !strings.Contains(e, "no answer within") {
		t.Errorf("stuck compute: %q", e)
	}
	if e := f.Databases["app.orders"].Err; !strings.Contains(e, "panicked") || !strings.Contains(e, "nil map") {
		t.Errorf("panicking database: %q", e)
	}
	if e := f.Traffic["app.www"].Err; !strings.Contains(e, "no traffic driver is configured") {
		t.Errorf("no traffic driver: %q", e)
	}
	if !strings.Contains(f.Drill.Err, "etcd: no leader") {
		t.Errorf("store error: %+v", f.Drill)
	}
	for _, c := range Evaluate(s, st, f, readyNow) {
		if c.OK && c.Name != CheckBackupFresh {
			t.Errorf("%s %s ok despite a broken driver: %s", c.Name, c.Component, c.Reason)
		}
	}
}

// A context that ends bounds the whole of Gather.
func TestGatherBoundedByContext(t *testing.T) {
	s := readySpec()
	w, st := seededWorld(s)
	w.Delay(lifeboat.ActDatabaseStatus, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := Gather(ctx, s, w.Drivers(), st, nil)
	if e := f.Databases["app.orders"].Err; !strings.Contains(e, "could not ask") {
		t.Errorf("cancelled gather: database fact %q", e)
	}
}

// BenchmarkGatherEvaluate: one readiness round against the fake world (the
// cost of Lifeboat's own part, without real drivers' latency).
func BenchmarkGatherEvaluate(b *testing.B) {
	s := readySpec()
	w, st := seededWorld(s)
	d := reportingDrivers(w, nil)
	store := drillStore()
	for b.Loop() {
		f := Gather(context.Background(), s, d, st, store)
		Evaluate(s, st, f, readyNow)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	s := readySpec()
	f := greenFacts()
	for b.Loop() {
		Evaluate(s, nil, f, readyNow)
	}
}
