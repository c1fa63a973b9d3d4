package azure

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// Licensing is how the re-created VM's RHEL software is billed and updated. A VM from a Red Hat
// pay-as-you-go marketplace image is billed for RHEL through Azure and reaches Red Hat's update
// service (RHUI) because of its image; a VM on an upload disk has no image, so it would become a
// custom-image VM: no RHEL charge, and no RHUI, which LEAPP needs. The choice is the user's.
type Licensing string

const (
	// LicensePAYG keeps pay-as-you-go through Azure Hybrid Benefit: the AHBForRHEL extension and a
	// RHEL_* licenseType on the re-created VM.
	LicensePAYG Licensing = "payg"
	// LicenseBYOS bills no RHEL software through Azure: the guest needs its own Red Hat subscription.
	LicenseBYOS Licensing = "byos"
)

// The Azure Hybrid Benefit extension that lets a custom-image RHEL VM be billed pay-as-you-go and
// reach RHUI.
const (
	ahbPublisher = "Microsoft.Azure.AzureHybridBenefit"
	ahbType      = "AHBForRHEL"
	ahbVersion   = "1.0"
)

// rhelImage is the marketplace image a VM (or its OS disk) was made from, when Red Hat published it.
type rhelImage struct {
	Offer, SKU string
	From       string // where it was read: "imageReference" or "OS disk creationData"
}

// rhelPAYG reports the Red Hat pay-as-you-go image the VM runs, nil when it does not: publisher
// RedHat, no marketplace plan (BYOS images carry one), no licenseType yet. diskImageID is the OS
// disk's creationData.imageReference.id, for a VM whose own imageReference is gone.
func rhelPAYG(vm *armcompute.VirtualMachine, diskImageID string) *rhelImage {
	return paygImage(vm, diskImageID, "RedHat")
}

// paygImage reports the pay-as-you-go marketplace image of publisher the VM runs, nil when it does
// not: no marketplace plan (BYOS images carry one), no licenseType yet, no BYOS offer. diskImageID is
// as for rhelPAYG.
func paygImage(vm *armcompute.VirtualMachine, diskImageID, publisher string) *rhelImage {
	p := vm.Properties
	if vm.Plan != nil || p == nil || str(p.LicenseType) != "" {
		return nil
	}
	img, pub := &rhelImage{From: "OS disk creationData"}, ""
	if sp := p.StorageProfile; sp != nil && sp.ImageReference != nil && str(sp.ImageReference.Publisher) != "" {
		pub, img = str(sp.ImageReference.Publisher), &rhelImage{Offer: str(sp.ImageReference.Offer), SKU: str(sp.ImageReference.SKU), From: "imageReference"}
	} else {
		pub, img.Offer, img.SKU, _ = imageIDParts(diskImageID)
	}
	if !strings.EqualFold(pub, publisher) || strings.Contains(strings.ToLower(img.Offer), "byos") {
		return nil
	}
	return img
}

// imageIDParts reads a platform image's ID, /Subscriptions/…/Providers/Microsoft.Compute/Locations/…/
// Publishers/RedHat/ArtifactTypes/VMImage/Offers/RHEL/Skus/8-lvm-gen2/Versions/…: its publisher, offer,
// SKU and version ("" for each it lacks, all of them for a gallery or custom image).
func imageIDParts(id string) (publisher, offer, sku, version string) {
	seg := strings.Split(id, "/")
	for i := 0; i+1 < len(seg); i++ {
		switch strings.ToLower(seg[i]) {
		case "publishers":
			publisher = seg[i+1]
		case "offers":
			offer = seg[i+1]
		case "skus":
			sku = seg[i+1]
		case "versions":
			version = seg[i+1]
		}
	}
	return publisher, offer, sku, version
}

// diskImageID is a disk's creationData.imageReference.id, the image it was made from ("" for none).
func diskImageID(d *armcompute.Disk) string {
	if d == nil || d.Properties == nil || d.Properties.CreationData == nil || d.Properties.CreationData.ImageReference == nil {
		return ""
	}
	return str(d.Properties.CreationData.ImageReference.ID)
}

// ubuntuPro reports whether a Canonical image is Ubuntu Pro: offers 0001-com-ubuntu-pro-<release>[-fips],
// or the SKUs ubuntu-pro[-gen1] and pro-<release>… of the other offers.
func (i *rhelImage) ubuntuPro() bool {
	o, s := strings.ToLower(i.Offer), strings.ToLower(i.SKU)
	return strings.Contains(o, "ubuntu-pro") || strings.Contains(s, "ubuntu-pro") || strings.HasPrefix(s, "pro-")
}

// licenseType is the Azure Hybrid Benefit licenseType that keeps the image's pay-as-you-go billing:
// RHEL for SAP HA and SAP applications have their own; EUS SKUs RHEL_EUS; the rest RHEL_BASE.
func (i *rhelImage) licenseType() string {
	o, s := strings.ToLower(i.Offer), strings.ToLower(i.SKU)
	switch {
	case strings.Contains(o, "sap-ha"):
		return "RHEL_SAPHA"
	case strings.Contains(o, "sap"):
		return "RHEL_SAPAPPS"
	case strings.Contains(s, "eus"):
		return "RHEL_EUS"
	}
	return "RHEL_BASE"
}

// planLicensing applies the licensing choice to the plan of a VM that runs a RHEL pay-as-you-go
// image; without a choice it is an error (ErrLicense) that says what each choice means.
func (c *Client) planLicensing(ctx context.Context, plan *VMPlan, vm *armcompute.VirtualMachine, choice Licensing) error {
	const op = "plan re-creation of"
	diskImage := c.osDiskImage(ctx, plan.OldOSDiskID)
	if img := paygImage(vm, diskImage, "SUSE"); img != nil {
		// The same loss as RHEL's, which luksconv does not re-license: said, for a person to decide.
		plan.Warnings = append(plan.Warnings, fmt.Sprintf("the VM runs SUSE's pay-as-you-go image %s/%s (%s): on an upload disk it is no longer billed for SLES "+
			"through Azure and loses SUSE's update service for pay-as-you-go VMs; re-license it (Azure Hybrid Benefit for SLES) or register it with your own SUSE subscription", img.Offer, img.SKU, img.From))
	}
	if img := paygImage(vm, diskImage, "Canonical"); img != nil && img.ubuntuPro() {
		// Pro through Azure is the image's billing, or licenseType UBUNTU_PRO (Azure's in-place upgrade
		// to Pro): the latter keeps it on an upload disk. Said, for a person to decide.
		plan.Warnings = append(plan.Warnings, fmt.Sprintf("the VM runs Canonical's Ubuntu Pro image %s/%s (%s): on an upload disk it is no longer billed for Ubuntu Pro "+
			"through Azure, and its Pro services (ESM, Livepatch) stop once the guest's entitlement is checked again; keep Pro with licenseType UBUNTU_PRO "+
			"(az vm update --license-type UBUNTU_PRO, after the swap) or attach the guest to your own Pro subscription", img.Offer, img.SKU, img.From))
	}
	img := rhelPAYG(vm, diskImage)
	if img == nil {
		if choice != "" {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("the VM does not run a Red Hat pay-as-you-go image: --license %s changes nothing", choice))
		}
		return nil
	}
	lt := img.licenseType()
	switch choice {
	case LicensePAYG:
		plan.LicenseType = lt
		plan.Licensing = fmt.Sprintf("RHEL pay-as-you-go through Azure Hybrid Benefit: licenseType %s, updates from RHUI through the %s extension (the image %s/%s, read from its %s)",
			lt, ahbType, img.Offer, img.SKU, img.From)
	case LicenseBYOS:
		plan.Licensing = "bring your own subscription: no RHEL charge from Azure, and no RHUI: register the guest with Red Hat (subscription-manager) before LEAPP"
		plan.Warnings = append(plan.Warnings, "the re-created VM is not billed for RHEL by Azure and cannot reach Red Hat's update service (RHUI): register it with your Red Hat subscription")
	default:
		return newError(op, plan.VMID, ErrLicense, "the VM runs Red Hat's pay-as-you-go image %s/%s (%s): on an upload disk it would lose that billing and Red Hat's update service (RHUI), which LEAPP needs; "+
			"choose payg (Azure Hybrid Benefit keeps both: licenseType %s and the %s extension) or byos (your own Red Hat subscription)", img.Offer, img.SKU, img.From, lt, ahbType)
	}
	return nil
}

// osDiskImage is the OS disk's creationData.imageReference.id ("" when it has none or cannot be read).
func (c *Client) osDiskImage(ctx context.Context, diskID string) string {
	d, err := c.getDisk(ctx, "read disk", diskID)
	if err != nil {
		return ""
	}
	return diskImageID(d)
}

// LicenseError is RecreateVM's (or FinishLicensing's) failure after the new VM was created: the VM runs
// on the new disks, but its RHEL licensing (the AHBForRHEL extension and licenseType) is not set. The
// re-creation stands; the licensing stays pending (PendingLicense) for FinishLicensing, which a rerun
// of the conversion calls, or is set by hand (Hint says how).
type LicenseError struct {
	VMID        string // the re-created VM's resource ID
	LicenseType string // the licenseType that was to be set (VMPlan.LicenseType)
	Err         error  // why the extension or the licenseType could not be set
}

// Error says that the VM stands on the new disks and why its licensing is not set.
func (e *LicenseError) Error() string {
	return fmt.Sprintf("azure: re-create VM %s: the VM is re-created on the new disks, but its licensing is not set: %v", e.VMID, e.Err)
}

// Unwrap returns why the extension or the licenseType could not be set.
func (e *LicenseError) Unwrap() error { return e.Err }

// Hint is what a person does next.
func (e *LicenseError) Hint() string {
	rid, _ := parseID(e.VMID, typeVM)
	return fmt.Sprintf("the VM is not deleted: run the same command again once the cause is fixed (it sets what is missing), or install the %s extension (publisher %s) and set its licenseType: "+
		"az vm extension set -g %s --vm-name %s -n %s --publisher %s; az vm update -g %s -n %s --license-type %s",
		ahbType, ahbPublisher, rid.ResourceGroup, rid.Name, ahbType, ahbPublisher, rid.ResourceGroup, rid.Name, e.LicenseType)
}

// applyLicensing installs the Azure Hybrid Benefit extension on the re-created VM vmID (in location)
// and sets its licenseType lt, in the order Microsoft documents for a custom-image VM; "" sets nothing.
// Both are idempotent: a rerun sends them again.
func (c *Client) applyLicensing(ctx context.Context, vmID, location, lt string, rid resourceID, f *armcompute.ClientFactory) error {
	if lt == "" {
		return nil
	}
	ext := armcompute.VirtualMachineExtension{Location: to.Ptr(location), Properties: &armcompute.VirtualMachineExtensionProperties{
		Publisher: to.Ptr(ahbPublisher), Type: to.Ptr(ahbType), TypeHandlerVersion: to.Ptr(ahbVersion), AutoUpgradeMinorVersion: to.Ptr(true)}}
	if _, err := started(f.NewVirtualMachineExtensionsClient().BeginCreateOrUpdate(ctx, rid.ResourceGroup, rid.Name, ahbType, ext, nil)).wait(ctx, c); err != nil {
		return opError("install the "+ahbType+" extension on", vmID, err)
	}
	u := armcompute.VirtualMachineUpdate{Properties: &armcompute.VirtualMachineProperties{LicenseType: to.Ptr(lt)}}
	if _, err := started(f.NewVirtualMachinesClient().BeginUpdate(ctx, rid.ResourceGroup, rid.Name, u, nil)).wait(ctx, c); err != nil {
		return opError("set licenseType "+lt+" on", vmID, err)
	}
	return nil
}

// pendingLicense is the licensing RecreateVM is to set on the VM it re-creates, saved before the
// DELETE in Options.VMModelDir and removed once it is set (or the VM was not re-created).
type pendingLicense struct {
	VMID        string `json:"vm"`
	LicenseType string `json:"license_type"`
}

// pendingLicensePath is the file of the VM vmID's pending licensing in dir,
// luksconv-license-NAME-HASH.json: named, as its model files, for the VM's name and a hash of its ID.
func pendingLicensePath(dir, vmID string) string {
	return filepath.Join(dir, "luksconv-license-"+vmFileStem(vmID)+".json")
}

// savePendingLicense saves plan's licensing (none: "", nothing saved) and returns the file's path.
func (c *Client) savePendingLicense(plan *VMPlan) (string, error) {
	if plan.LicenseType == "" {
		return "", nil
	}
	b, err := json.Marshal(pendingLicense{VMID: plan.VMID, LicenseType: plan.LicenseType})
	if err != nil {
		return "", err
	}
	p := pendingLicensePath(c.opts.VMModelDir, plan.VMID)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return p, nil
}

// PendingLicense returns the licenseType an earlier RecreateVM of the VM vmID was to set and did not
// (it ended after the VM's re-creation: killed, or the extension or update refused), as saved in
// dir, its Options.VMModelDir; "" when none is pending.
func PendingLicense(dir, vmID string) string {
	b, err := os.ReadFile(pendingLicensePath(dir, vmID))
	if err != nil {
		return ""
	}
	var p pendingLicense
	if json.Unmarshal(b, &p) != nil || !strings.EqualFold(p.VMID, vmID) {
		return ""
	}
	return p.LicenseType
}

// FinishLicensing sets the licensing an earlier RecreateVM of the VM vmID left pending (PendingLicense
// in Options.VMModelDir): the Azure Hybrid Benefit extension and the licenseType, then removes the
// record. It returns the licenseType set, "" when none was pending; on failure a *LicenseError, and
// the record stays for the next run.
func (c *Client) FinishLicensing(ctx context.Context, vmID string) (string, error) {
	const op = "finish licensing of VM"
	lt := PendingLicense(c.opts.VMModelDir, vmID)
	if lt == "" {
		return "", nil
	}
	rid, err := parseID(vmID, typeVM)
	if err != nil {
		return "", opError(op, vmID, err)
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return "", opError(op, vmID, err)
	}
	r, err := f.NewVirtualMachinesClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
	if err != nil {
		return "", opError(op, vmID, err)
	}
	if err := c.applyLicensing(ctx, vmID, str(r.Location), lt, rid, f); err != nil {
		return "", &LicenseError{VMID: vmID, LicenseType: lt, Err: err}
	}
	os.Remove(pendingLicensePath(c.opts.VMModelDir, vmID))
	return lt, nil
}

// CheckLicensing reads the VM and refuses (ErrLicense) to go on without a choice when it runs a Red
// Hat pay-as-you-go image, so that a run stops before it snapshots or creates anything; the plan of
// the re-creation applies the choice.
func (c *Client) CheckLicensing(ctx context.Context, vmID string, choice Licensing) error {
	const op = "read licensing of VM"
	rid, vms, err := c.vmsClient(vmID)
	if err != nil {
		return opError(op, vmID, err)
	}
	r, err := vms.Get(ctx, rid.ResourceGroup, rid.Name, nil)
	if err != nil {
		return opError(op, vmID, err)
	}
	plan := &VMPlan{VMID: vmID}
	if p := r.Properties; p != nil && p.StorageProfile != nil && p.StorageProfile.OSDisk != nil && p.StorageProfile.OSDisk.ManagedDisk != nil {
		plan.OldOSDiskID = str(p.StorageProfile.OSDisk.ManagedDisk.ID)
	}
	return c.planLicensing(ctx, plan, &r.VirtualMachine, choice)
}
