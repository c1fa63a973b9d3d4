// Package azurefake is an in-memory Microsoft.Compute and Key Vault for
// tests, served through the Azure SDK's own fake transports, so that a test
// drives the real SDK clients (request encoding, long-running operations,
// error decoding) without a network.
//
// It speaks only SDK types: the azure package's in-package tests import it,
// so it must not import azure. A test builds its client from ARMOptions,
// SecretsOptions and KeysOptions.
package azurefake

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
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	computefake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resourcegraph/armresourcegraph"
	resourcesfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	keysfake "github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	secretsfake "github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets/fake"
)

// The one key encryption key the fake Key Vault holds: UnwrapKey of any
// other name or version is a 404.
const (
	KEKName    = "kek"
	KEKVersion = "0123456789abcdef0123456789abcdef"
)

// SASSignature is the signature of every SAS that StaticSAS makes, so that
// a test can assert it never appears in an error or output.
const SASSignature = "SIGsecretSIGsecret0123456789%2B%2F%3D"

// StaticSAS is the SAS URL a grant of the resource name hands out when
// Cloud.SAS is nil: shaped like a managed disk's, signed with SASSignature.
func StaticSAS(name string) string {
	return "https://md-impexp-abc.z12.blob.storage.azure.net/" + name + "/abcd?sv=2018-03-28&sr=b&si=x&sig=" + SASSignature
}

// Key is the key of a resource in Cloud's maps. Azure resource group and
// resource names are case-insensitive, and so is the fake.
func Key(resourceGroup, name string) string { return strings.ToLower(resourceGroup + "/" + name) }

// Cloud is the fake's state. Tests set up resources by writing its maps,
// inject failures through its Fail fields and read back what the client
// sent from the captured fields.
//
// The embedded mutex guards every field; the fake servers hold it while
// they run, and so must a test that touches a field while a client call
// may be running. SAS and HasFooter are called with it held.
type Cloud struct {
	sync.Mutex

	// Subscription is the subscription of the IDs the fake gives the
	// resources it creates.
	Subscription string

	Disks              map[string]*armcompute.Disk              // by Key
	Snapshots          map[string]*armcompute.Snapshot          // by Key
	VMs                map[string]*armcompute.VirtualMachine    // by Key
	DiskEncryptionSets map[string]*armcompute.DiskEncryptionSet // by Key
	Secrets            map[string]azsecrets.Secret              // by "name/version"
	// ScaleSets are served to Resource Graph only (the inventory), by Key.
	ScaleSets map[string]*armcompute.VirtualMachineScaleSet
	// PowerStates are the VMs' power states by Key ("running", …); a VM
	// not listed is "deallocated", and one a PUT creates "running", as
	// Azure starts every VM it creates.
	PowerStates map[string]string
	KEK         *rsa.PrivateKey // the key KEKName/KEKVersion
	// DeallocatingReads, if set, makes a VM whose deallocation ended report "deallocating" for that
	// many reads of its instance view before "deallocated", as Azure may while it releases the
	// compute.
	DeallocatingReads int
	deallocating      map[string]int // reads left, by Key
	// DeleteFails makes the operation of a VM DELETE end in an error, as a poll of it that fails
	// would, while Azure goes on deleting the VM: it stays, provisioningState "Deleting", for
	// DeletingReads reads of it, and is then gone (with DeleteLeavesFailed: stays, Failed, as a
	// delete that failed half-way leaves it).
	DeleteFails        bool
	DeletingReads      int
	DeleteLeavesFailed bool
	deleting           map[string]int // reads left, by Key

	// Calls records every mutating call and every Key Vault read, in order:
	// "PUT disk NAME", "GRANT disk NAME Read|Write SECONDS",
	// "REVOKE snapshot NAME", "DELETE vm NAME", "PATCH vm NAME",
	// "DEALLOCATE vm NAME" (the VM's power state becomes "deallocated"),
	// "GET secret NAME", "UNWRAP ALGORITHM", "VALIDATE deployment NAME"
	// (a deployment validation: it changes nothing, but tests check that
	// it comes before a DELETE).
	Calls []string

	// The last request bodies and parameters the client sent.
	DiskPut     *armcompute.Disk
	SnapshotPut *armcompute.Snapshot
	VMPut       *armcompute.VirtualMachine
	VMPatch     *armcompute.VirtualMachineUpdate
	VMGetExpand string
	UnwrapAlg   azkeys.EncryptionAlgorithm
	UnwrapKey   string // "name/version"

	// SAS mints the SAS URL of a successful grant; kind is "disk" or
	// "snapshot". Nil means StaticSAS(name). A test that serves the blobs
	// (Azurite) mints real ones here, honouring g.DurationInSeconds.
	SAS func(kind, name string, g armcompute.GrantAccessData) string
	// GuestStateSAS mints the VM guest state SAS (securityDataAccessSAS) of a grant that asks for it
	// (getSecureVMGuestStateSAS) on a disk or snapshot with a security profile; nil means
	// StaticGuestStateSAS(name). GuestStateWritten, if set, reports whether the guest state of the
	// UploadPreparedSecure disk name was written: its revoke is refused (GuestStateRefusal) until
	// then, and always without a guest state write grant (secure.go).
	GuestStateSAS     func(kind, name string, g armcompute.GrantAccessData) string
	GuestStateWritten func(name string) bool

	// HasFooter reports whether the upload of the disk name, uploadSize
	// bytes (0 if the disk records none), ends in a VHD footer. Azure
	// refuses to revoke the write access of an upload without one
	// (InvalidVhd), since revoking ends the upload. Nil means it does.
	HasFooter func(name string, uploadSize int64) bool
	// SnapshotTaken, if set, is called (with the lock held) when a snapshot
	// is created, before it is stored: a test that serves the blobs takes
	// the snapshot's data there, as Azure copies the disk at that moment.
	SnapshotTaken func(rg, name string, s *armcompute.Snapshot)

	// FailGrant fails every grant: "error" as a long-running operation
	// that ends in a 409 (the SDK fake transport keeps that poller for its
	// URL, so a later grant of the same resource replays the failure),
	// "nosas" as a success without a SAS, "transport" as a connection
	// error whose text holds the SAS.
	FailGrant string
	// FailRevoke, if set, is the error code every disk revoke fails with.
	FailRevoke string
	// FailVMCreate fails the next VM PUT, as Azure refuses to swap the OS
	// disk of an ADE VM.
	FailVMCreate bool
	// RevokeKeeps makes a disk revoke succeed without the disk leaving
	// its state.
	RevokeKeeps bool
	// UnwrapCorrupt fails every UnwrapKey as a key that does not match.
	UnwrapCorrupt bool

	// ResourceSKUs is what the resource-SKUs list returns (filtered by
	// location as Azure filters it); a VM PUT, and the validation of a
	// deployment holding one, is refused with SkuNotAvailable when its
	// size is not listed for its location and zone or is restricted there.
	// New fills it with DefaultSKUs.
	ResourceSKUs []*armcompute.ResourceSKU
	// EncryptionAtHostRegistered: the subscription has the Microsoft.Compute/EncryptionAtHost
	// feature; without it ARM's validation refuses securityProfile.encryptionAtHost.
	EncryptionAtHostRegistered bool
	// PolicyDeny is Azure Policy: a non-empty return names the policy
	// assignment that denies a VM body. Validation is refused with
	// InvalidTemplateDeployment (detail RequestDisallowedByPolicy) and a
	// VM PUT with 403 RequestDisallowedByPolicy, as Azure does.
	PolicyDeny func(vm *armcompute.VirtualMachine) string
	// NICHold is how many VM PUTs after a VM's DELETE are refused with
	// NicReservedForAnotherVm when they name one of its NICs (Azure holds
	// a deleted VM's NICs for it for up to ~180 s).
	NICHold int
	// VMPutErrors fail the next VM PUTs, one each, in order, before any
	// other check.
	VMPutErrors []Refusal
	// OnCall, if set, is called with each call as it is recorded (with
	// the lock held), e.g. to interrupt a run at that point.
	OnCall func(call string)
	// Slow, if set, is asked (with the lock held) about each grant, snapshot PUT and disk PUT as it
	// starts, by its call as recorded ("GRANT disk NAME Read 3600", "PUT snapshot NAME"): an operation it gives
	// n > 0 answers its next n polls "in progress" and takes effect only at the poll after them, as
	// an operation takes a while in Azure. Azure goes on with an operation whose client stopped
	// polling it: Settle carries out those still in progress, as time passing would.
	Slow func(call string) int
	// Polled, if set, is called (with the lock held) at each poll of an operation Slow made slow, by
	// its call, e.g. to interrupt a run while it waits for that operation.
	Polled func(call string)
	// ValidateAsUpdate makes the validation of a VM that exists judge the
	// body as an update of it, refusing a changed osDisk.createOption with
	// PropertyChangeNotAllowed, as the Compute provider may (unverified).
	ValidateAsUpdate bool
	// Validated is the VM body of the last deployment validation.
	Validated *armcompute.VirtualMachine

	// Azure Resource Graph (graph.go), answered from the maps above. GraphPageSize, when
	// positive, bounds every page of a query below its $top; GraphTruncated is the resource type
	// (as Resource Graph spells it, e.g. "microsoft.compute/virtualmachines") whose query result is
	// reported truncated: its first page only, resultTruncated "true" and no $skipToken, as for a
	// query Resource Graph cannot page. GraphFail, if set, is the error code every query is
	// refused with (HTTP 403, as AuthorizationFailed). GraphQueries are the requests received, in
	// order.
	GraphPageSize  int
	GraphTruncated string
	GraphFail      string
	GraphQueries   []armresourcegraph.QueryRequest
	// GraphTenantLimitHit answers every tenant-scope query (no subscriptions named) with the header
	// x-ms-tenant-subscription-limit-hit: true, as Resource Graph does when the principal sees more
	// subscriptions than such a query covers.
	GraphTenantLimitHit bool

	// ExtensionFails refuses every VM extension PUT (VMExtensionProvisioningError).
	ExtensionFails bool
	// DiskGetRefusals refuse every read of the disks they name (by Key), as a role without read
	// access to a resource group is refused (403 AuthorizationFailed), whether the disk exists or not.
	DiskGetRefusals map[string]Refusal

	nicHeld     map[string]int // NIC ID (lower case) -> PUTs still refused
	slow        map[string]*slowOp
	settled     bool            // Settle ended operations in flight: see router
	guestWrite  map[string]bool // disks (by Key) handed a guest state write SAS
	failedAsync bool            // an operation failed asynchronously: see router

	graphTokens map[string]graphPage // the $skipTokens handed out (graph.go)
}

var (
	kekOnce sync.Once
	kek     *rsa.PrivateKey
)

// New returns an empty cloud for the subscription. Its KEK is generated
// once per process: RSA key generation is too slow to repeat per test.
func New(subscription string) *Cloud {
	kekOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			// crypto/rand does not fail on any supported platform.
			panic("azurefake: generating the KEK: " + err.Error())
		}
		kek = k
	})
	return &Cloud{
		Subscription:       subscription,
		Disks:              map[string]*armcompute.Disk{},
		Snapshots:          map[string]*armcompute.Snapshot{},
		VMs:                map[string]*armcompute.VirtualMachine{},
		ScaleSets:          map[string]*armcompute.VirtualMachineScaleSet{},
		DiskEncryptionSets: map[string]*armcompute.DiskEncryptionSet{},
		Secrets:            map[string]azsecrets.Secret{},
		PowerStates:        map[string]string{},
		KEK:                kek,
		ResourceSKUs:       DefaultSKUs(),
		nicHeld:            map[string]int{},
	}
}

// ARMOptions are client options whose transport is the fake
// Microsoft.Compute (disks, snapshots, virtual machines, disk encryption
// sets, resource SKUs), the fake Microsoft.Resources deployments
// (validation only) and the fake Azure Resource Graph (graph.go).
func (c *Cloud) ARMOptions() *arm.ClientOptions {
	newCompute := func() transporter {
		return computefake.NewServerFactoryTransport(&computefake.ServerFactory{
			DisksServer:              c.disksServer(),
			SnapshotsServer:          c.snapshotsServer(),
			VirtualMachinesServer:    c.vmsServer(),
			DiskEncryptionSetsServer: c.desServer(),
			ResourceSKUsServer:       c.skusServer(),
			VirtualMachineExtensionsServer: computefake.VirtualMachineExtensionsServer{
				BeginCreateOrUpdate: func(ctx context.Context, rg, vmName, name string, e armcompute.VirtualMachineExtension, _ *armcompute.VirtualMachineExtensionsClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.VirtualMachineExtensionsClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
					c.Lock()
					defer c.Unlock()
					c.record("PUT extension %s", name)
					if c.ExtensionFails {
						errResp.SetResponseError(http.StatusBadRequest, "VMExtensionProvisioningError")
						return
					}
					vm, ok := c.VMs[Key(rg, vmName)]
					if !ok {
						notFound(&errResp)
						return
					}
					e.Name = to.Ptr(name)
					vm.Resources = append(vm.Resources, &e)
					resp.SetTerminalResponse(http.StatusOK, armcompute.VirtualMachineExtensionsClientCreateOrUpdateResponse{VirtualMachineExtension: e}, nil)
					return
				},
			},
		})
	}
	return &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: &router{
		c:          c,
		newCompute: newCompute,
		compute:    newCompute(),
		resources:  resourcesfake.NewServerFactoryTransport(&resourcesfake.ServerFactory{DeploymentsServer: c.deploymentsServer()}),
		graph:      c.graphTransport(),
	}}}
}

// SecretsOptions are client options whose transport is the fake Key Vault's
// secrets.
func (c *Cloud) SecretsOptions() *azsecrets.ClientOptions {
	s := c.secretsServer()
	return &azsecrets.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: secretsfake.NewServerTransport(&s)}}
}

// KeysOptions are client options whose transport is the fake Key Vault's
// keys.
func (c *Cloud) KeysOptions() *azkeys.ClientOptions {
	s := c.keysServer()
	return &azkeys.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: keysfake.NewServerTransport(&s)}}
}

// Wrap encrypts key with the KEK as Key Vault's wrapKey would, for the
// secret of a test's wrapped BEK.
func (c *Cloud) Wrap(alg azkeys.EncryptionAlgorithm, key []byte) ([]byte, error) {
	pub := &c.KEK.PublicKey
	switch alg {
	case azkeys.EncryptionAlgorithmRSAOAEP:
		return rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, key, nil)
	case azkeys.EncryptionAlgorithmRSAOAEP256:
		return rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, key, nil)
	case azkeys.EncryptionAlgorithmRSA15:
		return rsa.EncryptPKCS1v15(rand.Reader, pub, key)
	}
	return nil, fmt.Errorf("azurefake: wrap: unsupported algorithm %q", alg)
}

// Count is the number of recorded calls whose verb is verb
// (case-insensitive).
func (c *Cloud) Count(verb string) int {
	c.Lock()
	defer c.Unlock()
	n := 0
	for _, s := range c.Calls {
		if v, _, _ := strings.Cut(s, " "); strings.EqualFold(v, verb) {
			n++
		}
	}
	return n
}

// SnapshotState is the state of a snapshot: ActiveSAS while a grant is open on it, Unattached once
// revoked, "" if it was never granted or there is no such snapshot.
func (c *Cloud) SnapshotState(resourceGroup, name string) armcompute.DiskState {
	c.Lock()
	defer c.Unlock()
	if s, ok := c.Snapshots[Key(resourceGroup, name)]; ok && s.Properties != nil && s.Properties.DiskState != nil {
		return *s.Properties.DiskState
	}
	return ""
}

func setSnapshotState(s *armcompute.Snapshot, st armcompute.DiskState) {
	if s.Properties == nil {
		s.Properties = &armcompute.SnapshotProperties{}
	}
	s.Properties.DiskState = to.Ptr(st)
}

// DiskState is the state of a disk ("" if there is no such disk).
func (c *Cloud) DiskState(resourceGroup, name string) armcompute.DiskState {
	c.Lock()
	defer c.Unlock()
	if d, ok := c.Disks[Key(resourceGroup, name)]; ok && d.Properties != nil && d.Properties.DiskState != nil {
		return *d.Properties.DiskState
	}
	return ""
}

func (c *Cloud) record(format string, args ...any) {
	c.Calls = append(c.Calls, fmt.Sprintf(format, args...))
	if c.OnCall != nil {
		c.OnCall(c.Calls[len(c.Calls)-1])
	}
}

func (c *Cloud) id(resourceGroup, typ, name string) *string {
	return to.Ptr(fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/%s/%s", c.Subscription, resourceGroup, typ, name))
}

func (c *Cloud) sas(kind, name string, g armcompute.GrantAccessData) string {
	if c.SAS == nil {
		return StaticSAS(name)
	}
	return c.SAS(kind, name, g)
}

func notFound(e *azfake.ErrorResponder) { e.SetResponseError(http.StatusNotFound, "ResourceNotFound") }

// get serves the GET of any resource kept in a map.
func get[T, R any](c *Cloud, m map[string]*T, resourceGroup, name string, wrap func(T) R) (resp azfake.Responder[R], errResp azfake.ErrorResponder) {
	c.Lock()
	defer c.Unlock()
	v, ok := m[Key(resourceGroup, name)]
	if !ok {
		notFound(&errResp)
		return
	}
	resp.SetResponse(http.StatusOK, wrap(*v), nil)
	return
}

// grant serves the grant-access of a disk or snapshot, which differ only
// in their types and in what a grant does to a disk's state (granted).
func grant[R any](ctx context.Context, c *Cloud, kind, rg, name string, found bool, g armcompute.GrantAccessData, granted func(), wrap func(armcompute.AccessURI) R) (resp azfake.PollerResponder[R], errResp azfake.ErrorResponder) {
	var access armcompute.AccessLevel
	if g.Access != nil {
		access = *g.Access
	}
	var secs int32
	if g.DurationInSeconds != nil {
		secs = *g.DurationInSeconds
	}
	call := fmt.Sprintf("GRANT %s %s %s %d", kind, name, access, secs)
	c.record("%s", call)
	if !found {
		notFound(&errResp)
		return
	}
	if code := c.guestGrantRefusal(kind, rg, name, g); code != "" {
		errResp.SetResponseError(http.StatusBadRequest, code)
		return
	}
	switch c.FailGrant {
	case "error":
		resp.AddNonTerminalResponse(http.StatusAccepted, nil)
		resp.SetTerminalError(http.StatusConflict, "OperationNotAllowed")
		return
	case "transport":
		errResp.SetError(errors.New("connection reset while granting " + c.sas(kind, name, g)))
		return
	}
	if granted != nil {
		later(ctx, c, call, &resp, granted)
	}
	var u armcompute.AccessURI
	if c.FailGrant != "nosas" {
		u.AccessSAS = to.Ptr(c.sas(kind, name, g))
		c.guestGrant(kind, rg, name, g, &u)
	}
	resp.AddNonTerminalResponse(http.StatusAccepted, nil)
	resp.SetTerminalResponse(http.StatusOK, wrap(u), nil)
	return
}

func (c *Cloud) disksServer() computefake.DisksServer {
	return computefake.DisksServer{
		Get: func(ctx context.Context, rg, name string, _ *armcompute.DisksClientGetOptions) (resp azfake.Responder[armcompute.DisksClientGetResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			r, refused := c.DiskGetRefusals[Key(rg, name)]
			c.Unlock()
			if refused {
				errResp.SetResponseError(r.Status, r.Code)
				return
			}
			return get(c, c.Disks, rg, name, func(d armcompute.Disk) armcompute.DisksClientGetResponse {
				return armcompute.DisksClientGetResponse{Disk: d}
			})
		},
		// An upload disk starts ReadyToUpload, its size the upload size
		// less the VHD footer, as Azure reports it.
		BeginCreateOrUpdate: func(ctx context.Context, rg, name string, disk armcompute.Disk, _ *armcompute.DisksClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.DisksClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			call := "PUT disk " + name
			c.record("%s", call)
			body := disk
			c.DiskPut = &body
			if code := secureDiskRefusal(disk); code != "" {
				errResp.SetResponseError(http.StatusBadRequest, code)
				return
			}
			stored := disk
			stored.ID, stored.Name = c.id(rg, "disks", name), to.Ptr(name)
			var p armcompute.DiskProperties
			if disk.Properties != nil {
				p = *disk.Properties
			}
			p.DiskState = to.Ptr(armcompute.DiskStateReadyToUpload)
			if p.CreationData != nil && p.CreationData.UploadSizeBytes != nil {
				p.DiskSizeBytes = to.Ptr(*p.CreationData.UploadSizeBytes - 512)
			}
			stored.Properties = &p
			later(ctx, c, call, &resp, func() { c.Disks[Key(rg, name)] = &stored })
			resp.AddNonTerminalResponse(http.StatusAccepted, nil)
			resp.SetTerminalResponse(http.StatusOK, armcompute.DisksClientCreateOrUpdateResponse{Disk: stored}, nil)
			return
		},
		BeginGrantAccess: func(ctx context.Context, rg, name string, g armcompute.GrantAccessData, _ *armcompute.DisksClientBeginGrantAccessOptions) (azfake.PollerResponder[armcompute.DisksClientGrantAccessResponse], azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			d, ok := c.Disks[Key(rg, name)]
			granted := func() {
				st := armcompute.DiskStateActiveSAS
				if g.Access != nil && *g.Access == armcompute.AccessLevelWrite {
					st = armcompute.DiskStateActiveUpload
				}
				if d.Properties == nil {
					d.Properties = &armcompute.DiskProperties{}
				}
				d.Properties.DiskState = to.Ptr(st)
			}
			return grant(ctx, c, "disk", rg, name, ok, g, granted, func(u armcompute.AccessURI) armcompute.DisksClientGrantAccessResponse {
				return armcompute.DisksClientGrantAccessResponse{AccessURI: u}
			})
		},
		// Revoking ends an upload: the disk becomes Unattached, and only if
		// it ends in a VHD footer.
		BeginRevokeAccess: func(ctx context.Context, rg, name string, _ *armcompute.DisksClientBeginRevokeAccessOptions) (resp azfake.PollerResponder[armcompute.DisksClientRevokeAccessResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			c.record("REVOKE disk %s", name)
			d, ok := c.Disks[Key(rg, name)]
			if !ok {
				notFound(&errResp)
				return
			}
			if c.FailRevoke != "" {
				errResp.SetResponseError(http.StatusBadRequest, c.FailRevoke)
				return
			}
			if code := c.secureRevokeRefusal(rg, name, d); code != "" {
				errResp.SetResponseError(http.StatusBadRequest, code)
				return
			}
			if d.Properties == nil {
				d.Properties = &armcompute.DiskProperties{}
			}
			p := d.Properties
			if c.HasFooter != nil && p.DiskState != nil && *p.DiskState == armcompute.DiskStateActiveUpload {
				var size int64
				if p.CreationData != nil && p.CreationData.UploadSizeBytes != nil {
					size = *p.CreationData.UploadSizeBytes
				}
				if !c.HasFooter(name, size) {
					errResp.SetResponseError(http.StatusBadRequest, "InvalidVhd")
					return
				}
			}
			if !c.RevokeKeeps {
				p.DiskState = to.Ptr(armcompute.DiskStateUnattached)
			}
			resp.SetTerminalResponse(http.StatusOK, armcompute.DisksClientRevokeAccessResponse{}, nil)
			return
		},
		BeginDelete: func(ctx context.Context, rg, name string, _ *armcompute.DisksClientBeginDeleteOptions) (resp azfake.PollerResponder[armcompute.DisksClientDeleteResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			c.record("DELETE disk %s", name)
			delete(c.Disks, Key(rg, name))
			resp.SetTerminalResponse(http.StatusOK, armcompute.DisksClientDeleteResponse{}, nil)
			return
		},
	}
}

func (c *Cloud) snapshotsServer() computefake.SnapshotsServer {
	return computefake.SnapshotsServer{
		Get: func(ctx context.Context, rg, name string, _ *armcompute.SnapshotsClientGetOptions) (azfake.Responder[armcompute.SnapshotsClientGetResponse], azfake.ErrorResponder) {
			return get(c, c.Snapshots, rg, name, func(s armcompute.Snapshot) armcompute.SnapshotsClientGetResponse {
				return armcompute.SnapshotsClientGetResponse{Snapshot: s}
			})
		},
		BeginCreateOrUpdate: func(ctx context.Context, rg, name string, s armcompute.Snapshot, _ *armcompute.SnapshotsClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			call := "PUT snapshot " + name
			c.record("%s", call)
			body := s
			c.SnapshotPut = &body
			stored := s
			stored.ID, stored.Name = c.id(rg, "snapshots", name), to.Ptr(name)
			// A copy of a disk carries its size and, as Azure does, its ADE settings.
			if p := s.Properties; p != nil && p.CreationData != nil && p.CreationData.SourceResourceID != nil {
				if src, err := arm.ParseResourceID(*p.CreationData.SourceResourceID); err == nil {
					if d, ok := c.Disks[Key(src.ResourceGroupName, src.Name)]; ok && d.Properties != nil {
						cp := *p
						cp.DiskSizeBytes = d.Properties.DiskSizeBytes
						cp.EncryptionSettingsCollection = d.Properties.EncryptionSettingsCollection
						cp.SecurityProfile = d.Properties.SecurityProfile // and its security type, VM guest state included
						cp.TimeCreated = to.Ptr(time.Now())
						stored.Properties = &cp
					}
				}
			}
			if c.SnapshotTaken != nil {
				c.SnapshotTaken(rg, name, &stored)
			}
			later(ctx, c, call, &resp, func() { c.Snapshots[Key(rg, name)] = &stored })
			resp.AddNonTerminalResponse(http.StatusAccepted, nil)
			resp.SetTerminalResponse(http.StatusOK, armcompute.SnapshotsClientCreateOrUpdateResponse{Snapshot: stored}, nil)
			return
		},
		BeginGrantAccess: func(ctx context.Context, rg, name string, g armcompute.GrantAccessData, _ *armcompute.SnapshotsClientBeginGrantAccessOptions) (azfake.PollerResponder[armcompute.SnapshotsClientGrantAccessResponse], azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			s, ok := c.Snapshots[Key(rg, name)]
			// A snapshot open for export is ActiveSAS until its access is revoked, as a disk is.
			granted := func() { setSnapshotState(s, armcompute.DiskStateActiveSAS) }
			return grant(ctx, c, "snapshot", rg, name, ok, g, granted, func(u armcompute.AccessURI) armcompute.SnapshotsClientGrantAccessResponse {
				return armcompute.SnapshotsClientGrantAccessResponse{AccessURI: u}
			})
		},
		BeginRevokeAccess: func(ctx context.Context, rg, name string, _ *armcompute.SnapshotsClientBeginRevokeAccessOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientRevokeAccessResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			c.record("REVOKE snapshot %s", name)
			if s, ok := c.Snapshots[Key(rg, name)]; ok && s.Properties != nil && s.Properties.DiskState != nil {
				setSnapshotState(s, armcompute.DiskStateUnattached)
			}
			resp.SetTerminalResponse(http.StatusOK, armcompute.SnapshotsClientRevokeAccessResponse{}, nil)
			return
		},
	}
}

func (c *Cloud) vmsServer() computefake.VirtualMachinesServer {
	return computefake.VirtualMachinesServer{
		Get: func(ctx context.Context, rg, name string, o *armcompute.VirtualMachinesClientGetOptions) (azfake.Responder[armcompute.VirtualMachinesClientGetResponse], azfake.ErrorResponder) {
			c.Lock()
			if o != nil && o.Expand != nil {
				c.VMGetExpand = string(*o.Expand)
			}
			if n, ok := c.deleting[Key(rg, name)]; ok {
				switch vm := c.VMs[Key(rg, name)]; {
				case n == 0 && c.DeleteLeavesFailed:
					vm.Properties.ProvisioningState = to.Ptr("Failed")
					delete(c.deleting, Key(rg, name))
				case n == 0:
					delete(c.VMs, Key(rg, name))
					delete(c.deleting, Key(rg, name))
				default:
					c.deleting[Key(rg, name)] = n - 1
				}
			}
			c.Unlock()
			return get(c, c.VMs, rg, name, func(vm armcompute.VirtualMachine) armcompute.VirtualMachinesClientGetResponse {
				return armcompute.VirtualMachinesClientGetResponse{VirtualMachine: vm}
			})
		},
		InstanceView: func(ctx context.Context, rg, name string, _ *armcompute.VirtualMachinesClientInstanceViewOptions) (resp azfake.Responder[armcompute.VirtualMachinesClientInstanceViewResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			if _, ok := c.VMs[Key(rg, name)]; !ok {
				notFound(&errResp)
				return
			}
			ps := c.PowerStates[Key(rg, name)]
			if ps == "" {
				ps = "deallocated"
			}
			if n := c.deallocating[Key(rg, name)]; n > 0 && ps == "deallocated" {
				c.deallocating[Key(rg, name)] = n - 1
				ps = "deallocating"
			}
			resp.SetResponse(http.StatusOK, armcompute.VirtualMachinesClientInstanceViewResponse{VirtualMachineInstanceView: armcompute.VirtualMachineInstanceView{
				Statuses: []*armcompute.InstanceViewStatus{{Code: to.Ptr("ProvisioningState/succeeded")}, {Code: to.Ptr("PowerState/" + ps)}}}}, nil)
			return
		},
		BeginUpdate: func(ctx context.Context, rg, name string, u armcompute.VirtualMachineUpdate, o *armcompute.VirtualMachinesClientBeginUpdateOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientUpdateResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			c.record("PATCH vm %s", name)
			c.VMPatch = &u
			// As Azure, refuse a disk without the properties the model marks required.
			if p := u.Properties; p != nil && p.StorageProfile != nil {
				sp := p.StorageProfile
				if sp.OSDisk != nil && sp.OSDisk.CreateOption == nil {
					errResp.SetResponseError(http.StatusBadRequest, "InvalidParameter")
					return
				}
				for _, d := range sp.DataDisks {
					if d == nil || d.CreateOption == nil || d.Lun == nil {
						errResp.SetResponseError(http.StatusBadRequest, "InvalidParameter")
						return
					}
				}
			}
			vm, ok := c.VMs[Key(rg, name)]
			if !ok {
				notFound(&errResp)
				return
			}
			// As Azure, refuse a PATCH whose If-Match is not the VM's etag, and give the patched VM a new one.
			if o != nil && o.IfMatch != nil && *o.IfMatch != "*" && *o.IfMatch != deref(vm.Etag) {
				errResp.SetResponseError(http.StatusPreconditionFailed, "PreconditionFailed")
				return
			}
			if vm.Etag != nil {
				vm.Etag = to.Ptr(strings.TrimSuffix(*vm.Etag, `"`) + `+patched"`)
			}
			if p := u.Properties; p != nil && p.LicenseType != nil {
				if vm.Properties == nil {
					vm.Properties = &armcompute.VirtualMachineProperties{}
				}
				vm.Properties.LicenseType = p.LicenseType
			}
			resp.SetTerminalResponse(http.StatusOK, armcompute.VirtualMachinesClientUpdateResponse{VirtualMachine: *vm}, nil)
			return
		},
		// Deallocating stops the guest and releases the compute: the VM, its disks still attached,
		// reports PowerState/deallocated once the operation ends.
		BeginDeallocate: func(ctx context.Context, rg, name string, _ *armcompute.VirtualMachinesClientBeginDeallocateOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientDeallocateResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			c.record("DEALLOCATE vm %s", name)
			if _, ok := c.VMs[Key(rg, name)]; !ok {
				notFound(&errResp)
				return
			}
			c.PowerStates[Key(rg, name)] = "deallocated"
			if c.DeallocatingReads > 0 {
				if c.deallocating == nil {
					c.deallocating = map[string]int{}
				}
				c.deallocating[Key(rg, name)] = c.DeallocatingReads
			}
			resp.AddNonTerminalResponse(http.StatusAccepted, nil)
			resp.SetTerminalResponse(http.StatusOK, armcompute.VirtualMachinesClientDeallocateResponse{}, nil)
			return
		},
		BeginDelete: func(ctx context.Context, rg, name string, _ *armcompute.VirtualMachinesClientBeginDeleteOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientDeleteResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			c.record("DELETE vm %s", name)
			if vm, ok := c.VMs[Key(rg, name)]; ok && c.NICHold > 0 {
				for _, id := range nicIDs(vm) {
					c.nicHeld[id] = c.NICHold
				}
			}
			if vm, ok := c.VMs[Key(rg, name)]; ok && c.DeleteFails && c.DeletingReads > 0 {
				deleting := *vm
				props := *vm.Properties
				props.ProvisioningState = to.Ptr("Deleting")
				deleting.Properties = &props
				c.VMs[Key(rg, name)] = &deleting
				if c.deleting == nil {
					c.deleting = map[string]int{}
				}
				c.deleting[Key(rg, name)] = c.DeletingReads
			} else {
				delete(c.VMs, Key(rg, name))
			}
			resp.AddNonTerminalResponse(http.StatusAccepted, nil)
			if c.DeleteFails {
				resp.SetTerminalError(http.StatusInternalServerError, "InternalServerError")
				return
			}
			resp.SetTerminalResponse(http.StatusOK, armcompute.VirtualMachinesClientDeleteResponse{}, nil)
			return
		},
		BeginCreateOrUpdate: func(ctx context.Context, rg, name string, vm armcompute.VirtualMachine, _ *armcompute.VirtualMachinesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			c.record("PUT vm %s", name)
			body := vm
			c.VMPut = &body
			if c.FailVMCreate {
				c.FailVMCreate = false
				errResp.SetResponseError(http.StatusConflict, "OSDiskSwapNotSupportedForVMsUsingDiskEncryption")
				return
			}
			stored := vm
			stored.ID = c.id(rg, "virtualMachines", name)
			if r, ok := c.refusePut(&vm); ok {
				if !r.Async {
					errResp.SetResponseError(r.Status, r.Code)
					return
				}
				// Accepted, then the operation fails and leaves the VM in the Failed state.
				if stored.Properties == nil {
					stored.Properties = &armcompute.VirtualMachineProperties{}
				}
				failed := *stored.Properties
				failed.ProvisioningState = to.Ptr("Failed")
				stored.Properties = &failed
				c.VMs[Key(rg, name)] = &stored
				c.failedAsync = true
				resp.AddNonTerminalResponse(http.StatusCreated, nil)
				resp.SetTerminalError(r.Status, r.Code)
				return
			}
			if stored.Properties != nil { // as Azure reports a VM its PUT created
				done := *stored.Properties
				done.ProvisioningState = to.Ptr("Succeeded")
				stored.Properties = &done
			}
			if _, ok := c.VMs[Key(rg, name)]; !ok {
				// A VM Azure creates is started: there is no creating one deallocated.
				c.PowerStates[Key(rg, name)] = "running"
			}
			c.VMs[Key(rg, name)] = &stored
			resp.SetTerminalResponse(http.StatusOK, armcompute.VirtualMachinesClientCreateOrUpdateResponse{VirtualMachine: stored}, nil)
			return
		},
	}
}

func (c *Cloud) desServer() computefake.DiskEncryptionSetsServer {
	return computefake.DiskEncryptionSetsServer{
		Get: func(ctx context.Context, rg, name string, _ *armcompute.DiskEncryptionSetsClientGetOptions) (azfake.Responder[armcompute.DiskEncryptionSetsClientGetResponse], azfake.ErrorResponder) {
			return get(c, c.DiskEncryptionSets, rg, name, func(d armcompute.DiskEncryptionSet) armcompute.DiskEncryptionSetsClientGetResponse {
				return armcompute.DiskEncryptionSetsClientGetResponse{DiskEncryptionSet: d}
			})
		},
	}
}

func (c *Cloud) secretsServer() secretsfake.Server {
	return secretsfake.Server{
		GetSecret: func(ctx context.Context, name, version string, _ *azsecrets.GetSecretOptions) (resp azfake.Responder[azsecrets.GetSecretResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			name, version = splitFakeName(name, version)
			c.record("GET secret %s", name)
			s, ok := c.Secrets[name+"/"+version]
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
func (c *Cloud) keysServer() keysfake.Server {
	return keysfake.Server{
		UnwrapKey: func(ctx context.Context, name, version string, p azkeys.KeyOperationParameters, _ *azkeys.UnwrapKeyOptions) (resp azfake.Responder[azkeys.UnwrapKeyResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			name, version = splitFakeName(name, version)
			var alg azkeys.EncryptionAlgorithm
			if p.Algorithm != nil {
				alg = *p.Algorithm
			}
			c.record("UNWRAP %s", alg)
			c.UnwrapKey = name + "/" + version
			if name != KEKName || version != KEKVersion {
				errResp.SetResponseError(http.StatusNotFound, "KeyNotFound")
				return
			}
			if p.Algorithm == nil {
				errResp.SetResponseError(http.StatusBadRequest, "BadParameter")
				return
			}
			c.UnwrapAlg = alg
			var out []byte
			var err error
			switch alg {
			case azkeys.EncryptionAlgorithmRSAOAEP:
				out, err = rsa.DecryptOAEP(sha1.New(), nil, c.KEK, p.Value, nil)
			case azkeys.EncryptionAlgorithmRSAOAEP256:
				out, err = rsa.DecryptOAEP(sha256.New(), nil, c.KEK, p.Value, nil)
			case azkeys.EncryptionAlgorithmRSA15:
				out, err = rsa.DecryptPKCS1v15(nil, c.KEK, p.Value)
			default:
				err = errors.New("unsupported algorithm")
			}
			if err != nil || c.UnwrapCorrupt {
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
