// Package pgtest starts real PostgreSQL clusters on 127.0.0.1 for tests: a
// primary, standbys streaming from it, each in a temporary dir and stopped
// (by PID) when the test ends.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/driver/postgres"
)

// Credentials every test cluster uses.
const (
	User         = "lifeboat"
	Password     = "lifeboat-test"
	ReplUser     = "replicator"
	ReplPassword = "replicator-test"
)

// Cluster is one PostgreSQL instance on 127.0.0.1.
type Cluster struct {
	*postgres.Instance
	Dir  string // the data dir
	Port int
}

type options struct {
	name     string
	settings map[string]string
	dir      string
	via      string
}

// Option changes how a cluster is started.
type Option func(*options)

// Name sets the cluster's name: its cluster_name and the application_name
// it streams as (default "pg<port>").
func Name(n string) Option { return func(o *options) { o.name = n } }

// Setting adds a per-node PostgreSQL setting.
func Setting(k, v string) Option {
	return func(o *options) {
		if o.settings == nil {
			o.settings = map[string]string{}
		}
		o.settings[k] = v
	}
}

// Via makes a standby reach its primary at addr ("host:port" on
// 127.0.0.1: a proxy standing for the link) instead of the primary's own
// address, for its base backup and its stream.
func Via(addr string) Option { return func(o *options) { o.via = addr } }

// Dir puts the data dir at dir instead of a new temporary dir.
func Dir(dir string) Option { return func(o *options) { o.dir = dir } }

var seq atomic.Int64

func newCluster(t testing.TB, opts []Option) *Cluster {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.dir == "" {
		base := t.TempDir()
		// t.TempDir is 0700 and owned by root; the postgres user must reach
		// the data dir inside it.
		for _, d := range []string{base, filepath.Dir(base)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		o.dir = filepath.Join(base, fmt.Sprintf("pg%d", seq.Add(1)))
	}
	port, err := postgres.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if o.name == "" {
		o.name = fmt.Sprintf("pg%d", port)
	}
	c := &Cluster{Instance: &postgres.Instance{BinDir: postgres.DefaultBinDir, DataDir: o.dir, Host: "127.0.0.1",
		Port: port, Name: o.name, Settings: o.settings}, Dir: o.dir, Port: port}
	t.Cleanup(func() {
		// A failed test shows what the server said.
		if t.Failed() {
			if data, err := os.ReadFile(c.Instance.LogFile()); err == nil {
				lines := strings.Split(strings.TrimSpace(string(data)), "\n")
				if len(lines) > 40 {
					lines = lines[len(lines)-40:]
				}
				t.Logf("last lines of %s (%s):\n%s", c.Instance.LogFile(), c.Name, strings.Join(lines, "\n"))
			}
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Immediate: the test is over, nothing needs to be flushed.
		if err := c.Instance.Stop(ctx, "immediate"); err != nil {
			t.Logf("stopping %s: %v; killing it", c.Dir, err)
			_ = c.Instance.Kill(ctx)
		}
	})
	return c
}

func ctx(t testing.TB) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// StartPrimary initdb's and starts a primary: wal_level=replica,
// wal_log_hints=on, hot_standby, a replication user, listening on a free
// port of 127.0.0.1. It is stopped when the test ends.
func StartPrimary(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	c := newCluster(t, opts)
	cx, cancel := ctx(t)
	defer cancel()
	if err := postgres.StartPrimary(cx, c.Instance, postgres.InitOptions{Superuser: User, Password: Password,
		ReplicationUser: ReplUser, ReplicationPassword: ReplPassword}); err != nil {
		t.Fatalf("start primary: %v", err)
	}
	return c
}

// StartStandby starts a standby of primary from a base backup, streaming.
func StartStandby(t testing.TB, primary *Cluster, opts ...Option) *Cluster {
	t.Helper()
	c := newCluster(t, opts)
	cx, cancel := ctx(t)
	defer cancel()
	conninfo := primary.ReplicationConninfo(c.Name)
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.via != "" {
		host, port, err := net.SplitHostPort(o.via)
		if err != nil {
			t.Fatalf("pgtest.Via(%q): want host:port: %v", o.via, err)
		}
		p, _ := strconv.Atoi(port)
		conninfo = postgres.Conninfo(host, p, ReplUser, ReplPassword, "", c.Name)
	}
	if err := postgres.StartStandby(cx, c.Instance, conninfo); err != nil {
		t.Fatalf("start standby of %s: %v", primary.Dir, err)
	}
	return c
}

// DSN is the superuser's connection string to database db.
func (c *Cluster) DSN(db string) string { return c.Instance.DSN(User, Password, db) }

// ReplicationConninfo is how a standby named application streams from c.
func (c *Cluster) ReplicationConninfo(application string) string {
	return postgres.Conninfo(c.Instance.Host, c.Port, ReplUser, ReplPassword, "", application)
}

// Stop shuts the cluster down cleanly (pg_ctl stop -m fast).
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	cx, cancel := ctx(t)
	defer cancel()
	if err := c.Instance.Stop(cx, "fast"); err != nil {
		t.Fatal(err)
	}
}

// Kill SIGKILLs the postmaster by its PID: a crash.
func (c *Cluster) Kill(t testing.TB) {
	t.Helper()
	cx, cancel := ctx(t)
	defer cancel()
	if err := c.Instance.Kill(cx); err != nil {
		t.Fatal(err)
	}
}

// Start starts the cluster again (as whatever its data dir says: primary
// or standby).
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	cx, cancel := ctx(t)
	defer cancel()
	// Its port came from the kernel's ephemeral range: while the server
	// was down, an outgoing connection may hold it as its local port for
	// a moment (CI: "could not bind … Address already in use"). Such a
	// connection ends soon; a port taken for good still fails the test.
	for try := 1; ; try++ {
		err := c.Instance.Start(cx)
		if err == nil {
			return
		}
		log, _ := os.ReadFile(c.Instance.LogFile())
		if try == 10 || !strings.Contains(string(log), "Address already in use") {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
