package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

// volumeFlags choose the encrypted volume.
type volumeFlags struct {
	header    string
	partition int
}

func (v *volumeFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&v.header, "header", "", "detached LUKS header file (ADE: /boot/luks/osluksheader)")
	c.Flags().IntVar(&v.partition, "partition", 0, "GPT partition number of the encrypted volume (default: find it)")
}

// openHeader opens the detached header, if one was named.
func (v *volumeFlags) openHeader() (*luksconv.Header, func(), error) {
	if v.header == "" {
		return nil, func() {}, nil
	}
	f, err := os.Open(v.header)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: header: %v", errUsage, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return &luksconv.Header{R: f, Size: fi.Size(), Path: v.header}, func() { f.Close() }, nil
}

// openSource opens a local image, or a page blob when path is a SAS URL.
func openSource(ctx context.Context, path string, workers int) (*luksconv.Source, error) {
	if luksconv.IsURL(path) {
		dlog.Debug("opening page blob", "url", blobio.Redact(path))
		src, err := luksconv.OpenPageBlob(ctx, path, luksconv.BlobOptions{Workers: workers, Logf: blobLog})
		if err != nil {
			return nil, err
		}
		debugSource(path, src)
		return src, nil
	}
	src, err := luksconv.OpenFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		return nil, err
	}
	debugSource(path, src)
	return src, nil
}

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
			hdr, closeHdr, err := vf.openHeader()
			if err != nil {
				return err
			}
			defer closeHdr()
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

// convertFlags are shared by plan and convert.
type convertFlags struct {
	volumeFlags
	key          keyFlags
	keyslot      int
	format       string
	allowUnknown bool
	fullCopy     bool
	keepGuest    bool
	strictInitrd bool
}

func (cf *convertFlags) register(c *cobra.Command) {
	cf.volumeFlags.register(c)
	c.Flags().StringVar(&cf.key.file, "key-file", "", "file whose exact bytes are the passphrase (ADE's BEK file); - reads standard input")
	c.Flags().StringVar(&cf.key.env, "key-env", "", "environment variable holding the passphrase")
	c.Flags().IntVar(&cf.keyslot, "keyslot", -1, "try only this keyslot (-1: every active one)")
	c.Flags().StringVar(&cf.format, "format", "raw", "output format: raw (sparse image) or vhd (fixed VHD, padded to a whole MiB for Azure)")
	c.Flags().BoolVar(&cf.allowUnknown, "allow-unknown-content", false, "convert even if the plaintext has no recognisable signature")
	c.Flags().BoolVar(&cf.fullCopy, "full-copy", false, "read and write free space too (default: free LVM extents and XFS free space become zeros)")
	c.Flags().BoolVar(&cf.keepGuest, "keep-guest", false, "do not edit the guest: the output is the source with the volume decrypted, byte for byte (default: undo ADE in /boot and the root filesystem)")
	c.Flags().BoolVar(&cf.strictInitrd, "strict-initramfs", false, "fail if an initramfs holding ADE's hooks cannot be rewritten in place (default: warn and leave it)")
}

// makePlan unlocks the volume and lays out the conversion. The caller must Close the plan.
func (cf *convertFlags) makePlan(c *cobra.Command, src *luksconv.Source) (*luksconv.Plan, error) {
	if cf.format != "raw" && cf.format != "vhd" {
		return nil, fmt.Errorf("%w: --format must be raw or vhd, not %q", errUsage, cf.format)
	}
	debugKeySource(cf.key)
	pass, err := cf.key.read(c.InOrStdin())
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	hdr, closeHdr, err := cf.openHeader()
	if err != nil {
		return nil, err
	}
	defer closeHdr()
	opts := luksconv.PlanOptions{Passphrase: pass, Header: hdr, Partition: cf.partition,
		Format: luksconv.Format(cf.format), AllowUnknownContent: cf.allowUnknown, FullCopy: cf.fullCopy,
		KeepGuest: cf.keepGuest, StrictInitramfs: cf.strictInitrd}
	if cf.keyslot >= 0 {
		opts.Keyslot = &cf.keyslot
	}
	debugUnlock(opts)
	p, err := luksconv.NewPlan(c.Context(), src, opts)
	if err != nil {
		return nil, explainKeyError(err, pass)
	}
	debugPlan(p)
	return p, nil
}

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
			p, err := cf.makePlan(c, src)
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
			in, out := args[0], args[1]
			if err := checkOutputPath(in, out); err != nil {
				return err
			}
			if luksconv.IsURL(out) {
				// A page blob (a managed disk's upload URL) holds a fixed VHD.
				if c.Flags().Changed("format") && cf.format != "vhd" {
					return fmt.Errorf("%w: an upload URL takes a fixed VHD; drop --format %s", errUsage, cf.format)
				}
				cf.format = "vhd"
			}
			src, err := openSource(c.Context(), in, workers)
			if err != nil {
				return err
			}
			defer src.Close()
			p, err := cf.makePlan(c, src)
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
			sink, err := createSink(c.Context(), out, p, force, journal, workers)
			if err != nil {
				return err
			}
			if sink.journal != "" && !quiet {
				fmt.Fprintf(stderr, "Resume journal: %s (run the same command again to continue after an interruption)\n", sink.journal)
			}
			pr := newProgress(stderr, p.Totals.Copy+p.Totals.Decrypt, quiet)
			dlog.Debug("execute", "workers", workers, "output", sink.name)
			// Execute gets the sink itself, not the outSink around it: a page blob's resume journal is
			// found through the sink's own methods (Done, MarkDone), which the wrapper would hide.
			res, err := luksconv.Execute(c.Context(), p, src, sink.Sink, luksconv.ExecuteOptions{Workers: workers, Progress: debugProgress(pr.update)})
			if err != nil {
				dlog.Debug("execute failed; removing the partial output", "output", sink.name, "error", err)
				sink.abort()
				return err
			}
			dlog.Debug("execute done", "decrypted", res.BytesDecrypted, "copied", res.BytesCopied, "written", res.BytesWritten,
				"skipped_zero", res.BytesSkipped, "resumed", res.BytesResumed, "duration", res.Duration.String())
			if err := sink.commit(c.Context()); err != nil {
				return err
			}
			dlog.Debug("output committed", "output", sink.name)
			var vrep error
			if verify {
				vrep = verifyOutput(c, p, src, out, sink.name, workers, quiet || asJSON)
				if vrep != nil && !errors.Is(vrep, luksconv.ErrVerifyFailed) {
					return vrep
				}
			}
			out = sink.name
			if asJSON {
				if err := writeJSON(c.OutOrStdout(), struct {
					Output string           `json:"output"`
					Plan   *luksconv.Plan   `json:"plan"`
					Result *luksconv.Result `json:"result"`
				}{out, p, res}); err != nil {
					return err
				}
				return vrep
			}
			rate := float64(res.BytesCopied+res.BytesDecrypted) / res.Duration.Seconds()
			fmt.Fprintf(c.OutOrStdout(), "converted %s -> %s (%s): decrypted %s, copied %s, wrote %s, skipped %s of zeros in %s (%s/s)\n",
				blobio.Redact(in), out, p.Format, human(res.BytesDecrypted), human(res.BytesCopied), human(res.BytesWritten),
				human(res.BytesSkipped), res.Duration.Round(1e6), human(int64(rate)))
			return vrep
		},
	}
	cf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the plan and result as JSON on standard output")
	c.Flags().BoolVar(&force, "force", false, "replace OUT if it exists")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no plan summary and no progress (warnings are still printed)")
	c.Flags().BoolVar(&verify, "verify", false, "re-read the output and check it against the plan after writing (see verify)")
	c.Flags().IntVar(&workers, "workers", 0, "chunks processed in parallel (default: number of CPUs)")
	c.Flags().StringVar(&journal, "journal", "", "resume journal for an upload URL (default: .luksconv-<plan id>.journal in the current directory)")
	return c
}

// outSink is a local file or a page blob behind one commit/abort pair.
type outSink struct {
	luksconv.Sink
	name, journal string
	commit        func(context.Context) error
	abort         func()
}

// createSink opens OUT: a new local file (renamed into place on commit) or a page blob by SAS URL
// (resumable through a journal; the VHD footer is written on commit).
func createSink(ctx context.Context, out string, p *luksconv.Plan, force bool, journal string, workers int) (*outSink, error) {
	if !luksconv.IsURL(out) {
		if isBlockDevice(out) {
			d, err := openDevice(out, p.OutputSize, p.Format, force)
			if err != nil {
				return nil, err
			}
			dlog.Debug("output opened", "kind", "block device", "path", out, "size", p.OutputSize, "held_back", len(d.head))
			return &outSink{Sink: d, name: out, commit: func(context.Context) error { return d.commit() }, abort: d.abort}, nil
		}
		if fi, err := os.Stat(out); err == nil && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: output %s is neither a regular file nor a block device", errOutput, out)
		}
		f, err := luksconv.CreateFile(out, p.OutputSize, p.Format, force)
		if err != nil {
			return nil, err
		}
		dlog.Debug("output opened", "kind", "file", "path", out, "temp", f.TempPath(), "size", p.OutputSize, "format", string(p.Format))
		return &outSink{Sink: f, name: out, commit: func(context.Context) error { return f.Commit() }, abort: func() { f.Abort() }}, nil
	}
	if journal == "" {
		journal = ".luksconv-" + p.ID()[:16] + ".journal"
	}
	b, err := luksconv.CreatePageBlobSink(ctx, out, p.OutputSize, journal, p.ID(), luksconv.BlobOptions{Workers: workers, Logf: blobLog})
	if err != nil {
		return nil, err
	}
	dlog.Debug("output opened", "kind", "page blob", "url", blobio.Redact(out), "size", p.OutputSize, "journal", journal)
	return &outSink{Sink: b, name: blobio.Redact(out), journal: journal,
		commit: func(ctx context.Context) error {
			if err := b.Commit(ctx); err != nil {
				b.Close()
				return err
			}
			if err := b.Close(); err != nil {
				return err
			}
			return os.Remove(journal) // done: nothing left to resume
		},
		// The journal stays, flushed, so that running the same command again continues.
		abort: func() { b.Close() },
	}, nil
}

// checkOutputPath refuses an output that is the input: the source is never written to.
func checkOutputPath(in, out string) error {
	if luksconv.IsURL(in) || luksconv.IsURL(out) {
		if blobTarget(in) == blobTarget(out) {
			return fmt.Errorf("%w: output %s is the input; luksconv never writes to its source", errOutput, blobio.Redact(out))
		}
		return nil
	}
	ai, _ := filepath.Abs(in)
	ao, _ := filepath.Abs(out)
	if ai == ao {
		return fmt.Errorf("%w: output %s is the input image; luksconv never writes to its source", errOutput, out)
	}
	fi, err1 := os.Stat(in)
	fo, err2 := os.Stat(out)
	if err1 == nil && err2 == nil && os.SameFile(fi, fo) {
		return fmt.Errorf("%w: output %s is the same file as the input %s; luksconv never writes to its source", errOutput, out, in)
	}
	return nil
}

// printWarnings prints the plan's warnings alone (what -q keeps of the plan summary).
func printWarnings(w io.Writer, warnings []string) {
	for _, wn := range warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printReport(w io.Writer, rep *luksconv.Report) {
	fmt.Fprintf(w, "Image:  %s (%s, virtual size %s = %d bytes)\n", rep.Image.Path, rep.Image.Format, human(rep.Image.Size), rep.Image.Size)
	if rep.Table != nil {
		if rep.Table.Type == "mbr" {
			fmt.Fprintf(w, "Table:  MBR (DOS), %d-byte sectors, disk signature %s\n", rep.Table.SectorSize, rep.Table.DiskGUID)
		} else {
			fmt.Fprintf(w, "Table:  GPT, %d-byte sectors, disk GUID %s\n", rep.Table.SectorSize, rep.Table.DiskGUID)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTART\tSIZE\tTYPE\tNAME\tCONTENT\tPARTUUID")
	for _, p := range rep.Partitions {
		typ := p.TypeName
		if typ == "" {
			typ = p.Type
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Number, p.Offset, human(p.Size), typ, p.Name, p.Content, p.GUID)
	}
	tw.Flush()
	if a := rep.ADE; a != nil {
		fmt.Fprintf(w, "\nAzure Disk Encryption: /boot is partition %d and holds %s (%d bytes)", a.BootPartition, a.HeaderPath, a.HeaderSize)
		if a.PartUUID != "" {
			fmt.Fprintf(w, "; %s names the encrypted partition rd.luks.ade.partuuid=%s", a.ArgSource, a.PartUUID)
		}
		fmt.Fprintln(w)
	}
	for _, p := range rep.Partitions {
		if p.LUKS != nil {
			printLUKS(w, p.Number, p.LUKS)
		}
	}
	if len(rep.Edits) > 0 {
		fmt.Fprintln(w)
		printEdits(w, "Guest edits convert would make (without the key only unencrypted filesystems are read; plan shows all)", rep.Edits)
	}
	if rep.Readiness != nil {
		fmt.Fprintln(w)
		printReadiness(w, "Readiness (LEAPP-style, the guest as it is now)", rep.Readiness)
	}
	for _, wn := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
}

func printLUKS(w io.Writer, n int, l *luksconv.LUKSInfo) {
	where := "header at the partition start"
	if l.Header == "detached" {
		where = "detached header " + l.HeaderPath
	}
	size := "to the end of the partition"
	if l.DataSize >= 0 {
		size = fmt.Sprintf("%d bytes", l.DataSize)
	}
	fmt.Fprintf(w, "\nPartition %d: LUKS%d (%s)\n", n, l.Version, where)
	fmt.Fprintf(w, "  uuid %s, cipher %s, %d-bit key, %d-byte sectors\n", l.UUID, l.Cipher, l.KeySizeBits, l.SectorSize)
	fmt.Fprintf(w, "  data at offset %d, %s\n", l.DataOffset, size)
	for _, k := range l.Keyslots {
		var kdf string
		switch k.KDF {
		case "pbkdf2":
			kdf = fmt.Sprintf("pbkdf2-%s, %d iterations", k.Hash, k.Iterations)
		case "":
			kdf = k.Type
		default:
			kdf = fmt.Sprintf("%s, time %d, memory %d KiB, %d threads", k.KDF, k.Time, k.MemoryKiB, k.CPUs)
		}
		fmt.Fprintf(w, "  keyslot %d: %s\n", k.ID, kdf)
	}
	if l.Convertible {
		fmt.Fprintln(w, "  convertible: yes")
	} else {
		fmt.Fprintf(w, "  convertible: no: %s\n", l.Reason)
	}
	for _, wn := range l.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", wn)
	}
}

func printPlan(w io.Writer, p *luksconv.Plan) {
	v := p.Volume
	fmt.Fprintf(w, "Volume: partition %d (%s), LUKS%d %s header, %s %d-bit, %d-byte sectors, unlocked with keyslot %d, plaintext holds %s\n",
		v.Partition, v.PartUUID, v.Version, v.Header, v.Cipher, v.KeySizeBits, v.SectorSize, v.Keyslot, v.Content)
	fmt.Fprintf(w, "Output: %s, %s (%d bytes): decrypt %s, copy %s, zero %s\n", p.Format, human(p.OutputSize), p.OutputSize,
		human(p.Totals.Decrypt), human(p.Totals.Copy), human(p.Totals.Zero))
	var kinds []string
	for _, r := range p.Regions {
		kinds = append(kinds, fmt.Sprintf("%s %d+%d", r.Kind, r.Offset, r.Length))
	}
	if len(kinds) <= 12 {
		fmt.Fprintf(w, "Regions: %s\n", strings.Join(kinds, ", "))
	} else {
		fmt.Fprintf(w, "Regions: %d (see --json)\n", len(kinds))
	}
	for _, sk := range p.Skipped {
		fmt.Fprintf(w, "Skip: %s of %s (written as zeros, not read)\n", human(sk.Bytes), sk.Reason)
	}
	if len(p.Patches) <= 12 {
		for _, pt := range p.Patches {
			fmt.Fprintf(w, "Patch: %d bytes at %d: %s\n", pt.Length, pt.Offset, pt.Why)
		}
	} else {
		var n int64
		for _, pt := range p.Patches {
			n += int64(pt.Length)
		}
		fmt.Fprintf(w, "Patches: %d, %s in total (see --json)\n", len(p.Patches), human(n))
	}
	if len(p.Edits) > 0 {
		printEdits(w, "Guest edits", p.Edits)
	}
	if p.Readiness != nil {
		printReadiness(w, "Readiness (LEAPP-style, the guest as the output will hold it)", p.Readiness)
	}
	for _, wn := range p.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
}

func printEdits(w io.Writer, title string, edits []luksconv.Edit) {
	fmt.Fprintf(w, "%s: %d\n", title, len(edits))
	for _, e := range edits {
		fmt.Fprintf(w, "  %s [%s]: %s\n", e.Path, e.Filesystem, e.Why)
		for _, l := range e.Before {
			fmt.Fprintf(w, "    - %s\n", l)
		}
		for _, l := range e.After {
			fmt.Fprintf(w, "    + %s\n", l)
		}
	}
}

func printReadiness(w io.Writer, title string, r *luksconv.Readiness) {
	verdict := "ready"
	if !r.Ready {
		verdict = "NOT ready"
	}
	fmt.Fprintf(w, "%s: %s\n", title, verdict)
	for _, c := range r.Checks {
		fmt.Fprintf(w, "  %-4s %s\n", strings.ToUpper(c.Status), c.Name)
		for _, d := range c.Detail {
			fmt.Fprintf(w, "         %s\n", d)
		}
	}
}

// blobTarget is a URL without its query (the SAS), or a local path as given.
func blobTarget(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 && luksconv.IsURL(s) {
		return s[:i]
	}
	return s
}

// verifyOutput re-reads the written output (raw, VHD or page blob) and checks it against p; the report
// goes to stderr (it is quiet when the output is JSON or -q and it passes).
func verifyOutput(c *cobra.Command, p *luksconv.Plan, src *luksconv.Source, out, name string, workers int, quiet bool) error {
	var o *luksconv.Source
	var err error
	if isBlockDevice(out) {
		// The device may be larger than the disk written onto it.
		n := p.OutputSize
		if p.Format == luksconv.FormatVHD {
			n += 512
		}
		var closeDev func()
		if o, closeDev, err = openDeviceOutput(out, n); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		defer closeDev()
	} else {
		if o, err = openSource(c.Context(), out, workers); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		defer o.Close()
	}
	dlog.Debug("verify", "output", blobio.Redact(name))
	var buf strings.Builder
	err = runVerify(c.Context(), &buf, p, src, o, name, workers, 20, false)
	if err != nil || !quiet {
		fmt.Fprint(c.ErrOrStderr(), buf.String())
	}
	return err
}
