package blobio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/recovered"
)

// pageListServer serves Get Properties and Get Page Ranges for a blob of
// size bytes whose written pages are pages, two ranges per response, with
// continuation markers. Azurite ignores maxresults and never sends a
// marker, so paging is tested here.
type pageListServer struct {
	size    int64
	pages   []extent.Range
	fail    bool // answer page-list requests with 500
	badData bool // answer with a range outside the blob

	mu       sync.Mutex
	windows  map[string]bool // x-ms-range headers seen
	markers  int             // requests that carried a marker
	requests int
}

func (s *pageListServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	q := r.URL.Query()
	if q.Get("sig") != "c2VjcmV0c2lnbmF0dXJl" {
		http.Error(w, "no sig", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Length", strconv.FormatInt(s.size, 10))
		w.Header().Set("x-ms-blob-type", "PageBlob")
		return
	}
	if q.Get("comp") != "pagelist" {
		http.Error(w, "unexpected request", http.StatusBadRequest)
		return
	}
	if s.fail {
		w.Header().Set("x-ms-error-code", "OperationTimedOut")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>OperationTimedOut</Code><Message>Operation could not be completed within the specified time.</Message></Error>`)
		return
	}
	var a, b int64
	// The SDK moves Range into x-ms-range.
	rng := r.Header.Get("x-ms-range")
	if _, err := fmt.Sscanf(rng, "bytes=%d-%d", &a, &b); err != nil {
		http.Error(w, "no x-ms-range", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.windows[rng] = true
	if q.Get("marker") != "" {
		s.markers++
	}
	s.mu.Unlock()
	var in []extent.Range
	for _, e := range s.pages {
		// The service reports whole ranges that intersect the window; clipping is the client's job.
		if e.Off <= b && e.End() > a {
			in = append(in, e)
		}
	}
	start, _ := strconv.Atoi(q.Get("marker"))
	end := min(start+2, len(in))
	var body strings.Builder
	body.WriteString(`<?xml version="1.0" encoding="utf-8"?><PageList>`)
	for _, e := range in[start:end] {
		if s.badData {
			e.Len = 2 * s.size
		}
		fmt.Fprintf(&body, "<PageRange><Start>%d</Start><End>%d</End></PageRange>", e.Off, e.End()-1)
	}
	if end < len(in) {
		fmt.Fprintf(&body, "<NextMarker>%d</NextMarker>", end)
	} else {
		body.WriteString("<NextMarker/>")
	}
	body.WriteString("</PageList>")
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-ms-blob-content-length", strconv.FormatInt(s.size, 10))
	fmt.Fprint(w, body.String())
}

func TestAllocatedPaging(t *testing.T) {
	const mib = 1 << 20
	srv := &pageListServer{size: 8*mib + 512, windows: map[string]bool{}, pages: []extent.Range{
		{Off: 0, Len: 4096}, {Off: 8192, Len: 512}, {Off: mib - 512, Len: 1024}, // crosses the 1 MiB window edge
		{Off: 3 * mib, Len: 2 * mib}, // spans two windows
		{Off: 5*mib + 4096, Len: 512}, {Off: 5*mib + 8192, Len: 512}, {Off: 5*mib + 9216, Len: 512},
		{Off: 8 * mib, Len: 512}, // the footer page
	}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	var logs strings.Builder
	src, err := OpenPageBlob(context.Background(), ts.URL+"/acct/c/b?sv=1&sig=c2VjcmV0c2lnbmF0dXJl", SourceOptions{
		Workers: 3, PageRangeWindow: mib, Logf: func(f string, a ...any) { fmt.Fprintf(&logs, f+"\n", a...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := src.Allocated(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []extent.Range{{Off: 0, Len: 4096}, {Off: 8192, Len: 512}, {Off: mib - 512, Len: 1024}, {Off: 3 * mib, Len: 2 * mib},
		{Off: 5*mib + 4096, Len: 512}, {Off: 5*mib + 8192, Len: 512}, {Off: 5*mib + 9216, Len: 512}, {Off: 8 * mib, Len: 512}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Allocated = %v\nwant %v\nlog: %s", got, want, logs.String())
	}
	if len(srv.windows) != 9 || srv.markers == 0 {
		t.Fatalf("saw %d windows and %d marker requests; want 9 windows of 1 MiB and some markers", len(srv.windows), srv.markers)
	}
	if logs.Len() != 0 {
		t.Fatalf("unexpected log: %s", logs.String())
	}
	// With the map known, a read of unallocated pages makes no request.
	before := srv.requests
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = 0xff
	}
	if _, err := src.ReadAt(buf, 6*mib); err != nil {
		t.Fatal(err)
	}
	if srv.requests != before || buf[0] != 0 || buf[4095] != 0 || src.Stats().BytesZero != 4096 {
		t.Fatalf("unallocated read: %d requests, buf[0]=%d, stats %+v", srv.requests-before, buf[0], src.Stats())
	}
}

func TestAllocatedFallback(t *testing.T) {
	for _, mode := range []string{"500", "bad range"} {
		srv := &pageListServer{size: 4<<20 + 512, windows: map[string]bool{}, pages: []extent.Range{{Off: 0, Len: 512}},
			fail: mode == "500", badData: mode == "bad range"}
		ts := httptest.NewServer(srv)
		var logs strings.Builder
		var mu sync.Mutex
		src, err := OpenPageBlob(context.Background(), ts.URL+"/acct/c/b?sv=1&sig=c2VjcmV0c2lnbmF0dXJl", SourceOptions{
			PageRangeWindow: 1 << 20,
			Retry:           RetryOptions{BaseDelay: 1e6, MaxDelay: 2e6},
			Logf: func(f string, a ...any) {
				mu.Lock()
				defer mu.Unlock()
				fmt.Fprintf(&logs, f+"\n", a...)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := src.Allocated(context.Background())
		ts.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := []extent.Range{{Off: 0, Len: srv.size}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: Allocated = %v, want the whole blob %v", mode, got, want)
		}
		l := logs.String()
		if !strings.Contains(l, "warning") || !strings.Contains(l, "whole blob") || strings.Contains(l, "c2VjcmV0c2lnbmF0dXJl") {
			t.Fatalf("%s: log = %q", mode, l)
		}
		if mode == "500" && !strings.Contains(l, "OperationTimedOut") {
			t.Fatalf("log does not name the service error: %q", l)
		}
	}
}

func TestAllocatedCancelled(t *testing.T) {
	srv := &pageListServer{size: 4<<20 + 512, windows: map[string]bool{}, fail: true}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	src, err := OpenPageBlob(context.Background(), ts.URL+"/acct/c/b?sig=c2VjcmV0c2lnbmF0dXJl", SourceOptions{Logf: func(string, ...any) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.Allocated(ctx); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("Allocated with a cancelled context: %v", err)
	}
}

// TestListRangesPanic: a panic while listing a window (a bug in parsing a response, say) is the
// listing's error, a *Error whose text is redacted and through which errors.As finds the panic with its
// stack, instead of ending the process from a goroutine the caller cannot recover.
func TestListRangesPanic(t *testing.T) {
	c := &conn{url: "https://account.invalid/c/b?sig=REDACTED", red: newRedactor(""),
		retry: RetryOptions{MaxTries: 1, TryTimeout: time.Minute}, logf: func(string, ...any) {}}
	fetch := func(ctx context.Context, w extent.Range, marker *string) (pageList, error) {
		if w.Off == 3*PageSize {
			panic("parser bug at https://account.invalid/c/b?sig=c2VjcmV0")
		}
		return pageList{}, nil
	}
	_, err := c.listRanges(context.Background(), "get page ranges", 8*PageSize, PageSize, 2, 1, fetch)
	var e *Error
	var pe *recovered.Error
	if !errors.As(err, &e) || !errors.As(err, &pe) || !strings.Contains(string(pe.Stack), "pagelist_test.go") {
		t.Fatalf("listRanges returned %v, want a *Error holding the panic", err)
	}
	if msg := err.Error(); strings.Contains(msg, "c2VjcmV0") || !strings.Contains(msg, "panic") {
		t.Errorf("error text %q: want the panic, redacted", msg)
	}
}
