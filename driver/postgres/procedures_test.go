package postgres_test

import (
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/drivertest"
	"github.com/lifeboat-dr/lifeboat/driver/fake"
)

// The planner's real failover, failback and switchovers, with the database
// on real PostgreSQL (compute and traffic stay in the fake world: a plan
// needs them to switch traffic).
func TestProcedures(t *testing.T) {
	p := newPair(t, nil)
	s := &lifeboat.Spec{
		Service: "shop",
		Regions: lifeboat.Regions{Primary: lifeboat.Region{Name: "west"}, Secondary: lifeboat.Region{Name: "east"}},
		Units: map[string]lifeboat.Unit{"storefront": {
			Compute: map[string]lifeboat.Compute{"web": {
				Recipe:  lifeboat.Recipe{Artifact: "./bin/shop", Command: []string{"./shop"}},
				Standby: lifeboat.StandbyWarm, Instances: lifeboat.Instances{Primary: 2, Secondary: 2}}},
			Databases: map[string]lifeboat.Database{"orders": {Engine: "postgres", DRMode: lifeboat.DRGeoReplica}},
			Traffic:   map[string]lifeboat.Traffic{"www": {Names: []string{"shop.example.test"}, Target: "web"}},
		}},
	}
	w := fake.New()
	w.Seed(s, lifeboat.InitialState(s, time.Unix(0, 0)))
	d := w.Drivers()
	d.Database = p.d
	st := drivertest.Procedures(t, s, d)
	ctx := timeout(t)
	if r := role(t, ctx, p.d, west); r != lifeboat.DBPrimary || st.Resources[west].Role != lifeboat.DBPrimary {
		t.Fatalf("west is %s at the end, state says %s", r, st.Resources[west].Role)
	}
	caughtUp(t, ctx, p.d, east)
}
