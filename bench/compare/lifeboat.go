package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/lab"
)

// lifeboatSetups: the lab with a controller per region in automatic mode
// (probes every 250 ms, down after 3 failures, 2 s lease), async
// replication (the default) and, if asked, sync.
func lifeboatSetups(binary string, withSync bool) []setup {
	out := []setup{{system: "lifeboat", name: "Lifeboat (lab)", setting: "automatic, probes 250ms×3, lease 2s, async",
		round: func(ctx context.Context, dir, f string) (result, error) {
			return lifeboatRound(ctx, dir, f, binary, "async")
		}}}
	if withSync {
		out = append(out, setup{system: "lifeboat", name: "Lifeboat (lab)", setting: "automatic, probes 250ms×3, lease 2s, sync",
			round: func(ctx context.Context, dir, f string) (result, error) {
				return lifeboatRound(ctx, dir, f, binary, "sync")
			}})
	}
	return out
}

func lifeboatRound(ctx context.Context, dir, fault, binary, replication string) (result, error) {
	if os.Geteuid() != 0 {
		return result{}, notRun{"the monitored lab puts each region in a network namespace, which needs root"}
	}
	bin, err := filepath.Abs(binary)
	if err != nil {
		return result{}, err
	}
	if _, err := os.Stat(bin); err != nil {
		return result{}, notRun{fmt.Sprintf("no lifeboat program at %s: run 'make build' or pass -binary", bin)}
	}
	o := lab.DefaultOptions()
	o.Dir, o.Monitor, o.Binary, o.Replication = filepath.Join(dir, "lab"), string(lifeboat.MonitorAutomatic), bin, replication
	if _, err := lab.Up(ctx, o); err != nil {
		return result{}, fmt.Errorf("lab up in %s: %w", o.Dir, err)
	}
	defer func() { _, _ = lab.Down(context.WithoutCancel(ctx), o.Dir) }()
	// Settled: west active, three controllers publishing, in quorum, one leader.
	steady := func() bool {
		st, err := lab.LabStatus(ctx, o.Dir)
		return err == nil && st.Active == lab.West && st.Settled() == nil
	}
	if err := waitFor(ctx, time.Minute, "the lab's controllers settling (west active, quorum, one leader)", steady); err != nil {
		return result{}, err
	}
	// As bench/monitor.go: a few healthy rounds published, and time for
	// the witness's controller to take etcd's raft leadership.
	time.Sleep(3 * time.Second)

	out := filepath.Join(dir, "load.jsonl")
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan error, 1)
	go func() {
		lo := lab.DefaultLoadOptions()
		lo.Dir, lo.Out, lo.Rate, lo.Timeout, lo.Progress = o.Dir, out, 1/writeEvery.Seconds(), writeTimeout, nil
		_, err := lab.Load(lctx, lo)
		loadDone <- err
	}()
	var loadErr error
	var halted sync.Once
	halt := func() error {
		halted.Do(func() { stopLoad(); loadErr = <-loadDone })
		return loadErr
	}
	defer halt()
	acked := func(since time.Time) (time.Duration, bool) {
		as, err := lab.ReadAttempts(out)
		if err != nil {
			return 0, false
		}
		for _, a := range as {
			if a.OK && !a.At.Before(since) {
				return a.At.Sub(since), true
			}
		}
		return 0, false
	}
	start := time.Now()
	if err := waitFor(ctx, 10*time.Second, "the load's first acknowledged order", func() bool { _, ok := acked(start); return ok }); err != nil {
		return result{}, err
	}
	time.Sleep(time.Second)

	var at time.Time
	switch fault {
	case faultKill:
		st, err := lab.LabStatus(ctx, o.Dir)
		if err != nil {
			return result{}, err
		}
		pid := 0
		for _, d := range st.Databases {
			if d.Region == lab.West && d.Role == "primary" && d.Running {
				pid = d.PID
			}
		}
		if pid <= 0 {
			return result{}, errors.New("west's PostgreSQL is not a running primary with a PID in the lab's status: cannot kill its postmaster")
		}
		at = time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return result{}, fmt.Errorf("SIGKILL of west's postmaster (PID %d): %w", pid, err)
		}
	case faultPartition:
		at = time.Now()
		if _, err := lab.Fault(ctx, o.Dir, lab.FaultRequest{Kind: lab.FaultIsolate, Region: lab.West}); err != nil {
			return result{}, fmt.Errorf("isolating west: %w", err)
		}
	}
	var rto time.Duration
	if err := waitFor(ctx, 2*time.Minute, "an order acknowledged after the fault", func() bool {
		d, ok := acked(at)
		rto = d
		return ok
	}); err != nil {
		return result{}, err
	}
	// Let the failover's run finish (east active, no run), then a second of writes on the new primary.
	_ = waitFor(ctx, time.Minute, "the automatic failover finishing", func() bool {
		st, err := lab.LabStatus(ctx, o.Dir)
		return err == nil && st.Active == lab.East && st.Run == ""
	})
	time.Sleep(time.Second)
	if err := halt(); err != nil {
		return result{}, fmt.Errorf("the load: %w", err)
	}
	// Acked time is the answer's: add the round trip of that first order.
	if as, err := lab.ReadAttempts(out); err == nil {
		for _, a := range as {
			if a.OK && !a.At.Before(at) {
				rto = a.At.Add(a.Took).Sub(at)
				break
			}
		}
	}
	rep, err := lab.Check(ctx, lab.CheckOptions{Dir: o.Dir, In: out, Slack: 50 * time.Millisecond})
	if err != nil {
		return result{}, fmt.Errorf("checking the acknowledged orders: %w", err)
	}
	res := result{rto: rto, lost: len(rep.Lost()), acked: rep.Acknowledged}
	if q := len(rep.Missing) - len(rep.Lost()); q > 0 {
		res.note = fmt.Sprintf("%d kept in quarantine", q)
	}
	return res, nil
}
