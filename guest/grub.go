package guest

import (
	"fmt"
	"regexp"
	"strings"
)

// FixBLSEntry is Policy{}.FixBLSEntry.
func FixBLSEntry(path string, b []byte) ([]byte, []Change) { return Policy{}.FixBLSEntry(path, b) }

// FixBLSEntry removes ADE's arguments from the options lines of a Boot Loader Specification entry
// (/boot/loader/entries/*.conf). RHEL 9 entries hold the literal command line; RHEL 8's
// `options $kernelopts` references are left alone (the arguments are in grubenv, see FixGrubenv).
// An options line left with no arguments is removed. The missing p.AddArgs are appended to the
// entry's last options line (grub joins an entry's options lines), unless the entry takes its
// arguments from $kernelopts or has no options line. The entry's options lines are one command line
// for p.RootUUID too: root=/dev/mapper/osencrypt is replaced once, and only removed when another
// root= is on any of them or the entry takes arguments from $kernelopts (whose root= it cannot see).
// The result is nil when nothing needs changing.
func (p Policy) FixBLSEntry(path string, b []byte) ([]byte, []Change) {
	ls := splitLines(b)
	type opt struct {
		rest, fixed, root string
		removed           []string
	}
	opts := map[int]*opt{}
	last := -1
	var all, rests []string
	usesKernelopts := false
	for _, l := range ls {
		if key, rest := cutField(l.text); key == "options" {
			rests = append(rests, rest)
			usesKernelopts = usesKernelopts || referencesKernelopts(rest)
		}
	}
	haveRoot := usesKernelopts || linesHaveRoot(rests...)
	for i, l := range ls {
		key, rest := cutField(l.text)
		if key != "options" {
			continue
		}
		fixed, removed, root := p.fixArgs(rest, false, haveRoot)
		haveRoot = haveRoot || root != ""
		opts[i] = &opt{rest, fixed, root, removed}
		all = append(all, fixed)
		last = i
	}
	var added []string
	if last >= 0 && !usesKernelopts {
		if added = p.missingArgs(all...); added != nil {
			opts[last].fixed = appendArgs(opts[last].fixed, added)
		}
	}
	var changes []Change
	out := ls[:0:0]
	for i, l := range ls {
		o := opts[i]
		var add []string
		if i == last {
			add = added
		}
		if o == nil || (o.removed == nil && add == nil) {
			out = append(out, l)
			continue
		}
		why := p.editWhy(o.removed, add, o.root, " from the BLS options line")
		if o.fixed == "" {
			changes = append(changes, newChange(path, why+" (nothing else left on it: line removed)", []string{l.text}, nil))
			continue
		}
		nl := line{l.text[:len(l.text)-len(o.rest)] + o.fixed, l.nl}
		changes = append(changes, newChange(path, why, []string{l.text}, []string{nl.text}))
		out = append(out, nl)
	}
	if changes == nil {
		return nil, nil
	}
	return joinLines(out), changes
}

// kerneloptsRE matches a reference to grub's kernelopts variable.
var kerneloptsRE = regexp.MustCompile(`\$(?:kernelopts|\{kernelopts\})(?:[^A-Za-z0-9_]|$)`)

// referencesKernelopts reports whether a command line takes arguments from $kernelopts.
func referencesKernelopts(s string) bool { return kerneloptsRE.MatchString(s) }

// cutField splits "  key  value..." into key and everything after the whitespace that follows it.
func cutField(s string) (key, rest string) {
	t := strings.TrimLeft(s, " \t")
	i := strings.IndexAny(t, " \t")
	if i < 0 {
		return t, ""
	}
	return t[:i], strings.TrimLeft(t[i:], " \t")
}

var (
	// linuxRE matches grub.cfg kernel lines: indent, command, kernel path, arguments.
	linuxRE = regexp.MustCompile(`^(\s*(?:linux|linux16|linuxefi)\s+\S+)(\s*)(.*)$`)
	// setKerneloptsRE matches RHEL 8's `set kernelopts="..."` (also default_kernelopts) fallback.
	setKerneloptsRE = regexp.MustCompile(`^(\s*set\s+[A-Za-z_]*kernelopts=)(.*)$`)
)

// FixGrubCfg is Policy{}.FixGrubCfg.
func FixGrubCfg(path string, b []byte) ([]byte, []Change) { return Policy{}.FixGrubCfg(path, b) }

// FixGrubCfg removes ADE's arguments from a grub.cfg: the arguments of linux, linux16 and linuxefi
// lines (RHEL 7 menu entries) and the value of `set kernelopts=` lines (RHEL 8's fallback when grubenv
// has none), and appends the missing p.AddArgs to each of them (not to a linux line that takes its
// arguments from $kernelopts). Each line is its own command line for p.RootUUID (Ubuntu's
// `linux /vmlinuz-... root=/dev/mapper/osencrypt ro ...` gets root=UUID=<RootUUID>; a recovery entry
// that also has root=UUID=... only loses the osencrypt argument; a line taking $kernelopts is never
// given one). Only AddArgs and RootUUID make lines longer: the caller checks that the result fits.
// Everything else is left byte for byte. The result is nil when nothing needs changing.
func (p Policy) FixGrubCfg(path string, b []byte) ([]byte, []Change) {
	ls := splitLines(b)
	var changes []Change
	for i, l := range ls {
		var text, root string
		var removed, added []string
		if m := linuxRE.FindStringSubmatch(l.text); m != nil {
			var fixed string
			fixed, removed, added, root = p.editArgs(m[3], false, referencesKernelopts(m[3]), !referencesKernelopts(m[3]))
			if removed != nil || added != nil {
				text = m[1]
				if fixed != "" {
					text += " " + fixed
				}
			}
		} else if m := setKerneloptsRE.FindStringSubmatch(l.text); m != nil {
			val, q, rest, ok := cutShellWord(m[2])
			if !ok {
				continue
			}
			var fixed string
			if fixed, removed, added, root = p.editArgs(val, false, false, true); removed != nil || added != nil {
				if q == "" && strings.ContainsAny(fixed, " \t") {
					q = `"`
				}
				text = m[1] + q + fixed + q + rest
			}
		}
		if removed == nil && added == nil {
			continue
		}
		changes = append(changes, newChange(path, p.editWhy(removed, added, root, ""),
			[]string{l.text}, []string{text}))
		ls[i].text = text
	}
	if changes == nil {
		return nil, nil
	}
	return joinLines(ls), changes
}

// cutShellWord splits the value at the start of s: a "double"- or 'single'-quoted string on one line
// (q is the quote) or an unquoted word. rest is what follows the value. ok is false for a quote that
// is not closed on this line: a multi-line value is left alone rather than guessed at.
func cutShellWord(s string) (val, q, rest string, ok bool) {
	if s == "" {
		return "", "", "", true
	}
	switch s[0] {
	case '"':
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '"':
				return s[1:i], `"`, s[i+1:], true
			}
		}
		return "", "", "", false
	case '\'':
		if i := strings.IndexByte(s[1:], '\''); i >= 0 {
			return s[1 : 1+i], "'", s[2+i:], true
		}
		return "", "", "", false
	}
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], "", s[i:], true
	}
	return s, "", "", true
}

// defaultGrubRE matches GRUB_CMDLINE_LINUX[_DEFAULT]= and += assignments in /etc/default/grub.
var defaultGrubRE = regexp.MustCompile(`^(\s*(?:export\s+)?GRUB_CMDLINE_LINUX(?:_DEFAULT)?)(\+?=)(.*)$`)

// FixDefaultGrub is Policy{}.FixDefaultGrub.
func FixDefaultGrub(b []byte, max int) ([]byte, []Change, error) {
	return Policy{}.FixDefaultGrub(b, max)
}

// FixDefaultGrub removes ADE's arguments from /etc/default/grub: from GRUB_CMDLINE_LINUX="..." (and
// _DEFAULT) and from the `GRUB_CMDLINE_LINUX+=" ... "` lines ADE appends (once, or twice on RHEL 7).
// An appended += line left empty is removed, together with the blank line ADE wrote before it. In a
// += line, rd.debug also counts as ADE's when the line holds nothing but ADE arguments and rd.debug:
// stock RHEL never writes += lines, and RHEL 7's legacy flow appended `GRUB_CMDLINE_LINUX+=" rd.debug"`.
// The p.AddArgs that none of those lines holds are appended to the last plain GRUB_CMDLINE_LINUX=
// assignment (quoted with " if it was not quoted); a file without one gets none. With p.RootUUID,
// the assignments are one command line (grub-mkconfig joins them): the first
// root=/dev/mapper/osencrypt becomes root=UUID=<RootUUID> (Ubuntu's GRUB_CMDLINE_LINUX="root=UUID=... ")
// unless one of them has another root=; further copies are removed.
//
// A missing final newline is added (LEAPP's grub config check requires one) and reported. That,
// RootUUID and AddArgs are the edits that can grow the file, so max is the space available to it (its
// allocated blocks); a value below len(b) means no growth, and an output that does not fit is an
// error. The result is nil when nothing needs changing.
func (p Policy) FixDefaultGrub(b []byte, max int) ([]byte, []Change, error) {
	ls := splitLines(b)
	type assign struct {
		m                         []string
		val, q, rest, fixed, root string
		removed                   []string
		appended, dropBlank, ok   bool
	}
	as := map[int]*assign{}
	drop := make([]bool, len(ls))
	target := -1
	var all, vals []string
	for _, l := range ls {
		if m := defaultGrubRE.FindStringSubmatch(l.text); m != nil {
			if val, _, _, ok := cutShellWord(m[3]); ok {
				vals = append(vals, val)
			}
		}
	}
	haveRoot := linesHaveRoot(vals...)
	for i, l := range ls {
		m := defaultGrubRE.FindStringSubmatch(l.text)
		if m == nil {
			continue
		}
		val, q, rest, ok := cutShellWord(m[3])
		if !ok {
			continue
		}
		a := &assign{m: m, val: val, q: q, rest: rest, fixed: val, appended: m[2] == "+="}
		as[i] = a
		pol := p
		if a.appended && onlyADEOrDebug(val) {
			pol.DropDebug = true
		}
		fixed, removed, root := pol.fixArgs(val, false, haveRoot)
		haveRoot = haveRoot || root != ""
		if removed != nil {
			a.removed, a.root = removed, root
			a.fixed = fixed
			// Keep the separating blanks inside the quotes: `GRUB_CMDLINE_LINUX+=" x"` needs its
			// leading space to stay apart from the value it extends.
			if fixed != "" {
				if c := val[0]; c == ' ' || c == '\t' {
					a.fixed = " " + a.fixed
				}
				if c := val[len(val)-1]; c == ' ' || c == '\t' {
					a.fixed += " "
				}
			}
			if a.appended && fixed == "" && strings.TrimSpace(rest) == "" {
				drop[i] = true
				if i > 0 && ls[i-1].text == "" && !drop[i-1] {
					drop[i-1] = true
					a.dropBlank = true
				}
				continue
			}
		}
		all = append(all, a.fixed)
		if !a.appended && strings.HasSuffix(m[1], "GRUB_CMDLINE_LINUX") {
			target = i
		}
	}
	var added []string
	if target >= 0 {
		if added = p.missingArgs(all...); added != nil {
			a := as[target]
			a.fixed = appendArgs(a.fixed, added)
			if a.q == "" {
				a.q = `"`
			}
		}
	}
	var changes []Change
	for i, l := range ls {
		a := as[i]
		if a == nil {
			continue
		}
		var add []string
		if i == target {
			add = added
		}
		if a.removed == nil && add == nil {
			continue
		}
		why := p.editWhy(a.removed, add, a.root, "")
		if drop[i] {
			before := []string{l.text}
			if a.dropBlank {
				before = []string{"", l.text}
			}
			changes = append(changes, newChange(PathDefaultGrub, why+" (the appended line held nothing else: removed)", before, nil))
			continue
		}
		text := a.m[1] + a.m[2] + a.q + a.fixed + a.q + a.rest
		changes = append(changes, newChange(PathDefaultGrub, why, []string{l.text}, []string{text}))
		ls[i].text = text
	}
	out := ls[:0:0]
	for i, l := range ls {
		if !drop[i] {
			out = append(out, l)
		}
	}
	if n := len(out); n > 0 && out[n-1].nl == "" {
		out[n-1].nl = "\n"
		changes = append(changes, newChange(PathDefaultGrub, "add the missing final newline (LEAPP requires it)",
			[]string{out[n-1].text}, []string{out[n-1].text}))
	}
	if changes == nil {
		return nil, nil, nil
	}
	res := joinLines(out)
	if len(res) > room(len(b), max) {
		return nil, nil, fmt.Errorf("%s: the edited file needs %d bytes, only %d available", PathDefaultGrub, len(res), room(len(b), max))
	}
	return res, changes, nil
}

// onlyADEOrDebug reports whether every argument in s is an ADE argument or rd.debug (and there is
// at least one).
func onlyADEOrDebug(s string) bool {
	args := strings.Fields(s)
	uuids := osencryptUUIDs(args)
	for _, a := range args {
		if a != "rd.debug" && !isADEArg(a, uuids) {
			return false
		}
	}
	return len(args) > 0
}

// FixKernelCmdline is Policy{}.FixKernelCmdline.
func FixKernelCmdline(b []byte) ([]byte, []Change) { return Policy{}.FixKernelCmdline(b) }

// FixKernelCmdline removes ADE's arguments from /etc/kernel/cmdline (the RHEL 9 source of new BLS
// entries' options). kernel-install reads the whole file as one command line, so rd.debug is removed
// from every line when an ADE argument is anywhere in the file, and the p.AddArgs missing from the
// whole file are appended to its last non-blank line (a blank file gets none); for p.RootUUID the file
// is one command line too (see FixDefaultGrub). Lines and the final newline (or its absence) are kept.
// Only AddArgs and RootUUID make the result longer than b: the caller checks that it fits. The result
// is nil when nothing needs changing.
func (p Policy) FixKernelCmdline(b []byte) ([]byte, []Change) {
	return p.fixCmdlineFile(PathKernelCmdline, b, true)
}

// FixDracutCmdline is Policy{}.FixDracutCmdline.
func FixDracutCmdline(path string, b []byte) ([]byte, []Change) {
	return Policy{}.FixDracutCmdline(path, b)
}

// FixDracutCmdline removes ADE's arguments (see FixCmdline) from a command line file that dracut's
// initramfs reads besides the boot loader's command line: etc/cmdline.d/*.conf and etc/cmdline inside
// an initramfs image (dracut-lib's getcmdline joins all their lines). It is FixKernelCmdline's rule
// (rd.debug goes when an ADE argument is anywhere in the file, or with p.DropDebug; lines and the
// final newline are kept) without p.AddArgs: those are for the boot loader's command lines, and an
// image whose ADE hooks are removed needs none of them. p.RootUUID applies as in FixKernelCmdline,
// within the file. The result is never longer than b unless RootUUID replaces an argument, and nil
// when nothing needs changing. Change.Path is path.
func (p Policy) FixDracutCmdline(path string, b []byte) ([]byte, []Change) {
	return p.fixCmdlineFile(path, b, false)
}

// fixCmdlineFile edits a file holding one command line over any number of lines; withAdd appends the
// missing p.AddArgs.
func (p Policy) fixCmdlineFile(path string, b []byte, withAdd bool) ([]byte, []Change) {
	ls := splitLines(b)
	ade := false
	for _, l := range ls {
		if hasADEArg(l.text) {
			ade = true
			break
		}
	}
	fixed := make([]string, len(ls))
	removed := make([][]string, len(ls))
	roots := make([]string, len(ls))
	target := -1
	var texts []string
	for _, l := range ls {
		texts = append(texts, l.text)
	}
	haveRoot := linesHaveRoot(texts...)
	for i, l := range ls {
		fixed[i], removed[i], roots[i] = p.fixArgs(l.text, ade, haveRoot)
		haveRoot = haveRoot || roots[i] != ""
		if strings.TrimSpace(fixed[i]) != "" {
			target = i
		}
	}
	var added []string
	if withAdd && target >= 0 {
		if added = p.missingArgs(fixed...); added != nil {
			fixed[target] = appendArgs(fixed[target], added)
		}
	}
	var changes []Change
	for i, l := range ls {
		var add []string
		if i == target {
			add = added
		}
		if removed[i] == nil && add == nil {
			continue
		}
		changes = append(changes, newChange(path, p.editWhy(removed[i], add, roots[i], ""),
			[]string{l.text}, []string{fixed[i]}))
		ls[i].text = fixed[i]
	}
	if changes == nil {
		return nil, nil
	}
	return joinLines(ls), changes
}
