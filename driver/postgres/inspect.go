package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// NodeStatus is what Inspect sees of a node.
type NodeStatus struct {
	Resource string
	Region   string
	Role     lifeboat.DatabaseRole
	// Running: a postmaster answers.
	Running bool
	// Epoch is the newest epoch the driver acted for on this node.
	Epoch uint64
	// Fenced: stopped or read-only by Lifeboat's hand.
	Fenced   bool
	ReadOnly bool
	Timeline uint32
	// SystemID identifies the cluster; every copy of a database shares it.
	SystemID string
	// CurrentLSN is where a primary writes; FlushLSN what it (or a standby:
	// what it received and) flushed; ReplayLSN what a standby has applied.
	CurrentLSN, FlushLSN, ReplayLSN LSN
	// LagBytes and Lag: how far a standby's replay is behind its primary.
	LagBytes int64
	Lag      time.Duration
	// ReplicationState: a standby's WAL receiver status (streaming,
	// stopped…), or on a primary the state of its first standby.
	ReplicationState string
	// SyncState of a standby as its primary sees it (async, sync,
	// potential, quorum).
	SyncState string
	// Upstream is host:port a standby streams from.
	Upstream string
	// Standbys of a primary (pg_stat_replication).
	Standbys []StandbyStatus
}

// StandbyStatus is one row of a primary's pg_stat_replication.
type StandbyStatus struct {
	Name                                   string // application_name
	State                                  string
	SyncState                              string
	SentLSN, WriteLSN, FlushLSN, ReplayLSN LSN
	LagBytes                               int64
	ReplayLag                              time.Duration
}

// Inspect returns a detailed status of a node. A node Lifeboat stopped
// (fenced) is reported fenced; a node down otherwise is a transient error.
func (d *Driver) Inspect(ctx context.Context, t lifeboat.Target) (NodeStatus, error) {
	const op = lifeboat.Op(lifeboat.ActDatabaseStatus)
	n, err := d.node(op, t.Resource)
	if err != nil {
		return NodeStatus{}, err
	}
	rec, err := d.loadRecord(t.Resource)
	if err != nil {
		return NodeStatus{}, lifeboat.Permanent(op, t.Resource, err)
	}
	ns := NodeStatus{Resource: t.Resource, Region: n.Region, Epoch: rec.Epoch, Fenced: rec.Fenced}
	if inst := d.instances[t.Resource]; inst != nil && !d.running(t.Resource) {
		if rec.Fenced {
			ns.Role = lifeboat.DBFenced
			return ns, nil
		}
		return ns, lifeboat.Transient(op, t.Resource, fmt.Errorf("PostgreSQL is not running in %s and Lifeboat did not stop it: it crashed or was stopped by hand; see %s, start it with pg_ctl, or fence it", inst.DataDir, inst.LogFile()))
	}
	c, err := d.conn(ctx, op, t.Resource)
	if err != nil {
		return ns, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	ns.Running = true
	var sysid int64
	var inRecovery bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')::bool, (SELECT system_identifier FROM pg_control_system())").
		Scan(&inRecovery, &ns.ReadOnly, &sysid); err != nil {
		return ns, d.classify(op, t.Resource, err)
	}
	ns.SystemID = strconv.FormatUint(uint64(sysid), 10)
	if ns.Timeline, err = timeline(ctx, c, inRecovery); err != nil {
		return ns, d.classify(op, t.Resource, err)
	}
	lsn := func(s *string) LSN {
		if s == nil {
			return 0
		}
		l, _ := ParseLSN(*s)
		return l
	}
	if !inRecovery {
		ns.Role = lifeboat.DBPrimary
		if ns.ReadOnly && rec.Fenced {
			ns.Role = lifeboat.DBFenced
		}
		var cur, flush *string
		if err := c.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text, pg_current_wal_flush_lsn()::text").Scan(&cur, &flush); err != nil {
			return ns, d.classify(op, t.Resource, err)
		}
		ns.CurrentLSN, ns.FlushLSN = lsn(cur), lsn(flush)
		rows, err := c.Query(ctx, `SELECT application_name, coalesce(state, ''), coalesce(sync_state, ''),
			sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
			coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint,
			coalesce(extract(epoch FROM replay_lag), 0)::float8
			FROM pg_stat_replication ORDER BY application_name`)
		if err != nil {
			return ns, d.classify(op, t.Resource, err)
		}
		for rows.Next() {
			var s StandbyStatus
			var sent, write, fl, replay *string
			var lag float64
			if err := rows.Scan(&s.Name, &s.State, &s.SyncState, &sent, &write, &fl, &replay, &s.LagBytes, &lag); err != nil {
				rows.Close()
				return ns, d.classify(op, t.Resource, err)
			}
			s.SentLSN, s.WriteLSN, s.FlushLSN, s.ReplayLSN = lsn(sent), lsn(write), lsn(fl), lsn(replay)
			s.ReplayLag = time.Duration(lag * float64(time.Second))
			ns.Standbys = append(ns.Standbys, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return ns, d.classify(op, t.Resource, err)
		}
		if len(ns.Standbys) > 0 {
			ns.ReplicationState, ns.SyncState = ns.Standbys[0].State, ns.Standbys[0].SyncState
		}
		return ns, nil
	}
	ns.Role = lifeboat.DBReplica
	var recv, replay *string
	var replayTS *time.Time
	if err := c.QueryRow(ctx, "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()").
		Scan(&recv, &replay, &replayTS); err != nil {
		return ns, d.classify(op, t.Resource, err)
	}
	ns.FlushLSN, ns.ReplayLSN = lsn(recv), lsn(replay)
	ns.CurrentLSN = ns.ReplayLSN
	var status, host *string
	var port *int32
	err = c.QueryRow(ctx, "SELECT status, sender_host, sender_port FROM pg_stat_wal_receiver").Scan(&status, &host, &port)
	if err == nil {
		if status != nil {
			ns.ReplicationState = *status
		}
		if host != nil && port != nil {
			ns.Upstream = fmt.Sprintf("%s:%d", *host, *port)
		}
	} else {
		ns.ReplicationState = "stopped" // no WAL receiver
	}
	// The lag is measured against the primary when one of the peers is it;
	// otherwise against what this standby has received.
	ns.LagBytes = int64(ns.FlushLSN) - int64(ns.ReplayLSN)
	for _, p := range d.peers(t.Resource) {
		pc, err := connect(ctx, d.dsn(p))
		if err != nil {
			continue
		}
		var primaryInRecovery bool
		var cur string
		var sync *string
		var lag *float64
		err = pc.QueryRow(ctx, `SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN '0/0' ELSE pg_current_wal_lsn()::text END,
			(SELECT sync_state FROM pg_stat_replication WHERE application_name = $1 LIMIT 1),
			(SELECT extract(epoch FROM replay_lag)::float8 FROM pg_stat_replication WHERE application_name = $1 LIMIT 1)`, t.Resource).
			Scan(&primaryInRecovery, &cur, &sync, &lag)
		pc.Close(context.WithoutCancel(ctx))
		if err != nil || primaryInRecovery {
			continue
		}
		pl, _ := ParseLSN(cur)
		ns.LagBytes = int64(pl) - int64(ns.ReplayLSN)
		if sync != nil {
			ns.SyncState = *sync
		}
		if lag != nil {
			ns.Lag = time.Duration(*lag * float64(time.Second))
		}
		break
	}
	if ns.LagBytes < 0 {
		ns.LagBytes = 0
	}
	if ns.LagBytes == 0 {
		ns.Lag = 0
	} else if ns.Lag == 0 && replayTS != nil {
		ns.Lag = time.Since(*replayTS)
	}
	return ns, nil
}
