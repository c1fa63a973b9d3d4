// Package mbr reads DOS (MBR) partition tables, as used by BIOS-booted
// (Azure generation 1) disks such as older RHEL 7 images.
//
// LBA 0 holds the boot code, a 32-bit disk signature at byte 440, four
// 16-byte partition entries at byte 446 and the 0x55AA signature at byte
// 510. An extended partition (type 0x05, 0x0F or 0x85) holds a chain of
// extended boot records (EBRs), each with the same layout: its first entry
// describes one logical partition, relative to the EBR, and its second
// links to the next EBR, relative to the start of the extended partition.
//
// Partitions are numbered as Linux numbers them: primaries 1-4 by slot,
// logical partitions from 5 in chain order.
package mbr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	// MaxLogical bounds the EBR chain: Linux stops at a few hundred, tools
	// create far fewer; a longer chain is reported as corrupt.
	MaxLogical = 128

	diskSigOffset  = 440
	entriesOffset  = 446
	entrySize      = 16
	bootSigOffset  = 510
	typeProtective = 0xEE
)

// ErrNoTable is returned by [Read] when LBA 0 lacks the 0x55AA signature.
var ErrNoTable = errors.New("mbr: no DOS partition table")

// ErrCorrupt matches (with errors.Is) every [FormatError].
var ErrCorrupt = errors.New("mbr: corrupt partition table")

// A FormatError reports a partition table structure that failed validation.
type FormatError struct {
	Structure string // e.g. "MBR entry 2", "EBR at LBA 4096 entry 1"
	Offset    int64  // byte offset of the structure (entry) on the disk
	Reason    string // what is wrong with it
}

// Error names the damaged structure, its offset and why it is refused.
func (e *FormatError) Error() string {
	return fmt.Sprintf("mbr: %s at offset %d: %s", e.Structure, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

// Entry mirrors a 16-byte on-disk partition entry (integers little-endian).
type Entry struct {
	Status   byte    // 0x80 bootable, 0x00 not
	FirstCHS [3]byte // ignored: LBA fields are authoritative
	Type     byte    // system ID; 0 for an empty entry
	LastCHS  [3]byte // ignored, like FirstCHS
	StartLBA uint32  // relative to the table's base (0, the EBR or the extended partition)
	Sectors  uint32  // length in sectors
}

func parseEntry(b []byte) Entry {
	var e Entry
	e.Status = b[0]
	copy(e.FirstCHS[:], b[1:4])
	e.Type = b[4]
	copy(e.LastCHS[:], b[5:8])
	e.StartLBA = binary.LittleEndian.Uint32(b[8:])
	e.Sectors = binary.LittleEndian.Uint32(b[12:])
	return e
}

// IsExtended reports whether typ is an extended partition type (0x05 CHS,
// 0x0F LBA, 0x85 Linux extended).
func IsExtended(typ byte) bool { return typ == 0x05 || typ == 0x0F || typ == 0x85 }

// A Partition is a non-empty primary or logical partition.
type Partition struct {
	Number   int    // Linux number: 1-4 primary slot, 5... logical in chain order
	Type     byte   // system ID, e.g. 0x83 Linux, 0x8E LVM, 0x05 extended
	Bootable bool   // status 0x80
	Start    int64  // byte offset of the first sector on the disk
	Size     int64  // bytes
	StartLBA uint64 // absolute first sector
	Sectors  uint64 // length in sectors
	Logical  bool   // inside an extended partition
}

// A Table is a validated DOS partition table.
type Table struct {
	SectorSize    int    // sector size passed to Read (512 when 0 was passed)
	DiskSignature uint32 // the 32-bit disk identifier at byte 440 (Linux's PTUUID)
	// Partitions lists primaries in slot order (extended partitions
	// included, as Linux lists them), then logicals in chain order.
	Partitions []Partition
	// Protective is set when an entry has type 0xEE: the disk is GPT and
	// the caller should read that instead. Partitions is then empty.
	Protective bool
}

// Partition returns the partition with the given Linux number.
func (t *Table) Partition(n int) (Partition, bool) {
	for _, p := range t.Partitions {
		if p.Number == n {
			return p, true
		}
	}
	return Partition{}, false
}

// reader reads sectors of a disk.
type reader struct {
	r       io.ReaderAt
	ss      int64
	sectors uint64
	buf     []byte
}

// sector reads the sector at lba into d.buf.
func (d *reader) sector(lba uint64) error {
	off := int64(lba) * d.ss
	n, err := d.r.ReadAt(d.buf, off)
	if n == len(d.buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("mbr: reading %d bytes at offset %d: %w", len(d.buf), off, err)
}

func hasSig(b []byte) bool { return b[bootSigOffset] == 0x55 && b[bootSigOffset+1] == 0xAA }

// Read reads the DOS partition table of a disk of size bytes with the given
// logical sector size (0 means 512; otherwise a power of two from 512 to
// 65536).
//
// Every non-empty entry (type not 0) must have a non-zero length, lie on
// the disk after LBA 0 and not overlap another; logical partitions must lie
// inside their extended partition and not cover an EBR. The EBR chain is
// followed at most [MaxLogical] links, and a link back to a visited EBR is
// an error. A first EBR without the 0x55AA signature is taken as an empty
// chain, as Linux does.
//
// Read returns [ErrNoTable] when LBA 0 has no 0x55AA signature, and a
// [*FormatError] (errors.Is ErrCorrupt) naming the entry and its byte
// offset for invalid tables. A table with a 0xEE entry (protective or
// hybrid MBR) returns Protective set and no partitions, unvalidated. I/O
// errors from r are returned wrapped.
func Read(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	if sectorSize == 0 {
		sectorSize = 512
	}
	if sectorSize < 512 || sectorSize > 65536 || sectorSize&(sectorSize-1) != 0 {
		return nil, fmt.Errorf("mbr: invalid sector size %d", sectorSize)
	}
	if size < int64(sectorSize) {
		return nil, ErrNoTable
	}
	d := &reader{r: r, ss: int64(sectorSize), sectors: uint64(size / int64(sectorSize)), buf: make([]byte, sectorSize)}
	if err := d.sector(0); err != nil {
		return nil, err
	}
	if !hasSig(d.buf) {
		return nil, ErrNoTable
	}
	t := &Table{SectorSize: sectorSize, DiskSignature: binary.LittleEndian.Uint32(d.buf[diskSigOffset:])}
	var entries [4]Entry
	for i := range entries {
		entries[i] = parseEntry(d.buf[entriesOffset+i*entrySize:])
		if entries[i].Type == typeProtective {
			t.Protective = true
		}
	}
	if t.Protective {
		return t, nil
	}
	for i, e := range entries {
		if e.Type == 0 {
			continue
		}
		p, err := d.check(e, 0, fmt.Sprintf("MBR entry %d", i+1), int64(entriesOffset+i*entrySize))
		if err != nil {
			return nil, err
		}
		p.Number = i + 1
		if err := overlaps(t.Partitions, p, int64(entriesOffset+i*entrySize)); err != nil {
			return nil, err
		}
		t.Partitions = append(t.Partitions, p)
	}
	next := 5
	for _, ext := range t.Partitions {
		if !IsExtended(ext.Type) {
			continue
		}
		var err error
		if t.Partitions, next, err = d.chain(t.Partitions, ext, next); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// check validates entry e of a table whose entries are relative to base
// and returns it as a partition with absolute addresses.
func (d *reader) check(e Entry, base uint64, structure string, off int64) (Partition, error) {
	fail := func(format string, args ...any) (Partition, error) {
		return Partition{}, &FormatError{Structure: structure, Offset: off, Reason: fmt.Sprintf(format, args...)}
	}
	if e.Status != 0 && e.Status != 0x80 {
		return fail("invalid status byte %#02x", e.Status)
	}
	if e.Sectors == 0 {
		return fail("type %#02x with zero sectors", e.Type)
	}
	start := base + uint64(e.StartLBA)
	if start == 0 {
		return fail("partition starts at LBA 0, over the MBR")
	}
	end := start + uint64(e.Sectors) // exclusive; no overflow: both < 2^33
	if end > d.sectors {
		return fail("sectors %d-%d extend past the end of the disk (%d sectors)", start, end-1, d.sectors)
	}
	return Partition{
		Type: e.Type, Bootable: e.Status == 0x80,
		StartLBA: start, Sectors: uint64(e.Sectors),
		Start: int64(start) * d.ss, Size: int64(e.Sectors) * d.ss,
	}, nil
}

// overlaps reports p overlapping any of ps, except the extended partition
// that holds a logical p.
func overlaps(ps []Partition, p Partition, off int64) error {
	for _, q := range ps {
		if p.Logical && IsExtended(q.Type) && !q.Logical {
			continue
		}
		if p.StartLBA < q.StartLBA+q.Sectors && q.StartLBA < p.StartLBA+p.Sectors {
			return &FormatError{Structure: entryName(p), Offset: off,
				Reason: fmt.Sprintf("sectors %d-%d overlap partition %d (sectors %d-%d)",
					p.StartLBA, p.StartLBA+p.Sectors-1, q.Number, q.StartLBA, q.StartLBA+q.Sectors-1)}
		}
	}
	return nil
}

func entryName(p Partition) string {
	if p.Logical {
		return fmt.Sprintf("logical partition %d", p.Number)
	}
	return fmt.Sprintf("MBR entry %d", p.Number)
}

// chain follows the EBR chain of the extended partition ext, appending its
// logical partitions (numbered from next) to ps.
func (d *reader) chain(ps []Partition, ext Partition, next int) ([]Partition, int, error) {
	base := ext.StartLBA
	extEnd := ext.StartLBA + ext.Sectors
	var ebrs []uint64 // visited EBRs, at most MaxLogical+1
	cur := base
	for {
		off := int64(cur) * d.ss
		name := fmt.Sprintf("EBR at LBA %d", cur)
		fail := func(entry int, format string, args ...any) ([]Partition, int, error) {
			s, o := name, off
			if entry > 0 {
				s, o = fmt.Sprintf("%s entry %d", name, entry), off+int64(entriesOffset+(entry-1)*entrySize)
			}
			return nil, 0, &FormatError{Structure: s, Offset: o, Reason: fmt.Sprintf(format, args...)}
		}
		for _, v := range ebrs {
			if v == cur {
				return fail(0, "EBR chain loops back to an EBR already visited")
			}
		}
		if len(ebrs) == MaxLogical {
			return fail(0, "EBR chain longer than %d", MaxLogical)
		}
		ebrs = append(ebrs, cur)
		if err := d.sector(cur); err != nil {
			return nil, 0, err
		}
		if !hasSig(d.buf) {
			if cur == base {
				return ps, next, nil // no logical partitions, as Linux reads it
			}
			return fail(0, "no 0x55AA signature")
		}
		data := parseEntry(d.buf[entriesOffset:])
		link := parseEntry(d.buf[entriesOffset+entrySize:])
		if data.Type != 0 {
			if IsExtended(data.Type) {
				return fail(1, "first EBR entry has extended type %#02x", data.Type)
			}
			p, err := d.check(data, cur, name+" entry 1", off+entriesOffset)
			if err != nil {
				return nil, 0, err
			}
			if p.StartLBA+p.Sectors > extEnd {
				return fail(1, "logical partition sectors %d-%d extend past the extended partition %d (sectors %d-%d)",
					p.StartLBA, p.StartLBA+p.Sectors-1, ext.Number, ext.StartLBA, extEnd-1)
			}
			for _, v := range ebrs {
				if v >= p.StartLBA && v < p.StartLBA+p.Sectors {
					return fail(1, "logical partition sectors %d-%d cover the EBR at LBA %d", p.StartLBA, p.StartLBA+p.Sectors-1, v)
				}
			}
			p.Number, p.Logical = next, true
			if err := overlaps(ps, p, off+entriesOffset); err != nil {
				return nil, 0, err
			}
			ps = append(ps, p)
			next++
		}
		if link.Type == 0 {
			return ps, next, nil
		}
		if !IsExtended(link.Type) {
			return fail(2, "link entry has non-extended type %#02x", link.Type)
		}
		if link.StartLBA == 0 || link.Sectors == 0 {
			return fail(2, "link to relative LBA %d with %d sectors", link.StartLBA, link.Sectors)
		}
		cur = base + uint64(link.StartLBA)
		if cur+uint64(link.Sectors) > extEnd {
			return fail(2, "link to sectors %d-%d outside the extended partition %d (sectors %d-%d)",
				cur, cur+uint64(link.Sectors)-1, ext.Number, ext.StartLBA, extEnd-1)
		}
		// No logical partition may cover the next EBR.
		for _, q := range ps {
			if q.Logical && cur >= q.StartLBA && cur < q.StartLBA+q.Sectors {
				return fail(2, "link to LBA %d inside logical partition %d", cur, q.Number)
			}
		}
	}
}
