package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPrimaryAndStandby(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := StartPrimary(t, Name("west"))
	s := StartStandby(t, p, Name("east"))

	pc, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if _, err := pc.Exec(ctx, "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1), (2), (3)"); err != nil {
		t.Fatal(err)
	}
	sc, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(ctx)
	var inRecovery bool
	if err := sc.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
		t.Fatalf("standby in recovery = %v, %v", inRecovery, err)
	}
	// Wait (by condition) until the rows have been replayed.
	for {
		var n int
		err := sc.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
		if err == nil && n == 3 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("standby never saw the 3 rows: n=%d err=%v", n, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	var app string
	if err := pc.QueryRow(ctx, "SELECT application_name FROM pg_stat_replication").Scan(&app); err != nil || app != "east" {
		t.Fatalf("pg_stat_replication application_name = %q, %v; want east", app, err)
	}
}
