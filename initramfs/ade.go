package initramfs

import (
	"bytes"
	"fmt"
	"path"
	"sort"
	"strings"
)

// adeFiles are the base names of files Azure Disk Encryption's dracut modules put into an initramfs
// (ade-internals §4.1-4.2): 91adeOnline's cmdline hook and generator, 91ade's hook, ask script, udev
// rule and embedded LUKS header, and the udev rule the online hook writes at boot.
var adeFiles = map[string]string{
	"30-parse-crypt-ade.sh":   "ADE cmdline hook (91adeOnline/91ade parse-crypt-ade.sh)",
	"parse-crypt-ade.sh":      "ADE cmdline hook (91adeOnline/91ade parse-crypt-ade.sh)",
	"crypt-run-generator-ade": "91adeOnline crypt-run-generator-ade",
	"cryptroot-ask-ade":       "91ade cryptroot-ask-ade",
	"50-udev-ade.rules":       "91ade udev rule",
	"70-luks-ade.rules":       "ADE udev rule",
}

// adeModules are ADE's dracut module names as dracut lists them in usr/lib/dracut/modules.txt.
var adeModules = map[string]bool{"adeOnline": true, "ade": true}

// ADEEdit returns the Edit that removes Azure Disk Encryption's hooks and files from an initramfs
// (the 91adeOnline and 91ade variants, including 91ade's embedded /osluksheader) and rewrites the
// initramfs' copies of etc/crypttab (StripCrypttab), etc/fstab (StripBEKFstab), etc/lvm/lvm.conf
// (StripLVMFilter), and dracut's modules.txt and build-parameter.txt. The findings describe what was
// found, including what an edit cannot fix: a 90crypt module patched by ADE's pre-2018 flow, and
// other hooks that reference the osencrypt mapping. Those need the initramfs to be rebuilt with dracut.
func ADEEdit(im *Image) (Edit, []string) {
	e := Edit{Replace: map[string][]byte{}}
	var findings []string
	files := im.Files()
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	removed := map[string]bool{}
	for _, k := range keys {
		ent := files[k]
		base := path.Base(k)
		if what, ok := adeFiles[base]; ok && !ent.IsDir() {
			e.Remove = append(e.Remove, k)
			removed[k] = true
			findings = append(findings, fmt.Sprintf("remove %s: %s", k, what))
			continue
		}
		if k == "osluksheader" && !ent.IsDir() {
			e.Remove = append(e.Remove, k)
			removed[k] = true
			findings = append(findings, fmt.Sprintf("remove %s: LUKS header embedded by the 91ade module (%d bytes)", k, ent.FileSize))
			continue
		}
	}
	strip := []struct {
		name string
		fn   func([]byte) []byte
		what string
	}{
		{"etc/crypttab", StripCrypttab, "osencrypt line"},
		{"etc/fstab", StripBEKFstab, "BEK volume line"},
		{"etc/lvm/lvm.conf", StripLVMFilter, "ADE device filter"},
		{"usr/lib/dracut/modules.txt", stripModulesList, "ADE module names"},
		{"lib/dracut/modules.txt", stripModulesList, "ADE module names"},
		{"usr/lib/dracut/build-parameter.txt", stripBuildParameters, "ADE module names"},
		{"lib/dracut/build-parameter.txt", stripBuildParameters, "ADE module names"},
	}
	for _, s := range strip {
		ent, ok := files[s.name]
		if !ok || !ent.IsRegular() {
			continue
		}
		b, err := im.ReadFile(s.name)
		if err != nil {
			continue
		}
		if nb := s.fn(b); !bytes.Equal(nb, b) {
			e.Replace[s.name] = nb
			findings = append(findings, fmt.Sprintf("rewrite %s: drop %s", s.name, s.what))
		}
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
		switch {
		case (base == "cryptroot-ask" || base == "30-parse-crypt.sh" || base == "parse-crypt.sh") &&
			(bytes.Contains(data, []byte("osencrypt")) || bytes.Contains(data, []byte("azure_bek_disk")) ||
				bytes.Contains(data, []byte("BEK VOLUME"))):
			findings = append(findings, fmt.Sprintf("%s: 90crypt patched by ADE's old flow; this cannot be undone in the initramfs, rebuild it with dracut after restoring 90crypt", k))
		case isHookPath(k) && bytes.Contains(data, []byte("osencrypt")):
			findings = append(findings, fmt.Sprintf("%s: dracut hook references osencrypt; rebuild the initramfs", k))
		case strings.HasPrefix(k, "etc/cmdline.d/") && bytes.Contains(data, []byte("osencrypt")):
			findings = append(findings, fmt.Sprintf("%s: built-in kernel arguments reference osencrypt; rebuild the initramfs", k))
		}
	}
	if len(e.Replace) == 0 {
		e.Replace = nil
	}
	return e, findings
}

// isHookPath reports whether k lies in a dracut hook directory (usr/lib/dracut/hooks on current
// dracut, lib/dracut/hooks or var/lib/dracut/hooks on older ones).
func isHookPath(k string) bool {
	return strings.Contains("/"+k, "/dracut/hooks/")
}

// splitLines splits b into lines that keep their "\n", so joining them restores b exactly.
func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, b)
			break
		}
		out = append(out, b[:i+1])
		b = b[i+1:]
	}
	return out
}

// firstField returns the first whitespace-separated field of a line, "" for comments and blanks.
func firstField(line []byte) string {
	f := bytes.Fields(line)
	if len(f) == 0 || f[0][0] == '#' {
		return ""
	}
	return string(f[0])
}

// filterLines keeps the lines drop rejects, byte for byte. A kept last line that lacked a newline still
// lacks it; a dropped line never leaves the previous one without its newline.
func filterLines(b []byte, drop func(line []byte) bool) []byte {
	var out []byte
	for _, l := range splitLines(b) {
		if !drop(l) {
			out = append(out, l...)
		}
	}
	if out == nil {
		return []byte{}
	}
	return out
}

// StripCrypttab removes the lines of a crypttab that open the ADE OS volume (target name osencrypt).
// ADE appends its line without a trailing newline; other lines are kept byte for byte.
func StripCrypttab(b []byte) []byte {
	return filterLines(b, func(l []byte) bool { return firstField(l) == "osencrypt" })
}

// StripBEKFstab removes fstab lines that mount ADE's BEK volume (LABEL=BEK\040VOLUME), as ADE's
// ade_fstab_line and add_bek_in_fstab add them.
func StripBEKFstab(b []byte) []byte {
	return filterLines(b, func(l []byte) bool { return firstField(l) == `LABEL=BEK\040VOLUME` })
}

// StripLVMFilter removes ADE's device filter from an lvm.conf: a filter setting that mentions osencrypt
// (ADE appends `devices { filter = ["a|osencrypt|", "r|<PARTUUID>|"] }` as one line). If the line also
// opens or closes a section, the braces are kept so the rest of the file still parses.
func StripLVMFilter(b []byte) []byte {
	var out []byte
	for _, l := range splitLines(b) {
		t := bytes.TrimSpace(l)
		i := bytes.Index(t, []byte("filter"))
		if len(t) == 0 || t[0] == '#' || i < 0 || !bytes.Contains(t, []byte("osencrypt")) {
			out = append(out, l...)
			continue
		}
		open := bytes.Count(t, []byte("{"))
		closing := bytes.Count(t, []byte("}"))
		if open == closing {
			continue
		}
		// Keep "devices {" before the filter, or the "}" after its closing bracket.
		var keep []byte
		if open > closing {
			keep = bytes.TrimSpace(t[:i])
		} else if j := bytes.LastIndexByte(t, ']'); j >= 0 {
			keep = bytes.TrimSpace(t[j+1:])
		}
		if len(keep) > 0 {
			out = append(out, keep...)
			out = append(out, '\n')
		}
	}
	if out == nil {
		return []byte{}
	}
	return out
}

// stripModulesList removes ADE's module names from dracut's modules.txt (one name per line).
func stripModulesList(b []byte) []byte {
	return filterLines(b, func(l []byte) bool { return adeModules[string(bytes.TrimSpace(l))] })
}

// stripBuildParameters removes ADE's module names from dracut's build-parameter.txt, the command line
// dracut ran with (lsinitrd prints it as "Arguments:"), where they appear as words of a quoted list
// such as --add 'crypt adeOnline'. Each name goes with one space next to it.
func stripBuildParameters(b []byte) []byte {
	sep := func(c byte) bool { return c == ' ' || c == '\'' || c == '"' || c == '\n' || c == '\t' }
	var out []byte
	i := 0
	for i < len(b) {
		if sep(b[i]) {
			out = append(out, b[i])
			i++
			continue
		}
		j := i
		for j < len(b) && !sep(b[j]) {
			j++
		}
		if !adeModules[string(b[i:j])] {
			out = append(out, b[i:j]...)
		} else if n := len(out); n > 0 && out[n-1] == ' ' {
			out = out[:n-1]
		} else if j < len(b) && b[j] == ' ' {
			j++
		}
		i = j
	}
	return out
}
