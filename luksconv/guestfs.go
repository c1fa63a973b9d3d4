package luksconv

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/lvm"
)

// guestVolume is a volume that may hold guest filesystems: a partition, or the decrypted volume.
type guestVolume struct {
	part     int
	partUUID string
	r        io.ReaderAt
	size     int64
	out      int64 // output offset of byte 0
	content  Content
	// toOut, when set, maps the volume's bytes to output bytes instead of out (a volume inside an LV),
	// and name names the volume ("LV vg/lv") instead of its partition.
	toOut func(off, n int64) ([]extent.Range, error)
	name  string
}

// guestFS is an XFS filesystem of the guest and how its device maps to the output.
type guestFS struct {
	name     string // "partition 2", "rootvg/varlv"
	part     int
	partUUID string
	vg, lv   string
	fs       fsys
	toOut    func(off, n int64) ([]extent.Range, error) // device bytes to output bytes
	mount    string
	readOnly error // why it must not be edited, nil if it may be
	warned   bool
}

func (g *guestFS) label() string {
	if g.mount == "" {
		return g.name
	}
	return fmt.Sprintf("%s (%s)", g.mount, g.name)
}

// guestPath is the path of fsPath in the running guest.
func (g *guestFS) guestPath(fsPath string) string {
	return path.Join(g.mount, fsPath)
}

func (g *guestFS) uuid() string { return g.fs.UUID() }

func (g *guestFS) fsLabel() string { return g.fs.Label() }

// discover opens the XFS filesystems of a volume: the volume itself, or the XFS logical volumes of an
// LVM PV.
func (e *guestEditor) discover(v guestVolume) {
	out := v.out
	linear := func(off, n int64) ([]extent.Range, error) { return []extent.Range{{Off: out + off, Len: n}}, nil }
	if v.toOut != nil {
		linear = v.toOut
	}
	name := v.name
	if name == "" {
		name = fmt.Sprintf("partition %d", v.part)
	}
	switch v.content {
	case ContentXFS:
		e.openFS(name, v.part, v.partUUID, "", "", v.r, v.size, ContentXFS, linear)
	case ContentExt4:
		e.openFS(name, v.part, v.partUUID, "", "", v.r, v.size, ContentExt4, linear)
	case ContentLVM2:
		pv, err := lvm.Open(v.r, v.size)
		if err != nil || pv.VG == nil {
			return // usedOnly already warned
		}
		for i := range pv.VG.LVs {
			lv := &pv.VG.LVs[i]
			lvr := pv.LVReader(v.r, lv)
			head := make([]byte, probeSize)
			n, _ := lvr.ReadAt(head, 0)
			content := probeBytes(head[:n])
			if content != ContentXFS && content != ContentExt4 {
				continue
			}
			toOut := func(off, n int64) ([]extent.Range, error) {
				ext, err := pv.Map(lv, off, n)
				if err != nil {
					return nil, err
				}
				r := make([]extent.Range, 0, len(ext))
				for _, x := range ext {
					// through the volume's own map (linear, or an LV's extents)
					rs, err := linear(x.PVOff, x.Len)
					if err != nil {
						return nil, err
					}
					r = append(r, rs...)
				}
				return r, nil
			}
			e.openFS(pv.VG.Name+"/"+lv.Name, v.part, "", pv.VG.Name, lv.Name, lvr, lv.Size, content, toOut)
		}
	}
}

// openFS opens a guest filesystem (XFS or ext) to be looked at and edited.
func (e *guestEditor) openFS(name string, part int, partUUID, vg, lv string, r io.ReaderAt, size int64, content Content,
	toOut func(off, n int64) ([]extent.Range, error)) {
	x, err := openFsys(r, size, content)
	if err != nil {
		e.warn(WarnUnreadable, "%s: %v", name, err)
		return
	}
	e.fss = append(e.fss, &guestFS{name: name, part: part, partUUID: partUUID, vg: vg, lv: lv, fs: x, readOnly: x.Writable(), toOut: toOut})
}

func has(x fsys, p string) bool {
	_, err := x.Lookup(p)
	return err == nil
}

// pickBoot chooses /boot: the partition holding ADE's header, or else one with a GRUB or BLS
// configuration and no /etc.
func (e *guestEditor) pickBoot() {
	for _, want := range []func(fsys) bool{
		func(x fsys) bool { return has(x, ADEHeaderPath) },
		func(x fsys) bool {
			return !has(x, "/etc") && (has(x, "/grub2/grub.cfg") || has(x, "/grub2/grubenv") || has(x, "/loader/entries"))
		},
	} {
		for _, g := range e.fss {
			if g.lv == "" && want(g.fs) {
				e.boot, g.mount = g, "/boot"
				g.fs.SetMountPoint("/boot")
				return
			}
		}
	}
}

// pickRoot chooses the root filesystem: the one with /etc/fstab and /etc/crypttab or /etc/os-release.
func (e *guestEditor) pickRoot() {
	var cands []*guestFS
	for _, g := range e.fss {
		if g != e.boot && has(g.fs, "/etc/fstab") && (has(g.fs, "/etc/crypttab") || has(g.fs, "/etc/os-release")) {
			cands = append(cands, g)
		}
	}
	if len(cands) == 0 {
		e.noRoot = "no filesystem with /etc/fstab and /etc/os-release or /etc/crypttab was found"
		return
	}
	if len(cands) > 1 {
		var names []string
		for _, g := range cands {
			names = append(names, g.name)
		}
		e.warn(WarnGuestLayout, "several filesystems look like a root filesystem (%s); editing %s", strings.Join(names, ", "), cands[0].name)
	}
	e.root, cands[0].mount = cands[0], "/"
	cands[0].fs.SetMountPoint("/")
}

// mountFromFstab assigns mount points to the other filesystems as the root's /etc/fstab names them.
func (e *guestEditor) mountFromFstab(parts []PartitionInfo) {
	b, err := readFile(e.root.fs, "/etc/fstab")
	if err != nil {
		e.warn(WarnGuestLayout, "%s: /etc/fstab: %v", e.root.name, err)
		return
	}
	for _, ln := range strings.Split(string(b), "\n") {
		f := strings.Fields(ln)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		spec, mnt := unescapeFstab(f[0]), unescapeFstab(f[1])
		if !strings.HasPrefix(mnt, "/") || mnt == "/" || mnt == "/boot" {
			continue
		}
		for _, g := range e.fss {
			if g.mount == "" && g.matches(spec) {
				g.mount = path.Clean(mnt)
				g.fs.SetMountPoint(g.mount)
				break
			}
		}
	}
}

// matches reports whether an fstab device spec names g.
func (g *guestFS) matches(spec string) bool {
	cut := func(prefixes ...string) (string, bool) {
		for _, p := range prefixes {
			if v, ok := strings.CutPrefix(spec, p); ok {
				return strings.Trim(v, `"`), true
			}
		}
		return "", false
	}
	if v, ok := cut("UUID=", "/dev/disk/by-uuid/"); ok {
		return strings.EqualFold(v, g.uuid())
	}
	if v, ok := cut("LABEL=", "/dev/disk/by-label/"); ok {
		return v != "" && v == g.fsLabel()
	}
	if v, ok := cut("PARTUUID=", "/dev/disk/by-partuuid/"); ok {
		return g.lv == "" && g.partUUID != "" && strings.EqualFold(v, g.partUUID)
	}
	if g.lv == "" {
		return false
	}
	dm := strings.ReplaceAll(g.vg, "-", "--") + "-" + strings.ReplaceAll(g.lv, "-", "--")
	return spec == "/dev/mapper/"+dm || spec == "/dev/"+g.vg+"/"+g.lv
}

// unescapeFstab decodes fstab's octal escapes (\040 for a space).
func unescapeFstab(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// resolve finds the filesystem holding guest path p (longest mount point) and the path inside it.
func (e *guestEditor) resolve(p string) (*guestFS, string) {
	var best *guestFS
	for _, g := range e.fss {
		if g.mount == "" {
			continue
		}
		if p == g.mount || g.mount == "/" || strings.HasPrefix(p, g.mount+"/") {
			if best == nil || len(g.mount) > len(best.mount) {
				best = g
			}
		}
	}
	if best == nil {
		return nil, ""
	}
	rel := strings.TrimPrefix(p, best.mount)
	if best.mount == "/" {
		rel = p
	}
	if rel == "" {
		rel = "/"
	}
	return best, rel
}

// readGuest reads the regular file at a guest path (at most maxConfigFile bytes unless max says more).
func (e *guestEditor) readGuest(guestPath string, max ...int64) ([]byte, error) {
	g, p := e.resolve(guestPath)
	if g == nil {
		return nil, fmt.Errorf("%s: %w", guestPath, fs.ErrNotExist)
	}
	ino, err := g.fs.LookupFollow(p)
	if err != nil {
		return nil, err
	}
	limit := int64(maxConfigFile)
	if len(max) > 0 {
		limit = max[0]
	}
	if !ino.IsRegular() || ino.Size > limit {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", guestPath, limit)
	}
	return readInode(g.fs, ino)
}

// openGuest opens the regular file at a guest path (at most max bytes) for reading in place, without
// loading it: a detached header of 32 MiB is read only where LUKS looks.
func (e *guestEditor) openGuest(guestPath string, max int64) (io.ReaderAt, int64, error) {
	g, p := e.resolve(guestPath)
	if g == nil {
		return nil, 0, fmt.Errorf("%s: %w", guestPath, fs.ErrNotExist)
	}
	ino, err := g.fs.LookupFollow(p)
	if err != nil {
		return nil, 0, err
	}
	if !ino.IsRegular() || ino.Size > max {
		return nil, 0, fmt.Errorf("%s: not a regular file of at most %d bytes", guestPath, max)
	}
	r, err := g.fs.FileReader(ino)
	if err != nil {
		return nil, 0, err
	}
	return r, ino.Size, nil
}

func (e *guestEditor) exists(guestPath string) bool {
	g, p := e.resolve(guestPath)
	return g != nil && has(g.fs, p)
}

// fileRoom is the bytes a file may grow to in place: the written extents contiguous from offset 0.
func fileRoom(x fsys, ino *node) (int64, error) {
	exts, err := x.Extents(ino)
	if err != nil {
		return 0, err
	}
	pos := int64(0)
	for _, ex := range exts {
		if ex.FileOff > pos || ex.Unwritten {
			break
		}
		pos = max(pos, ex.FileOff+ex.Len)
	}
	return pos, nil
}

// writtenRanges lists the device ranges backing file bytes [from, to) rounded out to whole blocks,
// written extents only (holes and unwritten extents read as zeros already).
func writtenRanges(x fsys, ino *node, from, to int64) ([]extent.Range, error) {
	if !ino.IsRegular() || ino.realtime {
		return nil, errors.New("not a regular data-device file")
	}
	bs := x.BlockSize()
	from = from / bs * bs
	to = (to + bs - 1) / bs * bs
	exts, err := x.Extents(ino)
	if err != nil {
		return nil, err
	}
	var out []extent.Range
	for _, ex := range exts {
		s, t := max(ex.FileOff, from), min(ex.FileOff+ex.Len, to)
		if s >= t || ex.Unwritten {
			continue
		}
		out = append(out, extent.Range{Off: ex.DiskOff + s - ex.FileOff, Len: t - s})
	}
	return out, nil
}

func readInode(x fsys, ino *node) ([]byte, error) {
	r, err := x.FileReader(ino)
	if err != nil {
		return nil, err
	}
	b := make([]byte, ino.Size)
	if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

func readFile(x fsys, p string) ([]byte, error) {
	ino, err := x.LookupFollow(p)
	if err != nil {
		return nil, err
	}
	if !ino.IsRegular() || ino.Size > maxConfigFile {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", p, maxConfigFile)
	}
	return readInode(x, ino)
}
