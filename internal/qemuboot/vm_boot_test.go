package qemuboot_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/qemuboot"
	"github.com/luksconv/luksconv/luksconv"
)

// TestBootConvertedVM converts the boot VM set (testdata/boot/mkbootvm.sh: the ADE OS disk with ADE's
// crypttab and fstab lines for five data disks — EncryptFormatAll ext4 with 4096-byte sectors,
// EncryptFormatAll XFS, an LVM-on-crypt VG over two disks, a dual-pass disk whose header is on the OS
// root) with luksconv.NewVMPlan and Execute, and boots the converted OS disk with every converted data
// disk attached as Azure attaches them — on a SCSI bus (virtio-scsi), LUN N, each with a WWN — and no
// BEK volume. The root's init activates LVM, runs `mount -a` on the converted fstab and reports each
// mount point: every data volume must be mounted from its plain disk (by UUID=; datalv from the LV on
// the two plain disks), hold the known file, and no device-mapper device may be dm-crypt.
func TestBootConvertedVM(t *testing.T) {
	skipShort(t)
	t.Parallel()
	bootConvertedVM(t, false, busSCSI)
}

// TestBootConvertedVMDevicesFile is TestBootConvertedVM with RHEL 9's LVM devices file in use
// (use_devicesfile = 1, system.devices listing rootvg's and datavg's PVs on their dm-crypt devices, in
// the root and in the initramfs), and every disk, the OS disk too, a SCSI disk with a WWN as Azure
// attaches them. lvm's search for a devices-file entry that names no present device skips disks with
// a stable ID such as a WWN, so no rewritten entry could find the converted PVs (the new disks' IDs
// are not known offline): luksconv turns the devices file off in both lvm.conf copies, and the VM
// must boot on rootvg and mount datavg with use_devicesfile = 0.
func TestBootConvertedVMDevicesFile(t *testing.T) {
	skipShort(t)
	t.Parallel()
	bootConvertedVM(t, true, busSCSIAll)
}

// vmBus is how the data disks are attached.
type vmBus int

const (
	busVirtio  vmBus = iota // virtio-blk disks vdb, vdc, ... in LUN order (no stable device ID)
	busSCSI                 // scsi-hd disks on one virtio-scsi controller, target 0, LUN N, WWN 0x600224800000<N>
	busSCSIAll              // busSCSI, and the OS disk a scsi-hd disk too (target 1, LUN 0, WWN 0x6002248000001000)
)

// scsiWrapper returns a qemu-system-x86_64 wrapper for busSCSI and busSCSIAll: the first -drive (the OS
// disk) stays a virtio-blk disk unless osToo, the others become scsi-hd disks at LUN 0, 1, ... The
// initramfs (dracut without host-only) carries virtio_scsi and sd_mod, so udev loads them.
func scsiWrapper(osToo bool) string {
	osDisk := `n=1`
	if osToo {
		osDisk = `args+=("${a/,if=virtio/,if=none,id=osdisk}" -device "scsi-hd,drive=osdisk,bus=scsi0.0,channel=0,scsi-id=1,lun=0,wwn=0x6002248000001000"); n=1; continue`
	}
	return `#!/bin/bash
args=() n=0 next=0
for a in "$@"; do
  if ((next)); then
    next=0
    if ((n > 0)); then
      lun=$((n - 1))
      args+=("${a/,if=virtio/,if=none,id=lun$lun}" -device "scsi-hd,drive=lun$lun,bus=scsi0.0,channel=0,scsi-id=0,lun=$lun,wwn=0x$(printf '600224800000%04x' $lun)")
      n=$((n + 1))
      continue
    fi
    ` + osDisk + `
  fi
  [ "$a" = -drive ] && next=1
  args+=("$a")
done
exec qemu-system-x86_64 -device virtio-scsi-pci,id=scsi0 "${args[@]}"
`
}

func bootConvertedVM(t *testing.T, devicesFile bool, bus vmBus) {
	set := qemuboot.VMFixture(t)
	ctx := context.Background()
	open := func(path string) *luksconv.Source {
		s, err := luksconv.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	osDisk := set.OS
	if devicesFile {
		osDisk = set.OSDevicesFile
	}
	srcs := map[int]*luksconv.Source{luksconv.OSDisk: open(osDisk)}
	disks := []luksconv.VMDisk{{LUN: luksconv.OSDisk, Source: srcs[luksconv.OSDisk],
		Options: luksconv.PlanOptions{KeyFile: set.OSKey, Format: luksconv.FormatRaw}}}
	for _, d := range set.Disks {
		srcs[d.LUN] = open(d.File)
		disks = append(disks, luksconv.VMDisk{LUN: d.LUN, Source: srcs[d.LUN],
			Options: luksconv.PlanOptions{KeyFile: d.Key, Format: luksconv.FormatRaw}})
	}
	start := time.Now()
	vp, err := luksconv.NewVMPlan(ctx, disks)
	if err != nil {
		t.Fatalf("NewVMPlan: %v", err)
	}
	defer vp.Close()
	for _, w := range vp.Warnings {
		t.Errorf("VM warning: %s", w)
	}
	for _, w := range vp.OS.Warnings {
		t.Logf("OS disk warning: %s", w)
	}
	dir := t.TempDir()
	convert := func(p *luksconv.Plan, src *luksconv.Source, out string) {
		t.Helper()
		o, err := luksconv.CreateOutput(p, out, luksconv.OutputOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := luksconv.Execute(ctx, p, src, o, luksconv.ExecuteOptions{}); err != nil {
			o.Abort()
			t.Fatalf("%s: execute: %v", out, err)
		}
		if err := o.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	osOut := filepath.Join(dir, "os.raw")
	convert(vp.OS, srcs[luksconv.OSDisk], osOut)
	var drives []qemuboot.Drive
	dev := map[int]string{} // LUN -> guest device
	for i, dp := range vp.Data {
		out := filepath.Join(dir, "lun"+strconv.Itoa(dp.LUN)+".raw")
		convert(dp.Plan, srcs[dp.LUN], out)
		drives = append(drives, qemuboot.Drive{Path: out})
		dev[dp.LUN] = "vd" + string(rune('b'+i)) // busVirtio; busSCSI: from the guest's report below
	}
	if len(vp.Data) != len(set.Disks) {
		t.Fatalf("%d data plans for %d data disks", len(vp.Data), len(set.Disks))
	}
	t.Logf("planned and converted the OS disk and %d data disks in %s", len(vp.Data), time.Since(start).Round(100*time.Millisecond))

	edited := map[string]bool{}
	for _, e := range vp.OS.Edits {
		edited[e.Path] = true
		t.Logf("OS edit %s: %s %q -> %q", e.Path, e.Why, e.Before, e.After)
	}
	want := []string{"/etc/crypttab", "/etc/fstab"}
	if devicesFile {
		want = append(want, "/etc/lvm/devices/system.devices")
	}
	for _, p := range want {
		if !edited[p] {
			t.Errorf("the OS disk's plan does not edit %s", p)
		}
	}

	o := qemuboot.Options{Drives: drives}
	if bus != busVirtio {
		o.QEMU = filepath.Join(t.TempDir(), "qemu-scsi")
		if err := os.WriteFile(o.QEMU, []byte(scsiWrapper(bus == busSCSIAll)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if bus == busSCSIAll {
		o.Timeout = 150 * time.Second // a root that does not come up: dracut waits minutes
	}
	r := qemuboot.BootDiskWith(t, osOut, false, o)
	rep := qemuboot.ParseVMConsole(r.Log)
	t.Logf("converted VM (devices file: %v) without BEK: %s to the marker", devicesFile, r.Elapsed.Round(time.Second))
	if !r.MarkerFound {
		t.Fatalf("no %s line after %s (timed out: %v); console tail:\n%s", set.Marker, r.Elapsed, r.TimedOut, r.Tail(80))
	}
	rootPV := "vda4"
	if bus != busVirtio {
		for _, dp := range vp.Data {
			d, ok := rep.SCSIDisk(0, dp.LUN)
			if !ok {
				t.Fatalf("the guest shows no SCSI disk at LUN %d: %q", dp.LUN, rep.SCSI)
			}
			dev[dp.LUN] = d
		}
	}
	if bus == busSCSIAll {
		d, ok := rep.SCSIDisk(1, 0)
		if !ok {
			t.Fatalf("the guest shows no SCSI OS disk at target 1: %q", rep.SCSI)
		}
		rootPV = d + "4"
	}
	for _, l := range rep.VGChange {
		t.Logf("vgchange: %s", l)
	}
	for _, l := range rep.LVMWarnings {
		t.Logf("lvm pvs warning: %s", l)
	}
	for _, l := range rep.DevicesFile {
		t.Logf("devices file: %s", l)
	}
	for _, l := range rep.DeviceIDs {
		t.Logf("device ID lvm would record now: %s", l)
	}
	for _, m := range rep.Mounts {
		t.Logf("mount %s: %s from %s (%s) sha256 %s", m.MountPoint, m.Spec, m.Source, m.Type, m.SHA256)
	}
	for _, l := range rep.MountErrors {
		t.Errorf("mount -a: %s", l)
	}

	// The root: rootvg found on the plain partition, no dm-crypt anywhere.
	if r.Root != "/dev/mapper/rootvg-rootlv" {
		t.Errorf("root = %q", r.Root)
	}
	if root, ok := r.DMByName("rootvg-rootlv"); !ok || strings.Join(root.Slaves, " ") != rootPV {
		t.Errorf("rootvg-rootlv = %+v (%v), want it straight on %s; DM %+v", root, ok, rootPV, r.DM)
	}
	for _, d := range r.DM {
		if strings.HasPrefix(d.UUID, "CRYPT-") || !strings.HasPrefix(d.UUID, "LVM-") {
			t.Errorf("device-mapper device that is not an LVM LV: %+v", d)
		}
	}
	// datavg: LVM found both PVs on the plain disks.
	var lvDisks []string
	for _, pv := range set.DataVG.PVs {
		lvDisks = append(lvDisks, dev[pv.LUN])
		f, ok := rep.PV("/dev/" + dev[pv.LUN])
		if !ok || len(f) < 3 || f[1] != set.DataVG.VG || f[2] != pv.UUID {
			t.Errorf("lvm pvs: LUN %d's PV on /dev/%s = %q (%v), want %s %s; PVs %q", pv.LUN, dev[pv.LUN], f, ok, set.DataVG.VG, pv.UUID, rep.PVs)
		}
	}
	if f, ok := rep.PV("/dev/" + rootPV); !ok || len(f) < 3 || f[1] != "rootvg" || f[2] != set.RootPVUUID {
		t.Errorf("lvm pvs: /dev/%s = %q (%v), want rootvg %s; PVs %q", rootPV, f, ok, set.RootPVUUID, rep.PVs)
	}
	slices.Sort(lvDisks)
	lvName := set.DataVG.VG + "-" + set.DataVG.LV
	if lv, ok := r.DMByName(lvName); !ok || strings.Join(slices.Sorted(slices.Values(lv.Slaves)), " ") != strings.Join(lvDisks, " ") {
		t.Errorf("%s = %+v (%v), want it on %q; DM %+v", lvName, lv, ok, lvDisks, r.DM)
	}

	// Every data volume mounted from plaintext, with the known content.
	luns := map[string]int{}
	for _, d := range set.Disks {
		luns["lun"+strconv.Itoa(d.LUN)] = d.LUN
	}
	for _, v := range set.Volumes {
		m, ok := rep.Mount(v.MountPoint)
		if !ok {
			t.Errorf("%s: no LUKSCONV-VM-MOUNT line (the converted fstab lost it?)", v.MountPoint)
			continue
		}
		if m.SHA256 != v.SHA256 {
			t.Errorf("%s: %s sha256 %s, want %s (mounted from %s)", v.MountPoint, set.CheckFile, m.SHA256, v.SHA256, m.Source)
		}
		if m.Type != v.Type {
			t.Errorf("%s: mounted as %s, want %s", v.MountPoint, m.Type, v.Type)
		}
		wantSpec, wantSrc := "UUID="+v.FSUUID, ""
		if lun, ok := luns[v.Disk]; ok {
			wantSrc = "/dev/" + dev[lun]
		} else {
			wantSpec, wantSrc = v.ADEDevice, v.ADEDevice // an LV keeps its fstab line
		}
		if m.Spec != wantSpec || m.Source != wantSrc {
			t.Errorf("%s: fstab device %s mounted from %s, want %s from %s", v.MountPoint, m.Spec, m.Source, wantSpec, wantSrc)
		}
	}

	// The devices file: turned off and rewritten, or absent.
	if devicesFile {
		if rep.UseDevicesFile != "0" {
			t.Errorf("lvm's use_devicesfile in the booted root = %q, want 0 (turned off by the conversion)", rep.UseDevicesFile)
		}
		text := strings.Join(rep.DevicesFile, "\n")
		if len(rep.DevicesFile) == 0 || strings.Contains(text, "crypt_uuid") || strings.Contains(text, "/dev/mapper/") {
			t.Errorf("devices file after boot still names dm-crypt devices (or is missing):\n%s", text)
		}
		for _, pvid := range append([]string{set.RootPVUUID}, set.DataVG.PVs[0].UUID, set.DataVG.PVs[1].UUID) {
			if !strings.Contains(text, "PVID="+strings.ReplaceAll(pvid, "-", "")) {
				t.Errorf("devices file after boot lacks PVID %s:\n%s", pvid, text)
			}
		}
	} else {
		if rep.UseDevicesFile != "0" {
			t.Errorf("lvm's use_devicesfile in the booted root = %q, want 0", rep.UseDevicesFile)
		}
		if len(rep.DevicesFile) != 0 {
			t.Errorf("a devices file appeared: %q", rep.DevicesFile)
		}
	}
	for _, re := range adeActivity {
		if r.Match(re) {
			t.Errorf("console shows ADE activity %q", re)
		}
	}
}
