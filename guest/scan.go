package guest

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Scan reports ADE residue in one file's content, for the readiness check before a LEAPP upgrade
// and to verify a conversion. file is the guest path; it selects the whole-file checks:
//
//   - any line: rd.luks.ade arguments and their deprecated aliases rd_LUKS_PARTUUID and
//     rd_LUKS_BOOTUUID, references to the osencrypt mapper, ADE's LVM filter (the filter or
//     global_filter settings FixLVMConf removes; reported on the line where they start), the BEK volume
//     fstab line (every form FixFstab drops), crypttab entries keyed by the BEK volume, ADE's dracut
//     settings; and Ubuntu's: references to ADE's keyscript azure_crypt_key.sh and to its
//     initramfs-tools scripts crypt-ade-boot and crypt-ade-hook (a word starting with crypt-ade; the
//     dracut modules' parse-crypt-ade.sh is not one), and any other mention of the BEK volume's mount
//     point /mnt/azure_bek_disk (CRYPTDISKS_MOUNT in /etc/default/cryptdisks), reported only on a line
//     with no other finding;
//   - dracut.conf.d/ade.conf: any active setting;
//   - a grubenv (base name grubenv, or content with the grubenv signature): a size other than
//     1024 bytes, or a missing signature;
//   - /etc/default/grub: no final newline;
//   - module-setup.sh of the 91adeOnline/91ade dracut modules, unless already disabled. Files in
//     those module directories get no line checks: their scripts name rd.luks.ade and osencrypt by
//     design and are inert once module-setup.sh is disabled;
//   - ADE's initramfs-tools files (InitramfsToolsADEFiles, also under a mount prefix), unless
//     DisableScript's content replaced them; they get no line checks either.
//
// Whole-file findings (Line 0) come first, then line findings in line order, at most one per kind
// and line. Comment lines are not checked.
func Scan(file string, b []byte) []Finding {
	p := file
	var fs []Finding
	add := func(line int, what string) { fs = append(fs, Finding{Path: p, What: what, Line: line}) }

	isEnv := path.Base(p) == "grubenv" || bytes.HasPrefix(b, []byte(grubenvSignature))
	if isEnv {
		if !bytes.HasPrefix(b, []byte(grubenvSignature)) {
			add(0, "grubenv without the '# GRUB Environment Block' signature")
		}
		if len(b) != GrubenvSize {
			add(0, fmt.Sprintf("grubenv is %d bytes; GRUB and LEAPP expect exactly %d", len(b), GrubenvSize))
		}
	}
	if p == PathDefaultGrub || strings.HasSuffix(p, "/etc/default/grub") {
		if len(b) > 0 && b[len(b)-1] != '\n' {
			add(0, "no final newline (LEAPP's grub configuration check requires one)")
		}
	}
	if module := adeModuleFile(p); module != "" {
		// The module's scripts mention rd.luks.ade and osencrypt by design; only whether dracut will
		// still include the module matters.
		disabled := false
		for _, s := range disabledModuleScripts {
			disabled = disabled || bytes.Equal(b, []byte(s))
		}
		if path.Base(p) == "module-setup.sh" && !disabled {
			add(0, "ADE's dracut module "+module+" is active (module-setup.sh)")
		}
		return fs
	}
	if f, ok := initramfsToolsADEFile(p); ok {
		if !isDisabledScript(b) {
			add(0, f.What+" is active")
		}
		return fs
	}
	adeConf := isADEConf(p)
	ls := splitLines(b)
	lvmFilter := map[int]bool{}
	for _, st := range lvmFilterSettings(ls) {
		if st.ade() {
			lvmFilter[st.line] = true
		}
	}
	for i, l := range ls {
		n := i + 1
		t := strings.TrimSpace(l.text)
		if t == "" || strings.HasPrefix(t, "#") {
			continue // comments (and grubenv padding) are inert
		}
		f := strings.Fields(t)
		if strings.Contains(t, "rd.luks.ade") {
			add(n, "ADE kernel argument rd.luks.ade.*")
		}
		for _, w := range strings.FieldsFunc(t, func(r rune) bool { return r == ' ' || r == '\t' || r == '"' || r == '\'' }) {
			if k := adeArgAlias(w); k != "" {
				add(n, "ADE kernel argument "+k+" (deprecated alias of rd.luks.ade.*)")
				break
			}
		}
		switch {
		case lvmFilter[i]:
			add(n, "ADE's LVM filter accepting the osencrypt mapper (it hides the plaintext PV)")
		case strings.Contains(t, "osencrypt"):
			add(n, "reference to ADE's dm-crypt mapper osencrypt")
		}
		if isBEKDevice(f[0]) || len(f) >= 3 && isBEKMount(f[1]) {
			add(n, "fstab entry of the ADE BEK volume")
		}
		if len(f) >= 3 && f[0] != "osencrypt" && strings.HasPrefix(f[2], bekKeyFile) {
			add(n, "crypttab entry "+f[0]+" keyed by the ADE BEK volume (LEAPP inhibits on LUKS volumes)")
		}
		if adeConf {
			add(n, "active setting in ADE's dracut configuration ade.conf")
		} else if isADEDracutLine(l.text) {
			add(n, "ADE's dracut setting")
		}
		if strings.Contains(t, "azure_crypt_key") {
			add(n, "reference to ADE's keyscript azure_crypt_key.sh")
		}
		if cryptADERE.MatchString(t) {
			add(n, "reference to ADE's initramfs-tools scripts (crypt-ade-*)")
		}
		if strings.Contains(t, bekMountPoint) && (len(fs) == 0 || fs[len(fs)-1].Line != n) {
			add(n, "reference to the ADE BEK volume's mount point "+bekMountPoint)
		}
	}
	return fs
}

// cryptADERE matches a word starting with crypt-ade: ADE's Ubuntu scripts crypt-ade-boot and
// crypt-ade-hook, not the dracut modules' parse-crypt-ade.sh.
var cryptADERE = regexp.MustCompile(`(?:^|[^A-Za-z0-9_.-])crypt-ade`)

// adeModuleFile returns "91adeOnline" or "91ade" when p is inside that dracut module directory.
func adeModuleFile(p string) string {
	for _, d := range strings.Split(path.Dir(p), "/") {
		if m := adeModuleDir(d); m != "" {
			return m
		}
	}
	return ""
}
