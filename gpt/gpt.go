// Package gpt reads and validates GUID Partition Tables (UEFI specification,
// chapter 5) and can move the backup table to the end of a grown disk.
//
// A GPT disk holds a protective MBR in LBA 0, the primary header in LBA 1
// followed by the primary partition entry array, and a backup entry array
// followed by the backup header in the last LBA. Both headers and both
// arrays carry CRC-32s. [Read] checks both copies and uses the primary when
// it is valid, falling back to the backup with a warning.
//
// Sizes taken from the disk are bounded before anything is allocated: a
// header claiming a huge entry array is reported as corrupt.
package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"unicode/utf16"
)

// Limits applied to on-disk values before they are trusted.
const (
	// HeaderLen is the size of the header fields defined by the
	// specification (revision 1.0); HeaderSize may be larger, up to a sector.
	HeaderLen = 92
	// MinEntrySize is the smallest (and usual) partition entry size.
	MinEntrySize = 128
	// MaxEntrySize bounds SizeOfPartitionEntry (128·2^n); no known tool
	// writes more than 128.
	MaxEntrySize = 4096
	// MaxEntries bounds NumPartitionEntries; tools write 128.
	MaxEntries = 16384

	nameOffset = 56
	nameLen    = 72 // bytes: 36 UTF-16 code units
	signature  = "EFI PART"
	// revisionMajor is the only major revision defined (1.0 = 0x00010000).
	revisionMajor = 1
)

// ErrNoGPT is returned by [Read] when neither the primary nor the backup
// header location holds the "EFI PART" signature: an MBR-only or blank disk.
var ErrNoGPT = errors.New("gpt: no GUID partition table")

// ErrCorrupt matches (with errors.Is) every [FormatError].
var ErrCorrupt = errors.New("gpt: corrupt partition table")

// A FormatError reports a GPT structure that failed validation.
type FormatError struct {
	Structure string // e.g. "primary header", "backup partition entry array", "primary partition entry 3"
	LBA       int64  // sector holding the structure (or the offending entry)
	Offset    int64  // byte offset of the structure on the disk
	Reason    string // what is wrong with it
}

// Error names the damaged structure, its LBA and byte offset, and why it is refused.
func (e *FormatError) Error() string {
	return fmt.Sprintf("gpt: %s at LBA %d (offset %d): %s", e.Structure, e.LBA, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

// Header mirrors the on-disk GPT header (the first 92 bytes of its sector;
// all integers little-endian).
type Header struct {
	Signature                [8]byte // "EFI PART"
	Revision                 uint32  // 0x00010000 for 1.0
	HeaderSize               uint32  // bytes covered by HeaderCRC32, 92..sector size
	HeaderCRC32              uint32  // CRC-32 of HeaderSize bytes with this field zeroed
	Reserved                 uint32  // zero
	MyLBA                    uint64  // LBA of this header
	AlternateLBA             uint64  // LBA of the other header
	FirstUsableLBA           uint64  // first sector partitions may use
	LastUsableLBA            uint64  // inclusive
	DiskGUID                 GUID    // identifies the disk
	PartitionEntryLBA        uint64  // first LBA of this copy's entry array
	NumPartitionEntries      uint32  // entries in the array, used or not (normally 128)
	SizeOfPartitionEntry     uint32  // bytes per entry: 128 times a power of two (normally 128)
	PartitionEntryArrayCRC32 uint32  // CRC-32 of NumPartitionEntries·SizeOfPartitionEntry bytes
}

func parseHeader(b []byte) Header {
	le := binary.LittleEndian
	var h Header
	copy(h.Signature[:], b[0:8])
	h.Revision = le.Uint32(b[8:])
	h.HeaderSize = le.Uint32(b[12:])
	h.HeaderCRC32 = le.Uint32(b[16:])
	h.Reserved = le.Uint32(b[20:])
	h.MyLBA = le.Uint64(b[24:])
	h.AlternateLBA = le.Uint64(b[32:])
	h.FirstUsableLBA = le.Uint64(b[40:])
	h.LastUsableLBA = le.Uint64(b[48:])
	copy(h.DiskGUID[:], b[56:72])
	h.PartitionEntryLBA = le.Uint64(b[72:])
	h.NumPartitionEntries = le.Uint32(b[80:])
	h.SizeOfPartitionEntry = le.Uint32(b[84:])
	h.PartitionEntryArrayCRC32 = le.Uint32(b[88:])
	return h
}

// put writes the 92 header bytes into b (HeaderCRC32 as stored in h).
func (h *Header) put(b []byte) {
	le := binary.LittleEndian
	copy(b[0:8], h.Signature[:])
	le.PutUint32(b[8:], h.Revision)
	le.PutUint32(b[12:], h.HeaderSize)
	le.PutUint32(b[16:], h.HeaderCRC32)
	le.PutUint32(b[20:], h.Reserved)
	le.PutUint64(b[24:], h.MyLBA)
	le.PutUint64(b[32:], h.AlternateLBA)
	le.PutUint64(b[40:], h.FirstUsableLBA)
	le.PutUint64(b[48:], h.LastUsableLBA)
	copy(b[56:72], h.DiskGUID[:])
	le.PutUint64(b[72:], h.PartitionEntryLBA)
	le.PutUint32(b[80:], h.NumPartitionEntries)
	le.PutUint32(b[84:], h.SizeOfPartitionEntry)
	le.PutUint32(b[88:], h.PartitionEntryArrayCRC32)
}

// headerCRC computes the header CRC over b[:HeaderSize] with the CRC field
// taken as zero; b must hold at least HeaderSize bytes.
func headerCRC(b []byte, size uint32) uint32 {
	c := crc32.Update(0, crc32.IEEETable, b[:16])
	c = crc32.Update(c, crc32.IEEETable, []byte{0, 0, 0, 0})
	return crc32.Update(c, crc32.IEEETable, b[20:size])
}

// arraySectors is the number of sectors the entry array occupies.
func (h *Header) arraySectors(sectorSize int64) uint64 {
	n := uint64(h.NumPartitionEntries) * uint64(h.SizeOfPartitionEntry)
	return (n + uint64(sectorSize) - 1) / uint64(sectorSize)
}

// A Partition is a non-empty partition entry.
type Partition struct {
	Number     int    // 1-based entry index, as Linux and sgdisk number partitions (sda4 = entry 4)
	Type       GUID   // partition type
	GUID       GUID   // unique partition GUID (PARTUUID)
	FirstLBA   uint64 // first sector
	LastLBA    uint64 // last sector, inclusive
	Attributes uint64 // bit 0 required by the platform, bit 2 legacy BIOS bootable, bits 48-63 type-specific
	Name       string // decoded from UTF-16LE, up to the first NUL
	Offset     int64  // FirstLBA in bytes
	Size       int64  // length in bytes
}

// A Table is a validated GUID partition table.
type Table struct {
	SectorSize int    // logical sector size the table was found with
	DiskSize   int64  // disk size passed to Read, in bytes
	Header     Header // the header of the copy in use
	// Primary and Backup are the two copies' headers; nil when that copy is
	// missing or invalid. Header is a copy of the one in use.
	Primary, Backup *Header
	Partitions      []Partition // non-empty entries only, in entry order
	// Warnings lists problems that did not prevent reading, e.g. a damaged
	// copy, a backup not at the end of the disk, or a missing protective MBR.
	Warnings []string
}

// Partition returns the partition with the given 1-based entry number.
func (t *Table) Partition(n int) (*Partition, bool) {
	for i := range t.Partitions {
		if t.Partitions[i].Number == n {
			return &t.Partitions[i], true
		}
	}
	return nil, false
}

// disk addresses an io.ReaderAt in sectors.
type disk struct {
	r       io.ReaderAt
	ss      int64 // sector size
	sectors int64 // whole sectors on the disk
}

func (d *disk) lastLBA() uint64 { return uint64(d.sectors - 1) }

// readAt fills p from off; a short read is an error.
func (d *disk) readAt(p []byte, off int64) error {
	n, err := d.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("gpt: reading %d bytes at offset %d: %w", len(p), off, err)
}

func (d *disk) formatErr(structure string, off int64, format string, args ...any) *FormatError {
	return &FormatError{Structure: structure, LBA: off / d.ss, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// Read reads and validates the GPT of a disk of diskSize bytes. sectorSize
// is the logical sector size; 0 tries 512 and then 4096 and uses the first
// one at which a GPT signature is found.
//
// Each copy is checked: signature, revision, header size, header CRC, MyLBA
// and AlternateLBA, entry size and count, entry array placement and CRC, the
// usable range, and every non-empty entry (inside the usable range, no
// overlaps). The primary is used when it is valid; otherwise the backup
// (located through the primary's AlternateLBA when the primary header itself
// is intact, else at the last LBA) is used and a warning is recorded. When
// both are valid but differ, the primary is used with a warning.
//
// Read returns [ErrNoGPT] when no copy carries the GPT signature. When a
// signature is present but no copy is valid it returns an error wrapping one
// [*FormatError] per copy (primary first), so errors.As finds the primary's
// problem and errors.Is(err, ErrCorrupt) is true. I/O errors from r are
// returned as they are. A missing or non-protective MBR only adds a warning.
func Read(r io.ReaderAt, diskSize int64, sectorSize int) (*Table, error) {
	if diskSize < 0 {
		return nil, fmt.Errorf("gpt: negative disk size %d", diskSize)
	}
	sizes := []int{sectorSize}
	if sectorSize == 0 {
		sizes = []int{512, 4096}
	} else if sectorSize < 512 || sectorSize > 65536 || sectorSize&(sectorSize-1) != 0 {
		return nil, fmt.Errorf("gpt: invalid sector size %d", sectorSize)
	}
	for _, ss := range sizes {
		t, err := readSectorSize(r, diskSize, ss)
		if errors.Is(err, ErrNoGPT) {
			continue
		}
		return t, err
	}
	return nil, ErrNoGPT
}

// tableCopy is one validated copy of the table.
type tableCopy struct {
	hdr   Header
	parts []Partition
}

func readSectorSize(r io.ReaderAt, diskSize int64, ss int) (*Table, error) {
	d := &disk{r: r, ss: int64(ss), sectors: diskSize / int64(ss)}
	// LBA 0, the primary header and at least one more sector.
	if d.sectors < 3 {
		return nil, ErrNoGPT
	}
	t := &Table{SectorSize: ss, DiskSize: diskSize}
	if rem := diskSize % int64(ss); rem != 0 {
		t.warnf("gpt: disk size %d is not a multiple of the %d-byte sector size; ignoring the last %d bytes", diskSize, ss, rem)
	}
	last := d.lastLBA()

	p, pHdr, pSig, pErr := d.readCopy(1, "primary")
	if pErr != nil && !isFormat(pErr) {
		return nil, pErr
	}

	// Where to look for the backup: the primary says where it is, but only
	// an intact primary header is trusted for that.
	backupLBAs := []uint64{last}
	if pHdr != nil && pHdr.AlternateLBA != last {
		alt := pHdr.AlternateLBA
		switch {
		case alt > last:
			t.warnf("gpt: primary header at LBA 1: backup header expected at LBA %d, beyond the last LBA %d of the disk (disk truncated?)", alt, last)
		case alt > 1:
			t.warnf("gpt: primary header at LBA 1: backup header expected at LBA %d, not at the last LBA %d of the disk (disk grown?)", alt, last)
			backupLBAs = []uint64{alt, last}
		}
	}
	var b *tableCopy
	var bSig bool
	var bErr error
	for _, lba := range backupLBAs {
		c, _, sig, err := d.readCopy(lba, "backup")
		if err != nil && !isFormat(err) {
			return nil, err
		}
		bSig = bSig || sig
		if err == nil {
			b, bErr = c, nil
			break
		}
		if bErr == nil {
			bErr = err // report the first location tried
		}
	}

	switch {
	case p != nil && b != nil:
		t.use(p)
		t.Primary, t.Backup = &p.hdr, &b.hdr
		if p.hdr.AlternateLBA != b.hdr.MyLBA {
			t.warnf("gpt: primary header at LBA 1 names LBA %d as the backup, but the backup header is at LBA %d", p.hdr.AlternateLBA, b.hdr.MyLBA)
		}
		if diff := compareCopies(&p.hdr, &b.hdr); diff != "" {
			t.warnf("gpt: primary and backup tables differ (%s); using the primary", diff)
		}
	case p != nil:
		t.use(p)
		t.Primary = &p.hdr
		t.warnf("%v; using the primary header at LBA 1", bErr)
	case b != nil:
		t.use(b)
		t.Backup = &b.hdr
		t.warnf("%v; using the backup header at LBA %d", pErr, b.hdr.MyLBA)
	case !pSig && !bSig:
		return nil, ErrNoGPT
	default:
		return nil, errors.Join(pErr, bErr)
	}

	if err := d.checkMBR(t); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Table) use(c *tableCopy) {
	t.Header = c.hdr
	t.Partitions = c.parts
}

func (t *Table) warnf(format string, args ...any) {
	t.Warnings = append(t.Warnings, fmt.Sprintf(format, args...))
}

func isFormat(err error) bool {
	var fe *FormatError
	return errors.As(err, &fe)
}

// compareCopies describes how two valid copies disagree, or returns "".
func compareCopies(p, b *Header) string {
	switch {
	case p.DiskGUID != b.DiskGUID:
		return fmt.Sprintf("disk GUID %s vs %s", p.DiskGUID, b.DiskGUID)
	case p.FirstUsableLBA != b.FirstUsableLBA || p.LastUsableLBA != b.LastUsableLBA:
		return fmt.Sprintf("usable LBAs %d-%d vs %d-%d", p.FirstUsableLBA, p.LastUsableLBA, b.FirstUsableLBA, b.LastUsableLBA)
	case p.NumPartitionEntries != b.NumPartitionEntries || p.SizeOfPartitionEntry != b.SizeOfPartitionEntry:
		return fmt.Sprintf("entry array %d×%d vs %d×%d bytes", p.NumPartitionEntries, p.SizeOfPartitionEntry, b.NumPartitionEntries, b.SizeOfPartitionEntry)
	case p.PartitionEntryArrayCRC32 != b.PartitionEntryArrayCRC32:
		return fmt.Sprintf("entry array CRC %#08x vs %#08x", p.PartitionEntryArrayCRC32, b.PartitionEntryArrayCRC32)
	}
	return ""
}

// readCopy reads and validates the header at lba and its entry array.
// which is "primary" or "backup". It returns the valid copy, or an error
// that is a *FormatError unless reading failed. hdr is non-nil when the
// header's signature, size and CRC are intact (so its AlternateLBA can be
// used to find the other copy) and sig reports whether the signature is
// present at all.
func (d *disk) readCopy(lba uint64, which string) (c *tableCopy, hdr *Header, sig bool, err error) {
	name := which + " header"
	off := int64(lba) * d.ss
	raw := make([]byte, d.ss)
	if err := d.readAt(raw, off); err != nil {
		return nil, nil, false, err
	}
	h := parseHeader(raw)
	if string(h.Signature[:]) != signature {
		return nil, nil, false, d.formatErr(name, off, "no GPT signature")
	}
	if h.HeaderSize < HeaderLen || int64(h.HeaderSize) > d.ss {
		return nil, nil, true, d.formatErr(name, off, "header size %d outside %d..%d", h.HeaderSize, HeaderLen, d.ss)
	}
	if got := headerCRC(raw, h.HeaderSize); got != h.HeaderCRC32 {
		return nil, nil, true, d.formatErr(name, off, "header CRC mismatch (stored %#08x, computed %#08x)", h.HeaderCRC32, got)
	}
	if err := d.checkHeader(&h, lba, which == "primary"); err != "" {
		return nil, &h, true, d.formatErr(name, off, "%s", err)
	}
	parts, ferr := d.readEntries(&h, which)
	if ferr != nil {
		return nil, &h, true, ferr
	}
	return &tableCopy{hdr: h, parts: parts}, &h, true, nil
}

// checkHeader validates a header whose signature, size and CRC are good.
// It returns a reason, or "" when the header is consistent.
func (d *disk) checkHeader(h *Header, lba uint64, primary bool) string {
	last := d.lastLBA()
	if h.Revision>>16 != revisionMajor {
		return fmt.Sprintf("unsupported revision %#08x", h.Revision)
	}
	if h.MyLBA != lba {
		return fmt.Sprintf("MyLBA is %d, expected %d", h.MyLBA, lba)
	}
	if primary {
		if h.AlternateLBA < 2 {
			return fmt.Sprintf("AlternateLBA %d is not after the primary header", h.AlternateLBA)
		}
	} else if h.AlternateLBA != 1 {
		return fmt.Sprintf("AlternateLBA is %d, expected 1 (the primary header)", h.AlternateLBA)
	}
	es := h.SizeOfPartitionEntry
	if es < MinEntrySize || es > MaxEntrySize || es&(es-1) != 0 {
		return fmt.Sprintf("partition entry size %d is not 128·2^n up to %d", es, MaxEntrySize)
	}
	if h.NumPartitionEntries > MaxEntries {
		return fmt.Sprintf("%d partition entries exceed the limit of %d", h.NumPartitionEntries, MaxEntries)
	}
	lo, hi := min(h.MyLBA, h.AlternateLBA), max(h.MyLBA, h.AlternateLBA)
	if h.FirstUsableLBA > h.LastUsableLBA {
		return fmt.Sprintf("first usable LBA %d is after last usable LBA %d", h.FirstUsableLBA, h.LastUsableLBA)
	}
	if h.LastUsableLBA > last {
		return fmt.Sprintf("last usable LBA %d is beyond the last LBA %d of the disk", h.LastUsableLBA, last)
	}
	if h.FirstUsableLBA <= lo || h.LastUsableLBA >= hi {
		return fmt.Sprintf("usable LBAs %d-%d include a header (LBAs %d and %d)", h.FirstUsableLBA, h.LastUsableLBA, h.MyLBA, h.AlternateLBA)
	}
	n := h.arraySectors(d.ss)
	if n > 0 {
		first := h.PartitionEntryLBA
		if first < 2 || first > last || n > last-first+1 {
			return fmt.Sprintf("partition entry array at LBAs %d+%d does not fit between LBA 2 and the last LBA %d", first, n, last)
		}
		end := first + n - 1
		if first <= h.LastUsableLBA && end >= h.FirstUsableLBA {
			return fmt.Sprintf("partition entry array at LBAs %d-%d overlaps the usable LBAs %d-%d", first, end, h.FirstUsableLBA, h.LastUsableLBA)
		}
		if (first <= h.MyLBA && h.MyLBA <= end) || (first <= h.AlternateLBA && h.AlternateLBA <= end) {
			return fmt.Sprintf("partition entry array at LBAs %d-%d overlaps a header (LBAs %d and %d)", first, end, h.MyLBA, h.AlternateLBA)
		}
	}
	return ""
}

// readEntries streams the entry array of a checked header, verifies its CRC
// and the non-empty entries.
func (d *disk) readEntries(h *Header, which string) ([]Partition, error) {
	es := int64(h.SizeOfPartitionEntry)
	total := int64(h.NumPartitionEntries) * es
	start := int64(h.PartitionEntryLBA) * d.ss
	// A whole number of entries per chunk (es is a power of two ≤ 4096).
	buf := make([]byte, min(total, 64<<10))
	crc := crc32.NewIEEE()
	var parts []Partition
	for done := int64(0); done < total; {
		chunk := buf[:min(int64(len(buf)), total-done)]
		if err := d.readAt(chunk, start+done); err != nil {
			return nil, err
		}
		crc.Write(chunk)
		for o := int64(0); o < int64(len(chunk)); o += es {
			if p, ok := parseEntry(chunk[o:o+es], int((done+o)/es)+1); ok {
				parts = append(parts, p)
			}
		}
		done += int64(len(chunk))
	}
	if got := crc.Sum32(); got != h.PartitionEntryArrayCRC32 {
		return nil, d.formatErr(which+" partition entry array", start, "CRC mismatch (stored %#08x, computed %#08x)", h.PartitionEntryArrayCRC32, got)
	}
	entryErr := func(p *Partition, format string, args ...any) error {
		off := start + int64(p.Number-1)*es
		return d.formatErr(fmt.Sprintf("%s partition entry %d", which, p.Number), off, format, args...)
	}
	for i := range parts {
		p := &parts[i]
		if p.FirstLBA > p.LastLBA {
			return nil, entryErr(p, "first LBA %d is after last LBA %d", p.FirstLBA, p.LastLBA)
		}
		if p.FirstLBA < h.FirstUsableLBA || p.LastLBA > h.LastUsableLBA {
			return nil, entryErr(p, "LBAs %d-%d are outside the usable LBAs %d-%d", p.FirstLBA, p.LastLBA, h.FirstUsableLBA, h.LastUsableLBA)
		}
		// Both bounds are inside the disk, so these cannot overflow.
		p.Offset = int64(p.FirstLBA) * d.ss
		p.Size = int64(p.LastLBA-p.FirstLBA+1) * d.ss
	}
	// Sort by start and compare each entry with the furthest-reaching one
	// before it: this finds every overlap, including nested ones.
	order := make([]*Partition, len(parts))
	for i := range parts {
		order[i] = &parts[i]
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].FirstLBA != order[j].FirstLBA {
			return order[i].FirstLBA < order[j].FirstLBA
		}
		return order[i].Number < order[j].Number
	})
	var reach *Partition
	for _, p := range order {
		if reach != nil && p.FirstLBA <= reach.LastLBA {
			return nil, entryErr(p, "LBAs %d-%d overlap partition %d (LBAs %d-%d)", p.FirstLBA, p.LastLBA, reach.Number, reach.FirstLBA, reach.LastLBA)
		}
		if reach == nil || p.LastLBA > reach.LastLBA {
			reach = p
		}
	}
	return parts, nil
}

// parseEntry decodes one entry; ok is false for an unused entry.
func parseEntry(b []byte, number int) (Partition, bool) {
	var p Partition
	copy(p.Type[:], b[0:16])
	if p.Type.IsZero() {
		return p, false
	}
	le := binary.LittleEndian
	p.Number = number
	copy(p.GUID[:], b[16:32])
	p.FirstLBA = le.Uint64(b[32:])
	p.LastLBA = le.Uint64(b[40:])
	p.Attributes = le.Uint64(b[48:])
	u := make([]uint16, 0, nameLen/2)
	for i := nameOffset; i < nameOffset+nameLen; i += 2 {
		c := le.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	p.Name = string(utf16.Decode(u))
	return p, true
}

// MBR layout.
const (
	mbrTableOffset = 446
	mbrEntrySize   = 16
	mbrTypeGPT     = 0xEE
)

// checkMBR adds a warning when LBA 0 is not a protective (or hybrid) MBR.
func (d *disk) checkMBR(t *Table) error {
	mbr := make([]byte, 512)
	if err := d.readAt(mbr, 0); err != nil {
		return err
	}
	if !bytes.Equal(mbr[510:512], []byte{0x55, 0xAA}) {
		t.warnf("gpt: protective MBR at LBA 0 (offset 0): no 0x55AA boot signature")
		return nil
	}
	for i := 0; i < 4; i++ {
		if mbr[mbrTableOffset+i*mbrEntrySize+4] == mbrTypeGPT {
			return nil
		}
	}
	t.warnf("gpt: protective MBR at LBA 0 (offset 0): no partition of type 0xEE")
	return nil
}
