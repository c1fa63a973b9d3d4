package ext

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/luksconv/luksconv/extent"
)

// Extent maps a run of file bytes to filesystem bytes. All fields are in
// bytes; DiskOff is a byte offset within the filesystem.
type Extent = extent.Mapped

const (
	extMagic      = 0xf30a
	extHdrLen     = 12
	extEntryLen   = 12
	extInitMaxLen = 32768           // EXT_INIT_MAX_LEN: longer ee_len values mark unwritten extents
	maxLogical    = uint64(1) << 32 // logical block numbers are 32-bit
)

// Extents returns the block map of ino, sorted by FileOff, from its extent
// tree (depth up to 5; every tree block's header and, with metadata_csum,
// tail checksum verified) or its direct/indirect block pointers. File ranges
// without an extent are holes. Inline data, fast symlinks and device files
// have no blocks and give nil.
func (fs *FS) Extents(ino *Inode) ([]Extent, error) {
	exts, _, err := fs.mapping(ino)
	return exts, err
}

// hasBlocks reports whether i_block holds a block map: not for inline
// data, fast symlinks and special files (whose i_block is a device number
// or empty).
func (fs *FS) hasBlocks(ino *Inode) bool {
	if ino.HasInlineData() {
		return false
	}
	switch ino.Mode & ModeType {
	case ModeRegular, ModeDir:
		return true
	case ModeSymlink:
		return !fs.fastSymlink(ino)
	}
	return false
}

// fastSymlink is ext4_inode_is_fast_symlink: the target is in i_block when
// the inode owns no block besides its extended attribute block.
func (fs *FS) fastSymlink(ino *Inode) bool {
	if ino.HasInlineData() {
		return false
	}
	if ino.Flags&FlagEAInode != 0 {
		return ino.Size < iBlockLen
	}
	var ea uint64
	if ino.FileACL != 0 {
		ea = uint64(fs.SB.ClusterSize() / 512)
	}
	return ino.Blocks == ea
}

// mapping returns the extents of ino and the blocks of its mapping tree
// (extent index and leaf blocks, indirect blocks).
func (fs *FS) mapping(ino *Inode) ([]Extent, []blockRun, error) {
	if !fs.hasBlocks(ino) {
		return nil, nil, nil
	}
	b := &mapBuilder{fs: fs, ino: ino, seen: map[uint64]bool{}}
	var err error
	if ino.Flags&FlagExtents != 0 {
		err = b.extentRoot()
	} else {
		err = b.indirect()
	}
	if err != nil {
		return nil, nil, err
	}
	return b.out, mergeRuns(b.tree), nil
}

// mapBuilder collects extents in file order, merging contiguous ones, and
// remembers the tree blocks it read (each at most once: a block reached
// twice is a loop or a cross-link).
type mapBuilder struct {
	fs    *FS
	ino   *Inode
	seen  map[uint64]bool
	tree  []blockRun
	out   []Extent
	next  uint64 // first logical block the next extent may start at
	total uint64 // blocks mapped so far
}

// add appends a run of n blocks. A file cannot own more blocks than the
// filesystem has: that bound keeps a forged map (the same blocks mapped
// again and again) from making a directory walk or a read unbounded.
func (b *mapBuilder) add(lblk, pblk, n uint64, unwritten bool, at int64) error {
	if b.total += n; b.total > b.fs.blocks {
		return corrupt(fmt.Sprintf("block map of inode %d", b.ino.Ino), at,
			"maps more blocks than the %d of the filesystem", b.fs.blocks)
	}
	bs := b.fs.bs
	e := Extent{FileOff: int64(lblk) * bs, DiskOff: int64(pblk) * bs, Len: int64(n) * bs, Unwritten: unwritten}
	if k := len(b.out); k > 0 {
		p := &b.out[k-1]
		if p.FileOff+p.Len == e.FileOff && p.DiskOff+p.Len == e.DiskOff && p.Unwritten == unwritten {
			p.Len += e.Len
			return nil
		}
	}
	b.out = append(b.out, e)
	return nil
}

// checkData validates n data blocks from pblk: inside the filesystem and
// outside its group metadata (the kernel's block_validity).
func (b *mapBuilder) checkData(pblk, n uint64) bool {
	fs := b.fs
	return pblk >= uint64(fs.SB.FirstDataBlock) && pblk < fs.blocks && n <= fs.blocks-pblk &&
		!overlapsRuns(fs.system, pblk, n)
}

// treeBlock reads a mapping-tree block once.
func (b *mapBuilder) treeBlock(blk uint64, name string, at int64) ([]byte, int64, error) {
	if !b.checkData(blk, 1) {
		return nil, 0, corrupt(name, at, "points to block %d, outside the filesystem or in its metadata", blk)
	}
	if b.seen[blk] {
		return nil, 0, corrupt(name, at, "block %d is reached twice (a loop or a cross-link)", blk)
	}
	b.seen[blk] = true
	buf, off, err := b.fs.readBlock(blk, name)
	if err != nil {
		return nil, 0, err
	}
	b.tree = append(b.tree, blockRun{blk, 1})
	return buf, off, nil
}

func (b *mapBuilder) extentRoot() error {
	return b.extentNode(b.ino.iblock(), b.ino.Offset+iBlockOff, fmt.Sprintf("extent tree root of inode %d", b.ino.Ino), -1, 0, maxLogical)
}

// extentNode walks the extent tree node in buf at depth (-1: the root,
// which gives the depth), whose entries must cover logical blocks in
// [lo, hi) (ext4_ext_check, ext4_valid_extent_entries).
func (b *mapBuilder) extentNode(buf []byte, at int64, name string, depth int, lo, hi uint64) error {
	le := binary.LittleEndian
	fs := b.fs
	bad := func(format string, args ...any) error { return corrupt(name, at, format, args...) }
	if m := le.Uint16(buf); m != extMagic {
		return bad("bad extent header magic %#04x", m)
	}
	entries, maxEnt, d := int(le.Uint16(buf[2:])), int(le.Uint16(buf[4:])), int(le.Uint16(buf[6:]))
	if capacity := (len(buf) - extHdrLen) / extEntryLen; maxEnt > capacity || entries > maxEnt {
		return bad("%d entries of at most %d, the node holds %d", entries, maxEnt, capacity)
	}
	if depth < 0 {
		if d > maxExtentDepth {
			return bad("depth %d beyond %d", d, maxExtentDepth)
		}
	} else {
		if d != depth {
			return bad("depth %d, its parent expects %d", d, depth)
		}
		if fs.SB.HasMetadataCsum() && !fs.noCRC {
			// ext4_extent_tail right after the eh_max entries.
			end := extHdrLen + extEntryLen*maxEnt
			got := le.Uint32(buf[end:])
			if want := crc32c(b.ino.csumSeed, buf[:end]); got != want {
				return bad("checksum mismatch (stored %#08x, computed %#08x)", got, want)
			}
		}
	}
	if d > 0 && entries == 0 {
		return bad("index node without entries")
	}
	for i := range entries {
		e := buf[extHdrLen+extEntryLen*i:]
		eat := at + int64(extHdrLen+extEntryLen*i)
		lblk := uint64(le.Uint32(e))
		if d == 0 {
			n := uint64(le.Uint16(e[4:]))
			unwritten := n > extInitMaxLen
			if unwritten {
				n -= extInitMaxLen
			}
			pblk := uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:]))
			if n == 0 {
				return corrupt(name, eat, "extent %d has no blocks", i)
			}
			if lblk < b.next || lblk < lo || lblk+n > hi {
				return corrupt(name, eat, "extent %d (file blocks %d+%d) out of order or outside %d..%d", i, lblk, n, max(lo, b.next), hi-1)
			}
			if !b.checkData(pblk, n) {
				return corrupt(name, eat, "extent %d (blocks %d+%d) outside the filesystem or in its metadata", i, pblk, n)
			}
			b.next = lblk + n
			if err := b.add(lblk, pblk, n, unwritten, eat); err != nil {
				return err
			}
			continue
		}
		end := hi
		if i+1 < entries {
			end = uint64(le.Uint32(buf[extHdrLen+extEntryLen*(i+1):]))
		}
		if lblk < lo || lblk >= end || lblk < b.next {
			return corrupt(name, eat, "index %d (file block %d) out of order or outside %d..%d", i, lblk, lo, hi-1)
		}
		child := uint64(le.Uint16(e[8:]))<<32 | uint64(le.Uint32(e[4:]))
		cname := fmt.Sprintf("extent block %d of inode %d", child, b.ino.Ino)
		cbuf, coff, err := b.treeBlock(child, name, eat)
		if err != nil {
			return err
		}
		if err := b.extentNode(cbuf, coff, cname, d-1, lblk, end); err != nil {
			return err
		}
	}
	return nil
}

// indirect walks the ext2/ext3 block map: 12 direct pointers, then the
// roots of the single, double and triple indirect trees.
func (b *mapBuilder) indirect() error {
	le := binary.LittleEndian
	ib := b.ino.iblock()
	per := uint64(b.fs.bs / 4) // pointers per indirect block
	for i := range 12 {
		if err := b.dataPtr(uint64(i), uint64(le.Uint32(ib[4*i:])), b.ino.Offset+iBlockOff+int64(4*i)); err != nil {
			return err
		}
	}
	base, span := uint64(12), per
	for level := 1; level <= 3; level++ {
		at := b.ino.Offset + iBlockOff + int64(4*(11+level))
		if err := b.indirectBlock(uint64(le.Uint32(ib[4*(11+level):])), level, base, at); err != nil {
			return err
		}
		base += span
		span *= per
	}
	return nil
}

func (b *mapBuilder) dataPtr(lblk, pblk uint64, at int64) error {
	if pblk == 0 {
		return nil // a hole
	}
	if !b.checkData(pblk, 1) {
		return corrupt(fmt.Sprintf("block map of inode %d", b.ino.Ino), at,
			"file block %d at block %d, outside the filesystem or in its metadata", lblk, pblk)
	}
	return b.add(lblk, pblk, 1, false, at)
}

// indirectBlock walks an indirect block of the given level (1: it points
// to data) mapping file blocks from base.
func (b *mapBuilder) indirectBlock(blk uint64, level int, base uint64, at int64) error {
	if blk == 0 {
		return nil
	}
	buf, off, err := b.treeBlock(blk, fmt.Sprintf("block map of inode %d", b.ino.Ino), at)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	per := uint64(len(buf) / 4)
	span := uint64(1)
	for range level - 1 {
		span *= per
	}
	for j := uint64(0); j < per; j++ {
		p := uint64(le.Uint32(buf[4*j:]))
		pat := off + int64(4*j)
		if level == 1 {
			if err := b.dataPtr(base+j, p, pat); err != nil {
				return err
			}
		} else if err := b.indirectBlock(p, level-1, base+j*span, pat); err != nil {
			return err
		}
	}
	return nil
}

// FileReader returns a reader of ino's data (Size bytes; holes and unwritten
// extents read as zeros; inline data from the inode). Encrypted files are
// refused with ErrUnsupported.
func (fs *FS) FileReader(ino *Inode) (*io.SectionReader, error) {
	if ino.Flags&FlagEncrypt != 0 {
		return nil, fmt.Errorf("%w: inode %d is encrypted", ErrUnsupported, ino.Ino)
	}
	if ino.HasInlineData() {
		data, err := fs.inlineData(ino)
		if err != nil {
			return nil, err
		}
		return io.NewSectionReader(zeroTail(data), 0, ino.Size), nil
	}
	if !fs.hasBlocks(ino) {
		if ino.IsSymlink() { // fast symlink: the target is the content
			return io.NewSectionReader(bytes.NewReader(ino.iblock()[:min(ino.Size, iBlockLen)]), 0, min(ino.Size, iBlockLen)), nil
		}
		return io.NewSectionReader(bytes.NewReader(nil), 0, 0), nil
	}
	exts, err := fs.Extents(ino)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("data of inode %d", ino.Ino)
	r := extent.NewFileReader(exts, ino.Size, func(p []byte, off int64) error { return fs.readAt(p, off, what) })
	return io.NewSectionReader(r, 0, ino.Size), nil
}

// zeroTail reads b and then zeros, without end.
type zeroTail []byte

func (z zeroTail) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("ext: negative offset")
	}
	clear(p)
	if off < int64(len(z)) {
		copy(p, z[off:])
	}
	return len(p), nil
}
