package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/store"
)

func TestAuditPrintsTheTrail(t *testing.T) {
	dir := example(t)
	s, err := store.Open(context.Background(), store.Options{Dir: filepath.Join(dir, ".lifeboat"), Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	log, err := store.Audit(s)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour).UTC()
	for _, r := range []store.AuditRecord{
		{At: old, Who: "viewer-bob", Role: lifeboat.RoleViewer, Action: "runs.start", Args: map[string]string{"intent": "switchover"}, Status: 403, Result: "refused: needs role operator"},
		{At: time.Now().UTC(), Who: "alice", Role: lifeboat.RoleOperator, Action: "runs.start", Args: map[string]string{"intent": "switchover"}, Status: 202, Result: "accepted", Run: "r-1"},
	} {
		if _, err := log.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	r := lifeboatIn(t, dir, nil, "audit")
	if r.code != 0 || !strings.Contains(r.stdout, "WHO") || !strings.Contains(r.stdout, "viewer-bob") || !strings.Contains(r.stdout, "intent=switchover") {
		t.Fatalf("audit: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = lifeboatIn(t, dir, nil, "audit", "--since", "24h", "-o", "json")
	var recs []store.AuditRecord
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil || len(recs) != 1 || recs[0].Who != "alice" || recs[0].Run != "r-1" {
		t.Fatalf("audit --since 24h -o json: %v %+v\n%s", err, recs, r.stderr)
	}
}
