package guest

import (
	"bytes"
	"fmt"
	"path"
	"strings"
)

// Scan reports ADE residue in one file's content, for the readiness check before a LEAPP upgrade
// and to verify a conversion. file is the guest path; it selects the whole-file checks:
//
//   - any line: rd.luks.ade arguments and their deprecated aliases rd_LUKS_PARTUUID and
//     rd_LUKS_BOOTUUID, references to the osencrypt mapper, ADE's LVM filter (the filter or
//     global_filter settings FixLVMConf removes; reported on the line where they start), the BEK volume
//     fstab line, crypttab entries keyed by the BEK volume, ADE's dracut settings;
//   - dracut.conf.d/ade.conf: any active setting;
//   - a grubenv (base name grubenv, or content with the grubenv signature): a size other than
//     1024 bytes, or a missing signature;
//   - /etc/default/grub: no final newline;
//   - module-setup.sh of the 91adeOnline/91ade dracut modules, unless already disabled. Files in
//     those module directories get no line checks: their scripts name rd.luks.ade and osencrypt by
//     design and are inert once module-setup.sh is disabled.
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
		if f[0] == bekLabel {
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
	}
	return fs
}

// adeModuleFile returns "91adeOnline" or "91ade" when p is inside that dracut module directory.
func adeModuleFile(p string) string {
	for _, d := range strings.Split(path.Dir(p), "/") {
		if m := adeModuleDir(d); m != "" {
			return m
		}
	}
	return ""
}
