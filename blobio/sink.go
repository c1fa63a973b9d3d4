package blobio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/vhd"
)

// zeroGap is the shortest run of zero pages inside a write that is left out
// of the Put Pages around it. Shorter runs are sent as data: one more request
// costs more than 256 KiB (a page blob takes about 500 requests/s at about
// 60 MiB/s, i.e. ~120 KiB per request).
const zeroGap = 256 << 10

// destinationWindow is the Get Page Ranges window for the destination check:
// a new or mostly empty blob lists quickly.
const destinationWindow = 64 << 30

// SinkOptions configure CreatePageBlobSink. The zero value is usable.
type SinkOptions struct {
	// Workers is the number of WriteAt calls expected at once; it sizes the
	// connection pool (default DefaultWorkers).
	Workers int
	// Retry tunes retries and the per-attempt timeout.
	Retry RetryOptions
	// Journal, if set, is a local file recording completed writes, so that
	// a run interrupted by a crash, a cancellation or an expired SAS can be
	// started again and skip what is done (see Sink.Done). It is created if
	// absent and must belong to the same blob, size and JournalTag if present.
	Journal string
	// JournalTag identifies the content being written (for example a hash of
	// the conversion plan). A journal with another tag is refused, so a
	// journal is never applied to a different image.
	JournalTag string
	// JournalRetarget accepts a journal written for another URL (host and
	// path), for when the same disk is reached through a new grant-access URL.
	JournalRetarget bool
	// Footer is the 512-byte fixed VHD footer Commit writes after the disk
	// (default: vhd.FixedFooterBytes(size)). With a journal, the footer is
	// stored in it, so a resumed run writes the same footer.
	Footer []byte
	// Bearer, if set, adds an Entra token to every request (a disk or
	// snapshot with dataAccessAuthMode=AzureActiveDirectory).
	Bearer *Bearer
	// Transport replaces the http.Transport made by NewTransport(Workers).
	Transport http.RoundTripper
	// Logf receives warnings and retry notices, already redacted
	// (default: log.Printf).
	Logf func(format string, args ...any)
	// HoldsData says the blob already holds a disk that this upload updates
	// in place (an earlier pass's output, into which a luksconv.Delta plan
	// is executed). The blob must exist, and it is never taken for empty:
	// ZeroFilled is false and zero pages are cleared.
	HoldsData bool
	// Empty says the caller created the blob just now (a new upload disk)
	// and it holds no data: ZeroFilled is true without a page list. An
	// existing blob without Empty, HoldsData or a journal is listed, and
	// taken for holding data when its page list cannot be read.
	Empty bool
}

// Sink writes a disk image into a page blob through a SAS URL: the disk's
// size bytes, then on Commit a fixed VHD footer in the last 512 bytes, so the
// blob is size+512 bytes long, as a managed-disk direct upload requires
// (UploadSizeBytes = DiskSizeBytes+512). It is safe for concurrent use.
type Sink struct {
	c          *conn
	ctx        context.Context
	size       int64
	created    bool
	zeroFilled bool
	footer     []byte
	jr         *journal

	mu      sync.Mutex
	done    extentSet
	resumed int64

	written, cleared, skipped atomic.Int64
	// noClear: the destination refused Put Page's clear, so zero pages are written as data (clear).
	noClear   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// SinkStats counts a Sink's work.
type SinkStats struct {
	Requests int64 // HTTP requests, retries included
	Retries  int64 // attempts that failed and were retried
	// BytesWritten were sent with Put Page; BytesCleared were zeroed with
	// Put Page's clear operation; BytesSkipped were all-zero pages not sent
	// to a zero-filled blob (or not handed over at all, via MarkDone).
	BytesWritten, BytesCleared, BytesSkipped int64
	// BytesResumed is what the journal listed as done when the Sink opened.
	BytesResumed int64
}

// CreatePageBlobSink opens the page blob at sasURL for writing a disk of
// size bytes (a positive multiple of 512).
//
// If the blob exists, as a managed disk's upload URL does, it must be a page
// blob of exactly size+512 bytes; it is not recreated. If it does not exist
// (a storage account, Azurite), it is created with that length. ctx bounds
// the life of the Sink: WriteAt uses it for its requests.
//
// Without a journal, or with a new one, an existing blob's page list is read
// to learn whether it is empty (a fresh upload disk is). All-zero pages are
// skipped only on an empty blob; on one that already holds data they are
// cleared, so the result is right either way, and its footer page is cleared
// until Commit. A blob known to hold data (SinkOptions.HoldsData) is not
// listed: it is taken as holding data.
func CreatePageBlobSink(ctx context.Context, sasURL string, size int64, opts SinkOptions) (*Sink, error) {
	if size <= 0 || size%PageSize != 0 {
		return nil, fmt.Errorf("blobio: disk size %d is not a positive multiple of %d", size, PageSize)
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	c, err := newConn(sasURL, workers, opts.Transport, opts.Retry, opts.Bearer, opts.Logf)
	if err != nil {
		return nil, err
	}
	s := &Sink{c: c, ctx: ctx, size: size}
	if err := s.open(ctx, sasURL, workers, opts); err != nil {
		if s.jr != nil {
			s.jr.close()
		}
		c.close()
		return nil, err
	}
	return s, nil
}

func (s *Sink) open(ctx context.Context, sasURL string, workers int, opts SinkOptions) error {
	c := s.c
	blobLen := s.size + PageSize

	exists := true
	var props blob.GetPropertiesResponse
	err := c.do(ctx, "get properties", 0, 0, 0, func(ctx context.Context) (err error) {
		props, err = c.client.GetProperties(ctx, nil)
		return err
	})
	if err != nil {
		if HTTPStatus(err) != http.StatusNotFound {
			return err
		}
		exists = false
	} else {
		if props.BlobType != nil && *props.BlobType != blob.BlobTypePageBlob {
			return c.red.newError("open", c.url, 0, 0, 1, fmt.Errorf("%w: blob type is %s, not a page blob", errPermanent, *props.BlobType))
		}
		if props.ContentLength == nil || *props.ContentLength != blobLen {
			got := int64(-1)
			if props.ContentLength != nil {
				got = *props.ContentLength
			}
			return c.red.newError("open", c.url, 0, 0, 1, fmt.Errorf(
				"blob is %d bytes; a %d-byte disk needs %d (the disk and a 512-byte VHD footer; for a managed disk, UploadSizeBytes = DiskSizeBytes+512)",
				got, s.size, blobLen))
		}
	}

	// The footer: the caller's, the journal's, or a new one.
	footer := opts.Footer
	var hdr *journalHeader
	var recs []extent.Range
	validLen := int64(-1)
	if opts.Journal != "" {
		hdr, recs, validLen, err = loadJournal(opts.Journal)
		switch {
		case errors.Is(err, os.ErrNotExist):
			hdr = nil
		case err != nil:
			return err
		default:
			if err := checkJournal(opts, hdr, s.size, blobTarget(sasURL)); err != nil {
				return err
			}
			if !exists && len(recs) > 0 {
				return fmt.Errorf("%w: %s lists completed writes but the blob %s does not exist; delete the journal to start over",
					ErrJournalMismatch, opts.Journal, c.url)
			}
			if footer != nil && !bytes.Equal(footer, hdr.Footer) {
				return fmt.Errorf("%w: %s holds another VHD footer than SinkOptions.Footer", ErrJournalMismatch, opts.Journal)
			}
			footer = hdr.Footer
		}
	}
	if footer == nil {
		if footer, err = vhd.FixedFooterBytes(s.size); err != nil {
			return err
		}
	}
	if err := checkFooter(footer, s.size); err != nil {
		return err
	}
	s.footer = bytes.Clone(footer)

	switch {
	case !exists && opts.HoldsData:
		return c.red.newError("open", c.url, 0, 0, 1, fmt.Errorf(
			"%w: the blob does not exist, but it should hold the disk an earlier pass wrote (SinkOptions.HoldsData)", errPermanent))
	case !exists:
		err = c.do(ctx, "create", 0, blobLen, 0, func(ctx context.Context) error {
			_, err := c.client.Create(ctx, blobLen, &pageblob.CreateOptions{AccessConditions: &blob.AccessConditions{
				// Never replace a blob someone created meanwhile.
				ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to(azcore.ETagAny)},
			}})
			return err
		})
		if err != nil {
			return err
		}
		s.created, s.zeroFilled = true, true
	case hdr != nil:
		// The journal was made when this upload began and recorded then
		// whether the blob was empty; every page since came from this upload.
		if hdr.ZeroFilled && opts.HoldsData {
			// Its records count zero pages skipped, not cleared, as done.
			return fmt.Errorf("%w: %s was made for a blob that held no data, but this one holds an earlier pass's disk (SinkOptions.HoldsData)",
				ErrJournalMismatch, opts.Journal)
		}
		s.zeroFilled = hdr.ZeroFilled
	case opts.HoldsData:
		s.zeroFilled = false
	case opts.Empty:
		s.zeroFilled = true
	default:
		s.zeroFilled = s.checkEmpty(ctx, workers)
		if ctx.Err() != nil {
			return c.red.newError("get page ranges", c.url, 0, s.size, 1, ctx.Err())
		}
	}
	if exists && !s.zeroFilled && hdr == nil {
		// The blob holds data, perhaps a complete disk with an earlier pass's
		// footer. Until Commit writes this upload's footer, the blob must not
		// look like a complete disk while its pages are half rewritten (the
		// luksconv.Output contract), so the footer page is cleared first. A
		// rerun that resumes the journal need not: the run that made the
		// journal cleared it before making it.
		if err := s.zero(s.size, PageSize, false); err != nil {
			return err
		}
	}

	if opts.Journal != "" {
		if hdr == nil {
			s.jr, err = createJournal(opts.Journal, &journalHeader{Size: s.size, Target: blobTarget(sasURL),
				Tag: opts.JournalTag, ZeroFilled: s.zeroFilled, Footer: s.footer})
		} else {
			s.jr, err = appendJournal(opts.Journal, validLen)
		}
		if err != nil {
			return err
		}
		for _, e := range recs {
			s.done.add(e.Off, e.Len)
		}
		s.resumed = s.done.total()
	}
	return nil
}

// checkEmpty reports whether the existing blob holds no data in the disk
// area. If the page list cannot be read, it assumes the blob holds data
// (zero ranges are then cleared, not skipped) and warns: skipping would
// leave whatever the blob held where the disk has zeros.
func (s *Sink) checkEmpty(ctx context.Context, workers int) bool {
	ext, err := s.c.pageRanges(ctx, s.size, destinationWindow, min(workers, 8))
	if err != nil {
		if ctx.Err() == nil {
			s.c.logf("warning: %v; taking the destination for one that holds data: zero ranges will be cleared, not skipped", err)
		}
		return false
	}
	var n int64
	for _, e := range ext {
		n += e.Len
	}
	if n > 0 {
		s.c.logf("warning: the destination %s already holds %d bytes of data (first at byte %d); zero ranges will be cleared, not skipped",
			s.c.url, n, ext[0].Off)
		return false
	}
	return true
}

func checkJournal(opts SinkOptions, h *journalHeader, size int64, target string) error {
	switch {
	case h.Size != size:
		return fmt.Errorf("%w: %s is for a %d-byte disk, not %d", ErrJournalMismatch, opts.Journal, h.Size, size)
	case h.Tag != opts.JournalTag:
		return fmt.Errorf("%w: %s is for content tagged %q, not %q", ErrJournalMismatch, opts.Journal, h.Tag, opts.JournalTag)
	case h.Target != target && !opts.JournalRetarget:
		return fmt.Errorf("%w: %s is for %s, not %s (set JournalRetarget if this is the same disk under a new URL)",
			ErrJournalMismatch, opts.Journal, h.Target, target)
	}
	return nil
}

// checkFooter accepts only a fixed VHD footer for exactly size bytes.
func checkFooter(b []byte, size int64) error {
	f, err := vhd.ParseFooter(b)
	if err != nil {
		return fmt.Errorf("blobio: VHD footer: %w", err)
	}
	if f.DiskType != vhd.TypeFixed || f.CurrentSize != uint64(size) {
		return fmt.Errorf("blobio: VHD footer is for a type-%d disk of %d bytes, not a fixed disk of %d", f.DiskType, f.CurrentSize, size)
	}
	return nil
}

// blobTarget is the blob's identity without its SAS: host and path.
func blobTarget(sasURL string) string {
	u, err := url.Parse(sasURL)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host) + u.EscapedPath()
}

func to[T any](v T) *T { return &v }

// Size is the disk size: the blob is Size()+512 bytes.
func (s *Sink) Size() int64 { return s.size }

// URL is the blob's URL with the SAS signature redacted.
func (s *Sink) URL() string { return s.c.url }

// Created reports whether this Sink created the blob.
func (s *Sink) Created() bool { return s.created }

// ZeroFilled reports whether every byte not written reads as zero: true for
// a blob this Sink created and for an existing blob that held no data when
// the upload began (a new managed disk in ActiveUpload). When it is true,
// callers may skip all-zero chunks, and WriteAt skips all-zero pages itself.
func (s *Sink) ZeroFilled() bool { return s.zeroFilled }

// Footer returns the VHD footer Commit writes.
func (s *Sink) Footer() []byte { return bytes.Clone(s.footer) }

// Stats returns the counters so far.
func (s *Sink) Stats() SinkStats {
	return SinkStats{Requests: s.c.requests.Load(), Retries: s.c.retries.Load(),
		BytesWritten: s.written.Load(), BytesCleared: s.cleared.Load(), BytesSkipped: s.skipped.Load(),
		BytesResumed: s.resumed}
}

// Done reports whether every byte of [off, off+n) was written, by this run
// or by an earlier run recorded in the journal. A caller resuming an upload
// skips the chunks for which Done is true; it must produce the same bytes as
// the earlier run for the others (same plan, same source).
func (s *Sink) Done(off, n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done.covers(off, n)
}

// MarkDone records [off, off+n) as complete without writing it. It is for
// all-zero chunks a caller does not hand to WriteAt, so that a resumed run
// need not read them again; it is refused when the blob is not ZeroFilled.
func (s *Sink) MarkDone(off, n int64) error {
	if err := s.checkRange(off, n); err != nil {
		return err
	}
	if !s.zeroFilled {
		return fmt.Errorf("blobio: MarkDone of bytes [%d, %d): the destination is not zero-filled, zeros must be written", off, off+n)
	}
	s.skipped.Add(n)
	return s.complete(off, n)
}

func (s *Sink) checkRange(off, n int64) error {
	if off < 0 || n < 0 || off > s.size-n {
		return fmt.Errorf("blobio: write of %d bytes at %d is outside the %d-byte disk", n, off, s.size)
	}
	if off%PageSize != 0 || n%PageSize != 0 {
		return fmt.Errorf("%w: %d bytes at %d", ErrUnaligned, n, off)
	}
	return nil
}

func (s *Sink) complete(off, n int64) error {
	s.mu.Lock()
	s.done.add(off, n)
	s.mu.Unlock()
	if s.jr != nil {
		return s.jr.add(extent.Range{Off: off, Len: n})
	}
	return nil
}

// WriteAt writes p at off, both multiples of 512, inside the disk (the
// footer's page belongs to Commit). It sends Put Page requests of at most
// 4 MiB, leaves out runs of zero pages when the blob is ZeroFilled (clears
// them otherwise), and records the range in the journal once all of it is
// stored. On error, the bytes before the returned count are stored.
func (s *Sink) WriteAt(p []byte, off int64) (int, error) {
	n := int64(len(p))
	if err := s.checkRange(off, n); err != nil {
		return 0, err
	}
	if err := s.ctx.Err(); err != nil {
		return 0, s.c.red.newError("write", s.c.url, off, n, 0, err)
	}
	for _, r := range pageRuns(p, zeroGap) {
		end := r.Off + r.Len
		switch {
		case r.zero && s.zeroFilled:
			s.skipped.Add(r.Len)
		case r.zero:
			if err := s.clear(r.Off+off, r.Len); err != nil {
				return int(r.Off), err
			}
		default:
			for o := r.Off; o < end; o += MaxPutPage {
				m := min(MaxPutPage, end-o)
				if err := s.put(p[o:o+m], off+o); err != nil {
					return int(o), err
				}
			}
		}
	}
	if err := s.complete(off, n); err != nil {
		return len(p), err
	}
	return len(p), nil
}

// put stores one Put Page of at most 4 MiB, counted in BytesWritten.
func (s *Sink) put(b []byte, off int64) error {
	err := s.putPage(b, off)
	if err == nil {
		s.written.Add(int64(len(b)))
	}
	return err
}

// putPage stores one Put Page of at most 4 MiB.
func (s *Sink) putPage(b []byte, off int64) error {
	return s.c.do(s.ctx, "write", off, int64(len(b)), 0, func(ctx context.Context) error {
		// A fresh reader per attempt: the body is sent again from its start.
		_, err := s.c.client.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(b)),
			blob.HTTPRange{Offset: off, Count: int64(len(b))}, nil)
		return err
	})
}

// clear zeroes pages of a blob that is not zero-filled, counted in the stats (zero).
func (s *Sink) clear(off, n int64) error { return s.zero(off, n, true) }

// zero zeroes pages: with Put Page's clear (counted, if count, in BytesCleared), or, once the
// destination refused that (a managed disk's upload URL is not known to take it in every cloud),
// by writing zero pages (in BytesWritten), which any page blob that takes writes takes.
func (s *Sink) zero(off, n int64, count bool) error {
	if !s.noClear.Load() {
		err := s.c.do(s.ctx, "clear", off, n, 0, func(ctx context.Context) error {
			_, err := s.c.client.ClearPages(ctx, blob.HTTPRange{Offset: off, Count: n}, nil)
			return err
		})
		if err == nil {
			if count {
				s.cleared.Add(n)
			}
			return nil
		}
		if !clearRefused(err) {
			return err
		}
		if s.noClear.CompareAndSwap(false, true) {
			s.c.logf("blobio: warning: the destination refuses Put Page's clear (%v): zero pages are written as data from now on", err)
		}
	}
	for o := int64(0); o < n; o += MaxPutPage {
		m := min(MaxPutPage, n-o)
		if err := s.putPage(zeroes()[:m], off+o); err != nil {
			return err
		}
		if count {
			s.written.Add(m)
		}
	}
	return nil
}

// zeroes is the data of zero pages written in place of a clear: MaxPutPage bytes, read only, made
// the first time a destination refuses a clear rather than in every process that imports blobio.
var zeroes = sync.OnceValue(func() []byte { return make([]byte, MaxPutPage) })

// clearRefused reports whether err is Azure refusing the clear operation itself (400, 403 other
// than an authentication failure, 405, 501), which writing the zeros may get past; any other error
// (a missing blob, a lease, the network) would stop a write as well.
func clearRefused(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch status, code := e.StatusCode, e.Code; status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return true
	case http.StatusForbidden:
		return code != "AuthenticationFailed"
	}
	return false
}

// run is a part of a write: all zero pages or data.
type run struct {
	Off, Len int64
	zero     bool
}

var zeroPage [PageSize]byte

// pageRuns cuts p (a whole number of pages) into runs of data and runs of
// zero pages. Zero runs shorter than minGap between two data runs are folded
// into the data; zero runs at either end are kept whatever their length.
func pageRuns(p []byte, minGap int64) []run {
	var runs []run
	for o := int64(0); o < int64(len(p)); o += PageSize {
		z := bytes.Equal(p[o:o+PageSize], zeroPage[:])
		if k := len(runs); k > 0 && runs[k-1].zero == z {
			runs[k-1].Len += PageSize
			continue
		}
		runs = append(runs, run{o, PageSize, z})
	}
	out := runs[:0]
	for i, r := range runs {
		inner := i > 0 && i < len(runs)-1
		if r.zero && inner && r.Len < minGap {
			r.zero = false
		}
		if k := len(out); k > 0 && !out[k-1].zero && !r.zero {
			out[k-1].Len += r.Len
			continue
		}
		out = append(out, r)
	}
	return out
}

// Commit flushes the journal, writes the VHD footer into the blob's last 512
// bytes and checks the blob's length and footer by reading them back (the
// read-back is skipped, with a warning, if the SAS does not allow reads). For a
// managed disk, revoking the upload access (end get access) comes next; it
// is what validates the footer on Azure's side.
func (s *Sink) Commit(ctx context.Context) error {
	if s.jr != nil {
		if err := s.jr.flush(); err != nil {
			return err
		}
	}
	off := s.size
	err := s.c.do(ctx, "write footer", off, PageSize, 0, func(ctx context.Context) error {
		_, err := s.c.client.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(s.footer)),
			blob.HTTPRange{Offset: off, Count: PageSize}, nil)
		return err
	})
	if err != nil {
		return err
	}
	var props blob.GetPropertiesResponse
	err = s.c.do(ctx, "get properties", 0, 0, 0, func(ctx context.Context) (err error) {
		props, err = s.c.client.GetProperties(ctx, nil)
		return err
	})
	if err != nil {
		return err
	}
	if props.ContentLength == nil || *props.ContentLength != s.size+PageSize {
		return s.c.red.newError("commit", s.c.url, 0, 0, 1, fmt.Errorf("blob length changed: want %d", s.size+PageSize))
	}
	back := make([]byte, PageSize)
	err = s.c.do(ctx, "read footer", off, PageSize, 0, func(ctx context.Context) error {
		_, err := s.c.get(ctx, back, off)
		return err
	})
	if HTTPStatus(err) == http.StatusForbidden {
		// The write succeeded; a write-only SAS just cannot show it.
		s.c.logf("warning: cannot read back the VHD footer of %s (the SAS does not allow reads); not verified", s.c.url)
		return nil
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(back, s.footer) {
		return s.c.red.newError("commit", s.c.url, off, PageSize, 1, errors.New("the footer read back differs from the one written"))
	}
	return nil
}

// Close flushes and closes the journal and releases idle connections. It
// does not commit. Call it also after a failed or cancelled run, so the
// journal holds everything that was stored.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		if s.jr != nil {
			s.closeErr = s.jr.close()
		}
		s.c.close()
	})
	return s.closeErr
}
