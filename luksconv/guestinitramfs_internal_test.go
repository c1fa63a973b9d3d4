package luksconv

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/ext"
	"github.com/luksconv/luksconv/initramfs"
	"github.com/luksconv/luksconv/internal/testenv"
)

// TestLZ4InitrdZeroPadded: an initramfs-tools initrd whose lz4 legacy stream is followed by zero
// bytes (which the kernel skips, as Parse does) and that shrinks on an ext2 /boot is padded back to
// its blocks with lz4 chunks. The chunks must continue the stream: after the zeros the kernel has
// already ended it and would take them for a new segment of unknown magic, so the zeros go. The
// edited /boot passes e2fsck -fn, and its initrd parses, passes lz4 -t and no longer has ADE's script.
func TestLZ4InitrdZeroPadded(t *testing.T) {
	testenv.Need(t, "lz4", "mkfs.ext2", "e2fsck")
	rng := rand.New(rand.NewPCG(3, 5))
	var raw bytes.Buffer
	w := initramfs.NewWriter(&raw)
	ino := uint32(1)
	add := func(name string, mode uint32, data []byte) {
		if err := w.WriteEntry(&initramfs.Entry{Header: initramfs.Header{Name: name, Mode: mode, NLink: 1, Ino: ino}, Data: data}); err != nil {
			t.Fatal(err)
		}
		ino++
	}
	const dir, file = initramfs.ModeDir | 0o755, initramfs.ModeRegular | 0o755
	add(".", dir, nil)
	add("bin", dir, nil)
	add("bin/busybox", file, testenv.RandBytes(rng, 200<<10))
	add("conf", dir, nil)
	add("conf/initramfs.conf", file, []byte("MODULES=most\n"))
	add("init", file, []byte("#!/bin/sh\n"))
	add("scripts", dir, nil)
	add("scripts/functions", file, []byte("# functions\n"))
	add("scripts/init-premount", dir, nil)
	add("scripts/init-premount/ORDER", file, []byte("/scripts/init-premount/crypt-ade-boot \"$@\"\n[ -e /conf/param.conf ] && . /conf/param.conf\n"))
	// Random, so that its removal shrinks the image by many blocks.
	add("scripts/init-premount/crypt-ade-boot", file, testenv.RandBytes(rng, 64<<10))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("lz4", "-l", "-9", "-q", "-c")
	cmd.Stdin = &raw
	lz, err := cmd.Output()
	if err != nil {
		t.Fatalf("lz4 -l: %v", err)
	}
	initrd := append(lz, 0, 0, 0, 0)
	if im, err := initramfs.Parse(bytes.NewReader(initrd), int64(len(initrd))); err != nil || len(im.Segments) != 1 || im.Segments[0].Padding != 4 {
		t.Fatalf("the zero-padded lz4 initrd: %v", err)
	}

	tmp := t.TempDir()
	tree := filepath.Join(tmp, "boot")
	for _, d := range []string{"luks", "grub"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WriteFile(t, filepath.Join(tree, "luks"), "osluksheader", make([]byte, 4096))
	testenv.WriteFile(t, filepath.Join(tree, "grub"), "grub.cfg", []byte("menuentry 'Ubuntu' {\n\tlinux /vmlinuz-6.1.0 root=UUID=0c5a6f1e-9d1e-4e7b-8a8f-3c2b1a0d9e8f ro\n\tinitrd /initrd.img-6.1.0\n}\n"))
	testenv.WriteFile(t, tree, "initrd.img-6.1.0", initrd)
	img := filepath.Join(tmp, "boot.ext2")
	testenv.Run(t, "mkfs.ext2", "-q", "-b", "1024", "-d", tree, img, "16M")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}

	e, err := guestEdits(t.Context(), []guestVolume{{part: 2, r: bytes.NewReader(b), size: int64(len(b)), content: ContentExt4}}, nil, guestOptions{})
	if err != nil {
		t.Fatalf("guest edits: %v", err)
	}
	edited := false
	for _, ed := range e.edits {
		if ed.Path == "/boot/initrd.img-6.1.0" {
			edited = true
			t.Logf("%s: %s", ed.Path, ed.Why)
		}
	}
	if !edited {
		t.Fatalf("the initrd was not edited; warnings: %+v", e.warnings)
	}
	for _, p := range e.patches {
		copy(b[p.Offset:], p.Data)
	}
	if err := os.WriteFile(img, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := testenv.RunErr("e2fsck", "-fn", img); err != nil {
		t.Fatalf("e2fsck -fn after the edits: %v\n%s", err, out)
	}
	fs, err := ext.Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := fs.ReadFile("/initrd.img-6.1.0")
	if err != nil {
		t.Fatal(err)
	}
	im, err := initramfs.Parse(bytes.NewReader(got), int64(len(got)))
	if err != nil {
		t.Fatalf("the edited initrd does not parse as the kernel would unpack it: %v", err)
	}
	if _, err := im.ReadFile("scripts/init-premount/crypt-ade-boot"); err == nil {
		t.Error("crypt-ade-boot is still in the edited initrd")
	}
	if out, err := testenv.RunErr("lz4", "-t", testenv.WriteFile(t, tmp, "new.lz4", got)); err != nil {
		t.Errorf("lz4 -t on the edited initrd: %v\n%s", err, strings.TrimSpace(out))
	}
}
