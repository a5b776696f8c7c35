// Package netns gives each lab region its own Linux network namespace, so
// that faults can be injected between regions pairwise, for every protocol
// (etcd peer traffic included), and not only on the links that go through a
// proxy.
//
// Layout (Up): one namespace per region, named <prefix>-<region>; a bridge
// <prefix>-br in the host namespace, holding the host address (the subnet's
// last usable address, .254 in a /24); one veth pair per region, the host
// side <prefix>-v<i> enslaved to the bridge, the namespace side renamed eth0
// with address .1, .2, .3 … in region order. Each namespace has loopback up
// and a default route via the host address. Namespace to namespace traffic
// is bridged (layer 2), so the host needs neither ip_forward nor any other
// global setting; Up changes none.
//
// Faults drop packets silently, as a real WAN partition does: a sender sees
// no error, only silence (connect times out, writes are buffered and
// retransmitted), on new and established TCP connections alike. When the
// fault is healed, established connections that have not timed out resume
// and deliver what was written during the fault.
//
//   - Cut(a, b): in each of a and b, a policy rule blackholes packets
//     arriving from the other. Both namespaces' rule lists are rearranged at
//     Up so that these rules come before the local table (pref 0 moved to
//     1000), otherwise locally addressed packets would bypass them.
//   - Isolate(a): the host side of a's veth is set down, so a's packets reach
//     no one (other regions and every host address) and no one's reach a.
//
// Neighbour (ARP) entries are permanent, so that a Cut, which also drops the
// ARP replies' route lookups, does not turn into "no route to host" errors
// after the neighbour cache expires. IPv6 is disabled on every interface Up
// creates, so link-local addresses cannot bypass the IPv4 faults.
//
// Only addresses in the chosen subnet (default: the first 10.77.<n>.0/24
// that no host route or other live Net overlaps) are used.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// Ops name this package's actions in errors.
const (
	OpUp    lifeboat.Op = "netns.up"
	OpFault lifeboat.Op = "netns.fault"
	OpDown  lifeboat.Op = "netns.down"
	OpSweep lifeboat.Op = "netns.sweep"
	OpExec  lifeboat.Op = "netns.exec"
)

// StateDir holds one record per live Net (what it created, for Sweep) and
// the lock that serialises subnet choice across processes. /run is a tmpfs,
// cleared at reboot, as namespaces and links are.
const StateDir = "/run/lifeboat/netns"

// Limits that keep every interface name within IFNAMSIZ-1 = 15 characters:
// <prefix>-br, <prefix>-v<i>, <prefix>-p<i>.
const (
	MaxPrefix  = 10
	MaxRegions = 99
)

// Options says what Up creates.
type Options struct {
	// Prefix names everything Up creates, and is what Sweep finds: a
	// lower-case letter, then letters, digits or '-', at most MaxPrefix.
	Prefix string
	// Subnet is the IPv4 subnet of the bridge. Zero: the first free
	// 10.77.<n>.0/24.
	Subnet netip.Prefix
	// Regions get addresses .1, .2, … in this order.
	Regions []string
}

// DefaultOptions returns options with a fresh random prefix ("lb-" and four
// hex digits) and no regions.
func DefaultOptions() Options {
	return Options{Prefix: RandomPrefix()}
}

// RandomPrefix returns "lb-" and four random hex digits.
func RandomPrefix() string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return "lb-" + hex.EncodeToString(b[:])
}

var (
	prefixRE = regexp.MustCompile(`^[a-z][a-z0-9-]*[a-z0-9]$`)
	regionRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
)

// ValidateOptions says what is wrong with o, if anything.
func ValidateOptions(o Options) error {
	var errs []error
	if len(o.Prefix) > MaxPrefix || !prefixRE.MatchString(o.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q: want a lower-case letter then letters, digits or '-', 2 to %d characters (interface names are limited to 15): use netns.RandomPrefix()", o.Prefix, MaxPrefix))
	}
	if len(o.Regions) == 0 {
		errs = append(errs, errors.New("no regions: list at least one, e.g. west, east, central"))
	}
	if len(o.Regions) > MaxRegions {
		errs = append(errs, fmt.Errorf("%d regions: at most %d", len(o.Regions), MaxRegions))
	}
	seen := map[string]bool{}
	for _, r := range o.Regions {
		if !regionRE.MatchString(r) {
			errs = append(errs, fmt.Errorf("region %q: want a lower-case letter then letters, digits or '-', at most 32 characters", r))
		}
		if seen[r] {
			errs = append(errs, fmt.Errorf("region %q listed twice", r))
		}
		seen[r] = true
	}
	if o.Subnet.IsValid() {
		if !o.Subnet.Addr().Is4() {
			errs = append(errs, fmt.Errorf("subnet %s: want IPv4", o.Subnet))
		} else if o.Subnet.Bits() < 16 || o.Subnet.Bits() > 29 {
			errs = append(errs, fmt.Errorf("subnet %s: want a prefix length between /16 and /29", o.Subnet))
		} else if o.Subnet.Masked() != o.Subnet {
			errs = append(errs, fmt.Errorf("subnet %s has host bits set: did you mean %s?", o.Subnet, o.Subnet.Masked()))
		} else if hosts := 1<<(32-o.Subnet.Bits()) - 2; hosts < len(o.Regions)+1 {
			errs = append(errs, fmt.Errorf("subnet %s has %d host addresses, %d needed (regions and host)", o.Subnet, hosts, len(o.Regions)+1))
		}
	}
	return errors.Join(errs...)
}

// Net is the namespaces, bridge and veths of one Up. Its methods are safe
// for concurrent use.
type Net struct {
	prefix  string
	subnet  netip.Prefix
	host    netip.Addr
	hostMAC string
	bridge  string
	regions []*region
	byName  map[string]*region

	mu       sync.Mutex
	cuts     map[[2]string]bool // keys sorted
	isolated map[string]bool
	down     bool
}

type region struct {
	name string
	ns   string     // namespace name
	veth string     // host side, enslaved to the bridge
	peer string     // namespace side before it is moved and renamed eth0
	addr netip.Addr // of eth0
	mac  string     // of eth0
}

// nsIf is the interface name inside every namespace.
const nsIf = "eth0"

// Up creates the namespaces, bridge and veths. On error it removes what it
// created. The caller must Down the Net (t.Cleanup in tests).
func Up(ctx context.Context, o Options) (*Net, error) {
	if err := ValidateOptions(o); err != nil {
		return nil, lifeboat.Permanent(OpUp, o.Prefix, err)
	}
	if os.Geteuid() != 0 {
		return nil, lifeboat.Permanent(OpUp, o.Prefix, errors.New("network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run as root"))
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, lifeboat.Permanent(OpUp, o.Prefix, fmt.Errorf("the ip command (iproute2) is not installed: apt-get install iproute2: %w", err))
	}
	unlock, err := lockState()
	if err != nil {
		return nil, lifeboat.Transient(OpUp, o.Prefix, err)
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	if rec, err := readRecord(o.Prefix); err == nil {
		return nil, lifeboat.Permanent(OpUp, o.Prefix, fmt.Errorf("prefix %s is already in use (record %s, pid %d): choose another prefix, or if that run crashed remove its leftovers with netns.Sweep(%q)", o.Prefix, recordPath(o.Prefix), rec.PID, o.Prefix))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, lifeboat.Permanent(OpUp, o.Prefix, err)
	}
	subnet := o.Subnet
	used, err := usedPrefixes(ctx)
	if err != nil {
		return nil, lifeboat.Transient(OpUp, o.Prefix, err)
	}
	if subnet.IsValid() {
		for _, u := range used {
			if u.Overlaps(subnet) {
				return nil, lifeboat.Permanent(OpUp, o.Prefix, fmt.Errorf("subnet %s overlaps %s, already routed on this host or used by another lab: leave Subnet empty to pick a free 10.77.<n>.0/24", subnet, u))
			}
		}
	} else if subnet, err = freeSubnet(used); err != nil {
		return nil, lifeboat.Permanent(OpUp, o.Prefix, err)
	}

	n := newNet(o, subnet)
	for _, name := range n.linkNames() {
		if linkExists(ctx, name) {
			return nil, lifeboat.Permanent(OpUp, o.Prefix, fmt.Errorf("interface %s already exists but no record of it does: remove it by hand (ip link del %s) if nothing uses it, or choose another prefix", name, name))
		}
	}
	for _, r := range n.regions {
		if _, err := os.Stat(nsPath(r.ns)); err == nil {
			return nil, lifeboat.Permanent(OpUp, o.Prefix, fmt.Errorf("namespace %s already exists but no record of it does: remove it by hand (ip netns del %s) if nothing uses it, or choose another prefix", r.ns, r.ns))
		}
	}
	// The record is written before anything is created, so that Sweep can
	// find whatever a crash leaves behind.
	if err := writeRecord(n.record()); err != nil {
		return nil, lifeboat.Transient(OpUp, o.Prefix, err)
	}
	fail := func(err error) (*Net, error) {
		if derr := n.Down(); derr != nil {
			err = fmt.Errorf("%w; and removing what was created failed too: %v", err, derr)
		}
		return nil, lifeboat.Permanent(OpUp, o.Prefix, err)
	}
	if err := n.upBridge(ctx); err != nil {
		return fail(err)
	}
	// The bridge's address now routes the subnet, so the next Up sees it.
	unlock()
	locked = false
	for _, r := range n.regions {
		if err := n.upRegion(ctx, r); err != nil {
			return fail(err)
		}
	}
	if err := n.upNeighbours(ctx); err != nil {
		return fail(err)
	}
	return n, nil
}

func newNet(o Options, subnet netip.Prefix) *Net {
	base := subnet.Masked().Addr()
	size := 1 << (32 - subnet.Bits())
	b4 := base.As4()
	id := fmt.Sprintf("%02x:%02x", b4[1], b4[2])
	n := &Net{
		prefix:   o.Prefix,
		subnet:   subnet,
		host:     addrAt(base, size-2),
		hostMAC:  "02:6c:62:" + id + ":fe",
		bridge:   o.Prefix + "-br",
		byName:   map[string]*region{},
		cuts:     map[[2]string]bool{},
		isolated: map[string]bool{},
	}
	for i, name := range o.Regions {
		r := &region{
			name: name,
			ns:   o.Prefix + "-" + name,
			veth: o.Prefix + "-v" + strconv.Itoa(i),
			peer: o.Prefix + "-p" + strconv.Itoa(i),
			addr: addrAt(base, i+1),
			mac:  fmt.Sprintf("02:6c:62:%s:%02x", id, i+1),
		}
		n.regions = append(n.regions, r)
		n.byName[name] = r
	}
	return n
}

func addrAt(base netip.Addr, off int) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(off)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (n *Net) linkNames() []string {
	names := []string{n.bridge}
	for _, r := range n.regions {
		names = append(names, r.veth, r.peer)
	}
	return names
}

func (n *Net) upBridge(ctx context.Context) error {
	br := n.bridge
	if err := ip(ctx, "", "link", "add", br, "type", "bridge"); err != nil {
		return err
	}
	// A fixed address: by default a bridge takes its lowest port's, which
	// changes as ports come and go and would stale the neighbour entries.
	if err := ip(ctx, "", "link", "set", br, "address", n.hostMAC, "alias", marker(n.prefix)); err != nil {
		return err
	}
	if err := disableIPv6Link(br); err != nil {
		return err
	}
	if err := ip(ctx, "", "addr", "add", netip.PrefixFrom(n.host, n.subnet.Bits()).String(), "dev", br); err != nil {
		return err
	}
	return ip(ctx, "", "link", "set", br, "up")
}

func (n *Net) upRegion(ctx context.Context, r *region) error {
	if err := ip(ctx, "", "netns", "add", r.ns); err != nil {
		return err
	}
	// Before anything has an address: no IPv6 link-local path around the
	// IPv4 faults, and no forwarding, so dropped packets draw no ICMP.
	if err := n.do(r, func() error {
		for file, v := range map[string]string{
			"/proc/sys/net/ipv6/conf/all/disable_ipv6":     "1",
			"/proc/sys/net/ipv6/conf/default/disable_ipv6": "1",
			"/proc/sys/net/ipv4/ip_forward":                "0",
		} {
			if err := os.WriteFile(file, []byte(v), 0); err != nil && !(errors.Is(err, os.ErrNotExist) && v == "1") {
				return fmt.Errorf("namespace %s: set %s = %s: %w", r.ns, file, v, err)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	steps := [][]string{
		{"", "link", "add", r.veth, "type", "veth", "peer", "name", r.peer},
		{"", "link", "set", r.veth, "alias", marker(n.prefix), "master", n.bridge},
		{"", "link", "set", r.peer, "netns", r.ns},
		{r.ns, "link", "set", r.peer, "name", nsIf},
		{r.ns, "link", "set", nsIf, "address", r.mac, "alias", marker(n.prefix)},
		{r.ns, "link", "set", "lo", "up"},
		{r.ns, "addr", "add", netip.PrefixFrom(r.addr, n.subnet.Bits()).String(), "dev", nsIf},
		{r.ns, "link", "set", nsIf, "up"},
		{r.ns, "route", "add", "default", "via", n.host.String()},
		// Cut's rules (pref cutPref) must see packets before the local
		// table does, or packets addressed to the namespace would be
		// delivered before any rule could drop them.
		{r.ns, "rule", "add", "pref", strconv.Itoa(localPref), "lookup", "local"},
		{r.ns, "rule", "del", "pref", "0", "lookup", "local"},
	}
	for i, s := range steps {
		if i == 2 {
			if err := disableIPv6Link(r.veth); err != nil {
				return err
			}
			if err := ip(ctx, "", "link", "set", r.veth, "up"); err != nil {
				return err
			}
		}
		if err := ip(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// upNeighbours makes every neighbour entry permanent (see the package
// comment).
func (n *Net) upNeighbours(ctx context.Context) error {
	for _, r := range n.regions {
		if err := ip(ctx, "", "neigh", "replace", r.addr.String(), "lladdr", r.mac, "dev", n.bridge, "nud", "permanent"); err != nil {
			return err
		}
		if err := ip(ctx, r.ns, "neigh", "replace", n.host.String(), "lladdr", n.hostMAC, "dev", nsIf, "nud", "permanent"); err != nil {
			return err
		}
		for _, o := range n.regions {
			if o == r {
				continue
			}
			if err := ip(ctx, r.ns, "neigh", "replace", o.addr.String(), "lladdr", o.mac, "dev", nsIf, "nud", "permanent"); err != nil {
				return err
			}
		}
	}
	return nil
}

const (
	cutPref   = 100
	localPref = 1000
)

// Prefix returns the prefix everything was named with.
func (n *Net) Prefix() string { return n.prefix }

// Subnet returns the bridge's subnet.
func (n *Net) Subnet() netip.Prefix { return n.subnet }

// Regions returns the regions, in address order.
func (n *Net) Regions() []string {
	out := make([]string, len(n.regions))
	for i, r := range n.regions {
		out[i] = r.name
	}
	return out
}

// Addr returns the region's address (its eth0), or the zero Addr for an
// unknown region. Processes in the region listen on it (or 0.0.0.0).
func (n *Net) Addr(region string) netip.Addr {
	if r := n.byName[region]; r != nil {
		return r.addr
	}
	return netip.Addr{}
}

// HostAddr returns the host's address on the bridge: what a process in a
// namespace dials to reach a service in the host namespace, which must
// therefore listen on this address or on 0.0.0.0, not on 127.0.0.1.
func (n *Net) HostAddr() netip.Addr { return n.host }

// Name returns the region's namespace name (for ip netns exec, and
// /run/netns/<name>), or "" for an unknown region.
func (n *Net) Name(region string) string {
	if r := n.byName[region]; r != nil {
		return r.ns
	}
	return ""
}

// Bridge returns the name of the bridge in the host namespace.
func (n *Net) Bridge() string { return n.bridge }

func (n *Net) region(op lifeboat.Op, name string) (*region, error) {
	r := n.byName[name]
	if r == nil {
		return nil, lifeboat.Permanent(op, name, fmt.Errorf("no region %q in lab network %s (regions: %v)", name, n.prefix, n.Regions()))
	}
	return r, nil
}

// Command returns a command that runs name with args inside the region's
// namespace, through "ip netns exec", which setns(2)es and then execs name
// in place: the command's PID is name's own, so stopping it by PID works.
// (Go's exec has no setns hook, and switching the parent's thread before
// Start would tie the namespace to when the caller starts the command.)
//
// ip netns exec needs root: do not set SysProcAttr.Credential on the
// returned command (ip would lose the right to setns); to run as another
// user inside the namespace, make name "setpriv" and pass
// "--reuid=postgres", "--regid=postgres", "--init-groups", "--", program,
// args… For an unknown region, Start returns the error.
func (n *Net) Command(region, name string, args ...string) *exec.Cmd {
	return n.CommandContext(context.Background(), region, name, args...)
}

// CommandContext is Command with a context that kills the process.
func (n *Net) CommandContext(ctx context.Context, region, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name(region), name}, args...)...)
	if _, err := n.region(OpExec, region); err != nil {
		cmd.Err = err
	}
	return cmd
}

// Down removes everything Up created: veths (which takes the namespaces'
// eth0 with them), namespaces, bridge, and the record. Processes still
// running in a namespace keep it alive, with loopback only, until they
// exit: stop them first. Safe to call twice.
func (n *Net) Down() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down {
		return nil
	}
	n.down = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for _, r := range n.regions {
		errs = append(errs, delLink(ctx, r.veth), delLink(ctx, r.peer), delNamespace(ctx, r.ns))
	}
	errs = append(errs, delLink(ctx, n.bridge))
	if err := errors.Join(errs...); err != nil {
		// Keep the record: Sweep can finish the job.
		return lifeboat.Transient(OpDown, n.prefix, fmt.Errorf("%w (the record %s is kept: netns.Sweep(%q) retries)", err, recordPath(n.prefix), n.prefix))
	}
	if err := os.Remove(recordPath(n.prefix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return lifeboat.Transient(OpDown, n.prefix, err)
	}
	return nil
}
