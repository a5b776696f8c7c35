package store

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	lifeboat "github.com/lifeboat-dr/lifeboat"
)

// Benchmarks of the embedded etcd store (real fsyncs) and, for scale, the
// memory store. Every fourth append carries the state, as a step's "done"
// record does.

func benchStores() []struct {
	name string
	open func(testing.TB) lifeboat.Store
} {
	return []struct {
		name string
		open func(testing.TB) lifeboat.Store
	}{
		{"etcd", openEtcd},
		{"memory", func(testing.TB) lifeboat.Store { return NewMemory() }},
	}
}

func benchBegun(b *testing.B, open func(testing.TB) lifeboat.Store) lifeboat.Store {
	s := open(b)
	ctx := context.Background()
	if _, err := s.Init(ctx, testState(1)); err != nil {
		b.Fatal(err)
	}
	if err := s.Begin(ctx, testRun("r1", t0)); err != nil {
		b.Fatal(err)
	}
	return s
}

func benchRecord(i int) (lifeboat.Record, *lifeboat.State) {
	rec := lifeboat.Record{Run: "r1", Step: fmt.Sprintf("compute.scale shop-storefront-web-east-%d", i), Kind: lifeboat.RecDone, At: t0}
	if i%4 == 0 {
		st := testState(2)
		st.Run = "r1"
		return rec, st
	}
	return rec, nil
}

func BenchmarkAppend(b *testing.B) {
	for _, bs := range benchStores() {
		b.Run(bs.name, func(b *testing.B) {
			s := benchBegun(b, bs.open)
			ctx := context.Background()
			i := 0
			for b.Loop() {
				rec, st := benchRecord(i)
				if _, err := s.Append(ctx, rec, st); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkAppendParallel appends from 8 goroutines (on 1, 2, 4 or 8
// CPUs), the engine's target parallelism.
func BenchmarkAppendParallel(b *testing.B) {
	for _, bs := range benchStores() {
		b.Run(bs.name, func(b *testing.B) {
			s := benchBegun(b, bs.open)
			ctx := context.Background()
			b.SetParallelism(max(1, 8/runtimeGOMAXPROCS()))
			var mu sync.Mutex
			n := 0
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					i := n
					n++
					mu.Unlock()
					rec, st := benchRecord(i)
					if _, err := s.Append(ctx, rec, st); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkJournal20k(b *testing.B) {
	const records = 20000
	for _, bs := range benchStores() {
		b.Run(bs.name, func(b *testing.B) {
			s := benchBegun(b, bs.open)
			ctx := context.Background()
			fill(b, s, records)
			for b.Loop() {
				j, err := s.Journal(ctx, "r1")
				if err != nil || len(j) != records {
					b.Fatalf("Journal = %d records, %v", len(j), err)
				}
			}
		})
	}
}

// fill appends n records from 16 goroutines.
func fill(b *testing.B, s lifeboat.Store, n int) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				rec, st := benchRecord(i)
				if _, err := s.Append(ctx, rec, st); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func runtimeGOMAXPROCS() int { return runtime.GOMAXPROCS(0) }
