package process

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
)

// scaleSet is one provisioned scale set. Its fields are guarded by the
// driver's mu, except op, which serializes the calls that change instances.
type scaleSet struct {
	resource  string
	region    string
	compute   lifeboat.Compute
	artifact  string // absolute path of the region's copy
	epoch     uint64
	instances []*instance // by index; index i is instances[i]
	op        chan struct{}
}

// sumPrefix is how lifeboat.Recipe.Checksum names the algorithm.
const sumPrefix = "sha256:"

// source returns the path of the recipe's artifact on this machine.
func (d *Driver) source(r lifeboat.Recipe) (string, error) {
	a := r.Artifact
	if a == "" {
		return "", errors.New("the recipe has no artifact: set recipe.artifact to the binary to run")
	}
	if i := strings.Index(a, "://"); i > 0 {
		if !strings.HasPrefix(a, "file://") {
			return "", fmt.Errorf("artifact %s: the process driver copies local files only; download it first and point recipe.artifact at the file", a)
		}
		a = strings.TrimPrefix(a, "file://")
	}
	if !filepath.IsAbs(a) {
		a = filepath.Join(d.cfg.BaseDir, a)
	}
	return filepath.Abs(a)
}

// artifactPath is where the region keeps its copy of the artifact.
func artifactPath(reg Region, resource, source string) string {
	return filepath.Join(reg.Dir, "artifacts", resource, filepath.Base(source))
}

// Checksum returns the file's checksum in the recipe's form,
// "sha256:<hex>" (what recipe.checksum in the spec holds).
func Checksum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return sumPrefix + hex.EncodeToString(h.Sum(nil)), nil
}

// Provision transfers the recipe into region t.Region (the artifact is
// copied into the region's dir and its sha256 checked against the recipe's
// checksum) and stands up the scale set with zero instances. Provisioning
// again with a new recipe transfers the new version; running instances
// keep the old one until they restart (RollingRestart).
func (d *Driver) Provision(ctx context.Context, t lifeboat.Target, c lifeboat.Compute) error {
	op := lifeboat.OpComputeProvision
	reg, err := d.region(op, t)
	if err != nil {
		return err
	}
	if len(c.Recipe.Command) == 0 {
		return lifeboat.Permanent(op, t.Resource, errors.New("the recipe has no command: set recipe.command, e.g. [./shop, --listen, \"${LIFEBOAT_HOST}:${PORT}\"]"))
	}
	if c.Recipe.Checksum != "" && !validSum(c.Recipe.Checksum) {
		return lifeboat.Permanent(op, t.Resource, fmt.Errorf("recipe checksum %q is not sha256:<64 hex digits>: compute it with sha256sum", c.Recipe.Checksum))
	}
	if err := d.fence(op, t); err != nil {
		return err
	}
	copyPath, err := d.transfer(reg, t.Resource, c.Recipe)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(setDir(reg, t.Resource), 0o755); err != nil {
		return lifeboat.Transient(op, t.Resource, fmt.Errorf("cannot create the instance directory: %w: check permissions of %s", err, reg.Dir))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return lifeboat.Permanent(op, t.Resource, ErrClosed)
	}
	s := d.sets[t.Resource]
	if s == nil {
		s = &scaleSet{resource: t.Resource, region: t.Region, op: make(chan struct{}, 1)}
		d.sets[t.Resource] = s
	}
	s.compute, s.artifact, s.epoch = c, copyPath, d.epochs[t.Resource]
	d.notifyLocked()
	return nil
}

func validSum(s string) bool {
	h, ok := strings.CutPrefix(s, sumPrefix)
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}

// transfer copies the artifact into the region unless an identical copy is
// there already, and returns the copy's path.
func (d *Driver) transfer(reg Region, resource string, r lifeboat.Recipe) (string, error) {
	op := lifeboat.OpComputeProvision
	src, err := d.source(r)
	if err != nil {
		return "", lifeboat.Permanent(op, resource, err)
	}
	dst := artifactPath(reg, resource, src)
	want := r.Checksum
	in, err := os.Open(src)
	if err != nil {
		// The source may be in the region that was lost; a copy already
		// verified against the pinned checksum is as good.
		if want != "" {
			if have, herr := Checksum(dst); herr == nil && have == want {
				return dst, nil
			}
		}
		if errors.Is(err, fs.ErrNotExist) {
			return "", lifeboat.Permanent(op, resource, fmt.Errorf("artifact %s does not exist: build it or fix recipe.artifact (relative paths start at %s)", src, d.baseDir()))
		}
		return "", lifeboat.Transient(op, resource, fmt.Errorf("cannot read artifact: %w", err))
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", lifeboat.Transient(op, resource, fmt.Errorf("cannot create the region's artifact directory: %w: check permissions of %s", err, reg.Dir))
	}
	// Copy to a temporary name and rename: a running instance keeps its
	// binary, and a half-written copy is never taken for the artifact.
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".transfer-*")
	if err != nil {
		return "", lifeboat.Transient(op, resource, fmt.Errorf("cannot write to the region's artifact directory: %w", err))
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), in)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", lifeboat.Transient(op, resource, fmt.Errorf("copying %s to %s: %w", src, dst, err))
	}
	got := sumPrefix + hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		return "", lifeboat.Permanent(op, resource, fmt.Errorf("artifact %s has checksum %s but the recipe wants %s: it is not the version the recipe names; rebuild it or update recipe.checksum (nothing was installed in the region)", src, got, want))
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return "", lifeboat.Transient(op, resource, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", lifeboat.Transient(op, resource, fmt.Errorf("installing the artifact copy %s: %w", dst, err))
	}
	return dst, nil
}

func (d *Driver) baseDir() string {
	if d.cfg.BaseDir == "" {
		return "the current directory"
	}
	return d.cfg.BaseDir
}

// RecipeReady is a readiness fact for the region t.Region: its copy of the
// artifact is present, matches the recipe's checksum (if set) and is the
// same version as the source. When the source cannot be read (its region
// may be lost) a copy that matches the pinned checksum is ready.
func (d *Driver) RecipeReady(ctx context.Context, t lifeboat.Target, c lifeboat.Compute) (bool, string, error) {
	op := lifeboat.OpComputeProvision
	reg, err := d.region(op, t)
	if err != nil {
		return false, "", err
	}
	src, err := d.source(c.Recipe)
	if err != nil {
		return false, "", lifeboat.Permanent(op, t.Resource, err)
	}
	dst := artifactPath(reg, t.Resource, src)
	have, err := Checksum(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Sprintf("the recipe is not transferred to region %s (%s is missing): provision %s", t.Region, dst, t.Resource), nil
	}
	if err != nil {
		return false, "", lifeboat.Transient(op, t.Resource, fmt.Errorf("reading the region's artifact copy: %w", err))
	}
	if want := c.Recipe.Checksum; want != "" && have != want {
		return false, fmt.Sprintf("region %s holds %s with checksum %s but the recipe wants %s: provision %s again", t.Region, dst, have, want, t.Resource), nil
	}
	srcSum, err := Checksum(src)
	if err != nil {
		if c.Recipe.Checksum != "" {
			return true, fmt.Sprintf("the source %s cannot be read (%v); the region's copy matches the recipe's checksum", src, err), nil
		}
		return false, fmt.Sprintf("the source %s cannot be read (%v) and the recipe pins no checksum: cannot tell whether region %s holds the right version; set recipe.checksum", src, err, t.Region), nil
	}
	if srcSum != have {
		return false, fmt.Sprintf("the source %s changed (checksum %s) but region %s holds %s: provision %s again to transfer the new version", src, srcSum, t.Region, have, t.Resource), nil
	}
	return true, fmt.Sprintf("region %s holds the artifact, checksum %s", t.Region, have), nil
}
