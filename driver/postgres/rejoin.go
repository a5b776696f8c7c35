package postgres

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat"
)

// QuarantineReport describes what an old primary held that its new primary
// never received: the writes a rejoin would otherwise throw away. They are
// kept, with this report, in Dir.
type QuarantineReport struct {
	Resource string    `json:"resource"`
	Primary  string    `json:"primary"` // the new primary it rejoined
	Epoch    uint64    `json:"epoch"`
	Dir      string    `json:"dir"`
	Created  time.Time `json:"created"`
	// OldTimeline is the timeline the old primary wrote on; NewTimeline
	// the new primary's.
	OldTimeline uint32 `json:"old_timeline"`
	NewTimeline uint32 `json:"new_timeline"`
	// DivergenceLSN is where the new primary's timeline left the old one
	// (its timeline history): everything the old primary wrote from there
	// on never reached the new primary.
	DivergenceLSN LSN `json:"divergence_lsn"`
	// EndLSN is the old primary's last checkpoint.
	EndLSN LSN `json:"end_lsn"`
	// Transactions committed on the old primary after the divergence.
	Transactions []LostTransaction `json:"transactions"`
	// WALSegments copied to Dir/pg_wal; WALDump is pg_waldump's full
	// output over them (Dir/waldump.txt), which shows every change.
	WALSegments []string `json:"wal_segments"`
	WALDump     string   `json:"waldump"`
	// Method is how the node was rebuilt: rewind or basebackup.
	Method string `json:"method"`
	// DataDirCopy is the whole old data dir, kept when a base backup
	// replaced it.
	DataDirCopy string   `json:"datadir_copy,omitempty"`
	Notes       []string `json:"notes,omitempty"`
}

// LostTransaction is a transaction the old primary committed (and
// acknowledged) that the new primary never received.
type LostTransaction struct {
	XID       uint32    `json:"xid"`
	LSN       LSN       `json:"lsn"`
	Committed time.Time `json:"committed,omitzero"`
}

// LastQuarantine returns the newest quarantine report of a node.
func (d *Driver) LastQuarantine(resource string) (QuarantineReport, bool) {
	d.qmu.Lock()
	r, ok := d.quarantines[resource]
	d.qmu.Unlock()
	if ok {
		return r, true
	}
	// From an earlier process: the newest report on disk.
	dirs, _ := filepath.Glob(filepath.Join(d.cfg.StateDir, "quarantine", resource+"-*", "report.json"))
	var best QuarantineReport
	for _, p := range dirs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var q QuarantineReport
		if json.Unmarshal(data, &q) == nil && q.Resource == resource && (!ok || q.Created.After(best.Created)) {
			best, ok = q, true
		}
	}
	return best, ok
}

// Rejoin makes an old primary t a streaming replica of primary after an
// unplanned failover (seed 002: flatten and rebuild the copy that holds
// later data). Whatever t wrote after the new primary's timeline left it is
// first copied to StateDir/quarantine/<resource>-<epoch>/ with a report;
// then pg_rewind (or, when that is impossible, a fresh base backup, after
// moving the old data dir into quarantine) rebuilds it.
func (d *Driver) Rejoin(ctx context.Context, t lifeboat.Target, primary lifeboat.Target) error {
	const op = lifeboat.OpDatabaseRejoin
	tn, err := d.node(op, t.Resource)
	if err != nil {
		return err
	}
	pn, err := d.node(op, primary.Resource)
	if err != nil {
		return err
	}
	if databaseOf(t.Resource, tn) != databaseOf(primary.Resource, pn) || t.Resource == primary.Resource {
		return lifeboat.Permanent(op, t.Resource, fmt.Errorf("cannot rejoin %s as a replica of %s: not another copy of the same database", t.Resource, primary.Resource))
	}
	inst := d.instances[t.Resource]
	if inst == nil {
		return lifeboat.Permanent(op, t.Resource, fmt.Errorf("rejoin rebuilds the data dir, but Lifeboat does not run this host: set data-dir for node %s", t.Resource))
	}
	defer d.lock(t.Resource)()
	if _, err := d.checkEpoch(op, t); err != nil {
		return err
	}

	pc, err := d.conn(ctx, op, primary.Resource)
	if err != nil {
		return err
	}
	defer pc.Close(context.WithoutCancel(ctx))
	var pInRecovery bool
	if err := pc.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&pInRecovery); err != nil {
		return d.classify(op, primary.Resource, err)
	}
	if pInRecovery {
		return lifeboat.Transient(op, primary.Resource, fmt.Errorf("%s is not a primary (it is in recovery): promote it before rejoining %s to it", primary.Resource, t.Resource))
	}
	ptli, err := timeline(ctx, pc, false)
	if err != nil {
		return d.classify(op, primary.Resource, err)
	}

	// Already a replica on the primary's timeline: done, or nearly (wait
	// until it streams).
	if d.running(t.Resource) {
		if c, err := connect(ctx, d.dsn(t.Resource)); err == nil {
			var inRecovery bool
			err = c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
			var tli uint32
			if err == nil && inRecovery {
				tli, err = timeline(ctx, c, true)
			}
			c.Close(context.WithoutCancel(ctx))
			if err == nil && inRecovery && tli == ptli && inst.IsStandbyConfigured() {
				if err := d.waitStreaming(ctx, op, t.Resource, primary.Resource); err != nil {
					return err
				}
				return d.record(op, t.Resource, t.Epoch, func(r *nodeRecord) { r.Fenced = false })
			}
		}
		// Fence it first: it must not take writes while it is rebuilt.
		if err := d.record(op, t.Resource, t.Epoch, func(r *nodeRecord) { r.Fenced, r.FencedAt = true, time.Now().UTC() }); err != nil {
			return err
		}
		if err := inst.Stop(ctx, "fast"); err != nil {
			return lifeboat.Transient(op, t.Resource, fmt.Errorf("stop before rejoin: %w", err))
		}
	}

	rep, err := d.quarantine(ctx, inst, t, primary, ptli, pc)
	if err != nil {
		return err
	}
	// pg_rewind reads the source's timeline from its control file, which
	// a promote updates only at its next checkpoint: without this, a fresh
	// primary looks like timeline 1 and pg_rewind wrongly finds nothing to do.
	if _, err := pc.Exec(ctx, "CHECKPOINT"); err != nil {
		return d.classify(op, primary.Resource, fmt.Errorf("checkpoint before pg_rewind: %w", err))
	}
	method := "rewind"
	host, port := d.reach(t.Resource, primary.Resource)
	source := Conninfo(host, port, d.cfg.User, d.cfg.Password, d.cfg.Database, t.Resource)
	if err := inst.Rewind(ctx, source); err != nil {
		if ctx.Err() != nil {
			return lifeboat.Transient(op, t.Resource, err)
		}
		d.log.Warn("pg_rewind failed; rebuilding from a base backup", "resource", t.Resource, "err", err)
		method = "basebackup"
		if rep.Dir == "" {
			rep = QuarantineReport{Resource: t.Resource, Primary: primary.Resource, Epoch: t.Epoch, NewTimeline: ptli,
				Created: time.Now().UTC(), Dir: filepath.Join(d.cfg.StateDir, "quarantine", fmt.Sprintf("%s-%d", t.Resource, t.Epoch))}
		}
		copyDir, qerr := d.quarantineDataDir(inst, rep.Dir)
		if qerr != nil {
			return lifeboat.Permanent(op, t.Resource, fmt.Errorf("pg_rewind failed (%v) and the old data dir could not be moved to quarantine (%w); nothing was deleted: free space under %s or move %s aside by hand, then retry", err, qerr, d.cfg.StateDir, inst.DataDir))
		}
		rep.DataDirCopy = copyDir
		rep.Notes = append(rep.Notes, "pg_rewind failed: "+err.Error())
		if err := inst.BaseBackup(ctx, d.streamConninfo(t.Resource, primary.Resource)); err != nil {
			return lifeboat.Transient(op, t.Resource, fmt.Errorf("base backup from %s: %w", primary.Resource, err))
		}
	}
	if rep.Dir != "" {
		rep.Method = method
		if err := d.saveQuarantine(rep); err != nil {
			return lifeboat.Transient(op, t.Resource, err)
		}
	}
	if err := inst.Follow(d.streamConninfo(t.Resource, primary.Resource)); err != nil {
		return lifeboat.Transient(op, t.Resource, err)
	}
	if err := inst.Start(ctx); err != nil {
		return lifeboat.Transient(op, t.Resource, err)
	}
	if err := d.waitStreaming(ctx, op, t.Resource, primary.Resource); err != nil {
		return err
	}
	return d.record(op, t.Resource, t.Epoch, func(r *nodeRecord) { r.Fenced, r.FencedAt = false, time.Time{} })
}

// quarantine finds where t diverged from the primary's timeline and, when
// t wrote past that point, copies its WAL from there and lists the
// transactions it committed. It returns a report with Dir "" when there
// is nothing to keep.
func (d *Driver) quarantine(ctx context.Context, inst *Instance, t, primary lifeboat.Target, ptli uint32, pc *pgx.Conn) (QuarantineReport, error) {
	const op = lifeboat.OpDatabaseRejoin
	rep := QuarantineReport{Resource: t.Resource, Primary: primary.Resource, Epoch: t.Epoch, NewTimeline: ptli}
	cd, err := inst.ControlData(ctx)
	if err != nil {
		return rep, lifeboat.Transient(op, t.Resource, err)
	}
	tli, _ := strconv.ParseUint(cd["Latest checkpoint's TimeLineID"], 10, 32)
	rep.OldTimeline = uint32(tli)
	rep.EndLSN, _ = ParseLSN(cd["Latest checkpoint location"])
	if rep.OldTimeline == ptli {
		return QuarantineReport{}, nil // same timeline: t is behind, not ahead
	}
	var history string
	if err := pc.QueryRow(ctx, "SELECT pg_read_file($1)", fmt.Sprintf("pg_wal/%08X.history", ptli)).Scan(&history); err != nil {
		return rep, d.classify(op, primary.Resource, fmt.Errorf("read the timeline history of %s: %w", primary.Resource, err))
	}
	div, ok := switchPoint(history, rep.OldTimeline)
	if !ok {
		// Not an ancestor: pg_rewind will refuse, and the base backup
		// fallback keeps the whole data dir.
		rep.Notes = append(rep.Notes, fmt.Sprintf("timeline %d of %s is not in the history of %s's timeline %d", rep.OldTimeline, t.Resource, primary.Resource, ptli))
	}
	rep.DivergenceLSN = div
	crashed := cd["Database cluster state"] != "shut down"
	// A clean shutdown's checkpoint at or past the divergence means t wrote
	// there; after a crash the end of WAL is unknown, so look.
	if ok && !crashed && rep.EndLSN < div {
		return QuarantineReport{}, nil
	}
	rep.Dir = filepath.Join(d.cfg.StateDir, "quarantine", fmt.Sprintf("%s-%d", t.Resource, t.Epoch))
	if old, err := os.ReadFile(filepath.Join(rep.Dir, "report.json")); err == nil {
		// A retry: the first attempt kept the WAL already.
		var prev QuarantineReport
		if json.Unmarshal(old, &prev) == nil {
			return prev, nil
		}
	}
	rep.Created = time.Now().UTC()
	if err := os.MkdirAll(filepath.Join(rep.Dir, "pg_wal"), 0o700); err != nil {
		return rep, lifeboat.Permanent(op, t.Resource, fmt.Errorf("create the quarantine dir: %w", err))
	}
	segSize, _ := strconv.ParseUint(cd["Bytes per WAL segment"], 10, 64)
	if segSize == 0 {
		segSize = 16 << 20
	}
	segs, err := copyWAL(filepath.Join(inst.DataDir, "pg_wal"), filepath.Join(rep.Dir, "pg_wal"), rep.OldTimeline, uint64(div)/segSize, segSize)
	if err != nil {
		return rep, lifeboat.Permanent(op, t.Resource, fmt.Errorf("copy the WAL of %s to quarantine %s: %w; the data dir was not touched", t.Resource, rep.Dir, err))
	}
	rep.WALSegments = segs
	if len(segs) > 0 {
		out, derr := inst.run(ctx, false, "pg_waldump", "-p", filepath.Join(rep.Dir, "pg_wal"), "-t", strconv.Itoa(int(rep.OldTimeline)), "-s", div.String())
		// pg_waldump ends with an error at the end of the WAL; what it
		// printed before is the content.
		rep.WALDump = filepath.Join(rep.Dir, "waldump.txt")
		if err := os.WriteFile(rep.WALDump, out, 0o600); err != nil {
			return rep, lifeboat.Permanent(op, t.Resource, err)
		}
		if derr != nil && !strings.Contains(derr.Error(), "error in WAL record") {
			rep.Notes = append(rep.Notes, "pg_waldump: "+derr.Error())
		}
		rep.Transactions = parseCommits(string(out))
	}
	if err := d.saveQuarantine(rep); err != nil {
		return rep, lifeboat.Transient(op, t.Resource, err)
	}
	d.log.Warn("quarantined writes that never reached the new primary", "resource", t.Resource, "divergence", div,
		"transactions", len(rep.Transactions), "dir", rep.Dir)
	return rep, nil
}

func (d *Driver) saveQuarantine(rep QuarantineReport) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(rep.Dir, "report.json"), data, 0o600, false); err != nil {
		return fmt.Errorf("write the quarantine report: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s wrote past the point where %s's timeline %d left its timeline %d (LSN %s).\n",
		rep.Resource, rep.Primary, rep.NewTimeline, rep.OldTimeline, rep.DivergenceLSN)
	fmt.Fprintf(&b, "%d transaction(s) committed there never reached %s:\n", len(rep.Transactions), rep.Primary)
	for _, tx := range rep.Transactions {
		fmt.Fprintf(&b, "  xid %d at %s committed %s\n", tx.XID, tx.LSN, tx.Committed.Format(time.RFC3339Nano))
	}
	fmt.Fprintf(&b, "The WAL is in %s/pg_wal (pg_waldump -p %s/pg_wal -t %d -s %s shows every change).\n", rep.Dir, rep.Dir, rep.OldTimeline, rep.DivergenceLSN)
	if rep.DataDirCopy != "" {
		fmt.Fprintf(&b, "The whole old data dir is in %s.\n", rep.DataDirCopy)
	}
	d.qmu.Lock()
	d.quarantines[rep.Resource] = rep
	d.qmu.Unlock()
	return writeFileAtomic(filepath.Join(rep.Dir, "REPORT.txt"), []byte(b.String()), 0o600, false)
}

// switchPoint finds in a timeline history file where the line left
// timeline tli.
func switchPoint(history string, tli uint32) (LSN, bool) {
	for _, line := range strings.Split(history, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		parent, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || uint32(parent) != tli {
			continue
		}
		l, err := ParseLSN(f[1])
		if err != nil {
			continue
		}
		return l, true
	}
	return 0, false
}

var walName = regexp.MustCompile(`^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?$`)

// copyWAL copies the segments of timeline tli from segment fromSeg on.
func copyWAL(src, dst string, tli uint32, fromSeg, segSize uint64) ([]string, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	perID := uint64(0x100000000) / segSize
	var out []string
	for _, e := range entries {
		m := walName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		t, _ := strconv.ParseUint(m[1], 16, 32)
		hi, _ := strconv.ParseUint(m[2], 16, 32)
		lo, _ := strconv.ParseUint(m[3], 16, 32)
		if uint32(t) != tli || hi*perID+lo < fromSeg {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return out, err
		}
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// quarantineDataDir moves the whole data dir into the quarantine dir
// (copying when they are on different file systems): a base backup will
// replace it, and nothing is deleted without a copy.
func (d *Driver) quarantineDataDir(inst *Instance, qdir string) (string, error) {
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return "", err
	}
	dst := filepath.Join(qdir, "datadir")
	if _, err := os.Stat(dst); err == nil {
		dst = filepath.Join(qdir, "datadir-"+time.Now().UTC().Format("20060102T150405.000"))
	}
	if err := os.Rename(inst.DataDir, dst); err != nil {
		var le *os.LinkError
		if !errors.As(err, &le) {
			return "", err
		}
		if out, err := exec.Command("cp", "-a", inst.DataDir, dst).CombinedOutput(); err != nil {
			return "", fmt.Errorf("copy %s to %s: %w: %s", inst.DataDir, dst, err, out)
		}
		if err := os.RemoveAll(inst.DataDir); err != nil {
			return "", err
		}
	}
	return dst, nil
}

// parseCommits reads COMMIT records from pg_waldump's output, e.g.
// "rmgr: Transaction len (rec/tot): 34/34, tx: 739, lsn: 0/030001A8, prev 0/03000170, desc: COMMIT 2025-03-01 12:00:00.123456 UTC".
func parseCommits(out string) []LostTransaction {
	var txs []LostTransaction
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "rmgr: Transaction") {
			continue
		}
		_, desc, ok := strings.Cut(line, "desc: ")
		if !ok || !strings.HasPrefix(desc, "COMMIT") || strings.HasPrefix(desc, "COMMIT_PREPARED") {
			continue
		}
		var tx LostTransaction
		if _, v, ok := strings.Cut(line, "tx:"); ok {
			v, _, _ = strings.Cut(v, ",")
			x, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			tx.XID = uint32(x)
		}
		if _, v, ok := strings.Cut(line, "lsn: "); ok {
			v, _, _ = strings.Cut(v, ",")
			tx.LSN, _ = ParseLSN(v)
		}
		ts := strings.TrimSpace(strings.TrimPrefix(desc, "COMMIT"))
		ts, _, _ = strings.Cut(ts, ";")
		for _, layout := range []string{"2006-01-02 15:04:05.999999 MST", "2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05 MST"} {
			if tm, err := time.Parse(layout, strings.TrimSpace(ts)); err == nil {
				tx.Committed = tm
				break
			}
		}
		txs = append(txs, tx)
	}
	return txs
}
