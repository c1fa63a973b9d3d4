package blobio_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/luksconv/luksconv/blobio"
)

// fakeCredential hands out "tok" for the disk scope only, valid for an hour, or fails.
type fakeCredential struct {
	calls atomic.Int64
	fail  bool
}

func (c *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.calls.Add(1)
	if c.fail || len(o.Scopes) != 1 || o.Scopes[0] != "https://disk.azure.com//.default" {
		return azcore.AccessToken{}, errors.New("no token for that scope")
	}
	return azcore.AccessToken{Token: "tok", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// bearerCheck is a service in front of Azurite that, like a disk with dataAccessAuthMode
// AzureActiveDirectory, refuses requests without a bearer token next to the SAS (401).
type bearerCheck struct {
	next          http.RoundTripper
	seen, refused atomic.Int64
	want          string
}

func (b *bearerCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	if got := req.Header.Get("Authorization"); got != "Bearer "+b.want {
		b.refused.Add(1)
		return &http.Response{StatusCode: http.StatusUnauthorized, Status: "401 Unauthorized", Request: req,
			Header: http.Header{"Www-Authenticate": {`Bearer authorization_uri="https://login.example/x"`}, "X-Ms-Error-Code": {"InvalidAuthenticationInfo"}},
			Body:   http.NoBody}, nil
	}
	b.seen.Add(1)
	req = req.Clone(req.Context())
	req.Header.Del("Authorization") // Azurite reads the SAS
	return b.next.RoundTrip(req)
}

// TestBearer writes and reads a page blob through a service that requires a bearer token besides
// the SAS: with blobio.Bearer every request carries the token (one token for the whole run); without
// it the service's 401 is not retried; a credential that fails stops the run without a request.
func TestBearer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := sparseImage(8*mib, 7)
	cred := &fakeCredential{}
	check := &bearerCheck{next: http.DefaultTransport, want: "tok"}
	bearer := &blobio.Bearer{Credential: cred, Scope: "https://disk.azure.com//.default"}
	u, _ := e.sas(t, "", true)
	s, err := blobio.CreatePageBlobSink(ctx, u, int64(len(img)), blobio.SinkOptions{Transport: check, Bearer: bearer, Logf: e.logf})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := copyImage(ctx, s, img, 1*mib, 2, -1, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, src := download(t, e, u, blobio.SourceOptions{Transport: check, Bearer: bearer})
	src.Close()
	if !bytes.Equal(got[:len(img)], img) {
		t.Fatal("the blob read back differs")
	}
	// A token is asked for once per client, not per request.
	if check.refused.Load() != 0 || check.seen.Load() < 10 || cred.calls.Load() > 4 {
		t.Errorf("requests with the token %d, refused %d, tokens asked %d", check.seen.Load(), check.refused.Load(), cred.calls.Load())
	}

	// Without the token: the 401 is refused at once, not retried.
	check.refused.Store(0)
	_, err = blobio.OpenPageBlob(ctx, u, blobio.SourceOptions{Transport: check, Logf: e.logf})
	if err == nil || blobio.HTTPStatus(err) != http.StatusUnauthorized || check.refused.Load() != 1 {
		t.Errorf("without a token: %v (status %d), %d refused requests", err, blobio.HTTPStatus(err), check.refused.Load())
	}
	// A credential that gives no token: no request, no retry.
	check.refused.Store(0)
	n := check.seen.Load()
	_, err = blobio.OpenPageBlob(ctx, u, blobio.SourceOptions{Transport: check, Bearer: &blobio.Bearer{Credential: &fakeCredential{fail: true}, Scope: bearer.Scope}, Logf: e.logf})
	if err == nil || !strings.Contains(err.Error(), "Entra token") || check.seen.Load() != n || check.refused.Load() != 0 {
		t.Errorf("failing credential: %v", err)
	}
}
