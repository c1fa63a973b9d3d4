package gpt

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// A Write is a byte range to write to the disk.
type Write struct {
	Offset int64  // byte offset on the disk
	Data   []byte // the bytes to write there
}

// Relocate returns the writes that move the backup GPT to the end of the
// disk after it has grown to newDiskSize bytes (at least t.DiskSize and a
// multiple of the sector size), e.g. when padding an image to a whole MiB.
//
// The writes are, in order: the backup entry array and backup header at the
// new end; the primary entry array (only when the primary copy was invalid,
// so the result is whole again); the primary header with the new
// AlternateLBA; the protective MBR's 0xEE entry resized to the new disk
// (only for a plain protective MBR); and zeroes over the old
// backup header and array, minus any sectors the new copy reuses. Usable
// LBAs, the disk GUID and all entries are unchanged. r must still hold the
// table t was read from; its entry array is re-read and checked against
// the CRC. After applying the writes t is stale: call [Read] again.
func (t *Table) Relocate(r io.ReaderAt, newDiskSize int64) ([]Write, error) {
	ss := int64(t.SectorSize)
	if ss <= 0 {
		return nil, fmt.Errorf("gpt: relocate: invalid sector size %d", ss)
	}
	if newDiskSize < t.DiskSize || newDiskSize%ss != 0 {
		return nil, fmt.Errorf("gpt: relocate: new disk size %d must be at least %d and a multiple of %d", newDiskSize, t.DiskSize, ss)
	}
	d := &disk{r: r, ss: ss, sectors: t.DiskSize / ss}
	h := t.Header
	// Read guarantees these; a hand-made Table must not cause a huge
	// allocation or a bad slice.
	if h.NumPartitionEntries > MaxEntries || h.SizeOfPartitionEntry > MaxEntrySize ||
		h.HeaderSize < HeaderLen || int64(h.HeaderSize) > ss || d.sectors < 3 || h.MyLBA >= uint64(d.sectors) {
		return nil, fmt.Errorf("gpt: relocate: table was not produced by Read")
	}
	arrayLen := int64(h.NumPartitionEntries) * int64(h.SizeOfPartitionEntry)
	nArray := h.arraySectors(ss)

	// Re-read what Read validated: the entry array and the header's bytes
	// beyond the 92 defined ones (covered by the CRC, kept as they are).
	array := make([]byte, nArray*uint64(ss))
	if err := d.readAt(array[:arrayLen], int64(h.PartitionEntryLBA)*ss); err != nil {
		return nil, err
	}
	if crc32.ChecksumIEEE(array[:arrayLen]) != h.PartitionEntryArrayCRC32 {
		return nil, fmt.Errorf("gpt: relocate: partition entry array at LBA %d changed since Read", h.PartitionEntryLBA)
	}
	oldHdr := make([]byte, ss)
	if err := d.readAt(oldHdr, int64(h.MyLBA)*ss); err != nil {
		return nil, err
	}
	if parseHeader(oldHdr) != h {
		return nil, fmt.Errorf("gpt: relocate: header at LBA %d changed since Read", h.MyLBA)
	}

	newLast := uint64(newDiskSize/ss) - 1
	if newLast <= h.LastUsableLBA+nArray {
		return nil, fmt.Errorf("gpt: relocate: no room for the backup entry array (%d sectors) after the last usable LBA %d", nArray, h.LastUsableLBA)
	}
	marshal := func(h Header) []byte {
		b := make([]byte, ss)
		copy(b[HeaderLen:h.HeaderSize], oldHdr[HeaderLen:h.HeaderSize])
		h.HeaderCRC32 = 0
		h.put(b)
		binary.LittleEndian.PutUint32(b[16:], headerCRC(b, h.HeaderSize))
		return b
	}

	var writes []Write
	backup := h
	backup.MyLBA, backup.AlternateLBA = newLast, 1
	backup.PartitionEntryLBA = newLast - nArray
	writes = append(writes,
		Write{int64(backup.PartitionEntryLBA) * ss, array},
		Write{int64(newLast) * ss, marshal(backup)})

	primary := h
	primary.MyLBA, primary.AlternateLBA = 1, newLast
	if t.Primary != nil {
		primary.PartitionEntryLBA = t.Primary.PartitionEntryLBA
	} else {
		// Rebuild the primary array at its customary place, LBA 2.
		primary.PartitionEntryLBA = 2
		if nArray > 0 && 2+nArray > h.FirstUsableLBA {
			return nil, fmt.Errorf("gpt: relocate: no room for the primary entry array (%d sectors) before the first usable LBA %d", nArray, h.FirstUsableLBA)
		}
		writes = append(writes, Write{2 * ss, array})
	}
	writes = append(writes, Write{ss, marshal(primary)})

	if w, ok, err := d.resizeMBR(newLast); err != nil {
		return nil, err
	} else if ok {
		writes = append(writes, w)
	}

	// Zero the old backup, but only sectors after the usable range (a
	// backup array pointer may legally aim anywhere outside it) and never
	// the sectors just given to the new backup.
	var old [][2]uint64 // inclusive LBA ranges
	oldLast := d.lastLBA()
	if b := t.Backup; b != nil {
		old = append(old, [2]uint64{b.MyLBA, b.MyLBA})
		// The backup's own array, as its header sizes it: a header with no entries has none, and
		// its pointer, which nothing read, may hold any value.
		if nb := b.arraySectors(ss); nb > 0 && b.PartitionEntryLBA <= oldLast && nb <= oldLast-b.PartitionEntryLBA+1 {
			old = append(old, [2]uint64{b.PartitionEntryLBA, b.PartitionEntryLBA + nb - 1})
		}
	} else if alt := h.AlternateLBA; h.MyLBA == 1 && alt <= oldLast {
		// A damaged backup header: its array pointer is not trusted, but
		// the header sector itself is known not to hold data.
		old = append(old, [2]uint64{alt, alt})
	}
	for _, rg := range old {
		// Only sectors of the old disk, after the usable range.
		rg[0], rg[1] = max(rg[0], h.LastUsableLBA+1), min(rg[1], oldLast)
		if rg[0] > rg[1] {
			continue
		}
		for _, z := range subtractRange(rg, [2]uint64{backup.PartitionEntryLBA, newLast}) {
			writes = append(writes, Write{int64(z[0]) * ss, make([]byte, int64(z[1]-z[0]+1)*ss)})
		}
	}
	return writes, nil
}

// subtractRange returns the parts of the inclusive range a outside b.
func subtractRange(a, b [2]uint64) [][2]uint64 {
	if a[1] < b[0] || a[0] > b[1] {
		return [][2]uint64{a}
	}
	var out [][2]uint64
	if a[0] < b[0] {
		out = append(out, [2]uint64{a[0], b[0] - 1})
	}
	if a[1] > b[1] {
		out = append(out, [2]uint64{b[1] + 1, a[1]})
	}
	return out
}

// resizeMBR returns the rewritten 0xEE entry when LBA 0 is a plain
// protective MBR (one 0xEE entry from LBA 1, nothing else) whose size is
// not already right for the new disk. Hybrid and foreign MBRs, and entries
// with the "whole disk" size 0xFFFFFFFF, are left alone.
func (d *disk) resizeMBR(newLast uint64) (Write, bool, error) {
	mbr := make([]byte, 512)
	if err := d.readAt(mbr, 0); err != nil {
		return Write{}, false, err
	}
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return Write{}, false, nil
	}
	le := binary.LittleEndian
	idx := -1
	for i := 0; i < 4; i++ {
		e := mbr[mbrTableOffset+i*mbrEntrySize:][:mbrEntrySize]
		switch {
		case e[4] == mbrTypeGPT && idx < 0:
			idx = i
		case e[4] != 0:
			return Write{}, false, nil
		}
	}
	if idx < 0 {
		return Write{}, false, nil
	}
	off := mbrTableOffset + idx*mbrEntrySize
	e := append([]byte(nil), mbr[off:off+mbrEntrySize]...)
	oldSize, newSize := le.Uint32(e[12:]), uint32(min(newLast, 0xFFFFFFFF))
	if le.Uint32(e[8:]) != 1 || oldSize == 0xFFFFFFFF || oldSize == newSize {
		return Write{}, false, nil
	}
	le.PutUint32(e[12:], newSize)
	// Keep the ending CHS style: recompute it only if it was computed from
	// the old size (as sgdisk does), not when it is a fixed 0xFFFFFF.
	if c := chs(uint64(oldSize)); e[5] == c[0] && e[6] == c[1] && e[7] == c[2] {
		c = chs(uint64(newSize))
		copy(e[5:8], c[:])
	}
	return Write{int64(off), e}, true, nil
}

// chs converts an LBA to the MBR's CHS triple with the conventional
// 255-head, 63-sector geometry, saturating at cylinder 1023.
func chs(lba uint64) [3]byte {
	const heads, spt = 255, 63
	if lba >= 1024*heads*spt {
		return [3]byte{0xFE, 0xFF, 0xFF}
	}
	c := lba / (heads * spt)
	h := (lba / spt) % heads
	s := lba%spt + 1
	return [3]byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}
