package ext

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sort"

	"github.com/luksconv/luksconv/extent"
)

// bgBlockBitmapCsumHiEnd is where bg_block_bitmap_csum_hi ends: descriptors
// at least this long carry all 32 bits of the bitmap checksum.
const bgBlockBitmapCsumHiEnd = 0x3a

// FreeSpace returns the byte ranges of free blocks, sorted and merged, from
// the block bitmaps (with metadata_csum: each bitmap's checksum verified).
// A group whose bitmap was never initialised (BLOCK_UNINIT, trusted only
// with checksummed descriptors) is free except its superblock copy,
// descriptor and reserved descriptor blocks and any bitmap or inode table
// placed in it, as e2fsprogs computes it. With bigalloc a free cluster
// gives its whole cluster of blocks.
//
// A listed block is never one the filesystem uses: superblock copies,
// descriptors, reserved descriptor blocks, bitmaps, inode tables and the
// journal's blocks are left out whatever the bitmaps say, and a bitmap that
// marks one of them free is a *FormatError, as is a group whose free count
// differs from its descriptor's.
//
// The bitmaps are only trustworthy when the journal is empty (the journal
// may hold newer bitmap blocks, and data written into blocks allocated
// there), so FreeSpace returns the error of Writable, wrapping
// ErrCannotEdit (and ErrNeedsRecovery), otherwise: such a filesystem has
// to be read in full.
func (fs *FS) FreeSpace() ([]extent.Range, error) {
	if err := fs.Writable(); err != nil {
		return nil, err
	}
	used := mergeRuns(append(append([]blockRun(nil), fs.system...), fs.journal...))
	csum := fs.SB.HasGroupDescCsum()
	var free []blockRun
	var uninit []byte // reused for groups without a bitmap
	bitmaps := &groupReader{fs: fs, what: "block bitmap", block: func(gd *GroupDesc) uint64 { return gd.BlockBitmap }}
	for g := uint32(0); g < fs.groups; g++ {
		gd := &fs.groupDescs[g]
		first, nblk := fs.groupFirst(g), fs.groupBlocks(g)
		nclu := (nblk + fs.ratio - 1) / fs.ratio
		var bm []byte
		if csum && gd.Flags&BGBlockUninit != 0 {
			uninit = fs.usedBitmap(uninit, used, first, nclu)
			bm = uninit
		} else {
			var err error
			if bm, err = fs.blockBitmap(bitmaps, g); err != nil {
				return nil, err
			}
			if err := fs.checkMetadataMarked(g, used, bm); err != nil {
				return nil, err
			}
		}
		var nfree uint64
		for c := nextBit(bm, 0, nclu, false); c < nclu; {
			e := nextBit(bm, c, nclu, true)
			nfree += e - c
			start, end := first+c*fs.ratio, min(first+e*fs.ratio, fs.blocks)
			if k := len(free); k > 0 && free[k-1].start+free[k-1].n == start {
				free[k-1].n += end - start
			} else {
				free = append(free, blockRun{start, end - start})
			}
			c = nextBit(bm, e, nclu, false)
		}
		if nfree != uint64(gd.FreeBlocksCount) {
			return nil, corrupt(fmt.Sprintf("group descriptor %d", g), gd.Offset,
				"the block bitmap has %d free clusters, the descriptor says %d", nfree, gd.FreeBlocksCount)
		}
	}
	var out []extent.Range
	for _, r := range subtractRuns(free, used) {
		out = append(out, extent.Range{Off: int64(r.start) * fs.bs, Len: int64(r.n) * fs.bs})
	}
	return extent.Merge(out), nil
}

// blockBitmap reads group g's block bitmap with r and verifies its checksum.
func (fs *FS) blockBitmap(r *groupReader, g uint32) ([]byte, error) {
	gd := &fs.groupDescs[g]
	name := fmt.Sprintf("block bitmap of group %d", g)
	bm, off, err := r.read(g)
	if err != nil {
		return nil, err
	}
	if err := fs.checkBitmapCsum(bm[:fs.SB.ClustersPerGroup/8], gd.BlockBitmapCsum, bgBlockBitmapCsumHiEnd, name, off); err != nil {
		return nil, err
	}
	return bm, nil
}

// checkBitmapCsum verifies, with metadata_csum, a bitmap's checksum as its descriptor stores it:
// crc32c of its first bytes (b), all 32 bits only in descriptors at least hiEnd bytes long.
func (fs *FS) checkBitmapCsum(b []byte, stored uint32, hiEnd int, name string, off int64) error {
	if !fs.SB.HasMetadataCsum() || fs.noCRC {
		return nil
	}
	want := crc32c(fs.csumSeed, b)
	if fs.descSize < hiEnd {
		want &= 0xffff
	}
	if stored != want {
		return corrupt(name, off, "checksum mismatch (stored %#08x, computed %#08x)", stored, want)
	}
	return nil
}

// checkMetadataMarked requires the bitmap bm of group g to mark every
// cluster holding metadata or journal blocks: a bitmap that does not is
// wrong, and the free space derived from it cannot be trusted.
func (fs *FS) checkMetadataMarked(g uint32, used []blockRun, bm []byte) error {
	first, end := fs.groupFirst(g), fs.groupFirst(g)+fs.groupBlocks(g)
	i := sort.Search(len(used), func(i int) bool { return used[i].start+used[i].n > first })
	for ; i < len(used) && used[i].start < end; i++ {
		lo, hi := max(used[i].start, first), min(used[i].start+used[i].n, end)
		cHi := (hi - first + fs.ratio - 1) / fs.ratio
		if c := nextBit(bm, (lo-first)/fs.ratio, cHi, false); c < cHi {
			gd := &fs.groupDescs[g]
			return corrupt(fmt.Sprintf("block bitmap of group %d", g), int64(gd.BlockBitmap)*fs.bs,
				"block %d holds filesystem metadata or the journal but is marked free", max(lo, first+c*fs.ratio))
		}
	}
	return nil
}

// usedBitmap returns, in buf's storage, the bitmap e2fsprogs computes for a
// group of nclu clusters from first whose bitmap was never initialised: a
// cluster is in use when it holds a block of the runs used.
func (fs *FS) usedBitmap(buf []byte, used []blockRun, first, nclu uint64) []byte {
	n := int((nclu + 7) / 8)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	clear(buf)
	end := first + nclu*fs.ratio
	i := sort.Search(len(used), func(i int) bool { return used[i].start+used[i].n > first })
	for ; i < len(used) && used[i].start < end; i++ {
		lo, hi := max(used[i].start, first), min(used[i].start+used[i].n, end)
		for c := (lo - first) / fs.ratio; c <= (hi-1-first)/fs.ratio; c++ {
			buf[c/8] |= 1 << (c % 8)
		}
	}
	return buf
}

// nextBit returns the first bit from c below n of the bitmap bm (bit c is
// bit c%8 of byte c/8, as ext4 stores them) that is set, or clear when set
// is false; n if there is none. It steps a 64-bit word at a time: a 4 GiB
// filesystem has a million bits.
func nextBit(bm []byte, c, n uint64, set bool) uint64 {
	for c < n {
		w := bitmapWord(bm, c/64)
		if !set {
			w = ^w
		}
		if w >>= c % 64; w != 0 {
			return min(c+uint64(bits.TrailingZeros64(w)), n)
		}
		c = (c/64 + 1) * 64
	}
	return n
}

// bitmapWord returns the i-th 64-bit little-endian word of bm, the bytes
// past its end read as zero.
func bitmapWord(bm []byte, i uint64) uint64 {
	if off := i * 8; off+8 <= uint64(len(bm)) {
		return binary.LittleEndian.Uint64(bm[off:])
	}
	var b [8]byte
	if off := i * 8; off < uint64(len(bm)) {
		copy(b[:], bm[off:])
	}
	return binary.LittleEndian.Uint64(b[:])
}

// subtractRuns returns the parts of the sorted runs rs outside the sorted,
// merged runs cut.
func subtractRuns(rs, cut []blockRun) []blockRun {
	var out []blockRun
	j := 0
	for _, r := range rs {
		start, end := r.start, r.start+r.n
		for j < len(cut) && cut[j].start+cut[j].n <= start {
			j++
		}
		for k := j; k < len(cut) && cut[k].start < end && start < end; k++ {
			if cut[k].start > start {
				out = append(out, blockRun{start, cut[k].start - start})
			}
			start = max(start, cut[k].start+cut[k].n)
		}
		if start < end {
			out = append(out, blockRun{start, end - start})
		}
	}
	return out
}
