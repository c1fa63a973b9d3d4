package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resourcegraph/armresourcegraph"

	"github.com/luksconv/luksconv/internal/azurefake"
)

const otherSub = "00000000-0000-0000-0000-000000000002"

// fleetCloud is the fake cloud holding azurefake's mixed ADE fleet, served by Resource Graph in
// pages of at most pageSize rows.
func fleetCloud(t *testing.T, pageSize int) *cloud {
	c := newCloud(t)
	c.AddFleet(otherSub)
	c.GraphPageSize = pageSize
	return c
}

func vmByName(inv *Inventory, name string) *InventoryVM {
	for i := range inv.VMs {
		if inv.VMs[i].Name == name {
			return &inv.VMs[i]
		}
	}
	return nil
}

func blockerCodes(v *InventoryVM) []string {
	var out []string
	for _, b := range v.Blockers {
		out = append(out, b.Code)
	}
	return out
}

// TestInventory reads the mixed fleet through the Resource Graph fake in pages of 4 rows and checks
// every VM, the unattached disk and the snapshot.
func TestInventory(t *testing.T) {
	c := fleetCloud(t, 4)
	inv, err := c.client().Inventory(context.Background(), InventoryOptions{Subscriptions: []string{sub, otherSub, strings.ToUpper(sub)}})
	if err != nil {
		t.Fatal(err)
	}
	if inv.SchemaVersion != InventorySchemaVersion || inv.Truncated || len(inv.Warnings) != 0 || !slices.Equal(inv.Subscriptions, []string{sub, otherSub}) {
		t.Errorf("schema %d, truncated %v, warnings %q, subscriptions %q", inv.SchemaVersion, inv.Truncated, inv.Warnings, inv.Subscriptions)
	}
	var names []string
	for _, v := range inv.VMs {
		names = append(names, v.Subscription+"/"+v.ResourceGroup+"/"+v.Name)
	}
	var want []string
	for _, n := range []string{"rhel-all", "rhel-data", "rhel-des", "rhel-os", "rhel-tl", "ubuntu-cvm", "win"} {
		want = append(want, sub+"/"+azurefake.FleetRG+"/"+n)
	}
	want = append(want, otherSub+"/"+azurefake.FleetOtherRG+"/ubuntu")
	if !slices.Equal(names, want) {
		t.Fatalf("VMs %q\nwant %q (not plain, which has no ADE, nor elsewhere, outside the subscriptions)", names, want)
	}

	// An RHEL VM with ADE on its OS volume only, deallocated.
	v := vmByName(inv, "rhel-os")
	if v.PowerState != "deallocated" || v.Running || v.OSType != "Linux" || v.OSFamily != OSFamilyRHEL || v.VolumeType != "OS" || v.SecurityType != "Standard" ||
		v.Image != (InventoryImage{Publisher: "RedHat", Offer: "RHEL", SKU: "8-lvm-gen2", Version: "latest", From: "imageReference"}) ||
		v.Size != "Standard_D4s_v3" || v.Location != "westeurope" || !v.Convertible || len(v.Blockers) != 0 ||
		v.ADE.Extension != "AzureDiskEncryptionForLinux" || v.ADE.ExtensionVersion != "1.1" || v.ADE.KeyVaultURL != azurefake.FleetVault || v.ADE.DualPass {
		t.Errorf("rhel-os: %+v", *v)
	}
	if len(v.Disks) != 2 {
		t.Fatalf("rhel-os disks %+v", v.Disks)
	}
	osd, d0 := v.Disks[0], v.Disks[1]
	if osd.Role != "os" || osd.LUN != nil || osd.Name != "rhel-os-osdisk" || osd.SizeGiB != 64 || osd.SizeBytes != 64<<30 || !osd.ADE || osd.ADEFrom != FromDisk ||
		osd.ADEVersion != "1.1" || osd.KeyVaultURL != azurefake.FleetVault || !strings.HasPrefix(osd.SecretURL, azurefake.FleetVault+"/secrets/rhel-os-osdisk-bek/") ||
		osd.KEKURL != "" || osd.DESID != "" || osd.DESOtherSubscription || !osd.Convert || osd.State != "Reserved" || osd.SKU != "Premium_LRS" ||
		osd.ManagedBy != v.ID || osd.Subscription != sub || osd.ResourceGroup != azurefake.FleetRG {
		t.Errorf("rhel-os OS disk %+v", osd)
	}
	if d0.Role != "data" || d0.LUN == nil || *d0.LUN != 0 || d0.SizeGiB != 32 || d0.ADE || d0.Convert || d0.KeyVaultURL != "" {
		t.Errorf("rhel-os data disk %+v", d0)
	}
	// 64 GiB at 60 MiB/s: 1093 s; cutover 3+2+5 min and 1% of 64 GiB at 60 MiB/s (11 s).
	if e := v.Estimate; e != (InventoryEstimate{Label: "estimate", Disks: 1, StagingBytes: 64 << 30, StagingSeconds: 1093, CutoverBytes: 687194768, CutoverSeconds: 611, Parallel: 4}) {
		t.Errorf("rhel-os estimate %+v", e)
	}

	// VolumeType All, running, KEK-wrapped: three disks staged in parallel, the largest bounds the time.
	v = vmByName(inv, "rhel-all")
	if v.PowerState != "running" || !v.Running || v.VolumeType != "All" || !v.Convertible || v.OSFamily != OSFamilyRHEL || v.Image.SKU != "9-lvm-gen2" ||
		!strings.HasSuffix(v.ADE.KEKURL, "/keys/"+azurefake.KEKName+"/"+azurefake.KEKVersion) ||
		!slices.ContainsFunc(v.Notes, func(n string) bool { return strings.HasPrefix(n, "running (not a blocker)") }) {
		t.Errorf("rhel-all: %+v", *v)
	}
	var luns []string
	for _, d := range v.Disks {
		if !d.ADE || !d.Convert || d.KEKURL == "" {
			t.Errorf("rhel-all disk %+v", d)
		}
		luns = append(luns, fmt.Sprintf("%s:%d", d.Role, d.SizeGiB))
	}
	if !slices.Equal(luns, []string{"os:64", "data:128", "data:256"}) {
		t.Errorf("rhel-all disks %q", luns)
	}
	if e := v.Estimate; e.Disks != 3 || e.StagingBytes != 448<<30 || e.StagingSeconds != 4370 || e.CutoverSeconds != 600+44 {
		t.Errorf("rhel-all estimate %+v", e)
	}

	// Data volumes only: the OS disk is not stamped, and a whole-VM run needs its key: blocked.
	v = vmByName(inv, "rhel-data")
	luns = nil
	for _, d := range v.Disks {
		luns = append(luns, fmt.Sprintf("%s:%v:%v:%v", d.Name, d.ADE, d.Convert, d.LUN != nil && *d.LUN == 3))
	}
	if v.VolumeType != "Data" || v.Convertible || !slices.Equal(blockerCodes(v), []string{BlockerOSNotEncrypted}) || !slices.Equal(luns, []string{"rhel-data-osdisk:false:true:false", "rhel-data-data0:true:true:false", "rhel-data-data3:true:true:true"}) ||
		v.Estimate.Disks != 3 || v.Estimate.StagingSeconds != (512<<10+59)/60 {
		t.Errorf("rhel-data: %q %+v", luns, *v)
	}

	// Trusted Launch converts (a note); a Confidential VM is blocked.
	v = vmByName(inv, "rhel-tl")
	if v.SecurityType != "TrustedLaunch" || !v.Convertible || !slices.ContainsFunc(v.Notes, func(n string) bool { return strings.HasPrefix(n, "Trusted Launch") }) {
		t.Errorf("rhel-tl: %+v", *v)
	}
	v = vmByName(inv, "ubuntu-cvm")
	if v.SecurityType != "ConfidentialVM" || v.Convertible || !slices.Equal(blockerCodes(v), []string{BlockerConfidentialVM, BlockerOSNotEncrypted}) || v.OSFamily != OSFamilyUbuntu || !v.Running {
		t.Errorf("ubuntu-cvm: %+v", *v)
	}
	// A DES in another subscription is a blocker; one in the disk's own is not.
	v = vmByName(inv, "rhel-des")
	if v.Convertible || !slices.Equal(blockerCodes(v), []string{BlockerDESOtherSubscription}) || !v.Disks[0].DESOtherSubscription ||
		v.Disks[0].DESID != azurefake.FleetOtherDES(otherSub) || !strings.Contains(v.Blockers[0].Message, otherSub) {
		t.Errorf("rhel-des: %+v", *v)
	}
	v = vmByName(inv, "ubuntu")
	if !v.Convertible || v.OSFamily != OSFamilyUbuntu || v.Subscription != otherSub || v.Disks[0].DESID == "" || v.Disks[0].DESOtherSubscription || len(v.Disks) != 2 {
		t.Errorf("ubuntu: %+v", *v)
	}
	v = vmByName(inv, "win")
	if v.Convertible || !slices.Equal(blockerCodes(v), []string{BlockerUnsupportedOS}) || v.OSType != "Windows" || v.ADE.Extension != "AzureDiskEncryption" || v.VolumeType != "All" {
		t.Errorf("win: %+v", *v)
	}

	if len(inv.UnattachedDisks) != 1 {
		t.Fatalf("unattached disks %+v", inv.UnattachedDisks)
	}
	if d := inv.UnattachedDisks[0]; d.Name != "orphan-ade" || d.Role != "unattached" || !d.ADE || d.SizeGiB != 200 || d.ManagedBy != "" || d.Convert || d.State != "Unattached" {
		t.Errorf("unattached disk %+v", d)
	}
	if len(inv.Snapshots) != 1 {
		t.Fatalf("snapshots %+v", inv.Snapshots)
	}
	if s := inv.Snapshots[0]; s.Name != "rhel-os-snap" || s.SourceDiskName != "rhel-os-osdisk" || s.SourceVMID != vmByName(inv, "rhel-os").ID || !s.Incremental ||
		s.SizeGiB != 64 || s.KeyVaultURL != azurefake.FleetVault || s.ADEVersion != "1.1" {
		t.Errorf("snapshot %+v", s)
	}
	if s := inv.Summary; s != (InventorySummary{VMs: 8, Convertible: 4, Blocked: 4, Running: 3, ConvertDisks: 1 + 3 + 1 + 2, ConvertBytes: (64 + 448 + 64 + 230) << 30,
		UnattachedDisks: 1, Snapshots: 1, ScaleSets: 2}) {
		t.Errorf("summary %+v", s)
	}
	// The scale sets with ADE's extension in their model, not the one without; neither is converted.
	if len(inv.ScaleSets) != 2 {
		t.Fatalf("scale sets %+v", inv.ScaleSets)
	}
	if f, u := inv.ScaleSets[0], inv.ScaleSets[1]; f.Name != "rhel-flex" || f.OrchestrationMode != "Flexible" || !strings.Contains(f.Note, "listed under vms") ||
		u.Name != "rhel-vmss" || u.OrchestrationMode != "Uniform" || u.Capacity != 3 || u.Extension != "AzureDiskEncryptionForLinux" || u.VolumeType != "All" ||
		u.ResourceGroup != azurefake.FleetRG || u.Subscription != sub || !strings.Contains(u.Note, "luksconv does not convert them") {
		t.Errorf("scale sets %+v", inv.ScaleSets)
	}

	// Every query was paged with $skipToken, each page repeating its query and scope.
	c.Lock()
	queries := slices.Clone(c.GraphQueries)
	c.Unlock()
	pages := map[string]int{}
	for _, q := range queries {
		typ := strings.Split(strings.Split(*q.Query, "type =~ '")[1], "'")[0]
		// The VMs query's rows carry whole VM models: smaller pages keep a response under 16 MiB.
		top := int32(1000)
		if typ == "microsoft.compute/virtualmachines" {
			top = 200
		}
		if q.Options == nil || q.Options.ResultFormat == nil || *q.Options.ResultFormat != armresourcegraph.ResultFormatObjectArray || q.Options.Top == nil || *q.Options.Top != top ||
			len(q.Subscriptions) != 2 || *q.Subscriptions[0] != sub || *q.Subscriptions[1] != otherSub {
			t.Errorf("query %s: %+v", typ, q)
		}
		if hasToken := q.Options.SkipToken != nil; hasToken != (pages[typ] > 0) {
			t.Errorf("query %s page %d: skip token %v", typ, pages[typ]+1, hasToken)
		}
		pages[typ]++
	}
	// 9 VMs in the two subscriptions, 9 extensions, 18 disks, 2 snapshots, 3 scale sets: pages of 4.
	if want := map[string]int{"microsoft.compute/virtualmachines": 3, "microsoft.compute/virtualmachines/extensions": 3, "microsoft.compute/disks": 5,
		"microsoft.compute/snapshots": 1, "microsoft.compute/virtualmachinescalesets": 1}; !mapsEqual(pages, want) {
		t.Errorf("pages %v, want %v", pages, want)
	}

	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), azurefake.FleetProtectedSecret) || !strings.Contains(string(b), `"schema_version":1`) {
		t.Errorf("JSON: %s", b)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestInventoryTruncated: a result Resource Graph truncated is reported, and the inventory holds
// what was read.
func TestInventoryTruncated(t *testing.T) {
	c := fleetCloud(t, 4)
	c.GraphTruncated = "microsoft.compute/virtualmachines"
	inv, err := c.client().Inventory(context.Background(), InventoryOptions{Subscriptions: []string{sub, otherSub}})
	if err != nil {
		t.Fatal(err)
	}
	// The truncation first; then the stamped disks whose VMs were not read.
	if !inv.Truncated || len(inv.Warnings) != 7 || !strings.Contains(inv.Warnings[0], "truncated the result of the query for virtual machines (4 rows of 9 read)") ||
		!strings.Contains(inv.Warnings[1], "is not in the inventory") {
		t.Errorf("truncated %v, warnings %q", inv.Truncated, inv.Warnings)
	}
	// The first page holds plain, rhel-all, rhel-data and rhel-des (by ID); plain has no ADE.
	if len(inv.VMs) != 3 {
		t.Errorf("%d VMs from the truncated page", len(inv.VMs))
	}
}

// TestInventoryTenantScope: without subscriptions, Resource Graph is asked for everything the
// credential reads, and the VM of the third subscription is listed too.
func TestInventoryTenantScope(t *testing.T) {
	c := fleetCloud(t, 0)
	inv, err := c.client().Inventory(context.Background(), InventoryOptions{Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Subscriptions) != 0 || inv.Subscriptions == nil || vmByName(inv, "elsewhere") == nil || len(inv.VMs) != 9 {
		t.Errorf("subscriptions %q, %d VMs", inv.Subscriptions, len(inv.VMs))
	}
	// One disk at a time: rhel-all's three disks one after another.
	if e := vmByName(inv, "rhel-all").Estimate; e.Parallel != 1 || e.StagingSeconds != (448<<10+59)/60 {
		t.Errorf("estimate %+v", e)
	}
	for _, q := range c.GraphQueries {
		if len(q.Subscriptions) != 0 {
			t.Errorf("query scoped to %d subscriptions", len(q.Subscriptions))
		}
	}
}

// TestInventoryManySubscriptions: a --subscription list longer than one request may name is queried in
// batches (graphSubscriptions, 1000 in Azure; 2 here), each paged, with the same result as one request.
func TestInventoryManySubscriptions(t *testing.T) {
	subs := []string{sub, "00000000-0000-0000-0000-0000000000f1", otherSub, "00000000-0000-0000-0000-0000000000f2", "00000000-0000-0000-0000-0000000000f3"}
	whole, err := fleetCloud(t, 4).client().Inventory(context.Background(), InventoryOptions{Subscriptions: subs})
	if err != nil {
		t.Fatal(err)
	}
	defer func(n int) { graphSubscriptions = n }(graphSubscriptions)
	graphSubscriptions = 2
	c := fleetCloud(t, 4)
	inv, err := c.client().Inventory(context.Background(), InventoryOptions{Subscriptions: subs})
	if err != nil {
		t.Fatal(err)
	}
	scopes := map[int]int{}
	for _, q := range c.GraphQueries {
		scopes[len(q.Subscriptions)]++
	}
	if scopes[0] != 0 || scopes[3] != 0 || scopes[1] == 0 || scopes[2] == 0 {
		t.Errorf("requests by the number of subscriptions they name: %v, want batches of at most 2", scopes)
	}
	inv.GeneratedAt, whole.GeneratedAt = time.Time{}, time.Time{}
	a, _ := json.Marshal(inv)
	b, _ := json.Marshal(whole)
	if !bytes.Equal(a, b) || len(inv.VMs) != 8 {
		t.Errorf("batched inventory (%d VMs) differs from one request's (%d VMs)", len(inv.VMs), len(whole.VMs))
	}
}

// TestInventoryTenantLimit: a tenant-scope answer covering only part of the subscriptions the
// credential sees (x-ms-tenant-subscription-limit-hit: true, its only sign) marks the inventory
// truncated, with one warning.
func TestInventoryTenantLimit(t *testing.T) {
	c := fleetCloud(t, 4)
	c.GraphTenantLimitHit = true
	inv, err := c.client().Inventory(context.Background(), InventoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !inv.Truncated || len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "x-ms-tenant-subscription-limit-hit") || len(inv.VMs) != 9 {
		t.Errorf("truncated %v, warnings %q, %d VMs", inv.Truncated, inv.Warnings, len(inv.VMs))
	}
	// Named subscriptions are not the tenant's scope: no such header.
	if inv, err := c.client().Inventory(context.Background(), InventoryOptions{Subscriptions: []string{sub}}); err != nil || inv.Truncated {
		t.Errorf("with --subscription: %v, truncated %v", err, inv.Truncated)
	}
}

// TestInventoryGraphError: a refused query is an *Error naming the query, with the service's code.
func TestInventoryGraphError(t *testing.T) {
	c := fleetCloud(t, 0)
	c.GraphFail = "AuthorizationFailed"
	_, err := c.client().Inventory(context.Background(), InventoryOptions{Subscriptions: []string{sub}})
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 403 || e.Code != "AuthorizationFailed" ||
		!strings.HasPrefix(err.Error(), "azure: query Azure Resource Graph for ADE disks: HTTP 403 AuthorizationFailed") {
		t.Errorf("error %v", err)
	}
}

func TestInventoryEstimateModel(t *testing.T) {
	// The formula's text says what the constants hold.
	for _, w := range []string{fmt.Sprintf("deallocate (%d min)", int(CutoverDeallocate/time.Minute)), fmt.Sprintf("snapshots of the converted disks (%d min)", int(CutoverSnapshot/time.Minute)),
		fmt.Sprintf("%d%% of each converted disk", CutoverChangedPercent), fmt.Sprintf("%d MiB/s", StageRate>>20), fmt.Sprintf("re-creation (%d min)", int(CutoverRecreate/time.Minute))} {
		if !strings.Contains(CutoverFormula, w) {
			t.Errorf("CutoverFormula lacks %q", w)
		}
	}
	for _, tc := range []struct {
		jobs  []int64
		lanes int
		want  int64
	}{
		{nil, 4, 0}, {[]int64{5}, 4, 5}, {[]int64{1, 2, 3}, 1, 6}, {[]int64{3, 3, 2, 2, 2}, 2, 7}, {[]int64{10, 1, 1, 1}, 4, 10}, {[]int64{4, 4, 4, 4, 4}, 4, 8},
	} {
		if got := makespan(tc.jobs, tc.lanes); got != tc.want {
			t.Errorf("makespan(%v, %d) = %d, want %d", tc.jobs, tc.lanes, got, tc.want)
		}
	}
	for _, tc := range []struct {
		img  InventoryImage
		want string
	}{
		{InventoryImage{Publisher: "RedHat", Offer: "RHEL-SAP-HA"}, OSFamilyRHEL},
		{InventoryImage{Publisher: "OpenLogic", Offer: "CentOS"}, OSFamilyCentOS},
		{InventoryImage{Publisher: "Oracle", Offer: "Oracle-Linux"}, OSFamilyOracle},
		{InventoryImage{Publisher: "Canonical", Offer: "ubuntu-24_04-lts"}, OSFamilyUbuntu},
		{InventoryImage{Publisher: "SUSE", Offer: "sles-15-sp5"}, OSFamilyOther},
		{InventoryImage{Publisher: "Oracle", Offer: "oracle-database-19-3"}, OSFamilyOther},
		{InventoryImage{ID: "/subscriptions/x/resourceGroups/y/providers/Microsoft.Compute/galleries/g/images/i"}, OSFamilyUnknown},
	} {
		if got := osFamily(tc.img); got != tc.want {
			t.Errorf("osFamily(%+v) = %s, want %s", tc.img, got, tc.want)
		}
	}
}

// TestInventoryEdges: dual-pass settings on the VM model make a VM an ADE VM without extension or
// stamped disk; the image is read from the OS disk's creationData when the VM has none; an
// unknown image and an unmanaged disk are blockers.
func TestInventoryEdges(t *testing.T) {
	c := newCloud(t)
	vault := "https://dualvault.vault.azure.net"
	osDisk := func(vm, name string, stamped bool, imageID string) *armcompute.OSDisk {
		id := resID("Microsoft.Compute/disks", name)
		d := &armcompute.Disk{ID: to.Ptr(id), Name: to.Ptr(name), Location: to.Ptr(region), ManagedBy: to.Ptr(resID("Microsoft.Compute/virtualMachines", vm)),
			Properties: &armcompute.DiskProperties{DiskSizeGB: to.Ptr[int32](32), OSType: to.Ptr(armcompute.OperatingSystemTypesLinux)}}
		if stamped {
			d.Properties.EncryptionSettingsCollection = adeCollection(false)
		}
		if imageID != "" {
			d.Properties.CreationData = &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionFromImage),
				ImageReference: &armcompute.ImageDiskReference{ID: to.Ptr(imageID)}}
		}
		c.Disks[key(rg, name)] = d
		return &armcompute.OSDisk{Name: to.Ptr(name), OSType: to.Ptr(armcompute.OperatingSystemTypesLinux), DiskSizeGB: to.Ptr[int32](32),
			ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(id)}}
	}
	addVM := func(name string, img *armcompute.ImageReference, osd *armcompute.OSDisk, data ...*armcompute.DataDisk) {
		c.VMs[key(rg, name)] = &armcompute.VirtualMachine{ID: to.Ptr(resID("Microsoft.Compute/virtualMachines", name)), Name: to.Ptr(name), Location: to.Ptr(region),
			Properties: &armcompute.VirtualMachineProperties{StorageProfile: &armcompute.StorageProfile{ImageReference: img, OSDisk: osd, DataDisks: data}}}
	}
	dual := osDisk("dual", "dual-os", false, "")
	dual.EncryptionSettings = &armcompute.DiskEncryptionSettings{Enabled: to.Ptr(true),
		DiskEncryptionKey: &armcompute.KeyVaultSecretReference{SecretURL: to.Ptr(vault + "/secrets/dual/1"), SourceVault: &armcompute.SubResource{ID: to.Ptr("/x")}}}
	dualData := resID("Microsoft.Compute/disks", "dual-data")
	c.Disks[key(rg, "dual-data")] = &armcompute.Disk{ID: to.Ptr(dualData), Name: to.Ptr("dual-data"), Location: to.Ptr(region),
		ManagedBy: to.Ptr(resID("Microsoft.Compute/virtualMachines", "dual")), Properties: &armcompute.DiskProperties{DiskSizeGB: to.Ptr[int32](64)}}
	addVM("dual", &armcompute.ImageReference{Publisher: to.Ptr("OpenLogic"), Offer: to.Ptr("CentOS"), SKU: to.Ptr("7_9")}, dual,
		&armcompute.DataDisk{Lun: to.Ptr[int32](0), Name: to.Ptr("dual-data"), DiskSizeGB: to.Ptr[int32](64), ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(dualData)}})
	addVM("from-disk", &armcompute.ImageReference{ID: to.Ptr("/subscriptions/" + sub + "/resourceGroups/img/providers/Microsoft.Compute/images/golden")},
		osDisk("from-disk", "from-disk-os", true, "/Subscriptions/"+sub+"/Providers/Microsoft.Compute/Locations/westeurope/Publishers/Oracle/ArtifactTypes/VMImage/Offers/Oracle-Linux/Skus/ol89-lvm-gen2/Versions/8.9.1"))
	addVM("gallery", &armcompute.ImageReference{ID: to.Ptr("/subscriptions/" + sub + "/resourceGroups/img/providers/Microsoft.Compute/galleries/g/images/rhel/versions/1.0.0")},
		osDisk("gallery", "gallery-os", true, ""))
	addVM("unmanaged", &armcompute.ImageReference{Publisher: to.Ptr("RedHat"), Offer: to.Ptr("RHEL"), SKU: to.Ptr("8")}, osDisk("unmanaged", "unmanaged-os", true, ""),
		&armcompute.DataDisk{Lun: to.Ptr[int32](2), Name: to.Ptr("blob"), Vhd: &armcompute.VirtualHardDisk{URI: to.Ptr("https://acct.blob.core.windows.net/vhds/blob.vhd")}})
	addVM("nothing", &armcompute.ImageReference{Publisher: to.Ptr("RedHat"), Offer: to.Ptr("RHEL"), SKU: to.Ptr("8")}, osDisk("nothing", "nothing-os", false, ""))

	inv, err := c.client().Inventory(context.Background(), InventoryOptions{Subscriptions: []string{sub}})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.VMs) != 4 || vmByName(inv, "nothing") != nil {
		t.Fatalf("%d VMs", len(inv.VMs))
	}
	v := vmByName(inv, "dual")
	if d := v.Disks[0]; !v.ADE.DualPass || v.ADE.Extension != "" || v.VolumeType != "" || !d.ADE || d.ADEFrom != FromVM || d.KeyVaultURL != vault || !d.Convert ||
		v.OSFamily != OSFamilyCentOS || !v.Convertible || len(v.Notes) != 2 || v.PowerState != "deallocated" {
		t.Errorf("dual: %+v", *v)
	}
	// Its unstamped data disk is not known to be converted, but the run reads it: the estimate counts it.
	if len(v.Disks) != 2 || v.Disks[1].Convert || v.Estimate.Disks != 2 || v.Estimate.StagingBytes != (32+64)<<30 {
		t.Errorf("dual: disks %+v, estimate %+v; want the data disk not marked converted but counted", v.Disks, v.Estimate)
	}
	v = vmByName(inv, "from-disk")
	if v.OSFamily != OSFamilyOracle || v.Image.From != "OS disk creationData" || v.Image.SKU != "ol89-lvm-gen2" || v.Image.Version != "8.9.1" || !v.Convertible {
		t.Errorf("from-disk: %+v", *v)
	}
	v = vmByName(inv, "gallery")
	if v.OSFamily != OSFamilyUnknown || v.Convertible || !slices.Equal(blockerCodes(v), []string{BlockerUnsupportedOS}) || !strings.Contains(v.Blockers[0].Message, "galleries/g/images/rhel") {
		t.Errorf("gallery: %+v", *v)
	}
	v = vmByName(inv, "unmanaged")
	if v.Convertible || !slices.Equal(blockerCodes(v), []string{BlockerUnmanagedDisk}) || !strings.Contains(v.Blockers[0].Message, "LUN 2 (blob)") || len(v.Disks) != 1 {
		t.Errorf("unmanaged: %+v", *v)
	}
}

// TestInventoryOSNotEncrypted: `azure convert --vm` recovers the OS disk's ADE key before anything
// else and stops with exit 8 when the OS disk has none, so a VM whose OS disk carries no ADE
// settings is not convertible: ADE on data volumes only (VolumeType Data), or an ADE extension left
// on a VM whose encryption was disabled (no stamp at all). It is listed, blocked, and kept out of a
// fleet run.
func TestInventoryOSNotEncrypted(t *testing.T) {
	c := newCloud(t)
	rhel := &armcompute.ImageReference{Publisher: to.Ptr("RedHat"), Offer: to.Ptr("RHEL"), SKU: to.Ptr("8-lvm-gen2")}
	addVM := func(name string, stampedData bool, op, volumeType string) {
		vmID := resID("Microsoft.Compute/virtualMachines", name)
		osID, dataID := resID("Microsoft.Compute/disks", name+"-os"), resID("Microsoft.Compute/disks", name+"-data")
		c.Disks[key(rg, name+"-os")] = &armcompute.Disk{ID: to.Ptr(osID), Name: to.Ptr(name + "-os"), Location: to.Ptr(region), ManagedBy: to.Ptr(vmID),
			Properties: &armcompute.DiskProperties{DiskSizeGB: to.Ptr[int32](32), OSType: to.Ptr(armcompute.OperatingSystemTypesLinux)}}
		data := &armcompute.Disk{ID: to.Ptr(dataID), Name: to.Ptr(name + "-data"), Location: to.Ptr(region), ManagedBy: to.Ptr(vmID),
			Properties: &armcompute.DiskProperties{DiskSizeGB: to.Ptr[int32](64)}}
		if stampedData {
			data.Properties.EncryptionSettingsCollection = adeCollection(false)
		}
		c.Disks[key(rg, name+"-data")] = data
		c.VMs[key(rg, name)] = &armcompute.VirtualMachine{ID: to.Ptr(vmID), Name: to.Ptr(name), Location: to.Ptr(region),
			Properties: &armcompute.VirtualMachineProperties{StorageProfile: &armcompute.StorageProfile{ImageReference: rhel,
				OSDisk:    &armcompute.OSDisk{Name: to.Ptr(name + "-os"), OSType: to.Ptr(armcompute.OperatingSystemTypesLinux), ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(osID)}},
				DataDisks: []*armcompute.DataDisk{{Lun: to.Ptr[int32](0), Name: to.Ptr(name + "-data"), ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(dataID)}}}}},
			Resources: []*armcompute.VirtualMachineExtension{{ID: to.Ptr(vmID + "/extensions/AzureDiskEncryptionForLinux"), Name: to.Ptr("AzureDiskEncryptionForLinux"),
				Properties: &armcompute.VirtualMachineExtensionProperties{Publisher: to.Ptr("Microsoft.Azure.Security"), Type: to.Ptr("AzureDiskEncryptionForLinux"),
					TypeHandlerVersion: to.Ptr("1.1"), Settings: map[string]any{"EncryptionOperation": op, "VolumeType": volumeType}}}}}
	}
	addVM("data-only", true, "EnableEncryption", "Data")
	addVM("disabled", false, "DisableEncryption", "All")

	inv, err := c.client().Inventory(context.Background(), InventoryOptions{Subscriptions: []string{sub}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"data-only", "disabled"} {
		v := vmByName(inv, name)
		if v == nil {
			t.Fatalf("%s is not listed", name)
		}
		if v.Convertible || !slices.Equal(blockerCodes(v), []string{BlockerOSNotEncrypted}) || !strings.Contains(v.Blockers[0].Message, name+"-os") {
			t.Errorf("%s: convertible %v, blockers %+v; want blocked by %s", name, v.Convertible, v.Blockers, BlockerOSNotEncrypted)
		}
	}
	if s := inv.Summary; s.Convertible != 0 || s.Blocked != 2 || s.ConvertDisks != 0 {
		t.Errorf("summary %+v", s)
	}
}
