package status_test

import (
	"context"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/status"
	"github.com/lifeboat-dr/lifeboat/store"
)

// A run read as running that parks for an approval (its process letting go
// of it) before the view asks who owns it is waiting, not interrupted: the
// race CI caught in TestClientSwitchoverWithApproval.
func TestRunParkedAfterItWasRead(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	if _, err := st.Init(ctx, &lifeboat.State{Service: "shop"}); err != nil {
		t.Fatal(err)
	}
	plan := &lifeboat.Plan{Service: "shop", Steps: []*lifeboat.Step{{ID: "sre-agrees", Approval: "go?"}}}
	run := &lifeboat.Run{ID: "r1", Plan: plan, Status: lifeboat.RunRunning, StartedAt: time.Now().UTC()}
	if err := st.Begin(ctx, run); err != nil {
		t.Fatal(err)
	}
	stale := *run
	parked := *run
	parked.Status = lifeboat.RunWaiting
	if err := st.Update(ctx, &parked); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(ctx, lifeboat.Record{Run: "r1", Step: "sre-agrees", Kind: lifeboat.RecWaiting}, nil); err != nil {
		t.Fatal(err)
	}
	v := status.Run(ctx, st, &stale, nil)
	if v.Interrupted || v.Run.Status != lifeboat.RunWaiting || len(v.Waiting) != 1 {
		t.Fatalf("view of a run that parked after it was read: status %q, interrupted %v, run %s, waiting %v; want waiting, not interrupted", v.Status, v.Interrupted, v.Run.Status, v.Waiting)
	}

	// A run that says running and that nobody owns is interrupted.
	parked.Status = lifeboat.RunRunning
	if err := st.Update(ctx, &parked); err != nil {
		t.Fatal(err)
	}
	if v := status.Run(ctx, st, &parked, nil); !v.Interrupted {
		t.Fatalf("a running run nobody owns: %q; want interrupted", v.Status)
	}
}
