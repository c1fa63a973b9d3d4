package main

import (
	"context"
	"errors"

	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/diskcipher"
	"github.com/luksconv/luksconv/gpt"
	"github.com/luksconv/luksconv/internal/recovered"
	"github.com/luksconv/luksconv/luks"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/lvm"
	"github.com/luksconv/luksconv/vhd"
)

// Exit codes. Documented in the README; keep the two in step.
const (
	exitOK           = 0
	exitFailure      = 1 // I/O errors and anything not listed below
	exitUsage        = 2 // bad flags or a request that does not fit the disk
	exitWrongKey     = 3 // no keyslot opens with the passphrase
	exitUnsupported  = 4 // a format, cipher or feature luksconv does not convert; a guest edit it cannot make in place (--strict-initramfs)
	exitCorrupt      = 5 // damaged or truncated input
	exitReencrypting = 6 // a LUKS2 re-encryption is in progress (ADE's encryption was interrupted)
	exitOutput       = 7 // the output cannot be written where asked (exists, is the input)
	exitNothingToDo  = 8 // no encrypted volume found
	exitVerifyFailed = 9 // verify (or convert --verify) found the output differs from the plan
	exitInterrupted  = 130
)

// exitLimit: an input over a resource limit, a keyslot's KDF cost (--kdf-max-memory, --kdf-max-time).
const exitLimit = 10

// exitFollowUp: the VM is re-created on the new disks, but a step after it (its RHEL licensing) failed;
// a rerun sets it (azure.FinishLicensing) once the cause is fixed, or a person does as the hint says.
const exitFollowUp = 11

// exitCode maps an error to the documented exit code.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, new(*recovered.Error)):
		// A bug, whatever its value wraps: a rerun may not meet it (a fleet engine retries exit 1).
		return exitFailure
	case errors.Is(err, luksconv.ErrVerifyFailed):
		return exitVerifyFailed
	case errors.As(err, new(*azure.LicenseError)):
		return exitFollowUp
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, errUsage), errors.Is(err, luksconv.ErrInvalidOption), errors.Is(err, luksconv.ErrNoSuchPartition),
		errors.Is(err, luksconv.ErrAmbiguous), errors.Is(err, luksconv.ErrNeedHeader), errors.Is(err, luksconv.ErrHeaderMismatch),
		errors.Is(err, luksconv.ErrKeyFile), errors.Is(err, luksconv.ErrMissingDisk), errors.Is(err, azure.ErrNotFound),
		errors.Is(err, azure.ErrDiskSKU), errors.Is(err, azure.ErrLicense), errors.Is(err, azure.ErrDESMismatch), errors.Is(err, luksconv.ErrInputType),
		errors.Is(err, luks.ErrKeyslotUnusable):
		return exitUsage
	case errors.Is(err, luks.ErrKDFLimit):
		return exitLimit
	case errors.Is(err, luks.ErrWrongPassphrase), errors.Is(err, azure.ErrBadSecret):
		return exitWrongKey
	case errors.Is(err, luks.ErrReencryptInProgress):
		return exitReencrypting
	case errors.Is(err, luks.ErrUnsupported), errors.Is(err, vhd.ErrUnsupported), errors.Is(err, diskcipher.ErrUnsupported), errors.Is(err, lvm.ErrUnsupported),
		errors.Is(err, luksconv.ErrGuestEdit), errors.Is(err, luksconv.ErrGuestUnsupported), errors.Is(err, azure.ErrUnsupported):
		return exitUnsupported
	case errors.Is(err, luks.ErrCorrupt), errors.Is(err, gpt.ErrCorrupt), errors.Is(err, vhd.ErrCorrupt),
		errors.Is(err, gpt.ErrNoGPT), errors.Is(err, luks.ErrNotLUKS), errors.Is(err, luksconv.ErrTruncated), errors.Is(err, errRecord):
		return exitCorrupt
	case errors.Is(err, luksconv.ErrOutputExists), errors.Is(err, luksconv.ErrOutputIsInput), errors.Is(err, luksconv.ErrOutputTooSmall),
		errors.Is(err, luksconv.ErrOutputType), errors.Is(err, luksconv.ErrOutputDir), errors.Is(err, errOutput), errors.Is(err, azure.ErrExists):
		return exitOutput
	case errors.Is(err, luksconv.ErrNothingToConvert), errors.Is(err, azure.ErrNoEncryptionSettings):
		return exitNothingToDo
	}
	return exitFailure
}

var (
	errUsage  = errors.New("usage")
	errOutput = errors.New("output")
)

// flagHints say which flag answers a library error; the library never names flags.
var flagHints = []struct {
	err  error
	hint string
}{
	{luksconv.ErrAmbiguous, "name the encrypted partition with --partition N (see luksconv inspect)"},
	{luksconv.ErrNeedHeader, "give the detached header with --header F (ADE keeps it in /boot/luks/osluksheader)"},
	{luksconv.ErrNothingToConvert, "give the detached header with --header F, or convert the disk with its VM (luksconv vm convert) when the header is on the OS disk"},
	{luksconv.ErrHeaderMismatch, "check --header and --partition; --allow-unknown-content converts anyway"},
	{luksconv.ErrNoSuchPartition, "see the partitions with luksconv inspect IMAGE"},
	{luksconv.ErrOutputExists, "use --force to replace it"},
	{luksconv.ErrKeyFile, "--key-file takes a regular file; --key-file - reads standard input"},
	{luks.ErrKeyslotUnusable, "--keyslot names a keyslot that opens the volume; see the keyslots with luksconv inspect (default: try every one)"},
	{luks.ErrKDFLimit, "if the header is trusted, raise the limit with --kdf-max-memory SIZE or --kdf-max-time DURATION"},
	{azure.ErrDiskSKU, "--sku chooses the new disk's SKU"},
	{azure.ErrDESMismatch, "--des names a Disk Encryption Set in the new disk's region and subscription (those of the source)"},
	{luksconv.ErrGuestUnsupported, "--keep-guest converts the disk without editing the guest (it then needs its boot configuration fixed by hand)"},
	{azure.ErrLicense, "--license payg or --license byos"},
	{luksconv.ErrMissingDisk, "give the disk holding that PV too (--data LUN=FILE --data-key LUN=KEY)"},
}

// hintFor adds a likely cause, or the flag that helps, to some errors.
func hintFor(err error) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		return h.Hint()
	}
	var pe *luksconv.PassphraseError
	if errors.As(err, &pe) {
		return pe.Hint
	}
	for _, fh := range flagHints {
		if errors.Is(err, fh.err) {
			return fh.hint
		}
	}
	return ""
}
