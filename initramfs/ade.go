package initramfs

import (
	"bytes"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/luksconv/luksconv/guest"
)

// ADEEdit returns the Edit that removes Azure Disk Encryption's hooks and files from an initramfs (the
// 91adeOnline and 91ade variants, including 91ade's embedded /osluksheader: guest.ADEInitramfsFile) and
// rewrites the image's copies of the guest's configuration with the rules the guest package applies to
// the guest's own files, under the same Policy:
//
//   - etc/crypttab: pol.FixCrypttab;
//   - etc/fstab: pol.FixFstab;
//   - etc/lvm/lvm.conf: guest.Policy.FixLVMConf;
//   - etc/cmdline.d/*.conf and etc/cmdline, the command lines dracut reads besides the boot loader's:
//     pol.FixDracutCmdline (ADE's kernel arguments removed; pol.AddArgs are not added);
//   - dracut's modules.txt and build-parameter.txt (usr/lib/dracut or lib/dracut):
//     guest.FixDracutModulesList and guest.FixDracutBuildParameters.
//
// So the image holds what a dracut run in the converted guest would put there.
//
// An initramfs-tools image (Ubuntu's mkinitramfs: IsInitramfsTools) loses, by guest.ADEInitramfsToolsFile,
// ADE's boot script crypt-ade-boot, the copies of the LUKS header, the keyscript azure_crypt_key.sh, and
// the directories only they were in (mnt/azure_bek_disk, boot/luks, conf/conf.d/cryptheader, through
// Edit.RemovePrefix); and its own copies are rewritten:
//
//   - scripts/*/ORDER: guest.FixInitramfsToolsOrder (the removed scripts' lines);
//   - cryptroot/crypttab: pol.FixCrypttab; conf/conf.d/cryptroot (older cryptroot hooks):
//     pol.FixCryptrootConf;
//   - etc/fstab: pol.FixInitramfsToolsFstab (the BEK volume's and /boot's lines ADE's hook added),
//     instead of dracut's rule.
//
// The findings describe each removal and rewrite, and what an edit cannot fix: a 90crypt module
// patched by ADE's pre-2018 flow, other hooks that reference the osencrypt mapping, ADE residue
// guest.Scan still finds in a built-in command line after the edit, and, in an initramfs-tools image,
// any other file that still names osencrypt, azure_crypt_key or crypt-ade. Those need the initramfs to
// be rebuilt in the guest (their findings say "rebuild").
func ADEEdit(im *Image, pol guest.Policy) (Edit, []string) {
	e := Edit{Replace: map[string][]byte{}}
	var findings []string
	files := im.Files()
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tools := IsInitramfsTools(im)
	removed := map[string]bool{}
	adeDirs := map[string]string{} // ADE's directories (initramfs-tools images) and what they are
	for _, k := range keys {
		ent := files[k]
		var what string
		var ok bool
		if tools {
			what, ok = guest.ADEInitramfsToolsFile(k, ent.IsDir())
		}
		if !ok && !ent.IsDir() {
			what, _, ok = guest.ADEInitramfsFile(k)
		}
		switch {
		case !ok:
			continue
		case ent.IsDir():
			adeDirs[k] = what
			continue
		}
		e.Remove = append(e.Remove, k)
		removed[k] = true
		if path.Base(k) == "osluksheader" {
			what = fmt.Sprintf("%s (%d bytes)", what, ent.FileSize)
		}
		findings = append(findings, fmt.Sprintf("remove %s: %s", k, what))
	}
	// An ADE directory goes, with everything below it, when all of that is ADE's: a directory left in
	// place would be harmless, but it is ADE's trace (mnt/azure_bek_disk), and one that also holds
	// something else is kept.
	for _, d := range keys {
		what, ok := adeDirs[d]
		if !ok || removed[d] {
			continue
		}
		all := true
		for _, k := range keys {
			if strings.HasPrefix(k, d+"/") && !removed[k] && adeDirs[k] == "" {
				all = false
				break
			}
		}
		if !all {
			continue
		}
		e.RemovePrefix = append(e.RemovePrefix, d)
		removed[d] = true
		for _, k := range keys {
			if strings.HasPrefix(k, d+"/") {
				removed[k] = true
			}
		}
		findings = append(findings, fmt.Sprintf("remove %s/: %s", d, what))
	}
	// The image's copies of guest files, each with the guest's rule for it.
	fixed := map[string][]byte{} // content after the edit, for the residue checks below
	for _, k := range keys {
		fix := textRule(k, pol, tools)
		if fix == nil || removed[k] || !files[k].IsRegular() {
			continue
		}
		b, err := im.ReadFile(k)
		if err != nil {
			continue
		}
		nb, changes := fix(k, b)
		fixed[k] = b
		if nb == nil {
			continue
		}
		fixed[k] = nb
		e.Replace[k] = nb
		var whys []string
		for _, c := range changes {
			if !slices.Contains(whys, c.Why) {
				whys = append(whys, c.Why)
			}
		}
		findings = append(findings, fmt.Sprintf("rewrite %s: %s", k, strings.Join(whys, "; ")))
	}
	// What an edit cannot undo, or what it leaves behind.
	for _, k := range keys {
		ent := files[k]
		if removed[k] || !ent.IsRegular() {
			continue
		}
		base := path.Base(k)
		data, err := im.ReadFile(k)
		if err != nil {
			continue
		}
		if b, ok := fixed[k]; ok {
			data = b
		}
		if tools {
			var names []string
			for _, s := range initramfsToolsResidue {
				if bytes.Contains(data, []byte(s)) {
					names = append(names, s)
				}
			}
			if names != nil {
				findings = append(findings, fmt.Sprintf("%s: still names %s after the edit; rebuild the initramfs in the guest (update-initramfs -u) once ADE's initramfs-tools files are disabled", k, strings.Join(names, ", ")))
				continue
			}
		}
		switch {
		case (base == "cryptroot-ask" || base == "30-parse-crypt.sh" || base == "parse-crypt.sh") &&
			(bytes.Contains(data, []byte("osencrypt")) || bytes.Contains(data, []byte("azure_bek_disk")) ||
				bytes.Contains(data, []byte("BEK VOLUME"))):
			findings = append(findings, fmt.Sprintf("%s: 90crypt patched by ADE's old flow; this cannot be undone in the initramfs, rebuild it with dracut after restoring 90crypt", k))
		case isHookPath(k) && bytes.Contains(data, []byte("osencrypt")):
			findings = append(findings, fmt.Sprintf("%s: dracut hook references osencrypt; rebuild the initramfs", k))
		case isCmdlineFile(k):
			var what []string
			for _, f := range guest.Scan(k, fixed[k]) {
				if !slices.Contains(what, f.What) {
					what = append(what, f.What)
				}
			}
			if what != nil {
				findings = append(findings, fmt.Sprintf("%s: built-in kernel arguments still hold ADE residue (%s); rebuild the initramfs", k, strings.Join(what, "; ")))
			}
		}
	}
	if len(e.Replace) == 0 {
		e.Replace = nil
	}
	return e, findings
}

// initramfsToolsResidue are the strings no file of an initramfs-tools image holds once ADE's files
// are out of it: ADE's mapper, keyscript and scripts.
var initramfsToolsResidue = []string{"osencrypt", "azure_crypt_key", "crypt-ade"}

// IsInitramfsTools reports whether im was made by initramfs-tools' mkinitramfs (Debian, Ubuntu) rather
// than dracut: it has mkinitramfs's conf/initramfs.conf and its boot scripts' scripts/functions.
func IsInitramfsTools(im *Image) bool {
	files := im.Files()
	conf, fn := files["conf/initramfs.conf"], files["scripts/functions"]
	return conf != nil && conf.IsRegular() && fn != nil && fn.IsRegular()
}

// textRule returns the guest rule for the image file k (a CleanPath name), nil for files that are no
// copy of a guest file ADE changes; tools selects the rules of an initramfs-tools image.
func textRule(k string, pol guest.Policy, tools bool) func(string, []byte) ([]byte, []guest.Change) {
	if tools {
		img := pol
		img.FstabAdd = nil
		switch d, f := path.Split(k); {
		case k == "etc/fstab":
			return func(_ string, b []byte) ([]byte, []guest.Change) { return img.FixInitramfsToolsFstab(b) }
		case k == "cryptroot/crypttab":
			return func(_ string, b []byte) ([]byte, []guest.Change) { return pol.FixCrypttab(b) }
		case k == "conf/conf.d/cryptroot":
			return pol.FixCryptrootConf
		case f == "ORDER" && strings.HasPrefix(d, "scripts/") && strings.Count(d, "/") == 2:
			return guest.FixInitramfsToolsOrder
		}
	}
	switch k {
	case "etc/crypttab":
		return func(_ string, b []byte) ([]byte, []guest.Change) { return pol.FixCrypttab(b) }
	case "etc/fstab":
		// Lines to add belong to the guest's own fstab: an image's holds only the entries dracut put
		// there for the early boot (add_fstab, the root), never the data volumes'.
		img := pol
		img.FstabAdd = nil
		return func(_ string, b []byte) ([]byte, []guest.Change) { return img.FixFstab(b) }
	case "etc/lvm/devices/system.devices":
		return func(_ string, b []byte) ([]byte, []guest.Change) { return pol.FixLVMDevices(b) }
	case "etc/lvm/lvm.conf":
		return func(_ string, b []byte) ([]byte, []guest.Change) { return pol.FixLVMConf(b) }
	case "usr/lib/dracut/modules.txt", "lib/dracut/modules.txt":
		return guest.FixDracutModulesList
	case "usr/lib/dracut/build-parameter.txt", "lib/dracut/build-parameter.txt":
		return guest.FixDracutBuildParameters
	}
	if isCmdlineFile(k) {
		return pol.FixDracutCmdline
	}
	return nil
}

// isCmdlineFile reports whether k is a command line file dracut-lib's getcmdline reads in the
// initramfs: etc/cmdline, or etc/cmdline.d/*.conf.
func isCmdlineFile(k string) bool {
	if k == "etc/cmdline" {
		return true
	}
	d, f := path.Split(k)
	return d == "etc/cmdline.d/" && strings.HasSuffix(f, ".conf")
}

// isHookPath reports whether k lies in a dracut hook directory (usr/lib/dracut/hooks on current
// dracut, lib/dracut/hooks or var/lib/dracut/hooks on older ones).
func isHookPath(k string) bool {
	return strings.Contains("/"+k, "/dracut/hooks/")
}
