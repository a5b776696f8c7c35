package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
	return writeFileAtomic(filepath.Join(dir, database+".json"), data, 0o644)
}

// WatchSync keeps a database in sync mode with degrade-after D: when its
// primary has had no streaming standby for D, it clears
// synchronous_standby_names so writes go on (and records the start of an
// RPO exposure); when a standby streams again it sets the names back (and
// records the end). It looks every `every` until ctx ends, and returns
// ctx's error then. A primary that cannot be reached is skipped: there is
// nothing to degrade.
func (d *Driver) WatchSync(ctx context.Context, database string, every time.Duration) error {
	r, ok := d.cfg.Replication[database]
	if !ok || r.Mode != ModeSync || r.DegradeAfter <= 0 {
		return lifeboat.Permanent("", database, fmt.Errorf("WatchSync: database %s is not sync with degrade-after (replication %+v); strict and async databases need no watcher", database, r))
	}
	if every <= 0 {
		every = time.Second
	}
	var goneSince time.Time
	degraded := false
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		primary, streaming, names, err := d.syncView(ctx, database)
		now := time.Now()
		switch {
		case err != nil:
			d.log.Debug("sync watcher: no primary to look at", "database", database, "err", err)
		case streaming == 0:
			if goneSince.IsZero() {
				goneSince = now
			}
			if names == "" && !degraded {
				// Left degraded by an earlier watcher: the exposure goes on.
				degraded = true
				_ = d.recordExposure(database, func(e []Exposure) []Exposure {
					return append(e, Exposure{Database: database, Primary: primary, Start: now})
				})
			}
			if !degraded && now.Sub(goneSince) >= r.DegradeAfter {
				// Record the exposure before acting: a write let through
				// by the change must find it already reported.
				if err := d.recordExposure(database, func(e []Exposure) []Exposure {
					return append(e, Exposure{Database: database, Primary: primary, Start: now})
				}); err != nil {
					d.log.Warn("sync watcher: cannot record the exposure; not degrading", "err", err)
					break
				}
				if err := d.setSyncNames(ctx, primary, ""); err != nil {
					d.log.Warn("sync watcher: cannot degrade to async", "primary", primary, "err", err)
					// Nothing degraded: the exposure recorded above ends now.
					_ = d.recordExposure(database, func(e []Exposure) []Exposure {
						if len(e) > 0 && e[len(e)-1].End.IsZero() {
							e[len(e)-1].End = time.Now()
						}
						return e
					})
					break
				}
				degraded = true
				d.log.Warn("standby gone: running async, writes from now on may be lost in a failover", "database", database,
					"primary", primary, "gone_for", now.Sub(goneSince))
			}
		default:
			goneSince = time.Time{}
			if degraded || names != d.syncNames(primary) {
				if err := d.setSyncNames(ctx, primary, d.syncNames(primary)); err != nil {
					d.log.Warn("sync watcher: cannot restore sync", "primary", primary, "err", err)
					break
				}
				if degraded {
					d.log.Info("standby back: sync again", "database", database, "primary", primary)
					if err := d.recordExposure(database, func(e []Exposure) []Exposure {
						if len(e) > 0 && e[len(e)-1].End.IsZero() {
							e[len(e)-1].End = now
						}
						return e
					}); err != nil {
						d.log.Warn("sync watcher: cannot record the exposure", "err", err)
					}
				}
				degraded = false
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// syncView finds the database's primary and how many of its peers stream
// from it.
func (d *Driver) syncView(ctx context.Context, database string) (primary string, streaming int, names string, err error) {
	err = fmt.Errorf("no reachable primary of %s", database)
	for name, n := range d.cfg.Nodes {
		if databaseOf(name, n) != database {
			continue
		}
		c, cerr := connect(ctx, d.dsn(name))
		if cerr != nil {
			continue
		}
		var inRecovery bool
		qerr := c.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'),
			(SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name = ANY($1))`, d.peers(name)).
			Scan(&inRecovery, &names, &streaming)
		c.Close(context.WithoutCancel(ctx))
		if qerr == nil && !inRecovery {
			return name, streaming, names, nil
		}
	}
	return "", 0, "", err
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
