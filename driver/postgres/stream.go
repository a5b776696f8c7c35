package postgres

import (
	"context"
	"net"
	"strconv"

	"github.com/lifeboat-dr/lifeboat"
)

// StreamState reports a standby's WAL receiver state as PostgreSQL names
// it ("streaming", "catchup", "startup", "waiting"…, or "stopped" when no
// WAL receiver runs) and what it streams from: the peer's resource and
// address when the address is one the driver knows ("shop-db-west
// (127.0.0.1:5432)"), else the bare host:port. A copy that is not a
// replica has no WAL receiver: its state says what it is instead. The
// monitor's readiness check reads it (monitor.StreamReporter), because a
// replica whose receiver stopped reports a small lag while it falls ever
// further behind.
func (d *Driver) StreamState(ctx context.Context, t lifeboat.Target) (state, upstream string, err error) {
	ns, err := d.Inspect(ctx, t)
	if err != nil {
		return "", "", err
	}
	if ns.Role != lifeboat.DBReplica {
		return "not a replica (" + string(ns.Role) + ")", "", nil
	}
	state = ns.ReplicationState
	if state == "" {
		state = "stopped"
	}
	return state, d.upstreamName(t.Resource, ns.Upstream), nil
}

// upstreamName names the peer a standby streams from when its address is
// the peer's (directly or through a WAN link, see Node.ReachedFrom).
func (d *Driver) upstreamName(resource, addr string) string {
	if addr == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	for _, p := range d.peers(resource) {
		h, pp := d.reach(resource, p)
		if strconv.Itoa(pp) == port && (h == host || sameLoopback(h, host)) {
			return p + " (" + addr + ")"
		}
	}
	return addr
}

// sameLoopback: "localhost" and 127.0.0.1 name the same host.
func sameLoopback(a, b string) bool {
	isLo := func(h string) bool { return h == "localhost" || h == "127.0.0.1" || h == "::1" }
	return isLo(a) && isLo(b)
}
