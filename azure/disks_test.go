package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

const gib = 1 << 30

var desID = "/subscriptions/" + sub + "/resourceGroups/rg-keys/providers/Microsoft.Compute/diskEncryptionSets/des1"

// sourceFixture is a single-pass ADE OS disk in zone 2 and a snapshot of it.
func sourceFixture(c *cloud) {
	caps := &armcompute.SupportedCapabilities{Architecture: to.Ptr(armcompute.ArchitectureX64), AcceleratedNetwork: to.Ptr(true), DiskControllerTypes: to.Ptr("SCSI, NVMe")}
	diskID := resID(typeDisk, "osdisk")
	c.Disks[key(rg, "osdisk")] = &armcompute.Disk{
		ID: to.Ptr(diskID), Location: to.Ptr(region), Zones: []*string{to.Ptr("2")},
		SKU: &armcompute.DiskSKU{Name: to.Ptr(armcompute.DiskStorageAccountTypesPremiumLRS)},
		Properties: &armcompute.DiskProperties{
			DiskSizeBytes: to.Ptr[int64](30 * gib), DiskSizeGB: to.Ptr[int32](30),
			OSType: to.Ptr(armcompute.OperatingSystemTypesLinux), HyperVGeneration: to.Ptr(armcompute.HyperVGenerationV2),
			SupportedCapabilities: caps, EncryptionSettingsCollection: adeCollection(true),
			DiskState:    to.Ptr(armcompute.DiskStateAttached),
			PurchasePlan: &armcompute.DiskPurchasePlan{Name: to.Ptr("rhel-lvm89"), Product: to.Ptr("rhel-byos"), Publisher: to.Ptr("redhat")},
		},
	}
	c.Snapshots[key(rg, "snap")] = &armcompute.Snapshot{
		ID: to.Ptr(resID(typeSnapshot, "snap")), Location: to.Ptr(region),
		SKU: &armcompute.SnapshotSKU{Name: to.Ptr(armcompute.SnapshotStorageAccountTypesStandardLRS)},
		Properties: &armcompute.SnapshotProperties{
			CreationData:  &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: to.Ptr(diskID)},
			DiskSizeBytes: to.Ptr[int64](30 * gib),
			OSType:        to.Ptr(armcompute.OperatingSystemTypesLinux), HyperVGeneration: to.Ptr(armcompute.HyperVGenerationV2),
			SupportedCapabilities: caps, EncryptionSettingsCollection: adeCollection(true),
			PurchasePlan: &armcompute.DiskPurchasePlan{Name: to.Ptr("rhel-lvm89"), Product: to.Ptr("rhel-byos"), Publisher: to.Ptr("redhat")},
		},
	}
	c.DiskEncryptionSets[key("rg-keys", "des1")] = &armcompute.DiskEncryptionSet{
		ID: to.Ptr(desID), Location: to.Ptr("West Europe"),
		Properties: &armcompute.EncryptionSetProperties{EncryptionType: to.Ptr(armcompute.DiskEncryptionSetTypeEncryptionAtRestWithCustomerKey)},
	}
}

func TestCreateUploadDisk(t *testing.T) {
	c := newCloud(t)
	sourceFixture(c)
	cl := c.client()
	ctx := context.Background()
	spec, err := cl.DiskSpecFrom(ctx, resID(typeSnapshot, "snap"), "", "osdisk-plain", desID)
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := cl.CreateUploadDisk(ctx, *spec)
	if err != nil {
		t.Fatal(err)
	}
	d := c.DiskPut
	if d == nil {
		t.Fatal("no disk PUT")
	}
	p := d.Properties
	cd := p.CreationData
	switch {
	case *cd.CreateOption != armcompute.DiskCreateOptionUpload:
		t.Errorf("createOption %s", *cd.CreateOption)
	case cd.UploadSizeBytes == nil || *cd.UploadSizeBytes != 30*gib+512:
		t.Errorf("uploadSizeBytes %v", cd.UploadSizeBytes)
	case cd.SourceResourceID != nil || cd.SourceURI != nil:
		t.Errorf("the upload disk names a source")
	case p.Encryption == nil || *p.Encryption.Type != armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey || *p.Encryption.DiskEncryptionSetID != desID:
		t.Errorf("encryption %+v", p.Encryption)
	case p.EncryptionSettingsCollection != nil:
		t.Errorf("ADE settings copied to the target")
	case *p.OSType != armcompute.OperatingSystemTypesLinux || *p.HyperVGeneration != armcompute.HyperVGenerationV2:
		t.Errorf("os %s gen %s", *p.OSType, *p.HyperVGeneration)
	case p.SupportedCapabilities == nil || *p.SupportedCapabilities.DiskControllerTypes != "SCSI, NVMe" || *p.SupportedCapabilities.Architecture != armcompute.ArchitectureX64:
		t.Errorf("capabilities %+v", p.SupportedCapabilities)
	case p.PurchasePlan == nil || *p.PurchasePlan.Product != "rhel-byos":
		t.Errorf("purchase plan %+v", p.PurchasePlan)
	case len(d.Zones) != 1 || *d.Zones[0] != "2":
		t.Errorf("zones %v", d.Zones)
	case d.SKU == nil || *d.SKU.Name != armcompute.DiskStorageAccountTypesPremiumLRS:
		t.Errorf("sku %+v (must come from the source disk, not the snapshot)", d.SKU)
	case *d.Location != region:
		t.Errorf("location %s", *d.Location)
	case cd.LogicalSectorSize != nil:
		t.Errorf("logical sector size set for Premium_LRS")
	}
	// Also on the wire: the JSON body has no encryptionSettingsCollection.
	if b, _ := json.Marshal(d); strings.Contains(string(b), "encryptionSettings") {
		t.Errorf("request body mentions encryptionSettings: %s", b)
	}
	if tgt.SASURL != sasURL("osdisk-plain") || tgt.UploadSizeBytes != 30*gib+512 || tgt.SizeBytes != 30*gib || tgt.DiskID != resID(typeDisk, "osdisk-plain") {
		t.Errorf("target %+v", tgt)
	}
	if b, _ := json.Marshal(tgt); strings.Contains(string(b), sasSecret) || strings.Contains(string(b), "sig=") {
		t.Errorf("target JSON carries the SAS: %s", b)
	}
	wantCalls := []string{"PUT disk osdisk-plain", "GRANT disk osdisk-plain Write 86400"}
	if !slices.Equal(c.Calls, wantCalls) {
		t.Errorf("calls %q, want %q", c.Calls, wantCalls)
	}
	if err := tgt.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tgt.Finish(ctx); err != nil { // idempotent: no second revoke
		t.Fatal(err)
	}
	wantCalls = append(wantCalls, "REVOKE disk osdisk-plain")
	if !slices.Equal(c.Calls, wantCalls) {
		t.Errorf("calls %q, want %q", c.Calls, wantCalls)
	}
}

func TestDiskSpecFrom(t *testing.T) {
	c := newCloud(t)
	sourceFixture(c)
	cl := c.client()
	ctx := context.Background()

	// From the disk itself.
	spec, err := cl.DiskSpecFrom(ctx, resID(typeDisk, "osdisk"), "rg-target", "new", desID)
	if err != nil {
		t.Fatal(err)
	}
	if spec.ResourceGroup != "rg-target" || spec.SizeBytes != 30*gib || spec.SKU != armcompute.DiskStorageAccountTypesPremiumLRS || !slices.Equal(spec.Zones, []string{"2"}) || spec.Location != region {
		t.Errorf("spec %+v", spec)
	}

	// A snapshot that lacks the capabilities takes them from its disk.
	c.Snapshots[key(rg, "snap")].Properties.SupportedCapabilities = nil
	spec, err = cl.DiskSpecFrom(ctx, resID(typeSnapshot, "snap"), "", "new", desID)
	if err != nil || spec.SupportedCapabilities == nil || *spec.SupportedCapabilities.DiskControllerTypes != "SCSI, NVMe" {
		t.Fatalf("capabilities not taken from the source disk: %+v, %v", spec, err)
	}

	// Double-encryption DES: the disk must ask for the same type.
	c.DiskEncryptionSets[key("rg-keys", "des1")].Properties.EncryptionType = to.Ptr(armcompute.DiskEncryptionSetTypeEncryptionAtRestWithPlatformAndCustomerKeys)
	spec, err = cl.DiskSpecFrom(ctx, resID(typeSnapshot, "snap"), "", "new", desID)
	if err != nil || spec.EncryptionType != armcompute.EncryptionTypeEncryptionAtRestWithPlatformAndCustomerKeys {
		t.Fatalf("double encryption: %+v, %v", spec, err)
	}

	// A DES in another subscription is refused: it cannot serve the source's subscription, and the
	// new disk must stay beside the VM.
	otherDES := strings.Replace(desID, sub, "00000000-0000-0000-0000-0000000000ff", 1)
	if _, err := cl.DiskSpecFrom(ctx, resID(typeSnapshot, "snap"), "", "new", otherDES); !errors.Is(err, ErrDESMismatch) || !strings.Contains(err.Error(), "same subscription") {
		t.Errorf("DES in another subscription: %v", err)
	}
	// A DES in another region is refused.
	c.DiskEncryptionSets[key("rg-keys", "des1")].Location = to.Ptr("northeurope")
	if _, err := cl.DiskSpecFrom(ctx, resID(typeSnapshot, "snap"), "", "new", desID); !errors.Is(err, ErrDESMismatch) {
		t.Errorf("DES in another region: %v", err)
	}

	// Source disk deleted: zones and SKU fall back, with a note.
	delete(c.Disks, key(rg, "osdisk"))
	spec, err = cl.DiskSpecFrom(ctx, resID(typeSnapshot, "snap"), "", "new", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Zones) != 0 || spec.SKU != armcompute.DiskStorageAccountTypesStandardLRS || len(spec.Notes) == 0 {
		t.Errorf("spec without source disk %+v", spec)
	}

	// A confidential VM source is described but refused at creation (Trusted Launch: secure_test.go).
	c.Snapshots[key(rg, "snap")].Properties.SecurityProfile = &armcompute.DiskSecurityProfile{SecurityType: to.Ptr(armcompute.DiskSecurityTypesConfidentialVMDiskEncryptedWithPlatformKey)}
	spec, err = cl.DiskSpecFrom(ctx, resID(typeSnapshot, "snap"), "", "new", "")
	if err != nil {
		t.Fatal(err)
	}
	spec.DiskEncryptionSetID = desID
	n := len(c.Calls)
	if _, err := cl.CreateUploadDisk(ctx, *spec); !errors.Is(err, ErrUnsupported) {
		t.Errorf("confidential VM: %v", err)
	}
	if len(c.Calls) != n {
		t.Errorf("calls made for a refused spec: %q", c.Calls[n:])
	}
}

func TestCreateUploadDiskValidation(t *testing.T) {
	c := newCloud(t)
	cl := c.client()
	good := DiskSpec{ResourceGroup: rg, Name: "d", Location: region, SizeBytes: 30 * gib, DiskEncryptionSetID: desID}
	for name, mut := range map[string]func(*DiskSpec){
		"no name":       func(s *DiskSpec) { s.Name = "" },
		"no location":   func(s *DiskSpec) { s.Location = "" },
		"not MiB":       func(s *DiskSpec) { s.SizeBytes += 512 },
		"too small":     func(s *DiskSpec) { s.SizeBytes = 1 << 20 },
		"too large":     func(s *DiskSpec) { s.SizeBytes = 64 << 40 },
		"no DES":        func(s *DiskSpec) { s.DiskEncryptionSetID = "" },
		"DES + PMK":     func(s *DiskSpec) { s.EncryptionType = armcompute.EncryptionTypeEncryptionAtRestWithPlatformKey },
		"bad DES ID":    func(s *DiskSpec) { s.DiskEncryptionSetID = resID(typeDisk, "x") },
		"other sub DES": func(s *DiskSpec) { s.Subscription = "00000000-0000-0000-0000-000000000999" },
		"SAS too long":  func(s *DiskSpec) { s.AccessDuration = 61 * 24 * time.Hour },
		"SAS too short": func(s *DiskSpec) { s.AccessDuration = time.Millisecond },
		"secure source": func(s *DiskSpec) {
			s.SecurityType = armcompute.DiskSecurityTypesConfidentialVMDiskEncryptedWithCustomerKey
		},
	} {
		s := good
		mut(&s)
		if _, err := cl.CreateUploadDisk(context.Background(), s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if len(c.Calls) != 0 {
		t.Errorf("invalid specs reached the service: %q", c.Calls)
	}
	// Ultra and Premium SSD v2 need 512-byte logical sectors for a VHD.
	s := good
	s.SKU = armcompute.DiskStorageAccountTypesPremiumV2LRS
	if _, err := cl.CreateUploadDisk(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if ls := c.DiskPut.Properties.CreationData.LogicalSectorSize; ls == nil || *ls != 512 {
		t.Errorf("PremiumV2 logical sector size %v", ls)
	}
}

func TestCreateUploadDiskExists(t *testing.T) {
	c := newCloud(t)
	c.Disks[key(rg, "d")] = &armcompute.Disk{ID: to.Ptr(resID(typeDisk, "d")), Properties: &armcompute.DiskProperties{DiskState: to.Ptr(armcompute.DiskStateUnattached)}}
	_, err := c.client().CreateUploadDisk(context.Background(), DiskSpec{ResourceGroup: rg, Name: "d", Location: region, SizeBytes: 30 * gib, DiskEncryptionSetID: desID})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "Unattached") {
		t.Fatalf("err = %v", err)
	}
	if len(c.Calls) != 0 {
		t.Errorf("calls %q on an existing disk", c.Calls)
	}
}

// A failing grant leaves no SAS open and no empty disk behind, and the
// error carries no signature.
func TestCreateUploadDiskGrantFails(t *testing.T) {
	for _, mode := range []string{"error", "nosas", "transport"} {
		t.Run(mode, func(t *testing.T) {
			c := newCloud(t)
			c.FailGrant = mode
			_, err := c.client().CreateUploadDisk(context.Background(), DiskSpec{ResourceGroup: rg, Name: "d", Location: region, SizeBytes: 30 * gib, DiskEncryptionSetID: desID})
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), sasSecret) || strings.Contains(err.Error(), "SIGsecret") {
				t.Errorf("error leaks the SAS signature: %v", err)
			}
			want := []string{"PUT disk d", "GRANT disk d Write 86400", "REVOKE disk d", "DELETE disk d"}
			if !slices.Equal(c.Calls, want) {
				t.Errorf("calls %q, want %q", c.Calls, want)
			}
			if _, ok := c.Disks[key(rg, "d")]; ok {
				t.Errorf("empty disk left behind")
			}
			t.Log(err)
		})
	}
}

// Revoke validates the VHD footer: InvalidVhd fails Finish with the
// service's code; Abort then still deletes the disk.
func TestUploadFinishFailures(t *testing.T) {
	c := newCloud(t)
	cl := c.client()
	ctx := context.Background()
	spec := DiskSpec{ResourceGroup: rg, Name: "d", Location: region, SizeBytes: 30 * gib, DiskEncryptionSetID: desID, AccessDuration: time.Hour}
	tgt, err := cl.CreateUploadDisk(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	c.FailRevoke = "InvalidVhd"
	err = tgt.Finish(ctx)
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != "InvalidVhd" {
		t.Fatalf("Finish: %v", err)
	}
	if st, err := tgt.State(ctx); err != nil || st != armcompute.DiskStateActiveUpload {
		t.Fatalf("state %s, %v", st, err)
	}
	c.FailRevoke = ""
	if err := tgt.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"PUT disk d", "GRANT disk d Write 3600", "REVOKE disk d", "REVOKE disk d", "DELETE disk d"}
	if !slices.Equal(c.Calls, want) {
		t.Errorf("calls %q, want %q", c.Calls, want)
	}

	// Revoke succeeds but the disk did not become Unattached.
	c.Calls = nil
	c.RevokeKeeps = true
	tgt, err = cl.CreateUploadDisk(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := tgt.Finish(ctx); !errors.Is(err, ErrState) {
		t.Fatalf("Finish with the disk still ActiveUpload: %v", err)
	}
}

func TestOpenUploadDisk(t *testing.T) {
	c := newCloud(t)
	cl := c.client()
	ctx := context.Background()
	tgt, err := cl.CreateUploadDisk(ctx, DiskSpec{ResourceGroup: rg, Name: "d", Location: region, SizeBytes: 30 * gib, DiskEncryptionSetID: desID,
		Tags: map[string]string{"job": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	// What an interrupted run left, read without a grant.
	grants := c.Count("grant")
	if tags, err := cl.UploadTags(ctx, tgt.DiskID); err != nil || tags["job"] != "a" {
		t.Errorf("UploadTags of the unfinished upload = %v, %v", tags, err)
	}
	if _, err := cl.UploadTags(ctx, resID("Microsoft.Compute/disks", "none")); !errors.Is(err, ErrNotFound) {
		t.Errorf("UploadTags of a missing disk: %v", err)
	}
	// Another job's tag: refused before any grant.
	if _, err := cl.OpenUploadDisk(ctx, tgt.DiskID, 0, map[string]string{"job": "b"}); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), `tag job is "a", want "b"`) {
		t.Errorf("reopen with another tag: %v", err)
	}
	if _, err := cl.OpenUploadDisk(ctx, tgt.DiskID, 0, map[string]string{"other": "x"}); !errors.Is(err, ErrState) {
		t.Errorf("reopen with a missing tag: %v", err)
	}
	if n := c.Count("grant"); n != grants {
		t.Errorf("a refused reopen granted access (%d grants, were %d)", n, grants)
	}
	// Resume: a new grant on the same disk, same sizes.
	again, err := cl.OpenUploadDisk(ctx, tgt.DiskID, 2*time.Hour, map[string]string{"job": "a"})
	if err != nil {
		t.Fatal(err)
	}
	if again.UploadSizeBytes != 30*gib+512 || again.SASURL == "" {
		t.Errorf("reopened %+v", again)
	}
	if err := again.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	// A finished disk cannot be reopened.
	if _, err := cl.UploadTags(ctx, tgt.DiskID); !errors.Is(err, ErrState) {
		t.Errorf("UploadTags of a finished disk: %v", err)
	}
	if _, err := cl.OpenUploadDisk(ctx, tgt.DiskID, 0, nil); !errors.Is(err, ErrState) {
		t.Errorf("reopen Unattached: %v", err)
	}
}

func TestGrantRead(t *testing.T) {
	c := newCloud(t)
	sourceFixture(c)
	cl := c.client()
	ctx := context.Background()
	sas, revoke, err := cl.GrantRead(ctx, resID(typeSnapshot, "snap"), 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if sas != sasURL("snap") {
		t.Errorf("sas %q", sas)
	}
	if err := revoke(ctx); err != nil {
		t.Fatal(err)
	}
	if err := revoke(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"GRANT snapshot snap Read 10800", "REVOKE snapshot snap"}
	if !slices.Equal(c.Calls, want) {
		t.Errorf("calls %q, want %q", c.Calls, want)
	}

	// Failure paths revoke too, and never show the signature.
	for _, mode := range []string{"nosas", "transport", "error"} { // "error" last: see azurefake.Cloud.FailGrant
		c.Calls, c.FailGrant = nil, mode
		_, rv, err := cl.GrantRead(ctx, resID(typeSnapshot, "snap"), 0)
		if err == nil || rv != nil {
			t.Fatalf("%s: err %v", mode, err)
		}
		if strings.Contains(err.Error(), "SIGsecret") {
			t.Errorf("%s: error leaks the SAS signature: %v", mode, err)
		}
		// 0 sizes the grant from the snapshot: an hour plus twice its bytes at 16 MiB/s.
		secs := int(ReadAccessFor(*c.Snapshots[key(rg, "snap")].Properties.DiskSizeBytes) / time.Second)
		want := []string{fmt.Sprintf("GRANT snapshot snap Read %d", secs), "REVOKE snapshot snap"}
		if !slices.Equal(c.Calls, want) {
			t.Errorf("%s: calls %q, want %q", mode, c.Calls, want)
		}
	}
	// A disk can be exported too.
	c.Calls, c.FailGrant = nil, ""
	if _, rv, err := cl.GrantRead(ctx, resID(typeDisk, "osdisk"), time.Hour); err != nil {
		t.Fatal(err)
	} else if err := rv(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.GrantRead(ctx, resID(typeVM, "vm"), time.Hour); err == nil {
		t.Error("GrantRead accepted a VM")
	}
}

func TestSnapshotDisk(t *testing.T) {
	c := newCloud(t)
	sourceFixture(c)
	// A locked-down disk: its snapshot is reached no more openly.
	dp := c.Disks[key(rg, "osdisk")].Properties
	dp.DataAccessAuthMode = to.Ptr(armcompute.DataAccessAuthModeAzureActiveDirectory)
	dp.NetworkAccessPolicy = to.Ptr(armcompute.NetworkAccessPolicyDenyAll)
	id, err := c.client().SnapshotDisk(context.Background(), resID(typeDisk, "osdisk"), "snap2", &SnapshotOptions{Incremental: true, Tags: map[string]string{"by": "luksconv"}})
	if err != nil {
		t.Fatal(err)
	}
	if id != resID(typeSnapshot, "snap2") {
		t.Errorf("id %s", id)
	}
	s := c.SnapshotPut
	if *s.Properties.CreationData.CreateOption != armcompute.DiskCreateOptionCopy || *s.Properties.CreationData.SourceResourceID != resID(typeDisk, "osdisk") ||
		*s.Location != region || !*s.Properties.Incremental || *s.Tags["by"] != "luksconv" {
		t.Errorf("snapshot body %+v", s)
	}
	if p := s.Properties; p.DataAccessAuthMode == nil || *p.DataAccessAuthMode != armcompute.DataAccessAuthModeAzureActiveDirectory ||
		p.NetworkAccessPolicy == nil || *p.NetworkAccessPolicy != armcompute.NetworkAccessPolicyDenyAll {
		t.Errorf("the snapshot is less protected than its disk: %+v", p)
	}
	if a, err := c.client().ReadDataAccess(context.Background(), resID(typeDisk, "osdisk")); err != nil || !a.NeedsToken() || !a.Private() {
		t.Errorf("ReadDataAccess %+v, %v", a, err)
	}
}

func TestErrorRedaction(t *testing.T) {
	err := opError("grant", "https://md-x.blob.storage.azure.net/c/abcd?sv=1&sig=TOPSECRET", errors.New("dial https://md-x.blob.storage.azure.net/c/abcd?sig=TOPSECRET&se=2030: reset"))
	if strings.Contains(err.Error(), "TOPSECRET") {
		t.Fatalf("not redacted: %v", err)
	}
	if !strings.Contains(err.Error(), "se=2030") {
		t.Errorf("over-redacted: %v", err)
	}
	wrapped := opError("outer", "", opError("inner", "", context.Canceled))
	if !errors.Is(wrapped, context.Canceled) {
		t.Errorf("context error lost: %v", wrapped)
	}
}

func TestUploadAccessFor(t *testing.T) {
	for _, c := range []struct {
		size int64
		want time.Duration
	}{
		{0, time.Hour},
		{30 * gib, time.Hour + 32*time.Minute},   // 1920 s at 16 MiB/s
		{128 * gib, time.Hour + 137*time.Minute}, // 8192 s, rounded up to a minute
		{4 << 40, time.Hour + 4370*time.Minute},  // 262144 s: 73.8 h for a 4 TiB disk
		{MaxUploadDisk, MaxAccessDuration},       // 32 TiB would need 24.3 days: under the cap
		{1 << 50, MaxAccessDuration},             // capped at 60 days
	} {
		if got := UploadAccessFor(c.size); got != c.want && !(c.size == MaxUploadDisk && got < MaxAccessDuration) {
			t.Errorf("UploadAccessFor(%d) = %v, want %v", c.size, got, c.want)
		}
	}
}

func TestReadAccessFor(t *testing.T) {
	for _, c := range []struct {
		size int64
		want time.Duration
	}{
		{0, time.Hour},
		{30 << 30, time.Hour + 64*time.Minute}, // 60 GiB read at 16 MiB/s: 3840 s
		{1 << 50, MaxAccessDuration},
	} {
		if got := ReadAccessFor(c.size); got != c.want {
			t.Errorf("ReadAccessFor(%d) = %v, want %v", c.size, got, c.want)
		}
	}
}

// TestDiskSpecTierAndSKU: the source disk's performance tier and bursting carry over to the new
// disk's body; an Ultra or Premium SSD v2 OS disk, and a Standard_LRS OS disk whose SKU only came from
// the snapshot (its disk is gone), are refused with ErrDiskSKU until the SKU is chosen.
func TestDiskSpecTierAndSKU(t *testing.T) {
	c := newCloud(t)
	sourceFixture(c)
	c.Disks[key(rg, "osdisk")].Properties.Tier = to.Ptr("P30")
	c.Disks[key(rg, "osdisk")].Properties.BurstingEnabled = to.Ptr(true)
	ctx := context.Background()
	cl := c.client()
	spec, err := cl.DiskSpecFrom(ctx, resID(typeSnapshot, "snap"), "", "new", desID)
	if err != nil {
		t.Fatal(err)
	}
	spec.SizeBytes = 30 * gib
	if err := spec.Check(); err != nil {
		t.Fatal(err)
	}
	if m := spec.diskModel(); spec.SKUFromSnapshot || str(m.Properties.Tier) != "P30" || !deref(m.Properties.BurstingEnabled) {
		t.Errorf("tier %q bursting %v (from snapshot %v)", str(m.Properties.Tier), m.Properties.BurstingEnabled, spec.SKUFromSnapshot)
	}
	for _, sku := range []armcompute.DiskStorageAccountTypes{armcompute.DiskStorageAccountTypesUltraSSDLRS, armcompute.DiskStorageAccountTypesPremiumV2LRS} {
		s := *spec
		s.SKU = sku
		if err := s.Check(); !errors.Is(err, ErrDiskSKU) {
			t.Errorf("%s OS disk: %v", sku, err)
		}
	}

	delete(c.Disks, key(rg, "osdisk"))
	spec, err = cl.DiskSpecFrom(ctx, resID(typeSnapshot, "snap"), "", "new", desID)
	if err != nil {
		t.Fatal(err)
	}
	spec.SizeBytes = 30 * gib
	if err := spec.Check(); !errors.Is(err, ErrDiskSKU) || !spec.SKUFromSnapshot {
		t.Errorf("Standard_LRS from a snapshot whose disk is gone: %v", err)
	}
	spec.SKU, spec.SKUFromSnapshot = armcompute.DiskStorageAccountTypesPremiumLRS, false
	if err := spec.Check(); err != nil {
		t.Errorf("with the SKU chosen: %v", err)
	}
}

// hostRecorder answers every request with a 404 and remembers the hosts asked.
type hostRecorder struct {
	mu    sync.Mutex
	hosts []string
}

func (h *hostRecorder) Do(req *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.hosts = append(h.hosts, req.URL.Host)
	h.mu.Unlock()
	return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Request: req, Header: http.Header{}, Body: http.NoBody}, nil
}

// TestCloud: a Client for another cloud calls that cloud's Resource Manager; CloudByName knows the
// names `az cloud list` gives.
func TestCloud(t *testing.T) {
	for name, host := range map[string]string{"AzureChinaCloud": "management.chinacloudapi.cn", "azureusgovernment": "management.usgovcloudapi.net", "": "management.azure.com"} {
		cfg, err := CloudByName(name)
		if err != nil {
			t.Fatal(err)
		}
		rec := &hostRecorder{}
		cl, err := New(sub, &azfake.TokenCredential{}, &Options{Cloud: cfg, ARM: &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: rec}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.ReadDataAccess(context.Background(), resID(typeDisk, "osdisk")); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v", name, err)
		}
		if len(rec.hosts) == 0 || rec.hosts[0] != host {
			t.Errorf("cloud %q: requests went to %q, want %s", name, rec.hosts, host)
		}
	}
	if _, err := CloudByName("moon"); err == nil {
		t.Error("an unknown cloud is accepted")
	}
}

// TestGrantReadCancelled: a grant cut off by Ctrl-C goes on in Azure. GrantRead must wait for it to
// end (with a context of its own) before it revokes: a revoke that comes first finds nothing to end,
// and the grant then leaves the source ActiveSAS with a SAS open until it expires.
func TestGrantReadCancelled(t *testing.T) {
	for _, name := range []string{"snap", "osdisk"} {
		t.Run(name, func(t *testing.T) {
			c := newCloud(t)
			sourceFixture(c)
			cl := c.client()
			id, state := resID(typeSnapshot, name), func() armcompute.DiskState { return c.SnapshotState(rg, name) }
			if name == "osdisk" {
				id, state = resID(typeDisk, name), func() armcompute.DiskState { return c.DiskState(rg, name) }
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c.Slow = func(call string) int {
				if strings.HasPrefix(call, "GRANT ") {
					return 3
				}
				return 0
			}
			c.Polled = func(string) { cancel() } // Ctrl-C while the run waits for the grant
			_, rv, err := cl.GrantRead(ctx, id, time.Hour)
			if !errors.Is(err, context.Canceled) || rv != nil {
				t.Fatalf("GrantRead cut off: err %v, want context.Canceled and no revoke function", err)
			}
			if strings.Contains(err.Error(), sasSecret) {
				t.Errorf("the error shows the SAS: %v", err)
			}
			if n := c.InFlight(); n != 0 {
				t.Errorf("GrantRead returned with %d operation(s) still in flight", n)
			}
			c.Settle() // Azure ends what was left running
			if st := state(); st == armcompute.DiskStateActiveSAS {
				t.Errorf("after the cut-off grant %s is %s: the grant outlived its revoke (calls %q)", name, st, c.Calls)
			}
			if n := len(c.Calls); n == 0 || !strings.HasPrefix(c.Calls[n-1], "REVOKE ") {
				t.Errorf("calls %q: want the revoke last", c.Calls)
			}
		})
	}
}

// TestSnapshotDiskCancelled: a snapshot creation cut off by Ctrl-C goes on in Azure. SnapshotDisk waits
// for it and returns the snapshot's ID with the cancellation, so that the caller records or names it;
// returning at once left a snapshot that nothing named.
func TestSnapshotDiskCancelled(t *testing.T) {
	c := newCloud(t)
	sourceFixture(c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.Slow = func(call string) int {
		if strings.HasPrefix(call, "PUT snapshot ") {
			return 3
		}
		return 0
	}
	c.Polled = func(string) { cancel() }
	id, err := c.client().SnapshotDisk(ctx, resID(typeDisk, "osdisk"), "snap2", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("SnapshotDisk cut off: err %v, want context.Canceled", err)
	}
	if n := c.InFlight(); n != 0 {
		t.Errorf("SnapshotDisk returned with %d operation(s) in flight", n)
	}
	if id != resID(typeSnapshot, "snap2") {
		t.Errorf("SnapshotDisk cut off returned ID %q, want the snapshot Azure made, %s", id, resID(typeSnapshot, "snap2"))
	}
	c.Settle()
	if _, ok := c.Snapshots[key(rg, "snap2")]; !ok {
		t.Error("no snapshot snap2")
	}
}

// TestOpenUploadDiskCancelled: the write grant of a resumed upload cut off by Ctrl-C goes on in Azure.
// Here every byte and the footer were written (an earlier finish failed), so the revoke after the
// failed grant ends the upload; sent before the grant ended, it was undone by it, and the finished
// disk stayed ActiveUpload with a write SAS open until expiry.
func TestOpenUploadDiskCancelled(t *testing.T) {
	c := newCloud(t)
	cl := c.client()
	tgt, err := cl.CreateUploadDisk(context.Background(), DiskSpec{ResourceGroup: rg, Name: "d", Location: region, SizeBytes: 30 * gib, DiskEncryptionSetID: desID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.Slow = func(call string) int {
		if strings.HasPrefix(call, "GRANT disk d Write") {
			return 3
		}
		return 0
	}
	c.Polled = func(string) { cancel() }
	if _, err := cl.OpenUploadDisk(ctx, tgt.DiskID, time.Hour, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("OpenUploadDisk cut off: %v, want context.Canceled", err)
	}
	if n := c.InFlight(); n != 0 {
		t.Errorf("OpenUploadDisk returned with %d operation(s) in flight", n)
	}
	c.Settle()
	if st := c.DiskState(rg, "d"); st != armcompute.DiskStateUnattached {
		t.Errorf("after the cut-off grant and its revoke the disk is %s, want %s (calls %q)", st, armcompute.DiskStateUnattached, c.Calls)
	}
}

// TestSnapshotDiskCancelledRequest: Ctrl-C while the snapshot's PUT is answered. Azure accepted it, but
// the run never got the operation to poll: SnapshotDisk must still find the snapshot and return its ID
// with the cancellation, for the caller to record or name it.
func TestSnapshotDiskCancelledRequest(t *testing.T) {
	c := newCloud(t)
	sourceFixture(c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.OnCall = func(call string) {
		if strings.HasPrefix(call, "PUT snapshot ") {
			cancel()
		}
	}
	id, err := c.client().SnapshotDisk(ctx, resID(typeDisk, "osdisk"), "snap2", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("SnapshotDisk cut off: err %v, want context.Canceled", err)
	}
	if _, ok := c.Snapshots[key(rg, "snap2")]; !ok {
		t.Fatal("Azure made no snapshot snap2")
	}
	if id != resID(typeSnapshot, "snap2") {
		t.Errorf("SnapshotDisk cut off returned ID %q, want the snapshot Azure made, %s", id, resID(typeSnapshot, "snap2"))
	}
}
