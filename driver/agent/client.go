package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// NewClient returns drivers that call an agent at baseURL
// ("http://127.0.0.1:PORT"). Kinds the agent doesn't serve return a
// permanent error naming the agent and the kind when called. hc nil means a
// client with sane timeouts; the caller's context bounds each call. Scripts
// is nil: hooks run where the CLI runs.
func NewClient(baseURL string, hc *http.Client) lifeboat.Drivers {
	if hc == nil {
		hc = defaultHTTPClient()
	}
	c := &client{base: strings.TrimRight(baseURL, "/"), hc: hc}
	return lifeboat.Drivers{Compute: compute{c}, Database: database{c}, Backup: backup{c}, Traffic: traffic{c}}
}

// defaultHTTPClient fails fast when the agent is not there (a short dial
// timeout) but lets a call run as long as its context allows: a switchover
// waits for a replica to replay, so no per-response timeout fits every call.
// The overall Timeout is only a backstop for callers without a deadline.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Minute,
		Transport: &http.Transport{
			Proxy:               nil, // agents are reached directly, never through a proxy
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// Ping checks that an agent answers at baseURL. Not answering is retryable
// (it may be starting); answering as something other than an agent is not.
func Ping(ctx context.Context, baseURL string) error {
	const op = lifeboat.Op("agent.ping")
	base := strings.TrimRight(baseURL, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/health", nil)
	if err != nil {
		return lifeboat.Permanent(op, base, fmt.Errorf("bad agent URL %q (want http://127.0.0.1:PORT): %w", baseURL, err))
	}
	resp, err := defaultHTTPClient().Do(req)
	if err != nil {
		return transportError(ctx, op, base, base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRequest))
	if err != nil {
		return transportError(ctx, op, base, base, err)
	}
	var h health
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &h) != nil || h.Status != "ok" {
		return lifeboat.Permanent(op, base, fmt.Errorf("%s answers GET /v1/health with HTTP %s %q, not as a lifeboat agent: check the port (drivers.agent.url in the spec)",
			base, resp.Status, snippet(body)))
	}
	return nil
}

type client struct {
	base string
	hc   *http.Client
}

// call posts q to the endpoint of action and decodes the answer into out
// (nil: the call returns only an error).
func (c *client) call(ctx context.Context, action string, q *request, out any) error {
	op, res := lifeboat.Op(action), q.Target.Resource
	body, err := json.Marshal(q)
	if err != nil {
		return lifeboat.Permanent(op, res, fmt.Errorf("cannot encode the request to the agent at %s: %w", c.base, err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+pathOf(action), bytes.NewReader(body))
	if err != nil {
		return lifeboat.Permanent(op, res, fmt.Errorf("bad agent URL %q (want http://127.0.0.1:PORT; see drivers.agent.url in the spec): %w", c.base, err))
	}
	req.Header.Set("Content-Type", "application/json")
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set(timeoutHeader, remainingTimeout(dl))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return transportError(ctx, op, res, c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return transportError(ctx, op, res, c.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return c.remoteError(op, res, resp, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return lifeboat.Permanent(op, res, fmt.Errorf("cannot read the answer of the agent at %s to POST %s (client and agent versions may differ): %w",
			c.base, pathOf(action), err))
	}
	return nil
}

// remoteError rebuilds a driver's failure from the agent's answer.
func (c *client) remoteError(op lifeboat.Op, res string, resp *http.Response, raw []byte) error {
	var b errorBody
	if json.Unmarshal(raw, &b) == nil && b.Error != nil && b.Error.Message != "" {
		e := &remoteError{agent: c.base, wireError: *b.Error}
		if resp.StatusCode == http.StatusNotFound && isOptional(string(op)) {
			// An agent older than the optional call: it cannot answer it.
			e.Unsupported = true
			e.Message = fmt.Sprintf("%s %s: the agent does not know this readiness question (it predates it): upgrade the agent; %s", op, res, e.Message)
		}
		return e
	}
	// Not an agent's answer (a proxy, another server on the port): judge by
	// the status alone.
	err := fmt.Errorf("the agent at %s answered POST %s with HTTP %s %q, not a driver's answer: check drivers.agent.url in the spec",
		c.base, resp.Request.URL.Path, resp.Status, snippet(raw))
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented {
		return lifeboat.Transient(op, res, err)
	}
	return lifeboat.Permanent(op, res, err)
}

// transportError is a call that got no answer: retryable, since the agent
// may be restarting. A call its own context abandoned says so and keeps the
// context's error (errors.Is(err, context.DeadlineExceeded)).
func transportError(ctx context.Context, op lifeboat.Op, res, base string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return lifeboat.Transient(op, res, fmt.Errorf("gave up waiting for the agent at %s: %w", base, ctxErr))
	}
	return lifeboat.Transient(op, res, fmt.Errorf("the agent at %s does not answer (is the agent running? for the lab, `lifeboat lab up` starts it): %w", base, err))
}

// remoteError is a driver's failure reported by an agent. It answers
// lifeboat.IsRetryable and errors.Is(err, lifeboat.ErrStaleEpoch) as the
// agent's error did; the driver's own message already names the action
// and resource.
type remoteError struct {
	agent string
	wireError
}

func (e *remoteError) Error() string   { return "agent at " + e.agent + ": " + e.Message }
func (e *remoteError) Retryable() bool { return e.wireError.Retryable && !e.StaleEpoch }
func (e *remoteError) Is(target error) bool {
	return (e.StaleEpoch && target == lifeboat.ErrStaleEpoch) || (e.Unsupported && target == errors.ErrUnsupported)
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

type compute struct{ c *client }

func (d compute) Status(ctx context.Context, t lifeboat.Target) (ss lifeboat.ScaleSet, err error) {
	err = d.c.call(ctx, lifeboat.ActComputeStatus, &request{Target: t}, &ss)
	return ss, err
}

func (d compute) Provision(ctx context.Context, t lifeboat.Target, c lifeboat.Compute) error {
	return d.c.call(ctx, lifeboat.ActComputeProvision, &request{Target: t, Compute: &c}, nil)
}

func (d compute) Scale(ctx context.Context, t lifeboat.Target, instances int) error {
	return d.c.call(ctx, lifeboat.ActComputeScale, &request{Target: t, Instances: instances}, nil)
}

func (d compute) Delete(ctx context.Context, t lifeboat.Target) error {
	return d.c.call(ctx, lifeboat.ActComputeDelete, &request{Target: t}, nil)
}

type database struct{ c *client }

func (d database) Status(ctx context.Context, t lifeboat.Target) (st lifeboat.DatabaseStatus, err error) {
	err = d.c.call(ctx, lifeboat.ActDatabaseStatus, &request{Target: t}, &st)
	return st, err
}

func (d database) Fence(ctx context.Context, t lifeboat.Target) error {
	return d.c.call(ctx, lifeboat.ActDatabaseFence, &request{Target: t}, nil)
}

func (d database) Promote(ctx context.Context, t lifeboat.Target) error {
	return d.c.call(ctx, lifeboat.ActDatabasePromote, &request{Target: t}, nil)
}

func (d database) Switchover(ctx context.Context, from, t lifeboat.Target) error {
	return d.c.call(ctx, lifeboat.ActDatabaseSwitchover, &request{Target: t, From: from}, nil)
}

func (d database) Rejoin(ctx context.Context, t, primary lifeboat.Target) error {
	return d.c.call(ctx, lifeboat.ActDatabaseRejoin, &request{Target: t, Primary: primary}, nil)
}

type backup struct{ c *client }

func (d backup) Latest(ctx context.Context, t lifeboat.Target) (b lifeboat.BackupInfo, err error) {
	err = d.c.call(ctx, lifeboat.ActBackupLatest, &request{Target: t}, &b)
	return b, err
}

func (d backup) Take(ctx context.Context, t lifeboat.Target) (b lifeboat.BackupInfo, err error) {
	err = d.c.call(ctx, lifeboat.ActBackupTake, &request{Target: t}, &b)
	return b, err
}

func (d backup) Restore(ctx context.Context, t lifeboat.Target) error {
	return d.c.call(ctx, lifeboat.ActBackupRestore, &request{Target: t}, nil)
}

type traffic struct{ c *client }

func (d traffic) Status(ctx context.Context, t lifeboat.Target, names []string) (r lifeboat.Route, err error) {
	err = d.c.call(ctx, lifeboat.ActTrafficStatus, &request{Target: t, Names: names}, &r)
	return r, err
}

func (d traffic) Switch(ctx context.Context, t lifeboat.Target, names []string) error {
	return d.c.call(ctx, lifeboat.ActTrafficSwitch, &request{Target: t, Names: names}, nil)
}
