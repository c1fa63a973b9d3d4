package azure

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	computefake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	keysfake "github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	secretsfake "github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets/fake"
)

// The fake cloud: an in-memory Microsoft.Compute and Key Vault behind the
// SDK's own fake servers, recording every mutating call.

const (
	sub     = "00000000-0000-0000-0000-000000000001"
	rg      = "rg-ade"
	region  = "westeurope"
	vaultU  = "https://adevault.vault.azure.net"
	kekName = "kek"
	kekVer  = "0123456789abcdef0123456789abcdef"
	// sasSecret is the signature in every SAS the fake hands out; it
	// must never appear in an error.
	sasSecret = "SIGsecretSIGsecret0123456789%2B%2F%3D"
)

func resID(typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s", sub, rg, typ, name)
}

func sasURL(name string) string {
	return "https://md-impexp-abc.z12.blob.storage.azure.net/" + name + "/abcd?sv=2018-03-28&sr=b&si=x&sig=" + sasSecret
}

type cloud struct {
	t  *testing.T
	mu sync.Mutex

	disks     map[string]*armcompute.Disk
	snapshots map[string]*armcompute.Snapshot
	vms       map[string]*armcompute.VirtualMachine
	des       map[string]*armcompute.DiskEncryptionSet
	secrets   map[string]azsecrets.Secret // by name
	kek       *rsa.PrivateKey

	calls []string // mutating calls, "VERB kind name"

	// captured request bodies
	diskPut     *armcompute.Disk
	snapshotPut *armcompute.Snapshot
	vmPut       *armcompute.VirtualMachine
	vmPatch     *armcompute.VirtualMachineUpdate
	vmGetExpand string
	unwrapAlg   azkeys.EncryptionAlgorithm
	unwrapKey   string // name/version

	// failure injection. "error" fails the grant while polling; the fake
	// transport then keeps that poller for the URL, so a later grant of
	// the same resource in the same test replays the failure.
	failGrant     string // "error", "nosas", "transport"
	failRevoke    string // "InvalidVhd"
	failVMCreate  bool
	revokeKeeps   bool // revoke succeeds but the disk keeps its state
	unwrapCorrupt bool
}

var (
	kekOnce sync.Once
	kekKey  *rsa.PrivateKey
)

func testKEK(t *testing.T) *rsa.PrivateKey {
	kekOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		kekKey = k
	})
	return kekKey
}

func newCloud(t *testing.T) *cloud {
	return &cloud{
		t:         t,
		disks:     map[string]*armcompute.Disk{},
		snapshots: map[string]*armcompute.Snapshot{},
		vms:       map[string]*armcompute.VirtualMachine{},
		des:       map[string]*armcompute.DiskEncryptionSet{},
		secrets:   map[string]azsecrets.Secret{},
		kek:       testKEK(t),
	}
}

func key(rg, name string) string { return strings.ToLower(rg + "/" + name) }

func (c *cloud) record(format string, args ...any) {
	c.calls = append(c.calls, fmt.Sprintf(format, args...))
}

// client returns an azure.Client wired to the fakes.
func (c *cloud) client() *Client {
	f := &computefake.ServerFactory{
		DisksServer:              c.disksServer(),
		SnapshotsServer:          c.snapshotsServer(),
		VirtualMachinesServer:    c.vmsServer(),
		DiskEncryptionSetsServer: c.desServer(),
	}
	ss := c.secretsServer()
	ks := c.keysServer()
	cl, err := New(sub, &azfake.TokenCredential{}, &Options{
		ARM:           &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: computefake.NewServerFactoryTransport(f)}},
		Secrets:       &azsecrets.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: secretsfake.NewServerTransport(&ss)}},
		Keys:          &azkeys.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: keysfake.NewServerTransport(&ks)}},
		PollFrequency: time.Millisecond,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

func notFound(e *azfake.ErrorResponder) { e.SetResponseError(http.StatusNotFound, "ResourceNotFound") }

func (c *cloud) disksServer() computefake.DisksServer {
	return computefake.DisksServer{
		Get: func(ctx context.Context, rg, name string, _ *armcompute.DisksClientGetOptions) (resp azfake.Responder[armcompute.DisksClientGetResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			d, ok := c.disks[key(rg, name)]
			if !ok {
				notFound(&errResp)
				return
			}
			resp.SetResponse(http.StatusOK, armcompute.DisksClientGetResponse{Disk: *d}, nil)
			return
		},
		BeginCreateOrUpdate: func(ctx context.Context, rg, name string, disk armcompute.Disk, _ *armcompute.DisksClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.DisksClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.record("PUT disk %s", name)
			body := disk
			c.diskPut = &body
			stored := disk
			stored.ID, stored.Name = to.Ptr(resID(typeDisk, name)), to.Ptr(name)
			p := *disk.Properties
			p.DiskState = to.Ptr(armcompute.DiskStateReadyToUpload)
			if p.CreationData != nil && p.CreationData.UploadSizeBytes != nil {
				p.DiskSizeBytes = to.Ptr(*p.CreationData.UploadSizeBytes - 512)
			}
			stored.Properties = &p
			c.disks[key(rg, name)] = &stored
			resp.AddNonTerminalResponse(http.StatusAccepted, nil)
			resp.SetTerminalResponse(http.StatusOK, armcompute.DisksClientCreateOrUpdateResponse{Disk: stored}, nil)
			return
		},
		BeginGrantAccess: func(ctx context.Context, rg, name string, g armcompute.GrantAccessData, _ *armcompute.DisksClientBeginGrantAccessOptions) (resp azfake.PollerResponder[armcompute.DisksClientGrantAccessResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.record("GRANT disk %s %s %d", name, *g.Access, *g.DurationInSeconds)
			d, ok := c.disks[key(rg, name)]
			if !ok {
				notFound(&errResp)
				return
			}
			switch c.failGrant {
			case "error":
				resp.AddNonTerminalResponse(http.StatusAccepted, nil)
				resp.SetTerminalError(http.StatusConflict, "OperationNotAllowed")
				return
			case "transport":
				errResp.SetError(errors.New("connection reset while granting " + sasURL(name)))
				return
			}
			if *g.Access == armcompute.AccessLevelWrite {
				d.Properties.DiskState = to.Ptr(armcompute.DiskStateActiveUpload)
			} else {
				d.Properties.DiskState = to.Ptr(armcompute.DiskStateActiveSAS)
			}
			out := armcompute.DisksClientGrantAccessResponse{}
			if c.failGrant != "nosas" {
				out.AccessURI.AccessSAS = to.Ptr(sasURL(name))
			}
			resp.AddNonTerminalResponse(http.StatusAccepted, nil)
			resp.SetTerminalResponse(http.StatusOK, out, nil)
			return
		},
		BeginRevokeAccess: func(ctx context.Context, rg, name string, _ *armcompute.DisksClientBeginRevokeAccessOptions) (resp azfake.PollerResponder[armcompute.DisksClientRevokeAccessResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.record("REVOKE disk %s", name)
			d, ok := c.disks[key(rg, name)]
			if !ok {
				notFound(&errResp)
				return
			}
			if c.failRevoke != "" {
				errResp.SetResponseError(http.StatusBadRequest, c.failRevoke)
				return
			}
			if !c.revokeKeeps {
				d.Properties.DiskState = to.Ptr(armcompute.DiskStateUnattached)
			}
			resp.SetTerminalResponse(http.StatusOK, armcompute.DisksClientRevokeAccessResponse{}, nil)
			return
		},
		BeginDelete: func(ctx context.Context, rg, name string, _ *armcompute.DisksClientBeginDeleteOptions) (resp azfake.PollerResponder[armcompute.DisksClientDeleteResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.record("DELETE disk %s", name)
			delete(c.disks, key(rg, name))
			resp.SetTerminalResponse(http.StatusOK, armcompute.DisksClientDeleteResponse{}, nil)
			return
		},
	}
}

func (c *cloud) snapshotsServer() computefake.SnapshotsServer {
	return computefake.SnapshotsServer{
		Get: func(ctx context.Context, rg, name string, _ *armcompute.SnapshotsClientGetOptions) (resp azfake.Responder[armcompute.SnapshotsClientGetResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			s, ok := c.snapshots[key(rg, name)]
			if !ok {
				notFound(&errResp)
				return
			}
			resp.SetResponse(http.StatusOK, armcompute.SnapshotsClientGetResponse{Snapshot: *s}, nil)
			return
		},
		BeginCreateOrUpdate: func(ctx context.Context, rg, name string, s armcompute.Snapshot, _ *armcompute.SnapshotsClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.record("PUT snapshot %s", name)
			body := s
			c.snapshotPut = &body
			stored := s
			stored.ID, stored.Name = to.Ptr(resID(typeSnapshot, name)), to.Ptr(name)
			c.snapshots[key(rg, name)] = &stored
			resp.AddNonTerminalResponse(http.StatusAccepted, nil)
			resp.SetTerminalResponse(http.StatusOK, armcompute.SnapshotsClientCreateOrUpdateResponse{Snapshot: stored}, nil)
			return
		},
		BeginGrantAccess: func(ctx context.Context, rg, name string, g armcompute.GrantAccessData, _ *armcompute.SnapshotsClientBeginGrantAccessOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientGrantAccessResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.record("GRANT snapshot %s %s %d", name, *g.Access, *g.DurationInSeconds)
			if _, ok := c.snapshots[key(rg, name)]; !ok {
				notFound(&errResp)
				return
			}
			switch c.failGrant {
			case "error":
				resp.AddNonTerminalResponse(http.StatusAccepted, nil)
				resp.SetTerminalError(http.StatusConflict, "OperationNotAllowed")
				return
			case "transport":
				errResp.SetError(errors.New("connection reset while granting " + sasURL(name)))
				return
			}
			out := armcompute.SnapshotsClientGrantAccessResponse{}
			if c.failGrant != "nosas" {
				out.AccessURI.AccessSAS = to.Ptr(sasURL(name))
			}
			resp.AddNonTerminalResponse(http.StatusAccepted, nil)
			resp.SetTerminalResponse(http.StatusOK, out, nil)
			return
		},
		BeginRevokeAccess: func(ctx context.Context, rg, name string, _ *armcompute.SnapshotsClientBeginRevokeAccessOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientRevokeAccessResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.record("REVOKE snapshot %s", name)
			resp.SetTerminalResponse(http.StatusOK, armcompute.SnapshotsClientRevokeAccessResponse{}, nil)
			return
		},
	}
}

func (c *cloud) vmsServer() computefake.VirtualMachinesServer {
	return computefake.VirtualMachinesServer{
		Get: func(ctx context.Context, rg, name string, o *armcompute.VirtualMachinesClientGetOptions) (resp azfake.Responder[armcompute.VirtualMachinesClientGetResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			if o != nil && o.Expand != nil {
				c.vmGetExpand = string(*o.Expand)
			}
			vm, ok := c.vms[key(rg, name)]
			if !ok {
				notFound(&errResp)
				return
			}
			resp.SetResponse(http.StatusOK, armcompute.VirtualMachinesClientGetResponse{VirtualMachine: *vm}, nil)
			return
		},
		BeginUpdate: func(ctx context.Context, rg, name string, u armcompute.VirtualMachineUpdate, _ *armcompute.VirtualMachinesClientBeginUpdateOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientUpdateResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.record("PATCH vm %s", name)
			c.vmPatch = &u
			resp.SetTerminalResponse(http.StatusOK, armcompute.VirtualMachinesClientUpdateResponse{VirtualMachine: *c.vms[key(rg, name)]}, nil)
			return
		},
		BeginDelete: func(ctx context.Context, rg, name string, _ *armcompute.VirtualMachinesClientBeginDeleteOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientDeleteResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.record("DELETE vm %s", name)
			delete(c.vms, key(rg, name))
			resp.AddNonTerminalResponse(http.StatusAccepted, nil)
			resp.SetTerminalResponse(http.StatusOK, armcompute.VirtualMachinesClientDeleteResponse{}, nil)
			return
		},
		BeginCreateOrUpdate: func(ctx context.Context, rg, name string, vm armcompute.VirtualMachine, _ *armcompute.VirtualMachinesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.record("PUT vm %s", name)
			body := vm
			c.vmPut = &body
			if c.failVMCreate {
				c.failVMCreate = false
				errResp.SetResponseError(http.StatusConflict, "OSDiskSwapNotSupportedForVMsUsingDiskEncryption")
				return
			}
			stored := vm
			stored.ID = to.Ptr(resID(typeVM, name))
			c.vms[key(rg, name)] = &stored
			resp.SetTerminalResponse(http.StatusOK, armcompute.VirtualMachinesClientCreateOrUpdateResponse{VirtualMachine: stored}, nil)
			return
		},
	}
}

func (c *cloud) desServer() computefake.DiskEncryptionSetsServer {
	return computefake.DiskEncryptionSetsServer{
		Get: func(ctx context.Context, rg, name string, _ *armcompute.DiskEncryptionSetsClientGetOptions) (resp azfake.Responder[armcompute.DiskEncryptionSetsClientGetResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			d, ok := c.des[key(rg, name)]
			if !ok {
				notFound(&errResp)
				return
			}
			resp.SetResponse(http.StatusOK, armcompute.DiskEncryptionSetsClientGetResponse{DiskEncryptionSet: *d}, nil)
			return
		},
	}
}

func (c *cloud) secretsServer() secretsfake.Server {
	return secretsfake.Server{
		GetSecret: func(ctx context.Context, name, version string, _ *azsecrets.GetSecretOptions) (resp azfake.Responder[azsecrets.GetSecretResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			name, version = splitFakeName(name, version)
			s, ok := c.secrets[name+"/"+version]
			if !ok {
				errResp.SetResponseError(http.StatusNotFound, "SecretNotFound")
				return
			}
			resp.SetResponse(http.StatusOK, azsecrets.GetSecretResponse{Secret: s}, nil)
			return
		},
	}
}

// keysServer unwraps with the real RSA private key, using the algorithm the
// client asked for: a wrong algorithm fails just as Key Vault would.
func (c *cloud) keysServer() keysfake.Server {
	return keysfake.Server{
		UnwrapKey: func(ctx context.Context, name, version string, p azkeys.KeyOperationParameters, _ *azkeys.UnwrapKeyOptions) (resp azfake.Responder[azkeys.UnwrapKeyResponse], errResp azfake.ErrorResponder) {
			c.mu.Lock()
			defer c.mu.Unlock()
			name, version = splitFakeName(name, version)
			c.unwrapKey = name + "/" + version
			if name != kekName || version != kekVer {
				errResp.SetResponseError(http.StatusNotFound, "KeyNotFound")
				return
			}
			if p.Algorithm == nil {
				errResp.SetResponseError(http.StatusBadRequest, "BadParameter")
				return
			}
			c.unwrapAlg = *p.Algorithm
			var out []byte
			var err error
			switch *p.Algorithm {
			case azkeys.EncryptionAlgorithmRSAOAEP:
				out, err = rsa.DecryptOAEP(sha1.New(), nil, c.kek, p.Value, nil)
			case azkeys.EncryptionAlgorithmRSAOAEP256:
				out, err = rsa.DecryptOAEP(sha256.New(), nil, c.kek, p.Value, nil)
			case azkeys.EncryptionAlgorithmRSA15:
				out, err = rsa.DecryptPKCS1v15(nil, c.kek, p.Value)
			default:
				err = errors.New("unsupported algorithm")
			}
			if err != nil || c.unwrapCorrupt {
				errResp.SetResponseError(http.StatusBadRequest, "BadParameter")
				return
			}
			resp.SetResponse(http.StatusOK, azkeys.UnwrapKeyResponse{KeyOperationResult: azkeys.KeyOperationResult{Result: out}}, nil)
			return
		},
	}
}

// splitFakeName undoes a quirk of the azkeys fake (v1.5.0): its route
// pattern's character class [$-;] includes '/', so "keys/NAME/VERSION/unwrapkey"
// arrives as name "NAME/VERSION" and an empty version.
func splitFakeName(name, version string) (string, string) {
	if i := strings.IndexByte(name, '/'); version == "" && i >= 0 {
		return name[:i], name[i+1:]
	}
	return name, version
}

// wrap encrypts key with the test KEK as Key Vault's wrapKey would.
func (c *cloud) wrap(t *testing.T, alg azkeys.EncryptionAlgorithm, key []byte) []byte {
	t.Helper()
	var out []byte
	var err error
	switch alg {
	case azkeys.EncryptionAlgorithmRSAOAEP:
		out, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, &c.kek.PublicKey, key, nil)
	case azkeys.EncryptionAlgorithmRSAOAEP256:
		out, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, &c.kek.PublicKey, key, nil)
	case azkeys.EncryptionAlgorithmRSA15:
		out, err = rsa.EncryptPKCS1v15(rand.Reader, &c.kek.PublicKey, key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func kekURL() string               { return vaultU + "/keys/" + kekName + "/" + kekVer }
func secretURL(name string) string { return vaultU + "/secrets/" + name + "/v1" }

// count is the number of recorded calls whose verb is verb (case-insensitive).
func (c *cloud) count(verb string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.calls {
		if v, _, _ := strings.Cut(s, " "); strings.EqualFold(v, verb) {
			n++
		}
	}
	return n
}
