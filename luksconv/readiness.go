package luksconv

import (
	"fmt"
	"strings"

	"github.com/luksconv/luksconv/guest"
)

// Check is one line of the readiness summary.
type Check struct {
	// Name says what is checked: a guest file's path, "/boot", "no encrypted volume".
	Name string `json:"name"`
	// Status is "pass", "fail" or "skip" (not checked; Detail says why).
	Status string `json:"status"`
	// Detail lists what was found (for a failure, each finding: "line 3: …") or why the check was
	// skipped.
	Detail []string `json:"detail,omitempty"`
}

// Readiness is a LEAPP-style summary of ADE residue: no LUKS volume, no ADE kernel argument,
// crypttab line, LVM filter or active dracut module, a 1024-byte grubenv, /etc/default/grub with a
// final newline. Ready means no check failed; skipped checks are not counted.
type Readiness struct {
	Ready  bool    `json:"ready"`  // no check failed
	Checks []Check `json:"checks"` // every check, in the order made
}

// Check statuses.
const (
	CheckPass = "pass" // nothing of ADE was found
	CheckFail = "fail" // ADE residue was found; Detail lists it
	CheckSkip = "skip" // not checked; Detail says why
)

// bootArgsPresent reports whether a boot loader command line on /boot (grubenv, grub.cfg, a BLS entry)
// already carries every argument pol adds.
func bootArgsPresent(x fsys, pol guest.Policy) bool {
	files := []string{"/grub2/grubenv", "/grub2/grub.cfg", "/grub/grub.cfg"}
	if ents, err := x.ReadDir("/loader/entries"); err == nil {
		for _, d := range ents {
			files = append(files, "/loader/entries/"+d.Name)
		}
	}
	unquote := strings.NewReplacer(`"`, " ", `'`, " ") // grub.cfg quotes `set kernelopts="…"`
	for _, f := range files {
		b, err := readFile(x, f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if pol.HasAddArgs(unquote.Replace(line)) {
				return true
			}
		}
	}
	return false
}

// readiness summarises ADE residue in the examined files, after the edits (after) or as they are.
func (e *guestEditor) readiness(luksLeft []string, after bool) *Readiness {
	rd := &Readiness{Ready: true}
	add := func(c Check) {
		if c.Status == CheckFail {
			rd.Ready = false
		}
		rd.Checks = append(rd.Checks, c)
	}
	if len(luksLeft) == 0 {
		add(Check{Name: "no encrypted volume", Status: CheckPass})
	} else {
		add(Check{Name: "no encrypted volume", Status: CheckFail, Detail: luksLeft})
	}
	if e.boot == nil {
		add(Check{Name: "/boot", Status: CheckSkip, Detail: []string{"no /boot filesystem found"}})
	}
	if e.root == nil {
		why := e.noRoot
		if why == "" {
			why = "no root filesystem found"
		}
		add(Check{Name: "/ (root filesystem)", Status: CheckSkip, Detail: []string{why}})
	}
	for _, f := range e.files {
		b := f.before
		if after {
			b = f.after
		}
		c := Check{Name: f.path, Status: CheckPass}
		for _, fd := range guest.Scan(f.path, b) {
			c.Status = CheckFail
			if fd.Line > 0 {
				c.Detail = append(c.Detail, fmt.Sprintf("line %d: %s", fd.Line, fd.What))
			} else {
				c.Detail = append(c.Detail, fd.What)
			}
		}
		add(c)
	}
	for _, w := range e.wipes {
		ok := w.before
		if after {
			ok = w.after
		}
		if ok {
			add(Check{Name: w.path, Status: CheckPass, Detail: []string{"zeros only"}})
		} else {
			add(Check{Name: w.path, Status: CheckFail, Detail: []string{"ADE data (header, key material or state) not wiped"}})
		}
	}
	for _, p := range e.initrdList {
		left := e.initrd[p]
		if !after {
			// Before the edits, anything the edit would remove still counts.
			for _, ed := range e.edits {
				if ed.Path == p {
					left = append(left, ed.Before...)
				}
			}
		}
		c := Check{Name: p, Status: CheckPass}
		for _, l := range left {
			if strings.HasPrefix(l, "not examined") {
				c.Status = CheckSkip
			} else {
				c.Status = CheckFail
			}
		}
		c.Detail = left
		if after && e.bootArgs != nil && c.Status == CheckFail {
			for _, k := range e.kept {
				if k.path == p && k.hook != "91ade" {
					c.Detail = append(c.Detail, fmt.Sprintf("the boot loader's kernel command lines now carry %s, which switch ADE's hook off until the next dracut run rebuilds this image",
						strings.Join(e.bootArgs, " ")))
				}
			}
		}
		add(c)
	}
	for _, p := range e.esp {
		if e.espRead[p.Number] {
			continue // its files are checked above
		}
		why := e.espErr[p.Number]
		if why == "" {
			why = "not read"
		}
		add(Check{Name: fmt.Sprintf("EFI System Partition (partition %d)", p.Number), Status: CheckSkip,
			Detail: []string{why + ": check EFI/*/grubenv and grub.cfg by hand"}})
	}
	return rd
}
