// Package xfs reads XFS filesystems (v5, and v4 with version-2
// directories) from an io.ReaderAt and plans same-size in-place file
// rewrites.
//
// The package never writes. [FS.Rewrite] returns the byte patches ([Write])
// that replace a regular file's content inside the blocks it already owns;
// the caller applies them to the device (for luksconv, while streaming an
// encrypted volume). Only file data blocks and the file's inode change, so no
// allocation, btree or log update is needed: file data carries no checksum and
// the inode CRC is recomputed.
//
// Layout in brief (xfsprogs libxfs/xfs_format.h): the device is split into
// allocation groups (AGs); each starts with a superblock, AGF, AGI and AGFL
// sector. Block pointers are "fsblock" numbers agno<<agblklog | agbno, which
// are not linear when AGs are not a power of two in size. Inode numbers
// encode agno, agbno and the slot inside the block, so an inode is located
// without reading the inode btrees. All metadata is big-endian except CRC
// fields (CRC32C, little-endian).
//
// Everything read from disk is bounded before use: extent counts against the
// fork size, btree depths and sibling loops, directory sizes against the
// device, symlink hops (at most 40).
package xfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Errors returned by the package. FormatError matches ErrCorrupt with
// errors.Is.
var (
	// ErrNotXFS means the superblock magic "XFSB" is missing.
	ErrNotXFS = errors.New("xfs: not an XFS filesystem")
	// ErrCorrupt is matched by every *FormatError.
	ErrCorrupt = errors.New("xfs: corrupt filesystem")
	// ErrUnsupported reports a valid structure this package does not read
	// (e.g. version-1 directories, an external log for edits).
	ErrUnsupported = errors.New("xfs: unsupported")
	// ErrCannotEdit is wrapped by every refusal of Writable, Rewrite and
	// FreeSpace; the message says why.
	ErrCannotEdit = errors.New("xfs: cannot edit in place")
	// ErrDirtyLog is wrapped (together with ErrCannotEdit) when the log's
	// head is not a clean unmount record: on-disk metadata may be stale
	// until the log is replayed by mounting the filesystem.
	ErrDirtyLog = errors.New("xfs: log is dirty (mount and unmount the filesystem once to replay it)")
	// ErrNotDir is wrapped in an *fs.PathError when a path component is
	// not a directory.
	ErrNotDir = errors.New("not a directory")
	// ErrSymlinkLoop is wrapped when resolving a path meets more than
	// MaxSymlinks symbolic links.
	ErrSymlinkLoop = errors.New("too many levels of symbolic links")
	// ErrOutsideFS is wrapped when an absolute symlink target lies outside
	// FS.MountPoint, i.e. on another filesystem.
	ErrOutsideFS = errors.New("symlink target is outside this filesystem")
)

// A FormatError reports an on-disk structure that failed validation.
type FormatError struct {
	Structure string // e.g. "superblock", "inode 131", "directory block 2 of inode 128"
	Offset    int64  // byte offset of the structure on the device
	Reason    string // what is wrong with it
}

// Error names the damaged structure, its offset and why it is refused.
func (e *FormatError) Error() string {
	return fmt.Sprintf("xfs: %s at offset %d: %s", e.Structure, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(structure string, off int64, format string, args ...any) error {
	return &FormatError{Structure: structure, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// Limits applied to on-disk values.
const (
	// MaxSymlinks bounds the symbolic links followed while resolving one
	// path (Linux's MAXSYMLINKS).
	MaxSymlinks = 40
	// MaxSymlinkLen is XFS_SYMLINK_MAXLEN.
	MaxSymlinkLen = 1024
	// MaxReadFile bounds ReadFile; use FileReader for larger files.
	MaxReadFile = 1 << 30
	// maxBtreeLevels bounds the depth of every btree walked. Real trees
	// stay below 10 levels even with 2^48 records in 1 KiB blocks.
	maxBtreeLevels = 16
	// maxPathSteps bounds the components walked for one path, symlink
	// expansions included.
	maxPathSteps = 4096
)

// Superblock magic numbers and feature bits (libxfs/xfs_format.h).
const (
	sbMagic = 0x58465342 // "XFSB"

	versionNumBits  = 0x000f
	versionDirV2Bit = 0x2000
	versionMoreBits = 0x8000

	features2Ftype = 0x00000200 // v4 only; v5 uses IncompatFtype

	// FeaturesIncompat bits.
	IncompatFtype       = 1 << 0
	IncompatSpinodes    = 1 << 1 // sparse inode chunks
	IncompatMetaUUID    = 1 << 2 // metadata is stamped with Superblock.MetaUUID, not UUID
	IncompatBigtime     = 1 << 3 // inodes may have 64-bit timestamps (Flag2Bigtime)
	IncompatNeedsRepair = 1 << 4 // xfs_repair must run before the filesystem is mounted
	IncompatNrext64     = 1 << 5 // inodes may have 64-bit extent counters (Flag2Nrext64)
	incompatKnown       = IncompatFtype | IncompatSpinodes | IncompatMetaUUID | IncompatBigtime |
		IncompatNeedsRepair | IncompatNrext64

	// FeaturesRoCompat bits.
	RoCompatFinobt   = 1 << 0
	RoCompatRmapbt   = 1 << 1 // reverse-mapping btree in each AG
	RoCompatReflink  = 1 << 2 // refcount btree: files may share blocks
	RoCompatInobtcnt = 1 << 3 // the AGI records the inode btrees' block counts
	roCompatKnown    = RoCompatFinobt | RoCompatRmapbt | RoCompatReflink | RoCompatInobtcnt

	sbCRCOff = 224
	sbV5Len  = 264 // bytes of xfs_dsb through sb_meta_uuid
)

// Superblock mirrors the on-disk superblock (xfs_dsb) fields, all
// big-endian on disk except CRC.
type Superblock struct {
	MagicNum            uint32   // 0: "XFSB"
	BlockSize           uint32   // 4: bytes per filesystem block
	DBlocks             uint64   // 8: blocks in the data device
	RBlocks             uint64   // 16: realtime blocks
	RExtents            uint64   // 24: realtime extents
	UUID                [16]byte // 32: filesystem UUID (blkid's UUID=)
	LogStart            uint64   // 48: fsblock of the internal log, 0 = external log
	RootIno             uint64   // 56: inode number of the root directory
	RBMIno              uint64   // 64: realtime bitmap inode
	RSumIno             uint64   // 72: realtime summary inode
	RExtSize            uint32   // 80: realtime extent size in blocks
	AGBlocks            uint32   // 84: blocks per AG (the last AG may be shorter)
	AGCount             uint32   // 88: number of AGs
	RBMBlocks           uint32   // 92: blocks of the realtime bitmap
	LogBlocks           uint32   // 96: blocks of the log
	Versionnum          uint16   // 100: low nibble 4 or 5, plus v4 feature bits
	SectSize            uint16   // 102: bytes per sector
	InodeSize           uint16   // 104: bytes per inode
	InopBlock           uint16   // 106: inodes per block
	FName               [12]byte // 108: label, NUL-padded
	BlockLog            uint8    // 120: log2(BlockSize)
	SectLog             uint8    // 121: log2(SectSize)
	InodeLog            uint8    // 122: log2(InodeSize)
	InopBLog            uint8    // 123: log2(InopBlock)
	AGBlkLog            uint8    // 124: ceil(log2(AGBlocks))
	RExtSLog            uint8    // 125: log2 of the realtime extent count
	InProgress          uint8    // 126: mkfs not finished
	IMaxPct             uint8    // 127: most space inodes may take, in percent
	ICount              uint64   // 128: allocated inodes (lazy on disk)
	IFree               uint64   // 136: free inodes (lazy on disk)
	FDBlocks            uint64   // 144: free data blocks (lazy on disk)
	FRExtents           uint64   // 152: free realtime extents
	UQuotIno            uint64   // 160: user quota inode
	GQuotIno            uint64   // 168: group quota inode
	QFlags              uint16   // 176: quota flags
	Flags               uint8    // 178: XFS_SBF_* flags
	SharedVN            uint8    // 179: shared version number (unused, 0)
	InoAlignMt          uint32   // 180: inode chunk alignment in blocks
	Unit                uint32   // 184: stripe unit in blocks
	Width               uint32   // 188: stripe width in blocks
	DirBlkLog           uint8    // 192: directory block = BlockSize << DirBlkLog
	LogSectLog          uint8    // 193: log2(LogSectSize)
	LogSectSize         uint16   // 194: sector size of the log in bytes
	LogSUnit            uint32   // 196: log stripe unit in bytes
	Features2           uint32   // 200: more v4 feature bits (Versionnum has 0x8000)
	BadFeatures2        uint32   // 204: copy of Features2 (an old alignment bug wrote it here)
	FeaturesCompat      uint32   // 208 (v5): compatible features; none defined
	FeaturesRoCompat    uint32   // 212 (v5): RoCompat* bits
	FeaturesIncompat    uint32   // 216 (v5): Incompat* bits
	FeaturesLogIncompat uint32   // 220 (v5): log features a log replay must know
	CRC                 uint32   // 224: CRC32C over SectSize bytes, little-endian (v5)
	SpinoAlign          uint32   // 228: sparse inode chunk alignment in blocks
	PQuotIno            uint64   // 232: project quota inode
	LSN                 uint64   // 240: log sequence number of the last superblock write
	MetaUUID            [16]byte // 248: used instead of UUID in metadata when IncompatMetaUUID
}

func parseSuperblock(b []byte) Superblock {
	be := binary.BigEndian
	var s Superblock
	s.MagicNum = be.Uint32(b[0:])
	s.BlockSize = be.Uint32(b[4:])
	s.DBlocks = be.Uint64(b[8:])
	s.RBlocks = be.Uint64(b[16:])
	s.RExtents = be.Uint64(b[24:])
	copy(s.UUID[:], b[32:48])
	s.LogStart = be.Uint64(b[48:])
	s.RootIno = be.Uint64(b[56:])
	s.RBMIno = be.Uint64(b[64:])
	s.RSumIno = be.Uint64(b[72:])
	s.RExtSize = be.Uint32(b[80:])
	s.AGBlocks = be.Uint32(b[84:])
	s.AGCount = be.Uint32(b[88:])
	s.RBMBlocks = be.Uint32(b[92:])
	s.LogBlocks = be.Uint32(b[96:])
	s.Versionnum = be.Uint16(b[100:])
	s.SectSize = be.Uint16(b[102:])
	s.InodeSize = be.Uint16(b[104:])
	s.InopBlock = be.Uint16(b[106:])
	copy(s.FName[:], b[108:120])
	s.BlockLog = b[120]
	s.SectLog = b[121]
	s.InodeLog = b[122]
	s.InopBLog = b[123]
	s.AGBlkLog = b[124]
	s.RExtSLog = b[125]
	s.InProgress = b[126]
	s.IMaxPct = b[127]
	s.ICount = be.Uint64(b[128:])
	s.IFree = be.Uint64(b[136:])
	s.FDBlocks = be.Uint64(b[144:])
	s.FRExtents = be.Uint64(b[152:])
	s.UQuotIno = be.Uint64(b[160:])
	s.GQuotIno = be.Uint64(b[168:])
	s.QFlags = be.Uint16(b[176:])
	s.Flags = b[178]
	s.SharedVN = b[179]
	s.InoAlignMt = be.Uint32(b[180:])
	s.Unit = be.Uint32(b[184:])
	s.Width = be.Uint32(b[188:])
	s.DirBlkLog = b[192]
	s.LogSectLog = b[193]
	s.LogSectSize = be.Uint16(b[194:])
	s.LogSUnit = be.Uint32(b[196:])
	s.Features2 = be.Uint32(b[200:])
	s.BadFeatures2 = be.Uint32(b[204:])
	s.FeaturesCompat = be.Uint32(b[208:])
	s.FeaturesRoCompat = be.Uint32(b[212:])
	s.FeaturesIncompat = be.Uint32(b[216:])
	s.FeaturesLogIncompat = be.Uint32(b[220:])
	s.CRC = binary.LittleEndian.Uint32(b[224:])
	s.SpinoAlign = be.Uint32(b[228:])
	s.PQuotIno = be.Uint64(b[232:])
	s.LSN = be.Uint64(b[240:])
	copy(s.MetaUUID[:], b[248:264])
	return s
}

// Version is the superblock version: 4 or 5.
func (s *Superblock) Version() int { return int(s.Versionnum & versionNumBits) }

// HasCRC reports a v5 (CRC-enabled) filesystem.
func (s *Superblock) HasCRC() bool { return s.Version() == 5 }

// HasFtype reports whether directory entries carry a file type byte.
func (s *Superblock) HasFtype() bool {
	if s.HasCRC() {
		return s.FeaturesIncompat&IncompatFtype != 0
	}
	return s.Versionnum&versionMoreBits != 0 && s.Features2&features2Ftype != 0
}

// metaUUID is the UUID stamped into v5 metadata blocks.
func (s *Superblock) metaUUID() [16]byte {
	if s.FeaturesIncompat&IncompatMetaUUID != 0 {
		return s.MetaUUID
	}
	return s.UUID
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// cksum is XFS's CRC32C of b with the 4-byte field at off taken as zero
// (xfs_start_cksum_safe): Go's crc32 pre- and post-inverts like XFS's
// seed ~0 plus final inversion.
func cksum(b []byte, off int) uint32 {
	c := crc32.Update(0, castagnoli, b[:off])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	return crc32.Update(c, castagnoli, b[off+4:])
}

// checkCRC verifies the little-endian CRC32C stored at off in b.
func checkCRC(b []byte, off int, structure string, at int64) error {
	want := binary.LittleEndian.Uint32(b[off:])
	if got := cksum(b, off); got != want {
		return corrupt(structure, at, "CRC mismatch (stored %#08x, computed %#08x)", want, got)
	}
	return nil
}

// FS is an opened XFS filesystem. Its methods may be called concurrently:
// they only read through the io.ReaderAt.
type FS struct {
	SB Superblock // the primary superblock (AG 0)
	// Warnings lists problems that did not prevent reading, e.g. a dirty
	// log or unknown feature bits.
	Warnings []string
	// MountPoint is where this filesystem is mounted in the system it
	// belongs to ("/" when empty). Absolute symlink targets are resolved
	// against this filesystem's root after removing MountPoint; targets
	// outside it fail with ErrOutsideFS. Set it before resolving paths,
	// e.g. to "/boot" for a separate boot filesystem.
	MountPoint string

	r        *io.SectionReader
	size     int64
	bs       int64 // block size
	noCRC    bool  // fuzzing only: skip CRC verification
	logState error // nil when the log is clean; computed by Open
}

// Open reads and validates the primary superblock of the filesystem held in
// the first size bytes of r. It returns ErrNotXFS without the "XFSB" magic,
// a *FormatError for an invalid superblock (v5: including its CRC) and an
// error wrapping ErrUnsupported for version-1 directories or superblock
// versions other than 4 and 5. Open also reads the log to learn whether it
// is clean; a dirty log is reported in Warnings and by Writable.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	return open(r, size, false)
}

func open(r io.ReaderAt, size int64, noCRC bool) (*FS, error) {
	fs := &FS{r: io.NewSectionReader(r, 0, size), size: size, noCRC: noCRC}
	if size < 512 {
		return nil, ErrNotXFS
	}
	b := make([]byte, 512)
	if err := fs.readAt(b, 0, "superblock"); err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint32(b) != sbMagic {
		return nil, ErrNotXFS
	}
	sb := parseSuperblock(b)
	if err := validateSuperblock(&sb, size); err != nil {
		return nil, err
	}
	fs.SB = sb
	fs.bs = int64(sb.BlockSize)
	if sb.HasCRC() && !noCRC {
		full := make([]byte, sb.SectSize)
		if err := fs.readAt(full, 0, "superblock"); err != nil {
			return nil, err
		}
		if err := checkCRC(full, sbCRCOff, "superblock", 0); err != nil {
			return nil, err
		}
	}
	if sb.HasCRC() {
		if u := sb.FeaturesIncompat &^ incompatKnown; u != 0 {
			fs.warn("unknown incompat feature bits %#x", u)
		}
		if u := sb.FeaturesRoCompat &^ roCompatKnown; u != 0 {
			fs.warn("unknown ro_compat feature bits %#x", u)
		}
		if sb.FeaturesIncompat&IncompatNeedsRepair != 0 {
			fs.warn("NEEDSREPAIR is set: run xfs_repair")
		}
	}
	if sb.InProgress != 0 {
		fs.warn("superblock says mkfs is in progress")
	}
	if sb.RBlocks != 0 {
		fs.warn("filesystem has a realtime device; realtime files are not readable here")
	}
	fs.logState = fs.checkLog()
	if fs.logState != nil {
		fs.warn("%v", fs.logState)
	}
	return fs, nil
}

func (fs *FS) warn(format string, args ...any) {
	fs.Warnings = append(fs.Warnings, fmt.Sprintf(format, args...))
}

func isPow2(v uint64) bool { return v != 0 && v&(v-1) == 0 }

func log2(v uint64) uint8 {
	var n uint8
	for v > 1 {
		v >>= 1
		n++
	}
	return n
}

// validateSuperblock is the one place superblock values are checked; every
// later computation relies on these bounds (shift amounts, AG geometry,
// device size).
func validateSuperblock(s *Superblock, devSize int64) error {
	bad := func(format string, args ...any) error { return corrupt("superblock", 0, format, args...) }
	switch s.Version() {
	case 4:
		if s.Versionnum&versionDirV2Bit == 0 {
			return fmt.Errorf("%w: version-1 directories (v4 superblock without DIRV2)", ErrUnsupported)
		}
	case 5:
	default:
		return fmt.Errorf("%w: superblock version %d", ErrUnsupported, s.Version())
	}
	if s.BlockSize < 512 || s.BlockSize > 65536 || !isPow2(uint64(s.BlockSize)) || 1<<s.BlockLog != s.BlockSize {
		return bad("block size %d / log %d invalid", s.BlockSize, s.BlockLog)
	}
	if s.SectSize < 512 || s.SectSize > 32768 || !isPow2(uint64(s.SectSize)) || 1<<s.SectLog != uint32(s.SectSize) ||
		uint32(s.SectSize) > s.BlockSize {
		return bad("sector size %d / log %d invalid", s.SectSize, s.SectLog)
	}
	minInode := uint16(256)
	if s.HasCRC() {
		minInode = 512
	}
	if s.InodeSize < minInode || s.InodeSize > 2048 || !isPow2(uint64(s.InodeSize)) || 1<<s.InodeLog != uint32(s.InodeSize) ||
		uint32(s.InodeSize) > s.BlockSize {
		return bad("inode size %d / log %d invalid", s.InodeSize, s.InodeLog)
	}
	if uint32(s.InopBlock) != s.BlockSize/uint32(s.InodeSize) || 1<<s.InopBLog != uint32(s.InopBlock) {
		return bad("inodes per block %d / log %d inconsistent with block and inode size", s.InopBlock, s.InopBLog)
	}
	if s.AGBlocks < 64 || s.AGBlkLog > 31 || s.AGBlkLog != log2(uint64(s.AGBlocks)-1)+1 {
		return bad("AG size %d blocks / log %d invalid", s.AGBlocks, s.AGBlkLog)
	}
	if uint32(s.AGBlkLog)+uint32(s.InopBLog) > 32 {
		return bad("agblklog %d + inopblog %d too large", s.AGBlkLog, s.InopBLog)
	}
	if s.AGCount == 0 || s.DBlocks == 0 ||
		s.DBlocks > uint64(s.AGCount)*uint64(s.AGBlocks) || s.DBlocks <= uint64(s.AGCount-1)*uint64(s.AGBlocks) {
		return bad("%d data blocks do not fit %d AGs of %d blocks", s.DBlocks, s.AGCount, s.AGBlocks)
	}
	if s.DBlocks > uint64(devSize)/uint64(s.BlockSize) {
		return bad("filesystem of %d blocks of %d bytes is larger than the %d-byte device", s.DBlocks, s.BlockSize, devSize)
	}
	if s.DirBlkLog > 16 || uint64(s.BlockSize)<<s.DirBlkLog > 65536 {
		return bad("directory block log %d too large", s.DirBlkLog)
	}
	if s.LogStart != 0 {
		if s.LogBlocks == 0 {
			return bad("internal log has no blocks")
		}
	}
	return nil
}

// readAt fills p from device offset off; a short read is a FormatError.
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
	return fmt.Errorf("xfs: reading %s (%d bytes at offset %d): %w", structure, len(p), off, err)
}

// agLength is the number of blocks in AG agno (the last one may be short).
func (fs *FS) agLength(agno uint32) uint64 {
	if agno == fs.SB.AGCount-1 {
		return fs.SB.DBlocks - uint64(agno)*uint64(fs.SB.AGBlocks)
	}
	return uint64(fs.SB.AGBlocks)
}

// fsbToOffset converts an fsblock number covering n blocks to a device byte
// offset, checking that all n blocks lie inside one AG of the data device.
func (fs *FS) fsbToOffset(fsb, n uint64) (int64, bool) {
	agno := fsb >> fs.SB.AGBlkLog
	agbno := fsb & (1<<fs.SB.AGBlkLog - 1)
	if agno >= uint64(fs.SB.AGCount) {
		return 0, false
	}
	if n > fs.agLength(uint32(agno)) || agbno > fs.agLength(uint32(agno))-n {
		return 0, false
	}
	return fs.agbnoToOffset(uint32(agno), agbno), true
}

func (fs *FS) agbnoToOffset(agno uint32, agbno uint64) int64 {
	return int64(uint64(agno)*uint64(fs.SB.AGBlocks)+agbno) * fs.bs
}
