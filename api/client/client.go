// Package client calls the HTTP API of a running 'lifeboat serve', so
// that the CLI shows what the controller shows.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/api"
	"github.com/lifeboat-dr/lifeboat/status"
	"github.com/lifeboat-dr/lifeboat/store"
)

// TokenEnv is the environment variable the CLI reads its bearer token from.
const TokenEnv = "LIFEBOAT_TOKEN"

// Client calls one API server. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client of the API at baseURL (e.g. http://127.0.0.1:7480)
// that sends token as its bearer token. hc nil: a client with a 30 s
// timeout.
func New(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}
}

// URL is the API's base URL for the spec: https when api.tls is set, at
// api.Addr(spec, region).
func URL(spec *lifeboat.Spec, region string) string {
	scheme := "http"
	if spec.API != nil && spec.API.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + api.Addr(spec, region)
}

// FromSpec returns a client of the API the spec describes, with the token
// from $LIFEBOAT_TOKEN. With mutual TLS, pass tlsConfig with the client's
// certificate (nil otherwise).
func FromSpec(spec *lifeboat.Spec, region string, tlsConfig *tls.Config) *Client {
	hc := &http.Client{Timeout: 30 * time.Second}
	if tlsConfig != nil {
		hc.Transport = &http.Transport{TLSClientConfig: tlsConfig}
	}
	return New(URL(spec, region), os.Getenv(TokenEnv), hc)
}

// Error is an answer other than 2xx: the API's {error, hint} with its code.
type Error struct {
	Code int
	// Message and Hint are the server's error and hint.
	Message, Hint string
}

func (e *Error) Error() string {
	if e.Hint != "" {
		return fmt.Sprintf("%s (HTTP %d; %s)", e.Message, e.Code, e.Hint)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Code)
}

// Retryable reports whether trying again may help (the server or its
// store did not answer).
func (e *Error) Retryable() bool {
	return e.Code == http.StatusServiceUnavailable || e.Code == http.StatusBadGateway
}

// IsUnreachable reports whether err means no API server answered at all
// (the CLI then works on the store directly).
func IsUnreachable(err error) bool {
	var e *Error
	return err != nil && !errors.As(err, &e)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, lifeboat.Transient(lifeboat.Op("api."+strings.ToLower(method)), path, fmt.Errorf("no answer from the lifeboat API at %s: %w", c.base, err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, lifeboat.Transient(lifeboat.Op("api."+strings.ToLower(method)), path, fmt.Errorf("reading the answer of %s: %w", c.base, err))
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Code: resp.StatusCode}
		var ae api.Error
		if json.Unmarshal(b, &ae) != nil || ae.Error == "" {
			ae.Error = fmt.Sprintf("%s %s: %s", method, path, strings.TrimSpace(string(b)))
		}
		e.Message, e.Hint = ae.Error, ae.Hint
		return resp.Header, e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("the answer of %s %s is not the JSON expected (a lifeboat of another version?): %w", method, path, err)
		}
	}
	return resp.Header, nil
}

func get[T any](c *Client, ctx context.Context, path string) (T, error) {
	var v T
	_, err := c.do(ctx, http.MethodGet, path, nil, &v)
	return v, err
}

// Whoami says who the token names.
func (c *Client) Whoami(ctx context.Context) (api.Identity, error) {
	return get[api.Identity](c, ctx, "/v1/whoami")
}

// Status is what 'lifeboat status' shows.
func (c *Client) Status(ctx context.Context) (*status.View, error) {
	return get[*status.View](c, ctx, "/v1/status")
}

// Readiness is the readiness checks with reasons.
func (c *Client) Readiness(ctx context.Context) (api.ReadinessView, error) {
	return get[api.ReadinessView](c, ctx, "/v1/readiness")
}

// Plan previews the plan of intent (to: "" for the default destination).
func (c *Client) Plan(ctx context.Context, intent lifeboat.Intent, to string) (api.PlanPreview, error) {
	p := "/v1/plans/" + url.PathEscape(string(intent))
	if to != "" {
		p += "?to=" + url.QueryEscape(to)
	}
	return get[api.PlanPreview](c, ctx, p)
}

// Runs lists every run, newest first.
func (c *Client) Runs(ctx context.Context) ([]*lifeboat.Run, error) {
	return get[[]*lifeboat.Run](c, ctx, "/v1/runs")
}

// Run returns a run with its journal.
func (c *Client) Run(ctx context.Context, id string) (api.RunDetail, error) {
	return get[api.RunDetail](c, ctx, "/v1/runs/"+url.PathEscape(id))
}

// History lists past runs as 'lifeboat history' does.
func (c *Client) History(ctx context.Context) ([]api.HistoryRow, error) {
	return get[[]api.HistoryRow](c, ctx, "/v1/history")
}

// Units is the unit registry.
func (c *Client) Units(ctx context.Context) ([]status.Unit, error) {
	return get[[]status.Unit](c, ctx, "/v1/units")
}

// Drills lists the drill reports.
func (c *Client) Drills(ctx context.Context) ([]api.DrillReport, error) {
	return get[[]api.DrillReport](c, ctx, "/v1/drills")
}

// Audit reads the audit trail; since is RFC 3339 or a duration ("24h").
func (c *Client) Audit(ctx context.Context, since string, limit int) ([]store.AuditRecord, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	p := "/v1/audit"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return get[[]store.AuditRecord](c, ctx, p)
}

func (c *Client) post(ctx context.Context, path string, in any) (api.Accepted, error) {
	var a api.Accepted
	_, err := c.do(ctx, http.MethodPost, path, in, &a)
	return a, err
}

// Start starts a run; follow it with Run or Wait.
func (c *Client) Start(ctx context.Context, req api.StartRun) (api.Accepted, error) {
	return c.post(ctx, "/v1/runs", req)
}

// Approve approves a waiting approval step; the run goes on.
func (c *Client) Approve(ctx context.Context, run, step string) (api.Accepted, error) {
	return c.post(ctx, "/v1/runs/"+url.PathEscape(run)+"/approve", api.Approve{Step: step})
}

// Cancel cancels a run and cleans up.
func (c *Client) Cancel(ctx context.Context, run string) (api.Accepted, error) {
	return c.post(ctx, "/v1/runs/"+url.PathEscape(run)+"/cancel", nil)
}

// Resume resumes a run, approving the steps listed.
func (c *Client) Resume(ctx context.Context, run string, approve ...string) (api.Accepted, error) {
	return c.post(ctx, "/v1/runs/"+url.PathEscape(run)+"/resume", api.ResumeRun{Approve: approve})
}

// Wait polls a run every poll until it is no longer running (it ended,
// failed, or waits for an approval) or ctx ends.
func (c *Client) Wait(ctx context.Context, run string, poll time.Duration) (api.RunDetail, error) {
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	for {
		d, err := c.Run(ctx, run)
		if err != nil {
			return d, err
		}
		if d.Run.Status != lifeboat.RunRunning || d.View != nil && d.View.Interrupted {
			return d, nil
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return d, ctx.Err()
		case <-t.C:
		}
	}
}
