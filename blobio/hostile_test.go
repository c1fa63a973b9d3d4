package blobio

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestHostilePageLists: page lists no blob service sends — duplicated, overlapping or out-of-order
// ranges, endless empty continuation pages, a body of 40 MB — end the listing with ErrProtocol (or a
// body error) after a bounded amount of work and memory; Allocated then falls back to the whole blob.
// Error bodies are read to maxErrorBody only, and a blob longer than MaxBlobSize is not opened.
func TestHostilePageLists(t *testing.T) {
	const size = 64 << 20
	bigBody := `<?xml version="1.0"?><PageList>` + strings.Repeat("<!-- padding -->", 40<<20/16) + `</PageList>`
	page := func(ranges [][2]int64, marker string) string {
		var b strings.Builder
		b.WriteString(`<?xml version="1.0" encoding="utf-8"?><PageList>`)
		for _, r := range ranges {
			fmt.Fprintf(&b, `<PageRange><Start>%d</Start><End>%d</End></PageRange>`, r[0], r[1])
		}
		if marker != "" {
			fmt.Fprintf(&b, `<NextMarker>%s</NextMarker>`, marker)
		}
		b.WriteString(`</PageList>`)
		return b.String()
	}
	for _, tc := range []struct {
		name  string
		body  func(n int) string // the n-th page-list response
		want  string
		blobs int64
	}{
		{"duplicates in a page", func(int) string { return page([][2]int64{{0, 511}, {0, 511}}, "") }, "overlaps", size},
		{"duplicates across pages", func(n int) string { return page([][2]int64{{0, 511}}, fmt.Sprint("m", n)) }, "overlaps", size},
		{"out of order", func(int) string { return page([][2]int64{{4096, 8191}, {0, 511}}, "") }, "overlaps or precedes", size},
		{"endless empty pages", func(n int) string { return page(nil, fmt.Sprint("m", n)) }, "list no range", size},
		{"40 MB body", func(int) string { return bigBody }, "longer than", size},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodHead {
					w.Header().Set("Content-Length", fmt.Sprint(tc.blobs))
					w.Header().Set("x-ms-blob-type", "PageBlob")
					return
				}
				n++
				w.Header().Set("Content-Type", "application/xml")
				fmt.Fprint(w, tc.body(n))
			}))
			defer srv.Close()
			s, err := OpenPageBlob(t.Context(), srv.URL+"/c/b?sig=c2VjcmV0c2lnbmF0dXJl", SourceOptions{Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err = s.c.pageRanges(t.Context(), size, DefaultPageRangeWindow, 1)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("pageRanges = %v, want %q", err, tc.want)
			}
			if tc.name != "40 MB body" && !errors.Is(err, ErrProtocol) {
				t.Errorf("%v is not ErrProtocol", err)
			}
			// pageRangeTries attempts, each reading at most maxPageListBody (and parsing it: about 4×
			// its size in allocations, twice that under the race detector).
			factor := uint64(4)
			if raceEnabled {
				factor = 8
			}
			if a := (after.TotalAlloc - before.TotalAlloc) >> 20; a > 3*factor*maxPageListBody>>20 || n > maxEmptyPages+2 {
				t.Errorf("%d MiB allocated, %d requests", a, n)
			}
			ext, err := s.Allocated(t.Context())
			if err != nil || len(ext) != 1 || ext[0].Len != size {
				t.Errorf("Allocated = %v, %v; want the whole blob", ext, err)
			}
			t.Logf("%v after %d requests, %v", err, n, time.Since(start).Round(time.Millisecond))
		})
	}
	t.Run("4 EiB blob", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(int64(4)<<60))
			w.Header().Set("x-ms-blob-type", "PageBlob")
		}))
		defer srv.Close()
		_, err := OpenPageBlob(t.Context(), srv.URL+"/c/b?sig=c2VjcmV0c2lnbmF0dXJl", SourceOptions{Logf: t.Logf})
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("OpenPageBlob = %v, want ErrProtocol", err)
		}
	})
	t.Run("endless error body", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
			line := []byte(strings.Repeat("x", 1023) + "\n")
			for i := 0; i < 1<<20; i++ { // up to 1 GiB, unless the client stops reading
				if _, err := w.Write(line); err != nil {
					return
				}
			}
		}))
		defer srv.Close()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := OpenPageBlob(t.Context(), srv.URL+"/c/b?sig=c2VjcmV0c2lnbmF0dXJl", SourceOptions{Logf: t.Logf, Retry: RetryOptions{MaxTries: 1}})
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatal("no error")
		}
		if a := (after.TotalAlloc - before.TotalAlloc) >> 20; a > 16 {
			t.Errorf("%d MiB allocated for an error", a)
		}
	})
}
