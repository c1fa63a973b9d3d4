// Package fuzzimage lets fuzz targets mutate a known-good filesystem image where it matters: fuzz
// bytes become a few small patches, each at a 16-bit offset from one of the image's structures
// (superblocks, allocation tables, directories, inodes), so a mutation reaches the parsers behind the
// first checks instead of being spread over megabytes of data. For tests only.
package fuzzimage

import (
	"encoding/binary"
	"io"
)

// Patch is bytes that replace the image's at Off.
type Patch struct {
	Off  int64
	Data []byte
}

// Image is an io.ReaderAt over Base with Patches applied, later ones over earlier ones.
type Image struct {
	Base    []byte
	Patches []Patch
}

// ReadAt reads the patched image; past its end it returns io.EOF.
func (p *Image) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(p.Base)) {
		return 0, io.EOF
	}
	n := copy(b, p.Base[off:])
	for _, pt := range p.Patches {
		lo, hi := max(pt.Off, off), min(pt.Off+int64(len(pt.Data)), off+int64(n))
		if lo < hi {
			copy(b[lo-off:hi-off], pt.Data[lo-pt.Off:hi-pt.Off])
		}
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// Decode turns fuzz bytes into at most 16 patches of 1 to 16 bytes inside an image of size bytes:
// each takes 4 bytes (a target index, a big-endian 16-bit offset from that target, a length) and then
// its data.
func Decode(b []byte, targets []int64, size int64) []Patch {
	var ps []Patch
	for len(b) >= 4 && len(ps) < 16 && len(targets) > 0 {
		off := targets[int(b[0])%len(targets)] + int64(binary.BigEndian.Uint16(b[1:3]))
		n := min(int(b[3])%16+1, len(b)-4)
		data := b[4 : 4+n]
		b = b[4+n:]
		if off+int64(n) <= size {
			ps = append(ps, Patch{Off: off, Data: data})
		}
	}
	return ps
}
