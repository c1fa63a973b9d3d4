package blobio

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/luksconv/luksconv/extent"
)

// The resume journal is a text file: a header written once (through a
// temporary file and a rename, so it is whole or absent) and then one line
// per completed write,
//
//	W <offset> <length> <crc32 of "W <offset> <length>", hex>
//
// appended in batches, each batch followed by fsync. A crash can leave the
// last line torn; it is recognised by its missing newline or checksum and
// dropped. A range missing from the journal is simply written again.
const journalMagic = "luksconv-blobio-journal 1"

// Flush the journal after this many records or this long after the last
// flush, whichever comes first.
const (
	journalBatch    = 64
	journalInterval = 2 * time.Second
)

// maxJournalSize bounds what is read back: 64 MiB of records is ~1.5 M
// writes, a 6 TiB disk in 4 MiB chunks.
const maxJournalSize = 64 << 20

type journalHeader struct {
	Size       int64  // disk size, without the footer
	Target     string // host and path of the blob, without the SAS
	Tag        string // the caller's identity of the content
	ZeroFilled bool   // the blob held no data when the journal was created
	Footer     []byte
}

func (h *journalHeader) marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nsize %d\ntarget %s\ntag %s\nzerofilled %t\nfooter %s\nend\n",
		journalMagic, h.Size, strconv.Quote(h.Target), strconv.Quote(h.Tag), h.ZeroFilled, hex.EncodeToString(h.Footer))
	return b.Bytes()
}

// journalError names the journal file and the line.
func journalError(path string, line int, format string, args ...any) error {
	return fmt.Errorf("blobio: journal %s: line %d: %s", path, line, fmt.Sprintf(format, args...))
}

func recordLine(e extent.Range) string {
	s := fmt.Sprintf("W %d %d", e.Off, e.Len)
	return fmt.Sprintf("%s %08x\n", s, crc32.ChecksumIEEE([]byte(s)))
}

// loadJournal reads a journal. It returns the header, the recorded ranges
// and the length of the valid prefix of the file (a torn last line is
// outside it). A missing file gives an error satisfying errors.Is(err, os.ErrNotExist).
func loadJournal(path string) (*journalHeader, []extent.Range, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, 0, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJournalSize+1))
	if err != nil {
		return nil, nil, 0, fmt.Errorf("blobio: journal %s: %w", path, err)
	}
	if len(data) > maxJournalSize {
		return nil, nil, 0, fmt.Errorf("blobio: journal %s: larger than %d bytes", path, maxJournalSize)
	}
	h := &journalHeader{}
	pos, line := 0, 0
	next := func() (string, bool) {
		i := bytes.IndexByte(data[pos:], '\n')
		if i < 0 {
			return "", false
		}
		s := string(data[pos : pos+i])
		pos += i + 1
		line++
		return s, true
	}
	field := func(name string) (string, error) {
		s, ok := next()
		v, ok2 := strings.CutPrefix(s, name+" ")
		if !ok || !ok2 {
			return "", journalError(path, line+1, "header: want %q", name)
		}
		return v, nil
	}
	if s, ok := next(); !ok || s != journalMagic {
		return nil, nil, 0, journalError(path, 1, "not a blobio journal (want %q)", journalMagic)
	}
	var v string
	if v, err = field("size"); err == nil {
		h.Size, err = strconv.ParseInt(v, 10, 64)
	}
	if err == nil {
		if v, err = field("target"); err == nil {
			h.Target, err = strconv.Unquote(v)
		}
	}
	if err == nil {
		if v, err = field("tag"); err == nil {
			h.Tag, err = strconv.Unquote(v)
		}
	}
	if err == nil {
		if v, err = field("zerofilled"); err == nil {
			h.ZeroFilled, err = strconv.ParseBool(v)
		}
	}
	if err == nil {
		if v, err = field("footer"); err == nil {
			h.Footer, err = hex.DecodeString(v)
		}
	}
	if err == nil {
		if s, ok := next(); !ok || s != "end" {
			err = errors.New(`header: want "end"`)
		}
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "blobio:") {
			return nil, nil, 0, err
		}
		return nil, nil, 0, journalError(path, line, "%v", err)
	}
	if h.Size <= 0 || h.Size%PageSize != 0 || len(h.Footer) != PageSize {
		return nil, nil, 0, journalError(path, 2, "header: bad size %d or footer length %d", h.Size, len(h.Footer))
	}

	var recs []extent.Range
	for pos < len(data) {
		start := pos
		s, ok := next()
		if !ok {
			return h, recs, int64(start), nil // torn last line: no newline
		}
		e, perr := parseRecord(s, h.Size)
		if perr != nil {
			if pos == len(data) {
				return h, recs, int64(start), nil // torn last line: garbled
			}
			return nil, nil, 0, journalError(path, line, "%v", perr)
		}
		recs = append(recs, e)
	}
	return h, recs, int64(pos), nil
}

func parseRecord(s string, size int64) (extent.Range, error) {
	f := strings.Fields(s)
	if len(f) != 4 || f[0] != "W" {
		return extent.Range{}, fmt.Errorf("malformed record %q", s)
	}
	body := strings.Join(f[:3], " ")
	sum, err := strconv.ParseUint(f[3], 16, 32)
	if err != nil || uint32(sum) != crc32.ChecksumIEEE([]byte(body)) {
		return extent.Range{}, fmt.Errorf("record %q: checksum mismatch", s)
	}
	off, err1 := strconv.ParseInt(f[1], 10, 64)
	n, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || off < 0 || n <= 0 || off%PageSize != 0 || n%PageSize != 0 || n > size || off > size-n {
		return extent.Range{}, fmt.Errorf("record %q: range outside the %d-byte disk or not 512-aligned", s, size)
	}
	return extent.Range{Off: off, Len: n}, nil
}

// journal appends records to an open journal file.
type journal struct {
	path    string
	mu      sync.Mutex
	f       *os.File
	pending []extent.Range
	last    time.Time
	err     error // sticky: once a flush failed, the file's tail is unknown
}

// createJournal writes a new journal holding only h, atomically.
func createJournal(path string, h *journalHeader) (*journal, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("blobio: journal %s: %w", path, err)
	}
	_, err = tmp.Write(h.marshal())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("blobio: journal %s: %w", path, err)
	}
	syncDir(dir)
	return appendJournal(path, -1)
}

// appendJournal opens a journal for appending after cutting it to validLen
// bytes (dropping a torn last line); -1 keeps it whole.
func appendJournal(path string, validLen int64) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("blobio: journal %s: %w", path, err)
	}
	if validLen >= 0 {
		if err := f.Truncate(validLen); err != nil {
			f.Close()
			return nil, fmt.Errorf("blobio: journal %s: %w", path, err)
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("blobio: journal %s: %w", path, err)
	}
	return &journal{path: path, f: f, last: time.Now()}, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: not every file system syncs directories
		d.Close()
	}
}

// add records a completed range; it reaches the disk with the next flush.
func (j *journal) add(e extent.Range) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	j.pending = append(j.pending, e)
	if len(j.pending) >= journalBatch || time.Since(j.last) >= journalInterval {
		return j.flushLocked()
	}
	return nil
}

func (j *journal) flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.flushLocked()
}

func (j *journal) flushLocked() error {
	if j.err != nil || j.f == nil {
		return j.err
	}
	j.last = time.Now()
	if len(j.pending) == 0 {
		return nil
	}
	var b strings.Builder
	for _, e := range j.pending {
		b.WriteString(recordLine(e))
	}
	_, err := j.f.WriteString(b.String())
	if err == nil {
		err = j.f.Sync()
	}
	if err != nil {
		j.err = fmt.Errorf("blobio: journal %s: %w", j.path, err)
		return j.err
	}
	j.pending = j.pending[:0]
	return nil
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := j.flushLocked()
	if j.f != nil {
		if cerr := j.f.Close(); err == nil {
			err = cerr
		}
		j.f = nil
	}
	if j.err == nil {
		j.err = fmt.Errorf("blobio: journal %s: closed", j.path)
	}
	return err
}
