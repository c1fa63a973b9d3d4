package luksconv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/luksconv/luksconv/vhd"
)

// FileSink writes the output disk to a new local file. It writes to a temporary name beside the target
// and renames it on Commit, so an interrupted run never leaves a file that looks complete.
type FileSink struct {
	path, tmp string
	f         *os.File
	size      int64
	format    Format
}

// ErrOutputExists is returned when the output file exists and overwriting was not allowed.
var ErrOutputExists = errors.New("luksconv: output exists")

// CreateFile creates a sparse output file for a disk of size bytes in the given format. For FormatVHD
// the size must be a whole number of sectors; Commit appends the fixed VHD footer. An existing file at
// path is replaced on Commit only when overwrite is set.
func CreateFile(path string, size int64, format Format, overwrite bool) (*FileSink, error) {
	if size <= 0 || size%512 != 0 {
		return nil, fmt.Errorf("output size %d is not a positive multiple of 512: %w", size, ErrUsage)
	}
	if _, err := os.Lstat(path); err == nil && !overwrite {
		return nil, fmt.Errorf("%s: %w (use --force to replace it)", path, ErrOutputExists)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".partial-*")
	if err != nil {
		return nil, err
	}
	s := &FileSink{path: path, tmp: f.Name(), f: f, size: size, format: format}
	// Truncate makes a sparse file whose unwritten ranges read as zeros.
	if err := f.Truncate(size); err != nil {
		s.Abort()
		return nil, fmt.Errorf("%s: reserving %d bytes: %w", path, size, err)
	}
	return s, nil
}

// WriteAt writes within the virtual disk.
func (s *FileSink) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > s.size {
		return 0, fmt.Errorf("write of %d bytes at %d is outside the %d-byte disk", len(p), off, s.size)
	}
	return s.f.WriteAt(p, off)
}

// ZeroFilled is true: the file starts sparse.
func (s *FileSink) ZeroFilled() bool { return true }

// TempPath is the name the output has until Commit.
func (s *FileSink) TempPath() string { return s.tmp }

// Commit finishes the file (VHD footer, fsync) and moves it to its final name.
func (s *FileSink) Commit() error {
	if s.format == FormatVHD {
		f, err := vhd.NewFixedFooter(s.size)
		if err != nil {
			s.Abort()
			return err
		}
		b, err := f.MarshalBinary()
		if err != nil {
			s.Abort()
			return err
		}
		if _, err := s.f.WriteAt(b, s.size); err != nil {
			s.Abort()
			return fmt.Errorf("%s: writing the VHD footer: %w", s.path, err)
		}
	}
	if err := s.f.Sync(); err != nil {
		s.Abort()
		return err
	}
	if err := s.f.Close(); err != nil {
		os.Remove(s.tmp)
		return err
	}
	if err := os.Rename(s.tmp, s.path); err != nil {
		os.Remove(s.tmp)
		return err
	}
	return nil
}

// Abort removes the partial output.
func (s *FileSink) Abort() error {
	s.f.Close()
	return os.Remove(s.tmp)
}
