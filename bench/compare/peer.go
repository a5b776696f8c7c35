package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// member is a peer's PostgreSQL node.
type member struct {
	site string // its namespace
	addr string // host:port on the bridge
	data string // its data directory
}

// partitionWait is how long a partition round waits for a write to be
// acknowledged after the fault before it reports no failover.
const partitionWait = 90 * time.Second

// localIDBase keeps the ids of the client inside the primary's site apart
// from the main writer's.
const localIDBase = int64(1) << 40

// peerFault runs the load on uri (from the host), injects the fault on the
// member primary() names, and measures the RTO and the acknowledged writes
// lost. For a partition, a second client inside the primary's site writes
// straight to it throughout, to see whether the cut-off primary goes on
// acknowledging writes (split brain) and whether those survive.
func peerFault(ctx context.Context, s *sites, uri, fault string, primary func() (member, error)) (result, error) {
	if err := createTable(ctx, uri); err != nil {
		return result{}, err
	}
	// The standby must stream before the load starts (an agent may report
	// it a replica a loop before it does): otherwise the writes lost would
	// measure the start-up, not the fault.
	if err := waitFor(ctx, time.Minute, "the primary's standby streaming", func() bool { return streaming(ctx, uri) }); err != nil {
		return result{}, err
	}
	p, err := primary()
	if err != nil {
		return result{}, fmt.Errorf("finding the primary before the fault: %w", err)
	}
	l := startSQLLoad(ctx, uri)
	defer l.halt()
	var local *sqlLoad
	if fault == faultPartition {
		lu, err := directURI(uri, p.addr)
		if err != nil {
			return result{}, err
		}
		local = startSQLLoadFrom(ctx, lu, s.dial(p.site), localIDBase)
		defer local.halt()
	}
	before := time.Now()
	if err := waitFor(ctx, 10*time.Second, "the load's first acknowledged write", func() bool { _, ok := l.rto(before, 0); return ok }); err != nil {
		return result{}, err
	}
	if local != nil {
		if err := waitFor(ctx, 10*time.Second, "the first write acknowledged to the client in the primary's site", func() bool { _, ok := local.rto(before, 0); return ok }); err != nil {
			return result{}, err
		}
	}
	time.Sleep(time.Second)

	var at time.Time
	within := 3 * time.Minute
	switch fault {
	case faultKill:
		pid, err := postmasterPID(p.data)
		if err != nil {
			return result{}, err
		}
		at = time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return result{}, fmt.Errorf("SIGKILL of the primary's postmaster (PID %d): %w", pid, err)
		}
	case faultPartition:
		within = partitionWait
		if at, err = s.isolate(p.site); err != nil {
			return result{}, err
		}
	}
	res := result{}
	if err := waitFor(ctx, within, "writes acknowledged again, for a second, after the fault", func() bool { _, ok := l.rto(at, time.Second); return ok }); err != nil {
		if ctx.Err() != nil || fault != faultPartition {
			return result{}, err
		}
		// Reported as it is: no failover on its own.
		res.rto, res.none = within, true
	} else {
		time.Sleep(time.Second)
	}
	ws := l.halt()
	if !res.none {
		// Over every write, now that they are all in.
		res.rto, _ = l.rto(at, 0)
	}
	// Healed before the agents are stopped, so that they stop cleanly.
	defer func() { _ = s.net.HealAll() }()
	var notes []string
	if local != nil {
		lws := local.halt()
		n, last := 0, time.Duration(0)
		for _, w := range lws {
			if w.acked && !w.sent.Before(at) {
				n++
				last = w.sent.Add(w.took).Sub(at)
			}
		}
		if n > 0 {
			msg := fmt.Sprintf("the cut-off primary acknowledged %d writes from its own site after the fault (the last %s after)", n, last.Round(time.Millisecond))
			if !res.none && last > res.rto {
				msg += ": split brain, two primaries took writes"
			}
			notes = append(notes, msg)
		} else {
			notes = append(notes, "the cut-off primary acknowledged no write after the fault")
		}
		ws = append(ws, lws...)
	}
	if res.none {
		// No writable primary on the clients' side: nothing to read back.
		res.lostUnknown = true
		for _, w := range ws {
			if w.acked {
				res.acked++
			}
		}
		res.note = joinNotes(append([]string{fmt.Sprintf("no failover in %s (the writer's last error: %s)", within, lastError(ws))}, notes...))
		return res, nil
	}
	if res.lost, res.acked, err = lostWrites(ctx, uri, ws); err != nil {
		return result{}, err
	}
	res.note = joinNotes(notes)
	return res, nil
}

// directURI is uri with host:port as its only host and no session
// attribute, so the client writes to that node whatever its role.
func directURI(uri, hostport string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("the load's URI %q: %w", uri, err)
	}
	u.Host = hostport
	q := u.Query()
	q.Del("target_session_attrs")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func joinNotes(ns []string) string {
	ns = slices.DeleteFunc(ns, func(s string) bool { return s == "" })
	out := ""
	for i, n := range ns {
		if i > 0 {
			out += "; "
		}
		out += n
	}
	return out
}

var errNoPrimary = errors.New("no member is the primary")

// streaming says whether the primary behind uri has a standby streaming.
func streaming(ctx context.Context, uri string) bool {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, uri)
	if err != nil {
		return false
	}
	defer c.Close(context.WithoutCancel(ctx))
	var n int
	err = c.QueryRow(cctx, `SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'`).Scan(&n)
	return err == nil && n > 0
}

// lastError is the main writer's last failure, shortened.
func lastError(ws []write) string {
	for i := len(ws) - 1; i >= 0; i-- {
		if e := ws[i].errMsg; e != "" && ws[i].id < localIDBase {
			if len(e) > 160 {
				e = e[:160] + "…"
			}
			return e
		}
	}
	return "none"
}
