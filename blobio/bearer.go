package blobio

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Bearer is an Entra credential sent with every request besides the SAS, as a managed disk or
// snapshot with dataAccessAuthMode=AzureActiveDirectory requires for its export and upload URLs.
type Bearer struct {
	Credential azcore.TokenCredential // where tokens come from (an azidentity credential)
	// Scope is the token's scope; for managed disks "https://disk.azure.com//.default" (the service
	// checks for the trailing slash of https://disk.azure.com/, which azblob's Audience would trim).
	Scope string
}

// bearerPolicy sets the Authorization header from a token it caches until five minutes before it
// expires. It allows plain http (Azurite in tests), which azcore's bearer policy refuses.
type bearerPolicy struct {
	b   Bearer
	mu  sync.Mutex
	tok azcore.AccessToken
}

func (p *bearerPolicy) token(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tok.Token == "" || time.Until(p.tok.ExpiresOn) < 5*time.Minute {
		t, err := p.b.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{p.b.Scope}})
		if err != nil {
			return "", err
		}
		p.tok = t
	}
	return p.tok.Token, nil
}

func (p *bearerPolicy) Do(req *policy.Request) (*http.Response, error) {
	tok, err := p.token(req.Raw().Context())
	if err != nil {
		return nil, &tokenError{err}
	}
	req.Raw().Header.Set("Authorization", "Bearer "+tok)
	return req.Next()
}

// tokenError is a failure to get the bearer token: no attempt can fix it.
type tokenError struct{ err error }

func (e *tokenError) Error() string {
	return "getting an Entra token for the disk's data: " + e.err.Error()
}
func (e *tokenError) Unwrap() []error {
	return []error{e.err, errPermanent}
}
