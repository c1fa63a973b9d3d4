package guest

import (
	"regexp"
	"slices"
	"strings"
)

// bekKeyFile is the key file ADE's crypttab lines use, on the BEK volume (with a _<c>_<l> suffix for
// data volumes).
const bekKeyFile = "/mnt/azure_bek_disk/LinuxPassPhraseFileName"

// FixCrypttab is Policy{}.FixCrypttab.
func FixCrypttab(b []byte) ([]byte, []Change) { return Policy{}.FixCrypttab(b) }

// FixCrypttab drops the crypttab entries of the volumes being converted: the osencrypt line always
// (all ADE forms: `osencrypt /dev/disk/by-partuuid/<PARTUUID> /mnt/azure_bek_disk/... luks,...`
// written without a trailing newline, and RHEL 7's `osencrypt UUID=osencrypt-locked none
// discard,header=/osluksheader`), plus p.CrypttabMappers and, with p.CrypttabBEK, every entry keyed by
// the BEK volume. ADE's "#This line was added by Azure Disk Encryption" line above a dropped entry goes
// with it. Other lines are kept byte for byte. The result is nil when nothing needs changing.
func (p Policy) FixCrypttab(b []byte) ([]byte, []Change) {
	return dropLines(PathCrypttab, b, func(f []string) string {
		switch {
		case f[0] == "osencrypt":
			return "drop the crypttab entry of ADE's OS volume osencrypt"
		case slices.Contains(p.CrypttabMappers, f[0]):
			return "drop the crypttab entry of converted volume " + f[0]
		case p.CrypttabBEK && len(f) >= 3 && strings.HasPrefix(f[2], bekKeyFile):
			return "drop the crypttab entry of ADE volume " + f[0] + " (key file on the BEK volume)"
		}
		return ""
	})
}

// bekLabel is the fstab spec of the ADE BEK volume ("BEK VOLUME", space escaped as fstab requires).
const bekLabel = `LABEL=BEK\040VOLUME`

// FixFstab drops ADE's BEK volume lines from /etc/fstab: `LABEL=BEK\040VOLUME /mnt/azure_bek_disk
// auto defaults,discard,nofail 0 0` and the /bek form (any mount point: no other volume has that
// label). ADE's marker comment above a dropped line goes with it. The result is nil when nothing
// needs changing.
func FixFstab(b []byte) ([]byte, []Change) {
	return dropLines(PathFstab, b, func(f []string) string {
		if f[0] != bekLabel {
			return ""
		}
		mp := "?"
		if len(f) > 1 {
			mp = f[1]
		}
		return "drop the fstab entry of the ADE BEK volume (" + mp + ")"
	})
}

// dropLines removes the non-comment lines for which why(fields) is not "", and an ADE marker comment
// directly above each.
func dropLines(path string, b []byte, why func(fields []string) string) ([]byte, []Change) {
	ls := splitLines(b)
	drop := make([]bool, len(ls))
	var changes []Change
	for i, l := range ls {
		f := strings.Fields(l.text)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		w := why(f)
		if w == "" {
			continue
		}
		drop[i] = true
		before := []string{l.text}
		if i > 0 && !drop[i-1] && strings.TrimSpace(ls[i-1].text) == adeComment {
			drop[i-1] = true
			before = []string{ls[i-1].text, l.text}
		}
		changes = append(changes, newChange(path, w, before, nil))
	}
	if changes == nil {
		return nil, nil
	}
	out := ls[:0:0]
	for i, l := range ls {
		if !drop[i] {
			out = append(out, l)
		}
	}
	// Dropping an unterminated last line leaves the previous line's newline in place, which is right.
	return joinLines(out), changes
}

// lvmFilterRE matches the line ADE appends to lvm.conf on LVM OS disks,
// `devices { filter = ["a|osencrypt|", "r|<PARTUUID>|"] }`, tolerating only blank differences.
var lvmFilterRE = regexp.MustCompile(`^\s*devices\s*\{\s*filter\s*=\s*\[\s*"a\|osencrypt\|"\s*,\s*"r\|[0-9A-Fa-f-]+\|"\s*\]\s*\}\s*$`)

// FixLVMConf drops the devices/filter line ADE appends to /etc/lvm/lvm.conf on LVM OS disks
// (`devices { filter = ["a|osencrypt|", "r|<PARTUUID>|"] }`). After decryption the PV sits on the
// partition that filter rejects, so LVM would not find rootvg. ADE appends "\n" + line + "\n"; the
// blank line before it is dropped too, which restores the original bytes. No other filter is touched.
// The result is nil when nothing needs changing.
func FixLVMConf(b []byte) ([]byte, []Change) {
	ls := splitLines(b)
	drop := make([]bool, len(ls))
	var changes []Change
	for i, l := range ls {
		if !lvmFilterRE.MatchString(l.text) {
			continue
		}
		drop[i] = true
		before := []string{l.text}
		if i > 0 && ls[i-1].text == "" && !drop[i-1] {
			drop[i-1] = true
			before = []string{"", l.text}
		}
		changes = append(changes, newChange(PathLVMConf,
			"drop ADE's LVM filter (it rejects the partition that now holds the plaintext PV)", before, nil))
	}
	if changes == nil {
		return nil, nil
	}
	out := ls[:0:0]
	for i, l := range ls {
		if !drop[i] {
			out = append(out, l)
		}
	}
	return joinLines(out), changes
}
