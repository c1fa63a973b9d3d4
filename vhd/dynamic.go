package vhd

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf16"
)

// DynamicHeaderSize is the size of the dynamic disk header.
const DynamicHeaderSize = 1024

const (
	headerCookie = "cxsparse"
	batUnused    = 0xFFFFFFFF // BAT entry of a block that is not allocated
)

// ParentLocator mirrors one of the dynamic header's eight parent locator
// entries (used only by differencing disks).
type ParentLocator struct {
	PlatformCode       [4]byte // how the locator data names the parent ("W2ku", "W2ru", "Mac ", "MacX"); zero when unused
	PlatformDataSpace  uint32  // space reserved for the locator data (512-byte sectors, per the specification)
	PlatformDataLength uint32  // bytes of locator data
	Reserved           uint32  // zero
	PlatformDataOffset uint64  // byte offset of the locator data in the file
}

// DynamicHeader mirrors the 1024-byte dynamic disk header. Reserved bytes
// other than the locators' are not kept.
type DynamicHeader struct {
	Cookie            [8]byte          // "cxsparse"
	DataOffset        uint64           // unused, all ones
	TableOffset       uint64           // file offset of the BAT
	HeaderVersion     uint32           // 0x00010000 (1.0)
	MaxTableEntries   uint32           // BAT entries; should be the number of blocks of the virtual disk
	BlockSize         uint32           // data bytes per block (default 2 MiB)
	Checksum          uint32           // one's complement of the byte sum of the header without this field
	ParentUniqueID    [16]byte         // parent's Footer.UniqueID (differencing disks)
	ParentTimestamp   uint32           // parent's modification time, seconds since 2000-01-01 UTC (differencing disks)
	ParentUnicodeName [512]byte        // UTF-16BE, NUL padded
	ParentLocators    [8]ParentLocator // where to find the parent file (differencing disks)
}

// ParentName decodes ParentUnicodeName.
func (h *DynamicHeader) ParentName() string {
	u := make([]uint16, 0, len(h.ParentUnicodeName)/2)
	for i := 0; i+1 < len(h.ParentUnicodeName); i += 2 {
		c := binary.BigEndian.Uint16(h.ParentUnicodeName[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// bitmapSize is the size of each block's sector bitmap: one bit per sector,
// padded to a whole sector.
func (h *DynamicHeader) bitmapSize() int64 {
	bitsBytes := (int64(h.BlockSize)/SectorSize + 7) / 8
	return (bitsBytes + SectorSize - 1) / SectorSize * SectorSize
}

// ParseDynamicHeader decodes and validates a dynamic header from the first
// 1024 bytes of b: cookie, checksum, version and block size (a power of two
// of at least 512). Errors are *FormatError with Offset 0 (relative to b).
func ParseDynamicHeader(b []byte) (*DynamicHeader, error) {
	return parseDynamicHeader(b, 0)
}

func parseDynamicHeader(b []byte, off int64) (*DynamicHeader, error) {
	bad := func(format string, a ...any) error {
		return &FormatError{Structure: "dynamic header", Offset: off, Reason: fmt.Sprintf(format, a...)}
	}
	if len(b) < DynamicHeaderSize {
		return nil, bad("short header: %d bytes", len(b))
	}
	b = b[:DynamicHeaderSize]
	be := binary.BigEndian
	h := &DynamicHeader{
		DataOffset:      be.Uint64(b[8:]),
		TableOffset:     be.Uint64(b[16:]),
		HeaderVersion:   be.Uint32(b[24:]),
		MaxTableEntries: be.Uint32(b[28:]),
		BlockSize:       be.Uint32(b[32:]),
		Checksum:        be.Uint32(b[36:]),
		ParentTimestamp: be.Uint32(b[56:]),
	}
	copy(h.Cookie[:], b[0:8])
	copy(h.ParentUniqueID[:], b[40:56])
	copy(h.ParentUnicodeName[:], b[64:576])
	for i := range h.ParentLocators {
		e := b[576+24*i:]
		l := &h.ParentLocators[i]
		copy(l.PlatformCode[:], e[0:4])
		l.PlatformDataSpace = be.Uint32(e[4:])
		l.PlatformDataLength = be.Uint32(e[8:])
		l.Reserved = be.Uint32(e[12:])
		l.PlatformDataOffset = be.Uint64(e[16:])
	}

	if string(h.Cookie[:]) != headerCookie {
		return nil, bad("bad cookie %q", h.Cookie[:])
	}
	if sum := checksum(b, 36); sum != h.Checksum {
		return nil, bad("checksum mismatch (stored %#08x, computed %#08x)", h.Checksum, sum)
	}
	if h.HeaderVersion>>16 != 1 {
		return nil, bad("unsupported header version %#08x", h.HeaderVersion)
	}
	if h.BlockSize < SectorSize || bits.OnesCount32(h.BlockSize) != 1 {
		return nil, bad("block size %d is not a power of two >= %d", h.BlockSize, SectorSize)
	}
	return h, nil
}

// MarshalBinary encodes the header into 1024 bytes with the checksum computed
// over the encoded bytes (h.Checksum is ignored and left unchanged). The error
// is always nil.
func (h *DynamicHeader) MarshalBinary() ([]byte, error) {
	b := make([]byte, DynamicHeaderSize)
	be := binary.BigEndian
	copy(b[0:8], h.Cookie[:])
	be.PutUint64(b[8:], h.DataOffset)
	be.PutUint64(b[16:], h.TableOffset)
	be.PutUint32(b[24:], h.HeaderVersion)
	be.PutUint32(b[28:], h.MaxTableEntries)
	be.PutUint32(b[32:], h.BlockSize)
	copy(b[40:56], h.ParentUniqueID[:])
	be.PutUint32(b[56:], h.ParentTimestamp)
	copy(b[64:576], h.ParentUnicodeName[:])
	for i, l := range h.ParentLocators {
		e := b[576+24*i:]
		copy(e[0:4], l.PlatformCode[:])
		be.PutUint32(e[4:], l.PlatformDataSpace)
		be.PutUint32(e[8:], l.PlatformDataLength)
		be.PutUint32(e[12:], l.Reserved)
		be.PutUint64(e[16:], l.PlatformDataOffset)
	}
	be.PutUint32(b[36:], checksum(b, 36))
	return b, nil
}
