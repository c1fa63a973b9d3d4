package azure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/blobio"
)

// Trusted Launch.
//
// A Trusted Launch VM keeps its vTPM and UEFI state (Secure Boot variables, boot entries) in the VM
// guest state (VMGS) that goes with its OS disk. A plain Upload disk has no security profile and no
// guest state, and a Trusted Launch VM cannot be created on it. The Compute API defines the secure
// form of the direct upload for exactly this (armcompute v8 constants.go, DiskCreateOptionUploadPreparedSecure:
// "Similar to Upload create option. Create a new Trusted Launch VM or Confidential VM supported disk
// and upload using write token in disk, VM guest state and VM metadata. The VM metadata is optional
// and only required for certain Confidential VM configurations and not required for Trusted Launch
// VM"). A grant with GrantAccessData.GetSecureVMGuestStateSAS ("Set this flag to true to get
// additional SAS for VM guest state") returns AccessURI.SecurityDataAccessSAS ("A SAS uri for accessing
// a VM guest state") besides the disk's SAS: read for the source snapshot or disk, write for the new
// disk. So the new disk is created UploadPreparedSecure with securityProfile.securityType
// TrustedLaunch, and before its upload is finished (the revoke) the source's guest state is copied
// into it, page blob to page blob: the re-created VM keeps its vTPM contents and UEFI variables, and
// needs no upgrade from Standard (which would start with an empty vTPM).
//
// Confidential VM disks also need the VM metadata blob and, for some types, a secure VM disk
// encryption set; they stay refused.

// ErrGuestState: a Trusted Launch upload lacks the VM guest state of its source, or the copy failed.
var ErrGuestState = errors.New("VM guest state")

// SecureUpload reports whether the spec's disk is created with UploadPreparedSecure (a Trusted Launch
// source) rather than Upload.
func (s *DiskSpec) SecureUpload() bool {
	return s.SecurityType == armcompute.DiskSecurityTypesTrustedLaunch
}

// CreateOption is the disk's creationData.createOption: UploadPreparedSecure for a Trusted Launch
// source, else Upload.
func (s *DiskSpec) CreateOption() armcompute.DiskCreateOption {
	if s.SecureUpload() {
		return armcompute.DiskCreateOptionUploadPreparedSecure
	}
	return armcompute.DiskCreateOptionUpload
}

// securityError refuses security types this package does not upload.
func (s *DiskSpec) securityError() error {
	switch s.SecurityType {
	case "":
		return nil
	case armcompute.DiskSecurityTypesTrustedLaunch:
		if s.HyperVGeneration == armcompute.HyperVGenerationV1 {
			return fmt.Errorf("%w: a Trusted Launch disk must be Hyper-V generation V2", ErrUnsupported)
		}
		return nil
	}
	return fmt.Errorf("%w: source security type %s (a confidential VM disk needs its VM metadata and secure key settings, which luksconv does not upload)", ErrUnsupported, s.SecurityType)
}

// applySecurity makes the create-disk body of a Trusted Launch source an UploadPreparedSecure disk
// with its security type.
func (s *DiskSpec) applySecurity(d *armcompute.Disk) {
	if !s.SecureUpload() || d.Properties == nil || d.Properties.CreationData == nil {
		return
	}
	d.Properties.CreationData.CreateOption = to.Ptr(armcompute.DiskCreateOptionUploadPreparedSecure)
	d.Properties.SecurityProfile = &armcompute.DiskSecurityProfile{SecurityType: to.Ptr(s.SecurityType)}
}

// SecureUploadNote says, for a dry run and the report, how a Trusted Launch source is carried over,
// and checks that the source's read grant (GrantRead) handed out its guest state: "" for a source
// without a security type.
func (c *Client) SecureUploadNote(s *DiskSpec) (string, error) {
	if !s.SecureUpload() {
		return "", nil
	}
	if c.guest.get(s.SourceID) == "" {
		return "", newError("plan upload disk", s.SourceID, ErrGuestState,
			"source security type %s, but its read grant returned no VM guest state SAS (securityDataAccessSAS)", s.SecurityType)
	}
	return fmt.Sprintf("Trusted Launch source: the new disk is created with CreateOption=UploadPreparedSecure and securityType %s, "+
		"and the VM guest state of %s (vTPM, UEFI variables) is copied into it before the upload is finished "+
		"(not re-created as Standard and upgraded: that would start with an empty vTPM)", s.SecurityType, s.SourceID), nil
}

// guestStates holds the VM guest state read SAS of each source granted by GrantRead (by lower-case
// resource ID) until its access is revoked. Never printed.
type guestStates struct {
	mu sync.Mutex
	m  map[string]string
}

func (g *guestStates) note(id string, sas *string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]string{}
	}
	if str(sas) == "" {
		delete(g.m, strings.ToLower(id))
		return
	}
	g.m[strings.ToLower(id)] = *sas
}

func (g *guestStates) get(id string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[strings.ToLower(id)]
}

// forgetOnRevoke wraps a revoke so that the guest state SAS is forgotten once access is revoked.
func (g *guestStates) forgetOnRevoke(id string, revoke func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		err := revoke(ctx)
		if err == nil {
			g.note(id, nil)
		}
		return err
	}
}

// guestStateWanted is the GrantAccessData.GetSecureVMGuestStateSAS of a read grant of rid: true
// when the disk or snapshot has a security type (Azure refuses the flag otherwise: "GetSecureVMGuestStateSAS
// can be set only for disk with SecurityProfile"), nil when it has none or cannot be read (the grant
// then reports the error).
func (c *Client) guestStateWanted(ctx context.Context, f *armcompute.ClientFactory, rid resourceID) *bool {
	var sp *armcompute.DiskSecurityProfile
	if rid.Type == typeSnapshot {
		if r, err := f.NewSnapshotsClient().Get(ctx, rid.ResourceGroup, rid.Name, nil); err == nil && r.Properties != nil {
			sp = r.Properties.SecurityProfile
		}
	} else if r, err := f.NewDisksClient().Get(ctx, rid.ResourceGroup, rid.Name, nil); err == nil && r.Properties != nil {
		sp = r.Properties.SecurityProfile
	}
	if sp == nil || sp.SecurityType == nil || *sp.SecurityType == "" {
		return nil
	}
	return to.Ptr(true)
}

// GuestStateSAS returns the VM guest state read SAS that GrantRead obtained for a source with a
// security type, "" if none. It is a secret: print it only through blobio.Redact.
func (c *Client) GuestStateSAS(sourceID string) string { return c.guest.get(sourceID) }

func diskSecurityType(p *armcompute.DiskProperties) armcompute.DiskSecurityTypes {
	if p == nil || p.SecurityProfile == nil || p.SecurityProfile.SecurityType == nil {
		return ""
	}
	return *p.SecurityProfile.SecurityType
}

// guestGrant is the GetSecureVMGuestStateSAS of the target's write grant.
func (t *UploadTarget) guestGrant() *bool {
	if t.SecurityType == "" {
		return nil
	}
	return to.Ptr(true)
}

// checkGuestGrant takes the write SAS of the guest state from a secure upload's grant.
func (t *UploadTarget) checkGuestGrant(u armcompute.AccessURI) error {
	t.guestSAS = str(u.SecurityDataAccessSAS)
	if t.SecurityType != "" && t.guestSAS == "" {
		return newError("grant write access to", t.DiskID, ErrGuestState, "a %s upload disk's grant returned no VM guest state SAS (securityDataAccessSAS)", t.SecurityType)
	}
	return nil
}

// copyGuestState copies the source's VM guest state into a secure upload disk, before Finish
// revokes its write access (Azure requires the guest state of an UploadPreparedSecure disk).
// Nothing for an ordinary upload.
func (t *UploadTarget) copyGuestState(ctx context.Context) error {
	const op = "copy VM guest state into"
	if t.SecurityType == "" {
		return nil
	}
	if t.c == nil {
		return newError(op, t.DiskID, ErrState, "upload target was not opened by a Client (use OpenUploadDisk)")
	}
	src := t.c.guest.get(t.GuestStateSource)
	if src == "" {
		return newError(op, t.DiskID, ErrGuestState, "no VM guest state SAS of the source %q: grant it read access (GrantRead) first", t.GuestStateSource)
	}
	if t.guestSAS == "" {
		return newError(op, t.DiskID, ErrGuestState, "the disk's write grant returned no VM guest state SAS")
	}
	srcAccess, err := t.c.ReadDataAccess(ctx, t.GuestStateSource)
	if err != nil {
		return err
	}
	dstAccess, err := t.c.ReadDataAccess(ctx, t.DiskID)
	if err != nil {
		return err
	}
	n, err := CopyGuestState(ctx, src, t.guestSAS, GuestStateCopyOptions{SourceBearer: t.c.DataBearer(srcAccess), SinkBearer: t.c.DataBearer(dstAccess), Logf: t.GuestStateLogf})
	if err != nil {
		return newError(op, t.DiskID, ErrGuestState, "from %s: %v", t.GuestStateSource, err)
	}
	t.GuestStateBytes = n
	return nil
}

// GuestStateCopyOptions configure CopyGuestState.
type GuestStateCopyOptions struct {
	// SourceBearer and SinkBearer are the Entra credentials of the source's and the destination's
	// data URLs, nil when their DataAccess needs only the SAS (see Client.DataBearer).
	SourceBearer, SinkBearer *blobio.Bearer
	// Logf receives blobio's warnings, already redacted (default: discarded).
	Logf func(format string, args ...any)
}

// guestChunk is the size of each read and Put Page of the guest state copy.
const guestChunk = blobio.MaxPutPage

// CopyGuestState copies the VM guest state page blob at srcSAS into the one at dstSAS with blobio
// (Source to Sink) and returns its length. The guest state is a fixed VHD (the ImportSecure
// example of the Compute REST specification names it vmgs.vhd): its last 512 bytes, a fixed VHD
// footer for the rest, are the Sink's footer, so the copy is byte for byte. An existing destination
// must be a page blob of the source's length. Errors never hold a SAS signature.
func CopyGuestState(ctx context.Context, srcSAS, dstSAS string, opts GuestStateCopyOptions) (int64, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	src, err := blobio.OpenPageBlob(ctx, srcSAS, blobio.SourceOptions{Workers: 1, Bearer: opts.SourceBearer, Logf: logf})
	if err != nil {
		return 0, err
	}
	defer src.Close()
	size := src.Size()
	if size < 2*blobio.PageSize || size%blobio.PageSize != 0 {
		return 0, fmt.Errorf("source guest state is %d bytes, not a VHD of whole 512-byte pages", size)
	}
	data := size - blobio.PageSize
	footer := make([]byte, blobio.PageSize)
	if _, err := src.ReadAtContext(ctx, footer, data); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	sink, err := blobio.CreatePageBlobSink(ctx, dstSAS, data, blobio.SinkOptions{Workers: 1, Footer: footer, Bearer: opts.SinkBearer, Logf: logf})
	if err != nil {
		return 0, err
	}
	defer sink.Close()
	buf := make([]byte, guestChunk)
	for off := int64(0); off < data; off += guestChunk {
		b := buf[:min(guestChunk, data-off)]
		if _, err := src.ReadAtContext(ctx, b, off); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if _, err := sink.WriteAt(b, off); err != nil {
			return 0, err
		}
	}
	if err := sink.Commit(ctx); err != nil {
		return 0, err
	}
	return size, sink.Close()
}

// VM side: the re-created VM keeps the original's securityProfile (attachModel copies it; only ADE's
// encryptionIdentity is cleared), so a Trusted Launch VM is created again as Trusted Launch with its
// uefiSettings (secureBoot, vTPM), on a new OS disk that must be TrustedLaunch too.

// planSecurity refuses a VM security type this package cannot re-create and, for Trusted Launch,
// adds the step that says how it is kept.
func planSecurity(vm *armcompute.VirtualMachine, plan *VMPlan) error {
	p := vm.Properties
	if p == nil || p.SecurityProfile == nil || p.SecurityProfile.SecurityType == nil {
		return nil
	}
	sp := p.SecurityProfile
	switch *sp.SecurityType {
	case armcompute.SecurityTypesStandard:
		return nil
	case armcompute.SecurityTypesTrustedLaunch:
		var secureBoot, vtpm bool
		if u := sp.UefiSettings; u != nil {
			secureBoot, vtpm = deref(u.SecureBootEnabled), deref(u.VTpmEnabled)
		}
		plan.Steps = append(plan.Steps, fmt.Sprintf("keep securityProfile in newVm: securityType TrustedLaunch, secureBoot %v, vTPM %v; "+
			"the new OS disk must be TrustedLaunch (created UploadPreparedSecure, the VM guest state copied from the source), checked before the DELETE", onOff(secureBoot), onOff(vtpm)))
		return nil
	}
	return newError("plan re-creation of", plan.VMID, ErrUnsupported, "VM security type %s (confidential VM) is not supported: its OS disk needs VM metadata and secure key settings luksconv does not upload", *sp.SecurityType)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// checkDiskSecurity: the OS disk of a Trusted Launch VM must be a TrustedLaunch disk (Azure refuses
// the VM otherwise), and a Standard VM does not get a disk with a security type.
func checkDiskSecurity(vm *armcompute.VirtualMachine, what, diskID string, p *armcompute.DiskProperties) error {
	var want armcompute.DiskSecurityTypes
	if vp := vm.Properties; vp != nil && vp.SecurityProfile != nil && vp.SecurityProfile.SecurityType != nil &&
		*vp.SecurityProfile.SecurityType == armcompute.SecurityTypesTrustedLaunch {
		want = armcompute.DiskSecurityTypesTrustedLaunch
	}
	if got := diskSecurityType(p); got != want {
		if want == "" {
			return newError("check "+what, diskID, ErrState, "disk security type is %s; the VM is not Trusted Launch", got)
		}
		return newError("check "+what, diskID, ErrState, "disk security type is %q; the Trusted Launch VM needs a TrustedLaunch OS disk (UploadPreparedSecure with its VM guest state)", got)
	}
	return nil
}
