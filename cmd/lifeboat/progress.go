package main

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/engine"
	"golang.org/x/term"
)

// progress shows a run as it goes: on a terminal, a table of steps redrawn
// in place; otherwise one plain line per thing that happened.
type progress struct {
	a     *app
	plan  *lifeboat.Plan
	run   string
	live  bool
	start time.Time

	mu     sync.Mutex
	rows   map[string]*stepRow
	order  []*lifeboat.Step
	drawn  int // lines drawn last time, to redraw over them
	paused bool
	done   chan struct{}
	wg     sync.WaitGroup
}

type stepRow struct {
	kind    lifeboat.RecordKind
	attempt int
	started time.Time
	ended   time.Time
	err     string
}

func newProgress(a *app, p *lifeboat.Plan) *progress {
	pr := &progress{a: a, plan: p, start: time.Now(), rows: map[string]*stepRow{}, done: make(chan struct{})}
	for _, g := range p.Groups() {
		pr.order = append(pr.order, g...)
	}
	for _, s := range pr.order {
		pr.rows[s.ID] = &stepRow{}
	}
	// Redraw in place only when the table fits on the screen.
	if a.tty && !a.json() {
		if _, h, err := term.GetSize(1); err == nil && len(pr.order)+4 < h {
			pr.live = true
		}
	}
	return pr
}

// begin starts the live view's clock.
func (pr *progress) begin(run string) {
	pr.run = run
	if !pr.live {
		return
	}
	pr.wg.Add(1)
	go func() {
		defer pr.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-pr.done:
				return
			case <-t.C:
				pr.mu.Lock()
				pr.draw()
				pr.mu.Unlock()
			}
		}
	}()
}

// end draws the final table and stops the clock.
func (pr *progress) end() {
	close(pr.done)
	pr.wg.Wait()
	if pr.live {
		pr.mu.Lock()
		pr.draw()
		pr.mu.Unlock()
	}
}

// replay fills the rows from a journal (resume, cancel) without printing.
func (pr *progress) replay(recs []lifeboat.Record) {
	for _, r := range recs {
		pr.record(r.Step, r.Kind, r.Attempt, r.Error, r.At)
	}
}

func (pr *progress) event(e engine.Event) {
	if e.Step == nil {
		return
	}
	msg := ""
	if e.Err != nil {
		msg = e.Err.Error()
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.record(e.Step.ID, e.Kind, e.Attempt, msg, e.At)
	if pr.a.json() || pr.live {
		return
	}
	pr.line(e.Step, e.Kind, e.Attempt, msg)
}

func (pr *progress) record(id string, kind lifeboat.RecordKind, attempt int, msg string, at time.Time) {
	if kind == lifeboat.RecUndone {
		// The undo's own row (its attempts) ends with the step's "undone".
		if u := pr.rows["undo "+id]; u != nil {
			u.kind, u.ended = lifeboat.RecDone, at
		}
	}
	r := pr.rows[id]
	if r == nil {
		// A cleanup step (undo) that is not in the plan.
		r = &stepRow{}
		pr.rows[id] = r
		pr.order = append(pr.order, &lifeboat.Step{ID: id})
	}
	switch kind {
	case lifeboat.RecStart:
		if r.started.IsZero() {
			r.started = at
		}
	case lifeboat.RecAttempt:
		r.attempt = attempt
	case lifeboat.RecError:
		r.err = msg
	case lifeboat.RecApplied:
		// keep the kind that says more
		return
	case lifeboat.RecDone, lifeboat.RecFailed, lifeboat.RecSkipped, lifeboat.RecUndone, lifeboat.RecCancelled:
		r.ended = at
		if kind == lifeboat.RecDone && r.kind == lifeboat.RecHolds {
			return
		}
		if msg != "" {
			r.err = msg
		}
	}
	r.kind = kind
}

// line prints one plain line for a non-terminal.
func (pr *progress) line(s *lifeboat.Step, kind lifeboat.RecordKind, attempt int, msg string) {
	var what string
	switch kind {
	case lifeboat.RecStart:
		what = "start"
	case lifeboat.RecHolds:
		what = "holds   (already done; not applied)"
	case lifeboat.RecAttempt:
		if attempt < 2 {
			return
		}
		what = fmt.Sprintf("attempt %d", attempt)
	case lifeboat.RecError:
		what = "error   " + msg
	case lifeboat.RecDone:
		what = "done    " + lifeboat.FormatDuration(pr.elapsed(s.ID))
	case lifeboat.RecFailed:
		what = "FAILED  " + msg
	case lifeboat.RecSkipped:
		what = "skipped " + msg
	case lifeboat.RecWaiting:
		what = "waiting for approval: " + s.Approval
	case lifeboat.RecApproved:
		what = "approved"
	case lifeboat.RecCancelled:
		what = "cancelled"
	case lifeboat.RecUndone:
		what = "undone"
	default:
		return
	}
	fmt.Fprintf(pr.a.out, "%s  %-48s %s\n", time.Now().Format("15:04:05"), s.ID, what)
}

func (pr *progress) elapsed(id string) time.Duration {
	r := pr.rows[id]
	if r == nil || r.started.IsZero() {
		return 0
	}
	end := r.ended
	if end.IsZero() {
		end = time.Now()
	}
	return end.Sub(r.started)
}

// draw redraws the table over the previous one. Called with mu held.
func (pr *progress) draw() {
	if pr.paused {
		return
	}
	var b strings.Builder
	if pr.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", pr.drawn)
	}
	lines := 0
	put := func(s string) {
		b.WriteString("\x1b[2K")
		b.WriteString(s)
		b.WriteString("\n")
		lines++
	}
	a := pr.a
	put(fmt.Sprintf("%s %s %s → %s · epoch %d · run %s · %s",
		a.paint(bold, string(pr.plan.Intent)), pr.plan.Service, pr.plan.From, pr.plan.To, pr.plan.Epoch, pr.run,
		lifeboat.FormatDuration(time.Since(pr.start).Truncate(100*time.Millisecond))))
	for _, s := range pr.order {
		r := pr.rows[s.ID]
		mark, state := pr.status(r) // state is padded to 10 columns before it is painted
		el := ""
		if !r.started.IsZero() {
			el = lifeboat.FormatDuration(pr.elapsed(s.ID))
		}
		extra := ""
		if r.err != "" && (r.kind == lifeboat.RecError || r.kind == lifeboat.RecFailed || r.kind == lifeboat.RecSkipped) {
			extra = "  " + a.paint(dim, truncate(r.err, 60))
		}
		put(fmt.Sprintf("  %s %s %7s  %s%s", mark, state, el, s.ID, extra))
	}
	b.WriteString("\x1b[2K")
	fmt.Fprint(a.out, b.String())
	pr.drawn = lines
}

func (pr *progress) status(r *stepRow) (string, string) {
	a := pr.a
	switch r.kind {
	case "":
		return a.paint(dim, "·"), a.paint(dim, pad("pending"))
	case lifeboat.RecStart, lifeboat.RecAttempt, lifeboat.RecApplied:
		if r.attempt > 1 {
			return a.paint(blue, "▸"), a.paint(blue, pad(fmt.Sprintf("try %d", r.attempt)))
		}
		return a.paint(blue, "▸"), a.paint(blue, pad("running"))
	case lifeboat.RecError:
		return a.paint(yellow, "↻"), a.paint(yellow, pad("retrying"))
	case lifeboat.RecHolds:
		return a.paint(green, "✓"), a.paint(green, pad("held"))
	case lifeboat.RecDone, lifeboat.RecApproved:
		return a.paint(green, "✓"), a.paint(green, pad("done"))
	case lifeboat.RecFailed:
		return a.paint(red, "✗"), a.paint(red, pad("FAILED"))
	case lifeboat.RecSkipped:
		return a.paint(yellow, "–"), a.paint(yellow, pad("skipped"))
	case lifeboat.RecWaiting:
		return a.paint(yellow, "?"), a.paint(yellow, pad("approval"))
	case lifeboat.RecCancelled:
		return a.paint(yellow, "■"), a.paint(yellow, pad("cancelled"))
	case lifeboat.RecUndone:
		return a.paint(yellow, "↶"), a.paint(yellow, pad("undone"))
	}
	return " ", pad(string(r.kind))
}

// pause stops redrawing (for a prompt); resume starts again below it.
func (pr *progress) pause() {
	pr.mu.Lock()
	pr.paused = true
	pr.mu.Unlock()
}

func (pr *progress) unpause() {
	pr.mu.Lock()
	pr.paused = false
	pr.drawn = 0
	pr.mu.Unlock()
}

// pad pads a status word to the width of the status column.
func pad(s string) string { return fmt.Sprintf("%-10s", s) }

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
