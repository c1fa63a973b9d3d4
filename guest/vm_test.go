package guest

import (
	"reflect"
	"strings"
	"testing"
)

// vmCrypttab is an OS disk's crypttab after ADE encrypted the whole VM (ade-internals §10.2): the OS
// volume (no trailing newline in ADE's own writes is covered elsewhere), data volumes on a whole disk,
// on a partition and with a detached header, the resource disk, and a line of the administrator's.
const vmCrypttab = "osencrypt /dev/disk/by-partuuid/0a1b2c3d-0000-4000-8000-000000000004 /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader\n" +
	"#This line was added by Azure Disk Encryption\n" +
	"6f1c2a44-1b7a-4a55-9d2e-0c8f1e2d3a41 /dev/disk/azure/scsi1/lun0 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_0 luks,nofail\n" +
	"#This line was added by Azure Disk Encryption\n" +
	"9a0e2b33-55c1-4f6e-8d77-1e2f3a4b5c62 /dev/disk/azure/scsi1/lun1-part1 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_1 luks,nofail\n" +
	"#This line was added by Azure Disk Encryption\n" +
	"c3d4e5f6-7788-4999-aaaa-bbbbccccdddd UUID=11111111-2222-4333-8444-555566667777 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_6 luks,nofail,header=/var/lib/azure_disk_encryption_config/azureluksheaderc3d4e5f6-7788-4999-aaaa-bbbbccccdddd\n" +
	"resourceencrypt /dev/disk/azure/resource-part1 /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,nofail\n" +
	"home /dev/sdz1 /root/home.key luks\n"

func TestParseCrypttab(t *testing.T) {
	got := ParseCrypttab([]byte(vmCrypttab))
	type row struct {
		line                    int
		mapper, device, header  string
		ade                     bool
		lun, partition, options int
	}
	var rows []row
	for _, e := range got {
		rows = append(rows, row{e.Line, e.Mapper, e.Device, e.Header, e.ADE, e.LUN, e.Partition, len(e.Options)})
	}
	want := []row{
		{1, "osencrypt", "/dev/disk/by-partuuid/0a1b2c3d-0000-4000-8000-000000000004", "/boot/luks/osluksheader", true, -1, 0, 3},
		{3, "6f1c2a44-1b7a-4a55-9d2e-0c8f1e2d3a41", "/dev/disk/azure/scsi1/lun0", "", true, 0, 0, 2},
		{5, "9a0e2b33-55c1-4f6e-8d77-1e2f3a4b5c62", "/dev/disk/azure/scsi1/lun1-part1", "", true, 1, 1, 2},
		{7, "c3d4e5f6-7788-4999-aaaa-bbbbccccdddd", "UUID=11111111-2222-4333-8444-555566667777",
			"/var/lib/azure_disk_encryption_config/azureluksheaderc3d4e5f6-7788-4999-aaaa-bbbbccccdddd", true, 6, 0, 3},
		{8, "resourceencrypt", "/dev/disk/azure/resource-part1", "", true, -1, 0, 2},
		{9, "home", "/dev/sdz1", "", false, -1, 0, 1},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("ParseCrypttab:\n got %+v\nwant %+v", rows, want)
	}
}

func TestFixFstabVM(t *testing.T) {
	in := "/dev/mapper/rootvg-rootlv / xfs defaults 0 0\n" +
		"#This line was added by Azure Disk Encryption\n" +
		"/dev/mapper/6f1c2a44-1b7a-4a55-9d2e-0c8f1e2d3a41 /data ext4 defaults,nofail 0 2\n" +
		"/dev/mapper/datavg-datalv /lvdata xfs defaults,nofail 0 0\n" +
		`LABEL=BEK\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0` + "\n" +
		"/dev/mapper/resourceencrypt /mnt/resource auto defaults,discard,nofail 0 0\n" +
		"/dev/mapper/9a0e2b33-55c1-4f6e-8d77-1e2f3a4b5c62 /other ext4 defaults,nofail 0 2"
	pol := Policy{FstabDevices: map[string]string{"/dev/mapper/6f1c2a44-1b7a-4a55-9d2e-0c8f1e2d3a41": "UUID=aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"},
		FstabDrop: []string{"/dev/mapper/resourceencrypt"}}
	got, ch := pol.FixFstab([]byte(in))
	want := "/dev/mapper/rootvg-rootlv / xfs defaults 0 0\n" +
		"UUID=aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee /data ext4 defaults,nofail 0 2\n" +
		"/dev/mapper/datavg-datalv /lvdata xfs defaults,nofail 0 0\n" +
		"/dev/mapper/9a0e2b33-55c1-4f6e-8d77-1e2f3a4b5c62 /other ext4 defaults,nofail 0 2"
	if string(got) != want {
		t.Fatalf("FixFstab:\n%s\nwant:\n%s", got, want)
	}
	if len(ch) != 3 || len(ch[0].Before) != 2 || ch[0].After[0] != "UUID=aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee /data ext4 defaults,nofail 0 2" {
		t.Fatalf("changes: %+v", ch)
	}
	if again, _ := pol.FixFstab(got); again != nil {
		t.Fatalf("not idempotent: %q", again)
	}
	// The default policy leaves data volumes alone (a volume the run does not convert keeps its line).
	if got, _ := FixFstab([]byte(want)); got != nil {
		t.Fatalf("default policy changed %q", got)
	}
}

func TestFixWaagentConf(t *testing.T) {
	orig := "# Microsoft Azure Linux Agent Configuration\nProvisioning.Agent=auto\nResourceDisk.Format=y\nResourceDisk.Filesystem=ext4\nResourceDisk.MountPoint=/mnt/resource\nResourceDisk.EnableSwap=n\n"
	rdbak1 := orig
	rdbak2 := strings.Replace(orig, "ResourceDisk.MountPoint=/mnt/resource", "ResourceDisk.MountPoint=/mnt/resource_ade", 1)
	now := strings.Replace(rdbak2, "ResourceDisk.Format=y", "ResourceDisk.Format=n", 1)
	now = strings.Replace(now, "ResourceDisk.EnableSwap=n", "ResourceDisk.EnableSwap=y", 1) // the admin's change since
	got, ch := FixWaagentConf([]byte(now), []byte(rdbak1), []byte(rdbak2))
	want := strings.Replace(orig, "ResourceDisk.EnableSwap=n", "ResourceDisk.EnableSwap=y", 1)
	if string(got) != want || len(ch) != 2 {
		t.Fatalf("FixWaagentConf = %q (%d changes), want %q", got, len(ch), want)
	}
	if again, _ := FixWaagentConf(got, []byte(rdbak1), []byte(rdbak2)); again != nil {
		t.Fatalf("not idempotent: %q", again)
	}
	if got, _ := FixWaagentConf([]byte(now), nil, nil); got != nil {
		t.Fatalf("without backups: %q, want no change", got)
	}
}

func TestAzureCryptMountToFstab(t *testing.T) {
	acm := "4d943217-df14-459c-b7a1-02b3d6c7eb33 /dev/disk/azure/scsi1/lun2-part1 None /data2 ext4 False 0\n# a comment\n"
	ents := ParseAzureCryptMount([]byte(acm))
	if len(ents) != 1 || ents[0].LUN != 2 || ents[0].Partition != 1 || ents[0].MountPoint != "/data2" || ents[0].FSType != "ext4" || ents[0].Header != "None" {
		t.Fatalf("ParseAzureCryptMount: %+v", ents)
	}
	pol := Policy{FstabAdd: []string{"UUID=aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee /data2 ext4 defaults,nofail 0 0"}}
	in := "/dev/mapper/rootvg-rootlv / xfs defaults 0 0" // no final newline
	got, ch := pol.FixFstab([]byte(in))
	if want := in + "\n" + pol.FstabAdd[0] + "\n"; string(got) != want || len(ch) != 1 || len(ch[0].After) != 1 {
		t.Fatalf("FixFstab = %q (%+v), want %q", got, ch, want)
	}
	if again, _ := pol.FixFstab(got); again != nil {
		t.Fatalf("the line is added twice: %q", again)
	}
}

func TestFixLVMDevices(t *testing.T) {
	in := "# LVM uses devices listed in this file.\n# Created by LVM command vgimportdevices pid 1873 at Wed Mar 13 10:30:00 2024\nVERSION=1.1.3\n" +
		"IDTYPE=crypt_uuid IDNAME=CRYPT-LUKS2-a0e5c0de10054a008000000000000064-osencrypt DEVNAME=/dev/mapper/osencrypt PVID=AbCd1234\n" +
		"IDTYPE=crypt_uuid IDNAME=CRYPT-LUKS2-0123-827cbcbb DEVNAME=/dev/mapper/827cbcbb PVID=EfGh5678\n" +
		"IDTYPE=sys_wwid IDNAME=naa.600 DEVNAME=/dev/sdb1 PVID=IjKl9012 PART=1\n"
	devs := map[string]string{"/dev/mapper/osencrypt": "/dev/disk/by-partuuid/a0e5d15c-0004", "/dev/mapper/827cbcbb": "/dev/disk/azure/scsi1/lun4"}
	pol := Policy{LVMDevices: devs}
	got, ch := pol.FixLVMDevices([]byte(in))
	want := strings.Replace(strings.Replace(in,
		"IDTYPE=crypt_uuid IDNAME=CRYPT-LUKS2-a0e5c0de10054a008000000000000064-osencrypt DEVNAME=/dev/mapper/osencrypt PVID=AbCd1234",
		"IDTYPE=devname IDNAME=/dev/disk/by-partuuid/a0e5d15c-0004 DEVNAME=/dev/disk/by-partuuid/a0e5d15c-0004 PVID=AbCd1234", 1),
		"IDTYPE=crypt_uuid IDNAME=CRYPT-LUKS2-0123-827cbcbb DEVNAME=/dev/mapper/827cbcbb PVID=EfGh5678",
		"IDTYPE=devname IDNAME=/dev/disk/azure/scsi1/lun4 DEVNAME=/dev/disk/azure/scsi1/lun4 PVID=EfGh5678", 1)
	if string(got) != want || len(ch) != 2 {
		t.Fatalf("FixLVMDevices = %q (%d changes), want %q", got, len(ch), want)
	}
	if again, _ := pol.FixLVMDevices(got); again != nil {
		t.Fatalf("not idempotent: %q", again)
	}
}
