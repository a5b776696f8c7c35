package main

import (
	"fmt"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
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
			if a.json() {
				return a.printJSON(map[string]any{"state": s.state, "run": run})
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
				done, total := 0, len(run.Plan.Steps)
				for _, r := range recs {
					if r.Kind == lifeboat.RecDone || r.Kind == lifeboat.RecSkipped {
						done++
					}
				}
				status := string(run.Status)
				if run.Status == lifeboat.RunRunning {
					// Nobody owns a run whose process died: say so.
					if release, err := s.store.Own(ctx, run.ID); err == nil {
						release()
						status = "interrupted (no lifeboat process is running it)"
					}
				}
				fmt.Fprintf(a.out, "%s run %s: %s %s → %s is %s, %d of %d steps done; 'lifeboat resume' or 'lifeboat cancel'\n",
					a.paint(yellow, "!"), run.ID, run.Plan.Intent, run.Plan.From, run.Plan.To, status, done, total)
				waiting := map[string]bool{}
				for _, r := range recs {
					switch r.Kind {
					case lifeboat.RecWaiting:
						waiting[r.Step] = true
					case lifeboat.RecApproved, lifeboat.RecDone, lifeboat.RecFailed, lifeboat.RecCancelled:
						delete(waiting, r.Step)
					}
				}
				for _, id := range lifeboat.SortedKeys(waiting) {
					if st := run.Plan.Step(id); st != nil {
						fmt.Fprintf(a.out, "  waits for approval of %q: %s\n  when a person agrees: lifeboat resume --approve %q\n", id, st.Approval, id)
					}
				}
			}
			fmt.Fprintln(a.out)
			a.printTraffic(spec, st)
			fmt.Fprintln(a.out)
			a.printResources(spec, st, false)
			return nil
		},
	}
}

func (a *app) printTraffic(spec *lifeboat.Spec, st *lifeboat.State) {
	w := a.table()
	fmt.Fprintln(w, "NAME\tROUTES TO\tTTL\tSINCE\tEPOCH")
	for _, un := range spec.UnitNames() {
		u := spec.Units[un]
		for _, tn := range lifeboat.SortedKeys(u.Traffic) {
			t := u.Traffic[tn]
			r := st.Resources[lifeboat.TrafficName(spec.Service, un, tn)]
			if r == nil {
				continue
			}
			for _, name := range t.Names {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\n", name, r.Routes, lifeboat.FormatDuration(t.TTLOrDefault()), stamp(r.Since), r.Epoch)
			}
		}
	}
	w.Flush()
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
func describe(r *lifeboat.Resource) string {
	if !r.Exists {
		return "absent"
	}
	switch r.Kind {
	case lifeboat.KindCompute:
		return fmt.Sprintf("%d instance(s)", r.Instances)
	case lifeboat.KindDatabase:
		return string(r.Role)
	case lifeboat.KindTraffic:
		return "→ " + r.Routes
	}
	return strings.TrimSpace(string(r.Kind))
}
