package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/store"
)

// With 'lifeboat serve' running and an api section, the CLI goes through
// the API: the roles apply, the audit trail names the token, and with the
// server stopped the CLI works on the store again and says so.
func TestCLIGoesThroughTheAPIOfARunningServe(t *testing.T) {
	dir := t.TempDir()
	agentAddr, dnsAddr, apiAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	var tokens strings.Builder
	for _, tk := range []struct{ name, role, secret string }{
		{"olive", "operator", "operator-secret"},
		{"vera", "viewer", "viewer-secret"},
	} {
		sum := sha256.Sum256([]byte(tk.secret))
		fmt.Fprintf(&tokens, "%s %s sha256:%s\n", tk.name, tk.role, hex.EncodeToString(sum[:]))
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte(tokens.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "operator.token"), []byte("operator-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf(`  traffic: dns
  dns:
    zone: shop.example.test
    listen: %s
    name-servers:
      west: {name: ns-west.shop.example.test, address: 127.0.0.1}
      east: {name: ns-east.shop.example.test, address: 127.0.0.1}
    endpoints:
      west: [127.0.1.1]
      east: [127.0.2.1]
hooks:
  - name: dashboards
    before: traffic.switch
    approval: "Are the dashboards green?"
api:
  tokens: tokens
  listen: %s
`, dnsAddr, apiAddr)
	if err := os.WriteFile(filepath.Join(dir, "lifeboat.yaml"), []byte(fmt.Sprintf(serveSpec, agentAddr, section)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "validate")

	stopServe := startServe(t, dir, agentAddr)
	eventually(t, "the API answers", func() (bool, string) {
		resp, err := http.Get("http://" + apiAddr + "/v1/whoami")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized, resp.Status
	})
	operator := []string{"LIFEBOAT_TOKEN=operator-secret"}
	viewer := []string{"LIFEBOAT_TOKEN=viewer-secret"}
	const fellBack = "working on the state store directly"

	// status through the API: what the traffic driver answers, no fallback.
	r := lifeboatIn(t, dir, viewer, "status")
	if r.code != 0 || strings.Contains(r.stderr, fellBack) || !strings.Contains(r.stdout, "active in west") || !strings.Contains(r.stdout, "127.0.1.1") {
		t.Fatalf("status with a viewer token: exit %d\n%s%s\nwant west and 127.0.1.1, through the API", r.code, r.stdout, r.stderr)
	}
	r = lifeboatIn(t, dir, viewer, "status", "-o", "json")
	var sv struct {
		State struct{ Active string } `json:"state"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sv); err != nil || sv.State.Active != "west" || strings.Contains(r.stderr, fellBack) {
		t.Fatalf("status -o json through the API: %v\n%s%s", err, r.stdout, r.stderr)
	}

	// A viewer may not switch over: the API's 403 and hint, no fallback.
	r = lifeboatIn(t, dir, viewer, "switchover", "--yes")
	if r.code != exitRefused || !strings.Contains(r.stderr, "403") || !strings.Contains(r.stderr, "needs role operator") ||
		!strings.Contains(r.stderr, "ask for a token with role operator") || strings.Contains(r.stderr, fellBack) {
		t.Fatalf("switchover with a viewer token: exit %d\n%s%s\nwant exit %d with the 403 and its hint", r.code, r.stdout, r.stderr, exitRefused)
	}
	// An unknown token is refused too, never falls back.
	r = lifeboatIn(t, dir, []string{"LIFEBOAT_TOKEN=nobody"}, "status")
	if r.code != exitRefused || !strings.Contains(r.stderr, "401") || strings.Contains(r.stderr, fellBack) {
		t.Fatalf("status with an unknown token: exit %d\n%s%s\nwant exit %d with the 401", r.code, r.stdout, r.stderr, exitRefused)
	}

	// The operator's switchover runs in the controller and pauses at the
	// approval; the CLI says how to go on.
	r = lifeboatIn(t, dir, operator, "switchover", "--yes")
	if r.code != exitWaiting || !strings.Contains(r.stdout+r.stderr, `lifeboat resume --approve "approval dashboards"`) {
		t.Fatalf("switchover with an operator token: exit %d, want %d\n%s%s", r.code, exitWaiting, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "start") {
		t.Errorf("switchover through the API shows no step lines:\n%s", r.stdout)
	}
	r = lifeboatIn(t, dir, viewer, "status")
	if !strings.Contains(r.stdout, "Are the dashboards green?") {
		t.Fatalf("status does not say what the run waits for:\n%s%s", r.stdout, r.stderr)
	}
	// resume goes through the API too, here with --token-file.
	r = lifeboatIn(t, dir, nil, "resume", "--token-file", "operator.token", "--approve", "approval dashboards")
	if r.code != 0 || !strings.Contains(r.stdout, "switchover of shop to east done") || strings.Contains(r.stderr, fellBack) {
		t.Fatalf("resume --approve through the API: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := aRecords(t, dnsAddr, "www.shop.example.test"); got != "127.0.2.1" {
		t.Fatalf("after the switchover www answers %q; want east's 127.0.2.1", got)
	}
	r = lifeboatIn(t, dir, viewer, "history")
	if r.code != 0 || !strings.Contains(r.stdout, "olive via api") || strings.Contains(r.stderr, fellBack) {
		t.Fatalf("history through the API does not show the run by olive via api: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A second switchover waits at its approval; cancel goes through the
	// API and cleans up.
	r = lifeboatIn(t, dir, operator, "switchover", "--yes")
	if r.code != exitWaiting {
		t.Fatalf("second switchover: exit %d, want %d\n%s%s", r.code, exitWaiting, r.stdout, r.stderr)
	}
	r = lifeboatIn(t, dir, operator, "cancel")
	if r.code != 0 || !strings.Contains(r.stdout, "cancelled") || strings.Contains(r.stderr, fellBack) {
		t.Fatalf("cancel through the API: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = lifeboatIn(t, dir, viewer, "status", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &sv); err != nil || sv.State.Active != "east" {
		t.Fatalf("status after the cancel: %v\n%s%s; want east", err, r.stdout, r.stderr)
	}

	// The audit trail names the token: the start and the resume by olive,
	// the viewer's refusal by vera.
	r = mustRun(t, dir, "audit", "-o", "json")
	var recs []store.AuditRecord
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil {
		t.Fatalf("audit -o json: %v\n%s", err, r.stdout)
	}
	found := map[string]bool{}
	for _, rec := range recs {
		found[fmt.Sprintf("%s %s %d", rec.Who, rec.Action, rec.Status)] = true
	}
	for _, want := range []string{"olive runs.start 202", "olive runs.resume 202", "olive runs.cancel 202", "vera runs.start 403"} {
		if !found[want] {
			t.Errorf("the audit trail has no %q: %v", want, found)
		}
	}

	// With the server stopped, the CLI works on the store and says so.
	stopServe()
	r = lifeboatIn(t, dir, operator, "status")
	if r.code != 0 || !strings.Contains(r.stderr, "no lifeboat API answered at "+apiAddr) || !strings.Contains(r.stdout, "active in east") {
		t.Fatalf("status with the server stopped: exit %d\n%s%s\nwant the fallback note and east", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 0 {
		t.Errorf("the fallback note is not one line:\n%s", r.stderr)
	}
}
