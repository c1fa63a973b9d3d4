package luksconv_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
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

	second := func(d *luksconv.Plan) []byte {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out.raw")
		testenv.Run(t, "cp", "--sparse=always", first, out)
		executeInto(t, d, src2, out)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
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
	for name, b := range set.Files2 {
		dst := filepath.Join(dir, "dump")
		os.Remove(dst)
		testenv.Run(t, "debugfs", "-R", "dump /"+name+" "+dst, check)
		if c, _ := os.ReadFile(dst); !bytes.Equal(c, b) {
			t.Errorf("/%s after the delta pass: %d bytes, not state 2's", name, len(c))
		}
	}

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
