package azure

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

func nicID(name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Network/networkInterfaces/" + name
}

// adeVM is a dual-pass ADE VM in zone 1 with two NICs (one to be deleted
// with the VM), a data disk, an image reference, an OS profile and two
// extensions; osdisk-plain is the converted disk next to it.
func adeVM(c *cloud) {
	vmID := resID(typeVM, "vm1")
	uai := "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
	c.VMs[key(rg, "vm1")] = &armcompute.VirtualMachine{
		ID: to.Ptr(vmID), Name: to.Ptr("vm1"), Type: to.Ptr(typeVM), Etag: to.Ptr(`"7"`),
		Location: to.Ptr(region), Zones: []*string{to.Ptr("1")},
		Tags: map[string]*string{"app": to.Ptr("erp")},
		Plan: &armcompute.Plan{Name: to.Ptr("rhel-lvm89"), Product: to.Ptr("rhel-byos"), Publisher: to.Ptr("redhat")},
		Identity: &armcompute.VirtualMachineIdentity{
			Type:                   to.Ptr(armcompute.ResourceIdentityTypeUserAssigned),
			UserAssignedIdentities: map[string]*armcompute.UserAssignedIdentitiesValue{uai: {PrincipalID: to.Ptr("p-1"), ClientID: to.Ptr("c-1")}},
		},
		Properties: &armcompute.VirtualMachineProperties{
			VMID: to.Ptr("1111"), ProvisioningState: to.Ptr("Succeeded"),
			HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypesStandardD4SV3)},
			NetworkProfile: &armcompute.NetworkProfile{NetworkInterfaces: []*armcompute.NetworkInterfaceReference{
				{ID: to.Ptr(nicID("nic1")), Properties: &armcompute.NetworkInterfaceReferenceProperties{Primary: to.Ptr(true), DeleteOption: to.Ptr(armcompute.DeleteOptionsDelete)}},
				{ID: to.Ptr(nicID("nic2")), Properties: &armcompute.NetworkInterfaceReferenceProperties{Primary: to.Ptr(false)}},
			}},
			StorageProfile: &armcompute.StorageProfile{
				ImageReference: &armcompute.ImageReference{Publisher: to.Ptr("RedHat"), Offer: to.Ptr("RHEL"), SKU: to.Ptr("8-lvm-gen2"), Version: to.Ptr("latest")},
				OSDisk: &armcompute.OSDisk{
					CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage), OSType: to.Ptr(armcompute.OperatingSystemTypesLinux),
					Caching: to.Ptr(armcompute.CachingTypesReadWrite), Name: to.Ptr("osdisk"), DiskSizeGB: to.Ptr[int32](30),
					ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(resID(typeDisk, "osdisk")), StorageAccountType: to.Ptr(armcompute.StorageAccountTypesPremiumLRS)},
					EncryptionSettings: &armcompute.DiskEncryptionSettings{
						Enabled:           to.Ptr(true),
						DiskEncryptionKey: &armcompute.KeyVaultSecretReference{SecretURL: to.Ptr(secretURL("bek")), SourceVault: &armcompute.SubResource{ID: to.Ptr(vaultID("adevault"))}},
					},
				},
				DataDisks: []*armcompute.DataDisk{{
					Lun: to.Ptr[int32](0), CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesEmpty), Name: to.Ptr("data1"),
					DeleteOption: to.Ptr(armcompute.DiskDeleteOptionTypesDelete), DiskSizeGB: to.Ptr[int32](64),
					ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(resID(typeDisk, "data1"))},
				}},
			},
			OSProfile:          &armcompute.OSProfile{ComputerName: to.Ptr("vm1"), AdminUsername: to.Ptr("azureuser")},
			DiagnosticsProfile: &armcompute.DiagnosticsProfile{BootDiagnostics: &armcompute.BootDiagnostics{Enabled: to.Ptr(true)}},
			UserData:           to.Ptr("IyEvYmluL3NoCg=="),
		},
		Resources: []*armcompute.VirtualMachineExtension{
			{ID: to.Ptr(vmID + "/extensions/AzureDiskEncryptionForLinux"), Name: to.Ptr("AzureDiskEncryptionForLinux"), Properties: &armcompute.VirtualMachineExtensionProperties{
				Publisher: to.Ptr("Microsoft.Azure.Security"), Type: to.Ptr("AzureDiskEncryptionForLinux"), TypeHandlerVersion: to.Ptr("1.1"),
				Settings: map[string]any{"EncryptionOperation": "EnableEncryption", "KeyVaultURL": vaultU},
			}},
			{ID: to.Ptr(vmID + "/extensions/AzureMonitorLinuxAgent"), Name: to.Ptr("AzureMonitorLinuxAgent"), Properties: &armcompute.VirtualMachineExtensionProperties{
				Publisher: to.Ptr("Microsoft.Azure.Monitor"), Type: to.Ptr("AzureMonitorLinuxAgent"),
			}},
		},
	}
	owned := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	for _, n := range []string{"osdisk", "data1"} {
		c.Disks[key(rg, n)] = &armcompute.Disk{ID: to.Ptr(resID(typeDisk, n)), Location: to.Ptr(region), Zones: []*string{to.Ptr("1")}, ManagedBy: to.Ptr(vmID),
			Properties: &armcompute.DiskProperties{DiskState: to.Ptr(armcompute.DiskStateReserved), LastOwnershipUpdateTime: to.Ptr(owned)}}
	}
	c.Disks[key(rg, "osdisk-plain")] = &armcompute.Disk{
		ID: to.Ptr(resID(typeDisk, "osdisk-plain")), Location: to.Ptr(region), Zones: []*string{to.Ptr("1")},
		Properties: &armcompute.DiskProperties{DiskState: to.Ptr(armcompute.DiskStateUnattached)},
	}
}

func hasChange(cs []Change, op, path string) *Change {
	for i := range cs {
		if cs[i].Op == op && cs[i].Path == path {
			return &cs[i]
		}
	}
	return nil
}

func TestPlanRecreateVM(t *testing.T) {
	c := newCloud(t)
	adeVM(c)
	newDisk := resID(typeDisk, "osdisk-plain")
	plan, err := c.client().PlanRecreateVM(context.Background(), resID(typeVM, "vm1"), newDisk)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Calls) != 0 {
		t.Fatalf("planning changed something: %q", c.Calls)
	}
	if c.VMGetExpand != "userData" {
		t.Errorf("VM read without userData (expand=%q)", c.VMGetExpand)
	}
	n := plan.New
	p := n.Properties
	osd := p.StorageProfile.OSDisk
	nics := p.NetworkProfile.NetworkInterfaces
	switch {
	case str(n.Name) != "vm1" || plan.Name != "vm1" || plan.ResourceGroup != rg:
		t.Errorf("name %q/%q", str(n.Name), plan.Name)
	case str(n.Location) != region || len(n.Zones) != 1 || *n.Zones[0] != "1":
		t.Errorf("location %s zones %v", str(n.Location), n.Zones)
	case *p.HardwareProfile.VMSize != armcompute.VirtualMachineSizeTypesStandardD4SV3:
		t.Errorf("size %s", *p.HardwareProfile.VMSize)
	case len(nics) != 2 || *nics[0].ID != nicID("nic1") || *nics[1].ID != nicID("nic2") || !*nics[0].Properties.Primary || *nics[1].Properties.Primary:
		t.Errorf("NICs %+v", nics)
	case *nics[0].Properties.DeleteOption != armcompute.DeleteOptionsDetach || *nics[1].Properties.DeleteOption != armcompute.DeleteOptionsDetach:
		t.Errorf("NIC delete options not Detach")
	case *osd.CreateOption != armcompute.DiskCreateOptionTypesAttach || *osd.ManagedDisk.ID != newDisk || str(osd.Name) != "osdisk-plain" || *osd.OSType != armcompute.OperatingSystemTypesLinux:
		t.Errorf("OS disk %+v", osd)
	case osd.EncryptionSettings != nil:
		t.Errorf("encryptionSettings kept")
	case osd.ManagedDisk.StorageAccountType != nil || osd.DiskSizeGB != nil:
		t.Errorf("OS disk carries properties of the old disk")
	case p.OSProfile != nil || p.StorageProfile.ImageReference != nil:
		t.Errorf("OS profile or image reference kept")
	case n.Resources != nil || n.ID != nil || n.Etag != nil || p.VMID != nil || p.ProvisioningState != nil:
		t.Errorf("read-only fields or extensions kept")
	case str(p.UserData) != "IyEvYmluL3NoCg==" || n.Plan == nil || str(n.Tags["app"]) != "erp" || p.DiagnosticsProfile == nil:
		t.Errorf("user data, plan, tags or diagnostics lost")
	case len(p.StorageProfile.DataDisks) != 1 || *p.StorageProfile.DataDisks[0].CreateOption != armcompute.DiskCreateOptionTypesAttach || *p.StorageProfile.DataDisks[0].ManagedDisk.ID != resID(typeDisk, "data1"):
		t.Errorf("data disks %+v", p.StorageProfile.DataDisks)
	}
	for k, v := range n.Identity.UserAssignedIdentities {
		if v.PrincipalID != nil || v.ClientID != nil {
			t.Errorf("identity %s keeps read-only IDs", k)
		}
	}
	body, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"AzureDiskEncryption", "encryptionSettings", "osProfile", "imageReference", "Microsoft.Azure.Security"} {
		if strings.Contains(string(body), bad) {
			t.Errorf("new VM body contains %s", bad)
		}
	}

	// The original is recorded untouched.
	o := plan.Original.Properties
	if o.StorageProfile.OSDisk.EncryptionSettings == nil || *o.NetworkProfile.NetworkInterfaces[0].Properties.DeleteOption != armcompute.DeleteOptionsDelete || len(plan.Original.Resources) != 2 {
		t.Errorf("original model was modified")
	}
	// The rollback goes back to the old disk with its ADE settings.
	r := plan.Rollback.Properties.StorageProfile.OSDisk
	if *r.ManagedDisk.ID != resID(typeDisk, "osdisk") || r.EncryptionSettings == nil || *r.CreateOption != armcompute.DiskCreateOptionTypesAttach {
		t.Errorf("rollback OS disk %+v", r)
	}
	// Only the NIC and data disk marked Delete need the PATCH.
	u := plan.DetachUpdate
	if u == nil || u.Properties.NetworkProfile == nil || len(u.Properties.NetworkProfile.NetworkInterfaces) != 2 || u.Properties.StorageProfile.OSDisk != nil ||
		len(u.Properties.StorageProfile.DataDisks) != 1 || *u.Properties.StorageProfile.DataDisks[0].DeleteOption != armcompute.DiskDeleteOptionTypesDetach {
		t.Errorf("detach update %+v", u)
	}

	// The diff names what changes and nothing that stays.
	ch := hasChange(plan.Changes, "replace", "properties.storageProfile.osDisk.managedDisk.id")
	if ch == nil || string(ch.Old) != `"`+resID(typeDisk, "osdisk")+`"` || string(ch.New) != `"`+newDisk+`"` {
		t.Errorf("OS disk change %+v", ch)
	}
	for _, want := range []struct{ op, path string }{
		{"remove", "properties.osProfile"},
		{"remove", "properties.storageProfile.imageReference"},
		{"remove", "properties.storageProfile.osDisk.encryptionSettings"},
		{"remove", "resources"},
		{"replace", "properties.storageProfile.osDisk.createOption"},
		{"replace", "properties.networkProfile.networkInterfaces[0].properties.deleteOption"},
		{"add", "properties.networkProfile.networkInterfaces[1].properties.deleteOption"},
	} {
		if hasChange(plan.Changes, want.op, want.path) == nil {
			t.Errorf("no %s %s in changes", want.op, want.path)
		}
	}
	for _, c := range plan.Changes {
		for _, same := range []string{"name", "location", "zones", "tags", "plan", "properties.hardwareProfile", "properties.userData", "properties.networkProfile.networkInterfaces[0].id", "identity", "id", "etag", "properties.vmId"} {
			if c.Path == same || strings.HasPrefix(c.Path, same+".") || strings.HasPrefix(c.Path, same+"[") {
				t.Errorf("unexpected change %s", c)
			}
		}
	}
	if ch := hasChange(plan.Changes, "remove", "resources"); ch == nil || !strings.Contains(string(ch.Old), "AzureDiskEncryptionForLinux (Microsoft.Azure.Security/AzureDiskEncryptionForLinux)") {
		t.Errorf("extension removal %+v", ch)
	}
	if len(plan.RemovedExtensions) != 2 {
		t.Errorf("removed extensions %q", plan.RemovedExtensions)
	}
	warn := strings.Join(plan.Warnings, "\n")
	if !strings.Contains(warn, "AzureMonitorLinuxAgent") || strings.Contains(warn, "extension AzureDiskEncryption") || !strings.Contains(warn, "data disks") {
		t.Errorf("warnings %q", plan.Warnings)
	}
	// deleteOption Delete (nic1, data1) is Detach on the new VM: deleting it later would keep them.
	if !strings.Contains(warn, "deleteOption Delete of NIC nic1, data disk data1 (LUN 0) is Detach on the new VM") {
		t.Errorf("the change of deleteOption is not warned: %q", plan.Warnings)
	}
	text := plan.String()
	if !strings.Contains(text, "~ properties.storageProfile.osDisk.managedDisk.id: ") || !strings.Contains(text, "DELETE ") {
		t.Errorf("plan text:\n%s", text)
	}

	// The plan survives a JSON round trip (written by --dry-run, read back).
	js, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var back VMPlan
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(back.New)
	if string(b2) != string(body) || back.Etag != `"7"` || len(back.Changes) != len(plan.Changes) {
		t.Errorf("round trip differs")
	}
}

func TestRecreateVM(t *testing.T) {
	c := newCloud(t)
	adeVM(c)
	c.VMs[key(rg, "vm1")].Properties.StorageProfile.OSDisk.DeleteOption = to.Ptr(armcompute.DiskDeleteOptionTypesDelete)
	cl := c.client()
	ctx := context.Background()
	plan, err := cl.PlanRecreateVM(ctx, resID(typeVM, "vm1"), resID(typeDisk, "osdisk-plain"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.RecreateVM(ctx, plan); err != nil {
		t.Fatal(err)
	}
	want := []string{"VALIDATE deployment luksconv-preflight-vm1", "PATCH vm vm1", "DELETE vm vm1", "PUT vm vm1"}
	if !slices.Equal(c.Calls, want) {
		t.Fatalf("calls %q, want %q", c.Calls, want)
	}
	// ARM validated exactly the body that was PUT.
	validated := *c.Validated
	validated.Type = nil
	vb, _ := json.Marshal(validated)
	pb, _ := json.Marshal(c.VMPut)
	if string(vb) != string(pb) {
		t.Errorf("validated body\n%s\nPUT body\n%s", vb, pb)
	}
	noModelFiles(t, cl)
	if nics := c.VMPatch.Properties.NetworkProfile.NetworkInterfaces; *nics[0].Properties.DeleteOption != armcompute.DeleteOptionsDetach {
		t.Errorf("PATCH did not detach nic1")
	}
	// The PATCH sends what the model requires of each disk (the fake refuses it otherwise): the
	// data disk keeps its own createOption.
	if dd := c.VMPatch.Properties.StorageProfile.DataDisks; len(dd) != 1 || *dd[0].CreateOption != armcompute.DiskCreateOptionTypesEmpty ||
		*dd[0].DeleteOption != armcompute.DiskDeleteOptionTypesDetach {
		t.Errorf("PATCH data disks %+v", dd)
	}
	if od := c.VMPatch.Properties.StorageProfile.OSDisk; od == nil || *od.CreateOption != armcompute.DiskCreateOptionTypesFromImage || *od.DeleteOption != armcompute.DiskDeleteOptionTypesDetach {
		t.Errorf("PATCH OS disk %+v", od)
	}
	osd := c.VMPut.Properties.StorageProfile.OSDisk
	if *osd.ManagedDisk.ID != resID(typeDisk, "osdisk-plain") || osd.EncryptionSettings != nil || c.VMPut.Resources != nil {
		t.Errorf("PUT body OS disk %+v", osd)
	}
}

func TestRecreateVMRefuses(t *testing.T) {
	ctx := context.Background()
	newDisk := resID(typeDisk, "osdisk-plain")

	t.Run("VM changed", func(t *testing.T) {
		c := newCloud(t)
		adeVM(c)
		cl := c.client()
		plan, err := cl.PlanRecreateVM(ctx, resID(typeVM, "vm1"), newDisk)
		if err != nil {
			t.Fatal(err)
		}
		c.VMs[key(rg, "vm1")].Etag = to.Ptr(`"8"`)
		if err := cl.RecreateVM(ctx, plan); !errors.Is(err, ErrState) {
			t.Fatalf("err = %v", err)
		}
		if len(c.Calls) != 0 {
			t.Errorf("calls %q", c.Calls)
		}
	})
	// The VM runs, or ran since the plan: its disks changed after they were read.
	t.Run("VM running", func(t *testing.T) {
		c := newCloud(t)
		adeVM(c)
		c.PowerStates[key(rg, "vm1")] = "running"
		cl := c.client()
		plan, err := cl.PlanRecreateVM(ctx, resID(typeVM, "vm1"), newDisk)
		if err != nil {
			t.Fatal(err)
		}
		if plan.PowerState != "running" || !strings.Contains(strings.Join(plan.Checks, "\n"), "the VM is running") {
			t.Errorf("power state %q, warnings %q", plan.PowerState, plan.Warnings)
		}
		if err := cl.RecreateVM(ctx, plan); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "VM is running") {
			t.Fatalf("err = %v", err)
		}
		if len(c.Calls) != 0 {
			t.Errorf("calls %q", c.Calls)
		}
	})
	t.Run("VM ran since the plan", func(t *testing.T) {
		c := newCloud(t)
		adeVM(c)
		cl := c.client()
		plan, err := cl.PlanRecreateVM(ctx, resID(typeVM, "vm1"), newDisk)
		if err != nil {
			t.Fatal(err)
		}
		c.Disks[key(rg, "osdisk")].Properties.LastOwnershipUpdateTime = to.Ptr(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
		if err := cl.RecreateVM(ctx, plan); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "changed hands") {
			t.Fatalf("err = %v", err)
		}
		if len(c.Calls) != 0 {
			t.Errorf("calls %q", c.Calls)
		}
	})
	t.Run("upload not finished", func(t *testing.T) {
		c := newCloud(t)
		adeVM(c)
		c.Disks[key(rg, "osdisk-plain")].Properties.DiskState = to.Ptr(armcompute.DiskStateActiveUpload)
		cl := c.client()
		plan, err := cl.PlanRecreateVM(ctx, resID(typeVM, "vm1"), newDisk)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(plan.Checks, "\n"), "ActiveUpload") {
			t.Errorf("no warning: %q", plan.Checks)
		}
		if err := cl.RecreateVM(ctx, plan); !errors.Is(err, ErrState) {
			t.Fatalf("err = %v", err)
		}
		if len(c.Calls) != 0 {
			t.Errorf("calls %q", c.Calls)
		}
	})
	t.Run("new disk missing at plan time", func(t *testing.T) {
		c := newCloud(t)
		adeVM(c)
		delete(c.Disks, key(rg, "osdisk-plain"))
		cl := c.client()
		plan, err := cl.PlanRecreateVM(ctx, resID(typeVM, "vm1"), newDisk)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(plan.Checks, "\n"), "does not exist yet") {
			t.Errorf("no warning: %q", plan.Checks)
		}
		if err := cl.RecreateVM(ctx, plan); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	})
	for name, mut := range map[string]func(c *cloud){
		"new disk has ADE settings": func(c *cloud) {
			c.Disks[key(rg, "osdisk-plain")].Properties.EncryptionSettingsCollection = adeCollection(false)
		},
		"new disk in another zone": func(c *cloud) { c.Disks[key(rg, "osdisk-plain")].Zones = []*string{to.Ptr("3")} },
		"new disk attached":        func(c *cloud) { c.Disks[key(rg, "osdisk-plain")].ManagedBy = to.Ptr(resID(typeVM, "other")) },
		// NICs made from networkInterfaceConfigurations: their deleteOption (and their public IPs') is
		// set there, which the PATCH does not change: the DELETE would take them, and neither the new VM
		// nor the restore could use them.
		"NIC configuration deleted with the VM": func(c *cloud) {
			c.VMs[key(rg, "vm1")].Properties.NetworkProfile.NetworkInterfaceConfigurations = []*armcompute.VirtualMachineNetworkInterfaceConfiguration{{
				Name: to.Ptr("nic1"), Properties: &armcompute.VirtualMachineNetworkInterfaceConfigurationProperties{DeleteOption: to.Ptr(armcompute.DeleteOptionsDelete)}}}
		},
		"public IP configuration deleted with the VM": func(c *cloud) {
			c.VMs[key(rg, "vm1")].Properties.NetworkProfile.NetworkInterfaceConfigurations = []*armcompute.VirtualMachineNetworkInterfaceConfiguration{{
				Name: to.Ptr("nic1"), Properties: &armcompute.VirtualMachineNetworkInterfaceConfigurationProperties{DeleteOption: to.Ptr(armcompute.DeleteOptionsDetach),
					IPConfigurations: []*armcompute.VirtualMachineNetworkInterfaceIPConfiguration{{Name: to.Ptr("ip1"), Properties: &armcompute.VirtualMachineNetworkInterfaceIPConfigurationProperties{
						PublicIPAddressConfiguration: &armcompute.VirtualMachinePublicIPAddressConfiguration{Name: to.Ptr("pip1"),
							Properties: &armcompute.VirtualMachinePublicIPAddressConfigurationProperties{DeleteOption: to.Ptr(armcompute.DeleteOptionsDelete)}}}}}}}}
		},
		// An ephemeral OS disk lives on the host and goes with the VM: the rollback could not attach it.
		"ephemeral OS disk": func(c *cloud) {
			c.VMs[key(rg, "vm1")].Properties.StorageProfile.OSDisk.DiffDiskSettings = &armcompute.DiffDiskSettings{Option: to.Ptr(armcompute.DiffDiskOptionsLocal)}
		},
		// A detach under way: the new VM's model would attach the disk again.
		"data disk being detached": func(c *cloud) {
			c.VMs[key(rg, "vm1")].Properties.StorageProfile.DataDisks[0].ToBeDetached = to.Ptr(true)
		},
		"trusted launch VM": func(c *cloud) {
			c.VMs[key(rg, "vm1")].Properties.SecurityProfile = &armcompute.SecurityProfile{SecurityType: to.Ptr(armcompute.SecurityTypesTrustedLaunch)}
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := newCloud(t)
			adeVM(c)
			mut(c)
			if _, err := c.client().PlanRecreateVM(ctx, resID(typeVM, "vm1"), newDisk); err == nil {
				t.Fatal("planned")
			}
		})
	}
	t.Run("new disk in another subscription", func(t *testing.T) {
		c := newCloud(t)
		adeVM(c)
		other := strings.Replace(newDisk, "/subscriptions/"+sub+"/", "/subscriptions/00000000-0000-0000-0000-0000000000bb/", 1)
		if _, err := c.client().PlanRecreateVM(ctx, resID(typeVM, "vm1"), other); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "subscription") {
			t.Fatalf("planned a VM on a disk of another subscription: %v", err)
		}
	})
	t.Run("same disk", func(t *testing.T) {
		c := newCloud(t)
		adeVM(c)
		if _, err := c.client().PlanRecreateVM(ctx, resID(typeVM, "vm1"), resID(typeDisk, "OSDISK")); err == nil {
			t.Fatal("planned a swap to the current OS disk")
		}
	})
}

func TestRecreateVMCreateFailsThenRestore(t *testing.T) {
	c := newCloud(t)
	adeVM(c)
	cl := c.client()
	ctx := context.Background()
	plan, err := cl.PlanRecreateVM(ctx, resID(typeVM, "vm1"), resID(typeDisk, "osdisk-plain"))
	if err != nil {
		t.Fatal(err)
	}
	c.FailVMCreate = true
	err = cl.RecreateVM(ctx, plan)
	var ae *Error
	var re *VMRecreateError
	if !errors.As(err, &ae) || ae.Code != "OSDiskSwapNotSupportedForVMsUsingDiskEncryption" || !errors.As(err, &re) || !re.Deleted || !re.Restored ||
		!strings.Contains(err.Error(), "original VM was restored") {
		t.Fatalf("err = %v", err)
	}
	// Refused for good: one PUT, no retry, then the rollback PUT.
	want := []string{"VALIDATE deployment luksconv-preflight-vm1", "PATCH vm vm1", "DELETE vm vm1", "PUT vm vm1", "PUT vm vm1"}
	if !slices.Equal(c.Calls, want) {
		t.Fatalf("calls %q, want %q", c.Calls, want)
	}
	osd := c.VMPut.Properties.StorageProfile.OSDisk
	if *osd.ManagedDisk.ID != resID(typeDisk, "osdisk") || osd.EncryptionSettings == nil {
		t.Errorf("restore PUT OS disk %+v", osd)
	}
	vmBack(t, c, resID(typeDisk, "osdisk"))
	noModelFiles(t, cl)
	// RestoreVM by hand over the restored VM is a PUT of the same body.
	if err := cl.RestoreVM(ctx, plan); err != nil {
		t.Fatal(err)
	}
}

// TestPlanRecreateVMDisks replaces the data disk at LUN 0 too: the new VM attaches it there with the
// same caching and delete option Detach, the rollback keeps the old one; an unknown LUN, the disk
// already there, or a new disk that is attached elsewhere are refused.
func TestPlanRecreateVMDisks(t *testing.T) {
	c := newCloud(t)
	adeVM(c)
	c.VMs[key(rg, "vm1")].Properties.StorageProfile.DataDisks[0].Caching = to.Ptr(armcompute.CachingTypesReadOnly)
	c.VMs[key(rg, "vm1")].Properties.StorageProfile.DataDisks[0].WriteAcceleratorEnabled = to.Ptr(true)
	newData := resID(typeDisk, "data1-plain")
	c.Disks[key(rg, "data1-plain")] = &armcompute.Disk{ID: to.Ptr(newData), Location: to.Ptr(region), Zones: []*string{to.Ptr("1")},
		Properties: &armcompute.DiskProperties{DiskState: to.Ptr(armcompute.DiskStateUnattached)}}
	ctx := context.Background()
	vmID := resID(typeVM, "vm1")
	plan, err := c.client().PlanRecreateVMDisks(ctx, vmID, resID(typeDisk, "osdisk-plain"), map[int]string{0: newData})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.DataDisks) != 1 || plan.DataDisks[0] != (DiskSwap{LUN: 0, Old: resID(typeDisk, "data1"), New: newData}) {
		t.Errorf("swaps %+v", plan.DataDisks)
	}
	dd := plan.New.Properties.StorageProfile.DataDisks[0]
	if *dd.ManagedDisk.ID != newData || str(dd.Name) != "data1-plain" || *dd.Lun != 0 || *dd.Caching != armcompute.CachingTypesReadOnly ||
		!*dd.WriteAcceleratorEnabled || *dd.DeleteOption != armcompute.DiskDeleteOptionTypesDetach {
		t.Errorf("new data disk %+v", dd)
	}
	if rb := plan.Rollback.Properties.StorageProfile.DataDisks[0]; *rb.ManagedDisk.ID != resID(typeDisk, "data1") {
		t.Errorf("rollback data disk %s", *rb.ManagedDisk.ID)
	}
	if strings.Contains(strings.Join(plan.Warnings, "\n"), "re-attached as they are") {
		t.Errorf("warnings %q", plan.Warnings)
	}
	if _, err := c.client().PlanRecreateVMDisks(ctx, vmID, resID(typeDisk, "osdisk-plain"), map[int]string{3: newData}); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "no data disk at LUN 3") {
		t.Errorf("unknown LUN: %v", err)
	}
	if _, err := c.client().PlanRecreateVMDisks(ctx, vmID, resID(typeDisk, "osdisk-plain"), map[int]string{0: resID(typeDisk, "data1")}); !errors.Is(err, ErrState) {
		t.Errorf("same disk: %v", err)
	}
	c.Disks[key(rg, "data1-plain")].ManagedBy = to.Ptr(resID(typeVM, "other"))
	if _, err := c.client().PlanRecreateVMDisks(ctx, vmID, resID(typeDisk, "osdisk-plain"), map[int]string{0: newData}); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "new disk for LUN 0") {
		t.Errorf("attached new disk: %v", err)
	}
}

// TestPlanRecreateVMEncryptionAtHost: the new VM gets securityProfile.encryptionAtHost and loses ADE's
// encryptionIdentity; a data disk that keeps ADE settings refuses it; the preflight refuses a size
// without the EncryptionAtHostSupported capability, and ARM's validation (the fake) a subscription
// without the feature.
func TestPlanRecreateVMEncryptionAtHost(t *testing.T) {
	ctx := context.Background()
	vmID, newOS := resID(typeVM, "vm1"), resID(typeDisk, "osdisk-plain")
	newData := resID(typeDisk, "data1-plain")
	setup := func() *cloud {
		c := newCloud(t)
		adeVM(c)
		c.VMs[key(rg, "vm1")].Properties.SecurityProfile = &armcompute.SecurityProfile{
			EncryptionIdentity: &armcompute.EncryptionIdentity{UserAssignedIdentityResourceID: to.Ptr("/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ade")}}
		c.Disks[key(rg, "data1-plain")] = &armcompute.Disk{ID: to.Ptr(newData), Location: to.Ptr(region), Zones: []*string{to.Ptr("1")},
			Properties: &armcompute.DiskProperties{DiskState: to.Ptr(armcompute.DiskStateUnattached)}}
		return c
	}
	c := setup()
	plan, err := c.client().PlanRecreateVMWith(ctx, vmID, newOS, map[int]string{0: newData}, RecreateOptions{EncryptionAtHost: true})
	if err != nil {
		t.Fatal(err)
	}
	sp := plan.New.Properties.SecurityProfile
	if !plan.EncryptionAtHost || sp == nil || !deref(sp.EncryptionAtHost) || sp.EncryptionIdentity != nil {
		t.Errorf("new VM security profile %+v", sp)
	}
	if rsp := plan.Rollback.Properties.SecurityProfile; rsp == nil || rsp.EncryptionIdentity == nil || rsp.EncryptionAtHost != nil {
		t.Errorf("rollback security profile %+v", rsp)
	}
	// The fake's subscription lacks the feature: ARM's validation refuses before anything changes.
	if err := c.client().RecreateVM(ctx, plan); !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "EncryptionAtHost") {
		t.Errorf("feature not registered: %v", err)
	}
	c.EncryptionAtHostRegistered = true
	// A size without the capability: refused by the preflight's SKU check.
	for _, s := range c.ResourceSKUs {
		s.Capabilities = s.Capabilities[:1]
	}
	if err := c.client().RecreateVM(ctx, plan); !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "does not support encryption at host") {
		t.Errorf("size without the capability: %v", err)
	}
	for _, call := range c.Calls {
		if strings.Contains(call, " vm ") {
			t.Errorf("a refused preflight changed the VM: %q", c.Calls)
		}
	}

	// The ADE data disk stays attached: refused at planning.
	c = setup()
	c.Disks[key(rg, "data1")].Properties.EncryptionSettingsCollection = &armcompute.EncryptionSettingsCollection{Enabled: to.Ptr(true),
		EncryptionSettings: []*armcompute.EncryptionSettingsElement{{}}}
	if _, err := c.client().PlanRecreateVMWith(ctx, vmID, newOS, nil, RecreateOptions{EncryptionAtHost: true}); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "LUN 0 keeps ADE settings") {
		t.Errorf("ADE data disk kept: %v", err)
	}
}

// TestPlanRecreateVMLicensing: a VM from Red Hat's pay-as-you-go image (no plan, no licenseType) is
// not re-created on an upload disk without a licensing choice; payg installs the AHBForRHEL extension
// and sets the licenseType after the PUT; byos says what is lost; the image is also found through the
// OS disk's creationData when the VM has no imageReference.
func TestPlanRecreateVMLicensing(t *testing.T) {
	ctx := context.Background()
	vmID, newOS := resID(typeVM, "vm1"), resID(typeDisk, "osdisk-plain")
	payg := func() *cloud {
		c := newCloud(t)
		adeVM(c)
		c.VMs[key(rg, "vm1")].Plan = nil // RedHat/RHEL/8-lvm-gen2 without a plan: pay-as-you-go
		return c
	}
	c := payg()
	if _, err := c.client().PlanRecreateVMWith(ctx, vmID, newOS, nil, RecreateOptions{}); !errors.Is(err, ErrLicense) || !strings.Contains(err.Error(), "RHEL_BASE") {
		t.Fatalf("no choice: %v", err)
	}
	plan, err := c.client().PlanRecreateVMWith(ctx, vmID, newOS, nil, RecreateOptions{License: LicensePAYG})
	if err != nil {
		t.Fatal(err)
	}
	if plan.LicenseType != "RHEL_BASE" || !strings.Contains(plan.String(), "Licensing: RHEL pay-as-you-go through Azure Hybrid Benefit") ||
		!strings.Contains(strings.Join(plan.Steps, "\n"), "PUT extension AHBForRHEL") {
		t.Errorf("payg plan: %s", plan)
	}
	cl := c.client()
	if err := cl.RecreateVM(ctx, plan); err != nil {
		t.Fatal(err)
	}
	noModelFiles(t, cl)
	i := slices.Index(c.Calls, "PUT vm vm1")
	if i < 0 || !slices.Equal(c.Calls[i+1:], []string{"PUT extension AHBForRHEL", "PATCH vm vm1"}) {
		t.Errorf("calls %q", c.Calls)
	}
	if lt := str(c.VMs[key(rg, "vm1")].Properties.LicenseType); lt != "RHEL_BASE" {
		t.Errorf("licenseType %q", lt)
	}

	// The extension refused after the PUT: the VM stands on the new disk, and the error says so.
	c = payg()
	c.ExtensionFails = true
	if plan, err = c.client().PlanRecreateVMWith(ctx, vmID, newOS, nil, RecreateOptions{License: LicensePAYG}); err != nil {
		t.Fatal(err)
	}
	cl = c.client()
	err = cl.RecreateVM(ctx, plan)
	var le *LicenseError
	if !errors.As(err, &le) || errors.Is(err, ErrLicense) || !strings.Contains(err.Error(), "is re-created") {
		t.Errorf("extension refused: %v, want a LicenseError", err)
	} else if h := le.Hint(); !strings.Contains(h, "--license-type RHEL_BASE") {
		t.Errorf("hint %q", h)
	}
	var re *VMRecreateError
	if errors.As(err, &re) {
		t.Errorf("a VMRecreateError for a VM that was re-created: %v", err)
	}
	if vm := c.VMs[key(rg, "vm1")]; vm == nil || str(vm.Properties.StorageProfile.OSDisk.ManagedDisk.ID) != newOS {
		t.Errorf("VM not on the new OS disk after the extension failed: calls %q", c.Calls)
	}
	// The licensing stays pending for a rerun's FinishLicensing: a LicenseError while the extension is
	// refused, the licensing set (and the record gone) once it is not.
	if lt := PendingLicense(cl.opts.VMModelDir, vmID); lt != "RHEL_BASE" {
		t.Errorf("pending licensing after the failure: %q", lt)
	}
	if _, err := cl.FinishLicensing(ctx, vmID); !errors.As(err, &le) {
		t.Errorf("FinishLicensing, the extension refused: %v", err)
	}
	c.ExtensionFails = false
	if lt, err := cl.FinishLicensing(ctx, vmID); err != nil || lt != "RHEL_BASE" || str(c.VMs[key(rg, "vm1")].Properties.LicenseType) != "RHEL_BASE" {
		t.Errorf("FinishLicensing: %q %v, licenseType %q", lt, err, str(c.VMs[key(rg, "vm1")].Properties.LicenseType))
	}
	noModelFiles(t, cl)
	if lt, err := cl.FinishLicensing(ctx, vmID); err != nil || lt != "" {
		t.Errorf("FinishLicensing with nothing pending: %q %v", lt, err)
	}

	c = payg()
	plan, err = c.client().PlanRecreateVMWith(ctx, vmID, newOS, nil, RecreateOptions{License: LicenseBYOS})
	if err != nil || plan.LicenseType != "" || !strings.Contains(strings.Join(plan.Warnings, "\n"), "RHUI") {
		t.Errorf("byos: %v %+v", err, plan)
	}

	// No imageReference on the VM: the OS disk's creationData names the image (SAP HA here).
	c = payg()
	c.VMs[key(rg, "vm1")].Properties.StorageProfile.ImageReference = nil
	c.Disks[key(rg, "osdisk")].Properties.CreationData = &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionFromImage),
		ImageReference: &armcompute.ImageDiskReference{ID: to.Ptr("/Subscriptions/" + sub + "/Providers/Microsoft.Compute/Locations/westeurope/Publishers/RedHat/ArtifactTypes/VMImage/Offers/RHEL-SAP-HA/Skus/8_6/Versions/8.6.2022")}}
	plan, err = c.client().PlanRecreateVMWith(ctx, vmID, newOS, nil, RecreateOptions{License: LicensePAYG})
	if err != nil || plan.LicenseType != "RHEL_SAPHA" || !strings.Contains(plan.Licensing, "OS disk creationData") {
		t.Errorf("image from the disk: %v %+v", err, plan)
	}
	// A BYOS image (with its plan) needs no choice.
	c = newCloud(t)
	adeVM(c)
	if _, err := c.client().PlanRecreateVMWith(ctx, vmID, newOS, nil, RecreateOptions{}); err != nil {
		t.Errorf("BYOS image: %v", err)
	}
}

// TestPlanRecreateVMOSProfile: the osProfile settings the re-created VM cannot carry are named, and
// Backup / Site Recovery protection is a to-do after the swap.
func TestPlanRecreateVMOSProfile(t *testing.T) {
	c := newCloud(t)
	adeVM(c)
	op := c.VMs[key(rg, "vm1")].Properties.OSProfile
	op.LinuxConfiguration = &armcompute.LinuxConfiguration{SSH: &armcompute.SSHConfiguration{PublicKeys: []*armcompute.SSHPublicKey{{Path: to.Ptr("/home/azureuser/.ssh/authorized_keys")}}},
		PatchSettings: &armcompute.LinuxPatchSettings{}}
	op.CustomData = to.Ptr("I2Nsb3VkLWNvbmZpZw==")
	plan, err := c.client().PlanRecreateVM(context.Background(), resID(typeVM, "vm1"), resID(typeDisk, "osdisk-plain"))
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(plan.Warnings, "\n")
	for _, want := range []string{"computerName vm1", "adminUsername azureuser", "1 SSH public key(s)", "patchSettings", "customData", "Azure Site Recovery"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if strings.Contains(w, "I2Nsb3Vk") {
		t.Error("a warning holds the customData itself")
	}
}

// TestPlanRecreateVMSUSEPayg: a VM from SUSE's pay-as-you-go image (no plan, no licenseType) loses its
// SLES billing and SUSE's update service on an upload disk, as a RHEL one does: the plan warns, from the
// VM's imageReference or its OS disk's creationData; a BYOS image or a licenseType needs no warning.
func TestPlanRecreateVMSUSEPayg(t *testing.T) {
	ctx := context.Background()
	vmID, newOS := resID(typeVM, "vm1"), resID(typeDisk, "osdisk-plain")
	for _, tc := range []struct {
		name string
		set  func(c *cloud)
		warn bool
	}{
		{"imageReference", func(c *cloud) {}, true},
		{"OS disk creationData", func(c *cloud) {
			c.VMs[key(rg, "vm1")].Properties.StorageProfile.ImageReference = nil
			c.Disks[key(rg, "osdisk")].Properties.CreationData = &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionFromImage),
				ImageReference: &armcompute.ImageDiskReference{ID: to.Ptr("/Subscriptions/" + sub + "/Providers/Microsoft.Compute/Locations/westeurope/Publishers/SUSE/ArtifactTypes/VMImage/Offers/sles-sap-15-sp5/Skus/gen2/Versions/2024.01.01")}}
		}, true},
		{"BYOS image", func(c *cloud) {
			c.VMs[key(rg, "vm1")].Properties.StorageProfile.ImageReference.Offer = to.Ptr("sles-15-sp5-byos")
		}, false},
		{"licenseType", func(c *cloud) { c.VMs[key(rg, "vm1")].Properties.LicenseType = to.Ptr("SLES_STANDARD") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t)
			adeVM(c)
			vm := c.VMs[key(rg, "vm1")]
			vm.Plan = nil
			vm.Properties.StorageProfile.ImageReference = &armcompute.ImageReference{Publisher: to.Ptr("SUSE"), Offer: to.Ptr("sles-15-sp5"), SKU: to.Ptr("gen2"), Version: to.Ptr("latest")}
			tc.set(c)
			plan, err := c.client().PlanRecreateVM(ctx, vmID, newOS)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(strings.Join(plan.Warnings, "\n"), "SUSE's pay-as-you-go image"); got != tc.warn {
				t.Errorf("warned %v, want %v: %q", got, tc.warn, plan.Warnings)
			}
		})
	}
}

// TestPlanRecreateVMUbuntuPro: a VM from a Canonical Ubuntu Pro image (its offer or its SKU says so)
// loses its Pro billing on an upload disk: the plan warns and names licenseType UBUNTU_PRO; an Ubuntu
// Server image, or a VM that has a licenseType already, needs no warning.
func TestPlanRecreateVMUbuntuPro(t *testing.T) {
	ctx := context.Background()
	vmID, newOS := resID(typeVM, "vm1"), resID(typeDisk, "osdisk-plain")
	for _, tc := range []struct {
		offer, sku, license string
		warn                bool
	}{
		{"0001-com-ubuntu-pro-jammy", "pro-22_04-lts-gen2", "", true},
		{"0001-com-ubuntu-pro-focal-fips", "pro-fips-20_04-gen2", "", true},
		{"ubuntu-24_04-lts", "ubuntu-pro", "", true},
		{"ubuntu-24_04-lts", "server", "", false},
		{"0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "", false},
		{"ubuntu-24_04-lts", "server", "UBUNTU_PRO", false},
		{"0001-com-ubuntu-pro-jammy", "pro-22_04-lts-gen2", "UBUNTU_PRO", false},
	} {
		t.Run(tc.offer+"/"+tc.sku+"/"+tc.license, func(t *testing.T) {
			c := newCloud(t)
			adeVM(c)
			vm := c.VMs[key(rg, "vm1")]
			vm.Plan = nil
			vm.Properties.StorageProfile.ImageReference = &armcompute.ImageReference{Publisher: to.Ptr("Canonical"), Offer: to.Ptr(tc.offer), SKU: to.Ptr(tc.sku), Version: to.Ptr("latest")}
			if tc.license != "" {
				vm.Properties.LicenseType = to.Ptr(tc.license)
			}
			plan, err := c.client().PlanRecreateVM(ctx, vmID, newOS)
			if err != nil {
				t.Fatal(err)
			}
			w := strings.Join(plan.Warnings, "\n")
			if got := strings.Contains(w, "Ubuntu Pro image"); got != tc.warn || (got && !strings.Contains(w, "--license-type UBUNTU_PRO")) {
				t.Errorf("warned %v, want %v: %q", got, tc.warn, plan.Warnings)
			}
		})
	}
}

// TestPlanRecreateVMSpot: a Spot VM keeps its priority, eviction policy and max price, and the plan warns
// that its re-creation, and a restore, need Spot capacity at the PUT, which the preflight cannot check.
func TestPlanRecreateVMSpot(t *testing.T) {
	c := newCloud(t)
	adeVM(c)
	p := c.VMs[key(rg, "vm1")].Properties
	p.Priority, p.EvictionPolicy = to.Ptr(armcompute.VirtualMachinePriorityTypesSpot), to.Ptr(armcompute.VirtualMachineEvictionPolicyTypesDeallocate)
	p.BillingProfile = &armcompute.BillingProfile{MaxPrice: to.Ptr(0.25)}
	plan, err := c.client().PlanRecreateVM(context.Background(), resID(typeVM, "vm1"), resID(typeDisk, "osdisk-plain"))
	if err != nil {
		t.Fatal(err)
	}
	np := plan.New.Properties
	if deref(np.Priority) != armcompute.VirtualMachinePriorityTypesSpot || deref(np.EvictionPolicy) != armcompute.VirtualMachineEvictionPolicyTypesDeallocate || deref(np.BillingProfile.MaxPrice) != 0.25 {
		t.Errorf("Spot settings not kept: %+v", np)
	}
	if !strings.Contains(strings.Join(plan.Warnings, "\n"), "Spot capacity") {
		t.Errorf("no Spot warning: %q", plan.Warnings)
	}
}
