package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// record is what one Up created (or is about to create), for Sweep.
type record struct {
	Prefix     string    `json:"prefix"`
	Subnet     string    `json:"subnet"`
	PID        int       `json:"pid"`
	PIDStart   uint64    `json:"pid_start"` // /proc/<pid>/stat starttime: tells a reused PID apart
	Created    time.Time `json:"created"`
	Links      []string  `json:"links"`
	Namespaces []string  `json:"namespaces"`
}

func (n *Net) record() record {
	rec := record{
		Prefix:   n.prefix,
		Subnet:   n.subnet.String(),
		PID:      os.Getpid(),
		PIDStart: procStart(os.Getpid()),
		Created:  time.Now().UTC(),
		Links:    n.linkNames(),
	}
	for _, r := range n.regions {
		rec.Namespaces = append(rec.Namespaces, r.ns)
	}
	return rec
}

// marker is the alias Up sets on every link it creates: Sweep deletes a
// link only if it carries its prefix's marker.
func marker(prefix string) string { return "lifeboat-netns " + prefix }

func recordPath(prefix string) string { return filepath.Join(StateDir, prefix+".json") }

func writeRecord(rec record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := recordPath(rec.Prefix) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write the lab network record %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, recordPath(rec.Prefix)); err != nil {
		return fmt.Errorf("write the lab network record: %w", err)
	}
	return nil
}

func readRecord(prefix string) (record, error) {
	var rec record
	b, err := os.ReadFile(recordPath(prefix))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("lab network record %s is corrupt (%v): delete it, then remove %s-* namespaces and links by hand", recordPath(prefix), err, prefix)
	}
	return rec, nil
}

// records returns every record in StateDir.
func records() ([]record, error) {
	files, err := filepath.Glob(filepath.Join(StateDir, "*.json"))
	if err != nil {
		return nil, err
	}
	var recs []record
	for _, f := range files {
		rec, err := readRecord(strings.TrimSuffix(filepath.Base(f), ".json"))
		if err != nil {
			continue // a corrupt record names no subnet; Sweep reports it
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// lockState takes the lock that serialises Up's subnet choice and Sweep
// across processes (go test runs packages in parallel).
func lockState() (unlock func(), err error) {
	if err := os.MkdirAll(StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create the lab network state directory %s: %w", StateDir, err)
	}
	f, err := os.OpenFile(filepath.Join(StateDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the lab network lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// procStart returns the start time of a process (clock ticks since boot),
// or 0 if it does not exist.
func procStart(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces and parentheses: fields are counted
	// from after the last ')'. starttime is field 22, the 20th after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// alive reports whether the process that wrote rec still runs.
func (rec record) alive() bool {
	return rec.PID > 0 && rec.PIDStart != 0 && procStart(rec.PID) == rec.PIDStart
}

// Sweep removes what an Up with this prefix created and did not remove
// (a crashed run, a failed Down): the namespaces and links named in its
// record, and any host link or namespace eth0 marked with the prefix. It
// deletes nothing that does not carry the prefix's record or marker. It
// refuses while the process that created them still runs (unless it is
// this process). Nothing to remove is not an error.
func Sweep(prefix string) error {
	if len(prefix) > MaxPrefix || !prefixRE.MatchString(prefix) {
		return lifeboat.Permanent(OpSweep, prefix, fmt.Errorf("%q is not a lab network prefix", prefix))
	}
	unlock, err := lockState()
	if err != nil {
		return lifeboat.Transient(OpSweep, prefix, err)
	}
	defer unlock()
	return sweepLocked(prefix)
}

func sweepLocked(prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec, err := readRecord(prefix)
	switch {
	case err == nil:
		if rec.alive() && rec.PID != os.Getpid() {
			return lifeboat.Permanent(OpSweep, prefix, fmt.Errorf("lab network %s belongs to pid %d, which is still running: stop it (it removes its network on exit) rather than sweep under it", prefix, rec.PID))
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return lifeboat.Permanent(OpSweep, prefix, err)
	}
	var errs []error
	// Links first: deleting a veth removes both ends, so namespaces have
	// nothing left that could outlive them.
	links := append([]string(nil), rec.Links...)
	links = append(links, markedLinks(ctx, prefix)...)
	for _, l := range links {
		if !strings.HasPrefix(l, prefix+"-") || !linkExists(ctx, l) {
			continue
		}
		// A name from the record is deleted only if its alias is ours or
		// unset (a crash between creating it and marking it).
		if a, err := linkAlias(ctx, "", l); err != nil || (a != "" && a != marker(prefix)) {
			continue
		}
		errs = append(errs, delLink(ctx, l))
	}
	namespaces := append([]string(nil), rec.Namespaces...)
	namespaces = append(namespaces, markedNamespaces(ctx, prefix)...)
	for _, ns := range namespaces {
		if !strings.HasPrefix(ns, prefix+"-") {
			continue
		}
		// Names can collide across prefixes (lb-a + b-west, lb-a-b +
		// west): a namespace whose eth0 carries another marker is not ours.
		if a, err := linkAlias(ctx, ns, nsIf); err == nil && a != "" && a != marker(prefix) {
			continue
		}
		errs = append(errs, delNamespace(ctx, ns))
	}
	if err := errors.Join(errs...); err != nil {
		return lifeboat.Transient(OpSweep, prefix, err)
	}
	if err := os.Remove(recordPath(prefix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return lifeboat.Transient(OpSweep, prefix, err)
	}
	return nil
}

// markedLinks returns the host links whose alias is the prefix's marker.
func markedLinks(ctx context.Context, prefix string) []string {
	out, err := ipOut(ctx, "", "-j", "link", "show")
	if err != nil {
		return nil
	}
	var links []struct {
		IfName  string `json:"ifname"`
		IfAlias string `json:"ifalias"`
	}
	if json.Unmarshal(out, &links) != nil {
		return nil
	}
	var names []string
	for _, l := range links {
		if l.IfAlias == marker(prefix) {
			names = append(names, l.IfName)
		}
	}
	return names
}

// markedNamespaces returns the namespaces named <prefix>-… whose eth0
// carries the prefix's marker.
func markedNamespaces(ctx context.Context, prefix string) []string {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix+"-") {
			continue
		}
		if a, err := linkAlias(ctx, e.Name(), nsIf); err == nil && a == marker(prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// SweepStale sweeps every lab network whose creating process is gone, and
// returns the prefixes it swept. Live networks, this process's included,
// are left alone.
func SweepStale() ([]string, error) {
	unlock, err := lockState()
	if err != nil {
		return nil, lifeboat.Transient(OpSweep, "", err)
	}
	defer unlock()
	recs, err := records()
	if err != nil {
		return nil, lifeboat.Transient(OpSweep, "", err)
	}
	var swept []string
	var errs []error
	for _, rec := range recs {
		if rec.alive() {
			continue
		}
		if err := sweepLocked(rec.Prefix); err != nil {
			errs = append(errs, err)
			continue
		}
		swept = append(swept, rec.Prefix)
	}
	return swept, errors.Join(errs...)
}
