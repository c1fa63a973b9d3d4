package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// VMPlan records an ADE VM and the ARM calls that re-create it around a
// plaintext OS disk: the same name, location, zone, size, NICs, data disks,
// availability set, plan, tags, identity and security settings; the new OS
// disk attached; no OS profile or image reference (the disk already holds
// the OS), no osDisk.encryptionSettings and no extensions (the ADE extension
// must not come back). The plan marshals to JSON and is what --dry-run
// prints; RecreateVM executes it.
type VMPlan struct {
	VMID          string `json:"vmId"`          // the VM's resource ID, the same before and after
	ResourceGroup string `json:"resourceGroup"` // the VM's resource group
	Name          string `json:"name"`          // the VM's name
	// Etag is the VM's etag when planned; RecreateVM refuses a VM that
	// changed since.
	Etag        string `json:"etag,omitempty"`
	OldOSDiskID string `json:"oldOsDiskId"` // the ADE OS disk the VM has now
	NewOSDiskID string `json:"newOsDiskId"` // the plaintext OS disk the new VM boots from
	// DataDisks are the data disks replaced by new ones, by LUN; the others
	// are re-attached as they are.
	DataDisks []DiskSwap `json:"dataDisks,omitempty"`
	// PowerState is the VM's power state when planned, and DiskOwners the
	// old disks' owners then: RecreateVM refuses a VM that is not
	// deallocated or stopped, or whose disks' ownership changed since (the
	// VM ran: writes after the snapshot would be lost).
	PowerState string      `json:"powerState"`
	DiskOwners []DiskOwner `json:"diskOwners"` // see PowerState
	// EncryptionAtHost: the new VM has securityProfile.encryptionAtHost on.
	EncryptionAtHost bool `json:"encryptionAtHost,omitempty"`
	// Licensing says how the re-created VM's RHEL is billed and updated ("" when not a Red Hat
	// pay-as-you-go VM); LicenseType is set, with the AHBForRHEL extension, after the PUT.
	Licensing   string `json:"licensing,omitempty"`
	LicenseType string `json:"licenseType,omitempty"` // RHEL_BASE, RHEL_EUS, RHEL_SAPAPPS or RHEL_SAPHA; see Licensing
	// Steps are the ARM calls, in order, in words.
	Steps []string `json:"steps"`
	// Changes is the difference between the recorded VM (read-only fields
	// left out, extensions by name) and the new VM's PUT body.
	Changes []Change `json:"changes"`
	// RemovedExtensions lists the extensions that are not re-created, as
	// "name (publisher/type)"; ADE's is among them.
	RemovedExtensions []string `json:"removedExtensions,omitempty"`
	// Checks are what the plan found that RecreateVM checks again before the DELETE (the VM not
	// deallocated, a new disk missing or still uploading): they stop a re-creation, they do not
	// follow one.
	Checks []string `json:"checks,omitempty"`
	// Warnings are manual follow-ups and checks that need a person: what the re-created VM lacks or
	// changed, to be said after it is re-created too.
	Warnings []string `json:"warnings,omitempty"`
	// DetachUpdate is the PATCH that sets deleteOption=Detach on the NICs
	// and disks before the delete, nil when all are Detach already.
	DetachUpdate *armcompute.VirtualMachineUpdate `json:"detachUpdate,omitempty"`
	// New is the PUT body of the new VM.
	New *armcompute.VirtualMachine `json:"newVm"`
	// Rollback is a PUT body that re-creates the original VM on its old OS
	// disk (without extensions), used by RestoreVM.
	Rollback *armcompute.VirtualMachine `json:"rollbackVm"`
	// Original is the VM as read, kept as the record of what was deleted.
	Original *armcompute.VirtualMachine `json:"originalVm"`
}

// DiskSwap is a data disk the new VM attaches in place of the old one, at
// the same LUN with the same caching and write-accelerator settings.
type DiskSwap struct {
	LUN int    `json:"lun"`       // the data disk's LUN, the same on both VMs
	Old string `json:"oldDiskId"` // the ADE disk's resource ID
	New string `json:"newDiskId"` // the plaintext disk's resource ID
}

// Change is one difference between two JSON documents. Path uses dots for
// object members ("properties.storageProfile.osDisk.createOption"),
// [i] for array elements and ["…"] for members that are not identifiers.
type Change struct {
	Op   string          `json:"op"`            // "add", "remove" or "replace"
	Path string          `json:"path"`          // where the documents differ, as above
	Old  json.RawMessage `json:"old,omitempty"` // the value in the first document (not for "add")
	New  json.RawMessage `json:"new,omitempty"` // the value in the second document (not for "remove")
}

// String renders the change as one line: "+ path: new", "- path: old" or "~ path: old -> new".
func (c Change) String() string {
	switch c.Op {
	case "add":
		return fmt.Sprintf("+ %s: %s", c.Path, c.New)
	case "remove":
		return fmt.Sprintf("- %s: %s", c.Path, c.Old)
	}
	return fmt.Sprintf("~ %s: %s -> %s", c.Path, c.Old, c.New)
}

// String renders the plan for a person: steps, changes, warnings.
func (p *VMPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Re-create VM %s\n", p.VMID)
	for i, s := range p.Steps {
		fmt.Fprintf(&b, "  %d. %s\n", i+1, s)
	}
	if p.Licensing != "" {
		fmt.Fprintf(&b, "Licensing: %s\n", p.Licensing)
	}
	b.WriteString("Changes to the VM model:\n")
	for _, c := range p.Changes {
		fmt.Fprintf(&b, "  %s\n", c)
	}
	if len(p.Checks)+len(p.Warnings) > 0 {
		b.WriteString("Warnings:\n")
		for _, w := range slices.Concat(p.Checks, p.Warnings) {
			fmt.Fprintf(&b, "  ! %s\n", w)
		}
	}
	return b.String()
}

// IsADEExtension reports whether an extension is Azure Disk Encryption
// (publisher Microsoft.Azure.Security, type AzureDiskEncryption or
// AzureDiskEncryptionForLinux).
func IsADEExtension(publisher, typ string) bool {
	return strings.EqualFold(publisher, "Microsoft.Azure.Security") && strings.HasPrefix(strings.ToLower(typ), "azurediskencryption")
}

// PlanRecreateVM reads the VM vmID and plans its re-creation with the OS
// disk newOSDiskID (a disk from CreateUploadDisk). Nothing is changed. The
// new disk may not exist yet during a dry run; then its checks are left to
// RecreateVM and a warning says so.
func (c *Client) PlanRecreateVM(ctx context.Context, vmID, newOSDiskID string) (*VMPlan, error) {
	return c.PlanRecreateVMDisks(ctx, vmID, newOSDiskID, nil)
}

// PlanRecreateVMDisks is PlanRecreateVM for a whole VM: newData maps LUNs
// to the new data disks that replace the VM's disks at those LUNs (same
// caching and write accelerator); every LUN must be attached to the VM.
func (c *Client) PlanRecreateVMDisks(ctx context.Context, vmID, newOSDiskID string, newData map[int]string) (*VMPlan, error) {
	return c.PlanRecreateVMWith(ctx, vmID, newOSDiskID, newData, RecreateOptions{})
}

// RecreateOptions change the re-created VM beyond its new disks.
type RecreateOptions struct {
	// EncryptionAtHost turns on encryption at host (securityProfile.encryptionAtHost), Microsoft's
	// recommended replacement for ADE. It is refused while a data disk that keeps ADE settings
	// stays attached, and the preflight checks that the size supports it; ARM's validation of the
	// body refuses it where the subscription lacks the Microsoft.Compute/EncryptionAtHost feature.
	EncryptionAtHost bool
	// License is the choice for a VM that runs a Red Hat pay-as-you-go image (required there).
	License Licensing
}

// PlanRecreateVMWith is PlanRecreateVMDisks with options.
func (c *Client) PlanRecreateVMWith(ctx context.Context, vmID, newOSDiskID string, newData map[int]string, opts RecreateOptions) (*VMPlan, error) {
	const op = "plan re-creation of"
	rid, err := parseID(vmID, typeVM)
	if err != nil {
		return nil, opError(op, vmID, err)
	}
	if _, err := parseID(newOSDiskID, typeDisk); err != nil {
		return nil, opError(op, vmID, err)
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return nil, opError(op, vmID, err)
	}
	// userData is returned only when asked for; without it the new VM would lose it.
	r, err := f.NewVirtualMachinesClient().Get(ctx, rid.ResourceGroup, rid.Name, &armcompute.VirtualMachinesClientGetOptions{Expand: to.Ptr(armcompute.InstanceViewTypesUserData)})
	if err != nil {
		return nil, opError(op, vmID, err)
	}
	vm := r.VirtualMachine
	plan := &VMPlan{VMID: vmID, ResourceGroup: rid.ResourceGroup, Name: rid.Name, Etag: str(vm.Etag), NewOSDiskID: newOSDiskID, Original: &vm}
	p := vm.Properties
	if p == nil || p.StorageProfile == nil || p.StorageProfile.OSDisk == nil {
		return nil, newError(op, vmID, ErrState, "VM model has no storageProfile.osDisk")
	}
	osd := p.StorageProfile.OSDisk
	if osd.ManagedDisk == nil || str(osd.ManagedDisk.ID) == "" {
		return nil, newError(op, vmID, ErrUnsupported, "OS disk is not a managed disk")
	}
	plan.OldOSDiskID = *osd.ManagedDisk.ID
	if osd.DiffDiskSettings != nil {
		// It lives on the host and is gone with the VM: the new VM would get a persistent disk, and
		// the rollback could attach nothing.
		return nil, newError(op, vmID, ErrUnsupported, "the OS disk is ephemeral (diffDiskSettings): it is lost when the VM is deleted, so the VM could not be restored")
	}
	if sameID(plan.OldOSDiskID, newOSDiskID) {
		return nil, newError(op, vmID, ErrState, "new OS disk is the VM's current OS disk")
	}
	if l := configDeletedWithVM(p.NetworkProfile); len(l) > 0 {
		// Only the NIC references are PATCHed to Detach: the DELETE would take these, and neither the
		// new VM nor the restore could be created on the NIC without them.
		return nil, newError(op, vmID, ErrUnsupported, "%s would be deleted with the VM (deleteOption Delete in networkProfile.networkInterfaceConfigurations): "+
			"set it to Detach first (az vm update --set networkProfile.networkInterfaceConfigurations[i].deleteOption=Detach, "+
			"…ipConfigurations[j].publicIPAddressConfiguration.deleteOption=Detach)", strings.Join(l, ", "))
	}
	if err := planSecurity(&vm, plan); err != nil { // Trusted Launch kept (secure.go)
		return nil, err
	}
	kept := 0
	for _, d := range p.StorageProfile.DataDisks {
		if d == nil {
			continue
		}
		if d.ManagedDisk == nil || str(d.ManagedDisk.ID) == "" {
			return nil, newError(op, vmID, ErrUnsupported, "data disk at LUN %d is not a managed disk", deref(d.Lun))
		}
		lun := int(deref(d.Lun))
		if deref(d.ToBeDetached) {
			// A detach under way or left failed: the new VM would attach the disk again (its model
			// lists it), and the rollback too.
			return nil, newError(op, vmID, ErrState, "the data disk at LUN %d is being detached (toBeDetached): finish the detach "+
				"(az vm disk detach, --force-detach when it is stuck) or undo it before the re-creation", lun)
		}
		nd, ok := newData[lun]
		if !ok {
			kept++
			if opts.EncryptionAtHost {
				if ade, err := c.diskHasADE(ctx, *d.ManagedDisk.ID); err != nil {
					return nil, err
				} else if ade {
					return nil, newError(op, vmID, ErrState, "the data disk at LUN %d keeps ADE settings: encryption at host cannot be turned on while an ADE disk stays attached (convert it too: azure convert --vm)", lun)
				}
			}
			continue
		}
		if _, err := parseID(nd, typeDisk); err != nil {
			return nil, opError(op, vmID, err)
		}
		if sameID(nd, *d.ManagedDisk.ID) {
			return nil, newError(op, vmID, ErrState, "new disk for LUN %d is the VM's current disk there", lun)
		}
		plan.DataDisks = append(plan.DataDisks, DiskSwap{LUN: lun, Old: *d.ManagedDisk.ID, New: nd})
	}
	if len(plan.DataDisks) != len(newData) {
		for lun := range newData {
			if !slices.ContainsFunc(plan.DataDisks, func(s DiskSwap) bool { return s.LUN == lun }) {
				return nil, newError(op, vmID, ErrState, "the VM has no data disk at LUN %d", lun)
			}
		}
	}
	slices.SortFunc(plan.DataDisks, func(a, b DiskSwap) int { return a.LUN - b.LUN })
	if err := c.checkNewDisk(ctx, &vm, "new OS disk", newOSDiskID, plan); err != nil {
		return nil, err
	}
	for _, s := range plan.DataDisks {
		if err := c.checkNewDisk(ctx, &vm, fmt.Sprintf("new disk for LUN %d", s.LUN), s.New, plan); err != nil {
			return nil, err
		}
	}

	for _, id := range append([]string{plan.OldOSDiskID}, swapOld(plan.DataDisks)...) {
		o, err := c.ReadDiskOwner(ctx, id)
		if err != nil {
			return nil, err
		}
		plan.DiskOwners = append(plan.DiskOwners, *o)
	}
	if plan.PowerState, err = c.VMPowerState(ctx, vmID); err != nil {
		return nil, err
	}
	if !quietState(plan.PowerState) {
		plan.Checks = append(plan.Checks, fmt.Sprintf("the VM is %s: the re-creation refuses to delete it until it is deallocated (writes after the snapshot would be lost)", plan.PowerState))
	}

	plan.New = attachModel(&vm, newOSDiskID, plan.DataDisks, false)
	plan.Rollback = attachModel(&vm, plan.OldOSDiskID, nil, true)
	if err := c.planLicensing(ctx, plan, &vm, opts.License); err != nil {
		return nil, err
	}
	if opts.EncryptionAtHost {
		np := plan.New.Properties
		if np.SecurityProfile == nil {
			np.SecurityProfile = &armcompute.SecurityProfile{}
		}
		np.SecurityProfile.EncryptionAtHost = to.Ptr(true)
		plan.EncryptionAtHost = true
	}
	plan.DetachUpdate = detachUpdate(&vm)
	// An upload disk declares no supportsHibernation, and Azure refuses hibernationEnabled on a VM whose
	// OS disk does not: the new VM gets hibernation off (the rollback keeps it, on the old disk).
	if ac := plan.New.Properties.AdditionalCapabilities; ac != nil && deref(ac.HibernationEnabled) {
		ok, err := c.diskSupportsHibernation(ctx, newOSDiskID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if !ok {
			ac.HibernationEnabled = to.Ptr(false)
			plan.Warnings = append(plan.Warnings, "hibernation is turned off on the new VM: its new OS disk does not declare supportsHibernation; "+
				"to turn it on again, set supportsHibernation on the disk and hibernationEnabled on the deallocated VM after the swap")
		}
	}

	for _, e := range vm.Resources {
		if e == nil {
			continue
		}
		var pub, typ string
		if e.Properties != nil {
			pub, typ = str(e.Properties.Publisher), str(e.Properties.Type)
		}
		plan.RemovedExtensions = append(plan.RemovedExtensions, fmt.Sprintf("%s (%s/%s)", extName(e), pub, typ))
		if !IsADEExtension(pub, typ) {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("extension %s (%s/%s) is not re-created: re-add it after boot (its protected settings cannot be read back)", extName(e), pub, typ))
		}
	}
	if l := deletedWithVM(p); len(l) > 0 {
		plan.Warnings = append(plan.Warnings, "deleteOption Delete of "+strings.Join(l, ", ")+" is Detach on the new VM (a failed creation is deleted before the restore, "+
			"and must not take them along): deleting the VM later keeps them; set it again with az vm update --set "+
			"(storageProfile.osDisk.deleteOption, storageProfile.dataDisks[i].deleteOption, networkProfile.networkInterfaces[i].deleteOption)")
	}
	if np := p.NetworkProfile; np != nil && len(np.NetworkInterfaceConfigurations) > 0 {
		plan.Warnings = append(plan.Warnings, "the VM's NICs were created from networkInterfaceConfigurations; the new VM references the existing NICs by ID instead")
	}
	if kept > 0 {
		plan.Warnings = append(plan.Warnings, fmt.Sprintf("%d of the data disks are re-attached as they are: an ADE-encrypted data disk needs its own conversion (azure convert --vm converts them all), a VM without ADE will not unlock it", kept))
	}
	if id := vm.Identity; id != nil && id.Type != nil && strings.Contains(strings.ToLower(string(*id.Type)), "systemassigned") {
		plan.Warnings = append(plan.Warnings, "the system-assigned identity gets a new principal: re-create its role assignments and Key Vault access")
	}
	if deref(p.Priority) == armcompute.VirtualMachinePriorityTypesSpot {
		// The DELETE releases the VM's compute; the preflight checks offer and policy, not capacity.
		plan.Warnings = append(plan.Warnings, "a Spot VM is re-created, and restored after a failed PUT, only if Spot capacity (within its maxPrice) is there at the PUT: "+
			"without it the VM stays deleted, its model saved, until capacity returns")
	}
	if p.VirtualMachineScaleSet != nil {
		plan.Warnings = append(plan.Warnings, "the VM belongs to a flexible scale set; re-creating it there is untested")
	}
	plan.Warnings = append(plan.Warnings, "a Basic SKU dynamic public IP on the NIC may be released when the VM is deleted")
	if lost := osProfileLost(p.OSProfile); lost != "" {
		plan.Warnings = append(plan.Warnings, "a VM created on an attached OS disk has no osProfile: "+lost+" leave the VM model (the guest keeps its accounts, keys and files)")
	}
	plan.Warnings = append(plan.Warnings, "if Azure Backup or Azure Site Recovery protects the VM, protect the re-created VM again: its protection refers to the deleted VM's instance")

	if plan.DetachUpdate != nil {
		plan.Steps = append(plan.Steps, fmt.Sprintf("PATCH %s: deleteOption=Detach on its NICs and disks (detachUpdate)", vmID))
	}
	size := ""
	if hp := p.HardwareProfile; hp != nil && hp.VMSize != nil {
		size = string(*hp.VMSize)
	}
	plan.Steps = append([]string{
		fmt.Sprintf("preflight, nothing changed: size %s offered and unrestricted in %s %v (resource SKUs); ARM validates a deployment of newVm in %s (Azure Policy, Compute checks)", size, str(vm.Location), ptrStrings(vm.Zones), rid.ResourceGroup),
		"save rollbackVm to " + modelPrefix(plan.VMID) + "TIME.json (removed once a VM exists again)",
	}, plan.Steps...)
	plan.Steps = append(plan.Steps,
		fmt.Sprintf("DELETE %s: NICs, OS disk %s and data disks are kept", vmID, plan.OldOSDiskID),
		fmt.Sprintf("PUT %s (newVm): OS disk %s attached, no ADE extension, no encryptionSettings", vmID, newOSDiskID),
	)
	for _, s := range plan.DataDisks {
		plan.Steps[len(plan.Steps)-1] += fmt.Sprintf("; LUN %d: %s in place of %s", s.LUN, s.New, s.Old)
	}
	plan.Steps[len(plan.Steps)-1] += "; retried while Azure answers NicReservedForAnotherVm, 429 or 5xx (5 min by default); if it still fails, PUT rollbackVm (the original VM on its old disks)"
	if plan.LicenseType != "" {
		plan.Steps = append(plan.Steps, fmt.Sprintf("PUT extension %s (%s) on %s, then PATCH licenseType %s (Azure Hybrid Benefit: RHEL pay-as-you-go and RHUI)", ahbType, ahbPublisher, vmID, plan.LicenseType))
	}

	before, err := comparable(&vm, true)
	if err != nil {
		return nil, opError(op, vmID, err)
	}
	after, err := comparable(plan.New, false)
	if err != nil {
		return nil, opError(op, vmID, err)
	}
	diffJSON("", before, after, &plan.Changes)
	return plan, nil
}

// deletedWithVM names the NICs and disks the VM deletes with it (deleteOption Delete), which the new
// VM detaches instead.
func deletedWithVM(p *armcompute.VirtualMachineProperties) []string {
	var l []string
	if np := p.NetworkProfile; np != nil {
		for _, n := range np.NetworkInterfaces {
			if n != nil && n.Properties != nil && deref(n.Properties.DeleteOption) == armcompute.DeleteOptionsDelete {
				l = append(l, "NIC "+path.Base(str(n.ID)))
			}
		}
	}
	sp := p.StorageProfile
	if deref(sp.OSDisk.DeleteOption) == armcompute.DiskDeleteOptionTypesDelete {
		l = append(l, "OS disk "+str(sp.OSDisk.Name))
	}
	for _, d := range sp.DataDisks {
		if d != nil && deref(d.DeleteOption) == armcompute.DiskDeleteOptionTypesDelete {
			l = append(l, fmt.Sprintf("data disk %s (LUN %d)", str(d.Name), deref(d.Lun)))
		}
	}
	return l
}

// configDeletedWithVM names the NICs and public IPs that networkInterfaceConfigurations delete with the VM.
func configDeletedWithVM(np *armcompute.NetworkProfile) []string {
	if np == nil {
		return nil
	}
	var l []string
	for _, n := range np.NetworkInterfaceConfigurations {
		if n == nil || n.Properties == nil {
			continue
		}
		if deref(n.Properties.DeleteOption) == armcompute.DeleteOptionsDelete {
			l = append(l, "NIC configuration "+str(n.Name))
		}
		for _, ip := range n.Properties.IPConfigurations {
			if ip == nil || ip.Properties == nil || ip.Properties.PublicIPAddressConfiguration == nil {
				continue
			}
			if pc := ip.Properties.PublicIPAddressConfiguration; pc.Properties != nil && deref(pc.Properties.DeleteOption) == armcompute.DeleteOptionsDelete {
				l = append(l, "public IP configuration "+str(pc.Name)+" of NIC configuration "+str(n.Name))
			}
		}
	}
	return l
}

// osProfileLost lists, in words, the osProfile settings a VM created on an attached disk cannot carry
// ("" when there are none).
func osProfileLost(op *armcompute.OSProfile) string {
	if op == nil {
		return ""
	}
	var l []string
	if n := str(op.ComputerName); n != "" {
		l = append(l, "computerName "+n)
	}
	if u := str(op.AdminUsername); u != "" {
		l = append(l, "adminUsername "+u)
	}
	if lc := op.LinuxConfiguration; lc != nil {
		if lc.SSH != nil && len(lc.SSH.PublicKeys) > 0 {
			l = append(l, fmt.Sprintf("%d SSH public key(s)", len(lc.SSH.PublicKeys)))
		}
		if lc.PatchSettings != nil {
			l = append(l, "patchSettings")
		}
		if lc.DisablePasswordAuthentication != nil {
			l = append(l, "disablePasswordAuthentication")
		}
	}
	if str(op.CustomData) != "" {
		l = append(l, "customData")
	}
	if len(op.Secrets) > 0 {
		l = append(l, fmt.Sprintf("%d Key Vault certificate set(s) (secrets)", len(op.Secrets)))
	}
	if len(l) == 0 {
		return ""
	}
	return strings.Join(l, ", ")
}

// diskHasADE reports whether a managed disk carries ADE settings.
func (c *Client) diskHasADE(ctx context.Context, diskID string) (bool, error) {
	d, err := c.getDisk(ctx, "read disk", diskID)
	if err != nil {
		return false, err
	}
	col := (*armcompute.EncryptionSettingsCollection)(nil)
	if d.Properties != nil {
		col = d.Properties.EncryptionSettingsCollection
	}
	return col != nil && deref(col.Enabled) && len(col.EncryptionSettings) > 0, nil
}

// checkNewDisk checks a new disk of the VM (what names its role) when it exists.
func (c *Client) checkNewDisk(ctx context.Context, vm *armcompute.VirtualMachine, what, diskID string, plan *VMPlan) error {
	op := "check " + what
	did, _ := parseID(diskID, typeDisk)
	f, err := c.compute(did.Subscription)
	if err != nil {
		return opError(op, diskID, err)
	}
	d, err := f.NewDisksClient().Get(ctx, did.ResourceGroup, did.Name, nil)
	if err != nil {
		if isNotFound(err) && plan != nil {
			plan.Checks = append(plan.Checks, fmt.Sprintf("%s %s does not exist yet; it is checked again before the VM is deleted", what, diskID))
			return nil
		}
		return opError(op, diskID, err)
	}
	p := d.Properties
	if p == nil {
		return newError(op, diskID, ErrState, "disk has no properties")
	}
	if col := p.EncryptionSettingsCollection; col != nil && len(col.EncryptionSettings) > 0 {
		return newError(op, diskID, ErrState, "disk carries ADE encryption settings")
	}
	if what == "new OS disk" {
		if err := checkDiskSecurity(vm, what, diskID, p); err != nil {
			return err
		}
	}
	if !sameLocation(str(d.Location), str(vm.Location)) {
		return newError(op, diskID, ErrState, "disk is in %s, the VM in %s", str(d.Location), str(vm.Location))
	}
	// A VM attaches only managed disks of its own subscription.
	if vid, err := parseID(str(vm.ID), typeVM); err == nil && !strings.EqualFold(vid.Subscription, did.Subscription) {
		return newError(op, diskID, ErrState, "disk is in subscription %s, the VM in %s", did.Subscription, vid.Subscription)
	}
	if vz, dz := ptrStrings(vm.Zones), ptrStrings(d.Zones); len(vz) > 0 && !slices.Equal(vz, dz) {
		return newError(op, diskID, ErrState, "disk zones %v differ from the VM's %v", dz, vz)
	}
	if str(d.ManagedBy) != "" {
		return newError(op, diskID, ErrState, "disk is attached to %s", str(d.ManagedBy))
	}
	state := armcompute.DiskState("")
	if p.DiskState != nil {
		state = *p.DiskState
	}
	if state != armcompute.DiskStateUnattached {
		if plan != nil && (state == armcompute.DiskStateReadyToUpload || state == armcompute.DiskStateActiveUpload) {
			plan.Checks = append(plan.Checks, fmt.Sprintf("%s is %s: finish the upload before re-creating the VM", what, state))
			return nil
		}
		return newError(op, diskID, ErrState, "disk is %q, want %s", state, armcompute.DiskStateUnattached)
	}
	return nil
}

// RecreateVM executes a plan: it checks that the VM has not changed and
// that the new OS disk is Unattached and free of ADE settings, runs
// PreflightVM (a refusal returns before anything changes), saves the
// rollback model to a file (Options.VMModelDir), applies DetachUpdate,
// deletes the VM (keeping NICs and disks) and creates it again from
// plan.New, retrying for Options.VMCreateRetry while Azure refuses for a
// while only (NicReservedForAnotherVm, 429, 5xx). If the creation still
// fails it restores the original VM from plan.Rollback (RestoreVM); the
// model file is removed once either VM exists, and kept otherwise. A
// failure from the preflight on is a *VMRecreateError saying which.
func (c *Client) RecreateVM(ctx context.Context, plan *VMPlan) error {
	const op = "re-create VM"
	if plan == nil || plan.New == nil {
		return errors.New("azure: re-create VM: no plan")
	}
	rid, err := parseID(plan.VMID, typeVM)
	if err != nil {
		return opError(op, plan.VMID, err)
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return opError(op, plan.VMID, err)
	}
	vms := f.NewVirtualMachinesClient()
	cur, err := vms.Get(ctx, rid.ResourceGroup, rid.Name, nil)
	if err != nil {
		return opError(op, plan.VMID, err)
	}
	if err := changedSince(&cur.VirtualMachine, plan.Etag, plan.VMID); err != nil {
		return err
	}
	if err := c.checkNewDisk(ctx, &cur.VirtualMachine, "new OS disk", plan.NewOSDiskID, nil); err != nil {
		return err
	}
	for _, s := range plan.DataDisks {
		if err := c.checkNewDisk(ctx, &cur.VirtualMachine, fmt.Sprintf("new disk for LUN %d", s.LUN), s.New, nil); err != nil {
			return err
		}
	}
	if err := c.checkQuiet(ctx, plan); err != nil {
		return err
	}
	if err := c.PreflightVM(ctx, plan); err != nil {
		return &VMRecreateError{VMID: plan.VMID, Err: err}
	}
	if plan.Rollback == nil {
		return newError(op, plan.VMID, ErrState, "the plan has no rollbackVm: plan again")
	}
	// Saved before anything changes: if this process dies between the DELETE and the PUT, the file is
	// what brings the VM back.
	model, err := c.saveModel(plan)
	if err != nil {
		return &VMRecreateError{VMID: plan.VMID, Err: opError("save the rollback model of", plan.VMID, err)}
	}
	// The licensing still to set once the new VM exists, kept until it is: a run that ends between
	// the PUT and the licensing (killed, or the extension refused) leaves it for FinishLicensing.
	pending, err := c.savePendingLicense(plan)
	if err != nil {
		os.Remove(model)
		return &VMRecreateError{VMID: plan.VMID, Err: opError("save the licensing to set on", plan.VMID, err)}
	}
	// Nothing re-created (refused, or restored): neither file is wanted.
	dropFiles := func() {
		os.Remove(model)
		if pending != "" {
			os.Remove(pending)
		}
	}
	// The VM must still be the planned one when it is deleted: the preflight takes a while, and a VM
	// edited meanwhile (a disk attached, a setting changed) would be re-created without the edit.
	etag := plan.Etag
	if plan.DetachUpdate != nil {
		// If-Match: the PATCH's data disk list would detach a disk attached since the plan.
		var uo *armcompute.VirtualMachinesClientBeginUpdateOptions
		if etag != "" {
			uo = &armcompute.VirtualMachinesClientBeginUpdateOptions{IfMatch: to.Ptr(etag)}
		}
		r, err := started(vms.BeginUpdate(ctx, rid.ResourceGroup, rid.Name, *plan.DetachUpdate, uo)).wait(ctx, c)
		if err != nil {
			dropFiles()
			var re *azcore.ResponseError
			if errors.As(err, &re) && re.StatusCode == http.StatusPreconditionFailed {
				err = newError(op, plan.VMID, ErrState, "VM changed since the plan (etag %s no longer matches): plan again", etag)
			}
			return &VMRecreateError{VMID: plan.VMID, Err: opError("set deleteOption=Detach on", plan.VMID, err)}
		}
		etag = str(r.Etag) // the PATCH's own change
	}
	// Once more right before the DELETE: the preflight and the PATCH take a while, and a VM started
	// meanwhile would be deleted running.
	if err := c.checkQuiet(ctx, plan); err != nil {
		dropFiles()
		return &VMRecreateError{VMID: plan.VMID, Err: err}
	}
	if cur, err := vms.Get(ctx, rid.ResourceGroup, rid.Name, nil); err != nil {
		dropFiles()
		return &VMRecreateError{VMID: plan.VMID, Err: opError(op, plan.VMID, err)}
	} else if err := changedSince(&cur.VirtualMachine, etag, plan.VMID); err != nil {
		dropFiles()
		return &VMRecreateError{VMID: plan.VMID, Err: err}
	}
	// From the DELETE on an interrupted run goes on to the end, bounded: a deleted VM is the worst place
	// to stop, a DELETE Azure accepted goes on without us, and a PUT already sent must not race a
	// restore.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*(c.retryBound()+recreateStepTime))
	defer cancel()
	if _, err := started(vms.BeginDelete(pctx, rid.ResourceGroup, rid.Name, nil)).wait(pctx, c); err != nil {
		derr := opError("delete VM", plan.VMID, err)
		// A failed delete (or a failed poll of it) may still delete the VM: wait for Azure's word.
		switch gone, state, gerr := c.awaitDelete(pctx, vms, rid); {
		case gone:
		case gerr == nil && !strings.EqualFold(state, "Failed"):
			// Still there and not being deleted: the DELETE was refused and nothing changed.
			dropFiles()
			return &VMRecreateError{VMID: plan.VMID, Err: derr}
		default:
			// A VM whose delete failed half-way, or whose state cannot be read: the model stays.
			return &VMRecreateError{VMID: plan.VMID, Uncertain: true, State: state, ModelFile: model, Err: errors.Join(derr, gerr)}
		}
	}
	n, err := c.putVM(pctx, vms, rid.ResourceGroup, rid.Name, *plan.New)
	if err != nil {
		switch created, state, aerr := c.awaitCreated(pctx, vms, rid, plan.NewOSDiskID); {
		case aerr != nil:
			// Neither created nor not: a restore could race the PUT, or overwrite the new VM.
			return &VMRecreateError{VMID: plan.VMID, Deleted: true, Uncertain: true, State: state, Attempts: n, ModelFile: model,
				Err: errors.Join(opError("create VM", plan.VMID, err), aerr)}
		case created:
			err = nil // the answer was lost, not the VM: a restore now would race it
		}
	}
	if err == nil {
		os.Remove(model)
		if err := c.applyLicensing(pctx, plan.VMID, str(plan.New.Location), plan.LicenseType, rid, f); err != nil {
			return &LicenseError{VMID: plan.VMID, LicenseType: plan.LicenseType, Err: err}
		}
		if pending != "" {
			os.Remove(pending)
		}
		return nil
	}
	e := &VMRecreateError{VMID: plan.VMID, Deleted: true, Attempts: n, Err: opError("create VM", plan.VMID, err)}
	if e.Restore = c.RestoreVM(pctx, plan); e.Restore == nil {
		e.Restored = true
		dropFiles()
		return e
	}
	e.ModelFile = model
	return e
}

// changedSince refuses a VM whose etag is no longer etag (an edit since it was read); an etag that
// either side lacks is no evidence.
func changedSince(vm *armcompute.VirtualMachine, etag, vmID string) error {
	if etag != "" && str(vm.Etag) != "" && str(vm.Etag) != etag {
		return newError("re-create VM", vmID, ErrState, "VM changed since the plan (etag %s, expected %s): plan again", str(vm.Etag), etag)
	}
	return nil
}

// awaitDelete reads the VM until it is gone or no longer being deleted, for as long as ctx lets it,
// after its DELETE (or the poll of it) failed: Azure may have accepted the DELETE and go on with it.
// gone is true once the VM is not found; otherwise state is its provisioningState when last read and
// err why it could not be read (nil when it was).
func (c *Client) awaitDelete(ctx context.Context, vms *armcompute.VirtualMachinesClient, rid resourceID) (gone bool, state string, err error) {
	every := c.pollOptions().Frequency
	for {
		r, gerr := vms.Get(ctx, rid.ResourceGroup, rid.Name, nil)
		switch {
		case isNotFound(gerr):
			return true, "", nil
		case gerr == nil:
			state, err = "", nil
			if r.Properties != nil {
				state = str(r.Properties.ProvisioningState)
			}
			if !strings.EqualFold(state, "Deleting") {
				return false, state, nil
			}
		default:
			err = opError("read VM", rid.ID, gerr)
		}
		if serr := sleep(ctx, every); serr != nil {
			if err == nil {
				err = opError("read VM", rid.ID, fmt.Errorf("still %s: %w", state, serr))
			}
			return false, state, err
		}
	}
}

// createdWait bounds awaitCreated: recreateStepTime (a test shortens it).
var createdWait = recreateStepTime

// awaitCreated reads the VM after a PUT of it failed, as one whose answer was lost (a broken
// connection) may still have created it: created when it exists, provisioned, on the OS disk
// osDiskID; not when it is gone, Failed or on other disks. A VM being created is waited for, and a
// read that fails is tried again, within createdWait; err says its state could not be told by then
// (state: the last one read).
func (c *Client) awaitCreated(ctx context.Context, vms *armcompute.VirtualMachinesClient, rid resourceID, osDiskID string) (created bool, state string, err error) {
	ctx, cancel := context.WithTimeout(ctx, createdWait)
	defer cancel()
	for {
		r, gerr := vms.Get(ctx, rid.ResourceGroup, rid.Name, nil)
		switch {
		case isNotFound(gerr):
			return false, "", nil
		case gerr != nil:
			err = opError("read VM", rid.ID, gerr)
		case r.Properties == nil:
			return false, "", nil
		default:
			err = nil
			switch state = str(r.Properties.ProvisioningState); {
			case strings.EqualFold(state, "Succeeded"):
				sp := r.Properties.StorageProfile
				return sp != nil && sp.OSDisk != nil && sp.OSDisk.ManagedDisk != nil && sameID(str(sp.OSDisk.ManagedDisk.ID), osDiskID), state, nil
			case !strings.EqualFold(state, "Creating") && !strings.EqualFold(state, "Updating"):
				return false, state, nil
			}
		}
		if serr := sleep(ctx, c.pollOptions().Frequency); serr != nil {
			if err == nil {
				err = opError("read VM", rid.ID, fmt.Errorf("still %s: %w", state, serr))
			}
			return false, state, err
		}
	}
}

func (c *Client) retryBound() time.Duration {
	if c.opts.VMCreateRetry > 0 {
		return c.opts.VMCreateRetry
	}
	return DefaultVMCreateRetry
}

// quietState reports whether a VM in power state ps runs no guest that could write to its disks.
func quietState(ps string) bool { return ps == "deallocated" || ps == "stopped" }

func swapOld(ss []DiskSwap) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Old)
	}
	return out
}

// checkQuiet refuses to delete a VM whose guest runs, or ran since the plan: its disks changed after
// they were read, and the new disks would lose those writes.
func (c *Client) checkQuiet(ctx context.Context, plan *VMPlan) error {
	const op = "re-create VM"
	ps, err := c.VMPowerState(ctx, plan.VMID)
	if err != nil {
		return err
	}
	if !quietState(ps) {
		return newError(op, plan.VMID, ErrState, "VM is %s: deallocate it first (writes after its disks were read would be lost)", ps)
	}
	for _, was := range plan.DiskOwners {
		now, err := c.ReadDiskOwner(ctx, was.DiskID)
		if err != nil {
			return err
		}
		if !now.OwnershipTime.Equal(was.OwnershipTime) || !sameID(now.VMID, was.VMID) {
			return newError(op, plan.VMID, ErrState, "disk %s changed hands since the plan (lastOwnershipUpdateTime %s, planned %s): the VM may have run; convert again",
				was.DiskID, now.OwnershipTime.UTC().Format(time.RFC3339), was.OwnershipTime.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// RestoreVM re-creates the original VM on its old OS disk from
// plan.Rollback, after a failed RecreateVM (which calls it) or to go back.
// A VM left in the Failed state by the failed creation is deleted first
// (its NICs and disks are kept: the new body detaches them); the PUT is
// retried as RecreateVM's is. Extensions are not re-created.
func (c *Client) RestoreVM(ctx context.Context, plan *VMPlan) error {
	const op = "restore VM"
	if plan == nil || plan.Rollback == nil {
		return errors.New("azure: restore VM: no rollback model in the plan")
	}
	rid, vms, err := c.vmsClient(plan.VMID)
	if err != nil {
		return opError(op, plan.VMID, err)
	}
	cur, err := vms.Get(ctx, rid.ResourceGroup, rid.Name, nil)
	switch {
	case err != nil && !isNotFound(err):
		return opError(op, plan.VMID, err)
	case err == nil && cur.Properties != nil && strings.EqualFold(str(cur.Properties.ProvisioningState), "Failed"):
		if _, err := started(vms.BeginDelete(ctx, rid.ResourceGroup, rid.Name, nil)).wait(ctx, c); err != nil {
			return opError("delete the failed VM before restoring", plan.VMID, err)
		}
	}
	_, err = c.putVM(ctx, vms, rid.ResourceGroup, rid.Name, *plan.Rollback)
	return opError(op, plan.VMID, err)
}

// attachModel derives a PUT body from a VM as read: a deep copy without
// read-only fields, OS profile, image reference and extensions, with
// osDiskID attached as the OS disk and every NIC and disk set to Detach on
// delete; swaps replace data disks at their LUNs. keepEncryption keeps
// osDisk.encryptionSettings (for the rollback of a dual-pass VM).
func attachModel(orig *armcompute.VirtualMachine, osDiskID string, swaps []DiskSwap, keepEncryption bool) *armcompute.VirtualMachine {
	vm := cloneVM(orig)
	vm.ID, vm.Etag, vm.ManagedBy, vm.Resources, vm.SystemData, vm.Type = nil, nil, nil, nil, nil, nil
	if id := vm.Identity; id != nil {
		id.PrincipalID, id.TenantID = nil, nil
		for k := range id.UserAssignedIdentities {
			id.UserAssignedIdentities[k] = &armcompute.UserAssignedIdentitiesValue{}
		}
	}
	p := vm.Properties
	p.InstanceView, p.ProvisioningState, p.TimeCreated, p.VMID = nil, nil, nil, nil
	p.OSProfile = nil
	sp := p.StorageProfile
	sp.ImageReference = nil
	old := sp.OSDisk
	osd := &armcompute.OSDisk{
		CreateOption:            to.Ptr(armcompute.DiskCreateOptionTypesAttach),
		OSType:                  old.OSType,
		Caching:                 old.Caching,
		WriteAcceleratorEnabled: old.WriteAcceleratorEnabled,
		DeleteOption:            to.Ptr(armcompute.DiskDeleteOptionTypesDetach),
		ManagedDisk:             &armcompute.ManagedDiskParameters{ID: to.Ptr(osDiskID)},
	}
	if did, err := parseID(osDiskID, typeDisk); err == nil {
		osd.Name = to.Ptr(did.Name)
	}
	if keepEncryption {
		osd.EncryptionSettings = old.EncryptionSettings
	}
	if sp := p.SecurityProfile; sp != nil && !keepEncryption {
		// The identity ADE used for Key Vault; nothing uses it once ADE is gone.
		sp.EncryptionIdentity = nil
	}
	sp.OSDisk = osd
	for i, d := range sp.DataDisks {
		if d == nil {
			continue
		}
		nd := &armcompute.DataDisk{
			CreateOption:            to.Ptr(armcompute.DiskCreateOptionTypesAttach),
			Lun:                     d.Lun,
			Caching:                 d.Caching,
			WriteAcceleratorEnabled: d.WriteAcceleratorEnabled,
			DeleteOption:            to.Ptr(armcompute.DiskDeleteOptionTypesDetach),
			Name:                    d.Name,
		}
		if d.ManagedDisk != nil {
			nd.ManagedDisk = &armcompute.ManagedDiskParameters{ID: d.ManagedDisk.ID}
		}
		for _, s := range swaps {
			if s.LUN == int(deref(d.Lun)) {
				nd.ManagedDisk = &armcompute.ManagedDiskParameters{ID: to.Ptr(s.New)}
				if did, err := parseID(s.New, typeDisk); err == nil {
					nd.Name = to.Ptr(did.Name)
				}
			}
		}
		sp.DataDisks[i] = nd
	}
	if np := p.NetworkProfile; np != nil {
		np.NetworkInterfaceConfigurations, np.NetworkAPIVersion = nil, nil
		for _, n := range np.NetworkInterfaces {
			if n == nil {
				continue
			}
			if n.Properties == nil {
				n.Properties = &armcompute.NetworkInterfaceReferenceProperties{}
			}
			n.Properties.DeleteOption = to.Ptr(armcompute.DeleteOptionsDetach)
		}
	}
	return vm
}

// detachUpdate returns the PATCH that makes the VM's delete keep its NICs
// and disks, or nil when every deleteOption is already Detach (the default
// for resources attached rather than created with the VM).
func detachUpdate(vm *armcompute.VirtualMachine) *armcompute.VirtualMachineUpdate {
	p := vm.Properties
	var u armcompute.VirtualMachineProperties
	need := false
	if np := p.NetworkProfile; np != nil {
		nicDelete := false
		var nics []*armcompute.NetworkInterfaceReference
		for _, n := range np.NetworkInterfaces {
			if n == nil {
				continue
			}
			var primary *bool
			if n.Properties != nil {
				primary = n.Properties.Primary
				if n.Properties.DeleteOption != nil && *n.Properties.DeleteOption == armcompute.DeleteOptionsDelete {
					nicDelete = true
				}
			}
			nics = append(nics, &armcompute.NetworkInterfaceReference{ID: n.ID, Properties: &armcompute.NetworkInterfaceReferenceProperties{Primary: primary, DeleteOption: to.Ptr(armcompute.DeleteOptionsDetach)}})
		}
		if nicDelete {
			u.NetworkProfile = &armcompute.NetworkProfile{NetworkInterfaces: nics}
			need = true
		}
	}
	sp := p.StorageProfile
	var su armcompute.StorageProfile
	if o := sp.OSDisk; o.DeleteOption != nil && *o.DeleteOption == armcompute.DiskDeleteOptionTypesDelete {
		// createOption is required in every osDisk the API is sent, a PATCH's too: the VM's own.
		su.OSDisk = &armcompute.OSDisk{CreateOption: o.CreateOption, Name: o.Name, DeleteOption: to.Ptr(armcompute.DiskDeleteOptionTypesDetach)}
		if su.OSDisk.CreateOption == nil {
			su.OSDisk.CreateOption = to.Ptr(armcompute.DiskCreateOptionTypesAttach)
		}
		if o.ManagedDisk != nil {
			su.OSDisk.ManagedDisk = &armcompute.ManagedDiskParameters{ID: o.ManagedDisk.ID}
		}
	}
	dataDelete := false
	var dds []*armcompute.DataDisk
	for _, d := range sp.DataDisks {
		if d == nil {
			continue
		}
		if d.DeleteOption != nil && *d.DeleteOption == armcompute.DiskDeleteOptionTypesDelete {
			dataDelete = true
		}
		// The data disk as it is, only deleteOption changed: createOption and lun are required.
		nd := &armcompute.DataDisk{CreateOption: d.CreateOption, Lun: d.Lun, Caching: d.Caching, Name: d.Name, WriteAcceleratorEnabled: d.WriteAcceleratorEnabled, DeleteOption: to.Ptr(armcompute.DiskDeleteOptionTypesDetach)}
		if nd.CreateOption == nil {
			nd.CreateOption = to.Ptr(armcompute.DiskCreateOptionTypesAttach)
		}
		if d.ManagedDisk != nil {
			nd.ManagedDisk = &armcompute.ManagedDiskParameters{ID: d.ManagedDisk.ID}
		}
		dds = append(dds, nd)
	}
	if dataDelete {
		su.DataDisks = dds
	}
	if su.OSDisk != nil || su.DataDisks != nil {
		u.StorageProfile = &su
		need = true
	}
	if !need {
		return nil
	}
	return &armcompute.VirtualMachineUpdate{Properties: &u}
}

// cloneVM deep-copies a VM model through its JSON form, which is complete
// for every field the service accepts.
func cloneVM(vm *armcompute.VirtualMachine) *armcompute.VirtualMachine {
	b, err := json.Marshal(vm)
	out := &armcompute.VirtualMachine{}
	if err == nil && json.Unmarshal(b, out) == nil {
		if out.Properties == nil {
			out.Properties = &armcompute.VirtualMachineProperties{}
		}
		if out.Properties.StorageProfile == nil {
			out.Properties.StorageProfile = &armcompute.StorageProfile{}
		}
		if out.Properties.StorageProfile.OSDisk == nil {
			out.Properties.StorageProfile.OSDisk = &armcompute.OSDisk{}
		}
		// A VM model always marshals; the fallback keeps the invariant
		// that Properties.StorageProfile.OSDisk is not nil.
		return out
	}
	return &armcompute.VirtualMachine{Properties: &armcompute.VirtualMachineProperties{StorageProfile: &armcompute.StorageProfile{OSDisk: &armcompute.OSDisk{}}}}
}

// readOnly are the members of a VM that the service sets and a PUT ignores;
// they are left out of the plan's diff.
var readOnly = []string{"id", "etag", "type", "systemData", "managedBy", "properties.instanceView", "properties.provisioningState", "properties.timeCreated", "properties.vmId", "identity.principalId", "identity.tenantId"}

// comparable returns the JSON form of a VM for the diff. For the original
// (summarizeExtensions) the extension resources become their names.
func comparable(vm *armcompute.VirtualMachine, summarizeExtensions bool) (map[string]any, error) {
	b, err := json.Marshal(vm)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	for _, p := range readOnly {
		deletePath(m, strings.Split(p, "."))
	}
	if id, ok := m["identity"].(map[string]any); ok {
		if uai, ok := id["userAssignedIdentities"].(map[string]any); ok {
			for k := range uai {
				uai[k] = map[string]any{}
			}
		}
	}
	if summarizeExtensions {
		if _, ok := m["resources"]; ok {
			var names []any
			for _, e := range vm.Resources {
				if e == nil {
					continue
				}
				var pub, typ string
				if e.Properties != nil {
					pub, typ = str(e.Properties.Publisher), str(e.Properties.Type)
				}
				names = append(names, fmt.Sprintf("%s (%s/%s)", extName(e), pub, typ))
			}
			m["resources"] = names
		}
	}
	return m, nil
}

func deletePath(m map[string]any, path []string) {
	for len(path) > 1 {
		next, ok := m[path[0]].(map[string]any)
		if !ok {
			return
		}
		m, path = next, path[1:]
	}
	delete(m, path[0])
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func joinPath(base, key string) string {
	if !identifier.MatchString(key) {
		k, _ := json.Marshal(key)
		return base + "[" + string(k) + "]"
	}
	if base == "" {
		return key
	}
	return base + "." + key
}

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`null`)
	}
	return b
}

// diffJSON appends the changes that turn a into b, in a stable order.
func diffJSON(path string, a, b any, out *[]Change) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := slices.Sorted(maps.Keys(am))
		for k := range bm {
			if _, ok := am[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			av, ain := am[k]
			bv, bin := bm[k]
			p := joinPath(path, k)
			switch {
			case !bin:
				*out = append(*out, Change{Op: "remove", Path: p, Old: raw(av)})
			case !ain:
				*out = append(*out, Change{Op: "add", Path: p, New: raw(bv)})
			default:
				diffJSON(p, av, bv, out)
			}
		}
		return
	}
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok {
		for i := 0; i < max(len(as), len(bs)); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(bs):
				*out = append(*out, Change{Op: "remove", Path: p, Old: raw(as[i])})
			case i >= len(as):
				*out = append(*out, Change{Op: "add", Path: p, New: raw(bs[i])})
			default:
				diffJSON(p, as[i], bs[i], out)
			}
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		*out = append(*out, Change{Op: "replace", Path: path, Old: raw(a), New: raw(b)})
	}
}

func extName(e *armcompute.VirtualMachineExtension) string {
	if n := str(e.Name); n != "" {
		return n
	}
	if id, err := parseID(str(e.ID)); err == nil {
		return id.Name
	}
	if i := strings.LastIndex(str(e.ID), "/"); i >= 0 {
		return str(e.ID)[i+1:]
	}
	return "?"
}

func ptrStrings(ps []*string) []string {
	var out []string
	for _, p := range ps {
		if p != nil {
			out = append(out, strings.ToLower(*p))
		}
	}
	slices.Sort(out)
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
