package main

import (
	"github.com/spf13/cobra"
)

func (a *app) unitsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "units",
		Short: "The unit registry: provisioned units, their resources, quadrants and purpose",
		Long: `List the provisioned deployment units and their resources, named
<service>-<unit>-<component>-<region>, with each one's quadrant (region role
× resource group: primary/permanent, secondary/permanent, secondary/failover)
and the unit's purpose (prod, drill, staging).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			if a.json() {
				type entry struct {
					Name, Unit, Component, Kind, Region, Quadrant, Purpose, State string
					Epoch                                                         uint64
				}
				var out []entry
				for _, r := range s.state.SortedResources() {
					out = append(out, entry{r.Name, r.Unit, r.Component, string(r.Kind), r.Region, r.Quadrant(s.spec), string(r.Purpose), describe(r), r.Epoch})
				}
				return a.printJSON(out)
			}
			a.printResources(s.spec, s.state, true)
			return nil
		},
	}
}
