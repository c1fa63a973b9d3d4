package ext

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// Group descriptor flags (bg_flags). They are trusted only when the
// descriptors are checksummed (Superblock.HasGroupDescCsum).
const (
	BGInodeUninit = 0x0001 // inode table and bitmap not initialised
	BGBlockUninit = 0x0002 // block bitmap not initialised: computed from the group's metadata
	BGInodeZeroed = 0x0004 // inode table zeroed
)

// GroupDesc is a decoded group descriptor (struct ext4_group_desc, 32 or
// DescSize bytes); the lo/hi halves of the 64bit feature are combined.
type GroupDesc struct {
	BlockBitmap     uint64 // block of the block bitmap
	InodeBitmap     uint64 // block of the inode bitmap
	InodeTable      uint64 // first block of the inode table
	FreeBlocksCount uint32 // free clusters
	FreeInodesCount uint32 // free inodes
	UsedDirsCount   uint32 // directories
	Flags           uint16 // BGInodeUninit, BGBlockUninit, BGInodeZeroed
	ExcludeBitmap   uint64 // block of the snapshot exclude bitmap (out-of-tree snapshots); normally 0
	BlockBitmapCsum uint32 // crc32c of the block bitmap (metadata_csum; the high half only with 64-byte descriptors)
	InodeBitmapCsum uint32 // crc32c of the inode bitmap (metadata_csum; the high half only with 64-byte descriptors)
	ItableUnused    uint32 // inodes at the end of the table never used
	Checksum        uint16 // crc16 (gdt_csum) or low 16 bits of crc32c (metadata_csum) of the descriptor

	Offset int64 // byte offset of the descriptor within the filesystem
}

// Groups is the number of block groups.
func (fs *FS) Groups() uint32 { return fs.groups }

// Group returns the descriptor of group g (validated by Open).
func (fs *FS) Group(g uint32) (GroupDesc, error) {
	if g >= fs.groups {
		return GroupDesc{}, fmt.Errorf("ext: group %d out of range (%d groups)", g, fs.groups)
	}
	return fs.groupDescs[g], nil
}

// blockRun is n blocks from start.
type blockRun struct{ start, n uint64 }

// groupFirst is the first block of group g.
func (fs *FS) groupFirst(g uint32) uint64 {
	return uint64(fs.SB.FirstDataBlock) + uint64(g)*uint64(fs.SB.BlocksPerGroup)
}

// groupBlocks is the number of blocks of group g (the last may be short).
func (fs *FS) groupBlocks(g uint32) uint64 {
	if g == fs.groups-1 {
		return fs.blocks - fs.groupFirst(g)
	}
	return uint64(fs.SB.BlocksPerGroup)
}

// isPowerOf reports whether n is a power of base (n > 1).
func isPowerOf(n, base uint32) bool {
	for n%base == 0 && n > 1 {
		n /= base
	}
	return n == 1
}

// hasSuper reports whether group g holds a superblock copy (and, without
// meta_bg, a copy of the descriptor table): every group without
// sparse_super, groups 0, 1 and powers of 3, 5 and 7 with it, group 0 and
// the two listed ones with sparse_super2 (ext2fs_bg_has_super).
func (fs *FS) hasSuper(g uint32) bool {
	s := &fs.SB
	switch {
	case g == 0:
		return true
	case s.FeatureCompat&CompatSparseSuper2 != 0:
		return g == s.BackupBGs[0] || g == s.BackupBGs[1]
	case g == 1 || s.FeatureRoCompat&RoCompatSparseSuper == 0:
		return true
	case g%2 == 0:
		return false
	}
	return isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7)
}

func (fs *FS) metaBG() bool { return fs.SB.FeatureIncompat&IncompatMetaBG != 0 }

// descBlock is the block holding the primary copy of descriptor block i:
// right after the superblock, or with meta_bg (from FirstMetaBG on) at the
// start of the first group of its meta group, after that group's
// superblock copy (ext2fs_descriptor_block_loc2).
func (fs *FS) descBlock(i uint64) uint64 {
	if !fs.metaBG() || i < uint64(fs.SB.FirstMetaBG) {
		return uint64(sbOffset)/uint64(fs.bs) + 1 + i
	}
	g := uint32(i * fs.descPerBlk)
	blk := fs.groupFirst(g)
	if fs.hasSuper(g) {
		blk++
	}
	if g == 0 && blk == 1 && fs.SB.FirstDataBlock == 0 && fs.bs == 1024 {
		blk++ // bigalloc with 1 KiB blocks: block 0 is the boot block
	}
	return blk
}

// superAndDescs lists the superblock copy and descriptor blocks (with the
// reserved ones for online resize) in group g, as ext4_num_base_meta_blocks
// and ext2fs_super_and_bgd_loc2 count them; runs are clipped to the
// filesystem.
func (fs *FS) superAndDescs(g uint32) []blockRun {
	s := &fs.SB
	var out []blockRun
	add := func(start, n uint64) {
		if start < fs.blocks && n > 0 {
			out = append(out, blockRun{start, min(n, fs.blocks-start)})
		}
	}
	first := fs.groupFirst(g)
	if first == 0 && fs.bs == 1024 {
		add(0, 1) // bigalloc with 1 KiB blocks: the boot block is in group 0
		first = 1
	}
	sup := fs.hasSuper(g)
	if sup {
		add(first, 1)
	}
	if !fs.metaBG() || uint64(g)/fs.descPerBlk < uint64(s.FirstMetaBG) {
		if sup {
			old := fs.descBlocks
			if fs.metaBG() {
				old = uint64(s.FirstMetaBG)
			}
			add(first+1, old+uint64(s.ReservedGDTBlocks))
		}
		return out
	}
	if r := uint64(g) % fs.descPerBlk; r == 0 || r == 1 || r == fs.descPerBlk-1 {
		if sup {
			add(first+1, 1)
		} else {
			add(first, 1)
		}
	}
	return out
}

// descCsum computes the checksum of the descriptor of group g held in d
// (fs.descSize bytes): the low 16 bits of crc32c with metadata_csum, crc16
// with gdt_csum (ext4_group_desc_csum).
func (fs *FS) descCsum(g uint32, d []byte) uint16 {
	var le [4]byte
	binary.LittleEndian.PutUint32(le[:], g)
	if fs.SB.HasMetadataCsum() {
		c := crc32c(fs.csumSeed, le[:])
		c = crc32c(c, d[:0x1e])
		c = crc32c(c, []byte{0, 0})
		c = crc32c(c, d[0x20:fs.descSize])
		return uint16(c)
	}
	c := crc16(0xffff, fs.SB.UUID[:])
	c = crc16(c, le[:])
	c = crc16(c, d[:0x1e])
	if fs.descSize > 0x20 {
		c = crc16(c, d[0x20:fs.descSize])
	}
	return c
}

// readGroupDescs reads and validates every group descriptor (the kernel's
// ext4_check_descriptors: checksums, and bitmaps and inode tables inside
// the filesystem, inside their group without flex_bg).
func (fs *FS) readGroupDescs() error {
	le := binary.LittleEndian
	// Grown as descriptors pass validation, so that a forged group count
	// costs memory only as far as valid descriptors go.
	fs.groupDescs = make([]GroupDesc, 0, min(fs.groups, 1<<16))
	flex := fs.SB.FeatureIncompat&IncompatFlexBG != 0
	csum := fs.SB.HasGroupDescCsum()
	for i := uint64(0); i < fs.descBlocks; i++ {
		blk := fs.descBlock(i)
		name := fmt.Sprintf("group descriptor block %d", i)
		b, off, err := fs.readBlock(blk, name)
		if err != nil {
			return err
		}
		for j := uint64(0); j < fs.descPerBlk && i*fs.descPerBlk+j < uint64(fs.groups); j++ {
			g := uint32(i*fs.descPerBlk + j)
			d := b[j*uint64(fs.descSize) : (j+1)*uint64(fs.descSize)]
			at := off + int64(j)*int64(fs.descSize)
			gd := GroupDesc{
				BlockBitmap:     uint64(le.Uint32(d[0x00:])),
				InodeBitmap:     uint64(le.Uint32(d[0x04:])),
				InodeTable:      uint64(le.Uint32(d[0x08:])),
				FreeBlocksCount: uint32(le.Uint16(d[0x0c:])),
				FreeInodesCount: uint32(le.Uint16(d[0x0e:])),
				UsedDirsCount:   uint32(le.Uint16(d[0x10:])),
				Flags:           le.Uint16(d[0x12:]),
				ExcludeBitmap:   uint64(le.Uint32(d[0x14:])),
				BlockBitmapCsum: uint32(le.Uint16(d[0x18:])),
				InodeBitmapCsum: uint32(le.Uint16(d[0x1a:])),
				ItableUnused:    uint32(le.Uint16(d[0x1c:])),
				Checksum:        le.Uint16(d[0x1e:]),
				Offset:          at,
			}
			if fs.descSize >= minDesc64 {
				gd.BlockBitmap |= uint64(le.Uint32(d[0x20:])) << 32
				gd.InodeBitmap |= uint64(le.Uint32(d[0x24:])) << 32
				gd.InodeTable |= uint64(le.Uint32(d[0x28:])) << 32
				gd.FreeBlocksCount |= uint32(le.Uint16(d[0x2c:])) << 16
				gd.FreeInodesCount |= uint32(le.Uint16(d[0x2e:])) << 16
				gd.UsedDirsCount |= uint32(le.Uint16(d[0x30:])) << 16
				gd.ItableUnused |= uint32(le.Uint16(d[0x32:])) << 16
				gd.ExcludeBitmap |= uint64(le.Uint32(d[0x34:])) << 32
				gd.BlockBitmapCsum |= uint32(le.Uint16(d[0x38:])) << 16
				gd.InodeBitmapCsum |= uint32(le.Uint16(d[0x3a:])) << 16
			}
			dname := fmt.Sprintf("group descriptor %d", g)
			bad := func(format string, args ...any) error { return corrupt(dname, at, format, args...) }
			if csum && !fs.noCRC {
				if want := fs.descCsum(g, d); want != gd.Checksum {
					return bad("checksum mismatch (stored %#04x, computed %#04x)", gd.Checksum, want)
				}
			}
			lo, hi := uint64(fs.SB.FirstDataBlock), fs.blocks
			if !flex {
				lo, hi = fs.groupFirst(g), fs.groupFirst(g)+fs.groupBlocks(g)
			}
			for _, m := range []struct {
				what  string
				start uint64
				n     uint64
			}{{"block bitmap", gd.BlockBitmap, 1}, {"inode bitmap", gd.InodeBitmap, 1}, {"inode table", gd.InodeTable, fs.itbPerGroup}} {
				if m.start < lo || m.start >= hi || m.n > hi-m.start {
					return bad("%s at block %d (+%d) outside blocks %d..%d", m.what, m.start, m.n, lo, hi-1)
				}
			}
			if gd.FreeBlocksCount > fs.SB.ClustersPerGroup || gd.FreeInodesCount > fs.SB.InodesPerGroup {
				return bad("%d free clusters, %d free inodes exceed the group's %d and %d",
					gd.FreeBlocksCount, gd.FreeInodesCount, fs.SB.ClustersPerGroup, fs.SB.InodesPerGroup)
			}
			if csum && gd.ItableUnused > fs.SB.InodesPerGroup {
				return bad("%d unused inodes of %d", gd.ItableUnused, fs.SB.InodesPerGroup)
			}
			fs.groupDescs = append(fs.groupDescs, gd)
		}
	}
	return nil
}

// systemZone lists every block that holds group metadata (superblock
// copies, descriptors, reserved descriptor blocks, bitmaps, inode tables,
// the boot block), merged and sorted. Extents must stay out of it (the
// kernel's block_validity) and FreeSpace never lists it.
func (fs *FS) systemZone() []blockRun {
	return fs.metadataRuns(func(uint32) uint64 { return fs.itbPerGroup })
}

// metadataRuns lists, merged and sorted, the boot block and each group's
// superblock copy, descriptor blocks and bitmaps, and the first itb(g)
// blocks of group g's inode table.
func (fs *FS) metadataRuns(itb func(g uint32) uint64) []blockRun {
	var rs []blockRun
	if fs.SB.FirstDataBlock > 0 {
		rs = append(rs, blockRun{0, uint64(fs.SB.FirstDataBlock)})
	}
	for g := uint32(0); g < fs.groups; g++ {
		rs = append(rs, fs.superAndDescs(g)...)
		gd := &fs.groupDescs[g]
		rs = append(rs, blockRun{gd.BlockBitmap, 1}, blockRun{gd.InodeBitmap, 1}, blockRun{gd.InodeTable, itb(g)})
	}
	return mergeRuns(rs)
}

// mergeRuns sorts runs and joins overlapping or touching ones.
func mergeRuns(rs []blockRun) []blockRun {
	sort.Slice(rs, func(i, j int) bool { return rs[i].start < rs[j].start })
	out := rs[:0]
	for _, r := range rs {
		if r.n == 0 {
			continue
		}
		if k := len(out); k > 0 && r.start <= out[k-1].start+out[k-1].n {
			out[k-1].n = max(out[k-1].start+out[k-1].n, r.start+r.n) - out[k-1].start
			continue
		}
		out = append(out, r)
	}
	return out
}

// overlapsRuns reports whether [start, start+n) meets one of the sorted,
// merged runs.
func overlapsRuns(rs []blockRun, start, n uint64) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].start+rs[i].n > start })
	return n > 0 && i < len(rs) && rs[i].start < start+n
}
