package blobfake_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/blobfake"
)

func code(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprintf("%d %s", re.StatusCode, re.ErrorCode)
	}
	if err != nil {
		return err.Error()
	}
	return "ok"
}

type fixture struct {
	t    *testing.T
	srv  *blobfake.Server
	base string
	ctx  context.Context
}

func newFixture(t *testing.T) *fixture {
	srv, base := blobfake.Start(t)
	return &fixture{t, srv, base, context.Background()}
}

func (f *fixture) url(path string) string { return f.base + path + "?sv=2024-08-04&sig=" + sig }

func (f *fixture) client(path string) *pageblob.Client {
	c, err := pageblob.NewClientWithNoCredential(f.url(path), noRetry)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fixture) put(c *pageblob.Client, off int64, b []byte) {
	f.t.Helper()
	if _, err := c.UploadPages(f.ctx, streaming.NopCloser(bytes.NewReader(b)), blob.HTTPRange{Offset: off, Count: int64(len(b))}, nil); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) clear(c *pageblob.Client, off, n int64) {
	f.t.Helper()
	if _, err := c.ClearPages(f.ctx, blob.HTTPRange{Offset: off, Count: n}, nil); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) snapshot(c *pageblob.Client) string {
	f.t.Helper()
	r, err := c.CreateSnapshot(f.ctx, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return *r.Snapshot
}

// diff lists the diff of c (optionally at snapshot) against o, all pages.
func (f *fixture) diff(c *pageblob.Client, o pageblob.GetPageRangesDiffOptions) (changed, cleared []extent.Range, responses int, err error) {
	pager := c.NewGetPageRangesDiffPager(&o)
	for pager.More() {
		resp, err := pager.NextPage(f.ctx)
		if err != nil {
			return nil, nil, responses, err
		}
		responses++
		for _, r := range resp.PageRange {
			changed = append(changed, extent.Range{Off: *r.Start, Len: *r.End + 1 - *r.Start})
		}
		for _, r := range resp.ClearRange {
			cleared = append(cleared, extent.Range{Off: *r.Start, Len: *r.End + 1 - *r.Start})
		}
	}
	return changed, cleared, responses, nil
}

func pages(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func rs(pairs ...int64) []extent.Range {
	var out []extent.Range
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, extent.Range{Off: pairs[i], Len: pairs[i+1]})
	}
	return out
}

// TestDiff: the semantics of Get Page Ranges against a previous snapshot.
func TestDiff(t *testing.T) {
	f := newFixture(t)
	f.srv.Signature = sig
	c := f.client("/acct/disks/d")
	if _, err := c.Create(f.ctx, 64*kib, nil); err != nil {
		t.Fatal(err)
	}
	f.put(c, 0, pages(1, 8*kib))
	f.put(c, 16*kib, pages(2, 4*kib))
	f.put(c, 40*kib, pages(3, 2*kib))
	s1 := f.snapshot(c)
	f.put(c, 1*kib, pages(1, 1*kib))    // the same bytes again: still a change
	f.clear(c, 6*kib, 4*kib)            // clears [6, 8) KiB; [8, 10) held nothing
	f.put(c, 12*kib, pages(4, 512))     // new
	f.clear(c, 12*kib, 512)             // and gone again: no change at all
	f.put(c, 20*kib, pages(5, 2*kib))   // adjacent to [16, 20) KiB, which is unchanged
	f.clear(c, 40*kib, 512)             // the first page of a range
	f.put(c, 41*kib, pages(6, 512))     // overwrites the second, third stays
	f.put(c, 63*kib+512, pages(7, 512)) // the last page
	s2 := f.snapshot(c)
	f.put(c, 30*kib, pages(8, 512))

	wantC1 := rs(1*kib, 1*kib, 20*kib, 2*kib, 41*kib, 512, 63*kib+512, 512)
	wantX1 := rs(6*kib, 2*kib, 40*kib, 512)
	for _, tc := range []struct {
		name                 string
		c                    *pageblob.Client
		opts                 pageblob.GetPageRangesDiffOptions
		wantChanged, wantClr []extent.Range
	}{
		{"s2 against s1", c, pageblob.GetPageRangesDiffOptions{Snapshot: &s2, PrevSnapshot: &s1}, wantC1, wantX1},
		{"the blob against s1", c, pageblob.GetPageRangesDiffOptions{PrevSnapshot: &s1},
			append(append(rs(1*kib, 1*kib, 20*kib, 2*kib), rs(30*kib, 512)...), rs(41*kib, 512, 63*kib+512, 512)...), wantX1},
		{"the blob against s2", c, pageblob.GetPageRangesDiffOptions{PrevSnapshot: &s2}, rs(30*kib, 512), nil},
		{"s2 against itself", c, pageblob.GetPageRangesDiffOptions{Snapshot: &s2, PrevSnapshot: &s2}, nil, nil},
		{"in a window", c, pageblob.GetPageRangesDiffOptions{Snapshot: &s2, PrevSnapshot: &s1, Range: blob.HTTPRange{Offset: 7 * kib, Count: 34 * kib}},
			rs(20*kib, 2*kib), rs(7*kib, 1*kib, 40*kib, 512)},
	} {
		for _, max := range []int{0, 1} {
			f.srv.MaxRanges = max
			changed, cleared, n, err := f.diff(tc.c, tc.opts)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if fmt.Sprint(extent.Merge(changed), extent.Merge(cleared)) != fmt.Sprint(extent.Merge(tc.wantChanged), extent.Merge(tc.wantClr)) {
				t.Errorf("%s (%d per response): changed %v cleared %v, want %v %v", tc.name, max, changed, cleared, tc.wantChanged, tc.wantClr)
			}
			if want := len(changed) + len(cleared); max == 1 && n != max1(want) {
				t.Errorf("%s: %d responses of one range for %d ranges", tc.name, n, want)
			}
		}
	}
	f.srv.MaxRanges = 0

	// A managed disk's incremental snapshots, each under its own URL.
	if err := f.srv.Publish("/md-1/abcd", "/acct/disks/d", s1); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Publish("/md-2/abcd", "/acct/disks/d", s2); err != nil {
		t.Fatal(err)
	}
	md2 := f.client("/md-2/abcd")
	prev := f.url("/md-1/abcd")
	changed, cleared, _, err := f.diff(md2, pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &prev})
	if err != nil || fmt.Sprint(changed, cleared) != fmt.Sprint(wantC1, wantX1) {
		t.Errorf("published snapshots: %v %v, %v", changed, cleared, err)
	}
	if got := f.srv.Requests()["page list diff"]; got < 10 {
		t.Errorf("%d diff requests counted", got)
	}

	// Errors.
	bogus := "2001-01-01T00:00:00.0000000Z"
	noSig := f.base + "/md-1/abcd?sv=2024-08-04"
	live := f.url("/acct/disks/d")
	bad := "not a url"
	md1 := f.client("/md-1/abcd")
	for _, tc := range []struct {
		name string
		c    *pageblob.Client
		opts pageblob.GetPageRangesDiffOptions
		want string
	}{
		{"unknown previous snapshot", c, pageblob.GetPageRangesDiffOptions{PrevSnapshot: &bogus}, "409 PreviousSnapshotNotFound"},
		{"previous newer than the target", c, pageblob.GetPageRangesDiffOptions{Snapshot: &s1, PrevSnapshot: &s2}, "400 PreviousSnapshotCannotBeNewer"},
		{"both forms", c, pageblob.GetPageRangesDiffOptions{PrevSnapshot: &s1, PrevSnapshotURL: &prev}, "400 InvalidHeaderValue"},
		{"previous URL without the SAS", md2, pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &noSig}, "403 AuthenticationFailed"},
		{"previous URL of a live blob", md2, pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &live}, "409 PreviousSnapshotOperationNotSupported"},
		{"previous URL not a URL", md2, pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &bad}, "400 InvalidHeaderValue"},
		{"published previous newer", md1, pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: to(f.url("/md-2/abcd"))}, "400 PreviousSnapshotCannotBeNewer"},
	} {
		_, _, _, err := f.diff(tc.c, tc.opts)
		if code(err) != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, code(err), tc.want)
		}
	}
	// A blob created again is a new blob: its old snapshots are not its past.
	if _, err := c.Create(f.ctx, 64*kib, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := f.diff(c, pageblob.GetPageRangesDiffOptions{PrevSnapshot: &s1}); code(err) != "409 BlobOverwritten" {
		t.Errorf("diff across a re-creation: %s", code(err))
	}
	// Snapshots survive the re-creation, published ones stay read-only.
	if _, _, _, err := f.diff(c, pageblob.GetPageRangesDiffOptions{Snapshot: &s2, PrevSnapshot: &s1}); err != nil {
		t.Errorf("diff of old snapshots: %v", err)
	}
	if _, err := md1.UploadPages(f.ctx, streaming.NopCloser(bytes.NewReader(pages(1, 512))), blob.HTTPRange{Count: 512}, nil); code(err) != "403 AuthorizationPermissionMismatch" {
		t.Errorf("write to a published snapshot: %s", code(err))
	}
	sc, _ := c.WithSnapshot(s1)
	if _, err := sc.UploadPages(f.ctx, streaming.NopCloser(bytes.NewReader(pages(1, 512))), blob.HTTPRange{Count: 512}, nil); code(err) != "400 InvalidQueryParameterValue" {
		t.Errorf("write to a snapshot: %s", code(err))
	}
}

func max1(n int) int { return max(n, 1) }

// TestSpec: behaviour the REST specification describes and Azurite does not
// share, so TestAgainstAzurite cannot compare it.
func TestSpec(t *testing.T) {
	f := newFixture(t)
	c := f.client("/a/c/b")
	if _, err := c.Create(f.ctx, 8*mib, nil); err != nil {
		t.Fatal(err)
	}
	f.put(c, 0, pages(9, 4*kib))
	f.put(c, 8*kib, pages(9, 4*kib))

	// A read that starts past the end is 416 (Azurite sends 206 and an empty body).
	_, err := c.DownloadStream(f.ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: 8 * mib, Count: 512}})
	if code(err) != "416 InvalidRange" {
		t.Errorf("read past the end: %s", code(err))
	}
	// Pages that end past the blob (Azurite checks only the start).
	_, err = c.UploadPages(f.ctx, streaming.NopCloser(bytes.NewReader(pages(1, 1024))), blob.HTTPRange{Offset: 8*mib - 512, Count: 1024}, nil)
	if code(err) != "416 InvalidPageRange" {
		t.Errorf("put across the end: %s", code(err))
	}
	if _, err = c.ClearPages(f.ctx, blob.HTTPRange{Offset: 8*mib - 512, Count: 1024}, nil); code(err) != "416 InvalidPageRange" {
		t.Errorf("clear across the end: %s", code(err))
	}
	// At most 4 MiB per Put Page.
	_, err = c.UploadPages(f.ctx, streaming.NopCloser(bytes.NewReader(pages(1, 4*mib+512))), blob.HTTPRange{Offset: 0, Count: 4*mib + 512}, nil)
	if code(err) != "413 RequestBodyTooLarge" {
		t.Errorf("put of 4 MiB + 512: %s", code(err))
	}
	// maxresults: at most that many ranges per response, and at least one.
	pager := c.NewGetPageRangesPager(&pageblob.GetPageRangesOptions{MaxResults: to[int32](1)})
	n := 0
	for pager.More() {
		resp, err := pager.NextPage(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.PageRange) > 1 {
			t.Errorf("maxresults=1: %d ranges", len(resp.PageRange))
		}
		n++
	}
	if n != 2 {
		t.Errorf("maxresults=1: %d responses for two ranges", n)
	}
	raw := func(query string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, f.base+"/a/c/b?comp=pagelist&"+query, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("x-ms-error-code") + " " + string(body)
	}
	for _, q := range []string{"maxresults=0", "maxresults=x", "marker=zz", "marker=100", "marker=99999999999"} {
		if st, _ := raw(q, nil); st != http.StatusBadRequest {
			t.Errorf("%s: %d", q, st)
		}
	}
	// Unaligned windows are rounded out to whole pages; the XML is the service's.
	if st, body := raw("", map[string]string{"x-ms-range": "bytes=100-8300"}); st != 200 ||
		!strings.Contains(body, "<PageList><PageRange><Start>0</Start><End>4095</End></PageRange><PageRange><Start>8192</Start><End>8703</End></PageRange><NextMarker />") {
		t.Errorf("unaligned window: %d %s", st, body)
	}
	// Put Page with the standard Range header instead of x-ms-range.
	req, _ := http.NewRequest(http.MethodPut, f.base+"/a/c/b?comp=page", bytes.NewReader(pages(5, 1024)))
	req.Header.Set("Range", "bytes=16384-17407")
	req.Header.Set("x-ms-page-write", "update")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("put page with Range: %v %v", resp, err)
	}
	req, _ = http.NewRequest(http.MethodPut, f.base+"/a/c/b?comp=page", nil)
	req.Header.Set("Range", "bytes=16384-16895")
	req.Header.Set("x-ms-page-write", "clear")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("clear pages with Range: %v %v", resp, err)
	}
	if st, body := raw("", map[string]string{"Range": "bytes=16384-20479"}); st != 200 || !strings.Contains(body, "<PageRange><Start>16896</Start><End>17407</End></PageRange><NextMarker />") {
		t.Errorf("after Put Page with Range: %d %s", st, body)
	}
	// An operation the fake does not know.
	req, _ = http.NewRequest(http.MethodPut, f.base+"/a/c/b?comp=lease", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("lease: %v %v", resp, err)
	}
}

// TestConcurrent: writers, snapshots and listings at once (run with -race).
func TestConcurrent(t *testing.T) {
	f := newFixture(t)
	c := f.client("/a/c/b")
	if _, err := c.Create(f.ctx, 4*mib, nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 16 {
				off := int64(w*16+i) * 4 * kib
				if _, err := c.UploadPages(f.ctx, streaming.NopCloser(bytes.NewReader(pages(byte(w+1), 4*kib))), blob.HTTPRange{Offset: off, Count: 4 * kib}, nil); err != nil {
					t.Error(err)
				}
				if i%4 == 0 {
					if _, err := c.CreateSnapshot(f.ctx, nil); err != nil {
						t.Error(err)
					}
					if _, err := c.NewGetPageRangesPager(nil).NextPage(f.ctx); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	resp, err := c.NewGetPageRangesPager(nil).NextPage(f.ctx)
	if err != nil || len(resp.PageRange) != 1 || *resp.PageRange[0].End != 512*kib-1 {
		t.Fatalf("after concurrent writes: %v %v", resp.PageRange, err)
	}
}

// TestResize: Set Blob Properties resizes a page blob: a larger size adds pages never written (listed
// by no diff), a smaller one drops the pages past it; the pages kept are unchanged, and a snapshot keeps
// its size.
func TestResize(t *testing.T) {
	f := newFixture(t)
	c := f.client("/acct/c/b")
	if _, err := c.Create(f.ctx, 4096, nil); err != nil {
		t.Fatal(err)
	}
	f.put(c, 0, pages(1, 4096))
	s1 := f.snapshot(c)
	if _, err := c.Resize(f.ctx, 8192, nil); err != nil {
		t.Fatal(err)
	}
	props, err := c.GetProperties(f.ctx, nil)
	if err != nil || *props.ContentLength != 8192 {
		t.Fatalf("after growing: %v, %v", props.ContentLength, err)
	}
	if changed, cleared, _, err := f.diff(c, pageblob.GetPageRangesDiffOptions{PrevSnapshot: &s1}); err != nil || len(changed)+len(cleared) != 0 {
		t.Errorf("diff after growing: %v %v %v", changed, cleared, err)
	}
	if _, err := c.Resize(f.ctx, 1024, nil); err != nil {
		t.Fatal(err)
	}
	if props, err := c.GetProperties(f.ctx, nil); err != nil || *props.ContentLength != 1024 {
		t.Fatalf("after shrinking: %v, %v", props.ContentLength, err)
	}
	if changed, cleared, _, err := f.diff(c, pageblob.GetPageRangesDiffOptions{PrevSnapshot: &s1}); err != nil || len(changed)+len(cleared) != 0 {
		t.Errorf("diff after shrinking (within the blob): %v %v %v", changed, cleared, err)
	}
	snap, err := c.WithSnapshot(s1)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := snap.GetProperties(f.ctx, nil); err != nil || *p.ContentLength != 4096 {
		t.Errorf("the snapshot after the resizes: %v, %v", p.ContentLength, err)
	}
}
