package dns

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/miekg/dns"
)

// Ask asks a running server at addr (host:port) where names point, over
// the wire: the debugging TXT record _lifeboat.<name> gives the region,
// epoch and since, and the A and AAAA records the answers. It is Status
// for a process that does not host the server.
func Ask(ctx context.Context, addr string, t lifeboat.Target, names []string) (lifeboat.Route, error) {
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	query := func(name string, qtype uint16) ([]dns.RR, error) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		r, _, err := c.ExchangeContext(ctx, m, addr)
		if err != nil {
			return nil, lifeboat.Transient(lifeboat.OpTrafficSwitch, t.Resource, fmt.Errorf("dns: asking %s: %w", addr, err))
		}
		if r.Rcode != dns.RcodeSuccess {
			return nil, lifeboat.Permanent(lifeboat.OpTrafficSwitch, t.Resource, fmt.Errorf("dns: %s answers %s for %s", addr, dns.RcodeToString[r.Rcode], name))
		}
		return r.Answer, nil
	}
	rt := lifeboat.Route{Answers: make(map[string][]string, len(names))}
	for i, n := range names {
		txt, err := query("_lifeboat."+n, dns.TypeTXT)
		if err != nil {
			return lifeboat.Route{}, err
		}
		var region string
		var epoch uint64
		var since time.Time
		for _, rr := range txt {
			if t, ok := rr.(*dns.TXT); ok {
				region, epoch, since = parseDebug(strings.Join(t.Txt, ""))
			}
		}
		if i == 0 {
			rt.Region, rt.Epoch, rt.Since = region, epoch, since
		} else {
			if rt.Region != region {
				rt.Region = ""
			}
			rt.Epoch = min(rt.Epoch, epoch)
			if since.After(rt.Since) {
				rt.Since = since
			}
		}
		ans := []string{}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			rrs, err := query(n, qt)
			if err != nil {
				return lifeboat.Route{}, err
			}
			for _, rr := range rrs {
				switch a := rr.(type) {
				case *dns.A:
					ans = append(ans, a.A.String())
				case *dns.AAAA:
					ans = append(ans, a.AAAA.String())
				}
			}
		}
		rt.Answers[n] = ans
	}
	return rt, nil
}

// parseDebug reads "epoch=3 region=east since=2025-03-01T12:00:00Z".
func parseDebug(s string) (region string, epoch uint64, since time.Time) {
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "region":
			region = v
		case "epoch":
			epoch, _ = strconv.ParseUint(v, 10, 64)
		case "since":
			since, _ = time.Parse(time.RFC3339, v)
		}
	}
	return region, epoch, since
}
