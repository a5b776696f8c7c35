package recovery

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"gopkg.in/yaml.v3"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// schedScenario is the world a testdata/scheduler script builds.
type schedScenario struct {
	spec    lifeboat.Tenants
	tenants []lifeboat.Tenant
	s       *Scheduler
	now     time.Time
	running []Action // actions started and not ended, oldest first
}

// TestSchedulerScenarios runs testdata/scheduler/*.txt (-rewrite to
// regenerate the expected output; review the diff by eye). Commands:
//
//	spec                    (input: the spec's tenants section, YAML)
//	tenants tier=T pool=P region=R n=N prefix=X   adds X01…XN
//	new lost=R target=R [epoch=N] [attempts=N] [primary=R]
//	          builds the scheduler; prints its status
//	begin | catalog-promoted | promoted pool=P | hurry tenant=(N, …) | cancel
//	created pool=P [fail] [permanent]             (input: the error)
//	raised pool=P [fail] [permanent]
//	done pool=P [tenant=N] [fail] [permanent]
//	          ends the oldest batch or restore of P running (with N)
//	status                  the counts and what it waits for
//	show                    every tenant's state
//
// Each event advances the clock one second and prints the actions, then a
// line of counts.
func TestSchedulerScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata/scheduler", func(t *testing.T, path string) {
		sc := &schedScenario{now: time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return sc.run(t, d)
		})
	})
}

func (sc *schedScenario) run(t *testing.T, d *datadriven.TestData) string {
	arg := func(key, def string) string {
		if !d.HasArg(key) {
			return def
		}
		var v string
		d.ScanArgs(t, key, &v)
		return v
	}
	if d.Cmd != "spec" && d.Cmd != "tenants" && d.Cmd != "new" && sc.s == nil {
		d.Fatalf(t, "%s before new", d.Cmd)
	}
	switch d.Cmd {
	case "spec":
		sc.spec = lifeboat.Tenants{}
		if err := yaml.Unmarshal([]byte(d.Input), &sc.spec); err != nil {
			d.Fatalf(t, "spec: %v", err)
		}
		return "ok\n"
	case "tenants":
		var n int
		d.ScanArgs(t, "n", &n)
		prefix := arg("prefix", "t")
		width := len(fmt.Sprint(n))
		width = max(width, 2)
		for i := 1; i <= n; i++ {
			sc.tenants = append(sc.tenants, lifeboat.Tenant{Name: fmt.Sprintf("%s%0*d", prefix, width, i),
				Tier: arg("tier", ""), Pool: arg("pool", ""), Region: arg("region", ""), State: lifeboat.TenantAvailable})
		}
		return "ok\n"
	case "new":
		cfg := Config{Tenants: sc.spec, Lost: arg("lost", "west"), Target: arg("target", "east"), Primary: arg("primary", "west")}
		fmt.Sscan(arg("epoch", "2"), &cfg.Epoch)
		fmt.Sscan(arg("attempts", "0"), &cfg.MaxAttempts)
		s, err := New(cfg, sc.tenants)
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		sc.s = s
		return s.Status().String() + "\n"
	case "status":
		return sc.s.Status().String() + "\n"
	case "show":
		var b strings.Builder
		for _, ts := range sc.s.Tenants() {
			fmt.Fprintf(&b, "%s %s/%s %s", ts.Name, ts.Tier, ts.Pool, ts.State)
			if ts.Running {
				b.WriteString(" running")
			}
			if ts.Hurried {
				b.WriteString(" hurried")
			}
			if ts.Attempts > 0 {
				fmt.Fprintf(&b, " attempts=%d", ts.Attempts)
			}
			if ts.Reason != "" {
				fmt.Fprintf(&b, ": %s", ts.Reason)
			}
			b.WriteString("\n")
		}
		return b.String()
	}
	sc.now = sc.now.Add(time.Second)
	ev := Event{At: sc.now}
	var err error
	if d.HasArg("fail") {
		msg := strings.TrimSpace(d.Input)
		if d.HasArg("permanent") {
			err = lifeboat.Permanent("test", "", fmt.Errorf("%s", msg))
		} else {
			err = lifeboat.Transient("test", "", fmt.Errorf("%s", msg))
		}
	}
	end := func(kinds []ActionKind, pool, name string) Event {
		for i, a := range sc.running {
			if slices.Contains(kinds, a.Kind) && a.Pool == pool && (name == "" || slices.Contains(a.Tenants, name)) {
				sc.running = slices.Delete(sc.running, i, i+1)
				return Done(a, err, sc.now)
			}
		}
		d.Fatalf(t, "no %v of pool %s (%s) running", kinds, pool, name)
		return Event{}
	}
	switch d.Cmd {
	case "begin":
		ev.Kind = Begin
	case "catalog-promoted":
		ev.Kind = CatalogPromoted
	case "promoted":
		ev.Kind, ev.Pool = PoolPromoted, arg("pool", "")
	case "hurry":
		var ns []string
		d.ScanArgs(t, "tenant", &ns)
		ev.Kind, ev.Tenants = Hurry, ns
	case "cancel":
		ev.Kind = Cancel
	case "created":
		ev = end([]ActionKind{CreatePool}, arg("pool", ""), "")
	case "raised":
		ev = end([]ActionKind{RaiseCapacity}, arg("pool", ""), "")
	case "done":
		ev = end([]ActionKind{MakeAvailable, Restore}, arg("pool", ""), arg("tenant", ""))
	default:
		d.Fatalf(t, "unknown command %s", d.Cmd)
	}
	acts, serr := sc.s.Step(ev)
	var b strings.Builder
	if serr != nil {
		fmt.Fprintf(&b, "error: %v\n", serr)
	}
	if len(acts) == 0 {
		b.WriteString("no actions\n")
	}
	for _, a := range acts {
		b.WriteString(a.String() + "\n")
		if a.Kind != Record {
			sc.running = append(sc.running, a)
		}
	}
	st := sc.s.Status()
	q := 0
	for _, ts := range sc.s.Tenants() {
		if ts.Running && ts.State == lifeboat.TenantQueued {
			q++
		}
	}
	fmt.Fprintf(&b, "= %d available, %d queued (%d in batches), %d restoring, %d failed",
		st.Counts[lifeboat.TenantAvailable], st.Counts[lifeboat.TenantQueued], q, st.Counts[lifeboat.TenantRestoring], st.Counts[lifeboat.TenantFailed])
	if st.Done {
		b.WriteString("; done")
	}
	b.WriteString("\n")
	return b.String()
}

// TestSchedulerProperties drives the scheduler with random specs and random
// event orders, playing a backend that succeeds, fails and fails for good
// at random, and checks the rules after every step.
func TestSchedulerProperties(t *testing.T) {
	cases := 400
	if testing.Short() {
		cases = 50
	}
	for i := range cases {
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		propertyCase(t, i, rng)
	}
}

func propertyCase(t *testing.T, i int, rng *rand.Rand) {
	spec := lifeboat.Tenants{Catalog: "app.catalog", Pools: map[string]lifeboat.Pool{}, Tiers: map[string]lifeboat.Tier{},
		Batch: 1 + rng.IntN(7), Concurrency: 1 + rng.IntN(4)}
	var tiers []string
	for p := range 1 + rng.IntN(4) {
		pool, tier := fmt.Sprintf("pool%d", p), fmt.Sprintf("tier%d", p)
		strategy := lifeboat.StrategyGeoReplicate
		if rng.IntN(2) == 0 {
			strategy = lifeboat.StrategyGeoRestore
		}
		spec.Pools[pool] = lifeboat.Pool{Database: "app." + pool, Capacity: &lifeboat.PoolCapacity{Active: 10, Standby: 1 + rng.IntN(10)}}
		spec.Tiers[tier] = lifeboat.Tier{Pool: pool, Strategy: strategy, Priority: rng.IntN(3)}
		tiers = append(tiers, tier)
	}
	var tenants []lifeboat.Tenant
	moving := map[string]bool{}
	for n := range rng.IntN(60) {
		tier := tiers[rng.IntN(len(tiers))]
		if rng.IntN(30) == 0 {
			tier = "ghost" // unknown: failed at once
		}
		region := "west"
		if rng.IntN(4) == 0 {
			region = "east"
		}
		name := fmt.Sprintf("t%02d", n)
		pool := spec.Tiers[tier].Pool
		if pool == "" {
			pool = "pool0"
		}
		tenants = append(tenants, lifeboat.Tenant{Name: name, Tier: tier, Pool: pool, Region: region})
		moving[name] = region == "west"
	}
	cfg := Config{Tenants: spec, Lost: "west", Target: "east", Epoch: 3, MaxAttempts: 1 + rng.IntN(3)}
	s, err := New(cfg, tenants)
	if err != nil {
		t.Fatalf("case %d: %v", i, err)
	}
	mayCancel := rng.IntN(4) == 0
	var (
		catalog   bool
		cancelled bool
		promoted  = map[string]bool{}
		created   = map[string]bool{}
		running   []Action
		busy      = map[string]bool{}
		record    = map[string]lifeboat.TenantChange{}
		batches   int
		restores  int
		history   []string
	)
	fail := func(why string, a ...any) {
		t.Helper()
		t.Fatalf("case %d: %s\nconfig: batch %d concurrency %d attempts %d\nhistory:\n%s", i, fmt.Sprintf(why, a...),
			spec.Batch, spec.Concurrency, cfg.MaxAttempts, strings.Join(history[max(0, len(history)-40):], "\n"))
	}
	step := func(ev Event) {
		t.Helper()
		history = append(history, fmt.Sprintf("> %s %s %v %s", ev.Kind, ev.Pool, ev.Tenants, ev.Err))
		acts, err := s.Step(ev)
		if err != nil {
			fail("step refused: %v", err)
		}
		for _, a := range acts {
			history = append(history, "  "+a.String())
			if a.Kind == Record {
				for _, n := range a.Tenants {
					if !moving[n] {
						fail("recorded %s, which is not in the lost region", n)
					}
					record[n] = a.Change
				}
				continue
			}
			if !catalog {
				fail("%s before the catalog was promoted", a.Kind)
			}
			if cancelled {
				fail("%s after cancel", a.Kind)
			}
			if a.Region != "east" {
				fail("%s in %s, not the target", a.Kind, a.Region)
			}
			switch a.Kind {
			case MakeAvailable:
				if !promoted[a.Pool] {
					fail("batch of pool %s before its promotion", a.Pool)
				}
				if len(a.Tenants) == 0 || len(a.Tenants) > spec.Batch {
					fail("batch of %d tenants (batch %d)", len(a.Tenants), spec.Batch)
				}
				batches++
			case Restore:
				if !created[a.Pool] {
					fail("restore in pool %s before it was created", a.Pool)
				}
				if len(a.Tenants) != 1 {
					fail("restore of %d tenants", len(a.Tenants))
				}
				restores++
			case CreatePool, RaiseCapacity:
				for _, r := range running {
					if r.Kind == a.Kind && r.Pool == a.Pool {
						fail("two %s of pool %s at once", a.Kind, a.Pool)
					}
				}
			}
			for _, n := range a.Tenants {
				if !moving[n] {
					fail("%s of %s, which is not in the lost region", a.Kind, n)
				}
				if busy[n] {
					fail("%s of %s, already in an action running", a.Kind, n)
				}
				if ts, _ := s.Tenant(n); ts.State == lifeboat.TenantAvailable || ts.State == lifeboat.TenantFailed {
					fail("%s of %s, already %s", a.Kind, n, ts.State)
				}
				busy[n] = true
			}
			running = append(running, a)
		}
		if batches > spec.Concurrency || restores > spec.Concurrency {
			fail("%d batches and %d restores running, concurrency %d", batches, restores, spec.Concurrency)
		}
	}
	pools := sortedKeys(spec.Pools)
	for steps := 0; !s.Done(); steps++ {
		if steps > 20000 {
			fail("not done after %d steps: %s", steps, s.Status())
		}
		switch r := rng.IntN(100); {
		case r < 8 && !catalog:
			catalog = true
			step(Event{Kind: CatalogPromoted})
		case r < 16:
			p := pools[rng.IntN(len(pools))]
			if spec.Tiers["tier"+strings.TrimPrefix(p, "pool")].Strategy == lifeboat.StrategyGeoReplicate && !promoted[p] {
				promoted[p] = true
				step(Event{Kind: PoolPromoted, Pool: p})
			}
		case r < 26:
			step(Event{Kind: Hurry, Tenants: []string{fmt.Sprintf("t%02d", rng.IntN(70))}})
		case r < 27 && mayCancel && !cancelled:
			cancelled = true
			step(Event{Kind: Cancel})
		default:
			if len(running) == 0 {
				if catalog && !cancelled {
					// Nothing running: only promotions are missing.
					for _, p := range pools {
						if spec.Tiers["tier"+strings.TrimPrefix(p, "pool")].Strategy == lifeboat.StrategyGeoReplicate && !promoted[p] {
							promoted[p] = true
							step(Event{Kind: PoolPromoted, Pool: p})
							break
						}
					}
				}
				continue
			}
			k := rng.IntN(len(running))
			a := running[k]
			running = slices.Delete(running, k, k+1)
			var err error
			switch o := rng.IntN(10); {
			case o < 2:
				err = lifeboat.Transient("test", a.Pool, fmt.Errorf("timeout"))
			case o < 3:
				err = lifeboat.Permanent("test", a.Pool, fmt.Errorf("no backup"))
			}
			for _, n := range a.Tenants {
				delete(busy, n)
			}
			switch a.Kind {
			case MakeAvailable:
				batches--
			case Restore:
				restores--
			case CreatePool:
				if err == nil {
					created[a.Pool] = true
				}
			}
			step(Done(a, err, time.Unix(int64(steps), 0)))
		}
	}
	if len(running) > 0 {
		fail("done with %d actions running", len(running))
	}
	st := s.Status()
	for _, ts := range s.Tenants() {
		if !cancelled && ts.State != lifeboat.TenantAvailable && ts.State != lifeboat.TenantFailed {
			fail("done with %s %s, not cancelled", ts.Name, ts.State)
		}
		if ts.State == lifeboat.TenantFailed && ts.Reason == "" {
			fail("%s failed without a reason", ts.Name)
		}
		rec, ok := record[ts.Name]
		if !ok || rec.State != ts.State {
			fail("%s is %s but the catalog records %q", ts.Name, ts.State, rec.State)
		}
		if ts.State == lifeboat.TenantAvailable && (rec.Region != "east" || rec.Epoch != 3) {
			fail("%s available but recorded in %q at epoch %d", ts.Name, rec.Region, rec.Epoch)
		}
	}
	if st.Total != countTrue(moving) {
		fail("status counts %d tenants, %d are in the lost region", st.Total, countTrue(moving))
	}
	if len(st.Waiting) == 0 {
		fail("a status without explanation")
	}
}

func countTrue(m map[string]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

func TestValidateConfig(t *testing.T) {
	c := DefaultConfig()
	c.Lost, c.Target = "west", "east"
	if err := ValidateConfig(c); err != nil {
		t.Fatalf("default config: %v", err)
	}
	c.Lost = "east"
	c.Tenants.Pools = map[string]lifeboat.Pool{"shared": {Database: "app.shared"}}
	c.Tenants.Tiers = map[string]lifeboat.Tier{
		"paid":  {Pool: "shared", Strategy: lifeboat.StrategyGeoReplicate},
		"trial": {Pool: "shared", Strategy: lifeboat.StrategyGeoRestore},
		"odd":   {Pool: "nowhere", Strategy: "copy"},
	}
	err := ValidateConfig(c)
	if err == nil || lifeboat.IsRetryable(err) {
		t.Fatalf("want a permanent error, got %v", err)
	}
	for _, want := range []string{"two named regions", "pool shared is", `strategy "copy"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := New(c, nil); err == nil {
		t.Fatal("New accepted a bad config")
	}
}
