package tenant

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

// listOnly hides the Counter of a catalog: Count must then list.
type listOnly struct{ Catalog }

// fillForCounts creates 30 paid (25 available, 5 queued) and 12 trial
// tenants (4 available, 6 restoring, 2 failed) and returns the counts.
func fillForCounts(t *testing.T, cat Catalog) TierCounts {
	t.Helper()
	ctx := context.Background()
	var paid, trial []string
	for i := range 30 {
		n := fmt.Sprintf("p%03d", i)
		paid = append(paid, n)
		if err := cat.Create(ctx, lifeboat.Tenant{Name: n, Tier: "paid", Pool: "paid1", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		n := fmt.Sprintf("t%03d", i)
		trial = append(trial, n)
		if err := cat.Create(ctx, lifeboat.Tenant{Name: n, Tier: "trial", Pool: "trial", Region: "west", Epoch: 1, State: lifeboat.TenantAvailable}); err != nil {
			t.Fatal(err)
		}
	}
	set := func(names []string, st lifeboat.TenantState) {
		if _, err := cat.Set(ctx, names, lifeboat.TenantChange{State: st, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	set(paid[25:], lifeboat.TenantQueued)
	set(trial[4:10], lifeboat.TenantRestoring)
	set(trial[10:], lifeboat.TenantFailed)
	return TierCounts{
		"paid":  {lifeboat.TenantAvailable: 25, lifeboat.TenantQueued: 5},
		"trial": {lifeboat.TenantAvailable: 4, lifeboat.TenantRestoring: 6, lifeboat.TenantFailed: 2},
	}
}

func checkCounts(t *testing.T, cat Catalog, want TierCounts) {
	t.Helper()
	got, err := Count(context.Background(), cat)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(got, want, maps.Equal) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
	total, by := got.Total()
	if total != 42 || by[lifeboat.TenantAvailable] != 29 || by[lifeboat.TenantQueued] != 5 || by[lifeboat.TenantRestoring] != 6 || by[lifeboat.TenantFailed] != 2 {
		t.Fatalf("total = %d, %v", total, by)
	}
}

func TestCountsMemoryAndListing(t *testing.T) {
	cat := NewMemoryCatalog()
	want := fillForCounts(t, cat)
	checkCounts(t, cat, want)
	checkCounts(t, listOnly{cat}, want)
	empty, err := Count(context.Background(), NewMemoryCatalog())
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty catalog counts = %v, %v", empty, err)
	}
}

func TestCountsPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	pg := pgtest.StartPrimary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, pgURL(pg, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE counts"); err != nil {
		t.Fatal(err)
	}
	cat, err := OpenPostgres(ctx, DefaultPostgresConfig(pgURL(pg, "counts")))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	checkCounts(t, cat, fillForCounts(t, cat))

	// A catalog whose table is gone says so, permanently, naming the table.
	db, err := pgx.Connect(ctx, pgURL(pg, "counts"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(ctx, "DROP TABLE lifeboat.tenants"); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Counts(ctx); err == nil || lifeboat.IsRetryable(err) || !contains(err.Error(), "lifeboat.tenants") {
		t.Fatalf("counts without the table: %v, want a permanent error naming lifeboat.tenants", err)
	}
}
