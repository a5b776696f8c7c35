package recovery

import (
	"testing"
	"time"
)

// BenchmarkScheduler1000 drives the scheduler alone through a whole
// recovery of 1,000 tenants (500 geo-replicated in batches of 20, 500
// geo-restored, concurrency 4, every 50th hurried on the way): New, the
// promotions, and the end of every action, oldest first. One op is one
// whole recovery; events/op and ns/event are reported.
func BenchmarkScheduler1000(b *testing.B) {
	cfg, ts := scenario2(500, 500, 20, 4)
	at := time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)
	events := 0
	b.ReportAllocs()
	for b.Loop() {
		s, err := New(cfg, ts)
		if err != nil {
			b.Fatal(err)
		}
		var running []Action
		step := func(ev Event) {
			acts, err := s.Step(ev)
			if err != nil {
				b.Fatal(err)
			}
			events++
			for _, a := range acts {
				if a.Kind != Record {
					running = append(running, a)
				}
			}
		}
		step(Event{Kind: CatalogPromoted, At: at})
		step(Event{Kind: PoolPromoted, Pool: "paid", At: at})
		for n := 0; len(running) > 0; n++ {
			a := running[0]
			running = running[1:]
			step(Done(a, nil, at))
			if n%50 == 0 {
				step(Event{Kind: Hurry, Tenants: []string{ts[999-n%500].Name}, At: at})
			}
			if n%25 == 0 {
				_ = s.Status()
			}
		}
		if !s.Done() {
			b.Fatalf("not done: %s", s.Status())
		}
	}
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
}
