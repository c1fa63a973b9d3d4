// Package initramfs reads and rewrites Linux initramfs images the way the kernel unpacks them
// (init/initramfs.c unpack_to_rootfs): a sequence of zero padding, uncompressed newc/crc cpio archives
// and compressed streams that themselves hold one or more cpio archives.
//
// The cpio layer (Header, Entry, Reader, Writer) keeps every header field, including the device and
// rdev numbers and the inode/nlink pairs that hard links depend on, so a rewrite loses nothing.
// Parse models the whole image as Segments; Rewrite rebuilds it with files removed or replaced, keeping
// the same compression per segment and the kernel's constraints (xz with a CRC32 check, legacy lz4).
// ParseContext and Rewrite stop with the context's error when it ends.
//
// ADEEdit removes Azure Disk Encryption's files from an image and rewrites the copies of guest files
// dracut put there, but the rules for what is ADE's are the guest package's (guest.ADEInitramfsFile
// for ADE's own files; guest.FixCrypttab, FixFstab, FixLVMConf, FixDracutCmdline,
// FixDracutModulesList and FixDracutBuildParameters for the copies): ADEEdit applies them with the
// caller's guest.Policy, so the converted guest and its initramfs agree. What it adds of its own is
// where dracut puts those copies, and the findings about what no edit can fix (a 90crypt patched by
// ADE, other hooks naming osencrypt).
package initramfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

const (
	magicNewc = "070701"
	magicCRC  = "070702"

	headerLen = 110
	// pathMax is the kernel's PATH_MAX: do_header ignores names and symlink targets longer than this,
	// so a larger claim is treated as corruption rather than allocated.
	pathMax = 4096

	trailerName = "TRAILER!!!"

	// DefaultMaxFileSize bounds the data of one entry read by a Reader unless Reader.MaxFileSize says
	// otherwise. The newc size field is 32 bits, so nothing larger than 4 GiB-1 can be described anyway.
	DefaultMaxFileSize = 1 << 30
)

// File type bits of Header.Mode (the st_mode layout cpio copies verbatim).
const (
	ModeType    = 0o170000 // mask of the file type bits
	ModeDir     = 0o040000 // directory
	ModeRegular = 0o100000 // regular file
	ModeSymlink = 0o120000 // symbolic link
	ModeChar    = 0o020000 // character device
	ModeBlock   = 0o060000 // block device
	ModeFIFO    = 0o010000 // named pipe
	ModeSocket  = 0o140000 // socket
)

// Header mirrors a cpio newc ("070701") / crc ("070702") header; every field is kept so a rewrite
// loses nothing. The fields appear in this order on disk, each as eight ASCII hex digits after the
// six-byte magic.
type Header struct {
	Magic                             string // "070701" or "070702"
	Ino, Mode, UID, GID, NLink, MTime uint32 // inode number, st_mode, owner, group, links, mtime (Unix seconds)
	FileSize                          uint32 // bytes of data
	DevMajor, DevMinor                uint32 // device the file was on (with Ino, identifies hard links)
	RDevMajor, RDevMinor              uint32 // device number of a character or block device node
	NameSize                          uint32 // length of Name plus its NUL
	Check                             uint32 // crc format: sum of the data bytes; newc: 0
	Name                              string // path as stored, without the NUL (normally relative: "usr/bin/sh")
}

// Entry is one cpio member: its header and its data (file content, or the target of a symlink).
type Entry struct {
	Header
	Data []byte // FileSize bytes; a Reader leaves it nil when FileSize is 0
	// Offset is the byte offset of the header: within the image for an uncompressed segment, within
	// the decompressed stream for a compressed one, within the input for a Reader. Writers ignore it.
	Offset int64
}

// IsDir reports whether Mode describes a directory.
func (h *Header) IsDir() bool { return h.Mode&ModeType == ModeDir }

// IsRegular reports whether Mode describes a regular file.
func (h *Header) IsRegular() bool { return h.Mode&ModeType == ModeRegular }

// IsSymlink reports whether Mode describes a symbolic link (whose target is the entry's data).
func (h *Header) IsSymlink() bool { return h.Mode&ModeType == ModeSymlink }

// Checksum returns the crc-format check value of data: the 32-bit sum of its bytes.
func Checksum(data []byte) uint32 {
	var s uint32
	for _, b := range data {
		s += uint32(b)
	}
	return s
}

// padLen returns the zero bytes that follow n bytes written from a 4-aligned start.
func padLen(n int64) int64 { return (4 - n&3) & 3 }

// decodeHeader parses the 110-byte ASCII header at offset off. It is the one place where header fields
// are validated; the name and data are checked against it by the callers.
func decodeHeader(b []byte, off int64) (Header, error) {
	var h Header
	h.Magic = string(b[:6])
	switch h.Magic {
	case magicNewc, magicCRC:
	case "070707":
		return h, fmt.Errorf("cpio: header at offset %d: old portable (odc) format, the kernel needs newc", off)
	default:
		return h, fmt.Errorf("cpio: header at offset %d: bad magic %q", off, b[:6])
	}
	fields := []*uint32{&h.Ino, &h.Mode, &h.UID, &h.GID, &h.NLink, &h.MTime, &h.FileSize,
		&h.DevMajor, &h.DevMinor, &h.RDevMajor, &h.RDevMinor, &h.NameSize, &h.Check}
	for i, f := range fields {
		s := b[6+8*i : 14+8*i]
		v, err := strconv.ParseUint(string(s), 16, 32)
		if err != nil {
			return h, fmt.Errorf("cpio: header at offset %d: field %d is not hex: %q", off, i+1, s)
		}
		*f = uint32(v)
	}
	if h.NameSize == 0 || h.NameSize > pathMax {
		return h, fmt.Errorf("cpio: header at offset %d: name size %d out of range 1..%d", off, h.NameSize, pathMax)
	}
	if h.IsSymlink() && h.FileSize > pathMax {
		return h, fmt.Errorf("cpio: header at offset %d: symlink target size %d exceeds %d", off, h.FileSize, pathMax)
	}
	return h, nil
}

// parseName checks the NUL-terminated name read for h (the kernel rejects a missing terminator as
// "malformed archive"; an embedded NUL would silently shorten the name).
func parseName(b []byte, off int64) (string, error) {
	if b[len(b)-1] != 0 {
		return "", fmt.Errorf("cpio: entry at offset %d: name is not NUL-terminated", off)
	}
	name := b[:len(b)-1]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		return "", fmt.Errorf("cpio: entry at offset %d: name %q contains NUL", off, name[:i])
	}
	return string(name), nil
}

// Reader walks one cpio archive from an io.Reader, entry by entry, up to its TRAILER!!! entry. It reads
// exactly the bytes of the archive (no read-ahead), so the underlying reader is positioned just after the
// trailer's padding when Next returns io.EOF. Offsets count from the first byte read, which is assumed
// to be 4-byte aligned as the format requires.
type Reader struct {
	r   io.Reader
	off int64
	err error
	// MaxFileSize bounds the data of one entry; 0 means DefaultMaxFileSize.
	MaxFileSize int64
}

// NewReader returns a Reader reading an archive from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Offset returns the number of bytes consumed so far: after io.EOF, the archive length including the
// trailer and its padding.
func (r *Reader) Offset() int64 { return r.off }

func (r *Reader) readFull(b []byte, what string, entryOff int64) error {
	n, err := io.ReadFull(r.r, b)
	r.off += int64(n)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("cpio: entry at offset %d: truncated %s at offset %d: %w", entryOff, what, r.off, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("cpio: entry at offset %d: reading %s: %w", entryOff, what, err)
	}
	return nil
}

// Next returns the next entry. It returns io.EOF after the TRAILER!!! entry (which is not returned), and
// an error wrapping io.ErrUnexpectedEOF if the input ends before the trailer.
func (r *Reader) Next() (*Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	e, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	return e, nil
}

func (r *Reader) next() (*Entry, error) {
	start := r.off
	var hb [headerLen]byte
	n, err := io.ReadFull(r.r, hb[:])
	r.off += int64(n)
	if err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("cpio: missing %s at offset %d: %w", trailerName, start, io.ErrUnexpectedEOF)
		}
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("cpio: truncated header at offset %d: %w", start, err)
		}
		return nil, fmt.Errorf("cpio: reading header at offset %d: %w", start, err)
	}
	h, err := decodeHeader(hb[:], start)
	if err != nil {
		return nil, err
	}
	// Name plus padding so that the data starts 4-aligned (the kernel's N_ALIGN).
	nb := make([]byte, int64(h.NameSize)+padLen(headerLen+int64(h.NameSize)))
	if err := r.readFull(nb, "name", start); err != nil {
		return nil, err
	}
	h.Name, err = parseName(nb[:h.NameSize], start)
	if err != nil {
		return nil, err
	}
	max := r.MaxFileSize
	if max <= 0 {
		max = DefaultMaxFileSize
	}
	if int64(h.FileSize) > max {
		return nil, fmt.Errorf("cpio: entry %q at offset %d: file size %d exceeds limit %d", h.Name, start, h.FileSize, max)
	}
	// ReadAll through a LimitReader grows with the data actually present, so a lying size field on a
	// short input costs nothing.
	data, err := io.ReadAll(io.LimitReader(r.r, int64(h.FileSize)))
	r.off += int64(len(data))
	if err != nil {
		return nil, fmt.Errorf("cpio: entry %q at offset %d: reading data: %w", h.Name, start, err)
	}
	if len(data) != int(h.FileSize) {
		return nil, fmt.Errorf("cpio: entry %q at offset %d: truncated data (%d of %d bytes): %w", h.Name, start, len(data), h.FileSize, io.ErrUnexpectedEOF)
	}
	var pad [3]byte
	if err := r.readFull(pad[:padLen(int64(h.FileSize))], "data padding", start); err != nil {
		return nil, err
	}
	if h.Name == trailerName {
		return nil, io.EOF
	}
	if h.FileSize == 0 {
		data = nil
	}
	return &Entry{Header: h, Data: data, Offset: start}, nil
}

// Writer writes a newc/crc cpio archive: each header with all fields as given, the name and data padded
// to 4 bytes, and a TRAILER!!! entry on Close. Alignment is relative to the first byte written.
type Writer struct {
	w      io.Writer
	off    int64
	closed bool
	magic  string // of the first entry, reused for the trailer (GNU cpio -i wants them alike)
}

// NewWriter returns a Writer writing an archive to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

var errWriterClosed = errors.New("cpio: write to closed Writer")

// WriteEntry writes e. An empty Magic means "070701"; zero NameSize and FileSize are filled in from Name
// and Data, non-zero ones must match them. The crc-format Check is written as given (see Checksum).
func (w *Writer) WriteEntry(e *Entry) error {
	if w.closed {
		return errWriterClosed
	}
	h := e.Header
	if h.Name == "" || h.Name == trailerName {
		return fmt.Errorf("cpio: cannot write entry named %q", h.Name)
	}
	if err := w.write(&h, e.Data); err != nil {
		return err
	}
	if w.magic == "" {
		w.magic = h.Magic
	}
	return nil
}

func (w *Writer) write(h *Header, data []byte) error {
	if h.Magic == "" {
		h.Magic = magicNewc
	}
	if h.Magic != magicNewc && h.Magic != magicCRC {
		return fmt.Errorf("cpio: entry %q: unsupported magic %q", h.Name, h.Magic)
	}
	if strings.IndexByte(h.Name, 0) >= 0 {
		return fmt.Errorf("cpio: entry %q: name contains NUL", h.Name)
	}
	nameSize := uint64(len(h.Name)) + 1
	if nameSize > pathMax {
		return fmt.Errorf("cpio: entry %q: name longer than %d bytes", h.Name, pathMax-1)
	}
	if h.NameSize == 0 {
		h.NameSize = uint32(nameSize)
	} else if uint64(h.NameSize) != nameSize {
		return fmt.Errorf("cpio: entry %q: NameSize %d does not match name length %d+1", h.Name, h.NameSize, len(h.Name))
	}
	if uint64(len(data)) > 1<<32-1 {
		return fmt.Errorf("cpio: entry %q: data larger than 4 GiB-1", h.Name)
	}
	if h.FileSize == 0 {
		h.FileSize = uint32(len(data))
	} else if int64(h.FileSize) != int64(len(data)) {
		return fmt.Errorf("cpio: entry %q: FileSize %d does not match %d data bytes", h.Name, h.FileSize, len(data))
	}
	buf := make([]byte, 0, headerLen+len(h.Name)+4)
	buf = append(buf, h.Magic...)
	for _, v := range []uint32{h.Ino, h.Mode, h.UID, h.GID, h.NLink, h.MTime, h.FileSize,
		h.DevMajor, h.DevMinor, h.RDevMajor, h.RDevMinor, h.NameSize, h.Check} {
		buf = fmt.Appendf(buf, "%08X", v)
	}
	buf = append(buf, h.Name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, padLen(int64(len(buf))))...)
	if err := w.emit(buf); err != nil {
		return err
	}
	if err := w.emit(data); err != nil {
		return err
	}
	return w.emit(make([]byte, padLen(int64(len(data)))))
}

func (w *Writer) emit(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := w.w.Write(b)
	w.off += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: write at offset %d: %w", w.off, err)
	}
	return nil
}

// Close writes the TRAILER!!! entry as GNU cpio does: all fields zero but nlink 1, with the magic of the
// first entry. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	err := w.write(&Header{Magic: w.magic, NLink: 1, Name: trailerName}, nil)
	w.closed = true
	return err
}
