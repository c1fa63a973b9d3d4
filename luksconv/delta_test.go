package luksconv_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/extent"
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

// deltaState is one state of an encrypted ext4 volume: its ciphertext, detached header and plaintext.
type deltaState struct{ disk, header, plain string }

// encryptState encrypts a copy of the plaintext image with cryptsetup under the volume key vk (so that
// unchanged sectors give the same ciphertext in every state, as on a disk ADE encrypted once), with a
// detached header and the data at offset 0, as ADE's OS volumes.
func encryptState(t testing.TB, dir, name, plain, vk, pass string) deltaState {
	t.Helper()
	st := deltaState{disk: filepath.Join(dir, name+".raw"), header: filepath.Join(dir, name+".hdr"), plain: plain}
	testenv.Run(t, "cp", "--sparse=always", plain, st.disk)
	testenv.Run(t, "truncate", "-s", "16M", st.header)
	testenv.Run(t, "cryptsetup", "reencrypt", "--encrypt", "--type", "luks2", "--header", st.header, "--key-file", pass,
		"--volume-key-file", vk, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "-q", st.disk)
	return st
}

// diffPages lists the 512-byte pages that differ between two files of the same size: the least a page
// blob's diff between two snapshots reports.
func diffPages(t testing.TB, a, b string) []extent.Range {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != len(y) {
		t.Fatalf("%s and %s differ in size", a, b)
	}
	var out []extent.Range
	for off := 0; off < len(x); off += 512 {
		if !bytes.Equal(x[off:off+512], y[off:off+512]) {
			out = append(out, extent.Range{Off: int64(off), Len: 512})
		}
	}
	return extent.Merge(out)
}

// TestDelta: a first pass converts state 1 of an encrypted ext4 volume; the guest then writes, deletes
// and rewrites files (debugfs -w on the plaintext, re-encrypted by cryptsetup under the same volume
// key); a second pass writes only Delta's regions into the first pass's output. The result equals a
// full conversion of state 2 byte for byte, e2fsck finds it clean and every file holds state 2's
// content; the second pass wrote a small part of the disk; and with the changes withheld the result
// differs, so the diff is what makes it right. Two more passes follow the journal dirtied
// (needs_recovery: the volume is decrypted in full) and cleaned (free space zeros again).
func TestDelta(t *testing.T) {
	testenv.Need(t, "cryptsetup", "mkfs.ext4", "debugfs", "e2fsck")
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(16, 1))
	vk := testenv.WriteFile(t, dir, "vk", testenv.RandBytes(rng, 64))
	pass := testenv.WriteFile(t, dir, "pass", []byte("delta-test-passphrase"))
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	files := map[string][]byte{"keep": testenv.RandBytes(rng, 3<<20), "gone": testenv.RandBytes(rng, 4<<20),
		"grows": testenv.RandBytes(rng, 1<<20), "etc/conf": []byte("state 1\n")}
	for name, b := range files {
		os.WriteFile(filepath.Join(tree, name), b, 0o644)
	}
	plain1 := filepath.Join(dir, "plain1.img")
	testenv.Run(t, "mkfs.ext4", "-q", "-b", "4096", "-d", tree, plain1, "64M")
	s1 := encryptState(t, dir, "s1", plain1, vk, pass)

	ctx := context.Background()
	plan := func(st deltaState) (*luksconv.Plan, *luksconv.Source) {
		t.Helper()
		src, err := luksconv.OpenFile(st.disk)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		p, err := luksconv.NewPlan(ctx, src, luksconv.PlanOptions{KeyFile: pass, Header: openHeader(t, st.header)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p, src
	}
	p1, src1 := plan(s1)
	first := executeTo(t, p1, src1)

	// State 2: one file deleted (its blocks become free space, zeros in the output), one written, one
	// replaced by a larger one, a small file rewritten.
	plain2 := filepath.Join(dir, "plain2.img")
	testenv.Run(t, "cp", "--sparse=always", plain1, plain2)
	files2 := map[string][]byte{"new": testenv.RandBytes(rng, 2<<20), "grows": testenv.RandBytes(rng, 2<<20), "etc/conf": []byte("state 2, longer\n")}
	host := map[string]string{}
	for name, b := range files2 {
		host[name] = testenv.WriteFile(t, dir, strings.ReplaceAll(name, "/", "_")+".2", b)
	}
	for _, req := range []string{"rm /gone", "rm /grows", "write " + host["grows"] + " /grows", "write " + host["new"] + " /new",
		"rm /etc/conf", "write " + host["etc/conf"] + " /etc/conf"} {
		if out, err := exec.Command("debugfs", "-w", "-R", req, plain2).CombinedOutput(); err != nil || bytes.Contains(out, []byte("File not found")) {
			t.Fatalf("debugfs -w -R %q: %v\n%s", req, err, out)
		}
	}
	s2 := encryptState(t, dir, "s2", plain2, vk, pass)
	changed := diffPages(t, s1.disk, s2.disk)
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
		f, err := os.OpenFile(out, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := luksconv.Execute(ctx, d, src2, fileOutput{f}, luksconv.ExecuteOptions{}); err != nil {
			t.Fatal(err)
		}
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
	for name, b := range map[string][]byte{"keep": files["keep"], "new": files2["new"], "grows": files2["grows"], "etc/conf": files2["etc/conf"]} {
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
		testenv.Run(t, "cp", "--sparse=always", prevState.plain, plain)
		testenv.Run(t, "debugfs", "-w", "-R", "feature "+step.feature, plain)
		st := encryptState(t, dir, step.name, plain, vk, pass)
		pn, srcn := plan(st)
		d, err := luksconv.Delta(prevPlan, pn, diffPages(t, prevState.disk, st.disk))
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, step.name+".out")
		testenv.Run(t, "cp", "--sparse=always", prevOut, out)
		f, err := os.OpenFile(out, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = luksconv.Execute(ctx, d, srcn, fileOutput{f}, luksconv.ExecuteOptions{})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
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
