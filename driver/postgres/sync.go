package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// Exposure is a period when a sync database ran asynchronously because its
// standby was gone: writes committed then could be lost in a failover (RPO
// exposure). End is zero while it lasts.
type Exposure struct {
	Database string    `json:"database"`
	Primary  string    `json:"primary"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end,omitzero"`
}

// Exposures returns the degraded periods WatchSync recorded for a database.
func (d *Driver) Exposures(database string) []Exposure {
	d.emu.Lock()
	defer d.emu.Unlock()
	return append([]Exposure(nil), d.exposures[database]...)
}

func (d *Driver) recordExposure(database string, f func([]Exposure) []Exposure) error {
	d.emu.Lock()
	d.exposures[database] = f(d.exposures[database])
	data, err := json.MarshalIndent(d.exposures[database], "", "  ")
	d.emu.Unlock()
	if err != nil {
		return err
	}
	dir := filepath.Join(d.cfg.StateDir, "exposure")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, database+".json"), data, 0o644, false)
}

// exposeFrom opens an exposure of database on primary at `at`, unless one
// is open for it already. One left open for another primary (the one
// before a failover) ends at `at`: from then on primary is the one
// running async.
func (d *Driver) exposeFrom(database, primary string, at time.Time) error {
	return d.recordExposure(database, func(e []Exposure) []Exposure {
		if n := len(e); n > 0 && e[n-1].End.IsZero() {
			if e[n-1].Primary == primary {
				return e
			}
			e[n-1].End = at
		}
		return append(e, Exposure{Database: database, Primary: primary, Start: at})
	})
}

// endExposure ends the open exposure of database, if any, at `at`.
func (d *Driver) endExposure(database string, at time.Time) (ended bool, err error) {
	err = d.recordExposure(database, func(e []Exposure) []Exposure {
		if n := len(e); n > 0 && e[n-1].End.IsZero() {
			e[n-1].End, ended = at, true
		}
		return e
	})
	return ended, err
}

// exposed reports whether an exposure of database is open.
func (d *Driver) exposed(database string) bool {
	d.emu.Lock()
	defer d.emu.Unlock()
	e := d.exposures[database]
	return len(e) > 0 && e[len(e)-1].End.IsZero()
}

// WatchSync keeps a database in sync mode with degrade-after D: when its
// primary has had no streaming standby for D, it clears
// synchronous_standby_names so writes go on (and records the start of an
// RPO exposure); when a standby streams again it sets the names back (and
// records the end). It looks every `every` until ctx ends, and returns
// ctx's error then. A primary that cannot be reached is skipped: there is
// nothing to degrade. After a failover it watches the new primary (see
// syncView), with a fresh count of how long its standby has been gone.
func (d *Driver) WatchSync(ctx context.Context, database string, every time.Duration) error {
	r, ok := d.cfg.Replication[database]
	if !ok || r.Mode != ModeSync || r.DegradeAfter <= 0 {
		return lifeboat.Permanent("", database, fmt.Errorf("WatchSync: database %s is not sync with degrade-after (replication %+v); strict and async databases need no watcher", database, r))
	}
	if every <= 0 {
		every = time.Second
	}
	// A node that does not answer within `look` is left out of this view:
	// a hung region must not hold the watcher (connect_timeout is 5s).
	look := min(max(2*every, 500*time.Millisecond), 5*time.Second)
	var watched string
	var goneSince time.Time
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		v, err := d.syncView(ctx, database, look)
		now := time.Now()
		if err == nil && v.name != watched {
			// A new primary: how long the old one's standby was gone says
			// nothing about the new one's.
			watched, goneSince = v.name, time.Time{}
		}
		switch {
		case err != nil:
			d.log.Debug("sync watcher: no primary to look at", "database", database, "err", err)
		case v.streaming == 0:
			if goneSince.IsZero() {
				goneSince = now
			}
			if v.names == "" {
				// Already async (an earlier watcher, or a failover's
				// promote): the exposure goes on, recorded once.
				if err := d.exposeFrom(database, v.name, now); err != nil {
					d.log.Warn("sync watcher: cannot record the exposure", "err", err)
				}
				break
			}
			if now.Sub(goneSince) < r.DegradeAfter {
				break
			}
			// Record the exposure before acting: a write let through by the
			// change must find it already reported.
			if err := d.exposeFrom(database, v.name, now); err != nil {
				d.log.Warn("sync watcher: cannot record the exposure; not degrading", "err", err)
				break
			}
			if err := d.setSyncNames(ctx, v.name, ""); err != nil {
				d.log.Warn("sync watcher: cannot degrade to async", "primary", v.name, "err", err)
				// Nothing degraded: the exposure recorded above ends now.
				_, _ = d.endExposure(database, time.Now())
				break
			}
			d.log.Warn("standby gone: running async, writes from now on may be lost in a failover", "database", database,
				"primary", v.name, "gone_for", now.Sub(goneSince))
		default:
			goneSince = time.Time{}
			if want := d.syncNames(v.name); v.names != want {
				if err := d.setSyncNames(ctx, v.name, want); err != nil {
					d.log.Warn("sync watcher: cannot restore sync", "primary", v.name, "err", err)
					break
				}
			}
			ended, err := d.endExposure(database, now)
			if err != nil {
				d.log.Warn("sync watcher: cannot record the exposure", "err", err)
			}
			if ended {
				d.log.Info("standby back: sync again", "database", database, "primary", v.name)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// syncNode is what syncView sees of one copy.
type syncNode struct {
	name                 string
	inRecovery, readOnly bool
	timeline             int64
	names                string
	streaming            int
}

// syncView is the database's primary as the watcher sees it: its name,
// synchronous_standby_names and how many of its peers stream from it.
// During a failover two copies are out of recovery: the old primary,
// fenced (read-only, or recorded fenced), and the new one. The fenced one
// is never the primary; among several writable ones, the newest timeline
// is (a promote starts a new timeline). Nodes are asked in parallel, each
// for at most `look`.
func (d *Driver) syncView(ctx context.Context, database string, look time.Duration) (syncNode, error) {
	var names []string
	for name, n := range d.cfg.Nodes {
		if databaseOf(name, n) == database {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	seen := make([]*syncNode, len(names))
	var wg sync.WaitGroup
	for k, name := range names {
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, look)
			defer cancel()
			c, err := connect(lctx, d.dsn(name))
			if err != nil {
				return
			}
			defer c.Close(context.WithoutCancel(ctx))
			v := syncNode{name: name}
			err = c.QueryRow(lctx, `SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')::bool,
				current_setting('synchronous_standby_names'),
				CASE WHEN pg_is_in_recovery() THEN 0
					ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END,
				(SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name = ANY($1))`, d.peers(name)).
				Scan(&v.inRecovery, &v.readOnly, &v.names, &v.timeline, &v.streaming)
			if err == nil {
				seen[k] = &v
			}
		})
	}
	wg.Wait()
	var best *syncNode
	for _, v := range seen {
		if v == nil || v.inRecovery || v.readOnly {
			continue
		}
		if rec, err := d.loadRecord(v.name); err == nil && rec.Fenced {
			continue
		}
		if best == nil || v.timeline > best.timeline {
			best = v
		}
	}
	if best == nil {
		return syncNode{}, fmt.Errorf("no reachable, unfenced primary of %s", database)
	}
	return *best, nil
}

func (d *Driver) setSyncNames(ctx context.Context, primary, names string) error {
	c, err := connect(ctx, d.dsn(primary))
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = "+quoteLiteral(names)); err != nil {
		return err
	}
	_, err = c.Exec(ctx, "SELECT pg_reload_conf()")
	return err
}
