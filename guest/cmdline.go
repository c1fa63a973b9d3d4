package guest

import "strings"

// FixCmdline is Policy{}.FixCmdline.
func FixCmdline(s string) (string, []string) { return Policy{}.FixCmdline(s) }

// FixCmdline removes ADE's arguments from a kernel command line:
//
//   - every rd.luks.ade.* argument (rd.luks.ade.partuuid=, rd.luks.ade.bootuuid=), all copies;
//   - root=/dev/mapper/osencrypt (RAW disks) and rd.luks.uuid=osencrypt (RHEL 7 pre-2018 patching);
//   - rd.luks.name=<uuid>=osencrypt and the rd.luks.options/key/data/hdr=<uuid>=... arguments for the
//     same <uuid> (early RHEL 8 ADE builds), and any rd.luks.* argument naming osluksheader or
//     LinuxPassPhraseFileName;
//   - rd.debug (all copies), but only when one of the above was on the same line, or p.DropDebug.
//
// The other arguments keep their order and are joined with single spaces. If nothing is removed, s
// is returned unchanged. The second result lists the removed arguments in order (redacted).
func (p Policy) FixCmdline(s string) (string, []string) {
	return p.fixArgs(s, false)
}

// fixArgs is FixCmdline with rd.debug also removed when adeElsewhere says an ADE argument was seen
// elsewhere in the same logical command line (a multi-line /etc/kernel/cmdline).
func (p Policy) fixArgs(s string, adeElsewhere bool) (string, []string) {
	args := strings.Fields(s)
	uuids := osencryptUUIDs(args)
	ade := adeElsewhere || p.DropDebug
	for _, a := range args {
		if isADEArg(a, uuids) {
			ade = true
			break
		}
	}
	if !ade {
		return s, nil
	}
	var kept, removed []string
	for _, a := range args {
		if isADEArg(a, uuids) || a == "rd.debug" {
			removed = append(removed, a)
		} else {
			kept = append(kept, a)
		}
	}
	if len(removed) == 0 {
		return s, nil
	}
	return strings.Join(kept, " "), redactAll(removed)
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

// isADEArg classifies one kernel argument (rd.debug is handled by the caller).
func isADEArg(a string, uuids map[string]bool) bool {
	switch {
	case a == "rd.luks.ade" || strings.HasPrefix(a, "rd.luks.ade."):
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
