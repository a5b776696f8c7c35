package drill

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat"
)

//go:embed report.html.tmpl
var reportHTML string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":    func(d time.Duration) string { return round(d).String() },
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"plain": plain,
	"f1":    func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"add":   func(a, b float64) float64 { return a + b },
	"sub":   func(a, b float64) float64 { return a - b },
}).Parse(reportHTML))

// The charts' geometry, in SVG user units.
const (
	chartW     = 1000.0
	chartLeft  = 56.0
	chartRight = 12.0
	barsH      = 200.0
	laneH      = 16.0
	lagH       = 140.0
	axisH      = 22.0
	// maxBars: more buckets than this are merged for drawing (the JSON
	// keeps them all), so that a long drill stays a light page.
	maxBars = 1000
)

// page is what the template draws: the report plus precomputed geometry.
type page struct {
	*Report
	Width, PlotW    float64
	BarsH, LagH     float64
	LaneH           float64
	Mid             float64 // the bars' baseline: successes above, failures below
	Bars            []bar
	BarW            float64
	YMax            int
	Ticks           []tick
	Fault           *marker
	Ack             *marker
	Lanes           []lane
	LanesH          float64
	LagPath         string
	LagMax          time.Duration
	LagTicks        []ytick
	LagPoints       int
	LagDots         []lagDot
	LostShown       []Attempt
	LostMore        int
	Generated       string
	TimeOrigin      string
	TotalH, LanesY0 float64
}

type bar struct {
	X, OKH, FailH float64
	Title         string
}

type tick struct {
	X     float64
	Label string
}

type lagDot struct {
	X, Y  float64
	Title string
}

type ytick struct {
	Y     float64
	Label string
}

type marker struct {
	X     float64
	Label string
}

type lane struct {
	Y, X, W float64
	ID, Op  string
	Status  string
	Title   string
	Open    bool
}

// WriteHTML writes the report as one self-contained page: inline CSS and
// SVG, no script, nothing fetched.
func (r *Report) WriteHTML(w io.Writer) error {
	if err := reportTemplate.Execute(w, r.page()); err != nil {
		return lifeboat.Permanent("drill.report", "", fmt.Errorf("writing the report's HTML: %w", err))
	}
	return nil
}

func (r *Report) page() *page {
	p := &page{Report: r, Width: chartW, PlotW: chartW - chartLeft - chartRight, BarsH: barsH, LagH: lagH, LaneH: laneH, Mid: barsH / 2,
		Generated: time.Now().UTC().Format(time.RFC3339)}
	start, end := r.Started, r.Ended
	if r.Fault != nil {
		if start.IsZero() || r.Fault.At.Before(start) {
			start = r.Fault.At
		}
		if r.Fault.At.After(end) {
			end = r.Fault.At
		}
	}
	for _, s := range r.Steps {
		if !s.Start.IsZero() && (start.IsZero() || s.Start.Before(start)) {
			start = s.Start
		}
		if s.End.After(end) {
			end = s.End
		}
	}
	span := end.Sub(start)
	if span <= 0 {
		span = time.Second
	}
	x := func(t time.Time) float64 {
		return chartLeft + p.PlotW*float64(t.Sub(start))/float64(span)
	}
	// Times are shown relative to the fault when there is one: that is
	// what an RTO is read against.
	origin := start
	p.TimeOrigin = "the first attempt"
	if r.Fault != nil {
		origin = r.Fault.At
		p.TimeOrigin = "the fault"
	}

	// Bars, merged when there are too many.
	merge := max(1, (len(r.Buckets)+maxBars-1)/maxBars)
	size := r.Bucket * time.Duration(merge)
	var merged []Bucket
	for i := 0; i < len(r.Buckets); i += merge {
		b := Bucket{Start: r.Buckets[i].Start}
		for _, c := range r.Buckets[i:min(i+merge, len(r.Buckets))] {
			b.OK += c.OK
			b.Failed += c.Failed
		}
		merged = append(merged, b)
	}
	p.YMax = 1
	for _, b := range merged {
		p.YMax = max(p.YMax, b.OK, b.Failed)
	}
	if size > 0 {
		p.BarW = math.Max(p.PlotW*float64(size)/float64(span), 0.5)
	}
	half := p.Mid - 4
	for _, b := range merged {
		p.Bars = append(p.Bars, bar{
			X:     x(b.Start),
			OKH:   half * float64(b.OK) / float64(p.YMax),
			FailH: half * float64(b.Failed) / float64(p.YMax),
			Title: fmt.Sprintf("%s: %d ok, %d failed", rel(b.Start.Sub(origin)), b.OK, b.Failed),
		})
	}
	p.Ticks = ticks(start, end, origin, x)

	if r.Fault != nil {
		label := "fault: " + r.Fault.Kind
		if r.Fault.Region != "" {
			label += " " + r.Fault.Region
		}
		p.Fault = &marker{X: x(r.Fault.At), Label: label}
		if r.RTO.Recovered {
			p.Ack = &marker{X: x(r.RTO.FirstAck), Label: "first ack " + rel(r.RTO.Overall)}
		}
	}

	// One lane per plan step, under the bars, on the same time axis.
	p.LanesY0 = barsH + axisH + 6
	for i, s := range r.Steps {
		st, en := s.Start, s.End
		open := en.IsZero()
		if open {
			en = end
		}
		l := lane{Y: p.LanesY0 + float64(i)*laneH, X: x(st), W: math.Max(x(en)-x(st), 2), ID: s.ID, Op: s.Op, Status: s.Status, Open: open}
		l.Title = fmt.Sprintf("%s (%s) %s → %s: %s", s.ID, s.Op, rel(st.Sub(origin)), rel(en.Sub(origin)), s.Status)
		p.Lanes = append(p.Lanes, l)
	}
	p.LanesH = float64(len(r.Steps)) * laneH
	p.TotalH = p.LanesY0 + p.LanesH + 4

	// The lag curve, on the same time axis.
	for _, s := range r.Lag {
		p.LagMax = max(p.LagMax, s.Lag)
	}
	top := p.LagMax
	if top < 10*time.Millisecond {
		top = 10 * time.Millisecond
	}
	top = niceDuration(top)
	y := func(d time.Duration) float64 { return lagH - 4 - (lagH-14)*float64(d)/float64(top) }
	var path strings.Builder
	for i, s := range r.Lag {
		if s.At.Before(start) || s.At.After(end) {
			continue
		}
		cmd := "L"
		if i == 0 || path.Len() == 0 {
			cmd = "M"
		}
		fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, x(s.At), y(s.Lag))
		p.LagPoints++
		p.LagDots = append(p.LagDots, lagDot{X: x(s.At), Y: y(s.Lag), Title: fmt.Sprintf("%s: %s behind, %d bytes", rel(s.At.Sub(origin)), round(s.Lag), s.Bytes)})
	}
	p.LagPath = strings.TrimSpace(path.String())
	if len(p.LagDots) > 300 {
		p.LagDots = nil // the curve alone: too many dots to read
	}
	for i := 0; i <= 4; i++ {
		d := top * time.Duration(i) / 4
		p.LagTicks = append(p.LagTicks, ytick{Y: y(d), Label: round(d).String()})
	}

	const lostShown = 200
	p.LostShown = r.Set.Lost[:min(len(r.Set.Lost), lostShown)]
	p.LostMore = len(r.Set.Lost) - len(p.LostShown)
	return p
}

// ticks places about ten labelled ticks on the time axis at round steps.
func ticks(start, end, origin time.Time, x func(time.Time) float64) []tick {
	span := end.Sub(start)
	steps := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour}
	step := steps[len(steps)-1]
	for _, s := range steps {
		if span/s <= 12 {
			step = s
			break
		}
	}
	// Ticks sit at multiples of step from the origin, so the fault is 0.
	first := origin.Add(-time.Duration(math.Floor(float64(origin.Sub(start))/float64(step))) * step)
	var out []tick
	for t := first; !t.After(end); t = t.Add(step) {
		out = append(out, tick{X: x(t), Label: rel(t.Sub(origin))})
	}
	return out
}

// niceDuration rounds d up to 1, 2 or 5 times a power of ten.
func niceDuration(d time.Duration) time.Duration {
	p := time.Duration(1)
	for p*10 <= d {
		p *= 10
	}
	for _, m := range []time.Duration{1, 2, 5, 10} {
		if m*p >= d {
			return m * p
		}
	}
	return 10 * p
}

// rel shows an offset from the time origin, signed.
func rel(d time.Duration) string {
	if round(d) == 0 {
		return "0"
	}
	if d > 0 {
		return "+" + round(d).String()
	}
	return "−" + round(-d).String()
}

// plain keeps error texts readable without links: a client's error quotes
// the URL it posted to, and the page must reference nothing outside it.
func plain(s string) string {
	s = strings.ReplaceAll(s, "https://", "")
	return strings.ReplaceAll(s, "http://", "")
}
