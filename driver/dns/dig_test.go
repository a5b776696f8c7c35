package dns

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// digResult is what dig printed, parsed.
type digResult struct {
	status string
	flags  []string
	answer []string // "name ttl class type data", whitespace normalised
	auth   []string
	extra  []string
	out    string
}

var (
	digHeader = regexp.MustCompile(`status: ([A-Z]+)`)
	digFlags  = regexp.MustCompile(`;; flags: ([a-z ]*);`)
)

// dig runs the real dig against s with args (name, type, options).
func dig(t *testing.T, s *Server, args ...string) digResult {
	t.Helper()
	path, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig is not installed: run scripts/deps.sh (it installs Debian's dnsutils)")
	}
	host, port, _ := net.SplitHostPort(s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"@" + host, "-p", port, "+norecurse", "+time=5", "+tries=1"}, args...)
	out, err := exec.CommandContext(ctx, path, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	r := digResult{out: string(out)}
	var section *[]string
	sc := bufio.NewScanner(strings.NewReader(r.out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case r.status == "" && digHeader.MatchString(line):
			r.status = digHeader.FindStringSubmatch(line)[1]
		case r.flags == nil && digFlags.MatchString(line):
			r.flags = strings.Fields(digFlags.FindStringSubmatch(line)[1])
		case strings.HasPrefix(line, ";; ANSWER SECTION:"):
			section = &r.answer
		case strings.HasPrefix(line, ";; AUTHORITY SECTION:"):
			section = &r.auth
		case strings.HasPrefix(line, ";; ADDITIONAL SECTION:"):
			section = &r.extra
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, ";"):
			section = nil
		case section != nil:
			*section = append(*section, strings.Join(strings.Fields(line), " "))
		}
	}
	return r
}

func (r digResult) has(flag string) bool { return slices.Contains(r.flags, flag) }

// data returns the last field of each record of a section, sorted.
func data(rrs []string) []string {
	var out []string
	for _, rr := range rrs {
		f := strings.Fields(rr)
		out = append(out, f[len(f)-1])
	}
	slices.Sort(out)
	return out
}

func TestDig(t *testing.T) {
	s := start(t, testConfig())
	must(t, s.SetName(www()))
	must(t, s.SetName(Name{Name: "big." + zone, TTL: time.Minute, Active: "west",
		Endpoints: map[string][]Endpoint{"west": many(100, 1), "east": many(100, 2)}}))
	name := "www." + zone

	r := dig(t, s, name, "A")
	if r.status != "NOERROR" || !r.has("aa") || !slices.Equal(data(r.answer), strs(west4...)) ||
		!strings.HasPrefix(r.answer[0], name+" 30 IN A ") {
		t.Errorf("dig A: status %s flags %v answer %v\n%s", r.status, r.flags, r.answer, r.out)
	}
	r = dig(t, s, name, "AAAA")
	if r.status != "NOERROR" || !slices.Equal(data(r.answer), strs(west6)) {
		t.Errorf("dig AAAA: %v\n%s", r.answer, r.out)
	}
	r = dig(t, s, "_lifeboat."+name, "TXT")
	if len(r.answer) != 1 || !strings.Contains(r.answer[0], `"epoch=0 region=west since=`) {
		t.Errorf("dig TXT: %v\n%s", r.answer, r.out)
	}
	r = dig(t, s, zone, "SOA")
	if len(r.answer) != 1 || !strings.Contains(r.answer[0], "IN SOA ns-west."+zone+" hostmaster."+zone) {
		t.Errorf("dig SOA: %v\n%s", r.answer, r.out)
	}
	r = dig(t, s, zone, "NS")
	if !slices.Equal(data(r.answer), []string{"ns-east." + zone, "ns-west." + zone}) ||
		!slices.Contains(r.extra, "ns-west."+zone+" 60 IN A 127.0.0.1") || !slices.Contains(r.extra, "ns-east."+zone+" 60 IN A 127.0.0.2") {
		t.Errorf("dig NS: answer %v additional %v\n%s", r.answer, r.extra, r.out)
	}
	r = dig(t, s, "nope."+zone, "A")
	if r.status != "NXDOMAIN" || !r.has("aa") || len(r.auth) != 1 || !strings.HasPrefix(r.auth[0], zone+" 5 IN SOA") {
		t.Errorf("dig NXDOMAIN: status %s auth %v\n%s", r.status, r.auth, r.out)
	}
	r = dig(t, s, name, "MX")
	if r.status != "NOERROR" || len(r.answer) != 0 || len(r.auth) != 1 || !strings.HasPrefix(r.auth[0], zone+" 5 IN SOA") {
		t.Errorf("dig NODATA: status %s answer %v auth %v\n%s", r.status, r.answer, r.auth, r.out)
	}
	r = dig(t, s, "www.example.com.", "A")
	if r.status != "REFUSED" || r.has("aa") {
		t.Errorf("dig outside the zone: status %s flags %v\n%s", r.status, r.flags, r.out)
	}

	// Truncation: without EDNS the 512-byte UDP answer has TC set and
	// only part of the records (+ignore keeps dig from retrying)...
	r = dig(t, s, "+noedns", "+ignore", "big."+zone, "A")
	if !r.has("tc") || len(r.answer) >= 100 {
		t.Errorf("dig +noedns +ignore: flags %v, %d answers; want tc and part of them\n%s", r.flags, len(r.answer), r.out)
	}
	// ...dig's own retry over TCP after truncation gets all of them...
	r = dig(t, s, "+noedns", "big."+zone, "A")
	if r.has("tc") || len(r.answer) != 100 || !strings.Contains(r.out, "Truncated, retrying in TCP mode") {
		t.Errorf("dig retrying over TCP: flags %v, %d answers; want all 100\n%s", r.flags, len(r.answer), r.out)
	}
	// ...and so does asking over TCP at once.
	r = dig(t, s, "+tcp", "big."+zone, "A")
	if r.has("tc") || len(r.answer) != 100 {
		t.Errorf("dig +tcp: flags %v, %d answers; want all 100\n%s", r.flags, len(r.answer), r.out)
	}

	// A switch is seen by the next query.
	must(t, s.Switch(context.Background(), target("east", 2), []string{name}))
	r = dig(t, s, name, "A")
	if !slices.Equal(data(r.answer), strs(east4...)) {
		t.Errorf("dig A after the switch to east: %v\n%s", r.answer, r.out)
	}
	r = dig(t, s, "_lifeboat."+name, "TXT")
	if len(r.answer) != 1 || !strings.Contains(r.answer[0], `"epoch=2 region=east since=`) {
		t.Errorf("dig TXT after the switch: %v\n%s", r.answer, r.out)
	}
}
