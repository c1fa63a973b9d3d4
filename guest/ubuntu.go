package guest

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Ubuntu's ADE (16.04/18.04 and 20.04/22.04 stop-and-copy OS flows, ade-internals §10.3) boots through
// initramfs-tools instead of dracut. Besides the crypttab, fstab and kernel command line edits the
// rules above cover (root=/dev/mapper/osencrypt: see Policy.RootUUID), it
//
//   - installs initramfs-tools files: hooks/crypt-ade-hook and scripts/init-premount/crypt-ade-boot
//     (20.04/22.04), hooks/luksheader and the keyscript /usr/sbin/azure_crypt_key.sh (16.04/18.04),
//     listed in InitramfsToolsADEFiles and disabled with DisableScript;
//   - appends CRYPTDISKS_MOUNT="$CRYPTDISKS_MOUNT /mnt/azure_bek_disk" to /etc/default/cryptdisks
//     (FixCryptdisks);
//   - puts into every initrd: crypt-ade-boot and its ORDER line, copies of the LUKS header
//     (boot/luks/osluksheader, conf/conf.d/cryptheader/osluksheader), the keyscript, the mount point
//     mnt/azure_bek_disk, the osencrypt entry in cryptroot/crypttab or conf/conf.d/cryptroot, and two
//     lines in etc/fstab (/boot and the BEK volume). ADEInitramfsToolsFile classifies the files;
//     FixInitramfsToolsOrder, FixCryptrootConf, FixCrypttab and FixInitramfsToolsFstab edit the copies.

// PathCryptdisks is the cryptsetup package's defaults file, where ADE adds its BEK mount point to
// CRYPTDISKS_MOUNT on Ubuntu.
const PathCryptdisks = "/etc/default/cryptdisks"

// cryptdisksMountRE matches an assignment of CRYPTDISKS_MOUNT (group 2 is the value and what follows).
var cryptdisksMountRE = regexp.MustCompile(`^(\s*(?:export\s+)?CRYPTDISKS_MOUNT=)(.*)$`)

// FixCryptdisks removes ADE's BEK volume mount point /mnt/azure_bek_disk from the CRYPTDISKS_MOUNT
// assignments of /etc/default/cryptdisks (the mount points cryptdisks mounts before it unlocks the
// crypttab volumes, for key files on them). ADE appends
// `CRYPTDISKS_MOUNT="$CRYPTDISKS_MOUNT /mnt/azure_bek_disk"` after a blank line; once the BEK word is
// gone such a line only assigns the variable to itself, so it is removed, together with the blank line
// directly before it (which restores the package's file byte for byte). An assignment that keeps other
// mount points keeps them, in order, with its quotes; one that named only the BEK mount point and no
// $CRYPTDISKS_MOUNT becomes empty (CRYPTDISKS_MOUNT=""), which is what it then means. Other lines are
// kept byte for byte; a value quoted over several lines is left alone. The result is nil when nothing
// needs changing. Change.Path is PathCryptdisks.
func FixCryptdisks(b []byte) ([]byte, []Change) {
	const why = "drop ADE's BEK volume mount point " + bekMountPoint + " from CRYPTDISKS_MOUNT (its fstab entry is gone, and no crypttab entry needs the key file on it)"
	ls := splitLines(b)
	drop := make([]bool, len(ls))
	var changes []Change
	for i, l := range ls {
		m := cryptdisksMountRE.FindStringSubmatch(l.text)
		if m == nil {
			continue
		}
		val, q, rest, ok := cutShellWord(m[2])
		if !ok {
			continue
		}
		words := strings.Fields(val)
		kept := slices.DeleteFunc(slices.Clone(words), isBEKMount)
		if len(kept) == len(words) {
			continue
		}
		self := len(kept) > 0 && !slices.ContainsFunc(kept, func(w string) bool {
			return w != "$CRYPTDISKS_MOUNT" && w != "${CRYPTDISKS_MOUNT}"
		})
		if self && strings.TrimSpace(rest) == "" {
			drop[i] = true
			before := []string{l.text}
			if i > 0 && !drop[i-1] && ls[i-1].text == "" {
				drop[i-1] = true
				before = []string{"", l.text}
			}
			changes = append(changes, newChange(PathCryptdisks, why+" (the line then only assigned the variable to itself: removed)", before, nil))
			continue
		}
		v := strings.Join(kept, " ")
		if q == "" && (len(kept) > 1 || v == "") {
			q = `"`
		}
		text := m[1] + q + v + q + rest
		changes = append(changes, newChange(PathCryptdisks, why, []string{l.text}, []string{text}))
		ls[i].text = text
	}
	if changes == nil {
		return nil, nil
	}
	return withoutLines(ls, drop), changes
}

// FixCryptrootConf is Policy{}.FixCryptrootConf.
func FixCryptrootConf(path string, b []byte) ([]byte, []Change) {
	return Policy{}.FixCryptrootConf(path, b)
}

// FixCryptrootConf drops ADE's entries from conf/conf.d/cryptroot in an initramfs-tools image, the
// crypttab copy that older cryptroot hooks (Ubuntu 16.04/18.04) write, one volume a line as
// comma-separated settings: `target=osencrypt,source=/dev/sda1,key=none,rootdev,
// keyscript=/lib/cryptsetup/scripts/azure_crypt_key.sh,header=/conf/conf.d/cryptheader/osluksheader`.
// The entries dropped are those FixCrypttab drops from crypttab, by the same Policy: target osencrypt,
// the targets in p.CrypttabMappers and, with p.CrypttabBEK, every target whose key= is on the BEK
// volume. Other lines are kept byte for byte. The result is nil when nothing needs changing.
// Change.Path is path.
func (p Policy) FixCryptrootConf(path string, b []byte) ([]byte, []Change) {
	return dropLines(path, b, func(f []string) string {
		var target, key string
		for _, kv := range strings.Split(strings.Join(f, " "), ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			switch k {
			case "target":
				target = v
			case "key":
				key = v
			}
		}
		switch {
		case target == "":
			return ""
		case target == "osencrypt":
			return "drop the cryptroot entry of ADE's OS volume osencrypt"
		case slices.Contains(p.CrypttabMappers, target):
			return "drop the cryptroot entry of converted volume " + target
		case p.CrypttabBEK && strings.HasPrefix(key, bekKeyFile):
			return "drop the cryptroot entry of ADE volume " + target + " (key file on the BEK volume)"
		}
		return ""
	})
}

// FixInitramfsToolsFstab is Policy{}.FixInitramfsToolsFstab.
func FixInitramfsToolsFstab(b []byte) ([]byte, []Change) { return Policy{}.FixInitramfsToolsFstab(b) }

// FixInitramfsToolsFstab edits the etc/fstab of an initramfs-tools image: FixFstab's rule (the BEK
// volume's lines, which ADE's crypt-ade-hook writes as `/dev/disk/by-label/BEK\x20VOLUME
// /mnt/azure_bek_disk auto defaults 0 0`; p.FstabDrop, p.FstabDevices), without p.FstabAdd, which is
// for the guest's own fstab, and also every line that mounts /boot: crypt-ade-hook adds
// `/dev/disk/by-uuid/<UUID> /boot ext2 defaults 0 0` so that crypt-ade-boot's `mount -a` makes the
// detached header readable. mkinitramfs itself leaves etc/fstab empty and initramfs-tools' own boot
// never reads it, so such a line has no other user. The guest's /etc/fstab keeps its /boot line (use
// FixFstab there): the /boot partition stays. Change.Path is PathFstab, as for FixFstab. The result is
// nil when nothing needs changing.
func (p Policy) FixInitramfsToolsFstab(b []byte) ([]byte, []Change) {
	return editLines(PathFstab, b, func(f []string) (string, bool, string) {
		if repl, drop, why := p.fstabLine(f); why != "" {
			return repl, drop, why
		}
		if len(f) > 1 && unescapeOctal(f[1]) == "/boot" {
			return "", true, "drop the /boot entry ADE's initramfs hook added to the image's fstab (only ADE's boot script mounted it, to read the LUKS header)"
		}
		return "", false, ""
	})
}

// ADEFile is a file ADE installs in the guest.
type ADEFile struct {
	Path string // the guest path
	What string // what it is, for plans and reports
}

// InitramfsToolsADEFiles are the files ADE installs on an Ubuntu guest for initramfs-tools, which
// mkinitramfs runs (hooks) or copies into every initrd (the boot script, the keyscript): as long as
// they are there, every update-initramfs brings ADE back into the initrd. DisableScript gives the
// content that replaces each. Ubuntu 16.04/18.04's `patch -b` of hooks/cryptroot (cryptroot.orig
// kept) is not listed: it is cryptsetup's hook, to be restored rather than disabled.
var InitramfsToolsADEFiles = []ADEFile{
	{"/usr/share/initramfs-tools/hooks/crypt-ade-hook",
		"ADE's initramfs-tools hook crypt-ade-hook (Ubuntu 20.04/22.04): copies the LUKS header into the initrd and adds the /boot and BEK volume lines to its fstab"},
	{"/usr/share/initramfs-tools/scripts/init-premount/crypt-ade-boot",
		"ADE's initramfs-tools boot script crypt-ade-boot (Ubuntu 20.04/22.04): mounts /boot and the BEK volume and opens the root partition as osencrypt"},
	{"/usr/share/initramfs-tools/hooks/luksheader",
		"ADE's initramfs-tools hook luksheader (Ubuntu 16.04/18.04): copies the LUKS header into the initrd"},
	{"/usr/sbin/azure_crypt_key.sh",
		"ADE's keyscript azure_crypt_key.sh (Ubuntu 16.04/18.04): reads the passphrase from the BEK volume for crypttab's keyscript= option"},
}

// initramfsToolsADEFile returns the entry of InitramfsToolsADEFiles for the guest path p, which may
// carry a mount prefix (/mnt/root/usr/sbin/azure_crypt_key.sh).
func initramfsToolsADEFile(p string) (ADEFile, bool) {
	for _, f := range InitramfsToolsADEFiles {
		if p == f.Path || strings.HasSuffix(p, f.Path) {
			return f, true
		}
	}
	return ADEFile{}, false
}

// disabledScripts are the replacements DisableScript writes, longest first. They name no part of
// ADE's files (neither the mapper nor the keyscript, scripts or BEK volume) so that a scan for ADE's
// strings over the guest finds none. mkinitramfs runs hooks and boot scripts with the argument
// prereqs and reads their prerequisites from the output: none, here.
var disabledScripts = []string{
	"#!/bin/sh\n" +
		"# Disabled by luksconv: this Azure Disk Encryption file unlocked the OS disk, which is no longer\n" +
		"# encrypted. It does nothing, whether run as a hook, a boot script or a keyscript, and with any\n" +
		"# arguments (prereqs included).\n" +
		"exit 0\n",
	"#!/bin/sh\n# disabled by luksconv (Azure Disk Encryption)\nexit 0\n",
	"#!/bin/sh\nexit 0\n",
	"#!/bin/sh\n",
}

// DisableScript returns the content that replaces one of ADE's initramfs-tools files
// (InitramfsToolsADEFiles: a hook, a boot script, the keyscript) so that it does nothing: a POSIX sh
// script that exits 0 with no output, with a comment saying luksconv disabled it, which names none of
// ADE's strings. The longest built-in form that fits in room is used (room is the space the file may
// take, its allocated blocks; a value below len(b) means the file's own size); if not even "#!/bin/sh\n"
// fits, the result is an error. Content that already is one of these forms is left alone (nil result).
// Change.Path is empty: the caller knows which file it read.
func DisableScript(b []byte, room int) ([]byte, []Change, error) {
	if isDisabledScript(b) {
		return nil, nil, nil
	}
	limit := max(room, len(b))
	for _, s := range disabledScripts {
		if len(s) > limit {
			continue
		}
		var before, after []string
		for _, l := range splitLines(b) {
			before = append(before, l.text)
		}
		for _, l := range splitLines([]byte(s)) {
			after = append(after, l.text)
		}
		return []byte(s), []Change{newChange("", "replace ADE's initramfs-tools file by a script that does nothing (left out of new initrds' boot, no key or header copied)", before, after)}, nil
	}
	short := disabledScripts[len(disabledScripts)-1]
	return nil, nil, fmt.Errorf("initramfs-tools script: the %d-byte disabling script does not fit in %d bytes", len(short), limit)
}

// isDisabledScript reports whether b is one of DisableScript's forms.
func isDisabledScript(b []byte) bool {
	for _, s := range disabledScripts {
		if bytes.Equal(b, []byte(s)) {
			return true
		}
	}
	return false
}

// ADEInitramfsToolsFile reports whether p, a path inside an initramfs-tools image (an archive name; a
// leading "/" or "./" does not matter), is something ADE's Ubuntu hooks put there, and says what:
//
//   - a boot script whose name starts with crypt-ade (scripts/init-premount/crypt-ade-boot), wherever
//     it is;
//   - any file named osluksheader: the copies of the LUKS header (boot/luks/osluksheader by
//     luksheader or crypt-ade-hook, conf/conf.d/cryptheader/osluksheader by the patched cryptroot
//     hook);
//   - the keyscript azure_crypt_key.sh wherever cryptroot copied it (usr/sbin, sbin,
//     lib/cryptsetup/scripts);
//   - the BEK volume's mount point mnt/azure_bek_disk and everything below it;
//   - the directories that only hold the header copies, boot/luks and conf/conf.d/cryptheader: the
//     caller removes a directory only when everything below it is ADE's too.
//
// dir says the entry is a directory, which is ADE's only in the last two cases. This is the rule for
// initramfs-tools images only: dracut images follow ADEInitramfsFile.
func ADEInitramfsToolsFile(p string, dir bool) (what string, ok bool) {
	c := path.Clean("/" + p)
	base := path.Base(c)
	switch {
	case c == bekMountPoint || strings.HasPrefix(c, bekMountPoint+"/"):
		return "the BEK volume's mount point (ADE's crypt-ade-hook)", true
	case dir && (c == "/boot/luks" || c == "/conf/conf.d/cryptheader"):
		return "directory of ADE's copy of the LUKS header", true
	case dir:
		return "", false
	case base == "osluksheader":
		return "ADE's copy of the LUKS header", true
	case base == "azure_crypt_key.sh":
		return "ADE's keyscript azure_crypt_key.sh", true
	case base == "crypt-ade" || strings.HasPrefix(base, "crypt-ade-"):
		return "ADE's initramfs-tools script " + base, true
	}
	return "", false
}

// orderParamLine is the line mkinitramfs writes after each script in a scripts/*/ORDER file.
const orderParamLine = "[ -e /conf/param.conf ] && . /conf/param.conf"

// FixInitramfsToolsOrder drops ADE's boot scripts (ADEInitramfsToolsFile) from an ORDER file of an
// initramfs-tools image (scripts/init-premount/ORDER...), where mkinitramfs lists each script of the
// directory as `/scripts/init-premount/crypt-ade-boot "$@"` followed by
// `[ -e /conf/param.conf ] && . /conf/param.conf`: both lines go, so the file is what mkinitramfs
// writes without the script (empty when it was the only one). Other lines are kept byte for byte. The
// result is nil when nothing needs changing. Change.Path is path.
func FixInitramfsToolsOrder(path string, b []byte) ([]byte, []Change) {
	ls := splitLines(b)
	drop := make([]bool, len(ls))
	var changes []Change
	for i, l := range ls {
		f := strings.Fields(l.text)
		if len(f) == 0 || !strings.HasPrefix(f[0], "/scripts/") {
			continue
		}
		if _, ok := ADEInitramfsToolsFile(f[0], false); !ok {
			continue
		}
		drop[i] = true
		before := []string{l.text}
		if i+1 < len(ls) && strings.TrimSpace(ls[i+1].text) == orderParamLine {
			drop[i+1] = true
			before = append(before, ls[i+1].text)
		}
		changes = append(changes, newChange(path, "drop ADE's boot script "+f[0]+" from the order the initrd runs its scripts in", before, nil))
	}
	if changes == nil {
		return nil, nil
	}
	return withoutLines(ls, drop), changes
}
