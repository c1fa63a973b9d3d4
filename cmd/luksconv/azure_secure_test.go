package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/internal/azurefake"
	"github.com/luksconv/luksconv/internal/azurite"
)

// guestStateSize is the length of the source's VM guest state blob in these tests: a fixed VHD.
const guestStateSize = 1<<20 + 512

// setupTrustedLaunch makes the fake's ADE VM, its OS disk and the snapshot "snap" Trusted Launch, with
// a VM guest state blob (snap.vmgs in Azurite, random data and a fixed VHD footer) that a grant with
// getSecureVMGuestStateSAS hands out; a disk's guest state SAS is NAME.vmgs. It returns the source's
// guest state.
func setupTrustedLaunch(t *testing.T, f *fakeAzure) []byte {
	t.Helper()
	data := make([]byte, guestStateSize-512)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := putGuestState(f.az.BlobSAS(t, "disks", "snap.vmgs", azurite.WriteSAS, time.Hour), data); err != nil {
		t.Fatal(err)
	}
	want := download(t, f.az.BlobSAS(t, "disks", "snap.vmgs", azurite.ReadSAS, time.Hour), guestStateSize)

	f.Lock()
	defer f.Unlock()
	tl := &armcompute.DiskSecurityProfile{SecurityType: to.Ptr(armcompute.DiskSecurityTypesTrustedLaunch)}
	f.Snapshots[azurefake.Key(fakeRG, "snap")].Properties.SecurityProfile = tl
	d := f.Disks[azurefake.Key(fakeRG, "osdisk")]
	d.Properties.SecurityProfile = tl
	d.Zones = []*string{to.Ptr("1")} // the VM's zone, which the new disk takes
	f.VMs[azurefake.Key(fakeRG, "vm1")].Properties.SecurityProfile = &armcompute.SecurityProfile{
		SecurityType: to.Ptr(armcompute.SecurityTypesTrustedLaunch),
		UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to.Ptr(true), VTpmEnabled: to.Ptr(true)},
	}
	f.GuestStateSAS = func(kind, name string, g armcompute.GrantAccessData) string {
		p := azurite.ReadSAS
		if *g.Access == armcompute.AccessLevelWrite {
			p = azurite.WriteSAS
		}
		u := f.az.BlobSAS(f.t, "disks", name+".vmgs", p, time.Hour)
		f.sas = append(f.sas, u)
		return u
	}
	// Azure finishes an UploadPreparedSecure disk only with its guest state written.
	f.GuestStateWritten = func(name string) bool {
		src, err := blobio.OpenPageBlob(context.Background(), f.az.BlobSAS(f.t, "disks", name+".vmgs", azurite.ReadSAS, time.Minute), blobio.SourceOptions{})
		if err != nil {
			return false
		}
		defer src.Close()
		return src.Size() > 0
	}
	return want
}

// TestAzureConvertTrustedLaunch: the dry run of a Trusted Launch VM's OS disk says the disk is made
// UploadPreparedSecure with its guest state copied; the conversion creates it so, copies the source's
// VM guest state into the new disk's guest state before the finish (which the fake refuses otherwise),
// and --recreate-vm keeps securityType TrustedLaunch with secureBoot and vTPM.
func TestAzureConvertTrustedLaunch(t *testing.T) {
	f, fx := setupAzure(t, false)
	want := setupTrustedLaunch(t, f)
	dir := t.TempDir()
	t.Chdir(dir)
	vmID := fakeID("virtualMachines", "vm1")
	args := []string{"azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain",
		"--journal", filepath.Join(dir, "j"), "--recreate-vm", "--vm", vmID}

	so, se, code := runCLI(t, append(args, "--dry-run")...)
	if code != 0 {
		t.Fatalf("dry run: exit %d:\n%s", code, se)
	}
	f.assertNoSAS(t, so+se)
	for _, w := range []string{"CreateOption=UploadPreparedSecure", `"securityType": "TrustedLaunch"`, "the VM guest state of " + fakeID("snapshots", "snap"),
		"keep securityProfile in newVm: securityType TrustedLaunch, secureBoot on, vTPM on"} {
		if !strings.Contains(so, w) {
			t.Errorf("dry-run output lacks %q:\n%s", w, so)
		}
	}
	for _, c := range f.takeCalls() {
		if strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "DELETE") {
			t.Errorf("dry run changed something: %q", c)
		}
	}

	local := localConversion(t, fx, t.TempDir())
	so, se, code = runCLI(t, append(args, "-q")...)
	if code != 0 {
		t.Fatalf("azure convert: exit %d:\n%s\n%s", code, so, se)
	}
	f.assertNoSAS(t, so+se)
	f.Lock()
	put, vmPut, calls := f.DiskPut, f.VMPut, f.Calls
	f.Unlock()
	p := put.Properties
	if *p.CreationData.CreateOption != armcompute.DiskCreateOptionUploadPreparedSecure || p.SecurityProfile == nil ||
		*p.SecurityProfile.SecurityType != armcompute.DiskSecurityTypesTrustedLaunch {
		t.Errorf("disk PUT createOption %s, securityProfile %+v", *p.CreationData.CreateOption, p.SecurityProfile)
	}
	if !f.GuestStateGranted(fakeRG, "plain") {
		t.Error("the write grant did not ask for the guest state")
	}
	if st := f.DiskState(fakeRG, "plain"); st != armcompute.DiskStateUnattached {
		t.Errorf("new disk is %s", st)
	}
	if got := download(t, f.az.BlobSAS(t, "disks", "plain.vmgs", azurite.ReadSAS, time.Hour), guestStateSize); !bytes.Equal(got, want) {
		t.Error("the new disk's VM guest state differs from the source's")
	}
	if got := download(t, f.az.BlobSAS(t, "disks", "plain.vhd", azurite.ReadSAS, time.Hour), int64(len(local))); !bytes.Equal(got, local) {
		t.Error("the uploaded disk differs from the local conversion")
	}
	if vmPut == nil {
		t.Fatalf("VM not re-created: %q", calls)
	}
	sp := vmPut.Properties.SecurityProfile
	if sp == nil || *sp.SecurityType != armcompute.SecurityTypesTrustedLaunch || sp.UefiSettings == nil ||
		!*sp.UefiSettings.SecureBootEnabled || !*sp.UefiSettings.VTpmEnabled {
		t.Errorf("re-created VM securityProfile %+v", sp)
	}
	if f.vmOSDisk() != "plain" {
		t.Errorf("VM OS disk %q", f.vmOSDisk())
	}
}

// TestAzureConvertTrustedLaunchNoGuestState: a finish without the guest state is refused by the fake
// as by Azure, and a source whose grant hands out no guest state is refused before anything exists.
func TestAzureConvertTrustedLaunchNoGuestState(t *testing.T) {
	f, _ := setupAzure(t, false)
	setupTrustedLaunch(t, f)
	f.Lock()
	f.GuestStateSAS = func(kind, name string, g armcompute.GrantAccessData) string { return "" }
	f.Unlock()
	dir := t.TempDir()
	_, se, code := runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain",
		"--journal", filepath.Join(dir, "j"), "-q")
	if code == 0 || !strings.Contains(se, "guest state") {
		t.Fatalf("no guest state: exit %d:\n%s", code, se)
	}
	f.Lock()
	defer f.Unlock()
	for _, c := range f.Calls {
		if strings.HasPrefix(c, "PUT disk") {
			t.Errorf("a disk was created: %q", f.Calls)
		}
	}
}
