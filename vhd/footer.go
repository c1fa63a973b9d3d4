package vhd

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"
)

// FooterSize is the size of the hard disk footer.
const FooterSize = 512

const (
	footerCookie   = "conectix"
	formatVersion  = 0x00010000 // major 1, minor 0
	featureReserve = 0x00000002 // the "reserved" feature bit, always set
	noDataOffset   = ^uint64(0) // footer data offset of a fixed disk

	// maxVirtualSize bounds CurrentSize so that offset arithmetic cannot
	// overflow int64. Real VHDs stop at about 2 TiB (Azure: 32 TiB).
	maxVirtualSize = 1 << 50
)

// vhdEpoch is the origin of VHD timestamps.
var vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Geometry is the footer's CHS disk geometry.
type Geometry struct {
	Cylinders       uint16 // cylinders
	Heads           uint8  // heads per cylinder
	SectorsPerTrack uint8  // 512-byte sectors per track
}

// MaxGeometry is the largest geometry the specification's algorithm yields.
// qemu sizes a disk by the footer's CurrentSize rather than the CHS product
// when it sees this geometry, so it is also the conventional marker for "size
// not representable in CHS" (qemu-img's force_size writes it).
var MaxGeometry = Geometry{Cylinders: 65535, Heads: 16, SectorsPerTrack: 255}

// Size is the number of bytes the geometry addresses.
func (g Geometry) Size() int64 {
	return int64(g.Cylinders) * int64(g.Heads) * int64(g.SectorsPerTrack) * SectorSize
}

// GeometryFor computes the CHS geometry for a disk of size bytes with the
// algorithm in the specification's appendix. The result usually addresses a
// little less than size.
func GeometryFor(size int64) Geometry {
	ts := size / SectorSize
	if ts < 0 {
		ts = 0
	}
	if ts > 65535*16*255 {
		ts = 65535 * 16 * 255
	}
	var spt, heads, cth int64
	if ts >= 65535*16*63 {
		spt, heads = 255, 16
		cth = ts / spt
	} else {
		spt = 17
		cth = ts / spt
		heads = (cth + 1023) / 1024
		if heads < 4 {
			heads = 4
		}
		if cth >= heads*1024 || heads > 16 {
			spt, heads = 31, 16
			cth = ts / spt
		}
		if cth >= heads*1024 {
			spt, heads = 63, 16
			cth = ts / spt
		}
	}
	return Geometry{Cylinders: uint16(cth / heads), Heads: uint8(heads), SectorsPerTrack: uint8(spt)}
}

// Footer mirrors the 512-byte hard disk footer. Reserved bytes are not kept.
type Footer struct {
	Cookie            [8]byte  // "conectix"
	Features          uint32   // 0x1 temporary disk, 0x2 reserved (always set)
	FileFormatVersion uint32   // 0x00010000 (major 1, minor 0)
	DataOffset        uint64   // dynamic header offset; all ones for fixed disks
	Timestamp         uint32   // seconds since 2000-01-01 00:00:00 UTC
	CreatorApp        [4]byte  // application that created the image ("qem2", "win ", ...)
	CreatorVersion    uint32   // its version: major in the high 16 bits, minor in the low
	CreatorHostOS     [4]byte  // host OS that created the image ("Wi2k", "Mac ")
	OriginalSize      uint64   // the virtual disk size in bytes at creation
	CurrentSize       uint64   // the virtual disk size in bytes
	Geometry          Geometry // CHS geometry, see GeometryFor and MaxGeometry
	DiskType          DiskType // TypeFixed, TypeDynamic or TypeDifferencing
	Checksum          uint32   // one's complement of the byte sum of the footer without this field
	UniqueID          [16]byte // identifies the disk; differencing disks name their parent by it
	SavedState        uint8    // 1 when the disk belongs to a saved (suspended) VM
}

// Time converts the footer's timestamp.
func (f *Footer) Time() time.Time {
	return vhdEpoch.Add(time.Duration(f.Timestamp) * time.Second)
}

// checksum is the one's complement of the byte sum of b, skipping the 4-byte
// checksum field at skip.
func checksum(b []byte, skip int) uint32 {
	var sum uint32
	for i, c := range b {
		if i >= skip && i < skip+4 {
			continue
		}
		sum += uint32(c)
	}
	return ^sum
}

// ParseFooter decodes and validates a footer from the first 512 bytes of b:
// cookie, checksum, format version, disk type and size. Errors are
// *FormatError with Offset 0 (relative to b).
func ParseFooter(b []byte) (*Footer, error) {
	return parseFooter(b, 0, "footer")
}

func parseFooter(b []byte, off int64, what string) (*Footer, error) {
	bad := func(format string, a ...any) error {
		return &FormatError{Structure: what, Offset: off, Reason: fmt.Sprintf(format, a...)}
	}
	if len(b) < FooterSize {
		return nil, bad("short footer: %d bytes", len(b))
	}
	b = b[:FooterSize]
	be := binary.BigEndian
	f := &Footer{
		Features:          be.Uint32(b[8:]),
		FileFormatVersion: be.Uint32(b[12:]),
		DataOffset:        be.Uint64(b[16:]),
		Timestamp:         be.Uint32(b[24:]),
		CreatorVersion:    be.Uint32(b[32:]),
		OriginalSize:      be.Uint64(b[40:]),
		CurrentSize:       be.Uint64(b[48:]),
		Geometry:          Geometry{Cylinders: be.Uint16(b[56:]), Heads: b[58], SectorsPerTrack: b[59]},
		DiskType:          DiskType(be.Uint32(b[60:])),
		Checksum:          be.Uint32(b[64:]),
		SavedState:        b[84],
	}
	copy(f.Cookie[:], b[0:8])
	copy(f.CreatorApp[:], b[28:32])
	copy(f.CreatorHostOS[:], b[36:40])
	copy(f.UniqueID[:], b[68:84])

	if string(f.Cookie[:]) != footerCookie {
		return nil, bad("bad cookie %q", f.Cookie[:])
	}
	if sum := checksum(b, 64); sum != f.Checksum {
		return nil, bad("checksum mismatch (stored %#08x, computed %#08x)", f.Checksum, sum)
	}
	if f.FileFormatVersion>>16 != 1 {
		return nil, bad("unsupported format version %#08x", f.FileFormatVersion)
	}
	switch f.DiskType {
	case TypeFixed, TypeDynamic, TypeDifferencing:
	default:
		return nil, bad("unknown disk type %d", uint32(f.DiskType))
	}
	if f.CurrentSize%SectorSize != 0 {
		return nil, bad("current size %d is not a multiple of %d", f.CurrentSize, SectorSize)
	}
	if f.CurrentSize > maxVirtualSize {
		return nil, bad("implausible current size %d", f.CurrentSize)
	}
	return f, nil
}

// MarshalBinary encodes the footer into 512 bytes with the checksum computed
// over the encoded bytes (f.Checksum is ignored and left unchanged). The error
// is always nil; it exists to satisfy encoding.BinaryMarshaler.
func (f *Footer) MarshalBinary() ([]byte, error) {
	b := make([]byte, FooterSize)
	be := binary.BigEndian
	copy(b[0:8], f.Cookie[:])
	be.PutUint32(b[8:], f.Features)
	be.PutUint32(b[12:], f.FileFormatVersion)
	be.PutUint64(b[16:], f.DataOffset)
	be.PutUint32(b[24:], f.Timestamp)
	copy(b[28:32], f.CreatorApp[:])
	be.PutUint32(b[32:], f.CreatorVersion)
	copy(b[36:40], f.CreatorHostOS[:])
	be.PutUint64(b[40:], f.OriginalSize)
	be.PutUint64(b[48:], f.CurrentSize)
	be.PutUint16(b[56:], f.Geometry.Cylinders)
	b[58] = f.Geometry.Heads
	b[59] = f.Geometry.SectorsPerTrack
	be.PutUint32(b[60:], uint32(f.DiskType))
	copy(b[68:84], f.UniqueID[:])
	b[84] = f.SavedState
	be.PutUint32(b[64:], checksum(b, 64))
	return b, nil
}

// Creator fields written by NewFixedFooter.
var (
	creatorApp     = [4]byte{'l', 'c', 'v', ' '} // luksconv
	creatorVersion = uint32(0x00010000)
	creatorHostOS  = [4]byte{'W', 'i', '2', 'k'}
)

// NewFixedFooter returns the footer of a fixed VHD whose virtual size is size
// bytes (a positive multiple of 512): the raw disk followed by this footer is
// a valid fixed VHD. The creator app is "lcv ", the host OS "Wi2k", the
// unique id random and the timestamp the current time. For Azure, size must also be a whole number of MiB (see
// AzureSize).
//
// CurrentSize and OriginalSize are exactly size. The geometry is the
// specification's CHS geometry when that addresses exactly size bytes;
// otherwise it is MaxGeometry, as qemu-img's force_size writes it. Readers
// that size a disk from its geometry (qemu with an unknown creator app,
// Virtual PC) would otherwise see a truncated disk; Hyper-V and Azure use
// CurrentSize either way.
func NewFixedFooter(size int64) (*Footer, error) {
	if size <= 0 || size%SectorSize != 0 || size > maxVirtualSize {
		return nil, fmt.Errorf("vhd: fixed disk size %d is not a positive multiple of %d", size, SectorSize)
	}
	f := &Footer{
		Features:          featureReserve,
		FileFormatVersion: formatVersion,
		DataOffset:        noDataOffset,
		CreatorApp:        creatorApp,
		CreatorVersion:    creatorVersion,
		CreatorHostOS:     creatorHostOS,
		OriginalSize:      uint64(size),
		CurrentSize:       uint64(size),
		Geometry:          GeometryFor(size),
		DiskType:          TypeFixed,
	}
	copy(f.Cookie[:], footerCookie)
	if f.Geometry.Size() != size {
		f.Geometry = MaxGeometry
	}
	if s := time.Since(vhdEpoch) / time.Second; s > 0 && s <= 1<<32-1 {
		f.Timestamp = uint32(s)
	}
	if _, err := rand.Read(f.UniqueID[:]); err != nil {
		return nil, fmt.Errorf("vhd: unique id: %w", err)
	}
	b, _ := f.MarshalBinary()
	f.Checksum = binary.BigEndian.Uint32(b[64:])
	return f, nil
}

// FixedFooterBytes returns the encoded footer of NewFixedFooter(size): append
// it to a raw image of exactly size bytes to get a fixed VHD.
func FixedFooterBytes(size int64) ([]byte, error) {
	f, err := NewFixedFooter(size)
	if err != nil {
		return nil, err
	}
	return f.MarshalBinary()
}
