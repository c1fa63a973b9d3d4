package luksconv_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/internal/vmfixture"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/lvm"
	"github.com/luksconv/luksconv/xfs"
)

// vmDisks opens the fixture VM's OS disk and data disks lun0..lun6 (the resource disk is not carried
// over: a converted VM gets a new one).
func vmDisks(t *testing.T, m *vmfixture.Manifest, opts luksconv.PlanOptions) []luksconv.VMDisk {
	t.Helper()
	open := func(path string) *luksconv.Source {
		s, err := luksconv.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	o := opts
	o.KeyFile = m.Path(m.OS.KeyFile)
	disks := []luksconv.VMDisk{{LUN: luksconv.OSDisk, Source: open(m.Path(m.OS.File)), Options: o}}
	for _, d := range m.Disks {
		if d.LUN < 0 {
			continue
		}
		o := opts
		o.KeyFile = m.Path(d.KeyFile)
		disks = append(disks, luksconv.VMDisk{LUN: d.LUN, Source: open(m.Path(d.File)), Options: o})
	}
	return disks
}

// TestVMFixturePlan plans the fixture VM: every data volume is matched to its crypttab (or legacy
// azure_crypt_mount) entry and its filesystem UUID is read from the plaintext; the OS disk's edits
// drop every ADE crypttab line and fstab's resource line, mount each converted volume by UUID,
// give the legacy volume its fstab line back and restore waagent.conf; converted, the OS disk's root
// filesystem holds exactly those files, and every disk passes Verify.
func TestVMFixturePlan(t *testing.T) {
	m := vmfixture.Load(t)
	vp, err := luksconv.NewVMPlan(context.Background(), vmDisks(t, m, luksconv.PlanOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	defer vp.Close()
	if len(vp.Warnings) != 0 {
		t.Errorf("warnings: %+v", vp.Warnings)
	}
	uuids := map[string]string{} // mapper -> filesystem UUID
	for _, dp := range vp.Data {
		d, ok := m.Disk("lun" + itoa(dp.LUN))
		if !ok {
			t.Fatalf("LUN %d is not in the manifest", dp.LUN)
		}
		want := ""
		if d.Filesystem != nil {
			want = d.Filesystem.UUID
		}
		if dp.Mapper != d.Mapper || dp.FilesystemUUID != want {
			t.Errorf("LUN %d: mapper %q UUID %q, want %q %q", dp.LUN, dp.Mapper, dp.FilesystemUUID, d.Mapper, want)
		}
		uuids[d.Mapper] = want
		if d.Filesystem != nil && len(dp.Plan.Skipped) == 0 {
			t.Errorf("LUN %d: no free space skipped in its %s filesystem", dp.LUN, d.Filesystem.Type)
		}
		if len(d.BackupMountInfo) > 0 && !hasEdit(dp.Plan.Edits, ".azure_ade_backup_mount_info") {
			t.Errorf("LUN %d: ADE's backup of its mount lines is not wiped: %+v", dp.LUN, dp.Plan.Edits)
		}
	}

	dir := t.TempDir()
	srcs := map[int]*luksconv.Source{}
	for _, d := range vmDisks(t, m, luksconv.PlanOptions{}) {
		srcs[d.LUN] = d.Source
	}
	convertTo := func(p *luksconv.Plan, src *luksconv.Source, path string) *luksconv.Source {
		o, err := luksconv.CreateOutput(p, path, luksconv.OutputOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := luksconv.Execute(context.Background(), p, src, o, luksconv.ExecuteOptions{}); err != nil {
			o.Abort()
			t.Fatal(err)
		}
		if err := o.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
		out, err := luksconv.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { out.Close() })
		if rep, err := luksconv.Verify(context.Background(), p, src, out, luksconv.VerifyOptions{}); err != nil || !rep.Pass {
			t.Fatalf("%s: verify: %v", path, err)
		}
		return out
	}
	osOut := convertTo(vp.OS, srcs[luksconv.OSDisk], filepath.Join(dir, "os.raw"))
	for _, dp := range vp.Data {
		out := convertTo(dp.Plan, srcs[dp.LUN], filepath.Join(dir, "lun"+itoa(dp.LUN)+".raw"))
		d, _ := m.Disk("lun" + itoa(dp.LUN))
		checkDataOutput(t, d, out, filepath.Join(dir, "lun"+itoa(dp.LUN)+".raw"))
	}

	// The converted root filesystem.
	root := rootFS(t, m, osOut)
	crypttab := readXFS(t, root, "/etc/crypttab")
	if strings.TrimSpace(string(crypttab)) != "" {
		t.Errorf("crypttab keeps lines:\n%s", crypttab)
	}
	fstab := string(readXFS(t, root, "/etc/fstab"))
	for _, d := range m.Disks {
		switch {
		case d.LUN < 0:
			if strings.Contains(fstab, "resourceencrypt") {
				t.Errorf("fstab still mounts the resource disk's dm-crypt device:\n%s", fstab)
			}
		case d.Filesystem == nil:
		case d.MountPoint != "":
			line := findLine(fstab, " "+d.MountPoint+" ")
			if !strings.HasPrefix(line, "UUID="+d.Filesystem.UUID+" ") {
				t.Errorf("%s: fstab line %q, want it mounted by UUID=%s", d.Name, line, d.Filesystem.UUID)
			}
		}
	}
	if strings.Contains(fstab, "/dev/mapper/") && !strings.Contains(fstab, "/dev/mapper/datavg-datalv") ||
		strings.Contains(fstab, "This line was added by Azure Disk Encryption") || strings.Contains(fstab, "BEK") {
		t.Errorf("fstab keeps ADE's lines:\n%s", fstab)
	}
	devices := string(readXFS(t, root, "/etc/lvm/devices/system.devices"))
	if strings.Contains(devices, "crypt_uuid") || strings.Count(devices, "IDTYPE=devname") != 3 ||
		!strings.Contains(devices, "IDNAME=/dev/disk/by-partuuid/"+m.OS.PartUUID) || !strings.Contains(devices, "IDNAME=/dev/disk/azure/scsi1/lun4 ") {
		t.Errorf("the LVM devices file still lists the dm-crypt devices:\n%s", devices)
	}
	for path := range m.OS.GuestFiles {
		if strings.HasPrefix(path, "/etc/fstab.backup.") || path == "/etc/fstab.azure.backup" || strings.HasPrefix(path, "/etc/waagent.conf.rdbak") {
			if b := readXFS(t, root, path); len(b) != 0 {
				t.Errorf("%s: ADE's backup is not wiped: %q", path, b)
			}
		}
	}
	if waagent := string(readXFS(t, root, "/etc/waagent.conf")); !strings.Contains(waagent, "ResourceDisk.Format=y") {
		t.Errorf("waagent.conf is not restored:\n%s", waagent)
	}
}

func hasEdit(es []luksconv.Edit, path string) bool {
	for _, e := range es {
		if strings.Contains(e.Path, path) {
			return true
		}
	}
	return false
}

func findLine(text, part string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, part) && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			return l
		}
	}
	return ""
}

func itoa(n int) string { return strconv.Itoa(n) }

// checkDataOutput checks a converted data disk with the real tools: its plaintext sits at the start
// of its partition (or disk), and its filesystem passes e2fsck -fn or xfs_repair -n.
func checkDataOutput(t *testing.T, d *vmfixture.DataDisk, out *luksconv.Source, path string) {
	t.Helper()
	if d.Filesystem == nil {
		return // an LVM PV: its filesystem spans two disks
	}
	off := d.DeviceOffset + d.Filesystem.Offset
	fsFile := filepath.Join(t.TempDir(), d.Name+".fs")
	f, err := os.Create(fsFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, io.NewSectionReader(out, off, d.Filesystem.Size)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	switch d.Filesystem.Type {
	case "ext4":
		testenv.Need(t, "e2fsck")
		if out, err := testenv.RunErr("e2fsck", "-fn", fsFile); err != nil {
			t.Errorf("%s: e2fsck -fn: %v\n%s", d.Name, err, out)
		}
	case "xfs":
		testenv.Need(t, "xfs_repair")
		if out, err := testenv.RunErr("xfs_repair", "-n", "-f", fsFile); err != nil {
			t.Errorf("%s: xfs_repair -n: %v\n%s", d.Name, err, out)
		}
	}
}

// rootFS opens the root filesystem (rootvg/rootlv on the LUKS partition, now plaintext) of the
// converted OS disk.
func rootFS(t *testing.T, m *vmfixture.Manifest, out *luksconv.Source) *xfs.FS {
	t.Helper()
	part, ok := m.OS.Part(m.OS.LUKSPartition)
	if !ok {
		t.Fatal("no LUKS partition in the manifest")
	}
	pvr := io.NewSectionReader(out, part.Start, part.Size)
	pv, err := lvm.Open(pvr, part.Size)
	if err != nil || pv.VG == nil {
		t.Fatalf("the converted OS disk's PV: %v", err)
	}
	lv, ok := pv.VG.LV("rootlv")
	if !ok {
		t.Fatal("no rootlv")
	}
	fs, err := xfs.Open(pv.LVReader(pvr, lv), lv.Size)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func readXFS(t *testing.T, fs *xfs.FS, path string) []byte {
	t.Helper()
	b, err := fs.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return bytes.TrimRight(b, "\x00")
}

// TestVMFixturePartial: a run that converts only some of the VM's data disks keeps the others' lines,
// says so, and the OS disk's readiness fails on them; the dual-pass disk's header is still found.
func TestVMFixturePartial(t *testing.T) {
	m := vmfixture.Load(t)
	var disks []luksconv.VMDisk
	for _, d := range vmDisks(t, m, luksconv.PlanOptions{}) {
		if d.LUN == luksconv.OSDisk || d.LUN == 0 || d.LUN == 6 {
			disks = append(disks, d)
		}
	}
	vp, err := luksconv.NewVMPlan(context.Background(), disks)
	if err != nil {
		t.Fatal(err)
	}
	defer vp.Close()
	left := 0
	for _, w := range vp.Warnings {
		if w.Code == luksconv.WarnVolumeLeft {
			left++
		}
	}
	if left != 5 { // lun1, lun3, lun4, lun5 in crypttab, lun2 in azure_crypt_mount
		t.Errorf("%d volume-left warnings, want 5: %+v", left, vp.Warnings)
	}
	if vp.OS.Readiness == nil || vp.OS.Readiness.Ready {
		t.Fatalf("readiness with volumes left: %+v", vp.OS.Readiness)
	}
	if hasEdit(vp.OS.Edits, "/etc/fstab.azure.backup") {
		t.Error("ADE's fstab backup is wiped although volumes stay encrypted")
	}
	for _, dp := range vp.Data {
		if dp.LUN == 6 && dp.Plan.Volume.Header != "detached" {
			t.Errorf("LUN 6 is not converted with its detached header from the OS disk: %+v", dp.Plan.Volume)
		}
	}
}

// TestVMFixtureDualPassAlone: the dual-pass data disk converted on its own has no header.
func TestVMFixtureDualPassAlone(t *testing.T) {
	m := vmfixture.Load(t)
	d, _ := m.Disk("lun6")
	src, err := luksconv.OpenFile(m.Path(d.File))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_, err = luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: m.Path(d.KeyFile)})
	if !errors.Is(err, luksconv.ErrNothingToConvert) || !strings.Contains(err.Error(), "dual-pass") {
		t.Fatalf("got %v, want no volume found, naming ADE's dual-pass disks", err)
	}
}
