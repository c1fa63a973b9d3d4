package blobio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/vhd"
)

const mib = 1 << 20

// fastRetry keeps fault tests quick; the logic is the same as the defaults'.
var fastRetry = blobio.RetryOptions{MaxTries: 10, TryTimeout: 20 * time.Second, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond}

// env is one Azurite shared by the subtests, with a log sink and every SAS
// signature handed out, to check that none leaks.
type env struct {
	srv  *azurite.Server
	cont string
	mu   sync.Mutex
	logs strings.Builder
	sigs []string
	n    atomic.Int64
}

func newEnv(t *testing.T) *env {
	e := &env{srv: azurite.Start(t), cont: "disks"}
	e.srv.CreateContainer(t, e.cont)
	return e
}

// sas returns a SAS URL for a new blob name and remembers its signature in
// both its escaped and its decoded form.
func (e *env) sas(t *testing.T, name string, perms bool) (string, string) {
	if name == "" {
		name = fmt.Sprintf("disk-%d", e.n.Add(1))
	}
	p := azurite.ReadSAS
	if perms {
		p = azurite.WriteSAS
	}
	u := e.srv.BlobSAS(t, e.cont, name, p, time.Hour)
	e.remember(u)
	return u, name
}

func (e *env) remember(sasURL string) {
	pu, _ := url.Parse(sasURL)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sigs = append(e.sigs, pu.Query().Get("sig"))
	for _, kv := range strings.Split(pu.RawQuery, "&") {
		if v, ok := strings.CutPrefix(kv, "sig="); ok {
			e.sigs = append(e.sigs, v)
		}
	}
}

func (e *env) logf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(&e.logs, format+"\n", args...)
}

// leaks returns the first signature found in s.
func (e *env) leaks(s string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, sig := range e.sigs {
		if sig != "" && strings.Contains(s, sig) {
			return sig
		}
	}
	return ""
}

// sharedKeyClient is a fixture client that bypasses the package under test.
func (e *env) sharedKeyClient(t *testing.T, name string) *pageblob.Client {
	c, err := pageblob.NewClientWithSharedKeyCredential(e.srv.BlobURL(e.cont, name), e.srv.Credential(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sparseImage is a disk image with holes: whole zero MiBs, random MiBs, and
// MiBs of random pages with zero runs of every length.
func sparseImage(size int64, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 99))
	img := make([]byte, size)
	for m := int64(0); m < size; m += mib {
		blk := img[m:min(m+mib, size)]
		switch k := r.IntN(10); {
		case k < 3:
		case k < 6:
			fillRandom(r, blk)
		default:
			for o := 0; o < len(blk); {
				n := min(len(blk)-o, (1+r.IntN(96))*512)
				if r.IntN(3) > 0 {
					fillRandom(r, blk[o:o+n])
				}
				o += n
			}
		}
	}
	return img
}

func fillRandom(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32() | 1) // never a zero page
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// copyStats counts what copyImage did.
type copyStats struct {
	chunks, skippedDone, markedZero, written atomic.Int64
}

// copyImage is a stand-in for luksconv.Execute: workers take chunks in
// order, skip those the sink's journal says are done, hand all-zero chunks
// to MarkDone when the sink is zero-filled and write the rest. If
// stopAfter > 0, cancel is called once that many chunks were written.
func copyImage(ctx context.Context, s *blobio.Sink, img []byte, chunk int64, workers int, stopAfter int64, cancel func()) (*copyStats, error) {
	st := &copyStats{}
	offs := make(chan int64)
	go func() {
		defer close(offs)
		for off := int64(0); off < int64(len(img)); off += chunk {
			select {
			case offs <- off:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := range offs {
				n := min(chunk, int64(len(img))-off)
				st.chunks.Add(1)
				b := img[off : off+n]
				var err error
				switch {
				case s.Done(off, n):
					st.skippedDone.Add(1)
				case s.ZeroFilled() && allZero(b):
					err = s.MarkDone(off, n)
					st.markedZero.Add(1)
				default:
					_, err = s.WriteAt(b, off)
					if err == nil && st.written.Add(1) == stopAfter {
						cancel()
					}
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return st, firstErr
}

// download reads the whole blob through a Source, in parallel pieces whose
// size is not a multiple of the page size.
func download(t *testing.T, e *env, sasURL string, opts blobio.SourceOptions) ([]byte, *blobio.Source) {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = e.logf
	}
	src, err := blobio.OpenPageBlob(context.Background(), sasURL, opts)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, src.Size())
	const piece = 3*mib + 100
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	sem := make(chan struct{}, 4)
	for off := int64(0); off < src.Size(); off += piece {
		wg.Add(1)
		sem <- struct{}{}
		go func(off int64) {
			defer wg.Done()
			defer func() { <-sem }()
			n := min(piece, src.Size()-off)
			if _, err := src.ReadAt(out[off:off+n], off); err != nil {
				errs <- err
			}
		}(off)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Past the end: io.EOF with the bytes that exist.
	tail := make([]byte, 1024)
	if n, err := src.ReadAt(tail, src.Size()-512); n != 512 || err != io.EOF {
		t.Fatalf("ReadAt across the end: n=%d err=%v", n, err)
	}
	return out, src
}

// checkBlob compares the blob with the image followed by the footer.
func checkBlob(t *testing.T, got, img, footer []byte) {
	t.Helper()
	if int64(len(got)) != int64(len(img))+512 {
		t.Fatalf("blob is %d bytes, want %d", len(got), len(img)+512)
	}
	if !bytes.Equal(got[len(img):], footer) {
		t.Fatal("blob footer differs from the sink's")
	}
	for off := 0; off < len(img); off += 512 {
		if !bytes.Equal(got[off:off+512], img[off:off+512]) {
			t.Fatalf("blob differs from the image at byte %d", off)
		}
	}
}

// putPageChecker fails the test for a Put Page that is unaligned or above 4 MiB.
type putPageChecker struct {
	next http.RoundTripper
	mu   sync.Mutex
	bad  []string
	puts int
	max  int64
}

func (c *putPageChecker) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.URL.Query().Get("comp") == "page" {
		// The SDK stores x-ms-range under its lower-case key, not the canonical one.
		rng := req.Header.Get("x-ms-range")
		if v := req.Header["x-ms-range"]; len(v) > 0 {
			rng = v[0]
		}
		var a, b int64
		_, err := fmt.Sscanf(rng, "bytes=%d-%d", &a, &b)
		c.mu.Lock()
		c.puts++
		n := b - a + 1
		c.max = max(c.max, n)
		if err != nil || a%512 != 0 || n%512 != 0 || n > blobio.MaxPutPage || n <= 0 {
			c.bad = append(c.bad, rng)
		}
		c.mu.Unlock()
	}
	return c.next.RoundTrip(req)
}

// Fault kinds injected by faultTransport, in turn.
const (
	faultBusy     = iota // 503 ServerBusy with a Retry-After
	faultReset           // GET: connection reset mid-body; PUT: reset after the server stored it
	faultTruncate        // GET: body ends early; PUT: connection lost while sending, nothing stored
	faultServer          // 500 InternalError
	nFaults
)

// faultTransport injects a fault into every every-th request.
type faultTransport struct {
	next       http.RoundTripper
	every      int64
	retryAfter string // the header sent with 503s
	n          atomic.Int64
	counts     [nFaults]atomic.Int64
}

func (f *faultTransport) total() (n int64) {
	for i := range f.counts {
		n += f.counts[i].Load()
	}
	return n
}

func errorResponse(req *http.Request, status int, code string, hdr map[string]string) *http.Response {
	body := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, code)
	resp := &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: req,
		Header: http.Header{"X-Ms-Error-Code": {code}, "Content-Type": {"application/xml"}},
		Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
	for k, v := range hdr {
		resp.Header.Set(k, v)
	}
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	return resp
}

func (f *faultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	i := f.n.Add(1)
	if i%f.every != 0 {
		return f.next.RoundTrip(req)
	}
	kind := int(i/f.every) % nFaults
	if req.Method == http.MethodHead && (kind == faultReset || kind == faultTruncate) {
		kind = faultBusy // no body to break
	}
	f.counts[kind].Add(1)
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	switch kind {
	case faultBusy:
		return errorResponse(req, http.StatusServiceUnavailable, "ServerBusy", map[string]string{"Retry-After": f.retryAfter}), nil
	case faultServer:
		return errorResponse(req, http.StatusInternalServerError, "InternalError", nil), nil
	case faultReset:
		resp, err := f.next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		if req.Method == http.MethodGet {
			resp.Body = &cutBody{rc: resp.Body, left: resp.ContentLength / 2, err: reset}
			return resp, nil
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, reset
	default: // faultTruncate
		if req.Method == http.MethodGet {
			resp, err := f.next.RoundTrip(req)
			if err != nil {
				return nil, err
			}
			resp.Body = &cutBody{rc: resp.Body, left: resp.ContentLength / 3, err: io.EOF}
			return resp, nil
		}
		if req.Body != nil {
			io.CopyN(io.Discard, req.Body, req.ContentLength/2)
			req.Body.Close()
		}
		return nil, &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}
	}
}

// cutBody ends a response body with err after left bytes.
type cutBody struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, c.err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cutBody) Close() error { return c.rc.Close() }

// TestAzurite runs the data plane against a real page-blob server.
func TestAzurite(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	defer func() {
		if sig := e.leaks(e.logs.String()); sig != "" {
			t.Errorf("a SAS signature appears in the log output:\n%s", e.logs.String())
		}
	}()

	t.Run("RoundTrip", func(t *testing.T) {
		const size = 40 * mib
		img := sparseImage(size, 1)
		sasURL, _ := e.sas(t, "", true)
		chk := &putPageChecker{next: blobio.NewTransport(4)}
		sink, err := blobio.CreatePageBlobSink(ctx, sasURL, size, blobio.SinkOptions{Workers: 4, Transport: chk, Logf: e.logf})
		if err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		if !sink.Created() || !sink.ZeroFilled() {
			t.Fatalf("new blob: Created=%v ZeroFilled=%v", sink.Created(), sink.ZeroFilled())
		}
		// 8 MiB chunks: WriteAt must split them.
		if _, err := copyImage(ctx, sink, img, 8*mib, 4, 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := sink.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if len(chk.bad) > 0 || chk.max != blobio.MaxPutPage {
			t.Fatalf("Put Page ranges: bad %v, largest %d (want exactly 4 MiB among them)", chk.bad, chk.max)
		}
		st := sink.Stats()
		if st.BytesSkipped == 0 || st.BytesWritten >= size || st.BytesWritten+st.BytesSkipped != size {
			t.Fatalf("sink stats %+v: want zero pages skipped and written+skipped = %d", st, size)
		}

		ro, _ := e.sas(t, blobName(sasURL), false)
		got, src := download(t, e, ro, blobio.SourceOptions{Workers: 4})
		checkBlob(t, got, img, sink.Footer())

		// The page map covers every non-zero page, and not much more.
		alloc, err := src.Allocated(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		prev := int64(-1)
		for _, x := range alloc {
			if x.Off <= prev || x.Off%512 != 0 || x.Len%512 != 0 {
				t.Fatalf("Allocated not sorted, merged and aligned: %v", alloc)
			}
			prev = x.End()
			total += x.Len
		}
		covered := func(off int64) bool {
			for _, x := range alloc {
				if off >= x.Off && off < x.End() {
					return true
				}
			}
			return false
		}
		for off := int64(0); off < size; off += 512 {
			if !allZero(img[off:off+512]) && !covered(off) {
				t.Fatalf("non-zero page at %d is not in Allocated", off)
			}
		}
		if !covered(size) {
			t.Fatal("the footer page is not in Allocated")
		}
		if total >= size || total != st.BytesWritten+512 {
			t.Fatalf("Allocated totals %d bytes; want the %d bytes written plus the footer, less than %d", total, st.BytesWritten, size)
		}

		// Reads of unallocated ranges are now served without a request.
		before := src.Stats()
		buf := make([]byte, mib)
		for off := int64(0); off < size; off += mib {
			if !covered(off) && allZero(img[off:off+mib]) {
				if _, err := src.ReadAt(buf, off); err != nil || !allZero(buf) {
					t.Fatalf("read of a hole at %d: %v", off, err)
				}
			}
		}
		if after := src.Stats(); after.Requests != before.Requests || after.BytesZero == before.BytesZero {
			t.Fatalf("hole reads made requests: before %+v after %+v", before, after)
		}

		// vhd (ours) and qemu-img (not ours) both see a fixed VHD of the right size.
		im, err := vhd.Open(src, src.Size())
		if err != nil {
			t.Fatal(err)
		}
		if im.Kind != vhd.Fixed || im.Size() != size {
			t.Fatalf("vhd.Open: %v of %d bytes, want fixed of %d", im.Kind, im.Size(), size)
		}
		qemuInfo(t, got, size)
	})

	t.Run("Faults", func(t *testing.T) {
		const size = 32 * mib
		img := sparseImage(size, 2)
		sasURL, name := e.sas(t, "", true)
		wf := &faultTransport{next: blobio.NewTransport(4), every: 3, retryAfter: "0"}
		sink, err := blobio.CreatePageBlobSink(ctx, sasURL, size, blobio.SinkOptions{
			Workers: 4, Transport: wf, Retry: fastRetry, Logf: e.logf})
		if err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		if _, err := copyImage(ctx, sink, img, 2*mib, 4, 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := sink.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		rf := &faultTransport{next: blobio.NewTransport(4), every: 3, retryAfter: "0"}
		ro, _ := e.sas(t, name, false)
		got, src := download(t, e, ro, blobio.SourceOptions{Workers: 4, Transport: rf, Retry: fastRetry})
		checkBlob(t, got, img, sink.Footer())
		for k := range nFaults {
			if wf.counts[k].Load() == 0 || rf.counts[k].Load() == 0 {
				t.Errorf("fault %d injected %d times in writes, %d in reads; want both > 0", k, wf.counts[k].Load(), rf.counts[k].Load())
			}
		}
		if sink.Stats().Retries < wf.total() || src.Stats().Retries < rf.total() {
			t.Errorf("retries: sink %d for %d faults, source %d for %d faults", sink.Stats().Retries, wf.total(), src.Stats().Retries, rf.total())
		}
		if !strings.Contains(e.logs.String(), "retrying") {
			t.Error("no retry was logged")
		}
		// A read resumed after a reset or short body asks only for the rest:
		// total bytes over the wire stay close to the blob size.
		if br := src.Stats().BytesRead; br < int64(len(got)) || br > int64(len(got))+int64(len(got))/2 {
			t.Errorf("source read %d bytes from the network for a %d-byte blob", br, len(got))
		}
	})

	t.Run("Stall", func(t *testing.T) {
		// A response whose body stops arriving is abandoned after TryTimeout
		// and the rest of the range asked for again.
		const size = 4 * mib
		img := sparseImage(size, 3)
		fillRandom(rand.New(rand.NewPCG(3, 3)), img[:mib])
		sasURL, name := e.sas(t, "", true)
		sink, err := blobio.CreatePageBlobSink(ctx, sasURL, size, blobio.SinkOptions{Logf: e.logf})
		if err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		if _, err := copyImage(ctx, sink, img, mib, 2, 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := sink.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		ro, _ := e.sas(t, name, false)
		st := &stallOnce{next: blobio.NewTransport(1)}
		retry := fastRetry
		retry.TryTimeout = 300 * time.Millisecond
		src, err := blobio.OpenPageBlob(ctx, ro, blobio.SourceOptions{Transport: st, Retry: retry, Logf: e.logf})
		if err != nil {
			t.Fatal(err)
		}
		st.armed.Store(true)
		buf := make([]byte, mib)
		start := time.Now()
		if _, err := src.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < retry.TryTimeout || !bytes.Equal(buf, img[:mib]) || src.Stats().Retries != 1 {
			t.Fatalf("stalled read: %v, %+v, equal=%v", d, src.Stats(), bytes.Equal(buf, img[:mib]))
		}
		if br := src.Stats().BytesRead; br != mib {
			t.Fatalf("read %d bytes over the network for one MiB: the retry asked for more than the rest", br)
		}
	})

	t.Run("Resume", func(t *testing.T) {
		const size, chunk = 24 * mib, mib
		img := sparseImage(size, 4)
		sasURL, name := e.sas(t, "", true)
		journal := filepath.Join(t.TempDir(), "upload.journal")
		opts := blobio.SinkOptions{Workers: 4, Journal: journal, JournalTag: "plan-1", Logf: e.logf}

		// Run 1: cancelled after 6 chunks were written.
		ctx1, cancel := context.WithCancel(ctx)
		s1, err := blobio.CreatePageBlobSink(ctx1, sasURL, size, opts)
		if err != nil {
			t.Fatal(err)
		}
		st1, err := copyImage(ctx1, s1, img, chunk, 4, 6, cancel)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted run: err = %v, want context.Canceled", err)
		}
		if err := s1.Close(); err != nil {
			t.Fatal(err)
		}
		cancel()
		footer1 := s1.Footer()
		t.Logf("run 1: %d chunks written, %d zero chunks marked", st1.written.Load(), st1.markedZero.Load())

		// Another plan, another size, a missing blob: the journal is refused.
		bad := opts
		bad.JournalTag = "plan-2"
		if _, err := blobio.CreatePageBlobSink(ctx, sasURL, size, bad); !errors.Is(err, blobio.ErrJournalMismatch) {
			t.Fatalf("journal with another tag: %v", err)
		}
		if _, err := blobio.CreatePageBlobSink(ctx, sasURL, size-mib, opts); err == nil {
			t.Fatal("journal with another size accepted")
		}
		otherURL, _ := e.sas(t, "", true)
		bad = opts
		bad.JournalRetarget = true
		if _, err := blobio.CreatePageBlobSink(ctx, otherURL, size, bad); !errors.Is(err, blobio.ErrJournalMismatch) {
			t.Fatalf("journal applied to a blob that does not exist: %v", err)
		}

		// Run 2, through a new SAS for the same blob: skips what the journal lists.
		sasURL2, _ := e.sas(t, name, true)
		s2, err := blobio.CreatePageBlobSink(ctx, sasURL2, size, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if s2.Created() || !s2.ZeroFilled() || !bytes.Equal(s2.Footer(), footer1) {
			t.Fatalf("resumed sink: Created=%v ZeroFilled=%v, same footer=%v", s2.Created(), s2.ZeroFilled(), bytes.Equal(s2.Footer(), footer1))
		}
		resumed := s2.Stats().BytesResumed
		st2, err := copyImage(ctx, s2, img, chunk, 4, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		skipped := st2.skippedDone.Load()
		t.Logf("run 2: %d chunks skipped as done (%d bytes resumed), %d written, %d zero", skipped, resumed, st2.written.Load(), st2.markedZero.Load())
		if skipped < 6 || skipped >= size/chunk || skipped*chunk != resumed {
			t.Fatalf("run 2 skipped %d chunks; want at least the 6 written before the cancel, fewer than all %d, and %d bytes = the journal's %d",
				skipped, size/chunk, skipped*chunk, resumed)
		}
		if skipped+st2.written.Load()+st2.markedZero.Load() != size/chunk {
			t.Fatalf("run 2 handled %d+%d+%d chunks, want %d", skipped, st2.written.Load(), st2.markedZero.Load(), size/chunk)
		}
		if err := s2.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		ro, _ := e.sas(t, name, false)
		got, _ := download(t, e, ro, blobio.SourceOptions{})
		checkBlob(t, got, img, footer1)

		// Run 3 after completion: nothing left to do, same bytes.
		s3, err := blobio.CreatePageBlobSink(ctx, sasURL2, size, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s3.Close()
		st3, err := copyImage(ctx, s3, img, chunk, 4, 0, nil)
		if err != nil || st3.skippedDone.Load() != size/chunk {
			t.Fatalf("run 3: %v, skipped %d of %d", err, st3.skippedDone.Load(), size/chunk)
		}
		if err := s3.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		got, _ = download(t, e, ro, blobio.SourceOptions{})
		checkBlob(t, got, img, footer1)
	})

	t.Run("Killed", func(t *testing.T) {
		// A run killed outright: its last journal batch never reached the
		// disk, so the blob holds data the journal does not list. The journal
		// header still says the blob started empty, so the next run skips
		// zeros as before and rewrites the unlisted chunks with the same bytes.
		const size, chunk = 16 * mib, mib
		img := sparseImage(size, 6)
		sasURL, name := e.sas(t, "", true)
		journal := filepath.Join(t.TempDir(), "upload.journal")
		opts := blobio.SinkOptions{Workers: 2, Journal: journal, JournalTag: "plan-k", Logf: e.logf}
		ctx1, cancel := context.WithCancel(ctx)
		s1, err := blobio.CreatePageBlobSink(ctx1, sasURL, size, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := copyImage(ctx1, s1, img, chunk, 2, 5, cancel); !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		cancel() // and no Close: the pending batch is lost
		s2, err := blobio.CreatePageBlobSink(ctx, sasURL, size, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if !s2.ZeroFilled() || s2.Stats().BytesResumed != 0 {
			t.Fatalf("after a kill: ZeroFilled=%v resumed=%d", s2.ZeroFilled(), s2.Stats().BytesResumed)
		}
		if _, err := copyImage(ctx, s2, img, chunk, 2, 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := s2.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		ro, _ := e.sas(t, name, false)
		got, _ := download(t, e, ro, blobio.SourceOptions{})
		checkBlob(t, got, img, s1.Footer())
	})

	t.Run("Existing", func(t *testing.T) {
		// A managed disk's upload URL: the blob exists at size+512 and must not be recreated.
		const size = 8 * mib
		img := sparseImage(size, 5)
		for _, dirty := range []bool{false, true} {
			sasURL, name := e.sas(t, "", true)
			fx := e.sharedKeyClient(t, name)
			if _, err := fx.Create(ctx, size+512, nil); err != nil {
				t.Fatal(err)
			}
			if dirty {
				// An earlier upload of something else, without a journal.
				junk := bytes.Repeat([]byte{0xee}, 2*mib)
				for _, off := range []int64{0, 4 * mib} {
					if _, err := fx.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(junk)), blob.HTTPRange{Offset: off, Count: 2 * mib}, nil); err != nil {
						t.Fatal(err)
					}
				}
			}
			before := e.logs.Len()
			sink, err := blobio.CreatePageBlobSink(ctx, sasURL, size, blobio.SinkOptions{Workers: 2, Logf: e.logf})
			if err != nil {
				t.Fatal(err)
			}
			if sink.Created() || sink.ZeroFilled() != !dirty {
				t.Fatalf("dirty=%v: Created=%v ZeroFilled=%v", dirty, sink.Created(), sink.ZeroFilled())
			}
			if dirty && !strings.Contains(e.logs.String()[before:], "already holds") {
				t.Fatalf("no warning about a destination holding data")
			}
			if _, err := copyImage(ctx, sink, img, mib, 2, 0, nil); err != nil {
				t.Fatal(err)
			}
			if err := sink.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if dirty && sink.Stats().BytesCleared == 0 {
				t.Fatalf("dirty destination: nothing cleared: %+v", sink.Stats())
			}
			sink.Close()
			ro, _ := e.sas(t, name, false)
			got, _ := download(t, e, ro, blobio.SourceOptions{})
			checkBlob(t, got, img, sink.Footer())
		}

		// A blob of the wrong length is refused, with the rule in the message.
		sasURL, name := e.sas(t, "", true)
		if _, err := e.sharedKeyClient(t, name).Create(ctx, size+1024, nil); err != nil {
			t.Fatal(err)
		}
		_, err := blobio.CreatePageBlobSink(ctx, sasURL, size, blobio.SinkOptions{Logf: e.logf})
		if err == nil || !strings.Contains(err.Error(), "DiskSizeBytes+512") {
			t.Fatalf("wrong length: %v", err)
		}
		if sig := e.leaks(err.Error()); sig != "" {
			t.Fatalf("signature in %q", err)
		}
	})

	t.Run("Unaligned", func(t *testing.T) {
		sasURL, _ := e.sas(t, "", true)
		sink, err := blobio.CreatePageBlobSink(ctx, sasURL, mib, blobio.SinkOptions{Logf: e.logf})
		if err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		for _, c := range []struct{ n, off int64 }{{100, 0}, {512, 100}, {1000, 512}} {
			if _, err := sink.WriteAt(make([]byte, c.n), c.off); !errors.Is(err, blobio.ErrUnaligned) {
				t.Errorf("WriteAt(%d bytes, %d): %v, want ErrUnaligned", c.n, c.off, err)
			}
		}
		// The footer's page is Commit's.
		if _, err := sink.WriteAt(make([]byte, 512), mib); err == nil {
			t.Error("WriteAt at the footer succeeded")
		}
		if sink.Done(0, 512) {
			t.Error("Done after failed writes")
		}
	})

	t.Run("Redaction", func(t *testing.T) {
		sasURL, name := e.sas(t, "", true)
		if _, err := e.sharedKeyClient(t, name).Create(ctx, mib+512, nil); err != nil {
			t.Fatal(err)
		}
		var errs []error
		// A wrong signature: 403 from the service.
		forged := forge(sasURL)
		e.remember(forged)
		_, err := blobio.OpenPageBlob(ctx, forged, blobio.SourceOptions{Retry: fastRetry, Logf: e.logf})
		if blobio.HTTPStatus(err) != http.StatusForbidden {
			t.Errorf("forged signature: %v", err)
		}
		errs = append(errs, err)
		// A read-only SAS used for writing.
		ro, _ := e.sas(t, name, false)
		sink, err := blobio.CreatePageBlobSink(ctx, ro, mib, blobio.SinkOptions{Retry: fastRetry, Logf: e.logf})
		if err == nil {
			_, err = sink.WriteAt(bytes.Repeat([]byte{1}, 512), 0)
			sink.Close()
		}
		if blobio.HTTPStatus(err) != http.StatusForbidden {
			t.Errorf("write with a read SAS: %v", err)
		}
		errs = append(errs, err)
		// Nobody listening: the transport's error names the URL.
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := strings.Replace(sasURL, strings.TrimPrefix(e.srv.BlobEndpoint, "http://")[:strings.Index(strings.TrimPrefix(e.srv.BlobEndpoint, "http://"), "/")], l.Addr().String(), 1)
		l.Close()
		retry := fastRetry
		retry.MaxTries = 2
		_, err = blobio.OpenPageBlob(ctx, dead, blobio.SourceOptions{Retry: retry, Logf: e.logf})
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("nobody listening: %v", err)
		}
		errs = append(errs, err)
		// Connection resets on every Put Page until the tries run out.
		sink, err = blobio.CreatePageBlobSink(ctx, sasURL, mib, blobio.SinkOptions{Transport: resetPuts{blobio.NewTransport(1)}, Retry: retry, Logf: e.logf})
		if err != nil {
			t.Fatal(err)
		}
		_, err = sink.WriteAt(bytes.Repeat([]byte{1}, 4096), 0)
		sink.Close()
		if err == nil || !strings.Contains(err.Error(), "connection reset") || !strings.Contains(err.Error(), "(2 tries)") {
			t.Errorf("resets: %v", err)
		}
		errs = append(errs, err)
		for _, err := range errs {
			if err == nil {
				continue
			}
			if sig := e.leaks(err.Error()); sig != "" {
				t.Errorf("error text holds a signature: %s", err)
			}
			if !strings.Contains(err.Error(), "sig=REDACTED") {
				t.Errorf("error text does not name the redacted URL: %s", err)
			}
			for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
				if sig := e.leaks(u.Error()); sig != "" {
					t.Errorf("wrapped error holds a signature: %s", u)
				}
			}
			t.Logf("%v", err)
		}
	})

	t.Run("RetryAfter", func(t *testing.T) {
		sasURL, _ := e.sas(t, "", true)
		ft := &onceBusy{next: blobio.NewTransport(1), retryAfter: "1"}
		sink, err := blobio.CreatePageBlobSink(ctx, sasURL, mib, blobio.SinkOptions{Transport: ft, Retry: fastRetry, Logf: e.logf})
		if err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		ft.armed.Store(true)
		start := time.Now()
		if _, err := sink.WriteAt(bytes.Repeat([]byte{7}, 4096), 0); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < time.Second || ft.hits.Load() != 1 {
			t.Fatalf("write after a 503 with Retry-After: 1 took %v (%d faults); want at least 1s (BaseDelay is 5ms)", d, ft.hits.Load())
		}
	})
}

// onceBusy answers the first request after it is armed with 503 and a Retry-After.
type onceBusy struct {
	next       http.RoundTripper
	retryAfter string
	armed      atomic.Bool
	hits       atomic.Int64
}

func (o *onceBusy) RoundTrip(req *http.Request) (*http.Response, error) {
	if o.armed.CompareAndSwap(true, false) {
		o.hits.Add(1)
		return errorResponse(req, http.StatusServiceUnavailable, "ServerBusy", map[string]string{"Retry-After": o.retryAfter}), nil
	}
	return o.next.RoundTrip(req)
}

// resetPuts fails every Put Page with a connection reset.
type resetPuts struct{ next http.RoundTripper }

func (r resetPuts) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.URL.Query().Get("comp") == "page" {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return r.next.RoundTrip(req)
}

// forge replaces the signature with another valid-looking one.
func forge(sasURL string) string {
	u, _ := url.Parse(sasURL)
	q := u.Query()
	q.Set("sig", "Zm9yZ2VkLXNpZ25hdHVyZS1mb3ItdGVzdHMtb25seQ==")
	u.RawQuery = q.Encode()
	return u.String()
}

// stallOnce, once armed, lets the next response body deliver half of its
// bytes and then hang until the request is abandoned.
type stallOnce struct {
	next  http.RoundTripper
	armed atomic.Bool
}

func (s *stallOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(req)
	if err != nil || !s.armed.CompareAndSwap(true, false) {
		return resp, err
	}
	resp.Body = &stallBody{rc: resp.Body, left: resp.ContentLength / 2, done: req.Context().Done()}
	return resp, nil
}

type stallBody struct {
	rc   io.ReadCloser
	left int64
	done <-chan struct{}
}

func (s *stallBody) Read(p []byte) (int, error) {
	if s.left <= 0 {
		<-s.done
		return 0, errors.New("stalled connection abandoned")
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.rc.Read(p)
	s.left -= int64(n)
	return n, err
}

func (s *stallBody) Close() error { return s.rc.Close() }

func blobName(sasURL string) string {
	u, _ := url.Parse(sasURL)
	return u.Path[strings.LastIndex(u.Path, "/")+1:]
}

// qemuInfo checks the downloaded blob with qemu-img, which reads VHD
// footers independently of our vhd package.
func qemuInfo(t *testing.T, blob []byte, size int64) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Log("QEMU-IMG NOT INSTALLED: the footer check by qemu-img is skipped (apt-get install qemu-utils)")
		return
	}
	path := filepath.Join(t.TempDir(), "disk.vhd")
	if err := os.WriteFile(path, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-img", "info", "--output=json", "-f", "vpc", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info: %v", err)
	}
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	if info.Format != "vpc" || info.VirtualSize != size {
		t.Fatalf("qemu-img info: %s", out)
	}
}
