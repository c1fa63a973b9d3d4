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
	out := ls[:0:0]
	for i, l := range ls {
		if !drop[i] {
			out = append(out, l)
		}
	}
	return joinLines(out), changes
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
