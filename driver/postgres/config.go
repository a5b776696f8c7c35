package postgres

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"
)

// Replication modes of a database.
const (
	ModeAsync = "async"
	ModeSync  = "sync"
)

// Replication is how a database's primary waits for its standby.
type Replication struct {
	// Mode is async (the default) or sync.
	Mode string
	// DegradeAfter applies to sync: 0 is strict (writes block while the
	// standby is gone: no committed write can be lost, seed 002's
	// trade-off); D > 0 lets WatchSync drop to async once the standby has
	// been gone for D, recording the period as RPO exposure.
	DegradeAfter time.Duration
}

// Node is one copy of a database.
type Node struct {
	Region string
	Host   string
	Port   int
	// DataDir is set when Lifeboat runs the host: then it may pg_ctl the
	// node (a fence is a shutdown, clean for at most FenceGrace, then
	// immediate; switchover and rejoin restart it).
	DataDir string
	// Settings are extra per-node PostgreSQL settings (DataDir nodes).
	Settings map[string]string
	// ReachedFrom is the address ("host:port") at which nodes of another
	// region reach this one, by region name: a WAN link, a VPN endpoint.
	// Replication and pg_rewind from that region go there; Host and Port
	// are used otherwise.
	ReachedFrom map[string]string
}

// Config of the driver.
type Config struct {
	// Nodes by resource name <service>-<unit>-<component>-<region>.
	Nodes map[string]Node
	// User is a superuser (pg_promote, ALTER SYSTEM, pg_rewind need one).
	User, Password string
	// Database to connect to; default postgres.
	Database string
	// ReplicationUser streams WAL to standbys; default User.
	ReplicationUser, ReplicationPassword string
	// StateDir keeps the epoch of each node and the quarantine.
	StateDir string
	// BinDir holds the PostgreSQL programs.
	BinDir string
	// Replication by database name <service>-<unit>-<component>; default async.
	Replication map[string]Replication
	// StreamTimeout bounds the wait for a demoted or rejoined node to stream.
	StreamTimeout time.Duration
	// PollInterval is how often waits look again.
	PollInterval time.Duration
	// FenceGrace bounds the clean part of a fence by shutdown: a "fast"
	// shutdown waits for the walsenders to hand the shutdown checkpoint to
	// the standbys, which over a hung link lasts until wal_sender_timeout
	// (60s by default). After FenceGrace the fence stops "immediate".
	// Default 2s.
	FenceGrace time.Duration
	Log        *slog.Logger
}

// DefaultConfig returns a config with the defaults filled in and no nodes.
func DefaultConfig() Config {
	return Config{
		Nodes:         map[string]Node{},
		User:          "postgres",
		Database:      "postgres",
		BinDir:        DefaultBinDir,
		Replication:   map[string]Replication{},
		StreamTimeout: 2 * time.Minute,
		PollInterval:  20 * time.Millisecond,
		FenceGrace:    2 * time.Second,
	}
}

// ValidateConfig reports every problem of c at once.
func ValidateConfig(c Config) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(c.Nodes) == 0 {
		bad("postgres driver: no nodes: list each copy of each database under nodes, by resource name <service>-<unit>-<component>-<region>")
	}
	if c.User == "" {
		bad("postgres driver: user is empty: set a superuser (pg_promote, ALTER SYSTEM and pg_rewind need one)")
	}
	if c.StateDir == "" {
		bad("postgres driver: state-dir is empty: set a directory where the driver keeps each node's epoch and the quarantine")
	}
	if c.BinDir == "" {
		bad("postgres driver: bin-dir is empty: set where pg_ctl and pg_rewind live (Debian: %s)", DefaultBinDir)
	}
	if c.FenceGrace < 0 {
		bad("postgres driver: fence-grace %s is negative: set how long a fence may wait for a clean shutdown before it stops immediate (default 2s)", c.FenceGrace)
	}
	for name, n := range c.Nodes {
		switch {
		case n.Region == "":
			bad("postgres node %s: region is empty", name)
		case !strings.HasSuffix(name, "-"+n.Region):
			bad("postgres node %s: region %q is not the end of its resource name (want <service>-<unit>-<component>-%s)", name, n.Region, n.Region)
		}
		if n.Host == "" {
			bad("postgres node %s: host is empty", name)
		}
		for region, addr := range n.ReachedFrom {
			if _, p, err := net.SplitHostPort(addr); err != nil || p == "" {
				bad("postgres node %s: reached-from %s is %q, not host:port (e.g. 127.0.0.1:25402)", name, region, addr)
			}
		}
		if n.Port <= 0 || n.Port > 65535 {
			bad("postgres node %s: port %d is not a TCP port", name, n.Port)
		}
		if n.DataDir != "" && !filepath.IsAbs(n.DataDir) {
			bad("postgres node %s: data-dir %q must be an absolute path", name, n.DataDir)
		}
	}
	for db, r := range c.Replication {
		switch r.Mode {
		case "", ModeAsync:
			if r.DegradeAfter != 0 {
				bad("postgres database %s: degrade-after only applies to sync replication", db)
			}
		case ModeSync:
			if r.DegradeAfter < 0 {
				bad("postgres database %s: degrade-after %s is negative", db, r.DegradeAfter)
			}
		default:
			bad("postgres database %s: replication mode %q: want async or sync", db, r.Mode)
		}
		found := false
		for name, n := range c.Nodes {
			if databaseOf(name, n) == db {
				found = true
			}
		}
		if !found && len(c.Nodes) > 0 {
			bad("postgres database %s: replication is set but no node belongs to it (nodes are named %s-<region>)", db, db)
		}
	}
	return errors.Join(errs...)
}

// databaseOf is the resource name without its region: the database every
// copy shares.
func databaseOf(resource string, n Node) string { return strings.TrimSuffix(resource, "-"+n.Region) }
