package main

import (
	"context"
	"fmt"
	"io"
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
			p, err := cf.makePlan(c, src)
			if err != nil {
				return err
			}
			defer p.Close()
			return runVerify(c.Context(), c.OutOrStdout(), p, src, o, blobio.Redact(out), workers, maxMis, asJSON)
		},
	}
	cf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	c.Flags().IntVar(&workers, "workers", 0, "chunks compared in parallel (default: number of CPUs)")
	c.Flags().IntVar(&maxMis, "max-mismatches", 20, "mismatching ranges listed (all are counted)")
	return c
}

// runVerify checks o against p, prints the report and returns an error wrapping ErrVerifyFailed on a
// mismatch.
func runVerify(ctx context.Context, w io.Writer, p *luksconv.Plan, src, o *luksconv.Source, name string, workers, maxMis int, asJSON bool) error {
	if o.Size != p.OutputSize {
		what := "shorter"
		if o.Size > p.OutputSize {
			what = "longer"
		}
		if o.Size < p.OutputSize {
			return fmt.Errorf("output %s holds a %d-byte disk, %s than the planned %d bytes (interrupted?): %w", name, o.Size, what, p.OutputSize, luksconv.ErrTruncated)
		}
		return fmt.Errorf("%w: output %s holds a %d-byte disk, %s than the planned %d bytes (another --format?)", luksconv.ErrVerifyFailed, name, o.Size, what, p.OutputSize)
	}
	rep, err := luksconv.Verify(ctx, p, src, o, luksconv.VerifyOptions{Workers: workers, MaxMismatches: maxMis})
	if err != nil {
		return err
	}
	if asJSON {
		if err := writeJSON(w, rep); err != nil {
			return err
		}
	} else {
		printVerify(w, name, rep)
	}
	if !rep.Pass {
		return fmt.Errorf("%w: %s: %d mismatching ranges (%d bytes)", luksconv.ErrVerifyFailed, name, rep.MismatchCount, rep.MismatchBytes)
	}
	return nil
}

func printVerify(w io.Writer, name string, rep *luksconv.VerifyReport) {
	verdict := "PASS"
	if !rep.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "Verify %s: %s\n", name, verdict)
	fmt.Fprintf(w, "  checked: decrypt %s, copy %s, zero %s (%s of patches) in %s\n", human(rep.Checked.Decrypt),
		human(rep.Checked.Copy), human(rep.Checked.Zero), human(rep.Patched), rep.Duration.Round(1e6))
	if rep.MismatchCount > 0 {
		fmt.Fprintf(w, "  mismatches: %d ranges, %d bytes\n", rep.MismatchCount, rep.MismatchBytes)
		for _, m := range rep.Mismatches {
			fmt.Fprintf(w, "    %d+%d in the %s region at %d", m.Offset, m.Length, m.Kind, m.Region)
			if m.Patch != "" {
				fmt.Fprintf(w, ", patch: %s", m.Patch)
			}
			fmt.Fprintln(w)
		}
		if n := rep.MismatchCount - len(rep.Mismatches); n > 0 {
			fmt.Fprintf(w, "    ... and %d more\n", n)
		}
	}
	for _, c := range rep.Structure {
		st := "ok"
		if !c.OK {
			st = "FAIL"
		}
		fmt.Fprintf(w, "  %-4s %s: %s\n", st, c.Name, c.Detail)
	}
}
