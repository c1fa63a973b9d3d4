package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/luksconv/luksconv/blobdisk"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

func newConvertCmd() *cobra.Command {
	var cf convertFlags
	var asJSON, force, quiet, verify bool
	var workers int
	var journal string
	c := &cobra.Command{
		Use:   "convert --key-file F [--header F] IMAGE|SAS-URL OUT|SAS-URL",
		Short: "Write a plaintext copy of the disk: the volume decrypted, everything else copied",
		Args:  usageArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			in, out := args[0], args[1]
			if blobdisk.IsURL(out) {
				// A page blob (a managed disk's upload URL) holds a fixed VHD.
				if c.Flags().Changed("format") && cf.format != "vhd" {
					return fmt.Errorf("%w: an upload URL takes a fixed VHD; drop --format %s", errUsage, cf.format)
				}
				cf.format = "vhd"
			}
			if !blobdisk.IsURL(out) {
				if err := checkOutputDir(filepath.Dir(out)); err != nil {
					return err
				}
			}
			src, err := openSource(ctx, in, workers)
			if err != nil {
				return err
			}
			defer src.Close()
			p, err := cf.plan(c, src)
			if err != nil {
				return err
			}
			defer p.Close()
			stderr := c.ErrOrStderr()
			if !quiet {
				printPlan(stderr, p)
			} else {
				printWarnings(stderr, p.Warnings)
			}
			o, name, jpath, err := createOutput(ctx, p, out, force, journal, workers)
			if err != nil {
				return err
			}
			if d, ok := o.(*luksconv.DeviceOutput); ok && d.Spare() > 0 {
				fmt.Fprintf(stderr, "luksconv: warning: %s is %s larger than the converted disk; those bytes are left as they are, "+
					"and a GPT's backup copy is written at the converted disk's end (sgdisk -e %s moves it to the device's)\n", name, human(d.Spare()), name)
			}
			if jpath != "" && !quiet {
				fmt.Fprintf(stderr, "Resume journal: %s (run the same command again to continue after an interruption)\n", jpath)
			}
			pr := newProgress(stderr, p.Totals.Copy+p.Totals.Decrypt, quiet)
			dlog.Debug("execute", "workers", workers, "output", name)
			res, err := luksconv.Execute(ctx, p, src, o, luksconv.ExecuteOptions{Workers: workers, Progress: debugProgress(pr.update)})
			if err != nil {
				// A local output is removed; an upload keeps its journal for the next run.
				dlog.Debug("execute failed; aborting the output", "output", name, "error", err)
				o.Abort()
				return err
			}
			dlog.Debug("execute done", "decrypted", res.BytesDecrypted, "copied", res.BytesCopied, "written", res.BytesWritten,
				"skipped_zero", res.BytesSkipped, "resumed", res.BytesResumed, "duration", res.Duration.String())
			if err := o.Commit(ctx); err != nil {
				return err
			}
			dlog.Debug("output committed", "output", name)
			var vrep error
			if verify {
				vrep = verifyOutput(c, p, src, out, name, workers, quiet || asJSON)
				if vrep != nil && !errors.Is(vrep, luksconv.ErrVerifyFailed) {
					return vrep
				}
			}
			if asJSON {
				if err := writeJSON(c.OutOrStdout(), struct {
					Output string           `json:"output"`
					Plan   *luksconv.Plan   `json:"plan"`
					Result *luksconv.Result `json:"result"`
				}{name, p, res}); err != nil {
					return err
				}
				return vrep
			}
			rate := float64(res.BytesCopied+res.BytesDecrypted) / res.Duration.Seconds()
			fmt.Fprintf(c.OutOrStdout(), "converted %s -> %s (%s): decrypted %s, copied %s, wrote %s, skipped %s of zeros in %s (%s/s)\n",
				blobio.Redact(in), name, p.Format, human(res.BytesDecrypted), human(res.BytesCopied), human(res.BytesWritten),
				human(res.BytesSkipped), res.Duration.Round(1e6), human(int64(rate)))
			return vrep
		},
	}
	cf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the plan and result as JSON on standard output")
	c.Flags().BoolVar(&force, "force", false, "replace OUT if it exists, or write over a block device")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no plan summary and no progress (warnings are still printed)")
	c.Flags().BoolVar(&verify, "verify", false, "re-read the output and check it against the plan after writing (see verify)")
	c.Flags().IntVar(&workers, "workers", 0, workersUsage("chunks processed in parallel"))
	c.Flags().StringVar(&journal, "journal", "", "resume journal for an upload URL (default: .luksconv-<plan id>.journal in the current directory)")
	return c
}

// checkOutputDir refuses, before the key derivation, an output directory that does not exist or is
// not a directory: creating the output there would fail only after it (luksconv.ErrOutputDir then).
// Any other error reaching it (a share's EIO or ESTALE) may pass on a retry: a plain error.
func checkOutputDir(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s is not a directory", dir)
	} else if err != nil && !missingDir(err) {
		return fmt.Errorf("output directory: %w", err)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", luksconv.ErrOutputDir, err)
	}
	return nil
}

// createOutput opens OUT: a page blob by SAS URL (resumable through a journal; the VHD footer is
// written on commit), a block device or a new local file. It returns the output, the name to print
// (a URL without its signature) and the journal file ("" for local outputs).
func createOutput(ctx context.Context, p *luksconv.Plan, out string, force bool, journal string, workers int) (luksconv.Output, string, string, error) {
	if blobdisk.IsURL(out) {
		o, err := blobdisk.CreateOutput(ctx, p, out, blobdisk.OutputOptions{
			Options: blobdisk.Options{Workers: workers, Logf: blobLog, Timeout: blobTimeout}, Journal: journal})
		if err != nil {
			return nil, "", "", err
		}
		dlog.Debug("output opened", "kind", "page blob", "url", o.URL(), "size", p.OutputSize, "journal", o.JournalPath())
		return o, blobio.Redact(out), o.JournalPath(), nil
	}
	o, err := luksconv.CreateOutput(p, out, luksconv.OutputOptions{Overwrite: force})
	if err != nil {
		return nil, "", "", err
	}
	switch o := o.(type) {
	case *luksconv.DeviceOutput:
		dlog.Debug("output opened", "kind", "block device", "path", out, "size", p.OutputSize, "held_back", o.Held())
	case *luksconv.FileOutput:
		dlog.Debug("output opened", "kind", "file", "path", out, "temp", o.TempPath(), "size", p.OutputSize, "format", string(p.Format))
	}
	return o, out, "", nil
}

// verifyOutput re-reads the written output (raw, VHD, block device or page blob) and checks it
// against p; the report goes to stderr (only on failure when the output is JSON or -q).
func verifyOutput(c *cobra.Command, p *luksconv.Plan, src *luksconv.Source, out, name string, workers int, quiet bool) error {
	o, err := openOutput(c.Context(), p, out, workers)
	if err != nil {
		return fmt.Errorf("verify: %w", outputUnreadable(err))
	}
	defer o.Close()
	dlog.Debug("verify", "output", name)
	var buf strings.Builder
	err = runVerify(c.Context(), &buf, p, src, o, name, workers, 20, false)
	if err != nil || !quiet {
		fmt.Fprint(c.ErrOrStderr(), buf.String())
	}
	return err
}
