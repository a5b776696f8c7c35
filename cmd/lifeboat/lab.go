package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/lab"
	"github.com/spf13/cobra"
)

// labCommand is 'lifeboat lab': a two-region lab on this machine.
func (a *app) labCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a real two-region lab on this machine (PostgreSQL, the shop, WAN links)",
		Long: `lab runs the service for real on this machine: west (primary) with a
PostgreSQL primary and the shop, east (secondary) with a streaming standby,
central (witness), WAN links between them that faults can cut, and a front
door at the service's public address. It writes DIR/lifeboat.yaml, so that

  lifeboat lab up
  lifeboat lab fault region-down west
  lifeboat -f lab/lifeboat.yaml failover

moves the shop to east for real.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", "lab", "the lab's directory")

	var replication, monitorMode string
	var degradeAfter time.Duration
	var tenants, tenantScenario int
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the lab (or say it already runs) and show what is where",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := lab.DefaultOptions()
			o.Dir = dir
			o.Replication, o.DegradeAfter = replication, degradeAfter
			o.Monitor = monitorMode
			o.Tenants, o.TenantScenario = tenants, tenantScenario
			in, err := lab.Up(cmd.Context(), o)
			if err != nil {
				return exit(exitFailed, "%v", err)
			}
			return a.printLab(cmd.Context(), in)
		},
	}

	up.Flags().StringVar(&replication, "replication", "async", "replication of the orders database when the lab is laid out: async or sync")
	up.Flags().StringVar(&monitorMode, "monitor", "", "run a controller per region ('lifeboat serve --region R', in network namespaces; needs root) in this mode: manual, notify or automatic; unset: no controllers")
	up.Flags().IntVar(&tenants, "tenants", 0, "add N tenants when the lab is laid out (seed 004): a catalog, paid pools in west and east, a trial pool, and the tenants' PostgreSQL gate; 0: no tenants")
	up.Flags().IntVar(&tenantScenario, "tenant-scenario", 0, "with --tenants: 1 is seed 004's scenario 1 (every tenant on the trial tier, geo-restored; only the catalog geo-replicated); unset: scenarios 2 and 3 (half paid, geo-replicated and split between west and east; half trial)")
	up.Flags().DurationVar(&degradeAfter, "degrade-after", 0, "sync only: stop waiting for a missing standby after this long (0: strict, writes wait)")

	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the lab and everything it started",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := lab.Down(cmd.Context(), dir)
			if a.json() && rep != nil {
				_ = a.printJSON(rep)
			} else if rep != nil {
				if rep.PID != 0 {
					fmt.Fprintf(a.out, "lab daemon (PID %d) stopped in %s\n", rep.PID, rep.Took.Round(time.Millisecond))
				} else {
					fmt.Fprintln(a.out, "the lab daemon was not running")
				}
				for _, l := range rep.Leftovers {
					fmt.Fprintf(a.out, "%s killed leftover PID %d: %s\n", a.paint(yellow, "!"), l.PID, l.What)
				}
			}
			if err != nil {
				return exit(exitFailed, "%v", err)
			}
			if !a.json() {
				fmt.Fprintln(a.out, a.paint(green, "✓")+" no process of the lab and no port of its blocks left")
			}
			return nil
		},
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's links and their faults, PostgreSQL roles and shop instances",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := lab.LabStatus(cmd.Context(), dir)
			if err != nil {
				return exit(exitFailed, "%v", err)
			}
			if a.json() {
				return a.printJSON(st)
			}
			a.printLabStatus(st)
			return nil
		},
	}

	var latency string
	fault := &cobra.Command{
		Use:   "fault KIND [REGION]",
		Short: "Inject a fault: region-down|region-hang|isolate REGION, partition, latency --latency D, heal",
		Long: `fault injects a fault into the running lab:

  region-down REGION   the region's links down, its PostgreSQL killed, its shop stopped
                       (--monitor: its namespace isolated too, controller included)
  region-hang REGION   the region's links pass nothing
  partition            west and east cannot reach each other (--monitor: their
                       namespaces are cut too; central still reaches both)
  isolate REGION       --monitor only: the region's links down and its namespace cut
                       from every other region's; its controller still reaches its
                       own databases, to fence them
  latency              delay on the links between west and east (--latency)
  heal                 everything back; what region-down stopped is started again`,
		Args: args(func(cmd *cobra.Command, as []string) error {
			if len(as) < 1 || len(as) > 2 {
				return fmt.Errorf("want KIND and, for region-down, region-hang and isolate, a REGION")
			}
			return nil
		}),
		RunE: func(cmd *cobra.Command, as []string) error {
			req := lab.FaultRequest{Kind: as[0], Latency: latency}
			if len(as) == 2 {
				req.Region = as[1]
			}
			res, err := lab.Fault(cmd.Context(), dir, req)
			if err != nil {
				return exit(exitFailed, "%v", err)
			}
			if a.json() {
				return a.printJSON(res)
			}
			for _, d := range res.Done {
				fmt.Fprintln(a.out, d)
			}
			return nil
		},
	}
	fault.Flags().StringVar(&latency, "latency", "50ms", "one-way delay for latency")

	serve := &cobra.Command{
		Use:    "serve",
		Short:  "Run the lab daemon (lab up starts it)",
		Hidden: true,
		Args:   args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return lab.Serve(ctx, dir)
		},
	}
	shop := &cobra.Command{
		Use:    "shop",
		Short:  "Run one shop instance from its environment (the lab's recipe)",
		Hidden: true,
		Args:   args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return lab.RunShop(ctx)
		},
	}
	cmd.AddCommand(up, down, status, fault, serve, shop, a.labLoadCommand(&dir), a.labCheckCommand(&dir))
	return cmd
}

func (a *app) printLab(ctx context.Context, in *lab.Info) error {
	st, _ := lab.LabStatus(ctx, in.Dir)
	if a.json() {
		return a.printJSON(map[string]any{"lab": in, "status": st})
	}
	if in.AlreadyRunning {
		fmt.Fprintf(a.out, "the lab in %s already runs (daemon PID %d)\n\n", in.Dir, in.PID)
	}
	tw := a.table()
	fmt.Fprintln(tw, "REGION\tROLE\tPOSTGRES\tSHOP INSTANCES\tINGRESS")
	for _, r := range in.Regions {
		shops := "-"
		if st != nil {
			for _, ss := range st.ScaleSets {
				if ss.Region == r.Name {
					var ps []string
					for _, i := range ss.Instances {
						ps = append(ps, fmt.Sprintf("127.0.0.1:%d", i.Port))
					}
					shops = fmt.Sprintf("%d", len(ss.Instances))
					if len(ps) > 0 {
						shops += " (" + strings.Join(ps, ", ") + ")"
					}
				}
			}
		}
		ingress := r.Ingress
		if r.Name == lab.Central {
			ingress = "front " + in.Front
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Role, dash(r.Postgres), shops, ingress)
	}
	tw.Flush()
	fmt.Fprintf(a.out, "\nfront (%s): http://%s\nagent:  %s\nspec:   %s\nlog:    %s/lab.log\n", lab.HostName, in.Front, in.URL, in.Spec, in.Dir)
	if in.API != nil {
		fmt.Fprintf(a.out, "dashboard: %s\ntokens: %s (operator, viewer; 0600)\n", in.API.Dashboard, in.API.Tokens)
	}
	if !in.AlreadyRunning {
		fmt.Fprintf(a.out, "%s lab ready in %s (daemon PID %d)\n", a.paint(green, "✓"), in.Ready.Round(time.Millisecond), in.PID)
	}
	return nil
}

func (a *app) printLabStatus(st *lab.Status) {
	state := a.paint(green, "ready")
	if !st.Ready {
		state = a.paint(yellow, st.Phase)
	}
	fmt.Fprintf(a.out, "lab: %s   front %s → %s (epoch %d)\n", state, st.Front.Addr, dash(st.Front.Region), st.Front.Epoch)
	if len(st.Down) > 0 {
		fmt.Fprintf(a.out, "regions down: %s\n", strings.Join(st.Down, ", "))
	}
	if st.Monitor != "" {
		run := ""
		if st.Run != "" {
			run = " · run " + st.Run + " in progress"
		}
		fmt.Fprintf(a.out, "monitor: %s · active %s at epoch %d%s\n", st.Monitor, dash(st.Active), st.Epoch, run)
		if len(st.NetFaults) > 0 {
			fmt.Fprintf(a.out, "network faults: %s\n", a.paint(yellow, strings.Join(st.NetFaults, ", ")))
		}
		fmt.Fprintln(a.out)
		tw := a.table()
		fmt.Fprintln(tw, "CONTROLLER\tPID\tALIVE\tQUORUM\tLEADER\tDECISION\tLOG")
		for _, c := range st.Controllers {
			pid, quorum, leader, decision := "-", "-", "", "-"
			if c.PID != 0 {
				pid = fmt.Sprint(c.PID)
			}
			if c.Published {
				quorum, decision = fmt.Sprint(c.Quorum), string(c.Decision.Action)
				if c.Leader {
					leader = "leader"
				}
				if c.Fenced {
					decision += " (fenced itself)"
				}
			} else if c.Alive {
				decision = "(nothing published: no quorum?)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\n", c.Region, pid, c.Alive, quorum, leader, decision, c.Log)
		}
		tw.Flush()
		for _, c := range st.Controllers {
			if c.Leader && len(c.Decision.Reasons) > 0 {
				fmt.Fprintf(a.out, "the leader (%s) decided %s:\n", c.Region, c.Decision.Action)
				for _, r := range c.Decision.Reasons {
					fmt.Fprintf(a.out, "  - %s\n", r)
				}
			}
		}
	}
	fmt.Fprintln(a.out)
	tw := a.table()
	fmt.Fprintln(tw, "LINK\tLISTEN\tUPSTREAM\tFAULT")
	for _, l := range st.Links {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.Name, l.Listen, l.Upstream, dash(l.Fault))
	}
	tw.Flush()
	fmt.Fprintln(a.out)
	tw = a.table()
	fmt.Fprintln(tw, "DATABASE\tADDRESS\tPID\tROLE\tTIMELINE\tREPLICATION\tLAG")
	for _, d := range st.Databases {
		role, pid := d.Role, "-"
		if d.Error != "" {
			role = "down"
		} else if d.Fenced && role != "fenced" {
			role += " (fenced)"
		}
		if d.PID != 0 {
			pid = fmt.Sprint(d.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%dB\n", d.Resource, d.Addr, pid, role, d.Timeline, dash(d.ReplicationState), d.LagBytes)
	}
	tw.Flush()
	fmt.Fprintf(a.out, "replication: %s\n", st.Replication)
	for _, e := range st.Exposures {
		end, took := "still degraded", time.Since(e.Start)
		if !e.End.IsZero() {
			end, took = e.End.Local().Format("15:04:05.000"), e.End.Sub(e.Start)
		}
		fmt.Fprintf(a.out, "  %s RPO exposure: %s stopped waiting for its standby %s → %s (%s): writes then were not on two copies\n",
			a.paint(yellow, "!"), e.Primary, e.Start.Local().Format("15:04:05.000"), end, lifeboat.FormatDuration(took))
	}
	fmt.Fprintln(a.out)
	tw = a.table()
	fmt.Fprintln(tw, "INSTANCE\tPORT\tPID\tHEALTHY\tRESTARTS")
	for _, ss := range st.ScaleSets {
		if len(ss.Instances) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\n", ss.Resource+" (0 instances)")
		}
		for _, i := range ss.Instances {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t%d\n", i.Name, i.Port, i.PID, i.Healthy, i.Restarts)
		}
	}
	tw.Flush()
	if ts := st.Tenants; ts != nil {
		fmt.Fprintf(a.out, "\ntenants' gate %s: %d connections accepted, %d held for a recovery, %d refused\n", ts.Gate, ts.Stats.Accepted, ts.Stats.Held, ts.Stats.Refused)
		if r := ts.Recovery; r != nil {
			mark := a.paint(yellow, "…")
			if r.Done {
				mark = a.paint(green, "✓")
			}
			fmt.Fprintf(a.out, "%s recovery %s\n", mark, strings.ReplaceAll(r.Text, "\n", "\n  "))
		}
		if fb := ts.Failback; fb != nil && (len(fb.Steps) > 0 || !fb.Done) { // a start with nothing to fail back is not news
			mark, state := a.paint(yellow, "…"), fmt.Sprintf("in progress (attempt %d)", fb.Attempts+1)
			if fb.Done {
				mark, state = a.paint(green, "✓"), "done"
			}
			fmt.Fprintf(a.out, "%s failback %s → %s at epoch %d: %s\n", mark, fb.From, fb.Home, fb.Epoch, state)
			for _, s := range fb.Steps {
				fmt.Fprintf(a.out, "  %s\n", s)
			}
			if fb.Error != "" && !fb.Done {
				fmt.Fprintf(a.out, "  %s %s\n", a.paint(yellow, "!"), fb.Error)
			}
		}
		if ts.Error != "" {
			fmt.Fprintf(a.out, "%s %s\n", a.paint(yellow, "!"), ts.Error)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// labLoadCommand is 'lifeboat lab load': orders through the front door at a
// steady rate, every attempt recorded for 'lab check'.
func (a *app) labLoadCommand(dir *string) *cobra.Command {
	o := lab.DefaultLoadOptions()
	var rate, out string
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Post orders through the lab's front door at a steady rate, recording every attempt",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := parseRate(rate)
			if err != nil {
				return exit(exitSpec, "--rate %q: %v (want e.g. 50/s)", rate, err)
			}
			o.Dir, o.Rate, o.Out = *dir, r, out
			if o.Out == "" {
				o.Out = filepath.Join(*dir, "load.jsonl")
			}
			o.Progress = func(p lab.LoadProgress) {
				line := fmt.Sprintf("%6.1fs  acknowledged %d  failed %d  region %s", p.Elapsed.Seconds(), p.Acknowledged, p.Failed, dash(p.Region))
				if p.Skipped > 0 {
					line += fmt.Sprintf("  skipped %d (all %d in flight)", p.Skipped, o.InFlight)
				}
				if p.LastError != "" {
					line += "  " + a.paint(yellow, "failing: "+p.LastError)
				}
				if a.tty {
					fmt.Fprintf(a.out, "\r\033[K%s", line)
				} else {
					fmt.Fprintln(a.out, line)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := lab.Load(ctx, o)
			if a.tty {
				fmt.Fprintln(a.out)
			}
			if err != nil {
				return exit(exitFailed, "%v", err)
			}
			if a.json() {
				return a.printJSON(rep)
			}
			fmt.Fprintf(a.out, "load done in %s: %d attempts, %d acknowledged, %d failed; attempts in %s\n",
				rep.Took.Round(time.Millisecond), rep.Attempts, rep.Acknowledged, rep.Failed, rep.Out)
			return nil
		},
	}
	cmd.Flags().StringVar(&rate, "rate", "50/s", "orders per second (a ceiling: never more)")
	cmd.Flags().DurationVar(&o.For, "for", 0, "stop after this long (0: until SIGINT or SIGTERM)")
	cmd.Flags().StringVar(&out, "out", "", "JSON-lines file each attempt is appended to (default DIR/load.jsonl)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "how long one order may take before it counts as failed")
	return cmd
}

// parseRate reads "50/s", "50", "3000/m".
func parseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(s, "/")
	r, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, err
	}
	switch unit {
	case "", "s":
	case "m":
		r /= 60
	default:
		return 0, fmt.Errorf("unit %q: use /s or /m", unit)
	}
	if r <= 0 {
		return 0, fmt.Errorf("want a positive rate")
	}
	return r, nil
}

// labCheckCommand is 'lifeboat lab check': is every acknowledged order of a
// load on the primary, or kept in quarantine?
func (a *app) labCheckCommand(dir *string) *cobra.Command {
	o := lab.DefaultCheckOptions()
	var in string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that every order a load saw acknowledged is on the primary (or quarantined), and show the write-unavailable windows",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Dir, o.In = *dir, in
			if o.In == "" {
				o.In = filepath.Join(*dir, "load.jsonl")
			}
			rep, err := lab.Check(cmd.Context(), o)
			if err != nil {
				return exit(exitFailed, "%v", err)
			}
			if a.json() {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				a.printCheck(rep)
			}
			if !rep.OK() {
				return &exitError{code: exitFailed, err: errShown}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "the load's JSON-lines output (default DIR/load.jsonl)")
	return cmd
}

func (a *app) printCheck(rep *lab.CheckReport) {
	fmt.Fprintf(a.out, "checked on %s: %d attempts\n", rep.Primary, rep.Attempts)
	fmt.Fprintf(a.out, "  acknowledged %d\n  present      %d\n  missing      %d\n", rep.Acknowledged, rep.Present, len(rep.Missing))
	shownQ, hiddenQ := 0, 0
	for _, m := range rep.Missing {
		// Every lost order is listed; quarantined ones only the first few
		// (-o json has them all).
		if m.Quarantine != "" {
			if shownQ >= 5 {
				hiddenQ++
				continue
			}
			shownQ++
		}
		what := a.paint(red, "LOST")
		switch {
		case m.Quarantine != "":
			what = fmt.Sprintf("quarantined, not lost: xid %d committed %s, in %s", m.XID, m.Committed.Format("15:04:05.000"), m.Quarantine)
		case m.Other != "":
			what += fmt.Sprintf(" (id %d now holds another order, %q)", m.ID, m.Other)
		}
		fmt.Fprintf(a.out, "    order %d (%s, acknowledged by %s at %s): %s\n", m.ID, m.Item, m.Region, m.At.Local().Format("15:04:05.000"), what)
	}
	if hiddenQ > 0 {
		fmt.Fprintf(a.out, "    … and %d more quarantined, not lost (all of them: lifeboat lab check -o json)\n", hiddenQ)
	}
	fmt.Fprintln(a.out)
	if len(rep.Windows) == 0 {
		fmt.Fprintln(a.out, "write-unavailable windows: none (every attempt was acknowledged)")
	} else {
		fmt.Fprintln(a.out, "write-unavailable windows (first failed attempt → first acknowledged one after it):")
		tw := a.table()
		fmt.Fprintln(tw, "  START\tEND\tDURATION\tFAILED\tREGION\tFIRST ERROR")
		for _, w := range rep.Windows {
			end, moved := w.End.Local().Format("15:04:05.000"), dash(w.From)+" → "+dash(w.To)
			if w.Open {
				end += " (still failing)"
				moved = dash(w.From) + " → ?"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", w.Start.Local().Format("15:04:05.000"), end, w.Duration.Round(time.Millisecond), w.Failed, moved, clip(w.Error, 70))
		}
		tw.Flush()
	}
	for _, q := range rep.Quarantines {
		fmt.Fprintf(a.out, "\nquarantine %s (%d transaction(s)):\n", q.Dir, q.Transactions)
		for _, l := range q.Summary {
			fmt.Fprintln(a.out, "  "+l)
		}
	}
	fmt.Fprintln(a.out)
	lost, quarantined := len(rep.Lost()), len(rep.Missing)-len(rep.Lost())
	switch {
	case lost > 0:
		fmt.Fprintf(a.out, "%s %d acknowledged order(s) LOST: on neither the primary nor in any quarantine\n", a.paint(red, "✗"), lost)
	case quarantined > 0:
		fmt.Fprintf(a.out, "%s no acknowledged order lost: %d present, %d quarantined, not lost (recover them from the quarantine dir)\n", a.paint(green, "✓"), rep.Present, quarantined)
	default:
		fmt.Fprintf(a.out, "%s zero lost writes: all %d acknowledged orders are on the primary\n", a.paint(green, "✓"), rep.Acknowledged)
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
