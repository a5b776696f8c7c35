package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// pg_auto_failover's monitor settings (pgautofailover.* GUCs on the
// monitor; defaults from its configuration reference: health_check_period
// 5000 ms, health_check_timeout 5000 ms, health_check_max_retries 2,
// health_check_retry_delay 2000 ms, node_considered_unhealthy_timeout
// 20000 ms). Its docs name these as the knobs that decide when the
// secondary is promoted but publish no minimum; "tuned" shortens them to
// 1 s probes, one retry after 500 ms, and 2 s to call a node unhealthy,
// and keeps primary_demote_timeout (30 s) above the keeper's
// network_partition_timeout (20 s), the ordering its docs give for never
// having two primaries.
var pgafTuned = map[string]string{
	"pgautofailover.health_check_period":               "1000",
	"pgautofailover.health_check_timeout":              "1000",
	"pgautofailover.health_check_max_retries":          "1",
	"pgautofailover.health_check_retry_delay":          "500",
	"pgautofailover.node_considered_unhealthy_timeout": "2000",
}

func pgafSetups() []setup {
	return []setup{
		{system: "pgaf", name: "pg_auto_failover 2.0", setting: "defaults (health checks 5s, unhealthy after 20s; 2 nodes: sync)",
			round: func(ctx context.Context, dir, f string) (result, error) { return pgafRound(ctx, dir, f, nil) }},
		{system: "pgaf", name: "pg_auto_failover 2.0", setting: "tuned (health checks 1s, timeout 1s, 1 retry, unhealthy after 2s)",
			round: func(ctx context.Context, dir, f string) (result, error) { return pgafRound(ctx, dir, f, pgafTuned) }},
	}
}

// pgafRound: the monitor in the witness site, node1 in site a, node2 in
// site b. pg_autoctl 2.0 (Debian's) has no --listen for the monitor, which
// it creates with listen_addresses = '*': in a site of its own, '*' is that
// namespace's loopback and bridge address only.
func pgafRound(ctx context.Context, dir, fault string, settings map[string]string) (result, error) {
	if err := missing("pg_autoctl", "setpriv"); err != nil {
		return result{}, err
	}
	s, err := upSites(ctx)
	if err != nil {
		return result{}, err
	}
	// Last: every process in the namespaces is stopped by then.
	defer func() {
		if err := s.down(); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return result{}, err
	}
	envFor := func(d string) []string {
		return []string{"PATH=" + pgBin + ":" + os.Getenv("PATH"), "HOME=" + d, "XDG_CONFIG_HOME=" + filepath.Join(d, "config"), "XDG_DATA_HOME=" + filepath.Join(d, "share")}
	}
	pgctl := filepath.Join(pgBin, "pg_ctl")
	mdir := filepath.Join(dir, "monitor")
	if err := ownedDir(mdir); err != nil {
		return result{}, err
	}
	mdata := filepath.Join(mdir, "data")
	var procs []*proc
	datas := []string{mdata}
	defer func() {
		// Nodes first, the monitor last, each agent stopping its PostgreSQL.
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(30 * time.Second)
		}
		for _, d := range datas {
			stopPostgres(d)
		}
	}()
	mhost := s.addr(siteWitness)
	mp, err := s.start(siteWitness, mdir, "monitor", true, envFor(mdir), "pg_autoctl", "create", "monitor", "--pgctl", pgctl, "--pgdata", mdata,
		"--pgport", fmt.Sprint(ports[0]), "--hostname", mhost, "--auth", "trust", "--no-ssl", "--run")
	if err != nil {
		return result{}, err
	}
	procs = append(procs, mp)
	// The nodes' account on the monitor, to read the states.
	muri := fmt.Sprintf("postgres://autoctl_node@%s:%d/pg_auto_failover?sslmode=disable&connect_timeout=2", mhost, ports[0])
	var mc *pgx.Conn
	if err := waitFor(ctx, 90*time.Second, "the pg_auto_failover monitor accepting connections", func() bool {
		c, err := pgx.Connect(ctx, muri)
		if err != nil {
			return false
		}
		mc = c
		return true
	}); err != nil {
		return result{}, fmt.Errorf("%w; its log:\n%s", err, mp.tail())
	}
	defer mc.Close(context.WithoutCancel(ctx))
	if len(settings) > 0 {
		if err := pgafSettings(ctx, mdata, settings); err != nil {
			return result{}, err
		}
	}
	states := func() map[int]string {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		rows, err := mc.Query(qctx, `SELECT nodeport, current_group_state::text FROM pgautofailover.current_state('default')`)
		if err != nil {
			return nil
		}
		defer rows.Close()
		out := map[int]string{}
		for rows.Next() {
			var p int
			var s string
			if rows.Scan(&p, &s) == nil {
				out[p] = s
			}
		}
		return out
	}
	monitorURL := fmt.Sprintf("postgres://autoctl_node@%s:%d/pg_auto_failover?sslmode=disable", mhost, ports[0])
	var nodes []member
	for i, want := range []string{"single", "secondary"} {
		site := []string{siteA, siteB}[i]
		ndir := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		if err := ownedDir(ndir); err != nil {
			return result{}, err
		}
		nd := filepath.Join(ndir, "data")
		datas = append(datas, nd)
		host := s.addr(site)
		nodes = append(nodes, member{site: site, addr: fmt.Sprintf("%s:%d", host, ports[1+i]), data: nd})
		// --pg-hba-lan: trust the sites' subnet (the writer's bridge
		// address is in it) for the postgres database.
		p, err := s.start(site, ndir, "node", true, envFor(ndir), "pg_autoctl", "create", "postgres", "--pgctl", pgctl, "--pgdata", nd,
			"--pgport", fmt.Sprint(ports[1+i]), "--listen", host, "--hostname", host, "--name", fmt.Sprintf("node%d", i+1),
			"--monitor", monitorURL, "--auth", "trust", "--no-ssl", "--pg-hba-lan", "--run")
		if err != nil {
			return result{}, err
		}
		procs = append(procs, p)
		if err := waitFor(ctx, 2*time.Minute, fmt.Sprintf("pg_auto_failover node%d reaching %s", i+1, want), func() bool {
			return states()[ports[1+i]] == want
		}); err != nil {
			return result{}, fmt.Errorf("%w (states %v); its log:\n%s", err, states(), p.tail())
		}
	}
	if err := waitFor(ctx, time.Minute, "pg_auto_failover's primary in state primary", func() bool { return states()[ports[1]] == "primary" }); err != nil {
		return result{}, fmt.Errorf("%w (states %v)", err, states())
	}
	// What 'pg_autoctl show uri --formation default' gives, for the postgres user.
	uri := fmt.Sprintf("postgres://postgres@%s,%s/postgres?target_session_attrs=read-write&connect_timeout=1&sslmode=disable", nodes[0].addr, nodes[1].addr)
	res, err := peerFault(ctx, s, uri, fault, func() (member, error) {
		st := states()
		for i, n := range nodes {
			if st[ports[1+i]] == "primary" {
				return n, nil
			}
		}
		return member{}, fmt.Errorf("%w: no node in state primary (states %v)", errNoPrimary, st)
	})
	if err == nil {
		var ss []string
		st := states()
		for i := range nodes {
			ss = append(ss, fmt.Sprintf("node%d %s", i+1, st[ports[1+i]]))
		}
		res.note = joinNotes([]string{res.note, "after, per the monitor: " + strings.Join(ss, ", ")})
	}
	return res, err
}

// pgafSettings sets the monitor's GUCs, as its superuser over the
// monitor's Unix socket (the monitor's pg_hba has no TCP rule for it).
func pgafSettings(ctx context.Context, mdata string, settings map[string]string) error {
	// One -c each: ALTER SYSTEM cannot run in a transaction block.
	var args []string
	for k, v := range settings {
		args = append(args, "-c", fmt.Sprintf("ALTER SYSTEM SET %s = '%s'", k, v))
	}
	args = append(args, "-c", "SELECT pg_reload_conf()")
	port, err := pgafPort(mdata)
	if err != nil {
		return err
	}
	args = append([]string{"-X", "-v", "ON_ERROR_STOP=1", "-h", "/var/run/postgresql", "-p", port, "-d", "pg_auto_failover"}, args...)
	p, err := start(filepath.Dir(mdata), "settings", true, nil, filepath.Join(pgBin, "psql"), args...)
	if err != nil {
		return err
	}
	<-p.done
	if p.cmd.ProcessState.ExitCode() != 0 {
		return fmt.Errorf("setting the monitor's pgautofailover.* GUCs: %s", p.tail())
	}
	return nil
}

// pgafPort is the port in the monitor's postmaster.pid (its 4th line).
func pgafPort(data string) (string, error) {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return "", err
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return "", fmt.Errorf("%s/postmaster.pid is short", data)
	}
	return strings.TrimSpace(lines[3]), nil
}
