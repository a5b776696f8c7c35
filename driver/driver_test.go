package driver

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/drivertest"
	"github.com/lifeboat-dr/lifeboat/driver/rfc2136/bindtest"
)

// spec has a unit with every kind: web (compute), orders (geo-replica),
// warehouse (backups) and www (traffic). Script commands answer with 42
// instances, so a status tells the script driver from the fake.
func spec(t *testing.T, ds lifeboat.DriverSpec) *lifeboat.Spec {
	dir := t.TempDir()
	if ds.Script != nil {
		ds.Script.Actions = map[string]string{
			"compute.status":  "echo exists=true; echo instances=42",
			"database.status": "echo role=fenced",
			"backup.latest":   "echo id=from-script; echo taken=2025-03-01T12:00:00Z",
			"traffic.status":  "echo region=script",
		}
	}
	return &lifeboat.Spec{
		Service: "shop", File: filepath.Join(dir, "lifeboat.yaml"),
		Regions: lifeboat.Regions{Primary: lifeboat.Region{Name: "west"}, Secondary: lifeboat.Region{Name: "east"}},
		Units: map[string]lifeboat.Unit{"storefront": {
			Compute: map[string]lifeboat.Compute{"web": {Standby: lifeboat.StandbyWarm, Instances: lifeboat.Instances{Primary: 3, Secondary: 3}}},
			Databases: map[string]lifeboat.Database{
				"orders":    {DRMode: lifeboat.DRGeoReplica},
				"warehouse": {DRMode: lifeboat.DRBackup},
			},
			Traffic: map[string]lifeboat.Traffic{"www": {Names: []string{"shop.example.test"}, Target: "web"}},
		}},
		Drivers: ds,
	}
}

var west = func(comp string) lifeboat.Target {
	return lifeboat.Target{Service: "shop", Unit: "storefront", Component: comp, Region: "west",
		Resource: lifeboat.ResourceName("shop", "storefront", comp, "west"), Epoch: 9}
}

// kinds reports, per kind, which driver answered: "script" or "fake".
func kinds(t *testing.T, d lifeboat.Drivers) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	which := func(kind string, script bool, err error) {
		if err != nil {
			t.Fatalf("%s status: %v", kind, err)
		}
		out[kind] = map[bool]string{true: Script, false: Fake}[script]
	}
	ss, err := d.Compute.Status(ctx, west("web"))
	which("compute", ss.Instances == 42, err)
	db, err := d.Database.Status(ctx, west("orders"))
	which("database", db.Role == lifeboat.DBFenced, err)
	b, err := d.Backup.Latest(ctx, west("warehouse"))
	which("backup", b.ID == "from-script", err)
	tg := west("www")
	tg.Resource = lifeboat.TrafficName("shop", "storefront", "www")
	r, err := d.Traffic.Status(ctx, tg, nil)
	which("traffic", r.Region == "script", err)
	return out
}

func TestFromSpecPicksPerKind(t *testing.T) {
	cases := []struct {
		name string
		ds   lifeboat.DriverSpec
		want map[string]string
	}{
		{"default script", lifeboat.DriverSpec{Default: Script, Script: &lifeboat.ScriptDriver{}},
			map[string]string{"compute": Script, "database": Script, "backup": Script, "traffic": Script}},
		{"default fake", lifeboat.DriverSpec{Default: Fake},
			map[string]string{"compute": Fake, "database": Fake, "backup": Fake, "traffic": Fake}},
		{"mixed", lifeboat.DriverSpec{Default: Fake, Compute: Script, Backup: Script, Script: &lifeboat.ScriptDriver{}},
			map[string]string{"compute": Script, "database": Fake, "backup": Script, "traffic": Fake}},
		{"every kind named", lifeboat.DriverSpec{Compute: Fake, Database: Script, Backup: Fake, Traffic: Script, Script: &lifeboat.ScriptDriver{}},
			map[string]string{"compute": Fake, "database": Script, "backup": Fake, "traffic": Script}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := FromSpec(spec(t, c.ds), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := kinds(t, d)
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s driver = %s, want %s", k, got[k], v)
				}
			}
			if d.Scripts == nil {
				t.Error("no hook runner")
			}
		})
	}
}

func TestFromSpecSeedsTheFakeFromState(t *testing.T) {
	s := spec(t, lifeboat.DriverSpec{Default: Fake})
	st := lifeboat.InitialState(s, time.Now())
	st.Resources["shop-storefront-web-west"].Instances = 7
	st.Resources["shop-storefront-web-west"].Epoch = 4
	d, err := FromSpec(s, st)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := d.Compute.Status(context.Background(), west("web"))
	if err != nil || ss.Instances != 7 || ss.Epoch != 4 {
		t.Errorf("west web = %+v, %v; want the stored state's 7 instances at epoch 4", ss, err)
	}
	// The fake's world is shared by its kinds: a restore sees the database.
	if err := d.Backup.Restore(context.Background(), west("warehouse")); err == nil || !strings.Contains(err.Error(), "no backup") {
		t.Errorf("restore in west = %v, want no backup kept there", err)
	}
}

func TestFromSpecHooks(t *testing.T) {
	ctx := context.Background()
	// Hooks run for real unless the spec chose the fake for everything.
	s := spec(t, lifeboat.DriverSpec{Default: Fake, Compute: Script, Script: &lifeboat.ScriptDriver{}})
	d, err := FromSpec(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Scripts.Exec(ctx, west("web"), "touch hook-ran", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.File), "hook-ran")); err != nil {
		t.Errorf("the hook did not run in the spec's directory: %v", err)
	}

	s = spec(t, lifeboat.DriverSpec{Default: Fake})
	d, err = FromSpec(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Scripts.Exec(ctx, west("web"), "touch hook-ran", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.File), "hook-ran")); err == nil {
		t.Error("with the fake everywhere, a hook ran for real")
	}
}

func TestFromSpecErrors(t *testing.T) {
	for _, c := range []struct {
		ds   lifeboat.DriverSpec
		want string
	}{
		{lifeboat.DriverSpec{}, "set drivers.default (or drivers.compute) to script, agent or fake"},
		{lifeboat.DriverSpec{Default: "postgres"}, `drivers.default is "postgres", which is not a driver`},
		{lifeboat.DriverSpec{Default: Fake, Traffic: "nginx"}, `drivers.traffic is "nginx", which is not a driver`},
		{lifeboat.DriverSpec{Default: Fake, Traffic: DNS}, "drivers.traffic is dns, which 'lifeboat serve' hosts, but drivers.agent.url is not set"},
		{lifeboat.DriverSpec{Default: Fake, Database: FrontDoor}, "drivers.database is frontdoor, which only drives traffic"},
		{lifeboat.DriverSpec{Default: Script, Script: &lifeboat.ScriptDriver{Dir: "missing"}}, "drivers.script.dir"},
	} {
		_, err := FromSpec(spec(t, c.ds), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("drivers %+v: error %v, want one mentioning %q", c.ds, err, c.want)
		}
	}
	// A kind the spec does not use may be left without a driver.
	s := spec(t, lifeboat.DriverSpec{Compute: Fake, Database: Fake, Traffic: Fake})
	u := s.Units["storefront"]
	u.Databases = map[string]lifeboat.Database{"orders": {DRMode: lifeboat.DRGeoReplica}}
	s.Units["storefront"] = u
	d, err := FromSpec(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Backup != nil {
		t.Error("a backup driver was built for a spec with no backups")
	}
}

// drivers.traffic: rfc2136 switches the spec's traffic names in a real BIND
// 9: the planner's plans run with it for traffic (the fake for the rest),
// and dig sees the active region's address.
func TestRFC2136FromSpec(t *testing.T) {
	srv := bindtest.Start(t, bindtest.Options{})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tsig.key"), []byte(srv.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := drivertest.Spec()
	s.File = filepath.Join(dir, "lifeboat.yaml")
	www := s.Units["storefront"].Traffic["www"]
	www.Names = []string{"www." + strings.TrimSuffix(srv.Zone, ".")}
	s.Units["storefront"].Traffic["www"] = www
	s.Drivers = lifeboat.DriverSpec{Default: Fake, Traffic: RFC2136, RFC2136: &lifeboat.RFC2136Driver{
		Server: srv.Addr, Zone: srv.Zone, TSIG: lifeboat.TSIG{Name: srv.KeyName, SecretFile: "tsig.key"},
		Endpoints: map[string][]string{"west": {"192.0.2.10"}, "east": {"198.51.100.10"}}}}
	d, err := FromSpec(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	drivertest.Procedures(t, s, d) // ends at home, in west
	out, err := exec.Command("dig", "@127.0.0.1", "-p", strconv.Itoa(srv.Port), www.Names[0], "A", "+short").Output()
	if err != nil {
		t.Fatalf("dig (scripts/deps.sh installs it): %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "192.0.2.10" {
		t.Fatalf("dig %s after failing back home = %q, want west's 192.0.2.10", www.Names[0], got)
	}
}

func TestRFC2136NeedsItsSecret(t *testing.T) {
	s := drivertest.Spec()
	s.File = filepath.Join(t.TempDir(), "lifeboat.yaml")
	s.Drivers = lifeboat.DriverSpec{Default: Fake, Traffic: RFC2136, RFC2136: &lifeboat.RFC2136Driver{
		Server: "127.0.0.1:1", Zone: "example.test.", TSIG: lifeboat.TSIG{Name: "k", SecretFile: "missing.key"},
		Endpoints: map[string][]string{"west": {"192.0.2.10"}, "east": {"198.51.100.10"}}}}
	if _, err := FromSpec(s, nil); err == nil || !strings.Contains(err.Error(), "secret-file") {
		t.Fatalf("a missing secret file: %v", err)
	}
}
