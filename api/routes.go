package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/engine"
	"github.com/lifeboat-dr/lifeboat/monitor"
	"github.com/lifeboat-dr/lifeboat/planner"
	"github.com/lifeboat-dr/lifeboat/status"
	"github.com/lifeboat-dr/lifeboat/store"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

// route is one endpoint: the table drives both the mux and the OpenAPI
// document, so the document cannot miss a route.
type route struct {
	Method, Path string
	// Role is the least role the route needs; "" needs no credentials.
	Role lifeboat.Role
	// Action names a mutating call in the audit trail.
	Action  string
	Summary string
	Query   []string // query parameters
	In      any      // request body (a zero value of its type), or nil
	Out     any      // 2xx body
	Codes   []int    // the other status codes it answers
	h       func(c *call)
}

// call is one request being answered.
type call struct {
	w    http.ResponseWriter
	r    *http.Request
	id   Identity
	code int
	// for the audit trail
	args   map[string]string
	result string
	run    string
	// after runs once the call is in the audit trail, so that what a call
	// started is never recorded before the call itself.
	after []func()
}

func (c *call) json(code int, v any) {
	c.code = code
	if c.result == "" {
		c.result = http.StatusText(code)
	}
	writeJSON(c.w, code, v)
}

func (c *call) fail(code int, msg, hint string) {
	c.code, c.result = code, "refused: "+msg
	if code >= 500 {
		c.result = "error: " + msg
	}
	writeError(c.w, code, msg, hint)
}

func (c *call) err(err error) {
	code := statusOf(err)
	c.fail(code, err.Error(), hintOf(code))
}

// decode reads a JSON body into v; an empty body leaves v as it is.
func (c *call) decode(v any) bool {
	b, err := io.ReadAll(io.LimitReader(c.r.Body, 1<<20))
	if err != nil {
		c.fail(http.StatusBadRequest, "reading the request body: "+err.Error(), "")
		return false
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return true
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		c.fail(http.StatusBadRequest, "the request body is not the JSON this endpoint takes: "+err.Error(), "GET /v1/openapi.json describes every body")
		return false
	}
	return true
}

// guard identifies the caller, checks the route's role, answers, and
// appends mutating calls (answered or refused) to the audit trail.
func (s *Server) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{w: w, r: r, args: map[string]string{}}
		mutating := r.Method != http.MethodGet && r.Method != http.MethodHead
		if mutating {
			// Audited before answered: the answer is held until the call
			// is in the audit trail.
			held := &heldResponse{w: w, code: http.StatusOK}
			c.w = held
			defer func() {
				s.audit(r.Context(), c, rt.Action)
				held.flush()
				for _, f := range c.after {
					f()
				}
			}()
		}
		if rt.Role == "" {
			rt.h(c)
			return
		}
		id, aerr := s.identify(r)
		if aerr != nil {
			c.id = Identity{Name: "anonymous"}
			w.Header().Set("WWW-Authenticate", `Bearer realm="lifeboat"`)
			c.fail(aerr.code, aerr.msg, aerr.hint)
			return
		}
		c.id = id
		if !Allows(id.Role, rt.Role) {
			code, msg, hint := forbidden(id, rt.Role, rt.Method+" "+rt.Path)
			c.fail(code, msg, hint)
			return
		}
		rt.h(c)
	})
}

// heldResponse holds an answer until flush.
type heldResponse struct {
	w    http.ResponseWriter
	code int
	body []byte
}

func (h *heldResponse) Header() http.Header  { return h.w.Header() }
func (h *heldResponse) WriteHeader(code int) { h.code = code }
func (h *heldResponse) Write(b []byte) (int, error) {
	h.body = append(h.body, b...)
	return len(b), nil
}
func (h *heldResponse) flush() {
	h.w.WriteHeader(h.code)
	_, _ = h.w.Write(h.body)
}

func (s *Server) audit(ctx context.Context, c *call, action string) {
	rec := store.AuditRecord{At: s.c.Now().UTC(), Who: c.id.Who(), Role: c.id.Role, Action: action, Args: c.args,
		Status: c.code, Result: c.result, Run: c.run, Remote: clientIP(c.r)}
	if len(rec.Args) == 0 {
		rec.Args = nil
	}
	// The audit outlives the request: a client that hangs up must not
	// leave its call out of the trail.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.c.Audit.Append(actx, rec); err != nil {
		s.c.Log.Error("audit trail: could not append", "who", rec.Who, "action", action, "err", err)
	}
}

// The bodies the API takes and gives.
type (
	// StartRun asks for a run of a planned intent.
	StartRun struct {
		// Intent is failover, failback, switchover or rejoin.
		Intent lifeboat.Intent `json:"intent"`
		// To is the destination region (default: the other region; home
		// for failback).
		To string `json:"to,omitempty"`
		// Force fails over even when readiness says it would fail (admin).
		Force bool `json:"force,omitempty"`
	}
	// Accepted answers a call that started something long: follow the run
	// at Location.
	Accepted struct {
		Run      string `json:"run"`
		Location string `json:"location"`
		Message  string `json:"message"`
	}
	// Approve approves an approval step of a waiting run.
	Approve struct {
		Step string `json:"step"`
	}
	// ResumeRun resumes a run, approving the steps listed.
	ResumeRun struct {
		Approve []string `json:"approve,omitempty"`
	}
	// RunDetail is a run with its journal and what status says of it.
	RunDetail struct {
		Run     *lifeboat.Run     `json:"run"`
		Journal []lifeboat.Record `json:"journal"`
		View    *status.RunView   `json:"view"`
	}
	// PlanPreview is the plan the CLI's 'plan' prints, not run.
	PlanPreview struct {
		Plan *lifeboat.Plan `json:"plan"`
		// Text is the planner's rendering, as 'lifeboat plan' prints it.
		Text string `json:"text"`
	}
	// ReadinessView is readiness with reasons.
	ReadinessView struct {
		Ready    bool            `json:"ready"`
		Checks   []monitor.Check `json:"checks"`
		Blocking []monitor.Check `json:"blocking"`
	}
	// HistoryRow is one line of 'lifeboat history'.
	HistoryRow struct {
		Run       string             `json:"run"`
		Intent    lifeboat.Intent    `json:"intent"`
		From      string             `json:"from"`
		To        string             `json:"to"`
		Epoch     uint64             `json:"epoch"`
		Status    lifeboat.RunStatus `json:"status"`
		StartedAt time.Time          `json:"started_at"`
		Took      string             `json:"took"`
		Estimated string             `json:"estimated"`
		By        string             `json:"by"`
	}
	// DrillReport is one file of the drill reports directory.
	DrillReport struct {
		Name     string    `json:"name"`
		Size     int64     `json:"size"`
		Modified time.Time `json:"modified"`
		URL      string    `json:"url"`
	}
)

func (s *Server) table() []route {
	e4xx := []int{http.StatusUnauthorized, http.StatusForbidden}
	return []route{
		{Method: "GET", Path: "/v1/openapi.json", Summary: "This document: every route of the API", Out: map[string]any{}, h: s.openapiDoc},
		{Method: "GET", Path: "/v1/whoami", Role: lifeboat.RoleViewer, Summary: "Who the credentials name, and their role", Out: Identity{}, Codes: e4xx, h: s.whoami},
		{Method: "GET", Path: "/v1/status", Role: lifeboat.RoleViewer, Summary: "What 'lifeboat status' shows: active region, epoch, run in progress, routes, resources, readiness, controllers, the leader's decision, RPO exposure, tenant counts by state and tier", Out: status.View{}, Codes: e4xx, h: s.status},
		{Method: "GET", Path: "/v1/readiness", Role: lifeboat.RoleViewer, Summary: "Readiness checks with reasons; blocking ones would make a failover fail", Out: ReadinessView{}, Codes: e4xx, h: s.readiness},
		{Method: "GET", Path: "/v1/plans/{intent}", Role: lifeboat.RoleViewer, Summary: "The plan 'lifeboat plan' prints, without running it", Query: []string{"to"}, Out: PlanPreview{}, Codes: append(e4xx, 400, 409), h: s.plan},
		{Method: "GET", Path: "/v1/runs", Role: lifeboat.RoleViewer, Summary: "Every run, newest first", Out: []*lifeboat.Run{}, Codes: e4xx, h: s.runs},
		{Method: "POST", Path: "/v1/runs", Role: lifeboat.RoleOperator, Action: "runs.start", Summary: "Start a failover, failback, switchover or rejoin (force: admin); 202 with the run to follow", In: StartRun{}, Out: Accepted{}, Codes: append(e4xx, 400, 409), h: s.start},
		{Method: "GET", Path: "/v1/runs/{run}", Role: lifeboat.RoleViewer, Summary: "A run with its journal (every step, every attempt)", Out: RunDetail{}, Codes: append(e4xx, 404), h: s.run},
		{Method: "POST", Path: "/v1/runs/{run}/approve", Role: lifeboat.RoleOperator, Action: "runs.approve", Summary: "Approve a waiting approval step; the run goes on (202)", In: Approve{}, Out: Accepted{}, Codes: append(e4xx, 400, 404, 409), h: s.approve},
		{Method: "POST", Path: "/v1/runs/{run}/cancel", Role: lifeboat.RoleOperator, Action: "runs.cancel", Summary: "Cancel a run and clean up (202)", Out: Accepted{}, Codes: append(e4xx, 404, 409), h: s.cancel},
		{Method: "POST", Path: "/v1/runs/{run}/resume", Role: lifeboat.RoleOperator, Action: "runs.resume", Summary: "Resume an interrupted, failed or waiting run from its journal (202)", In: ResumeRun{}, Out: Accepted{}, Codes: append(e4xx, 400, 404, 409), h: s.resume},
		{Method: "GET", Path: "/v1/history", Role: lifeboat.RoleViewer, Summary: "Past runs as 'lifeboat history' lists them", Out: []HistoryRow{}, Codes: e4xx, h: s.history},
		{Method: "GET", Path: "/v1/units", Role: lifeboat.RoleViewer, Summary: "The unit registry: resources, quadrants, purpose", Out: []status.Unit{}, Codes: e4xx, h: s.units},
		{Method: "GET", Path: "/v1/tenants", Role: lifeboat.RoleViewer, Summary: "Tenants of the catalog, sorted by name, as 'lifeboat tenant list' lists them: filter by tier, pool, region and state (comma-separated: available, queued, restoring, failed, read-only)", Query: []string{"tier", "pool", "region", "state"}, Out: []lifeboat.Tenant{}, Codes: append(e4xx, 400, 404), h: s.tenants},
		{Method: "GET", Path: "/v1/tenants/{name}", Role: lifeboat.RoleViewer, Summary: "One tenant, as 'lifeboat tenant show' shows it: tier, pool, region, epoch, state and times", Out: lifeboat.Tenant{}, Codes: append(e4xx, 400, 404), h: s.tenant},
		{Method: "GET", Path: "/v1/drills", Role: lifeboat.RoleViewer, Summary: "Drill reports", Out: []DrillReport{}, Codes: e4xx, h: s.drills},
		{Method: "GET", Path: "/v1/drills/{name}", Role: lifeboat.RoleViewer, Summary: "One drill report file", Out: "", Codes: append(e4xx, 404), h: s.drill},
		{Method: "GET", Path: "/v1/audit", Role: lifeboat.RoleViewer, Summary: "The audit trail: every mutating call, oldest first", Query: []string{"since", "limit"}, Out: []store.AuditRecord{}, Codes: append(e4xx, 400), h: s.auditTrail},
	}
}

// Routes lists every route the API serves, as {method, path}.
func Routes() [][2]string {
	var out [][2]string
	for _, r := range (&Server{}).table() {
		out = append(out, [2]string{r.Method, r.Path})
	}
	return out
}

func (s *Server) whoami(c *call) { c.json(http.StatusOK, c.id) }

func (s *Server) status(c *call) {
	v, err := status.Build(c.r.Context(), s.c.Spec, s.c.Store)
	if err != nil {
		c.err(err)
		return
	}
	c.json(http.StatusOK, v)
}

func (s *Server) state(c *call) (*lifeboat.State, bool) {
	st, err := s.c.Store.State(c.r.Context())
	if err != nil {
		c.err(fmt.Errorf("reading the state: %w", err))
		return nil, false
	}
	return st, true
}

func (s *Server) checks(ctx context.Context, st *lifeboat.State) []monitor.Check {
	ctrls, _ := status.Controllers(ctx, s.c.Spec, s.c.Store)
	return status.Readiness(ctx, s.c.Spec, st, s.c.Store, ctrls)
}

func (s *Server) readiness(c *call) {
	st, ok := s.state(c)
	if !ok {
		return
	}
	checks := s.checks(c.r.Context(), st)
	b := status.Blocking(checks)
	if b == nil {
		b = []monitor.Check{}
	}
	c.json(http.StatusOK, ReadinessView{Ready: len(b) == 0, Checks: checks, Blocking: b})
}

func parseIntent(s string) (lifeboat.Intent, error) {
	switch i := lifeboat.Intent(s); i {
	case lifeboat.IntentFailover, lifeboat.IntentFailback, lifeboat.IntentSwitchover, lifeboat.IntentRejoin:
		return i, nil
	}
	return "", fmt.Errorf("%q is not something lifeboat plans: use failover, failback, switchover or rejoin (drills run in the lab: 'lifeboat lab')", s)
}

func (s *Server) plan(c *call) {
	intent, err := parseIntent(c.r.PathValue("intent"))
	if err != nil {
		c.fail(http.StatusBadRequest, err.Error(), "")
		return
	}
	st, ok := s.state(c)
	if !ok {
		return
	}
	p, err := planner.Plan(s.c.Spec, st, intent, c.r.URL.Query().Get("to"))
	if err != nil {
		c.fail(http.StatusConflict, err.Error(), "the planner refused; GET /v1/status shows where the service is")
		return
	}
	c.json(http.StatusOK, PlanPreview{Plan: p, Text: planner.Format(p)})
}

func (s *Server) runs(c *call) {
	runs, err := s.c.Store.Runs(c.r.Context())
	if err != nil {
		c.err(err)
		return
	}
	if runs == nil {
		runs = []*lifeboat.Run{}
	}
	c.json(http.StatusOK, runs)
}

func (s *Server) run(c *call) {
	ctx := c.r.Context()
	run, err := s.c.Store.Run(ctx, c.r.PathValue("run"))
	if err != nil {
		c.err(err)
		return
	}
	recs, err := s.c.Store.Journal(ctx, run.ID)
	if err != nil {
		c.err(err)
		return
	}
	if recs == nil {
		recs = []lifeboat.Record{}
	}
	v := status.Run(ctx, s.c.Store, run, recs)
	if v.Run != run {
		// The view read a newer run (it parked or ended meanwhile): its
		// journal goes with it.
		if fresh, err := s.c.Store.Journal(ctx, run.ID); err == nil {
			recs = fresh
		}
	}
	c.json(http.StatusOK, RunDetail{Run: v.Run, Journal: recs, View: v})
}

// engine builds an engine on the spec's drivers, seeded from the state
// now, that journals the caller as the one who acts. Approval steps pause
// the run (status waiting) until POST …/approve.
func (s *Server) engine(ctx context.Context, id Identity) (*engine.Engine, error) {
	st, err := s.c.Store.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the state: %w", err)
	}
	drivers, err := s.c.Drivers(s.c.Spec, st)
	if err != nil {
		return nil, lifeboat.Permanent("api.drivers", "", fmt.Errorf("drivers: %w", err))
	}
	cfg := engine.DefaultConfig()
	cfg.Store = s.c.Store
	spec := s.c.Spec
	cfg.Bind = func(run string, step *lifeboat.Step) (lifeboat.Action, error) {
		return lifeboat.Bind(spec, drivers, run, step)
	}
	cfg.By = id.Who() + " via api"
	if s.c.Region != "" {
		cfg.By += "@" + s.c.Region
	}
	cfg.Now = s.c.Now
	return engine.New(cfg)
}

func (s *Server) start(c *call) {
	var req StartRun
	if !c.decode(&req) {
		return
	}
	c.args["intent"], c.args["to"], c.args["force"] = string(req.Intent), req.To, strconv.FormatBool(req.Force)
	intent, err := parseIntent(string(req.Intent))
	if err != nil {
		c.fail(http.StatusBadRequest, err.Error(), `POST {"intent": "switchover"}`)
		return
	}
	if req.Force && intent != lifeboat.IntentFailover {
		c.fail(http.StatusBadRequest, "force applies to failover only", "drop force")
		return
	}
	if req.Force && !Allows(c.id.Role, lifeboat.RoleAdmin) {
		code, msg, hint := forbidden(c.id, lifeboat.RoleAdmin, "a forced failover")
		c.fail(code, msg, hint)
		return
	}
	ctx := c.r.Context()
	st, ok := s.state(c)
	if !ok {
		return
	}
	if st.Run != "" {
		msg := fmt.Sprintf("run %s is in progress", st.Run)
		if r, err := s.c.Store.Run(ctx, st.Run); err == nil {
			msg = fmt.Sprintf("run %s (%s %s → %s, %s) has not ended", r.ID, r.Plan.Intent, r.Plan.From, r.Plan.To, r.Status)
		}
		c.run = st.Run
		c.fail(http.StatusConflict, msg, fmt.Sprintf("resume it (POST /v1/runs/%s/resume) or cancel it (POST /v1/runs/%s/cancel) first", st.Run, st.Run))
		return
	}
	p, err := planner.Plan(s.c.Spec, st, intent, req.To)
	if err != nil {
		c.fail(http.StatusConflict, err.Error(), "the planner refused; GET /v1/status shows where the service is")
		return
	}
	if intent == lifeboat.IntentFailover {
		// Only what may block: the tenant backup checks never do, and need
		// the tenants' catalog, whose primary may be in the region being left.
		ctrls, _ := status.Controllers(ctx, s.c.Spec, s.c.Store)
		if b := status.Blocking(status.FailoverReadiness(ctx, s.c.Spec, st, s.c.Store, ctrls)); len(b) > 0 {
			var why []string
			for _, ch := range b {
				name := ch.Name
				if ch.Component != "" {
					name += " (" + ch.Component + ")"
				}
				why = append(why, name+": "+ch.Reason)
			}
			if !req.Force {
				c.fail(http.StatusConflict, fmt.Sprintf("refused: the failover to %s would fail: %s", p.To, strings.Join(why, "; ")),
					`fix what is listed, or have an admin POST {"intent": "failover", "force": true}`)
				return
			}
			c.args["forced_past"] = strings.Join(why, "; ")
		}
	}
	eng, err := s.engine(ctx, c.id)
	if err != nil {
		c.err(err)
		return
	}
	f, err := eng.Start(s.ctx, p)
	if err != nil {
		if errors.Is(err, lifeboat.ErrRunInProgress) || errors.Is(err, engine.ErrStalePlan) {
			c.fail(http.StatusConflict, err.Error(), "GET /v1/status shows the run in progress")
			return
		}
		c.err(err)
		return
	}
	s.accepted(c, f, fmt.Sprintf("%s of %s %s → %s started (epoch %d)", p.Intent, p.Service, p.From, p.To, p.Epoch))
}

// accepted answers 202 with the run to follow, and records how the run
// stops in the audit trail when it does.
func (s *Server) accepted(c *call, f *engine.Future, msg string) {
	id := f.RunID()
	c.run = id
	c.result = "accepted: " + msg
	loc := "/v1/runs/" + id
	c.w.Header().Set("Location", loc)
	c.json(http.StatusAccepted, Accepted{Run: id, Location: loc, Message: msg + "; follow it with GET " + loc})
	who, role, action, remote := c.id.Who(), c.id.Role, c.r.Method+" "+c.r.URL.Path, clientIP(c.r)
	s.wg.Add(1)
	c.after = append(c.after, func() { go s.recordEnd(f, id, who, role, action, remote) })
}

// recordEnd appends how a run started or resumed through the API stopped.
func (s *Server) recordEnd(f *engine.Future, id, who string, role lifeboat.Role, action, remote string) {
	defer s.wg.Done()
	{
		<-f.Done()
		err := f.Error()
		result := "succeeded"
		if run := f.Run(); run != nil && err == nil {
			result = string(run.Status)
		}
		switch {
		case errors.Is(err, engine.ErrWaitingApproval):
			result = "waiting: " + err.Error()
		case errors.Is(err, engine.ErrCancelled):
			result = "cancelled: " + err.Error()
		case err != nil:
			result = "failed: " + err.Error()
		}
		rec := store.AuditRecord{At: s.c.Now().UTC(), Who: who, Role: role, Action: "run.stopped", Args: map[string]string{"call": action},
			Status: 0, Result: result, Run: id, Remote: remote}
		actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := s.c.Audit.Append(actx, rec); err != nil {
			s.c.Log.Error("audit trail: could not append", "run", id, "err", err)
		}
	}
}

// pick reads the run of the path and refuses one that has ended.
func (s *Server) pick(c *call, verb string) (*lifeboat.Run, bool) {
	id := c.r.PathValue("run")
	c.run = id
	run, err := s.c.Store.Run(c.r.Context(), id)
	if err != nil {
		c.err(err)
		return nil, false
	}
	if run.Status.Done() {
		c.fail(http.StatusConflict, fmt.Sprintf("run %s has already %s; nothing to %s", run.ID, run.Status, verb), "GET /v1/runs lists the runs")
		return nil, false
	}
	return run, true
}

func (s *Server) goOn(c *call, run *lifeboat.Run, approve []string, verb string) {
	for _, step := range approve {
		if st := run.Plan.Step(step); st == nil || st.Op != lifeboat.OpApproval {
			var ids []string
			for _, st := range run.Plan.Steps {
				if st.Op == lifeboat.OpApproval {
					ids = append(ids, st.ID)
				}
			}
			c.fail(http.StatusBadRequest, fmt.Sprintf("run %s has no approval step %q", run.ID, step), "its approval steps: "+orNone(ids))
			return
		}
	}
	eng, err := s.engine(c.r.Context(), c.id)
	if err != nil {
		c.err(err)
		return
	}
	f, err := eng.Resume(s.ctx, run.ID, approve...)
	if err != nil {
		if errors.Is(err, lifeboat.ErrRunOwned) {
			c.fail(http.StatusConflict, err.Error(), "another lifeboat process runs it now; wait for it, or cancel the run")
			return
		}
		if !lifeboat.IsRetryable(err) {
			c.fail(http.StatusConflict, err.Error(), "GET /v1/runs/"+run.ID+" shows its journal")
			return
		}
		c.err(err)
		return
	}
	s.accepted(c, f, fmt.Sprintf("%s of run %s (%s %s → %s)", verb, run.ID, run.Plan.Intent, run.Plan.From, run.Plan.To))
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

func (s *Server) approve(c *call) {
	var req Approve
	if !c.decode(&req) {
		return
	}
	c.args["step"] = req.Step
	if req.Step == "" {
		c.fail(http.StatusBadRequest, "no step named", `POST {"step": "<approval step id>"}; GET /v1/status lists the steps that wait`)
		return
	}
	run, ok := s.pick(c, "approve")
	if !ok {
		return
	}
	s.goOn(c, run, []string{req.Step}, "approval of "+req.Step)
}

func (s *Server) resume(c *call) {
	var req ResumeRun
	if !c.decode(&req) {
		return
	}
	if len(req.Approve) > 0 {
		c.args["approve"] = strings.Join(req.Approve, ",")
	}
	run, ok := s.pick(c, "resume")
	if !ok {
		return
	}
	s.goOn(c, run, req.Approve, "resume")
}

func (s *Server) cancel(c *call) {
	run, ok := s.pick(c, "cancel")
	if !ok {
		return
	}
	eng, err := s.engine(c.r.Context(), c.id)
	if err != nil {
		c.err(err)
		return
	}
	f, err := eng.Cancel(s.ctx, run.ID)
	if err != nil {
		if !lifeboat.IsRetryable(err) {
			c.fail(http.StatusConflict, err.Error(), "GET /v1/runs/"+run.ID+" shows its journal")
			return
		}
		c.err(err)
		return
	}
	s.accepted(c, f, fmt.Sprintf("cancel of run %s (%s %s → %s)", run.ID, run.Plan.Intent, run.Plan.From, run.Plan.To))
}

func (s *Server) history(c *call) {
	runs, err := s.c.Store.Runs(c.r.Context())
	if err != nil {
		c.err(err)
		return
	}
	out := []HistoryRow{}
	for _, r := range runs {
		took := "-"
		if !r.EndedAt.IsZero() {
			took = lifeboat.FormatDuration(r.EndedAt.Sub(r.StartedAt))
		}
		out = append(out, HistoryRow{Run: r.ID, Intent: r.Plan.Intent, From: r.Plan.From, To: r.Plan.To, Epoch: r.Plan.Epoch, Status: r.Status,
			StartedAt: r.StartedAt, Took: took, Estimated: lifeboat.FormatDuration(r.Plan.RTO), By: r.By})
	}
	c.json(http.StatusOK, out)
}

func (s *Server) units(c *call) {
	st, ok := s.state(c)
	if !ok {
		return
	}
	c.json(http.StatusOK, status.Units(s.c.Spec, st))
}

// tenantTimeout bounds a tenants call: opening the catalog where its
// primary is now, and reading it.
const tenantTimeout = 10 * time.Second

// tenantStates are the states a tenant filter takes.
var tenantStates = []lifeboat.TenantState{lifeboat.TenantAvailable, lifeboat.TenantQueued, lifeboat.TenantRestoring, lifeboat.TenantFailed, lifeboat.TenantReadOnly}

// catalog opens the tenants' catalog where the state says its database is
// primary now; the caller closes it. It answers the call itself when it
// cannot.
func (s *Server) catalog(ctx context.Context, c *call) (tenant.Catalog, bool) {
	if s.c.Spec.Tenants == nil {
		c.fail(http.StatusNotFound, "this service has no tenants: its spec has no tenants section", "add tenants: {catalog, pools, tiers} to the spec (see 'lifeboat tenant --help')")
		return nil, false
	}
	st, ok := s.state(c)
	if !ok {
		return nil, false
	}
	cat, err := tenant.OpenCatalog(ctx, s.c.Spec, st)
	if err != nil {
		s.tenantErr(c, fmt.Errorf("opening the tenant catalog (%s): %w", s.c.Spec.Tenants.Catalog, err))
		return nil, false
	}
	return cat, true
}

// tenantErr answers a catalog error: 404 for an unknown tenant, 400 for a
// name no tenant can have, 503 when a retry may pass.
func (s *Server) tenantErr(c *call, err error) {
	switch {
	case errors.Is(err, tenant.ErrNoTenant):
		c.fail(http.StatusNotFound, err.Error(), "GET /v1/tenants lists the tenants")
	case errors.Is(err, tenant.ErrBadName):
		c.fail(http.StatusBadRequest, err.Error(), "GET /v1/tenants lists the tenants")
	case lifeboat.IsRetryable(err):
		c.fail(http.StatusServiceUnavailable, err.Error(), "the tenant catalog did not answer: retry; if it persists, check its database where GET /v1/status says it is primary")
	default:
		c.fail(http.StatusInternalServerError, err.Error(), "")
	}
}

func (s *Server) tenants(c *call) {
	q := c.r.URL.Query()
	f := tenant.Filter{Tier: q.Get("tier"), Pool: q.Get("pool"), Region: q.Get("region")}
	for _, v := range q["state"] {
		for _, st := range strings.Split(v, ",") {
			st = strings.TrimSpace(st)
			if st == "" {
				continue
			}
			if !slices.Contains(tenantStates, lifeboat.TenantState(st)) {
				var valid []string
				for _, s := range tenantStates {
					valid = append(valid, string(s))
				}
				c.fail(http.StatusBadRequest, fmt.Sprintf("state %q is not a tenant state", st), "use "+strings.Join(valid, ", ")+" (comma-separated)")
				return
			}
			f.States = append(f.States, lifeboat.TenantState(st))
		}
	}
	ctx, cancel := context.WithTimeout(c.r.Context(), tenantTimeout)
	defer cancel()
	cat, ok := s.catalog(ctx, c)
	if !ok {
		return
	}
	defer cat.Close()
	ts, err := cat.List(ctx, f)
	if err != nil {
		s.tenantErr(c, err)
		return
	}
	if ts == nil {
		ts = []lifeboat.Tenant{}
	}
	c.json(http.StatusOK, ts)
}

func (s *Server) tenant(c *call) {
	name := c.r.PathValue("name")
	if err := tenant.ValidName(name); err != nil {
		s.tenantErr(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.r.Context(), tenantTimeout)
	defer cancel()
	cat, ok := s.catalog(ctx, c)
	if !ok {
		return
	}
	defer cat.Close()
	t, err := cat.Get(ctx, name)
	if err != nil {
		s.tenantErr(c, err)
		return
	}
	c.json(http.StatusOK, t)
}

func (s *Server) drills(c *call) {
	out := []DrillReport{}
	if s.c.DrillsDir == "" {
		c.json(http.StatusOK, out)
		return
	}
	ents, err := os.ReadDir(s.c.DrillsDir)
	if err != nil && !os.IsNotExist(err) {
		c.fail(http.StatusInternalServerError, "reading the drill reports: "+err.Error(), "check the directory's permissions")
		return
	}
	for _, e := range ents {
		if e.IsDir() || !drillFile(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, DrillReport{Name: e.Name(), Size: info.Size(), Modified: info.ModTime().UTC(), URL: "/v1/drills/" + e.Name()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Modified.After(out[j].Modified) })
	c.json(http.StatusOK, out)
}

func drillFile(name string) bool {
	switch filepath.Ext(name) {
	case ".json", ".html", ".md", ".txt":
		return !strings.HasPrefix(name, ".")
	}
	return false
}

func (s *Server) drill(c *call) {
	name := c.r.PathValue("name")
	if s.c.DrillsDir == "" || name != filepath.Base(name) || !drillFile(name) {
		c.fail(http.StatusNotFound, fmt.Sprintf("no drill report %q", name), "GET /v1/drills lists them")
		return
	}
	b, err := os.ReadFile(filepath.Join(s.c.DrillsDir, name))
	if err != nil {
		c.fail(http.StatusNotFound, fmt.Sprintf("no drill report %q", name), "GET /v1/drills lists them")
		return
	}
	ct := map[string]string{".json": "application/json", ".html": "text/html; charset=utf-8", ".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8"}[filepath.Ext(name)]
	c.w.Header().Set("Content-Type", ct)
	c.code = http.StatusOK
	_, _ = c.w.Write(b)
}

// ParseSince reads "since" as RFC 3339 or a duration back from now ("1h").
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("since %q is neither a time like 2026-11-22T14:00:00Z nor a duration like 24h", s)
}

func (s *Server) auditTrail(c *call) {
	q := c.r.URL.Query()
	since, err := ParseSince(q.Get("since"), s.c.Now())
	if err != nil {
		c.fail(http.StatusBadRequest, err.Error(), "")
		return
	}
	limit := 0
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 0 {
			c.fail(http.StatusBadRequest, fmt.Sprintf("limit %q is not a count", l), "e.g. limit=100")
			return
		}
	}
	recs, err := s.c.Audit.Audit(c.r.Context(), since, limit)
	if err != nil {
		c.err(err)
		return
	}
	if recs == nil {
		recs = []store.AuditRecord{}
	}
	c.json(http.StatusOK, recs)
}
