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
//
// The initramfs package applies this same function, with the same Policy, to an image's etc/crypttab:
// dracut copies the guest's /etc/crypttab into the image, so the copy must be what a dracut run in
// the converted guest would copy, data-volume lines (p.CrypttabBEK, p.CrypttabMappers) and marker
// comments included. The marker annotates the line below it (ade-internals §10.2: ADE writes it above
// each line it adds), so it never outlives that line, on either side.
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

// bekMountPoint is where ADE mounts the BEK volume (RHEL's 91adeOnline uses /bek inside the initramfs).
const bekMountPoint = "/mnt/azure_bek_disk"

// isBEKDevice reports whether an fstab device field names the ADE BEK volume: LABEL=BEK\040VOLUME,
// or the udev link /dev/disk/by-label/BEK\x20VOLUME (udev escapes the blank in link names as the four
// characters \x20, which fstab takes literally; ADE's Ubuntu initramfs hook writes that form), or
// either with the blank octal-escaped differently.
func isBEKDevice(spec string) bool {
	switch spec {
	case bekLabel, `/dev/disk/by-label/BEK\x20VOLUME`:
		return true
	}
	switch unescapeOctal(spec) {
	case "LABEL=BEK VOLUME", "/dev/disk/by-label/BEK VOLUME":
		return true
	}
	return false
}

// isBEKMount reports whether an fstab mount point field is ADE's BEK volume mount point.
func isBEKMount(mp string) bool {
	m := unescapeOctal(mp)
	return m == bekMountPoint || m == bekMountPoint+"/"
}

// isBEKFstabLine reports whether the fields of an fstab line are an entry of the ADE BEK volume: its
// device is the BEK volume, or its mount point ADE's mount point for it.
func isBEKFstabLine(f []string) bool {
	return isBEKDevice(f[0]) || len(f) > 1 && isBEKMount(f[1])
}

// withoutLines joins the lines of ls that drop does not mark. Dropping an unterminated last line
// leaves the previous line's newline in place, which is right.
func withoutLines(ls []line, drop []bool) []byte {
	out := ls[:0:0]
	for i, l := range ls {
		if !drop[i] {
			out = append(out, l)
		}
	}
	return joinLines(out)
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
	return withoutLines(ls, drop), changes
}

// lvmFilterRE matches the line ADE appends to lvm.conf on LVM OS disks,
// `devices { filter = ["a|osencrypt|", "r|<PARTUUID>|"] }`, tolerating only blank differences. It
// only names the change; what is removed is decided by lvmSetting.ade.
var lvmFilterRE = regexp.MustCompile(`^\s*devices\s*\{\s*filter\s*=\s*\[\s*"a\|osencrypt\|"\s*,\s*"r\|[0-9A-Fa-f-]+\|"\s*\]\s*\}\s*$`)

// emptyDevicesRE matches what is left of a one-line devices section once its filter is cut out.
var emptyDevicesRE = regexp.MustCompile(`^devices\s*\{\s*\}$`)

// lvmSetting is one filter or global_filter assignment found in an lvm.conf: from the key at
// (line, col) to just after its value at (endLine, endCol); patterns are the value's strings.
type lvmSetting struct {
	key             string
	line, col       int
	endLine, endCol int
	patterns        []string
}

// ade reports whether the setting is ADE's: its value has an accept pattern naming osencrypt, as
// ADE's ["a|osencrypt|", "r|<PARTUUID>|"] does. See FixLVMConf for why the rule is that wide.
func (s lvmSetting) ade() bool {
	for _, p := range s.patterns {
		if len(p) > 1 && p[0] == 'a' && strings.Contains(p[1:], "osencrypt") {
			return true
		}
	}
	return false
}

// lvmFilterSettings finds the filter and global_filter assignments of an lvm.conf, as LVM's config
// parser reads them: a key at the start of a line or after a blank or a section's '{', outside strings
// and '#' comments, then '=', then a quoted string or a [ ] list of quoted strings that may span lines
// (with commas, blanks and comments between them). Anything else (a list holding something other than
// strings, one that is never closed) is not taken for a setting.
func lvmFilterSettings(ls []line) []lvmSetting {
	var out []lvmSetting
	li, col := 0, 0
	for li < len(ls) {
		s := ls[li].text
		next := false
	scan:
		for c := col; c < len(s); c++ {
			switch ch := s[c]; {
			case ch == '"':
				end, ok := lvmString(s, c)
				if !ok {
					break scan
				}
				c = end - 1
				continue
			case ch == '#':
				break scan
			case c > 0 && !lvmSpace(s[c-1]) && s[c-1] != '{':
				continue
			}
			key := ""
			switch {
			case strings.HasPrefix(s[c:], "global_filter"):
				key = "global_filter"
			case strings.HasPrefix(s[c:], "filter"):
				key = "filter"
			default:
				continue
			}
			st, ok := lvmValue(ls, li, c+len(key))
			if !ok {
				continue
			}
			st.key, st.line, st.col = key, li, c
			out = append(out, st)
			li, col, next = st.endLine, st.endCol, true
			break
		}
		if !next {
			li, col = li+1, 0
		}
	}
	return out
}

// lvmSpace reports whether LVM's config parser skips b as blank (C's isspace, less the newline that
// ends a line here).
func lvmSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\f' || b == '\v' }

// lvmString returns the end (just after the closing quote) of the string that starts at s[start],
// with LVM's backslash escapes; ok is false if it is not closed on the line.
func lvmString(s string, start int) (end int, ok bool) {
	for i := start + 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return 0, false
}

// lvmValue parses "= value" after a key ending at (li, c).
func lvmValue(ls []line, li, c int) (lvmSetting, bool) {
	var st lvmSetting
	s := ls[li].text
	skip := func() {
		for c < len(s) && lvmSpace(s[c]) {
			c++
		}
	}
	skip()
	if c >= len(s) || s[c] != '=' {
		return st, false
	}
	c++
	skip()
	if c < len(s) && s[c] == '"' {
		end, ok := lvmString(s, c)
		if !ok {
			return st, false
		}
		st.patterns = []string{s[c+1 : end-1]}
		st.endLine, st.endCol = li, end
		return st, true
	}
	if c >= len(s) || s[c] != '[' {
		return st, false
	}
	for c++; ; c++ {
		if c >= len(s) {
			if li++; li >= len(ls) {
				return st, false
			}
			s, c = ls[li].text, -1
			continue
		}
		switch s[c] {
		case ' ', '\t', '\r', '\f', '\v', ',':
		case '#':
			c = len(s) - 1
		case '"':
			end, ok := lvmString(s, c)
			if !ok {
				return st, false
			}
			st.patterns = append(st.patterns, s[c+1:end-1])
			c = end - 1
		case ']':
			st.endLine, st.endCol = li, c+1
			return st, true
		default:
			return st, false
		}
	}
}

// FixLVMConf drops ADE's device filter from /etc/lvm/lvm.conf (and, in the initramfs package, from an
// image's etc/lvm/lvm.conf). ADE appends `devices { filter = ["a|osencrypt|", "r|<PARTUUID>|"] }` on
// LVM OS disks; after the conversion the PV sits on the partition that filter rejects, and nothing is
// left for its accept pattern to match, so LVM would not find rootvg (ade-internals §4.1 step 5).
//
// The rule is every filter or global_filter setting with an accept pattern naming osencrypt, wherever
// it is (ADE's one-line section, a filter moved into the file's devices section, a list spread over
// lines, extra patterns): such a filter was written for the dm-crypt layout, and once osencrypt is
// gone it can only reject devices, ADE's own rejecting the plaintext PV. Without it LVM scans every
// device, as a stock RHEL lvm.conf does. A setting whose only mention of osencrypt is a reject pattern
// or a comment is kept. This is the rule the initramfs package applies to an image's copy, where
// dracut's 90lvm puts the guest's file (ade-internals §4.1 step 5), so the two stay the same.
//
// Only the setting is cut out: text before it on its first line (such as "devices {") and after it on
// its last line (such as "}") is kept, so the file still parses; a trailing '#' comment goes with
// it. A line left with nothing is removed, and so is a devices section left empty; when a section
// goes, so does a blank line directly before it: ADE appends "\n" + line + "\n", so that restores
// the original bytes. The result is nil when nothing needs changing.
func FixLVMConf(b []byte) ([]byte, []Change) {
	ls := splitLines(b)
	var changes []Change
	for {
		var st *lvmSetting
		for _, s := range lvmFilterSettings(ls) {
			if s.ade() {
				st = &s
				break
			}
		}
		if st == nil {
			break
		}
		var ch Change
		ls, ch = cutLVMSetting(ls, *st)
		changes = append(changes, ch)
	}
	if changes == nil {
		return nil, nil
	}
	return joinLines(ls), changes
}

// FixLVMConf is the package's FixLVMConf, and with p.DisableLVMDevicesFile it also turns the LVM
// devices file off: an uncommented use_devicesfile setting gets the value 0, or, when there is none,
// `devices { use_devicesfile = 0 }` is appended, as ADE appends its filter (lvm merges the sections).
// The result is nil when nothing needs changing.
func (p Policy) FixLVMConf(b []byte) ([]byte, []Change) {
	out, changes := FixLVMConf(b)
	if !p.DisableLVMDevicesFile {
		return out, changes
	}
	if out == nil {
		out = b
	}
	const why = "turn the LVM devices file off: it names the converted PVs by ADE's dm-crypt devices, and the IDs of their new disks " +
		"are not known offline (after the first boot: vgimportdevices -a, then use_devicesfile = 1)"
	ls := splitLines(out)
	found := false
	for i, l := range ls {
		m := useDevicesFileRE.FindStringSubmatchIndex(l.text)
		if m == nil {
			continue
		}
		found = true
		if l.text[m[2]:m[3]] == "0" {
			continue
		}
		before := l.text
		ls[i].text = l.text[:m[2]] + "0" + l.text[m[3]:]
		changes = append(changes, newChange(PathLVMConf, why, []string{before}, []string{ls[i].text}))
	}
	if !found {
		add := "devices { use_devicesfile = 0 }"
		if n := len(ls); n > 0 && ls[n-1].nl == "" {
			ls[n-1].nl = "\n"
		}
		ls = append(ls, line{add, "\n"})
		changes = append(changes, newChange(PathLVMConf, why, nil, []string{add}))
	}
	if changes == nil {
		return nil, nil
	}
	return joinLines(ls), changes
}

// useDevicesFileRE matches an uncommented use_devicesfile setting, alone on its line or after
// "devices {"; group 1 is its value.
var useDevicesFileRE = regexp.MustCompile(`^\s*(?:devices\s*\{\s*)?use_devicesfile\s*=\s*(\d+)`)

// cutLVMSetting removes st from ls as FixLVMConf describes.
func cutLVMSetting(ls []line, st lvmSetting) ([]line, Change) {
	i, j := st.line, st.endLine
	first, last := ls[i].text, ls[j].text
	lead := first[:len(first)-len(strings.TrimLeft(first, " \t"))]
	pre := strings.TrimSpace(first[:st.col])
	suf := strings.TrimSpace(last[st.endCol:])
	if strings.HasPrefix(suf, "#") {
		suf = ""
	}
	var repl []line
	// section: the setting was all a devices section held, which goes with it.
	section := emptyDevicesRE.MatchString(strings.TrimSpace(pre + " " + suf))
	switch {
	case section:
	case i == j:
		if t := strings.TrimSpace(pre + " " + suf); t != "" {
			repl = append(repl, line{lead + t, ls[i].nl})
		}
	default:
		if pre != "" {
			repl = append(repl, line{lead + pre, ls[i].nl})
		}
		if suf != "" {
			lastLead := last[:len(last)-len(strings.TrimLeft(last, " \t"))]
			repl = append(repl, line{lastLead + suf, ls[j].nl})
		}
	}
	var before []string
	for _, l := range ls[i : j+1] {
		before = append(before, l.text)
	}
	why := "drop the LVM " + st.key + " that accepts ADE's osencrypt mapper (gone after the conversion, the filter would hide the plaintext PV)"
	if i == j && lvmFilterRE.MatchString(first) {
		why = "drop ADE's LVM filter (it rejects the partition that now holds the plaintext PV)"
	}
	if section && i > 0 && ls[i-1].text == "" {
		i--
		before = append([]string{""}, before...)
	}
	var after []string
	for _, l := range repl {
		after = append(after, l.text)
	}
	out := make([]line, 0, len(ls))
	out = append(out, ls[:i]...)
	out = append(out, repl...)
	out = append(out, ls[j+1:]...)
	return out, newChange(PathLVMConf, why, before, after)
}
