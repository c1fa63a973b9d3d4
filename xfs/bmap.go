package xfs

import (
	"encoding/binary"
	"fmt"

	"github.com/luksconv/luksconv/extent"
)

// Extent maps a run of file bytes to device bytes. All fields are in
// bytes; DiskOff is a byte offset on the filesystem device.
type Extent = extent.Mapped

const (
	bmapMagicV4 = 0x424d4150 // "BMAP"
	bmapMagicV5 = 0x424d4133 // "BMA3"
	bmbtHdrV4   = 24
	bmbtHdrV5   = 72
	bmbtCRCOff  = 64
)

// Extents returns the data fork extent map of ino, sorted by FileOff, from
// an extent list or a block-map btree (v5 blocks: magic, CRC, owner and
// level checked). File ranges without an extent are holes. An inode with
// inline data (FormatLocal) or no data fork has no extents. Realtime files
// are refused with ErrUnsupported (their extents address the realtime
// device).
func (fs *FS) Extents(ino *Inode) ([]Extent, error) {
	if ino.Flags&FlagRealtime != 0 {
		return nil, fmt.Errorf("%w: inode %d is a realtime file", ErrUnsupported, ino.Ino)
	}
	var recs []Extent
	var err error
	switch ino.Format {
	case FormatExtents:
		recs, err = fs.extentList(ino)
	case FormatBtree:
		recs, err = fs.extentBtree(ino)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// extentList decodes the in-inode extent array (count bounded by
// parseInode against the fork size).
func (fs *FS) extentList(ino *Inode) ([]Extent, error) {
	fork := ino.dataFork()
	var b extentBuilder
	b.fs, b.ino = fs, ino
	for i := uint64(0); i < ino.NExtents; i++ {
		if err := b.add(fork[i*16:], ino.Offset+int64(ino.coreSize())+int64(i)*16); err != nil {
			return nil, err
		}
	}
	return b.out, nil
}

// extentBuilder decodes xfs_bmbt_rec records and checks that they are in
// file-offset order, do not overlap and stay inside one AG.
type extentBuilder struct {
	fs      *FS
	ino     *Inode
	out     []Extent
	nextOff uint64 // first file block after the previous record
}

func (b *extentBuilder) add(rec []byte, at int64) error {
	l0 := binary.BigEndian.Uint64(rec)
	l1 := binary.BigEndian.Uint64(rec[8:])
	unwritten := l0>>63 != 0
	startoff := (l0 >> 9) & (1<<54 - 1)
	startblock := (l0&0x1ff)<<43 | l1>>21
	count := l1 & (1<<21 - 1)
	name := fmt.Sprintf("extent record of inode %d", b.ino.Ino)
	if count == 0 {
		return corrupt(name, at, "zero-length extent")
	}
	if startoff < b.nextOff {
		return corrupt(name, at, "file block %d overlaps or precedes the previous extent (ends at %d)", startoff, b.nextOff)
	}
	maxBlocks := uint64(1<<63-1) / uint64(b.fs.bs)
	if startoff+count > maxBlocks {
		return corrupt(name, at, "file blocks %d+%d beyond the largest file", startoff, count)
	}
	off, ok := b.fs.fsbToOffset(startblock, count)
	if !ok {
		return corrupt(name, at, "fsblock %d+%d outside the data device or across an AG end", startblock, count)
	}
	b.nextOff = startoff + count
	b.out = append(b.out, Extent{
		FileOff:   int64(startoff) * b.fs.bs,
		DiskOff:   off,
		Len:       int64(count) * b.fs.bs,
		Unwritten: unwritten,
	})
	return nil
}

// extentBtree walks a block-map btree whose root lives in the inode.
func (fs *FS) extentBtree(ino *Inode) ([]Extent, error) {
	fork := ino.dataFork()
	forkAt := ino.Offset + int64(ino.coreSize())
	name := fmt.Sprintf("bmap btree root of inode %d", ino.Ino)
	level := int(binary.BigEndian.Uint16(fork))
	numrecs := int(binary.BigEndian.Uint16(fork[2:]))
	maxrecs := (len(fork) - 4) / 16
	if level < 1 || level > maxBtreeLevels {
		return nil, corrupt(name, forkAt, "level %d out of range 1..%d", level, maxBtreeLevels)
	}
	if numrecs < 1 || numrecs > maxrecs {
		return nil, corrupt(name, forkAt, "%d records, root holds 1..%d", numrecs, maxrecs)
	}
	w := &bmbtWalker{fs: fs, ino: ino, seen: map[uint64]bool{}}
	w.b.fs, w.b.ino = fs, ino
	if ino.NExtents < 1<<16 {
		w.b.out = make([]Extent, 0, ino.NExtents)
	}
	ptrs := fork[4+maxrecs*8:]
	for i := 0; i < numrecs; i++ {
		if err := w.walk(binary.BigEndian.Uint64(ptrs[i*8:]), level-1); err != nil {
			return nil, err
		}
	}
	if uint64(len(w.b.out)) != ino.NExtents {
		return nil, corrupt(name, forkAt, "btree holds %d extents, inode says %d", len(w.b.out), ino.NExtents)
	}
	return w.b.out, nil
}

type bmbtWalker struct {
	fs   *FS
	ino  *Inode
	seen map[uint64]bool // btree blocks already visited (cycle guard)
	b    extentBuilder
}

// walk visits the subtree at fsblock fsb, which must be at level.
func (w *bmbtWalker) walk(fsb uint64, level int) error {
	fs := w.fs
	name := fmt.Sprintf("bmap btree block %d of inode %d", fsb, w.ino.Ino)
	off, ok := fs.fsbToOffset(fsb, 1)
	if !ok {
		return corrupt(name, 0, "block pointer outside the data device")
	}
	if w.seen[fsb] {
		return corrupt(name, off, "block reached twice (btree cycle)")
	}
	w.seen[fsb] = true
	buf := make([]byte, fs.bs)
	if err := fs.readAt(buf, off, name); err != nil {
		return err
	}
	be := binary.BigEndian
	hdr := bmbtHdrV4
	magic := uint32(bmapMagicV4)
	if fs.SB.HasCRC() {
		hdr, magic = bmbtHdrV5, bmapMagicV5
	}
	if got := be.Uint32(buf); got != magic {
		return corrupt(name, off, "bad magic %#08x", got)
	}
	if fs.SB.HasCRC() {
		if err := fs.checkV5Long(buf, off, name, w.ino.Ino, bmbtCRCOff); err != nil {
			return err
		}
	}
	if got := int(be.Uint16(buf[4:])); got != level {
		return corrupt(name, off, "level %d, parent expects %d", got, level)
	}
	numrecs := int(be.Uint16(buf[6:]))
	maxrecs := (len(buf) - hdr) / 16
	if numrecs < 1 || numrecs > maxrecs {
		return corrupt(name, off, "%d records, block holds 1..%d", numrecs, maxrecs)
	}
	if level == 0 {
		for i := 0; i < numrecs; i++ {
			if uint64(len(w.b.out)) >= w.ino.NExtents {
				return corrupt(name, off, "more extents than the inode's %d", w.ino.NExtents)
			}
			if err := w.b.add(buf[hdr+i*16:], off+int64(hdr+i*16)); err != nil {
				return err
			}
		}
		return nil
	}
	ptrs := buf[hdr+maxrecs*8:]
	for i := 0; i < numrecs; i++ {
		if err := w.walk(be.Uint64(ptrs[i*8:]), level-1); err != nil {
			return err
		}
	}
	return nil
}

// checkV5Long verifies the self-describing part of a v5 long-pointer btree
// block: blkno (in 512-byte units), UUID, owner and CRC.
func (fs *FS) checkV5Long(buf []byte, off int64, name string, owner uint64, crcOff int) error {
	be := binary.BigEndian
	if got := be.Uint64(buf[24:]); got != uint64(off)/512 {
		return corrupt(name, off, "records its address as sector %d", got)
	}
	if u := fs.SB.metaUUID(); string(buf[40:56]) != string(u[:]) {
		return corrupt(name, off, "UUID does not match the filesystem")
	}
	if got := be.Uint64(buf[56:]); got != owner {
		return corrupt(name, off, "owner %d, expected %d", got, owner)
	}
	if fs.noCRC {
		return nil
	}
	return checkCRC(buf, crcOff, name, off)
}
