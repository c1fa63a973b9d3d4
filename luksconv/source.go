package luksconv

import (
	"fmt"
	"io"
	"os"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/vhd"
)

// Source is a disk image opened for reading: a raw image, a fixed or a dynamic VHD, in a file, on a
// block device or behind any io.ReaderAt. It is never written to. A Source is safe for concurrent
// use when its reader is (an *os.File is).
type Source struct {
	// Path is the file the image was opened from ("" for a caller-supplied reader); callers may set it
	// to how reports should name the source (a resource ID rather than a URL, say).
	Path string
	// Format is "raw", "vhd-fixed" or "vhd-dynamic".
	Format string
	// FileSize is the size of the container; Size is the virtual disk size.
	FileSize, Size int64

	img    *vhd.Image
	alloc  []extent.Range // from the reader's Allocator; nil: the image's own map
	closer io.Closer
	id     os.FileInfo // the file or device read, for refusing it as an output; nil if unknown
}

// Allocator is implemented by readers that know which of their byte ranges hold data — a page blob
// lists its written pages — while the rest reads as zeros. NewSource uses it (for raw and fixed VHD
// images, whose bytes are the disk's), so that a conversion neither reads nor writes the rest. A
// reader wrapped in another that does not implement it is simply read throughout.
type Allocator interface {
	// Allocated lists, in order and without overlap, the ranges that may hold data.
	Allocated() []extent.Range
}

// OpenFile opens a raw image or VHD, in a regular file or on a block device, read-only.
func OpenFile(path string) (*Source, error) {
	// Refuse what open could block on (a FIFO) before opening it.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() && !isBlockDevice(fi) {
		return nil, fmt.Errorf("%w: %s (%s)", ErrInputType, path, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() && !isBlockDevice(fi) {
		f.Close()
		return nil, fmt.Errorf("%w: %s (%s)", ErrInputType, path, fi.Mode().Type())
	}
	size := fi.Size()
	if isBlockDevice(fi) {
		// Block devices report size 0 in Stat; seek to the end instead.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, err
		}
	}
	s, err := OpenReader(f, size, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.Path = path
	return s, nil
}

// OpenReader is NewSource for a reader the Source takes over: Close closes c (when not nil), also
// when OpenReader fails.
func OpenReader(r io.ReaderAt, fileSize int64, c io.Closer) (*Source, error) {
	s, err := NewSource(r, fileSize)
	if err != nil {
		if c != nil {
			c.Close()
		}
		return nil, err
	}
	s.closer = c
	return s, nil
}

// NewSource detects the image format of r, fileSize bytes long (raw, fixed or dynamic VHD). r may
// follow the io.ReaderAt contract to the letter: a read that ends exactly at the end may return
// io.EOF with all its bytes. When r is an Allocator its map is used; when r has a Stat method (an
// *os.File), outputs that are the same file are refused (ErrOutputIsInput). The Source does not close
// r.
func NewSource(r io.ReaderAt, fileSize int64) (*Source, error) {
	img, err := vhd.Open(fullReader{r}, fileSize)
	if err != nil {
		return nil, err
	}
	s := &Source{Format: img.Kind.String(), FileSize: fileSize, Size: img.Size(), img: img}
	if a, ok := r.(Allocator); ok && img.Kind != vhd.Dynamic {
		// A fixed VHD's footer page is not disk data.
		s.alloc = extent.Clip(extent.Merge(a.Allocated()), 0, s.Size)
	}
	if st, ok := r.(interface{ Stat() (os.FileInfo, error) }); ok {
		if fi, err := st.Stat(); err == nil {
			s.id = fi
		}
	}
	return s, nil
}

// fullReader is an io.ReaderAt that reports a read of every byte asked for as a success: the io
// contract lets a reader return io.EOF along with the last bytes, which the format readers would
// take for a short read.
type fullReader struct{ r io.ReaderAt }

func (f fullReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.r.ReadAt(p, off)
	if n == len(p) {
		err = nil
	}
	return n, err
}

// ReadAt reads the virtual disk.
func (s *Source) ReadAt(p []byte, off int64) (int, error) { return s.img.ReadAt(p, off) }

// Allocated lists the byte ranges of the virtual disk that may hold data; the rest reads as zeros. A
// Source is therefore an Allocator itself: a converted output opened as a Source for Verify need not
// be read where it was never written.
func (s *Source) Allocated() []extent.Range {
	if s.alloc != nil {
		return s.alloc
	}
	return s.img.Allocated()
}

// Close closes the underlying file, if Source opened it.
func (s *Source) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

func isBlockDevice(fi os.FileInfo) bool {
	return fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}
