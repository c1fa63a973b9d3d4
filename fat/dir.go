package fat

import (
	"encoding/binary"
	"fmt"
	iofs "io/fs"
	"strings"
	"unicode/utf16"
)

// dirEntry mirrors a 32-byte short (8.3) directory entry.
type dirEntry struct {
	Name         [11]byte // 0: base and extension, space-padded; 0x00 ends the directory, 0xE5 marks a deleted entry, 0x05 stands for 0xE5
	Attr         byte     // 11
	NTRes        byte     // 12: 0x08 base in lower case, 0x10 extension in lower case (Windows NT)
	CrtTimeTenth byte     // 13
	CrtTime      uint16   // 14
	CrtDate      uint16   // 16
	LstAccDate   uint16   // 18
	FstClusHi    uint16   // 20: high half of the first cluster (FAT32 only)
	WrtTime      uint16   // 22
	WrtDate      uint16   // 24
	FstClusLo    uint16   // 26
	FileSize     uint32   // 28
}

func parseDirEntry(d []byte) dirEntry {
	le := binary.LittleEndian
	var e dirEntry
	copy(e.Name[:], d[0:11])
	e.Attr = d[11]
	e.NTRes = d[12]
	e.CrtTimeTenth = d[13]
	e.CrtTime = le.Uint16(d[14:])
	e.CrtDate = le.Uint16(d[16:])
	e.LstAccDate = le.Uint16(d[18:])
	e.FstClusHi = le.Uint16(d[20:])
	e.WrtTime = le.Uint16(d[22:])
	e.WrtDate = le.Uint16(d[24:])
	e.FstClusLo = le.Uint16(d[26:])
	e.FileSize = le.Uint32(d[28:])
	return e
}

// lfnEntry mirrors a VFAT long-name entry; a name's entries precede its
// short entry, last part first.
type lfnEntry struct {
	Ord       byte      // 0: part number 1..20; 0x40 marks the last part (the first entry)
	Name1     [5]uint16 // 1
	Attr      byte      // 11: 0x0F
	Type      byte      // 12
	Checksum  byte      // 13: lfnChecksum of the short entry's name
	Name2     [6]uint16 // 14
	FstClusLo uint16    // 26: 0
	Name3     [2]uint16 // 28
}

func parseLFNEntry(d []byte) lfnEntry {
	le := binary.LittleEndian
	e := lfnEntry{Ord: d[0], Attr: d[11], Type: d[12], Checksum: d[13], FstClusLo: le.Uint16(d[26:])}
	for i := range e.Name1 {
		e.Name1[i] = le.Uint16(d[1+2*i:])
	}
	for i := range e.Name2 {
		e.Name2[i] = le.Uint16(d[14+2*i:])
	}
	for i := range e.Name3 {
		e.Name3[i] = le.Uint16(d[28+2*i:])
	}
	return e
}

// units returns the 13 UTF-16 units the entry holds.
func (l *lfnEntry) units() []uint16 {
	u := make([]uint16, 0, 13)
	u = append(u, l.Name1[:]...)
	u = append(u, l.Name2[:]...)
	return append(u, l.Name3[:]...)
}

// File is a file or directory found in a directory.
type File struct {
	Name         string // the long name if there is a valid one, else the 8.3 name
	EntryOffset  int64  // byte offset of its 32-byte short directory entry within the filesystem
	Attr         byte   // Attr* bits
	FirstCluster uint32 // 0 for an empty file
	Size         uint32 // bytes (0 on disk for a directory, and ignored)
}

// IsDir reports whether f is a directory.
func (f *File) IsDir() bool { return f.Attr&AttrDir != 0 }

// dirRegions lists the byte runs holding a directory: the fixed FAT12/16
// root, or the clusters of its chain, at most MaxDirEntries entries.
func (fs *FS) dirRegions(dir *File) ([][2]int64, error) {
	if dir == nil && fs.Bits != 32 {
		return [][2]int64{{fs.rootOff, fs.rootEntries * dirEntrySize}}, nil
	}
	first, entryOff := fs.rootCluster, int64(-1)
	if dir != nil {
		if !dir.IsDir() {
			return nil, &iofs.PathError{Op: "readdir", Path: dir.Name, Err: ErrNotDir}
		}
		if dir.FirstCluster == 0 {
			// Only ".." may point at cluster 0 (the root), and ReadDir
			// does not return it.
			return nil, corrupt("directory entry", dir.EntryOffset, "directory %q has no first cluster", dir.Name)
		}
		first, entryOff = dir.FirstCluster, dir.EntryOffset
	}
	maxClusters := (MaxDirEntries*dirEntrySize + fs.ClusterSize - 1) / fs.ClusterSize
	cs, err := fs.chain(first, maxClusters, entryOff, "FAT's limit of 65536 directory entries takes")
	if err != nil {
		return nil, err
	}
	rs := make([][2]int64, 0, len(cs))
	for _, c := range cs {
		off := fs.clusterOffset(c)
		if n := len(rs); n > 0 && rs[n-1][0]+rs[n-1][1] == off {
			rs[n-1][1] += fs.ClusterSize // one read for contiguous clusters
			continue
		}
		rs = append(rs, [2]int64{off, fs.ClusterSize})
	}
	return rs, nil
}

// ReadDir lists a directory (nil: the root) in on-disk order, without ".",
// "..", volume labels, deleted entries and long-name entries. A file's Name
// is its long name when the long-name entries before its short entry are
// complete, in order and carry the short name's checksum; otherwise it is
// the 8.3 name, in lower case where Windows NT's flags say so. Names keep
// the OEM code page's bytes above 0x7F as they are.
func (fs *FS) ReadDir(dir *File) ([]File, error) {
	rs, err := fs.dirRegions(dir)
	if err != nil {
		return nil, err
	}
	var out []File
	var lfn []uint16 // the long name being assembled, nil when none
	var lfnSum byte  // its checksum
	var lfnNext byte // the part expected next; 0 when complete
	for _, r := range rs {
		buf := make([]byte, r[1])
		if err := fs.readAt(buf, r[0], "directory"); err != nil {
			return nil, err
		}
		for i := 0; i+dirEntrySize <= len(buf); i += dirEntrySize {
			d := buf[i : i+dirEntrySize]
			switch {
			case d[0] == 0:
				return out, nil // end of directory: nothing after it is in use
			case d[0] == 0xe5:
				lfn = nil
				continue
			case d[11]&attrLFNMask == attrLFN:
				l := parseLFNEntry(d)
				ord := l.Ord &^ 0x40
				if l.Ord&0x40 != 0 && ord >= 1 && ord <= maxLFNEntries {
					lfn, lfnSum, lfnNext = make([]uint16, 13*int(ord)), l.Checksum, ord
				}
				if lfn == nil || lfnNext == 0 || ord != lfnNext || l.Checksum != lfnSum {
					lfn = nil // orphaned or out of order: the short name is used
					continue
				}
				copy(lfn[13*int(ord-1):], l.units())
				lfnNext--
				continue
			}
			long, complete := lfn, lfnNext == 0
			lfn = nil
			e := parseDirEntry(d)
			if e.Attr&AttrVolumeID != 0 || e.Name == dotName || e.Name == dotDotName {
				continue
			}
			f := File{EntryOffset: r[0] + int64(i), Attr: e.Attr, Size: e.FileSize, FirstCluster: uint32(e.FstClusLo)}
			if fs.Bits == 32 {
				f.FirstCluster |= uint32(e.FstClusHi) << 16
			}
			if long != nil && complete && lfnChecksum(e.Name[:]) == lfnSum {
				f.Name = decodeLong(long)
			}
			if f.Name == "" {
				f.Name = shortName(&e)
			}
			out = append(out, f)
		}
	}
	return out, nil
}

var (
	dotName    = [11]byte{'.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}
	dotDotName = [11]byte{'.', '.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}
)

// decodeLong decodes a long name's UTF-16 units up to the 0x0000 that ends
// a name not filling its last entry.
func decodeLong(u []uint16) string {
	for k, c := range u {
		if c == 0 {
			u = u[:k]
			break
		}
	}
	return string(utf16.Decode(u))
}

// lfnChecksum is the checksum long-name entries carry of their short name,
// which ties them to it: a short entry rewritten by a tool that does not know
// long names no longer matches.
func lfnChecksum(name []byte) byte {
	var s byte
	for _, c := range name {
		s = (s>>1 | s<<7) + c
	}
	return s
}

// shortName decodes an 8.3 name, honouring the lower-case flags Windows NT
// sets in byte 12 (mkfs/mtools and Linux set them too, for names such as
// "grub.cfg" that need no long name).
func shortName(e *dirEntry) string {
	base, ext := strings.TrimRight(string(e.Name[0:8]), " "), strings.TrimRight(string(e.Name[8:11]), " ")
	if base != "" && base[0] == 0x05 {
		base = "\xe5" + base[1:]
	}
	if e.NTRes&0x08 != 0 {
		base = strings.ToLower(base)
	}
	if e.NTRes&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	if ext == "" {
		return base
	}
	return base + "." + ext
}

// Lookup finds a file or directory by its slash-separated path from the
// root, comparing names case-insensitively (Unicode simple folding) as FAT
// does. "." and ".." are not special. Errors are *fs.PathError wrapping
// fs.ErrNotExist, ErrNotDir, fs.ErrInvalid (the root itself, which has no
// directory entry: use ReadDir(nil)) or a corruption error.
func (fs *FS) Lookup(path string) (*File, error) {
	perr := func(err error) error { return &iofs.PathError{Op: "lookup", Path: path, Err: err} }
	var cur *File
	for _, el := range strings.Split(path, "/") {
		if el == "" {
			continue
		}
		if cur != nil && !cur.IsDir() {
			return nil, perr(fmt.Errorf("%s: %w", cur.Name, ErrNotDir))
		}
		ents, err := fs.ReadDir(cur)
		if err != nil {
			return nil, perr(err)
		}
		var found *File
		for i := range ents {
			if strings.EqualFold(ents[i].Name, el) {
				found = &ents[i]
				break
			}
		}
		if found == nil {
			return nil, perr(iofs.ErrNotExist)
		}
		cur = found
	}
	if cur == nil {
		return nil, perr(fmt.Errorf("%w: the root directory has no directory entry", iofs.ErrInvalid))
	}
	return cur, nil
}
