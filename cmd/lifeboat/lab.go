package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

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

	up := &cobra.Command{
		Use:   "up",
		Short: "Start the lab (or say it already runs) and show what is where",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := lab.DefaultOptions()
			o.Dir = dir
			in, err := lab.Up(cmd.Context(), o)
			if err != nil {
				return exit(exitFailed, "%v", err)
			}
			return a.printLab(cmd.Context(), in)
		},
	}

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
		Short: "Inject a fault: region-down|region-hang REGION, partition, latency --latency D, heal",
		Args: args(func(cmd *cobra.Command, as []string) error {
			if len(as) < 1 || len(as) > 2 {
				return fmt.Errorf("want KIND and, for region-down and region-hang, a REGION")
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
	cmd.AddCommand(up, down, status, fault, serve, shop)
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
		} else if d.Fenced {
			role += " (fenced)"
		}
		if d.PID != 0 {
			pid = fmt.Sprint(d.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%dB\n", d.Resource, d.Addr, pid, role, d.Timeline, dash(d.ReplicationState), d.LagBytes)
	}
	tw.Flush()
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
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
