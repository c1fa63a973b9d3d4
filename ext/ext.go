// Package ext reads ext2, ext3 and ext4 filesystems from an io.ReaderAt and
// plans same-size in-place file rewrites.
//
// What is read: the primary superblock (geometry, features, UUID, label,
// state), every group descriptor (32- or 64-byte, in the classic table or
// spread by meta_bg), inodes (with their extra fields and in-inode extended
// attributes, for inline data), file data through extent trees, the old
// direct/indirect block maps of ext2 and ext3, and inline data; directories
// in every format (linear, htree, inline), symbolic links (fast, slow,
// inline); the block bitmaps for FreeSpace; the journal's superblock to know
// whether it is empty. Every metadata checksum is verified: the superblock,
// the group descriptors (crc16 with gdt_csum, crc32c with metadata_csum),
// inodes, extent blocks, directory blocks and htree nodes, and block bitmaps.
//
// The package never writes. [FS.Rewrite] returns the byte patches ([Write])
// that put new content into the data blocks a regular file already owns,
// plus the inode when the size changes. Nothing is allocated or freed, so the
// bitmaps, the group descriptors (with their free counts and checksums), the
// extent tree and the journal stay valid as they are; file data carries no
// checksum, and the inode checksum is recomputed. That is why the new content
// must fit the blocks the file owns, and why a filesystem whose journal
// holds unreplayed transactions (needs_recovery: every snapshot of a running
// system) is never edited: replaying the journal at the next mount could
// put back older copies of what was patched. See [FS.Writable].
//
// Layout in brief (e2fsprogs lib/ext2fs/ext2_fs.h, the kernel's
// fs/ext4/ext4.h): the device is a sequence of blocks (1 KiB to 64 KiB)
// grouped into block groups; the superblock lives at byte 1024 with backup
// copies at the start of some groups. Each group has a descriptor giving the
// location of its block bitmap, inode bitmap and inode table (with flex_bg
// they are packed together in the first group of a flex group). Inode n lives
// in group (n-1)/inodes_per_group. All fields are little-endian, except in
// the journal (jbd2), which is big-endian.
//
// Everything read from disk is bounded before use: the geometry against the
// device size, descriptors against the filesystem, extent tree depth (5) and
// node capacities, tree blocks visited once (no loops), directory sizes
// against their mapped blocks, symlink hops (MaxSymlinks) and target lengths.
// Errors caused by on-disk data are *FormatError values naming the structure
// and its byte offset within the filesystem.
package ext

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"

	"github.com/luksconv/luksconv/extent"
)

// Errors returned by the package. A *FormatError matches ErrCorrupt with
// errors.Is.
var (
	// ErrNotExt means there is no ext2/3/4 superblock magic (0xEF53) at
	// byte 1080.
	ErrNotExt = errors.New("ext: not an ext2/ext3/ext4 filesystem")
	// ErrCorrupt is matched by every *FormatError.
	ErrCorrupt = errors.New("ext: corrupt filesystem")
	// ErrUnsupported reports a valid filesystem or file this package does
	// not read: unknown incompat features, compression, an external journal
	// device, dirdata, encrypted files and directories.
	ErrUnsupported = errors.New("ext: unsupported")
	// ErrCannotEdit is wrapped by every refusal of Writable, Rewrite and
	// FreeSpace; the message says why.
	ErrCannotEdit = errors.New("ext: cannot edit in place")
	// ErrNeedsRecovery is wrapped (together with ErrCannotEdit) when the
	// journal holds transactions not yet written to their home locations
	// (the needs_recovery feature, or a journal that is not empty): on-disk
	// metadata may be stale until the journal is replayed by mounting the
	// filesystem or running e2fsck.
	ErrNeedsRecovery = errors.New("ext: journal needs recovery (mount and unmount the filesystem once, or run e2fsck, to replay it)")
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
	Structure string // e.g. "superblock", "group descriptor 3", "inode 12", "extent block 4100 of inode 12"
	Offset    int64  // byte offset of the structure within the filesystem
	Reason    string // what is wrong with it
}

// Error names the damaged structure, its offset and why it is refused.
func (e *FormatError) Error() string {
	return fmt.Sprintf("ext: %s at offset %d: %s", e.Structure, e.Offset, e.Reason)
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
	// MaxSymlinkLen is the longest symlink target read: PATH_MAX less the
	// terminating NUL (ext4 also keeps targets below the block size).
	MaxSymlinkLen = 4095
	// MaxReadFile bounds ReadFile; use FileReader for larger files.
	MaxReadFile = 1 << 30
	// maxExtentDepth is EXT4_MAX_EXTENT_DEPTH.
	maxExtentDepth = 5
	// maxPathSteps bounds the components walked for one path, symlink
	// expansions included.
	maxPathSteps = 4096
)

// Superblock state (s_state) bits.
const (
	StateValid  = 0x0001 // cleanly unmounted
	StateError  = 0x0002 // errors detected
	StateOrphan = 0x0004 // orphans being recovered
)

// Compatible feature bits (s_feature_compat): a reader may ignore them.
const (
	CompatDirPrealloc   = 0x0001 // dir_prealloc: preallocate directory blocks
	CompatImagicInodes  = 0x0002 // imagic_inodes (AFS server inodes)
	CompatHasJournal    = 0x0004 // has_journal: a jbd2 journal (Superblock.JournalInum, or an external device)
	CompatExtAttr       = 0x0008 // ext_attr: extended attributes
	CompatResizeInode   = 0x0010 // resize_inode: descriptor blocks reserved for growing (inode 7)
	CompatDirIndex      = 0x0020 // dir_index: hashed (htree) directories
	CompatLazyBG        = 0x0040 // lazy_bg: groups left uninitialised (never used by ext4)
	CompatExcludeInode  = 0x0080 // exclude_inode (out-of-tree snapshots)
	CompatExcludeBitmap = 0x0100 // exclude_bitmap (out-of-tree snapshots)
	CompatSparseSuper2  = 0x0200 // sparse_super2: superblock backups only in Superblock.BackupBGs
	CompatFastCommit    = 0x0400 // fast_commit: the journal has a fast-commit area
	CompatStableInodes  = 0x0800 // stable_inodes: inode numbers never change (for fscrypt)
	CompatOrphanFile    = 0x1000 // orphan_file: the orphan list is kept in a file (Superblock.OrphanFileInum)
)

// Incompatible feature bits (s_feature_incompat): a reader must understand
// every one that is set.
const (
	IncompatCompression = 0x00001 // compression (never in mainline)
	IncompatFiletype    = 0x00002 // filetype: directory entries record the file type
	IncompatRecover     = 0x00004 // needs_recovery
	IncompatJournalDev  = 0x00008 // journal_dev: the device is an external journal, not a filesystem
	IncompatMetaBG      = 0x00010 // meta_bg: descriptor blocks spread over the groups
	IncompatExtents     = 0x00040 // extent: files may be mapped by extent trees
	Incompat64Bit       = 0x00080 // 64bit: 48-bit block numbers, DescSize-byte descriptors
	IncompatMMP         = 0x00100 // mmp: multi-mount protection (Superblock.MMPBlock)
	IncompatFlexBG      = 0x00200 // flex_bg: bitmaps and inode tables packed per flex group
	IncompatEAInode     = 0x00400 // ea_inode: large attribute values in their own inodes
	IncompatDirData     = 0x01000 // dirdata: extra data in directory entries (Lustre)
	IncompatCsumSeed    = 0x02000 // metadata_csum_seed: the checksum seed is Superblock.ChecksumSeed
	IncompatLargeDir    = 0x04000 // large_dir: directories over 2 GiB and 3-level htrees
	IncompatInlineData  = 0x08000 // inline_data: small files and directories kept in the inode
	IncompatEncrypt     = 0x10000 // encrypt: fscrypt-encrypted files may exist
	IncompatCasefold    = 0x20000 // casefold: case-insensitive directories may exist

	// incompatRead lists the bits this package reads. Compression,
	// journal devices and dirdata are known but refused.
	incompatRead = IncompatFiletype | IncompatRecover | IncompatMetaBG | IncompatExtents | Incompat64Bit |
		IncompatMMP | IncompatFlexBG | IncompatEAInode | IncompatCsumSeed | IncompatLargeDir |
		IncompatInlineData | IncompatEncrypt | IncompatCasefold
)

// Read-only compatible feature bits (s_feature_ro_compat): a reader may
// ignore them, a writer must understand them.
const (
	RoCompatSparseSuper   = 0x00001 // sparse_super: superblock backups only in groups 1 and powers of 3, 5 and 7
	RoCompatLargeFile     = 0x00002 // large_file: files of 2 GiB or more may exist
	RoCompatBtreeDir      = 0x00004 // btree_dir (never used)
	RoCompatHugeFile      = 0x00008 // huge_file: 48-bit i_blocks, in filesystem blocks with FlagHugeFile
	RoCompatGdtCsum       = 0x00010 // uninit_bg: crc16 descriptor checksums and uninitialised groups
	RoCompatDirNlink      = 0x00020 // dir_nlink: a directory with over 65000 subdirectories has link count 1
	RoCompatExtraIsize    = 0x00040 // extra_isize: inodes have at least MinExtraIsize extra bytes
	RoCompatHasSnapshot   = 0x00080 // has_snapshot (out-of-tree snapshots)
	RoCompatQuota         = 0x00100 // quota: quota files in hidden inodes
	RoCompatBigalloc      = 0x00200 // bigalloc: blocks are allocated in clusters
	RoCompatMetadataCsum  = 0x00400 // metadata_csum: crc32c checksums on all metadata
	RoCompatReplica       = 0x00800 // replica (never in mainline)
	RoCompatReadonly      = 0x01000 // read-only: the filesystem must be mounted read-only
	RoCompatProject       = 0x02000 // project: project IDs and quotas
	RoCompatSharedBlocks  = 0x04000 // shared_blocks: blocks may be shared between files
	RoCompatVerity        = 0x08000 // verity: fs-verity files may exist
	RoCompatOrphanPresent = 0x10000 // orphan_present: the orphan file may hold entries

	// roCompatEditable lists the bits under which a same-size rewrite of
	// data blocks and i_size keeps the filesystem consistent.
	roCompatEditable = RoCompatSparseSuper | RoCompatLargeFile | RoCompatBtreeDir | RoCompatHugeFile |
		RoCompatGdtCsum | RoCompatDirNlink | RoCompatExtraIsize | RoCompatQuota | RoCompatBigalloc |
		RoCompatMetadataCsum | RoCompatProject | RoCompatVerity
	roCompatKnown = roCompatEditable | RoCompatHasSnapshot | RoCompatReplica | RoCompatReadonly |
		RoCompatSharedBlocks | RoCompatOrphanPresent
)

const (
	sbOffset    = 1024
	sbSize      = 1024
	sbMagic     = 0xef53
	sbCsumOff   = 0x3fc
	csumCRC32C  = 1 // s_checksum_type
	goodOldIno  = 11
	goodOldSize = 128 // EXT2_GOOD_OLD_INODE_SIZE
	rootIno     = 2
	minDesc64   = 64 // EXT4_MIN_DESC_SIZE_64BIT
	maxDescSize = 1024
	// minGroupClusters is mke2fs's smallest group ("blocks per group
	// count out of range" below it).
	minGroupClusters = 256
)

// Superblock mirrors the on-disk superblock (struct ext4_super_block), 1024
// bytes at byte 1024 of the filesystem, all little-endian. The *Lo/*Hi pairs
// are combined by the methods (BlocksCount, ...).
type Superblock struct {
	InodesCount          uint32     // 0x00: inodes in the filesystem
	BlocksCountLo        uint32     // 0x04: blocks, low 32 bits (see BlocksCount)
	RBlocksCountLo       uint32     // 0x08: reserved for root
	FreeBlocksCountLo    uint32     // 0x0c: kept lazily by ext4; the descriptors' counts are exact
	FreeInodesCount      uint32     // 0x10: free inodes; kept lazily like the free block count
	FirstDataBlock       uint32     // 0x14: 1 with 1 KiB blocks (block 0 is the boot block), else 0
	LogBlockSize         uint32     // 0x18: block size = 1024 << LogBlockSize
	LogClusterSize       uint32     // 0x1c: bigalloc cluster size; = LogBlockSize otherwise
	BlocksPerGroup       uint32     // 0x20: blocks per group
	ClustersPerGroup     uint32     // 0x24: clusters per group; = BlocksPerGroup without bigalloc
	InodesPerGroup       uint32     // 0x28: inodes per group
	Mtime                uint32     // 0x2c: last mount, Unix seconds (high bits in MtimeHi)
	Wtime                uint32     // 0x30: last superblock write, Unix seconds (high bits in WtimeHi)
	MntCount             uint16     // 0x34: mounts since the last fsck
	MaxMntCount          int16      // 0x36: mounts before a fsck is due; -1 = never
	Magic                uint16     // 0x38: 0xEF53
	State                uint16     // 0x3a: StateValid, StateError, StateOrphan
	Errors               uint16     // 0x3c: behaviour on errors
	MinorRevLevel        uint16     // 0x3e: minor revision
	LastCheck            uint32     // 0x40: last fsck, Unix seconds (high bits in LastCheckHi)
	CheckInterval        uint32     // 0x44: seconds between forced fscks; 0 = never
	CreatorOS            uint32     // 0x48: 0 Linux, 1 Hurd, 2 Masix, 3 FreeBSD, 4 Lites
	RevLevel             uint32     // 0x4c: 0 (fixed 128-byte inodes) or 1 (dynamic)
	DefResUID            uint16     // 0x50: owner of the reserved blocks
	DefResGID            uint16     // 0x52: group of the reserved blocks
	FirstIno             uint32     // 0x54: first non-reserved inode (rev 1)
	InodeSize            uint16     // 0x58 (rev 1): bytes per inode; 128 in rev 0
	BlockGroupNr         uint16     // 0x5a: group holding this copy
	FeatureCompat        uint32     // 0x5c: Compat* bits
	FeatureIncompat      uint32     // 0x60: Incompat* bits
	FeatureRoCompat      uint32     // 0x64: RoCompat* bits
	UUID                 [16]byte   // 0x68: filesystem UUID (see FS.UUID)
	VolumeName           [16]byte   // 0x78: label, NUL-padded
	LastMounted          [64]byte   // 0x88: directory last mounted on, NUL-padded
	AlgorithmUsageBitmap uint32     // 0xc8: compression algorithms (unused)
	PreallocBlocks       uint8      // 0xcc: blocks to preallocate for files (ext2)
	PreallocDirBlocks    uint8      // 0xcd: blocks to preallocate for directories (dir_prealloc)
	ReservedGDTBlocks    uint16     // 0xce: descriptor blocks kept for online resize
	JournalUUID          [16]byte   // 0xd0: of an external journal
	JournalInum          uint32     // 0xe0: inode of the internal journal (8)
	JournalDev           uint32     // 0xe4: device number of an external journal
	LastOrphan           uint32     // 0xe8: head of the orphan inode list
	HashSeed             [4]uint32  // 0xec: htree hash seed
	DefHashVersion       uint8      // 0xfc: default htree hash: 0 legacy, 1 half MD4, 2 tea, 3-5 their unsigned forms, 6 siphash
	JnlBackupType        uint8      // 0xfd: 1 when JnlBlocks holds the journal inode's blocks
	DescSize             uint16     // 0xfe: group descriptor size with 64bit
	DefaultMountOpts     uint32     // 0x100: default mount options (EXT4_DEFM_* bits)
	FirstMetaBG          uint32     // 0x104: first descriptor block spread by meta_bg
	MkfsTime             uint32     // 0x108: creation, Unix seconds (high bits in MkfsTimeHi)
	JnlBlocks            [17]uint32 // 0x10c: backup of the journal inode's i_block and size
	BlocksCountHi        uint32     // 0x150 (64bit): blocks, high 32 bits
	RBlocksCountHi       uint32     // 0x154: reserved blocks, high 32 bits
	FreeBlocksCountHi    uint32     // 0x158: free blocks, high 32 bits
	MinExtraIsize        uint16     // 0x15c: extra inode bytes every inode has
	WantExtraIsize       uint16     // 0x15e: extra inode bytes new inodes should have
	Flags                uint32     // 0x160: signed/unsigned directory hash, ...
	RaidStride           uint16     // 0x164: RAID stride in blocks
	MMPInterval          uint16     // 0x166: seconds between multi-mount protection checks
	MMPBlock             uint64     // 0x168: multi-mount protection block
	RaidStripeWidth      uint32     // 0x170: RAID stripe width in blocks
	LogGroupsPerFlex     uint8      // 0x174: flex_bg size = 1 << LogGroupsPerFlex
	ChecksumType         uint8      // 0x175: 1 = crc32c
	EncryptionLevel      uint8      // 0x176: encryption version level
	ReservedPad          uint8      // 0x177: padding
	KbytesWritten        uint64     // 0x178: KiB written over the filesystem's life
	SnapshotInum         uint32     // 0x180: inode of the active snapshot (out-of-tree snapshots)
	SnapshotID           uint32     // 0x184: sequential id of the active snapshot
	SnapshotRBlocksCount uint64     // 0x188: blocks reserved for the active snapshot
	SnapshotList         uint32     // 0x190: inode at the head of the snapshot list
	ErrorCount           uint32     // 0x194: errors recorded since the last fsck
	FirstErrorTime       uint32     // 0x198: first recorded error, Unix seconds
	FirstErrorIno        uint32     // 0x19c: inode involved in the first error
	FirstErrorBlock      uint64     // 0x1a0: block involved in the first error
	FirstErrorFunc       [32]byte   // 0x1a8: kernel function that reported it, NUL-padded
	FirstErrorLine       uint32     // 0x1c8: source line that reported it
	LastErrorTime        uint32     // 0x1cc: most recent error, Unix seconds
	LastErrorIno         uint32     // 0x1d0: inode involved in the most recent error
	LastErrorLine        uint32     // 0x1d4: source line that reported it
	LastErrorBlock       uint64     // 0x1d8: block involved in the most recent error
	LastErrorFunc        [32]byte   // 0x1e0: kernel function that reported it, NUL-padded
	MountOpts            [64]byte   // 0x200: default mount options as a string, NUL-padded
	UsrQuotaInum         uint32     // 0x240: user quota inode (quota feature)
	GrpQuotaInum         uint32     // 0x244: group quota inode (quota feature)
	OverheadClusters     uint32     // 0x248: clusters of metadata overhead; 0 = the kernel computes it
	BackupBGs            [2]uint32  // 0x24c: the groups holding backups with sparse_super2
	EncryptAlgos         [4]uint8   // 0x254: fscrypt encryption modes
	EncryptPwSalt        [16]byte   // 0x258: salt for fscrypt's string-to-key
	LpfIno               uint32     // 0x268: lost+found
	PrjQuotaInum         uint32     // 0x26c: project quota inode
	ChecksumSeed         uint32     // 0x270: crc32c(~0, UUID), stored with csum_seed
	WtimeHi              uint8      // 0x274: bits 32-39 of Wtime
	MtimeHi              uint8      // 0x275: bits 32-39 of Mtime
	MkfsTimeHi           uint8      // 0x276: bits 32-39 of MkfsTime
	LastCheckHi          uint8      // 0x277: bits 32-39 of LastCheck
	FirstErrorTimeHi     uint8      // 0x278: bits 32-39 of FirstErrorTime
	LastErrorTimeHi      uint8      // 0x279: bits 32-39 of LastErrorTime
	FirstErrorErrcode    uint8      // 0x27a: EXT4_ERR_* code of the first error
	LastErrorErrcode     uint8      // 0x27b: EXT4_ERR_* code of the most recent error
	Encoding             uint16     // 0x27c: casefold encoding
	EncodingFlags        uint16     // 0x27e: casefold encoding flags (strict mode)
	OrphanFileInum       uint32     // 0x280: inode of the orphan file (orphan_file)
	_                    [376]byte  // 0x284: reserved
	Checksum             uint32     // 0x3fc: crc32c of the bytes before it (metadata_csum)
}

// BlockSize is the filesystem block size in bytes.
func (s *Superblock) BlockSize() int64 { return 1024 << s.LogBlockSize }

// ClusterSize is the allocation unit tracked by the block bitmaps: the
// block size, or the bigalloc cluster size.
func (s *Superblock) ClusterSize() int64 { return 1024 << s.LogClusterSize }

// BlocksCount is the number of blocks in the filesystem.
func (s *Superblock) BlocksCount() uint64 {
	if s.Has64Bit() {
		return uint64(s.BlocksCountHi)<<32 | uint64(s.BlocksCountLo)
	}
	return uint64(s.BlocksCountLo)
}

// FreeBlocksCount is the superblock's free block count. Linux does not keep
// it current on disk; the group descriptors' counts are exact.
func (s *Superblock) FreeBlocksCount() uint64 {
	if s.Has64Bit() {
		return uint64(s.FreeBlocksCountHi)<<32 | uint64(s.FreeBlocksCountLo)
	}
	return uint64(s.FreeBlocksCountLo)
}

// Has64Bit reports the 64bit feature (48-bit block numbers, 64-byte
// descriptors).
func (s *Superblock) Has64Bit() bool { return s.FeatureIncompat&Incompat64Bit != 0 }

// HasMetadataCsum reports the metadata_csum feature (crc32c everywhere).
func (s *Superblock) HasMetadataCsum() bool { return s.FeatureRoCompat&RoCompatMetadataCsum != 0 }

// HasGroupDescCsum reports whether group descriptors carry a checksum (and
// their uninit flags and itable_unused counts may be trusted): gdt_csum or
// metadata_csum.
func (s *Superblock) HasGroupDescCsum() bool {
	return s.FeatureRoCompat&(RoCompatGdtCsum|RoCompatMetadataCsum) != 0
}

// HasJournal reports a journal (ext3 and ext4 usually have one, ext2 never).
func (s *Superblock) HasJournal() bool { return s.FeatureCompat&CompatHasJournal != 0 }

// NeedsRecovery reports the needs_recovery feature: the journal was in use
// (the filesystem was mounted, or crashed) and has not been replayed.
func (s *Superblock) NeedsRecovery() bool { return s.FeatureIncompat&IncompatRecover != 0 }

// Label is the volume name, up to its first NUL.
func (s *Superblock) Label() string {
	n := bytes.IndexByte(s.VolumeName[:], 0)
	if n < 0 {
		n = len(s.VolumeName)
	}
	return string(s.VolumeName[:n])
}

func parseSuperblock(b []byte) Superblock {
	var s Superblock
	// The struct mirrors the layout exactly (a test checks binary.Size
	// is 1024), so decoding it field by field is what binary.Read does.
	if err := binary.Read(bytes.NewReader(b[:sbSize]), binary.LittleEndian, &s); err != nil {
		panic(err) // b holds sbSize bytes: cannot fail
	}
	return s
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c continues the kernel's raw crc32c (no pre- or post-inversion,
// ext4_chksum) from crc over b. Go's crc32.Update inverts on entry and exit.
func crc32c(crc uint32, b []byte) uint32 {
	return ^crc32.Update(^crc, castagnoli, b)
}

// crc16 is the kernel's lib/crc16 (CRC-16/ARC, reflected polynomial
// 0xA001), used by gdt_csum descriptors.
func crc16(crc uint16, b []byte) uint16 {
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xa001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// FS is an opened ext2/3/4 filesystem. Its methods may be called
// concurrently: after Open they only read through the io.ReaderAt.
type FS struct {
	SB Superblock // the primary superblock
	// Warnings lists problems that did not prevent reading, e.g. a journal
	// that needs recovery or recorded errors.
	Warnings []string
	// MountPoint is where this filesystem is mounted in the system it
	// belongs to ("/" when empty). Absolute symlink targets are resolved
	// against this filesystem's root after removing MountPoint; targets
	// outside it fail with ErrOutsideFS. Set it before resolving paths,
	// e.g. to "/boot" for a separate boot filesystem.
	MountPoint string

	r     *io.SectionReader
	size  int64
	noCRC bool // fuzzing only: skip checksum verification

	bs          int64  // block size
	ratio       uint64 // blocks per cluster (1 without bigalloc)
	blocks      uint64 // blocks in the filesystem
	groups      uint32
	descSize    int
	descPerBlk  uint64
	descBlocks  uint64
	itbPerGroup uint64 // inode table blocks per group
	inodeSize   int
	firstIno    uint32
	csumSeed    uint32
	groupDescs  []GroupDesc
	system      []blockRun     // group metadata, sorted and merged
	journal     []blockRun     // blocks of the internal journal (data and tree)
	journalLog  []extent.Range // bytes of the empty internal journal's log area (JournalLog)
	// editState is nil when Writable may allow edits as far as the
	// journal and MMP block are concerned; computed by Open.
	editState error
}

// UUID is the filesystem UUID in the usual lower-case 8-4-4-4-12 form (what
// blkid and /etc/fstab's UUID= use).
func (fs *FS) UUID() string {
	u := fs.SB.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Label is the volume label (blkid's LABEL).
func (fs *FS) Label() string { return fs.SB.Label() }

// Open reads and validates the primary superblock of the filesystem held in
// the first size bytes of r and every group descriptor. It returns
// ErrNotExt without the superblock magic, a *FormatError for an invalid
// superblock or descriptor (with metadata_csum or gdt_csum: including their
// checksums), and an error wrapping ErrUnsupported for incompat features it
// does not read. Open also reads the journal's superblock; a journal that
// needs recovery is reported in Warnings and by Writable.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	return open(r, size, false)
}

func open(r io.ReaderAt, size int64, noCRC bool) (*FS, error) {
	if size < sbOffset+sbSize {
		return nil, ErrNotExt
	}
	fs := &FS{r: io.NewSectionReader(r, 0, size), size: size, noCRC: noCRC}
	b := make([]byte, sbSize)
	if err := fs.readAt(b, sbOffset, "superblock"); err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint16(b[0x38:]) != sbMagic {
		return nil, ErrNotExt
	}
	sb := parseSuperblock(b)
	if sb.HasMetadataCsum() {
		if sb.ChecksumType != csumCRC32C {
			return nil, corrupt("superblock", sbOffset, "checksum type %d, only crc32c (1) exists", sb.ChecksumType)
		}
		if got := crc32c(^uint32(0), b[:sbCsumOff]); got != sb.Checksum && !noCRC {
			return nil, corrupt("superblock", sbOffset, "checksum mismatch (stored %#08x, computed %#08x)", sb.Checksum, got)
		}
	}
	if err := fs.setGeometry(&sb); err != nil {
		return nil, err
	}
	fs.SB = sb
	if err := fs.readGroupDescs(); err != nil {
		return nil, err
	}
	fs.system = fs.systemZone()
	if sb.FeatureIncompat&IncompatEncrypt != 0 {
		fs.warn("encryption feature: encrypted files and directories are refused")
	}
	if sb.State&StateError != 0 || sb.ErrorCount != 0 {
		fs.warn("the filesystem recorded errors (state %#x, %d errors): run e2fsck", sb.State, sb.ErrorCount)
	}
	fs.editState = fs.checkJournal()
	if fs.editState == nil && sb.FeatureIncompat&IncompatMMP != 0 {
		fs.editState = fs.checkMMP()
	}
	if fs.editState != nil {
		fs.warn("%v", fs.editState)
	}
	return fs, nil
}

func (fs *FS) warn(format string, args ...any) {
	fs.Warnings = append(fs.Warnings, fmt.Sprintf(format, args...))
}

// setGeometry is the one place superblock values are checked; every later
// computation relies on these bounds (shift amounts, group geometry, device
// size). The checks follow the kernel's ext4_fill_super.
func (fs *FS) setGeometry(s *Superblock) error {
	bad := func(format string, args ...any) error { return corrupt("superblock", sbOffset, format, args...) }
	if u := s.FeatureIncompat &^ incompatRead; u != 0 {
		var names []string
		for _, f := range []struct {
			bit  uint32
			name string
		}{{IncompatCompression, "compression"}, {IncompatJournalDev, "journal_dev (an external journal, not a filesystem)"}, {IncompatDirData, "dirdata"}} {
			if u&f.bit != 0 {
				names = append(names, f.name)
				u &^= f.bit
			}
		}
		if u != 0 {
			names = append(names, fmt.Sprintf("unknown bits %#x", u))
		}
		return fmt.Errorf("%w: incompat features %s", ErrUnsupported, strings.Join(names, ", "))
	}
	if s.RevLevel > 1 {
		return bad("revision %d, only 0 and 1 exist", s.RevLevel)
	}
	if s.LogBlockSize > 6 {
		return bad("block size 1024<<%d beyond 64 KiB", s.LogBlockSize)
	}
	bs := s.BlockSize()
	bigalloc := s.FeatureRoCompat&RoCompatBigalloc != 0
	if bigalloc {
		if s.LogClusterSize < s.LogBlockSize || s.LogClusterSize > 20 {
			return bad("cluster size 1024<<%d invalid for %d-byte blocks", s.LogClusterSize, bs)
		}
		if s.FeatureIncompat&IncompatExtents == 0 {
			return bad("bigalloc without extents")
		}
	} else if s.LogClusterSize != s.LogBlockSize {
		return bad("fragment size 1024<<%d differs from the block size", s.LogClusterSize)
	}
	ratio := uint64(1) << (s.LogClusterSize - s.LogBlockSize)
	wantFirst := uint32(0)
	if bs == 1024 && !bigalloc {
		wantFirst = 1
	}
	if s.FirstDataBlock != wantFirst {
		return bad("first data block %d, expected %d for %d-byte blocks", s.FirstDataBlock, wantFirst, bs)
	}
	// mke2fs makes groups of 256 to 8*blocksize clusters (one bitmap
	// block); the lower bound also keeps a forged superblock from
	// claiming millions of groups on a large device.
	if s.ClustersPerGroup < minGroupClusters || s.ClustersPerGroup > uint32(bs)*8 || s.ClustersPerGroup%8 != 0 {
		return bad("%d clusters per group outside %d..%d", s.ClustersPerGroup, minGroupClusters, bs*8)
	}
	if uint64(s.BlocksPerGroup) != uint64(s.ClustersPerGroup)*ratio {
		return bad("%d blocks per group, %d clusters of %d blocks", s.BlocksPerGroup, s.ClustersPerGroup, ratio)
	}
	inodeSize := goodOldSize
	firstIno := uint32(goodOldIno)
	if s.RevLevel >= 1 {
		inodeSize = int(s.InodeSize)
		firstIno = s.FirstIno
		if inodeSize < goodOldSize || int64(inodeSize) > bs || inodeSize&(inodeSize-1) != 0 {
			return bad("inode size %d invalid", inodeSize)
		}
		if firstIno < goodOldIno {
			return bad("first inode %d below %d", firstIno, goodOldIno)
		}
	}
	if s.InodesPerGroup == 0 || s.InodesPerGroup > uint32(bs)*8 || uint64(s.InodesPerGroup) < uint64(bs)/uint64(inodeSize) {
		return bad("%d inodes per group outside %d..%d", s.InodesPerGroup, uint64(bs)/uint64(inodeSize), bs*8)
	}
	// mke2fs fills whole blocks with inodes. The kernel counts a table's blocks rounded down and could
	// put data in a partial last block, which this package counts as inode table.
	if ipb := uint64(bs) / uint64(inodeSize); uint64(s.InodesPerGroup)%ipb != 0 {
		return bad("%d inodes per group do not fill whole blocks of %d inodes", s.InodesPerGroup, ipb)
	}
	blocks := s.BlocksCount()
	if blocks <= uint64(s.FirstDataBlock) {
		return bad("%d blocks", blocks)
	}
	if blocks > uint64(fs.size)/uint64(bs) {
		return bad("filesystem of %d blocks of %d bytes is larger than the %d-byte device", blocks, bs, fs.size)
	}
	groups64 := (blocks - uint64(s.FirstDataBlock) + uint64(s.BlocksPerGroup) - 1) / uint64(s.BlocksPerGroup)
	if groups64 > 1<<32-1 || groups64*uint64(s.InodesPerGroup) != uint64(s.InodesCount) {
		return bad("%d inodes, but %d groups of %d inodes", s.InodesCount, groups64, s.InodesPerGroup)
	}
	if firstIno >= s.InodesCount {
		return bad("first inode %d beyond the %d inodes", firstIno, s.InodesCount)
	}
	descSize := 32
	if s.Has64Bit() {
		descSize = int(s.DescSize)
		if descSize < minDesc64 || descSize > maxDescSize || descSize&(descSize-1) != 0 {
			return bad("descriptor size %d invalid with 64bit", descSize)
		}
	}
	descPerBlk := uint64(bs) / uint64(descSize)
	descBlocks := (groups64 + descPerBlk - 1) / descPerBlk
	if s.FeatureIncompat&IncompatMetaBG != 0 {
		if uint64(s.FirstMetaBG) > descBlocks {
			return bad("first meta_bg %d beyond the %d descriptor blocks", s.FirstMetaBG, descBlocks)
		}
	} else {
		// The table (plus the blocks reserved for growing it) follows the
		// superblock in group 0 and must fit there.
		if descBlocks+uint64(s.ReservedGDTBlocks)+1 > uint64(s.BlocksPerGroup) {
			return bad("%d descriptor blocks and %d reserved ones do not fit a group of %d blocks",
				descBlocks, s.ReservedGDTBlocks, s.BlocksPerGroup)
		}
	}
	if uint64(s.ReservedGDTBlocks) > uint64(bs)/4 {
		return bad("%d reserved descriptor blocks, at most %d", s.ReservedGDTBlocks, bs/4)
	}
	itb := (uint64(s.InodesPerGroup)*uint64(inodeSize) + uint64(bs) - 1) / uint64(bs)
	if itb >= uint64(s.BlocksPerGroup) && s.FeatureIncompat&IncompatFlexBG == 0 {
		return bad("an inode table of %d blocks does not fit a group of %d blocks", itb, s.BlocksPerGroup)
	}
	if s.FeatureIncompat&IncompatFlexBG != 0 && s.LogGroupsPerFlex > 31 {
		return bad("flex_bg size 1<<%d", s.LogGroupsPerFlex)
	}
	if s.FeatureIncompat&IncompatCsumSeed != 0 && !s.HasMetadataCsum() {
		return bad("metadata_csum_seed without metadata_csum")
	}
	fs.bs, fs.ratio, fs.blocks = bs, ratio, blocks
	fs.groups = uint32(groups64)
	fs.descSize, fs.descPerBlk, fs.descBlocks = descSize, descPerBlk, descBlocks
	fs.itbPerGroup, fs.inodeSize, fs.firstIno = itb, inodeSize, firstIno
	switch {
	case s.FeatureIncompat&IncompatCsumSeed != 0:
		fs.csumSeed = s.ChecksumSeed
	case s.HasMetadataCsum():
		fs.csumSeed = crc32c(^uint32(0), s.UUID[:])
	}
	return nil
}

// readAt fills p from byte offset off; a short read is an error naming the
// structure (a FormatError when off lies past the device).
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
	return fmt.Errorf("ext: reading %s (%d bytes at offset %d): %w", structure, len(p), off, err)
}

// readBlock reads block blk (checked against the filesystem size).
func (fs *FS) readBlock(blk uint64, structure string) ([]byte, int64, error) {
	if blk >= fs.blocks {
		return nil, 0, corrupt(structure, 0, "block %d beyond the %d-block filesystem", blk, fs.blocks)
	}
	b := make([]byte, fs.bs)
	off := int64(blk) * fs.bs
	return b, off, fs.readAt(b, off, structure)
}
