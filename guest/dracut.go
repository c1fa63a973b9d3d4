package guest

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
)

// dracutAddRE matches the dracut.conf assignments ADE appends: add_drivers+=, add_dracutmodules+= and
// (Oct 2020 to Jun 2022 builds) add_fstab+=, with a double-quoted value.
var dracutAddRE = regexp.MustCompile(`^\s*(add_drivers|add_dracutmodules|add_fstab)\+=\s*"([^"]*)"\s*$`)

// adeDracutValues are the word lists ADE writes for each key (ade-internals §4.1 step 2, §4.2 path B).
var adeDracutValues = map[string][][]string{
	"add_drivers":       {{"dm_crypt"}, {"fuse", "vfat", "nls_cp437", "nls_iso8859-1"}},
	"add_dracutmodules": {{"crypt"}, {"crypt", "lvm"}},
}

// isADEDracutLine reports whether a dracut.conf line is one that ADE appends.
func isADEDracutLine(s string) bool {
	m := dracutAddRE.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	words := strings.Fields(m[2])
	if m[1] == "add_fstab" {
		return len(words) == 1 && strings.HasSuffix(words[0], "/91adeOnline/ade_fstab_line")
	}
	for _, v := range adeDracutValues[m[1]] {
		if slices.Equal(words, v) {
			return true
		}
	}
	return false
}

// isADEConf reports whether p names ADE's own dracut configuration file.
func isADEConf(p string) bool {
	return path.Base(p) == "ade.conf" && path.Base(path.Dir(p)) == "dracut.conf.d"
}

// FixDracutConf disables ADE's dracut settings in the dracut configuration file named file. In
// /etc/dracut.conf.d/ade.conf (any path ending dracut.conf.d/ade.conf) every setting line is ADE's; elsewhere (/etc/dracut.conf, other
// dracut.conf.d files) only the exact lines ADE appends: add_drivers+=" dm_crypt " or
// add_drivers+=" fuse vfat nls_cp437 nls_iso8859-1", add_dracutmodules+=" crypt" or " crypt lvm ",
// and add_fstab+=" .../91adeOnline/ade_fstab_line ".
//
// The lines are commented out with a leading '#', one byte each, when the result fits in max (the
// space available to the file; a value below len(b) means no growth); otherwise they are deleted, so
// the result is never larger than max or len(b). The result is nil when nothing needs changing.
func FixDracutConf(file string, b []byte, max int) ([]byte, []Change) {
	all := isADEConf(file)
	ls := splitLines(b)
	var hit []int
	for i, l := range ls {
		t := strings.TrimSpace(l.text)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if all || isADEDracutLine(l.text) {
			hit = append(hit, i)
		}
	}
	if hit == nil {
		return nil, nil
	}
	comment := len(b)+len(hit) <= room(len(b), max)
	var changes []Change
	drop := make([]bool, len(ls))
	for _, i := range hit {
		before := ls[i].text
		if comment {
			ls[i].text = "#" + before
			changes = append(changes, newChange(file, "comment out ADE's dracut setting", []string{before}, []string{ls[i].text}))
		} else {
			drop[i] = true
			changes = append(changes, newChange(file, "delete ADE's dracut setting (no room to comment it out)", []string{before}, nil))
		}
	}
	return withoutLines(ls, drop), changes
}

// Replacement module-setup.sh scripts, longest first. check() returning 255 tells dracut to include
// the module only when a configuration or another module asks for it by name, which nothing does
// once ade.conf is disabled; depends() and install() do nothing in case something still does.
var disabledModuleScripts = []string{
	"#!/bin/bash\n" +
		"# Disabled by luksconv: this Azure Disk Encryption dracut module unlocked the OS disk, which is\n" +
		"# no longer encrypted. check() returning 255 keeps it out of every initramfs unless a dracut\n" +
		"# configuration names it explicitly.\n" +
		"check() { return 255; }\n" +
		"depends() { return 0; }\n" +
		"install() { :; }\n" +
		"installkernel() { :; }\n",
	"#!/bin/bash\n# disabled by luksconv (ADE module)\ncheck() { return 255; }\ninstall() { :; }\n",
	"check() { return 255; }\n",
}

// DisableDracutModule returns the content for the module-setup.sh of ADE's dracut module (91adeOnline
// or 91ade) that makes dracut leave the module out, so initramfs images built later (kernel updates,
// LEAPP) no longer try to unlock the disk. The whole file is replaced by a short script whose check()
// returns 255: replacing rather than prepending a check() stays correct whatever the original defines
// (a later check() would override a prepended one). The longest of the built-in scripts that fits
// in max is used (a value below len(b) means no growth); if none fits, the result is an error. Content
// that already is one of these scripts is left alone (nil result). Change.Path is empty.
func DisableDracutModule(b []byte, max int) ([]byte, []Change, error) {
	for _, s := range disabledModuleScripts {
		if bytes.Equal(b, []byte(s)) {
			return nil, nil, nil
		}
	}
	limit := room(len(b), max)
	for _, s := range disabledModuleScripts {
		if len(s) > limit {
			continue
		}
		before := make([]string, 0, 8)
		for _, l := range splitLines(b) {
			before = append(before, l.text)
		}
		var after []string
		for _, l := range splitLines([]byte(s)) {
			after = append(after, l.text)
		}
		return []byte(s), []Change{newChange("", "replace ADE's dracut module-setup.sh by one whose check() returns 255 (module left out of new initramfs images)", before, after)}, nil
	}
	short := disabledModuleScripts[len(disabledModuleScripts)-1]
	return nil, nil, fmt.Errorf("dracut module-setup.sh: the %d-byte disabling script does not fit in %d bytes", len(short), limit)
}

// adeDracutModules are ADE's dracut modules by the names dracut gives them (the module directory
// without its two-digit prefix), as it lists them in modules.txt, build-parameter.txt and lsinitrd's
// "dracut modules:": 91adeOnline (RHEL 8+ and RHEL 7 path A) and 91ade (RHEL 7 path B).
var adeDracutModules = []string{"adeOnline", "ade"}

// IsADEDracutModule reports whether name is one of ADE's dracut modules, spelled as dracut lists
// modules (adeOnline, ade; not the directory names 91adeOnline, 91ade).
func IsADEDracutModule(name string) bool { return slices.Contains(adeDracutModules, name) }

// adeModuleDir returns the module name when d is the directory of one of ADE's dracut modules
// (91adeOnline, 91ade), else "".
func adeModuleDir(d string) string {
	if n, ok := strings.CutPrefix(d, "91"); ok && IsADEDracutModule(n) {
		return d
	}
	return ""
}

// FixDracutModulesList drops ADE's module names (see IsADEDracutModule) from dracut's modules.txt in
// an initramfs image (usr/lib/dracut/modules.txt: one module name per line), so that lsinitrd and a
// later dracut run no longer see them. Other lines are kept byte for byte. The result is nil when
// nothing needs changing. Change.Path is path.
func FixDracutModulesList(path string, b []byte) ([]byte, []Change) {
	return dropLines(path, b, func(f []string) string {
		if len(f) == 1 && IsADEDracutModule(f[0]) {
			return "drop ADE's dracut module " + f[0] + " from the list of modules in the image"
		}
		return ""
	})
}

// FixDracutBuildParameters drops ADE's module names from dracut's build-parameter.txt in an initramfs
// image: the arguments dracut ran with (lsinitrd prints them as "Arguments:"), where they appear as
// words of a quoted list such as --add 'crypt adeOnline'. A name goes with one space next to it (the
// one before it if there is one); the quotes stay. The result is nil when nothing needs changing.
// Change.Path is path.
func FixDracutBuildParameters(path string, b []byte) ([]byte, []Change) {
	ls := splitLines(b)
	var changes []Change
	for i, l := range ls {
		t, names := dropModuleWords(l.text)
		if names == nil {
			continue
		}
		changes = append(changes, newChange(path, "drop ADE's dracut module "+strings.Join(names, ", ")+" from the recorded dracut arguments",
			[]string{l.text}, []string{t}))
		ls[i].text = t
	}
	if changes == nil {
		return nil, nil
	}
	return joinLines(ls), changes
}

// dropModuleWords removes ADE's module names from one line of dracut arguments: words are separated
// by blanks and quotes.
func dropModuleWords(s string) (string, []string) {
	sep := func(c byte) bool { return c == ' ' || c == '\'' || c == '"' || c == '\t' }
	var out []byte
	var names []string
	for i := 0; i < len(s); {
		if sep(s[i]) {
			out = append(out, s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && !sep(s[j]) {
			j++
		}
		switch w := s[i:j]; {
		case !IsADEDracutModule(w):
			out = append(out, w...)
		case len(out) > 0 && out[len(out)-1] == ' ':
			out = out[:len(out)-1]
			names = append(names, w)
		case j < len(s) && s[j] == ' ':
			j++
			names = append(names, w)
		default:
			names = append(names, w)
		}
		i = j
	}
	return string(out), names
}

// adeInitramfsFiles are the base names of the files ADE's dracut modules put into an initramfs
// (ade-internals §4.1-4.2, §10.5): the cmdline hook both modules install, 91adeOnline's generator,
// 91ade's ask script and udev rule, and the udev rule the hook writes at boot (listed in case an image
// was built from a running system's /etc).
var adeInitramfsFiles = map[string]struct{ what, module string }{
	"30-parse-crypt-ade.sh":   {"ADE cmdline hook (91adeOnline/91ade parse-crypt-ade.sh)", ""},
	"parse-crypt-ade.sh":      {"ADE cmdline hook (91adeOnline/91ade parse-crypt-ade.sh)", ""},
	"crypt-run-generator-ade": {"91adeOnline crypt-run-generator-ade", "91adeOnline"},
	"cryptroot-ask-ade":       {"91ade cryptroot-ask-ade", "91ade"},
	"50-udev-ade.rules":       {"91ade udev rule", "91ade"},
	"70-luks-ade.rules":       {"ADE udev rule", ""},
}

// ADEInitramfsFile reports whether p, a path inside an initramfs image (an archive name; a leading
// "/" or "./" does not matter), is a file ADE's dracut modules put there, and says what it is: the
// hooks, scripts and udev rules of 91adeOnline and 91ade wherever they are (by base name, which no
// other dracut module uses), and 91ade's copy of the LUKS header, /osluksheader (`inst
// /boot/luks/osluksheader /osluksheader`), only at the image's root. None of them has a use once the
// volume is plaintext; the caller checks that p is not a directory.
//
// module is the ADE dracut module only it comes from, "91ade" (RHEL 7) or "91adeOnline", or "" for
// the files both install. This is the rule for dracut images; Ubuntu's initramfs-tools images follow
// ADEInitramfsToolsFile.
func ADEInitramfsFile(p string) (what, module string, ok bool) {
	c := path.Clean("/" + p)
	if c == "/osluksheader" {
		return "LUKS header embedded by the 91ade module", "91ade", true
	}
	f, ok := adeInitramfsFiles[path.Base(c)]
	return f.what, f.module, ok
}
