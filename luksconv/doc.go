// Package luksconv converts a disk image holding a LUKS-encrypted volume — an Azure Disk Encryption OS
// disk first of all — into a plaintext disk image, offline and streaming.
//
// The work runs in three steps:
//
//   - Inspect reads the partition table and says what each partition holds.
//   - NewPlan unlocks the volume and lays out the output as plain data: Copy, Decrypt and Zero regions
//     and byte patches. It reads only metadata.
//   - Execute streams the source through bounded workers into a Sink, decrypting on the way.
//
// Unless PlanOptions.KeepGuest is set, the plan also undoes ADE inside the guest so the output boots
// without it (Plan.Edits): kernel arguments in grubenv, BLS entries, grub.cfg, /etc/default/grub and
// /etc/kernel/cmdline; the osencrypt crypttab line, the BEK fstab line, the lvm.conf filter, ADE's
// dracut settings and modules; ADE's hooks in the initramfs images; and the detached header and
// /var/lib/azure_disk_encryption_config are zeroed. Each edit rewrites a file of an XFS filesystem
// (/boot, the root and the volumes its fstab mounts, found by looking) inside the blocks the file
// already owns, as byte patches applied while streaming, so the filesystems stay consistent for
// xfs_repair. The EFI System Partition (FAT) is not edited yet. Plan.Readiness summarises what is left
// for a LEAPP upgrade, and Inspect reports the same for the filesystems it can read without a key.
//
// The source is only ever read. Secrets stay out of plans, reports and errors; the unlocked key lives
// in the Plan, unexported, until Plan.Close.
package luksconv
