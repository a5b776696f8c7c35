// Package gate is the tenants' PostgreSQL front door (issue 7, point 4;
// seed 004: "consider triggering the individual restores by the end-user
// connections").
//
// A client connects to the gate as it would to PostgreSQL. The gate reads
// the startup message, takes its database (default: the user, as
// PostgreSQL does) as the tenant's name, and looks the tenant up in the
// catalog (a Directory):
//
//   - available: it dials the tenant's pool in the tenant's region, sends
//     it the same startup message and relays bytes both ways until either
//     side closes. Authentication is end to end, between the client and
//     the pool's PostgreSQL: the gate never sees a password.
//   - queued, restoring or failed: it asks the recovery to hurry the
//     tenant (to the head of the queue) and holds the connection until the
//     tenant is available, for up to Config.Wait; then it goes on as
//     above, or answers FATAL 57P03 (cannot_connect_now) saying what is
//     happening.
//   - not in the catalog: FATAL 3D000.
//
// Each pool, in each region, takes at most its capacity of sessions at
// once (SetCapacity; a failover raises it); a connection over the limit
// waits in line, within the same Wait, then gets FATAL 53300.
//
// TLS: the gate answers SSLRequest and GSSENCRequest with 'N' (not
// supported) and the client goes on in clear text, as libpq does with
// sslmode=prefer. The gate is meant to listen on loopback or a private
// network next to the application; it does not terminate TLS.
//
// Cancel requests: the gate forwards the pool's BackendKeyData to the
// client unchanged and remembers, per relayed session, which pool it came
// from; a CancelRequest naming a live session is forwarded to that pool,
// any other is dropped (closed without an answer, as PostgreSQL does).
// Keys are the pool's process id and secret together, so two pools' keys
// collide only if both their pid and their random secret match.
package gate

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/lifeboat-dr/lifeboat"
)

// OpStart is the Op of the errors Start returns.
const OpStart lifeboat.Op = "tenant.gate.start"

// ErrUnknownTenant is what a Directory returns (wrapped, for errors.Is)
// for a tenant that is not in the catalog.
var ErrUnknownTenant = errors.New("tenant does not exist in the catalog")

// Location is where a tenant's data is served now.
type Location struct {
	Tenant lifeboat.Tenant
	// Addr is the host:port of the tenant's pool in Tenant.Region; "" if
	// that pool does not exist there (yet): the gate holds the connection.
	Addr string
	// Database, if set, is the database the gate connects to in the pool
	// instead of the tenant's name: the shared database of a pool with
	// schema isolation.
	Database string
	// Schema, if set, is put first in the session's search_path (schema
	// isolation): the client's queries find its tenant's tables unqualified.
	Schema string
}

// Directory looks tenants up in the catalog.
type Directory interface {
	// Locate returns where name is served now, or an error wrapping
	// ErrUnknownTenant. Other errors (the catalog is unreachable) are
	// retried while the connection is held.
	Locate(ctx context.Context, name string) (Location, error)
}

// Recovery is the scheduler that makes tenants available after a
// failover.
type Recovery interface {
	// Hurry moves name to the head of the recovery queue (a client is
	// waiting for it). It must not block.
	Hurry(name string)
}

// LocateFunc adapts a function to Directory (say, the catalog's Get plus
// the pool's address in the tenant's region).
type LocateFunc func(ctx context.Context, name string) (Location, error)

// Locate calls f.
func (f LocateFunc) Locate(ctx context.Context, name string) (Location, error) { return f(ctx, name) }

// HurryFunc adapts a function to Recovery.
type HurryFunc func(name string)

// Hurry calls f.
func (f HurryFunc) Hurry(name string) { f(name) }

// Queue, if the Recovery also implements it, lets the gate tell a client
// that gave up waiting where its tenant stands in line.
type Queue interface {
	// Position is name's place in the recovery queue (1 is next) and the
	// queue's length; ok is false if name is not queued.
	Position(name string) (pos, of int, ok bool)
}

// Stats counts the gate's connections since Start.
type Stats struct {
	Accepted uint64 // client connections accepted
	Relayed  uint64 // sessions relayed to a pool
	Held     uint64 // connections held for their tenant's recovery
	Refused  uint64 // answered with an error (unknown tenant, timeout, full pool, pool down)
	Cancels  uint64 // cancel requests forwarded to a pool
}

// Gate is the listener and its sessions.
type Gate struct {
	c   Config
	dir Directory
	rec Recovery

	ctx    context.Context // ended by Close
	cancel context.CancelFunc

	mu       sync.Mutex
	ln       net.Listener
	started  bool
	closed   bool
	clients  map[net.Conn]struct{} // every accepted connection, until its handler returns
	sessions map[*session]struct{}
	keys     map[cancelKey]string // a relayed session's backend key → its pool's address
	waiters  map[string]*waiter   // tenants being waited for, by name
	pools    map[poolKey]*slots
	wg       sync.WaitGroup

	accepted, relayed, held, refused, cancels atomic.Uint64
}

type poolKey struct{ pool, region string }

type cancelKey struct {
	pid    uint32
	secret string
}

// session is one relayed connection.
type session struct {
	tenant string
	client net.Conn
	up     net.Conn
	addr   string
	key    *cancelKey // under Gate.mu
}

// New checks c and builds a gate that listens nowhere until Start. dir is
// the catalog; rec, which may be nil, is hurried for held tenants (nil:
// held connections wait for the recovery's own order).
func New(c Config, dir Directory, rec Recovery) (*Gate, error) {
	err := ValidateConfig(c)
	if dir == nil {
		err = errors.Join(err, errors.New("tenant gate: no Directory: the gate needs the catalog to find each tenant's pool"))
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Gate{c: c, dir: dir, rec: rec, ctx: ctx, cancel: cancel,
		clients: map[net.Conn]struct{}{}, sessions: map[*session]struct{}{}, keys: map[cancelKey]string{},
		waiters: map[string]*waiter{}, pools: map[poolKey]*slots{}}, nil
}

// Start listens on Config.Listen.
func (g *Gate) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.started {
		return lifeboat.Permanent(OpStart, g.c.Listen, errors.New("the tenant gate was already started or closed: build a new one with New"))
	}
	ln, err := net.Listen("tcp", g.c.Listen)
	if err != nil {
		return lifeboat.Transient(OpStart, g.c.Listen, fmt.Errorf("the tenant gate cannot listen on %s (%w): is another gate or a PostgreSQL using that port? (tenants.gate.listen)", g.c.Listen, err))
	}
	g.ln, g.started = ln, true
	g.wg.Add(1)
	go g.accept()
	g.c.Log.Info("tenant gate: listening", "addr", ln.Addr().String(), "wait", g.c.Wait)
	return nil
}

// Addr is the address the gate listens on ("" before Start).
func (g *Gate) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln == nil {
		return ""
	}
	return g.ln.Addr().String()
}

// Stats returns the gate's counters.
func (g *Gate) Stats() Stats {
	return Stats{Accepted: g.accepted.Load(), Relayed: g.relayed.Load(), Held: g.held.Load(),
		Refused: g.refused.Load(), Cancels: g.cancels.Load()}
}

// SetCapacity sets how many sessions pool takes at once in region; 0
// lifts the limit. Raising it lets waiting connections through at once;
// lowering it closes nothing: new sessions wait until enough have ended.
func (g *Gate) SetCapacity(pool, region string, n int) {
	g.slotsFor(pool, region).setLimit(n)
	g.c.Log.Info("tenant gate: pool capacity set", "pool", pool, "region", region, "sessions", n)
}

// Usage reports pool's sessions in region.
func (g *Gate) Usage(pool, region string) Usage {
	limit, used, waiting := g.slotsFor(pool, region).usage()
	return Usage{Pool: pool, Region: region, Limit: limit, InUse: used, Waiting: waiting}
}

func (g *Gate) slotsFor(pool, region string) *slots {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := poolKey{pool, region}
	s := g.pools[k]
	if s == nil {
		s = &slots{}
		g.pools[k] = s
	}
	return s
}

// Wake makes the gate look name up now rather than at its next poll: the
// recovery calls it when it has made name available, so held connections
// go through without waiting for the poll.
func (g *Gate) Wake(name string) {
	g.mu.Lock()
	w := g.waiters[name]
	g.mu.Unlock()
	if w != nil {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// Disconnect closes every relayed session of tenant and returns how many:
// after a tenant moves (failback), its clients reconnect to the new place.
func (g *Gate) Disconnect(tenant string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for s := range g.sessions {
		if s.tenant == tenant {
			s.client.Close()
			s.up.Close()
			n++
		}
	}
	return n
}

// Close stops listening, closes every held and relayed connection, and
// waits for the gate's goroutines.
func (g *Gate) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.cancel()
	var err error
	if g.ln != nil {
		err = g.ln.Close()
	}
	for c := range g.clients {
		c.Close()
	}
	for s := range g.sessions {
		s.up.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	return err
}

func (g *Gate) accept() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			c.Close()
			return
		}
		g.clients[c] = struct{}{}
		g.wg.Add(1)
		g.mu.Unlock()
		g.accepted.Add(1)
		go g.handle(c)
	}
}

func (g *Gate) handle(c net.Conn) {
	defer g.wg.Done()
	defer func() {
		g.mu.Lock()
		delete(g.clients, c)
		g.mu.Unlock()
		c.Close()
	}()
	_ = c.SetDeadline(time.Now().Add(g.c.StartupTimeout))
	msg, raw, err := readStartup(c)
	if err != nil {
		g.c.Log.Debug("tenant gate: no startup message", "client", c.RemoteAddr().String(), "err", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	switch m := msg.(type) {
	case *pgproto3.CancelRequest:
		g.forwardCancel(m)
		return
	case *pgproto3.StartupMessage:
		g.serve(c, m, raw)
	}
}

// serve routes one client whose startup message is m (raw: as received).
func (g *Gate) serve(c net.Conn, m *pgproto3.StartupMessage, raw []byte) {
	name := m.Parameters["database"]
	if name == "" {
		name = m.Parameters["user"]
	}
	if name == "" {
		g.refuse(c, "08P01", "the startup message names neither a database nor a user, so the tenant gate cannot tell which tenant to connect to", "set dbname (the tenant's name) in the connection string")
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.c.Wait)
	defer cancel()
	// A held client that gives up must not keep its tenant hurried or a
	// pool slot reserved.
	stopWatch := watchHangup(c, cancel)
	start := time.Now()
	loc, err := g.route(ctx, name)
	if err == nil {
		err = g.slotsFor(loc.Tenant.Pool, loc.Tenant.Region).acquire(ctx)
		if err != nil {
			err = &fullError{loc: loc}
		} else {
			defer g.slotsFor(loc.Tenant.Pool, loc.Tenant.Region).release()
		}
	}
	if !stopWatch() {
		return // the client hung up, or broke the protocol
	}
	if g.ctx.Err() != nil {
		return // closing
	}
	if err != nil {
		g.refuseFor(c, name, err, time.Since(start))
		return
	}

	startup := raw
	if loc.Database != "" || loc.Schema != "" {
		startup, err = rewriteStartup(m, loc)
		if err != nil {
			g.refuse(c, "08P01", fmt.Sprintf("tenant %s: the startup message could not be rewritten for pool %s (%v)", name, loc.Tenant.Pool, err), "")
			return
		}
	}
	d := net.Dialer{Timeout: g.c.DialTimeout}
	up, err := d.DialContext(g.ctx, "tcp", loc.Addr)
	if err != nil {
		if g.ctx.Err() == nil {
			g.c.Log.Warn("tenant gate: pool did not answer", "tenant", name, "pool", loc.Tenant.Pool, "region", loc.Tenant.Region, "addr", loc.Addr, "err", err)
			g.refuse(c, "08006", fmt.Sprintf("tenant %s: its pool %s in %s (%s) did not answer: %v", name, loc.Tenant.Pool, loc.Tenant.Region, loc.Addr, err),
				"the pool's PostgreSQL may be down or restarting; try again shortly, and check the pool's status with lifeboat status")
		}
		return
	}
	s := &session{tenant: name, client: c, up: up, addr: loc.Addr}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		up.Close()
		return
	}
	g.sessions[s] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.sessions, s)
		if s.key != nil {
			delete(g.keys, *s.key)
		}
		g.mu.Unlock()
		up.Close()
	}()
	if _, err := up.Write(startup); err != nil {
		return
	}
	g.relayed.Add(1)
	g.relay(s)
}

// route finds where name is served, holding the connection while the
// tenant is recovered.
func (g *Gate) route(ctx context.Context, name string) (Location, error) {
	lctx, cancel := context.WithTimeout(ctx, g.c.LocateTimeout)
	loc, err := g.dir.Locate(lctx, name)
	cancel()
	if err == nil && routable(loc) {
		return loc, nil
	}
	if errors.Is(err, ErrUnknownTenant) {
		return loc, err
	}
	g.held.Add(1)
	return g.await(ctx, name, loc, err)
}

// routable says whether the gate can connect a client to loc now. A
// read-only copy (failback) is served: its writes fail in PostgreSQL with
// a clear error, its reads work.
func routable(loc Location) bool {
	s := loc.Tenant.State
	return loc.Addr != "" && (s == lifeboat.TenantAvailable || s == lifeboat.TenantReadOnly)
}

// refuseFor answers a client that could not be routed, saying why.
func (g *Gate) refuseFor(c net.Conn, name string, err error, waited time.Duration) {
	waited = waited.Round(time.Millisecond)
	var he *holdError
	var fe *fullError
	switch {
	case errors.Is(err, ErrUnknownTenant):
		g.refuse(c, "3D000", fmt.Sprintf("tenant %q does not exist in the catalog", name),
			"check the database name in the connection string (it names the tenant); lifeboat tenant list shows the tenants")
	case errors.As(err, &fe):
		t := fe.loc.Tenant
		limit, used, waiting := g.slotsFor(t.Pool, t.Region).usage()
		g.refuse(c, "53300", fmt.Sprintf("tenant %s: pool %s in %s is at its limit of %d sessions (%d in use, %d waiting); waited %v", name, t.Pool, t.Region, limit, used, waiting, waited),
			"try again shortly; if the pool is too small for the load, raise its capacity (tenants.pools.<pool>.capacity)")
	case errors.As(err, &he):
		msg, hint := g.heldMessage(name, he, waited)
		g.refuse(c, "57P03", msg, hint)
	default:
		g.refuse(c, "57P03", fmt.Sprintf("tenant %s: %v", name, err), "try again shortly")
	}
}

// heldMessage says what is happening to a tenant a client waited for in vain.
func (g *Gate) heldMessage(name string, he *holdError, waited time.Duration) (msg, hint string) {
	hint = "try again shortly; lifeboat tenant show " + name + " shows its recovery"
	if he.err != nil && he.loc.Tenant.Name == "" {
		return fmt.Sprintf("tenant %s: the catalog could not be read (%v); waited %v", name, he.err, waited),
			"the management catalog may be failing over; try again shortly"
	}
	t := he.loc.Tenant
	pos := ""
	if q, ok := g.rec.(Queue); ok {
		if p, of, ok := q.Position(name); ok {
			pos = fmt.Sprintf(" (position %d of %d)", p, of)
		}
	}
	switch t.State {
	case lifeboat.TenantQueued:
		return fmt.Sprintf("tenant %s is queued for recovery in %s%s; waited %v; try again shortly", name, t.Region, pos, waited), hint
	case lifeboat.TenantRestoring:
		return fmt.Sprintf("tenant %s is being restored in %s%s; waited %v; try again shortly", name, t.Region, pos, waited), hint
	case lifeboat.TenantFailed:
		reason := t.Reason
		if reason == "" {
			reason = "no reason recorded"
		}
		retry := ""
		if g.rec != nil {
			retry = "; a retry was requested"
		}
		return fmt.Sprintf("tenant %s: its recovery in %s failed (%s)%s%s; waited %v", name, t.Region, reason, retry, pos, waited), hint
	case lifeboat.TenantAvailable, lifeboat.TenantReadOnly:
		return fmt.Sprintf("tenant %s is %s in %s but its pool %s has no address there yet; waited %v", name, t.State, t.Region, t.Pool, waited),
			"the pool may still be being created in " + t.Region + "; try again shortly"
	}
	return fmt.Sprintf("tenant %s is %q in %s (pool %s); waited %v; try again shortly", name, t.State, t.Region, t.Pool, waited), hint
}

// refuse sends a FATAL error to the client (which then closes).
func (g *Gate) refuse(c net.Conn, code, msg, hint string) {
	g.refused.Add(1)
	g.c.Log.Info("tenant gate: connection refused", "client", c.RemoteAddr().String(), "sqlstate", code, "msg", msg)
	buf, err := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg, Hint: hint}).Encode(nil)
	if err != nil {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(g.c.DialTimeout))
	_, _ = c.Write(buf)
}

// holdError: the tenant did not become available within the wait.
type holdError struct {
	loc Location // the last look-up
	err error    // the last look-up's error, if it failed
}

func (e *holdError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("tenant not available in time (catalog: %v)", e.err)
	}
	return fmt.Sprintf("tenant %s not available in time (state %s)", e.loc.Tenant.Name, e.loc.Tenant.State)
}

// fullError: the pool had no free slot within the wait.
type fullError struct{ loc Location }

func (e *fullError) Error() string {
	return fmt.Sprintf("pool %s in %s is full", e.loc.Tenant.Pool, e.loc.Tenant.Region)
}

// watchHangup cancels when the client closes (or sends bytes it must not
// send yet) while it is held. stop ends the watch; it reports whether the
// connection is still good to use.
func watchHangup(c net.Conn, cancel context.CancelFunc) (stop func() bool) {
	done := make(chan bool, 1)
	go func() {
		var b [1]byte
		_, err := c.Read(b[:])
		var ne net.Error
		// Only our own deadline (stop) leaves the connection usable: data
		// or EOF before we answered means the client gave up or broke the
		// protocol.
		good := err != nil && errors.As(err, &ne) && ne.Timeout()
		if !good {
			cancel()
		}
		done <- good
	}()
	return func() bool {
		_ = c.SetReadDeadline(time.Now())
		good := <-done
		_ = c.SetReadDeadline(time.Time{})
		return good
	}
}

// readStartup reads the client's startup message, declining TLS and GSS
// encryption on the way. raw is the message as received.
func readStartup(c net.Conn) (msg pgproto3.FrontendMessage, raw []byte, err error) {
	const (
		sslRequest = 80877103
		gssRequest = 80877104
		cancelCode = 80877102
	)
	// A client may ask for GSS, then TLS, then start: at most three messages.
	for range 3 {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return nil, nil, err
		}
		n := int(int32(binary.BigEndian.Uint32(hdr[:])))
		if n < 8 || n > 10000 {
			return nil, nil, fmt.Errorf("startup packet of %d bytes", n)
		}
		raw = make([]byte, n)
		copy(raw, hdr[:])
		if _, err := io.ReadFull(c, raw[4:]); err != nil {
			return nil, nil, err
		}
		body := raw[4:]
		switch code := binary.BigEndian.Uint32(body); code {
		case sslRequest, gssRequest:
			if _, err := c.Write([]byte{'N'}); err != nil {
				return nil, nil, err
			}
		case cancelCode:
			var m pgproto3.CancelRequest
			if err := m.Decode(body); err != nil {
				return nil, nil, err
			}
			return &m, raw, nil
		default:
			var m pgproto3.StartupMessage
			if err := m.Decode(body); err != nil {
				return nil, nil, err
			}
			return &m, raw, nil
		}
	}
	return nil, nil, errors.New("no startup message after three encryption requests")
}

// rewriteStartup points m at loc's database and schema.
func rewriteStartup(m *pgproto3.StartupMessage, loc Location) ([]byte, error) {
	p := make(map[string]string, len(m.Parameters)+1)
	for k, v := range m.Parameters {
		p[k] = v
	}
	if loc.Database != "" {
		p["database"] = loc.Database
	}
	if loc.Schema != "" {
		// options are split on spaces, a backslash escaping the next character.
		esc := strings.NewReplacer(`\`, `\\`, " ", `\ `).Replace
		opt := "-c search_path=" + esc(`"`+strings.ReplaceAll(loc.Schema, `"`, `""`)+`"`)
		if o := p["options"]; o != "" {
			opt = o + " " + opt
		}
		p["options"] = opt
	}
	return (&pgproto3.StartupMessage{ProtocolVersion: m.ProtocolVersion, Parameters: p}).Encode(nil)
}

// relay copies bytes both ways until either side ends. It reads the
// pool's messages until the session is ready for queries, to learn the
// backend key for cancel requests, then copies raw (spliced on Linux).
func (g *Gate) relay(s *session) {
	pipe := func(dst, src net.Conn, first func() error, done chan<- error) {
		var err error
		if first != nil {
			err = first()
		}
		if err == nil {
			_, err = io.Copy(dst, src)
		}
		// Pass the half-close on, so the peer can finish its answer.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- err
	}
	toUp, toClient := make(chan error, 1), make(chan error, 1)
	go pipe(s.up, s.client, nil, toUp)
	go pipe(s.client, s.up, func() error { return g.startupReplies(s) }, toClient)
	select {
	case err := <-toUp:
		if err == nil {
			<-toClient // the client half-closed: it still reads the answer
		} else {
			s.client.Close()
			s.up.Close()
			<-toClient
		}
	case <-toClient:
		s.client.Close()
		s.up.Close()
		<-toUp
	}
}

// startupReplies copies the pool's messages to the client up to the first
// ReadyForQuery, recording the BackendKeyData.
func (g *Gate) startupReplies(s *session) error {
	br := bufio.NewReaderSize(s.up, 8192)
	bw := bufio.NewWriterSize(s.client, 8192)
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			_ = bw.Flush()
			return err
		}
		n := int(int32(binary.BigEndian.Uint32(hdr[1:]))) - 4
		if n < 0 {
			return fmt.Errorf("pool %s sent a message of length %d", s.addr, n+4)
		}
		if _, err := bw.Write(hdr[:]); err != nil {
			return err
		}
		if hdr[0] == 'K' && n <= 260 {
			body := make([]byte, n)
			if _, err := io.ReadFull(br, body); err != nil {
				return err
			}
			var k pgproto3.BackendKeyData
			if k.Decode(body) == nil {
				g.remember(s, cancelKey{k.ProcessID, string(k.SecretKey)})
			}
			if _, err := bw.Write(body); err != nil {
				return err
			}
		} else if _, err := io.CopyN(bw, br, int64(n)); err != nil {
			return err
		}
		if hdr[0] == 'Z' {
			break
		}
		// Flush before a read could block, so the client sees every
		// authentication request it must answer.
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := s.client.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func (g *Gate) remember(s *session, k cancelKey) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.key != nil {
		delete(g.keys, *s.key)
	}
	s.key = &k
	g.keys[k] = s.addr
}

// forwardCancel sends m to the pool of the session it names, if any.
func (g *Gate) forwardCancel(m *pgproto3.CancelRequest) {
	g.mu.Lock()
	addr := g.keys[cancelKey{m.ProcessID, string(m.SecretKey)}]
	g.mu.Unlock()
	if addr == "" {
		g.c.Log.Debug("tenant gate: cancel request for no live session dropped", "pid", m.ProcessID)
		return
	}
	buf, err := m.Encode(nil)
	if err != nil {
		return
	}
	d := net.Dialer{Timeout: g.c.DialTimeout}
	up, err := d.DialContext(g.ctx, "tcp", addr)
	if err != nil {
		g.c.Log.Warn("tenant gate: cancel request not forwarded: pool did not answer", "addr", addr, "err", err)
		return
	}
	defer up.Close()
	_ = up.SetDeadline(time.Now().Add(g.c.DialTimeout))
	if _, err := up.Write(buf); err != nil {
		return
	}
	g.cancels.Add(1)
	// PostgreSQL closes once it has read the request.
	_, _ = io.Copy(io.Discard, up)
}
