// Package lvm reads LVM2 physical volumes: the label, the PV header, the
// metadata areas and the VG text metadata they hold, and maps logical volume
// offsets to physical volume offsets. It never writes.
//
// A PV carries a 512-byte label in one of its first four sectors ("LABELONE",
// normally sector 1). The PV header that follows lists the data area (where
// extents start) and up to two metadata areas. Each metadata area begins
// with a 512-byte header whose first raw location points at the current VG
// metadata text inside a circular buffer. All binary fields are
// little-endian and every checksum is LVM's CRC-32 (see [CRC]).
//
// [Open] reads every metadata area, checks both checksums of each copy and
// uses the valid copy with the highest seqno; bad or older copies become
// warnings. Values read from the device are bounded before use: a metadata
// area or text that claims more than the device or [MaxTextSize] holds is an
// error, never an allocation.
package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strings"
)

// On-disk constants (lvm2 lib/label/label.h, lib/format_text/layout.h).
const (
	LabelID       = "LABELONE"         // Label.ID: the first 8 bytes of the label sector
	LabelType     = "LVM2 001"         // Label.Type of an LVM2 PV, the only type read
	MDAMagic      = " LVM2 x[5A%r0N*>" // MDAHeader.Magic
	MDAVersion    = 1                  // MDAHeader.Version, the only version read
	MDAHeaderSize = 512                // bytes of the mda_header at the start of a metadata area
	// RawLocnIgnored marks a metadata area that holds no metadata on purpose
	// (pvchange --metadataignore).
	RawLocnIgnored = 0x1

	labelSize         = 512
	labelScanSectors  = 4
	labelHeaderSize   = 32
	pvHeaderFixedSize = 32 + 8 // uuid + device_size
	diskLocnSize      = 16
	rawLocnSize       = 24
	mdaFixedSize      = 40 // checksum, magic, version, start, size
)

// MaxTextSize bounds the metadata text read from a metadata area. LVM keeps
// metadata under half its metadata area, which is 1 MiB by default; large
// VGs stay well below this. MaxSegments bounds the segments of all LVs of a
// VG together. Both keep what a hostile text makes the parser build small
// (a 58 MB text of 520k segments took 1.5 GiB).
const (
	MaxTextSize = 8 << 20 // bytes of metadata text (8 MiB)
	MaxSegments = 1 << 16 // segments of all LVs of a VG together
)

// crcSeed is INITIAL_CRC in lvm2 lib/misc/crc.h.
const crcSeed = 0xf597a6cf

// CRC is LVM's checksum: reflected CRC-32 (IEEE polynomial) started from
// 0xf597a6cf without the final inversion.
func CRC(b []byte) uint32 { return crcUpdate(crcSeed, b) }

func crcUpdate(crc uint32, b []byte) uint32 {
	// crc32.Update inverts on entry and exit; undo both.
	return ^crc32.Update(^crc, crc32.IEEETable, b)
}

var (
	// ErrNotLVM is returned by Open when no LVM2 label is found.
	ErrNotLVM = errors.New("lvm: no LVM2 label")
	// ErrUnsupported matches errors for valid LVM layouts this package does
	// not handle (segment types other than linear/striped, extents on other
	// PVs, unknown label types).
	ErrUnsupported = errors.New("lvm: unsupported")
	// ErrCorrupt matches (with errors.Is) every *FormatError.
	ErrCorrupt = errors.New("lvm: corrupt physical volume")
)

// A FormatError reports a structure that failed validation. Offset is the
// byte offset of the structure on the device.
type FormatError struct {
	Structure string // "label", "pv header", "mda header 1", "metadata text 2", ...
	Offset    int64  // byte offset of the structure on the device
	Reason    string // what is wrong with it
}

// Error names the damaged structure, its offset and why it is refused.
func (e *FormatError) Error() string {
	return fmt.Sprintf("lvm: %s at offset %d: %s", e.Structure, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

// Label mirrors the 32-byte label header found in one of the first 4
// sectors.
type Label struct {
	ID     [8]byte // "LABELONE"
	Sector uint64  // the sector the label is in
	CRC    uint32  // CRC of bytes 20..511 of the sector
	Offset uint32  // offset of the PV header from the start of the label
	Type   [8]byte // "LVM2 001"
}

// DiskLocn mirrors a disk_locn: a byte range on the PV. In the data area
// list Size 0 means "to the end of the device".
type DiskLocn struct {
	Offset, Size uint64 // offset from the start of the PV and length, in bytes
}

// PVHeader mirrors the pv_header that follows the label.
type PVHeader struct {
	UUID       string // 32 characters, without dashes, as on disk
	DeviceSize uint64 // bytes
	// DataAreas lists the data areas; the first one's Offset is where
	// extent 0 starts (pe_start) and its Size is normally 0.
	DataAreas []DiskLocn
	// MetadataAreas lists the metadata areas: normally one near the start
	// of the PV and an optional second one at its end.
	MetadataAreas []DiskLocn
	// Extension is the pv_header_extension (lvm2 ≥ 2.02.110), nil if absent.
	Extension *PVHeaderExtension
}

// PVHeaderExtension mirrors pv_header_extension.
type PVHeaderExtension struct {
	Version         uint32     // extension version, nonzero (2 in current lvm2)
	Flags           uint32     // PV_EXT_* flags; 0x1 (PV_EXT_USED) means the PV belongs to a VG
	BootloaderAreas []DiskLocn // byte ranges reserved for a bootloader (pvcreate --bootloaderareasize)
}

// FormattedUUID returns the UUID with dashes as lvm prints it
// (6-4-4-4-4-4-6).
func (h *PVHeader) FormattedUUID() string { return FormatUUID(h.UUID) }

// FormatUUID inserts dashes into a 32-character LVM UUID the way lvm prints
// it. Other strings are returned unchanged.
func FormatUUID(id string) string {
	if len(id) != 32 {
		return id
	}
	var b strings.Builder
	at := 0
	for i, n := range []int{6, 4, 4, 4, 4, 4, 6} {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(id[at : at+n])
		at += n
	}
	return b.String()
}

// MDAHeader mirrors the 512-byte mda_header at the start of a metadata area.
type MDAHeader struct {
	Checksum uint32   // CRC of bytes 4..511
	Magic    [16]byte // MDAMagic
	Version  uint32   // MDAVersion
	Start    uint64   // absolute byte offset of this header
	Size     uint64   // bytes in the metadata area, header included
	// RawLocns are the raw_locn entries up to the first with Offset 0;
	// the first is the committed metadata.
	RawLocns []RawLocn
}

// RawLocn mirrors a raw_locn: where a metadata text lies in the area.
// Offset is relative to the start of the area; the text wraps to
// Start+MDAHeaderSize when it runs past the end.
type RawLocn struct {
	Offset, Size uint64 // offset from MDAHeader.Start and length of the text, in bytes
	Checksum     uint32 // CRC of the text
	Flags        uint32 // RawLocnIgnored is the only flag lvm2 defines
}

// MDA describes one metadata area of the PV and what became of its copy.
type MDA struct {
	Area   DiskLocn   // the area's entry in PVHeader.MetadataAreas
	Header *MDAHeader // nil when the header could not be read or is invalid
	Seqno  int        // seqno of its metadata; 0 when none was read
	Used   bool       // this copy is the one in PV.VG
	Err    error      // why the copy was not usable, nil if it was
}

// PV is an opened physical volume with its parsed metadata.
type PV struct {
	Label  Label    // the label Open found
	Header PVHeader // the PV header in the label's sector
	// VG is the newest valid metadata, nil for a PV that belongs to no VG
	// (or whose metadata areas are all empty or ignored).
	VG       *VG
	MDAs     []MDA    // one per PVHeader.MetadataAreas entry, in that order
	Warnings []string // problems that did not stop Open, such as an older or bad metadata copy

	size int64
	info *PVInfo // this PV's entry in VG.PVs
}

// Size returns the device size given to Open.
func (pv *PV) Size() int64 { return pv.size }

// Info returns this PV's entry in the VG metadata (matched by UUID).
func (pv *PV) Info() (*PVInfo, bool) { return pv.info, pv.info != nil }

// Open reads the label, PV header and metadata areas of the PV in r, whose
// size is size bytes. It returns ErrNotLVM when no label is found, an error
// wrapping ErrUnsupported for a label of another type, and a *FormatError
// when a structure is corrupt or no metadata copy is valid.
func Open(r io.ReaderAt, size int64) (*PV, error) {
	if size < 0 {
		return nil, fmt.Errorf("lvm: negative device size %d", size)
	}
	pv := &PV{size: size}
	sector, buf, err := findLabel(r, size)
	if err != nil {
		return nil, err
	}
	if err := pv.parseLabel(sector, buf); err != nil {
		return nil, err
	}
	if err := pv.readMetadata(r); err != nil {
		return nil, err
	}
	return pv, nil
}

// findLabel returns the sector holding a valid LABELONE and its content.
func findLabel(r io.ReaderAt, size int64) (int, []byte, error) {
	n := int64(labelScanSectors * labelSize)
	if size < n {
		n = size - size%labelSize
	}
	if n < labelSize {
		return 0, nil, fmt.Errorf("%w (device is %d bytes)", ErrNotLVM, size)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 0); err != nil {
		return 0, nil, fmt.Errorf("lvm: reading label sectors: %w", err)
	}
	var firstErr error
	for s := 0; int64(s+1)*labelSize <= n; s++ {
		b := buf[s*labelSize : (s+1)*labelSize]
		if string(b[:8]) != LabelID {
			continue
		}
		off := int64(s) * labelSize
		// lvm ignores such labels; report them as corruption when no valid
		// label follows, since a LABELONE sector is not there by accident.
		if got := binary.LittleEndian.Uint64(b[8:]); got != uint64(s) {
			if firstErr == nil {
				firstErr = &FormatError{"label", off, fmt.Sprintf("label claims sector %d but is in sector %d", got, s)}
			}
			continue
		}
		if got, want := binary.LittleEndian.Uint32(b[16:]), CRC(b[20:]); got != want {
			if firstErr == nil {
				firstErr = &FormatError{"label", off, fmt.Sprintf("CRC mismatch (stored %#08x, computed %#08x)", got, want)}
			}
			continue
		}
		return s, b, nil
	}
	if firstErr != nil {
		return 0, nil, firstErr
	}
	return 0, nil, ErrNotLVM
}

// parseLabel decodes the label and the PV header in the label's sector.
func (pv *PV) parseLabel(sector int, b []byte) error {
	off := int64(sector) * labelSize
	l := &pv.Label
	copy(l.ID[:], b[0:8])
	l.Sector = binary.LittleEndian.Uint64(b[8:])
	l.CRC = binary.LittleEndian.Uint32(b[16:])
	l.Offset = binary.LittleEndian.Uint32(b[20:])
	copy(l.Type[:], b[24:32])
	if string(l.Type[:]) != LabelType {
		return fmt.Errorf("%w: label at offset %d has type %q, not %q", ErrUnsupported, off, l.Type[:], LabelType)
	}
	hoff := int64(l.Offset)
	if hoff < labelHeaderSize || hoff > labelSize-pvHeaderFixedSize {
		return &FormatError{"label", off, fmt.Sprintf("pv header offset %d outside the label sector", l.Offset)}
	}
	h := &pv.Header
	p := b[hoff:]
	h.UUID = string(p[:32])
	for i := 0; i < 32; i++ {
		if c := p[i]; c < 0x21 || c > 0x7e {
			return &FormatError{"pv header", off + hoff, "UUID is not printable ASCII"}
		}
	}
	h.DeviceSize = binary.LittleEndian.Uint64(p[32:])
	at := hoff + pvHeaderFixedSize
	// Two lists, each ended by an entry with offset 0, must fit the sector.
	readList := func(what string) ([]DiskLocn, error) {
		var list []DiskLocn
		for {
			if at+diskLocnSize > labelSize {
				return nil, &FormatError{"pv header", off + hoff, what + " list runs past the label sector"}
			}
			d := DiskLocn{binary.LittleEndian.Uint64(b[at:]), binary.LittleEndian.Uint64(b[at+8:])}
			at += diskLocnSize
			if d.Offset == 0 {
				return list, nil
			}
			list = append(list, d)
		}
	}
	var err error
	if h.DataAreas, err = readList("data area"); err != nil {
		return err
	}
	if h.MetadataAreas, err = readList("metadata area"); err != nil {
		return err
	}
	if at+8 <= labelSize {
		ext := &PVHeaderExtension{Version: binary.LittleEndian.Uint32(b[at:]), Flags: binary.LittleEndian.Uint32(b[at+4:])}
		at += 8
		if ext.Version != 0 {
			h.Extension = ext
			if ext.BootloaderAreas, err = readList("bootloader area"); err != nil {
				return err
			}
		}
	}
	if h.DeviceSize > uint64(pv.size) {
		pv.warnf("device is %d bytes, smaller than the %d bytes the PV header records (truncated or shrunk?)", pv.size, h.DeviceSize)
	}
	return nil
}

func (pv *PV) warnf(format string, args ...any) {
	pv.Warnings = append(pv.Warnings, fmt.Sprintf(format, args...))
}

// copyResult is one metadata area's text after checks.
type copyResult struct {
	vg   *VG
	text []byte
}

// readMetadata reads every metadata area and keeps the newest valid copy.
func (pv *PV) readMetadata(r io.ReaderAt) error {
	var best *copyResult
	bestIdx := -1
	var firstErr error
	copies := 0
	texts := make([][]byte, len(pv.Header.MetadataAreas))
	for i, area := range pv.Header.MetadataAreas {
		m := MDA{Area: area}
		res, hdr, err := pv.readArea(r, i+1, area)
		m.Header = hdr
		switch {
		case err != nil:
			m.Err = err
			copies++
			if firstErr == nil {
				firstErr = err
			}
			pv.warnf("metadata area %d not used: %v", i+1, err)
		case res != nil:
			copies++
			m.Seqno = res.vg.Seqno
			texts[i] = res.text
			if best == nil || res.vg.Seqno > best.vg.Seqno {
				best, bestIdx = res, i
			}
		}
		pv.MDAs = append(pv.MDAs, m)
	}
	if best == nil {
		if firstErr != nil {
			if copies > 1 {
				var fe *FormatError
				if errors.As(firstErr, &fe) {
					return &FormatError{fe.Structure, fe.Offset, fmt.Sprintf("%s (and no other metadata copy is valid)", fe.Reason)}
				}
			}
			return firstErr
		}
		return nil // orphan PV: no VG metadata written, or all areas ignored
	}
	pv.MDAs[bestIdx].Used = true
	for i, m := range pv.MDAs {
		if i == bestIdx || m.Err != nil || texts[i] == nil {
			continue
		}
		if m.Seqno < best.vg.Seqno {
			pv.warnf("metadata area %d holds older metadata (seqno %d < %d)", i+1, m.Seqno, best.vg.Seqno)
		} else if !bytes.Equal(texts[i], best.text) {
			pv.warnf("metadata areas %d and %d hold different metadata with the same seqno %d; using area %d", bestIdx+1, i+1, m.Seqno, bestIdx+1)
		}
	}
	vg := best.vg
	info, ok := vg.pvByUUID(pv.Header.UUID)
	if !ok {
		a := pv.Header.MetadataAreas[bestIdx]
		return &FormatError{fmt.Sprintf("metadata text %d", bestIdx+1), int64(a.Offset), fmt.Sprintf("VG %s does not list this PV (%s)", vg.Name, pv.Header.FormattedUUID())}
	}
	pv.VG, pv.info = vg, info
	end := info.PEStart + info.PECount*vg.ExtentSize
	if end > pv.size {
		return &FormatError{"physical volume", pv.size, fmt.Sprintf("device is %d bytes but its extents end at byte %d (truncated image?)", pv.size, end)}
	}
	if len(pv.Header.DataAreas) > 0 && int64(pv.Header.DataAreas[0].Offset) != info.PEStart {
		pv.warnf("pv header data area starts at %d but metadata pe_start is %d; using pe_start", pv.Header.DataAreas[0].Offset, info.PEStart)
	}
	return nil
}

// readArea reads metadata area number n (1-based). It returns (nil, hdr, nil)
// for an area without metadata.
func (pv *PV) readArea(r io.ReaderAt, n int, area DiskLocn) (*copyResult, *MDAHeader, error) {
	hname := fmt.Sprintf("mda header %d", n)
	if area.Offset > math.MaxInt64 || area.Size > math.MaxInt64 ||
		int64(area.Offset) > pv.size || int64(area.Size) > pv.size-int64(area.Offset) {
		at := int64(math.MaxInt64)
		if area.Offset < math.MaxInt64 {
			at = int64(area.Offset)
		}
		return nil, nil, &FormatError{hname, at, fmt.Sprintf("metadata area of %d bytes runs past the end of the %d-byte device", area.Size, pv.size)}
	}
	off := int64(area.Offset)
	if area.Size < MDAHeaderSize {
		return nil, nil, &FormatError{hname, off, fmt.Sprintf("metadata area of %d bytes is smaller than its header", area.Size)}
	}
	b := make([]byte, MDAHeaderSize)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, nil, fmt.Errorf("lvm: reading %s at offset %d: %w", hname, off, err)
	}
	h := &MDAHeader{
		Checksum: binary.LittleEndian.Uint32(b[0:]),
		Version:  binary.LittleEndian.Uint32(b[20:]),
		Start:    binary.LittleEndian.Uint64(b[24:]),
		Size:     binary.LittleEndian.Uint64(b[32:]),
	}
	copy(h.Magic[:], b[4:20])
	if got := CRC(b[4:]); got != h.Checksum {
		return nil, nil, &FormatError{hname, off, fmt.Sprintf("CRC mismatch (stored %#08x, computed %#08x)", h.Checksum, got)}
	}
	if string(h.Magic[:]) != MDAMagic {
		return nil, nil, &FormatError{hname, off, "bad magic"}
	}
	if h.Version != MDAVersion {
		return nil, nil, &FormatError{hname, off, fmt.Sprintf("unsupported version %d", h.Version)}
	}
	if h.Start != area.Offset {
		return nil, nil, &FormatError{hname, off, fmt.Sprintf("header claims start %d", h.Start)}
	}
	if h.Size < MDAHeaderSize || h.Size > area.Size {
		return nil, nil, &FormatError{hname, off, fmt.Sprintf("size %d does not fit the %d-byte metadata area", h.Size, area.Size)}
	}
	for at := mdaFixedSize; at+rawLocnSize <= MDAHeaderSize; at += rawLocnSize {
		rl := RawLocn{
			Offset:   binary.LittleEndian.Uint64(b[at:]),
			Size:     binary.LittleEndian.Uint64(b[at+8:]),
			Checksum: binary.LittleEndian.Uint32(b[at+16:]),
			Flags:    binary.LittleEndian.Uint32(b[at+20:]),
		}
		if rl.Offset == 0 {
			break
		}
		h.RawLocns = append(h.RawLocns, rl)
	}
	if len(h.RawLocns) == 0 {
		return nil, h, nil // no metadata written yet
	}
	rl := h.RawLocns[0] // slot 0 is the committed metadata
	if rl.Flags&RawLocnIgnored != 0 {
		return nil, h, nil
	}
	tname := fmt.Sprintf("metadata text %d", n)
	// The text lies in the circular buffer after the header; it may wrap.
	if rl.Offset < MDAHeaderSize || rl.Offset >= h.Size || rl.Size > h.Size-MDAHeaderSize {
		return nil, h, &FormatError{hname, off, fmt.Sprintf("metadata location (offset %d, size %d) outside the %d-byte area", rl.Offset, rl.Size, h.Size)}
	}
	if rl.Size == 0 || rl.Size > MaxTextSize {
		return nil, h, &FormatError{hname, off, fmt.Sprintf("metadata size %d out of range (1..%d)", rl.Size, MaxTextSize)}
	}
	toff := off + int64(rl.Offset)
	text := make([]byte, rl.Size)
	first := rl.Size
	if rl.Offset+rl.Size > h.Size {
		first = h.Size - rl.Offset
	}
	if _, err := r.ReadAt(text[:first], toff); err != nil {
		return nil, h, fmt.Errorf("lvm: reading %s at offset %d: %w", tname, toff, err)
	}
	if first < rl.Size {
		if _, err := r.ReadAt(text[first:], off+MDAHeaderSize); err != nil {
			return nil, h, fmt.Errorf("lvm: reading wrapped part of %s at offset %d: %w", tname, off+MDAHeaderSize, err)
		}
	}
	if got := CRC(text); got != rl.Checksum {
		return nil, h, &FormatError{tname, toff, fmt.Sprintf("CRC mismatch (stored %#08x, computed %#08x)", rl.Checksum, got)}
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	vg, err := parseVG(text)
	if err != nil {
		return nil, h, &FormatError{tname, toff, err.Error()}
	}
	return &copyResult{vg: vg, text: text}, h, nil
}
