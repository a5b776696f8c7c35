package lab

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/driver/postgres"
)

// Load through a real lab's front door records acknowledged orders; Check
// finds every one on the primary, then reports one deleted behind the
// shop's back as lost.
func TestLoadCheck(t *testing.T) {
	dir := labDir(t)
	ctx := context.Background()
	in, err := Up(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, tail(logPath(dir), 40))
	}
	t.Cleanup(func() {
		if rep, err := Down(context.Background(), dir); err != nil {
			t.Errorf("lab down (cleanup): %v (%+v)", err, rep)
		}
	})
	// The shops may need a moment after ready to take the first order.
	eventually(t, 30*time.Second, "an order through the front", func() error { _, err := order(in.Front); return err })

	out := filepath.Join(dir, "load.jsonl")
	o := DefaultLoadOptions()
	o.Dir, o.Out, o.Rate, o.For = dir, out, 100, time.Second
	var progress []LoadProgress
	o.Every, o.Progress = 200*time.Millisecond, func(p LoadProgress) { progress = append(progress, p) }
	rep, err := Load(ctx, o)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Logf("load: %+v", rep)
	// The rate is a ceiling: at most one attempt per tick of 10ms over 1s.
	if rep.Attempts > 101 {
		t.Errorf("%d attempts in 1s at 100/s: the rate was exceeded", rep.Attempts)
	}
	if rep.Acknowledged < 10 || rep.Acknowledged != rep.ByRegion[West] {
		t.Errorf("acknowledged %d (by region %v), want at least 10, all in west", rep.Acknowledged, rep.ByRegion)
	}
	if len(progress) == 0 || progress[len(progress)-1].Acknowledged != rep.Acknowledged {
		t.Errorf("progress reports %+v do not end at the report's %d acknowledged", progress, rep.Acknowledged)
	}
	attempts, err := ReadAttempts(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(attempts) != rep.Attempts {
		t.Fatalf("%s has %d attempts, the report says %d", out, len(attempts), rep.Attempts)
	}
	ids := map[int64]bool{}
	for _, a := range attempts {
		if a.OK && (a.ID <= 0 || a.Region != West || a.Status != 201 || ids[a.ID]) {
			t.Errorf("acknowledged attempt %+v: want a new id, region west, status 201", a)
		}
		ids[a.ID] = true
	}

	co := DefaultCheckOptions()
	co.Dir, co.In = dir, out
	cr, err := Check(ctx, co)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !cr.OK() || cr.Acknowledged != rep.Acknowledged || cr.Present != rep.Acknowledged || len(cr.Missing) != 0 {
		t.Fatalf("check after a clean load: %+v, want all %d present", cr, rep.Acknowledged)
	}

	// Delete one acknowledged order behind the shop's back.
	var victim Attempt
	for _, a := range attempts {
		if a.OK {
			victim = a
		}
	}
	host, p, _ := net.SplitHostPort(in.Region(West).Postgres)
	port, _ := strconv.Atoi(p)
	c, err := pgx.Connect(ctx, postgres.Conninfo(host, port, DBUser, DBPassword, ShopDatabase, "lab-test"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `DELETE FROM orders WHERE id = $1`, victim.ID); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	cr, err = Check(ctx, co)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if cr.OK() || len(cr.Missing) != 1 || cr.Missing[0].ID != victim.ID || len(cr.Lost()) != 1 || cr.Present != rep.Acknowledged-1 {
		t.Fatalf("check after deleting order %d: %+v, want it reported lost", victim.ID, cr)
	}
}

func at(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, "2026-01-01T00:00:"+s+"Z")
	return t
}

// Windows are the spans of failed attempts, closed by the next success.
func TestWindows(t *testing.T) {
	ms := time.Millisecond
	as := []Attempt{
		{At: at("00.0"), Took: ms, OK: true, ID: 1, Region: West},
		{At: at("00.1"), Took: 100 * ms, Error: "EOF"},
		{At: at("00.2"), Took: 100 * ms, Error: "EOF"},
		{At: at("01.0"), Took: 5 * ms, OK: true, ID: 2, Region: East},
		{At: at("02.0"), Took: 50 * ms, Error: "503"},
	}
	ws := Windows(as)
	if len(ws) != 2 {
		t.Fatalf("windows %+v, want 2", ws)
	}
	if w := ws[0]; !w.Start.Equal(at("00.1")) || w.Duration != 905*ms || w.Failed != 2 || w.From != West || w.To != East || w.Open {
		t.Errorf("first window %+v", w)
	}
	if w := ws[1]; !w.Open || w.Failed != 1 || w.Duration != 50*ms {
		t.Errorf("second window %+v, want open", w)
	}
}

// A missing order whose span holds a quarantined commit on the database of
// the region that took it is accounted for; one without is lost.
func TestMatchQuarantined(t *testing.T) {
	root := t.TempDir()
	qdir := filepath.Join(root, Resource(Orders, West)+"-2")
	if err := os.MkdirAll(qdir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := postgres.QuarantineReport{Resource: Resource(Orders, West), Dir: qdir,
		Transactions: []postgres.LostTransaction{{XID: 900, Committed: at("00.105")}}}
	b, _ := json.Marshal(r)
	if err := os.WriteFile(filepath.Join(qdir, "report.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(qdir, "REPORT.txt"), []byte("1 transaction(s)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	qs, err := readQuarantines(root)
	if err != nil || len(qs) != 1 || qs[0].Transactions != 1 || len(qs[0].Summary) != 1 {
		t.Fatalf("quarantines %+v, %v", qs, err)
	}
	ms := time.Millisecond
	rep := &CheckReport{Quarantines: qs, Missing: []Missing{
		{Attempt: Attempt{At: at("00.1"), Took: 10 * ms, OK: true, ID: 7, Region: West}},
		{Attempt: Attempt{At: at("00.1"), Took: 10 * ms, OK: true, ID: 8, Region: West}}, // the same xid cannot count twice
		{Attempt: Attempt{At: at("00.1"), Took: 10 * ms, OK: true, ID: 9, Region: East}}, // another region's database
	}}
	matchQuarantined(rep, 0)
	if m := rep.Missing[0]; m.Quarantine != qdir || m.XID != 900 {
		t.Errorf("order 7 not matched to xid 900: %+v", m)
	}
	if lost := rep.Lost(); len(lost) != 2 || rep.OK() {
		t.Errorf("lost %+v, want orders 8 and 9", lost)
	}
}
