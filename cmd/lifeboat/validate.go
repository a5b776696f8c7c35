package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) validateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check the spec: every problem at once, with file:line:column",
		Long: `Check the spec and print every problem at once, each with its
file:line:column, the field, what is wrong and how to fix it.
Exits 2 when there are errors; warnings alone exit 0.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, diags, err := a.loadSpec()
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(map[string]any{"valid": true, "diagnostics": diags})
			}
			a.printDiagnostics(diags)
			comps := 0
			for _, u := range spec.Units {
				comps += len(u.Compute) + len(u.Databases) + len(u.Traffic)
			}
			regions := 2
			if spec.Regions.Witness != nil {
				regions = 3
			}
			fmt.Fprintf(a.out, "%s %s is valid: service %s, %d unit(s), %d component(s), %d region(s)",
				a.paint(green, "✓"), a.specPath, spec.Service, len(spec.Units), comps, regions)
			if n := diags.Warnings(); n > 0 {
				fmt.Fprintf(a.out, ", %s", a.paint(yellow, fmt.Sprintf("%d warning(s)", n)))
			}
			fmt.Fprintln(a.out)
			return nil
		},
	}
}
