package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/drill"
	"github.com/lifeboat-dr/lifeboat/drill/testfailover"
	"github.com/spf13/cobra"
)

func (a *app) drillCommand() *cobra.Command {
	o := drill.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "drill --scenario " + strings.Join(drill.Scenarios, "|") + "|" + testfailover.Scenario,
		Short: "Drill a fault in the lab under load and measure the RTO and RPO",
		Long: `Run a drill in the lab: clients write uniquely identified orders through
the front door while the scenario's fault is injected at a known instant
and Lifeboat acts (the lab's controllers on their own with
'lab up --monitor automatic', otherwise the drill runs the failover, as a
person would). Then every acknowledged order is checked on the primary.

It measures the RTO (fault → each client's first acknowledged write after
it: p50, p99, max), the RPO (acknowledged orders lost, their time window,
set against the replication lag sampled at the fault), and records the
plan's steps from the journal. The report is written as JSON and as one
self-contained HTML page under <lab>/drills, and summarised here.

Scenarios: ` + strings.Join(drill.Scenarios, ", ") + `.

test-failover (as Azure Site Recovery has it) runs no load and injects no
fault: it stands up an isolated drill unit in the secondary region (a copy
of the database from a snapshot of the standby, started as a primary of
its own, and one instance of the compute pointing at it), checks that it
takes writes and answers, measures how long it took to stand up (the RTO
it proves) and how fresh its data is (the RPO a failover would have had),
checks that production's replication and routes were not touched, and
deletes the unit, always (also on failure or Ctrl-C).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			start := time.Now()
			o.Progress = func(s string) {
				if !a.json() {
					fmt.Fprintf(a.err, "%s  %s\n", a.paint(dim, fmt.Sprintf("%6.1fs", time.Since(start).Seconds())), s)
				}
			}
			if o.Scenario == testfailover.Scenario {
				return a.testFailover(ctx, o)
			}
			res, err := drill.Run(ctx, o)
			if err != nil {
				return exit(exitFailed, "%v", err)
			}
			if a.json() {
				return a.printJSON(res.Report)
			}
			fmt.Fprintln(a.out)
			if err := res.Report.Summary(a.out, a.tty && os.Getenv("NO_COLOR") == ""); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "\nreport: %s\n        %s\n", res.HTML, res.JSON)
			if !res.Report.OK() {
				return &exitError{code: exitFailed, err: errShown}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", o.Dir, "the lab's directory")
	f.StringVar(&o.Scenario, "scenario", o.Scenario, "what to drill: "+strings.Join(drill.Scenarios, ", ")+", "+testfailover.Scenario)
	f.DurationVar(&o.Duration, "duration", o.Duration, "how long the load runs in all")
	f.DurationVar(&o.Warmup, "warmup", o.Warmup, "load before the fault")
	f.IntVar(&o.Clients, "clients", o.Clients, "clients writing side by side")
	f.IntVar(&o.Registers, "registers", o.Registers, "clients of the register workload, checked for linearizability (0: none)")
	f.DurationVar(&o.ReplicationDelay, "replication-delay", 0, "delay each way on the replication link before the load (region-outage, partition): an async standby then lags, and the loss is set against the lag")
	f.StringVar(&o.Out, "out", "", "where the report goes (default <lab>/drills)")
	return cmd
}

// testFailover runs the test-failover scenario: its own runner and report
// (no load, no fault), with the drill command's directory, output and
// progress.
func (a *app) testFailover(ctx context.Context, do drill.Options) error {
	o := testfailover.DefaultOptions()
	o.Dir, o.Out, o.Progress = do.Dir, do.Out, do.Progress
	res, err := testfailover.Run(ctx, o)
	if err != nil {
		return exit(exitFailed, "%v", err)
	}
	if a.json() {
		return a.printJSON(res.Report)
	}
	fmt.Fprintln(a.out)
	if err := res.Report.Summary(a.out, a.tty && os.Getenv("NO_COLOR") == ""); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "\nreport: %s\n        %s\n", res.HTML, res.JSON)
	if !res.Report.OK() {
		return &exitError{code: exitFailed, err: errShown}
	}
	return nil
}
