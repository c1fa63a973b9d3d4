package xfs

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/luksconv/luksconv/extent"
)

// AGF is the allocation group free-space header (xfs_agf), in the second
// sector of each AG.
type AGF struct {
	MagicNum      uint32    // "XAGF"
	VersionNum    uint32    // 1 (XFS_AGF_VERSION)
	SeqNo         uint32    // AG number
	Length        uint32    // blocks in this AG
	Roots         [3]uint32 // AG block of the root of the bnobt, cntbt, rmapbt
	Levels        [3]uint32 // bnobt, cntbt, rmapbt
	FLFirst       uint32    // index of the first AGFL slot in use
	FLLast        uint32    // index of the last AGFL slot in use
	FLCount       uint32    // blocks on the AGFL (free list)
	FreeBlks      uint32    // blocks in the free-space btrees
	Longest       uint32    // blocks in the longest free extent
	BtreeBlks     uint32    // blocks held by the AGF's btrees (agf_btreeblks)
	RefcountRoot  uint32    // AG block of the refcount btree root (reflink)
	RefcountLevel uint32    // levels of the refcount btree
	CRC           uint32    // little-endian, v5

	byteOffset int64
}

const (
	agfMagic       = 0x58414746 // "XAGF"
	agfCRCOff      = 216
	bnoMagicV4     = 0x41425442 // "ABTB"
	bnoMagicV5     = 0x41423342 // "AB3B"
	cntMagicV4     = 0x41425443 // "ABTC"
	cntMagicV5     = 0x41423343 // "AB3C"
	sbtHdrV4       = 16
	sbtHdrV5       = 56
	sbtCRCOff      = 52
	allocRecLen    = 8
	allocPtrLen    = 4
	allocNodeEntry = allocRecLen + allocPtrLen
)

// ReadAGF reads and validates the AGF of AG agno (v5: CRC, UUID).
func (fs *FS) ReadAGF(agno uint32) (*AGF, error) {
	if agno >= fs.SB.AGCount {
		return nil, fmt.Errorf("xfs: AG %d out of range (%d AGs)", agno, fs.SB.AGCount)
	}
	off := fs.agbnoToOffset(agno, 0) + int64(fs.SB.SectSize)
	name := fmt.Sprintf("AGF %d", agno)
	b := make([]byte, fs.SB.SectSize)
	if err := fs.readAt(b, off, name); err != nil {
		return nil, err
	}
	be := binary.BigEndian
	a := &AGF{byteOffset: off}
	a.MagicNum = be.Uint32(b)
	a.VersionNum = be.Uint32(b[4:])
	a.SeqNo = be.Uint32(b[8:])
	a.Length = be.Uint32(b[12:])
	for i := range 3 {
		a.Roots[i] = be.Uint32(b[16+4*i:])
		a.Levels[i] = be.Uint32(b[28+4*i:])
	}
	a.FLFirst = be.Uint32(b[40:])
	a.FLLast = be.Uint32(b[44:])
	a.FLCount = be.Uint32(b[48:])
	a.FreeBlks = be.Uint32(b[52:])
	a.Longest = be.Uint32(b[56:])
	a.BtreeBlks = be.Uint32(b[60:])
	a.RefcountRoot = be.Uint32(b[88:])
	a.RefcountLevel = be.Uint32(b[92:])
	a.CRC = binary.LittleEndian.Uint32(b[agfCRCOff:])
	bad := func(format string, args ...any) error { return corrupt(name, off, format, args...) }
	if a.MagicNum != agfMagic {
		return nil, bad("bad magic %#08x", a.MagicNum)
	}
	if a.VersionNum != 1 {
		return nil, bad("version %d", a.VersionNum)
	}
	if a.SeqNo != agno {
		return nil, bad("sequence number %d", a.SeqNo)
	}
	if uint64(a.Length) != fs.agLength(agno) {
		return nil, bad("length %d, superblock implies %d", a.Length, fs.agLength(agno))
	}
	for i, what := range []string{"free-space btree", "by-size free-space btree"} {
		if a.Levels[i] < 1 || a.Levels[i] > maxBtreeLevels || a.Roots[i] == 0 || a.Roots[i] >= a.Length {
			return nil, bad("%s root %d / level %d invalid", what, a.Roots[i], a.Levels[i])
		}
	}
	if a.FreeBlks > a.Length {
		return nil, bad("%d free blocks in a %d-block AG", a.FreeBlks, a.Length)
	}
	if fs.SB.HasCRC() {
		if u := fs.SB.metaUUID(); string(b[64:80]) != string(u[:]) {
			return nil, bad("UUID does not match the filesystem")
		}
		if !fs.noCRC {
			if err := checkCRC(b[:fs.SB.SectSize], agfCRCOff, name, off); err != nil {
				return nil, err
			}
		}
	}
	return a, nil
}

// FreeSpace returns the device byte ranges that hold no data, from the
// by-block-number free-space btree of every AG, sorted by offset. Blocks on
// the AG free list (AGFL) are not included: they are reserved for btree
// growth and counted as free only by the superblock.
//
// The result is only trustworthy when the log is clean (a dirty log may hold
// allocations not yet written to the btrees) and the filesystem does not need
// repair, so FreeSpace returns an error wrapping ErrCannotEdit otherwise.
// Each AG's free extents are checked against what else says they are free
// or in use, since a wrong one loses data: the by-size btree must list the
// same extents, agf_freeblks their total, and none may cover the AG's
// headers, a block of either btree or the internal log.
func (fs *FS) FreeSpace() ([]extent.Range, error) {
	if err := fs.Writable(); err != nil {
		return nil, err
	}
	var out []extent.Range
	for agno := uint32(0); agno < fs.SB.AGCount; agno++ {
		agf, err := fs.ReadAGF(agno)
		if err != nil {
			return nil, err
		}
		seen := map[uint32]bool{} // both trees' blocks: one in both is as wrong as a cycle
		bno := &allocWalker{fs: fs, agno: agno, agf: agf, seen: seen}
		if err := bno.walk(agf.Roots[0], int(agf.Levels[0])-1); err != nil {
			return nil, err
		}
		cnt := &allocWalker{fs: fs, agno: agno, agf: agf, seen: seen, byCount: true}
		if err := cnt.walk(agf.Roots[1], int(agf.Levels[1])-1); err != nil {
			return nil, err
		}
		if err := fs.checkFree(agf, bno, cnt); err != nil {
			return nil, err
		}
		for _, r := range bno.recs {
			o, n := fs.agbnoToOffset(agno, r.start), int64(r.n)*fs.bs
			if k := len(out); k > 0 && out[k-1].Off+out[k-1].Len == o {
				out[k-1].Len += n
			} else {
				out = append(out, extent.Range{Off: o, Len: n})
			}
		}
	}
	return out, nil
}

// checkFree checks an AG's free extents as walked in its by-block (bno) and by-size (cnt) btrees.
func (fs *FS) checkFree(agf *AGF, bno, cnt *allocWalker) error {
	bad := func(format string, args ...any) error {
		return corrupt(fmt.Sprintf("AGF %d", bno.agno), agf.byteOffset, format, args...)
	}
	if bno.total != uint64(agf.FreeBlks) {
		return bad("free-space btree holds %d blocks, agf_freeblks says %d", bno.total, agf.FreeBlks)
	}
	byStart := slices.SortedFunc(slices.Values(cnt.recs), func(a, b allocRec) int { return cmp.Compare(a.start, b.start) })
	if !slices.Equal(bno.recs, byStart) {
		return bad("the by-block and by-size free-space btrees list different extents (%d and %d)", len(bno.recs), len(cnt.recs))
	}
	// freeOver reports the first free extent that overlaps AG blocks [start, start+n), if any.
	freeOver := func(start, n uint64) (allocRec, bool) {
		i, _ := slices.BinarySearchFunc(bno.recs, start, func(r allocRec, b uint64) int { return cmp.Compare(r.start+r.n, b+1) })
		if i < len(bno.recs) && bno.recs[i].start < start+n {
			return bno.recs[i], true
		}
		return allocRec{}, false
	}
	// The superblock, AGF, AGI and AGFL sectors.
	if r, ok := freeOver(0, (4*uint64(fs.SB.SectSize)+uint64(fs.bs)-1)/uint64(fs.bs)); ok {
		return bad("free extent %d+%d covers the AG headers", r.start, r.n)
	}
	for b := range bno.seen {
		if r, ok := freeOver(uint64(b), 1); ok {
			return bad("free extent %d+%d holds block %d of a free-space btree", r.start, r.n, b)
		}
	}
	if s := fs.SB; s.LogStart != 0 && uint32(s.LogStart>>s.AGBlkLog) == bno.agno {
		start := s.LogStart & (1<<s.AGBlkLog - 1)
		if r, ok := freeOver(start, uint64(s.LogBlocks)); ok {
			return bad("free extent %d+%d overlaps the internal log (%d+%d)", r.start, r.n, start, s.LogBlocks)
		}
	}
	return nil
}

// allocRec is a free-space btree record: an extent of n AG blocks from start.
type allocRec struct{ start, n uint64 }

type allocWalker struct {
	fs      *FS
	agno    uint32
	agf     *AGF
	byCount bool // the by-size btree: records sorted by length, then start
	seen    map[uint32]bool
	recs    []allocRec
	total   uint64
}

func (w *allocWalker) walk(agbno uint32, level int) error {
	fs := w.fs
	what := "free-space btree"
	if w.byCount {
		what = "by-size free-space btree"
	}
	name := fmt.Sprintf("%s block %d of AG %d", what, agbno, w.agno)
	if agbno == 0 || agbno >= w.agf.Length {
		return corrupt(name, fs.agbnoToOffset(w.agno, 0), "block pointer outside the AG")
	}
	off := fs.agbnoToOffset(w.agno, uint64(agbno))
	if w.seen[agbno] {
		return corrupt(name, off, "block reached twice (a cycle, or a block of both btrees)")
	}
	w.seen[agbno] = true
	buf := make([]byte, fs.bs)
	if err := fs.readAt(buf, off, name); err != nil {
		return err
	}
	be := binary.BigEndian
	hdr, magic := sbtHdrV4, uint32(bnoMagicV4)
	switch {
	case fs.SB.HasCRC() && w.byCount:
		hdr, magic = sbtHdrV5, cntMagicV5
	case fs.SB.HasCRC():
		hdr, magic = sbtHdrV5, bnoMagicV5
	case w.byCount:
		magic = cntMagicV4
	}
	if got := be.Uint32(buf); got != magic {
		return corrupt(name, off, "bad magic %#08x", got)
	}
	if fs.SB.HasCRC() {
		if got := be.Uint64(buf[16:]); got != uint64(off)/512 {
			return corrupt(name, off, "records its address as sector %d", got)
		}
		if u := fs.SB.metaUUID(); string(buf[32:48]) != string(u[:]) {
			return corrupt(name, off, "UUID does not match the filesystem")
		}
		if got := be.Uint32(buf[48:]); got != w.agno {
			return corrupt(name, off, "owner AG %d", got)
		}
		if !fs.noCRC {
			if err := checkCRC(buf, sbtCRCOff, name, off); err != nil {
				return err
			}
		}
	}
	if got := int(be.Uint16(buf[4:])); got != level {
		return corrupt(name, off, "level %d, parent expects %d", got, level)
	}
	numrecs := int(be.Uint16(buf[6:]))
	if level == 0 {
		if numrecs > (len(buf)-hdr)/allocRecLen {
			return corrupt(name, off, "%d records do not fit the block", numrecs)
		}
		for i := 0; i < numrecs; i++ {
			r := buf[hdr+i*allocRecLen:]
			rec := allocRec{uint64(be.Uint32(r)), uint64(be.Uint32(r[4:]))}
			if rec.n == 0 || rec.start+rec.n > uint64(w.agf.Length) {
				return corrupt(name, off, "record %d (%d+%d) empty or beyond the AG", i, rec.start, rec.n)
			}
			if k := len(w.recs); k > 0 {
				p := w.recs[k-1]
				if !w.byCount && rec.start < p.start+p.n || w.byCount && (rec.n < p.n || rec.n == p.n && rec.start <= p.start) {
					return corrupt(name, off, "record %d (%d+%d) out of order or overlapping the one before (%d+%d)", i, rec.start, rec.n, p.start, p.n)
				}
			}
			w.recs = append(w.recs, rec)
			w.total += rec.n
		}
		return nil
	}
	maxrecs := (len(buf) - hdr) / allocNodeEntry
	if numrecs < 1 || numrecs > maxrecs {
		return corrupt(name, off, "%d records, block holds 1..%d", numrecs, maxrecs)
	}
	ptrs := buf[hdr+maxrecs*allocRecLen:]
	for i := 0; i < numrecs; i++ {
		if err := w.walk(be.Uint32(ptrs[i*allocPtrLen:]), level-1); err != nil {
			return err
		}
	}
	return nil
}
