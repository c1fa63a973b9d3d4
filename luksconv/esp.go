package luksconv

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/luksconv/luksconv/fat"
	"github.com/luksconv/luksconv/guest"
)

// The EFI System Partition is FAT (package fat). Its files are edited in place: a file keeps its
// clusters (nothing is allocated or freed), only the bytes in them and the size in its directory
// entry change, so the FATs and the FAT32 FSInfo stay as they are.

// espEdits edits EFI/*/grubenv and EFI/*/grub.cfg on every EFI System Partition with pol.
func (e *guestEditor) espEdits(pol guest.Policy) {
	for _, v := range e.espVols {
		e.espVolEdits(v, pol)
	}
}

func (e *guestEditor) espVolEdits(v guestVolume, pol guest.Policy) {
	label := fmt.Sprintf("partition %d (FAT, EFI System Partition)", v.part)
	f, err := fat.Open(v.r, v.size)
	var dirs []fat.File
	if err == nil {
		var efi *fat.File
		if efi, err = f.Lookup("EFI"); err == nil {
			dirs, err = f.ReadDir(efi)
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.espErr[v.part] = err.Error()
		e.warn(WarnNotEdited, "%s is not edited: %v; its EFI/*/grubenv and grub.cfg may still carry ADE's kernel arguments", label,
			layerErr(fmt.Sprintf("partition %d", v.part), v.out, nil, err))
		return
	}
	e.espRead[v.part] = true
	mount := e.espMount(f)
	fsLabel := fmt.Sprintf("%s (partition %d)", mount, v.part)
	for i := range dirs {
		if !dirs[i].IsDir() {
			continue
		}
		ents, err := f.ReadDir(&dirs[i])
		if err != nil {
			e.warn(WarnUnreadable, "%s: EFI/%s: %v", label, dirs[i].Name, err)
			continue
		}
		for j := range ents {
			ent := &ents[j]
			lname := strings.ToLower(ent.Name)
			if ent.IsDir() || (lname != "grubenv" && lname != "grub.cfg") {
				continue
			}
			gp := mount + "/EFI/" + dirs[i].Name + "/" + ent.Name
			b, cs, err := f.ReadFile(ent, maxConfigFile)
			if err != nil {
				e.warn(WarnNotEdited, "%s: not edited: %v", gp, err)
				continue
			}
			var n []byte
			var changes []guest.Change
			if lname == "grubenv" {
				n, changes, err = pol.FixGrubenv(b)
				if errors.Is(err, guest.ErrNotGrubenv) {
					e.warn(WarnNotEdited, "%s: %v; left alone", gp, err)
					continue
				}
				if err == nil && n != nil && len(n) != len(b) {
					err = fmt.Errorf("the edited block is %d bytes, not %d", len(n), len(b))
				}
			} else {
				if n, changes = pol.FixGrubCfg(gp, b); n != nil {
					fixed := len(n)
					if n = fat.PadToClusters(n, len(cs), f.ClusterSize); len(n) != fixed && len(changes) > 0 {
						changes[len(changes)-1].Why += fmt.Sprintf("; %d bytes of trailing comment keep the file's %d FAT clusters (luksconv does not free clusters)", len(n)-fixed, len(cs))
					}
				}
			}
			sc := scanned{path: gp, before: b, after: b}
			if err == nil && n != nil {
				var ws []fat.Write
				if ws, err = f.Rewrite(ent, cs, n); err == nil {
					for _, w := range ws {
						e.patches = append(e.patches, Patch{Offset: v.out + w.Offset, Length: len(w.Data), Why: "guest edit: " + gp, Data: w.Data})
					}
					sc.after = n
					for _, c := range changes {
						e.edits = append(e.edits, Edit{Filesystem: fsLabel, Path: gp, Why: c.Why, Before: c.Before, After: c.After})
					}
				}
			}
			if err != nil {
				e.warn(WarnNotEdited, "%s: not edited: %v", gp, err)
			}
			e.files = append(e.files, sc)
		}
	}
}

// espMount is where the root's /etc/fstab mounts the FAT filesystem f (by its UUID), else /boot/efi.
func (e *guestEditor) espMount(f *fat.FS) string {
	const def = "/boot/efi"
	if e.root == nil || f == nil {
		return def
	}
	b, err := readFile(e.root.fs, "/etc/fstab")
	if err != nil {
		return def
	}
	uuid := f.UUID()
	if uuid == "" {
		return def
	}
	for _, ln := range strings.Split(string(b), "\n") {
		fl := strings.Fields(ln)
		if len(fl) < 2 || strings.HasPrefix(fl[0], "#") {
			continue
		}
		spec := unescapeFstab(fl[0])
		if v, ok := strings.CutPrefix(spec, "UUID="); ok && strings.EqualFold(strings.Trim(v, `"`), uuid) && strings.HasPrefix(fl[1], "/") {
			return strings.TrimRight(unescapeFstab(fl[1]), "/")
		}
	}
	return def
}
