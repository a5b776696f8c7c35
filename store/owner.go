package store

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// owner is the value of own/<id>: enough to tell an SRE who holds a run,
// and to tell whether that process is dead when it ran on this host.
type owner struct {
	Host   string    `json:"host"`
	PID    int       `json:"pid"`
	BootID string    `json:"boot_id,omitempty"`
	Start  uint64    `json:"start,omitempty"` // process start time in clock ticks since boot: tells a reused pid apart
	Lease  int64     `json:"lease"`
	Since  time.Time `json:"since"`
}

func (o owner) String() string {
	return fmt.Sprintf("pid %d on %s (since %s)", o.PID, o.Host, o.Since.Format(time.RFC3339))
}

// self describes this process.
func self() owner {
	host, _ := os.Hostname()
	pid := os.Getpid()
	start, _, _ := procStart(pid)
	return owner{Host: host, PID: pid, BootID: bootID(), Start: start}
}

// deadHere reports whether o is certainly a dead process on this machine.
// Anything uncertain (another host, another boot, no /proc) says no: then
// the lease TTL decides.
func (o owner) deadHere(me owner) bool {
	if o.Host != me.Host || o.BootID == "" || o.BootID != me.BootID || o.PID <= 0 {
		return false
	}
	start, zombie, err := procStart(o.PID)
	if zombie {
		return true // killed, not yet reaped by its parent
	}
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		// No readable /proc entry: fall back to signal 0.
		return errors.Is(syscall.Kill(o.PID, 0), syscall.ESRCH)
	}
	// The pid is alive; it is the owner only if it started when the owner did.
	return o.Start != 0 && start != o.Start
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// procStart reads field 22 (starttime) of /proc/<pid>/stat, and whether
// the process has exited (state Z or X: a zombie waiting for its parent).
func procStart(pid int) (start uint64, zombie bool, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	// The command name (field 2) may hold spaces and parentheses: split
	// after its closing parenthesis, where field 3 starts.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, false, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0] == "Z" || f[0] == "X", err
}
