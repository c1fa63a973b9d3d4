package luksconv_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
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
	if !slices.ContainsFunc(vp.OS.Warnings, func(w luksconv.Warning) bool {
		return w.Code == luksconv.WarnAfterBoot && strings.Contains(w.Message, "vgimportdevices -a")
	}) {
		t.Errorf("no warning tells to turn the LVM devices file on again: %+v", vp.OS.Warnings)
	}
	if len(vp.Warnings) != 0 {
		t.Errorf("warnings: %+v", vp.Warnings)
	}
	// Every volume converted: ADE's state goes, the dual-pass disk's header and the legacy mount table too.
	if !hasEdit(vp.OS.Edits, "/azure_disk_encryption_config/azureluksheader") || !hasEdit(vp.OS.Edits, "/azure_disk_encryption_config/azure_crypt_mount") {
		t.Errorf("ADE's state directory is not wiped whole: %+v", vp.OS.Edits)
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
		checkDataOutput(t, m, d, out)
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
	// The file is turned off: lvm cannot match the converted PVs' entries on disks with a stable ID
	// (TestBootConvertedVMDevicesFileWWN in internal/qemuboot boots it).
	if conf := string(readXFS(t, root, "/etc/lvm/lvm.conf")); !strings.Contains(conf, "use_devicesfile = 0") || strings.Contains(conf, "osencrypt") {
		t.Errorf("lvm.conf does not turn the devices file off:\n%s", conf)
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

func sha256Hex(t *testing.T, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkDataOutput checks a converted data disk with the real tools: its plaintext sits at the start
// of its partition, disk or LV, and its filesystem passes e2fsck -fn or xfs_repair -n. A crypt-on-LVM
// disk is still the PV of its volume group, whose other LV is unchanged.
func checkDataOutput(t *testing.T, m *vmfixture.Manifest, d *vmfixture.DataDisk, out *luksconv.Source) {
	t.Helper()
	if d.Filesystem == nil {
		return // an LVM PV: its filesystem spans two disks
	}
	var dev io.ReaderAt = io.NewSectionReader(out, d.DeviceOffset, d.DeviceSize)
	if d.LV != "" {
		pv, err := lvm.Open(out, out.Size)
		if err != nil || pv.VG == nil || pv.VG.Name+"/crypt-lv" != d.LV {
			t.Fatalf("%s: the converted disk is not the PV of %s: %v", d.Name, d.LV, err)
		}
		lv, _ := pv.VG.LV("crypt-lv")
		dev = pv.LVReader(out, lv)
		plv, _ := pv.VG.LV("plainlv")
		if got := sha256Hex(t, pv.LVReader(out, plv)); got != m.PlainLV.SHA256 {
			t.Errorf("%s: plainlv changed: SHA-256 %s, want %s", d.Name, got, m.PlainLV.SHA256)
		}
		// the LV's tail, where the LUKS header's room went, is zeros
		tail := make([]byte, lv.Size-d.PlaintextSize)
		if _, err := pv.LVReader(out, lv).ReadAt(tail, d.PlaintextSize); err != nil || !bytes.Equal(tail, make([]byte, len(tail))) {
			t.Errorf("%s: the end of %s is not zeros (%v)", d.Name, d.LV, err)
		}
	}
	fsFile := filepath.Join(t.TempDir(), d.Name+".fs")
	f, err := os.Create(fsFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, io.NewSectionReader(dev, d.Filesystem.Offset, d.Filesystem.Size)); err != nil {
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
			// lun2 is named by azure_crypt_mount, not crypttab: its warning names that file's line.
			if strings.Contains(w.Message, "line 0") || strings.HasPrefix(w.Message, "LUN 2 ") && !strings.Contains(w.Message, "azure_crypt_mount line ") {
				t.Errorf("volume-left warning does not say where the entry is: %s", w.Message)
			}
		}
	}
	if left != 6 { // lun1, lun3, lun4, lun5, lun7's LV in crypttab, lun2 in azure_crypt_mount
		t.Errorf("%d volume-left warnings, want 6: %+v", left, vp.Warnings)
	}
	if vp.OS.Readiness == nil || vp.OS.Readiness.Ready {
		t.Fatalf("readiness with volumes left: %+v", vp.OS.Readiness)
	}
	if hasEdit(vp.OS.Edits, "/etc/fstab.azure.backup") {
		t.Error("ADE's fstab backup is wiped although volumes stay encrypted")
	}
	// What the volumes left may need stays: lun2's legacy mount line, the dual-pass header.
	if hasEdit(vp.OS.Edits, "/azure_disk_encryption_config/azureluksheader") || hasEdit(vp.OS.Edits, "/azure_disk_encryption_config/azure_crypt_mount") {
		t.Errorf("ADE's state directory with volumes left: %+v", vp.OS.Edits)
	}
	if !slices.ContainsFunc(vp.OS.Warnings, func(w luksconv.Warning) bool { return strings.Contains(w.Message, "azure_crypt_mount") }) {
		t.Errorf("no warning names the kept state files: %+v", vp.OS.Warnings)
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

// convertPlan executes p from src into a new raw file under dir and returns the output, opened, and
// the result.
func convertPlan(t *testing.T, p *luksconv.Plan, src *luksconv.Source, path string) (*luksconv.Source, *luksconv.Result) {
	t.Helper()
	o, err := luksconv.CreateOutput(p, path, luksconv.OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := luksconv.Execute(context.Background(), p, src, o, luksconv.ExecuteOptions{})
	if err != nil {
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
	return out, res
}

// TestVMFixtureCryptOnLVM: lun7 is a plain PV whose LV crypt-lv (two segments, PEs 0-4 and 7-11) is
// ADE's LUKS2 device, named /dev/mapper/lun7vg-crypt--lv in crypttab (no LUN in the name). The VM plan
// finds the disk by its volume group, decrypts the LV's payload to the LV's start through its extents
// (with --keep-guest --full-copy the LV starts with exactly the payload's plaintext, and every byte
// outside crypt-lv is the source's), skips the free space of its ext4, of plainlv and the free
// extents, and the OS disk mounts /data7 by the filesystem's UUID.
func TestVMFixtureCryptOnLVM(t *testing.T) {
	m := vmfixture.Load(t)
	d, ok := m.Disk("lun7")
	if !ok || d.LV == "" {
		t.Fatal("no crypt-on-LVM disk lun7 in the fixture")
	}
	for _, exact := range []bool{false, true} {
		opts := luksconv.PlanOptions{KeepGuest: exact, FullCopy: exact}
		var disks []luksconv.VMDisk
		for _, vd := range vmDisks(t, m, opts) {
			if vd.LUN == luksconv.OSDisk || vd.LUN == 7 {
				disks = append(disks, vd)
			}
		}
		vp, err := luksconv.NewVMPlan(context.Background(), disks)
		if err != nil {
			t.Fatal(err)
		}
		defer vp.Close()
		if len(vp.Data) != 1 {
			t.Fatalf("%d data plans", len(vp.Data))
		}
		dp := vp.Data[0]
		v := dp.Plan.Volume
		if dp.Mapper != d.Mapper || dp.FilesystemUUID != d.Filesystem.UUID || v.LV != d.LV || v.Partition != 0 ||
			v.UUID != d.LUKS.UUID || v.PayloadSize != d.PlaintextSize {
			t.Fatalf("lun7: mapper %q UUID %q volume %+v", dp.Mapper, dp.FilesystemUUID, v)
		}
		// crypt-lv's payload lies on two extent runs; so does its plaintext in the output.
		if n := countKind(dp.Plan.Regions, luksconv.Decrypt); n < 2 {
			t.Errorf("%d Decrypt regions, want the LV's payload in at least two pieces", n)
		}
		skipped := map[string]bool{}
		for _, s := range dp.Plan.Skipped {
			skipped[s.Reason] = true
		}
		if !exact && (!skipped["ext free space: LV "+d.LV] || !skipped["lvm free extents"] || !skipped["ext free space: lun7vg/plainlv"]) {
			t.Errorf("skipped %+v, want crypt-lv's and plainlv's ext free space and the free extents", dp.Plan.Skipped)
		}

		src, _ := luksconv.OpenFile(m.Path(d.File))
		defer src.Close()
		path := filepath.Join(t.TempDir(), "lun7.raw")
		out, res := convertPlan(t, dp.Plan, src, path)
		checkDataOutput(t, m, d, out)
		t.Logf("keep-guest+full-copy=%v: %d bytes decrypted, %d copied, %d written", exact, res.BytesDecrypted, res.BytesCopied, res.BytesWritten)
		if exact {
			// The LV holds the payload's plaintext, byte for byte, and nothing else of the disk moved.
			pv, err := lvm.Open(out, out.Size)
			if err != nil || pv.VG == nil {
				t.Fatal(err)
			}
			lv, _ := pv.VG.LV("crypt-lv")
			if got := sha256Hex(t, io.NewSectionReader(pv.LVReader(out, lv), 0, d.PlaintextSize)); got != d.PlaintextSHA256 {
				t.Errorf("crypt-lv of the output starts with SHA-256 %s, want the plaintext's %s", got, d.PlaintextSHA256)
			}
			ext, _ := pv.Map(lv, 0, lv.Size)
			in := func(off int64) bool {
				for _, e := range ext {
					if off >= e.PVOff && off < e.PVOff+e.Len {
						return true
					}
				}
				return false
			}
			a, b := make([]byte, 1<<20), make([]byte, 1<<20)
			for off := int64(0); off < src.Size; off += 1 << 20 {
				if in(off) {
					continue // the extents are whole MiB
				}
				src.ReadAt(a, off)
				out.ReadAt(b, off)
				if !bytes.Equal(a, b) {
					t.Fatalf("output byte range %d+1MiB, outside crypt-lv, differs from the source", off)
				}
			}
			continue
		}
		if !hasEdit(dp.Plan.Edits, ".azure_ade_backup_mount_info") {
			t.Errorf("ADE's backup on the LV's filesystem is not wiped: %+v", dp.Plan.Edits)
		}
		// Verify's structure checks read the VG and both LVs' filesystems of the output.
		vrep, err := luksconv.Verify(context.Background(), dp.Plan, src, out, luksconv.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checked := map[string]bool{}
		for _, c := range vrep.Structure {
			checked[c.Name] = c.OK
		}
		if !checked["lvm"] || !checked["ext LV "+d.LV] || !checked["ext LV lun7vg/plainlv"] {
			t.Errorf("verify's structure checks: %+v", vrep.Structure)
		}
		// The OS disk: no crypttab line, /data7 mounted by UUID.
		osSrc, _ := luksconv.OpenFile(m.Path(m.OS.File))
		defer osSrc.Close()
		osOut, _ := convertPlan(t, vp.OS, osSrc, filepath.Join(t.TempDir(), "os.raw"))
		root := rootFS(t, m, osOut)
		if ct := string(readXFS(t, root, "/etc/crypttab")); strings.Contains(ct, d.Mapper) {
			t.Errorf("crypttab keeps lun7's line:\n%s", ct)
		}
		if line := findLine(string(readXFS(t, root, "/etc/fstab")), " /data7 "); !strings.HasPrefix(line, "UUID="+d.Filesystem.UUID+" ") {
			t.Errorf("/data7 fstab line %q, want it mounted by UUID=%s", line, d.Filesystem.UUID)
		}
	}
}

func countKind(rs []luksconv.Region, k luksconv.RegionKind) int {
	n := 0
	for _, r := range rs {
		if r.Kind == k {
			n++
		}
	}
	return n
}

// TestVMFixtureVGMemberMissing: lun4's decrypted PV belongs to datavg, whose other PV is on lun5; a
// run with lun4 but not lun5 is refused with ErrMissingDisk naming the disk, the VG and the PV.
func TestVMFixtureVGMemberMissing(t *testing.T) {
	m := vmfixture.Load(t)
	var disks []luksconv.VMDisk
	for _, d := range vmDisks(t, m, luksconv.PlanOptions{}) {
		if d.LUN == luksconv.OSDisk || d.LUN == 4 || d.LUN == 0 {
			disks = append(disks, d)
		}
	}
	vp, err := luksconv.NewVMPlan(context.Background(), disks)
	if err == nil {
		vp.Close()
		t.Fatal("planned datavg without lun5")
	}
	pv1, _ := m.DataVG.PV("pv1")
	if !errors.Is(err, luksconv.ErrMissingDisk) || vp != nil {
		t.Fatalf("got %v, want ErrMissingDisk", err)
	}
	for _, want := range []string{"LUN 4", "datavg", "pv1", pv1.UUID} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// TestVMFixtureSpanningLV: datavg/datalv (XFS) spans lun4 and lun5. The VM plan reads its filesystem
// through the VG's segment map over both decrypted PVs and skips its free space on each disk, where
// lun4 converted alone decrypts its part of the LV whole. The converted disks assembled as a VG hold
// datalv's filesystem intact (xfs_repair -n, every file's SHA-256).
func TestVMFixtureSpanningLV(t *testing.T) {
	m := vmfixture.Load(t)
	var disks []luksconv.VMDisk
	for _, d := range vmDisks(t, m, luksconv.PlanOptions{}) {
		if d.LUN == luksconv.OSDisk || d.LUN == 4 || d.LUN == 5 {
			disks = append(disks, d)
		}
	}
	vp, err := luksconv.NewVMPlan(context.Background(), disks)
	if err != nil {
		t.Fatal(err)
	}
	defer vp.Close()
	dir := t.TempDir()
	outs := map[string]io.ReaderAt{}
	var vmDecrypted, vmWritten int64
	for _, dp := range vp.Data {
		found := false
		for _, s := range dp.Plan.Skipped {
			found = found || s.Reason == "xfs free space: datavg/datalv"
		}
		if !found {
			t.Errorf("LUN %d: datalv's free space is not skipped: %+v", dp.LUN, dp.Plan.Skipped)
		}
		for _, w := range dp.Plan.Warnings {
			if w.Code == luksconv.WarnCopiedInFull {
				t.Errorf("LUN %d: %s", dp.LUN, w.Message)
			}
		}
		d, _ := m.Disk("lun" + itoa(dp.LUN))
		src, _ := luksconv.OpenFile(m.Path(d.File))
		defer src.Close()
		out, res := convertPlan(t, dp.Plan, src, filepath.Join(dir, d.Name+".raw"))
		outs[d.Name] = io.NewSectionReader(out, 0, out.Size)
		vmDecrypted += res.BytesDecrypted
		vmWritten += res.BytesWritten
		t.Logf("LUN %d in the VM plan: %d bytes decrypted, %d written", dp.LUN, res.BytesDecrypted, res.BytesWritten)
	}

	// The same disks converted one by one: each sees only its own PV, so datalv is read whole.
	var aloneDecrypted, aloneWritten int64
	for _, n := range []string{"lun4", "lun5"} {
		d, _ := m.Disk(n)
		src, _ := luksconv.OpenFile(m.Path(d.File))
		defer src.Close()
		p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: m.Path(d.KeyFile)})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		_, res := convertPlan(t, p, src, filepath.Join(dir, n+".alone.raw"))
		aloneDecrypted += res.BytesDecrypted
		aloneWritten += res.BytesWritten
		t.Logf("%s alone: %d bytes decrypted, %d written", n, res.BytesDecrypted, res.BytesWritten)
	}
	t.Logf("lun4+lun5: VM plan %d bytes decrypted / %d written; one by one %d / %d", vmDecrypted, vmWritten, aloneDecrypted, aloneWritten)
	if vmDecrypted >= aloneDecrypted || vmWritten >= aloneWritten {
		t.Errorf("the VM plan decrypts %d and writes %d bytes, one by one %d and %d: datalv's free space is not skipped",
			vmDecrypted, vmWritten, aloneDecrypted, aloneWritten)
	}

	// datalv from the converted PVs (each at the start of its disk now).
	img := filepath.Join(dir, "datalv.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	lv, _ := m.DataVG.LV("datalv")
	for _, s := range lv.Segments {
		pv, _ := m.DataVG.PV(s.PV)
		n := s.ExtentCount * m.DataVG.ExtentSize
		if _, err := io.Copy(f, io.NewSectionReader(outs[pv.Disk], pv.PEStart+s.PE*m.DataVG.ExtentSize, n)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	testenv.Need(t, "xfs_repair")
	if o, err := testenv.RunErr("xfs_repair", "-n", "-f", img); err != nil {
		t.Errorf("datalv: xfs_repair -n: %v\n%s", err, o)
	}
	r, _ := os.Open(img)
	defer r.Close()
	fs, err := xfs.Open(r, lv.Size)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range m.DataLV.Files {
		if file.Type != "file" {
			continue
		}
		if got := sha256Hex(t, bytes.NewReader(readXFSRaw(t, fs, file.Path))); got != file.SHA256 {
			t.Errorf("datalv%s: SHA-256 %s, want %s", file.Path, got, file.SHA256)
		}
	}
}

func readXFSRaw(t *testing.T, fs *xfs.FS, path string) []byte {
	t.Helper()
	b, err := fs.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// TestVMFixtureCryptOnLVMAlone: lun7 converted on its own: a plain PV on the whole disk (inspect says
// so), nothing to convert, and the error says the LV's LUKS volume goes with the VM.
func TestVMFixtureCryptOnLVMAlone(t *testing.T) {
	m := vmfixture.Load(t)
	d, _ := m.Disk("lun7")
	src, err := luksconv.OpenFile(m.Path(d.File))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rep, err := luksconv.Inspect(context.Background(), src, luksconv.InspectOptions{})
	if err != nil || len(rep.Partitions) != 1 || rep.Partitions[0].Number != 0 || rep.Partitions[0].Content != luksconv.ContentLVM2 {
		t.Fatalf("inspect: %v %+v, want the whole disk as an LVM PV", err, rep)
	}
	_, err = luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: m.Path(d.KeyFile)})
	if !errors.Is(err, luksconv.ErrNothingToConvert) || !strings.Contains(err.Error(), "crypt-on-LVM") {
		t.Fatalf("got %v, want nothing to convert, naming crypt-on-LVM", err)
	}
}

// TestVMFixtureOptionalDisks: a dual-pass VM stamps ADE only on the VM, so a caller cannot tell its
// encrypted data disks and gives them all as optional. Those the OS disk names (lun6's header is on
// it, its disk alone shows no LUKS) are converted as if they were not optional; one that nothing
// names and holds no LUKS volume is left out, reported, and changes nothing else of the plan.
func TestVMFixtureOptionalDisks(t *testing.T) {
	m := vmfixture.Load(t)
	ctx := context.Background()
	want, err := luksconv.NewVMPlan(ctx, vmDisks(t, m, luksconv.PlanOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()

	disks := vmDisks(t, m, luksconv.PlanOptions{})
	for i := range disks {
		disks[i].Optional = true // the OS disk's too: it is ignored there
	}
	// A zero-filled data disk: no partition table, no LUKS header, no crypttab line.
	zero := filepath.Join(t.TempDir(), "lun9.img")
	if err := os.WriteFile(zero, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(zero, 64<<20); err != nil {
		t.Fatal(err)
	}
	src, err := luksconv.OpenFile(zero)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	o := disks[1].Options // a key that opens nothing on it
	disks = append(disks, luksconv.VMDisk{LUN: 9, Source: src, Options: o, Optional: true})

	vp, err := luksconv.NewVMPlan(ctx, disks)
	if err != nil {
		t.Fatal(err)
	}
	defer vp.Close()
	if !slices.Equal(vp.Skipped, []int{9}) {
		t.Errorf("skipped %v, want [9]", vp.Skipped)
	}
	if vp.Disk(9) != nil {
		t.Error("the skipped disk has a plan")
	}
	var skipWarn []luksconv.Warning
	others := vp.Warnings[:0:0]
	for _, w := range vp.Warnings {
		if w.Code == luksconv.WarnDiskSkipped {
			skipWarn = append(skipWarn, w)
		} else {
			others = append(others, w)
		}
	}
	if len(skipWarn) != 1 || !strings.Contains(skipWarn[0].Message, "LUN 9") {
		t.Errorf("disk-skipped warnings %+v, want one for LUN 9", skipWarn)
	}
	if !slices.Equal(others, want.Warnings) {
		t.Errorf("other warnings %+v, want %+v", others, want.Warnings)
	}
	if len(vp.Data) != len(want.Data) {
		t.Fatalf("%d data plans, want %d", len(vp.Data), len(want.Data))
	}
	for i, dp := range vp.Data {
		w := want.Data[i]
		if dp.LUN != w.LUN || dp.Mapper != w.Mapper || dp.FilesystemUUID != w.FilesystemUUID || dp.Plan.ID() != w.Plan.ID() {
			t.Errorf("LUN %d: plan %s (%s, %s), want LUN %d: %s (%s, %s)", dp.LUN, dp.Plan.ID(), dp.Mapper, dp.FilesystemUUID,
				w.LUN, w.Plan.ID(), w.Mapper, w.FilesystemUUID)
		}
		if dp.LUN == 6 && dp.Plan.Volume.Header != "detached" {
			t.Errorf("LUN 6 is not converted with its detached header from the OS disk: %+v", dp.Plan.Volume)
		}
	}
	if vp.OS.ID() != want.OS.ID() {
		t.Errorf("OS disk plan %s, want %s: the skipped disk changed the OS disk's edits", vp.OS.ID(), want.OS.ID())
	}
	if want.Skipped != nil {
		t.Errorf("disks not optional were skipped: %v", want.Skipped)
	}
}
