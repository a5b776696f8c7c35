package status_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/status"
	"github.com/lifeboat-dr/lifeboat/store"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
)

const specYAML = `service: shop
regions:
  primary:   {name: west}
  secondary: {name: east}
objectives: {rto: 5m, rpo: 30s}
units:
  data:
    databases:
      catalog: {engine: postgres, dr-mode: geo-replica, endpoints: {west: "postgres://127.0.0.1:1/catalog", east: "postgres://127.0.0.1:1/catalog"}}
      paida: {engine: postgres, dr-mode: geo-replica, endpoints: {west: "postgres://127.0.0.1:1/p", east: "postgres://127.0.0.1:1/p"}}
      trial: {engine: postgres, dr-mode: backup, backup-interval: 15m, endpoints: {west: "postgres://127.0.0.1:1/t", east: "postgres://127.0.0.1:1/t"}}
tenants:
  catalog: data.catalog
  backups: {east: backups/east}
  pools:
    paid1: {database: data.paida}
    trial: {database: data.trial, isolation: schema}
  tiers:
    paid: {pool: paid1, strategy: geo-replicate, priority: 1}
    trial: {pool: trial, strategy: geo-restore, priority: 2, backup-interval: 15m, objectives: {rto: 4h, rpo: 1h}}
drivers:
  default: fake
`

func loadSpec(t *testing.T, body string) *lifeboat.Spec {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lifeboat.yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, diags, err := config.Load(filepath.Join(dir, "lifeboat.yaml"))
	if err != nil || diags.HasErrors() {
		t.Fatalf("spec: %v %v", err, diags)
	}
	return spec
}

// catalogOf makes 3 paid tenants (one queued) and 4 trial tenants: fresh,
// stale, never backed up, and one restoring (left out of the check).
func catalogOf(t *testing.T) *tenant.MemoryCatalog {
	t.Helper()
	cat := tenant.NewMemoryCatalog()
	ctx := context.Background()
	for _, tn := range []lifeboat.Tenant{
		{Name: "acme", Tier: "paid", Pool: "paid1", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable},
		{Name: "globex", Tier: "paid", Pool: "paid1", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable},
		{Name: "hooli", Tier: "paid", Pool: "paid1", Region: "west", Epoch: 1, State: lifeboat.TenantQueued},
		{Name: "fresh", Tier: "trial", Pool: "trial", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable},
		{Name: "stale", Tier: "trial", Pool: "trial", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable},
		{Name: "never", Tier: "trial", Pool: "trial", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable},
		{Name: "busy", Tier: "trial", Pool: "trial", Region: "west", Epoch: 1, State: lifeboat.TenantRestoring},
	} {
		if err := cat.Create(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	return cat
}

func ship(t *testing.T, dir, name string, taken time.Time) {
	t.Helper()
	_, err := backup.NewStore(dir).Write(context.Background(), name, taken, func(w io.Writer) error {
		_, err := w.Write([]byte("dump of " + name))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTenantBackupDirs(t *testing.T) {
	spec := loadSpec(t, specYAML)
	base := filepath.Dir(spec.File)
	dirs := status.TenantBackupDirs(spec)
	if dirs["east"] != filepath.Join(base, "backups/east") || dirs["west"] != filepath.Join(base, ".lifeboat/tenant-backups/west") {
		t.Fatalf("dirs = %v", dirs)
	}
	spec.Tenants.Backups = map[string]string{"west": "/srv/backups/west"}
	if d := status.TenantBackupDirs(spec); d["west"] != "/srv/backups/west" || d["east"] != filepath.Join(base, ".lifeboat/tenant-backups/east") {
		t.Fatalf("dirs = %v", d)
	}
}

func findCheck(checks []monitor.Check, name string) []monitor.Check {
	var out []monitor.Check
	for _, c := range checks {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

func TestTenantBackupChecks(t *testing.T) {
	spec := loadSpec(t, specYAML)
	now := time.Now()
	east := status.TenantBackupDirs(spec)["east"]
	ship(t, east, "fresh", now.Add(-10*time.Minute))
	ship(t, east, "stale", now.Add(-3*time.Hour))
	cat := catalogOf(t)
	ctx := context.Background()

	checks := status.TenantBackupChecks(ctx, spec, cat, nil, now)
	if len(checks) != 1 {
		t.Fatalf("want one check (tier trial), got %+v", checks)
	}
	c := checks[0]
	if c.Name != backup.CheckTenantBackups || c.Component != "tier trial" || c.OK || c.Blocks {
		t.Fatalf("check = %+v", c)
	}
	for _, want := range []string{"never", "stale", "does not block a failover", "1h"} {
		if !strings.Contains(c.Reason, want) {
			t.Errorf("reason lacks %q: %s", want, c.Reason)
		}
	}
	if strings.Contains(c.Reason, "busy") {
		t.Errorf("a restoring tenant has no primary to back up, yet: %s", c.Reason)
	}

	// All shipped and recent: OK, saying where it looked.
	ship(t, east, "stale", now.Add(-5*time.Minute))
	ship(t, east, "never", now.Add(-5*time.Minute))
	c = status.TenantBackupChecks(ctx, spec, cat, nil, now)[0]
	if !c.OK || c.Blocks || !strings.Contains(c.Reason, "3 tenants") || !strings.Contains(c.Reason, east) {
		t.Fatalf("check = %+v", c)
	}

	// No catalog: unknown, never OK, never blocking.
	c = status.TenantBackupChecks(ctx, spec, nil, errors.New("connection refused"), now)[0]
	if c.OK || c.Blocks || !strings.Contains(c.Reason, "unknown: connection refused") {
		t.Fatalf("check without a catalog = %+v", c)
	}

	// No geo-restore tier: no check.
	trial := spec.Tenants.Tiers["trial"]
	trial.Strategy = lifeboat.StrategyGeoReplicate
	spec.Tenants.Tiers["trial"] = trial
	if cs := status.TenantBackupChecks(ctx, spec, cat, nil, now); len(cs) != 0 {
		t.Fatalf("checks without a geo-restore tier: %+v", cs)
	}
}

func TestTenantsCounts(t *testing.T) {
	spec := loadSpec(t, specYAML)
	v := status.TenantsFrom(context.Background(), spec, catalogOf(t), nil)
	if v.Error != "" || v.Total != 7 || v.Counts[lifeboat.TenantAvailable] != 5 || v.Counts[lifeboat.TenantQueued] != 1 ||
		v.ByTier["paid"][lifeboat.TenantAvailable] != 2 || v.ByTier["trial"][lifeboat.TenantRestoring] != 1 {
		t.Fatalf("view = %+v", v)
	}
	if v.Recovery != "2 of 7 tenants not available yet (1 queued, 1 restoring; paid 1, trial 1)" {
		t.Fatalf("recovery = %q", v.Recovery)
	}
	// An empty catalog still lists every tier.
	v = status.TenantsFrom(context.Background(), spec, tenant.NewMemoryCatalog(), nil)
	if v.Total != 0 || len(v.ByTier) != 2 || v.Recovery != "" || v.Error != "" {
		t.Fatalf("empty view = %+v", v)
	}
}

// TestTenantsBounded: a catalog that does not answer is given up on when
// the context ends, and said in Error, naming the catalog and its region.
func TestTenantsBounded(t *testing.T) {
	spec := loadSpec(t, specYAML)
	st := lifeboat.InitialState(spec, time.Now())
	hang := func(ctx context.Context, _ *lifeboat.Spec, _ *lifeboat.State) (tenant.Catalog, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	v := status.Tenants(ctx, spec, st, hang)
	if v == nil || !strings.Contains(v.Error, "could not open the tenant catalog (data.catalog, primary in west)") || !strings.Contains(v.Error, "deadline") {
		t.Fatalf("view = %+v", v)
	}
	noTenants := *spec
	noTenants.Tenants = nil
	if v := status.Tenants(ctx, &noTenants, st, hang); v != nil {
		t.Fatalf("a spec without tenants has a tenants view: %+v", v)
	}
}

func TestBuildFillsTenants(t *testing.T) {
	spec := loadSpec(t, specYAML)
	ctx := context.Background()
	st := store.NewMemory()
	if _, err := st.Init(ctx, lifeboat.InitialState(spec, time.Now().UTC())); err != nil {
		t.Fatal(err)
	}
	cat := catalogOf(t)
	opened := 0
	open := func(context.Context, *lifeboat.Spec, *lifeboat.State) (tenant.Catalog, error) {
		opened++
		return cat, nil
	}
	v, err := status.BuildWith(ctx, spec, st, open)
	if err != nil {
		t.Fatal(err)
	}
	if opened != 1 {
		t.Fatalf("the catalog was opened %d times, want once", opened)
	}
	if v.Tenants == nil || v.Tenants.Total != 7 || v.Tenants.Error != "" {
		t.Fatalf("tenants = %+v", v.Tenants)
	}
	if cs := findCheck(v.Readiness, backup.CheckTenantBackups); len(cs) != 1 || cs[0].OK || cs[0].Blocks {
		t.Fatalf("tenant backups check = %+v", cs)
	}
	if !v.Ready {
		t.Fatalf("stale trial backups made the service not ready: %+v", status.Blocking(v.Readiness))
	}

	// A catalog that cannot be opened: status is still built, and says why.
	fail := func(context.Context, *lifeboat.Spec, *lifeboat.State) (tenant.Catalog, error) {
		return nil, lifeboat.Transient("tenant.catalog", "", errors.New("dial tcp 127.0.0.1:1: connection refused"))
	}
	v, err = status.BuildWith(ctx, spec, st, fail)
	if err != nil {
		t.Fatal(err)
	}
	if v.Tenants == nil || !strings.Contains(v.Tenants.Error, "connection refused") || v.Service != "shop" || len(v.Resources) == 0 {
		t.Fatalf("view with the catalog down: %+v", v.Tenants)
	}
	if cs := findCheck(v.Readiness, backup.CheckTenantBackups); len(cs) != 1 || !strings.Contains(cs[0].Reason, "unknown") || cs[0].Blocks {
		t.Fatalf("tenant backups check with the catalog down = %+v", cs)
	}

	// FailoverReadiness never asks the catalog.
	state, _ := st.State(ctx)
	if cs := findCheck(status.FailoverReadiness(ctx, spec, state, st, nil), backup.CheckTenantBackups); len(cs) != 0 {
		t.Fatalf("FailoverReadiness has tenant checks: %+v", cs)
	}
}
