package testfailover

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/drill"
	"github.com/lifeboat-dr/lifeboat/lab"
)

// run is one test failover under way.
type run struct {
	o       Options
	in      *lab.Info
	st      lifeboat.Store
	rep     *Report
	prod    *lab.RegionInfo // the active region: production's primary
	standby *lab.RegionInfo // the drill unit's region: its standby is snapshotted
	// standbyApp is the application_name the standby streams as.
	standbyApp string
	say        func(string, ...any)
	// interrupted: the drill's context ended (Ctrl-C), so a failure says
	// that rather than blame what was being done.
	interrupted func() error

	// Production as the drill found it.
	stateBefore routing
	frontBefore string
	replBefore  replication
	// Production's newest order before and after the snapshot.
	prodBefore, prodAfter newest
	lagBytes              int64
	lagTime               time.Duration
	// probe is the order the drill unit's compute took.
	probe string
}

// routing is what a failover would change in the stored state.
type routing struct {
	Epoch  uint64
	Active string
	Routes map[string]string // traffic resource → region
}

func routingOf(s *lifeboat.State) routing {
	r := routing{Epoch: s.Epoch, Active: s.Active, Routes: map[string]string{}}
	for name, res := range s.Resources {
		if res != nil && res.Kind == lifeboat.KindTraffic {
			r.Routes[name] = res.Routes
		}
	}
	return r
}

func (r routing) String() string {
	var rs []string
	for _, k := range lifeboat.SortedKeys(r.Routes) {
		rs = append(rs, k+"→"+r.Routes[k])
	}
	return fmt.Sprintf("epoch %d, active %s, routes %s", r.Epoch, r.Active, strings.Join(rs, " "))
}

// replication is the primary's view of its standby, and the standby's own.
type replication struct {
	State     string // pg_stat_replication.state of the standby ("" when absent)
	Others    []string
	InRecover bool
	Replay    string // the standby's pg_last_wal_replay_lsn
	Primary   string // the primary's pg_current_wal_lsn
	Err       error
}

func (r replication) streaming() bool { return r.Err == nil && r.State == "streaming" && r.InRecover }

func (r replication) String() string {
	if r.Err != nil {
		return r.Err.Error()
	}
	s := fmt.Sprintf("state %q, replayed %s of the primary's %s", r.State, r.Replay, r.Primary)
	if r.State == "" {
		s = fmt.Sprintf("not in the primary's pg_stat_replication (there: %s)", orNone(r.Others))
	}
	if !r.InRecover {
		s += "; the standby is not in recovery"
	}
	return s
}

// newest is a database's newest order.
type newest struct {
	At    time.Time
	Known bool // false: no orders (or no table) yet
	Err   error
}

func dsn(addr string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=5", lab.DBUser, lab.DBPassword, addr, lab.ShopDatabase)
}

func connect(ctx context.Context, addr string) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return pgx.Connect(cctx, dsn(addr))
}

// check records a check.
func (d *run) check(name string, ok bool, reason string) {
	st := drill.Pass
	if !ok {
		st = drill.Fail
	}
	d.rep.Checks = append(d.rep.Checks, Check{Name: name, Status: st, Reason: reason})
	d.say("%-4s %s: %s", st, name, reason)
}

// fail records a failed check and returns its error.
func (d *run) fail(name string, err error) error {
	if cause := d.interrupted(); cause != nil {
		err = fmt.Errorf("interrupted (%v) before it finished: %w", cause, err)
	}
	d.check(name, false, err.Error())
	return fmt.Errorf("%s: %w", name, err)
}

// keepLogs: a drill that failed keeps its unit's logs beside its report.
func (d *run) keepLogs(standErr error) bool {
	if standErr != nil {
		return true
	}
	for _, c := range d.rep.Checks {
		if c.Status == drill.Fail {
			return true
		}
	}
	return false
}

// before records production as the drill finds it.
func (d *run) before(ctx context.Context, state *lifeboat.State) {
	d.stateBefore = routingOf(state)
	if ls, err := lab.LabStatus(ctx, d.in.Dir); err == nil {
		d.frontBefore = fmt.Sprintf("front door → %s at epoch %d", orNone([]string{ls.Front.Region}), ls.Front.Epoch)
	}
	d.replBefore = d.replication(ctx)
	d.say("production before: %s; %s's standby %s", d.stateBefore, d.rep.Region, d.replBefore)
}

// replication reads pg_stat_replication on production's primary and the
// standby's replay position.
func (d *run) replication(ctx context.Context) replication {
	var r replication
	pc, err := connect(ctx, d.prod.Postgres)
	if err != nil {
		r.Err = fmt.Errorf("production's primary %s does not answer: %w", d.prod.Postgres, err)
		return r
	}
	defer pc.Close(context.WithoutCancel(ctx))
	rows, err := pc.Query(ctx, `SELECT application_name, state FROM pg_stat_replication`)
	if err != nil {
		r.Err = fmt.Errorf("reading pg_stat_replication on %s: %w", d.prod.Postgres, err)
		return r
	}
	for rows.Next() {
		var app, state string
		if err := rows.Scan(&app, &state); err != nil {
			r.Err = err
			return r
		}
		if app == d.standbyApp {
			r.State = state
		} else {
			r.Others = append(r.Others, app+" "+state)
		}
	}
	if err := rows.Err(); err != nil {
		r.Err = err
		return r
	}
	if err := pc.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&r.Primary); err != nil {
		r.Err = fmt.Errorf("reading the primary's WAL position: %w", err)
		return r
	}
	sc, err := connect(ctx, d.standby.Postgres)
	if err != nil {
		r.Err = fmt.Errorf("%s's standby %s does not answer: %w", d.rep.Region, d.standby.Postgres, err)
		return r
	}
	defer sc.Close(context.WithoutCancel(ctx))
	var replay *string
	if err := sc.QueryRow(ctx, `SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text`).Scan(&r.InRecover, &replay); err != nil {
		r.Err = fmt.Errorf("reading the standby's replay position: %w", err)
		return r
	}
	if replay != nil {
		r.Replay = *replay
	}
	return r
}

// newestOrder is the newest order's creation time in the database at addr.
func (d *run) newestOrder(ctx context.Context, addr string) newest {
	c, err := connect(ctx, addr)
	if err != nil {
		return newest{Err: err}
	}
	defer c.Close(context.WithoutCancel(ctx))
	return newestOn(ctx, c)
}

func newestOn(ctx context.Context, c *pgx.Conn) newest {
	var at *time.Time
	err := c.QueryRow(ctx, `SELECT max(created_at) FROM orders`).Scan(&at)
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == "42P01": // no orders table yet
		return newest{}
	case err != nil:
		return newest{Err: err}
	case at == nil:
		return newest{}
	}
	return newest{At: *at, Known: true}
}

// lagAtSnapshot samples the standby's lag on the primary, for the report.
func (d *run) lagAtSnapshot(ctx context.Context) {
	c, err := connect(ctx, d.prod.Postgres)
	if err != nil {
		return
	}
	defer c.Close(context.WithoutCancel(ctx))
	var bytes *int64
	var secs *float64
	if c.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, EXTRACT(epoch FROM replay_lag)::float8
		FROM pg_stat_replication WHERE application_name = $1`, d.standbyApp).Scan(&bytes, &secs) == nil {
		if bytes != nil {
			d.lagBytes = *bytes
		}
		if secs != nil {
			d.lagTime = time.Duration(*secs * float64(time.Second))
		}
	}
}

// exercise checks the drill unit: it follows nothing, takes writes, is as
// fresh as the objective asks, and its compute answers and commits into it.
func (d *run) exercise(ctx context.Context, u *unit) {
	// A copy that waited for a synchronous standby would hang its writes:
	// bound the whole exercise.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := connect(ctx, d.rep.Unit.Database)
	if err != nil {
		d.check("the copy accepts writes", false, fmt.Sprintf("the copy on %s does not answer: %v; see %s", d.rep.Unit.Database, err, u.dbLog()))
		return
	}
	defer c.Close(context.WithoutCancel(ctx))

	// Independent: a primary, following nobody, with nobody following it.
	var inRecovery bool
	var conninfo, syncNames string
	var receivers, senders int
	err = c.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('primary_conninfo'), current_setting('synchronous_standby_names'),
		(SELECT count(*) FROM pg_stat_wal_receiver), (SELECT count(*) FROM pg_stat_replication)`).Scan(&inRecovery, &conninfo, &syncNames, &receivers, &senders)
	_, sigErr := os.Stat(filepath.Join(u.db.DataDir, "standby.signal"))
	switch {
	case err != nil:
		d.check("the copy is isolated", false, "reading its role: "+err.Error())
	case inRecovery || conninfo != "" || syncNames != "" || receivers > 0 || senders > 0 || sigErr == nil:
		d.check("the copy is isolated", false, fmt.Sprintf("in recovery %v, primary_conninfo %q, synchronous_standby_names %q, %d WAL receivers, %d standbys, standby.signal present %v: it is tied to replication; the snapshot must not follow, wait for or feed anything",
			inRecovery, conninfo, syncNames, receivers, senders, sigErr == nil))
	default:
		d.check("the copy is isolated", true, "a primary of its own: no primary_conninfo, no synchronous standbys, no standby.signal, no WAL receiver, no standby")
	}

	d.measureFreshness(ctx, c)

	// Writes, straight into the copy.
	var wrote string
	err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS lifeboat_test_failover (id text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO lifeboat_test_failover (id) VALUES ($1)`, d.rep.ID)
		return err
	})
	if err == nil {
		err = c.QueryRow(ctx, `SELECT id FROM lifeboat_test_failover WHERE id = $1`, d.rep.ID).Scan(&wrote)
	}
	if err != nil {
		d.check("the copy accepts writes", false, fmt.Sprintf("a committed write into the copy on %s failed: %v; see %s", d.rep.Unit.Database, err, u.dbLog()))
	} else {
		d.check("the copy accepts writes", true, "committed a row into lifeboat_test_failover and read it back")
	}

	// The compute: reads, and an order that commits into the copy.
	d.probe = d.rep.ID + "-probe"
	hc := &http.Client{Timeout: 5 * time.Second}
	if ok, why := d.order(ctx, hc, u, c); ok {
		d.check("the drill unit's compute answers", true, why)
	} else {
		d.check("the drill unit's compute answers", false, why+"; see "+u.shopLog())
	}
}

// order posts the probe order to the unit's compute, reads it back through
// it, and finds it in the copy.
func (d *run) order(ctx context.Context, hc *http.Client, u *unit, c *pgx.Conn) (bool, string) {
	base := "http://" + u.shopAddr
	code, body, err := get(ctx, hc, base+"/readyz")
	if err != nil || code != http.StatusOK {
		return false, fmt.Sprintf("GET /readyz: %d %s %v", code, body, err)
	}
	payload, _ := json.Marshal(map[string]any{"item": d.probe, "qty": 1})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/orders", bytes.NewReader(payload))
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return false, "POST /orders: " + err.Error()
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	var placed struct {
		ID     int64  `json:"id"`
		Region string `json:"region"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &placed) != nil || placed.ID <= 0 {
		return false, fmt.Sprintf("POST /orders: %s %s", resp.Status, strings.TrimSpace(string(b)))
	}
	code, body, err = get(ctx, hc, fmt.Sprintf("%s/orders/%d", base, placed.ID))
	if err != nil || code != http.StatusOK || !strings.Contains(body, d.probe) {
		return false, fmt.Sprintf("GET /orders/%d after POST: %d %s %v", placed.ID, code, body, err)
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM orders WHERE item = $1`, d.probe).Scan(&n); err != nil || n != 1 {
		return false, fmt.Sprintf("order %d (%s) was acknowledged but the copy holds %d of it (%v)", placed.ID, d.probe, n, err)
	}
	d.rep.ProbeOrder = d.probe
	return true, fmt.Sprintf("GET /readyz 200; POST /orders → 201 order %d (%s) in %s; GET /orders/%d 200; the order is in the copy", placed.ID, d.probe, placed.Region, placed.ID)
}

// measureFreshness sets the copy's newest order against production's,
// sampled just after the snapshot was taken: how much a failover at that
// moment would have lost, at most.
func (d *run) measureFreshness(ctx context.Context, c *pgx.Conn) {
	f := &Freshness{LagBytes: d.lagBytes, ReplayLag: d.lagTime, Bound: d.rep.MaxStaleness}
	d.rep.Freshness = f
	cp := newestOn(ctx, c)
	prod := d.prodAfter
	switch {
	case cp.Err != nil:
		f.Note = "reading the copy's newest order: " + cp.Err.Error()
		d.check("the copy is fresh", false, f.Note)
		return
	case prod.Err != nil:
		f.Note = "reading production's newest order: " + prod.Err.Error()
		d.check("the copy is fresh", false, f.Note)
		return
	}
	f.ProductionNewest, f.CopyNewest = prod.At, cp.At
	switch {
	case !prod.Known:
		f.Measured = true
		f.Note = "production holds no order yet: nothing a failover could lose"
	case !cp.Known:
		f.Measured = true
		f.Staleness = time.Since(prod.At)
		f.Note = "the copy holds no order although production does"
	default:
		f.Measured = true
		f.Staleness = max(0, prod.At.Sub(cp.At))
		f.Note = fmt.Sprintf("newest order %s in production (sampled after the snapshot), %s in the copy", prod.At.UTC().Format("15:04:05.000"), cp.At.UTC().Format("15:04:05.000"))
	}
	if d.lagTime > 0 || d.lagBytes > 0 {
		f.Note += fmt.Sprintf("; the standby's replay lag then %s, %d bytes", round(d.lagTime), d.lagBytes)
	}
	ok := f.Staleness <= f.Bound
	d.check("the copy is fresh", ok, fmt.Sprintf("%s behind production (at most %s): %s", round(f.Staleness), round(f.Bound), f.Note))
}

// after checks production once the unit is gone: its standby still
// streams and replays, the probe order is in neither of its copies, and
// no traffic moved.
func (d *run) after(ctx context.Context) {
	rb := d.replBefore
	ra := d.replication(ctx)
	// A standby that streamed before and reconnects within the settle time
	// still counts: the drill never touched it, but a lab may be slow to
	// answer. One that did not stream before is not waited for.
	deadline := time.Now().Add(d.o.Settle)
	for rb.streaming() && !ra.streaming() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		ra = d.replication(ctx)
	}
	d.check("production's standby streams", rb.streaming() && ra.streaming(),
		fmt.Sprintf("%s's standby (%s) before: %s; after: %s", d.rep.Region, d.standbyApp, rb, ra))

	d.checkReplay(ctx, rb)

	if d.probe != "" {
		var where []string
		for _, r := range []*lab.RegionInfo{d.prod, d.standby} {
			c, err := connect(ctx, r.Postgres)
			if err != nil {
				where = append(where, fmt.Sprintf("%s: cannot tell (%v)", r.Name, err))
				continue
			}
			var n int
			err = c.QueryRow(ctx, `SELECT count(*) FROM orders WHERE item = $1`, d.probe).Scan(&n)
			c.Close(context.WithoutCancel(ctx))
			var pe *pgconn.PgError
			switch {
			case errors.As(err, &pe) && pe.Code == "42P01":
			case err != nil:
				where = append(where, fmt.Sprintf("%s: cannot tell (%v)", r.Name, err))
			case n > 0:
				where = append(where, fmt.Sprintf("%s: %d of it", r.Name, n))
			}
		}
		if len(where) == 0 {
			d.check("the drill's order stayed in the drill", true, fmt.Sprintf("%s is in neither production's primary (%s) nor its standby (%s)", d.probe, d.prod.Name, d.standby.Name))
		} else {
			d.check("the drill's order stayed in the drill", false, fmt.Sprintf("%s: %s", d.probe, strings.Join(where, "; ")))
		}
	}

	state, err := readState(ctx, d.st)
	if err != nil {
		d.check("no traffic switched", false, "reading the state after the drill: "+err.Error())
	} else {
		after := routingOf(state)
		same := after.String() == d.stateBefore.String() && state.Run == ""
		why := "state " + after.String()
		if !same {
			why = fmt.Sprintf("state before: %s; after: %s (run %q)", d.stateBefore, after, state.Run)
		}
		if ls, err := lab.LabStatus(ctx, d.in.Dir); err == nil && d.frontBefore != "" {
			frontAfter := fmt.Sprintf("front door → %s at epoch %d", orNone([]string{ls.Front.Region}), ls.Front.Epoch)
			if frontAfter != d.frontBefore {
				same = false
				why += fmt.Sprintf("; %s before, %s after", d.frontBefore, frontAfter)
			} else {
				why += "; " + frontAfter
			}
		}
		if same {
			why += ", as before"
		}
		d.check("no traffic switched", same, why)
	}
}

// checkReplay: the standby keeps replaying. When production wrote nothing
// during the drill there is no WAL to replay; a WAL marker is written on
// the primary (pg_logical_emit_message: a record in the WAL, no table
// touched) and the standby must replay past it.
func (d *run) checkReplay(ctx context.Context, rb replication) {
	const name = "production's standby replays"
	pc, err := connect(ctx, d.prod.Postgres)
	if err != nil {
		d.check(name, false, fmt.Sprintf("production's primary %s does not answer: %v", d.prod.Postgres, err))
		return
	}
	defer pc.Close(context.WithoutCancel(ctx))
	var target string
	var moved bool
	if err := pc.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, pg_current_wal_lsn() > $1::pg_lsn`, orZeroLSN(rb.Replay)).Scan(&target, &moved); err != nil {
		d.check(name, false, "reading the primary's WAL position: "+err.Error())
		return
	}
	how := "production wrote during the drill"
	if !moved {
		if err := pc.QueryRow(ctx, `SELECT pg_logical_emit_message(false, 'lifeboat.test-failover', $1)::text`, d.rep.ID).Scan(&target); err != nil {
			d.check(name, false, "writing a WAL marker on the primary: "+err.Error())
			return
		}
		how = "a WAL marker written on the primary after the drill"
	}
	sc, err := connect(ctx, d.standby.Postgres)
	if err != nil {
		d.check(name, false, fmt.Sprintf("%s's standby %s does not answer: %v", d.rep.Region, d.standby.Postgres, err))
		return
	}
	defer sc.Close(context.WithoutCancel(ctx))
	deadline := time.Now().Add(d.o.Settle)
	var replay string
	for {
		var ok bool
		var r *string
		err := sc.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn()::text, COALESCE(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)`, target).Scan(&r, &ok)
		if r != nil {
			replay = *r
		}
		if err == nil && ok {
			d.check(name, true, fmt.Sprintf("replayed %s → %s, past %s (%s)", orNone([]string{rb.Replay}), replay, target, how))
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.check(name, false, fmt.Sprintf("replay at %s after %s, not past %s (%s): %v; look at %s/%s/pg.log", orNone([]string{replay}), d.o.Settle, target, how, err, d.in.Dir, d.standby.Name))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func orZeroLSN(s string) string {
	if s == "" {
		return "0/0"
	}
	return s
}

func orNone(s []string) string {
	var out []string
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
