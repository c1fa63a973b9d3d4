package ext

import (
	"fmt"

	"github.com/luksconv/luksconv/extent"
)

// bgInodeBitmapCsumHiEnd is where bg_inode_bitmap_csum_hi ends: descriptors
// at least this long carry all 32 bits of the inode bitmap checksum.
const bgInodeBitmapCsumHiEnd = 0x3c

// UnusedInodeTables returns the byte ranges of inode-table blocks that hold
// no inode ever used, sorted and merged: in each group, the whole blocks
// past the first ipg - bg_itable_unused inodes. It needs checksummed group
// descriptors (metadata_csum or uninit_bg), without which the watermark is
// not kept, and returns nil then.
//
// Nothing reads those blocks: e2fsck skips inodes past the watermark, and
// the kernel writes a new inode whole, moving the watermark in the same
// transaction as the inode bitmap. The kernel's lazy init zeroes exactly
// these blocks (ext4_init_inode_table), and mke2fs leaves them unwritten,
// so a converter may write zeros there instead of copying them: 16 MiB per
// GiB at mke2fs's default inode ratio, most of an empty filesystem's
// metadata.
//
// Like FreeSpace, it returns the error of Writable when the journal or the
// state is not clean. A group whose inode bitmap (checksum verified with
// metadata_csum; none is read for INODE_UNINIT groups) marks an inode past
// the watermark in use, or whose free inode count is below the unused one,
// is a *FormatError: the watermark cannot be trusted there. Blocks that are
// also another group's metadata or the journal's are never listed.
func (fs *FS) UnusedInodeTables() ([]extent.Range, error) {
	if err := fs.Writable(); err != nil {
		return nil, err
	}
	if !fs.SB.HasGroupDescCsum() {
		return nil, nil
	}
	ipg := uint64(fs.SB.InodesPerGroup)
	perBlock := uint64(fs.bs) / uint64(fs.inodeSize)
	usedItb := make([]uint64, fs.groups) // inode-table blocks in use, per group
	bitmaps := &groupReader{fs: fs, what: "inode bitmap", block: func(gd *GroupDesc) uint64 { return gd.InodeBitmap }}
	var unused []blockRun
	for g := uint32(0); g < fs.groups; g++ {
		gd := &fs.groupDescs[g]
		n := uint64(gd.ItableUnused) // at most ipg: Open checked it
		// The reserved inodes (root, journal, resize, …) are always in use; the kernel refuses lazy
		// init of a group 0 whose watermark leaves them out.
		if g == 0 && ipg-n < uint64(fs.firstIno)-1 {
			return nil, corrupt("group descriptor 0", gd.Offset,
				"%d unused inodes of %d leave out reserved inodes below %d", n, ipg, fs.firstIno)
		}
		if n > 0 {
			if err := fs.checkWatermark(bitmaps, g); err != nil {
				return nil, err
			}
		}
		// The blocks holding the first ipg - n inodes are in use, as the kernel's lazy init counts them.
		k := min((ipg-n+perBlock-1)/perBlock, fs.itbPerGroup)
		usedItb[g] = k
		if k < fs.itbPerGroup {
			unused = append(unused, blockRun{gd.InodeTable + k, fs.itbPerGroup - k})
		}
	}
	// A table placed over another group's metadata (a damaged or hostile layout) keeps that metadata.
	used := mergeRuns(append(fs.metadataRuns(func(g uint32) uint64 { return usedItb[g] }), fs.journal...))
	var out []extent.Range
	for _, r := range subtractRuns(mergeRuns(unused), used) {
		out = append(out, extent.Range{Off: int64(r.start) * fs.bs, Len: int64(r.n) * fs.bs})
	}
	return extent.Merge(out), nil
}

// checkWatermark requires group g's free inode count to cover its unused
// inodes and, unless the group is INODE_UNINIT (its bitmap never written,
// all inodes free), its inode bitmap, read with r, to mark none of them in
// use.
func (fs *FS) checkWatermark(r *groupReader, g uint32) error {
	gd := &fs.groupDescs[g]
	if gd.FreeInodesCount < gd.ItableUnused {
		return corrupt(fmt.Sprintf("group descriptor %d", g), gd.Offset,
			"%d free inodes, fewer than its %d unused ones", gd.FreeInodesCount, gd.ItableUnused)
	}
	if gd.Flags&BGInodeUninit != 0 {
		return nil
	}
	name := fmt.Sprintf("inode bitmap of group %d", g)
	bm, off, err := r.read(g)
	if err != nil {
		return err
	}
	ipg := uint64(fs.SB.InodesPerGroup)
	if err := fs.checkBitmapCsum(bm[:ipg/8], gd.InodeBitmapCsum, bgInodeBitmapCsumHiEnd, name, off); err != nil {
		return err
	}
	first := ipg - uint64(gd.ItableUnused)
	if i := nextBit(bm, first, ipg, true); i < ipg {
		return corrupt(name, off, "inode %d is in use but past the group's %d used inodes (bg_itable_unused %d)",
			uint64(g)*ipg+i+1, first, gd.ItableUnused)
	}
	return nil
}
