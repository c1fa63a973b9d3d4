package azurefake

import (
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// A mixed fleet of ADE VMs, disks and snapshots for the inventory tests (Resource Graph reads it
// through graph.go). In the Cloud's subscription, resource group FleetRG:
//
//	rhel-os     RHEL 8, ADE VolumeType OS, deallocated: OS disk 64 GiB stamped, LUN 0 32 GiB not
//	rhel-all    RHEL 9, VolumeType All (KEK-wrapped), running: OS 64, LUN 0 128, LUN 1 256 GiB stamped,
//	            and a monitoring extension beside ADE's
//	rhel-data   RHEL 8, VolumeType Data, deallocated: OS 64 GiB not stamped, LUN 0 512 and LUN 3 100 GiB stamped
//	rhel-tl     RHEL 9 Trusted Launch, VolumeType OS, deallocated: OS 64 GiB stamped (TrustedLaunch disk)
//	ubuntu-cvm  Ubuntu 22.04 Confidential VM, VolumeType Data, running: OS 30 GiB, LUN 0 64 GiB stamped
//	rhel-des    RHEL 8, VolumeType OS, deallocated: OS 64 GiB stamped, under a DES of the other subscription
//	win         Windows Server 2022, AzureDiskEncryption (BitLocker) All, deallocated: OS 127 GiB stamped
//	plain       RHEL 8 without ADE (no extension, no stamp)
//	orphan-ade  an unattached stamped disk, 200 GiB; orphan-plain an unattached disk without ADE
//	rhel-os-snap  an incremental snapshot of rhel-os's OS disk, stamped; plain-snap one without ADE
//	rhel-vmss   a Uniform scale set of 3 with ADE's extension in its model (VolumeType All); rhel-flex a
//	            Flexible one with it; plain-vmss a Uniform one without
//
// In the other subscription, resource group FleetOtherRG: ubuntu (Ubuntu 22.04, VolumeType All,
// running: OS 30 and LUN 0 200 GiB stamped, under a DES of its own subscription) and the DES
// FleetOtherDES. In a third subscription, FleetOutsideSub, an ADE VM "elsewhere" that a query
// scoped to the first two must not return.
//
// Every ADE extension's protected settings hold FleetProtectedSecret, which Resource Graph never
// returns and an inventory must never print.

// Names of the fleet's places.
const (
	FleetRG              = "rg-fleet"
	FleetOtherRG         = "rg-b"
	FleetOutsideSub      = "00000000-0000-0000-0000-0000000000cc"
	FleetVault           = "https://fleetvault.vault.azure.net"
	FleetProtectedSecret = "PROTECTEDsecretPROTECTED"
)

// FleetOtherDES is the DES of the fleet's other subscription.
func FleetOtherDES(otherSub string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-keys/providers/Microsoft.Compute/diskEncryptionSets/des-b", otherSub)
}

// FleetID is the resource ID of a fleet resource; typ is "disks", "snapshots" or "virtualMachines".
func FleetID(sub, rg, typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/%s/%s", sub, rg, typ, name)
}

// fleetDisk is one disk of a fleet VM.
type fleetDisk struct {
	name string
	lun  int // -1: the OS disk
	gib  int32
	ade  bool
	kek  bool
	des  string
	tl   bool // TrustedLaunch security type
}

// fleetVM is one VM of the fleet.
type fleetVM struct {
	sub, rg, name string
	power         string
	image         *armcompute.ImageReference
	os            armcompute.OperatingSystemTypes
	security      armcompute.SecurityTypes
	extType       string // "" without ADE extension
	volumeType    string
	kek           bool
	disks         []fleetDisk
	otherExt      bool // a monitoring extension besides ADE's
}

func image(publisher, offer, sku string) *armcompute.ImageReference {
	return &armcompute.ImageReference{Publisher: to.Ptr(publisher), Offer: to.Ptr(offer), SKU: to.Ptr(sku), Version: to.Ptr("latest")}
}

// AddFleet adds the mixed fleet to the cloud: the Cloud's subscription and otherSub (see above).
func (c *Cloud) AddFleet(otherSub string) {
	c.Lock()
	defer c.Unlock()
	sub := c.Subscription
	rhel8, rhel9 := image("RedHat", "RHEL", "8-lvm-gen2"), image("RedHat", "RHEL", "9-lvm-gen2")
	ubuntu := image("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")
	linuxADE := "AzureDiskEncryptionForLinux"
	otherDES := FleetOtherDES(otherSub)
	vms := []fleetVM{
		{sub: sub, rg: FleetRG, name: "rhel-os", power: "deallocated", image: rhel8, extType: linuxADE, volumeType: "OS",
			disks: []fleetDisk{{name: "rhel-os-osdisk", lun: -1, gib: 64, ade: true}, {name: "rhel-os-data0", lun: 0, gib: 32}}},
		{sub: sub, rg: FleetRG, name: "rhel-all", power: "running", image: rhel9, extType: linuxADE, volumeType: "All", kek: true, otherExt: true,
			disks: []fleetDisk{{name: "rhel-all-osdisk", lun: -1, gib: 64, ade: true, kek: true}, {name: "rhel-all-data0", lun: 0, gib: 128, ade: true, kek: true},
				{name: "rhel-all-data1", lun: 1, gib: 256, ade: true, kek: true}}},
		{sub: sub, rg: FleetRG, name: "rhel-data", power: "deallocated", image: rhel8, extType: linuxADE, volumeType: "Data",
			disks: []fleetDisk{{name: "rhel-data-osdisk", lun: -1, gib: 64}, {name: "rhel-data-data0", lun: 0, gib: 512, ade: true},
				{name: "rhel-data-data3", lun: 3, gib: 100, ade: true}}},
		{sub: sub, rg: FleetRG, name: "rhel-tl", power: "deallocated", image: rhel9, security: armcompute.SecurityTypesTrustedLaunch, extType: linuxADE, volumeType: "OS",
			disks: []fleetDisk{{name: "rhel-tl-osdisk", lun: -1, gib: 64, ade: true, tl: true}}},
		{sub: sub, rg: FleetRG, name: "ubuntu-cvm", power: "running", image: image("Canonical", "0001-com-ubuntu-confidential-vm-jammy", "22_04-lts-cvm"),
			security: armcompute.SecurityTypesConfidentialVM, extType: linuxADE, volumeType: "Data",
			disks: []fleetDisk{{name: "ubuntu-cvm-osdisk", lun: -1, gib: 30}, {name: "ubuntu-cvm-data0", lun: 0, gib: 64, ade: true}}},
		{sub: sub, rg: FleetRG, name: "rhel-des", power: "deallocated", image: rhel8, extType: linuxADE, volumeType: "OS",
			disks: []fleetDisk{{name: "rhel-des-osdisk", lun: -1, gib: 64, ade: true, des: otherDES}}},
		{sub: sub, rg: FleetRG, name: "win", power: "deallocated", image: image("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter"),
			os: armcompute.OperatingSystemTypesWindows, extType: "AzureDiskEncryption", volumeType: "All",
			disks: []fleetDisk{{name: "win-osdisk", lun: -1, gib: 127, ade: true}}},
		{sub: sub, rg: FleetRG, name: "plain", power: "running", image: rhel8,
			disks: []fleetDisk{{name: "plain-osdisk", lun: -1, gib: 64}}},
		{sub: otherSub, rg: FleetOtherRG, name: "ubuntu", power: "running", image: ubuntu, extType: linuxADE, volumeType: "All",
			disks: []fleetDisk{{name: "ubuntu-osdisk", lun: -1, gib: 30, ade: true, des: otherDES}, {name: "ubuntu-data0", lun: 0, gib: 200, ade: true, des: otherDES}}},
		{sub: FleetOutsideSub, rg: "rg-c", name: "elsewhere", power: "running", image: rhel8, extType: linuxADE, volumeType: "OS",
			disks: []fleetDisk{{name: "elsewhere-osdisk", lun: -1, gib: 64, ade: true}}},
	}
	for _, v := range vms {
		c.addFleetVM(v)
	}
	c.Disks[Key(FleetRG, "orphan-ade")] = fleetDiskModel(sub, FleetRG, fleetDisk{name: "orphan-ade", lun: 0, gib: 200, ade: true}, "", armcompute.OperatingSystemTypesLinux)
	c.Disks[Key(FleetRG, "orphan-plain")] = fleetDiskModel(sub, FleetRG, fleetDisk{name: "orphan-plain", lun: 0, gib: 10}, "", armcompute.OperatingSystemTypesLinux)
	osDisk := c.Disks[Key(FleetRG, "rhel-os-osdisk")]
	snap := func(name string, ade bool) *armcompute.Snapshot {
		s := &armcompute.Snapshot{ID: to.Ptr(FleetID(sub, FleetRG, "snapshots", name)), Name: to.Ptr(name), Location: to.Ptr(Region),
			SKU: &armcompute.SnapshotSKU{Name: to.Ptr(armcompute.SnapshotStorageAccountTypesStandardLRS)},
			Properties: &armcompute.SnapshotProperties{
				CreationData:  &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: osDisk.ID},
				DiskSizeGB:    to.Ptr[int32](64),
				DiskSizeBytes: to.Ptr(int64(64) << 30),
				Incremental:   to.Ptr(true),
				OSType:        to.Ptr(armcompute.OperatingSystemTypesLinux),
			}}
		if ade {
			s.Properties.EncryptionSettingsCollection = osDisk.Properties.EncryptionSettingsCollection
		}
		return s
	}
	c.Snapshots[Key(FleetRG, "rhel-os-snap")] = snap("rhel-os-snap", true)
	c.Snapshots[Key(FleetRG, "plain-snap")] = snap("plain-snap", false)
	vmss := func(name string, mode armcompute.OrchestrationMode, ade bool) *armcompute.VirtualMachineScaleSet {
		ss := &armcompute.VirtualMachineScaleSet{ID: to.Ptr(FleetID(sub, FleetRG, "virtualMachineScaleSets", name)), Name: to.Ptr(name), Location: to.Ptr(Region),
			SKU:        &armcompute.SKU{Name: to.Ptr("Standard_D4s_v5"), Capacity: to.Ptr[int64](3)},
			Properties: &armcompute.VirtualMachineScaleSetProperties{OrchestrationMode: to.Ptr(mode), VirtualMachineProfile: &armcompute.VirtualMachineScaleSetVMProfile{}}}
		if ade {
			ss.Properties.VirtualMachineProfile.ExtensionProfile = &armcompute.VirtualMachineScaleSetExtensionProfile{Extensions: []*armcompute.VirtualMachineScaleSetExtension{{
				Name: to.Ptr(linuxADE), Properties: &armcompute.VirtualMachineScaleSetExtensionProperties{Publisher: to.Ptr("Microsoft.Azure.Security"),
					Type: to.Ptr(linuxADE), TypeHandlerVersion: to.Ptr("1.1"), Settings: map[string]any{"VolumeType": "All", "KeyVaultURL": FleetVault + "/"},
					ProtectedSettings: map[string]any{"Passphrase": FleetProtectedSecret}}}}}
		}
		return ss
	}
	c.ScaleSets[Key(FleetRG, "rhel-vmss")] = vmss("rhel-vmss", armcompute.OrchestrationModeUniform, true)
	c.ScaleSets[Key(FleetRG, "rhel-flex")] = vmss("rhel-flex", armcompute.OrchestrationModeFlexible, true)
	c.ScaleSets[Key(FleetRG, "plain-vmss")] = vmss("plain-vmss", armcompute.OrchestrationModeUniform, false)
}

func (c *Cloud) addFleetVM(v fleetVM) {
	vmID := FleetID(v.sub, v.rg, "virtualMachines", v.name)
	osType := v.os
	if osType == "" {
		osType = armcompute.OperatingSystemTypesLinux
	}
	sp := &armcompute.StorageProfile{ImageReference: v.image}
	for _, d := range v.disks {
		model := fleetDiskModel(v.sub, v.rg, d, vmID, osType)
		if v.power == "running" {
			model.Properties.DiskState = to.Ptr(armcompute.DiskStateAttached)
		}
		c.Disks[Key(v.rg, d.name)] = model
		md := &armcompute.ManagedDiskParameters{ID: model.ID, StorageAccountType: to.Ptr(armcompute.StorageAccountTypesPremiumLRS)}
		if d.des != "" {
			md.DiskEncryptionSet = &armcompute.DiskEncryptionSetParameters{ID: to.Ptr(d.des)}
		}
		if d.lun < 0 {
			sp.OSDisk = &armcompute.OSDisk{Name: to.Ptr(d.name), OSType: to.Ptr(osType), CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage),
				DiskSizeGB: to.Ptr(d.gib), ManagedDisk: md, Caching: to.Ptr(armcompute.CachingTypesReadWrite)}
			continue
		}
		sp.DataDisks = append(sp.DataDisks, &armcompute.DataDisk{Name: to.Ptr(d.name), Lun: to.Ptr(int32(d.lun)), CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesAttach),
			DiskSizeGB: to.Ptr(d.gib), ManagedDisk: md, Caching: to.Ptr(armcompute.CachingTypesNone)})
	}
	vm := &armcompute.VirtualMachine{ID: to.Ptr(vmID), Name: to.Ptr(v.name), Location: to.Ptr(Region), Zones: []*string{to.Ptr("1")},
		Properties: &armcompute.VirtualMachineProperties{
			HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypesStandardD4SV3)},
			StorageProfile:  sp,
		}}
	if v.security != "" {
		vm.Properties.SecurityProfile = &armcompute.SecurityProfile{SecurityType: to.Ptr(v.security),
			UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to.Ptr(true), VTpmEnabled: to.Ptr(true)}}
	}
	if v.extType != "" {
		settings := map[string]any{"EncryptionOperation": "EnableEncryption", "KeyVaultURL": FleetVault + "/",
			"KeyVaultResourceId": fleetVaultID(v.sub), "VolumeType": v.volumeType, "SequenceVersion": "b4c3f1a0"}
		if v.kek {
			settings["KeyEncryptionKeyURL"] = FleetVault + "/keys/" + KEKName + "/" + KEKVersion
			settings["KeyEncryptionAlgorithm"] = "RSA-OAEP"
		}
		vm.Resources = append(vm.Resources, &armcompute.VirtualMachineExtension{ID: to.Ptr(vmID + "/extensions/" + v.extType), Name: to.Ptr(v.extType),
			Location: to.Ptr(Region),
			Properties: &armcompute.VirtualMachineExtensionProperties{Publisher: to.Ptr("Microsoft.Azure.Security"), Type: to.Ptr(v.extType),
				TypeHandlerVersion: to.Ptr("1.1"), Settings: settings, ProtectedSettings: map[string]any{"Passphrase": FleetProtectedSecret},
				ProvisioningState: to.Ptr("Succeeded")}})
	}
	if v.otherExt {
		vm.Resources = append(vm.Resources, &armcompute.VirtualMachineExtension{ID: to.Ptr(vmID + "/extensions/AzureMonitorLinuxAgent"), Name: to.Ptr("AzureMonitorLinuxAgent"),
			Properties: &armcompute.VirtualMachineExtensionProperties{Publisher: to.Ptr("Microsoft.Azure.Monitor"), Type: to.Ptr("AzureMonitorLinuxAgent"),
				TypeHandlerVersion: to.Ptr("1.0"), Settings: map[string]any{"VolumeType": "All"}}})
	}
	c.VMs[Key(v.rg, v.name)] = vm
	c.PowerStates[Key(v.rg, v.name)] = v.power
}

func fleetVaultID(sub string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-keys/providers/Microsoft.KeyVault/vaults/fleetvault", sub)
}

// fleetDiskModel is the managed disk d of the VM vmID ("" for an unattached disk).
func fleetDiskModel(sub, rg string, d fleetDisk, vmID string, osType armcompute.OperatingSystemTypes) *armcompute.Disk {
	id := FleetID(sub, rg, "disks", d.name)
	p := &armcompute.DiskProperties{
		DiskSizeGB: to.Ptr(d.gib), DiskSizeBytes: to.Ptr(int64(d.gib) << 30), DiskState: to.Ptr(armcompute.DiskStateReserved),
		Encryption:   &armcompute.Encryption{Type: to.Ptr(armcompute.EncryptionTypeEncryptionAtRestWithPlatformKey)},
		CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)},
	}
	if d.lun < 0 {
		p.OSType = to.Ptr(osType)
		p.CreationData.CreateOption = to.Ptr(armcompute.DiskCreateOptionFromImage)
	}
	if vmID == "" {
		p.DiskState = to.Ptr(armcompute.DiskStateUnattached)
	}
	if d.des != "" {
		p.Encryption = &armcompute.Encryption{Type: to.Ptr(armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey), DiskEncryptionSetID: to.Ptr(d.des)}
	}
	if d.tl {
		p.SecurityProfile = &armcompute.DiskSecurityProfile{SecurityType: to.Ptr(armcompute.DiskSecurityTypesTrustedLaunch)}
	}
	if d.ade {
		e := &armcompute.EncryptionSettingsElement{DiskEncryptionKey: &armcompute.KeyVaultAndSecretReference{
			SecretURL: to.Ptr(FleetVault + "/secrets/" + d.name + "-bek/0123456789abcdef"), SourceVault: &armcompute.SourceVault{ID: to.Ptr(fleetVaultID(sub))}}}
		if d.kek {
			e.KeyEncryptionKey = &armcompute.KeyVaultAndKeyReference{KeyURL: to.Ptr(FleetVault + "/keys/" + KEKName + "/" + KEKVersion),
				SourceVault: &armcompute.SourceVault{ID: to.Ptr(fleetVaultID(sub))}}
		}
		p.EncryptionSettingsCollection = &armcompute.EncryptionSettingsCollection{Enabled: to.Ptr(true), EncryptionSettingsVersion: to.Ptr("1.1"),
			EncryptionSettings: []*armcompute.EncryptionSettingsElement{e}}
	}
	m := &armcompute.Disk{ID: to.Ptr(id), Name: to.Ptr(d.name), Location: to.Ptr(Region), Zones: []*string{to.Ptr("1")},
		SKU: &armcompute.DiskSKU{Name: to.Ptr(armcompute.DiskStorageAccountTypesPremiumLRS)}, Properties: p}
	if vmID != "" {
		m.ManagedBy = to.Ptr(vmID)
	}
	return m
}
