package fake

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/drivertest"
)

func spec() *lifeboat.Spec { return drivertest.Spec() }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// seeded returns a world in the example's initial state with a clock that
// advances one second per reading.
func seeded(t *testing.T) (*World, lifeboat.Drivers) {
	t.Helper()
	w := New()
	var mu sync.Mutex
	now := t0
	w.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(time.Second); return now })
	s := spec()
	w.Seed(s, lifeboat.InitialState(s, t0))
	return w, w.Drivers()
}

// tg builds a target of the example service.
func tg(unit, comp, region string, epoch uint64) lifeboat.Target {
	res := lifeboat.ResourceName("shop", unit, comp, region)
	if comp == "www" {
		res = lifeboat.TrafficName("shop", unit, comp)
	}
	return lifeboat.Target{Service: "shop", Unit: unit, Component: comp, Region: region, Resource: res, Epoch: epoch}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// refused checks that err is a permanent failure mentioning want.
func refused(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error mentioning %q, got none", want)
	}
	if lifeboat.IsRetryable(err) {
		t.Errorf("error should not be retryable: %v", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q should mention %q", err, want)
	}
}

func TestSeedMatchesInitialState(t *testing.T) {
	w, _ := seeded(t)
	if ss := w.ScaleSet("shop-storefront-web-west"); !ss.Exists || ss.Instances != 3 || ss.Healthy != 3 || ss.Epoch != 1 {
		t.Errorf("west web = %+v, want 3 running at epoch 1", ss)
	}
	if ss := w.ScaleSet("shop-storefront-web-east"); !ss.Exists || ss.Instances != 0 {
		t.Errorf("east web (warm) = %+v, want existing with 0 instances", ss)
	}
	if ss := w.ScaleSet("shop-reports-worker-east"); ss.Exists {
		t.Errorf("east worker (cold) = %+v, want absent", ss)
	}
	for res, want := range map[string]lifeboat.DatabaseRole{
		"shop-storefront-orders-west": lifeboat.DBPrimary, "shop-storefront-orders-east": lifeboat.DBReplica,
		"shop-reports-warehouse-west": lifeboat.DBPrimary, "shop-reports-warehouse-east": lifeboat.DBBackupOf,
	} {
		if got := w.Database(res).Role; got != want {
			t.Errorf("%s role = %s, want %s", res, got, want)
		}
	}
	if bs := w.Backups("shop-reports-warehouse"); len(bs) != 1 || bs[0].Region != "east" {
		t.Errorf("warehouse backups = %+v, want one scheduled backup kept in east", bs)
	}
	if r := w.Route("shop-storefront-www"); r.Region != "west" || r.Epoch != 1 {
		t.Errorf("route = %+v, want west at epoch 1", r)
	}
	// Seeding twice changes nothing.
	s := spec()
	w.Seed(s, lifeboat.InitialState(s, t0))
	if bs := w.Backups("shop-reports-warehouse"); len(bs) != 1 {
		t.Errorf("after a second Seed, %d backups, want 1", len(bs))
	}
}

func TestCompute(t *testing.T) {
	ctx := context.Background()
	w, d := seeded(t)
	worker := tg("reports", "worker", "east", 2)
	refused(t, d.Compute.Scale(ctx, worker, 1), "provision it first")
	must(t, d.Compute.Provision(ctx, worker, spec().Units["reports"].Compute["worker"]))
	must(t, d.Compute.Provision(ctx, worker, spec().Units["reports"].Compute["worker"])) // idempotent
	if ss, _ := d.Compute.Status(ctx, worker); !ss.Exists || ss.Instances != 0 || ss.Epoch != 2 {
		t.Errorf("after provision = %+v, want existing, 0 instances, epoch 2", ss)
	}
	if c, ok := w.Recipe(worker.Resource); !ok || c.Recipe.Artifact != "./bin/reports" {
		t.Errorf("recipe = %+v, want the worker's", c)
	}
	must(t, d.Compute.Scale(ctx, worker, 1))
	if ss, _ := d.Compute.Status(ctx, worker); ss.Instances != 1 || ss.Healthy != 1 {
		t.Errorf("after scale = %+v, want 1 healthy instance", ss)
	}
	refused(t, d.Compute.Scale(ctx, worker, -1), "0 or more")
	must(t, d.Compute.Delete(ctx, worker))
	must(t, d.Compute.Delete(ctx, worker)) // idempotent
	if ss, _ := d.Compute.Status(ctx, worker); ss.Exists || ss.Epoch != 2 {
		t.Errorf("after delete = %+v, want absent, epoch 2 remembered", ss)
	}
}

func TestDatabase(t *testing.T) {
	ctx := context.Background()
	w, d := seeded(t)
	west, east := tg("storefront", "orders", "west", 2), tg("storefront", "orders", "east", 2)

	// Unplanned failover: fence the old primary, promote the replica.
	must(t, d.Database.Fence(ctx, west))
	must(t, d.Database.Fence(ctx, west))
	if got := w.Database(west.Resource); got.Role != lifeboat.DBFenced || got.Epoch != 2 {
		t.Errorf("west after fence = %+v, want fenced at epoch 2", got)
	}
	w.SetLag(east.Resource, 4096, 2*time.Second)
	if st, _ := d.Database.Status(ctx, east); st.LagBytes != 4096 || st.Lag != 2*time.Second {
		t.Errorf("replica status = %+v, want the lag set", st)
	}
	must(t, d.Database.Promote(ctx, east))
	must(t, d.Database.Promote(ctx, east))
	if got := w.Database(east.Resource); got.Role != lifeboat.DBPrimary || got.LagBytes != 0 {
		t.Errorf("east after promote = %+v, want primary with no lag", got)
	}
	refused(t, d.Database.Promote(ctx, west), "rejoin it as a replica first")
	refused(t, d.Database.Promote(ctx, tg("reports", "warehouse", "east", 2)), "not a replica")
	refused(t, d.Database.Promote(ctx, tg("nothing", "db", "east", 2)), "absent")

	// Failback: rejoin the old primary, then switch over with zero loss.
	west3, east3 := west, east
	west3.Epoch, east3.Epoch = 3, 3
	refused(t, d.Database.Switchover(ctx, east3, west3), "rejoin it first")
	refused(t, d.Database.Rejoin(ctx, west3, tg("storefront", "orders", "west", 3)), "not the primary")
	must(t, d.Database.Rejoin(ctx, west3, east3))
	must(t, d.Database.Rejoin(ctx, west3, east3))
	if got := w.Database(west.Resource).Role; got != lifeboat.DBReplica {
		t.Errorf("west after rejoin = %s, want replica", got)
	}
	refused(t, d.Database.Rejoin(ctx, tg("reports", "warehouse", "east", 3), west3), "not an old primary")
	// Switching over from the replica to the primary is already done.
	must(t, d.Database.Switchover(ctx, west3, east3))
	must(t, d.Database.Switchover(ctx, east3, west3))
	must(t, d.Database.Switchover(ctx, east3, west3))
	if w.Database(west.Resource).Role != lifeboat.DBPrimary || w.Database(east.Resource).Role != lifeboat.DBReplica {
		t.Errorf("after switchover west=%+v east=%+v, want west primary, east replica", w.Database(west.Resource), w.Database(east.Resource))
	}
	if w.Epoch(east.Resource) != 3 || w.Epoch(west.Resource) != 3 {
		t.Errorf("switchover should record epoch 3 on both copies: east %d, west %d", w.Epoch(east.Resource), w.Epoch(west.Resource))
	}
}

func TestBackup(t *testing.T) {
	ctx := context.Background()
	w, d := seeded(t)
	west, east := tg("reports", "warehouse", "west", 2), tg("reports", "warehouse", "east", 2)

	// Failover: restore the scheduled backup kept in east.
	refused(t, d.Backup.Restore(ctx, tg("reports", "nothing", "east", 2)), "no backup")
	b, err := d.Backup.Latest(ctx, east)
	must(t, err)
	if b.Region != "east" || b.Epoch != 0 {
		t.Errorf("latest = %+v, want the scheduled backup kept in east", b)
	}
	must(t, d.Backup.Restore(ctx, east))
	if got := w.Database(east.Resource); got.Role != lifeboat.DBPrimary || got.Epoch != 2 {
		t.Errorf("east after restore = %+v, want primary at epoch 2", got)
	}
	refused(t, d.Backup.Restore(ctx, west), "no backup")

	// Failback: back up east (kept in west), restore it in west.
	east.Epoch, west.Epoch = 3, 3
	taken, err := d.Backup.Take(ctx, east)
	must(t, err)
	if taken.Region != "west" || taken.Epoch != 3 || taken.ID == "" {
		t.Errorf("taken = %+v, want a backup kept in west for epoch 3", taken)
	}
	if latest, _ := d.Backup.Latest(ctx, east); latest != taken {
		t.Errorf("latest = %+v, want the one just taken %+v", latest, taken)
	}
	must(t, d.Backup.Restore(ctx, west))
	if got := w.Database(west.Resource).Role; got != lifeboat.DBPrimary {
		t.Errorf("west after restore = %s, want primary", got)
	}
	_, err = d.Backup.Take(ctx, tg("storefront", "orders", "east", 3))
	refused(t, err, "back up the primary")
}

func TestTraffic(t *testing.T) {
	ctx := context.Background()
	w, d := seeded(t)
	www := tg("storefront", "www", "east", 2)
	names := []string{"shop.example.test", "api.shop.example.test"}
	must(t, d.Traffic.Switch(ctx, www, names))
	r, err := d.Traffic.Status(ctx, www, names)
	must(t, err)
	if r.Region != "east" || r.Epoch != 2 || !r.Since.After(t0) || len(r.Answers["api.shop.example.test"]) != 1 {
		t.Errorf("route = %+v, want east at epoch 2 since after the seed, both names answered", r)
	}
	must(t, d.Traffic.Switch(ctx, www, names))
	if again := w.Route(www.Resource); !again.Since.Equal(r.Since) {
		t.Errorf("switching again to the same region moved Since from %v to %v", r.Since, again.Since)
	}
	if r, _ := d.Traffic.Status(ctx, tg("none", "www", "east", 2), names); r.Region != "" {
		t.Errorf("unknown route = %+v, want zero", r)
	}
}

func TestStaleEpochRefusedPerResource(t *testing.T) {
	ctx := context.Background()
	w, d := seeded(t)
	worker3 := tg("reports", "worker", "east", 3)
	c := spec().Units["reports"].Compute["worker"]
	must(t, d.Compute.Provision(ctx, worker3, c))
	must(t, d.Compute.Delete(ctx, worker3))
	old := worker3
	old.Epoch = 2
	// The epoch survives the delete: a late action of an old run cannot
	// stand the scale set up again.
	err := d.Compute.Provision(ctx, old, c)
	if !errors.Is(err, lifeboat.ErrStaleEpoch) || lifeboat.IsRetryable(err) {
		t.Fatalf("provision for epoch 2 after epoch 3 = %v, want a non-retryable stale epoch", err)
	}
	if w.ScaleSet(worker3.Resource).Exists {
		t.Error("a refused provision changed the world")
	}
	// Another resource at the older epoch is fine: epochs are per resource.
	must(t, d.Compute.Scale(ctx, tg("storefront", "web", "east", 2), 3))

	for name, call := range map[string]func() error{
		"fence":   func() error { return d.Database.Fence(ctx, tg("storefront", "orders", "west", 0)) },
		"promote": func() error { return d.Database.Promote(ctx, tg("storefront", "orders", "east", 0)) },
		"restore": func() error { return d.Backup.Restore(ctx, tg("reports", "warehouse", "east", 0)) },
		"switch":  func() error { return d.Traffic.Switch(ctx, tg("storefront", "www", "east", 0), nil) },
		"take":    func() error { _, err := d.Backup.Take(ctx, tg("reports", "warehouse", "west", 0)); return err },
		"scale":   func() error { return d.Compute.Scale(ctx, tg("storefront", "web", "west", 0), 1) },
		"rejoin": func() error {
			return d.Database.Rejoin(ctx, tg("storefront", "orders", "west", 0), tg("storefront", "orders", "east", 0))
		},
		"switchov": func() error {
			return d.Database.Switchover(ctx, tg("storefront", "orders", "west", 0), tg("storefront", "orders", "east", 0))
		},
	} {
		if err := call(); !errors.Is(err, lifeboat.ErrStaleEpoch) {
			t.Errorf("%s for epoch 0 on a seeded (epoch 1) resource = %v, want stale epoch", name, err)
		}
	}
	// A switchover whose old primary was acted on at a newer epoch is stale
	// too, even though the new primary's epoch is older.
	must(t, d.Database.Fence(ctx, tg("storefront", "orders", "west", 5)))
	err = d.Database.Switchover(ctx, tg("storefront", "orders", "west", 4), tg("storefront", "orders", "east", 4))
	if !errors.Is(err, lifeboat.ErrStaleEpoch) {
		t.Errorf("switchover for epoch 4 from a copy fenced at epoch 5 = %v, want stale epoch", err)
	}
	if got := w.Database("shop-storefront-orders-east").Role; got != lifeboat.DBReplica {
		t.Errorf("a refused switchover changed east to %s", got)
	}
}

func TestFailNext(t *testing.T) {
	ctx := context.Background()
	w, d := seeded(t)
	east := tg("storefront", "orders", "east", 2)
	w.FailNext(lifeboat.ActDatabasePromote, 2, true)
	for i := 0; i < 2; i++ {
		err := d.Database.Promote(ctx, east)
		if !errors.Is(err, ErrInjected) || !lifeboat.IsRetryable(err) {
			t.Fatalf("promote #%d = %v, want an injected retryable failure", i+1, err)
		}
	}
	if w.Database(east.Resource).Role != lifeboat.DBReplica {
		t.Fatal("a failed promote changed the world")
	}
	must(t, d.Database.Promote(ctx, east))

	w.FailNext(lifeboat.ActComputeScale, 1, false)
	err := d.Compute.Scale(ctx, tg("storefront", "web", "east", 2), 3)
	if !errors.Is(err, ErrInjected) || lifeboat.IsRetryable(err) {
		t.Fatalf("scale = %v, want an injected permanent failure", err)
	}
	must(t, d.Compute.Scale(ctx, tg("storefront", "web", "east", 2), 3))
}

func TestDelayRespectsContext(t *testing.T) {
	w, d := seeded(t)
	// An hour's delay with a context that is already done returns at once:
	// the call gives up instead of waiting.
	w.Delay(lifeboat.ActComputeStatus, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := d.Compute.Status(ctx, tg("storefront", "web", "west", 1))
	if !errors.Is(err, context.Canceled) || !lifeboat.IsRetryable(err) {
		t.Fatalf("status = %v, want a retryable context error", err)
	}
	// A short delay completes normally.
	w.Delay(lifeboat.ActComputeStatus, time.Millisecond)
	if _, err := d.Compute.Status(context.Background(), tg("storefront", "web", "west", 1)); err != nil {
		t.Fatal(err)
	}
}

func TestCutAndHeal(t *testing.T) {
	ctx := context.Background()
	w, d := seeded(t)
	w.Cut("west")
	err := d.Database.Fence(ctx, tg("storefront", "orders", "west", 2))
	if !errors.Is(err, ErrRegionUnreachable) || !lifeboat.IsRetryable(err) {
		t.Fatalf("fence in a cut region = %v, want retryable region unreachable", err)
	}
	_, err = d.Compute.Status(ctx, tg("storefront", "web", "west", 2))
	if !errors.Is(err, ErrRegionUnreachable) {
		t.Fatalf("status in a cut region = %v, want region unreachable", err)
	}
	// A switchover needs both regions.
	if err := d.Database.Switchover(ctx, tg("storefront", "orders", "west", 2), tg("storefront", "orders", "east", 2)); !errors.Is(err, ErrRegionUnreachable) {
		t.Fatalf("switchover from a cut region = %v, want region unreachable", err)
	}
	// The other region, and traffic (global), still work: the way out stays open.
	must(t, d.Database.Promote(ctx, tg("storefront", "orders", "east", 2)))
	must(t, d.Traffic.Switch(ctx, tg("storefront", "www", "east", 2), []string{"shop.example.test"}))
	if w.Database("shop-storefront-orders-west").Role != lifeboat.DBPrimary {
		t.Fatal("the cut region changed")
	}
	w.Heal("west")
	must(t, d.Database.Fence(ctx, tg("storefront", "orders", "west", 2)))
}

func TestCallsRecorded(t *testing.T) {
	ctx := context.Background()
	w, d := seeded(t)
	_, _ = d.Database.Status(ctx, tg("storefront", "orders", "east", 2))
	_ = d.Database.Promote(ctx, tg("storefront", "orders", "east", 2))
	_ = d.Database.Switchover(ctx, tg("storefront", "orders", "west", 1), tg("storefront", "orders", "east", 1))
	_ = d.Scripts.Exec(ctx, lifeboat.Target{Service: "shop", Epoch: 2}, "./world.sh notify", nil)
	got := w.Calls()
	want := []Call{
		{Action: lifeboat.ActDatabaseStatus, Resource: "shop-storefront-orders-east", Region: "east", Epoch: 2},
		{Action: lifeboat.ActDatabasePromote, Resource: "shop-storefront-orders-east", Region: "east", Epoch: 2},
		{Action: lifeboat.ActDatabaseSwitchover, Resource: "shop-storefront-orders-east", Region: "east", Epoch: 1, From: "shop-storefront-orders-west"},
		{Action: ScriptExec, Resource: "", Epoch: 2, Command: "./world.sh notify"},
	}
	if len(got) != len(want) {
		t.Fatalf("calls = %+v, want %d", got, len(want))
	}
	for i := range want {
		g := got[i]
		g.Err = ""
		if g != want[i] {
			t.Errorf("call %d = %+v, want %+v", i, g, want[i])
		}
	}
	if !strings.Contains(got[2].Err, "stale epoch") {
		t.Errorf("the refused switchover should be recorded with its error, got %q", got[2].Err)
	}
	if got[1].Err != "" {
		t.Errorf("the promote succeeded but is recorded with error %q", got[1].Err)
	}
}

// TestBindFailoverAndFailback runs a failover and a failback of the
// example through lifeboat.Bind, checking each step's Holds before and
// after it is applied.
// The planner's failover, failback and switchovers, step by step.
func TestProcedures(t *testing.T) {
	w, d := seeded(t)
	s := spec()
	st := drivertest.Procedures(t, s, d)
	if r := w.Route("shop-storefront-www"); r.Region != "west" || r.Epoch != st.Epoch {
		t.Errorf("route = %+v, want back in west at epoch %d", r, st.Epoch)
	}
	if w.ScaleSet("shop-reports-worker-east").Exists {
		t.Error("the failover group's worker is still in east")
	}
	for _, res := range []string{"shop-storefront-orders-west", "shop-reports-warehouse-west"} {
		if db := w.Database(res); db.Role != lifeboat.DBPrimary {
			t.Errorf("%s is %s, want primary", res, db.Role)
		}
	}
	for _, c := range w.Calls() {
		if c.Err != "" && !strings.Contains(c.Err, "epoch") {
			t.Errorf("call %s %s failed: %s", c.Action, c.Resource, c.Err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	w, d := seeded(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				_ = d.Compute.Scale(ctx, tg("storefront", "web", "east", 2), j%4)
				_, _ = d.Database.Status(ctx, tg("storefront", "orders", "east", 2))
				_ = d.Traffic.Switch(ctx, tg("storefront", "www", []string{"west", "east"}[i%2], 2), nil)
				_ = w.Calls()
			}
		}(i)
	}
	wg.Wait()
	if n := len(w.Calls()); n != 8*50*3 {
		t.Errorf("%d calls recorded, want %d", n, 8*50*3)
	}
}
