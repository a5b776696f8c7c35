package rfc2136

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/miekg/dns"
)

// session is one TCP connection to the primary for one call: every query
// and the update go over it (TCP: no truncation, and the server sees one
// client for the read and the write).
type session struct {
	d    *Driver
	op   lifeboat.Op
	t    lifeboat.Target
	c    *dns.Client
	conn *dns.Conn
}

func (d *Driver) dial(ctx context.Context, op lifeboat.Op, t lifeboat.Target) (*session, error) {
	c := &dns.Client{Net: "tcp", Timeout: d.c.Timeout}
	conn, err := c.DialContext(ctx, d.c.Server)
	if err != nil {
		return nil, d.exchangeErr(op, t, "connect", nil, err)
	}
	return &session{d: d, op: op, t: t, c: c, conn: conn}, nil
}

func (s *session) close() { _ = s.conn.Close() }

// exchange signs m, sends it and verifies the answer's signature.
//
// It signs by hand rather than with dns.Conn.WriteMsg: on a reused
// connection WriteMsg chains the previous request's MAC into the next
// signature (as zone transfers need), which the server rejects as BADSIG
// for a new, independent request.
func (s *session) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	secret := s.d.c.TSIG.Secret
	m.Id = dns.Id()
	m.SetTsig(s.d.key, s.d.alg, 300, time.Now().Unix())
	buf, mac, err := dns.TsigGenerate(m, secret, "", false)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(s.d.c.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = s.conn.SetDeadline(deadline)
	// A cancelled call must not wait for the deadline.
	stop := context.AfterFunc(ctx, func() { _ = s.conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := s.conn.Write(buf); err != nil {
		return nil, s.ctxErr(ctx, err)
	}
	p, err := s.conn.ReadMsgHeader(nil)
	if err != nil {
		return nil, s.ctxErr(ctx, err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(p); err != nil {
		return nil, fmt.Errorf("malformed answer: %w", err)
	}
	if r.Id != m.Id {
		return r, dns.ErrId
	}
	if r.IsTsig() == nil {
		if r.Rcode == dns.RcodeSuccess {
			return r, fmt.Errorf("the answer is not signed: %w", dns.ErrNoSig)
		}
		return r, nil // an error answer; rcodeErr says what it means
	}
	if err := dns.TsigVerify(p, secret, mac, false); err != nil {
		return r, err
	}
	return r, nil
}

func (s *session) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func (s *session) readAll(ctx context.Context, fqdns []string) ([]record, error) {
	recs := make([]record, len(fqdns))
	for i, fqdn := range fqdns {
		rec := record{name: fqdn}
		var err error
		if rec.a, err = s.query(ctx, fqdn, dns.TypeA); err != nil {
			return nil, err
		}
		if rec.aaaa, err = s.query(ctx, fqdn, dns.TypeAAAA); err != nil {
			return nil, err
		}
		if rec.txt, err = s.query(ctx, markName(fqdn), dns.TypeTXT); err != nil {
			return nil, err
		}
		rec.mark = parseMark(rec.txt)
		recs[i] = rec
	}
	return recs, nil
}

// query returns the record set name/qtype as the primary holds it.
func (s *session) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	d := s.d
	what := "query " + strings.TrimSuffix(name, ".") + " " + dns.TypeToString[qtype]
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	r, err := s.exchange(ctx, m)
	if err != nil {
		return nil, d.exchangeErr(s.op, s.t, what, r, err)
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, d.rcodeErr(s.op, s.t, what, r)
	}
	if !r.Authoritative {
		return nil, lifeboat.Permanent(s.op, s.t.Resource, fmt.Errorf(
			"%s: %s answered without authority for zone %s: point server at the zone's primary and check that the zone is loaded there", what, d.c.Server, d.zone))
	}
	var out []dns.RR
	for _, rr := range r.Answer {
		h := rr.Header()
		if !strings.EqualFold(h.Name, name) {
			continue
		}
		if h.Rrtype == dns.TypeCNAME {
			return nil, lifeboat.Permanent(s.op, s.t.Resource, fmt.Errorf(
				"%s: %s is a CNAME in zone %s at %s; the driver manages its A/AAAA records: delete the CNAME", what, name, d.zone, d.c.Server))
		}
		if h.Rrtype == qtype {
			out = append(out, rr)
		}
	}
	return out, nil
}

var tsigErrs = []error{dns.ErrSig, dns.ErrAuth, dns.ErrTime, dns.ErrSecret, dns.ErrKeyAlg, dns.ErrKey, dns.ErrNoSig}

// exchangeErr classifies a failed exchange. The server's answer, when
// there is one, says more than the transport.
func (d *Driver) exchangeErr(op lifeboat.Op, t lifeboat.Target, what string, r *dns.Msg, err error) error {
	if r != nil && r.Rcode != dns.RcodeSuccess {
		return d.rcodeErr(op, t, what, r)
	}
	for _, te := range tsigErrs {
		if errors.Is(err, te) {
			return lifeboat.Permanent(op, t.Resource, fmt.Errorf(
				"%s at %s: TSIG check of the answer failed (%w): %s", what, d.c.Server, err, d.keyHint()))
		}
	}
	return lifeboat.Transient(op, t.Resource, fmt.Errorf(
		"%s at %s (zone %s) failed: %w; check that the DNS server is running and reachable from here (retrying)", what, d.c.Server, d.zone, err))
}

func (d *Driver) keyHint() string {
	return fmt.Sprintf("check that TSIG key %q (%s) and its secret match the server's key statement, and that zone %s's allow-update or update-policy grants that key",
		strings.TrimSuffix(d.key, "."), strings.TrimSuffix(d.alg, "."), d.zone)
}

// rcodeErr classifies an answer that is not NOERROR.
func (d *Driver) rcodeErr(op lifeboat.Op, t lifeboat.Target, what string, r *dns.Msg) error {
	rc := dns.RcodeToString[r.Rcode]
	tsigErr := ""
	if ts := r.IsTsig(); ts != nil && ts.Error != 0 {
		tsigErr = ", TSIG " + dns.RcodeToString[int(ts.Error)]
	}
	switch {
	case r.Rcode == dns.RcodeServerFailure:
		return lifeboat.Transient(op, t.Resource, fmt.Errorf(
			"%s at %s: SERVFAIL (the server could not load or write zone %s now; its log says why); retrying", what, d.c.Server, d.zone))
	case strings.Contains(tsigErr, "BADTIME"):
		return lifeboat.Permanent(op, t.Resource, fmt.Errorf(
			"%s at %s: NOTAUTH%s: this machine's clock and the DNS server's differ by more than 5 minutes: fix NTP on both", what, d.c.Server, tsigErr))
	case r.Rcode == dns.RcodeNotAuth || r.Rcode == dns.RcodeRefused || tsigErr != "":
		return lifeboat.Permanent(op, t.Resource, fmt.Errorf("%s at %s: %s%s: %s", what, d.c.Server, rc, tsigErr, d.keyHint()))
	case r.Rcode == dns.RcodeNotZone:
		return lifeboat.Permanent(op, t.Resource, fmt.Errorf(
			"%s at %s: NOTZONE: the server is not the primary of zone %s: check zone and server", what, d.c.Server, d.zone))
	}
	return lifeboat.Permanent(op, t.Resource, fmt.Errorf("%s at %s (zone %s): %s", what, d.c.Server, d.zone, rc))
}
