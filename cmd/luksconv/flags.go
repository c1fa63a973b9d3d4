package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/luksconv/luksconv/blobdisk"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/luks"
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
	c.Flags().IntVar(&v.partition, "partition", 0, "partition number of the encrypted volume, as Linux numbers it (GPT or MBR; default: find it)")
}

// workersUsage is the help of a --workers flag whose workers do what: the bound the root command's
// pre-run enforces and the engine's default (luksconv's pipeline: the CPUs, at least 2 and at most 16).
func workersUsage(what string) string {
	return fmt.Sprintf("%s, at most %d (default: the number of CPUs, at least 2 and at most 16)", what, luksconv.MaxWorkers)
}

// openHeader opens the detached header, if one was named. The caller closes it.
func (v *volumeFlags) openHeader() (*luksconv.Header, error) {
	if v.header == "" {
		return nil, nil
	}
	h, err := luksconv.OpenHeader(v.header)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", errUsage, err)
	}
	return h, nil
}

// planFlags choose how the volume is converted; plan, convert, verify and azure convert share them.
type planFlags struct {
	volumeFlags
	keyslot      int
	allowUnknown bool
	fullCopy     bool
	keepGuest    bool
	strictInitrd bool
	kdfMemory    sizeFlag
	kdfTime      time.Duration
}

func (pf *planFlags) register(c *cobra.Command) {
	pf.volumeFlags.register(c)
	fl := c.Flags()
	fl.IntVar(&pf.keyslot, "keyslot", -1, "try only this keyslot (-1: every active one)")
	fl.BoolVar(&pf.allowUnknown, "allow-unknown-content", false, "convert even if the plaintext has no recognisable signature")
	fl.BoolVar(&pf.fullCopy, "full-copy", false, "read and write free space too (default: free LVM extents, XFS and ext free space, empty ext journals' log areas and unused ext4 inode tables become zeros)")
	fl.BoolVar(&pf.keepGuest, "keep-guest", false, "do not edit the guest: the output is the source with the volume decrypted, byte for byte (default: undo ADE in /boot and the root filesystem)")
	fl.BoolVar(&pf.strictInitrd, "strict-initramfs", false, "fail if an initramfs holding ADE's hooks cannot be rewritten in place (default: warn and leave it)")
	fl.Var(&pf.kdfMemory, "kdf-max-memory", fmt.Sprintf("largest Argon2 memory cost of a keyslot that is tried, e.g. 2GiB (default: %d MiB here: 4 GiB, at most half the available memory)", luks.DefaultKDFMaxMemoryKiB()>>10))
	fl.DurationVar(&pf.kdfTime, "kdf-max-time", luks.DefaultKDFMaxTime, "longest estimated key derivation (plus digest check) of a keyslot that is tried")
}

// options are the PlanOptions the flags ask for, without the passphrase and the header.
func (pf *planFlags) options(format luksconv.Format) luksconv.PlanOptions {
	opts := luksconv.PlanOptions{Partition: pf.partition, Format: format, AllowUnknownContent: pf.allowUnknown,
		FullCopy: pf.fullCopy, KeepGuest: pf.keepGuest, StrictInitramfs: pf.strictInitrd,
		KDFLimits: luks.KDFLimits{MaxMemoryKiB: int64(pf.kdfMemory) >> 10, MaxTime: pf.kdfTime}}
	if pf.keyslot >= 0 {
		k := pf.keyslot
		opts.Keyslot = &k
	}
	return opts
}

// makePlan opens the header, if one was named, and makes the plan for opts (which hold the
// passphrase). The caller must Close the plan.
func (pf *planFlags) makePlan(ctx context.Context, src *luksconv.Source, opts luksconv.PlanOptions) (*luksconv.Plan, error) {
	hdr, err := pf.openHeader()
	if err != nil {
		return nil, err
	}
	defer hdr.Close()
	opts.Header = hdr
	debugUnlock(opts)
	p, err := luksconv.NewPlan(ctx, src, opts)
	if err != nil {
		return nil, err
	}
	debugPlan(p)
	return p, nil
}

// convertFlags are plan, convert and verify's: the volume, the key and the output format.
type convertFlags struct {
	planFlags
	key    keyFlags
	format string
}

func (cf *convertFlags) register(c *cobra.Command) {
	cf.planFlags.register(c)
	c.Flags().StringVar(&cf.key.file, "key-file", "", "file whose exact bytes are the passphrase (ADE's BEK file); - reads standard input")
	c.Flags().StringVar(&cf.key.env, "key-env", "", "environment variable holding the passphrase")
	c.Flags().StringVar(&cf.format, "format", "raw", "output format: raw (sparse image) or vhd (fixed VHD, padded to a whole MiB for Azure)")
}

// plan unlocks the volume with the key the flags name and lays out the conversion. The caller must
// Close the plan.
func (cf *convertFlags) plan(c *cobra.Command, src *luksconv.Source) (*luksconv.Plan, error) {
	if cf.format != "raw" && cf.format != "vhd" {
		return nil, fmt.Errorf("%w: --format must be raw or vhd, not %q", errUsage, cf.format)
	}
	opts := cf.options(luksconv.Format(cf.format))
	debugKeySource(cf.key)
	if err := cf.key.apply(c.Context(), &opts, c.InOrStdin()); err != nil {
		return nil, err
	}
	defer clear(opts.Passphrase)
	return cf.makePlan(c.Context(), src, opts)
}

// blobTimeout is --timeout: how long a blob source or upload may go without a successful request.
var blobTimeout time.Duration

// openSource opens a local image, or a page blob when path is a SAS URL.
func openSource(ctx context.Context, path string, workers int) (*luksconv.Source, error) {
	if blobdisk.IsURL(path) {
		dlog.Debug("opening page blob", "url", blobio.Redact(path))
		src, err := blobdisk.OpenSource(ctx, path, blobdisk.Options{Workers: workers, Logf: blobLog, Timeout: blobTimeout})
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

// sizeFlag is a byte count given as a number with an optional unit: K, M, G, T (KiB, MiB, ...,
// powers of 1024); a bare number is bytes.
type sizeFlag int64

func (s *sizeFlag) String() string {
	if *s == 0 {
		return ""
	}
	return strconv.FormatInt(int64(*s), 10)
}

func (s *sizeFlag) Type() string { return "size" }

func (s *sizeFlag) Set(v string) error {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(v)), "B"), "I")
	shift := 0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		case 'T':
			shift = 40
		}
		if shift > 0 {
			t = t[:n-1]
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n <= 0 || n > (1<<62)>>shift {
		return fmt.Errorf("%q is not a size (e.g. 512M, 4GiB)", v)
	}
	*s = sizeFlag(n << shift)
	return nil
}
