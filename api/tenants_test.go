package api_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/jackc/pgx/v5"
	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/api"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
	"github.com/lifeboat-dr/lifeboat/status"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

const tenantSpecYAML = `service: shop
regions:
  primary:   {name: west}
  secondary: {name: east}
objectives: {rto: 5m, rpo: 30s}
units:
  data:
    databases:
      catalog: {engine: postgres, dr-mode: geo-replica, endpoints: %[1]s}
      paida: {engine: postgres, dr-mode: geo-replica, endpoints: %[2]s}
      trial: {engine: postgres, dr-mode: backup, backup-interval: 15m, endpoints: %[2]s}
tenants:
  catalog: data.catalog
  pools:
    paid1: {database: data.paida}
    trial: {database: data.trial, isolation: schema}
  tiers:
    paid: {pool: paid1, strategy: geo-replicate, priority: 1}
    trial: {pool: trial, strategy: geo-restore, priority: 2, backup-interval: 15m, objectives: {rto: 4h, rpo: 1h}}
drivers:
  default: fake
api:
  tokens: tokens
`

// newTenantLab is an API server whose spec has tenants, with the catalog
// in a real PostgreSQL (pg's database "catalog", both regions' endpoints).
func newTenantLab(t *testing.T, pg *pgtest.Cluster) *lab {
	t.Helper()
	url := func(db string) string {
		return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", pgtest.User, pgtest.Password, pg.Port, db)
	}
	eps := func(db string) string { return fmt.Sprintf("{west: %q, east: %q}", url(db), url(db)) }
	body := fmt.Sprintf(tenantSpecYAML, eps("catalog"), eps("postgres"))
	return serveSpec(t, body, []lifeboat.Role{lifeboat.RoleViewer}, nil)
}

// TestTenantsEndpoints serves the tenants of a catalog in a real
// PostgreSQL: the list with each filter, one tenant, the errors, and the
// tenants' part of /v1/status and /v1/readiness.
func TestTenantsEndpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	pg := pgtest.StartPrimary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE catalog"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	l := newTenantLab(t, pg)

	cat, err := tenant.OpenCatalog(ctx, l.spec, lifeboat.InitialState(l.spec, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	for _, tn := range []lifeboat.Tenant{
		{Name: "acme", Tier: "paid", Pool: "paid1", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable},
		{Name: "globex", Tier: "paid", Pool: "paid1", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable},
		{Name: "hooli", Tier: "trial", Pool: "trial", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable},
		{Name: "initech", Tier: "trial", Pool: "trial", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable},
		{Name: "umbrella", Tier: "trial", Pool: "trial", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable},
	} {
		if err := cat.Create(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cat.Set(ctx, []string{"initech"}, lifeboat.TenantChange{State: lifeboat.TenantQueued}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Set(ctx, []string{"umbrella"}, lifeboat.TenantChange{State: lifeboat.TenantFailed, Reason: "backup corrupt"}); err != nil {
		t.Fatal(err)
	}

	names := func(ts []lifeboat.Tenant) string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Name)
		}
		return strings.Join(out, ",")
	}
	for _, c := range []struct{ query, want string }{
		{"", "acme,globex,hooli,initech,umbrella"},
		{"?tier=paid", "acme,globex"},
		{"?pool=trial", "hooli,initech,umbrella"},
		{"?region=east", ""},
		{"?state=queued,failed", "initech,umbrella"},
		{"?state=queued&state=failed", "initech,umbrella"},
		{"?tier=trial&state=available", "hooli"},
	} {
		var ts []lifeboat.Tenant
		l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/tenants"+c.query, "", &ts), 200, "GET /v1/tenants"+c.query)
		if ts == nil || names(ts) != c.want {
			t.Errorf("GET /v1/tenants%s = [%s], want [%s]", c.query, names(ts), c.want)
		}
	}

	var one lifeboat.Tenant
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/tenants/umbrella", "", &one), 200, "GET umbrella")
	if one.Name != "umbrella" || one.Tier != "trial" || one.State != lifeboat.TenantFailed || one.Reason != "backup corrupt" || one.Epoch != 1 || one.Created.IsZero() {
		t.Fatalf("umbrella = %+v", one)
	}
	var e api.Error
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/tenants/nobody", "", &e), 404, "unknown tenant")
	if !strings.Contains(e.Error, "nobody") || e.Hint == "" {
		t.Fatalf("404 of an unknown tenant: %+v", e)
	}
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/tenants/Bad-Name", "", &e), 400, "bad name")
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/tenants?state=lost", "", &e), 400, "bad state")
	if !strings.Contains(e.Hint, "read-only") {
		t.Fatalf("a bad state without the valid ones: %+v", e)
	}
	l.want(l.do("", "GET", "/v1/tenants", "", nil), 401, "no token")
	l.want(l.do("", "GET", "/v1/tenants/acme", "", nil), 401, "no token, one tenant")

	// /v1/status counts them, overall and by tier.
	var v status.View
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/status", "", &v), 200, "status")
	if v.Tenants == nil || v.Tenants.Error != "" || v.Tenants.Total != 5 || v.Tenants.Counts[lifeboat.TenantAvailable] != 3 ||
		v.Tenants.ByTier["trial"][lifeboat.TenantFailed] != 1 || v.Tenants.ByTier["paid"][lifeboat.TenantAvailable] != 2 {
		t.Fatalf("status tenants = %+v", v.Tenants)
	}
	if !strings.Contains(v.Tenants.Recovery, "1 failed") {
		t.Fatalf("status tenants recovery = %q", v.Tenants.Recovery)
	}
	// Readiness: hooli (trial, available) has no backup shipped: the
	// check fails, says so, and does not block.
	var rd api.ReadinessView
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/readiness", "", &rd), 200, "readiness")
	var found bool
	for _, c := range rd.Checks {
		if c.Name == "tenant backups fresh" {
			found = true
			if c.Component != "tier trial" || c.OK || c.Blocks || !strings.Contains(c.Reason, "hooli") || !strings.Contains(c.Reason, "does not block a failover") {
				t.Fatalf("tenant backups check: %+v", c)
			}
		}
	}
	if !found || !rd.Ready {
		t.Fatalf("readiness: no tenant backups check, or not ready: %+v", rd)
	}
}

// TestTenantsWithoutTenants: a spec without tenants answers 404, saying
// what to add; a catalog that cannot be reached answers 503.
func TestTenantsWithoutTenants(t *testing.T) {
	l := newLab(t, "")
	var e api.Error
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/tenants", "", &e), 404, "no tenants section")
	if !strings.Contains(e.Error, "no tenants section") || !strings.Contains(e.Hint, "tenants:") {
		t.Fatalf("404 without a clear message: %+v", e)
	}
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/tenants/acme", "", &e), 404, "no tenants section, one tenant")
}

func TestTenantsCatalogDown(t *testing.T) {
	// A catalog that hangs up on every connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	l := newTenantLab(t, &pgtest.Cluster{Port: ln.Addr().(*net.TCPAddr).Port})
	var e api.Error
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/tenants", "", &e), 503, "catalog down")
	if !strings.Contains(e.Error, "data.catalog") || !strings.Contains(e.Hint, "retry") {
		t.Fatalf("503 without a clear message: %+v", e)
	}
	var v status.View
	l.want(l.do(lifeboat.RoleViewer, "GET", "/v1/status", "", &v), 200, "status, catalog down")
	if v.Tenants == nil || !strings.Contains(v.Tenants.Error, "data.catalog, primary in west") {
		t.Fatalf("status tenants with the catalog down = %+v", v.Tenants)
	}
}

func TestOpenAPIDescribesTenants(t *testing.T) {
	l := newLab(t, "")
	resp, err := http.Get(l.url + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatal(err)
	}
	list := doc.Paths.Value("/v1/tenants").Get
	if list == nil || list.Responses.Value("200") == nil || list.Responses.Value("501") != nil {
		t.Fatalf("GET /v1/tenants: %+v", list)
	}
	for _, q := range []string{"tier", "pool", "region", "state"} {
		if list.Parameters.GetByInAndName("query", q) == nil {
			t.Errorf("GET /v1/tenants lacks the query parameter %s", q)
		}
	}
	item := doc.Paths.Value("/v1/tenants/{name}")
	if item == nil || item.Get == nil || item.Get.Parameters.GetByInAndName("path", "name") == nil || item.Get.Responses.Value("404") == nil {
		t.Fatal("the document lacks GET /v1/tenants/{name} with its name and its 404")
	}
	schema := item.Get.Responses.Value("200").Value.Content.Get("application/json").Schema
	if schema.Value == nil && schema.Ref == "" {
		t.Fatal("GET /v1/tenants/{name} has no body schema")
	}
}
