package blobfake_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/internal/blobfake"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	// blobSize is the page blob of the comparison: 1 MiB and a footer page.
	blobSize = mib + 512
)

// sig is the SAS signature the fake requires in the comparison, so that the
// run also shows that every request the SDK makes carries the SAS.
const sig = "c2lnbmF0dXJlLW9mLXRoZS1mYWtl"

var noRetry = &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}}

// service makes SDK clients for blobs of one server.
type service struct {
	name   string
	client func(t *testing.T, blobName string) *pageblob.Client
}

func azuriteService(t *testing.T) service {
	srv := azurite.Start(t) // skips loudly when Azurite cannot run (fails with LUKSCONV_REQUIRE_AZURITE=1)
	srv.CreateContainer(t, "cmp")
	return service{"azurite", func(t *testing.T, name string) *pageblob.Client {
		c, err := pageblob.NewClientWithSharedKeyCredential(srv.BlobURL("cmp", name), srv.Credential(), noRetry)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}}
}

func fakeService(t *testing.T, maxRanges int) (service, *blobfake.Server) {
	fk, base := blobfake.Start(t)
	fk.MaxRanges = maxRanges
	fk.Signature = sig
	return service{"blobfake", func(t *testing.T, name string) *pageblob.Client {
		u := base + "/" + azurite.Account + "/cmp/" + name + "?sv=2024-08-04&sr=b&sp=racw&se=2099-01-01T00%3A00%3A00Z&sig=" + sig
		c, err := pageblob.NewClientWithNoCredential(u, noRetry)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}}, fk
}

func status(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprint(re.StatusCode)
	}
	if err != nil {
		return "transport error: " + err.Error()
	}
	return "ok"
}

// run drives one server through the sequence and returns its transcript:
// one line per observation (ranges, bytes, properties, status codes). It
// also checks each observation against the model, so that equal transcripts
// mean both servers are right, not just alike.
func run(t *testing.T, svc service, diffs map[string][2][]extent.Range) []string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var log []string
	note := func(format string, args ...any) { log = append(log, fmt.Sprintf(format, args...)) }
	pb := svc.client(t, "disk")
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %s: %v", svc.name, what, err)
		}
	}
	r := rand.New(rand.NewPCG(7, 7))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32() | 1)
		}
		return b
	}
	m := blobfake.NewModel(blobSize)
	put := func(off int64, b []byte) {
		t.Helper()
		_, err := pb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(b)), blob.HTTPRange{Offset: off, Count: int64(len(b))}, nil)
		must(fmt.Sprintf("put %d bytes at %d", len(b), off), err)
		m.Put(off, b)
	}
	clr := func(off, n int64) {
		t.Helper()
		_, err := pb.ClearPages(ctx, blob.HTTPRange{Offset: off, Count: n}, nil)
		must(fmt.Sprintf("clear %d bytes at %d", n, off), err)
		m.Clear(off, n)
	}
	// listing returns the page list of c in [off, off+n) (n = 0: all),
	// following NextMarker, merged, after checking that every response is
	// sorted, non-overlapping and inside the window.
	listing := func(c *pageblob.Client, snapshot string, off, n int64) ([]extent.Range, int, error) {
		o := &pageblob.GetPageRangesOptions{Range: blob.HTTPRange{Offset: off, Count: n}}
		if snapshot != "" {
			o.Snapshot = &snapshot
		}
		pager := c.NewGetPageRangesPager(o)
		var all []extent.Range
		responses := 0
		end := int64(blobSize)
		if n > 0 {
			end = off + n
		}
		for pager.More() {
			resp, err := pager.NextPage(ctx)
			if err != nil {
				return nil, responses, err
			}
			responses++
			for _, pr := range resp.PageRange {
				e := extent.Range{Off: *pr.Start, Len: *pr.End + 1 - *pr.Start}
				if k := len(all); k > 0 && e.Off < all[k-1].End() || e.Off < off || e.End() > end || e.Len <= 0 {
					t.Errorf("%s: page list of [%d, %d): range %v after %v", svc.name, off, end, e, all)
				}
				all = append(all, e)
			}
			if len(resp.ClearRange) > 0 {
				t.Errorf("%s: a plain page list has ClearRange elements", svc.name)
			}
		}
		return extent.Merge(all), responses, nil
	}
	checkList := func(what string, c *pageblob.Client, snapshot string, mm *blobfake.Model, off, n int64) {
		t.Helper()
		got, responses, err := listing(c, snapshot, off, n)
		must(what, err)
		span := n
		if n == 0 {
			span = blobSize - off
		}
		if want := mm.Ranges(off, span); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %s = %v, want %v", svc.name, what, got, want)
		}
		note("%s: %v", what, got)
		t.Logf("%s: %s in %d responses", svc.name, what, responses)
	}
	checkRead := func(what string, c *pageblob.Client, mm *blobfake.Model, off, n int64) {
		t.Helper()
		resp, err := c.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: off, Count: n}})
		must(what, err)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		must(what, err)
		end := int64(blobSize)
		if n > 0 {
			end = min(off+n, blobSize)
		}
		if !bytes.Equal(got, mm.Data[off:end]) {
			t.Errorf("%s: %s: %d bytes differ from the model's %d", svc.name, what, len(got), end-off)
		}
		cr := ""
		if resp.ContentRange != nil {
			cr = *resp.ContentRange
		}
		note("%s: %d bytes, Content-Range %q, equal to the model %v", what, len(got), cr, bytes.Equal(got, mm.Data[off:end]))
	}
	checkProps := func(what string, c *pageblob.Client) {
		t.Helper()
		p, err := c.GetProperties(ctx, nil)
		must(what, err)
		if p.ContentLength == nil || *p.ContentLength != blobSize || p.BlobType == nil || *p.BlobType != blob.BlobTypePageBlob {
			t.Errorf("%s: %s: length %v type %v", svc.name, what, p.ContentLength, p.BlobType)
		}
		note("%s: %d bytes, %s", what, *p.ContentLength, *p.BlobType)
	}
	expect := func(what string, err error) {
		note("%s: %s", what, status(err))
	}

	// Create, write (adjacent, overlapping, at the end), clear (splitting a
	// range, across ranges, where nothing is), snapshot, write and clear more.
	_, err := pb.Create(ctx, blobSize, nil)
	must("create", err)
	put(0, random(4*kib))
	put(4*kib, random(4*kib)) // adjacent to the first
	put(64*kib, random(512))
	put(blobSize-512, random(512)) // the last page
	put(128*kib, random(256*kib))
	put(2*kib, random(4*kib)) // over both first ranges
	clr(1*kib, 1*kib)         // splits a range
	clr(200*kib, 100*kib)     // inside one range
	clr(512*kib, 8*kib)       // where nothing is
	snap, err := pb.CreateSnapshot(ctx, nil)
	must("snapshot", err)
	if snap.Snapshot == nil || *snap.Snapshot == "" {
		t.Fatalf("%s: snapshot without x-ms-snapshot", svc.name)
	}
	s1 := *snap.Snapshot
	m1 := m.Clone()
	put(512*kib, random(4*kib))
	clr(0, 1*kib)
	put(64*kib, random(512))        // rewritten
	put(700*kib, make([]byte, 512)) // zeros are still a written page
	clr(256*kib, 64*kib)            // through the middle of the big range
	sc, err := pb.WithSnapshot(s1)
	must("snapshot client", err)

	checkList("page list of the blob", pb, "", m, 0, 0)
	checkList("page list of [0, 128 KiB)", pb, "", m, 0, 128*kib)
	checkList("page list of [130 KiB, 330 KiB)", pb, "", m, 130*kib, 200*kib)
	checkList("page list of the last 2 KiB", pb, "", m, blobSize-2*kib, 2*kib)
	checkList("page list of the snapshot", pb, s1, m1, 0, 0)
	checkList("page list of the snapshot in [1 KiB, 8 KiB)", pb, s1, m1, 1*kib, 7*kib)
	checkList("page list of the snapshot client", sc, "", m1, 0, 0)

	checkRead("the whole blob", pb, m, 0, 0)
	checkRead("bytes [1000, 6000)", pb, m, 1000, 5000)
	checkRead("bytes [128 KiB, 512 KiB)", pb, m, 128*kib, 384*kib)
	checkRead("the last page", pb, m, blobSize-512, 512)
	checkRead("across the end", pb, m, blobSize-100, 1000)
	checkRead("the whole snapshot", sc, m1, 0, 0)
	checkRead("snapshot bytes [3000, 70000)", sc, m1, 3000, 67000)

	checkProps("properties of the blob", pb)
	checkProps("properties of the snapshot", sc)

	// Errors both servers return.
	body := func(n int) io.ReadSeekCloser { return streaming.NopCloser(bytes.NewReader(random(n))) }
	_, err = pb.UploadPages(ctx, body(512), blob.HTTPRange{Offset: 100, Count: 512}, nil)
	expect("put page at an unaligned offset", err)
	_, err = pb.UploadPages(ctx, body(100), blob.HTTPRange{Offset: 0, Count: 100}, nil)
	expect("put page of 100 bytes", err)
	_, err = pb.UploadPages(ctx, body(512), blob.HTTPRange{Offset: 0, Count: 1024}, nil)
	expect("put page with a range longer than the body", err)
	_, err = pb.UploadPages(ctx, body(512), blob.HTTPRange{Offset: blobSize, Count: 512}, nil)
	expect("put page past the end", err)
	_, err = pb.ClearPages(ctx, blob.HTTPRange{Offset: 100, Count: 512}, nil)
	expect("clear pages at an unaligned offset", err)
	_, err = pb.ClearPages(ctx, blob.HTTPRange{Offset: blobSize, Count: 512}, nil)
	expect("clear pages past the end", err)
	_, _, err = listing(pb, "", blobSize, 512)
	expect("page list past the end", err)
	_, err = pb.Create(ctx, blobSize, &pageblob.CreateOptions{AccessConditions: &blob.AccessConditions{
		ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to(azcore.ETagAny)}}})
	expect("create over an existing blob with If-None-Match: *", err)
	_, err = svc.client(t, "odd").Create(ctx, 1000, nil)
	expect("create of 1000 bytes", err)
	_, _, err = listing(pb, "2001-01-01T00:00:00.0000000Z", 0, 0)
	expect("page list of an unknown snapshot", err)
	gone := svc.client(t, "missing")
	_, err = gone.GetProperties(ctx, nil)
	expect("properties of a missing blob", err)
	_, err = gone.DownloadStream(ctx, nil)
	expect("read of a missing blob", err)
	_, _, err = listing(gone, "", 0, 0)
	expect("page list of a missing blob", err)
	_, err = gone.UploadPages(ctx, body(512), blob.HTTPRange{Offset: 0, Count: 512}, nil)
	expect("put page to a missing blob", err)
	_, err = gone.CreateSnapshot(ctx, nil)
	expect("snapshot of a missing blob", err)
	gs, err := pb.WithSnapshot("2001-01-01T00:00:00.0000000Z")
	must("snapshot client", err)
	_, err = gs.DownloadStream(ctx, nil)
	expect("read of an unknown snapshot", err)

	// The blob is unchanged by the failed requests.
	checkList("page list after the errors", pb, "", m, 0, 0)
	checkRead("the whole blob after the errors", pb, m, 0, 0)

	// What Azurite lacks: Get Page Ranges against a previous snapshot. The
	// fake must answer as the model says; Azurite 3.35 routes the request
	// to the plain Get Page Ranges and answers with the current page list.
	wantChanged, wantCleared := m.Diff(m1)
	var changed, cleared []extent.Range
	for pager := pb.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshot: &s1}); pager.More(); {
		resp, err := pager.NextPage(ctx)
		must("page list diff", err)
		for _, r := range resp.PageRange {
			changed = append(changed, extent.Range{Off: *r.Start, Len: *r.End + 1 - *r.Start})
		}
		for _, r := range resp.ClearRange {
			cleared = append(cleared, extent.Range{Off: *r.Start, Len: *r.End + 1 - *r.Start})
		}
	}
	changed, cleared = extent.Merge(changed), extent.Merge(cleared)
	if fmt.Sprint(changed, cleared) == fmt.Sprint(wantChanged, wantCleared) {
		note("page list diff against the snapshot: changed %v, cleared %v", changed, cleared)
	} else {
		log = append(log, "") // a difference from the model: the transcripts will not be equal
		t.Logf("%s: Get Page Ranges with prevsnapshot lists changed %v, cleared %v; the model says changed %v, cleared %v",
			svc.name, changed, cleared, wantChanged, wantCleared)
	}
	diffs[svc.name] = [2][]extent.Range{changed, cleared}
	return log
}

func to[T any](v T) *T { return &v }

// TestAgainstAzurite runs the same sequence — create, put pages, clear pages,
// snapshot, more pages, page lists of the blob and the snapshot in whole and
// in windows, ranged reads, properties and fifteen error cases — against
// Azurite and against the fake, and requires the same transcript: page lists
// (merged: Azurite keeps adjacent writes as separate ranges, the fake
// coalesces them; the REST specification promises neither), bytes, lengths
// and status codes. The fake lists two ranges per response, so its lists
// also go through NextMarker, which Azurite never sends.
func TestAgainstAzurite(t *testing.T) {
	az := azuriteService(t)
	fk, srv := fakeService(t, 2)
	diffs := map[string][2][]extent.Range{}
	start := time.Now()
	want := run(t, az, diffs)
	t.Logf("azurite: %d observations in %v", len(want), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	got := run(t, fk, diffs)
	t.Logf("blobfake: %d observations in %v", len(got), time.Since(start).Round(time.Millisecond))
	if len(got) != len(want) {
		t.Fatalf("%d observations from the fake, %d from Azurite", len(got), len(want))
	}
	// The diff is the fake's alone: it must hold the model's answer, and
	// Azurite's (wrong) answer is left out of the comparison.
	n := len(want) - 1
	if got[n] == "" {
		t.Errorf("the fake's page list diff differs from the model")
	}
	if want[n] == "" {
		t.Logf("AZURITE DOES NOT IMPLEMENT Get Page Ranges with prevsnapshot: it answered changed %v, cleared %v; left out of the comparison",
			diffs["azurite"][0], diffs["azurite"][1])
		want, got = want[:n], got[:n]
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("differs:\n  azurite:  %s\n  blobfake: %s", want[i], got[i])
		} else {
			t.Logf("same: %s", got[i])
		}
	}
	if n := srv.Requests()["marker"]; n == 0 {
		t.Error("no page list of the fake continued with a marker")
	}
}

// TestSignature: with Signature set, a request without the SAS, or with
// another signature, is refused, as is a previous-snapshot URL without it.
func TestSignature(t *testing.T) {
	fk, base := blobfake.Start(t)
	fk.Signature = sig
	ctx := context.Background()
	for _, q := range []string{"", "?sv=1&sig=other", "?sv=1&sig=" + sig} {
		c, err := pageblob.NewClientWithNoCredential(base+"/a/c/b"+q, noRetry)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Create(ctx, 4096, nil)
		want := "403"
		if strings.HasSuffix(q, sig) {
			want = "ok"
		}
		if status(err) != want {
			t.Errorf("create with %q: %s, want %s", q, status(err), want)
		}
	}
}
