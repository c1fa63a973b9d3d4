// Package guest undoes what Azure Disk Encryption (ADE) changed in a RHEL 7/8/9 or Ubuntu
// 16.04-24.04 guest's configuration files, as pure text transforms: bytes in, bytes out plus a description of every edit. It does no I/O;
// the caller reads the files from the guest's XFS, ext and FAT filesystems and writes the results back in place.
//
// This package is the one owner of the rules for what is ADE's: crypttab and fstab lines, lvm.conf
// filters, kernel arguments, dracut settings and module names, and ADE's files inside an initramfs
// ([ADEInitramfsFile], [IsADEDracutModule]; [ADEInitramfsToolsFile] for Ubuntu's initramfs-tools
// images, whose copies [FixInitramfsToolsOrder], [Policy.FixCryptrootConf] and
// [Policy.FixInitramfsToolsFstab] edit). The initramfs package applies these same functions to the
// copies dracut put into an image (etc/crypttab, etc/fstab, etc/lvm/lvm.conf, etc/cmdline.d/*.conf,
// modules.txt, build-parameter.txt), with the same Policy, so a converted guest and its initramfs
// images never disagree about them; a rule changes here, for both.
//
// What ADE changes (see the project's ade-internals.md §4):
//
//   - kernel arguments rd.luks.ade.partuuid=, rd.luks.ade.bootuuid= (and their deprecated aliases
//     rd_LUKS_PARTUUID=, rd_LUKS_BOOTUUID=, which ADE's module still reads), rd.debug, and for RAW disks
//     root=/dev/mapper/osencrypt (RHEL 8/9 and RHEL 7 path A); rd.luks.uuid=osencrypt (RHEL 7 path C);
//     early RHEL 8 builds used systemd's rd.luks.name=<uuid>=osencrypt with rd.luks.options/key/data/hdr
//     for the same <uuid>. They live in /etc/default/grub (GRUB_CMDLINE_LINUX and appended
//     `GRUB_CMDLINE_LINUX+=" ... "` lines, often duplicated), the grubenv kernelopts variable (RHEL 8),
//     BLS entries' options lines (RHEL 9), grub.cfg linux/linux16/linuxefi lines (RHEL 7) and
//     `set kernelopts=` fallbacks (RHEL 8), and possibly /etc/kernel/cmdline;
//   - the osencrypt line in /etc/crypttab, the BEK volume line in /etc/fstab, the devices/filter line
//     appended to /etc/lvm/lvm.conf, /etc/dracut.conf.d/ade.conf and ADE's lines in /etc/dracut.conf;
//   - the dracut modules 91adeOnline / 91ade, disabled here by rewriting their module-setup.sh, and
//     the hooks, scripts, udev rules and (91ade) LUKS header they put into every initramfs;
//   - on Ubuntu (ade-internals §10.3): root=/dev/mapper/osencrypt as the only root= of the kernel
//     command line (replaced by root=UUID=..., see [Policy.RootUUID]), /etc/default/cryptdisks
//     ([FixCryptdisks]), and initramfs-tools hooks, a boot script and a keyscript
//     ([InitramfsToolsADEFiles], disabled with [DisableScript]) that put the LUKS header, the
//     keyscript, the BEK volume's fstab and mount point into every initrd.
//
// Every Fix function returns nil content (and no changes) when the input needs no edit, so a second
// pass over fixed content is a no-op. Outputs never exceed the caller's space: most are shorter than
// the input; functions that may grow content take max, the bytes available to the file (its allocated
// blocks), and FixGrubenv keeps the exact size.
//
// Redaction: these files hold no secrets, but Change lines and removed arguments are passed through
// a redactor that replaces the value of any name=value whose name ends in key, pass, passwd, password,
// passphrase, secret or token (case-insensitive, e.g. rd.luks.key=…) with "<redacted>", in case a
// guest carries a key or passphrase on its command line. Only descriptions are redacted, never the
// returned content.
package guest

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
)

// Change is one edit to one file, for the conversion plan and the report. Before and After hold the
// changed lines only (After is empty when lines were removed), redacted as described in the package
// documentation. Path is the file's conventional guest path for functions that edit a fixed file
// (/etc/crypttab, ...) or the path the caller passed; it is empty for FixGrubenv and
// DisableDracutModule, whose caller knows which file it read.
type Change struct {
	Path   string   // the file's guest path, or "" (see above)
	Why    string   // why the lines changed, one phrase for the report
	Before []string // the changed lines as they were
	After  []string // the lines that replace them; empty when lines were removed
}

// Finding is one piece of ADE residue reported by [Scan]. Line is 1-based; 0 means the whole file.
type Finding struct {
	Path string // the file name given to Scan
	What string // what was found, a phrase for the report
	Line int    // 1-based line; 0 for the whole file
}

// Conventional guest paths of the fixed-location files, used in Change.Path.
const (
	PathDefaultGrub   = "/etc/default/grub"   // GRUB_CMDLINE_LINUX and the other grub-mkconfig settings
	PathKernelCmdline = "/etc/kernel/cmdline" // the command line kernel-install gives new BLS entries
	PathCrypttab      = "/etc/crypttab"       // encrypted volumes to unlock at boot
	PathFstab         = "/etc/fstab"          // filesystems to mount
	PathLVMConf       = "/etc/lvm/lvm.conf"   // LVM configuration, where ADE appends a device filter
)

// Policy widens what the Fix functions remove. The zero value is the default policy, used by the
// package-level functions of the same names.
type Policy struct {
	// DropDebug removes rd.debug from every command line. By default rd.debug is removed only from a
	// line that also carried an ADE argument, since ADE always added it together with those; RHEL 7
	// path B (legacy 91ade) added rd.debug alone, so a caller that found the 91ade module (or ADE's
	// `GRUB_CMDLINE_LINUX+=" rd.debug"` line) should set it.
	DropDebug bool
	// CrypttabMappers names further crypttab mappers to drop besides osencrypt, for example
	// "resourceencrypt" or a data disk's mapper, when those disks are converted too.
	CrypttabMappers []string
	// CrypttabBEK drops every crypttab entry whose key file is on the ADE BEK volume
	// (/mnt/azure_bek_disk/LinuxPassPhraseFileName*), i.e. all ADE data volumes.
	CrypttabBEK bool
	// FstabDevices maps fstab devices to the specs that replace them: a converted data volume's
	// /dev/mapper/<uuid> (ADE's dm-crypt device) to UUID=<the filesystem UUID the volume holds>.
	FstabDevices map[string]string
	// FstabDrop lists fstab devices whose lines are dropped: /dev/mapper/resourceencrypt when the VM is
	// converted (its new resource disk is not encrypted).
	FstabDrop []string
	// LVMDevices maps ADE's dm-crypt devices (/dev/mapper/osencrypt, a data volume's
	// /dev/mapper/<mapper>) to the plain devices their PVs sit on once converted, as crypttab names
	// them, for the LVM devices file (FixLVMDevices).
	LVMDevices map[string]string
	// DisableLVMDevicesFile sets use_devicesfile = 0 in lvm.conf (Policy.FixLVMConf): the devices file
	// named converted PVs by their dm-crypt devices, and what identifies them once plaintext (the new
	// disks' WWIDs) cannot be known offline. lvm's search for a PV whose entry names no present device
	// skips disks with a stable ID, as Azure's are, so with the file in use their VGs would not be
	// found. After the first boot `vgimportdevices -a` and use_devicesfile = 1 turn it on again.
	DisableLVMDevicesFile bool
	// FstabAdd are fstab lines to append when fstab lacks them: those of the converted volumes that
	// ADE's legacy azure_crypt_mount listed, whose lines ADE removed. They are for the guest's own
	// /etc/fstab; the initramfs package leaves them out of an image's copy.
	FstabAdd []string
	// RootUUID, when set, is the UUID of the root filesystem, and root=/dev/mapper/osencrypt is replaced
	// by root=UUID=<RootUUID> instead of removed on every command line the Fix functions edit
	// (FixCmdline, FixGrubenv's kernelopts, FixBLSEntry, FixGrubCfg, FixDefaultGrub, FixKernelCmdline,
	// FixDracutCmdline), in place and once per command line. Ubuntu's ADE puts that argument on
	// command lines that name the root no other way (GRUB_CMDLINE_LINUX="root=/dev/mapper/osencrypt ",
	// grub.cfg's `root=/dev/mapper/osencrypt ro ...`), so removing it would leave the kernel without a
	// root; RHEL's lines also carry grub's own root=. A command line that already has another root=
	// argument only loses the osencrypt one. The replacement is 20 bytes longer than what it replaces
	// for a 36-character UUID: FixDefaultGrub checks it against max and FixGrubenv against the block's
	// padding, as for AddArgs. A value that is no plain word (blanks, quotes, backslashes, '$') is
	// ignored, as if unset. Unset, the argument is removed (RHEL's RAW disks, whose grub adds its own
	// root=).
	RootUUID string
	// AddArgs are kernel arguments to append to every command line the kernel command line functions
	// edit (FixCmdline, FixGrubenv's kernelopts, FixBLSEntry, FixGrubCfg, FixDefaultGrub's
	// GRUB_CMDLINE_LINUX, FixKernelCmdline), each once: an argument the command line already holds is
	// not added again, so a second pass is a no-op. Lines that take their arguments from
	// $kernelopts are left to the kernelopts variable. Each entry must be one plain argument, as
	// in rd.ade=0: entries that are empty or hold blanks, quotes, backslashes or '$', and entries
	// FixCmdline removes, are ignored.
	AddArgs []string
	// AddWhy, if set, explains AddArgs in the Why of every Change that adds them.
	AddWhy string
}

// addWhy describes added arguments for a Change's Why.
func (p Policy) addWhy(added []string) string {
	s := "add kernel arguments " + strings.Join(added, " ")
	if p.AddWhy != "" {
		s += " (" + p.AddWhy + ")"
	}
	return s
}

// editWhy describes an edit of a command line: the argument root that replaced
// root=/dev/mapper/osencrypt ("" if none), the other removed ADE arguments (where follows them),
// added arguments.
func (p Policy) editWhy(removed, added []string, root, where string) string {
	var parts []string
	if root != "" {
		if i := slices.Index(removed, osencryptRoot); i >= 0 {
			removed = slices.Delete(slices.Clone(removed), i, i+1)
		}
		parts = append(parts, "replace ADE's "+osencryptRoot+" by "+root+
			" (the root filesystem, no longer behind the dm-crypt mapper)")
	}
	if len(removed) > 0 {
		parts = append(parts, "remove ADE kernel arguments "+strings.Join(removed, " ")+where)
	}
	if added != nil {
		parts = append(parts, p.addWhy(added))
	}
	return strings.Join(parts, "; ")
}

// line is one line of a text file without its terminator; nl is "\n" or "" for a last line that
// has none.
type line struct {
	text string
	nl   string
}

func splitLines(b []byte) []line {
	var ls []line
	s := string(b)
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			ls = append(ls, line{s, ""})
			break
		}
		ls = append(ls, line{s[:i], "\n"})
		s = s[i+1:]
	}
	return ls
}

// joinLines is the inverse of splitLines; it never returns nil, which the Fix functions reserve for
// "no change".
func joinLines(ls []line) []byte {
	buf := bytes.NewBuffer([]byte{})
	for _, l := range ls {
		buf.WriteString(l.text)
		buf.WriteString(l.nl)
	}
	return buf.Bytes()
}

// adeComment is the marker line ADE writes above the crypttab and fstab lines it adds for data
// volumes; it is dropped together with the line it annotates.
const adeComment = "#This line was added by Azure Disk Encryption"

var secretRE = regexp.MustCompile(`(?i)(^|[\s,;"'])([\w.\-]*(?:key|pass|passwd|password|passphrase|secret|token))=([^\s,;"']*)`)

// redact hides the values of key=/password=-like settings in a line meant for a report.
func redact(s string) string {
	return secretRE.ReplaceAllString(s, "$1$2=<redacted>")
}

func redactAll(ss []string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = redact(s)
	}
	return out
}

func newChange(path, why string, before, after []string) Change {
	return Change{Path: path, Why: why, Before: redactAll(before), After: redactAll(after)}
}

// room returns the largest output size allowed: max, but never less than the input's own size,
// since shrinking or keeping the size always fits.
func room(n, max int) int {
	if max < n {
		return n
	}
	return max
}
