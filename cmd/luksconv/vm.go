package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/luksconv/luksconv/internal/recovered"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

// vmFlags choose a VM's disks: the OS disk and its key, and each data disk by LUN with its key.
type vmFlags struct {
	planFlags
	key      keyFlags
	format   string
	osImage  string
	data     []string // LUN=IMAGE
	dataKeys []string // LUN=KEYFILE
	workers  int
}

func (vf *vmFlags) register(c *cobra.Command) {
	vf.planFlags.register(c)
	fl := c.Flags()
	fl.StringVar(&vf.osImage, "os", "", "the OS disk's image (raw or VHD, or a SAS URL)")
	fl.StringVar(&vf.key.file, "key-file", "", "the OS disk's key file (its BEK); - reads standard input")
	fl.StringVar(&vf.key.env, "key-env", "", "environment variable holding the OS disk's passphrase")
	fl.StringArrayVar(&vf.data, "data", nil, "a data disk: LUN=IMAGE (repeat for each data disk; LUN as Azure attaches it)")
	fl.StringArrayVar(&vf.dataKeys, "data-key", nil, "a data disk's key file: LUN=FILE (ADE keys every volume separately)")
	fl.StringVar(&vf.format, "format", "raw", "output format: raw or vhd")
	fl.IntVar(&vf.workers, "workers", 0, workersUsage("chunks processed in parallel per disk"))
	// --header and --partition name the OS disk's volume; data volumes' come from its crypttab.
	c.Flags().Lookup("header").Usage = "the OS disk's detached LUKS header file (default: found on its /boot)"
	c.Flags().Lookup("partition").Usage = "the OS disk's encrypted partition (default: find it)"
}

// vmDisk is a disk named on the command line.
type vmDisk struct {
	lun   int
	image string
	key   string
}

// disks parses --os, --data and --data-key.
func (vf *vmFlags) disks() ([]vmDisk, error) {
	if vf.osImage == "" {
		return nil, fmt.Errorf("%w: --os IMAGE is needed (the OS disk)", errUsage)
	}
	if vf.format != "raw" && vf.format != "vhd" {
		return nil, fmt.Errorf("%w: --format must be raw or vhd, not %q", errUsage, vf.format)
	}
	parse := func(flag, v string) (int, string, error) {
		l, rest, ok := strings.Cut(v, "=")
		n, err := strconv.Atoi(l)
		if !ok || err != nil || n < 0 || rest == "" {
			return 0, "", fmt.Errorf("%w: --%s %q: want LUN=PATH", errUsage, flag, v)
		}
		return n, rest, nil
	}
	keys := map[int]string{}
	for _, v := range vf.dataKeys {
		n, k, err := parse("data-key", v)
		if err != nil {
			return nil, err
		}
		if _, dup := keys[n]; dup {
			return nil, fmt.Errorf("%w: --data-key names LUN %d twice", errUsage, n)
		}
		keys[n] = k
	}
	disks := []vmDisk{{lun: luksconv.OSDisk, image: vf.osImage}}
	seen := map[int]bool{}
	for _, v := range vf.data {
		n, img, err := parse("data", v)
		if err != nil {
			return nil, err
		}
		if seen[n] {
			return nil, fmt.Errorf("%w: --data names LUN %d twice", errUsage, n)
		}
		seen[n] = true
		if keys[n] == "" {
			return nil, fmt.Errorf("%w: LUN %d has no --data-key %d=FILE", errUsage, n, n)
		}
		disks = append(disks, vmDisk{lun: n, image: img, key: keys[n]})
	}
	for n := range keys {
		if !seen[n] {
			return nil, fmt.Errorf("%w: --data-key %d names no --data disk", errUsage, n)
		}
	}
	sort.Slice(disks[1:], func(i, j int) bool { return disks[1+i].lun < disks[1+j].lun })
	return disks, nil
}

// plan opens every disk and plans the VM. The caller closes the plan and the sources.
func (vf *vmFlags) plan(c *cobra.Command, disks []vmDisk) (*luksconv.VMPlan, []*luksconv.Source, error) {
	ctx := c.Context()
	var srcs []*luksconv.Source
	closeAll := func() {
		for _, s := range srcs {
			s.Close()
		}
	}
	var vds []luksconv.VMDisk
	for _, d := range disks {
		src, err := openSource(ctx, d.image, vf.workers)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("%s: %w", diskName(d.lun), err)
		}
		srcs = append(srcs, src)
		opts := vf.options(luksconv.Format(vf.format))
		if d.lun == luksconv.OSDisk {
			debugKeySource(vf.key)
			if err := vf.key.apply(ctx, &opts, c.InOrStdin()); err != nil {
				closeAll()
				return nil, nil, err
			}
			hdr, err := vf.openHeader()
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			if hdr != nil {
				defer hdr.Close()
			}
			opts.Header = hdr
		} else {
			opts.KeyFile, opts.Partition = d.key, 0
		}
		vds = append(vds, luksconv.VMDisk{LUN: d.lun, Source: src, Options: opts})
	}
	vp, err := luksconv.NewVMPlan(ctx, vds)
	for _, d := range vds {
		clear(d.Options.Passphrase)
	}
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return vp, srcs, nil
}

func diskName(lun int) string {
	if lun == luksconv.OSDisk {
		return "OS disk"
	}
	return fmt.Sprintf("LUN %d", lun)
}

func newVMCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "vm",
		Short: "Convert all of a VM's ADE disks together: the OS disk and its data disks",
		Long: "ADE encrypts a VM's OS disk together with its data disks, and the OS disk's crypttab and fstab name\n" +
			"the data volumes. vm plan and vm convert take every disk of the VM: each data disk is converted, and the\n" +
			"OS disk is edited so that the converted VM mounts the plaintext volumes (by filesystem UUID) and knows\n" +
			"nothing of ADE. A data volume whose detached header ADE kept on the OS disk (dual-pass) is read from there.",
	}
	c.AddCommand(newVMPlanCmd(), newVMConvertCmd(), newVMVerifyCmd())
	commandGroup(c)
	return c
}

func newVMPlanCmd() *cobra.Command {
	var vf vmFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "plan --os IMAGE --key-file F [--data LUN=IMAGE --data-key LUN=F]...",
		Short: "Unlock every disk of the VM and show what vm convert would write, without writing",
		Args:  usageArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			disks, err := vf.disks()
			if err != nil {
				return err
			}
			vp, srcs, err := vf.plan(c, disks)
			if err != nil {
				return err
			}
			defer closeSources(srcs)
			defer vp.Close()
			if asJSON {
				return writeJSON(c.OutOrStdout(), vp)
			}
			printVMPlan(c.OutOrStdout(), vp)
			return nil
		},
	}
	vf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the plans as JSON")
	return c
}

func closeSources(srcs []*luksconv.Source) {
	for _, s := range srcs {
		s.Close()
	}
}

func printVMPlan(w io.Writer, vp *luksconv.VMPlan) {
	fmt.Fprintln(w, "== OS disk")
	printPlan(w, vp.OS)
	for _, d := range vp.Data {
		fmt.Fprintf(w, "\n== LUN %d", d.LUN)
		if d.Mapper != "" {
			fmt.Fprintf(w, " (crypttab mapper %s", d.Mapper)
			if d.FilesystemUUID != "" {
				fmt.Fprintf(w, ", filesystem UUID=%s", d.FilesystemUUID)
			}
			fmt.Fprint(w, ")")
		}
		fmt.Fprintln(w)
		printPlan(w, d.Plan)
	}
	if len(vp.Warnings) > 0 {
		fmt.Fprintln(w)
		printWarnings(w, vp.Warnings)
	}
}

// printVMWarnings prints the warnings of every plan of vp.
func printVMWarnings(w io.Writer, vp *luksconv.VMPlan) {
	printWarnings(w, vp.OS.Warnings)
	for _, d := range vp.Data {
		printWarnings(w, d.Plan.Warnings)
	}
	printWarnings(w, vp.Warnings)
}

func newVMConvertCmd() *cobra.Command {
	var vf vmFlags
	var asJSON, force, quiet, verify bool
	var parallel int
	c := &cobra.Command{
		Use:   "convert --os IMAGE --key-file F [--data LUN=IMAGE --data-key LUN=F]... OUTDIR",
		Short: "Write a plaintext copy of every disk of the VM into OUTDIR (os.raw, lun<N>.raw; .vhd with --format vhd)",
		Long: "vm convert plans every disk (see vm plan), then converts them, --parallel at a time, into new files in\n" +
			"OUTDIR. The outputs are committed only when every disk is converted; if one fails, none is left behind.",
		Args: usageArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			disks, err := vf.disks()
			if err != nil {
				return err
			}
			if parallel < 1 {
				return fmt.Errorf("%w: --parallel must be at least 1", errUsage)
			}
			if err := checkOutputDir(args[0]); err != nil {
				return err
			}
			vp, srcs, err := vf.plan(c, disks)
			if err != nil {
				return err
			}
			defer closeSources(srcs)
			defer vp.Close()
			stderr := c.ErrOrStderr()
			if !quiet {
				printVMPlan(stderr, vp)
			} else {
				printVMWarnings(stderr, vp)
			}
			jobs := vmJobs(vp, srcs, args[0], vf.format)
			// Every output is created before anything is written: a refused one stops the run early.
			for i := range jobs {
				o, err := luksconv.CreateOutput(jobs[i].plan, jobs[i].path, luksconv.OutputOptions{Overwrite: force})
				if err != nil {
					abortAll(jobs)
					return fmt.Errorf("%s: %w", diskName(jobs[i].lun), err)
				}
				jobs[i].out = o
			}
			agg := newAggregate(stderr, jobs, quiet)
			if err := runVMJobs(ctx, jobs, parallel, vf.workers, agg); err != nil {
				abortAll(jobs)
				return err
			}
			for i := range jobs {
				if err := jobs[i].out.Commit(ctx); err != nil {
					jobs[i].out = nil
					abortAll(jobs[i+1:])
					// The files committed before this one go too: the VM's disks are converted together
					// or not at all (a device, which has no temporary name, is left as it is).
					for _, j := range jobs[:i] {
						if _, ok := j.out.(*luksconv.FileOutput); ok {
							os.Remove(j.path)
						}
					}
					return fmt.Errorf("%s: %w", diskName(jobs[i].lun), err)
				}
			}
			var verr error
			if verify {
				for _, j := range jobs {
					if err := verifyOutput(c, j.plan, j.src, j.path, j.path, vf.workers, quiet || asJSON); err != nil {
						if !errors.Is(err, luksconv.ErrVerifyFailed) {
							return fmt.Errorf("%s: %w", diskName(j.lun), err)
						}
						verr = errors.Join(verr, fmt.Errorf("%s: %w", diskName(j.lun), err))
					}
				}
			}
			if asJSON {
				type disk struct {
					LUN    int              `json:"lun"`
					Output string           `json:"output"`
					Result *luksconv.Result `json:"result"`
				}
				var out []disk
				for _, j := range jobs {
					out = append(out, disk{j.lun, j.path, j.res})
				}
				if err := writeJSON(c.OutOrStdout(), struct {
					Plan  *luksconv.VMPlan `json:"plan"`
					Disks []disk           `json:"disks"`
				}{vp, out}); err != nil {
					return err
				}
				return verr
			}
			for _, j := range jobs {
				fmt.Fprintf(c.OutOrStdout(), "converted %s -> %s: decrypted %s, copied %s, wrote %s in %s\n", diskName(j.lun), j.path,
					human(j.res.BytesDecrypted), human(j.res.BytesCopied), human(j.res.BytesWritten), j.res.Duration.Round(time.Millisecond))
			}
			return verr
		},
	}
	vf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the plans and results as JSON on standard output")
	c.Flags().BoolVar(&force, "force", false, "replace outputs that exist")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no plan summary and no progress (warnings are still printed)")
	c.Flags().BoolVar(&verify, "verify", false, "re-read every output and check it against its plan (see verify)")
	c.Flags().IntVar(&parallel, "parallel", 2, "disks converted at the same time")
	return c
}

func newVMVerifyCmd() *cobra.Command {
	var vf vmFlags
	var asJSON bool
	var maxMis int
	c := &cobra.Command{
		Use:   "verify --os IMAGE --key-file F [--data LUN=IMAGE --data-key LUN=F]... OUTDIR",
		Short: "Check the outputs of vm convert in OUTDIR against a fresh plan of the VM: every byte of every disk",
		Long: "vm verify plans the VM again from the disks and options vm convert was given (--format, --keep-guest,\n" +
			"--full-copy, ...) and checks each output in OUTDIR (os.raw, lun<N>.raw; .vhd with --format vhd) against its disk's\n" +
			"plan as verify does. The OS disk's edits for the data volumes and a crypt-on-LVM data volume are planned from the\n" +
			"whole VM, so verify of one disk alone cannot check them. It exits 0 when every disk passes and 9 when one differs.",
		Args: usageArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			disks, err := vf.disks()
			if err != nil {
				return err
			}
			vp, srcs, err := vf.plan(c, disks)
			if err != nil {
				return err
			}
			defer closeSources(srcs)
			defer vp.Close()
			type diskReport struct {
				LUN    int                    `json:"lun"`
				Output string                 `json:"output"`
				Report *luksconv.VerifyReport `json:"report"`
			}
			var reps []diskReport
			var verr error
			// Every disk is checked, also after one failed: the report says which outputs to redo.
			for _, j := range vmJobs(vp, srcs, args[0], vf.format) {
				o, err := openOutput(ctx, j.plan, j.path, vf.workers)
				if err != nil {
					if err = outputUnreadable(err); !errors.Is(err, luksconv.ErrVerifyFailed) {
						return fmt.Errorf("%s: %w", diskName(j.lun), err)
					}
					verr = errors.Join(verr, fmt.Errorf("%s: %w", diskName(j.lun), err))
					continue
				}
				o.Path = j.path
				rep, err := luksconv.Verify(ctx, j.plan, j.src, o, luksconv.VerifyOptions{Workers: vf.workers, MaxMismatches: maxMis})
				o.Close()
				if rep == nil {
					return fmt.Errorf("%s: %w", diskName(j.lun), err)
				}
				if !asJSON {
					printVerify(c.OutOrStdout(), j.path, rep)
				}
				reps = append(reps, diskReport{j.lun, j.path, rep})
				if err != nil {
					verr = errors.Join(verr, fmt.Errorf("%s: %w", diskName(j.lun), err))
				}
			}
			if asJSON {
				if err := writeJSON(c.OutOrStdout(), reps); err != nil {
					return errors.Join(verr, err)
				}
			}
			return verr
		},
	}
	vf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the reports as JSON (a list, one per disk)")
	c.Flags().IntVar(&maxMis, "max-mismatches", 20, "mismatching ranges listed per disk (all are counted)")
	return c
}

// vmJob is one disk of a VM conversion.
type vmJob struct {
	lun  int
	plan *luksconv.Plan
	src  *luksconv.Source
	path string
	out  luksconv.Output
	res  *luksconv.Result
}

// vmJobs lists the conversions of vp's disks (srcs in the order the plan was made: the OS disk, then
// data disks by LUN) into dir.
func vmJobs(vp *luksconv.VMPlan, srcs []*luksconv.Source, dir, format string) []vmJob {
	jobs := []vmJob{{lun: luksconv.OSDisk, plan: vp.OS, src: srcs[0], path: filepath.Join(dir, "os."+format)}}
	for i, d := range vp.Data {
		jobs = append(jobs, vmJob{lun: d.LUN, plan: d.Plan, src: srcs[1+i], path: filepath.Join(dir, fmt.Sprintf("lun%d.%s", d.LUN, format))})
	}
	return jobs
}

func abortAll(jobs []vmJob) {
	for _, j := range jobs {
		if j.out != nil {
			j.out.Abort()
		}
	}
}

// runVMJobs executes the jobs, parallel at a time; the first error cancels the others.
func runVMJobs(ctx context.Context, jobs []vmJob, parallel, workers int, agg *aggregate) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := range jobs {
		j := &jobs[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			// A panic fails the disk like an error, so that every output is aborted.
			err := recovered.Call(func() (err error) {
				j.res, err = luksconv.Execute(ctx, j.plan, j.src, j.out, luksconv.ExecuteOptions{Workers: workers,
					Progress: debugProgress(func(p luksconv.Progress) { agg.update(i, p) })})
				return err
			})
			if err != nil {
				once.Do(func() {
					first = fmt.Errorf("%s: %w", diskName(j.lun), err)
					cancel(first)
				})
			}
		}()
	}
	wg.Wait()
	agg.finish()
	if first == nil && ctx.Err() != nil {
		first = context.Cause(ctx)
	}
	return first
}

// aggregate sums the progress of a VM's disks into one display.
type aggregate struct {
	mu    sync.Mutex
	pr    *progressReporter
	done  []int64
	total int64
	start time.Time
}

func newAggregate(w io.Writer, jobs []vmJob, quiet bool) *aggregate {
	a := &aggregate{done: make([]int64, len(jobs)), start: time.Now()}
	for _, j := range jobs {
		a.total += j.plan.Totals.Copy + j.plan.Totals.Decrypt
	}
	a.pr = newProgress(w, a.total, quiet)
	return a
}

func (a *aggregate) update(i int, p luksconv.Progress) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.done[i] = p.Done
	var sum int64
	for _, d := range a.done {
		sum += d
	}
	a.pr.update(luksconv.Progress{Done: sum, Total: a.total, Elapsed: time.Since(a.start)})
}

func (a *aggregate) finish() {
	a.mu.Lock()
	defer a.mu.Unlock()
	var sum int64
	for _, d := range a.done {
		sum += d
	}
	a.pr.update(luksconv.Progress{Done: sum, Total: a.total, Elapsed: time.Since(a.start), Final: true})
}
