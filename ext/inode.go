package ext

import (
	"encoding/binary"
	"fmt"
	iofs "io/fs"
	"time"
)

// Inode flags (i_flags).
const (
	FlagSecRm       = 0x00000001 // secure deletion (chattr +s; ignored by ext4)
	FlagUnrm        = 0x00000002 // undelete (chattr +u; ignored by ext4)
	FlagCompr       = 0x00000004 // compressed file (chattr +c; not in ext4)
	FlagSync        = 0x00000008 // synchronous updates (chattr +S)
	FlagImmutable   = 0x00000010 // immutable file (chattr +i)
	FlagAppend      = 0x00000020 // append only (chattr +a)
	FlagNoDump      = 0x00000040 // not backed up by dump (chattr +d)
	FlagNoAtime     = 0x00000080 // access time not updated (chattr +A)
	FlagComprBlk    = 0x00000200 // one or more compressed clusters (not in ext4)
	FlagEncrypt     = 0x00000800 // fscrypt-encrypted file or directory
	FlagIndex       = 0x00001000 // hash-indexed (htree) directory
	FlagImagic      = 0x00002000 // AFS directory
	FlagJournalData = 0x00004000 // file data is journaled too (chattr +j)
	FlagHugeFile    = 0x00040000 // i_blocks counts filesystem blocks
	FlagExtents     = 0x00080000 // i_block holds an extent tree
	FlagVerity      = 0x00100000 // fs-verity file
	FlagEAInode     = 0x00200000 // the inode holds an extended attribute value
	FlagInlineData  = 0x10000000 // data in i_block and the system.data attribute
	FlagProjInherit = 0x20000000 // new entries inherit the directory's project ID
	FlagCasefold    = 0x40000000 // case-insensitive directory
)

// File type bits of Inode.Mode (S_IFMT).
const (
	ModeType    = 0o170000 // mask of the file type bits
	ModeRegular = 0o100000 // regular file
	ModeDir     = 0o040000 // directory
	ModeSymlink = 0o120000 // symbolic link
	ModeChar    = 0o020000 // character device
	ModeBlock   = 0o060000 // block device
	ModeFifo    = 0o010000 // named pipe
	ModeSocket  = 0o140000 // socket
)

const (
	iBlockOff      = 0x28 // i_block: 15 block pointers or an extent tree root, 60 bytes
	iBlockLen      = 60
	iCsumLoOff     = 0x7c
	iExtraOff      = 0x80
	iCsumHiOff     = 0x82
	xattrMagic     = 0xea020000
	xattrIndexSys  = 7 // EXT4_XATTR_INDEX_SYSTEM
	inlineDataName = "data"
)

// Inode is a decoded on-disk inode (struct ext4_inode).
type Inode struct {
	Ino        uint32    // inode number (the root directory is 2)
	Offset     int64     // byte offset of the inode within the filesystem
	Mode       uint16    // file type (ModeType bits) and permission bits
	UID, GID   uint32    // owner and group, low and high 16 bits combined
	Size       int64     // bytes (i_size_lo and i_size_high)
	LinksCount uint16    // hard links; 1 also for a directory with too many subdirectories (dir_nlink)
	Blocks     uint64    // 512-byte units (converted when FlagHugeFile counts filesystem blocks)
	Flags      uint32    // Flag* constants
	Generation uint32    // file version (NFS); part of the metadata_csum seed
	FileACL    uint64    // block of the extended attribute block; 0 = none
	ExtraIsize uint16    // bytes used beyond the first 128
	Atime      time.Time // last access, UTC (nanoseconds and dates past 2038 when the inode has room)
	Ctime      time.Time // last inode change, UTC
	Mtime      time.Time // last data change, UTC
	Crtime     time.Time // zero when the inode has no room for it
	Dtime      uint32    // deletion time (Unix seconds); 0 for a live inode; on the orphan list, the next orphan's number

	raw      []byte // the whole on-disk inode (inode size bytes)
	csumSeed uint32 // crc32c seed of this inode's metadata (metadata_csum)
}

// IsDir tells whether Mode's file type is a directory.
func (ino *Inode) IsDir() bool { return ino.Mode&ModeType == ModeDir }

// IsRegular tells whether Mode's file type is a regular file.
func (ino *Inode) IsRegular() bool { return ino.Mode&ModeType == ModeRegular }

// IsSymlink tells whether Mode's file type is a symbolic link.
func (ino *Inode) IsSymlink() bool { return ino.Mode&ModeType == ModeSymlink }

// HasInlineData reports data kept inside the inode (FlagInlineData).
func (ino *Inode) HasInlineData() bool { return ino.Flags&FlagInlineData != 0 }

// FileMode converts Mode to an io/fs FileMode.
func (ino *Inode) FileMode() iofs.FileMode {
	m := iofs.FileMode(ino.Mode & 0o777)
	if ino.Mode&0o4000 != 0 {
		m |= iofs.ModeSetuid
	}
	if ino.Mode&0o2000 != 0 {
		m |= iofs.ModeSetgid
	}
	if ino.Mode&0o1000 != 0 {
		m |= iofs.ModeSticky
	}
	switch ino.Mode & ModeType {
	case ModeDir:
		m |= iofs.ModeDir
	case ModeSymlink:
		m |= iofs.ModeSymlink
	case ModeChar:
		m |= iofs.ModeDevice | iofs.ModeCharDevice
	case ModeBlock:
		m |= iofs.ModeDevice
	case ModeFifo:
		m |= iofs.ModeNamedPipe
	case ModeSocket:
		m |= iofs.ModeSocket
	}
	return m
}

// iblock is the 60-byte i_block area.
func (ino *Inode) iblock() []byte { return ino.raw[iBlockOff : iBlockOff+iBlockLen] }

// fits reports whether the inode field ending at byte end is inside the
// extra area the inode uses (EXT4_FITS_IN_INODE).
func (ino *Inode) fits(end int) bool { return end <= goodOldSize+int(ino.ExtraIsize) }

// inodeOffset locates inode number n. Inodes of a group's never-initialised
// tail (with checksummed descriptors: INODE_UNINIT, bg_itable_unused) hold
// no inode, whatever the table's bytes say.
func (fs *FS) inodeOffset(n uint32) (int64, error) {
	name := fmt.Sprintf("inode %d", n)
	if n < 1 || n > fs.SB.InodesCount {
		return 0, corrupt(name, 0, "inode number outside 1..%d", fs.SB.InodesCount)
	}
	g, idx := (n-1)/fs.SB.InodesPerGroup, (n-1)%fs.SB.InodesPerGroup
	gd := &fs.groupDescs[g]
	if fs.SB.HasGroupDescCsum() && (gd.Flags&BGInodeUninit != 0 || idx >= fs.SB.InodesPerGroup-gd.ItableUnused) {
		return 0, corrupt(name, gd.Offset, "inode is in the uninitialised part of group %d's inode table", g)
	}
	return int64(gd.InodeTable)*fs.bs + int64(idx)*int64(fs.inodeSize), nil
}

// Inode reads and validates inode number n (with metadata_csum: its
// checksum).
func (fs *FS) Inode(n uint32) (*Inode, error) {
	off, err := fs.inodeOffset(n)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, fs.inodeSize)
	if err := fs.readAt(raw, off, fmt.Sprintf("inode %d", n)); err != nil {
		return nil, err
	}
	return fs.parseInode(raw, n, off)
}

// inodeCsum is ext4_inode_csum: crc32c over the whole inode with both
// checksum halves taken as zero, seeded with the inode number and
// generation.
func (fs *FS) inodeCsum(raw []byte, seed uint32, extra uint16) uint32 {
	zero := []byte{0, 0}
	c := crc32c(seed, raw[:iCsumLoOff])
	c = crc32c(c, zero)
	c = crc32c(c, raw[iCsumLoOff+2:goodOldSize])
	if len(raw) > goodOldSize {
		c = crc32c(c, raw[goodOldSize:iCsumHiOff])
		off := iCsumHiOff
		if iCsumHiOff+2 <= goodOldSize+int(extra) {
			c = crc32c(c, zero)
			off += 2
		}
		c = crc32c(c, raw[off:])
	}
	return c
}

// inodeSeed is the crc32c seed of inode n's metadata: the filesystem seed
// continued over the inode number and generation.
func (fs *FS) inodeSeed(n, gen uint32) uint32 {
	var le [8]byte
	binary.LittleEndian.PutUint32(le[:], n)
	binary.LittleEndian.PutUint32(le[4:], gen)
	return crc32c(crc32c(fs.csumSeed, le[:4]), le[4:])
}

// setInodeCsum stores the checksum of raw (an inode of this filesystem).
func (fs *FS) setInodeCsum(ino *Inode, raw []byte) {
	c := fs.inodeCsum(raw, ino.csumSeed, ino.ExtraIsize)
	binary.LittleEndian.PutUint16(raw[iCsumLoOff:], uint16(c))
	if len(raw) > goodOldSize && ino.fits(iCsumHiOff+2) {
		binary.LittleEndian.PutUint16(raw[iCsumHiOff:], uint16(c>>16))
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// parseInode is the one place inode fields are validated (after the
// kernel's __ext4_iget).
func (fs *FS) parseInode(raw []byte, n uint32, off int64) (*Inode, error) {
	le := binary.LittleEndian
	name := fmt.Sprintf("inode %d", n)
	bad := func(format string, args ...any) error { return corrupt(name, off, format, args...) }
	if allZero(raw) {
		return nil, bad("inode is not in use (all zeros)")
	}
	in := &Inode{Ino: n, Offset: off, raw: raw}
	if len(raw) > goodOldSize {
		in.ExtraIsize = le.Uint16(raw[iExtraOff:])
		if goodOldSize+int(in.ExtraIsize) > len(raw) || in.ExtraIsize%4 != 0 {
			return nil, bad("extra inode size %d invalid for %d-byte inodes", in.ExtraIsize, len(raw))
		}
	}
	in.Generation = le.Uint32(raw[0x64:])
	if fs.SB.HasMetadataCsum() {
		in.csumSeed = fs.inodeSeed(n, in.Generation)
		want := fs.inodeCsum(raw, in.csumSeed, in.ExtraIsize)
		got := uint32(le.Uint16(raw[iCsumLoOff:]))
		if len(raw) > goodOldSize && in.fits(iCsumHiOff+2) {
			got |= uint32(le.Uint16(raw[iCsumHiOff:])) << 16
		} else {
			want &= 0xffff
		}
		if got != want && !fs.noCRC {
			return nil, bad("checksum mismatch (stored %#08x, computed %#08x)", got, want)
		}
	}
	in.Mode = le.Uint16(raw[0x00:])
	in.UID = uint32(le.Uint16(raw[0x02:])) | uint32(le.Uint16(raw[0x78:]))<<16
	in.GID = uint32(le.Uint16(raw[0x18:])) | uint32(le.Uint16(raw[0x7a:]))<<16
	in.LinksCount = le.Uint16(raw[0x1a:])
	in.Dtime = le.Uint32(raw[0x14:])
	in.Flags = le.Uint32(raw[0x20:])
	size := uint64(le.Uint32(raw[0x04:])) | uint64(le.Uint32(raw[0x6c:]))<<32
	in.FileACL = uint64(le.Uint32(raw[0x68:]))
	if fs.SB.Has64Bit() {
		in.FileACL |= uint64(le.Uint16(raw[0x76:])) << 32
	}
	in.Blocks = uint64(le.Uint32(raw[0x1c:]))
	if fs.SB.FeatureRoCompat&RoCompatHugeFile != 0 {
		in.Blocks |= uint64(le.Uint16(raw[0x74:])) << 32
		if in.Flags&FlagHugeFile != 0 {
			in.Blocks *= uint64(fs.bs / 512)
		}
	}
	in.Atime = in.decodeTime(raw, 0x08, 0x8c)
	in.Ctime = in.decodeTime(raw, 0x0c, 0x84)
	in.Mtime = in.decodeTime(raw, 0x10, 0x88)
	if in.fits(0x94) {
		in.Crtime = in.decodeTime(raw, 0x90, 0x94)
	}

	if in.Mode == 0 || in.LinksCount == 0 {
		return nil, bad("inode is not in use (mode %#o, %d links)", in.Mode, in.LinksCount)
	}
	// The largest file: 2^32 blocks (32-bit logical block numbers).
	if size > uint64(fs.bs)<<32 {
		return nil, bad("size %d beyond the largest file of %d-byte blocks", size, fs.bs)
	}
	in.Size = int64(size)
	if in.FileACL != 0 && (in.FileACL < uint64(fs.SB.FirstDataBlock) || in.FileACL >= fs.blocks) {
		return nil, bad("extended attribute block %d outside the filesystem", in.FileACL)
	}
	if in.Flags&FlagExtents != 0 && fs.SB.FeatureIncompat&IncompatExtents == 0 {
		return nil, bad("extents flag without the extents feature")
	}
	if in.Flags&FlagInlineData != 0 {
		if fs.SB.FeatureIncompat&IncompatInlineData == 0 {
			return nil, bad("inline data flag without the inline_data feature")
		}
		if in.Flags&FlagExtents != 0 {
			return nil, bad("both the inline data and the extents flag")
		}
	}
	switch in.Mode & ModeType {
	case ModeRegular, ModeDir, ModeSymlink, ModeChar, ModeBlock, ModeFifo, ModeSocket:
	default:
		return nil, bad("unknown file type in mode %#o", in.Mode)
	}
	if in.IsDir() && !in.HasInlineData() && (in.Size == 0 || in.Size%fs.bs != 0) {
		return nil, bad("directory size %d is not a positive multiple of the %d-byte block", in.Size, fs.bs)
	}
	if in.IsSymlink() && (in.Size == 0 || in.Size > MaxSymlinkLen || in.Size >= fs.bs) {
		return nil, bad("symlink target length %d outside 1..%d", in.Size, min(MaxSymlinkLen, fs.bs-1))
	}
	return in, nil
}

// decodeTime decodes a 32-bit seconds field and, when the inode has room
// for it, its extra field: two epoch bits (seconds 2^32 and 2^33) and
// nanoseconds (ext4_decode_extra_time).
func (ino *Inode) decodeTime(raw []byte, off, extraOff int) time.Time {
	le := binary.LittleEndian
	sec := int64(int32(le.Uint32(raw[off:])))
	var nsec int64
	if len(raw) > goodOldSize && ino.fits(extraOff+4) {
		extra := le.Uint32(raw[extraOff:])
		sec += int64(extra&3) << 32
		nsec = int64(extra>>2) % 1e9
	}
	return time.Unix(sec, nsec).UTC()
}

// encodeTime is the inverse of decodeTime; ok is false when t is outside
// what the inode can hold.
func (ino *Inode) encodeTime(raw []byte, off, extraOff int, t time.Time) bool {
	le := binary.LittleEndian
	sec := t.Unix()
	if len(raw) > goodOldSize && ino.fits(extraOff+4) {
		if sec < -1<<31 || sec > 1<<31-1+3<<32 {
			return false
		}
		epoch := uint32((sec - int64(int32(sec))) >> 32)
		le.PutUint32(raw[off:], uint32(int32(sec)))
		le.PutUint32(raw[extraOff:], epoch&3|uint32(t.Nanosecond())<<2)
		return true
	}
	if sec < -1<<31 || sec > 1<<31-1 {
		return false
	}
	le.PutUint32(raw[off:], uint32(int32(sec)))
	return true
}

// xattr returns the value of the in-inode extended attribute with the
// given name index and name suffix (e.g. 7, "data" for system.data). Only
// the in-inode area is searched: that is where ext4 keeps system.data.
func (fs *FS) xattr(ino *Inode, index uint8, suffix string) ([]byte, bool, error) {
	le := binary.LittleEndian
	start := goodOldSize + int(ino.ExtraIsize)
	if len(ino.raw) < start+4 || le.Uint32(ino.raw[start:]) != xattrMagic {
		return nil, false, nil
	}
	ents := ino.raw[start+4:] // value offsets count from here (IFIRST)
	at := ino.Offset + int64(start) + 4
	name := fmt.Sprintf("extended attributes of inode %d", ino.Ino)
	for pos := 0; ; {
		if pos+4 > len(ents) {
			return nil, false, corrupt(name, at, "entry list runs past the inode")
		}
		if le.Uint32(ents[pos:]) == 0 {
			return nil, false, nil
		}
		if pos+16 > len(ents) {
			return nil, false, corrupt(name, at+int64(pos), "entry runs past the inode")
		}
		nlen, idx := int(ents[pos]), ents[pos+1]
		voff, vinum, vsize := int(le.Uint16(ents[pos+2:])), le.Uint32(ents[pos+4:]), le.Uint32(ents[pos+8:])
		esize := (16 + nlen + 3) &^ 3
		if nlen == 0 || pos+esize > len(ents) {
			return nil, false, corrupt(name, at+int64(pos), "entry with a %d-byte name runs past the inode", nlen)
		}
		if idx == index && string(ents[pos+16:pos+16+nlen]) == suffix {
			if vinum != 0 {
				return nil, false, corrupt(name, at+int64(pos), "value kept in inode %d", vinum)
			}
			if uint64(voff)+uint64(vsize) > uint64(len(ents)) {
				return nil, false, corrupt(name, at+int64(pos), "value of %d bytes at %d runs past the inode", vsize, voff)
			}
			return ents[voff : voff+int(vsize)], true, nil
		}
		pos += esize
	}
}

// inlineData returns the bytes an inline-data inode stores: the first 60
// in i_block, the rest in the system.data attribute, at most Size. A Size
// beyond them reads as zeros (the kernel zero-fills the page; e2fsck
// accepts it). The attribute must exist, as e2fsck requires.
func (fs *FS) inlineData(ino *Inode) ([]byte, error) {
	val, ok, err := fs.xattr(ino, xattrIndexSys, inlineDataName)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, corrupt(fmt.Sprintf("inode %d", ino.Ino), ino.Offset, "inline data flag without a system.data attribute")
	}
	stored := append(append([]byte(nil), ino.iblock()...), val...)
	return stored[:min(ino.Size, int64(len(stored)))], nil
}
