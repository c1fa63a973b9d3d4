package azure

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resourcegraph/armresourcegraph"
)

// Inventory of a fleet: every ADE-stamped VM, disk and snapshot in some subscriptions, read from
// Azure Resource Graph (armresourcegraph v0.10.0, API 2024-04-01) in four queries, one per
// resource type, joined here rather than in KQL:
//
//   - disks whose encryptionSettingsCollection is enabled and lists settings (single-pass ADE
//     stamps every disk it encrypts there, encryptionSettingsVersion "1.1"; "1.0" with an Entra
//     application);
//   - snapshots stamped the same way (the platform copies the stamp from the disk);
//   - VM extensions of publisher Microsoft.Azure.Security whose type starts with
//     AzureDiskEncryption (AzureDiskEncryptionForLinux; AzureDiskEncryption is Windows'), whose
//     public settings say the VolumeType (OS, Data or All);
//   - the VMs, all of them: a VM is in the inventory when it has an ADE extension, a stamped disk,
//     or dual-pass settings on its OS disk in the VM model. Resource Graph also gives a VM's power
//     state (properties.extended.instanceView.powerState.code).
//
// Each query is paged with $skipToken (1000 rows a page) and repeated with the same text and
// scope for every page; a page that says resultTruncated makes the inventory Truncated. The where
// clauses are the ADE stamps; every row is tested again here with the same predicates as the rest
// of the package, so a query answered too widely adds nothing.

// InventorySchemaVersion is the schema_version of an Inventory's JSON (docs/inventory.md). It
// changes when a field is removed or changes meaning; fields may be added without a change.
const InventorySchemaVersion = 1

// The time estimates. They are estimates: the rates are Azure's usual ones, not measured here.
const (
	// StageRate is the rate of a direct upload into one managed disk, in bytes per second:
	// about 60 MiB/s per disk whatever its size, so disks go in parallel.
	StageRate = 60 << 20
	// DefaultInventoryParallel is how many disks of a VM are staged at the same time.
	DefaultInventoryParallel = 4
	// CutoverChangedPercent is the share of each converted disk assumed to change between the
	// staging pass and the cutover.
	CutoverChangedPercent = 1
	// CutoverDeallocate, CutoverSnapshot and CutoverRecreate are the fixed steps of the cutover:
	// deallocating the VM, taking the incremental snapshots of its converted disks (together),
	// and deleting and re-creating the VM around the new disks.
	CutoverDeallocate = 3 * time.Minute
	CutoverSnapshot   = 2 * time.Minute // all the converted disks' snapshots, taken together
	CutoverRecreate   = 5 * time.Minute // deleting the VM and creating it again
)

// CutoverFormula is the cutover estimate, as the inventory computes it (inventoryEstimate) and
// reports it: the VM is down from the deallocation to the re-created VM's start. The staging
// estimate is the converted disks' sizes (an upper bound of the data in use, which the control
// plane does not know) at StageRate per disk, DefaultInventoryParallel (--parallel) disks at a
// time, the largest first.
const CutoverFormula = "cutover = deallocate (3 min) + incremental snapshots of the converted disks (2 min) + " +
	"changed data (1% of each converted disk, at 60 MiB/s per disk, --parallel disks at a time) + VM re-creation (5 min)"

// MeasuredCutoverFormula is the downtime estimate of one disk staged with `azure convert --stage`,
// as `azure convert --dry-run --cutover` prints it: the same fixed steps as CutoverFormula, plus the
// plan of the final snapshot (key derivation, guest edits) as long as the last round's, and the
// changed data is measured rather than assumed. The change rate is the bytes the stage rounds after
// the first wrote, per hour between each round's snapshot and the one before it; after a single
// round there is no rate, and no estimate.
const MeasuredCutoverFormula = "cutover = deallocate (3 min) + incremental snapshot (2 min) + " +
	"plan of the final snapshot (as long as the last stage round's) + " +
	"changed data (bytes the later stage rounds wrote per hour between their snapshots, times the hours since the last snapshot, at 60 MiB/s) + " +
	"VM re-creation (5 min, with --recreate-vm) + the data in use read back (at 60 MiB/s, with --verify)"

// MeasuredVMCutoverFormula is MeasuredCutoverFormula for a whole VM staged with `azure convert --vm
// --stage`: each disk's changed data is measured by its own rounds, and the disks go --parallel at a
// time.
const MeasuredVMCutoverFormula = "cutover = deallocate (3 min) + incremental snapshots (2 min) + " +
	"plan of the final snapshots (as long as the last stage round's) + " +
	"changed data (for each disk, bytes its later stage rounds wrote per hour between their snapshots, times the hours since its last snapshot; " +
	"at 60 MiB/s per disk, --parallel disks at a time) + VM re-creation (5 min, with --recreate-vm) + " +
	"the data in use read back (every disk's, one after the other, at 60 MiB/s, with --verify)"

// StagingBasis says what the staging estimate is based on.
const StagingBasis = "the converted disks' sizes, an upper bound of the data in use (not known to Azure's control plane), " +
	"at 60 MiB/s per disk, --parallel disks at a time"

// Blocker codes: a VM with a blocker is not converted by a fleet run.
const (
	// BlockerConfidentialVM: a Confidential VM, whose OS disk needs VM metadata and secure key
	// settings luksconv does not upload.
	BlockerConfidentialVM = "confidential-vm"
	// BlockerDESOtherSubscription: a disk of the VM is encrypted at rest by a Disk Encryption Set
	// of another subscription; a new disk's DES must be in its own subscription.
	BlockerDESOtherSubscription = "des-other-subscription"
	// BlockerUnsupportedOS: the guest is not RHEL, CentOS, Oracle Linux or Ubuntu (Windows, another
	// distribution, or an image that does not say).
	BlockerUnsupportedOS = "unsupported-os"
	// BlockerUnmanagedDisk: a disk of the VM is a page blob, not a managed disk.
	BlockerUnmanagedDisk = "unmanaged-disk"
	// BlockerOSNotEncrypted: the VM's OS disk carries no ADE settings (ADE on data volumes only,
	// or an extension left after the encryption was disabled). A whole-VM run starts from the OS
	// disk's key, and stops without one.
	BlockerOSNotEncrypted = "os-not-encrypted"
)

// OS families of InventoryVM.OSFamily.
const (
	OSFamilyRHEL    = "rhel"    // Red Hat Enterprise Linux
	OSFamilyCentOS  = "centos"  // CentOS
	OSFamilyOracle  = "oracle"  // Oracle Linux
	OSFamilyUbuntu  = "ubuntu"  // Ubuntu
	OSFamilyOther   = "other"   // another image: Windows, SUSE, Debian, …
	OSFamilyUnknown = "unknown" // no marketplace image recorded (custom or gallery image, attached disk)
)

// Inventory is the ADE estate of some subscriptions. It marshals to the JSON that a fleet run
// reads (docs/inventory.md): one line per VM is `jq -c '.vms[]'`.
type Inventory struct {
	SchemaVersion int       `json:"schema_version"` // InventorySchemaVersion
	GeneratedAt   time.Time `json:"generated_at"`   // when the inventory was read, in UTC
	// Source is where the inventory was read: "Azure Resource Graph".
	Source string `json:"source"`
	// Cloud is the Azure cloud it was read in, as `az cloud list` names it (AzureCloud,
	// AzureChinaCloud, AzureUSGovernment); the caller sets it ("" when unknown: AzureCloud).
	Cloud string `json:"cloud"`
	// Subscriptions are the subscriptions queried; empty means every subscription the credential
	// can read (Resource Graph's tenant scope).
	Subscriptions []string `json:"subscriptions"`
	// Truncated: Resource Graph truncated a result; the inventory is incomplete (Warnings say which).
	Truncated bool `json:"truncated"`
	// EstimateModel says how every VM's Estimate is computed.
	EstimateModel InventoryEstimateModel `json:"estimate_model"`
	// Summary counts the VMs, disks and snapshots listed.
	Summary InventorySummary `json:"summary"`
	// VMs are the ADE VMs, by subscription, resource group and name.
	VMs []InventoryVM `json:"vms"`
	// UnattachedDisks are the ADE-stamped disks attached to no VM.
	UnattachedDisks []InventoryDisk `json:"unattached_disks"`
	// Snapshots are the ADE-stamped snapshots.
	Snapshots []InventorySnapshot `json:"snapshots"`
	// ScaleSets are the scale sets whose model carries the ADE extension: luksconv does not convert
	// them (a Flexible one's VMs are under VMs).
	ScaleSets []InventoryScaleSet `json:"scale_sets"`
	// Warnings report what the inventory may lack: a truncated query, a stamped disk whose VM was
	// not returned.
	Warnings []string `json:"warnings"`
}

// InventoryEstimateModel holds the constants of the estimates.
type InventoryEstimateModel struct {
	Label              string `json:"label"`                // "estimate"
	StageRateMiBPerSec int    `json:"stage_rate_mib_per_s"` // StageRate, in MiB/s per disk
	Parallel           int    `json:"parallel"`             // disks of a VM staged at a time
	StagingBasis       string `json:"staging_basis"`        // StagingBasis
	CutoverFormula     string `json:"cutover_formula"`      // CutoverFormula
	// ChangedFraction is the share of each converted disk assumed changed at the cutover
	// (CutoverChangedPercent/100).
	ChangedFraction   float64 `json:"changed_fraction"`
	DeallocateSeconds int64   `json:"deallocate_seconds"` // CutoverDeallocate
	SnapshotSeconds   int64   `json:"snapshot_seconds"`   // CutoverSnapshot
	RecreateSeconds   int64   `json:"recreate_seconds"`   // CutoverRecreate
	// SizesAreUpperBounds is always true: disk sizes stand for the data in use, which Azure's
	// control plane does not know.
	SizesAreUpperBounds bool `json:"sizes_are_upper_bounds"`
}

// InventorySummary counts the inventory.
type InventorySummary struct {
	VMs             int   `json:"vms"`              // VMs listed
	Convertible     int   `json:"convertible"`      // VMs without blockers
	Blocked         int   `json:"blocked"`          // VMs with blockers
	Running         int   `json:"running"`          // VMs running (InventoryVM.Running)
	ConvertDisks    int   `json:"convert_disks"`    // disks the convertible VMs convert
	ConvertBytes    int64 `json:"convert_bytes"`    // their sizes added up, in bytes (an upper bound)
	UnattachedDisks int   `json:"unattached_disks"` // len(Inventory.UnattachedDisks)
	Snapshots       int   `json:"snapshots"`        // len(Inventory.Snapshots)
	ScaleSets       int   `json:"scale_sets"`       // len(Inventory.ScaleSets)
}

// InventoryScaleSet is a virtual machine scale set whose model carries the ADE extension.
type InventoryScaleSet struct {
	ID            string `json:"id"`             // the scale set's resource ID
	Name          string `json:"name"`           // its name
	ResourceGroup string `json:"resource_group"` // from ID
	Subscription  string `json:"subscription"`   // from ID
	Location      string `json:"location"`       // its region
	// OrchestrationMode is Uniform or Flexible ("" when Azure reports none: Uniform).
	OrchestrationMode string `json:"orchestration_mode"`
	Capacity          int64  `json:"capacity"`    // sku.capacity: the instances it runs
	Extension         string `json:"extension"`   // the ADE extension's type
	VolumeType        string `json:"volume_type"` // its VolumeType setting (OS, Data, All)
	Note              string `json:"note"`        // why luksconv does not convert it, and what to do
}

// InventoryVM is one ADE-stamped VM: what a fleet run converts with `azure convert --vm ID`.
type InventoryVM struct {
	ID            string   `json:"id"`             // the VM's resource ID
	Name          string   `json:"name"`           // the VM's name
	ResourceGroup string   `json:"resource_group"` // the VM's resource group
	Subscription  string   `json:"subscription"`   // the VM's subscription ID
	Location      string   `json:"location"`       // the VM's region
	Zones         []string `json:"zones"`          // the VM's availability zones
	Size          string   `json:"size"`           // the VM size, e.g. Standard_D4s_v3
	// PowerState is the code after "PowerState/" ("running", "deallocated", "stopped", …), or
	// "unknown". Running is not a blocker: a staging pass can read a snapshot of the running VM,
	// which is deallocated for the cutover.
	PowerState string `json:"power_state"`
	Running    bool   `json:"running"` // PowerState is "running" or "starting"
	// OSType is the OS disk's osType (Linux, Windows); OSFamily is read from Image: one of
	// rhel, centos, oracle, ubuntu, other, unknown.
	OSType   string `json:"os_type"`
	OSFamily string `json:"os_family"` // an OSFamily constant
	// Image is the image the VM was made from.
	Image InventoryImage `json:"image"`
	// RHELPAYG: the VM runs Red Hat's pay-as-you-go image (publisher RedHat, no marketplace plan, no
	// BYOS offer, no licenseType): re-created on an upload disk it needs azure convert's --license.
	RHELPAYG bool `json:"rhel_payg"`
	// SecurityType is the VM's securityProfile.securityType: Standard, TrustedLaunch or ConfidentialVM.
	SecurityType string `json:"security_type"`
	// VolumeType is the ADE extension's VolumeType setting (OS, Data, All), "" without an extension.
	VolumeType string `json:"volume_type"`
	// ADE is the VM's ADE extension and where its settings are.
	ADE InventoryADE `json:"ade"`
	// Disks are the VM's disks, the OS disk first, then the data disks by LUN.
	Disks []InventoryDisk `json:"disks"`
	// Blockers say why the VM is not converted; empty if nothing stops it.
	Blockers []InventoryBlocker `json:"blockers"`
	// Convertible: no blocker.
	Convertible bool `json:"convertible"`
	// Notes are facts that do not block the conversion: running, Trusted Launch, dual pass, no
	// extension.
	Notes []string `json:"notes"`
	// Estimate is the VM's staging and cutover estimate.
	Estimate InventoryEstimate `json:"estimate"`
}

// InventoryImage is the marketplace image a VM was made from.
type InventoryImage struct {
	Publisher string `json:"publisher"` // marketplace publisher, e.g. RedHat, Canonical
	Offer     string `json:"offer"`     // e.g. RHEL, 0001-com-ubuntu-server-jammy
	SKU       string `json:"sku"`       // e.g. 8-lvm-gen2
	Version   string `json:"version"`   // the exact version when Azure reports it, else the requested one ("latest")
	// ID is a custom or gallery image's resource ID.
	ID string `json:"id"`
	// From says where it was read: "imageReference", "plan", "OS disk creationData", or "" (none).
	From string `json:"from"`
}

// InventoryADE is the VM's ADE extension and where its settings are.
type InventoryADE struct {
	// Extension is the extension's type (AzureDiskEncryptionForLinux, AzureDiskEncryption), "" if none.
	Extension        string `json:"extension"`
	ExtensionVersion string `json:"extension_version"` // its typeHandlerVersion
	// KeyVaultURL and KEKURL are the extension's public settings (KeyVaultURL, KeyEncryptionKeyURL).
	KeyVaultURL string `json:"key_vault_url"`
	KEKURL      string `json:"kek_url"` // "" without a KEK
	// DualPass: the OS disk's settings are on the VM model (ADE 0.x with an Entra application).
	DualPass bool `json:"dual_pass"`
}

// InventoryDisk is a managed disk: one of a VM's, or an unattached one.
type InventoryDisk struct {
	ID            string `json:"id"`             // the disk's resource ID
	Name          string `json:"name"`           // the disk's name
	ResourceGroup string `json:"resource_group"` // the disk's resource group (may differ from the VM's)
	Subscription  string `json:"subscription"`   // the disk's subscription ID
	Location      string `json:"location"`       // the disk's region
	// Role is "os", "data" or "unattached"; LUN is the data disk's LUN (null otherwise).
	Role string `json:"role"`
	LUN  *int   `json:"lun"` // nil for the OS disk and unattached disks
	// SizeGiB and SizeBytes are the disk's size (for a disk without ADE settings: the VM model's
	// diskSizeGB; SizeBytes then SizeGiB × 2^30).
	SizeGiB   int64  `json:"size_gib"`
	SizeBytes int64  `json:"size_bytes"` // see SizeGiB
	SKU       string `json:"sku"`        // storage type, e.g. Premium_LRS
	// State is the diskState (Attached, Reserved, Unattached, …); "" for a disk without ADE
	// settings, which is not queried.
	State  string `json:"state"`
	OSType string `json:"os_type"` // the disk's osType (OS disks)
	// ADE: the disk carries ADE settings (ADEFrom "disk": its encryptionSettingsCollection, with
	// ADEVersion its encryptionSettingsVersion; "vm": the VM model's OS disk settings, dual pass).
	ADE        bool   `json:"ade"`
	ADEFrom    string `json:"ade_from"`    // "disk" or "vm"; "" without ADE settings
	ADEVersion string `json:"ade_version"` // "1.1" single pass, "1.0" with an Entra application
	// KeyVaultURL is the vault of the disk's secret (https://NAME.vault.azure.net), SecretURL the
	// secret (a reference, not the key), KEKURL the key that wraps it ("" for a plain BEK).
	KeyVaultURL string `json:"key_vault_url"`
	SecretURL   string `json:"secret_url"` // see KeyVaultURL
	KEKURL      string `json:"kek_url"`    // see KeyVaultURL
	// DESID is the Disk Encryption Set that encrypts the disk at rest, "" for a platform key;
	// DESOtherSubscription: it is in another subscription than the disk.
	DESID                string `json:"des_id"`
	DESOtherSubscription bool   `json:"des_other_subscription"` // a blocker (BlockerDESOtherSubscription)
	// Convert: `azure convert --vm` converts this disk (it carries ADE settings, or is the OS disk,
	// whose guest is edited). False for unattached disks, and for a dual-pass VM's data disks, which
	// carry no settings: the run converts those the OS disk names (crypttab, azure_crypt_mount) or
	// that hold a LUKS volume, which only their content tells (the VM's notes say so).
	Convert bool `json:"convert"`
	// ManagedBy is the VM the disk is attached to.
	ManagedBy string `json:"managed_by"`
}

// InventorySnapshot is an ADE-stamped snapshot.
type InventorySnapshot struct {
	ID            string `json:"id"`             // the snapshot's resource ID
	Name          string `json:"name"`           // the snapshot's name
	ResourceGroup string `json:"resource_group"` // the snapshot's resource group
	Subscription  string `json:"subscription"`   // the snapshot's subscription ID
	Location      string `json:"location"`       // the snapshot's region
	SizeGiB       int64  `json:"size_gib"`       // size in GiB (2^30 bytes), rounded up
	SizeBytes     int64  `json:"size_bytes"`     // size in bytes
	OSType        string `json:"os_type"`        // the snapshot's osType
	Incremental   bool   `json:"incremental"`    // an incremental snapshot
	// TimeCreated is when the snapshot was taken (null if Azure reports none).
	TimeCreated *time.Time `json:"time_created"`
	// SourceDiskID is the disk it was taken of (creationData.sourceResourceId); SourceVMID that
	// disk's VM when the disk is in the inventory.
	SourceDiskID   string `json:"source_disk_id"`
	SourceDiskName string `json:"source_disk_name"` // the last element of SourceDiskID
	SourceVMID     string `json:"source_vm_id"`     // "" when the disk is not in the inventory
	// ADEVersion, KeyVaultURL, SecretURL and KEKURL are the ADE settings, as InventoryDisk's.
	ADEVersion  string `json:"ade_version"`
	KeyVaultURL string `json:"key_vault_url"` // the vault of the snapshot's secret
	SecretURL   string `json:"secret_url"`    // the Key Vault secret holding the key (a reference)
	KEKURL      string `json:"kek_url"`       // the key that wraps it, "" for a plain BEK
}

// InventoryBlocker is why a VM is not converted: Code is one of the Blocker constants.
type InventoryBlocker struct {
	Code    string `json:"code"`    // a Blocker constant
	Message string `json:"message"` // what and why, naming the disk or image
}

// InventoryEstimate is a VM's estimate (Label "estimate"; see InventoryEstimateModel).
type InventoryEstimate struct {
	Label string `json:"label"` // "estimate"
	// Disks are the disks converted (Convert; on a dual-pass VM every data disk too, since any may
	// be), StagingBytes their sizes added up: an upper bound of the data the staging pass moves.
	Disks          int   `json:"disks"`
	StagingBytes   int64 `json:"staging_bytes"`   // see Disks
	StagingSeconds int64 `json:"staging_seconds"` // estimated staging time, in seconds
	// CutoverBytes is the changed data assumed (CutoverChangedPercent of each converted disk).
	CutoverBytes   int64 `json:"cutover_bytes"`
	CutoverSeconds int64 `json:"cutover_seconds"` // estimated cutover (downtime), in seconds
	Parallel       int   `json:"parallel"`        // disks staged at a time
}

// InventoryOptions configure Inventory.
type InventoryOptions struct {
	// Subscriptions to list; empty: every subscription the credential can read.
	Subscriptions []string
	// Parallel is how many disks of a VM the estimate stages at a time (0: DefaultInventoryParallel).
	Parallel int
}

// The Resource Graph queries of the inventory. Each projects what armcompute's models read (so a
// row decodes into armcompute.Disk, Snapshot, VirtualMachine or VirtualMachineExtension) and the
// subscriptionId and resourceGroup columns.
const (
	inventoryDisksQuery = `Resources
| where type =~ 'microsoft.compute/disks'
| where tobool(properties.encryptionSettingsCollection.enabled) == true and array_length(properties.encryptionSettingsCollection.encryptionSettings) > 0
| project id, name, type, location, zones, sku, managedBy, tags, subscriptionId, resourceGroup, properties`
	inventorySnapshotsQuery = `Resources
| where type =~ 'microsoft.compute/snapshots'
| where tobool(properties.encryptionSettingsCollection.enabled) == true and array_length(properties.encryptionSettingsCollection.encryptionSettings) > 0
| project id, name, type, location, sku, tags, subscriptionId, resourceGroup, properties`
	inventoryExtensionsQuery = `Resources
| where type =~ 'microsoft.compute/virtualmachines/extensions'
| where tostring(properties.publisher) =~ 'Microsoft.Azure.Security' and tostring(properties.type) startswith 'AzureDiskEncryption'
| project id, name, type, location, subscriptionId, resourceGroup, properties`
	inventoryVMsQuery = `Resources
| where type =~ 'microsoft.compute/virtualmachines'
| project id, name, type, location, zones, plan, tags, subscriptionId, resourceGroup, properties`
	inventoryScaleSetsQuery = `Resources
| where type =~ 'microsoft.compute/virtualmachinescalesets'
| where tostring(properties.virtualMachineProfile.extensionProfile.extensions) contains 'AzureDiskEncryption'
| project id, name, type, location, sku, subscriptionId, resourceGroup, properties`
)

// graphPageSize is the $top of every page: Resource Graph's maximum.
const graphPageSize = 1000

// graphVMPageSize is the $top of the VMs query's pages: it returns every VM of the scope with its
// whole properties (several KB each, more with many data disks, tags or SSH keys), and Resource Graph
// refuses a response over 16 MiB (ResponsePayloadTooLarge), which 1000 such rows can reach.
const graphVMPageSize = 200

// maxGraphPages bounds the pages of one query (a million rows), against a service that hands out
// tokens without end.
const maxGraphPages = 1000

// graphSubscriptions is how many subscriptions one Resource Graph request names at most: its REST
// API limits the list (Microsoft's troubleshooting guide asks for batches under 1000), so a longer
// --subscription list is queried in batches, each paged, the rows put together.
var graphSubscriptions = 1000

// Inventory lists every ADE-stamped VM, disk and snapshot of the subscriptions through Azure
// Resource Graph, with each VM's blockers and time estimates. Nothing is changed. When Resource
// Graph truncates a result the inventory is returned with Truncated set and a warning, not an
// error: the caller decides whether an incomplete inventory will do.
func (c *Client) Inventory(ctx context.Context, opts InventoryOptions) (*Inventory, error) {
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = DefaultInventoryParallel
	}
	gc, err := armresourcegraph.NewClient(c.cred, c.opts.ARM)
	if err != nil {
		return nil, opError("create Resource Graph client", "", err)
	}
	inv := &Inventory{
		SchemaVersion: InventorySchemaVersion,
		GeneratedAt:   time.Now().UTC().Truncate(time.Second),
		Source:        "Azure Resource Graph",
		Subscriptions: []string{},
		EstimateModel: InventoryEstimateModel{
			Label: "estimate", StageRateMiBPerSec: StageRate >> 20, Parallel: parallel, StagingBasis: StagingBasis, CutoverFormula: CutoverFormula,
			ChangedFraction: CutoverChangedPercent / 100.0, DeallocateSeconds: int64(CutoverDeallocate / time.Second),
			SnapshotSeconds: int64(CutoverSnapshot / time.Second), RecreateSeconds: int64(CutoverRecreate / time.Second), SizesAreUpperBounds: true,
		},
		VMs: []InventoryVM{}, UnattachedDisks: []InventoryDisk{}, Snapshots: []InventorySnapshot{}, ScaleSets: []InventoryScaleSet{}, Warnings: []string{},
	}
	for _, s := range opts.Subscriptions {
		s = strings.TrimSpace(s)
		if s != "" && !slices.ContainsFunc(inv.Subscriptions, func(t string) bool { return strings.EqualFold(s, t) }) {
			inv.Subscriptions = append(inv.Subscriptions, s)
		}
	}
	q := &graphQuery{client: gc, inv: inv}
	for _, s := range inv.Subscriptions {
		q.subs = append(q.subs, to.Ptr(s))
	}

	var diskRows, snapRows, extRows, vmRows, vmssRows []json.RawMessage
	for _, r := range []struct {
		what, query string
		top         int
		rows        *[]json.RawMessage
	}{
		{"ADE disks", inventoryDisksQuery, graphPageSize, &diskRows},
		{"ADE snapshots", inventorySnapshotsQuery, graphPageSize, &snapRows},
		{"ADE extensions", inventoryExtensionsQuery, graphPageSize, &extRows},
		{"virtual machines", inventoryVMsQuery, graphVMPageSize, &vmRows},
		{"ADE scale sets", inventoryScaleSetsQuery, graphPageSize, &vmssRows},
	} {
		if *r.rows, err = q.run(ctx, r.what, r.query, r.top); err != nil {
			return nil, err
		}
	}

	// Stamped disks, by lower-case ID.
	disks := map[string]*armcompute.Disk{}
	for _, raw := range diskRows {
		var d armcompute.Disk
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, newError("read Resource Graph row of", "", ErrState, "a disk: %v", err)
		}
		if d.Properties == nil || !adeStamped(d.Properties.EncryptionSettingsCollection) || str(d.ID) == "" {
			continue
		}
		disks[strings.ToLower(*d.ID)] = &d
	}
	// ADE extensions, by the lower-case ID of their VM.
	exts := map[string]*armcompute.VirtualMachineExtension{}
	for _, raw := range extRows {
		var e armcompute.VirtualMachineExtension
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, newError("read Resource Graph row of", "", ErrState, "a VM extension: %v", err)
		}
		id := strings.ToLower(str(e.ID))
		i := strings.Index(id, "/extensions/")
		if e.Properties == nil || i < 0 || !IsADEExtension(str(e.Properties.Publisher), str(e.Properties.Type)) {
			continue
		}
		if _, dup := exts[id[:i]]; !dup {
			exts[id[:i]] = &e
		}
	}

	attached := map[string]bool{} // disks (lower-case ID) listed under a VM
	for _, raw := range vmRows {
		var vm armcompute.VirtualMachine
		var ext struct {
			Properties struct {
				Extended struct {
					InstanceView struct {
						PowerState struct {
							Code string `json:"code"`
						} `json:"powerState"`
					} `json:"instanceView"`
				} `json:"extended"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(raw, &vm); err != nil {
			return nil, newError("read Resource Graph row of", "", ErrState, "a VM: %v", err)
		}
		if err := json.Unmarshal(raw, &ext); err != nil {
			return nil, newError("read Resource Graph row of", "", ErrState, "a VM: %v", err)
		}
		iv, ok := inventoryVM(&vm, exts[strings.ToLower(str(vm.ID))], disks, ext.Properties.Extended.InstanceView.PowerState.Code, parallel)
		if !ok {
			continue
		}
		for _, d := range iv.Disks {
			attached[strings.ToLower(d.ID)] = true
		}
		inv.VMs = append(inv.VMs, iv)
	}
	slices.SortFunc(inv.VMs, func(a, b InventoryVM) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a.Subscription), strings.ToLower(b.Subscription)),
			cmp.Compare(strings.ToLower(a.ResourceGroup), strings.ToLower(b.ResourceGroup)), cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)))
	})

	for _, k := range slices.Sorted(maps.Keys(disks)) {
		d := disks[k]
		if attached[k] {
			continue
		}
		if vm := str(d.ManagedBy); vm != "" {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("ADE disk %s is attached to %s, which is not in the inventory (outside the subscriptions queried, or not returned by Resource Graph)", str(d.ID), vm))
			continue
		}
		inv.UnattachedDisks = append(inv.UnattachedDisks, inventoryDisk(d, "unattached", nil))
	}

	for _, raw := range snapRows {
		var s armcompute.Snapshot
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, newError("read Resource Graph row of", "", ErrState, "a snapshot: %v", err)
		}
		p := s.Properties
		if p == nil || !adeStamped(p.EncryptionSettingsCollection) {
			continue
		}
		is := InventorySnapshot{ID: str(s.ID), Name: str(s.Name), Location: str(s.Location), Incremental: deref(p.Incremental), TimeCreated: p.TimeCreated}
		is.Subscription, is.ResourceGroup = idParts(is.ID)
		is.SizeBytes, is.SizeGiB = sizes(p.DiskSizeBytes, p.DiskSizeGB)
		if p.OSType != nil {
			is.OSType = string(*p.OSType)
		}
		if p.CreationData != nil {
			is.SourceDiskID = str(p.CreationData.SourceResourceID)
			if is.SourceDiskID != "" {
				is.SourceDiskName = is.SourceDiskID[strings.LastIndexByte(is.SourceDiskID, '/')+1:]
			}
			if d := disks[strings.ToLower(is.SourceDiskID)]; d != nil {
				is.SourceVMID = str(d.ManagedBy)
			}
		}
		k := firstKey(p.EncryptionSettingsCollection)
		is.ADEVersion, is.SecretURL, is.KEKURL, is.KeyVaultURL = k.Version, k.SecretURL, k.KEKURL, vaultOf(k.SecretURL)
		inv.Snapshots = append(inv.Snapshots, is)
	}
	slices.SortFunc(inv.Snapshots, func(a, b InventorySnapshot) int {
		return strings.Compare(strings.ToLower(a.ID), strings.ToLower(b.ID))
	})

	for _, raw := range vmssRows {
		var ss armcompute.VirtualMachineScaleSet
		if err := json.Unmarshal(raw, &ss); err != nil {
			return nil, newError("read Resource Graph row of", "", ErrState, "a scale set: %v", err)
		}
		if is, ok := inventoryScaleSet(&ss); ok {
			inv.ScaleSets = append(inv.ScaleSets, is)
		}
	}
	slices.SortFunc(inv.ScaleSets, func(a, b InventoryScaleSet) int {
		return strings.Compare(strings.ToLower(a.ID), strings.ToLower(b.ID))
	})

	s := &inv.Summary
	s.VMs, s.UnattachedDisks, s.Snapshots, s.ScaleSets = len(inv.VMs), len(inv.UnattachedDisks), len(inv.Snapshots), len(inv.ScaleSets)
	for _, vm := range inv.VMs {
		if vm.Convertible {
			s.Convertible++
			s.ConvertDisks += vm.Estimate.Disks
			s.ConvertBytes += vm.Estimate.StagingBytes
		} else {
			s.Blocked++
		}
		if vm.Running {
			s.Running++
		}
	}
	return inv, nil
}

// inventoryScaleSet is the entry of a scale set whose model carries the ADE extension (ok false when
// it carries none: the query's text match is loose).
func inventoryScaleSet(ss *armcompute.VirtualMachineScaleSet) (InventoryScaleSet, bool) {
	is := InventoryScaleSet{ID: str(ss.ID), Name: str(ss.Name), Location: str(ss.Location)}
	is.Subscription, is.ResourceGroup = idParts(is.ID)
	if ss.SKU != nil {
		is.Capacity = deref(ss.SKU.Capacity)
	}
	p := ss.Properties
	if p == nil {
		return is, false
	}
	is.OrchestrationMode = string(deref(p.OrchestrationMode))
	if vp := p.VirtualMachineProfile; vp != nil && vp.ExtensionProfile != nil {
		for _, e := range vp.ExtensionProfile.Extensions {
			if e != nil && e.Properties != nil && IsADEExtension(str(e.Properties.Publisher), str(e.Properties.Type)) {
				is.Extension, is.VolumeType = str(e.Properties.Type), volumeType(setting(e.Properties.Settings, "VolumeType"))
				break
			}
		}
	}
	if is.Extension == "" {
		return is, false
	}
	if strings.EqualFold(is.OrchestrationMode, string(armcompute.OrchestrationModeFlexible)) {
		is.Note = "Flexible: its VMs are listed under vms and converted one by one (re-creating a VM inside a scale set is untested); " +
			"remove the ADE extension from the scale set's model too, or new instances get ADE again"
	} else {
		is.Note = "Uniform: its instances cannot be re-created on converted disks one by one, and luksconv does not convert them; " +
			"give the scale set a model without the ADE extension and re-image or replace its instances"
	}
	return is, true
}

// graphQuery runs the inventory's queries in one scope.
type graphQuery struct {
	client   *armresourcegraph.Client
	subs     []*string
	inv      *Inventory
	limitHit bool // a response said x-ms-tenant-subscription-limit-hit (warned once)
}

// run returns every row of query, over every batch of graphSubscriptions subscriptions (or the
// tenant's scope), page by page. A truncated page marks the inventory.
func (q *graphQuery) run(ctx context.Context, what, query string, top int) ([]json.RawMessage, error) {
	if len(q.subs) <= graphSubscriptions {
		return q.runIn(ctx, what, query, top, q.subs)
	}
	var rows []json.RawMessage
	for batch := range slices.Chunk(q.subs, graphSubscriptions) {
		r, err := q.runIn(ctx, what, query, top, batch)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

// runIn returns every row of query in the subscriptions subs (nil: the tenant's scope), page by page,
// top rows a page.
func (q *graphQuery) runIn(ctx context.Context, what, query string, top int, subs []*string) ([]json.RawMessage, error) {
	op := "query Azure Resource Graph for " + what
	req := armresourcegraph.QueryRequest{
		Query:         to.Ptr(query),
		Subscriptions: subs,
		Options: &armresourcegraph.QueryRequestOptions{
			ResultFormat: to.Ptr(armresourcegraph.ResultFormatObjectArray),
			Top:          to.Ptr(int32(top)),
		},
	}
	var rows []json.RawMessage
	seen := map[string]bool{}
	for page := 1; ; page++ {
		var raw *http.Response
		r, err := q.client.Resources(runtime.WithCaptureResponse(ctx, &raw), req, nil)
		if err != nil {
			return nil, opError(op, "", err)
		}
		if raw != nil && strings.EqualFold(raw.Header.Get("x-ms-tenant-subscription-limit-hit"), "true") && !q.limitHit {
			// A tenant-scope query covers the first 10,000 subscriptions the principal sees, and
			// says so only in this header.
			q.limitHit, q.inv.Truncated = true, true
			q.inv.Warnings = append(q.inv.Warnings, "Resource Graph answered for only part of the subscriptions the credential can read (x-ms-tenant-subscription-limit-hit): "+
				"the inventory is incomplete; list the subscriptions with --subscription")
		}
		b, err := json.Marshal(r.Data)
		if err != nil {
			return nil, newError(op, "", ErrState, "page %d: %v", page, err)
		}
		var data []json.RawMessage
		if string(b) != "null" {
			if err := json.Unmarshal(b, &data); err != nil {
				return nil, newError(op, "", ErrState, "page %d: data is not an array of rows: %v", page, err)
			}
		}
		rows = append(rows, data...)
		if r.ResultTruncated != nil && *r.ResultTruncated == armresourcegraph.ResultTruncatedTrue {
			q.inv.Truncated = true
			total := ""
			if r.TotalRecords != nil {
				total = fmt.Sprintf(" of %d", *r.TotalRecords)
			}
			q.inv.Warnings = append(q.inv.Warnings, fmt.Sprintf("Resource Graph truncated the result of the query for %s (%d rows%s read): the inventory is incomplete", what, len(rows), total))
		}
		tok := str(r.SkipToken)
		if tok == "" {
			return rows, nil
		}
		if seen[tok] || page >= maxGraphPages {
			return nil, newError(op, "", ErrState, "Resource Graph paging does not end (page %d)", page)
		}
		seen[tok] = true
		req.Options.SkipToken = to.Ptr(tok)
	}
}

// adeStamped reports whether an encryptionSettingsCollection is ADE's stamp: enabled, with settings.
func adeStamped(col *armcompute.EncryptionSettingsCollection) bool {
	return col != nil && deref(col.Enabled) && len(col.EncryptionSettings) > 0
}

// firstKey is the first key reference of a stamped collection.
func firstKey(col *armcompute.EncryptionSettingsCollection) KeySource {
	if ks := fromCollection(col, "", ""); len(ks) > 0 {
		return ks[0]
	}
	return KeySource{}
}

// inventoryVM describes vm, or reports false when it carries no ADE stamp: no ADE extension (ext),
// no stamped disk (among disks), no dual-pass settings.
func inventoryVM(vm *armcompute.VirtualMachine, ext *armcompute.VirtualMachineExtension, disks map[string]*armcompute.Disk, powerCode string, parallel int) (InventoryVM, bool) {
	p := vm.Properties
	if p == nil || p.StorageProfile == nil {
		return InventoryVM{}, false
	}
	sp := p.StorageProfile
	v := InventoryVM{ID: str(vm.ID), Name: str(vm.Name), Location: str(vm.Location), Zones: []string{}, SecurityType: "Standard",
		PowerState: "unknown", Disks: []InventoryDisk{}, Blockers: []InventoryBlocker{}, Notes: []string{}}
	v.Subscription, v.ResourceGroup = idParts(v.ID)
	for _, z := range vm.Zones {
		if z != nil {
			v.Zones = append(v.Zones, *z)
		}
	}
	if p.HardwareProfile != nil && p.HardwareProfile.VMSize != nil {
		v.Size = string(*p.HardwareProfile.VMSize)
	}
	if code, ok := strings.CutPrefix(powerCode, "PowerState/"); ok && code != "" {
		v.PowerState = code
	}
	v.Running = v.PowerState == "running" || v.PowerState == "starting"
	if p.SecurityProfile != nil && p.SecurityProfile.SecurityType != nil && *p.SecurityProfile.SecurityType != "" {
		v.SecurityType = string(*p.SecurityProfile.SecurityType)
	}

	stamped := ext != nil
	var osDiskRow *armcompute.Disk
	osADE, osName := true, "" // an unmanaged OS disk is a blocker of its own
	if osd := sp.OSDisk; osd != nil {
		if osd.OSType != nil {
			v.OSType = string(*osd.OSType)
		}
		d, ok := v.addDisk("os", nil, str(osd.Name), osd.ManagedDisk, osd.DiskSizeGB, disks)
		if ok {
			if s := osd.EncryptionSettings; s != nil && deref(s.Enabled) {
				// Dual pass: the OS disk's key references are on the VM model.
				v.ADE.DualPass = true
				if !d.ADE {
					if ks := fromVMSettings(s, v.ID); len(ks) > 0 {
						d.ADE, d.ADEFrom, d.SecretURL, d.KEKURL, d.KeyVaultURL = true, FromVM, ks[0].SecretURL, ks[0].KEKURL, vaultOf(ks[0].SecretURL)
					}
				}
			}
			osDiskRow = disks[strings.ToLower(d.ID)]
			osADE, osName = d.ADE, d.Name
			if d.OSType == "" {
				d.OSType = v.OSType
			}
			d.Convert = true // the OS disk's guest is edited even when it holds no ADE volume
		}
	}
	for _, dd := range sp.DataDisks {
		if dd == nil {
			continue
		}
		lun := int(deref(dd.Lun))
		v.addDisk("data", &lun, str(dd.Name), dd.ManagedDisk, dd.DiskSizeGB, disks)
	}
	slices.SortStableFunc(v.Disks, func(a, b InventoryDisk) int {
		la, lb := -1, -1
		if a.LUN != nil {
			la = *a.LUN
		}
		if b.LUN != nil {
			lb = *b.LUN
		}
		return la - lb
	})
	for _, d := range v.Disks {
		stamped = stamped || d.ADE
	}
	if !stamped {
		return InventoryVM{}, false
	}

	if ext != nil && ext.Properties != nil {
		ep := ext.Properties
		v.ADE.Extension, v.ADE.ExtensionVersion = str(ep.Type), str(ep.TypeHandlerVersion)
		v.VolumeType = volumeType(setting(ep.Settings, "VolumeType"))
		v.ADE.KeyVaultURL = strings.TrimSuffix(setting(ep.Settings, "KeyVaultURL"), "/")
		v.ADE.KEKURL = setting(ep.Settings, "KeyEncryptionKeyURL")
	} else {
		v.Notes = append(v.Notes, "no ADE extension on the VM (ADE settings found on its disks): volume type unknown")
	}
	if v.ADE.DualPass {
		v.Notes = append(v.Notes, "dual-pass ADE: the OS disk's key references are on the VM model; its data disks carry none (convert false): "+
			"azure convert --vm converts each one the OS disk's crypttab or azure_crypt_mount names, or that holds a LUKS volume, with the VM's secret, and leaves the others attached as they are")
	}

	v.Image = vmImage(vm, osDiskRow)
	v.OSFamily = osFamily(v.Image)
	v.RHELPAYG = rhelPAYG(vm, diskImageID(osDiskRow)) != nil

	// Blockers.
	if v.SecurityType == string(armcompute.SecurityTypesConfidentialVM) {
		v.block(BlockerConfidentialVM, "Confidential VM: its OS disk needs VM metadata and secure key settings that luksconv does not upload")
	}
	for _, d := range v.Disks {
		if d.DESOtherSubscription {
			did, _ := idParts(d.DESID)
			v.block(BlockerDESOtherSubscription, fmt.Sprintf("disk %s is encrypted at rest by %s, a Disk Encryption Set in subscription %s, not the disk's %s: a new disk's DES must be in its own subscription",
				d.Name, d.DESID, did, d.Subscription))
		}
	}
	if !osADE {
		v.block(BlockerOSNotEncrypted, fmt.Sprintf("the OS disk %s carries no ADE settings (ADE on data volumes only, or encryption disabled): azure convert --vm recovers the OS disk's key first and stops without one (exit 8); "+
			"convert each ADE data disk by itself (azure convert --source-disk) and drop its crypttab line in the guest", osName))
	}
	switch {
	case strings.EqualFold(v.OSType, string(armcompute.OperatingSystemTypesWindows)):
		v.block(BlockerUnsupportedOS, "Windows guest (ADE encrypts it with BitLocker): luksconv converts Linux dm-crypt volumes of RHEL, CentOS, Oracle Linux and Ubuntu")
	case v.OSFamily == OSFamilyOther:
		v.block(BlockerUnsupportedOS, fmt.Sprintf("image %s/%s/%s is not RHEL, CentOS, Oracle Linux or Ubuntu", v.Image.Publisher, v.Image.Offer, v.Image.SKU))
	case v.OSFamily == OSFamilyUnknown:
		what := "no image recorded"
		if v.Image.ID != "" {
			what = "custom or gallery image " + v.Image.ID
		}
		v.block(BlockerUnsupportedOS, fmt.Sprintf("the guest OS is not known (%s): luksconv converts RHEL, CentOS, Oracle Linux and Ubuntu; check the guest, then convert the VM by itself", what))
	}
	v.Convertible = len(v.Blockers) == 0

	if v.Running {
		v.Notes = append(v.Notes, "running (not a blocker): a staging pass can read a snapshot of the running VM, and the VM is deallocated for the cutover; a conversion in one pass needs it deallocated first")
	}
	if v.SecurityType == string(armcompute.SecurityTypesTrustedLaunch) {
		v.Notes = append(v.Notes, "Trusted Launch: the new OS disk is created UploadPreparedSecure with the VM guest state (vTPM, UEFI variables) copied, and the VM re-created as Trusted Launch")
	}

	var convert []int64
	for _, d := range v.Disks {
		// A dual-pass VM's data disks carry no settings, and the run reads each of them: any may be
		// converted, so each counts, as the estimate is an upper bound.
		if d.Convert || v.ADE.DualPass && d.Role == "data" {
			convert = append(convert, d.SizeBytes)
		}
	}
	v.Estimate = inventoryEstimate(convert, parallel)
	return v, true
}

// addDisk adds a disk of the VM from its model and, when it is stamped, its Resource Graph row.
// An unmanaged disk is a blocker (false).
func (v *InventoryVM) addDisk(role string, lun *int, name string, md *armcompute.ManagedDiskParameters, sizeGB *int32, disks map[string]*armcompute.Disk) (*InventoryDisk, bool) {
	if md == nil || str(md.ID) == "" {
		where := "the OS disk"
		if lun != nil {
			where = fmt.Sprintf("the data disk at LUN %d", *lun)
		}
		v.block(BlockerUnmanagedDisk, fmt.Sprintf("%s (%s) is not a managed disk", where, name))
		return nil, false
	}
	var d InventoryDisk
	if row := disks[strings.ToLower(*md.ID)]; row != nil {
		d = inventoryDisk(row, role, lun)
		d.ID = *md.ID
		if d.DESID == "" && md.DiskEncryptionSet != nil {
			d.DESID = str(md.DiskEncryptionSet.ID)
			d.DESOtherSubscription = otherSubscription(d.DESID, d.Subscription)
		}
	} else {
		d = InventoryDisk{ID: *md.ID, Name: name, Role: role, LUN: lun, Location: v.Location, ManagedBy: v.ID}
		d.Subscription, d.ResourceGroup = idParts(d.ID)
		if sizeGB != nil {
			d.SizeGiB, d.SizeBytes = int64(*sizeGB), int64(*sizeGB)<<30
		}
		if md.StorageAccountType != nil {
			d.SKU = string(*md.StorageAccountType)
		}
		if md.DiskEncryptionSet != nil {
			d.DESID = str(md.DiskEncryptionSet.ID)
		}
		d.DESOtherSubscription = otherSubscription(d.DESID, d.Subscription)
	}
	if d.Name == "" {
		d.Name = name
	}
	d.Convert = d.ADE
	if d.ManagedBy == "" {
		d.ManagedBy = v.ID
	}
	v.Disks = append(v.Disks, d)
	return &v.Disks[len(v.Disks)-1], true
}

func (v *InventoryVM) block(code, msg string) {
	v.Blockers = append(v.Blockers, InventoryBlocker{Code: code, Message: msg})
}

// inventoryDisk describes a stamped disk from its Resource Graph row.
func inventoryDisk(d *armcompute.Disk, role string, lun *int) InventoryDisk {
	out := InventoryDisk{ID: str(d.ID), Name: str(d.Name), Location: str(d.Location), Role: role, LUN: lun, ManagedBy: str(d.ManagedBy)}
	out.Subscription, out.ResourceGroup = idParts(out.ID)
	if d.SKU != nil && d.SKU.Name != nil {
		out.SKU = string(*d.SKU.Name)
	}
	p := d.Properties
	if p == nil {
		return out
	}
	out.SizeBytes, out.SizeGiB = sizes(p.DiskSizeBytes, p.DiskSizeGB)
	if p.DiskState != nil {
		out.State = string(*p.DiskState)
	}
	if p.OSType != nil {
		out.OSType = string(*p.OSType)
	}
	if p.Encryption != nil {
		out.DESID = str(p.Encryption.DiskEncryptionSetID)
	}
	out.DESOtherSubscription = otherSubscription(out.DESID, out.Subscription)
	if adeStamped(p.EncryptionSettingsCollection) {
		k := firstKey(p.EncryptionSettingsCollection)
		out.ADE, out.ADEFrom, out.ADEVersion = true, FromDisk, k.Version
		out.SecretURL, out.KEKURL, out.KeyVaultURL = k.SecretURL, k.KEKURL, vaultOf(k.SecretURL)
	}
	return out
}

// inventoryEstimate estimates the staging and the cutover of a VM whose converted disks have the
// given sizes, parallel of them at a time (CutoverFormula, StagingBasis).
func inventoryEstimate(sizes []int64, parallel int) InventoryEstimate {
	e := InventoryEstimate{Label: "estimate", Disks: len(sizes), Parallel: parallel}
	changed := make([]int64, len(sizes))
	for i, s := range sizes {
		e.StagingBytes += s
		changed[i] = (s*CutoverChangedPercent + 99) / 100
		e.CutoverBytes += changed[i]
	}
	secs := func(b int64) int64 { return (b + StageRate - 1) / StageRate }
	e.StagingSeconds = secs(makespan(sizes, parallel))
	e.CutoverSeconds = int64((CutoverDeallocate+CutoverSnapshot+CutoverRecreate)/time.Second) + secs(makespan(changed, parallel))
	return e
}

// makespan is the most any of lanes workers moves when the jobs go, largest first, each to the
// worker with the least so far.
func makespan(jobs []int64, lanes int) int64 {
	if len(jobs) == 0 {
		return 0
	}
	lanes = max(1, min(lanes, len(jobs)))
	sorted := slices.Clone(jobs)
	slices.SortFunc(sorted, func(a, b int64) int { return cmp.Compare(b, a) })
	load := make([]int64, lanes)
	for _, j := range sorted {
		load[slices.Index(load, slices.Min(load))] += j
	}
	return slices.Max(load)
}

// vmImage is the image the VM was made from: its imageReference, else its marketplace plan, else
// the OS disk's creationData (row, when the OS disk is stamped and so in the inventory).
func vmImage(vm *armcompute.VirtualMachine, osDisk *armcompute.Disk) InventoryImage {
	var img InventoryImage
	if r := vm.Properties.StorageProfile.ImageReference; r != nil {
		img = InventoryImage{Publisher: str(r.Publisher), Offer: str(r.Offer), SKU: str(r.SKU), Version: cmp.Or(str(r.ExactVersion), str(r.Version)),
			ID: cmp.Or(str(r.ID), str(r.SharedGalleryImageID), str(r.CommunityGalleryImageID))}
		if img.Publisher != "" {
			img.From = "imageReference"
			return img
		}
	}
	if pl := vm.Plan; pl != nil && str(pl.Publisher) != "" {
		img.Publisher, img.Offer, img.SKU, img.From = str(pl.Publisher), str(pl.Product), str(pl.Name), "plan"
		return img
	}
	if id := diskImageID(osDisk); id != "" {
		if pub, offer, sku, ver := imageIDParts(id); pub != "" {
			return InventoryImage{Publisher: pub, Offer: offer, SKU: sku, Version: ver, ID: img.ID, From: "OS disk creationData"}
		}
		if img.ID == "" {
			img.ID = id
		}
	}
	return img
}

// osFamily is the guest OS family an image names.
func osFamily(img InventoryImage) string {
	p, o := strings.ToLower(img.Publisher), strings.ToLower(img.Offer)
	switch {
	case p == "" && o == "":
		return OSFamilyUnknown
	case p == "redhat" || strings.Contains(o, "rhel"):
		return OSFamilyRHEL
	case strings.Contains(o, "centos"):
		return OSFamilyCentOS
	case strings.Contains(o, "oracle-linux"):
		return OSFamilyOracle
	case p == "canonical" || strings.Contains(o, "ubuntu"):
		return OSFamilyUbuntu
	}
	return OSFamilyOther
}

// setting is a string from an extension's public settings (keys compared without case).
func setting(settings any, key string) string {
	m, ok := settings.(map[string]any)
	if !ok {
		return ""
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// volumeType spells ADE's VolumeType setting as ADE documents it: OS, Data or All.
func volumeType(s string) string {
	for _, t := range []string{"OS", "Data", "All"} {
		if strings.EqualFold(s, t) {
			return t
		}
	}
	return s
}

// vaultOf is the vault of a Key Vault object URL: https://NAME.vault.azure.net.
func vaultOf(objectURL string) string {
	u, err := url.Parse(objectURL)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// idParts are the subscription and resource group of a resource ID ("" when it is not one).
func idParts(id string) (sub, rg string) {
	rid, err := arm.ParseResourceID(id)
	if err != nil {
		return "", ""
	}
	return rid.SubscriptionID, rid.ResourceGroupName
}

// otherSubscription reports whether the resource desID is in another subscription than sub.
func otherSubscription(desID, sub string) bool {
	if desID == "" || sub == "" {
		return false
	}
	ds, _ := idParts(desID)
	return ds != "" && !strings.EqualFold(ds, sub)
}

// sizes are a disk's size in bytes and GiB (rounded up) from diskSizeBytes, else diskSizeGB.
func sizes(bytes *int64, gb *int32) (int64, int64) {
	switch {
	case bytes != nil && *bytes > 0:
		return *bytes, (*bytes + 1<<30 - 1) >> 30
	case gb != nil:
		return int64(*gb) << 30, int64(*gb)
	}
	return 0, 0
}
