package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/lab"
)

// Targets of issue 3.
const targetLabUp = 20 * time.Second

const (
	pgUser, pgPassword     = "lifeboat", "bench"
	replUser, replPassword = "replicator", "bench"
	pgDB                   = "shop-storefront-orders"
)

// drRows measures the disaster-recovery operations on real PostgreSQL 15
// and the lab: each is run `runs` times on a fresh pair of clusters, and
// the median is reported.
func drRows(ctx context.Context, runs int) ([]row, error) {
	base, err := os.MkdirTemp("", "lifeboat-bench-dr-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil { // the postgres user must reach the data dirs
		return nil, err
	}
	samples := map[string][]time.Duration{}
	for i := 0; i < runs; i++ {
		if err := pgRound(ctx, filepath.Join(base, fmt.Sprintf("round%d", i)), samples); err != nil {
			return nil, err
		}
		if err := labRound(ctx, filepath.Join(base, fmt.Sprintf("lab%d", i)), samples); err != nil {
			return nil, err
		}
	}
	var rows []row
	for _, m := range []struct{ key, what string }{
		{"promote", "promote a standby (pg_promote, wait)"},
		{"switchover", "planned switchover, whole (zero loss)"},
		{"unavailable", "  of which writes unavailable"},
		{"rejoin", "rejoin an old primary by pg_rewind, with quarantine"},
		{"basebackup", "base backup (small database)"},
		{"labup", "lab up to ready"},
		{"labdown", "lab down (nothing left behind)"},
	} {
		d := median(samples[m.key])
		r := row{what: m.what, store: "postgres 15", measured: lifeboat.FormatDuration(d), target: "-"}
		if m.key == "labup" || m.key == "labdown" {
			r.store = "lab"
		}
		if m.key == "labup" {
			r.target, r.verdict = "< "+lifeboat.FormatDuration(targetLabUp), okOr(d < targetLabUp)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// pgRound starts a primary (west) and a streaming standby (east), then
// measures a switchover west→east, a promote (after cutting east's
// replication), a rejoin of west by rewind, and a base backup.
func pgRound(ctx context.Context, dir string, samples map[string][]time.Duration) (err error) {
	if err := postgres.MkdirForPostgres(dir); err != nil {
		return err
	}
	inst := func(region string) (*postgres.Instance, error) {
		port, err := postgres.FreePort()
		if err != nil {
			return nil, err
		}
		return &postgres.Instance{BinDir: postgres.DefaultBinDir, DataDir: filepath.Join(dir, region), Host: "127.0.0.1",
			Port: port, Name: pgDB + "-" + region}, nil
	}
	west, err := inst("west")
	if err != nil {
		return err
	}
	east, err := inst("east")
	if err != nil {
		return err
	}
	defer func() {
		for _, i := range []*postgres.Instance{west, east} {
			_ = i.Stop(context.WithoutCancel(ctx), "immediate")
		}
	}()
	if err := postgres.StartPrimary(ctx, west, postgres.InitOptions{Superuser: pgUser, Password: pgPassword,
		ReplicationUser: replUser, ReplicationPassword: replPassword}); err != nil {
		return fmt.Errorf("start the primary: %w", err)
	}
	if err := postgres.StartStandby(ctx, east, postgres.Conninfo(west.Host, west.Port, replUser, replPassword, "", east.Name)); err != nil {
		return fmt.Errorf("start the standby: %w", err)
	}
	cfg := postgres.DefaultConfig()
	cfg.User, cfg.Password = pgUser, pgPassword
	cfg.ReplicationUser, cfg.ReplicationPassword = replUser, replPassword
	cfg.StateDir = filepath.Join(dir, "state")
	for region, i := range map[string]*postgres.Instance{"west": west, "east": east} {
		cfg.Nodes[pgDB+"-"+region] = postgres.Node{Region: region, Host: i.Host, Port: i.Port, DataDir: i.DataDir}
	}
	d, err := postgres.New(cfg)
	if err != nil {
		return err
	}
	tg := func(region string, epoch uint64) lifeboat.Target {
		return lifeboat.Target{Service: "shop", Unit: "storefront", Component: "orders", Region: region, Resource: pgDB + "-" + region, Epoch: epoch}
	}
	if err := sql(ctx, west, "CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g"); err != nil {
		return err
	}

	start := time.Now()
	if err := d.Switchover(ctx, tg("west", 2), tg("east", 2)); err != nil {
		return fmt.Errorf("switchover: %w", err)
	}
	samples["switchover"] = append(samples["switchover"], time.Since(start))
	if rep, ok := d.LastSwitchover(pgDB + "-east"); ok {
		samples["unavailable"] = append(samples["unavailable"], rep.WriteUnavailable)
	}

	// Now east is the primary and west its standby: cut west's replication,
	// promote west (unplanned), write on east, and rejoin east by rewind.
	if err := sql(ctx, west, "ALTER SYSTEM SET primary_conninfo = ''"); err != nil {
		return err
	}
	if err := sql(ctx, west, "SELECT pg_reload_conf()"); err != nil {
		return err
	}
	if err := waitFor(ctx, func() (bool, error) {
		var n int
		err := query(ctx, west, "SELECT count(*) FROM pg_stat_wal_receiver", &n)
		return n == 0, err
	}); err != nil {
		return fmt.Errorf("waiting for west's walreceiver to stop: %w", err)
	}
	start = time.Now()
	if err := d.Promote(ctx, tg("west", 3)); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	samples["promote"] = append(samples["promote"], time.Since(start))
	if err := sql(ctx, east, "INSERT INTO t SELECT g FROM generate_series(1, 1000) g"); err != nil {
		return err
	}
	start = time.Now()
	if err := d.Rejoin(ctx, tg("east", 3), tg("west", 3)); err != nil {
		return fmt.Errorf("rejoin: %w", err)
	}
	samples["rejoin"] = append(samples["rejoin"], time.Since(start))

	bb, err := inst("bb")
	if err != nil {
		return err
	}
	start = time.Now()
	if err := bb.BaseBackup(ctx, postgres.Conninfo(west.Host, west.Port, replUser, replPassword, "", "bench")); err != nil {
		return fmt.Errorf("base backup: %w", err)
	}
	samples["basebackup"] = append(samples["basebackup"], time.Since(start))
	return nil
}

func labRound(ctx context.Context, dir string, samples map[string][]time.Duration) error {
	o := lab.DefaultOptions()
	o.Dir = dir
	// The lab runs the lifeboat program (its daemon, the shop's artifact):
	// this bench is not it.
	bin, err := labBinary()
	if err != nil {
		return err
	}
	o.Binary = bin
	start := time.Now()
	if _, err := lab.Up(ctx, o); err != nil {
		return fmt.Errorf("lab up: %w", err)
	}
	samples["labup"] = append(samples["labup"], time.Since(start))
	start = time.Now()
	rep, err := lab.Down(ctx, dir)
	if err != nil {
		return fmt.Errorf("lab down: %w", err)
	}
	if len(rep.Leftovers) > 0 || len(rep.Listening) > 0 {
		return fmt.Errorf("lab down left %d process(es) and %d port(s) behind", len(rep.Leftovers), len(rep.Listening))
	}
	samples["labdown"] = append(samples["labdown"], time.Since(start))
	return nil
}

func sql(ctx context.Context, i *postgres.Instance, q string) error {
	c, err := pgx.Connect(ctx, i.DSN(pgUser, pgPassword, "postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, q)
	return err
}

func query(ctx context.Context, i *postgres.Instance, q string, dest any) error {
	c, err := pgx.Connect(ctx, i.DSN(pgUser, pgPassword, "postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return c.QueryRow(ctx, q).Scan(dest)
}

func waitFor(ctx context.Context, cond func() (bool, error)) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := cond()
		if ok && err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not after 30s (last error: %v)", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// labBinary is the lifeboat program the lab runs (its daemon, the shop's
// artifact, the controllers): $LIFEBOAT_BIN or bin/lifeboat. This bench is
// not it.
func labBinary() (string, error) {
	bin := os.Getenv("LIFEBOAT_BIN")
	if bin == "" {
		bin = "bin/lifeboat"
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("the lab needs the lifeboat program: build it (make build) or set LIFEBOAT_BIN: %w", err)
	}
	return bin, nil
}
