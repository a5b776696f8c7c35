package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/api"
	"github.com/lifeboat-dr/lifeboat/api/client"
	"github.com/lifeboat-dr/lifeboat/status"
	"github.com/spf13/cobra"
)

// When the spec has an api section and a controller runs, the CLI talks to
// it through the API, so that the CLI and the dashboard show the same truth
// and every change goes through the roles and the audit trail. When no API
// answers, the CLI works on the state store directly, as it always did.

// apiDialTimeout bounds how long the CLI waits for an API server to accept
// a connection before it tries the next one (or the store).
const apiDialTimeout = time.Second

// remote is the API of a running controller that answered.
type remote struct {
	c      *client.Client
	url    string
	region string // "" for plain 'lifeboat serve'
	who    api.Identity
}

// apiFlags adds the flags of the commands that talk to the API.
func (a *app) apiFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.tokenFile, "token-file", "", "read the API's bearer token from this file (default: $"+client.TokenEnv+")")
}

// apiToken is the bearer token: --token-file, else $LIFEBOAT_TOKEN.
func (a *app) apiToken() (string, error) {
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return "", exit(exitSpec, "--token-file: %v (give the file that holds the token 'lifeboat api token' printed)", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", exit(exitSpec, "--token-file %s is empty: put the token 'lifeboat api token' printed in it", a.tokenFile)
		}
		return t, nil
	}
	return strings.TrimSpace(os.Getenv(client.TokenEnv)), nil
}

// apiCandidate is one place an API server may listen.
type apiCandidate struct{ region, addr string }

// apiCandidates are where the spec's API servers listen, in the order the
// CLI tries them: each region's controller (api.listen-in, home region
// first), then plain 'lifeboat serve' (api.listen).
func apiCandidates(spec *lifeboat.Spec) []apiCandidate {
	var out []apiCandidate
	seen := map[string]bool{}
	add := func(region, addr string) {
		if addr != "" && !seen[addr] {
			seen[addr] = true
			out = append(out, apiCandidate{region, addr})
		}
	}
	order := []string{spec.Regions.Primary.Name, spec.Regions.Secondary.Name}
	if spec.Regions.Witness != nil {
		order = append(order, spec.Regions.Witness.Name)
	}
	rest := lifeboat.SortedKeys(spec.API.ListenIn)
	for _, r := range append(order, rest...) {
		add(r, spec.API.ListenIn[r])
	}
	add("", api.Addr(spec, ""))
	return out
}

// apiHTTP is the HTTP client of the API: a short connect timeout, so an
// API that is down costs about a second; with api.tls, the server's
// certificate is trusted besides the system's roots.
func apiHTTP(spec *lifeboat.Spec) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: apiDialTimeout}).DialContext,
		TLSHandshakeTimeout: 3 * time.Second,
	}
	if spec.API.TLS != nil {
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if pem, err := os.ReadFile(api.SpecPath(spec, spec.API.TLS.Cert)); err == nil {
			roots.AppendCertsFromPEM(pem)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

func apiURL(spec *lifeboat.Spec, addr string) string {
	if spec.API.TLS != nil {
		return "https://" + addr
	}
	return "http://" + addr
}

// remote finds a running API server of the spec. It returns nil (and
// says so in one dim line) when the spec has none that answers, or when
// the CLI has no token: the caller then works on the store directly. A
// server that answers but refuses the token is an error: falling back to
// the store would bypass the roles. leader: prefer the leading region's
// controller (for commands that start or change runs).
func (a *app) remote(ctx context.Context, spec *lifeboat.Spec, leader bool) (*remote, error) {
	if spec.API == nil {
		return nil, nil
	}
	token, err := a.apiToken()
	if err != nil {
		return nil, err
	}
	if token == "" {
		a.note("no API token ($%s or --token-file): working on the state store directly", client.TokenEnv)
		return nil, nil
	}
	hc := apiHTTP(spec)
	var tried []string
	for _, cand := range apiCandidates(spec) {
		r, err := a.reach(ctx, spec, hc, token, cand)
		if err != nil {
			return nil, err
		}
		if r == nil {
			tried = append(tried, cand.addr)
			continue
		}
		if leader && len(spec.API.ListenIn) > 1 {
			r = a.leaderOf(ctx, spec, hc, token, r)
		}
		return r, nil
	}
	a.note("no lifeboat API answered at %s: working on the state store directly", strings.Join(tried, ", "))
	return nil, nil
}

// reach asks one API server who the token names: nil when it does not
// answer (or answers that its store is down).
func (a *app) reach(ctx context.Context, spec *lifeboat.Spec, hc *http.Client, token string, cand apiCandidate) (*remote, error) {
	url := apiURL(spec, cand.addr)
	c := client.New(url, token, hc)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	who, err := c.Whoami(pctx)
	if err == nil {
		return &remote{c: c, url: url, region: cand.region, who: who}, nil
	}
	var e *client.Error
	if errors.As(err, &e) && !e.Retryable() {
		return nil, a.apiError(url, err)
	}
	return nil, nil
}

// leaderOf switches to the leading region's controller when it is not r
// and answers; otherwise r.
func (a *app) leaderOf(ctx context.Context, spec *lifeboat.Spec, hc *http.Client, token string, r *remote) *remote {
	v, err := r.c.Status(ctx)
	if err != nil || v.Leader == "" || v.Leader == r.region {
		return r
	}
	addr := spec.API.ListenIn[v.Leader]
	if addr == "" {
		return r
	}
	if l, err := a.reach(ctx, spec, hc, token, apiCandidate{v.Leader, addr}); err == nil && l != nil {
		return l
	}
	return r
}

// said says what the API accepted, and as whom.
func (r *remote) said(acc api.Accepted) string {
	msg, _, _ := strings.Cut(acc.Message, "; follow it with")
	return fmt.Sprintf("%s, through the API at %s as %s (%s)", msg, r.url, r.who.Name, r.who.Role)
}

// note prints one dim line on stderr.
func (a *app) note(format string, args ...any) {
	fmt.Fprintln(a.err, a.paint(dim, "lifeboat: "+fmt.Sprintf(format, args...)))
}

// apiError turns an answer of the API into the CLI's exit statuses: the
// API's message and hint, as it said them.
func (a *app) apiError(url string, err error) error {
	var e *client.Error
	if !errors.As(err, &e) {
		return exit(exitFailed, "%v", err)
	}
	msg := fmt.Sprintf("the lifeboat API at %s answered %d: %s", url, e.Code, e.Message)
	if e.Hint != "" {
		msg += "\n  " + e.Hint
	}
	switch e.Code {
	case http.StatusUnauthorized:
		msg += fmt.Sprintf("\n  (the token comes from $%s or --token-file; 'lifeboat api token' makes one)", client.TokenEnv)
		return exit(exitRefused, "%s", msg)
	case http.StatusForbidden, http.StatusConflict:
		return exit(exitRefused, "%s", msg)
	case http.StatusBadRequest, http.StatusNotFound:
		return exit(exitSpec, "%s", msg)
	}
	return exit(exitFailed, "%s", msg)
}

// statusView builds the status view: through the API when a controller
// answers, else from the store. The spec is read in both cases.
func (a *app) statusView(ctx context.Context) (*lifeboat.Spec, *status.View, error) {
	spec, _, err := a.loadSpec()
	if err != nil {
		return nil, nil, err
	}
	r, err := a.remote(ctx, spec, false)
	if err != nil {
		return nil, nil, err
	}
	if r != nil {
		v, err := r.c.Status(ctx)
		if err != nil {
			return nil, nil, a.apiError(r.url, err)
		}
		return spec, v, nil
	}
	s, err := a.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	v, err := status.Build(ctx, s.spec, s.store)
	if err != nil {
		return nil, nil, err
	}
	return s.spec, v, nil
}

// runRemote starts a run of intent through the API and follows it.
func (a *app) runRemote(ctx context.Context, r *remote, intent lifeboat.Intent, to string, yes, force bool) error {
	pv, err := r.c.Plan(ctx, intent, to)
	if err != nil {
		return a.apiError(r.url, err)
	}
	p := pv.Plan
	if !a.json() {
		a.printPlan(p)
		fmt.Fprintln(a.out)
	}
	if !yes {
		if err := a.confirm(p); err != nil {
			return err
		}
	}
	acc, err := r.c.Start(ctx, api.StartRun{Intent: intent, To: to, Force: force})
	if err != nil {
		return a.apiError(r.url, err)
	}
	a.note("%s", r.said(acc))
	pr := newProgress(a, p)
	return a.followRemote(ctx, r, pr, acc.Run, nil, "", nil)
}

// pickRemoteRun is the run named in args, or the one in progress, read
// through the API; refused when it has ended.
func (a *app) pickRemoteRun(ctx context.Context, r *remote, args []string, verb string) (api.RunDetail, error) {
	id := ""
	if len(args) == 1 {
		id = args[0]
	} else {
		v, err := r.c.Status(ctx)
		if err != nil {
			return api.RunDetail{}, a.apiError(r.url, err)
		}
		if v.State != nil {
			id = v.State.Run
		}
	}
	if id == "" {
		return api.RunDetail{}, exit(exitRefused, "no run is in progress ('lifeboat history' lists past runs)")
	}
	d, err := r.c.Run(ctx, id)
	var e *client.Error
	if errors.As(err, &e) && e.Code == http.StatusNotFound {
		return d, exit(exitSpec, "no run %q ('lifeboat history' lists the runs)", id)
	}
	if err != nil {
		return d, a.apiError(r.url, err)
	}
	if verb != "" && d.Run.Status.Done() {
		return d, exit(exitRefused, "run %s has already %s; nothing to %s", d.Run.ID, d.Run.Status, verb)
	}
	return d, nil
}

// goOnRemote resumes (approving steps) or cancels a run through the API,
// and follows it.
func (a *app) goOnRemote(ctx context.Context, r *remote, args []string, verb string, approve []string) error {
	d, err := a.pickRemoteRun(ctx, r, args, verb)
	if err != nil {
		return err
	}
	run := d.Run
	if !a.json() {
		if verb == "cancel" {
			fmt.Fprintf(a.out, "cancelling run %s: %s of %s %s → %s\n", run.ID, run.Plan.Intent, run.Plan.Service, run.Plan.From, run.Plan.To)
		} else {
			fmt.Fprintf(a.out, "resuming run %s: %s of %s %s → %s (epoch %d)\n", run.ID, run.Plan.Intent, run.Plan.Service, run.Plan.From, run.Plan.To, run.Plan.Epoch)
		}
	}
	var acc api.Accepted
	if verb == "cancel" {
		acc, err = r.c.Cancel(ctx, run.ID)
	} else {
		acc, err = r.c.Resume(ctx, run.ID, approve...)
	}
	if err != nil {
		return a.apiError(r.url, err)
	}
	a.note("%s", r.said(acc))
	pr := newProgress(a, run.Plan)
	pr.replay(d.Journal)
	return a.followRemote(ctx, r, pr, run.ID, d.Journal, verb, run)
}

// followRemote polls a run through the API every 200 ms, showing each
// journal record as the local progress view does, until the run stops
// (ends, fails, or waits for an approval). seen are records already
// shown; verb is "cancel" when this process asked for the cancel, and
// before the run as it was before that call.
func (a *app) followRemote(ctx context.Context, r *remote, pr *progress, id string, seen []lifeboat.Record, verb string, before *lifeboat.Run) error {
	pr.begin(id)
	var last uint64
	for _, rec := range seen {
		last = max(last, rec.Seq)
	}
	var d api.RunDetail
	var err error
	missing := time.Now()
	for {
		d, err = r.c.Run(ctx, id)
		if err == nil {
			for _, rec := range d.Journal {
				if rec.Seq > last {
					last = rec.Seq
					pr.journal(rec)
				}
			}
			stopped := d.Run.Status != lifeboat.RunRunning || d.View != nil && d.View.Interrupted
			// A cancel leaves a failed or waiting run as it is until the
			// cleanup ends: it has ended when the run has changed.
			if verb == "cancel" && before != nil && !d.Run.Status.Done() && d.Run.Status == before.Status && d.Run.Error == before.Error {
				stopped = false
			}
			if stopped {
				break
			}
		} else {
			var e *client.Error
			// The run may not be readable for an instant after 202.
			if !(errors.As(err, &e) && e.Code == http.StatusNotFound && time.Since(missing) < 10*time.Second) && ctx.Err() == nil {
				pr.end()
				return a.apiError(r.url, err)
			}
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			pr.end()
			a.say(yellow, "■", "stopped following run %s; it goes on in the controller at %s: 'lifeboat status' shows it, 'lifeboat cancel' stops it", id, r.url)
			return &exitError{code: 130, err: errShown}
		case <-t.C:
		}
	}
	pr.end()
	run := d.Run
	if a.json() {
		_ = a.printJSON(run)
	}
	switch {
	case run.Status == lifeboat.RunCancelled && verb == "cancel":
		a.say(yellow, "■", "run %s cancelled; completed steps that could be undone were undone", id)
		if run.Error != "" {
			fmt.Fprintln(a.err, "  "+run.Error)
		}
		return nil
	case run.Status == lifeboat.RunCancelled:
		a.say(yellow, "■", "run %s was cancelled (%s)", id, orDash(run.Error))
		return &exitError{code: exitFailed, err: errShown}
	case run.Status == lifeboat.RunSucceeded:
		took := ""
		if !run.EndedAt.IsZero() {
			took = " in " + lifeboat.FormatDuration(run.EndedAt.Sub(run.StartedAt))
		}
		a.say(green, "✓", "%s of %s to %s done%s (estimated %s) · epoch %d · run %s",
			pr.plan.Intent, pr.plan.Service, pr.plan.To, took, lifeboat.FormatDuration(pr.plan.RTO), pr.plan.Epoch, id)
		return nil
	case run.Status == lifeboat.RunWaiting:
		var steps []status.Approval
		if d.View != nil {
			steps = d.View.Waiting
		}
		if len(steps) == 0 {
			a.say(yellow, "?", "run %s waits for an approval ('lifeboat status' shows which)", id)
		}
		for _, w := range steps {
			a.say(yellow, "?", "run %s waits for approval of %q: %s\n  when a person agrees: lifeboat resume --approve %q", id, w.Step, w.Question, w.Step)
		}
		return &exitError{code: exitWaiting, err: errShown}
	case d.View != nil && d.View.Interrupted:
		a.say(red, "✗", "run %s is %s; 'lifeboat resume' goes on, 'lifeboat cancel' cleans up", id, d.View.Status)
		return &exitError{code: exitFailed, err: errShown}
	default:
		a.say(red, "✗", "run %s failed: %s", id, orDash(run.Error))
		return &exitError{code: exitFailed, err: errShown}
	}
}

// journal shows one record read from the API, as event does for a run in
// this process.
func (pr *progress) journal(rec lifeboat.Record) {
	if rec.Step == "" {
		return
	}
	step := pr.plan.Step(rec.Step)
	if step == nil {
		step = &lifeboat.Step{ID: rec.Step}
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.record(rec.Step, rec.Kind, rec.Attempt, rec.Error, rec.At)
	if pr.a.json() || pr.live {
		return
	}
	pr.line(step, rec.Kind, rec.Attempt, rec.Error)
}
