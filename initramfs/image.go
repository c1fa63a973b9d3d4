package initramfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Size bounds for Parse. The whole image is read into memory, and every decompressed stream too, so
// what the segments expand to is bounded: by MaxExpansion times the image's size (at least
// MinExpandedLimit), and by MaxExpandedSize in all. dracut's images expand 3-6 times; a decompression
// bomb is refused (ErrTooLarge) once its output passes the bound, never expanded in full.
const (
	MaxImageSize     = 512 << 20 // compressed image
	MaxExpandedSize  = 1 << 30   // all segments decompressed, together
	MaxExpansion     = 20        // all segments decompressed, per byte of the image
	MinExpandedLimit = 64 << 20  // the expansion bound of a small image
)

// ErrTooLarge means the image's segments expand to more than the bound (ExpandedLimit).
var ErrTooLarge = errTooLarge

// ExpandedLimit is how many bytes the segments of an image of size bytes may expand to, together.
func ExpandedLimit(size int64) int64 {
	return min(maxExpanded, max(MinExpandedLimit, MaxExpansion*max(size, 0)))
}

// maxExpanded is MaxExpandedSize; fuzz tests lower it so decompression bombs stay cheap.
var maxExpanded int64 = MaxExpandedSize

// Archive is one cpio archive: the entries up to and including a TRAILER!!! entry, or up to a byte
// that cannot continue it (the kernel accepts archives without a trailer).
type Archive struct {
	// Offset and Length locate the archive within its segment's data: the image for an uncompressed
	// segment, the decompressed stream for a compressed one. Length includes the trailer.
	Offset, Length int64
	Entries        []*Entry // in archive order, the trailer not included
	Trailer        bool     // the archive ends with a TRAILER!!! entry
}

// Segment is one top-level piece of the image: an uncompressed cpio archive (such as dracut's early
// microcode cpio) or a compressed stream holding one or more archives.
type Segment struct {
	// Offset and Length locate the segment in the image. For a compressed segment Length is what the
	// kernel's decompressor consumes.
	Offset, Length int64
	Compression    Compression // None for an uncompressed archive
	// Entries lists the entries of all Archives, in order.
	Entries  []*Entry
	Archives []Archive // the cpio archives, in order
	// Padding is the number of zero bytes following the segment (before the next one or the end).
	Padding int64
	// ExpandedSize is the size of the decompressed stream (Length for an uncompressed segment).
	ExpandedSize int64
	// XZCheck is the integrity check of an xz segment as xz --list names it ("CRC32", "CRC64", "None").
	// The kernel verifies only CRC32; Rewrite always writes CRC32.
	XZCheck string
}

// Image is a parsed initramfs.
type Image struct {
	Segments []Segment // in image order
	Size     int64     // bytes of the image
	// LeadingPadding is the number of zero bytes before the first segment.
	LeadingPadding int64
}

// Parse reads the whole image as the kernel's unpack_to_rootfs does: zero bytes between segments are
// skipped, a '0' at a 4-aligned offset starts an uncompressed archive, anything else must be a
// compressed stream recognised by its magic, which must decompress to complete cpio entries (optionally
// separated by zero padding) or the kernel would report "junk in compressed archive". Images larger
// than MaxImageSize, or expanding to more than ExpandedLimit(size), are refused (ErrTooLarge).
func Parse(r io.ReaderAt, size int64) (*Image, error) {
	return ParseContext(context.Background(), r, size)
}

// ParseContext is Parse that stops once ctx is done, while reading r or decompressing (xz of a 60 MB
// archive takes a second or two), and then returns ctx.Err() itself.
func ParseContext(ctx context.Context, r io.ReaderAt, size int64) (*Image, error) {
	im, err := parse(ctx, r, size)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	return im, nil
}

func parse(ctx context.Context, r io.ReaderAt, size int64) (*Image, error) {
	if size < 0 || size > MaxImageSize {
		return nil, fmt.Errorf("initramfs: image size %d out of range 0..%d", size, MaxImageSize)
	}
	buf := make([]byte, size)
	if err := readAtContext(ctx, r, buf, 0); err != nil {
		return nil, fmt.Errorf("initramfs: reading image: %w", err)
	}
	im := &Image{Size: size}
	budget := ExpandedLimit(size)
	for pos := int64(0); pos < size; {
		if buf[pos] == 0 {
			z := int64(len(buf[pos:]) - len(bytes.TrimLeft(buf[pos:], "\x00")))
			if n := len(im.Segments); n > 0 {
				im.Segments[n-1].Padding += z
			} else {
				im.LeadingPadding += z
			}
			pos += z
			continue
		}
		idx := len(im.Segments)
		if buf[pos] == '0' && pos%4 == 0 {
			a, err := parseArchive(buf[pos:], pos)
			if err != nil {
				return nil, fmt.Errorf("initramfs: segment %d (uncompressed) at offset %d: %w", idx, pos, err)
			}
			im.Segments = append(im.Segments, Segment{Offset: pos, Length: a.Length, Compression: None,
				Entries: a.Entries, Archives: []Archive{a}, ExpandedSize: a.Length})
			pos += a.Length
			continue
		}
		c, err := detect(buf[pos:])
		if err != nil {
			return nil, fmt.Errorf("initramfs: segment %d at offset %d: %w", idx, pos, err)
		}
		d, err := decode(ctx, c, buf[pos:], budget)
		if err != nil {
			return nil, fmt.Errorf("initramfs: segment %d (%s) at offset %d: %w", idx, c, pos, err)
		}
		budget -= int64(len(d.out))
		archives, err := parseStream(d.out)
		if err != nil {
			return nil, fmt.Errorf("initramfs: segment %d (%s) at offset %d: %w", idx, c, pos, err)
		}
		seg := Segment{Offset: pos, Length: int64(d.consumed), Compression: c, Archives: archives,
			ExpandedSize: int64(len(d.out)), XZCheck: d.xzCheck}
		for _, a := range archives {
			seg.Entries = append(seg.Entries, a.Entries...)
		}
		im.Segments = append(im.Segments, seg)
		pos += int64(d.consumed)
	}
	return im, nil
}

// parseArchive reads entries from b (whose first byte is at offset base) until the trailer, the end of
// b, or a byte that is not '0' after an entry (zero padding or the next compressed segment).
func parseArchive(b []byte, base int64) (Archive, error) {
	a := Archive{Offset: base}
	rd := NewReader(bytes.NewReader(b))
	rd.MaxFileSize = int64(len(b))
	for {
		off := rd.Offset()
		if off >= int64(len(b)) || b[off] != '0' {
			a.Length = off
			return a, nil
		}
		e, err := rd.Next()
		if err == io.EOF {
			a.Trailer = true
			a.Length = rd.Offset()
			return a, nil
		}
		if err != nil {
			if base != 0 {
				err = fmt.Errorf("archive at offset %d: %w", base, err)
			}
			return a, err
		}
		e.Offset += base
		a.Entries = append(a.Entries, e)
	}
}

// parseStream splits a decompressed stream into archives as flush_buffer does: zero bytes are skipped,
// a '0' starts an archive (and must be 4-aligned: "broken padding"), anything else is junk.
func parseStream(b []byte) ([]Archive, error) {
	var out []Archive
	for pos := int64(0); pos < int64(len(b)); {
		switch {
		case b[pos] == 0:
			pos++
		case b[pos] != '0':
			return nil, fmt.Errorf("junk within compressed archive at decompressed offset %d", pos)
		case pos%4 != 0:
			return nil, fmt.Errorf("broken padding: archive at decompressed offset %d is not 4-byte aligned", pos)
		default:
			a, err := parseArchive(b[pos:], pos)
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					return nil, fmt.Errorf("junk at the end of compressed archive: %w", err)
				}
				return nil, err
			}
			out = append(out, a)
			pos += a.Length
		}
	}
	return out, nil
}

// CleanPath returns the canonical form of an archive name used as a key by Files, Edit and Report:
// no leading "/" or "./", cleaned; the root is ".".
func CleanPath(name string) string {
	p := path.Clean("/" + name)
	if p == "/" {
		return "."
	}
	return strings.TrimPrefix(p, "/")
}

// Files returns the final view of the image, as the unpacked rootfs would show it: later archives
// override earlier ones. Keys are CleanPath names.
func (im *Image) Files() map[string]*Entry {
	m := make(map[string]*Entry)
	for i := range im.Segments {
		for _, e := range im.Segments[i].Entries {
			m[CleanPath(e.Name)] = e
		}
	}
	return m
}

// ReadFile returns the content of the final version of name (a symlink's target for a symlink). For a
// hard link stored without data, it returns the data carried by another link of the same inode in the
// same archive, as the kernel's link resolution would.
func (im *Image) ReadFile(name string) ([]byte, error) {
	key := CleanPath(name)
	var found *Entry
	var arch *Archive
	for i := range im.Segments {
		for j := range im.Segments[i].Archives {
			a := &im.Segments[i].Archives[j]
			for _, e := range a.Entries {
				if CleanPath(e.Name) == key {
					found, arch = e, a
				}
			}
		}
	}
	if found == nil {
		return nil, fmt.Errorf("initramfs: %s: file does not exist", key)
	}
	if found.IsDir() {
		return nil, fmt.Errorf("initramfs: %s: is a directory", key)
	}
	if found.NLink > 1 && found.FileSize == 0 && found.IsRegular() {
		k := linkKeyOf(found)
		for _, e := range arch.Entries {
			if e.NLink > 1 && linkKeyOf(e) == k && e.FileSize > 0 {
				return e.Data, nil
			}
		}
	}
	return found.Data, nil
}

// linkKey identifies the inode behind a hard link the way the kernel's find_link does.
type linkKey struct {
	ino, major, minor, typ uint32
}

func linkKeyOf(e *Entry) linkKey {
	return linkKey{e.Ino, e.DevMajor, e.DevMinor, e.Mode & ModeType}
}
