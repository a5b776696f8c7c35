package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat"
)

// Driver is a lifeboat.DatabaseDriver for PostgreSQL streaming replication.
type Driver struct {
	cfg       Config
	log       *slog.Logger
	instances map[string]*Instance // nodes with a DataDir

	mu    sync.Mutex
	locks map[string]*sync.Mutex // one per node: actions on a node do not overlap

	qmu         sync.Mutex
	quarantines map[string]QuarantineReport
	switchovers map[string]SwitchoverReport

	emu       sync.Mutex
	exposures map[string][]Exposure
}

var _ lifeboat.DatabaseDriver = (*Driver)(nil)

// New checks cfg and returns a driver.
func New(cfg Config) (*Driver, error) {
	def := DefaultConfig()
	if cfg.Database == "" {
		cfg.Database = def.Database
	}
	if cfg.BinDir == "" {
		cfg.BinDir = def.BinDir
	}
	if cfg.StreamTimeout == 0 {
		cfg.StreamTimeout = def.StreamTimeout
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = def.PollInterval
	}
	if cfg.FenceGrace == 0 {
		cfg.FenceGrace = def.FenceGrace
	}
	if cfg.ReplicationUser == "" {
		cfg.ReplicationUser, cfg.ReplicationPassword = cfg.User, cfg.Password
	}
	if err := ValidateConfig(cfg); err != nil {
		return nil, lifeboat.Permanent("", "", err)
	}
	d := &Driver{cfg: cfg, log: cfg.Log, instances: map[string]*Instance{}, locks: map[string]*sync.Mutex{},
		quarantines: map[string]QuarantineReport{}, switchovers: map[string]SwitchoverReport{}, exposures: map[string][]Exposure{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	for name, n := range cfg.Nodes {
		if n.DataDir != "" {
			d.instances[name] = &Instance{BinDir: cfg.BinDir, DataDir: n.DataDir, Host: n.Host, Port: n.Port,
				Name: name, Settings: n.Settings, Log: d.log}
		}
	}
	return d, nil
}

// Instance returns the process control of a node Lifeboat runs (nil when
// the node has no DataDir).
func (d *Driver) Instance(resource string) *Instance { return d.instances[resource] }

func (d *Driver) lock(resources ...string) func() {
	sort.Strings(resources)
	var held []*sync.Mutex
	for _, r := range resources {
		d.mu.Lock()
		m := d.locks[r]
		if m == nil {
			m = &sync.Mutex{}
			d.locks[r] = m
		}
		d.mu.Unlock()
		m.Lock()
		held = append(held, m)
	}
	return func() {
		for _, m := range held {
			m.Unlock()
		}
	}
}

func (d *Driver) node(op lifeboat.Op, resource string) (Node, error) {
	n, ok := d.cfg.Nodes[resource]
	if !ok {
		names := make([]string, 0, len(d.cfg.Nodes))
		for k := range d.cfg.Nodes {
			names = append(names, k)
		}
		sort.Strings(names)
		return n, lifeboat.Permanent(op, resource, fmt.Errorf("no postgres node is configured for this resource (configured: %s); add it under the driver's nodes", strings.Join(names, ", ")))
	}
	return n, nil
}

// peers are the other copies of the same database.
func (d *Driver) peers(resource string) []string {
	n := d.cfg.Nodes[resource]
	db := databaseOf(resource, n)
	var out []string
	for name, p := range d.cfg.Nodes {
		if name != resource && databaseOf(name, p) == db {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (d *Driver) dsn(resource string) string {
	n := d.cfg.Nodes[resource]
	return Conninfo(n.Host, n.Port, d.cfg.User, d.cfg.Password, d.cfg.Database, "lifeboat")
}

// streamConninfo is how follower streams from primary.
func (d *Driver) streamConninfo(follower, primary string) string {
	host, port := d.reach(follower, primary)
	return Conninfo(host, port, d.cfg.ReplicationUser, d.cfg.ReplicationPassword, "", follower)
}

// reach is where the node from reaches the node to: through to's
// ReachedFrom address for from's region when there is one.
func (d *Driver) reach(from, to string) (string, int) {
	t := d.cfg.Nodes[to]
	if addr, ok := t.ReachedFrom[d.cfg.Nodes[from].Region]; ok {
		if host, p, err := net.SplitHostPort(addr); err == nil {
			if port, err := strconv.Atoi(p); err == nil {
				return host, port
			}
		}
	}
	return t.Host, t.Port
}

// conn connects to a node; failures are transient (the node may come back).
func (d *Driver) conn(ctx context.Context, op lifeboat.Op, resource string) (*pgx.Conn, error) {
	n := d.cfg.Nodes[resource]
	c, err := connect(ctx, d.dsn(resource))
	if err != nil {
		return nil, d.classify(op, resource, fmt.Errorf("cannot connect to %s:%d: %w", n.Host, n.Port, err))
	}
	return c, nil
}

// classify wraps err as transient when the node could not be reached or
// the context ran out, permanent otherwise.
func (d *Driver) classify(op lifeboat.Op, resource string, err error) error {
	if err == nil {
		return nil
	}
	var le *lifeboat.Error
	if errors.As(err, &le) {
		return err
	}
	if errors.Is(err, lifeboat.ErrStaleEpoch) {
		return lifeboat.Permanent(op, resource, err)
	}
	if isUnreachable(err) || errors.Is(err, context.Canceled) {
		return lifeboat.Transient(op, resource, err)
	}
	return lifeboat.Permanent(op, resource, err)
}

// checkEpoch refuses an action for an epoch older than one already acted
// for on the node.
func (d *Driver) checkEpoch(op lifeboat.Op, t lifeboat.Target) (nodeRecord, error) {
	rec, err := d.loadRecord(t.Resource)
	if err != nil {
		return rec, lifeboat.Permanent(op, t.Resource, err)
	}
	if t.Epoch < rec.Epoch {
		return rec, lifeboat.Permanent(op, t.Resource, lifeboat.StaleEpoch(t.Resource, t.Epoch, rec.Epoch))
	}
	return rec, nil
}

func (d *Driver) record(op lifeboat.Op, resource string, epoch uint64, f func(*nodeRecord)) error {
	rec, err := d.loadRecord(resource)
	if err != nil {
		return lifeboat.Permanent(op, resource, err)
	}
	if epoch > rec.Epoch {
		rec.Epoch = epoch
	}
	if f != nil {
		f(&rec)
	}
	if err := d.saveRecord(resource, rec); err != nil {
		return lifeboat.Transient(op, resource, err)
	}
	return nil
}

// probe is the cheap view of a node: is it up, in recovery, read-only.
type probe struct {
	up         bool
	inRecovery bool
	readOnly   bool
}

func (d *Driver) probe(ctx context.Context, op lifeboat.Op, resource string) (probe, error) {
	c, err := d.conn(ctx, op, resource)
	if err != nil {
		return probe{}, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var p probe
	p.up = true
	err = c.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')::bool").Scan(&p.inRecovery, &p.readOnly)
	return p, d.classify(op, resource, err)
}

// running reports whether a node Lifeboat runs has a live postmaster; nodes
// it does not run are assumed to run.
func (d *Driver) running(resource string) bool {
	if i := d.instances[resource]; i != nil {
		_, ok := i.PID()
		return ok
	}
	return true
}

// Status reports a copy's role, the epoch last acted for, and its lag.
func (d *Driver) Status(ctx context.Context, t lifeboat.Target) (lifeboat.DatabaseStatus, error) {
	ns, err := d.Inspect(ctx, t)
	if err != nil {
		return lifeboat.DatabaseStatus{}, err
	}
	return lifeboat.DatabaseStatus{Role: ns.Role, Epoch: ns.Epoch, LagBytes: ns.LagBytes, Lag: ns.Lag}, nil
}

// Fence makes a primary unable to take writes: a shutdown when Lifeboat
// runs the host (clean for at most Config.FenceGrace, then immediate, so a
// hung standby link cannot hold it), otherwise read-only by default and
// every other session ended. A replica is left streaming (it takes no
// writes). When it returns nil the node takes no write, and comes back
// read-only whoever restarts it.
func (d *Driver) Fence(ctx context.Context, t lifeboat.Target) error {
	const op = lifeboat.OpDatabaseFence
	if _, err := d.node(op, t.Resource); err != nil {
		return err
	}
	defer d.lock(t.Resource)()
	if _, err := d.checkEpoch(op, t); err != nil {
		return err
	}
	if err := d.fence(ctx, op, t.Resource); err != nil {
		return err
	}
	return d.record(op, t.Resource, t.Epoch, nil)
}

// fence does the work of Fence for a node already locked and epoch-checked.
func (d *Driver) fence(ctx context.Context, op lifeboat.Op, resource string) error {
	markFenced := func() error {
		return d.record(op, resource, 0, func(r *nodeRecord) {
			if !r.Fenced {
				r.Fenced, r.FencedAt = true, time.Now().UTC()
			}
		})
	}
	if inst := d.instances[resource]; inst != nil {
		if _, ok := inst.PID(); !ok {
			// Down (the region was lost): whoever starts it next gets a
			// read-only server.
			if err := inst.SetFence(true); err != nil {
				return lifeboat.Transient(op, resource, fmt.Errorf("fence the stopped node in its lifeboat.conf: %w", err))
			}
			return markFenced()
		}
		if inst.IsStandbyConfigured() {
			// A standby (standby.signal; promotion removes it) takes no
			// writes. Asking the server cannot tell while it starts or
			// with hot_standby off, and a fence then stopped a replica
			// that was being started.
			return nil
		}
		if p, err := d.probe(ctx, op, resource); err == nil && p.inRecovery {
			return nil // a replica takes no writes
		}
		// Record first: a crash between the stop and the record must not
		// leave a stopped node that Status calls down-by-accident.
		if err := markFenced(); err != nil {
			return err
		}
		if err := inst.SetFence(true); err != nil {
			return lifeboat.Transient(op, resource, fmt.Errorf("fence the node in its lifeboat.conf: %w", err))
		}
		// The fence is the shutdown: from its first signal the postmaster
		// refuses connections and ends every session, and StopWithin
		// returns nil only once it has exited with all its backends. The
		// clean part is bounded (FenceGrace) because it waits for the
		// standbys to acknowledge the shutdown checkpoint, which never
		// comes over a hung link; an immediate stop is as safe a fence (the
		// node restarts read-only, by the line SetFence wrote), it only
		// costs a crash recovery and, likely, a pg_rewind at rejoin.
		clean, err := inst.StopWithin(ctx, d.cfg.FenceGrace)
		if err != nil {
			return lifeboat.Transient(op, resource, fmt.Errorf("fence by shutdown: %w", err))
		}
		if !clean {
			d.log.Warn("fence: the clean shutdown did not finish; stopped immediate (a standby may lack the shutdown checkpoint; rejoin rewinds)",
				"resource", resource, "grace", d.cfg.FenceGrace)
		}
		return nil
	}
	c, err := d.conn(ctx, op, resource)
	if err != nil {
		return lifeboat.Transient(op, resource, fmt.Errorf("fence: %w (the node is unreachable; it can take writes again once it is back unless it is fenced then)", err))
	}
	defer c.Close(context.WithoutCancel(ctx))
	var inRecovery bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return d.classify(op, resource, err)
	}
	if inRecovery {
		return nil
	}
	if err := markFenced(); err != nil {
		return err
	}
	// default_transaction_read_only stops every ordinary write; a session
	// could still SET it off, so sessions that exist now are ended and
	// reconnect into a read-only server.
	for _, q := range []string{
		"ALTER SYSTEM SET default_transaction_read_only = on",
		"SELECT pg_reload_conf()",
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			return d.classify(op, resource, fmt.Errorf("fence read-only (%s): %w", q, err))
		}
	}
	return nil
}

// Promote makes a replica the primary (pg_promote, waiting until it takes
// writes). A node already primary on a newer timeline than it had as a
// standby is done. For a sync database with degrade-after whose other
// copies are all fenced or gone, the new primary starts async at once and
// the exposure is recorded (see Exposures): no standby can stream from it
// before a rejoin, so waiting DegradeAfter would only stall writes.
func (d *Driver) Promote(ctx context.Context, t lifeboat.Target) error {
	const op = lifeboat.OpDatabasePromote
	if _, err := d.node(op, t.Resource); err != nil {
		return err
	}
	defer d.lock(t.Resource)()
	if _, err := d.checkEpoch(op, t); err != nil {
		return err
	}
	if err := d.promote(ctx, op, t.Resource, t.Epoch, true); err != nil {
		return err
	}
	return nil
}

// promote does the work of Promote (failover) and of a switchover's
// hand-over (not a failover: the old primary streams again within a
// moment, so sync is kept).
func (d *Driver) promote(ctx context.Context, op lifeboat.Op, resource string, epoch uint64, failover bool) error {
	if inst := d.instances[resource]; inst != nil && !d.running(resource) {
		if err := inst.Start(ctx); err != nil {
			return lifeboat.Transient(op, resource, err)
		}
	}
	c, err := d.conn(ctx, op, resource)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var inRecovery bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return d.classify(op, resource, err)
	}
	if inRecovery {
		tli, err := timeline(ctx, c, true)
		if err != nil {
			return d.classify(op, resource, err)
		}
		if err := d.record(op, resource, epoch, func(r *nodeRecord) { r.StandbyTimeline = tli }); err != nil {
			return err
		}
		if err := d.waitPromoted(ctx, op, c, resource); err != nil {
			return err
		}
	}
	// A copy that was fenced read-only takes writes again only now, for
	// this epoch.
	var ro bool
	if err := c.QueryRow(ctx, "SELECT current_setting('default_transaction_read_only')::bool").Scan(&ro); err != nil {
		return d.classify(op, resource, err)
	}
	if ro {
		if inst := d.instances[resource]; inst != nil && inst.Fenced() {
			if err := inst.SetFence(false); err != nil {
				return lifeboat.Transient(op, resource, fmt.Errorf("lift the fence in lifeboat.conf: %w", err))
			}
		}
		if _, err := c.Exec(ctx, "ALTER SYSTEM RESET default_transaction_read_only"); err != nil {
			return d.classify(op, resource, err)
		}
		if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			return d.classify(op, resource, err)
		}
	}
	if failover && d.degradeAtOnce(ctx, resource) {
		// Sync with degrade-after, and no copy left that could stream from
		// this one soon: the old primary is fenced or gone and comes back
		// only through a rejoin. Waiting DegradeAfter (and a watcher's
		// tick) for it would only make the failover's writes time out, so
		// run async at once and say so: the exposure is recorded before
		// any write can be let through. WatchSync sets sync again when a
		// standby streams.
		database := databaseOf(resource, d.cfg.Nodes[resource])
		if err := d.exposeFrom(database, resource, time.Now()); err != nil {
			d.log.Warn("promote: cannot record the exposure; staying sync until the watcher degrades", "resource", resource, "err", err)
		} else {
			if _, err := c.Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = ''"); err != nil {
				_, _ = d.endExposure(database, time.Now())
				return d.classify(op, resource, fmt.Errorf("set the replication mode: %w", err))
			}
			if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
				return d.classify(op, resource, err)
			}
			d.log.Warn("promoted with no standby left: running async until one streams, writes from now on may be lost in a failover",
				"database", database, "primary", resource)
			return d.record(op, resource, epoch, func(r *nodeRecord) { r.Fenced, r.FencedAt = false, time.Time{} })
		}
	}
	if err := d.applyReplication(ctx, op, c, resource); err != nil {
		return err
	}
	return d.record(op, resource, epoch, func(r *nodeRecord) { r.Fenced, r.FencedAt = false, time.Time{} })
}

// waitPromoted asks a standby to promote and waits until it is out of
// recovery. pg_promote(wait => true) looks only every 100ms; asking
// without the wait and looking every 2ms on the same session takes
// 50–100ms off a failover's critical path.
func (d *Driver) waitPromoted(ctx context.Context, op lifeboat.Op, c *pgx.Conn, resource string) error {
	var signalled bool
	if err := c.QueryRow(ctx, "SELECT pg_promote(false)").Scan(&signalled); err != nil {
		return d.classify(op, resource, fmt.Errorf("pg_promote: %w", err))
	}
	if !signalled {
		return lifeboat.Transient(op, resource, fmt.Errorf("pg_promote could not signal the postmaster of %s; see its server log", resource))
	}
	const limit = 60 * time.Second
	deadline := time.Now().Add(limit)
	for {
		var inRecovery bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			return d.classify(op, resource, fmt.Errorf("wait for the promotion: %w", err))
		}
		if !inRecovery {
			return nil
		}
		if time.Now().After(deadline) {
			hint := ""
			if inst := d.instances[resource]; inst != nil {
				hint = ": see " + inst.LogFile()
			}
			return lifeboat.Transient(op, resource, fmt.Errorf("%s was asked to promote but is still in recovery after %s%s", resource, limit, hint))
		}
		select {
		case <-ctx.Done():
			return d.classify(op, resource, fmt.Errorf("wait for the promotion: %w", ctx.Err()))
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// degradeAtOnce reports whether a failover's new primary should start
// async: its database is sync with degrade-after, and none of its peers is
// a running standby (one that could stream from it without a rejoin).
// Peers are looked at for at most a second each, in parallel: a hung
// region must not hold the promote.
func (d *Driver) degradeAtOnce(ctx context.Context, primary string) bool {
	r := d.cfg.Replication[databaseOf(primary, d.cfg.Nodes[primary])]
	if r.Mode != ModeSync || r.DegradeAfter <= 0 {
		return false
	}
	peers := d.peers(primary)
	standby := make([]bool, len(peers))
	var wg sync.WaitGroup
	for k, p := range peers {
		if rec, err := d.loadRecord(p); err == nil && rec.Fenced {
			continue // fenced: it takes part again only through a rejoin
		}
		if !d.running(p) {
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if pr, err := d.probe(pctx, lifeboat.OpDatabasePromote, p); err == nil && pr.inRecovery {
				standby[k] = true
			}
		})
	}
	wg.Wait()
	for _, s := range standby {
		if s {
			return false
		}
	}
	return true
}

// timeline returns the node's current timeline: of the WAL it writes on a
// primary, of the WAL it receives or replays on a standby.
func timeline(ctx context.Context, c *pgx.Conn, inRecovery bool) (uint32, error) {
	var tli int64
	if !inRecovery {
		err := c.QueryRow(ctx, "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint").Scan(&tli)
		return uint32(tli), err
	}
	err := c.QueryRow(ctx, `SELECT greatest(
		(SELECT coalesce(max(received_tli), 0) FROM pg_stat_wal_receiver),
		(SELECT min_recovery_end_timeline FROM pg_control_recovery()),
		(SELECT timeline_id FROM pg_control_checkpoint()))`).Scan(&tli)
	return uint32(tli), err
}

// applyReplication sets synchronous_standby_names on a primary from the
// database's replication mode.
func (d *Driver) applyReplication(ctx context.Context, op lifeboat.Op, c *pgx.Conn, primary string) error {
	names := d.syncNames(primary)
	var q string
	if names == "" {
		q = "ALTER SYSTEM RESET synchronous_standby_names"
	} else {
		q = "ALTER SYSTEM SET synchronous_standby_names = " + quoteLiteral(names)
	}
	if _, err := c.Exec(ctx, q); err != nil {
		return d.classify(op, primary, fmt.Errorf("set the replication mode: %w", err))
	}
	if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return d.classify(op, primary, err)
	}
	return nil
}

// syncNames is synchronous_standby_names for primary: its peers when the
// database replicates synchronously, "" otherwise.
func (d *Driver) syncNames(primary string) string {
	n := d.cfg.Nodes[primary]
	r := d.cfg.Replication[databaseOf(primary, n)]
	if r.Mode != ModeSync {
		return ""
	}
	var q []string
	for _, p := range d.peers(primary) {
		q = append(q, quoteIdent(p))
	}
	if len(q) == 0 {
		return ""
	}
	return "FIRST 1 (" + strings.Join(q, ", ") + ")"
}

// SetReplication applies the database's replication mode to its current
// primary (say, after the clusters were built outside the driver).
func (d *Driver) SetReplication(ctx context.Context, primary string) error {
	const op = lifeboat.OpDatabasePromote
	if _, err := d.node(op, primary); err != nil {
		return err
	}
	c, err := d.conn(ctx, op, primary)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	return d.applyReplication(ctx, op, c, primary)
}

// poll calls f every PollInterval until it returns true or an error, or
// ctx ends.
func (d *Driver) poll(ctx context.Context, what string, f func(ctx context.Context) (bool, error)) error {
	var last error
	for {
		ok, err := f(ctx)
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waited for %s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waited for %s: %w", what, ctx.Err())
		case <-time.After(d.cfg.PollInterval):
		}
	}
}

// waitStreaming waits until follower streams from primary, as the
// primary's pg_stat_replication sees it.
func (d *Driver) waitStreaming(ctx context.Context, op lifeboat.Op, follower, primary string) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.StreamTimeout)
	defer cancel()
	err := d.poll(ctx, fmt.Sprintf("%s to stream from %s", follower, primary), func(ctx context.Context) (bool, error) {
		c, err := connect(ctx, d.dsn(primary))
		if err != nil {
			return false, err
		}
		defer c.Close(context.WithoutCancel(ctx))
		var n int
		err = c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'", follower).Scan(&n)
		return n > 0, err
	})
	if err != nil {
		hint := ""
		if inst := d.instances[follower]; inst != nil {
			hint = "; see " + inst.LogFile()
		}
		return lifeboat.Transient(op, follower, fmt.Errorf("%w%s", err, hint))
	}
	return nil
}
