package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

func newVerifyCmd() *cobra.Command {
	var cf convertFlags
	var asJSON bool
	var workers, maxMis int
	c := &cobra.Command{
		Use:   "verify --key-file F [--header F] IMAGE|SAS-URL OUT|SAS-URL",
		Short: "Check a converted disk against a fresh plan: every byte, the GPT, LVM and XFS",
		Long: "verify rebuilds the plan from IMAGE with the same options convert was given (--keep-guest, --full-copy, ...)\n" +
			"and compares OUT with it byte for byte: decrypted regions with a fresh decryption of the source, copied regions\n" +
			"with the source, zero regions with zeros, guest edits with their planned content. It exits 0 on pass and 9 on\n" +
			"a mismatch. The output format (raw or vhd) is taken from OUT unless --format is given.",
		Args: usageArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			in, out := args[0], args[1]
			src, err := openSource(c.Context(), in, workers)
			if err != nil {
				return err
			}
			defer src.Close()
			o, err := openSource(c.Context(), out, workers)
			if err != nil {
				return err
			}
			defer o.Close()
			if !c.Flags().Changed("format") {
				cf.format = "raw"
				if strings.HasPrefix(o.Format, "vhd") {
					cf.format = "vhd"
				}
			}
			p, err := cf.plan(c, src)
			if err != nil {
				return err
			}
			defer p.Close()
			return runVerify(c.Context(), c.OutOrStdout(), p, src, o, blobio.Redact(out), workers, maxMis, asJSON)
		},
	}
	cf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	c.Flags().IntVar(&workers, "workers", 0, fmt.Sprintf("chunks compared in parallel, at most %d (default: number of CPUs)", luksconv.MaxWorkers))
	c.Flags().IntVar(&maxMis, "max-mismatches", 20, "mismatching ranges listed (all are counted)")
	return c
}

// runVerify checks o against p and prints the report; the error wraps luksconv.ErrVerifyFailed on a
// mismatch.
func runVerify(ctx context.Context, w io.Writer, p *luksconv.Plan, src, o *luksconv.Source, name string, workers, maxMis int, asJSON bool) error {
	o.Path = name
	rep, err := luksconv.Verify(ctx, p, src, o, luksconv.VerifyOptions{Workers: workers, MaxMismatches: maxMis})
	if rep == nil {
		return err
	}
	if asJSON {
		if jerr := writeJSON(w, rep); jerr != nil {
			return errors.Join(err, jerr)
		}
	} else {
		printVerify(w, name, rep)
	}
	return err
}

// openOutput opens a written output for verify: a file or page blob as a source, a block device as
// its first bytes (it may be larger than the disk written onto it).
func openOutput(ctx context.Context, p *luksconv.Plan, out string, workers int) (*luksconv.Source, error) {
	fi, err := os.Stat(out)
	if err != nil || fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return openSource(ctx, out, workers)
	}
	n := p.OutputSize
	if p.Format == luksconv.FormatVHD {
		n += 512
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	src, err := luksconv.OpenReader(io.NewSectionReader(f, 0, n), n, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", out, err)
	}
	debugSource(out, src)
	return src, nil
}
