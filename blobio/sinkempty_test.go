package blobio_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/internal/blobfake"
)

// failPageList answers every Get Page Ranges with 500 OperationTimedOut, what the service answers for
// a large fragmented range; everything else goes through.
type failPageList struct{ rt http.RoundTripper }

func (f failPageList) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Query().Get("comp") == "pagelist" {
		return &http.Response{StatusCode: 500, Status: "500 Operation timed out", Header: http.Header{"X-Ms-Error-Code": {"OperationTimedOut"}},
			Body: http.NoBody, Request: r}, nil
	}
	return f.rt.RoundTrip(r)
}

// TestSinkEmptyUnknown: an existing blob whose page list cannot be read is taken for one that holds
// data: the disk's zeros are cleared over what it held (they were skipped, and the blob kept 1 MiB of
// 0xee where the disk has zeros). With Empty (the caller created the blob) the page list is not read.
func TestSinkEmptyUnknown(t *testing.T) {
	ctx := context.Background()
	_, base := blobfake.Start(t)
	const size = 4 << 20
	for _, empty := range []bool{false, true} {
		u := base + "/c/disk" + map[bool]string{false: "1", true: "2"}[empty] + ".vhd?sv=2024-08-04&sig=c2VjcmV0c2lnbmF0dXJlMTIz"
		c, err := pageblob.NewClientWithNoCredential(u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Create(ctx, size+512, nil); err != nil {
			t.Fatal(err)
		}
		if !empty {
			junk := bytes.Repeat([]byte{0xee}, 1<<20)
			if _, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(junk)), blob.HTTPRange{Offset: 0, Count: 1 << 20}, nil); err != nil {
				t.Fatal(err)
			}
		}
		var logs strings.Builder
		s, err := blobio.CreatePageBlobSink(ctx, u, size, blobio.SinkOptions{Transport: failPageList{http.DefaultTransport}, Empty: empty,
			Retry: blobio.RetryOptions{BaseDelay: 1, MaxDelay: 1}, Logf: func(f string, a ...any) { fmt.Fprintf(&logs, f+"\n", a...) }})
		if err != nil {
			t.Fatal(err)
		}
		if s.ZeroFilled() != empty || strings.Contains(logs.String(), "get page ranges") == empty {
			t.Errorf("Empty %v: ZeroFilled %v, log %q", empty, s.ZeroFilled(), logs.String())
		}
		disk := make([]byte, size) // all zeros
		if _, err := s.WriteAt(disk, 0); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if got := readBlob(t, c, 0, size); !bytes.Equal(got, disk) {
			t.Fatalf("Empty %v: the blob holds %d nonzero bytes where the disk has zeros", empty, len(got)-bytes.Count(got, []byte{0}))
		}
	}
}
