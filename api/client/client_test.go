package client_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/api"
	"github.com/lifeboat-dr/lifeboat/api/client"
	"github.com/lifeboat-dr/lifeboat/config"
	"github.com/lifeboat-dr/lifeboat/store"
)

const spec = `service: shop
regions:
  primary:   {name: west}
  secondary: {name: east}
objectives: {rto: 5m, rpo: 30s}
units:
  storefront:
    compute:
      web:
        recipe: {artifact: ./bin/shop, command: [./shop]}
        standby: warm
        instances: {primary: 2, secondary: 2}
    databases:
      orders: {engine: postgres, dr-mode: geo-replica, replication: async, lag: 2s}
    traffic:
      www: {names: [shop.example.test], ttl: 30s, target: web}
hooks:
  - name: sre-agrees
    before: traffic.switch
    approval: "go?"
drivers: {default: fake}
api: {tokens: tokens}
`

func TestClientSwitchoverWithApproval(t *testing.T) {
	dir := t.TempDir()
	tok, line, err := api.NewToken("bob", lifeboat.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "lifeboat.yaml"), []byte(spec), 0o644)
	os.WriteFile(filepath.Join(dir, "tokens"), []byte(line+"\n"), 0o600)
	sp, diags, err := config.Load(filepath.Join(dir, "lifeboat.yaml"))
	if err != nil || diags.HasErrors() {
		t.Fatalf("%v %v", err, diags)
	}
	st := store.NewMemory()
	ctx := context.Background()
	st.Init(ctx, lifeboat.InitialState(sp, time.Now().UTC()))
	cfg := api.DefaultConfig()
	cfg.Spec, cfg.Store = sp, st
	srv, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer srv.Close()
	defer hs.Close()

	c := client.New(hs.URL, tok, nil)
	who, err := c.Whoami(ctx)
	if err != nil || who.Name != "bob" {
		t.Fatalf("whoami: %+v %v", who, err)
	}
	acc, err := c.Start(ctx, api.StartRun{Intent: lifeboat.IntentSwitchover})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	d, err := c.Wait(wctx, acc.Run, 10*time.Millisecond)
	if err != nil || d.Run.Status != lifeboat.RunWaiting || len(d.View.Waiting) != 1 {
		t.Fatalf("want the run waiting for approval: %+v %v", d.View, err)
	}
	if _, err := c.Approve(ctx, acc.Run, d.View.Waiting[0].Step); err != nil {
		t.Fatal(err)
	}
	if d, err = c.Wait(wctx, acc.Run, 10*time.Millisecond); err != nil || d.Run.Status != lifeboat.RunSucceeded {
		t.Fatalf("after approval: %s %v", d.Run.Status, err)
	}
	v, err := c.Status(ctx)
	if err != nil || v.Active != "east" {
		t.Fatalf("status: %+v %v", v, err)
	}
	_, err = c.Start(ctx, api.StartRun{Intent: lifeboat.IntentFailover, Force: true})
	var e *client.Error
	if !errors.As(err, &e) || e.Code != 403 || e.Hint == "" {
		t.Fatalf("an operator's forced failover: %v", err)
	}
	recs, err := c.Audit(ctx, "1h", 0)
	if err != nil || len(recs) < 3 {
		t.Fatalf("audit: %+v %v", recs, err)
	}
	if _, err := client.New("http://127.0.0.1:1", tok, nil).Status(ctx); !client.IsUnreachable(err) {
		t.Fatalf("a closed port: %v; want unreachable", err)
	}
}
