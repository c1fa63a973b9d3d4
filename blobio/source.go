package blobio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/luksconv/luksconv/extent"
)

// DefaultPageRangeWindow is the span of one Get Page Ranges request. The
// service can time out listing a large, fragmented blob in one call, so the
// blob is listed in windows of this size.
const DefaultPageRangeWindow = 1 << 30

// pageRangeTries bounds the attempts of one Get Page Ranges request: the map
// is an optimisation and a failure falls back to reading everything, so it is
// not worth a long series of back-offs.
const pageRangeTries = 3

// MaxBlobSize is the largest blob a Source opens: 64 TiB, the largest managed
// disk. A larger Content-Length is a protocol error.
const MaxBlobSize = 64 << 40

// ErrProtocol means the service answered with something no blob service
// sends: a size beyond MaxBlobSize, page ranges out of order, overlapping or
// outside the blob.
var ErrProtocol = errors.New("blobio: protocol error")

// maxEmptyPages bounds the continuation pages in a row that list no range.
const maxEmptyPages = 16

// maxPageListPages bounds the continuation pages of one window: a window of
// 1 GiB holds at most 2 Mi pages, and each response at least one range.
const maxPageListPages = 1 << 16

// SourceOptions configure OpenPageBlob. The zero value is usable.
type SourceOptions struct {
	// Workers is the number of ReadAt calls expected at once; it sizes the
	// connection pool (default DefaultWorkers) and bounds the concurrent
	// Get Page Ranges requests (at most 8).
	Workers int
	// Retry tunes retries and the per-attempt timeout.
	Retry RetryOptions
	// PageRangeWindow is the span of one Get Page Ranges request, a multiple
	// of 512 (default DefaultPageRangeWindow).
	PageRangeWindow int64
	// Bearer, if set, adds an Entra token to every request (a disk or
	// snapshot with dataAccessAuthMode=AzureActiveDirectory).
	Bearer *Bearer
	// Transport replaces the http.Transport made by NewTransport(Workers).
	Transport http.RoundTripper
	// Logf receives warnings and retry notices, already redacted
	// (default: log.Printf).
	Logf func(format string, args ...any)
}

// Source reads a page blob through a SAS URL. It is an io.ReaderAt, safe for
// concurrent use; each ReadAt is one ranged GET, retried from the first
// missing byte when a response fails or ends early.
type Source struct {
	c        *conn
	ctx      context.Context
	size     int64
	pageBlob bool
	window   int64
	workers  int

	alloc atomic.Pointer[extentSet] // the page map, once Allocated succeeded

	bytesRead, bytesZero atomic.Int64
}

// SourceStats counts a Source's work.
type SourceStats struct {
	Requests int64 // HTTP requests, retries included
	Retries  int64 // attempts that failed and were retried
	// BytesRead came over the network; BytesZero were served as zeros
	// because the page map showed no allocated page there.
	BytesRead, BytesZero int64
}

// OpenPageBlob opens the blob at sasURL (for a snapshot, the AccessSAS from
// grant-access) and reads its size with Get Properties.
//
// ctx bounds the life of the Source: ReadAt uses it for its requests, so
// cancelling ctx makes pending and later reads fail. Snapshot exports are
// immutable, so reads carry no If-Match condition (export URLs reject them).
func OpenPageBlob(ctx context.Context, sasURL string, opts SourceOptions) (*Source, error) {
	workers := opts.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	window := opts.PageRangeWindow
	if window <= 0 {
		window = DefaultPageRangeWindow
	}
	if window%PageSize != 0 {
		return nil, fmt.Errorf("blobio: page range window %d is not a multiple of %d", window, PageSize)
	}
	c, err := newConn(sasURL, workers, opts.Transport, opts.Retry, opts.Bearer, opts.Logf)
	if err != nil {
		return nil, err
	}
	s := &Source{c: c, ctx: ctx, window: window, workers: workers}
	var props blob.GetPropertiesResponse
	err = c.do(ctx, "get properties", 0, 0, 0, func(ctx context.Context) (err error) {
		props, err = c.client.GetProperties(ctx, nil)
		return err
	})
	if err != nil {
		c.close()
		return nil, err
	}
	if props.ContentLength == nil || *props.ContentLength < 0 {
		c.close()
		return nil, c.red.newError("get properties", c.url, 0, 0, 1, errors.New("response has no Content-Length"))
	}
	s.size = *props.ContentLength
	s.pageBlob = props.BlobType != nil && *props.BlobType == blob.BlobTypePageBlob
	if s.size > MaxBlobSize || s.pageBlob && s.size%PageSize != 0 {
		c.close()
		return nil, c.red.newError("get properties", c.url, 0, 0, 1,
			fmt.Errorf("%w: a page blob of %d bytes (at most %d, a multiple of %d)", ErrProtocol, s.size, int64(MaxBlobSize), PageSize))
	}
	return s, nil
}

// Size is the blob's length in bytes. For a managed-disk export it is
// DiskSizeBytes+512: the disk followed by its VHD footer.
func (s *Source) Size() int64 { return s.size }

// URL is the blob's URL with the SAS signature redacted.
func (s *Source) URL() string { return s.c.url }

// Stats returns the counters so far.
func (s *Source) Stats() SourceStats {
	return SourceStats{Requests: s.c.requests.Load(), Retries: s.c.retries.Load(),
		BytesRead: s.bytesRead.Load(), BytesZero: s.bytesZero.Load()}
}

// Close releases idle connections. Reads after Close still work.
func (s *Source) Close() error {
	s.c.close()
	return nil
}

// ReadAt reads len(p) bytes at off with the context given to OpenPageBlob.
// Like any io.ReaderAt it returns io.EOF when the read reaches the end of
// the blob.
func (s *Source) ReadAt(p []byte, off int64) (int, error) {
	return s.ReadAtContext(s.ctx, p, off)
}

// ReadAtContext is ReadAt under ctx.
func (s *Source) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("blobio: read at negative offset %d", off)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), s.size-off)
	if want == 0 {
		return 0, nil
	}
	buf := p[:want]
	if a := s.alloc.Load(); a != nil && !a.overlaps(off, want) {
		clear(buf) // never written: the service would send zeros
		s.bytesZero.Add(want)
	} else if n, err := s.read(ctx, buf, off); err != nil {
		return n, err
	}
	if want < int64(len(p)) {
		return int(want), io.EOF
	}
	return len(p), nil
}

// read fills p from off with ranged GETs. After a failure it asks only for
// the bytes still missing; attempts that delivered bytes do not count
// against MaxTries.
func (s *Source) read(ctx context.Context, p []byte, off int64) (int, error) {
	got, failures, tries := 0, 0, 0
	for got < len(p) {
		tries++
		s.c.requests.Add(1)
		tctx, cancel := context.WithTimeout(ctx, s.c.tryTimeout())
		n, err := s.c.get(tctx, p[got:], off+int64(got))
		if err != nil && ctx.Err() == nil && tctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("%w (%v per attempt)", errTryTimeout, s.c.tryTimeout())
		}
		cancel()
		got += n
		s.bytesRead.Add(int64(n))
		if n > 0 {
			s.c.noteProgress()
		}
		if err == nil {
			continue
		}
		if n > 0 {
			failures = 0
		}
		failures++
		again, ra := retryable(ctx, err)
		if again && s.c.stalled() {
			again, err = false, fmt.Errorf("%w for %v: %w", errNoProgress, s.c.retry.NoProgress, err)
		}
		if !again || failures >= s.c.retry.MaxTries {
			return got, s.c.red.newError("read", s.c.url, off, int64(len(p)), tries, err)
		}
		d := s.c.retry.delay(failures, ra)
		s.c.retries.Add(1)
		s.c.logf("blobio: read of bytes [%d, %d): %v after %d of %d bytes; retrying the rest in %v",
			off, off+int64(len(p)), s.c.red.newError("", "", 0, 0, 0, err).Err, got, len(p), d.Round(time.Millisecond))
		if err := sleep(ctx, d); err != nil {
			return got, s.c.red.newError("read", s.c.url, off, int64(len(p)), tries, err)
		}
	}
	return got, nil
}

// get makes one ranged GET for len(p) bytes at off and reads the body into
// p. It returns how many bytes arrived before any failure.
func (c *conn) get(ctx context.Context, p []byte, off int64) (int, error) {
	resp, err := c.client.DownloadStream(ctx, &blob.DownloadStreamOptions{
		Range: blob.HTTPRange{Offset: off, Count: int64(len(p))},
	})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// A server that ignored the range would send the blob from byte 0.
	if err := checkContentRange(resp.ContentRange, off, int64(len(p))); err != nil {
		return 0, err
	}
	return io.ReadFull(resp.Body, p)
}

// checkContentRange verifies "bytes first-last/total" against the request.
func checkContentRange(cr *string, off, n int64) error {
	if cr == nil {
		return fmt.Errorf("%w: ranged GET answered without Content-Range", errPermanent)
	}
	v, ok := strings.CutPrefix(*cr, "bytes ")
	first, rest, ok2 := strings.Cut(v, "-")
	last, _, ok3 := strings.Cut(rest, "/")
	a, err1 := strconv.ParseInt(first, 10, 64)
	b, err2 := strconv.ParseInt(last, 10, 64)
	if !ok || !ok2 || !ok3 || err1 != nil || err2 != nil || a != off || b != off+n-1 {
		return fmt.Errorf("%w: asked for bytes %d-%d, got Content-Range %q", errPermanent, off, off+n-1, *cr)
	}
	return nil
}

// Allocated returns the byte ranges of the blob that hold written pages,
// sorted and merged; everything else reads as zeros. It lists the blob with
// Get Page Ranges, one window at a time, following continuation markers.
//
// If listing fails, Allocated logs a warning and returns the whole blob as
// one extent ("data everywhere"), which is slower but correct. It returns an
// error only when ctx ends. Once it succeeded, ReadAt answers reads that
// touch no allocated page with zeros without a request.
func (s *Source) Allocated(ctx context.Context) ([]extent.Range, error) {
	whole := []extent.Range{{Off: 0, Len: s.size}}
	if s.size == 0 {
		return nil, nil
	}
	if !s.pageBlob {
		return whole, nil // only page blobs have a page list
	}
	ext, err := s.c.pageRanges(ctx, s.size, s.window, min(s.workers, 8))
	if err != nil {
		if ctx.Err() != nil {
			return nil, s.c.red.newError("get page ranges", s.c.url, 0, s.size, 1, ctx.Err())
		}
		s.c.logf("warning: %v; reading the whole blob instead", err)
		return whole, nil
	}
	s.alloc.Store(&extentSet{ext: ext})
	return slices.Clone(ext), nil
}
