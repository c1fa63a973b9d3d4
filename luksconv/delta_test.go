package luksconv_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/deltafixture"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
)

// fileOutput is an existing output file a second pass writes into: it holds the first pass's bytes, so
// it is not zero-filled.
type fileOutput struct{ *os.File }

func (o fileOutput) ZeroFilled() bool                 { return false }
func (o fileOutput) Journal() luksconv.Journal        { return nil }
func (o fileOutput) Commit(ctx context.Context) error { return o.Sync() }
func (o fileOutput) Abort() error                     { return nil }

// planFile opens the disk image and plans it; both are closed when the test ends.
func planFile(t testing.TB, disk string, opts luksconv.PlanOptions) (*luksconv.Plan, *luksconv.Source) {
	t.Helper()
	src, err := luksconv.OpenFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	p, err := luksconv.NewPlan(context.Background(), src, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, src
}

// planState plans a state of internal/deltafixture's volume with its passphrase file.
func planState(t testing.TB, st deltafixture.State, pass string) (*luksconv.Plan, *luksconv.Source) {
	t.Helper()
	return planFile(t, st.Disk, luksconv.PlanOptions{KeyFile: pass, Header: openHeader(t, st.Header)})
}

// executeInto executes p (a second pass) into the output file path, which holds an earlier pass's
// conversion, and flushes it.
func executeInto(t testing.TB, p *luksconv.Plan, src *luksconv.Source, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o := fileOutput{f}
	if _, err := luksconv.Execute(context.Background(), p, src, o, luksconv.ExecuteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := o.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// secondPass executes the delta plan d into a copy of the first pass's output first and returns the
// result.
func secondPass(t *testing.T, first string, d *luksconv.Plan, src *luksconv.Source) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.raw")
	testenv.Run(t, "cp", "--sparse=always", first, out)
	executeInto(t, d, src, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkExtFiles requires every file of files ("etc/conf" for /etc/conf) to read back from the ext
// image img, through debugfs, with state 2's content.
func checkExtFiles(t *testing.T, img string, files map[string][]byte) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "dump")
	for name, b := range files {
		os.Remove(dst)
		testenv.Run(t, "debugfs", "-R", "dump /"+name+" "+dst, img)
		if c, _ := os.ReadFile(dst); !bytes.Equal(c, b) {
			t.Errorf("/%s after the delta pass: %d bytes, not state 2's", name, len(c))
		}
	}
}

// TestDelta: a first pass converts state 1 of an encrypted ext4 volume; the guest then writes, deletes
// and rewrites files (debugfs -w on the plaintext, re-encrypted by cryptsetup under the same volume
// key); a second pass writes only Delta's regions into the first pass's output. The result equals a
// full conversion of state 2 byte for byte, e2fsck finds it clean and every file holds state 2's
// content; the second pass wrote a small part of the disk; and with the changes withheld the result
// differs, so the diff is what makes it right. Two more passes follow the journal dirtied
// (needs_recovery: the volume is decrypted in full) and cleaned (free space zeros again).
func TestDelta(t *testing.T) {
	testenv.Need(t, "e2fsck")
	set := deltafixture.Build(t)
	dir, vk, pass, s1, s2 := set.Dir, set.VK, set.Pass, set.S1, set.S2
	plan := func(st deltafixture.State) (*luksconv.Plan, *luksconv.Source) { return planState(t, st, pass) }
	p1, src1 := plan(s1)
	first := executeTo(t, p1, src1)

	changed := deltafixture.ChangedPages(t, s1.Disk, s2.Disk)
	if extent.Total(changed) == 0 || extent.Total(changed) > 12<<20 {
		t.Fatalf("%d bytes of ciphertext changed: the fixture is not what the test means", extent.Total(changed))
	}

	p2, src2 := plan(s2)
	full := executeTo(t, p2, src2)
	d, err := luksconv.Delta(p1, p2, changed)
	if err != nil {
		t.Fatal(err)
	}
	rewritten := d.Totals.Copy + d.Totals.Decrypt + d.Totals.Zero
	t.Logf("ciphertext changed: %d bytes; the second pass rewrites %d of %d bytes (%d decrypted, %d zeroed)",
		extent.Total(changed), rewritten, p2.OutputSize, d.Totals.Decrypt, d.Totals.Zero)
	if rewritten == 0 || rewritten > p2.OutputSize/4 {
		t.Errorf("the second pass rewrites %d of %d bytes", rewritten, p2.OutputSize)
	}

	second := func(d *luksconv.Plan) []byte { return secondPass(t, first, d, src2) }
	got := second(d)
	want, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the delta pass differs from a full conversion of state 2")
	}
	check := filepath.Join(dir, "delta.raw")
	os.WriteFile(check, got, 0o600)
	if out, err := exec.Command("e2fsck", "-fn", check).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	checkExtFiles(t, check, set.Files2)

	// The journal dirtied (needs_recovery: the free-space map cannot be trusted, so the whole volume is
	// decrypted), then clean again (free space is zeros again): each pass from the previous output equals a
	// full conversion of its state.
	prevPlan, prevOut, prevState := p2, check, s2
	for _, step := range []struct{ name, feature string }{{"s3", "needs_recovery"}, {"s4", "^needs_recovery"}} {
		plain := filepath.Join(dir, step.name+".img")
		testenv.Run(t, "cp", "--sparse=always", prevState.Plain, plain)
		testenv.Run(t, "debugfs", "-w", "-R", "feature "+step.feature, plain)
		st := deltafixture.Encrypt(t, dir, step.name, plain, vk, pass)
		pn, srcn := plan(st)
		d, err := luksconv.Delta(prevPlan, pn, deltafixture.ChangedPages(t, prevState.Disk, st.Disk))
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, step.name+".out")
		testenv.Run(t, "cp", "--sparse=always", prevOut, out)
		executeInto(t, d, srcn, out)
		got, _ := os.ReadFile(out)
		want, _ := os.ReadFile(executeTo(t, pn, srcn))
		t.Logf("%s (%s): the pass rewrites %d bytes (%d decrypted, %d zeroed)", step.name, step.feature,
			d.Totals.Copy+d.Totals.Decrypt+d.Totals.Zero, d.Totals.Decrypt, d.Totals.Zero)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the delta pass differs from a full conversion", step.name)
		}
		prevPlan, prevOut, prevState = pn, out, st
	}

	// Withheld changes: the same plans with an empty diff leave state 1's data in place.
	stale, err := luksconv.Delta(p1, p2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(second(stale), want) {
		t.Error("without the changed pages the delta pass still gives state 2: the test proves nothing")
	}
	// Plans of different outputs are refused.
	if _, err := luksconv.Delta(p1, &luksconv.Plan{OutputSize: p2.OutputSize + 4096, Format: p2.Format}, changed); err == nil {
		t.Error("a delta between outputs of different sizes was accepted")
	}
}

// regionsOf lists the output ranges of p's regions of kind k that lie within r.
func regionsOf(p *luksconv.Plan, k luksconv.RegionKind, r extent.Range) []extent.Range {
	var out []extent.Range
	for _, g := range p.Regions {
		if g.Kind == k {
			out = append(out, extent.Clip([]extent.Range{{Off: g.Offset, Len: g.Length}}, r.Off, r.Len)...)
		}
	}
	return extent.Merge(out)
}

// TestDeltaLVExtended: the plaintext of the encrypted volume is an LVM PV; between the passes the guest
// extends its LV datalv by a second segment after another LV and a gap (vgcfgrestore), grows the ext4
// filesystem on it (resize2fs) and writes a file that spills into the new extents. The first pass wrote
// those extents as zeros (free LVM extents); the second must decrypt the parts of them the grown
// filesystem uses. The delta pass equals a full conversion of state 2 byte for byte; the LV read from
// it through vgcfgbackup's segments passes e2fsck and holds every file of state 2; the pass wrote a
// small part of the disk; and the new segment comes right from the mapping change alone: with the
// changed pages withheld the delta still writes it as a full conversion does (the rest of the disk
// then differs).
func TestDeltaLVExtended(t *testing.T) {
	testenv.Need(t, "e2fsck", "debugfs", "dumpe2fs")
	set := deltafixture.BuildLVM(t)
	dir, s1, s2 := set.Dir, set.S1, set.S2
	p1, src1 := planState(t, s1, set.Pass)
	if p1.Volume.Content != "lvm2-pv" || p1.Volume.PayloadOffset != 0 {
		t.Fatalf("state 1 planned as %q with its payload at %d: want an LVM PV at byte 0", p1.Volume.Content, p1.Volume.PayloadOffset)
	}
	first := executeTo(t, p1, src1)
	p2, src2 := planState(t, s2, set.Pass)
	full := executeTo(t, p2, src2)

	// The new segment: free extents (zeros) in the first plan, partly decrypted in the second.
	g := set.Segs2[len(set.Segs2)-1]
	seg := extent.Range{Off: set.PEStart + g.PE*set.ExtentSize, Len: g.Count * set.ExtentSize}
	if z := extent.Total(regionsOf(p1, luksconv.Zero, seg)); z != seg.Len {
		t.Fatalf("state 1's plan writes %d of the %d bytes of the extents the LV takes later as zeros, not all", z, seg.Len)
	}
	newData := regionsOf(p2, luksconv.Decrypt, seg)
	if extent.Total(newData) < int64(len(set.Files2[set.NewFile]))/2 {
		t.Fatalf("state 2's plan decrypts %d bytes of datalv's new segment: less than half of /%s", extent.Total(newData), set.NewFile)
	}

	changed := deltafixture.ChangedPages(t, s1.Disk, s2.Disk)
	d, err := luksconv.Delta(p1, p2, changed)
	if err != nil {
		t.Fatal(err)
	}
	rewritten := d.Totals.Copy + d.Totals.Decrypt + d.Totals.Zero
	t.Logf("ciphertext changed: %d bytes; the second pass rewrites %d of %d bytes (%d decrypted, %d zeroed); "+
		"state 2 decrypts %d bytes of the new segment", extent.Total(changed), rewritten, p2.OutputSize,
		d.Totals.Decrypt, d.Totals.Zero, extent.Total(newData))
	if rewritten < extent.Total(newData) || rewritten > p2.OutputSize/4 {
		t.Errorf("the second pass rewrites %d of %d bytes", rewritten, p2.OutputSize)
	}

	second := func(d *luksconv.Plan) []byte { return secondPass(t, first, d, src2) }
	got := second(d)
	want, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the delta pass differs from a full conversion of state 2")
	}

	// The oracle: the output is the PV in plaintext from byte 0; datalv, gathered from the segments
	// vgcfgbackup read back, is checked by e2fsprogs.
	check := testenv.WriteFile(t, dir, "delta.raw", got)
	lv := filepath.Join(dir, "datalv.out")
	set.ExtractLV(t, check, set.Segs2, lv)
	if out, err := exec.Command("e2fsck", "-fn", lv).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn on datalv after the delta pass: %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`(?m)^Block count:\s+(\d+)$`).FindStringSubmatch(testenv.Run(t, "dumpe2fs", "-h", lv)); m == nil ||
		m[1] != strconv.FormatInt((set.Segs2[0].Count+g.Count)*set.ExtentSize/4096, 10) {
		t.Errorf("datalv's ext4 does not fill the extended LV of %d extents: block count %v", set.Segs2[0].Count+g.Count, m)
	}
	if out, err := exec.Command("debugfs", "-R", "cat /"+set.NewFile, lv).Output(); err != nil || !bytes.Equal(out, set.Files2[set.NewFile]) {
		t.Errorf("debugfs cat /%s after the delta pass: %d bytes, not state 2's (%v)", set.NewFile, len(out), err)
	}
	checkExtFiles(t, lv, set.Files2)

	// The mapping change alone rewrites the new segment: with no changed pages the delta still covers
	// every byte state 2 decrypts there, and writes the segment as a full conversion does; elsewhere
	// (the LVM metadata, the ext4 metadata and files in the first segment) state 1's bytes stay.
	stale, err := luksconv.Delta(p1, p2, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("without the changed pages the second pass rewrites %d bytes", stale.Totals.Copy+stale.Totals.Decrypt+stale.Totals.Zero)
	var staleCover []extent.Range
	for _, r := range stale.Regions {
		staleCover = append(staleCover, extent.Range{Off: r.Offset, Len: r.Length})
	}
	for _, r := range newData {
		if c := extent.Total(extent.Clip(extent.Merge(staleCover), r.Off, r.Len)); c != r.Len {
			t.Errorf("without the changed pages the delta rewrites %d of the %d bytes state 2 decrypts at %d in the new segment", c, r.Len, r.Off)
		}
	}
	staleOut := second(stale)
	if !bytes.Equal(staleOut[seg.Off:seg.End()], want[seg.Off:seg.End()]) {
		t.Error("without the changed pages the new segment differs from a full conversion of state 2")
	}
	if bytes.Equal(staleOut, want) {
		t.Error("without the changed pages the delta pass still gives state 2: the test proves nothing")
	}
}
