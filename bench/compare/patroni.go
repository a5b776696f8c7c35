package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Patroni's timings. Its dynamic-configuration docs give the defaults
// (ttl 30, loop_wait 10, retry_timeout 10, primary_start_timeout 300) and
// the minimums (ttl 20, loop_wait 1, retry_timeout 3) with the rule
// loop_wait + 2 × retry_timeout <= ttl; primary_start_timeout 0 fails over
// at once after a crash instead of restarting in place, which may lose
// transactions with asynchronous replication: hence synchronous_mode with it.
type patroniTimings struct {
	TTL          int  `json:"ttl"`
	LoopWait     int  `json:"loop_wait"`
	RetryTimeout int  `json:"retry_timeout"`
	StartTimeout int  `json:"primary_start_timeout"`
	Sync         bool `json:"synchronous_mode"`
}

func patroniSetups() []setup {
	var out []setup
	for _, c := range []struct {
		setting string
		t       patroniTimings
	}{
		{"defaults: ttl 30, loop_wait 10, retry_timeout 10, primary_start_timeout 300, async", patroniTimings{30, 10, 10, 300, false}},
		{"documented minimums: ttl 20, loop_wait 1, retry_timeout 3, async", patroniTimings{20, 1, 3, 300, false}},
		{"minimums + primary_start_timeout 0 + synchronous_mode", patroniTimings{20, 1, 3, 0, true}},
	} {
		out = append(out, setup{system: "patroni", name: "Patroni 3.0 + etcd", setting: c.setting,
			round: func(ctx context.Context, dir, f string) (result, error) { return patroniRound(ctx, dir, f, c.t) }})
	}
	return out
}

type patroniNode struct {
	name    string
	site    string
	host    string // its site's address
	dir     string
	data    string
	pgPort  int
	apiPort int
	p       *proc
}

func (n *patroniNode) api(path string) string {
	return fmt.Sprintf("http://%s:%d/%s", n.host, n.apiPort, path)
}

// patroniRound: etcd in the witness site, n1 in site a, n2 in site b.
func patroniRound(ctx context.Context, dir, fault string, t patroniTimings) (result, error) {
	if err := missing("patroni", "etcd", "setpriv"); err != nil {
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
	ports, err := freePorts(6)
	if err != nil {
		return result{}, err
	}
	// One etcd member: a 3-member cluster on one host adds no failure
	// independence, only start time; in a site of its own, as a witness.
	etcdClient, etcdPeer, etcdHost := ports[0], ports[1], s.addr(siteWitness)
	etcdDir := filepath.Join(dir, "etcd")
	if err := os.MkdirAll(etcdDir, 0o700); err != nil {
		return result{}, err
	}
	e, err := s.start(siteWitness, dir, "etcd", false, nil, "etcd", "--name", "e1", "--data-dir", etcdDir,
		"--listen-client-urls", fmt.Sprintf("http://%s:%d", etcdHost, etcdClient), "--advertise-client-urls", fmt.Sprintf("http://%s:%d", etcdHost, etcdClient),
		"--listen-peer-urls", fmt.Sprintf("http://%s:%d", etcdHost, etcdPeer), "--initial-advertise-peer-urls", fmt.Sprintf("http://%s:%d", etcdHost, etcdPeer),
		"--initial-cluster", fmt.Sprintf("e1=http://%s:%d", etcdHost, etcdPeer), "--initial-cluster-state", "new")
	if err != nil {
		return result{}, err
	}
	defer e.stop(10 * time.Second)
	if err := waitFor(ctx, 30*time.Second, "etcd answering /health", func() bool {
		return httpStatus(ctx, fmt.Sprintf("http://%s:%d/health", etcdHost, etcdClient)) == 200
	}); err != nil {
		return result{}, fmt.Errorf("%w; etcd's log:\n%s", err, e.tail())
	}

	nodes := []*patroniNode{{name: "n1", site: siteA, pgPort: ports[2], apiPort: ports[3]}, {name: "n2", site: siteB, pgPort: ports[4], apiPort: ports[5]}}
	defer func() {
		for _, n := range nodes {
			n.p.stop(30 * time.Second)
			stopPostgres(n.data)
		}
	}()
	subnet := s.subnet()
	for i, n := range nodes {
		n.host = s.addr(n.site)
		n.dir = filepath.Join(dir, n.name)
		n.data = filepath.Join(n.dir, "data")
		if err := ownedDir(n.dir); err != nil {
			return result{}, err
		}
		cfg := map[string]any{
			"scope": "bench", "name": n.name,
			"restapi":  map[string]any{"listen": fmt.Sprintf("%s:%d", n.host, n.apiPort), "connect_address": fmt.Sprintf("%s:%d", n.host, n.apiPort)},
			"etcd3":    map[string]any{"hosts": []string{fmt.Sprintf("%s:%d", etcdHost, etcdClient)}},
			"watchdog": map[string]any{"mode": "off"},
			"bootstrap": map[string]any{
				"dcs": map[string]any{"ttl": t.TTL, "loop_wait": t.LoopWait, "retry_timeout": t.RetryTimeout,
					"primary_start_timeout": t.StartTimeout, "synchronous_mode": t.Sync,
					"postgresql": map[string]any{"use_pg_rewind": true, "parameters": map[string]any{"wal_log_hints": "on"}}},
				"initdb": []any{map[string]string{"encoding": "UTF8"}},
				// Trust inside the sites' subnet only: a lab, as the lab's own.
				"pg_hba": []string{"local all all trust", "host all all 127.0.0.1/32 trust", "host all all " + subnet + " trust",
					"host replication all 127.0.0.1/32 trust", "host replication all " + subnet + " trust"},
			},
			"postgresql": map[string]any{
				"listen": fmt.Sprintf("%s,127.0.0.1:%d", n.host, n.pgPort), "connect_address": fmt.Sprintf("%s:%d", n.host, n.pgPort),
				"data_dir": n.data, "bin_dir": pgBin, "pgpass": filepath.Join(n.dir, "pgpass"),
				"authentication": map[string]any{
					"superuser":   map[string]string{"username": "postgres", "password": "bench"},
					"replication": map[string]string{"username": "replicator", "password": "bench"},
				},
				"parameters": map[string]any{"unix_socket_directories": n.dir},
			},
		}
		b, _ := json.MarshalIndent(cfg, "", "  ") // JSON is YAML
		conf := filepath.Join(n.dir, "patroni.yml")
		if err := os.WriteFile(conf, b, 0o644); err != nil {
			return result{}, err
		}
		n.p, err = s.start(n.site, n.dir, "patroni", true, []string{"HOME=" + n.dir}, "patroni", conf)
		if err != nil {
			return result{}, err
		}
		// The first bootstraps the cluster, the second clones it.
		role := "primary"
		if i > 0 {
			role = "replica"
		}
		if err := waitFor(ctx, 90*time.Second, fmt.Sprintf("Patroni %s running as %s", n.name, role), func() bool {
			return httpStatus(ctx, n.api(role)) == 200
		}); err != nil {
			return result{}, fmt.Errorf("%w; its log:\n%s", err, n.p.tail())
		}
	}
	if t.Sync {
		if err := waitFor(ctx, 60*time.Second, "Patroni n2 as the synchronous standby", func() bool {
			return httpStatus(ctx, nodes[1].api("sync")) == 200
		}); err != nil {
			return result{}, fmt.Errorf("%w; n1's log:\n%s", err, nodes[0].p.tail())
		}
	}
	uri := fmt.Sprintf("postgres://postgres:bench@%s:%d,%s:%d/postgres?target_session_attrs=read-write&connect_timeout=1&sslmode=disable",
		nodes[0].host, nodes[0].pgPort, nodes[1].host, nodes[1].pgPort)
	res, err := peerFault(ctx, s, uri, fault, func() (member, error) {
		for _, n := range nodes {
			if httpStatus(ctx, n.api("primary")) == 200 {
				return member{site: n.site, addr: fmt.Sprintf("%s:%d", n.host, n.pgPort), data: n.data}, nil
			}
		}
		return member{}, fmt.Errorf("%w: no Patroni node answers 200 on /primary", errNoPrimary)
	})
	if err == nil {
		var ss []string
		for _, n := range nodes {
			role := "unreachable"
			for _, r := range []string{"primary", "replica"} {
				if httpStatus(ctx, n.api(r)) == 200 {
					role = r
				}
			}
			ss = append(ss, n.name+" "+role)
		}
		res.note = joinNotes([]string{res.note, "after: " + strings.Join(ss, ", ")})
	}
	return res, err
}
