package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/internal/azurefake"
	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/luksconv"
)

// lockedProxy stands in front of Azurite for the data URLs of locked-down disks and snapshots, and
// refuses what Azure refuses: without an Entra bearer token a 401 with a challenge; with refuse403 a
// 403 as from outside the private endpoint's network.
type lockedProxy struct {
	mu        sync.Mutex
	srv       *httptest.Server
	withToken int
	refused   int
	refuse403 bool
}

func newLockedProxy(t *testing.T, target string) *lockedProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &lockedProxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		switch {
		case p.refuse403:
			p.refused++
			p.mu.Unlock()
			w.Header().Set("x-ms-error-code", "AuthorizationFailure")
			w.WriteHeader(http.StatusForbidden)
			return
		case r.Header.Get("Authorization") != "Bearer fake_token":
			p.refused++
			p.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="https://login.example/tenant", resource_id="https://disk.azure.com/"`)
			w.Header().Set("x-ms-error-code", "InvalidAuthenticationInfo")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		p.withToken++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *lockedProxy) counts() (withToken, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.withToken, p.refused
}

// TestAzureConvertLockedDown converts a snapshot whose data needs Entra authentication and a private
// endpoint (dataAccessAuthMode=AzureActiveDirectory, networkAccessPolicy=AllowPrivate): every export
// and upload request carries the bearer token, and the new disk is as locked down as its source;
// the flags override that; a 401 and a private-access 403 get hints that say what they are.
func TestAzureConvertLockedDown(t *testing.T) {
	f, _ := setupAzure(t, false)
	dir := t.TempDir()
	diskAccess := "/subscriptions/" + fakeSub + "/resourceGroups/" + fakeRG + "/providers/Microsoft.Compute/diskAccesses/da1"
	f.Lock()
	sp := f.Snapshots[azurefake.Key(fakeRG, "snap")].Properties
	sp.DataAccessAuthMode = to.Ptr(armcompute.DataAccessAuthModeAzureActiveDirectory)
	sp.NetworkAccessPolicy = to.Ptr(armcompute.NetworkAccessPolicyAllowPrivate)
	sp.DiskAccessID = to.Ptr(diskAccess)
	sp.PublicNetworkAccess = to.Ptr(armcompute.PublicNetworkAccessDisabled)
	f.Unlock()
	proxy := newLockedProxy(t, f.az.BlobSAS(t, "disks", "snap.vhd", azurite.ReadSAS, time.Minute))
	f.rewrite = func(kind, name, u string) string {
		pu, _ := url.Parse(u)
		pu.Host = strings.TrimPrefix(proxy.srv.URL, "http://")
		return pu.String()
	}
	args := []string{"azure", "convert", "-q", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain", "--journal", dir + "/j", "--json"}
	so, se, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("locked-down source: exit %d:\n%s", code, se)
	}
	f.assertNoSAS(t, so+se)
	if with, refused := proxy.counts(); with < 3 || refused != 0 {
		t.Errorf("data requests with the token %d, refused %d", with, refused)
	}
	f.Lock()
	put := f.DiskPut
	f.Unlock()
	if p := put.Properties; p.DataAccessAuthMode == nil || *p.DataAccessAuthMode != armcompute.DataAccessAuthModeAzureActiveDirectory ||
		p.NetworkAccessPolicy == nil || *p.NetworkAccessPolicy != armcompute.NetworkAccessPolicyAllowPrivate || p.DiskAccessID == nil || *p.DiskAccessID != diskAccess ||
		p.PublicNetworkAccess == nil || *p.PublicNetworkAccess != armcompute.PublicNetworkAccessDisabled {
		t.Errorf("the new disk is less protected than its source: %+v", p)
	}

	// Overrides, in a dry run.
	so, se, code = runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain2",
		"--dry-run", "--json", "--network-access-policy", "AllowAll", "--data-access-auth-mode", "None")
	if code != 0 {
		t.Fatalf("dry run with overrides: exit %d:\n%s", code, se)
	}
	var rep struct {
		Spec struct {
			Access struct {
				AuthMode string `json:"dataAccessAuthMode"`
				Policy   string `json:"networkAccessPolicy"`
				Access   string `json:"diskAccessId"`
			} `json:"dataAccess"`
		} `json:"disk_spec"`
	}
	if err := json.Unmarshal([]byte(so), &rep); err != nil || rep.Spec.Access.AuthMode != "None" || rep.Spec.Access.Policy != "AllowAll" || rep.Spec.Access.Access != "" {
		t.Errorf("overridden access %+v (%v)", rep.Spec.Access, err)
	}
	if _, se, code := runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain2",
		"--dry-run", "--network-access-policy", "Open"); code != exitUsage {
		t.Errorf("bad --network-access-policy: exit %d: %s", code, se)
	}
	if _, se, code := runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain2",
		"--dry-run", "--sku", "UltraSSD_LRS"); code != exitUsage || !strings.Contains(se, "cannot be UltraSSD_LRS") || !strings.Contains(se, "--sku") {
		t.Errorf("an Ultra OS disk: exit %d: %s", code, se)
	}
	if _, se, code := runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain2",
		"--dry-run", "--cloud", "moon"); code != exitUsage || !strings.Contains(se, "AzureChinaCloud") {
		t.Errorf("an unknown --cloud: exit %d: %s", code, se)
	}

	// The source read without the token (a snapshot whose mode the fake stops reporting) gets the
	// 401's hint; from outside the private network, the 403's.
	f.Lock()
	sp.DataAccessAuthMode = nil
	f.Unlock()
	_, se, code = runCLI(t, "azure", "convert", "-q", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain3", "--journal", dir+"/j3")
	if code == 0 || !strings.Contains(se, "Data Operator for Managed Disks") {
		t.Errorf("401: exit %d: %s", code, se)
	}
	f.Lock()
	sp.DataAccessAuthMode = to.Ptr(armcompute.DataAccessAuthModeAzureActiveDirectory)
	f.Unlock()
	proxy.mu.Lock()
	proxy.refuse403 = true
	proxy.mu.Unlock()
	_, se, code = runCLI(t, "azure", "convert", "-q", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain4", "--journal", dir+"/j4")
	if code == 0 || !strings.Contains(se, "private endpoint") || strings.Contains(se, "expired") {
		t.Errorf("403 from outside the private network: exit %d: %s", code, se)
	}
}

// TestAzureConvertResumeNewURL interrupts an upload and resumes it through a grant whose URL has
// another host (the same disk, as the plan tag proves): the journal follows the disk, not the URL,
// so the rerun skips what the first run wrote, and the disk equals the local conversion.
func TestAzureConvertResumeNewURL(t *testing.T) {
	f, fx := setupAzure(t, false)
	dir := t.TempDir()
	want := localConversion(t, fx, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	azureOutputHook = func(_ *uploadJob, o luksconv.Output) luksconv.Output {
		return &interruptOutput{Output: o, cancel: cancel}
	}
	t.Cleanup(func() { azureOutputHook = nil })
	args := []string{"azure", "convert", "-q", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain",
		"--journal", filepath.Join(dir, "j"), "--workers", "1", "--json"}
	if _, se, code := runCLICtx(t, ctx, args...); code != exitInterrupted {
		t.Fatalf("interrupted run: exit %d:\n%s", code, se)
	}
	azureOutputHook = nil
	f.rewrite = func(kind, name, u string) string {
		if kind == "disk" {
			return strings.Replace(u, "://127.0.0.1:", "://localhost:", 1)
		}
		return u
	}
	so, se, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("rerun through a new URL: exit %d:\n%s", code, se)
	}
	if resumed, _ := reportBytes(t, so); resumed == 0 {
		t.Errorf("the rerun through a new URL resumed nothing:\n%s", se)
	}
	got := download(t, f.az.BlobSAS(t, "disks", "plain.vhd", azurite.ReadSAS, time.Hour), int64(len(want)))
	if !bytes.Equal(got, want) {
		t.Fatal("the resumed disk differs from the local conversion")
	}
}

// TestAzureConvertAllowAllOpensPublicAccess: --network-access-policy AllowAll, which the hint for a
// private-endpoint 403 suggests, makes the new disk reachable from any network also when its source
// has publicNetworkAccess Disabled, which otherwise keeps the data private "even when
// NetworkAccessPolicy is set to AllowAll" (armcompute), so that the upload is refused again.
func TestAzureConvertAllowAllOpensPublicAccess(t *testing.T) {
	f, _ := setupAzure(t, false)
	f.Lock()
	sp := f.Snapshots[azurefake.Key(fakeRG, "snap")].Properties
	sp.NetworkAccessPolicy = to.Ptr(armcompute.NetworkAccessPolicyAllowPrivate)
	sp.DiskAccessID = to.Ptr("/subscriptions/" + fakeSub + "/resourceGroups/" + fakeRG + "/providers/Microsoft.Compute/diskAccesses/da1")
	sp.PublicNetworkAccess = to.Ptr(armcompute.PublicNetworkAccessDisabled)
	f.Unlock()
	so, se, code := runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain",
		"--dry-run", "--json", "--network-access-policy", "AllowAll")
	if code != 0 {
		t.Fatalf("dry run: exit %d:\n%s", code, se)
	}
	var rep struct {
		Spec struct {
			Access azure.DataAccess `json:"dataAccess"`
		} `json:"disk_spec"`
	}
	if err := json.Unmarshal([]byte(so), &rep); err != nil {
		t.Fatal(err)
	}
	if a := rep.Spec.Access; a.NetworkAccessPolicy != armcompute.NetworkAccessPolicyAllowAll || a.DiskAccessID != "" || a.Private() {
		t.Errorf("with --network-access-policy AllowAll the new disk's access is %+v: still private", a)
	}
}
