package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/status"
	"github.com/spf13/cobra"
)

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Where the service runs now: active region, epoch, run in progress, every resource",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := a.open(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			var run *lifeboat.Run
			var recs []lifeboat.Record
			if s.state.Run != "" {
				if run, err = s.store.Run(ctx, s.state.Run); err != nil {
					return err
				}
				if recs, err = s.store.Journal(ctx, run.ID); err != nil {
					return err
				}
			}
			rs := routes(ctx, s.spec, s.state)
			ctrls, cerr := controllers(ctx, s)
			checks := readiness(ctx, s, ctrls)
			if a.json() {
				return a.printJSON(map[string]any{"state": s.state, "run": run, "traffic": rs, "readiness": checks, "controllers": ctrls})
			}
			st, spec := s.state, s.spec
			home := ""
			if st.Active == spec.Regions.Primary.Name {
				home = a.paint(green, " (home)")
			} else {
				home = a.paint(yellow, " (away from home, "+spec.Regions.Primary.Name+")")
			}
			fmt.Fprintf(a.out, "%s  active in %s%s since %s (%s) · epoch %d\n",
				a.paint(bold, spec.Service), a.paint(bold, st.Active), home, stamp(st.Since), since(st.Since), st.Epoch)
			if run != nil {
				v := status.Run(ctx, s.store, run, recs)
				fmt.Fprintf(a.out, "%s run %s: %s %s → %s is %s, %d of %d steps done; 'lifeboat resume' or 'lifeboat cancel'\n",
					a.paint(yellow, "!"), run.ID, run.Plan.Intent, run.Plan.From, run.Plan.To, v.Status, v.Done, v.Total)
				for _, w := range v.Waiting {
					fmt.Fprintf(a.out, "  waits for approval of %q: %s\n  when a person agrees: lifeboat resume --approve %q\n", w.Step, w.Question, w.Step)
				}
			}
			fmt.Fprintln(a.out)
			a.printTraffic(rs)
			fmt.Fprintln(a.out)
			a.printResources(spec, st, false)
			fmt.Fprintln(a.out)
			a.printReadiness(checks)
			if ctrls != nil || cerr != nil {
				fmt.Fprintln(a.out)
				a.printControllers(spec, st, ctrls, cerr)
			}
			return nil
		},
	}
}

// nameRoute is where one public name goes now (package status builds it).
type nameRoute = status.Route

// routes asks the traffic driver what each public name resolves to now.
func routes(ctx context.Context, spec *lifeboat.Spec, st *lifeboat.State) []nameRoute {
	return status.Routes(ctx, spec, st)
}

func (a *app) printTraffic(rs []nameRoute) {
	w := a.table()
	fmt.Fprintln(w, "NAME\tROUTES TO\tRESOLVES TO\tTTL\tSINCE\tEPOCH")
	var failed []string
	for _, r := range rs {
		answers := "-"
		if len(r.Answers) > 0 {
			answers = strings.Join(r.Answers, " ")
		}
		region := r.Region
		if !r.Live {
			region += " (recorded)"
			if r.Error != "" {
				failed = append(failed, r.Name+": "+r.Error)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", r.Name, region, answers, r.TTL, stamp(r.Since), r.Epoch)
	}
	w.Flush()
	for _, f := range failed {
		fmt.Fprintln(a.out, a.paint(yellow, "  the traffic driver did not answer for ")+truncate(f, 200))
	}
}

// printResources prints the resources, unit by unit, with their quadrant.
func (a *app) printResources(spec *lifeboat.Spec, st *lifeboat.State, withPurpose bool) {
	w := a.table()
	head := "RESOURCE\tKIND\tREGION\tQUADRANT\tSTATE\tEPOCH"
	if withPurpose {
		head = "UNIT\tPURPOSE\t" + head
	}
	fmt.Fprintln(w, head)
	for _, r := range st.SortedResources() {
		region := r.Region
		if r.Kind == lifeboat.KindTraffic {
			region = "all"
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d", r.Name, r.Kind, region, r.Quadrant(spec), describe(r), r.Epoch)
		if withPurpose {
			row = r.Unit + "\t" + string(r.Purpose) + "\t" + row
		}
		fmt.Fprintln(w, row)
	}
	w.Flush()
}

// describe says in a few words what a resource is doing.
func describe(r *lifeboat.Resource) string { return status.Describe(r) }
