package guest

import (
	"slices"
	"strings"
)

// FixCmdline is Policy{}.FixCmdline.
func FixCmdline(s string) (string, []string) { return Policy{}.FixCmdline(s) }

// FixCmdline removes ADE's arguments from a kernel command line:
//
//   - every rd.luks.ade.* argument (rd.luks.ade.partuuid=, rd.luks.ade.bootuuid=), all copies, and
//     their deprecated aliases rd_LUKS_PARTUUID= and rd_LUKS_BOOTUUID=, which ADE's parse-crypt-ade.sh
//     still reads (ade-internals §10.5);
//   - root=/dev/mapper/osencrypt (RAW disks) and rd.luks.uuid=osencrypt (RHEL 7 pre-2018 patching);
//   - rd.luks.name=<uuid>=osencrypt and the rd.luks.options/key/data/hdr=<uuid>=... arguments for the
//     same <uuid> (early RHEL 8 ADE builds), and any rd.luks.* argument naming osluksheader or
//     LinuxPassPhraseFileName;
//   - rd.debug (all copies), but only when one of the above was on the same line, or p.DropDebug.
//
// With p.RootUUID set, root=/dev/mapper/osencrypt is not dropped but replaced, in place, by
// root=UUID=<p.RootUUID>, unless the line already names the root another way (any other root=
// argument): then it is simply removed, as without RootUUID. Only the first copy is replaced.
//
// Then it appends the p.AddArgs the line does not already hold. The other arguments keep their order
// and are joined with single spaces. If nothing is removed or added, s is returned unchanged. The
// second result lists the removed arguments in order (redacted), root=/dev/mapper/osencrypt included
// when it was replaced; it is nil when only arguments were added, so compare the first result with s
// to learn whether anything changed.
func (p Policy) FixCmdline(s string) (string, []string) {
	fixed, removed, _, _ := p.editArgs(s, false, false, true)
	return fixed, removed
}

// fixArgs is FixCmdline without AddArgs, with rd.debug also removed when adeElsewhere says an ADE
// argument was seen elsewhere in the same logical command line (a multi-line /etc/kernel/cmdline),
// and root=/dev/mapper/osencrypt removed rather than replaced when haveRoot says that command line
// already has its root= elsewhere (or got the replacement on an earlier line). root is the argument
// put in place of root=/dev/mapper/osencrypt ("" if none).
func (p Policy) fixArgs(s string, adeElsewhere, haveRoot bool) (fixed string, removed []string, root string) {
	fixed, removed, _, root = p.editArgs(s, adeElsewhere, haveRoot, false)
	return fixed, removed, root
}

// osencryptRoot is the kernel argument that names ADE's dm-crypt mapper as the root device.
const osencryptRoot = "root=/dev/mapper/osencrypt"

// rootArg returns the argument that replaces root=/dev/mapper/osencrypt: root=UUID=<p.RootUUID>, or ""
// when RootUUID is unset or is no plain word (blanks, quotes, backslashes and '$' would need quoting
// in the shell and grub files, as for AddArgs).
func (p Policy) rootArg() string {
	if p.RootUUID == "" || strings.ContainsAny(p.RootUUID, " \t\n\r\v\f\"'\\$`") {
		return ""
	}
	return "root=UUID=" + p.RootUUID
}

// hasOtherRoot reports whether args hold a root= argument other than root=/dev/mapper/osencrypt.
func hasOtherRoot(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "root=") && a != osencryptRoot {
			return true
		}
	}
	return false
}

// editArgs removes ADE's arguments from s (replacing root=/dev/mapper/osencrypt by p.rootArg() unless
// haveRoot or s has another root=) and, if add, appends the missing p.AddArgs. It returns s itself
// when nothing changes; root is the replacement argument when one was put in.
func (p Policy) editArgs(s string, adeElsewhere, haveRoot, add bool) (fixed string, removed, added []string, root string) {
	args := strings.Fields(s)
	uuids := osencryptUUIDs(args)
	ade := adeElsewhere || p.DropDebug
	for _, a := range args {
		if isADEArg(a, uuids) {
			ade = true
			break
		}
	}
	fixed = s
	if ade {
		repl := p.rootArg()
		if haveRoot || hasOtherRoot(args) {
			repl = ""
		}
		var kept []string
		for _, a := range args {
			switch {
			case a == osencryptRoot && repl != "":
				removed = append(removed, a)
				kept = append(kept, repl)
				root, repl = repl, ""
			case isADEArg(a, uuids) || a == "rd.debug":
				removed = append(removed, a)
			default:
				kept = append(kept, a)
			}
		}
		if removed != nil {
			fixed = strings.Join(kept, " ")
		}
	}
	if add {
		if added = p.missingArgs(fixed); added != nil {
			fixed = appendArgs(fixed, added)
		}
	}
	return fixed, redactAll(removed), added, root
}

// linesHaveRoot reports whether any of the command lines in lines has a root= argument other than
// root=/dev/mapper/osencrypt: several lines that make up one command line need no replacement then.
func linesHaveRoot(lines ...string) bool {
	for _, l := range lines {
		if hasOtherRoot(strings.Fields(l)) {
			return true
		}
	}
	return false
}

// addArgs returns p.AddArgs without duplicates and without the arguments the Fix functions may not
// add: empty ones, ones holding blanks, quotes, backslashes or '$' (they would need quoting in the
// shell and grub files), and ones FixCmdline removes (adding them would undo the removal).
func (p Policy) addArgs() []string {
	var out []string
	for _, a := range p.AddArgs {
		if a == "" || strings.ContainsAny(a, " \t\n\r\v\f\"'\\$`") || a == "rd.debug" ||
			isADEArg(a, osencryptUUIDs([]string{a})) || slices.Contains(out, a) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// missingArgs returns the arguments of p.AddArgs that the command line(s) in lines lack (nil if none).
func (p Policy) missingArgs(lines ...string) []string {
	var have []string
	for _, l := range lines {
		have = append(have, strings.Fields(l)...)
	}
	var miss []string
	for _, a := range p.addArgs() {
		if !slices.Contains(have, a) {
			miss = append(miss, a)
		}
	}
	return miss
}

// HasAddArgs reports whether the command line(s) in lines already hold every argument the Fix functions
// would add (p.AddArgs, less the ones they never add).
func (p Policy) HasAddArgs(lines ...string) bool { return p.missingArgs(lines...) == nil }

// appendArgs appends args to the command line v, before v's trailing blanks.
func appendArgs(v string, args []string) string {
	t := strings.TrimRight(v, " \t")
	sep := ""
	if t != "" {
		sep = " "
	}
	return t + sep + strings.Join(args, " ") + v[len(t):]
}

// hasADEArg reports whether s holds an ADE argument (not counting rd.debug).
func hasADEArg(s string) bool {
	args := strings.Fields(s)
	uuids := osencryptUUIDs(args)
	for _, a := range args {
		if isADEArg(a, uuids) {
			return true
		}
	}
	return false
}

// osencryptUUIDs returns the LUKS UUIDs that rd.luks.name=<uuid>=osencrypt maps to ADE's mapper.
func osencryptUUIDs(args []string) map[string]bool {
	var m map[string]bool
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "rd.luks.name="); ok {
			if u, name, ok := strings.Cut(v, "="); ok && name == "osencrypt" {
				if m == nil {
					m = make(map[string]bool)
				}
				m[u] = true
			}
		}
	}
	return m
}

// adeArgAliases are the deprecated names ADE's parse-crypt-ade.sh reads as well as
// rd.luks.ade.partuuid and rd.luks.ade.bootuuid (`getarg rd.luks.ade.partuuid -d rd_LUKS_PARTUUID`,
// ade-internals §10.5).
//
// rd_LUKS_PARTUUID is also dracut 90crypt's deprecated spelling of rd.luks.partuuid. It is still
// ADE's here, and removed: on an ADE OS disk the only volume the initramfs unlocks is ADE's osencrypt
// (ADE's data volumes are opened after boot from /etc/crypttab), so the partition it names is the one
// the conversion leaves in plaintext, and left behind it would point 90crypt's udev rule (which
// matches ID_PART_ENTRY_UUID, whatever the content) at that partition to be unlocked.
// rd_LUKS_BOOTUUID has no reader but ADE's.
var adeArgAliases = []string{"rd_LUKS_PARTUUID", "rd_LUKS_BOOTUUID"}

// adeArgAlias returns the alias when a is one of adeArgAliases, with or without a value, else "".
func adeArgAlias(a string) string {
	for _, k := range adeArgAliases {
		if a == k || strings.HasPrefix(a, k+"=") {
			return k
		}
	}
	return ""
}

// isADEArg classifies one kernel argument (rd.debug is handled by the caller). This is the one
// kernel-argument rule: every command line edit here, and the initramfs package's edit of an image's
// built-in command lines, goes through it.
func isADEArg(a string, uuids map[string]bool) bool {
	switch {
	case a == "rd.luks.ade" || strings.HasPrefix(a, "rd.luks.ade."), adeArgAlias(a) != "":
		return true
	case a == "root=/dev/mapper/osencrypt", a == "rd.luks.uuid=osencrypt":
		return true
	}
	for _, k := range []string{"rd.luks.name=", "rd.luks.options=", "rd.luks.key=", "rd.luks.data=", "rd.luks.hdr="} {
		v, ok := strings.CutPrefix(a, k)
		if !ok {
			continue
		}
		if u, _, ok := strings.Cut(v, "="); ok && uuids[u] {
			return true
		}
		return strings.Contains(v, "osluksheader") || strings.Contains(v, "LinuxPassPhraseFileName")
	}
	return false
}
