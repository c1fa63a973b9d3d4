package luksconv

import (
	"errors"
	"fmt"

	"github.com/luksconv/luksconv/fat"
	"github.com/luksconv/luksconv/gpt"
	"github.com/luksconv/luksconv/internal/recovered"
	"github.com/luksconv/luksconv/luks"
	"github.com/luksconv/luksconv/lvm"
	"github.com/luksconv/luksconv/mbr"
	"github.com/luksconv/luksconv/vhd"
	"github.com/luksconv/luksconv/xfs"
)

// Errors a caller must tell apart; test with errors.Is. The format packages have their own
// (luks.ErrWrongPassphrase, luks.ErrReencryptInProgress, gpt.ErrCorrupt, xfs.ErrCorrupt, ...), which
// the errors of this package wrap unchanged. No error names a command-line flag: a program maps these
// to its own options.
var (
	// ErrInvalidOption means an option value cannot be used: an unknown output format, a chunk size
	// that is not whole 4 KiB pages, an output size that is not whole sectors.
	ErrInvalidOption = errors.New("luksconv: invalid option")
	// ErrNoSuchPartition means the partition named (PlanOptions.Partition, InspectOptions.Partition)
	// is not on the disk.
	ErrNoSuchPartition = errors.New("luksconv: no such partition")
	// ErrAmbiguous means more than one partition could be the encrypted volume; name one
	// (PlanOptions.Partition).
	ErrAmbiguous = errors.New("luksconv: more than one candidate volume")
	// ErrNeedHeader means the partition to convert carries no LUKS header of its own and no detached
	// header was given or found on /boot (PlanOptions.Header).
	ErrNeedHeader = errors.New("luksconv: no LUKS header for the volume")
	// ErrHeaderMismatch means a detached header does not belong to the partition: the partition
	// carries a header of its own, or the plaintext it gives has no recognisable signature
	// (PlanOptions.AllowUnknownContent converts anyway).
	ErrHeaderMismatch = errors.New("luksconv: the detached header does not fit the volume")
	// ErrTruncated means the image (or an output being verified) is shorter than its own metadata says.
	ErrTruncated = errors.New("luksconv: image truncated")
	// ErrNothingToConvert means the disk holds no LUKS volume and no detached header was given.
	ErrNothingToConvert = errors.New("luksconv: no encrypted volume found")
	// ErrGuestEdit means a required guest edit cannot be made in place (PlanOptions.StrictInitramfs: an
	// initramfs without ADE's hooks does not fit its file's blocks).
	ErrGuestEdit = errors.New("luksconv: guest edit not possible in place")
	// ErrGuestUnsupported means the guest boots through something luksconv cannot undo yet (ADE's
	// Ubuntu initramfs-tools path): the converted disk would not boot. PlanOptions.KeepGuest converts
	// it without editing the guest.
	ErrGuestUnsupported = errors.New("luksconv: guest boot path not supported")
	// ErrVerifyFailed means an output differs from what its plan describes (Verify).
	ErrVerifyFailed = errors.New("luksconv: output does not match the plan")
	// ErrPlanClosed means the plan holds no unlocked key: it was closed (also while Execute or Verify
	// ran, which then stop), or it was decoded from JSON.
	ErrPlanClosed = errors.New("luksconv: plan is closed (no unlocked key)")
	// ErrMissingDisk means a whole-VM plan (NewVMPlan) lacks a disk that the disks it converts need:
	// a volume group on them lists a physical volume that is on none of the VM's disks given. Nothing
	// is planned; the error names the disk, the volume group and the missing PV.
	ErrMissingDisk = errors.New("luksconv: a disk of the VM is missing")
	// ErrKeyFile means a key file cannot serve as a passphrase: empty, larger than MaxKeyFile, or not a
	// regular file (a FIFO could block forever, a directory holds no key).
	ErrKeyFile = errors.New("luksconv: unusable key file")

	// ErrOutputExists means the output file exists, or is a block device, and OutputOptions.Overwrite
	// was not set.
	ErrOutputExists = errors.New("luksconv: output exists")
	// ErrOutputIsInput means the output is one of the conversion's inputs — the source image, the
	// detached header file or the key file — under any name (a hard link, a symbolic link,
	// /proc/self/fd/N, a loop device backed by it, a partition of the same disk). Nothing is written.
	ErrOutputIsInput = errors.New("luksconv: output is an input of the conversion")
	// ErrOutputTooSmall means a block device cannot hold the converted disk. Nothing is written.
	ErrOutputTooSmall = errors.New("luksconv: output device too small")
	// ErrOutputType means the output path names something that is neither a regular file nor a block
	// device (a directory, a FIFO, a character device).
	ErrOutputType = errors.New("luksconv: output is neither a regular file nor a block device")
	// ErrOutputDir means the output file cannot be created where asked: its directory does not exist,
	// is not a directory, or refuses a new file (permissions, a read-only filesystem). Nothing is
	// written.
	ErrOutputDir = errors.New("luksconv: output directory cannot take the file")
	// ErrInputType means an image or header path names something that is neither a regular file nor
	// a block device (a directory, a FIFO that could block for ever, a character device).
	ErrInputType = errors.New("luksconv: input is neither a regular file nor a block device")
)

// PanicError is a panic on a goroutine of Execute, Verify or a file output's write-behind, returned
// as the call's error (errors.As) instead of ending the process: Value is what panic was called with
// (Unwrap gives it when it is an error), Stack the panicking goroutine's stack. Error() holds no stack.
type PanicError = recovered.Error

// LayerError places an error of a format package in the disk image: the layer it was read from — a
// partition, the decrypted volume, a logical volume, a detached header file — and where that is.
// The format packages' own errors name the structure and its offset within the layer (a
// *xfs.FormatError at "offset 8192" of an LV); LayerError adds the offset within the image, so a
// damaged byte can be found with a hex editor. Unwrap gives the format error: errors.Is and errors.As
// see through it.
type LayerError struct {
	// Layer names what was read: "partition 2", "partition 3 (decrypted)", "LV rootvg/rootlv",
	// "header file osluksheader".
	Layer string
	// Base is the image byte offset of the layer's byte 0, or -1 when the layer is not one run of
	// image bytes (a logical volume, a header file).
	Base int64
	// Offset is the image byte offset of the structure the error names (for ciphertext: of its
	// encrypted copy), or -1 when unknown.
	Offset int64
	// Err is the underlying error, usually a format package's (a *xfs.FormatError, say).
	Err error
}

// Error names the layer and, when known, the image byte offset, then the underlying error.
func (e *LayerError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("%s (image byte %d): %v", e.Layer, e.Offset, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Layer, e.Err)
}

// Unwrap returns the underlying error, so that errors.Is finds the format package's sentinel.
func (e *LayerError) Unwrap() error { return e.Err }

// layerErr wraps err for a layer whose byte 0 is image byte base (-1: not linear in the image);
// toImage, if set, maps an offset within the layer to the image (logical volumes).
func layerErr(layer string, base int64, toImage func(int64) (int64, bool), err error) error {
	if err == nil {
		return nil
	}
	var le *LayerError
	if errors.As(err, &le) {
		return err // already placed
	}
	e := &LayerError{Layer: layer, Base: base, Offset: -1, Err: err}
	if off, ok := formatOffset(err); ok {
		switch {
		case toImage != nil:
			if o, ok := toImage(off); ok {
				e.Offset = o
			}
		case base >= 0:
			e.Offset = base + off
		}
	}
	return e
}

// formatOffset returns the byte offset, within the reader it parsed, that a format package's
// FormatError names.
func formatOffset(err error) (int64, bool) {
	var (
		xe *xfs.FormatError
		le *luks.FormatError
		ve *lvm.FormatError
		ge *gpt.FormatError
		me *mbr.FormatError
		he *vhd.FormatError
		fe *fat.FormatError
	)
	switch {
	case errors.As(err, &xe):
		return xe.Offset, true
	case errors.As(err, &le):
		return le.Offset, true
	case errors.As(err, &ve):
		return ve.Offset, true
	case errors.As(err, &ge):
		return ge.Offset, true
	case errors.As(err, &me):
		return me.Offset, true
	case errors.As(err, &he):
		return he.Offset, true
	case errors.As(err, &fe):
		return fe.Offset, true
	}
	return 0, false
}

// WarningCode classifies a Warning, for programs that act on some warnings and not others.
type WarningCode string

// Warning codes.
const (
	// WarnPartitionTable: the partition table was read with a fallback (the backup GPT, a table
	// without a disk end, no table at all for a whole-disk volume).
	WarnPartitionTable WarningCode = "partition-table"
	// WarnLUKSHeader: the LUKS header reader noted something (a stale or damaged second copy, ...).
	WarnLUKSHeader WarningCode = "luks-header"
	// WarnADEHeader: ADE's detached header on /boot was found but not used, or the partition it names
	// does not exist.
	WarnADEHeader WarningCode = "ade-header"
	// WarnUnreadable: a filesystem or volume could not be read; what it holds is not examined.
	WarnUnreadable WarningCode = "unreadable"
	// WarnUnknownContent: the decrypted volume has no recognisable signature
	// (PlanOptions.AllowUnknownContent).
	WarnUnknownContent WarningCode = "unknown-content"
	// WarnCopiedInFull: free space could not be judged (a dirty XFS log, an unmapped LV type); that
	// filesystem or volume is copied or decrypted in full.
	WarnCopiedInFull WarningCode = "copied-in-full"
	// WarnPadded: the output is padded to a whole MiB (FormatVHD).
	WarnPadded WarningCode = "padded"
	// WarnNotEdited: a guest file that holds ADE's traces could not be edited in place; the readiness
	// check shows what is left.
	WarnNotEdited WarningCode = "not-edited"
	// WarnInitramfsKept: an initramfs keeps ADE's hooks (it could not be rewritten in place); the boot
	// loader gets switch-off arguments where the hook has them.
	WarnInitramfsKept WarningCode = "initramfs-kept"
	// WarnRebuildInitramfs: something can only be undone by rebuilding an initramfs in the guest.
	WarnRebuildInitramfs WarningCode = "rebuild-initramfs"
	// WarnVolumeLeft: a volume ADE encrypted on the VM is not converted in the run and stays encrypted.
	WarnVolumeLeft WarningCode = "volume-left"
	// WarnAfterBoot: something to do in the guest after its first boot (turn the LVM devices file on
	// again).
	WarnAfterBoot WarningCode = "after-boot"
	// WarnGuestLayout: the guest's filesystems were found in an unusual layout (several candidate root
	// filesystems, an fstab that cannot be read).
	WarnGuestLayout WarningCode = "guest-layout"
	// WarnDiskSkipped: an optional data disk of a VM (VMDisk.Optional) holds no volume to convert and
	// is left out of the plan (VMPlan.Skipped).
	WarnDiskSkipped WarningCode = "disk-skipped"
)

// Warning is something a plan or report could not do as asked, or a fact about the disk worth a
// look, that does not stop the conversion.
type Warning struct {
	Code    WarningCode `json:"code"`    // the kind of warning, for programs
	Message string      `json:"message"` // what was found, for people
}

// String returns the warning's message.
func (w Warning) String() string { return w.Message }

func warning(code WarningCode, format string, args ...any) Warning {
	return Warning{Code: code, Message: fmt.Sprintf(format, args...)}
}

// warnings turns a format package's notes into Warnings of one code.
func warnings(code WarningCode, prefix string, notes []string) []Warning {
	var out []Warning
	for _, n := range notes {
		out = append(out, Warning{Code: code, Message: prefix + n})
	}
	return out
}
