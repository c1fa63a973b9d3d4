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
	"github.com/luksconv/luksconv/vhd"
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
			"a mismatch. The output format (raw or vhd) is taken from OUT unless --format is given; on a block device only\n" +
			"the converted disk's bytes are compared (and its VHD footer, if there is one).",
		Args: usageArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			in, out := args[0], args[1]
			src, err := openSource(c.Context(), in, workers)
			if err != nil {
				return err
			}
			defer src.Close()
			// A block device may be larger than the disk written onto it: it is opened once the plan
			// says how large that disk is (as convert --verify does), and a fixed VHD is recognised
			// by its footer at the padded disk's end.
			dev := isBlockDevice(out)
			var o *luksconv.Source
			if !dev {
				if o, err = openSource(c.Context(), out, workers); err != nil {
					return outputUnreadable(err)
				}
				defer o.Close()
			}
			if !c.Flags().Changed("format") {
				cf.format = "raw"
				if dev && deviceHoldsVHD(out, src.Size) || !dev && strings.HasPrefix(o.Format, "vhd") {
					cf.format = "vhd"
				}
			}
			p, err := cf.plan(c, src)
			if err != nil {
				return err
			}
			defer p.Close()
			if dev {
				if o, err = openOutput(c.Context(), p, out, workers); err != nil {
					return outputUnreadable(err)
				}
				defer o.Close()
			}
			return runVerify(c.Context(), c.OutOrStdout(), p, src, o, blobio.Redact(out), workers, maxMis, asJSON)
		},
	}
	cf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	c.Flags().IntVar(&workers, "workers", 0, workersUsage("chunks compared in parallel"))
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

// outputUnreadable makes an output whose container does not open (a VHD footer that fails its checksum,
// a differencing disk) a failed verification: it is not what convert writes, and the exit code of a
// damaged input would blame the source. Other errors (a short output, I/O) are returned as they are.
func outputUnreadable(err error) error {
	if errors.Is(err, vhd.ErrCorrupt) || errors.Is(err, vhd.ErrUnsupported) {
		return fmt.Errorf("%w: %w", luksconv.ErrVerifyFailed, err)
	}
	return err
}

// isBlockDevice reports whether path is a local block device.
func isBlockDevice(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

// deviceHoldsVHD reports whether the block device at path holds a fixed VHD of a disk converted from a
// source of srcSize bytes: a footer at the end of that disk padded to a whole MiB. A footer that fails
// its checks counts (verifying the device as a raw disk would pass it without the footer it needs).
func deviceHoldsVHD(path string, srcSize int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	n := vhd.AzureSize(srcSize) + 512
	s, err := luksconv.NewSource(io.NewSectionReader(f, 0, n), n)
	return err == nil && s.Format == "vhd-fixed" || errors.Is(err, vhd.ErrCorrupt)
}

// openOutput opens a written output for verify: a file or page blob as a source, a block device as
// its first bytes (it may be larger than the disk written onto it).
func openOutput(ctx context.Context, p *luksconv.Plan, out string, workers int) (*luksconv.Source, error) {
	if !isBlockDevice(out) {
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
