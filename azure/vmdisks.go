package azure

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// OSDiskLUN is VMDisk.LUN for the OS disk.
const OSDiskLUN = -1

// VMDisk is a managed disk attached to a VM, with the attachment settings a
// re-created VM must give it again.
type VMDisk struct {
	// LUN is the data disk's logical unit number, OSDiskLUN for the OS disk.
	LUN     int                     `json:"lun"`
	DiskID  string                  `json:"diskId"`            // the disk's resource ID
	Name    string                  `json:"name"`              // the disk's name as the VM model gives it
	Caching armcompute.CachingTypes `json:"caching,omitempty"` // the attachment's host caching
	// WriteAccelerator is the attachment's writeAcceleratorEnabled.
	WriteAccelerator bool `json:"writeAcceleratorEnabled,omitempty"`
	// ADE reports whether the disk carries ADE encryption settings (single
	// pass: on the disk; dual pass: the OS disk's on the VM model). A
	// stamped disk is not always encrypted yet, and a PV added to an
	// encrypted VG later carries no stamp: the disk's content decides.
	ADE bool `json:"ade"`
}

// VMDisks are the managed disks of a VM: the OS disk first, then the data
// disks by LUN.
type VMDisks struct {
	VMID     string `json:"vmId"`     // the VM's resource ID
	Location string `json:"location"` // the VM's region
	// DualPass reports that the VM model's OS disk carries enabled encryption settings
	// (storageProfile.osDisk.encryptionSettings): dual-pass ADE, whose one Key Vault secret
	// unlocks every volume it encrypted, and which stamps none of the data disks. Which of those
	// are encrypted only their content (and the OS disk's crypttab) tells.
	DualPass bool     `json:"dualPass"`
	Disks    []VMDisk `json:"disks"` // the OS disk, then the data disks by LUN
	// ProvisioningState is the VM's, as the model reports it (Succeeded, Failed, Updating, …).
	ProvisioningState string `json:"provisioningState"`
}

// ReadVMDisks reads the VM vmID and each of its managed disks. A VM with an
// unmanaged (page blob) disk is refused with ErrUnsupported.
func (c *Client) ReadVMDisks(ctx context.Context, vmID string) (*VMDisks, error) {
	const op = "read disks of VM"
	rid, vms, err := c.vmsClient(vmID)
	if err != nil {
		return nil, opError(op, vmID, err)
	}
	r, err := vms.Get(ctx, rid.ResourceGroup, rid.Name, nil)
	if err != nil {
		return nil, opError(op, vmID, err)
	}
	p := r.Properties
	if p == nil || p.StorageProfile == nil || p.StorageProfile.OSDisk == nil {
		return nil, newError(op, vmID, ErrState, "VM model has no storageProfile.osDisk")
	}
	sp := p.StorageProfile
	out := &VMDisks{VMID: vmID, Location: str(r.Location), ProvisioningState: str(p.ProvisioningState)}
	osd := sp.OSDisk
	if osd.ManagedDisk == nil || str(osd.ManagedDisk.ID) == "" {
		return nil, newError(op, vmID, ErrUnsupported, "OS disk is not a managed disk")
	}
	out.DualPass = osd.EncryptionSettings != nil && deref(osd.EncryptionSettings.Enabled)
	d := VMDisk{LUN: OSDiskLUN, DiskID: str(osd.ManagedDisk.ID), Name: str(osd.Name), WriteAccelerator: deref(osd.WriteAcceleratorEnabled),
		ADE: out.DualPass}
	if osd.Caching != nil {
		d.Caching = *osd.Caching
	}
	out.Disks = append(out.Disks, d)
	for _, dd := range sp.DataDisks {
		if dd == nil {
			continue
		}
		if dd.ManagedDisk == nil || str(dd.ManagedDisk.ID) == "" {
			return nil, newError(op, vmID, ErrUnsupported, "data disk at LUN %d is not a managed disk", deref(dd.Lun))
		}
		d := VMDisk{LUN: int(deref(dd.Lun)), DiskID: str(dd.ManagedDisk.ID), Name: str(dd.Name), WriteAccelerator: deref(dd.WriteAcceleratorEnabled)}
		if dd.Caching != nil {
			d.Caching = *dd.Caching
		}
		out.Disks = append(out.Disks, d)
	}
	slices.SortStableFunc(out.Disks[1:], func(a, b VMDisk) int { return a.LUN - b.LUN })
	for i := range out.Disks {
		d := &out.Disks[i]
		if d.Name == "" {
			d.Name = DiskName(d.DiskID)
		}
		// The OS disk may already be ADE from the VM model (dual pass).
		ade, err := c.diskHasADE(ctx, d.DiskID)
		if err != nil {
			return nil, err
		}
		d.ADE = d.ADE || ade
	}
	return out, nil
}

// DiskStatus is what a rerun needs to know of a disk it may have created.
type DiskStatus struct {
	State armcompute.DiskState `json:"state"`          // the diskState (ReadyToUpload, ActiveUpload, Unattached, …)
	Tags  map[string]string    `json:"tags,omitempty"` // the disk's tags
	// ManagedBy is the VM the disk is attached to, "" if none.
	ManagedBy string `json:"managedBy,omitempty"`
	// SizeBytes is the disk's DiskSizeBytes (0 when Azure reports none).
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// SKU is the disk's storage type ("" when Azure reports none).
	SKU armcompute.DiskStorageAccountTypes `json:"sku,omitempty"`
	// DiskEncryptionSetID and EncryptionType are the disk's server-side encryption.
	DiskEncryptionSetID string                    `json:"diskEncryptionSetId,omitempty"`
	EncryptionType      armcompute.EncryptionType `json:"encryptionType,omitempty"`
	// Access is how the disk's data URLs may be reached.
	Access DataAccess `json:"access"`
}

// getDisk reads the managed disk diskID; errors are op's (ErrNotFound when there is no such disk).
func (c *Client) getDisk(ctx context.Context, op, diskID string) (*armcompute.Disk, error) {
	rid, err := parseID(diskID, typeDisk)
	if err != nil {
		return nil, opError(op, diskID, err)
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return nil, opError(op, diskID, err)
	}
	r, err := f.NewDisksClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
	if err != nil {
		return nil, opError(op, diskID, err)
	}
	return &r.Disk, nil
}

// DiskStatus reads the state and tags of diskID; ErrNotFound when there is
// no such disk.
func (c *Client) DiskStatus(ctx context.Context, diskID string) (*DiskStatus, error) {
	r, err := c.getDisk(ctx, "read disk", diskID)
	if err != nil {
		return nil, err
	}
	s := &DiskStatus{Tags: tagValues(r.Tags), ManagedBy: str(r.ManagedBy)}
	if r.Properties != nil && r.Properties.DiskState != nil {
		s.State = *r.Properties.DiskState
	}
	if r.Properties != nil && r.Properties.DiskSizeBytes != nil {
		s.SizeBytes = *r.Properties.DiskSizeBytes
	}
	if r.SKU != nil {
		s.SKU = deref(r.SKU.Name)
	}
	if r.Properties != nil && r.Properties.Encryption != nil {
		s.DiskEncryptionSetID, s.EncryptionType = str(r.Properties.Encryption.DiskEncryptionSetID), deref(r.Properties.Encryption.Type)
	}
	s.Access = diskAccess(r.Properties)
	return s, nil
}

// DiskName returns the name in a disk's resource ID.
func DiskName(diskID string) string {
	if rid, err := parseID(diskID, typeDisk); err == nil {
		return rid.Name
	}
	return diskID[strings.LastIndexByte(diskID, '/')+1:]
}

// DiskOwner says whether a disk may change while it is read: the VM it is
// attached to, that VM's power state, and when the disk's ownership last
// changed (Azure updates it when the VM starts, is deallocated, or the disk
// is attached or detached).
type DiskOwner struct {
	DiskID string `json:"diskId"` // the disk's resource ID
	// VMID is the VM the disk is attached to, "" when it is not attached.
	VMID string `json:"vmId,omitempty"`
	// PowerState is the VM's power state ("running", "deallocated", "stopped", …; "" without a VM).
	PowerState string `json:"powerState,omitempty"`
	// OwnershipTime is the disk's lastOwnershipUpdateTime (zero when Azure reports none).
	OwnershipTime time.Time `json:"lastOwnershipUpdateTime,omitzero"`
}

// Quiet reports whether nothing can write to the disk: it is not attached,
// or its VM is deallocated or stopped (the guest is not running).
func (o *DiskOwner) Quiet() bool {
	return o.VMID == "" || o.PowerState == "deallocated" || o.PowerState == "stopped"
}

// ReadDiskOwner reads who may write to diskID now.
func (c *Client) ReadDiskOwner(ctx context.Context, diskID string) (*DiskOwner, error) {
	d, err := c.getDisk(ctx, "read owner of disk", diskID)
	if err != nil {
		return nil, err
	}
	o := &DiskOwner{DiskID: diskID, VMID: str(d.ManagedBy)}
	if d.Properties != nil && d.Properties.LastOwnershipUpdateTime != nil {
		o.OwnershipTime = *d.Properties.LastOwnershipUpdateTime
	}
	if o.VMID == "" {
		return o, nil
	}
	if o.PowerState, err = c.VMPowerState(ctx, o.VMID); err != nil {
		return nil, err
	}
	return o, nil
}

// VMPowerState returns the power state of the VM from its instance view:
// the code after "PowerState/" ("running", "deallocated", "stopped",
// "starting", "stopping", "deallocating"), or "unknown".
func (c *Client) VMPowerState(ctx context.Context, vmID string) (string, error) {
	const op = "read power state of VM"
	rid, vms, err := c.vmsClient(vmID)
	if err != nil {
		return "", opError(op, vmID, err)
	}
	iv, err := vms.InstanceView(ctx, rid.ResourceGroup, rid.Name, nil)
	if err != nil {
		return "", opError(op, vmID, err)
	}
	for _, s := range iv.Statuses {
		if s != nil && strings.HasPrefix(str(s.Code), "PowerState/") {
			return strings.TrimPrefix(str(s.Code), "PowerState/"), nil
		}
	}
	return "unknown", nil
}

// DeallocateVM shuts the VM down and releases its compute (ARM virtualMachines/deallocate), waiting
// for the operation to end; its disks stay attached. The caller reads the power state after it
// (VMPowerState, ReadDiskOwner) to see the VM deallocated.
func (c *Client) DeallocateVM(ctx context.Context, vmID string) error {
	const op = "deallocate VM"
	rid, vms, err := c.vmsClient(vmID)
	if err != nil {
		return opError(op, vmID, err)
	}
	_, err = started(vms.BeginDeallocate(ctx, rid.ResourceGroup, rid.Name, nil)).wait(ctx, c)
	return opError(op, vmID, err)
}
