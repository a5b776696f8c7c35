package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/lab"
)

// syncDegradeAfter is how long the sync row's primary waits for a missing
// standby before it stops waiting (the spec's degrade-after). Strict sync
// (no degrade-after) cannot resume writes after a region is lost: the new
// primary's only possible synchronous standby is the region that was lost,
// so every commit waits until that region rejoins, by design (seed 002).
// Patroni's synchronous_mode and pg_auto_failover's two-node sync degrade
// the same way.
const syncDegradeAfter = time.Second

// lifeboatSetups: the lab with a controller per region in automatic mode
// (probes every 250 ms, down after 3 failures, 1 s lease), async
// replication (the default) and, if asked, sync with degrade-after.
func lifeboatSetups(binary string, withSync bool) []setup {
	out := []setup{{system: "lifeboat", name: "Lifeboat (lab)", setting: "automatic, probes 250ms×3, lease 1s, async",
		round: func(ctx context.Context, dir, f string) (result, error) {
			return lifeboatRound(ctx, dir, f, binary, "async", 0)
		}}}
	if withSync {
		out = append(out, setup{system: "lifeboat", name: "Lifeboat (lab)", setting: fmt.Sprintf("automatic, probes 250ms×3, lease 1s, sync, degrade-after %s", syncDegradeAfter),
			round: func(ctx context.Context, dir, f string) (result, error) {
				return lifeboatRound(ctx, dir, f, binary, "sync", syncDegradeAfter)
			}})
	}
	return out
}

func lifeboatRound(ctx context.Context, dir, fault, binary, replication string, degradeAfter time.Duration) (result, error) {
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
	o.Dir, o.Monitor, o.Binary, o.Replication, o.DegradeAfter = filepath.Join(dir, "lab"), string(lifeboat.MonitorAutomatic), bin, replication, degradeAfter
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
	// As the peers' (recovery): the first order acknowledged after the
	// fault and after the last failed one.
	acked := func(since time.Time, steady time.Duration) (time.Duration, bool) {
		as, err := lab.ReadAttempts(out)
		if err != nil {
			return 0, false
		}
		var ats []attempt
		for _, a := range as {
			ats = append(ats, attempt{sent: a.At, took: a.Took, ok: a.OK})
		}
		// Recorded as answered: in the order sent, for recovery.
		slices.SortStableFunc(ats, func(x, y attempt) int { return x.sent.Compare(y.sent) })
		return recovery(ats, since, steady)
	}
	start := time.Now()
	if err := waitFor(ctx, 10*time.Second, "the load's first acknowledged order", func() bool { _, ok := acked(start, 0); return ok }); err != nil {
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
	if err := waitFor(ctx, 2*time.Minute, "orders acknowledged again, for a second, after the fault", func() bool {
		_, ok := acked(at, time.Second)
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
	// Over every order, now that they are all in.
	rto, ok := acked(at, 0)
	if !ok {
		return result{}, errors.New("no order acknowledged after the last failed one: the load's record is incomplete")
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
