package luksconv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"unicode/utf16"

	"github.com/luksconv/luksconv/guest"
)

// The EFI System Partition is FAT. luksconv reads it with the small read-only reader below and edits
// files there in place: a file keeps its clusters (nothing is allocated or freed), only the bytes in
// them and the size in its directory entry change, so the FATs and the FAT32 FSInfo stay as they are.

const (
	fatDirEntrySize = 32
	// fatMaxDirEntries is FAT's own limit on a directory (65536 entries).
	fatMaxDirEntries = 65536
	fatAttrDir       = 0x10
	fatAttrVolume    = 0x08
	fatAttrLFN       = 0x0f
)

// fatFS is a FAT12/16/32 filesystem, read-only.
type fatFS struct {
	r           io.ReaderAt
	size        int64
	bits        int   // 12, 16 or 32
	clusterSize int64 // bytes
	fatOff      int64 // byte offset of the first FAT
	rootOff     int64 // FAT12/16: byte offset of the fixed root directory
	rootEntries int
	rootCluster uint32 // FAT32
	dataOff     int64  // byte offset of cluster 2
	clusters    uint32 // number of data clusters
	serial      uint32 // volume serial number (the fstab UUID)
}

// fatFile is a directory entry found by lookup.
type fatFile struct {
	name     string // long name if any, else the short name
	entryOff int64  // byte offset of the 32-byte short entry
	attr     byte
	first    uint32
	size     uint32
}

func (f *fatFile) isDir() bool { return f.attr&fatAttrDir != 0 }

// openFAT reads and validates the boot sector (BPB) of a FAT filesystem of size bytes.
func openFAT(r io.ReaderAt, size int64) (*fatFS, error) {
	var bs [512]byte
	if _, err := r.ReadAt(bs[:], 0); err != nil {
		return nil, fmt.Errorf("fat: boot sector at byte 0: %w", err)
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(bs[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(bs[o:])) }
	bad := func(o int, format string, a ...any) error {
		return fmt.Errorf("fat: boot sector at byte %d: %s", o, fmt.Sprintf(format, a...))
	}
	if bs[510] != 0x55 || bs[511] != 0xaa {
		return nil, bad(510, "no 0x55aa signature")
	}
	bps := le16(11)
	if bps < 512 || bps > 4096 || bps&(bps-1) != 0 {
		return nil, bad(11, "bytes per sector %d is not a power of two from 512 to 4096", bps)
	}
	spc := int64(bs[13])
	if spc == 0 || spc&(spc-1) != 0 {
		return nil, bad(13, "sectors per cluster %d is not a power of two", spc)
	}
	reserved, nfats, rootEntries := le16(14), int64(bs[16]), le16(17)
	if reserved == 0 {
		return nil, bad(14, "no reserved sectors")
	}
	if nfats == 0 {
		return nil, bad(16, "no FAT")
	}
	total := le16(19)
	if total == 0 {
		total = le32(32)
	}
	fatSectors := le16(22)
	if fatSectors == 0 {
		fatSectors = le32(36)
	}
	if fatSectors == 0 {
		return nil, bad(22, "FAT size is zero")
	}
	rootSectors := (rootEntries*fatDirEntrySize + bps - 1) / bps
	dataSector := reserved + nfats*fatSectors + rootSectors
	if total <= dataSector || total*bps > size {
		return nil, bad(19, "%d sectors of %d bytes (data from sector %d) do not fit the %d-byte partition", total, bps, dataSector, size)
	}
	f := &fatFS{r: r, size: size, clusterSize: bps * spc, fatOff: reserved * bps,
		rootOff: (reserved + nfats*fatSectors) * bps, rootEntries: int(rootEntries), dataOff: dataSector * bps}
	n := (total - dataSector) / spc
	switch {
	case n < 4085:
		f.bits = 12
	case n < 65525:
		f.bits = 16
	default:
		f.bits = 32
	}
	if n > 0x0ffffff5 {
		return nil, bad(32, "%d clusters is more than FAT32 holds", n)
	}
	f.clusters = uint32(n)
	if fatSectors*bps*8 < (n+2)*int64(f.bits) {
		return nil, bad(22, "a FAT of %d sectors is too small for %d clusters", fatSectors, n)
	}
	serialOff := 39
	if f.bits == 32 {
		if rootEntries != 0 {
			return nil, bad(17, "FAT32 with %d fixed root entries", rootEntries)
		}
		f.rootCluster = uint32(le32(44))
		if !f.valid(f.rootCluster) {
			return nil, bad(44, "root directory cluster %d out of range", f.rootCluster)
		}
		serialOff = 67
	} else if rootEntries == 0 {
		return nil, bad(17, "FAT%d without root directory entries", f.bits)
	}
	f.serial = binary.LittleEndian.Uint32(bs[serialOff:])
	return f, nil
}

func (f *fatFS) valid(c uint32) bool { return c >= 2 && c < f.clusters+2 }

// next reads the FAT entry of cluster c: the next cluster, or 0 at the end of the chain.
func (f *fatFS) next(c uint32) (uint32, error) {
	var off int64
	var b [4]byte
	switch f.bits {
	case 12:
		off = f.fatOff + int64(c)*3/2
	default:
		off = f.fatOff + int64(c)*int64(f.bits/8)
	}
	n := 2
	if f.bits == 32 {
		n = 4
	}
	if _, err := f.r.ReadAt(b[:n], off); err != nil {
		return 0, fmt.Errorf("fat: FAT entry of cluster %d at byte %d: %w", c, off, err)
	}
	var v, eoc, badc uint32
	switch f.bits {
	case 12:
		v = uint32(binary.LittleEndian.Uint16(b[:]))
		if c&1 == 1 {
			v >>= 4
		}
		v &= 0xfff
		eoc, badc = 0xff8, 0xff7
	case 16:
		v, eoc, badc = uint32(binary.LittleEndian.Uint16(b[:])), 0xfff8, 0xfff7
	default:
		v, eoc, badc = binary.LittleEndian.Uint32(b[:])&0x0fffffff, 0x0ffffff8, 0x0ffffff7
	}
	switch {
	case v >= eoc:
		return 0, nil
	case v == badc:
		return 0, fmt.Errorf("fat: FAT entry of cluster %d at byte %d: chain runs into a bad cluster", c, off)
	case !f.valid(v):
		return 0, fmt.Errorf("fat: FAT entry of cluster %d at byte %d: next cluster %d out of range", c, off, v)
	}
	return v, nil
}

// chain lists the clusters from first, at most max of them (a longer chain, or a loop, is an error).
func (f *fatFS) chain(first uint32, max int) ([]uint32, error) {
	if first == 0 {
		return nil, nil
	}
	if !f.valid(first) {
		return nil, fmt.Errorf("fat: first cluster %d out of range", first)
	}
	var cs []uint32
	for c := first; c != 0; {
		if len(cs) >= max {
			return nil, fmt.Errorf("fat: cluster chain from %d is longer than %d clusters (or loops)", first, max)
		}
		cs = append(cs, c)
		var err error
		if c, err = f.next(c); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

func (f *fatFS) clusterOff(c uint32) int64 { return f.dataOff + int64(c-2)*f.clusterSize }

// dirRegions lists the byte runs holding a directory: the fixed root, or its clusters.
func (f *fatFS) dirRegions(dir *fatFile) ([][2]int64, error) {
	if dir == nil && f.bits != 32 {
		return [][2]int64{{f.rootOff, int64(f.rootEntries) * fatDirEntrySize}}, nil
	}
	first := f.rootCluster
	if dir != nil {
		first = dir.first
	}
	maxClusters := int(fatMaxDirEntries*fatDirEntrySize/f.clusterSize) + 1
	cs, err := f.chain(first, maxClusters)
	if err != nil {
		return nil, err
	}
	rs := make([][2]int64, len(cs))
	for i, c := range cs {
		rs[i] = [2]int64{f.clusterOff(c), f.clusterSize}
	}
	return rs, nil
}

// readDir lists a directory (nil: the root), without "." and "..", volume labels and deleted entries.
func (f *fatFS) readDir(dir *fatFile) ([]fatFile, error) {
	rs, err := f.dirRegions(dir)
	if err != nil {
		return nil, err
	}
	var out []fatFile
	var lfn []uint16
	lfnSum, lfnNext := byte(0), 0
	for _, r := range rs {
		buf := make([]byte, r[1])
		if _, err := f.r.ReadAt(buf, r[0]); err != nil {
			return nil, fmt.Errorf("fat: directory at byte %d: %w", r[0], err)
		}
		for i := 0; i+fatDirEntrySize <= len(buf); i += fatDirEntrySize {
			d := buf[i : i+fatDirEntrySize]
			switch {
			case d[0] == 0:
				return out, nil
			case d[0] == 0xe5:
				lfn = nil
				continue
			case d[11]&0x3f == fatAttrLFN:
				ord := int(d[0] & 0x3f)
				if d[0]&0x40 != 0 {
					lfn, lfnSum, lfnNext = make([]uint16, 13*ord), d[13], ord
				}
				if lfn == nil || ord != lfnNext || ord == 0 || d[13] != lfnSum {
					lfn = nil // orphaned or broken long name: fall back to the short name
					continue
				}
				lfnNext--
				p := lfn[(ord-1)*13:]
				for k, o := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
					p[k] = binary.LittleEndian.Uint16(d[o:])
				}
				continue
			}
			long := lfn
			lfn = nil
			if d[11]&fatAttrVolume != 0 || d[0] == '.' {
				continue
			}
			e := fatFile{entryOff: r[0] + int64(i), attr: d[11], size: binary.LittleEndian.Uint32(d[28:]),
				first: uint32(binary.LittleEndian.Uint16(d[20:]))<<16 | uint32(binary.LittleEndian.Uint16(d[26:]))}
			if f.bits != 32 {
				e.first &= 0xffff
			}
			if long != nil && lfnNext == 0 && lfnChecksum(d[:11]) == lfnSum {
				for k, c := range long {
					if c == 0 {
						long = long[:k]
						break
					}
				}
				e.name = string(utf16.Decode(long))
			} else {
				e.name = shortName(d)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func lfnChecksum(name []byte) byte {
	var s byte
	for _, c := range name {
		s = (s>>1 | s<<7) + c
	}
	return s
}

// shortName decodes an 8.3 name, honouring the lower-case flags Windows NT sets in byte 12.
func shortName(d []byte) string {
	base, ext := strings.TrimRight(string(d[0:8]), " "), strings.TrimRight(string(d[8:11]), " ")
	if base != "" && base[0] == 0x05 {
		base = "\xe5" + base[1:]
	}
	if d[12]&0x08 != 0 {
		base = strings.ToLower(base)
	}
	if d[12]&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	if ext == "" {
		return base
	}
	return base + "." + ext
}

// lookup finds a slash-separated path from the root, comparing names case-insensitively as FAT does.
func (f *fatFS) lookup(p string) (*fatFile, error) {
	var cur *fatFile
	for _, el := range strings.Split(strings.Trim(p, "/"), "/") {
		if el == "" {
			continue
		}
		if cur != nil && !cur.isDir() {
			return nil, fmt.Errorf("fat: %s: %s is not a directory", p, cur.name)
		}
		ents, err := f.readDir(cur)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		var found *fatFile
		for i := range ents {
			if strings.EqualFold(ents[i].name, el) {
				found = &ents[i]
				break
			}
		}
		if found == nil {
			return nil, fmt.Errorf("fat: %s: %w", p, fs.ErrNotExist)
		}
		cur = found
	}
	if cur == nil {
		return nil, fmt.Errorf("fat: %s: the root is not a file", p)
	}
	return cur, nil
}

// readFile returns a regular file's content and its clusters, which must cover exactly its size.
func (f *fatFS) readFile(e *fatFile, max int64) ([]byte, []uint32, error) {
	if e.isDir() {
		return nil, nil, fmt.Errorf("fat: directory entry at byte %d: %s is a directory", e.entryOff, e.name)
	}
	if int64(e.size) > max {
		return nil, nil, fmt.Errorf("fat: directory entry at byte %d: %s is %d bytes, more than the %d read", e.entryOff, e.name, e.size, max)
	}
	want := int((int64(e.size) + f.clusterSize - 1) / f.clusterSize)
	cs, err := f.chain(e.first, want+1)
	if err != nil {
		return nil, nil, fmt.Errorf("%s (directory entry at byte %d): %w", e.name, e.entryOff, err)
	}
	if len(cs) != want {
		return nil, nil, fmt.Errorf("fat: directory entry at byte %d: %s is %d bytes but its chain has %d clusters of %d bytes", e.entryOff, e.name, e.size, len(cs), f.clusterSize)
	}
	b := make([]byte, e.size)
	for i, c := range cs {
		lo := int64(i) * f.clusterSize
		hi := min(lo+f.clusterSize, int64(e.size))
		if _, err := f.r.ReadAt(b[lo:hi], f.clusterOff(c)); err != nil {
			return nil, nil, fmt.Errorf("fat: %s cluster %d at byte %d: %w", e.name, c, f.clusterOff(c), err)
		}
	}
	return b, cs, nil
}

// fatWrite is a write in filesystem byte offsets.
type fatWrite struct {
	off  int64
	data []byte
}

// rewrite returns the writes that replace a file's content with data in the clusters it has: whole
// clusters (the slack past the new end is zeroed, so no copy of the old bytes stays there) and, if
// the size changes, the size field of its directory entry. fsck.fat takes a chain longer or shorter
// than the size needs as an error, so data must need exactly as many clusters as the file has.
func (f *fatFS) rewrite(e *fatFile, cs []uint32, data []byte) ([]fatWrite, error) {
	if need := (int64(len(data)) + f.clusterSize - 1) / f.clusterSize; need != int64(len(cs)) {
		return nil, fmt.Errorf("fat: directory entry at byte %d: %d bytes need %d clusters, %s has %d", e.entryOff, len(data), need, e.name, len(cs))
	}
	var ws []fatWrite
	for i, c := range cs {
		buf := make([]byte, f.clusterSize)
		copy(buf, data[min(int64(i)*f.clusterSize, int64(len(data))):])
		off := f.clusterOff(c)
		if n := len(ws); n > 0 && ws[n-1].off+int64(len(ws[n-1].data)) == off {
			ws[n-1].data = append(ws[n-1].data, buf...)
			continue
		}
		ws = append(ws, fatWrite{off, buf})
	}
	if uint32(len(data)) != e.size {
		var sz [4]byte
		binary.LittleEndian.PutUint32(sz[:], uint32(len(data)))
		ws = append(ws, fatWrite{e.entryOff + 28, sz[:]})
	}
	return ws, nil
}

// padToClusters pads text data with a trailing comment line so that it needs n clusters (it is
// returned as is when it already does or needs more).
func padToClusters(data []byte, n int, clusterSize int64) []byte {
	minLen := (int64(n)-1)*clusterSize + 1
	if n == 0 || int64(len(data)) >= minLen {
		return data
	}
	out := append([]byte(nil), data...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	pad := minLen - int64(len(out))
	if pad <= 0 {
		return out
	}
	const note = "# luksconv: padding so the file keeps its FAT clusters "
	line := make([]byte, pad)
	for i := range line {
		line[i] = '#'
	}
	if pad > int64(len(note))+1 {
		copy(line, note)
	}
	line[pad-1] = '\n'
	return append(out, line...)
}

// espEdits edits EFI/*/grubenv and EFI/*/grub.cfg on every EFI System Partition with pol.
func (e *guestEditor) espEdits(pol guest.Policy) {
	for _, v := range e.espVols {
		e.espVolEdits(v, pol)
	}
}

func (e *guestEditor) espVolEdits(v guestVolume, pol guest.Policy) {
	label := fmt.Sprintf("partition %d (FAT, EFI System Partition)", v.part)
	f, err := openFAT(v.r, v.size)
	var dirs []fatFile
	if err == nil {
		var efi *fatFile
		if efi, err = f.lookup("EFI"); err == nil {
			dirs, err = f.readDir(efi)
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.espErr[v.part] = err.Error()
		e.warn(fmt.Sprintf("%s is not edited: %v; its EFI/*/grubenv and grub.cfg may still carry ADE's kernel arguments", label, err))
		return
	}
	e.espRead[v.part] = true
	mount := e.espMount(f)
	fsLabel := fmt.Sprintf("%s (partition %d)", mount, v.part)
	for i := range dirs {
		if !dirs[i].isDir() {
			continue
		}
		ents, err := f.readDir(&dirs[i])
		if err != nil {
			e.warn(fmt.Sprintf("%s: EFI/%s: %v", label, dirs[i].name, err))
			continue
		}
		for j := range ents {
			ent := &ents[j]
			lname := strings.ToLower(ent.name)
			if ent.isDir() || (lname != "grubenv" && lname != "grub.cfg") {
				continue
			}
			gp := mount + "/EFI/" + dirs[i].name + "/" + ent.name
			b, cs, err := f.readFile(ent, maxConfigFile)
			if err != nil {
				e.warn(fmt.Sprintf("%s: not edited: %v", gp, err))
				continue
			}
			var n []byte
			var changes []guest.Change
			if lname == "grubenv" {
				n, changes, err = pol.FixGrubenv(b)
				if errors.Is(err, guest.ErrNotGrubenv) {
					e.warn(fmt.Sprintf("%s: %v; left alone", gp, err))
					continue
				}
				if err == nil && n != nil && len(n) != len(b) {
					err = fmt.Errorf("the edited block is %d bytes, not %d", len(n), len(b))
				}
			} else {
				if n, changes = pol.FixGrubCfg(gp, b); n != nil {
					fixed := len(n)
					if n = padToClusters(n, len(cs), f.clusterSize); len(n) != fixed && len(changes) > 0 {
						changes[len(changes)-1].Why += fmt.Sprintf("; %d bytes of trailing comment keep the file's %d FAT clusters (luksconv does not free clusters)", len(n)-fixed, len(cs))
					}
				}
			}
			sc := scanned{path: gp, before: b, after: b}
			if err == nil && n != nil {
				var ws []fatWrite
				if ws, err = f.rewrite(ent, cs, n); err == nil {
					for _, w := range ws {
						e.patches = append(e.patches, Patch{Offset: v.out + w.off, Length: len(w.data), Why: "guest edit: " + gp, Data: w.data})
					}
					sc.after = n
					for _, c := range changes {
						e.edits = append(e.edits, Edit{Filesystem: fsLabel, Path: gp, Why: c.Why, Before: c.Before, After: c.After})
					}
				}
			}
			if err != nil {
				e.warn(fmt.Sprintf("%s: not edited: %v", gp, err))
			}
			e.files = append(e.files, sc)
		}
	}
}

// espMount is where the root's /etc/fstab mounts the FAT filesystem f (by its UUID), else /boot/efi.
func (e *guestEditor) espMount(f *fatFS) string {
	const def = "/boot/efi"
	if e.root == nil || f == nil {
		return def
	}
	b, err := readFile(e.root.fs, "/etc/fstab")
	if err != nil {
		return def
	}
	uuid := fmt.Sprintf("%04X-%04X", f.serial>>16, f.serial&0xffff)
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
