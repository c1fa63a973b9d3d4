package azurefake

import (
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// Trusted Launch in the fake, as the Compute API defines it (armcompute v8): a disk or snapshot with
// a security profile hands out its VM guest state SAS (AccessURI.SecurityDataAccessSAS) to a grant
// that sets GetSecureVMGuestStateSAS; a disk without one refuses that flag; an UploadPreparedSecure
// disk is finished (revoke) only after its guest state was written; a Trusted Launch VM needs a
// TrustedLaunch OS disk.

// GuestStateRefusal is the error code of a revoke that would finish an UploadPreparedSecure upload
// whose VM guest state was never written. Azure's own code is not documented (live to confirm).
const GuestStateRefusal = "VMGuestStateNotUploaded"

// StaticGuestStateSAS is the guest state SAS a grant of the resource name hands out when
// Cloud.GuestStateSAS is nil, signed with SASSignature.
func StaticGuestStateSAS(name string) string {
	return "https://md-impexp-abc.z12.blob.storage.azure.net/" + name + "/vmgs?sv=2018-03-28&sr=b&si=x&sig=" + SASSignature
}

// securityOf is the security type of the disk or snapshot rg/name ("" if none or absent).
func (c *Cloud) securityOf(kind, rg, name string) armcompute.DiskSecurityTypes {
	var sp *armcompute.DiskSecurityProfile
	switch kind {
	case "disk":
		if d, ok := c.Disks[Key(rg, name)]; ok && d.Properties != nil {
			sp = d.Properties.SecurityProfile
		}
	case "snapshot":
		if s, ok := c.Snapshots[Key(rg, name)]; ok && s.Properties != nil {
			sp = s.Properties.SecurityProfile
		}
	}
	if sp == nil || sp.SecurityType == nil {
		return ""
	}
	return *sp.SecurityType
}

// guestGrantRefusal: Azure refuses GetSecureVMGuestStateSAS on a resource without a security
// profile ("(BadRequest) GetSecureVMGuestStateSAS can be set only for disk with SecurityProfile",
// Azure/azure-powershell#24635's changelog). Called with the lock held.
func (c *Cloud) guestGrantRefusal(kind, rg, name string, g armcompute.GrantAccessData) string {
	if g.GetSecureVMGuestStateSAS != nil && *g.GetSecureVMGuestStateSAS && c.securityOf(kind, rg, name) == "" {
		return "BadRequest"
	}
	return ""
}

// guestGrant adds the guest state SAS to a grant that asked for it, and notes a write grant of a
// secure upload disk's guest state. Called with the lock held.
func (c *Cloud) guestGrant(kind, rg, name string, g armcompute.GrantAccessData, u *armcompute.AccessURI) {
	if g.GetSecureVMGuestStateSAS == nil || !*g.GetSecureVMGuestStateSAS || c.securityOf(kind, rg, name) == "" {
		return
	}
	if c.GuestStateSAS != nil {
		u.SecurityDataAccessSAS = to.Ptr(c.GuestStateSAS(kind, name, g))
	} else {
		u.SecurityDataAccessSAS = to.Ptr(StaticGuestStateSAS(name))
	}
	if kind == "disk" && g.Access != nil && *g.Access == armcompute.AccessLevelWrite {
		if c.guestWrite == nil {
			c.guestWrite = map[string]bool{}
		}
		c.guestWrite[Key(rg, name)] = true
	}
}

// GuestStateGranted reports whether the disk rg/name was handed a guest state write SAS.
func (c *Cloud) GuestStateGranted(rg, name string) bool {
	c.Lock()
	defer c.Unlock()
	return c.guestWrite[Key(rg, name)]
}

// secureDiskRefusal: UploadPreparedSecure needs a security type; a plain Upload disk with the
// TrustedLaunch security type is refused (the secure upload is the defined way to carry the guest
// state; that Azure refuses this body is an assumption of the fake, to confirm live).
func secureDiskRefusal(d armcompute.Disk) string {
	p := d.Properties
	if p == nil || p.CreationData == nil || p.CreationData.CreateOption == nil {
		return ""
	}
	var st armcompute.DiskSecurityTypes
	if p.SecurityProfile != nil && p.SecurityProfile.SecurityType != nil {
		st = *p.SecurityProfile.SecurityType
	}
	switch *p.CreationData.CreateOption {
	case armcompute.DiskCreateOptionUploadPreparedSecure:
		if st == "" {
			return "InvalidParameter"
		}
	case armcompute.DiskCreateOptionUpload:
		if st != "" {
			return "InvalidParameter"
		}
	}
	return ""
}

// secureRevokeRefusal: an UploadPreparedSecure upload is finished only with its VM guest state:
// written through a guest state write SAS (and, when GuestStateWritten is set, found there).
// Called with the lock held.
func (c *Cloud) secureRevokeRefusal(rg, name string, d *armcompute.Disk) string {
	p := d.Properties
	if p == nil || p.DiskState == nil || *p.DiskState != armcompute.DiskStateActiveUpload ||
		p.CreationData == nil || p.CreationData.CreateOption == nil || *p.CreationData.CreateOption != armcompute.DiskCreateOptionUploadPreparedSecure {
		return ""
	}
	if !c.guestWrite[Key(rg, name)] || (c.GuestStateWritten != nil && !c.GuestStateWritten(name)) {
		return GuestStateRefusal
	}
	return ""
}

// vmSecurityRefusal: a Trusted Launch VM whose OS disk is not a TrustedLaunch disk is refused (the
// exact code is not documented; InvalidParameter). A disk the fake does not hold is not judged.
func (c *Cloud) vmSecurityRefusal(vm *armcompute.VirtualMachine) string {
	p := vm.Properties
	if p == nil || p.SecurityProfile == nil || p.SecurityProfile.SecurityType == nil ||
		*p.SecurityProfile.SecurityType != armcompute.SecurityTypesTrustedLaunch ||
		p.StorageProfile == nil || p.StorageProfile.OSDisk == nil || p.StorageProfile.OSDisk.ManagedDisk == nil {
		return ""
	}
	id := deref(p.StorageProfile.OSDisk.ManagedDisk.ID)
	for _, d := range c.Disks {
		if strings.EqualFold(deref(d.ID), id) {
			if d.Properties == nil || d.Properties.SecurityProfile == nil || d.Properties.SecurityProfile.SecurityType == nil ||
				*d.Properties.SecurityProfile.SecurityType != armcompute.DiskSecurityTypesTrustedLaunch {
				return "the OS disk " + id + " of a TrustedLaunch VM has no TrustedLaunch security profile"
			}
		}
	}
	return ""
}
