package luksconv_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/ext"
	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/deltafixture"
	"github.com/luksconv/luksconv/internal/testenv"
)

// TestExtUnusedInodeTables: an encrypted ext4 volume whose inode-table blocks past each group's
// watermark hold stale bytes (as after e2fsck lowered a watermark, or before the kernel's lazy init
// ran) is planned with those blocks as zeros, counted under their own reason, never read; the output
// is the plaintext with exactly those blocks zeroed, and e2fsck -fn finds it clean.
func TestExtUnusedInodeTables(t *testing.T) {
	testenv.Need(t, "cryptsetup", "mkfs.ext4", "e2fsck")
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 11))
	vk := testenv.WriteFile(t, dir, "vk", testenv.RandBytes(rng, 64))
	pass := testenv.WriteFile(t, dir, "pass", []byte("itable-passphrase"))
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	for i := range 40 {
		testenv.WriteFile(t, tree, fmt.Sprintf("f%02d", i), testenv.RandBytes(rng, 5000*i))
	}
	plain := filepath.Join(dir, "plain.img")
	testenv.Run(t, "mkfs.ext4", "-q", "-b", "4096", "-d", tree, plain, "96M")

	img, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := ext.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	unused, err := fs.UnusedInodeTables()
	if err != nil || extent.Total(unused) < 4<<20 {
		t.Fatalf("UnusedInodeTables() = %d bytes, %v: the fixture is not what the test means", extent.Total(unused), err)
	}
	for _, r := range unused {
		copy(img[r.Off:r.End()], testenv.RandBytes(rng, int(r.Len)))
	}
	if err := os.WriteFile(plain, img, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := testenv.RunErr("e2fsck", "-fn", plain); err != nil {
		t.Fatalf("e2fsck -fn on the plaintext with stale inode tables: %v\n%s", err, out)
	}

	st := deltafixture.Encrypt(t, dir, "s", plain, vk, pass)
	p, src := planState(t, st, pass)
	var skipped int64
	for _, s := range p.Skipped {
		if strings.HasPrefix(s.Reason, "ext unused inode table: ") {
			skipped += s.Bytes
		}
	}
	if skipped != extent.Total(unused) {
		t.Errorf("the plan skips %d bytes of unused inode tables, want %d (%+v)", skipped, extent.Total(unused), p.Skipped)
	}
	out := executeTo(t, p, src)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := img
	for _, r := range unused {
		clear(want[r.Off:r.End()])
	}
	if len(got) < len(want) || !bytes.Equal(got[:len(want)], want) {
		t.Fatal("the output is not the plaintext with its unused inode tables zeroed")
	}
	check := filepath.Join(dir, "fs.img")
	if err := os.WriteFile(check, got[:len(want)], 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := testenv.RunErr("e2fsck", "-fn", check); err != nil {
		t.Errorf("e2fsck -fn on the output: %v\n%s", err, out)
	}
}
