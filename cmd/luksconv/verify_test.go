package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
)

// TestVerifyCommand converts with --verify, verifies the output again, then corrupts and truncates
// copies of it.
func TestVerifyCommand(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.vhd")
	_, se, code := run(t, nil, "convert", "--verify", "--format", "vhd", "--key-file", f.KeyFiles[0], f.Image, out)
	if code != 0 || !strings.Contains(se, "PASS") {
		t.Fatalf("convert --verify: exit %d:\n%s", code, se)
	}
	so, se, code := run(t, nil, "verify", "--key-file", f.KeyFiles[0], f.Image, out)
	if code != 0 || !strings.Contains(so, ": PASS") || !strings.Contains(so, "ok   lvm") {
		t.Fatalf("verify: exit %d:\n%s%s", code, so, se)
	}
	so, _, code = run(t, nil, "verify", "--json", "--key-file", f.KeyFiles[0], f.Image, out)
	var rep luksconv.VerifyReport
	if err := json.Unmarshal([]byte(so), &rep); code != 0 || err != nil || !rep.Pass || rep.Checked.Decrypt == 0 {
		t.Fatalf("verify --json: exit %d, %v:\n%s", code, err, so)
	}
	// Verifying with other options than convert used is a mismatch: --keep-guest drops the guest edits.
	if so, _, code := run(t, nil, "verify", "--keep-guest", "--key-file", f.KeyFiles[0], f.Image, out); code != exitVerifyFailed || !strings.Contains(so, "mismatches:") {
		t.Fatalf("verify --keep-guest of an edited output: exit %d, want %d:\n%s", code, exitVerifyFailed, so)
	}

	// One flipped byte in the middle of the first large decrypt region.
	var plan luksconv.Plan
	pj, _, _ := run(t, nil, "plan", "--json", "--format", "vhd", "--key-file", f.KeyFiles[0], f.Image)
	if err := json.Unmarshal([]byte(pj), &plan); err != nil {
		t.Fatal(err)
	}
	var flip int64 = -1
	for _, r := range plan.Regions {
		if r.Kind == luksconv.Decrypt && r.Length > 64<<10 {
			flip = r.Offset + r.Length/2 + 3
			break
		}
	}
	if flip < 0 {
		t.Fatal("no decrypt region to corrupt")
	}
	bad := filepath.Join(dir, "bad.vhd")
	copyFile(t, out, bad, -1)
	testenv.FlipByte(t, bad, flip)
	so, se, code = run(t, nil, "verify", "--key-file", f.KeyFiles[0], f.Image, bad)
	if code != exitVerifyFailed || !strings.Contains(so, "FAIL") || !strings.Contains(so, "in the decrypt region") {
		t.Fatalf("verify of a corrupted output: exit %d, want %d:\n%s%s", code, exitVerifyFailed, so, se)
	}

	// A truncated raw output: one clear line, the corrupt/truncated exit code.
	raw := filepath.Join(dir, "out.raw")
	if _, se, code := run(t, nil, "convert", "-q", "--key-file", f.KeyFiles[0], f.Image, raw); code != 0 {
		t.Fatalf("convert: exit %d: %s", code, se)
	}
	short := filepath.Join(dir, "short.raw")
	copyFile(t, raw, short, 1<<20)
	_, se, code = run(t, nil, "verify", "--key-file", f.KeyFiles[0], f.Image, short)
	if code != exitCorrupt || !strings.Contains(se, "truncated") {
		t.Fatalf("verify of a truncated output: exit %d, want %d:\n%s", code, exitCorrupt, se)
	}
}

// TestVerifyPageBlob checks a conversion uploaded to a page blob (Azurite) with convert --verify and verify.
func TestVerifyPageBlob(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	az := azurite.Start(t)
	az.CreateContainer(t, "disks")
	dst := az.BlobSAS(t, "disks", "plain.vhd", azurite.WriteSAS, time.Hour)
	dir := t.TempDir()
	_, se, code := run(t, nil, "convert", "--verify", "--journal", filepath.Join(dir, "j"), "--key-file", f.KeyFiles[0], f.Image, dst)
	if code != 0 || !strings.Contains(se, "PASS") || strings.Contains(se, sasSig(t, dst)) {
		t.Fatalf("convert --verify to a page blob: exit %d:\n%s", code, se)
	}
	rd := az.BlobSAS(t, "disks", "plain.vhd", azurite.ReadSAS, time.Hour)
	so, se, code := run(t, nil, "verify", "--key-file", f.KeyFiles[0], f.Image, rd)
	if code != 0 || !strings.Contains(so, ": PASS") || strings.Contains(so+se, sasSig(t, rd)) {
		t.Fatalf("verify of a page blob: exit %d:\n%s%s", code, so, se)
	}
}

// TestVerifyFormatFlag: `verify --format vhd` of a fixed VHD that lost its footer (the fixture's disk
// is a whole MiB, so the raw disk inside holds every planned byte) is a mismatch, and so is a VHD
// verified with --format raw, or one whose footer is damaged; the format found in OUT passes.
func TestVerifyFormatFlag(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.vhd")
	if _, se, code := run(t, nil, "convert", "-q", "--format", "vhd", "--key-file", f.KeyFiles[0], f.Image, out); code != 0 {
		t.Fatalf("convert: exit %d: %s", code, se)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	noFooter := filepath.Join(dir, "nofooter.vhd")
	copyFile(t, out, noFooter, fi.Size()-512)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"--format", "vhd", f.Image, noFooter}, exitVerifyFailed},
		{[]string{"--format", "raw", f.Image, out}, exitVerifyFailed},
		{[]string{f.Image, out}, 0},
	} {
		so, se, code := run(t, nil, append([]string{"verify", "--key-file", f.KeyFiles[0]}, c.args...)...)
		if code != c.code {
			t.Errorf("verify %v: exit %d, want %d:\n%s%s", c.args, code, c.code, so, se)
		} else if c.code != 0 && !strings.Contains(so, "FAIL format") {
			t.Errorf("verify %v: the report does not name the format:\n%s", c.args, so)
		}
	}

	// A flipped byte in the footer (its checksum fails) is an output that differs from the plan, exit
	// 9 with the footer named, not the exit code of a damaged input (5), which blames the source.
	badFooter := filepath.Join(dir, "badfooter.vhd")
	copyFile(t, out, badFooter, -1)
	testenv.FlipByte(t, badFooter, fi.Size()-512+100)
	if so, se, code := run(t, nil, "verify", "--key-file", f.KeyFiles[0], f.Image, badFooter); code != exitVerifyFailed || !strings.Contains(se, "footer") {
		t.Errorf("verify of a VHD whose footer fails its checksum: exit %d, want %d and the footer named:\n%s%s", code, exitVerifyFailed, so, se)
	}
}

// TestVerifyBlockDevice: a conversion onto a block device larger than the disk passes `verify` as it
// passes `convert --verify` (the device's spare bytes past the disk are not part of it), raw or VHD;
// a flipped byte on the device still fails, and so does a flipped byte in the VHD's footer.
func TestVerifyBlockDevice(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("data-luks2-4k") // a 50 MiB disk
	dir := t.TempDir()
	dev, _ := testenv.AttachLoop(t, testenv.SparseFile(t, dir, "dev.img", 64<<20))
	for _, format := range []string{"raw", "vhd"} {
		if _, se, code := run(t, nil, "convert", "-q", "--force", "--verify", "--format", format, "--key-file", f.KeyFiles[0], f.Image, dev); code != 0 {
			t.Fatalf("convert --verify --format %s onto %s: exit %d: %s", format, dev, code, se)
		}
		if so, se, code := run(t, nil, "verify", "--key-file", f.KeyFiles[0], f.Image, dev); code != 0 {
			t.Fatalf("verify of %s (%s): exit %d, want 0:\n%s%s", dev, format, code, so, se)
		}
	}
	// The device holds the VHD (the last conversion): a flipped byte in its footer fails, rather than
	// the device passing as a raw disk without one.
	testenv.FlipByte(t, dev, f.DiskSize+100)
	if so, se, code := run(t, nil, "verify", "--key-file", f.KeyFiles[0], f.Image, dev); code != exitVerifyFailed || !strings.Contains(se, "footer") {
		t.Fatalf("verify of a device whose VHD footer is damaged: exit %d, want %d and the footer named:\n%s%s", code, exitVerifyFailed, so, se)
	}
	testenv.FlipByte(t, dev, f.DiskSize+100)
	testenv.FlipByte(t, dev, 20<<20+123)
	if so, se, code := run(t, nil, "verify", "--key-file", f.KeyFiles[0], f.Image, dev); code != exitVerifyFailed {
		t.Fatalf("verify of a corrupted device: exit %d, want %d:\n%s%s", code, exitVerifyFailed, so, se)
	}
}
