package azurite

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
)

// TestStart checks the harness: a SAS made here lets the SDK create, write
// and read a page blob, and a SAS without write permission is refused.
func TestStart(t *testing.T) {
	srv := Start(t)
	if !strings.HasPrefix(srv.BlobEndpoint, "http://127.0.0.1:") || !strings.HasSuffix(srv.BlobEndpoint, "/"+Account) {
		t.Fatalf("endpoint %q", srv.BlobEndpoint)
	}
	srv.CreateContainer(t, "disks")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}}
	pb, err := pageblob.NewClientWithNoCredential(srv.BlobSAS(t, "disks", "disk", WriteSAS, time.Hour), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pb.Create(ctx, 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("azurite!"), 512)
	if _, err := pb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(data)), blob.HTTPRange{Offset: 8192, Count: 4096}, nil); err != nil {
		t.Fatal(err)
	}
	ro, err := pageblob.NewClientWithNoCredential(srv.BlobSAS(t, "disks", "disk", ReadSAS, time.Hour), opts)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ro.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: 4096, Count: 8192}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:4096], make([]byte, 4096)) || !bytes.Equal(got[4096:], data) {
		t.Fatal("read back differs")
	}
	_, err = ro.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(data)), blob.HTTPRange{Offset: 0, Count: 4096}, nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
		t.Fatalf("write with a read-only SAS: %v", err)
	}
}
