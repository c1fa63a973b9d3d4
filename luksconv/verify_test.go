package luksconv_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/vhd"
)

// verifyFixture plans the fixture's conversion afresh (with guest edits, as convert does by default) and
// verifies out against it.
func verifyFixture(t *testing.T, f fixture.Fixture, out string, format luksconv.Format) (*luksconv.VerifyReport, *luksconv.Plan, error) {
	t.Helper()
	key, err := os.ReadFile(f.KeyFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	src, err := luksconv.OpenFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{Passphrase: key,
		Header: openHeader(t, f.Header), Partition: f.Partition, Format: format})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	o, err := luksconv.OpenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	rep, err := luksconv.Verify(context.Background(), p, src, o, luksconv.VerifyOptions{Workers: 2, ChunkSize: 1 << 20})
	return rep, p, err
}

func TestVerify(t *testing.T) {
	f, out, _ := convertRHEL8(t, luksconv.FormatRaw)

	rep, p, err := verifyFixture(t, f, out, luksconv.FormatRaw)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Pass || rep.MismatchCount != 0 {
		t.Fatalf("a fresh conversion fails verification: %+v", rep)
	}
	if rep.Checked != p.Totals {
		t.Errorf("checked %+v, the plan has %+v", rep.Checked, p.Totals)
	}
	if len(p.Patches) == 0 || rep.Patched == 0 {
		t.Fatalf("the fixture's plan has %d patches, %d patch bytes checked: the test needs guest edits", len(p.Patches), rep.Patched)
	}
	names := map[string]bool{}
	for _, c := range rep.Structure {
		names[c.Name] = c.OK
	}
	if !names["gpt"] || !names["lvm"] || len(names) < 4 {
		t.Fatalf("structure checks missing or failing: %+v", rep.Structure)
	}

	// Flip one byte in a Decrypt region, one in a Copy region, one in a Zero region and one inside a
	// patch, each away from the others and from the metadata the structure checks read.
	patched := func(off int64) bool {
		for _, pt := range p.Patches {
			if off >= pt.Offset-4096 && off < pt.Offset+int64(len(pt.Data))+4096 {
				return true
			}
		}
		return false
	}
	var flips []int64
	for _, kind := range []luksconv.RegionKind{luksconv.Decrypt, luksconv.Copy, luksconv.Zero} {
		found := false
		for _, r := range p.Regions {
			if r.Kind != kind || r.Length < 3<<20 {
				continue
			}
			for off := r.Offset + r.Length/2; off < r.Offset+r.Length-4096 && !found; off += 4096 {
				if !patched(off) {
					flips, found = append(flips, off+17), true
				}
			}
			if found {
				break
			}
		}
		if !found {
			t.Fatalf("no %s region large enough to corrupt", kind)
		}
	}
	pt := p.Patches[len(p.Patches)-1]
	flips = append(flips, pt.Offset+int64(len(pt.Data))/2)

	bad := filepath.Join(t.TempDir(), "bad.raw")
	copyFileTo(t, out, bad)
	for _, off := range flips {
		testenv.FlipByte(t, bad, off)
	}
	rep, _, err = verifyFixture(t, f, bad, luksconv.FormatRaw)
	if !errors.Is(err, luksconv.ErrVerifyFailed) || rep == nil {
		t.Fatalf("four flipped bytes: %v, want a report and ErrVerifyFailed", err)
	}
	if rep.Pass || rep.MismatchCount != 4 || rep.MismatchBytes != 4 || len(rep.Mismatches) != 4 {
		t.Fatalf("four flipped bytes: pass %v, %d mismatches (%d bytes): %+v", rep.Pass, rep.MismatchCount, rep.MismatchBytes, rep.Mismatches)
	}
	kinds := map[luksconv.RegionKind]int{}
	var inPatch int
	for i, m := range rep.Mismatches {
		if m.Offset != sortedCopy(flips)[i] {
			t.Errorf("mismatch %d at %d, flipped bytes at %v", i, m.Offset, flips)
		}
		kinds[m.Kind]++
		// Each lies in a partition (the Copy region spans the ESP, /boot and BIOS boot), the decrypted
		// one in the volume's.
		if m.Partition == 0 || m.Kind == luksconv.Decrypt && m.Partition != p.Volume.Partition {
			t.Errorf("mismatch at %d (%s) names partition %d; the volume is partition %d", m.Offset, m.Kind, m.Partition, p.Volume.Partition)
		}
		if m.Kind == luksconv.Zero && m.Reason == "" {
			t.Errorf("mismatch at %d in a zero region does not say why the region is zero", m.Offset)
		}
		if m.Patch != "" {
			inPatch++
			if m.Offset != flips[3] {
				t.Errorf("mismatch at %d names patch %q; only %d is inside one", m.Offset, m.Patch, flips[3])
			}
		}
	}
	if kinds[luksconv.Decrypt] == 0 || kinds[luksconv.Copy] == 0 || kinds[luksconv.Zero] == 0 || inPatch != 1 {
		t.Fatalf("mismatches do not name each region kind and the patch: %+v", rep.Mismatches)
	}

	// A truncated output is an error, not a report.
	short := filepath.Join(t.TempDir(), "short.raw")
	copyFileTo(t, out, short)
	if err := os.Truncate(short, p.OutputSize/2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := verifyFixture(t, f, short, luksconv.FormatRaw); !errors.Is(err, luksconv.ErrTruncated) {
		t.Fatalf("truncated output: %v, want ErrTruncated", err)
	}

	// An output 1 MiB longer than planned, every planned byte right, fails: a disk of another size is
	// not the disk the plan describes.
	long := filepath.Join(t.TempDir(), "long.raw")
	copyFileTo(t, out, long)
	if err := os.Truncate(long, p.OutputSize+1<<20); err != nil {
		t.Fatal(err)
	}
	rep, _, err = verifyFixture(t, f, long, luksconv.FormatRaw)
	if !errors.Is(err, luksconv.ErrVerifyFailed) || rep == nil || rep.Pass || rep.MismatchCount != 0 || !hasCheck(rep, "size", false) {
		t.Fatalf("output 1 MiB too long: %v, report %+v; want ErrVerifyFailed from the size check alone", err, rep)
	}
}

func TestVerifyVHD(t *testing.T) {
	f, out, _ := convertRHEL8(t, luksconv.FormatVHD)
	rep, _, err := verifyFixture(t, f, out, luksconv.FormatVHD)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Pass {
		t.Fatalf("VHD output fails verification: %+v", rep)
	}
}

// convertRHEL8 converts the rhel8-lvm fixture, opened with its first key file, into format and returns
// the fixture, the output and the plan.
func convertRHEL8(t *testing.T, format luksconv.Format) (fixture.Fixture, string, *luksconv.Plan) {
	t.Helper()
	f, ok := fixture.Load(t).Get("rhel8-lvm")
	if !ok {
		t.Fatal("no rhel8-lvm fixture")
	}
	key, err := os.ReadFile(f.KeyFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	out, p, _ := convertOpts(t, f.Image, luksconv.PlanOptions{Passphrase: key, Header: openHeader(t, f.Header), Partition: f.Partition, Format: format}, 2)
	return f, out, p
}

func copyFileTo(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func sortedCopy(x []int64) []int64 {
	y := append([]int64(nil), x...)
	for i := range y {
		for j := i + 1; j < len(y); j++ {
			if y[j] < y[i] {
				y[i], y[j] = y[j], y[i]
			}
		}
	}
	return y
}

// TestVerifyFormatMismatch: an output in another container than the plan's is not the planned output,
// even when the disk inside holds every planned byte. The fixture's disk is a whole MiB, so its raw and
// VHD plans describe the same bytes: a fixed VHD that lost its footer (a raw image, which Azure does
// not take as a disk) and a VHD checked against a raw plan both passed before the format was checked.
func TestVerifyFormatMismatch(t *testing.T) {
	f, out, p := convertRHEL8(t, luksconv.FormatVHD)
	if p.OutputSize%(1<<20) != 0 {
		t.Fatalf("the fixture's disk (%d bytes) is not a whole MiB: the test needs raw and VHD plans of one size", p.OutputSize)
	}
	noFooter := filepath.Join(t.TempDir(), "nofooter.vhd")
	copyFileTo(t, out, noFooter)
	if err := os.Truncate(noFooter, p.OutputSize); err != nil {
		t.Fatal(err)
	}
	rep, _, err := verifyFixture(t, f, noFooter, luksconv.FormatVHD)
	if !errors.Is(err, luksconv.ErrVerifyFailed) || rep == nil || rep.Pass || rep.MismatchCount != 0 || !hasCheck(rep, "format", false) {
		t.Fatalf("a VHD without its footer, against a VHD plan: %v, report %+v; want ErrVerifyFailed from the format check", err, rep)
	}
	rep, _, err = verifyFixture(t, f, out, luksconv.FormatRaw)
	if !errors.Is(err, luksconv.ErrVerifyFailed) || rep == nil || rep.Pass || !hasCheck(rep, "format", false) {
		t.Fatalf("a fixed VHD against a raw plan: %v, report %+v; want ErrVerifyFailed from the format check", err, rep)
	}
	if rep, _, err := verifyFixture(t, f, out, luksconv.FormatVHD); err != nil || !hasCheck(rep, "format", true) {
		t.Fatalf("the VHD against its own plan: %v, report %+v", err, rep)
	}
}

// TestVerifyVHDFooter: a fixed VHD whose every disk byte is right but whose container Azure would not
// take as written fails the "vhd footer" check: a sector between the disk and its footer (a file one
// sector longer, which is no longer N MiB + 512 bytes), or a footer (checksum intact) that marks the
// disk as in a saved state or gives a fixed disk a data offset. These passed before the footer was
// checked. A footer written by another tool (qemu-img, other creator, time and geometry) still passes.
func TestVerifyVHDFooter(t *testing.T) {
	testenv.Need(t, "qemu-img")
	f, out, _ := convertRHEL8(t, luksconv.FormatVHD)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	disk, foot := b[:len(b)-vhd.FooterSize], b[len(b)-vhd.FooterSize:]
	withFooter := func(edit func(*vhd.Footer)) []byte {
		ft, err := vhd.ParseFooter(foot)
		if err != nil {
			t.Fatal(err)
		}
		edit(ft)
		nb, _ := ft.MarshalBinary()
		return nb
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data [][]byte
	}{
		{"a sector between the disk and the footer", [][]byte{disk, make([]byte, 512), foot}},
		{"a saved state", [][]byte{disk, withFooter(func(ft *vhd.Footer) { ft.SavedState = 1 })}},
		{"a data offset", [][]byte{disk, withFooter(func(ft *vhd.Footer) { ft.DataOffset = 512 })}},
	} {
		bad := filepath.Join(dir, "bad.vhd")
		if err := os.WriteFile(bad, bytes.Join(c.data, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		rep, _, err := verifyFixture(t, f, bad, luksconv.FormatVHD)
		if !errors.Is(err, luksconv.ErrVerifyFailed) || rep == nil || rep.Pass || rep.MismatchCount != 0 || !hasCheck(rep, "vhd footer", false) {
			t.Errorf("%s: %v, report %+v; want ErrVerifyFailed from the vhd footer check alone", c.name, err, rep)
		}
	}

	// The raw disk wrapped by qemu-img (force_size keeps the size exact) holds the same disk.
	raw := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(raw, disk, 0o600); err != nil {
		t.Fatal(err)
	}
	qv := filepath.Join(dir, "qemu.vhd")
	if o, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size", raw, qv).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, o)
	}
	if rep, _, err := verifyFixture(t, f, qv, luksconv.FormatVHD); err != nil || !hasCheck(rep, "vhd footer", true) {
		t.Fatalf("qemu-img's fixed VHD of the output: %v, report %+v", err, rep)
	}
}

// TestVerifyGrownDisk: a disk grown after partitioning (an Azure disk resized, the guest not yet told)
// keeps its backup GPT at the old end, and the conversion keeps it there as the source has it. That
// correct output failed the gpt check on the warning the source carries too; a warning the source
// does not have (the output's primary header damaged, the backup used) still fails.
func TestVerifyGrownDisk(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("data-luks2-4k")
	b, err := os.ReadFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	f.Image = filepath.Join(t.TempDir(), "grown.raw")
	if err := os.WriteFile(f.Image, append(b, make([]byte, 1<<20)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command("sgdisk", "-v", f.Image).CombinedOutput(); !bytes.Contains(o, []byte("secondary header's self-pointer")) {
		t.Fatalf("sgdisk -v does not see the backup header away from the grown disk's end: %v\n%s", err, o)
	}
	key, err := os.ReadFile(f.KeyFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []luksconv.Format{luksconv.FormatRaw, luksconv.FormatVHD} {
		out, _, _ := convertOpts(t, f.Image, luksconv.PlanOptions{Passphrase: key, Partition: f.Partition, Format: format}, 2)
		rep, _, err := verifyFixture(t, f, out, format)
		if err != nil || !hasCheck(rep, "gpt", true) {
			t.Fatalf("%s output of a grown disk: %v, report %+v", format, err, rep)
		}
		if format != luksconv.FormatRaw {
			continue
		}
		testenv.FlipByte(t, out, 512+20) // the primary header: the output's table is read from the backup
		if rep, _, err := verifyFixture(t, f, out, format); !errors.Is(err, luksconv.ErrVerifyFailed) || !hasCheck(rep, "gpt", false) {
			t.Fatalf("grown disk's output with its primary GPT header damaged: %v, report %+v; want the gpt check failing", err, rep)
		}
	}
}
