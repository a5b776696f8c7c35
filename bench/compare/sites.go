package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/lifeboat-dr/lifeboat/lab/netns"
)

// The peers' sites: each member (a PostgreSQL node with its agent, or the
// witness: etcd, pg_auto_failover's monitor) runs in a network namespace
// of its own on one bridge (lab/netns), as if in a region of its own. So a
// listener on '*' (pg_autoctl's monitor has no --listen) reaches only that
// namespace, and the primary's site can be cut from every other site and
// from the clients (netns Isolate), as Lifeboat's lab cuts a region. The
// writer runs in the host namespace and reaches the members on their
// bridge addresses.
const (
	siteA       = "a" // the first node: the primary at the start
	siteB       = "b" // the second node
	siteWitness = "w" // etcd / the monitor
)

type sites struct {
	net *netns.Net
}

// upSites creates the namespaces (root only).
func upSites(ctx context.Context) (*sites, error) {
	if os.Geteuid() != 0 {
		return nil, notRun{"the peers' members run in network namespaces of their own, which needs root"}
	}
	o := netns.DefaultOptions()
	o.Regions = []string{siteA, siteB, siteWitness}
	n, err := netns.Up(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("creating the peers' network namespaces: %w", err)
	}
	return &sites{net: n}, nil
}

// down heals every fault (so the agents can stop cleanly) and removes the
// namespaces; every process started in them must be stopped first.
func (s *sites) down() error {
	if s == nil {
		return nil
	}
	_ = s.net.HealAll()
	if err := s.net.Down(); err != nil {
		return fmt.Errorf("removing the peers' network namespaces (%s-*): %w", s.net.Prefix(), err)
	}
	return nil
}

// addr is the site's address, as a host name for URLs and flags.
func (s *sites) addr(site string) string { return s.net.Addr(site).String() }

// subnet is the bridge's subnet (for pg_hba rules).
func (s *sites) subnet() string { return s.net.Subnet().String() }

// start runs name with args inside the site's namespace, as the postgres
// user if asPostgres, its output in dir/<logName>.log. The process's PID is
// name's own (ip netns exec and setpriv exec in place), so it is stopped by
// its PID like any other.
func (s *sites) start(site, dir, logName string, asPostgres bool, env []string, name string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, logName+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	argv := append([]string{name}, args...)
	if asPostgres {
		_, uid, gid, err := postgresCred()
		if err != nil {
			return nil, err
		}
		_ = os.Chown(logPath, uid, gid)
		argv = append([]string{"setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", gid), "--init-groups", "--"}, argv...)
	}
	return startCmd(s.net.Command(site, argv[0], argv[1:]...), f, dir, logName, env)
}

// dial connects from inside the site (a client in the primary's region).
func (s *sites) dial(site string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return s.net.DialContext(ctx, site, network, addr)
	}
}

// isolate cuts the site from every other site and from the host.
func (s *sites) isolate(site string) (time.Time, error) {
	at := time.Now()
	if err := s.net.Isolate(site); err != nil {
		return at, fmt.Errorf("isolating site %s: %w", site, err)
	}
	return at, nil
}

// siteOf names the site whose address is host.
func (s *sites) siteOf(host string) (string, error) {
	for _, r := range s.net.Regions() {
		if s.addr(r) == host {
			return r, nil
		}
	}
	return "", errors.New("no site has address " + host)
}
