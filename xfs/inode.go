package xfs

import (
	"encoding/binary"
	"fmt"
	iofs "io/fs"
	"time"
)

// Inode data fork formats (di_format, xfs_dinode_fmt).
const (
	FormatDev     = 0 // device special file: no data
	FormatLocal   = 1 // data inline in the fork (short dirs and symlinks)
	FormatExtents = 2 // array of extent records in the fork
	FormatBtree   = 3 // root of a block-map btree in the fork
)

// Inode flags (di_flags) and flags2 (di_flags2, v3 inodes only).
const (
	FlagRealtime  = 0x0001 // file data is on the realtime device
	FlagPrealloc  = 0x0002 // space was preallocated for the file (fallocate)
	FlagImmutable = 0x0008 // immutable file (chattr +i)
	FlagAppend    = 0x0010 // append only (chattr +a)

	Flag2DAX        = 0x01 // direct access to persistent memory
	Flag2Reflink    = 0x02 // the file may share blocks with other files
	Flag2CowExtSize = 0x04 // the copy-on-write extent size hint is set
	Flag2Bigtime    = 0x08 // timestamps are 64-bit nanoseconds since 1901-12-13T20:45:52Z
	Flag2Nrext64    = 0x10 // 64-bit data fork extent count at byte 24, 32-bit attribute fork count at 76
)

// File type bits of Inode.Mode (S_IFMT).
const (
	ModeType    = 0o170000 // mask of the file type bits
	ModeRegular = 0o100000 // regular file
	ModeDir     = 0o040000 // directory
	ModeSymlink = 0o120000 // symbolic link
)

const (
	inodeMagic   = 0x494e // "IN"
	coreSizeV3   = 176
	coreSizeV1V2 = 100
	inodeCRCOff  = 100
	bigtimeEpoch = 1 << 31 // seconds between 1901-12-13T20:45:52Z and 1970
)

// Inode is a decoded on-disk inode (xfs_dinode). Numbers are as stored;
// NExtents is the data fork extent count from di_big_nextents when Flags2
// has Flag2Nrext64, otherwise from di_nextents.
type Inode struct {
	Ino         uint64    // inode number: AG, block in the AG and slot in the block
	Offset      int64     // byte offset of the inode on the device
	Mode        uint16    // file type (ModeType bits) and permission bits
	Version     uint8     // 1, 2 (v4 filesystems) or 3 (v5)
	Format      uint8     // data fork format: FormatLocal, FormatExtents, ...
	UID, GID    uint32    // owner and group
	NLink       uint32    // hard links (di_onlink in v1 inodes, di_nlink otherwise)
	Size        int64     // bytes
	NBlocks     uint64    // blocks owned, btree blocks included
	ExtSize     uint32    // extent size hint in filesystem blocks; 0 = none
	NExtents    uint64    // data fork extent records
	ANExtents   uint32    // attribute fork extents
	ForkOff     uint8     // attribute fork offset in 8-byte units; 0 = none
	AFormat     uint8     // attribute fork format: FormatLocal (shortform), FormatExtents, FormatBtree
	Flags       uint16    // Flag* constants (di_flags)
	Gen         uint32    // generation number (NFS file handles)
	Flags2      uint64    // v3 only
	ChangeCount uint64    // v3 only
	Atime       time.Time // last access, UTC
	Mtime       time.Time // last data change, UTC
	Ctime       time.Time // last inode change, UTC
	Crtime      time.Time // v3 only

	raw []byte // the whole on-disk inode (InodeSize bytes)
}

// IsDir tells whether Mode's file type is a directory.
func (ino *Inode) IsDir() bool { return ino.Mode&ModeType == ModeDir }

// IsRegular tells whether Mode's file type is a regular file.
func (ino *Inode) IsRegular() bool { return ino.Mode&ModeType == ModeRegular }

// IsSymlink tells whether Mode's file type is a symbolic link.
func (ino *Inode) IsSymlink() bool { return ino.Mode&ModeType == ModeSymlink }

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
	case 0o020000:
		m |= iofs.ModeDevice | iofs.ModeCharDevice
	case 0o060000:
		m |= iofs.ModeDevice
	case 0o010000:
		m |= iofs.ModeNamedPipe
	case 0o140000:
		m |= iofs.ModeSocket
	}
	return m
}

func (ino *Inode) coreSize() int {
	if ino.Version == 3 {
		return coreSizeV3
	}
	return coreSizeV1V2
}

// dataFork returns the bytes of the data fork inside the inode.
func (ino *Inode) dataFork() []byte {
	c := ino.coreSize()
	if ino.ForkOff != 0 {
		return ino.raw[c : c+int(ino.ForkOff)*8]
	}
	return ino.raw[c:]
}

// inodeOffset locates inode number ino on the device.
func (fs *FS) inodeOffset(ino uint64) (int64, error) {
	s := &fs.SB
	agno := ino >> (uint(s.AGBlkLog) + uint(s.InopBLog))
	agbno := (ino >> s.InopBLog) & (1<<s.AGBlkLog - 1)
	slot := ino & (1<<s.InopBLog - 1)
	if agno >= uint64(s.AGCount) || agbno >= fs.agLength(uint32(agno)) {
		return 0, fmt.Errorf("%w: inode number %d outside the filesystem", ErrCorrupt, ino)
	}
	return fs.agbnoToOffset(uint32(agno), agbno) + int64(slot)*int64(s.InodeSize), nil
}

// Inode reads and validates inode number ino (for v5: magic, CRC, stored
// inode number and UUID).
func (fs *FS) Inode(ino uint64) (*Inode, error) {
	off, err := fs.inodeOffset(ino)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, fs.SB.InodeSize)
	name := fmt.Sprintf("inode %d", ino)
	if err := fs.readAt(raw, off, name); err != nil {
		return nil, err
	}
	return fs.parseInode(raw, ino, off)
}

// parseInode is the one place inode fields are validated.
func (fs *FS) parseInode(raw []byte, ino uint64, off int64) (*Inode, error) {
	be := binary.BigEndian
	name := fmt.Sprintf("inode %d", ino)
	bad := func(format string, args ...any) error { return corrupt(name, off, format, args...) }
	if be.Uint16(raw) != inodeMagic {
		return nil, bad("bad magic %#04x", be.Uint16(raw))
	}
	in := &Inode{Ino: ino, Offset: off, raw: raw}
	in.Mode = be.Uint16(raw[2:])
	in.Version = raw[4]
	in.Format = raw[5]
	if fs.SB.HasCRC() {
		if in.Version != 3 {
			return nil, bad("version %d on a v5 filesystem", in.Version)
		}
		if !fs.noCRC {
			if err := checkCRC(raw, inodeCRCOff, name, off); err != nil {
				return nil, err
			}
		}
		if got := be.Uint64(raw[152:]); got != ino {
			return nil, bad("records inode number %d", got)
		}
		if u := fs.SB.metaUUID(); string(raw[160:176]) != string(u[:]) {
			return nil, bad("UUID does not match the filesystem")
		}
	} else if in.Version != 1 && in.Version != 2 {
		return nil, bad("version %d on a v4 filesystem", in.Version)
	}
	in.UID = be.Uint32(raw[8:])
	in.GID = be.Uint32(raw[12:])
	if in.Version == 1 {
		in.NLink = uint32(be.Uint16(raw[6:]))
	} else {
		in.NLink = be.Uint32(raw[16:])
	}
	size := be.Uint64(raw[56:])
	if size > 1<<63-1 {
		return nil, bad("size %d is negative", size)
	}
	in.Size = int64(size)
	in.NBlocks = be.Uint64(raw[64:])
	in.ExtSize = be.Uint32(raw[72:])
	in.ForkOff = raw[82]
	in.AFormat = raw[83]
	in.Flags = be.Uint16(raw[90:])
	in.Gen = be.Uint32(raw[92:])
	if in.Version == 3 {
		in.ChangeCount = be.Uint64(raw[104:])
		in.Flags2 = be.Uint64(raw[120:])
	}
	if in.Flags2&Flag2Nrext64 != 0 {
		if fs.SB.FeaturesIncompat&IncompatNrext64 == 0 {
			return nil, bad("NREXT64 inode on a filesystem without NREXT64")
		}
		in.NExtents = be.Uint64(raw[24:])
		in.ANExtents = be.Uint32(raw[76:])
	} else {
		in.NExtents = uint64(be.Uint32(raw[76:]))
		in.ANExtents = uint32(be.Uint16(raw[80:]))
	}
	if in.Flags2&Flag2Bigtime != 0 && fs.SB.FeaturesIncompat&IncompatBigtime == 0 {
		return nil, bad("BIGTIME inode on a filesystem without BIGTIME")
	}
	in.Atime = in.decodeTime(raw[32:])
	in.Mtime = in.decodeTime(raw[40:])
	in.Ctime = in.decodeTime(raw[48:])
	if in.Version == 3 {
		in.Crtime = in.decodeTime(raw[144:])
	}

	lit := len(raw) - in.coreSize()
	if in.ForkOff != 0 && int(in.ForkOff)*8 >= lit {
		return nil, bad("attribute fork offset %d beyond the %d-byte literal area", int(in.ForkOff)*8, lit)
	}
	dfork := len(in.dataFork())
	switch in.Mode & ModeType {
	case 0:
		return nil, bad("inode is not in use (mode 0)")
	case ModeDir:
		if in.Format != FormatLocal && in.Format != FormatExtents && in.Format != FormatBtree {
			return nil, bad("directory with data fork format %d", in.Format)
		}
	case ModeRegular:
		if in.Format != FormatExtents && in.Format != FormatBtree {
			return nil, bad("regular file with data fork format %d", in.Format)
		}
	case ModeSymlink:
		if in.Format != FormatLocal && in.Format != FormatExtents {
			return nil, bad("symlink with data fork format %d", in.Format)
		}
	case 0o020000, 0o060000, 0o010000, 0o140000:
		if in.Format != FormatDev {
			return nil, bad("special file with data fork format %d", in.Format)
		}
	default:
		return nil, bad("unknown file type in mode %#o", in.Mode)
	}
	switch in.Format {
	case FormatLocal:
		if in.Size > int64(dfork) {
			return nil, bad("inline data of %d bytes exceeds the %d-byte fork", in.Size, dfork)
		}
	case FormatExtents:
		if in.NExtents > uint64(dfork/16) {
			return nil, bad("%d extents do not fit the %d-byte data fork", in.NExtents, dfork)
		}
	case FormatBtree:
		if in.NExtents > fs.SB.DBlocks && in.Flags&FlagRealtime == 0 {
			return nil, bad("%d extents exceed the %d blocks of the filesystem", in.NExtents, fs.SB.DBlocks)
		}
		if dfork < 4+16 {
			return nil, bad("data fork of %d bytes too small for a btree root", dfork)
		}
	}
	return in, nil
}

// decodeTime decodes an xfs_timestamp: BIGTIME nanoseconds since 1901, or
// legacy signed seconds and nanoseconds since 1970.
func (ino *Inode) decodeTime(b []byte) time.Time {
	be := binary.BigEndian
	if ino.Flags2&Flag2Bigtime != 0 {
		ns := be.Uint64(b)
		return time.Unix(int64(ns/1e9)-bigtimeEpoch, int64(ns%1e9)).UTC()
	}
	return time.Unix(int64(int32(be.Uint32(b))), int64(be.Uint32(b[4:])%1e9)).UTC()
}

// encodeTime is the inverse of decodeTime; ok is false when t is outside
// the inode's timestamp range.
func (ino *Inode) encodeTime(b []byte, t time.Time) bool {
	be := binary.BigEndian
	sec, nsec := t.Unix(), int64(t.Nanosecond())
	if ino.Flags2&Flag2Bigtime != 0 {
		if sec < -bigtimeEpoch || sec > (1<<64-1)/1_000_000_000-bigtimeEpoch-1 {
			return false
		}
		be.PutUint64(b, uint64(sec+bigtimeEpoch)*1e9+uint64(nsec))
		return true
	}
	if sec < -1<<31 || sec > 1<<31-1 {
		return false
	}
	be.PutUint32(b, uint32(int32(sec)))
	be.PutUint32(b[4:], uint32(nsec))
	return true
}
