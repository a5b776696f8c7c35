package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/status"
	"github.com/spf13/cobra"
)

func (a *app) statusCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Where the service runs now: active region, epoch, run in progress, every resource",
		Long: `Where the service runs now. When the spec has an api section and a
controller answers, status asks it through the API (token from
$LIFEBOAT_TOKEN or --token-file), so it shows what the dashboard shows;
otherwise it reads the state store directly.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, v, err := a.statusView(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				var run *lifeboat.Run
				if v.Run != nil {
					run = v.Run.Run
				}
				out := map[string]any{"state": v.State, "run": run, "traffic": v.Traffic, "readiness": v.Readiness, "controllers": v.Controllers}
				if v.Tenants != nil {
					out["tenants"] = v.Tenants
				}
				return a.printJSON(out)
			}
			a.printView(spec, v)
			return nil
		},
	}
	a.apiFlags(cmd)
	return cmd
}

// printView prints a status view, whether the API or the store gave it.
func (a *app) printView(spec *lifeboat.Spec, v *status.View) {
	st := v.State
	home := ""
	if !v.Away {
		home = a.paint(green, " (home)")
	} else {
		home = a.paint(yellow, " (away from home, "+v.Home+")")
	}
	fmt.Fprintf(a.out, "%s  active in %s%s since %s (%s) · epoch %d\n",
		a.paint(bold, v.Service), a.paint(bold, v.Active), home, stamp(v.Since), since(v.Since), v.Epoch)
	if rv := v.Run; rv != nil && rv.Run != nil {
		run := rv.Run
		fmt.Fprintf(a.out, "%s run %s: %s %s → %s is %s, %d of %d steps done; 'lifeboat resume' or 'lifeboat cancel'\n",
			a.paint(yellow, "!"), run.ID, run.Plan.Intent, run.Plan.From, run.Plan.To, rv.Status, rv.Done, rv.Total)
		for _, w := range rv.Waiting {
			fmt.Fprintf(a.out, "  waits for approval of %q: %s\n  when a person agrees: lifeboat resume --approve %q\n", w.Step, w.Question, w.Step)
		}
	}
	fmt.Fprintln(a.out)
	a.printTraffic(v.Traffic)
	fmt.Fprintln(a.out)
	if st != nil {
		a.printResources(spec, st, false)
		fmt.Fprintln(a.out)
	}
	a.printReadiness(v.Readiness)
	if v.Tenants != nil {
		fmt.Fprintln(a.out)
		a.printTenants(v.Tenants)
	}
	// Controllers publish only where the store is shared; decided from the
	// spec so that an empty map (none publishing) shows the same whether
	// it came through JSON or not.
	if len(spec.Store.Members) > 0 || len(spec.Store.Endpoints) > 0 || v.ControllersError != "" {
		var cerr error
		if v.ControllersError != "" {
			cerr = errors.New(v.ControllersError)
		}
		fmt.Fprintln(a.out)
		a.printControllers(spec, st, v.Controllers, cerr)
	}
}

// printTenants prints how many tenants are in each state, by tier, and
// what a tenants' recovery in progress waits for.
func (a *app) printTenants(t *status.TenantsView) {
	if t.Error != "" {
		fmt.Fprintln(a.out, a.paint(yellow, "tenants: ")+truncate(t.Error, 200))
		return
	}
	states := []lifeboat.TenantState{lifeboat.TenantAvailable, lifeboat.TenantQueued, lifeboat.TenantRestoring, lifeboat.TenantReadOnly, lifeboat.TenantFailed}
	known := map[lifeboat.TenantState]bool{}
	for _, s := range states {
		known[s] = true
	}
	var other []string
	for s := range t.Counts {
		if !known[s] {
			other = append(other, string(s))
		}
	}
	sort.Strings(other)
	for _, s := range other {
		states = append(states, lifeboat.TenantState(s))
	}
	w := a.table()
	head := "TENANTS\tTOTAL"
	for _, s := range states {
		head += "\t" + strings.ToUpper(string(s))
	}
	fmt.Fprintln(w, head)
	row := func(name string, counts map[lifeboat.TenantState]int) {
		total := 0
		for _, n := range counts {
			total += n
		}
		line := fmt.Sprintf("%s\t%d", name, total)
		for _, s := range states {
			n := counts[s]
			cell := fmt.Sprint(n)
			switch {
			case n > 0 && s == lifeboat.TenantFailed:
				cell = a.paint(red, cell)
			case n > 0 && s != lifeboat.TenantAvailable:
				cell = a.paint(yellow, cell)
			}
			line += "\t" + cell
		}
		fmt.Fprintln(w, line)
	}
	for _, tier := range lifeboat.SortedKeys(t.ByTier) {
		row("tier "+tier, t.ByTier[tier])
	}
	row("all", t.Counts)
	w.Flush()
	if t.Recovery != "" {
		fmt.Fprintln(a.out, a.paint(yellow, "  recovery waits for: ")+truncate(t.Recovery, 200))
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
