package vhd

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/luksconv/luksconv/extent"
)

// maxBlocks bounds the BAT we load (64 MiB of entries; 32 TiB at the default
// 2 MiB block size) independently of what the header claims.
const maxBlocks = 1 << 24

// Image is a disk image whose virtual contents are read through ReadAt.
// It is safe for concurrent use if the underlying io.ReaderAt is (as the
// io.ReaderAt contract requires).
type Image struct {
	Kind   Kind           // the container format Open detected
	Footer *Footer        // nil for raw images
	Header *DynamicHeader // nil unless Kind is Dynamic

	// Trailing is, for a fixed VHD, the number of bytes between the end of
	// the virtual disk (CurrentSize) and the footer. It is normally 0; a
	// nonzero value means the file is larger than its footer says, and those
	// bytes are not part of the disk. Callers should warn about it.
	Trailing int64

	r    io.ReaderAt
	size int64

	// Dynamic disks only.
	bat        []uint32 // one entry per block of the virtual disk
	blockSize  int64
	bitmapSize int64

	mu      sync.Mutex
	bitmaps map[int64][]byte // block → sector bitmap; nil value: all sectors present
}

// Open detects the format of the image r of fileSize bytes and returns it.
//
//   - A valid footer in the last 512 bytes makes a fixed or dynamic VHD.
//     The virtual size is the footer's CurrentSize, as Hyper-V and Azure read
//     it (qemu agrees for the images it writes).
//   - A footer cookie with a bad checksum or bad fields is a *FormatError,
//     never a raw image.
//   - A footer at offset 0 but none at the end is a *FormatError: a dynamic
//     VHD that lost its tail.
//   - Differencing disks give an error wrapping ErrUnsupported.
//   - Anything else is a raw image of fileSize bytes.
//
// For dynamic disks Open checks that the footer copy at offset 0 matches, that
// the header and BAT lie inside the file, that the BAT covers CurrentSize,
// and that every allocated block lies inside the file.
func Open(r io.ReaderAt, fileSize int64) (*Image, error) {
	if fileSize < 0 {
		return nil, fmt.Errorf("vhd: negative file size %d", fileSize)
	}
	if fileSize < FooterSize {
		return &Image{Kind: Raw, r: r, size: fileSize}, nil
	}
	footOff := fileSize - FooterSize
	tail := make([]byte, FooterSize)
	if err := readFull(r, tail, footOff); err != nil {
		return nil, fmt.Errorf("vhd: reading footer at offset %d: %w", footOff, err)
	}
	if string(tail[:8]) != footerCookie {
		head := make([]byte, 8)
		if err := readFull(r, head, 0); err != nil {
			return nil, fmt.Errorf("vhd: reading offset 0: %w", err)
		}
		if string(head) == footerCookie {
			return nil, &FormatError{Structure: "footer", Offset: footOff,
				Reason: "missing, but a footer copy is at offset 0 (truncated dynamic VHD?)"}
		}
		return &Image{Kind: Raw, r: r, size: fileSize}, nil
	}
	f, err := parseFooter(tail, footOff, "footer")
	if err != nil {
		return nil, err
	}
	switch f.DiskType {
	case TypeFixed:
		return openFixed(r, fileSize, f)
	case TypeDynamic:
		return openDynamic(r, fileSize, f, tail)
	default:
		msg := "differencing disk"
		if h, err := readHeader(r, fileSize, f); err == nil {
			msg += fmt.Sprintf(" (parent %q)", h.ParentName())
		}
		return nil, fmt.Errorf("%w: %s; merge it into its parent first", ErrUnsupported, msg)
	}
}

func openFixed(r io.ReaderAt, fileSize int64, f *Footer) (*Image, error) {
	data := fileSize - FooterSize
	size := int64(f.CurrentSize)
	if data < size {
		return nil, &FormatError{Structure: "footer", Offset: data,
			Reason: fmt.Sprintf("fixed disk of %d bytes needs a %d-byte file, have %d (truncated?)",
				size, size+FooterSize, fileSize)}
	}
	return &Image{Kind: Fixed, Footer: f, Trailing: data - size, r: r, size: size}, nil
}

// readHeader reads and validates the dynamic header the footer points at.
func readHeader(r io.ReaderAt, fileSize int64, f *Footer) (*DynamicHeader, error) {
	footOff := fileSize - FooterSize
	// The header lies between the footer copy and the footer.
	if f.DataOffset < FooterSize || f.DataOffset > uint64(footOff) ||
		uint64(footOff)-f.DataOffset < DynamicHeaderSize {
		return nil, &FormatError{Structure: "footer", Offset: footOff,
			Reason: fmt.Sprintf("dynamic header offset %d outside the file (%d bytes)", f.DataOffset, fileSize)}
	}
	off := int64(f.DataOffset)
	b := make([]byte, DynamicHeaderSize)
	if err := readFull(r, b, off); err != nil {
		return nil, fmt.Errorf("vhd: reading dynamic header at offset %d: %w", off, err)
	}
	return parseDynamicHeader(b, off)
}

func openDynamic(r io.ReaderAt, fileSize int64, f *Footer, tail []byte) (*Image, error) {
	footOff := fileSize - FooterSize
	if fileSize < 2*FooterSize+DynamicHeaderSize {
		return nil, &FormatError{Structure: "footer", Offset: footOff,
			Reason: fmt.Sprintf("dynamic disk file of %d bytes is too small", fileSize)}
	}
	head := make([]byte, FooterSize)
	if err := readFull(r, head, 0); err != nil {
		return nil, fmt.Errorf("vhd: reading footer copy at offset 0: %w", err)
	}
	if !bytes.Equal(head, tail) {
		if _, err := parseFooter(head, 0, "footer copy"); err != nil {
			return nil, err
		}
		return nil, &FormatError{Structure: "footer copy", Offset: 0,
			Reason: fmt.Sprintf("differs from the footer at offset %d", footOff)}
	}
	h, err := readHeader(r, fileSize, f)
	if err != nil {
		return nil, err
	}
	hdrOff := int64(f.DataOffset)

	size := int64(f.CurrentSize)
	bs := int64(h.BlockSize)
	blocks := (size + bs - 1) / bs
	if int64(h.MaxTableEntries) < blocks {
		return nil, &FormatError{Structure: "dynamic header", Offset: hdrOff,
			Reason: fmt.Sprintf("BAT has %d entries; %d blocks of %d bytes are needed for %d bytes",
				h.MaxTableEntries, blocks, bs, size)}
	}
	if blocks > maxBlocks {
		return nil, &FormatError{Structure: "dynamic header", Offset: hdrOff,
			Reason: fmt.Sprintf("%d blocks exceed the limit of %d", blocks, maxBlocks)}
	}
	batLen := 4 * uint64(h.MaxTableEntries)
	if h.TableOffset < FooterSize || h.TableOffset > uint64(footOff) || uint64(footOff)-h.TableOffset < batLen {
		return nil, &FormatError{Structure: "dynamic header", Offset: hdrOff,
			Reason: fmt.Sprintf("BAT at offset %d with %d entries does not fit in the file (%d bytes)",
				h.TableOffset, h.MaxTableEntries, fileSize)}
	}
	batOff := int64(h.TableOffset)
	raw := make([]byte, 4*blocks) // bounded by the file size and maxBlocks
	if err := readFull(r, raw, batOff); err != nil {
		return nil, fmt.Errorf("vhd: reading BAT at offset %d: %w", batOff, err)
	}
	im := &Image{Kind: Dynamic, Footer: f, Header: h, r: r, size: size,
		bat: make([]uint32, blocks), blockSize: bs, bitmapSize: h.bitmapSize(),
		bitmaps: make(map[int64][]byte)}
	var used []span
	for i := range im.bat {
		e := binary.BigEndian.Uint32(raw[4*i:])
		im.bat[i] = e
		if e == batUnused {
			continue
		}
		start := int64(e) * SectorSize
		end := start + im.bitmapSize + im.blockLen(int64(i))
		if start < FooterSize || end > footOff {
			return nil, &FormatError{Structure: "BAT", Offset: batOff + 4*int64(i),
				Reason: fmt.Sprintf("block %d at [%d, %d) lies outside the data area [%d, %d)",
					i, start, end, FooterSize, footOff)}
		}
		if start < batOff+int64(len(raw)) && batOff < end {
			return nil, &FormatError{Structure: "BAT", Offset: batOff + 4*int64(i),
				Reason: fmt.Sprintf("block %d at [%d, %d) overlaps the BAT", i, start, end)}
		}
		used = append(used, span{start, end, int64(i)})
	}
	// Two virtual blocks in one file block would make a small file read as a huge disk (and
	// a used-block map that counts the same bytes many times): refused, as qemu-img check does.
	slices.SortFunc(used, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	for k := 1; k < len(used); k++ {
		if a, b := used[k-1], used[k]; b.start < a.end {
			return nil, &FormatError{Structure: "BAT", Offset: batOff + 4*b.block,
				Reason: fmt.Sprintf("blocks %d and %d share file bytes [%d, %d)", a.block, b.block, b.start, min(a.end, b.end))}
		}
	}
	return im, nil
}

// span is an allocated block's bytes in the file.
type span struct{ start, end, block int64 }

// Size returns the virtual disk size in bytes.
func (im *Image) Size() int64 { return im.size }

// blockLen is the number of virtual-disk bytes block i holds (the last block
// may be partial).
func (im *Image) blockLen(i int64) int64 {
	return min(im.blockSize, im.size-i*im.blockSize)
}

// ReadAt reads virtual disk contents with io.ReaderAt semantics: it returns
// io.EOF when the read reaches past the end of the disk.
func (im *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vhd: negative offset %d", off)
	}
	if off >= im.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > im.size-off {
		p, eof = p[:im.size-off], io.EOF
	}
	var n int
	var err error
	if im.Kind == Dynamic {
		n, err = im.readDynamic(p, off)
	} else {
		n, err = im.r.ReadAt(p, off)
		if n == len(p) {
			err = nil
		} else if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the file is shorter than Open was told
		}
	}
	if err != nil {
		return n, err
	}
	return n, eof
}

func (im *Image) readDynamic(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		blk := off / im.blockSize
		in := off % im.blockSize
		chunk := p[n : n+int(min(int64(len(p)-n), im.blockSize-in))]
		if e := im.bat[blk]; e == batUnused {
			clear(chunk)
		} else if err := im.readBlock(blk, int64(e)*SectorSize, chunk, in); err != nil {
			return n, err
		}
		n += len(chunk)
		off += int64(len(chunk))
	}
	return n, nil
}

// readBlock fills p from block blk (stored at file offset start) beginning at
// byte in of the block, reading zeros for sectors whose bitmap bit is clear.
func (im *Image) readBlock(blk, start int64, p []byte, in int64) error {
	bm, err := im.bitmap(blk, start)
	if err != nil {
		return err
	}
	data := start + im.bitmapSize
	if bm == nil {
		return readFull(im.r, p, data+in)
	}
	present := func(sector int64) bool { return bm[sector/8]&(0x80>>(sector%8)) != 0 }
	// Copy runs of sectors with the same bitmap state.
	for pos := int64(0); pos < int64(len(p)); {
		s := (in + pos) / SectorSize
		set := present(s)
		end := (s+1)*SectorSize - in
		for end < int64(len(p)) && present((in+end)/SectorSize) == set {
			end += SectorSize
		}
		end = min(end, int64(len(p)))
		if set {
			if err := readFull(im.r, p[pos:end], data+in+pos); err != nil {
				return err
			}
		} else {
			clear(p[pos:end])
		}
		pos = end
	}
	return nil
}

// bitmap returns block blk's sector bitmap, or nil when every sector is
// present (the usual case: qemu and Hyper-V set all bits). Results are cached.
func (im *Image) bitmap(blk, start int64) ([]byte, error) {
	im.mu.Lock()
	bm, ok := im.bitmaps[blk]
	im.mu.Unlock()
	if ok {
		return bm, nil
	}
	sectors := im.blockLen(blk) / SectorSize
	bm = make([]byte, (sectors+7)/8)
	if err := readFull(im.r, bm, start); err != nil {
		return nil, fmt.Errorf("vhd: reading bitmap of block %d at offset %d: %w", blk, start, err)
	}
	full := true
	for s := int64(0); s < sectors; s++ {
		if bm[s/8]&(0x80>>(s%8)) == 0 {
			full = false
			break
		}
	}
	if full {
		bm = nil
	}
	im.mu.Lock()
	im.bitmaps[blk] = bm
	im.mu.Unlock()
	return bm, nil
}

// Allocated lists, in order, the ranges of the virtual disk that may hold
// data; everything else reads as zeros. Raw and fixed images are allocated
// throughout; for dynamic images these are the allocated blocks, adjacent
// ones merged (sector bitmaps are not consulted).
func (im *Image) Allocated() []extent.Range {
	if im.Kind != Dynamic {
		if im.size == 0 {
			return nil
		}
		return []extent.Range{{Off: 0, Len: im.size}}
	}
	var ext []extent.Range
	for i, e := range im.bat {
		if e == batUnused {
			continue
		}
		off := int64(i) * im.blockSize
		n := im.blockLen(int64(i))
		if k := len(ext) - 1; k >= 0 && ext[k].Off+ext[k].Len == off {
			ext[k].Len += n
		} else {
			ext = append(ext, extent.Range{Off: off, Len: n})
		}
	}
	return ext
}

// readFull reads exactly len(p) bytes at off; a short read is
// io.ErrUnexpectedEOF.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}
