package azure

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/internal/azurefake"
)

func trustedLaunch() *armcompute.DiskSecurityProfile {
	return &armcompute.DiskSecurityProfile{SecurityType: to.Ptr(armcompute.DiskSecurityTypesTrustedLaunch)}
}

// A Trusted Launch source becomes an UploadPreparedSecure disk with securityType TrustedLaunch; both
// grants ask for the VM guest state SAS; the upload cannot be finished before its guest state is
// written, and cannot start without the source's guest state.
func TestSecureUploadDisk(t *testing.T) {
	c := newCloud(t)
	sourceFixture(c)
	c.Disks[key(rg, "osdisk")].Properties.SecurityProfile = trustedLaunch()
	c.Snapshots[key(rg, "snap")].Properties.SecurityProfile = trustedLaunch()
	written := false
	c.GuestStateWritten = func(name string) bool { return name == "new" && written }
	cl := c.client()
	ctx := context.Background()
	snapID := resID(typeSnapshot, "snap")

	spec, err := cl.DiskSpecFrom(ctx, snapID, "", "new", desID)
	if err != nil {
		t.Fatal(err)
	}
	if spec.SecurityType != armcompute.DiskSecurityTypesTrustedLaunch || !spec.SecureUpload() || spec.CreateOption() != armcompute.DiskCreateOptionUploadPreparedSecure {
		t.Fatalf("spec security %q, create option %s", spec.SecurityType, spec.CreateOption())
	}
	if err := spec.Check(); err != nil {
		t.Fatalf("Trusted Launch spec refused: %v", err)
	}
	// Without the source's guest state nothing is created.
	if _, err := cl.CreateUploadDisk(ctx, *spec); !errors.Is(err, ErrGuestState) || len(c.Calls) != 0 {
		t.Fatalf("create without the source's guest state: %v, calls %q", err, c.Calls)
	}
	if _, err := cl.SecureUploadNote(spec); !errors.Is(err, ErrGuestState) {
		t.Errorf("note without the source's guest state: %v", err)
	}

	_, revokeSrc, err := cl.GrantRead(ctx, snapID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := cl.GuestStateSAS(snapID); got != azurefake.StaticGuestStateSAS("snap") {
		t.Fatalf("source guest state SAS %q", got)
	}
	note, err := cl.SecureUploadNote(spec)
	if err != nil || !strings.Contains(note, "UploadPreparedSecure") || !strings.Contains(note, "TrustedLaunch") || strings.Contains(note, sasSecret) {
		t.Errorf("note %q, %v", note, err)
	}

	tgt, err := cl.CreateUploadDisk(ctx, *spec)
	if err != nil {
		t.Fatal(err)
	}
	p := c.DiskPut.Properties
	if *p.CreationData.CreateOption != armcompute.DiskCreateOptionUploadPreparedSecure || p.SecurityProfile == nil ||
		*p.SecurityProfile.SecurityType != armcompute.DiskSecurityTypesTrustedLaunch || *p.CreationData.UploadSizeBytes != 30*gib+512 {
		t.Errorf("disk body: createOption %s, security %+v", *p.CreationData.CreateOption, p.SecurityProfile)
	}
	if tgt.SecurityType != armcompute.DiskSecurityTypesTrustedLaunch || tgt.GuestStateSource != snapID || tgt.guestSAS != azurefake.StaticGuestStateSAS("new") {
		t.Errorf("target %+v", tgt)
	}
	if !c.GuestStateGranted(rg, "new") {
		t.Error("the write grant did not ask for the guest state SAS")
	}
	if b, _ := json.Marshal(tgt); strings.Contains(string(b), sasSecret) {
		t.Errorf("target JSON holds a SAS: %s", b)
	}
	// Azure refuses to finish a secure upload whose guest state was not written.
	err = tgt.Revoke(ctx)
	if err == nil || !strings.Contains(err.Error(), azurefake.GuestStateRefusal) || strings.Contains(err.Error(), sasSecret) {
		t.Fatalf("revoke before the guest state: %v", err)
	}
	if st := c.DiskState(rg, "new"); st != armcompute.DiskStateActiveUpload {
		t.Errorf("state %s after a refused revoke", st)
	}
	written = true
	tgt.revoke = newRevoker(tgt.revoke.f) // the refused revoke may be tried again
	if err := tgt.Revoke(ctx); err != nil {
		t.Fatalf("revoke after the guest state: %v", err)
	}

	// A resume reopens it as a secure upload.
	c.Disks[key(rg, "new")].Properties.DiskState = to.Ptr(armcompute.DiskStateActiveUpload)
	re, err := cl.OpenUploadDisk(ctx, resID(typeDisk, "new"), 0, nil)
	if err != nil || re.SecurityType != armcompute.DiskSecurityTypesTrustedLaunch || re.guestSAS == "" {
		t.Errorf("reopened %+v, %v", re, err)
	}

	// Revoking the source forgets its guest state SAS.
	if err := revokeSrc(ctx); err != nil {
		t.Fatal(err)
	}
	if cl.GuestStateSAS(snapID) != "" {
		t.Error("guest state SAS kept after revoke")
	}

	// An ordinary source: no guest state asked for (the fake refuses the flag on it with BadRequest).
	c.Snapshots[key(rg, "snap")].Properties.SecurityProfile = nil
	if _, rv, err := cl.GrantRead(ctx, snapID, 0); err != nil || cl.GuestStateSAS(snapID) != "" {
		t.Errorf("plain source: %v", err)
	} else {
		_ = rv(ctx)
	}

	// A Gen1 Trusted Launch spec is refused.
	spec.HyperVGeneration = armcompute.HyperVGenerationV1
	if err := spec.Check(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Gen1 Trusted Launch: %v", err)
	}
}

func trustedLaunchVM(c *cloud) {
	adeVM(c)
	c.VMs[key(rg, "vm1")].Properties.SecurityProfile = &armcompute.SecurityProfile{
		SecurityType: to.Ptr(armcompute.SecurityTypesTrustedLaunch),
		UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to.Ptr(true), VTpmEnabled: to.Ptr(true)},
	}
	c.Disks[key(rg, "osdisk")].Properties.SecurityProfile = trustedLaunch()
}

// A Trusted Launch VM is re-created as Trusted Launch, with its secureBoot and vTPM settings, on a
// TrustedLaunch OS disk; a new OS disk without that security type is refused before anything changes.
func TestRecreateVMTrustedLaunch(t *testing.T) {
	c := newCloud(t)
	trustedLaunchVM(c)
	cl := c.client()
	ctx := context.Background()
	vmID := resID(typeVM, "vm1")

	// The converted disk is a plain Upload disk: refused.
	if _, err := cl.PlanRecreateVM(ctx, vmID, resID(typeDisk, "osdisk-plain")); !errors.Is(err, ErrState) {
		t.Fatalf("Trusted Launch VM on a Standard disk: %v", err)
	}
	c.Disks[key(rg, "osdisk-plain")].Properties.SecurityProfile = trustedLaunch()
	plan, err := cl.PlanRecreateVM(ctx, vmID, resID(typeDisk, "osdisk-plain"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(plan.Steps, func(s string) bool {
		return strings.Contains(s, "securityType TrustedLaunch, secureBoot on, vTPM on") && strings.Contains(s, "UploadPreparedSecure")
	}) {
		t.Errorf("plan steps do not say how Trusted Launch is kept: %q", plan.Steps)
	}
	if !strings.Contains(plan.String(), "TrustedLaunch") {
		t.Errorf("printed plan lacks TrustedLaunch:\n%s", plan)
	}

	// Changed after the plan: the disk is checked again before the DELETE.
	c.Disks[key(rg, "osdisk-plain")].Properties.SecurityProfile = nil
	if err := cl.RecreateVM(ctx, plan); err == nil || slices.Contains(c.Calls, "DELETE vm vm1") {
		t.Fatalf("re-created on a disk without TrustedLaunch: %v, calls %q", err, c.Calls)
	}
	c.Calls = nil
	c.Disks[key(rg, "osdisk-plain")].Properties.SecurityProfile = trustedLaunch()
	if err := cl.RecreateVM(ctx, plan); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(c.Calls, "PUT vm vm1") {
		t.Fatalf("calls %q", c.Calls)
	}
	sp := c.VMPut.Properties.SecurityProfile
	if sp == nil || *sp.SecurityType != armcompute.SecurityTypesTrustedLaunch || sp.UefiSettings == nil ||
		!*sp.UefiSettings.SecureBootEnabled || !*sp.UefiSettings.VTpmEnabled {
		t.Errorf("PUT securityProfile %+v", sp)
	}
	if vs := c.Validated.Properties.SecurityProfile; vs == nil || *vs.SecurityType != armcompute.SecurityTypesTrustedLaunch {
		t.Errorf("validated securityProfile %+v", vs)
	}
}

// The fake refuses a Trusted Launch VM whose OS disk is not TrustedLaunch in ARM's validation, so
// the preflight stops before the DELETE; a confidential VM is refused at the plan.
func TestRecreateVMTrustedLaunchRefusals(t *testing.T) {
	c := newCloud(t)
	trustedLaunchVM(c)
	cl := c.client()
	ctx := context.Background()
	vmID := resID(typeVM, "vm1")
	plan, err := cl.PlanRecreateVM(ctx, vmID, resID(typeDisk, "osdisk-new"))
	if err != nil {
		t.Fatal(err) // the disk does not exist yet: planned with a warning
	}
	c.Disks[key(rg, "osdisk-new")] = &armcompute.Disk{ID: to.Ptr(resID(typeDisk, "osdisk-new")), Location: to.Ptr(region), Zones: []*string{to.Ptr("1")},
		Properties: &armcompute.DiskProperties{DiskState: to.Ptr(armcompute.DiskStateUnattached)}}
	if err := cl.PreflightVM(ctx, plan); err == nil || !strings.Contains(err.Error(), "TrustedLaunch") {
		t.Errorf("preflight of a Trusted Launch VM on a Standard disk: %v", err)
	}
	if slices.Contains(c.Calls, "DELETE vm vm1") {
		t.Errorf("calls %q", c.Calls)
	}

	c.VMs[key(rg, "vm1")].Properties.SecurityProfile.SecurityType = to.Ptr(armcompute.SecurityTypesConfidentialVM)
	if _, err := cl.PlanRecreateVM(ctx, vmID, resID(typeDisk, "osdisk-plain")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("confidential VM: %v", err)
	}
}
