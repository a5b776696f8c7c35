package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/driver/postgres/pgtest"
)

func TestExposureMeter(t *testing.T) {
	c := DefaultExposureConfig()
	c.Interval, c.Window = time.Second, time.Minute
	m, err := NewExposureMeter("shop-shop-db", c, func(context.Context) (LagSample, error) { return LagSample{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	if e := m.ExposureAt(at(0)); e.Bounded || !strings.Contains(e.Reason, "no lag sample") {
		t.Fatalf("no sample: %+v, want unbounded", e)
	}
	stream := func(s int, bytes int64, lag time.Duration) {
		m.record(LagSample{At: at(s), Standby: "east", Streaming: true, State: "streaming", LagBytes: bytes, LagTime: lag})
	}
	stream(0, 9000, 900*time.Millisecond) // falls out of the window below
	stream(100, 100, 10*time.Millisecond)
	stream(101, 5000, 400*time.Millisecond)
	stream(102, 0, 0)
	e := m.ExposureAt(at(102))
	if !e.Bounded || e.LagBytes != 0 || e.LagTime != 0 || !strings.Contains(e.Reason, "no loss") {
		t.Fatalf("caught up: %+v", e)
	}
	if e.MaxLagBytes != 5000 || e.MaxLagTime != 400*time.Millisecond || !e.WindowBounded || e.Samples != 3 {
		t.Fatalf("window: %+v, want max 5000 bytes, 400ms over 3 samples", e)
	}
	stream(103, 2048, 250*time.Millisecond)
	if e := m.ExposureAt(at(103)); !e.Bounded || e.LagBytes != 2048 || e.LagTime != 250*time.Millisecond {
		t.Fatalf("behind: %+v", e)
	}

	// The standby stops streaming: unbounded, never 0, last known kept.
	m.record(LagSample{At: at(104), Standby: "east", State: "catchup"})
	e = m.ExposureAt(at(104))
	if e.Bounded || e.WindowBounded || e.LagBytes != 2048 || !e.LastBounded.Equal(at(103)) || !strings.Contains(e.Reason, "unbounded") {
		t.Fatalf("not streaming: %+v", e)
	}

	// Streaming again, then the sampler stops: stale.
	stream(105, 0, 0)
	if e := m.ExposureAt(at(105)); !e.Bounded {
		t.Fatalf("streaming again: %+v", e)
	}
	if e := m.ExposureAt(at(110)); e.Bounded || !strings.Contains(e.Reason, "stuck or stopped") {
		t.Fatalf("5s after the last sample (stale after 3s): %+v", e)
	}

	// A failed sample is recorded as a gap.
	m.sampler = func(context.Context) (LagSample, error) {
		return LagSample{}, errors.New("cannot reach the primary")
	}
	s := m.SampleOnce(context.Background())
	if s.Err == "" || s.Streaming {
		t.Fatalf("failed sample %+v", s)
	}
	if e := m.Exposure(); e.Bounded || !strings.Contains(e.Reason, "cannot reach the primary") {
		t.Fatalf("after a failed sample: %+v", e)
	}
	if h := m.History(); len(h) != 8 || !h[0].At.Equal(at(0)) || h[7].Err == "" {
		t.Fatalf("history: %d samples, first %s", len(h), h[0].At)
	}

	if _, err := NewExposureMeter("x", ExposureConfig{}, nil); err == nil {
		t.Fatal("empty config: no error")
	}
}

func TestPostgresLagSamplerPrimaryAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	p := pgtest.StartPrimary(t, pgtest.Name("west"))
	m, err := NewExposureMeter("shop-shop-db", DefaultExposureConfig(), PostgresLagSampler(p.DSN("postgres"), "", 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s := m.SampleOnce(context.Background())
	if s.Streaming || !strings.Contains(s.Err, "no standby") {
		t.Fatalf("primary alone: sample %+v, want not streaming, no standby", s)
	}
	if e := m.Exposure(); e.Bounded || e.WindowBounded || !strings.Contains(e.Reason, "no standby") {
		t.Fatalf("primary alone: exposure %+v, want unbounded", e)
	}
}

func TestPostgresLagSampler(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := pgtest.StartPrimary(t, pgtest.Name("west"))
	sb := pgtest.StartStandby(t, p, pgtest.Name("east"))
	sample := PostgresLagSampler(p.DSN("postgres"), "east", 5*time.Second)

	// Pointed at the standby: an error that says so.
	if _, err := PostgresLagSampler(sb.DSN("postgres"), "east", 5*time.Second)(ctx); err == nil || !strings.Contains(err.Error(), "is a standby") {
		t.Fatalf("sampler on the standby: %v, want an error saying it is a standby", err)
	}
	// Another name: not connected.
	if s, err := PostgresLagSampler(p.DSN("postgres"), "north", 5*time.Second)(ctx); err != nil || s.Streaming || !strings.Contains(s.Err, "north is not connected") {
		t.Fatalf("unknown standby: %+v, %v", s, err)
	}

	pc, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if _, err := pc.Exec(ctx, "CREATE TABLE orders (id serial primary key, body text)"); err != nil {
		t.Fatal(err)
	}
	var last LagSample
	probeWaitFor(t, "east streaming and caught up", func() bool {
		s, err := sample(ctx)
		last = s
		return err == nil && s.Streaming && s.LagBytes == 0 && s.LagTime == 0
	})
	if last.Standby != "east" || last.State != "streaming" || last.Err != "" {
		t.Fatalf("caught-up sample %+v", last)
	}

	// Stop the standby's WAL receiver (SIGSTOP): it stays connected, the
	// primary goes on writing, nothing more is flushed. The sampler's own
	// bound makes the lag grow although flush_lag is frozen.
	var pid int32
	sc, err := pgx.Connect(ctx, sb.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	err = sc.QueryRow(ctx, "SELECT pid FROM pg_stat_wal_receiver").Scan(&pid)
	sc.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(int(pid), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := func() { _ = syscall.Kill(int(pid), syscall.SIGCONT) }
	defer cont()
	probeWaitFor(t, "the WAL receiver stopped", func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// Field 3, after "(comm)", is the state; T is stopped.
		i := strings.LastIndexByte(string(stat), ')')
		return err == nil && i > 0 && strings.HasPrefix(string(stat[i+1:]), " T")
	})
	if _, err := pc.Exec(ctx, "INSERT INTO orders (body) SELECT repeat('x', 100) FROM generate_series(1, 1000)"); err != nil {
		t.Fatal(err)
	}
	first, err := sample(ctx)
	if err != nil || first.LagBytes == 0 {
		t.Fatalf("after writes with the receiver stopped: %+v, %v; want lag bytes", first, err)
	}
	var second LagSample
	probeWaitFor(t, "a later sample", func() bool {
		second, err = sample(ctx)
		return err == nil && second.At.After(first.At)
	})
	if second.LagBytes < first.LagBytes || second.LagTime < second.At.Sub(first.At) {
		t.Fatalf("stuck standby: first %+v, second %+v: want the lag time to cover the time between them", first, second)
	}
	t.Logf("stuck standby: %d bytes, lag %s (flush_lag frozen)", second.LagBytes, second.LagTime)
	cont()
	probeWaitFor(t, "east caught up again", func() bool {
		s, err := sample(ctx)
		return err == nil && s.Streaming && s.LagBytes == 0
	})

	// Measured under a steady writer: what the lag looks like on loopback.
	m, err := NewExposureMeter("shop-shop-db", DefaultExposureConfig(), sample)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := pc.Exec(ctx, "INSERT INTO orders (body) SELECT repeat('y', 100) FROM generate_series(1, 200)"); err != nil {
			t.Fatal(err)
		}
		m.SampleOnce(ctx)
	}
	e := m.Exposure()
	t.Logf("steady writer on loopback: now %d bytes %s; worst over %d samples %d bytes %s", e.LagBytes, e.LagTime, e.Samples, e.MaxLagBytes, e.MaxLagTime)
	if !e.WindowBounded {
		t.Fatalf("streaming all along, but window unbounded: %+v", e)
	}

	// The standby goes away: unbounded, never 0.
	sb.Kill(t)
	probeWaitFor(t, "east gone from pg_stat_replication", func() bool {
		s := m.SampleOnce(ctx)
		return !s.Streaming
	})
	if e := m.Exposure(); e.Bounded || e.WindowBounded {
		t.Fatalf("standby killed: %+v, want unbounded", e)
	}

	// The primary goes away: the sample fails, the exposure is unknown.
	p.Kill(t)
	s := m.SampleOnce(ctx)
	if s.Err == "" || !strings.Contains(s.Err, "cannot reach the primary") {
		t.Fatalf("primary killed: %+v", s)
	}
	if e := m.Exposure(); e.Bounded {
		t.Fatalf("primary killed: %+v, want unbounded", e)
	}
}
