package blobio_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/internal/blobfake"
)

// diffSig is the SAS signature the fake requires: every request, and the
// previous-snapshot URL, must carry it, and no error may show it.
const diffSig = "ZGlmZi1zaWduYXR1cmUtc2VjcmV0"

// diffFixture is a page blob in the fake, written through the SDK (not
// through the package under test), and its model.
type diffFixture struct {
	t    *testing.T
	ctx  context.Context
	srv  *blobfake.Server
	base string
	pb   *pageblob.Client
	m    *blobfake.Model
	r    *rand.Rand
}

func (f *diffFixture) url(path string) string {
	return f.base + path + "?sv=2024-08-04&sr=b&sp=r&se=2099-01-01T00%3A00%3A00Z&sig=" + diffSig
}

func newDiffFixture(t *testing.T, size int64) *diffFixture {
	srv, base := blobfake.Start(t)
	srv.Signature = diffSig
	f := &diffFixture{t: t, ctx: context.Background(), srv: srv, base: base, r: rand.New(rand.NewPCG(16, 16))}
	var err error
	f.pb, err = pageblob.NewClientWithNoCredential(f.url("/acct/disks/os"),
		&pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.pb.Create(f.ctx, size, nil); err != nil {
		t.Fatal(err)
	}
	f.m = blobfake.NewModel(size)
	return f
}

func (f *diffFixture) put(off int64, b []byte) {
	f.t.Helper()
	for o := int64(0); o < int64(len(b)); o += blobio.MaxPutPage {
		n := min(blobio.MaxPutPage, int64(len(b))-o)
		if _, err := f.pb.UploadPages(f.ctx, streaming.NopCloser(bytes.NewReader(b[o:o+n])), blob.HTTPRange{Offset: off + o, Count: n}, nil); err != nil {
			f.t.Fatal(err)
		}
	}
	f.m.Put(off, b)
}

func (f *diffFixture) clear(off, n int64) {
	f.t.Helper()
	if _, err := f.pb.ClearPages(f.ctx, blob.HTTPRange{Offset: off, Count: n}, nil); err != nil {
		f.t.Fatal(err)
	}
	f.m.Clear(off, n)
}

func (f *diffFixture) snapshot() (string, *blobfake.Model) {
	f.t.Helper()
	r, err := f.pb.CreateSnapshot(f.ctx, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return *r.Snapshot, f.m.Clone()
}

// mutate makes n random writes and clears of 1 to 300 pages, some across
// the 1 MiB windows, some rewriting existing pages with their own bytes.
func (f *diffFixture) mutate(n int) {
	size := int64(len(f.m.Data))
	for range n {
		pages := int64(1 + f.r.IntN(300))
		off := f.r.Int64N(size/512-pages+1) * 512
		switch k := f.r.IntN(10); {
		case k < 5:
			b := make([]byte, pages*512)
			for i := range b {
				b[i] = byte(f.r.Uint32() | 1)
			}
			f.put(off, b)
		case k < 7:
			f.put(off, bytes.Clone(f.m.Data[off:off+pages*512])) // the same bytes: still written
		default:
			f.clear(off, pages*512)
		}
	}
}

func openSource(t *testing.T, sasURL string, logs *strings.Builder) *blobio.Source {
	t.Helper()
	src, err := blobio.OpenPageBlob(context.Background(), sasURL, blobio.SourceOptions{
		Workers: 4, PageRangeWindow: mib, Retry: fastRetry,
		Logf: func(format string, args ...any) { fmt.Fprintf(logs, format+"\n", args...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// TestChangedSince: pages written, overwritten (also with the same bytes)
// and cleared between snapshots come back as exactly the model's changed
// and cleared ranges — across 1 MiB windows and continuation pages of three
// ranges — with prevsnapshot (the live blob and a snapshot URL as the newer
// side) and with the previous-snapshot URL of managed-disk snapshots; and
// the diff carries an old copy to the new state.
func TestChangedSince(t *testing.T) {
	const size = 8*mib + 512
	f := newDiffFixture(t, size)
	f.srv.MaxRanges = 3
	f.mutate(60)
	f.put(size-512, bytes.Repeat([]byte{0xf0}, 512)) // the footer page
	s1, m1 := f.snapshot()
	f.mutate(40)
	f.clear(0, mib) // a whole window
	f.put(mib-1024, bytes.Repeat([]byte{1}, 2048))
	s2, m2 := f.snapshot()
	f.mutate(20)
	m3 := f.m.Clone()
	if err := f.srv.Publish("/md-impexp-1/abcd", "/acct/disks/os", s1); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Publish("/md-impexp-2/abcd", "/acct/disks/os", s2); err != nil {
		t.Fatal(err)
	}

	var logs strings.Builder
	for _, tc := range []struct {
		name    string
		source  string
		prev    blobio.Previous
		newer   *blobfake.Model
		older   *blobfake.Model
		windows int
	}{
		{"live blob, prevsnapshot", f.url("/acct/disks/os"), blobio.Previous{Snapshot: s1}, m3, m1, 9},
		{"snapshot URL, prevsnapshot", f.url("/acct/disks/os") + "&snapshot=" + s2, blobio.Previous{Snapshot: s1}, m2, m1, 9},
		{"live blob, the newer snapshot", f.url("/acct/disks/os"), blobio.Previous{Snapshot: s2}, m3, m2, 9},
		{"managed-disk snapshots, previous-snapshot URL", f.url("/md-impexp-2/abcd"), blobio.Previous{URL: f.url("/md-impexp-1/abcd")}, m2, m1, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.srv.Requests()
			src := openSource(t, tc.source, &logs)
			start := time.Now()
			changed, cleared, err := src.ChangedSince(f.ctx, tc.prev)
			if err != nil {
				t.Fatal(err)
			}
			wantChanged, wantCleared := tc.newer.Diff(tc.older)
			if !reflect.DeepEqual(changed, wantChanged) || !reflect.DeepEqual(cleared, wantCleared) {
				t.Fatalf("changed %v\ncleared %v\nwant changed %v\nwant cleared %v", changed, cleared, wantChanged, wantCleared)
			}
			if len(changed) < 5 || len(cleared) < 2 {
				t.Fatalf("a weak test: %d changed and %d cleared ranges", len(changed), len(cleared))
			}
			after := f.srv.Requests()
			reqs, markers := after["page list diff"]-before["page list diff"], after["marker"]-before["marker"]
			if reqs < tc.windows+markers || markers < (len(changed)+len(cleared))/3-tc.windows {
				t.Fatalf("%d diff requests, %d of them with a marker, for %d windows and %d ranges", reqs, markers, tc.windows, len(changed)+len(cleared))
			}
			t.Logf("%d changed and %d cleared ranges in %d requests (%d continued) in %v",
				len(changed), len(cleared), reqs, markers, time.Since(start).Round(time.Millisecond))

			// Applying the diff to a copy of the older version, with bytes read
			// through the newer Source, gives the newer version.
			img := bytes.Clone(tc.older.Data)
			for _, e := range changed {
				if _, err := src.ReadAt(img[e.Off:e.End()], e.Off); err != nil {
					t.Fatal(err)
				}
			}
			for _, e := range cleared {
				clear(img[e.Off:e.End()])
			}
			if !bytes.Equal(img, tc.newer.Data) {
				t.Fatal("the older version with the diff applied differs from the newer")
			}
		})
	}
	if strings.Contains(logs.String(), diffSig) {
		t.Errorf("a signature in the log:\n%s", logs.String())
	}
}

// TestChangedSinceErrors: what the service refuses comes back as an *Error
// with its status and code, not retried when retrying cannot help, and the
// signatures of both URLs stay out of every error.
func TestChangedSinceErrors(t *testing.T) {
	f := newDiffFixture(t, 2*mib)
	f.put(0, bytes.Repeat([]byte{1}, 4096))
	s1, _ := f.snapshot()
	f.put(mib, bytes.Repeat([]byte{2}, 4096))
	s2, _ := f.snapshot()
	var logs strings.Builder
	live := openSource(t, f.url("/acct/disks/os"), &logs)
	old := openSource(t, f.url("/acct/disks/os")+"&snapshot="+s1, &logs)
	const prevSig = "cHJldmlvdXMtc25hcHNob3Qtc2ln"
	for _, tc := range []struct {
		name   string
		src    *blobio.Source
		prev   blobio.Previous
		status int
		code   string
		text   string
	}{
		{"no previous snapshot", live, blobio.Previous{}, 0, "", "exactly one"},
		{"both forms", live, blobio.Previous{Snapshot: s1, URL: f.url("/x")}, 0, "", "exactly one"},
		{"unknown snapshot", live, blobio.Previous{Snapshot: "2001-01-01T00:00:00.0000000Z"}, 409, "PreviousSnapshotNotFound", "previous snapshot is not found"},
		{"previous newer than the target", old, blobio.Previous{Snapshot: s2}, 400, "PreviousSnapshotCannotBeNewer", "cannot be newer"},
		{"previous URL with another signature", live, blobio.Previous{URL: f.base + "/acct/disks/os?snapshot=" + s1 + "&sig=" + prevSig}, 403, "AuthenticationFailed", "not accepted"},
		{"previous URL not a URL", live, blobio.Previous{URL: "https://bad host/x?sv=1&sig=" + prevSig}, 0, "", "previous snapshot URL"},
		{"previous URL not http", live, blobio.Previous{URL: "file:///x?sig=" + prevSig}, 0, "", "not an http(s) blob URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed, cleared, err := tc.src.ChangedSince(f.ctx, tc.prev)
			var e *blobio.Error
			if !errors.As(err, &e) || changed != nil || cleared != nil {
				t.Fatalf("ChangedSince = %v, %v, %v; want an *Error", changed, cleared, err)
			}
			if e.StatusCode != tc.status || e.Code != tc.code || !strings.Contains(err.Error(), tc.text) || e.Tries > 1 {
				t.Fatalf("%v: status %d code %q tries %d; want %d %q and %q", err, e.StatusCode, e.Code, e.Tries, tc.status, tc.code, tc.text)
			}
			for _, s := range []string{diffSig, prevSig} {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("a signature in %q", err)
				}
			}
			t.Log(err)
		})
	}

	// A service that echoes the header's signature in its error message, as
	// Azure echoes a bad header's value: redacted as well.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "4096")
			w.Header().Set("x-ms-blob-type", "PageBlob")
			return
		}
		v := r.Header.Get("x-ms-previous-snapshot-url")
		_, after, _ := strings.Cut(v, "sig=")
		w.Header().Set("x-ms-error-code", "InvalidHeaderValue")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>InvalidHeaderValue</Code><Message>The signature %s of the previous snapshot is wrong.</Message></Error>`, after)
	}))
	defer echo.Close()
	src := openSource(t, echo.URL+"/c/b?sig="+diffSig, &logs)
	_, _, err := src.ChangedSince(f.ctx, blobio.Previous{URL: "https://md-impexp-9.blob.core.windows.net/x/abcd?sv=1&sig=" + prevSig})
	if blobio.HTTPStatus(err) != 400 || strings.Contains(err.Error(), prevSig) || !strings.Contains(err.Error(), "The signature REDACTED") {
		t.Fatalf("echoed signature: %v", err)
	}
	if strings.Contains(logs.String(), diffSig) || strings.Contains(logs.String(), prevSig) {
		t.Errorf("a signature in the log:\n%s", logs.String())
	}
}

// TestHostileDiffs: diff responses no blob service sends — ranges out of
// order, overlapping, a page both changed and cleared, outside the blob,
// unaligned, continuations that never end, a 40 MB body — end ChangedSince
// with an error (ErrProtocol, or the body bound) after a bounded number of
// requests. There is no fallback: the caller gets the error.
func TestHostileDiffs(t *testing.T) {
	const size = 64 << 20
	list := func(pages, clears [][2]int64, marker string) string {
		var b strings.Builder
		b.WriteString(`<?xml version="1.0" encoding="utf-8"?><PageList>`)
		for _, r := range pages {
			fmt.Fprintf(&b, `<PageRange><Start>%d</Start><End>%d</End></PageRange>`, r[0], r[1])
		}
		for _, r := range clears {
			fmt.Fprintf(&b, `<ClearRange><Start>%d</Start><End>%d</End></ClearRange>`, r[0], r[1])
		}
		if marker != "" {
			fmt.Fprintf(&b, `<NextMarker>%s</NextMarker>`, marker)
		}
		b.WriteString(`</PageList>`)
		return b.String()
	}
	bigBody := `<?xml version="1.0"?><PageList>` + strings.Repeat("<!-- padding -->", 40<<20/16) + `</PageList>`
	for _, tc := range []struct {
		name   string
		window int64
		body   func(n int) string // the n-th diff response
		want   string
	}{
		{"page ranges out of order", 0, func(int) string { return list([][2]int64{{4096, 8191}, {0, 511}}, nil, "") }, "page range 0-511 overlaps or precedes"},
		{"clear ranges out of order", 0, func(int) string { return list(nil, [][2]int64{{4096, 8191}, {0, 511}}, "") }, "clear range 0-511 overlaps or precedes"},
		{"clear ranges overlapping", 0, func(int) string { return list(nil, [][2]int64{{0, 4095}, {2048, 8191}}, "") }, "clear range 2048-8191 overlaps"},
		{"a page changed and cleared", 0, func(int) string { return list([][2]int64{{0, 4095}}, [][2]int64{{2048, 8191}}, "") }, "page range 0-4095 overlaps clear range 2048-8191"},
		{"changed and cleared across pages", 0, func(n int) string {
			if n == 1 {
				return list(nil, [][2]int64{{8192, 9215}}, "m1")
			}
			return list([][2]int64{{8704, 10239}}, nil, "")
		}, "overlaps clear range"},
		{"a clear range repeated on every page", 0, func(n int) string { return list(nil, [][2]int64{{0, 511}}, fmt.Sprint("m", n)) }, "overlaps or precedes"},
		{"a clear range outside the blob", 0, func(int) string { return list(nil, [][2]int64{{size, size + 511}}, "") }, "invalid clear range"},
		{"an unaligned page range", 0, func(int) string { return list([][2]int64{{100, 611}}, nil, "") }, "invalid page range"},
		{"endless empty pages", 0, func(n int) string { return list(nil, nil, fmt.Sprint("m", n)) }, "list no range"},
		{"endless pages outside the window", 1 << 20, func(n int) string { return list(nil, [][2]int64{{size - 512, size - 1}}, fmt.Sprint("m", n)) }, "list no range"},
		{"a marker that does not advance", 0, func(n int) string { return list([][2]int64{{int64(n) * 4096, int64(n)*4096 + 511}}, nil, "same") }, "did not advance"},
		{"40 MB body", 0, func(int) string { return bigBody }, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodHead {
					w.Header().Set("Content-Length", fmt.Sprint(size))
					w.Header().Set("x-ms-blob-type", "PageBlob")
					return
				}
				if r.URL.Query().Get("prevsnapshot") == "" {
					http.Error(w, "not a diff", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "application/xml")
				fmt.Fprint(w, tc.body(int(n.Add(1))))
			}))
			defer srv.Close()
			var logs strings.Builder
			src, err := blobio.OpenPageBlob(t.Context(), srv.URL+"/c/b?sig="+diffSig, blobio.SourceOptions{
				Workers: 1, PageRangeWindow: tc.window, Retry: fastRetry,
				Logf: func(format string, args ...any) { fmt.Fprintf(&logs, format+"\n", args...) },
			})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			start := time.Now()
			changed, cleared, err := src.ChangedSince(t.Context(), blobio.Previous{Snapshot: "2026-01-01T00:00:00.0000000Z"})
			if err == nil || !strings.Contains(err.Error(), tc.want) || changed != nil || cleared != nil {
				t.Fatalf("ChangedSince = %v, %v, %v; want an error with %q", changed, cleared, err, tc.want)
			}
			if tc.name != "40 MB body" && !errors.Is(err, blobio.ErrProtocol) {
				t.Errorf("%v is not ErrProtocol", err)
			}
			// At most maxEmptyPages+1 (17) empty responses in a row per
			// window; the body bound is not retried.
			if limit := int64(18); tc.name == "40 MB body" && n.Load() != 1 || n.Load() > limit {
				t.Errorf("%d requests", n.Load())
			}
			if strings.Contains(err.Error(), diffSig) || strings.Contains(logs.String(), diffSig) {
				t.Errorf("a signature in %q or the log", err)
			}
			t.Logf("%v after %d requests in %v", err, n.Load(), time.Since(start).Round(time.Millisecond))
		})
	}
}
