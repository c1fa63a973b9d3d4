package xfs

import (
	"encoding/binary"
	"fmt"

	"github.com/luksconv/luksconv/extent"
)

// AGF is the allocation group free-space header (xfs_agf), in the second
// sector of each AG.
type AGF struct {
	MagicNum      uint32 // "XAGF"
	VersionNum    uint32
	SeqNo         uint32 // AG number
	Length        uint32 // blocks in this AG
	Roots         [3]uint32
	Levels        [3]uint32 // bnobt, cntbt, rmapbt
	FLFirst       uint32
	FLLast        uint32
	FLCount       uint32
	FreeBlks      uint32 // blocks in the free-space btrees
	Longest       uint32
	BtreeBlks     uint32
	RefcountRoot  uint32
	RefcountLevel uint32
	CRC           uint32 // little-endian, v5

	byteOffset int64
}

const (
	agfMagic       = 0x58414746 // "XAGF"
	agfCRCOff      = 216
	bnoMagicV4     = 0x41425442 // "ABTB"
	bnoMagicV5     = 0x41423342 // "AB3B"
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
	if a.Levels[0] < 1 || a.Levels[0] > maxBtreeLevels || a.Roots[0] == 0 || a.Roots[0] >= a.Length {
		return nil, bad("free-space btree root %d / level %d invalid", a.Roots[0], a.Levels[0])
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
// Each AG's total is checked against agf_freeblks.
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
		w := &allocWalker{fs: fs, agno: agno, agf: agf, seen: map[uint32]bool{}}
		if err := w.walk(agf.Roots[0], int(agf.Levels[0])-1); err != nil {
			return nil, err
		}
		if w.total != uint64(agf.FreeBlks) {
			return nil, corrupt(fmt.Sprintf("AGF %d", agno), agf.byteOffset,
				"free-space btree holds %d blocks, agf_freeblks says %d", w.total, agf.FreeBlks)
		}
		out = append(out, w.out...)
	}
	return out, nil
}

type allocWalker struct {
	fs    *FS
	agno  uint32
	agf   *AGF
	seen  map[uint32]bool
	out   []extent.Range
	total uint64
	next  uint64 // first AG block after the previous record
}

func (w *allocWalker) walk(agbno uint32, level int) error {
	fs := w.fs
	name := fmt.Sprintf("free-space btree block %d of AG %d", agbno, w.agno)
	if agbno == 0 || agbno >= w.agf.Length {
		return corrupt(name, fs.agbnoToOffset(w.agno, 0), "block pointer outside the AG")
	}
	off := fs.agbnoToOffset(w.agno, uint64(agbno))
	if w.seen[agbno] {
		return corrupt(name, off, "block reached twice (btree cycle)")
	}
	w.seen[agbno] = true
	buf := make([]byte, fs.bs)
	if err := fs.readAt(buf, off, name); err != nil {
		return err
	}
	be := binary.BigEndian
	hdr, magic := sbtHdrV4, uint32(bnoMagicV4)
	if fs.SB.HasCRC() {
		hdr, magic = sbtHdrV5, bnoMagicV5
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
			start, n := uint64(be.Uint32(r)), uint64(be.Uint32(r[4:]))
			if n == 0 || start < w.next || start+n > uint64(w.agf.Length) {
				return corrupt(name, off, "record %d (%d+%d) out of order, overlapping or beyond the AG", i, start, n)
			}
			w.next = start + n
			w.total += n
			o := fs.agbnoToOffset(w.agno, start)
			if k := len(w.out); k > 0 && w.out[k-1].Off+w.out[k-1].Len == o {
				w.out[k-1].Len += int64(n) * fs.bs
			} else {
				w.out = append(w.out, extent.Range{Off: o, Len: int64(n) * fs.bs})
			}
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
