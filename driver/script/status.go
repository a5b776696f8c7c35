package script

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

// The status actions print key=value lines on stdout. Parsing is strict: an
// unknown key, a repeated key, a line without "=" or a bad value is an
// error, so that a typo in a user's script shows up at once instead of as a
// silently wrong status. Blank lines and lines starting with # are ignored.
var (
	scaleSetKeys = []string{"exists", "instances", "healthy", "epoch"}
	databaseKeys = []string{"role", "epoch", "lag_bytes", "lag"}
	backupKeys   = []string{"id", "taken", "region", "epoch"}
	routeKeys    = []string{"region", "epoch", "since"}
)

// status is one parsed status output; its methods record the first error.
type status struct {
	action, command, resource string
	kv                        map[string]string
	line                      map[string]int
	err                       error
}

func parseStatus(action, command, resource string, out []byte, keys []string) *status {
	s := &status{action: action, command: command, resource: resource, kv: map[string]string{}, line: map[string]int{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	n := 0
	for sc.Scan() {
		n++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		k = strings.TrimSpace(k)
		switch {
		case !ok:
			s.fail(n, text, "want key=value")
		case !contains(keys, k):
			s.fail(n, text, fmt.Sprintf("unknown key %q", k))
		case s.line[k] != 0:
			s.fail(n, text, fmt.Sprintf("%s already given on line %d", k, s.line[k]))
		default:
			s.kv[k], s.line[k] = strings.TrimSpace(v), n
		}
		if s.err != nil {
			return s
		}
	}
	if err := sc.Err(); err != nil {
		s.err = lifeboat.Permanent(lifeboat.Op(action), resource, fmt.Errorf("reading the output of `%s`: %w", command, err))
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s *status) fail(line int, text, why string) {
	if s.err != nil {
		return
	}
	keys := map[string][]string{lifeboat.ActComputeStatus: scaleSetKeys, lifeboat.ActDatabaseStatus: databaseKeys, lifeboat.ActBackupLatest: backupKeys,
		lifeboat.ActBackupTake: backupKeys, lifeboat.ActTrafficStatus: routeKeys}[s.action]
	where := "output"
	if line > 0 {
		where = fmt.Sprintf("line %d %q", line, text)
	}
	s.err = lifeboat.Permanent(lifeboat.Op(s.action), s.resource, fmt.Errorf(
		"`%s` printed a bad status: %s: %s; it must print key=value lines with the keys %s",
		s.command, where, why, strings.Join(keys, ", ")))
}

// require fails unless every key was given.
func (s *status) require(keys ...string) {
	for _, k := range keys {
		if _, ok := s.kv[k]; !ok {
			s.fail(0, "", fmt.Sprintf("missing %s=", k))
		}
	}
}

func (s *status) str(k string) string { return s.kv[k] }

func (s *status) bool(k string) bool {
	switch v, ok := s.kv[k]; {
	case !ok || v == "false":
		return false
	case v == "true":
		return true
	default:
		s.fail(s.line[k], k+"="+v, "want true or false")
		return false
	}
}

func (s *status) int(k string) int64 {
	v, ok := s.kv[k]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		s.fail(s.line[k], k+"="+v, "want a whole number, 0 or more")
	}
	return n
}

func (s *status) epoch() uint64 {
	v, ok := s.kv["epoch"]
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		s.fail(s.line["epoch"], "epoch="+v, "want a whole number, 0 or more")
	}
	return n
}

func (s *status) duration(k string) time.Duration {
	v, ok := s.kv[k]
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		s.fail(s.line[k], k+"="+v, "want a Go duration such as 1.5s or 250ms")
	}
	return d
}

// time reads an RFC 3339 time; an empty value is the zero time (never).
func (s *status) time(k string) time.Time {
	v := s.kv[k]
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		s.fail(s.line[k], k+"="+v, "want an RFC 3339 time such as 2025-03-01T12:00:00Z")
	}
	return t
}

// parseScaleSet reads compute.status: exists (required), instances,
// healthy, epoch.
func parseScaleSet(command, resource string, out []byte) (lifeboat.ScaleSet, error) {
	s := parseStatus(lifeboat.ActComputeStatus, command, resource, out, scaleSetKeys)
	s.require("exists")
	ss := lifeboat.ScaleSet{Exists: s.bool("exists"), Instances: int(s.int("instances")), Healthy: int(s.int("healthy")), Epoch: s.epoch()}
	return ss, s.err
}

// parseDatabase reads database.status: role (required), epoch, lag_bytes, lag.
func parseDatabase(command, resource string, out []byte) (lifeboat.DatabaseStatus, error) {
	s := parseStatus(lifeboat.ActDatabaseStatus, command, resource, out, databaseKeys)
	s.require("role")
	st := lifeboat.DatabaseStatus{Role: lifeboat.DatabaseRole(s.str("role")), Epoch: s.epoch(), LagBytes: s.int("lag_bytes"), Lag: s.duration("lag")}
	switch st.Role {
	case lifeboat.DBPrimary, lifeboat.DBReplica, lifeboat.DBFenced, lifeboat.DBBackupOf, lifeboat.DBAbsent:
	default:
		if s.err == nil {
			s.fail(s.line["role"], "role="+string(st.Role), "want primary, replica, fenced, backups or absent")
		}
	}
	return st, s.err
}

// parseBackup reads backup.latest (and backup.take): id, taken, region,
// epoch. No id (or an empty one) means there is no backup; with an id,
// taken is required.
func parseBackup(action, command, resource string, out []byte) (lifeboat.BackupInfo, error) {
	s := parseStatus(action, command, resource, out, backupKeys)
	if s.str("id") == "" {
		return lifeboat.BackupInfo{}, s.err
	}
	s.require("taken")
	b := lifeboat.BackupInfo{ID: s.str("id"), Taken: s.time("taken"), Region: s.str("region"), Epoch: s.epoch()}
	return b, s.err
}

// parseRoute reads traffic.status: region (required; empty while nothing
// is routed), epoch, since.
func parseRoute(command, resource string, out []byte) (lifeboat.Route, error) {
	s := parseStatus(lifeboat.ActTrafficStatus, command, resource, out, routeKeys)
	s.require("region")
	r := lifeboat.Route{Region: s.str("region"), Epoch: s.epoch(), Since: s.time("since")}
	return r, s.err
}
