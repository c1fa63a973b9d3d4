package main

import "github.com/spf13/cobra"

func newPlanCmd() *cobra.Command {
	var cf convertFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "plan --key-file F [--header F] IMAGE",
		Short: "Unlock the volume and show what convert would write, without writing",
		Args:  usageArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			src, err := openSource(c.Context(), args[0], 0)
			if err != nil {
				return err
			}
			defer src.Close()
			p, err := cf.plan(c, src)
			if err != nil {
				return err
			}
			defer p.Close()
			if asJSON {
				return writeJSON(c.OutOrStdout(), p)
			}
			printPlan(c.OutOrStdout(), p)
			return nil
		},
	}
	cf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return c
}
