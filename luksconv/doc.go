// Package luksconv converts a disk image holding a LUKS-encrypted volume — an Azure Disk Encryption
// OS disk first of all — into a plaintext disk image, offline and streaming. It needs no root, no
// loop device and no device-mapper, and it never writes to its source.
//
// The work runs in four steps:
//
//   - Inspect reads the partition table and says what each partition holds, including ADE's
//     detached header on /boot. It needs no key.
//   - NewPlan unlocks the volume and lays out the output as plain data: Copy, Decrypt and Zero regions
//     and byte patches. It reads only metadata.
//   - Execute streams the source through bounded workers into an Output (CreateOutput: a sparse
//     file, a fixed VHD, a block device; the blobdisk package: a managed disk's upload), decrypting
//     on the way; the caller then commits the output.
//   - Verify reads the output back and compares every byte with the plan, then checks its partition
//     table, LVM metadata and XFS superblocks.
//
// Unless PlanOptions.KeepGuest is set, the plan also undoes ADE inside the guest so the output boots
// without it (Plan.Edits): kernel arguments in grubenv, BLS entries, grub.cfg, /etc/default/grub and
// /etc/kernel/cmdline, and grubenv and grub.cfg on the EFI System Partition (FAT); the osencrypt
// crypttab line, the BEK fstab line, the lvm.conf filter, ADE's dracut settings and modules; ADE's
// hooks in the initramfs images; and the detached header and /var/lib/azure_disk_encryption_config
// are zeroed. What is ADE's is decided by the guest package, for the root filesystem and the
// initramfs copies alike. Each edit rewrites a file of an XFS or FAT filesystem (/boot, the ESP, the
// root and the volumes its fstab mounts, found by looking) inside the blocks the file already owns,
// as byte patches applied while streaming, so the filesystems stay consistent for xfs_repair and
// fsck.fat. Plan.Readiness summarises what is left for a LEAPP upgrade, and Inspect reports the same
// for the filesystems it can read without a key.
//
// # Safety
//
// The source is only ever read. No output may be an input of the plan — the source image, the
// detached header file, the key file — under any name (ErrOutputIsInput), whatever
// OutputOptions.Overwrite says. An output never looks complete before Output.Commit. Secrets stay out
// of plans, reports and errors; the unlocked key lives in the Plan, unexported, until Plan.Close.
//
// # Concurrency
//
// A Plan is safe for concurrent use, Close included (running Execute and Verify calls stop with
// ErrPlanClosed). A Source is safe for concurrent use when its reader is. The outputs of this package
// are safe for concurrent WriteAt calls. Reports, results and options are plain data.
//
// # Errors
//
// Errors wrap the sentinel errors of this package (ErrNoSuchPartition, ErrOutputIsInput, ...) and of
// the format packages (luks.ErrWrongPassphrase, xfs.ErrCorrupt, ...); test them with errors.Is. An
// error read from one layer of the disk — a partition, the decrypted volume, a logical volume — is a
// *LayerError that names the layer and the byte offset in the image. Warnings carry a WarningCode.
// No message names a command-line flag.
//
// # Zero ciphertext
//
// An encryption sector whose ciphertext is all zero was never written through dm-crypt: real XTS or
// CBC ciphertext is all zero with probability 2^-4096 per 512-byte sector. ADE's RHEL 7 copy
// (`dd conv=sparse` onto the dm-crypt device) leaves such sectors wherever the plaintext block was zero,
// and discards (TRIM) leave them in space the filesystem freed. The running guest reads them as
// pseudo-random bytes. The policy:
//
//   - In free space (XFS and ext free space, an empty ext journal's log area, free LVM extents) they
//     become zero plaintext. By default free space is not read at all; with FullCopy it is read and
//     decrypted, except for these sectors.
//   - In the internal log of an XFS filesystem whose log is clean, they become zero plaintext too. The
//     log is metadata that only log recovery reads: past the unmount record it must hold blocks whose
//     cycle numbers end the log (zeros, as mkfs writes them), and pseudo-random bytes there make the
//     kernel and xfs_repair fail to find the log head ("Log inconsistent"). The sparse copy skipped
//     those blocks because their plaintext was zero, so zero is what the filesystem wrote there.
//   - Everywhere else (file data and other metadata in use) they are decrypted like any other sector:
//     the output then holds what the running guest read, which is the faithful copy.
//
// The analysis that finds free space and checks the XFS log (and the guest edits) reads the volume
// through luks.Reader.WithZeroCiphertextAsZero, which maps every all-zero ciphertext sector to zero
// plaintext: the filesystem is judged as it was before the sparse copy, which is also how the output's
// log and free space are written. Decrypting the log's zero sectors for the analysis would make every
// RHEL 7 sparse volume look like a dirty log and turn off used-block-aware copying for it. Execute
// counts the all-zero ciphertext it meets (Result.ZeroCiphertextZeroed and
// Result.ZeroCiphertextDecrypted); free space skipped without reading is not counted.
package luksconv
