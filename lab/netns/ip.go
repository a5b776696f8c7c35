package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ip runs the ip command, inside namespace ns unless ns is "".
func ip(ctx context.Context, ns string, args ...string) error {
	_, err := ipOut(ctx, ns, args...)
	return err
}

func ipOut(ctx context.Context, ns string, args ...string) ([]byte, error) {
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ip %s: %w", strings.Join(args, " "), ctx.Err())
		}
		return nil, &ipError{args: args, err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return out, nil
}

type ipError struct {
	args   []string
	err    error
	stderr string
}

func (e *ipError) Error() string {
	return fmt.Sprintf("ip %s: %v: %s", strings.Join(e.args, " "), e.err, e.stderr)
}

func (e *ipError) Unwrap() error { return e.err }

// says reports whether err is an ip failure whose message contains one of
// msgs: how "already there" and "already gone" are told apart from real
// failures, since ip exits 2 for all of them.
func says(err error, msgs ...string) bool {
	var e *ipError
	if !errors.As(err, &e) {
		return false
	}
	for _, m := range msgs {
		if strings.Contains(e.stderr, m) {
			return true
		}
	}
	return false
}

func linkExists(ctx context.Context, name string) bool {
	return ip(ctx, "", "link", "show", "dev", name) == nil
}

// linkAlias returns the alias of a link in namespace ns ("" for the host).
func linkAlias(ctx context.Context, ns, name string) (string, error) {
	out, err := ipOut(ctx, ns, "-j", "link", "show", "dev", name)
	if err != nil {
		return "", err
	}
	var links []struct {
		IfAlias string `json:"ifalias"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return "", fmt.Errorf("ip -j link show dev %s: unexpected output %q", name, out)
	}
	return links[0].IfAlias, nil
}

func delLink(ctx context.Context, name string) error {
	err := ip(ctx, "", "link", "del", "dev", name)
	if err != nil && (says(err, "Cannot find device", "does not exist") || !linkExists(ctx, name)) {
		return nil
	}
	return err
}

// nsPath is where ip netns keeps the namespace's bind mount.
func nsPath(name string) string { return filepath.Join("/run/netns", name) }

func delNamespace(ctx context.Context, name string) error {
	if _, err := os.Stat(nsPath(name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	err := ip(ctx, "", "netns", "del", name)
	if err != nil && says(err, "No such file") {
		return nil
	}
	return err
}

// disableIPv6Link turns IPv6 off on one host interface: a per-interface
// setting, gone with the interface, not a global one.
func disableIPv6Link(name string) error {
	file := filepath.Join("/proc/sys/net/ipv6/conf", name, "disable_ipv6")
	if err := os.WriteFile(file, []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("disable IPv6 on %s: %w", name, err)
	}
	return nil
}

// usedPrefixes returns every IPv4 prefix routed on the host (any table),
// every host address, and the subnets of other live Nets' records.
func usedPrefixes(ctx context.Context) ([]netip.Prefix, error) {
	var used []netip.Prefix
	out, err := ipOut(ctx, "", "-4", "-j", "route", "show", "table", "all")
	if err != nil {
		return nil, fmt.Errorf("list the host's routes to choose a free subnet: %w", err)
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("list the host's routes: unexpected output of ip -4 -j route: %w", err)
	}
	for _, r := range routes {
		if p, ok := parsePrefix(r.Dst); ok {
			used = append(used, p)
		}
	}
	out, err = ipOut(ctx, "", "-4", "-j", "addr", "show")
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses to choose a free subnet: %w", err)
	}
	var ifs []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &ifs); err != nil {
		return nil, fmt.Errorf("list the host's addresses: unexpected output of ip -4 -j addr: %w", err)
	}
	for _, i := range ifs {
		for _, a := range i.AddrInfo {
			if addr, err := netip.ParseAddr(a.Local); err == nil {
				used = append(used, netip.PrefixFrom(addr, a.PrefixLen).Masked())
			}
		}
	}
	recs, err := records()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if p, err := netip.ParsePrefix(r.Subnet); err == nil {
			used = append(used, p)
		}
	}
	return used, nil
}

// parsePrefix reads a route destination: "10.0.0.0/8", "192.0.2.1" (a
// host route), or "default" (skipped: it overlaps everything and is no
// clash, since the bridge's connected route is more specific).
func parsePrefix(dst string) (netip.Prefix, bool) {
	if dst == "" || dst == "default" {
		return netip.Prefix{}, false
	}
	if p, err := netip.ParsePrefix(dst); err == nil {
		return p.Masked(), p.Addr().Is4()
	}
	if a, err := netip.ParseAddr(dst); err == nil && a.Is4() {
		return netip.PrefixFrom(a, 32), true
	}
	return netip.Prefix{}, false
}

// freeSubnet returns the first 10.77.<n>.0/24 that overlaps nothing in used.
func freeSubnet(used []netip.Prefix) (netip.Prefix, error) {
next:
	for n := 0; n < 256; n++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(n), 0}), 24)
		for _, u := range used {
			if u.Overlaps(p) {
				continue next
			}
		}
		return p, nil
	}
	return netip.Prefix{}, errors.New("no free subnet: every 10.77.<n>.0/24 is routed on this host or used by a lab network: sweep stale lab networks (netns.SweepStale) or set Options.Subnet")
}
