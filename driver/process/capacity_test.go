package process

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/monitor"
)

var (
	_ monitor.RecipeReporter   = (*Driver)(nil)
	_ monitor.CapacityReporter = (*Driver)(nil)
)

// smallBlock gives east a block of three ports.
func smallBlock(c *Config) {
	r := c.Regions[east]
	r.Ports = 3
	c.Regions[east] = r
}

func TestCanStandUpPorts(t *testing.T) {
	d, _ := newDriver(t, smallBlock)
	c, tg := ctx(t), target(east, 1)
	base := d.cfg.Regions[east].PortBase

	if ok, why, err := d.CanStandUp(c, tg, web(), 3); err != nil || !ok || !strings.Contains(why, "can be transferred") || !strings.Contains(why, "3 ports free") {
		t.Fatalf("empty region, 3 instances: ok=%v %q %v", ok, why, err)
	}

	// A port of the block taken by a process the driver did not start.
	held := base + 1
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(held)))
	if err != nil {
		t.Skipf("port %d is taken by someone else: %v", held, err)
	}
	ok, why, err := d.CanStandUp(c, tg, web(), 3)
	if err != nil || ok || !strings.Contains(why, strconv.Itoa(held)) || !strings.Contains(why, "in use") {
		t.Errorf("with port %d taken, 3 instances: ok=%v %q %v; want not ok naming the port", held, ok, why, err)
	}
	if ok, why, err := d.CanStandUp(c, tg, web(), 2); err != nil || !ok {
		t.Errorf("with port %d taken, 2 instances: ok=%v %q %v; the block has two other ports", held, ok, why, err)
	}
	l.Close()
	if ok, why, err := d.CanStandUp(c, tg, web(), 3); err != nil || !ok {
		t.Errorf("port %d given back, 3 instances: ok=%v %q %v", held, ok, why, err)
	}

	// The set's own instances hold their ports: they count for it, not for
	// another scale set of the region.
	if err := d.Provision(c, tg, web()); err != nil {
		t.Fatal(err)
	}
	if err := d.Scale(c, tg, 2); err != nil {
		t.Fatal(err)
	}
	if ok, why, err := d.CanStandUp(c, tg, web(), 3); err != nil || !ok || !strings.Contains(why, "is in region") || !strings.Contains(why, "2 instances run") {
		t.Errorf("2 running, 3 wanted: ok=%v %q %v", ok, why, err)
	}
	other := lifeboat.Target{Service: "shop", Unit: "storefront", Component: "api", Region: east,
		Resource: lifeboat.ResourceName("shop", "storefront", "api", east), Epoch: 1}
	ok, why, err = d.CanStandUp(c, other, web(), 2)
	if err != nil || ok || !strings.Contains(why, tg.Resource+"-0") || !strings.Contains(why, "other scale sets") {
		t.Errorf("another set, 2 instances in a block where web holds 2 of 3: ok=%v %q %v", ok, why, err)
	}

	if _, _, err := d.CanStandUp(c, target("north", 1), web(), 1); err == nil || lifeboat.IsRetryable(err) {
		t.Errorf("a region not configured: %v; want a permanent error", err)
	}
}

func TestCanStandUpArtifact(t *testing.T) {
	d, _ := newDriver(t)
	c, tg := ctx(t), target(west, 1)

	bad := web()
	bad.Recipe.Checksum = "sha256:" + strings.Repeat("0", 64)
	ok, why, err := d.CanStandUp(c, tg, bad, 1)
	if err != nil || ok || !strings.Contains(why, healthsrvSum) || !strings.Contains(why, bad.Recipe.Checksum) {
		t.Errorf("wrong checksum: ok=%v %q %v; want not ok naming both sums", ok, why, err)
	}

	gone := web()
	gone.Recipe.Artifact, gone.Recipe.Checksum = "./no/such/binary", ""
	if ok, why, err := d.CanStandUp(c, tg, gone, 1); err != nil || ok || !strings.Contains(why, "does not exist") {
		t.Errorf("missing artifact: ok=%v %q %v", ok, why, err)
	}

	// The source is lost with its region, but west holds a copy that
	// matches the pinned checksum: Provision would use it.
	src := filepath.Join(t.TempDir(), "healthsrv")
	copyFile(t, healthsrv, src)
	moved := web()
	moved.Recipe.Artifact = src
	if err := d.Provision(c, tg, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	if ok, why, err := d.CanStandUp(c, tg, moved, 1); err != nil || !ok || !strings.Contains(why, "is in region west") {
		t.Errorf("source gone, pinned copy in west: ok=%v %q %v", ok, why, err)
	}
	if ok, why, err := d.CanStandUp(c, target(east, 1), moved, 1); err != nil || ok || !strings.Contains(why, "does not exist") {
		t.Errorf("source gone, no copy in east: ok=%v %q %v", ok, why, err)
	}
}
