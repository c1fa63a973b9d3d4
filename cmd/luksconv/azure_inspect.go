package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

func newAzureInspectCmd() *cobra.Command {
	var as azureSource
	var vf volumeFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "inspect (--snapshot ID | --source-disk ID)",
		Short: "Show the partitions of an ADE disk in Azure and where its key lives in Key Vault (never the key)",
		Args:  usageArgs(0),
		RunE: func(c *cobra.Command, args []string) (err error) {
			ctx := c.Context()
			id, err := as.id()
			if err != nil {
				return err
			}
			cl, err := as.client(id)
			if err != nil {
				return err
			}
			debugAzure("read ADE key references", id)
			ks, kerr := cl.KeySources(ctx, id)
			if kerr != nil && !errors.Is(kerr, azure.ErrNoEncryptionSettings) {
				return kerr
			}
			src, done, err := grantRead(ctx, cl, id, 0, c.ErrOrStderr())
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, done()) }()
			hdr, err := vf.openHeader()
			if err != nil {
				return err
			}
			defer hdr.Close()
			rep, err := luksconv.Inspect(ctx, src, luksconv.InspectOptions{Header: hdr, Partition: vf.partition})
			if err != nil {
				return err
			}
			rep.Image.Path = id
			debugReport(rep)
			if asJSON {
				return writeJSON(c.OutOrStdout(), struct {
					Resource   string            `json:"resource"`
					KeySources []azure.KeySource `json:"key_sources"`
					Report     *luksconv.Report  `json:"report"`
				}{id, ks, rep})
			}
			printReport(c.OutOrStdout(), rep)
			printKeySources(c.OutOrStdout(), ks)
			return nil
		},
	}
	as.register(c)
	vf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}

func printKeySources(w io.Writer, ks []azure.KeySource) {
	fmt.Fprintln(w)
	if len(ks) == 0 {
		fmt.Fprintln(w, "Key Vault: no ADE encryption settings found on the resource, its source disk or VM (give --key-file to convert)")
		return
	}
	for _, k := range ks {
		fmt.Fprintf(w, "Key Vault (ADE %s settings on the %s %s, enabled=%v):\n  secret %s\n", k.Version, k.From, k.ResourceID, k.Enabled, k.SecretURL)
		if k.KEKURL != "" {
			fmt.Fprintf(w, "  wrapped with key %s\n", k.KEKURL)
		}
	}
}
