package luksconv

import (
	"fmt"
	"io"
	"os"

	"github.com/luksconv/luksconv/vhd"
)

// Source is a disk image opened for reading. It is never written to.
type Source struct {
	// Path is the file the image was opened from ("" for a caller-supplied reader).
	Path string
	// Format is "raw", "vhd-fixed" or "vhd-dynamic".
	Format string
	// FileSize is the size of the container; Size is the virtual disk size.
	FileSize, Size int64

	img     *vhd.Image
	pageMap []vhd.Extent // written pages of a page blob, nil for files
	closer  io.Closer
}

// OpenFile opens a raw image or VHD read-only.
func OpenFile(path string) (*Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file or block device", path)
	}
	size := fi.Size()
	if fi.Mode()&os.ModeDevice != 0 {
		// Block devices report size 0 in Stat; seek to the end instead.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, err
		}
	}
	s, err := NewSource(f, size)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.Path = path
	s.closer = f
	return s, nil
}

// NewSource detects the image format of r (raw, fixed or dynamic VHD).
func NewSource(r io.ReaderAt, fileSize int64) (*Source, error) {
	img, err := vhd.Open(r, fileSize)
	if err != nil {
		return nil, err
	}
	return &Source{Format: img.Kind.String(), FileSize: fileSize, Size: img.Size(), img: img}, nil
}

// ReadAt reads the virtual disk.
func (s *Source) ReadAt(p []byte, off int64) (int, error) { return s.img.ReadAt(p, off) }

// Allocated lists the byte ranges of the virtual disk that may hold data; the rest reads as zeros.
func (s *Source) Allocated() []vhd.Extent {
	if s.pageMap != nil {
		return s.pageMap
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
