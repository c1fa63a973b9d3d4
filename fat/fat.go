// Package fat reads FAT12, FAT16 and FAT32 filesystems (an EFI System
// Partition, say) from an io.ReaderAt and plans in-place file rewrites that
// keep every cluster where it is.
//
// What is read: the boot sector's BIOS parameter block (geometry, FAT type,
// root directory, volume serial number), the FAT entries along the cluster
// chains of the files and directories visited, and directories, with VFAT
// long names. Only the first FAT is read (the active one when FAT32 turns
// mirroring off); the other copies, the FAT32 FSInfo sector and the backup
// boot sector are not needed to read files and are left alone.
//
// The package never writes. [FS.Rewrite] returns the byte patches ([Write])
// that put new content into the clusters a file already has, plus the size
// field of its directory entry when the size changes. Nothing is allocated
// or freed, so the FATs (and their copies) and the FSInfo free-cluster hints
// stay valid as they are: that is why the new content must need exactly as
// many clusters as the file owns (fsck.fat reports a chain longer or shorter
// than the size needs), and why [PadToClusters] exists for text files that
// shrink.
//
// The FAT type follows Linux, dosfstools and EDK2: a boot sector whose
// 16-bit FAT size is zero is FAT32 whatever its cluster count (mkfs.fat -F 32
// makes such small volumes); otherwise the count of clusters picks FAT12
// (below 4085) or FAT16 (below 65525).
//
// Everything read from disk is bounded before use: the geometry against the
// device size, cluster numbers against the cluster count, directories at
// FAT's limit of 65536 entries, file chains at the clusters their size
// needs, long names at 20 entries. Errors caused by on-disk data are
// *FormatError values naming the structure and its byte offset within the
// filesystem.
package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Errors returned by the package. A *FormatError matches ErrCorrupt with
// errors.Is.
var (
	// ErrNotFAT means the first sector is not a FAT boot sector: it is
	// shorter than 512 bytes, lacks the 0x55 0xAA signature or the x86 jump
	// every FAT boot sector starts with, or names NTFS or exFAT.
	ErrNotFAT = errors.New("fat: not a FAT filesystem")
	// ErrCorrupt is matched by every *FormatError.
	ErrCorrupt = errors.New("fat: corrupt filesystem")
	// ErrUnsupported reports a valid structure this package does not read
	// (a FAT32 version other than 0.0).
	ErrUnsupported = errors.New("fat: unsupported")
	// ErrCannotEdit is wrapped by every refusal of Rewrite; the message says
	// why.
	ErrCannotEdit = errors.New("fat: cannot edit in place")
	// ErrNotDir is wrapped in an *fs.PathError when a path component or
	// the argument of ReadDir is not a directory.
	ErrNotDir = errors.New("not a directory")
	// ErrIsDir is wrapped in an *fs.PathError when ReadFile is given a
	// directory.
	ErrIsDir = errors.New("is a directory")
	// ErrTooLarge is wrapped in an *fs.PathError when a file is larger
	// than the limit given to ReadFile.
	ErrTooLarge = errors.New("file too large")
)

// A FormatError reports an on-disk structure that failed validation.
type FormatError struct {
	Structure string // e.g. "boot sector", "FAT entry of cluster 5", "directory entry", "cluster chain from 9"
	Offset    int64  // byte offset within the filesystem: of the structure, or of the boot sector's faulty field
	Reason    string // what is wrong with it
}

// Error names the damaged structure, its offset and why it is refused.
func (e *FormatError) Error() string {
	return fmt.Sprintf("fat: %s at offset %d: %s", e.Structure, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(structure string, off int64, format string, args ...any) error {
	return &FormatError{Structure: structure, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// Limits applied to on-disk values.
const (
	// MaxDirEntries is FAT's limit on the 32-byte entries of one directory
	// (the Linux driver and the Microsoft specification agree).
	MaxDirEntries = 65536
	// maxLFNEntries is how many long-name entries a 255-character name
	// takes (13 UTF-16 units each).
	maxLFNEntries = 20
)

// Directory entry attributes (byte 11 of an entry).
const (
	AttrReadOnly = 0x01 // not to be written
	AttrHidden   = 0x02 // hidden from normal listings
	AttrSystem   = 0x04 // operating system file
	AttrVolumeID = 0x08 // the volume label entry in the root directory
	AttrDir      = 0x10 // a directory
	AttrArchive  = 0x20 // changed since the last backup
	// attrLFN marks a long-name entry: all of the low four bits, compared
	// under attrLFNMask.
	attrLFN     = 0x0f
	attrLFNMask = 0x3f

	dirEntrySize = 32
)

// BootSector mirrors the boot sector: the BIOS parameter block at offset 11,
// the FAT32 extension at 36 when FATSize16 is zero, and the extended boot
// record (drive, signature, serial, label) at 36 (FAT12/16) or 64 (FAT32).
// All fields are little-endian on disk.
type BootSector struct {
	Jump              [3]byte // 0: x86 jump, 0xEB xx 0x90 or 0xE9 xx xx
	OEMName           [8]byte // 3: name of the formatting tool ("mkfs.fat", "MSWIN4.1"), informational
	BytesPerSector    uint16  // 11: 512, 1024, 2048 or 4096
	SectorsPerCluster uint8   // 13: power of two
	ReservedSectors   uint16  // 14: sectors before the first FAT, boot sector included
	NumFATs           uint8   // 16: copies of the FAT (normally 2)
	RootEntries       uint16  // 17: entries of the fixed FAT12/16 root directory; 0 on FAT32
	TotalSectors16    uint16  // 19: 0 when TotalSectors32 holds the count
	Media             uint8   // 21: 0xF0 or 0xF8..0xFF
	FATSize16         uint16  // 22: sectors per FAT; 0 on FAT32
	SectorsPerTrack   uint16  // 24: CHS geometry; unused with LBA
	NumHeads          uint16  // 26: CHS geometry; unused with LBA
	HiddenSectors     uint32  // 28: sectors before the partition
	TotalSectors32    uint32  // 32: sectors in the volume when TotalSectors16 is 0

	// FAT32 extension, zero on FAT12/16.
	FATSize32        uint32 // 36: sectors per FAT
	ExtFlags         uint16 // 40: bit 7 set: only FAT number (bits 0-3) is active
	FSVersion        uint16 // 42: 0.0
	RootCluster      uint32 // 44: first cluster of the root directory
	FSInfoSector     uint16 // 48: sector of the FSInfo structure (normally 1)
	BackupBootSector uint16 // 50: sector of the boot sector copy (normally 6); 0 = none

	// Extended boot record, at 36 (FAT12/16) or 64 (FAT32).
	DriveNumber   uint8    // +0: BIOS drive number (0x80 for a hard disk)
	BootSignature uint8    // +2: 0x29 (or 0x28: serial only) when the next fields are valid
	VolumeID      uint32   // +3: volume serial number
	VolumeLabel   [11]byte // +7 (0x29 only): label, space-padded ("NO NAME    " when none)
	FSType        [8]byte  // +18 (0x29 only), informational: "FAT12   ", "FAT32   "...

	Signature uint16 // 510: 0xAA55
}

// IsFAT32Layout reports the FAT32 BPB layout (a zero 16-bit FAT size).
func (b *BootSector) IsFAT32Layout() bool { return b.FATSize16 == 0 }

func parseBootSector(s []byte) BootSector {
	le := binary.LittleEndian
	var b BootSector
	copy(b.Jump[:], s[0:3])
	copy(b.OEMName[:], s[3:11])
	b.BytesPerSector = le.Uint16(s[11:])
	b.SectorsPerCluster = s[13]
	b.ReservedSectors = le.Uint16(s[14:])
	b.NumFATs = s[16]
	b.RootEntries = le.Uint16(s[17:])
	b.TotalSectors16 = le.Uint16(s[19:])
	b.Media = s[21]
	b.FATSize16 = le.Uint16(s[22:])
	b.SectorsPerTrack = le.Uint16(s[24:])
	b.NumHeads = le.Uint16(s[26:])
	b.HiddenSectors = le.Uint32(s[28:])
	b.TotalSectors32 = le.Uint32(s[32:])
	ext := 36
	if b.IsFAT32Layout() {
		b.FATSize32 = le.Uint32(s[36:])
		b.ExtFlags = le.Uint16(s[40:])
		b.FSVersion = le.Uint16(s[42:])
		b.RootCluster = le.Uint32(s[44:])
		b.FSInfoSector = le.Uint16(s[48:])
		b.BackupBootSector = le.Uint16(s[50:])
		ext = 64
	}
	b.DriveNumber = s[ext]
	b.BootSignature = s[ext+2]
	b.VolumeID = le.Uint32(s[ext+3:])
	copy(b.VolumeLabel[:], s[ext+7:ext+18])
	copy(b.FSType[:], s[ext+18:ext+26])
	b.Signature = le.Uint16(s[510:])
	return b
}

// FS is an opened FAT filesystem. Its exported fields are set by Open and
// must not be changed. Its methods may be called concurrently: they only
// read through the io.ReaderAt.
type FS struct {
	Boot        BootSector // as read, validated
	Bits        int        // 12, 16 or 32: the width of a FAT entry
	ClusterSize int64      // bytes per cluster
	Clusters    uint32     // data clusters, numbered 2 to Clusters+1
	// Serial is the volume serial number (the fstab/blkid UUID), 0 when
	// the boot sector has no extended boot record.
	Serial uint32

	r           io.ReaderAt
	size        int64
	fatOff      int64 // byte offset of the FAT that is read
	rootOff     int64 // FAT12/16: byte offset of the fixed root directory
	rootEntries int64
	rootCluster uint32 // FAT32
	dataOff     int64  // byte offset of cluster 2
}

// UUID is the volume serial number as blkid prints it and fstab's UUID=
// takes it, e.g. "8A3F-01C2" (upper-case hex); "" when there is none.
func (fs *FS) UUID() string {
	if !fs.hasSerial() {
		return ""
	}
	return fmt.Sprintf("%04X-%04X", fs.Serial>>16, fs.Serial&0xffff)
}

func (fs *FS) hasSerial() bool { return fs.Boot.BootSignature == 0x29 || fs.Boot.BootSignature == 0x28 }

// Open reads and validates the boot sector of the FAT filesystem held in the
// first size bytes of r (a partition; the filesystem may be shorter). It
// returns ErrNotFAT when the first sector is not a FAT boot sector, a
// *FormatError when its parameters are inconsistent or do not fit size, and
// an error wrapping ErrUnsupported for FAT32 versions other than 0.0.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	if size < 512 {
		return nil, fmt.Errorf("%w: %d bytes is less than a boot sector", ErrNotFAT, size)
	}
	fs := &FS{r: r, size: size}
	s := make([]byte, 512)
	if err := fs.readAt(s, 0, "boot sector"); err != nil {
		return nil, err
	}
	b := parseBootSector(s)
	if b.Signature != 0xaa55 {
		return nil, fmt.Errorf("%w: no 0x55 0xAA signature at offset 510", ErrNotFAT)
	}
	if b.Jump[0] != 0xeb && b.Jump[0] != 0xe9 {
		return nil, fmt.Errorf("%w: first byte %#02x is not an x86 jump", ErrNotFAT, b.Jump[0])
	}
	if oem := string(b.OEMName[:]); oem == "NTFS    " || oem == "EXFAT   " {
		return nil, fmt.Errorf("%w: the boot sector names %q", ErrNotFAT, oem)
	}
	if err := fs.setGeometry(&b); err != nil {
		return nil, err
	}
	fs.Boot = b
	if fs.hasSerial() {
		fs.Serial = b.VolumeID
	}
	return fs, nil
}

// setGeometry is the one place the boot sector's values are checked; every
// offset computed later (FAT entries, root directory, clusters) relies on
// these bounds.
func (fs *FS) setGeometry(b *BootSector) error {
	bad := func(off int64, format string, args ...any) error {
		return corrupt("boot sector", off, format, args...)
	}
	bps := int64(b.BytesPerSector)
	if bps < 512 || bps > 4096 || bps&(bps-1) != 0 {
		return bad(11, "bytes per sector %d is not a power of two from 512 to 4096", bps)
	}
	spc := int64(b.SectorsPerCluster)
	if spc == 0 || spc&(spc-1) != 0 {
		return bad(13, "sectors per cluster %d is not a power of two", spc)
	}
	if b.ReservedSectors == 0 {
		return bad(14, "no reserved sectors (the boot sector is one)")
	}
	if b.NumFATs == 0 {
		return bad(16, "no FAT")
	}
	if b.Media != 0xf0 && b.Media < 0xf8 {
		return bad(21, "media descriptor %#02x is not 0xF0 or 0xF8 to 0xFF", b.Media)
	}
	total, totalOff := int64(b.TotalSectors16), int64(19)
	if total == 0 {
		total, totalOff = int64(b.TotalSectors32), 32
	}
	if total == 0 {
		return bad(19, "total sector count is zero")
	}
	fatSize, fatSizeOff := int64(b.FATSize16), int64(22)
	if b.IsFAT32Layout() {
		fatSize, fatSizeOff = int64(b.FATSize32), 36
		if fatSize == 0 {
			return bad(36, "FAT size is zero")
		}
		if b.RootEntries != 0 {
			return bad(17, "FAT32 with %d fixed root directory entries", b.RootEntries)
		}
		if b.FSVersion != 0 {
			return fmt.Errorf("%w: FAT32 version %d.%d", ErrUnsupported, b.FSVersion>>8, b.FSVersion&0xff)
		}
	} else if b.RootEntries == 0 {
		return bad(17, "FAT12/16 without root directory entries")
	}
	reserved, nfats := int64(b.ReservedSectors), int64(b.NumFATs)
	rootSectors := (int64(b.RootEntries)*dirEntrySize + bps - 1) / bps
	dataSector := reserved + nfats*fatSize + rootSectors
	if total <= dataSector {
		return bad(totalOff, "%d sectors leave no room for data (it starts at sector %d)", total, dataSector)
	}
	if total > fs.size/bps {
		return bad(totalOff, "%d sectors of %d bytes do not fit the %d-byte device", total, bps, fs.size)
	}
	clusters := (total - dataSector) / spc
	if clusters == 0 {
		return bad(totalOff, "%d sectors after the root directory hold no whole cluster of %d sectors", total-dataSector, spc)
	}
	bits := 32
	switch {
	case b.IsFAT32Layout():
		// Cluster numbers stop below 0x0FFFFFF7, the bad-cluster mark.
		if clusters > 0x0ffffff5 {
			return bad(totalOff, "%d clusters is more than FAT32 numbers", clusters)
		}
	case clusters < 4085:
		bits = 12
	case clusters < 65525:
		bits = 16
	default:
		return bad(fatSizeOff, "%d clusters need FAT32, but the 16-bit FAT size is set", clusters)
	}
	if fatSize*bps*8 < (clusters+2)*int64(bits) {
		return bad(fatSizeOff, "a FAT of %d sectors is too small for %d clusters", fatSize, clusters)
	}
	fatIndex := int64(0)
	if bits == 32 && b.ExtFlags&0x80 != 0 {
		// Mirroring is off: only the active FAT is current.
		fatIndex = int64(b.ExtFlags & 0x0f)
		if fatIndex >= nfats {
			return bad(40, "active FAT %d of %d", fatIndex, nfats)
		}
	}
	fs.Bits = bits
	fs.ClusterSize = bps * spc
	fs.Clusters = uint32(clusters)
	fs.fatOff = (reserved + fatIndex*fatSize) * bps
	fs.rootOff = (reserved + nfats*fatSize) * bps
	fs.rootEntries = int64(b.RootEntries)
	fs.dataOff = dataSector * bps
	if bits == 32 {
		fs.rootCluster = b.RootCluster
		if !fs.valid(fs.rootCluster) {
			return bad(44, "root directory cluster %d is not in 2..%d", b.RootCluster, clusters+1)
		}
	}
	return nil
}

// readAt fills p from filesystem offset off; a read past the device is a
// FormatError, other failures are the reader's.
func (fs *FS) readAt(p []byte, off int64, structure string) error {
	if off < 0 || off > fs.size || int64(len(p)) > fs.size-off {
		return corrupt(structure, off, "%d bytes beyond the end of the %d-byte device", len(p), fs.size)
	}
	n, err := fs.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("fat: reading %s (%d bytes at offset %d): %w", structure, len(p), off, err)
}

// valid reports whether c numbers a data cluster.
func (fs *FS) valid(c uint32) bool { return c >= 2 && c-2 < fs.Clusters }

// clusterOffset is the byte offset of data cluster c (2 to Clusters+1).
func (fs *FS) clusterOffset(c uint32) int64 { return fs.dataOff + int64(c-2)*fs.ClusterSize }

// fatEntryOffset is the byte offset of the FAT entry of cluster c (for
// FAT12, of the two bytes holding its 12 bits).
func (fs *FS) fatEntryOffset(c uint32) int64 {
	if fs.Bits == 12 {
		return fs.fatOff + int64(c)*3/2
	}
	return fs.fatOff + int64(c)*int64(fs.Bits/8)
}

// next reads the FAT entry of data cluster c: the next cluster of the
// chain, or 0 at its end. Free, reserved, bad and out-of-range values are
// errors: they cannot follow a cluster in use.
func (fs *FS) next(c uint32) (uint32, error) {
	off := fs.fatEntryOffset(c)
	structure := fmt.Sprintf("FAT entry of cluster %d", c)
	var b [4]byte
	n := 2
	if fs.Bits == 32 {
		n = 4
	}
	if err := fs.readAt(b[:n], off, structure); err != nil {
		return 0, err
	}
	var v, bad uint32
	switch fs.Bits {
	case 12:
		v = uint32(binary.LittleEndian.Uint16(b[:]))
		if c&1 == 1 {
			v >>= 4
		}
		v, bad = v&0xfff, 0xff7
	case 16:
		v, bad = uint32(binary.LittleEndian.Uint16(b[:])), 0xfff7
	default:
		v, bad = binary.LittleEndian.Uint32(b[:])&0x0fffffff, 0x0ffffff7 // the top 4 bits are reserved
	}
	switch {
	case v > bad:
		return 0, nil // end of chain (0x...8 to 0x...F)
	case v == bad:
		return 0, corrupt(structure, off, "cluster %d is in a chain but marked bad", c)
	case v == 0:
		return 0, corrupt(structure, off, "cluster %d is in a chain but marked free", c)
	case !fs.valid(v):
		return 0, corrupt(structure, off, "next cluster %d is not in 2..%d", v, fs.Clusters+1)
	}
	return v, nil
}

// chain lists the clusters from first, at most max of them (limit says why
// that many): a longer chain, or one that loops, is an error. entryOff is
// the directory entry naming first (Open has checked the FAT32 root's).
func (fs *FS) chain(first uint32, max int64, entryOff int64, limit string) ([]uint32, error) {
	if first == 0 {
		return nil, nil
	}
	if !fs.valid(first) {
		return nil, corrupt("directory entry", entryOff, "first cluster %d is not in 2..%d", first, fs.Clusters+1)
	}
	if max > int64(fs.Clusters) {
		max, limit = int64(fs.Clusters), "the filesystem has"
	}
	if max <= 0 {
		return nil, corrupt("directory entry", entryOff, "first cluster %d where no cluster belongs (%s none)", first, limit)
	}
	var cs []uint32
	for c := first; c != 0; {
		if int64(len(cs)) >= max {
			last := cs[len(cs)-1]
			structure := fmt.Sprintf("cluster chain from %d", first)
			if slices.Contains(cs, c) {
				return nil, corrupt(structure, fs.fatEntryOffset(last), "cluster %d points back to cluster %d (a loop)", last, c)
			}
			return nil, corrupt(structure, fs.fatEntryOffset(last), "longer than %d clusters (%s %d)", max, limit, max)
		}
		cs = append(cs, c)
		var err error
		if c, err = fs.next(c); err != nil {
			return nil, err
		}
	}
	return cs, nil
}
