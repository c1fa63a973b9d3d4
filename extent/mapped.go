package extent

import (
	"errors"
	"io"
	"sort"
)

// Mapped is a run of a file's bytes on its device, as a filesystem's block map gives it: file bytes
// [FileOff, FileOff+Len) are device bytes [DiskOff, DiskOff+Len).
type Mapped struct {
	FileOff, DiskOff, Len int64 // offset in the file, offset on the device, length; all in bytes
	// Unwritten runs are allocated but read as zeros (preallocated, or ext4's uninitialized extents).
	Unwritten bool
}

// fileReader reads a file through its block map.
type fileReader struct {
	exts []Mapped
	size int64
	read func(p []byte, off int64) error
}

// NewFileReader reads a file of size bytes whose map is exts (sorted by FileOff, not overlapping):
// holes and unwritten runs read as zeros, the rest through read at device offsets. It is how the
// XFS and ext packages read files.
func NewFileReader(exts []Mapped, size int64, read func(p []byte, off int64) error) io.ReaderAt {
	return &fileReader{exts: exts, size: size, read: read}
}

func (f *fileReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("extent: negative offset")
	}
	if off >= f.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > f.size-off {
		p, eof = p[:f.size-off], io.EOF
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		i := sort.Search(len(f.exts), func(i int) bool { return f.exts[i].FileOff+f.exts[i].Len > pos })
		var chunk int64
		if i == len(f.exts) || f.exts[i].FileOff > pos { // hole
			chunk = int64(len(p) - n)
			if i < len(f.exts) {
				chunk = min(chunk, f.exts[i].FileOff-pos)
			}
			clear(p[n : n+int(chunk)])
		} else {
			e := f.exts[i]
			chunk = min(int64(len(p)-n), e.FileOff+e.Len-pos)
			if e.Unwritten {
				clear(p[n : n+int(chunk)])
			} else if err := f.read(p[n:n+int(chunk)], e.DiskOff+pos-e.FileOff); err != nil {
				return n, err
			}
		}
		n += int(chunk)
	}
	return n, eof
}
