package dashboard

import (
	"fmt"
	"net/http"
	"time"
)

// heartbeat keeps idle streams (and proxies) from timing out.
const heartbeat = 15 * time.Second

// events streams snapshots as server-sent events ("snapshot", with the
// JSON of a Snapshot), the latest at once and then on every change. It
// needs a viewer's session or bearer token, checked with the API.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	tok, _, ok := d.bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="lifeboat"`)
		writeError(w, http.StatusUnauthorized, "no credentials: the event stream needs a login session or a bearer token",
			"log in on the dashboard, or send Authorization: Bearer <token>")
		return
	}
	// The API decides: the same 401 and 403 as GET /v1/status.
	if rec := d.ask(r, http.MethodGet, "/v1/whoami", tok); rec.code != http.StatusOK {
		rec.copyTo(w)
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// A lost stream is retried after a second by the browser.
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil {
		return
	}
	_ = rc.Flush()
	ch, unsubscribe := d.feed.subscribe()
	defer unsubscribe()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	var sent uint64
	for {
		select {
		case <-ch:
			b, seq := d.feed.snapshot()
			if seq == sent || b == nil {
				continue
			}
			sent = seq
			if _, err := fmt.Fprintf(w, "event: snapshot\nid: %d\ndata: %s\n\n", seq, b); err != nil {
				return
			}
		case <-tick.C:
			if d.session(r) == nil && r.Header.Get("Authorization") == "" {
				return // logged out or expired: the page asks to log in again
			}
			if _, err := fmt.Fprint(w, ": still here\n\n"); err != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-d.feed.done:
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
