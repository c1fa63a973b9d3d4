package luksconv

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/luksconv/luksconv/ext"
	"github.com/luksconv/luksconv/lvm"
	"github.com/luksconv/luksconv/xfs"
)

// Skip is output space that holds no data and is written as zeros instead of being copied or
// decrypted: LVM extents no LV uses, the free space of XFS and ext filesystems, and the log area of
// an empty ext journal.
type Skip struct {
	Reason string `json:"reason"` // e.g. "lvm free extents", "xfs free space: rootvg/rootlv"
	Bytes  int64  `json:"bytes"`  // output bytes skipped for that reason
}

// span is an output byte range with the reason it may be skipped.
type span struct {
	off, n int64
	why    string
}

// usedOnly finds what the plan need not read: free space in every XFS and ext partition and, inside the
// decrypted volume, free LVM extents and the free space of XFS and ext logical volumes (or of the
// volume itself), with the log area of every empty ext journal (see fsFree).
// Anything it cannot judge safely (a dirty log, an LV type it does not map) stays copied, with a warning.
// It also returns the internal logs of the clean XFS filesystems it judged (see zerocipher.go): there
// all-zero ciphertext becomes zero plaintext. plain must read zero ciphertext as zero (zeroCipherReader).
func (p *Plan) usedOnly(src *Source, parts []PartitionInfo, plain io.ReaderAt, plainSize, partOff int64, done map[string]bool) (spans, logs []span, warns []Warning) {
	vol := fmt.Sprintf("partition %d (decrypted)", p.Volume.Partition)
	spans, warns = partitionsFree(src, parts, p.Volume.Partition)
	switch c := Content(p.Volume.Content); c {
	case ContentXFS, ContentExt4:
		s, l, err := fsFree(plain, plainSize, c, func(off, n int64, why string) []span {
			return []span{{partOff + off, n, fmt.Sprintf("%s: partition %d", why, p.Volume.Partition)}}
		})
		if err != nil {
			warns = append(warns, warning(WarnCopiedInFull, "decrypted in full: %v", layerErr(vol, p.Volume.PayloadOffset, nil, err)))
		}
		spans, logs = append(spans, s...), append(logs, l...)
	case ContentLVM2:
		s, l, w := lvmFree(plain, plainSize, partOff, p.Volume.PayloadOffset, vol, "decrypted in full", done)
		spans, logs, warns = append(spans, s...), append(logs, l...), append(warns, w...)
	case ContentBtrfs:
		warns = append(warns, warning(WarnCopiedInFull, "%s holds btrfs, whose free space luksconv does not judge: decrypted in full", vol))
	}
	return spans, logs, warns
}

// partitionsFree lists the free space of the unencrypted XFS and ext partitions of a disk (all but
// partition skip).
func partitionsFree(src *Source, parts []PartitionInfo, skip int) (spans []span, warns []Warning) {
	for _, pi := range parts {
		if pi.Number == skip || (pi.Content != ContentXFS && pi.Content != ContentExt4) {
			continue
		}
		// Unencrypted: its log holds no ciphertext, so only the free space matters.
		s, _, err := fsFree(io.NewSectionReader(src, pi.Offset, pi.Size), pi.Size, pi.Content, func(off, n int64, why string) []span {
			return []span{{pi.Offset + off, n, fmt.Sprintf("%s: partition %d", why, pi.Number)}}
		})
		if err != nil {
			warns = append(warns, warning(WarnCopiedInFull, "copied in full: %v",
				layerErr(fmt.Sprintf("partition %d", pi.Number), pi.Offset, nil, err)))
		}
		spans = append(spans, s...)
	}
	return spans, warns
}

// lvmFree lists the free extents of the LVM PV read through plain (size bytes, its byte 0 at output
// offset out and, for error messages, at image offset img) and the free space and logs of the XFS and
// ext filesystems of its LVs. vol names the PV, how whether it is decrypted or copied in full when
// its metadata cannot be read. The LVs named in done ("vg/lv") are left out: NewVMPlan has read those
// whose VG spans several of the VM's disks.
func lvmFree(plain io.ReaderAt, size, out, img int64, vol, how string, done map[string]bool) (spans, logs []span, warns []Warning) {
	pv, err := lvm.Open(plain, size)
	if err != nil || pv.VG == nil {
		if err == nil {
			err = errors.New("no volume group metadata")
		}
		warns = append(warns, warning(WarnCopiedInFull, "%s: %v", how,
			layerErr(vol, img, nil, fmt.Errorf("LVM metadata: %w", err))))
		return nil, nil, warns
	}
	for _, r := range pv.FreeRanges() {
		spans = append(spans, span{out + r.Off, r.Len, "lvm free extents"})
	}
	components := pv.VG.Components()
	for i := range pv.VG.LVs {
		lv := &pv.VG.LVs[i]
		name := pv.VG.Name + "/" + lv.Name
		if done[name] {
			continue
		}
		lvr := pv.LVReader(plain, lv)
		head := make([]byte, probeSize)
		n, _ := lvr.ReadAt(head, 0)
		c := probeBytes(head[:n])
		if c != ContentXFS && c != ContentExt4 {
			continue
		}
		if components[lv.Name] {
			warns = append(warns, componentCopied(how+": ", name))
			continue
		}
		s, l, err := fsFree(lvr, lv.Size, c, func(off, n int64, why string) []span {
			// Ranges, not Map: spans need no LV order, and Map gives a piece per stripe chunk.
			ext, err := pv.Ranges(lv, off, n)
			if err != nil {
				return nil
			}
			o := make([]span, 0, len(ext))
			for _, e := range ext {
				o = append(o, span{out + e.PVOff, e.Len, why + ": " + name})
			}
			return o
		})
		if err != nil {
			warns = append(warns, warning(WarnCopiedInFull, "%s: %v", how,
				layerErr("LV "+name, -1, lvToImage(pv, lv, img), err)))
		}
		spans, logs = append(spans, s...), append(logs, l...)
	}
	return spans, logs, warns
}

// fsFree lists the free space of an XFS or ext2/3/4 filesystem, and an XFS filesystem's internal log
// (see xfsFree). An ext filesystem's free space includes, when the journal is empty (nothing to
// replay, which FreeSpace requires), the journal's log area past its superblock and the inode-table
// blocks past each group's watermark of inodes ever used: nothing reads them again, so they are written
// as zeros instead of being decrypted (up to 1 GiB of log per filesystem, 16 MiB of inode tables per
// GiB at mke2fs's default inode ratio).
func fsFree(r io.ReaderAt, size int64, content Content, toOut func(off, n int64, why string) []span) (free, logs []span, err error) {
	if content == ContentXFS {
		return xfsFree(r, size, toOut)
	}
	fs, err := ext.Open(r, size)
	if err != nil {
		return nil, nil, err
	}
	rs, err := fs.FreeSpace() // refuses, wrapping ext.ErrNeedsRecovery, while the journal holds transactions
	if err != nil {
		return nil, nil, err
	}
	for _, f := range rs {
		free = append(free, toOut(f.Off, f.Len, "ext free space")...)
	}
	// The empty journal's log area is never read again (ext.FS.JournalLog): zeros, as mke2fs leaves it.
	for _, f := range fs.JournalLog() {
		free = append(free, toOut(f.Off, f.Len, "ext empty journal")...)
	}
	// Nor are inode-table blocks past each group's watermark: zeros, as the kernel's lazy init makes them.
	its, err := fs.UnusedInodeTables()
	if err != nil {
		return nil, nil, err
	}
	for _, f := range its {
		free = append(free, toOut(f.Off, f.Len, "ext unused inode table")...)
	}
	return free, nil, nil
}

// xfsFree lists an XFS filesystem's free space and its internal log, mapped to output spans by toOut
// (why is "xfs free space" or "xfs log"). The log is returned only when the free space is (the log is
// clean).
func xfsFree(r io.ReaderAt, size int64, toOut func(off, n int64, why string) []span) (free, logs []span, err error) {
	fs, err := xfs.Open(r, size)
	if err != nil {
		return nil, nil, err
	}
	rs, err := fs.FreeSpace()
	if err != nil {
		return nil, nil, err
	}
	for _, f := range rs {
		free = append(free, toOut(f.Off, f.Len, "xfs free space")...)
	}
	sb := &fs.SB
	if sb.LogStart != 0 && sb.AGBlkLog < 64 {
		agno, agbno := sb.LogStart>>sb.AGBlkLog, sb.LogStart&(1<<sb.AGBlkLog-1)
		off := (int64(agno)*int64(sb.AGBlocks) + int64(agbno)) * int64(sb.BlockSize)
		n := int64(sb.LogBlocks) * int64(sb.BlockSize)
		if off >= 0 && n > 0 && off <= size-n { // Open checked it; stay safe on any claim
			logs = toOut(off, n, "xfs log")
		}
	}
	return free, logs, nil
}

// carve turns the parts of Copy and Decrypt regions that spans cover into Zero regions. Decrypt pieces
// keep whole encryption sectors: a span is shrunk to sector boundaries counted from the region's start.
func carve(regions []Region, spans []span, sectorSize int64) ([]Region, []Skip) {
	return split(regions, spans, sectorSize, false)
}

// markZeroCiphertext marks the parts of Decrypt regions that spans cover ZeroCiphertextAsZero, with the
// span's reason: there all-zero ciphertext sectors become zero plaintext (see zerocipher.go).
func markZeroCiphertext(regions []Region, spans []span, sectorSize int64) []Region {
	out, _ := split(regions, spans, sectorSize, true)
	return out
}

// split cuts the parts that spans cover out of regions: as Zero regions, or with mark, as Decrypt
// pieces marked ZeroCiphertextAsZero (Copy and Zero regions are then left alone).
func split(regions []Region, spans []span, sectorSize int64, mark bool) ([]Region, []Skip) {
	sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
	reach := reaches(spans, func(s span) int64 { return s.off + s.n })
	skipped := map[string]int64{}
	var out []Region
	for _, r := range regions {
		if r.Kind == Zero || (mark && (r.Kind != Decrypt || r.ZeroCiphertextAsZero)) {
			out = append(out, r)
			continue
		}
		unit := int64(1)
		if r.Kind == Decrypt {
			unit = sectorSize
		}
		pos := r.Offset // output offset up to which r has been emitted
		end := r.Offset + r.Length
		i := sort.Search(len(reach), func(i int) bool { return reach[i] > r.Offset })
		for ; i < len(spans) && spans[i].off < end; i++ {
			s := spans[i]
			a, b := max(s.off, pos), min(s.off+s.n, end)
			// Round inward to whole units from the region start.
			a = r.Offset + (a-r.Offset+unit-1)/unit*unit
			b = r.Offset + (b-r.Offset)/unit*unit
			if a >= b {
				continue
			}
			if a > pos {
				out = append(out, piece(r, pos, a))
			}
			if mark {
				q := piece(r, a, b)
				q.ZeroCiphertextAsZero, q.Reason = true, s.why
				out = append(out, q)
			} else {
				out = append(out, Region{Kind: Zero, Offset: a, Length: b - a, Reason: s.why})
				skipped[s.why] += b - a
			}
			pos = b
		}
		if pos < end {
			out = append(out, piece(r, pos, end))
		}
	}
	var skips []Skip
	for why, n := range skipped {
		skips = append(skips, Skip{Reason: why, Bytes: n})
	}
	sort.Slice(skips, func(i, j int) bool { return skips[i].Reason < skips[j].Reason })
	return out, skips
}

// piece is the part [a, b) of the output that r produces.
func piece(r Region, a, b int64) Region {
	d := a - r.Offset
	q := Region{Kind: r.Kind, Offset: a, Length: b - a, Source: r.Source + d}
	if r.Kind == Decrypt {
		q.IV = r.IV + uint64(d/512)
		q.ZeroCiphertextAsZero, q.Reason = r.ZeroCiphertextAsZero, r.Reason
	}
	return q
}

// lvToImage maps a byte offset within an LV on pv to the image offset of its ciphertext, pv's byte 0
// lying at image byte payload (-1: nowhere linear, such as a PV inside an LV).
func lvToImage(pv *lvm.PV, lv *lvm.LV, payload int64) func(int64) (int64, bool) {
	return func(off int64) (int64, bool) {
		if payload < 0 {
			return 0, false // the PV is not linear in the image
		}
		ext, err := pv.Map(lv, off, 1)
		if err != nil || len(ext) == 0 {
			return 0, false
		}
		return payload + ext[0].PVOff, true
	}
}

// componentCopied is the warning for an LV that other LVs are built on (lvm.VG.Components), whose
// free space is copied: a snapshot still reads the blocks its origin freed since it was taken, and a
// RAID image's or thin pool's filesystem is laid out over the LV above. prefix says where.
func componentCopied(prefix, name string) Warning {
	return warning(WarnCopiedInFull, "%sLV %s is the origin of a snapshot or part of another LV: its free space is copied too", prefix, name)
}
