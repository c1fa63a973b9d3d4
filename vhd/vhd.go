// Package vhd reads raw disk images and Microsoft Virtual Hard Disk (VHD)
// images, fixed and dynamic, behind one io.ReaderAt, and writes the footer
// that turns a raw image into a fixed VHD (the form Azure accepts).
//
// The on-disk structures follow the "Virtual Hard Disk Image Format
// Specification" v1.0. All integers are big-endian and sectors are 512 bytes.
//
// A fixed VHD is the raw disk followed by a 512-byte footer. A dynamic VHD is
// a footer copy, a 1024-byte dynamic header, a block allocation table (BAT),
// data blocks (each a sector bitmap followed by the data) and the footer.
// Differencing disks are not supported.
package vhd

import (
	"errors"
	"fmt"
)

// SectorSize is the VHD sector size; every offset and size in the format is a
// multiple of it.
const SectorSize = 512

// MiB is one mebibyte.
const MiB = 1 << 20

// Azure limits for uploaded (fixed) VHDs: the virtual size must be a whole
// number of MiB within these bounds; the file is that plus the 512-byte footer.
const (
	AzureMinSize = 20 * MiB // smallest virtual size in bytes
	AzureMaxSize = 32 << 40 // largest virtual size in bytes (32 TiB)
)

// ErrUnsupported is returned (wrapped) for valid images this package cannot
// read, such as differencing disks.
var ErrUnsupported = errors.New("vhd: unsupported")

// ErrCorrupt matches every *FormatError via errors.Is.
var ErrCorrupt = errors.New("vhd: corrupt image")

// FormatError reports a malformed structure, naming it and its byte offset in
// the file.
type FormatError struct {
	Structure string // "footer", "footer copy", "dynamic header", "BAT", "block bitmap"
	Offset    int64  // byte offset of the structure (or field) in the file
	Reason    string // what is wrong with it
}

// Error names the damaged structure, its offset and why it is refused.
func (e *FormatError) Error() string {
	return fmt.Sprintf("vhd: %s at offset %d: %s", e.Structure, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

// DiskType is the footer's disk type field.
type DiskType uint32

// Disk types defined by the specification.
const (
	TypeFixed        DiskType = 2 // the raw disk followed by the footer
	TypeDynamic      DiskType = 3 // blocks allocated as written, found through the BAT
	TypeDifferencing DiskType = 4 // a dynamic disk holding changes to a parent image
)

// String returns the footer's disk type as a word: "fixed", "dynamic" or "differencing".
func (t DiskType) String() string {
	switch t {
	case TypeFixed:
		return "fixed"
	case TypeDynamic:
		return "dynamic"
	case TypeDifferencing:
		return "differencing"
	}
	return fmt.Sprintf("DiskType(%d)", uint32(t))
}

// Kind is the container format Open detected.
type Kind int

// Kinds of image.
const (
	Raw     Kind = iota // no VHD footer: the file is the disk
	Fixed               // a fixed VHD
	Dynamic             // a dynamic VHD
)

// String returns the container's name as reports print it: "raw", "vhd-fixed" or "vhd-dynamic".
func (k Kind) String() string {
	switch k {
	case Raw:
		return "raw"
	case Fixed:
		return "vhd-fixed"
	case Dynamic:
		return "vhd-dynamic"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// AzureSize rounds a virtual size up to a whole MiB, the granularity Azure
// requires for uploaded disks. It does not apply AzureMinSize/AzureMaxSize.
func AzureSize(size int64) int64 {
	if size <= 0 {
		return 0
	}
	return (size + MiB - 1) / MiB * MiB
}
