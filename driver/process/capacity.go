package process

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
)

// CanStandUp is a readiness fact for region t.Region: could the scale set
// run n instances there now? Two things must hold, as Provision and Scale
// would need them:
//
//   - the recipe's artifact can be had in the region: the region's copy
//     matches the recipe's pinned checksum, or the source can be read and
//     matches it (or the recipe pins none), so Provision can transfer it;
//   - the region's port block has a port for every instance the set does
//     not run yet: ports held by the set's own instances count, ports held
//     by other scale sets or by any other process (each is tried with a
//     listen, closed at once) do not.
//
// Nothing is reserved: a port free now may be taken before a failover. It
// never errs for a state of the world, only for a region not configured
// or a driver closed.
func (d *Driver) CanStandUp(ctx context.Context, t lifeboat.Target, c lifeboat.Compute, n int) (bool, string, error) {
	const op = lifeboat.Op("compute.capacity")
	reg, err := d.region(op, t)
	if err != nil {
		return false, "", err
	}
	if n < 0 {
		return false, "", lifeboat.Permanent(op, t.Resource, fmt.Errorf("cannot judge room for %d instances of %s: the count must be 0 or more", n, t.Resource))
	}
	if err := ctx.Err(); err != nil {
		return false, "", lifeboat.Transient(op, t.Resource, err)
	}
	ok, artifact := d.artifactAvailable(reg, t, c.Recipe)
	if !ok {
		return false, artifact, nil
	}
	ok, ports, err := d.portsFree(t, reg, n)
	if err != nil {
		return false, "", lifeboat.Permanent(op, t.Resource, err)
	}
	if !ok {
		return false, ports, nil
	}
	return true, artifact + "; " + ports, nil
}

// artifactAvailable says whether Provision could install the recipe's
// artifact in the region now, mirroring transfer: a readable source that
// matches the pinned checksum, or else a region copy that matches it.
func (d *Driver) artifactAvailable(reg Region, t lifeboat.Target, r lifeboat.Recipe) (bool, string) {
	src, err := d.source(r)
	if err != nil {
		return false, err.Error()
	}
	if r.Checksum != "" && !validSum(r.Checksum) {
		return false, fmt.Sprintf("recipe checksum %q is not sha256:<64 hex digits>: compute it with sha256sum and fix recipe.checksum", r.Checksum)
	}
	want := r.Checksum
	dst := artifactPath(reg, t.Resource, src)
	srcSum, srcErr := Checksum(src)
	if srcErr == nil && (want == "" || srcSum == want) {
		if have, err := Checksum(dst); err == nil && have == srcSum {
			return true, fmt.Sprintf("the artifact is in region %s (%s)", t.Region, dst)
		}
		return true, fmt.Sprintf("the artifact can be transferred to region %s from %s (checksum %s)", t.Region, src, srcSum)
	}
	if want != "" {
		if have, err := Checksum(dst); err == nil && have == want {
			return true, fmt.Sprintf("the artifact is in region %s (%s, checksum as the recipe pins)", t.Region, dst)
		}
	}
	switch {
	case srcErr == nil:
		return false, fmt.Sprintf("the artifact %s has checksum %s but the recipe wants %s, and region %s holds no copy that matches: rebuild the artifact or update recipe.checksum", src, srcSum, want, t.Region)
	case errors.Is(srcErr, fs.ErrNotExist) && want == "":
		return false, fmt.Sprintf("the artifact %s does not exist and the recipe pins no checksum, so no copy in region %s can stand in for it: build it, fix recipe.artifact (relative paths start at %s), or set recipe.checksum", src, t.Region, d.baseDir())
	case errors.Is(srcErr, fs.ErrNotExist):
		return false, fmt.Sprintf("the artifact %s does not exist and region %s holds no copy with checksum %s: build it or fix recipe.artifact (relative paths start at %s)", src, t.Region, want, d.baseDir())
	}
	return false, fmt.Sprintf("the artifact %s cannot be read (%v) and region %s holds no copy that matches the recipe: check its permissions", src, srcErr, t.Region)
}

// portsFree says whether the region's block has a port for each of the n
// instances t's scale set would run, beyond those its instances hold.
func (d *Driver) portsFree(t lifeboat.Target, reg Region, n int) (bool, string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false, "", ErrClosed
	}
	own := 0
	if s := d.sets[t.Resource]; s != nil {
		own = len(s.instances)
	}
	need := n - own
	block := fmt.Sprintf("%d..%d on %s", reg.PortBase, reg.PortBase+reg.Ports-1, reg.Host)
	if need <= 0 {
		return true, fmt.Sprintf("its %s already hold their ports in %s", plural(own, "instance"), block), nil
	}
	var free []int
	var others, busy []string
	used := d.ports[t.Region]
	for p := reg.PortBase; p < reg.PortBase+reg.Ports && len(free) < need; p++ {
		if owner, taken := used[p]; taken {
			if !strings.HasPrefix(owner, t.Resource+"-") {
				others = append(others, strconv.Itoa(p)+" ("+owner+")")
			}
			continue
		}
		if !bindable(reg.Host, p) {
			busy = append(busy, strconv.Itoa(p))
			continue
		}
		free = append(free, p)
	}
	if len(free) < need {
		why := fmt.Sprintf("region %s has %s in %s but %s more need one each", t.Region, plural(len(free), "free port"), block, plural(need, "instance"))
		if len(busy) > 0 {
			why += fmt.Sprintf("; in use by processes the driver did not start: %s (find them with `ss -ltnp`)", strings.Join(busy, ", "))
		}
		if len(others) > 0 {
			why += "; held by other scale sets: " + strings.Join(others, ", ")
		}
		return false, why + "; free them, or raise Ports or move PortBase of the region", nil
	}
	why := fmt.Sprintf("%s free in %s", plural(need, "port"), block)
	if own > 0 {
		why = fmt.Sprintf("%s run; %s more free in %s", plural(own, "instance"), plural(need, "port"), block)
	}
	if len(busy) > 0 {
		why += fmt.Sprintf(" (skipping %s, in use by other processes)", strings.Join(busy, ", "))
	}
	return true, why, nil
}

// plural: "1 port", "3 ports".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
