package blobio_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/luksconv/luksconv/blobio"
)

// TestSinkClearRefused: a destination that refuses Put Page's clear (a managed disk's upload URL is
// not known to take it everywhere) still ends up right: the zero runs of a write into a blob that
// holds data are written as zero pages instead, after one warning, and later clears are not tried.
func TestSinkClearRefused(t *testing.T) {
	const size = 4 * mib
	f := newDiffFixture(t, size+blobio.PageSize)
	old := bytes.Repeat([]byte{0xa5}, size)
	f.put(0, old)
	f.srv.SetRefuseClear(true)
	var logs strings.Builder
	s, err := blobio.CreatePageBlobSink(context.Background(), f.url("/acct/disks/os"), size, blobio.SinkOptions{
		HoldsData: true, Retry: fastRetry, Logf: func(format string, args ...any) { fmt.Fprintf(&logs, format+"\n", args...) }})
	if err != nil {
		t.Fatalf("open, the footer page to clear: %v", err)
	}
	// Two writes, each with a zero run of 1 MiB between data.
	want := bytes.Clone(old)
	for _, off := range []int64{0, 2 * mib} {
		b := make([]byte, 2*mib)
		for i := range b[:512<<10] {
			b[i] = byte(i%251 + 1)
		}
		copy(want[off:], b)
		if _, err := s.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	st := s.Stats()
	got := readBlob(t, f.pb, 0, size)
	if !bytes.Equal(got, want) || st.BytesCleared != 0 || st.BytesWritten < 2*mib {
		t.Errorf("content equal %v, stats %+v", bytes.Equal(got, want), st)
	}
	if n := strings.Count(logs.String(), "refuses Put Page's clear"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
	if c := f.srv.Requests()["clear pages"]; c != 1 {
		t.Errorf("%d clear requests, want 1 (the first, refused)", c)
	}
	if strings.Contains(logs.String(), diffSig) {
		t.Errorf("the SAS signature is in the log:\n%s", logs.String())
	}
}

// readBlob reads n bytes of the page blob c from off, with the SDK alone.
func readBlob(t *testing.T, c *pageblob.Client, off, n int64) []byte {
	t.Helper()
	resp, err := c.DownloadStream(context.Background(), &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: off, Count: n}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
