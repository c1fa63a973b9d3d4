package luksconv_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/vhd"
)

// mbrLabelID is the disk signature given to the DOS labels the tests write.
const mbrLabelID = 0x1a2b3c4d

// relabelMBR replaces the GPT of a copy of img by a DOS label (written by sfdisk) with the same
// partition numbers, starts and sizes, all of type 0x83 as on an old RHEL 7 disk, and returns the copy.
func relabelMBR(t *testing.T, f fixture.Fixture, img, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	copyFile(t, img, dst)
	var script strings.Builder
	fmt.Fprintf(&script, "label: dos\nlabel-id: 0x%08x\nunit: sectors\n", mbrLabelID)
	for i, p := range f.Partitions {
		if p.Number != i+1 || p.Start%512 != 0 || p.Size%512 != 0 {
			t.Fatalf("fixture partition %+v does not fit a DOS label as partition %d", p, i+1)
		}
		fmt.Fprintf(&script, "%d: start=%d, size=%d, type=83\n", p.Number, p.Start/512, p.Size/512)
	}
	cmd := exec.Command("sfdisk", "--wipe", "always", "--no-reread", "--no-tell-kernel", dst)
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	return dst
}

// sfdiskDump is what `sfdisk --json` says of a disk image's partition table.
type sfdiskDump struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Partitions []struct {
			Node  string `json:"node"`
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			Type  string `json:"type"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func sfdiskJSON(t *testing.T, img string) sfdiskDump {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", img, err)
	}
	var d sfdiskDump
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	return d
}

// TestMBRDisk converts the RHEL 7 fixture relabelled with a DOS partition table, as older BIOS-booted
// RHEL 7 images are: inspect reads the table, the key alone finds /boot's header and the encrypted
// partition, --keep-guest output equals the relabelled expected disk byte for byte, the default
// conversion keeps the table and passes xfs_repair and Verify, and Verify notices a changed table.
func TestMBRDisk(t *testing.T) {
	testenv.Need(t, "sfdisk", "xfs_repair")
	set := fixture.Load(t)
	f, ok := set.Get("rhel7-luks1")
	if !ok {
		t.Fatal("no rhel7-luks1 fixture")
	}
	img := relabelMBR(t, f, f.Image, "rhel7-mbr.raw")
	expected := relabelMBR(t, f, f.Expected, "rhel7-mbr.expected.raw")
	if d := sfdiskJSON(t, img); d.PartitionTable.Label != "dos" || len(d.PartitionTable.Partitions) != len(f.Partitions) {
		t.Fatalf("sfdisk did not write the DOS label: %+v", d)
	}
	key, err := os.ReadFile(f.KeyFiles[0])
	if err != nil {
		t.Fatal(err)
	}

	t.Run("inspect", func(t *testing.T) {
		rep := inspectFile(t, img)
		t.Logf("warnings: %q", rep.Warnings)
		if rep.Table == nil || rep.Table.Type != "mbr" || rep.Table.SectorSize != 512 || rep.Table.DiskGUID != fmt.Sprintf("%08x", mbrLabelID) {
			t.Fatalf("table: %+v", rep.Table)
		}
		if len(rep.Partitions) != len(f.Partitions) {
			t.Fatalf("%d partitions, want %d: %+v", len(rep.Partitions), len(f.Partitions), rep.Partitions)
		}
		for i, p := range f.Partitions {
			pi := rep.Partitions[i]
			if pi.Number != p.Number || pi.Offset != p.Start || pi.Size != p.Size || pi.Type != "0x83" || pi.TypeName != "Linux (0x83)" ||
				pi.GUID != fmt.Sprintf("%08x-%02x", mbrLabelID, p.Number) {
				t.Errorf("partition %d: %+v, want %+v", p.Number, pi, p)
			}
		}
		if rep.Partitions[f.BootPartition-1].Content != luksconv.ContentXFS {
			t.Errorf("/boot partition holds %s", rep.Partitions[f.BootPartition-1].Content)
		}
		if rep.ADE == nil || rep.ADE.BootPartition != f.BootPartition || rep.Partitions[f.Partition-1].LUKS == nil ||
			rep.Partitions[f.Partition-1].LUKS.Header != "detached" {
			t.Fatalf("ADE discovery: %+v; partition %d: %+v", rep.ADE, f.Partition, rep.Partitions[f.Partition-1])
		}
	})

	t.Run("keep-guest", func(t *testing.T) {
		out, p, _ := convert(t, img, "", f.KeyFiles[0], 0, luksconv.FormatRaw, 2, false, true)
		if p.Volume.Partition != f.Partition || p.Volume.Header != "detached" || len(p.Patches) != 0 {
			t.Fatalf("converted partition %d (%s header, %d patches), want %d (detached, none)",
				p.Volume.Partition, p.Volume.Header, len(p.Patches), f.Partition)
		}
		exp, _ := os.Stat(expected)
		if p.OutputSize != exp.Size() {
			t.Fatalf("output size %d, expected disk %d", p.OutputSize, exp.Size())
		}
		sameContent(t, out, expected, exp.Size())
	})

	// A disk that is not a whole MiB: the VHD is padded, and the DOS table (which names no disk end)
	// stays as it is.
	t.Run("vhd-padded", func(t *testing.T) {
		testenv.Need(t, "qemu-img")
		grown, grownExp := filepath.Join(t.TempDir(), "grown.raw"), filepath.Join(t.TempDir(), "grown.expected.raw")
		copyFile(t, img, grown)
		copyFile(t, expected, grownExp)
		fi, _ := os.Stat(img)
		for _, g := range []string{grown, grownExp} {
			if err := os.Truncate(g, fi.Size()+3*512); err != nil {
				t.Fatal(err)
			}
		}
		out, p, _ := convert(t, grown, "", f.KeyFiles[0], 0, luksconv.FormatVHD, 2, false, true)
		if p.OutputSize != fi.Size()+vhd.MiB || len(p.Patches) != 0 {
			t.Fatalf("VHD of %d bytes with %d patches, want %d bytes and none", p.OutputSize, len(p.Patches), fi.Size()+vhd.MiB)
		}
		if cmp, err := exec.Command("qemu-img", "compare", "-f", "vpc", "-F", "raw", out, grownExp).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img compare: %v\n%s", err, cmp)
		}
		// Verify checks a conversion with guest edits, as convert makes by default.
		out, p, _ = convertOpts(t, grown, luksconv.PlanOptions{Passphrase: key, Format: luksconv.FormatVHD}, 2)
		for _, patch := range p.Patches {
			if patch.Offset < 512 || patch.Offset+int64(patch.Length) > fi.Size() {
				t.Errorf("a patch outside the partitions: %+v", patch)
			}
		}
		mf := f
		mf.Image, mf.Header = grown, ""
		rep, _, err := verifyFixture(t, mf, out, luksconv.FormatVHD)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Pass || !hasCheck(rep, "mbr", true) {
			t.Fatalf("verification of the padded VHD: %+v", rep)
		}
	})

	t.Run("default", func(t *testing.T) {
		out, p, _ := convertOpts(t, img, luksconv.PlanOptions{Passphrase: key}, 2)
		if p.Volume.Partition != f.Partition || len(p.Edits) == 0 {
			t.Fatalf("converted partition %d with %d guest edits", p.Volume.Partition, len(p.Edits))
		}
		diffsInPatches(t, out, expected, p)
		for _, patch := range p.Patches {
			if patch.Offset < 512 {
				t.Errorf("a patch changes LBA 0: %+v", patch)
			}
		}
		got, want := sfdiskJSON(t, out), sfdiskJSON(t, img)
		if got.PartitionTable.Label != "dos" || got.PartitionTable.ID != want.PartitionTable.ID ||
			len(got.PartitionTable.Partitions) != len(want.PartitionTable.Partitions) {
			t.Fatalf("output table %+v, source %+v", got, want)
		}
		for i := range want.PartitionTable.Partitions {
			g, w := got.PartitionTable.Partitions[i], want.PartitionTable.Partitions[i]
			if g.Start != w.Start || g.Size != w.Size || g.Type != w.Type {
				t.Errorf("output partition %+v, source %+v", g, w)
			}
		}
		for _, fsys := range f.Filesystems {
			xfsRepairClean(t, extractFS(t, out, f, fsys))
		}

		mf := f
		mf.Image, mf.Header = img, ""
		rep, _, err := verifyFixture(t, mf, out, luksconv.FormatRaw)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Pass || !hasCheck(rep, "mbr", true) {
			t.Fatalf("verification of a fresh conversion: %+v", rep)
		}

		// A changed partition type in the output's table must fail the table check.
		bad := filepath.Join(t.TempDir(), "bad.raw")
		copyFile(t, out, bad)
		fh, err := os.OpenFile(bad, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteAt([]byte{0x8e}, 446+16*(int64(f.Partition)-1)+4); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		rep, _, _ = verifyFixture(t, mf, bad, luksconv.FormatRaw)
		if rep == nil || rep.Pass || !hasCheck(rep, "mbr", false) {
			t.Fatalf("a changed partition type passes verification: %+v", rep)
		}
	})
}

// hasCheck reports whether rep has a structure check named name with the given outcome.
func hasCheck(rep *luksconv.VerifyReport, name string, ok bool) bool {
	for _, c := range rep.Structure {
		if c.Name == name {
			return c.OK == ok
		}
	}
	return false
}

// TestMBRLogicalPartition converts a LUKS2 volume (4096-byte sectors) in the second logical partition
// of a DOS extended partition, so that the parser must follow a chain of two EBRs: inspect names it
// partition 6, the key alone finds it, a full copy leaves every byte outside it as the source has it
// (MBR, both EBRs, the other partitions) and its content equal to the fixture's plaintext, sfdisk reads
// the same table back, and the default conversion passes xfs_repair -n and Verify.
func TestMBRLogicalPartition(t *testing.T) {
	testenv.Need(t, "sfdisk", "xfs_repair")
	set := fixture.Load(t)
	f, ok := set.Get("data-luks2-4k")
	if !ok {
		t.Fatal("no data-luks2-4k fixture")
	}
	vol, ok := f.Part(f.Partition)
	if !ok || vol.Size%512 != 0 {
		t.Fatalf("fixture partition %d: %+v", f.Partition, vol)
	}
	// p1 primary (1 MiB), p2 extended; in it p5 (1 MiB) and p6, the volume.
	const mib = 1 << 20
	p1, ext, p5, p6 := int64(1*mib), int64(2*mib), int64(3*mib), int64(5*mib)
	end := p6 + vol.Size
	img := filepath.Join(t.TempDir(), "logical.raw")
	fh, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(end); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	script := fmt.Sprintf("label: dos\nlabel-id: 0x%08x\nunit: sectors\n"+
		"1: start=%d, size=%d, type=83\n2: start=%d, size=%d, type=5\n5: start=%d, size=%d, type=83\n6: start=%d, size=%d, type=83\n",
		mbrLabelID, p1/512, mib/512, ext/512, (end-ext)/512, p5/512, mib/512, p6/512, vol.Size/512)
	cmd := exec.Command("sfdisk", "--wipe", "always", "--no-reread", "--no-tell-kernel", img)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	src, err := os.ReadFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	copy(disk[p6:end], src[vol.Start:vol.Start+vol.Size])
	for i := range mib { // p1 and p5 hold bytes that must come through unchanged
		disk[p1+int64(i)], disk[p5+int64(i)] = byte(i*7+1), byte(i*13+5)
	}
	if err := os.WriteFile(img, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	want := sfdiskJSON(t, img)
	if len(want.PartitionTable.Partitions) != 4 {
		t.Fatalf("sfdisk wrote %+v", want)
	}
	for i := range want.PartitionTable.Partitions {
		want.PartitionTable.Partitions[i].Node = "" // the image's file name
	}

	rep := inspectFile(t, img)
	if rep.Table == nil || rep.Table.Type != "mbr" {
		t.Fatalf("table: %+v", rep.Table)
	}
	var found bool
	for _, pi := range rep.Partitions {
		if pi.Number == 6 {
			found = true
			if pi.Offset != p6 || pi.Size != vol.Size || pi.LUKS == nil {
				t.Errorf("partition 6: %+v, want LUKS at %d, %d bytes", pi, p6, vol.Size)
			}
		}
	}
	if !found {
		t.Fatalf("inspect lists no partition 6: %+v", rep.Partitions)
	}

	t.Run("full-copy", func(t *testing.T) {
		out, p, _ := convert(t, img, "", f.KeyFiles[0], 0, luksconv.FormatRaw, 2, false, true)
		if p.Volume.Partition != 6 || p.OutputSize != end {
			t.Fatalf("converted partition %d into %d bytes, want 6 and %d", p.Volume.Partition, p.OutputSize, end)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		exp, err := os.ReadFile(f.Expected)
		if err != nil {
			t.Fatal(err)
		}
		if i := testenv.FirstDiff(got[:p6], disk[:p6]); i >= 0 {
			t.Errorf("output differs from the source at byte %d, before the volume", i)
		}
		if i := testenv.FirstDiff(got[p6:end], exp[vol.Start:vol.Start+vol.Size]); i >= 0 {
			t.Errorf("partition 6 differs from the fixture's plaintext at byte %d of it", i)
		}
		g := sfdiskJSON(t, out)
		for i := range g.PartitionTable.Partitions {
			g.PartitionTable.Partitions[i].Node = ""
		}
		if fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("output table %+v, source %+v", g, want)
		}
	})

	t.Run("default", func(t *testing.T) {
		key, err := os.ReadFile(f.KeyFiles[0])
		if err != nil {
			t.Fatal(err)
		}
		out, p, _ := convertOpts(t, img, luksconv.PlanOptions{Passphrase: key}, 2)
		if p.Volume.Partition != 6 {
			t.Fatalf("converted partition %d", p.Volume.Partition)
		}
		lf := f
		lf.Image, lf.Header, lf.Partition = img, "", 6
		lf.Partitions = []fixture.Partition{{Number: 6, Start: p6, Size: vol.Size}}
		for _, fsys := range f.Filesystems {
			fsys.Partition = 6
			xfsRepairClean(t, extractFS(t, out, lf, fsys))
		}
		vr, _, err := verifyFixture(t, lf, out, luksconv.FormatRaw)
		if err != nil {
			t.Fatal(err)
		}
		if !vr.Pass || !hasCheck(vr, "mbr", true) {
			t.Fatalf("verification: %+v", vr)
		}
	})
}
