// Package dashboard is the live web dashboard of 'lifeboat serve': one
// page (plain HTML, CSS and a small script, embedded in the binary) that
// shows the regions and the four quadrants with each component's health,
// the active region and epoch, the replication-lag / RPO exposure chart,
// the run in progress with its steps, readiness with reasons, history with
// links to drill reports, and an approve button for operators.
//
// Everything is under /ui/: the page, its assets, a login form, the
// server-sent events stream (/ui/events) that pushes the status whenever it
// changes, and /ui/api/v1/…, which forwards to the HTTP API with the
// caller's token, so the API's roles and audit trail apply to every call
// the page makes.
//
// Auth: the login form posts a bearer token once; the dashboard checks it
// with the API (GET /v1/whoami) and keeps it server-side in a session,
// giving the browser only a random session id in an HttpOnly,
// SameSite=Strict cookie (Secure over TLS) that expires after an idle hour
// and at most 12 hours after login. The token never reaches the page's
// script, a URL or a log. Mutating calls through /ui/api also need the
// session's CSRF token in the X-Lifeboat-CSRF header. A client that sends
// its own Authorization header (curl, the CLI) bypasses the session.
package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/api"
	"github.com/lifeboat-dr/lifeboat/driver"
)

//go:embed assets
var assets embed.FS

// Prefix is where the dashboard is mounted: mux.Handle(Prefix, d).
const Prefix = "/ui/"

const (
	cookieName = "lifeboat_session"
	csrfHeader = "X-Lifeboat-CSRF"
)

// Config configures a Dashboard. Start from DefaultConfig.
type Config struct {
	Spec  *lifeboat.Spec
	Store lifeboat.Store
	// API is the HTTP API (*api.Server): every call of the page, and the
	// token check at login, go through it.
	API http.Handler
	// Drivers asks the standby databases for their lag when no controller
	// publishes an RPO exposure (default driver.FromSpec).
	Drivers func(*lifeboat.Spec, *lifeboat.State) (lifeboat.Drivers, error)
	// Poll is how often the store is read while a page watches; a change
	// is pushed at once. Refresh is how often the slower parts (live
	// routes, readiness, controllers, lag) are asked again; they are also
	// asked when the active region, the epoch or the run changes, but not
	// more often than MinRefresh.
	Poll, Refresh, MinRefresh time.Duration
	// History is how many lag samples the chart keeps.
	History int
	// SessionIdle and SessionMax bound a login session.
	SessionIdle, SessionMax time.Duration
	Log                     *slog.Logger
	Now                     func() time.Time
}

// DefaultConfig returns the defaults; set Spec, Store and API.
func DefaultConfig() Config {
	return Config{
		Drivers: driver.FromSpec, Poll: 200 * time.Millisecond, Refresh: 3 * time.Second, MinRefresh: time.Second,
		History: 200, SessionIdle: time.Hour, SessionMax: 12 * time.Hour,
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil)), Now: time.Now,
	}
}

// ValidateConfig says what is wrong, all at once.
func ValidateConfig(c Config) error {
	var errs []error
	if c.Spec == nil {
		errs = append(errs, errors.New("dashboard config: Spec is nil: load it with config.Load"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("dashboard config: Store is nil: give the store the API serves"))
	}
	if c.API == nil {
		errs = append(errs, errors.New("dashboard config: API is nil: give the *api.Server (the dashboard calls it with the caller's token)"))
	}
	if c.Drivers == nil || c.Log == nil || c.Now == nil {
		errs = append(errs, errors.New("dashboard config: Drivers, Log and Now must be set: start from dashboard.DefaultConfig()"))
	}
	if c.Poll <= 0 || c.Refresh <= 0 || c.MinRefresh < 0 || c.History < 1 || c.SessionIdle <= 0 || c.SessionMax <= 0 {
		errs = append(errs, fmt.Errorf("dashboard config: Poll %s, Refresh %s, History %d, SessionIdle %s and SessionMax %s must be positive (MinRefresh %s not negative)",
			c.Poll, c.Refresh, c.History, c.SessionIdle, c.SessionMax, c.MinRefresh))
	}
	if len(errs) > 0 {
		return lifeboat.Permanent("dashboard.new", "", errors.Join(errs...))
	}
	return nil
}

// Dashboard serves the page, its stream and the API forwarder under /ui/.
// Close ends the streams (call it before shutting the HTTP server down, or
// register it with http.Server.RegisterOnShutdown).
type Dashboard struct {
	c      Config
	mux    *http.ServeMux
	feed   *feed
	static http.Handler

	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	token   string
	id      api.Identity
	csrf    string
	created time.Time
	seen    time.Time
}

// New builds a Dashboard. Zero fields of c take their defaults.
func New(c Config) (*Dashboard, error) {
	d := DefaultConfig()
	if c.Drivers == nil {
		c.Drivers = d.Drivers
	}
	if c.Log == nil {
		c.Log = d.Log
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	for _, f := range []struct {
		p   *time.Duration
		def time.Duration
	}{{&c.Poll, d.Poll}, {&c.Refresh, d.Refresh}, {&c.MinRefresh, d.MinRefresh}, {&c.SessionIdle, d.SessionIdle}, {&c.SessionMax, d.SessionMax}} {
		if *f.p == 0 {
			*f.p = f.def
		}
	}
	if c.History == 0 {
		c.History = d.History
	}
	if err := ValidateConfig(c); err != nil {
		return nil, err
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	db := &Dashboard{c: c, mux: http.NewServeMux(), sessions: map[string]*session{}}
	db.static = http.StripPrefix("/ui/", http.FileServerFS(sub))
	db.feed = newFeed(c)
	db.mux.HandleFunc("GET /ui/{$}", db.page)
	db.mux.HandleFunc("GET /ui/app.js", db.asset)
	db.mux.HandleFunc("GET /ui/style.css", db.asset)
	db.mux.HandleFunc("POST /ui/login", db.login)
	db.mux.HandleFunc("POST /ui/logout", db.logout)
	db.mux.HandleFunc("GET /ui/session", db.whoami)
	db.mux.HandleFunc("GET /ui/events", db.events)
	db.mux.HandleFunc("/ui/api/v1/", db.forward)
	db.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such page: "+r.URL.Path, "the dashboard is at /ui/")
	})
	return db, nil
}

// ServeHTTP serves everything under /ui/.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// The page loads nothing from elsewhere and is never framed.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	d.mux.ServeHTTP(w, r)
}

// Close ends every event stream and stops reading the store.
func (d *Dashboard) Close() { d.feed.close() }

func (d *Dashboard) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	// FileServer redirects index.html to the directory: serve the bytes.
	b, err := assets.ReadFile("assets/index.html")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error(), "")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b)
}

func (d *Dashboard) asset(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	d.static.ServeHTTP(w, r)
}

// ask calls the API in-process as the request r would, with bearer.
func (d *Dashboard) ask(r *http.Request, method, path, bearer string) *recorder {
	req, _ := http.NewRequestWithContext(r.Context(), method, path, nil)
	req.RemoteAddr, req.TLS = r.RemoteAddr, r.TLS
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	rec := newRecorder()
	d.c.API.ServeHTTP(rec, req)
	return rec
}

// login checks the posted token with the API and opens a session.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, "login from another site refused", "open the dashboard at its own address and log in there")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if tok == "" {
		writeError(w, http.StatusBadRequest, "no token in the login form", "paste a token made by 'lifeboat api token --name NAME --role ROLE'")
		return
	}
	rec := d.ask(r, http.MethodGet, "/v1/whoami", tok)
	if rec.code != http.StatusOK {
		d.c.Log.Info("dashboard login refused", "remote", r.RemoteAddr, "status", rec.code)
		rec.copyTo(w)
		return
	}
	var id api.Identity
	if err := json.Unmarshal(rec.body.Bytes(), &id); err != nil {
		writeError(w, http.StatusBadGateway, "the API's whoami answer does not parse: "+err.Error(), "")
		return
	}
	now := d.c.Now()
	s := &session{token: tok, id: id, csrf: randomID(), created: now, seen: now}
	sid := randomID()
	d.mu.Lock()
	for k, o := range d.sessions { // drop expired ones as we go
		if d.expired(o, now) {
			delete(d.sessions, k)
		}
	}
	d.sessions[sid] = s
	d.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: sid, Path: Prefix, HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(d.c.SessionMax / time.Second)})
	d.c.Log.Info("dashboard login", "who", id.Who(), "role", id.Role, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, sessionView{Identity: id, CSRF: s.csrf})
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		d.mu.Lock()
		s := d.sessions[c.Value]
		if s != nil && subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(s.csrf)) == 1 {
			delete(d.sessions, c.Value)
		}
		d.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

// sessionView is what GET /ui/session answers: who is logged in, and the
// CSRF token the page sends with mutating calls.
type sessionView struct {
	api.Identity
	CSRF string `json:"csrf,omitempty"`
}

func (d *Dashboard) whoami(w http.ResponseWriter, r *http.Request) {
	s := d.session(r)
	if s == nil {
		writeError(w, http.StatusUnauthorized, "not logged in", "post a token to the login form")
		return
	}
	writeJSON(w, http.StatusOK, sessionView{Identity: s.id, CSRF: s.csrf})
}

func (d *Dashboard) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) > d.c.SessionIdle || now.Sub(s.created) > d.c.SessionMax
}

// session is the caller's live session (nil: none), touched.
func (d *Dashboard) session(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	now := d.c.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[c.Value]
	if s == nil {
		return nil
	}
	if d.expired(s, now) {
		delete(d.sessions, c.Value)
		return nil
	}
	s.seen = now
	return s
}

// bearer is the token the request acts with: its own Authorization
// header, else its session's. ok is false when there is neither.
func (d *Dashboard) bearer(r *http.Request) (tok string, s *session, ok bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, t, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(t), nil, true
		}
		return "", nil, false
	}
	if s := d.session(r); s != nil {
		return s.token, s, true
	}
	return "", nil, false
}

// forward passes /ui/api/v1/… to the API as /v1/… with the caller's
// token: the API decides what the caller may do and audits it.
func (d *Dashboard) forward(w http.ResponseWriter, r *http.Request) {
	tok, s, ok := d.bearer(r)
	if s != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(s.csrf)) != 1 || !sameOrigin(r) {
			writeError(w, http.StatusForbidden, "a change through the dashboard needs its CSRF token", "reload the dashboard and try again")
			return
		}
	}
	r2 := r.Clone(r.Context())
	u := *r.URL
	u.Path = strings.TrimPrefix(r.URL.Path, "/ui/api")
	u.RawPath = ""
	r2.URL, r2.RequestURI = &u, ""
	r2.Header.Del("Cookie")
	r2.Header.Del(csrfHeader)
	if ok && s != nil {
		r2.Header.Set("Authorization", "Bearer "+tok)
	}
	d.c.API.ServeHTTP(w, r2)
}

// sameOrigin refuses a browser's cross-site request: Sec-Fetch-Site (sent
// by every current browser) or, failing that, Origin must be this host.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true // not a browser's cross-site call
	}
	_, host, _ := strings.Cut(o, "://")
	return host == r.Host
}

func randomID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("dashboard: no randomness for a session id: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg, hint string) {
	writeJSON(w, code, api.Error{Error: msg, Hint: hint})
}
