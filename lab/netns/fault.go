package netns

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// faultTimeout bounds the ip commands of one fault call.
const faultTimeout = 30 * time.Second

// Cut partitions regions a and b from each other, both directions, for
// every protocol: each drops what arrives from the other, silently. Both
// still reach every other region and the host. Idempotent.
func (n *Net) Cut(a, b string) error {
	return n.cut(a, b, true)
}

// Heal undoes Cut(a, b). It does not undo Isolate. Idempotent.
func (n *Net) Heal(a, b string) error {
	return n.cut(a, b, false)
}

func (n *Net) cut(a, b string, on bool) error {
	ra, err := n.region(OpFault, a)
	if err != nil {
		return err
	}
	rb, err := n.region(OpFault, b)
	if err != nil {
		return err
	}
	if ra == rb {
		return lifeboat.Permanent(OpFault, a, fmt.Errorf("cannot cut region %s from itself", a))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.live(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	verb := "add"
	if !on {
		verb = "del"
	}
	for _, p := range [][2]*region{{ra, rb}, {rb, ra}} {
		to, from := p[0], p[1]
		err := ip(ctx, to.ns, "rule", verb, "pref", strconv.Itoa(cutPref), "from", from.addr.String(), "iif", nsIf, "blackhole")
		if err != nil && !(on && says(err, "File exists")) && !(!on && says(err, "No such file")) {
			return lifeboat.Transient(OpFault, a+"-"+b, fmt.Errorf("cut=%v between %s and %s: %w", on, a, b, err))
		}
	}
	k := pairKey(a, b)
	if on {
		n.cuts[k] = true
	} else {
		delete(n.cuts, k)
	}
	return nil
}

// Isolate cuts region a from every other region and from the host (every
// host address, not only HostAddr): the host side of its veth goes down,
// so nothing leaves or reaches it, silently. Idempotent.
func (n *Net) Isolate(a string) error {
	return n.isolate(a, true)
}

// Rejoin undoes Isolate(a). It does not undo Cuts. Idempotent.
func (n *Net) Rejoin(a string) error {
	return n.isolate(a, false)
}

func (n *Net) isolate(a string, on bool) error {
	r, err := n.region(OpFault, a)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.live(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	state := "up"
	if on {
		state = "down"
	}
	if err := ip(ctx, "", "link", "set", r.veth, state); err != nil {
		return lifeboat.Transient(OpFault, a, fmt.Errorf("isolate=%v region %s: %w", on, a, err))
	}
	if on {
		n.isolated[a] = true
	} else {
		delete(n.isolated, a)
	}
	return nil
}

// HealAll removes every Cut and Isolate: it clears whatever cut rules the
// namespaces hold, not only those this Net remembers.
func (n *Net) HealAll() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.live(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	var errs []error
	for _, r := range n.regions {
		if err := ip(ctx, "", "link", "set", r.veth, "up"); err != nil {
			errs = append(errs, err)
		}
		// Each del removes one rule at the cut preference; a region has at
		// most one per other region.
		for range n.regions {
			err := ip(ctx, r.ns, "rule", "del", "pref", strconv.Itoa(cutPref))
			if err != nil {
				if !says(err, "No such file") {
					errs = append(errs, err)
				}
				break
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return lifeboat.Transient(OpFault, n.prefix, fmt.Errorf("heal all: %w", err))
	}
	clear(n.cuts)
	clear(n.isolated)
	return nil
}

// Faults describes the faults in force, e.g. ["cut central-west",
// "isolated east"], sorted.
func (n *Net) Faults() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for k := range n.cuts {
		out = append(out, "cut "+k[0]+"-"+k[1])
	}
	for r := range n.isolated {
		out = append(out, "isolated "+r)
	}
	sort.Strings(out)
	return out
}

func (n *Net) live() error {
	if n.down {
		return lifeboat.Permanent(OpFault, n.prefix, fmt.Errorf("lab network %s is down", n.prefix))
	}
	return nil
}

func pairKey(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}
