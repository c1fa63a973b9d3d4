package main

import (
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

func newInspectCmd() *cobra.Command {
	var vf volumeFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show the partitions of a disk image and the encrypted volume on it",
		Args:  usageArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			src, err := openSource(c.Context(), args[0], 0)
			if err != nil {
				return err
			}
			defer src.Close()
			hdr, err := vf.openHeader()
			if err != nil {
				return err
			}
			defer hdr.Close()
			rep, err := luksconv.Inspect(c.Context(), src, luksconv.InspectOptions{Header: hdr, Partition: vf.partition})
			if err != nil {
				return err
			}
			debugReport(rep)
			if asJSON {
				return writeJSON(c.OutOrStdout(), rep)
			}
			printReport(c.OutOrStdout(), rep)
			return nil
		},
	}
	vf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}
