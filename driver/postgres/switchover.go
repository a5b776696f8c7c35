package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// SwitchoverReport says how a switchover went: the old primary's final
// LSN, and how long each phase took. Writes were impossible from Stop's
// start until Promoted.
type SwitchoverReport struct {
	From, To string
	Epoch    uint64
	FinalLSN LSN
	Timeline uint32
	// Stopped: the clean shutdown of the old primary; CaughtUp: the wait
	// for the new one to replay the final LSN; Promoted: pg_promote;
	// Streaming: until the old primary streams from the new one.
	Stopped, CaughtUp, Promoted, Streaming time.Duration
	// WriteUnavailable is Stopped + CaughtUp + Promoted.
	WriteUnavailable time.Duration
}

// LastSwitchover returns the report of the newest switchover to resource.
func (d *Driver) LastSwitchover(resource string) (SwitchoverReport, bool) {
	d.qmu.Lock()
	defer d.qmu.Unlock()
	r, ok := d.switchovers[resource]
	return r, ok
}

// Switchover moves the primary from `from` to t with zero data loss, the way
// CloudNativePG does: a clean shutdown of from (which sends every WAL record
// to connected standbys), its final checkpoint LSN from pg_controldata, a
// wait until t has replayed past it, pg_promote on t, then from restarts as
// a standby of t. No rewind is needed: from's WAL ends where t's new
// timeline begins. Every phase can be repeated; a retry resumes where the
// last attempt stopped.
func (d *Driver) Switchover(ctx context.Context, from, t lifeboat.Target) error {
	const op = lifeboat.OpDatabaseSwitchover
	fn, err := d.node(op, from.Resource)
	if err != nil {
		return err
	}
	tn, err := d.node(op, t.Resource)
	if err != nil {
		return err
	}
	if databaseOf(from.Resource, fn) != databaseOf(t.Resource, tn) {
		return lifeboat.Permanent(op, t.Resource, fmt.Errorf("cannot switch over from %s: it is a copy of another database", from.Resource))
	}
	inst := d.instances[from.Resource]
	if inst == nil {
		return lifeboat.Permanent(op, from.Resource, fmt.Errorf("zero-loss switchover needs to stop and restart the old primary, but Lifeboat does not run its host: set data-dir for node %s", from.Resource))
	}
	defer d.lock(from.Resource, t.Resource)()
	if _, err := d.checkEpoch(op, from); err != nil {
		return err
	}
	if _, err := d.checkEpoch(op, t); err != nil {
		return err
	}
	rep := SwitchoverReport{From: from.Resource, To: t.Resource, Epoch: t.Epoch}
	pt, err := d.probe(ctx, op, t.Resource)
	if err != nil {
		return err
	}
	if pt.inRecovery {
		if err := d.handOver(ctx, op, inst, from, t, &rep); err != nil {
			return err
		}
	} else if d.running(from.Resource) {
		pf, err := d.probe(ctx, op, from.Resource)
		if err != nil {
			return err
		}
		if !pf.inRecovery {
			return lifeboat.Permanent(op, t.Resource, fmt.Errorf("both %s and %s are primaries: a switchover cannot tell which holds the newest writes; fence one, then rejoin it", from.Resource, t.Resource))
		}
	}
	// The new primary runs; make the old one its standby.
	begin := time.Now()
	if !d.running(from.Resource) {
		if err := inst.Follow(d.streamConninfo(from.Resource, t.Resource)); err != nil {
			return lifeboat.Transient(op, from.Resource, fmt.Errorf("configure as a standby of %s: %w", t.Resource, err))
		}
		if err := inst.Start(ctx); err != nil {
			return lifeboat.Transient(op, from.Resource, fmt.Errorf("restart as a standby of %s: %w", t.Resource, err))
		}
	}
	if err := d.waitStreaming(ctx, op, from.Resource, t.Resource); err != nil {
		return err
	}
	rep.Streaming = time.Since(begin)
	if err := d.record(op, from.Resource, from.Epoch, func(r *nodeRecord) { r.Fenced, r.FencedAt = false, time.Time{} }); err != nil {
		return err
	}
	if err := d.record(op, t.Resource, t.Epoch, nil); err != nil {
		return err
	}
	if rep.FinalLSN != 0 { // a retry that only waited keeps the first report
		d.qmu.Lock()
		d.switchovers[t.Resource] = rep
		d.qmu.Unlock()
	}
	d.log.Info("switchover done", "from", from.Resource, "to", t.Resource, "epoch", t.Epoch, "final_lsn", rep.FinalLSN,
		"write_unavailable", rep.WriteUnavailable)
	return nil
}

// handOver stops from cleanly, waits until t has replayed from's final
// checkpoint, and promotes t.
func (d *Driver) handOver(ctx context.Context, op lifeboat.Op, inst *Instance, from, t lifeboat.Target, rep *SwitchoverReport) error {
	begin := time.Now()
	if d.running(from.Resource) {
		pf, err := d.probe(ctx, op, from.Resource)
		if err != nil {
			return err
		}
		if pf.inRecovery {
			return lifeboat.Permanent(op, from.Resource, fmt.Errorf("neither %s nor %s is a primary: nothing to switch over; promote one (failover) first", from.Resource, t.Resource))
		}
		if err := d.record(op, from.Resource, from.Epoch, func(r *nodeRecord) { r.Fenced, r.FencedAt = true, time.Now().UTC() }); err != nil {
			return err
		}
		if err := inst.Stop(ctx, "fast"); err != nil {
			return lifeboat.Transient(op, from.Resource, fmt.Errorf("clean shutdown of the old primary: %w", err))
		}
	}
	rep.Stopped = time.Since(begin)
	cd, err := inst.ControlData(ctx)
	if err != nil {
		return lifeboat.Transient(op, from.Resource, err)
	}
	if st := cd["Database cluster state"]; st != "shut down" {
		return lifeboat.Permanent(op, from.Resource, fmt.Errorf("the old primary's cluster state is %q, not \"shut down\": it did not stop cleanly, so some of its WAL may never have reached %s and zero loss cannot be proven; start it, then switch over again (or fail over and rejoin it, which quarantines what it alone holds)", st, t.Resource))
	}
	final, err := ParseLSN(cd["Latest checkpoint location"])
	if err != nil {
		return lifeboat.Permanent(op, from.Resource, fmt.Errorf("pg_controldata of %s: %w", inst.DataDir, err))
	}
	tli64, _ := strconv.ParseUint(cd["Latest checkpoint's TimeLineID"], 10, 32)
	rep.FinalLSN, rep.Timeline = final, uint32(tli64)

	begin = time.Now()
	// Replay past the checkpoint record itself: its end, not its start, is
	// the last byte the old primary wrote.
	err = d.poll(ctx, fmt.Sprintf("%s to replay the old primary's final LSN %s", t.Resource, final), func(ctx context.Context) (bool, error) {
		c, err := connect(ctx, d.dsn(t.Resource))
		if err != nil {
			return false, err
		}
		defer c.Close(context.WithoutCancel(ctx))
		var replay *string
		if err := c.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn()::text").Scan(&replay); err != nil || replay == nil {
			return false, err
		}
		l, err := ParseLSN(*replay)
		return l > final, err
	})
	if err != nil {
		return lifeboat.Transient(op, t.Resource, fmt.Errorf("%w; the old primary %s stays stopped (fenced) until the switchover is retried", err, from.Resource))
	}
	rep.CaughtUp = time.Since(begin)
	begin = time.Now()
	if err := d.promote(ctx, op, t.Resource, t.Epoch, false); err != nil {
		return err
	}
	rep.Promoted = time.Since(begin)
	rep.WriteUnavailable = rep.Stopped + rep.CaughtUp + rep.Promoted
	return nil
}
