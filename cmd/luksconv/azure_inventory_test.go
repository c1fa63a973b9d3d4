package main

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/internal/azurefake"
)

const fakeOtherSub = "00000000-0000-0000-0000-0000000000bb"

// inventoryCloud installs azurefake's mixed ADE fleet (fakeSub and fakeOtherSub, and a VM in a third
// subscription), served by the Resource Graph fake in pages of 4 rows, as the CLI's Azure.
func inventoryCloud(t *testing.T) *azurefake.Cloud {
	cloud := azurefake.New(fakeSub)
	cloud.AddFleet(fakeOtherSub)
	cloud.GraphPageSize = 4
	old := azureClientHook
	azureClientHook = func() (azcore.TokenCredential, *azure.Options) {
		return &azfake.TokenCredential{}, &azure.Options{ARM: cloud.ARMOptions(), PollFrequency: time.Millisecond}
	}
	t.Cleanup(func() { azureClientHook = old })
	return cloud
}

// jsonKeys are the keys of a JSON object, sorted.
func jsonKeys(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sorted(s ...string) []string { slices.Sort(s); return s }

func TestAzureInventoryJSON(t *testing.T) {
	cloud := inventoryCloud(t)
	so, se, code := runCLI(t, "azure", "inventory", "--subscription", fakeSub, "--subscription", fakeOtherSub, "--json")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, se)
	}
	if strings.Contains(so+se, azurefake.FleetProtectedSecret) {
		t.Fatal("an extension's protected setting was printed")
	}
	// Every query was read page by page.
	cloud.Lock()
	queries := len(cloud.GraphQueries)
	cloud.Unlock()
	if queries != 3+3+5+1+1 {
		t.Errorf("%d Resource Graph requests, want 13 (pages of 4)", queries)
	}

	// The schema: the documented keys, every one present, nothing else.
	var doc struct {
		SchemaVersion   int               `json:"schema_version"`
		Truncated       bool              `json:"truncated"`
		VMs             []json.RawMessage `json:"vms"`
		UnattachedDisks []json.RawMessage `json:"unattached_disks"`
		Snapshots       []json.RawMessage `json:"snapshots"`
	}
	if err := json.Unmarshal([]byte(so), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, so)
	}
	if doc.SchemaVersion != 1 || doc.Truncated || len(doc.VMs) != 8 || len(doc.UnattachedDisks) != 1 || len(doc.Snapshots) != 1 {
		t.Fatalf("schema %d, truncated %v, %d VMs, %d unattached disks, %d snapshots", doc.SchemaVersion, doc.Truncated, len(doc.VMs), len(doc.UnattachedDisks), len(doc.Snapshots))
	}
	docs, err := os.ReadFile("../../docs/inventory.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := func(what string, keys []string) {
		for _, k := range keys {
			if !strings.Contains(string(docs), "`"+k+"`") {
				t.Errorf("docs/inventory.md does not document the %s field %q", what, k)
			}
		}
	}
	top := jsonKeys(t, json.RawMessage(so))
	if want := sorted("schema_version", "generated_at", "source", "cloud", "subscriptions", "truncated", "estimate_model", "summary", "vms", "unattached_disks", "snapshots", "scale_sets", "warnings"); !slices.Equal(top, want) {
		t.Errorf("top-level keys %q, want %q", top, want)
	}
	documented("top-level", top)
	vmKeys := jsonKeys(t, doc.VMs[0])
	if want := sorted("id", "name", "resource_group", "subscription", "location", "zones", "size", "power_state", "running", "os_type", "os_family", "image", "rhel_payg",
		"security_type", "volume_type", "ade", "disks", "blockers", "convertible", "notes", "estimate"); !slices.Equal(vmKeys, want) {
		t.Errorf("VM keys %q, want %q", vmKeys, want)
	}
	documented("VM", vmKeys)
	var vm0 struct {
		Disks    []json.RawMessage `json:"disks"`
		Estimate json.RawMessage   `json:"estimate"`
		Image    json.RawMessage   `json:"image"`
		ADE      json.RawMessage   `json:"ade"`
	}
	json.Unmarshal(doc.VMs[0], &vm0)
	diskKeys := jsonKeys(t, vm0.Disks[0])
	if want := sorted("id", "name", "resource_group", "subscription", "location", "role", "lun", "size_gib", "size_bytes", "sku", "state", "os_type", "ade", "ade_from",
		"ade_version", "key_vault_url", "secret_url", "kek_url", "des_id", "des_other_subscription", "convert", "managed_by"); !slices.Equal(diskKeys, want) {
		t.Errorf("disk keys %q, want %q", diskKeys, want)
	}
	documented("disk", diskKeys)
	documented("estimate", jsonKeys(t, vm0.Estimate))
	documented("image", jsonKeys(t, vm0.Image))
	documented("ade", jsonKeys(t, vm0.ADE))
	documented("snapshot", jsonKeys(t, doc.Snapshots[0]))
	var model struct {
		EstimateModel json.RawMessage `json:"estimate_model"`
		Summary       json.RawMessage `json:"summary"`
	}
	json.Unmarshal([]byte(so), &model)
	documented("estimate_model", jsonKeys(t, model.EstimateModel))
	documented("summary", jsonKeys(t, model.Summary))

	// One line per VM, as a fleet run takes them, each whole.
	for _, raw := range doc.VMs {
		var line bytes.Buffer
		if err := json.Compact(&line, raw); err != nil || bytes.ContainsRune(line.Bytes(), '\n') {
			t.Fatalf("VM line: %v", err)
		}
		var v azure.InventoryVM
		if err := json.Unmarshal(line.Bytes(), &v); err != nil || v.ID == "" || v.Subscription == "" || len(v.Disks) == 0 {
			t.Errorf("VM line %s: %v", line.Bytes(), err)
		}
	}

	var inv azure.Inventory
	if err := json.Unmarshal([]byte(so), &inv); err != nil {
		t.Fatal(err)
	}
	type row struct {
		power, family, security, volume string
		running, convertible            bool
		blockers                        string
		disks                           int
		staging, cutover                int64
	}
	got := map[string]row{}
	for _, v := range inv.VMs {
		var codes []string
		for _, b := range v.Blockers {
			codes = append(codes, b.Code)
		}
		got[v.Name] = row{v.PowerState, v.OSFamily, v.SecurityType, v.VolumeType, v.Running, v.Convertible, strings.Join(codes, ","), len(v.Disks), v.Estimate.StagingSeconds, v.Estimate.CutoverSeconds}
	}
	want := map[string]row{
		"rhel-os":    {"deallocated", "rhel", "Standard", "OS", false, true, "", 2, 1093, 611},
		"rhel-all":   {"running", "rhel", "Standard", "All", true, true, "", 3, 4370, 644},
		"rhel-data":  {"deallocated", "rhel", "Standard", "Data", false, false, azure.BlockerOSNotEncrypted, 3, 8739, 688},
		"rhel-tl":    {"deallocated", "rhel", "TrustedLaunch", "OS", false, true, "", 1, 1093, 611},
		"ubuntu-cvm": {"running", "ubuntu", "ConfidentialVM", "Data", true, false, azure.BlockerConfidentialVM + "," + azure.BlockerOSNotEncrypted, 2, 1093, 611},
		"rhel-des":   {"deallocated", "rhel", "Standard", "OS", false, false, azure.BlockerDESOtherSubscription, 1, 1093, 611},
		"win":        {"deallocated", "other", "Standard", "All", false, false, azure.BlockerUnsupportedOS, 1, 2168, 622},
		"ubuntu":     {"running", "ubuntu", "Standard", "All", true, true, "", 2, 3414, 635},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %+v\nwant %+v", name, got[name], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("VMs %v", got)
	}
	// The fake's RHEL VMs come from RedHat/RHEL without a plan or licenseType: pay-as-you-go.
	for _, v := range inv.VMs {
		if v.RHELPAYG != (v.OSFamily == "rhel") {
			t.Errorf("%s (%s, %+v): rhel_payg %v", v.Name, v.OSFamily, v.Image, v.RHELPAYG)
		}
	}
	if inv.Cloud != "AzureCloud" {
		t.Errorf("cloud %q, want AzureCloud", inv.Cloud)
	}
	d := inv.VMs[0].Disks // rhel-all
	if d[2].LUN == nil || *d[2].LUN != 1 || d[2].SizeGiB != 256 || !d[2].ADE || d[2].KeyVaultURL != azurefake.FleetVault || !strings.Contains(d[2].KEKURL, "/keys/") {
		t.Errorf("rhel-all LUN 1: %+v", d[2])
	}
	if s := inv.Snapshots[0]; s.SourceDiskName != "rhel-os-osdisk" || !strings.HasSuffix(s.SourceVMID, "/virtualMachines/rhel-os") {
		t.Errorf("snapshot %+v", s)
	}
	if u := inv.UnattachedDisks[0]; u.Name != "orphan-ade" || u.SizeGiB != 200 || !u.ADE {
		t.Errorf("unattached %+v", u)
	}
}

func TestAzureInventoryText(t *testing.T) {
	inventoryCloud(t)
	so, se, code := runCLI(t, "azure", "inventory", "--subscription", fakeSub+","+fakeOtherSub)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, se)
	}
	if n := strings.Count(so, "\nVM "); n != 8 {
		t.Errorf("%d VM blocks, want 8:\n%s", n, so)
	}
	rhelOS := "/subscriptions/" + fakeSub + "/resourceGroups/rg-fleet/providers/Microsoft.Compute/virtualMachines/rhel-os"
	block := so[strings.Index(so, "\nVM rhel-os "):]
	block = block[:strings.Index(block[1:], "\nVM ")+1]
	for _, w := range []string{
		"VM rhel-os (resource group rg-fleet, subscription " + fakeSub + ", westeurope)",
		"  id:        " + rhelOS,
		"  size:      Standard_D4s_v3, deallocated\n",
		"  OS:        Linux, rhel (RedHat RHEL 8-lvm-gen2, from imageReference)",
		"  security:  Standard",
		"  ADE:       AzureDiskEncryptionForLinux 1.1, volume type OS",
		"    OS     rhel-os-osdisk  64 GiB  yes  yes      " + azurefake.FleetVault + "  -",
		"    LUN 0  rhel-os-data0   32 GiB  no   no       -",
		"  blockers:  none",
		"  estimate:  staging ~18m (1 disk(s), 64 GiB at most), cutover ~10m",
	} {
		if !strings.Contains(block, w) {
			t.Errorf("the rhel-os block lacks %q:\n%s", w, block)
		}
	}
	for _, w := range []string{
		"  size:      Standard_D4s_v3, running (not a blocker: it can be staged from a snapshot, and is deallocated for the cutover)",
		"  estimate:  staging ~1h13m (3 disk(s), 448 GiB at most), cutover ~11m",
		"    confidential-vm: Confidential VM",
		"    des-other-subscription: disk rhel-des-osdisk is encrypted at rest by " + azurefake.FleetOtherDES(fakeOtherSub),
		"des-b (other subscription)",
		"    unsupported-os: Windows guest",
		"  note:      Trusted Launch: the new OS disk is created UploadPreparedSecure",
		"VM ubuntu (resource group rg-b, subscription " + fakeOtherSub + ", westeurope)",
		"Unattached ADE disks:\n  NAME        RESOURCE GROUP  SUBSCRIPTION                          SIZE     KEY VAULT",
		"  orphan-ade  rg-fleet        " + fakeSub + "  200 GiB  " + azurefake.FleetVault,
		"ADE snapshots:\n",
		"  rhel-os-snap  rg-fleet        " + fakeSub + "  64 GiB  rhel-os-osdisk",
		"Scale sets with ADE's extension in their model (not converted by luksconv):\n  rhel-flex (rg-fleet, " + fakeSub + "): Flexible, 3 instance(s)",
		"  rhel-vmss (rg-fleet, " + fakeSub + "): Uniform, 3 instance(s), AzureDiskEncryptionForLinux VolumeType All\n    Uniform: its instances cannot be re-created",
		"Summary: 8 ADE VM(s): 4 convertible, 4 blocked, 3 running; 7 disk(s), 806 GiB at most, to convert; 1 unattached ADE disk(s), 1 ADE snapshot(s), 2 ADE scale set(s)",
		"Estimates are estimates: staging = the converted disks' sizes, an upper bound of the data in use",
		"cutover = deallocate (3 min) + incremental snapshots",
	} {
		if !strings.Contains(so, w) {
			t.Errorf("the output lacks %q:\n%s", w, so)
		}
	}
	for _, no := range []string{"VM plain ", "VM elsewhere ", "orphan-plain", "plain-snap", "plain-vmss", azurefake.FleetProtectedSecret} {
		if strings.Contains(so+se, no) {
			t.Errorf("the output holds %q:\n%s", no, so)
		}
	}
	if se != "" {
		t.Errorf("standard error: %s", se)
	}
}

// TestAzureInventoryTruncated: the inventory is printed, marked incomplete, and the exit code is 1.
func TestAzureInventoryTruncated(t *testing.T) {
	cloud := inventoryCloud(t)
	cloud.GraphTruncated = "microsoft.compute/virtualmachines"
	so, se, code := runCLI(t, "azure", "inventory", "--subscription", fakeSub, "--subscription", fakeOtherSub, "--json")
	if code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	var inv azure.Inventory
	if err := json.Unmarshal([]byte(so), &inv); err != nil {
		t.Fatalf("%v:\n%s", err, so)
	}
	if !inv.Truncated || len(inv.VMs) != 3 || !strings.Contains(inv.Warnings[0], "truncated the result of the query for virtual machines") {
		t.Errorf("truncated %v, %d VMs, warnings %q", inv.Truncated, len(inv.VMs), inv.Warnings)
	}
	for _, w := range []string{"luksconv: warning: Resource Graph truncated the result of the query for virtual machines (4 rows of 9 read)",
		"luksconv: azure: Resource Graph truncated a result: the inventory is incomplete", "hint: list fewer subscriptions at a time with --subscription"} {
		if !strings.Contains(se, w) {
			t.Errorf("standard error lacks %q:\n%s", w, se)
		}
	}
	so, _, code = runCLI(t, "azure", "inventory", "--subscription", fakeSub)
	if code != exitFailure || !strings.Contains(so, "INCOMPLETE: Resource Graph truncated a result") {
		t.Errorf("text: exit %d:\n%s", code, so)
	}
}

func TestAzureInventoryErrors(t *testing.T) {
	cloud := inventoryCloud(t)
	for _, args := range [][]string{
		{"--subscription", "not-a-subscription"},
		{"--subscription", "/subscriptions/" + fakeSub},
		{"--parallel", "0"},
		{"extra"},
		{"--cloud", "Mars"},
	} {
		if _, se, code := runCLI(t, append([]string{"azure", "inventory"}, args...)...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d: %s", args, code, exitUsage, se)
		}
	}
	cloud.Lock()
	n := len(cloud.GraphQueries)
	cloud.GraphFail = "AuthorizationFailed"
	cloud.Unlock()
	if n != 0 {
		t.Errorf("usage errors queried Resource Graph %d times", n)
	}
	so, se, code := runCLI(t, "azure", "inventory", "--json")
	if code != exitFailure || so != "" || !strings.Contains(se, "luksconv: azure: query Azure Resource Graph for ADE disks: HTTP 403 AuthorizationFailed") {
		t.Errorf("refused query: exit %d:\n%s%s", code, so, se)
	}
}
