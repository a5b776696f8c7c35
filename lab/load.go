package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
)

// LoadOptions says how to load the lab's front door with orders.
type LoadOptions struct {
	// Dir is the lab's directory; its front is the target unless Front is set.
	Dir string
	// Front overrides the address (host:port) orders are posted to.
	Front string
	// Rate is attempts per second; Load never starts more than that.
	Rate float64
	// For bounds the run; 0 runs until ctx ends.
	For time.Duration
	// Out is the JSON-lines file each attempt is appended to.
	Out string
	// Timeout bounds one attempt: a hung region counts as failed writes,
	// not as a stalled load.
	Timeout time.Duration
	// InFlight bounds concurrent attempts; a tick that finds them all busy
	// is skipped (counted in Skipped), so the rate is a ceiling.
	InFlight int
	// Every and Progress: a LoadProgress is sent to Progress every Every.
	Every    time.Duration
	Progress func(LoadProgress)
}

// DefaultLoadOptions loads the lab in ./lab at 50 orders/s until stopped.
func DefaultLoadOptions() LoadOptions {
	return LoadOptions{Dir: "lab", Rate: 50, Out: filepath.Join("lab", "load.jsonl"), Timeout: 2 * time.Second, InFlight: 32, Every: 2 * time.Second}
}

// ValidateLoadOptions says what is wrong with o.
func ValidateLoadOptions(o LoadOptions) error {
	var errs []error
	if o.Rate <= 0 || o.Rate > 10000 {
		errs = append(errs, fmt.Errorf("rate %g/s: want more than 0 and at most 10000 per second", o.Rate))
	}
	if o.For < 0 {
		errs = append(errs, fmt.Errorf("for %s: want 0 (until stopped) or a positive duration", o.For))
	}
	if o.Out == "" {
		errs = append(errs, errors.New("no output file: set --out"))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %s: want a positive duration", o.Timeout))
	}
	if o.InFlight < 1 {
		errs = append(errs, fmt.Errorf("in-flight %d: want at least 1", o.InFlight))
	}
	if o.Dir == "" && o.Front == "" {
		errs = append(errs, errors.New("neither a lab directory nor a front address: set --dir"))
	}
	if err := errors.Join(errs...); err != nil {
		return lifeboat.Permanent("lab.load", "", err)
	}
	return nil
}

// Attempt is one line of the load's output: one POST /orders.
type Attempt struct {
	// At is when the attempt was sent; Took how long until the answer.
	At   time.Time     `json:"at"`
	Took time.Duration `json:"took_ns"`
	// OK: a 201 with an id, an acknowledged (committed) order.
	OK     bool   `json:"ok"`
	ID     int64  `json:"id,omitempty"`
	Region string `json:"region,omitempty"`
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
	// Item is unique per attempt, so that Check can tell this order from
	// another that got the same id (a sequence rewound by a failover).
	Item string `json:"item"`
}

// LoadProgress is a running count, for a progress line.
type LoadProgress struct {
	Elapsed      time.Duration
	Acknowledged int
	Failed       int
	Skipped      int
	// Region took the latest acknowledged order.
	Region string
	// LastError is the latest failure's, empty after a success.
	LastError string
}

// LoadReport is what a load did.
type LoadReport struct {
	Front        string         `json:"front"`
	Out          string         `json:"out"`
	Started      time.Time      `json:"started"`
	Took         time.Duration  `json:"took_ns"`
	Attempts     int            `json:"attempts"`
	Acknowledged int            `json:"acknowledged"`
	Failed       int            `json:"failed"`
	Skipped      int            `json:"skipped"`
	ByRegion     map[string]int `json:"by_region"`
}

// Load posts orders to the lab's front door at a steady rate until o.For
// has passed or ctx ends, and appends every attempt to o.Out. It returns
// an error only when it could not run at all: failed orders are data.
func Load(ctx context.Context, o LoadOptions) (*LoadReport, error) {
	if err := ValidateLoadOptions(o); err != nil {
		return nil, err
	}
	front := o.Front
	if front == "" {
		in, err := LoadInfo(o.Dir)
		if err != nil {
			return nil, err
		}
		front = in.Front
	}
	f, err := os.OpenFile(o.Out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, lifeboat.Permanent("lab.load", "", fmt.Errorf("opening the load's output %s: %w (does its directory exist?)", o.Out, err))
	}
	defer f.Close()

	if o.For > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.For)
		defer cancel()
	}
	client := &http.Client{
		Timeout:   o.Timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: o.InFlight, DialContext: (&net.Dialer{Timeout: o.Timeout}).DialContext},
	}
	defer client.CloseIdleConnections()

	rep := &LoadReport{Front: front, Out: o.Out, Started: time.Now(), ByRegion: map[string]int{}}
	run := strconv.FormatInt(rep.Started.UnixNano(), 36)
	var (
		mu       sync.Mutex
		prog     LoadProgress
		writeErr error
		wg       sync.WaitGroup
	)
	record := func(a Attempt) {
		line, _ := json.Marshal(a)
		mu.Lock()
		defer mu.Unlock()
		if _, err := f.Write(append(line, '\n')); err != nil && writeErr == nil {
			writeErr = err
		}
		rep.Attempts++
		if a.OK {
			rep.Acknowledged++
			rep.ByRegion[a.Region]++
			prog.Region, prog.LastError = a.Region, ""
		} else {
			rep.Failed++
			prog.LastError = a.Error
		}
	}
	progress := func() LoadProgress {
		mu.Lock()
		defer mu.Unlock()
		p := prog
		p.Elapsed, p.Acknowledged, p.Failed, p.Skipped = time.Since(rep.Started), rep.Acknowledged, rep.Failed, rep.Skipped
		return p
	}

	slots := make(chan struct{}, o.InFlight)
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
	defer tick.Stop()
	var every <-chan time.Time
	if o.Progress != nil && o.Every > 0 {
		t := time.NewTicker(o.Every)
		defer t.Stop()
		every = t.C
	}
	for seq := 1; ; {
		select {
		case <-ctx.Done():
			wg.Wait()
			rep.Took = time.Since(rep.Started)
			if o.Progress != nil {
				o.Progress(progress())
			}
			if writeErr != nil {
				return rep, lifeboat.Permanent("lab.load", "", fmt.Errorf("writing %s: %w; the attempts after the error are not recorded", o.Out, writeErr))
			}
			return rep, nil
		case <-every:
			o.Progress(progress())
		case <-tick.C:
			select {
			case slots <- struct{}{}:
			default:
				mu.Lock()
				rep.Skipped++
				mu.Unlock()
				continue
			}
			item := fmt.Sprintf("load-%s-%d", run, seq)
			seq++
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				// An attempt in flight when the load stops still finishes
				// and is recorded: it may have been committed.
				record(postOrder(context.WithoutCancel(ctx), client, front, item))
			}()
		}
	}
}

// postOrder places one order and says how it went.
func postOrder(ctx context.Context, c *http.Client, front, item string) Attempt {
	a := Attempt{At: time.Now().UTC(), Item: item}
	body, _ := json.Marshal(map[string]any{"item": item, "qty": 1})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+front+"/orders", bytes.NewReader(body))
	if err != nil {
		a.Error = err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	a.Took = time.Since(a.At)
	if err != nil {
		a.Error = err.Error()
		return a
	}
	defer resp.Body.Close()
	a.Status = resp.StatusCode
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		a.Error = strings.TrimSpace(resp.Status + ": " + firstLine(string(b)))
		return a
	}
	var p struct {
		ID     int64  `json:"id"`
		Region string `json:"region"`
	}
	if err := json.Unmarshal(b, &p); err != nil || p.ID <= 0 {
		a.Error = fmt.Sprintf("201 without an order id: %q", firstLine(string(b)))
		return a
	}
	a.OK, a.ID, a.Region = true, p.ID, p.Region
	return a
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// ReadAttempts reads a load's output. A last line cut short (the load was
// killed mid-write) is skipped; any other bad line is an error.
func ReadAttempts(path string) ([]Attempt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, lifeboat.Permanent("lab.check", "", fmt.Errorf("reading the load's output: %w (run 'lifeboat lab load' first, or name the file with --in)", err))
	}
	defer f.Close()
	var out []Attempt
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var bad error
	for n := 1; sc.Scan(); n++ {
		if bad != nil {
			return nil, bad
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var a Attempt
		if err := json.Unmarshal(line, &a); err != nil {
			bad = lifeboat.Permanent("lab.check", "", fmt.Errorf("%s line %d is not an attempt (%v): is it a 'lifeboat lab load' output?", path, n, err))
			continue
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		return nil, lifeboat.Permanent("lab.check", "", fmt.Errorf("reading %s: %w", path, err))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, nil
}

// Window is a span when the load's writes failed: from the first failed
// attempt to the first acknowledged one after it (the write-unavailable
// window of a move, its measured RTO).
type Window struct {
	Start    time.Time     `json:"start"`
	End      time.Time     `json:"end"`
	Duration time.Duration `json:"duration_ns"`
	Failed   int           `json:"failed"`
	// Open: no write succeeded after it (the load ended while failing).
	Open bool `json:"open,omitempty"`
	// From and To are the regions that took the orders before and after.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Error is the first failure's, as a hint at the cause.
	Error string `json:"error,omitempty"`
}

// Windows finds the write-unavailable windows in attempts (sorted by At).
func Windows(attempts []Attempt) []Window {
	var out []Window
	var cur *Window
	last := ""
	for _, a := range attempts {
		switch {
		case !a.OK && cur == nil:
			cur = &Window{Start: a.At, End: a.At.Add(a.Took), Failed: 1, From: last, Error: a.Error}
		case !a.OK:
			cur.Failed++
			cur.End = a.At.Add(a.Took)
		case cur != nil:
			cur.End, cur.To = a.At.Add(a.Took), a.Region
			cur.Duration = cur.End.Sub(cur.Start)
			out = append(out, *cur)
			cur = nil
		}
		if a.OK {
			last = a.Region
		}
	}
	if cur != nil {
		cur.Open, cur.Duration = true, cur.End.Sub(cur.Start)
		out = append(out, *cur)
	}
	return out
}

// CheckOptions says which load to check against which lab.
type CheckOptions struct {
	Dir string
	In  string
	// Primary overrides the database (host:port) checked; by default the
	// lab's writable primary.
	Primary string
	// Slack widens an attempt's span when it is matched to a quarantined
	// commit: the database's clock and ours are the same machine's, but
	// the commit record's time is taken just before the reply is sent.
	Slack time.Duration
}

// DefaultCheckOptions checks ./lab/load.jsonl against the lab in ./lab.
func DefaultCheckOptions() CheckOptions {
	return CheckOptions{Dir: "lab", In: filepath.Join("lab", "load.jsonl"), Slack: 50 * time.Millisecond}
}

// Missing is an acknowledged order the primary does not hold.
type Missing struct {
	Attempt
	// Quarantine is the quarantine dir holding a transaction committed in
	// the order's span on the database of the region that acknowledged it:
	// the write was kept there, not lost.
	Quarantine string    `json:"quarantine,omitempty"`
	XID        uint32    `json:"xid,omitempty"`
	Committed  time.Time `json:"committed,omitzero"`
	// Other: the id exists but holds another order (the id was given out
	// again after a failover).
	Other string `json:"other,omitempty"`
}

// Quarantine summarises one quarantine report of the lab's PostgreSQL.
type Quarantine struct {
	Dir          string   `json:"dir"`
	Resource     string   `json:"resource"`
	Transactions int      `json:"transactions"`
	Summary      []string `json:"summary"`
	report       postgres.QuarantineReport
}

// CheckReport is what Check found.
type CheckReport struct {
	// Primary is the database checked (resource and address).
	Primary      string       `json:"primary"`
	Attempts     int          `json:"attempts"`
	Acknowledged int          `json:"acknowledged"`
	Present      int          `json:"present"`
	Missing      []Missing    `json:"missing"`
	Windows      []Window     `json:"windows"`
	Quarantines  []Quarantine `json:"quarantines"`
}

// Lost lists the missing orders no quarantine accounts for.
func (r *CheckReport) Lost() []Missing {
	var out []Missing
	for _, m := range r.Missing {
		if m.Quarantine == "" {
			out = append(out, m)
		}
	}
	return out
}

// OK: every acknowledged order is on the primary or in quarantine.
func (r *CheckReport) OK() bool { return len(r.Lost()) == 0 }

// Check reads a load's output and looks up every acknowledged order on the
// lab's writable primary (directly, with pgx: exact, and independent of the
// front and the shops). Orders it lacks are matched against the lab's
// quarantine reports. The report is returned even when orders are lost;
// the error is for when the check could not be made.
func Check(ctx context.Context, o CheckOptions) (*CheckReport, error) {
	attempts, err := ReadAttempts(o.In)
	if err != nil {
		return nil, err
	}
	rep := &CheckReport{Attempts: len(attempts), Windows: Windows(attempts), Missing: []Missing{}}
	var acked []Attempt
	for _, a := range attempts {
		if a.OK && a.ID > 0 {
			acked = append(acked, a)
		}
	}
	rep.Acknowledged = len(acked)

	addr := o.Primary
	rep.Primary = addr
	if addr == "" {
		db, err := writablePrimary(ctx, o.Dir)
		if err != nil {
			return nil, err
		}
		addr, rep.Primary = db.Addr, db.Resource+" ("+db.Addr+")"
	}
	items, err := ordersByID(ctx, addr, acked)
	if err != nil {
		return nil, err
	}
	for _, a := range acked {
		got, ok := items[a.ID]
		switch {
		case ok && got == a.Item:
			rep.Present++
		case ok:
			rep.Missing = append(rep.Missing, Missing{Attempt: a, Other: got})
		default:
			rep.Missing = append(rep.Missing, Missing{Attempt: a})
		}
	}

	if o.Dir != "" {
		rep.Quarantines, err = readQuarantines(filepath.Join(o.Dir, "pgstate", "quarantine"))
		if err != nil {
			return nil, err
		}
		matchQuarantined(rep, o.Slack)
	}
	return rep, nil
}

// writablePrimary is the lab's PostgreSQL that takes writes now: a primary
// that is neither fenced nor down.
func writablePrimary(ctx context.Context, dir string) (DatabaseStatus, error) {
	st, err := LabStatus(ctx, dir)
	if err != nil {
		return DatabaseStatus{}, err
	}
	var found []DatabaseStatus
	for _, d := range st.Databases {
		if d.Running && d.Error == "" && d.Role == "primary" && !d.Fenced {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0:
		return DatabaseStatus{}, lifeboat.Transient("lab.check", "", fmt.Errorf("no writable PostgreSQL primary in the lab in %s (see 'lifeboat lab status --dir %s'): finish the failover or failback, then check again", dir, dir))
	case len(found) > 1:
		// Two unfenced primaries: the front's region is the one the
		// service writes to.
		for _, d := range found {
			if d.Region == st.Front.Region {
				return d, nil
			}
		}
	}
	return found[0], nil
}

// ordersByID reads the items of the acknowledged ids from the database at addr.
func ordersByID(ctx context.Context, addr string, acked []Attempt) (map[int64]string, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, lifeboat.Permanent("lab.check", "", fmt.Errorf("database address %q: %w", addr, err))
	}
	port, _ := strconv.Atoi(p)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, postgres.Conninfo(host, port, DBUser, DBPassword, ShopDatabase, "lifeboat-lab-check"))
	if err != nil {
		return nil, lifeboat.Transient("lab.check", "", fmt.Errorf("connecting to the primary at %s: %w (is the lab up? 'lifeboat lab status')", addr, err))
	}
	defer c.Close(context.WithoutCancel(ctx))
	ids := make([]int64, 0, len(acked))
	for _, a := range acked {
		ids = append(ids, a.ID)
	}
	out := map[int64]string{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := c.Query(cctx, `SELECT id, item FROM orders WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, lifeboat.Transient("lab.check", "", fmt.Errorf("reading orders on %s: %w", addr, err))
	}
	for rows.Next() {
		var id int64
		var item string
		if err := rows.Scan(&id, &item); err != nil {
			return nil, lifeboat.Transient("lab.check", "", err)
		}
		out[id] = item
	}
	if err := rows.Err(); err != nil {
		return nil, lifeboat.Transient("lab.check", "", fmt.Errorf("reading orders on %s: %w", addr, err))
	}
	return out, nil
}

// readQuarantines reads every report.json under root (the postgres
// driver's StateDir/quarantine).
func readQuarantines(root string) ([]Quarantine, error) {
	paths, _ := filepath.Glob(filepath.Join(root, "*", "report.json"))
	sort.Strings(paths)
	out := []Quarantine{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, lifeboat.Permanent("lab.check", "", fmt.Errorf("reading quarantine report %s: %w", p, err))
		}
		var r postgres.QuarantineReport
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, lifeboat.Permanent("lab.check", "", fmt.Errorf("quarantine report %s is damaged (%v): read %s by hand", p, err, filepath.Join(filepath.Dir(p), "REPORT.txt")))
		}
		q := Quarantine{Dir: filepath.Dir(p), Resource: r.Resource, Transactions: len(r.Transactions), report: r}
		if txt, err := os.ReadFile(filepath.Join(q.Dir, "REPORT.txt")); err == nil {
			lines := strings.Split(strings.TrimRight(string(txt), "\n"), "\n")
			if len(lines) > 6 {
				lines = append(lines[:5], fmt.Sprintf("  … (%d more lines in %s)", len(lines)-5, filepath.Join(q.Dir, "REPORT.txt")))
			}
			q.Summary = lines
		}
		out = append(out, q)
	}
	return out, nil
}

// matchQuarantined accounts for missing orders with the quarantined
// transactions: pg_waldump shows no row values, so an order is matched to
// a transaction committed, on the database of the region that acknowledged
// it, between the moment it was sent and the moment its answer came back.
// Each transaction accounts for one order at most.
func matchQuarantined(rep *CheckReport, slack time.Duration) {
	used := map[string]bool{}
	for i := range rep.Missing {
		m := &rep.Missing[i]
		from, to := m.At.Add(-slack), m.At.Add(m.Took+slack)
		for _, q := range rep.Quarantines {
			if q.report.Resource != Resource(Orders, m.Region) {
				continue
			}
			for _, tx := range q.report.Transactions {
				key := q.Dir + "/" + strconv.FormatUint(uint64(tx.XID), 10)
				if used[key] || tx.Committed.IsZero() || tx.Committed.Before(from) || tx.Committed.After(to) {
					continue
				}
				used[key] = true
				m.Quarantine, m.XID, m.Committed = q.Dir, tx.XID, tx.Committed
				break
			}
			if m.Quarantine != "" {
				break
			}
		}
	}
}
