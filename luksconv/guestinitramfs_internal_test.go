package luksconv

import (
	"bytes"
	"fmt"
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

// adeToolsInitrd returns an initramfs-tools image holding ADE's boot script crypt-ade-boot, whose
// 64 KiB of random bytes make the image shrink by many blocks once the script is out, compressed by
// the command compress.
func adeToolsInitrd(t *testing.T, compress ...string) []byte {
	t.Helper()
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
	add("scripts/init-premount/crypt-ade-boot", file, testenv.RandBytes(rng, 64<<10))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(compress[0], compress[1:]...)
	cmd.Stdin = &raw
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(compress, " "), err)
	}
	return out
}

// bootWithInitrd makes an ext /boot image with mkfs (1 KiB blocks) holding ADE's header, a grub.cfg
// and initrd.img-6.1.0; debugfs, when set, is run on it (debugfs -w -f) before the initrd is written
// by debugfs too, so that it goes where the commands left room.
func bootWithInitrd(t *testing.T, mkfs string, initrd []byte, debugfs []string) string {
	t.Helper()
	tmp := t.TempDir()
	tree := filepath.Join(tmp, "boot")
	for _, d := range []string{"luks", "grub"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WriteFile(t, filepath.Join(tree, "luks"), "osluksheader", make([]byte, 4096))
	testenv.WriteFile(t, filepath.Join(tree, "grub"), "grub.cfg", []byte("menuentry 'Ubuntu' {\n\tlinux /vmlinuz-6.1.0 root=UUID=0c5a6f1e-9d1e-4e7b-8a8f-3c2b1a0d9e8f ro\n\tinitrd /initrd.img-6.1.0\n}\n"))
	for i := range 400 {
		testenv.WriteFile(t, tree, fmt.Sprintf("f%03d", i), bytes.Repeat([]byte{byte(i)}, 3000))
	}
	host := testenv.WriteFile(t, tmp, "initrd", initrd)
	img := filepath.Join(tmp, "boot.img")
	testenv.Run(t, mkfs, "-q", "-b", "1024", "-d", tree, img, "16M")
	cmds := append(debugfs, "write "+host+" /initrd.img-6.1.0")
	testenv.Run(t, "debugfs", "-w", "-f", testenv.WriteFile(t, tmp, "cmds", []byte(strings.Join(cmds, "\n")+"\n")), img)
	if out, err := testenv.RunErr("e2fsck", "-fn", img); err != nil {
		t.Fatalf("e2fsck -fn on the fixture: %v\n%s", err, out)
	}
	return img
}

// editBoot plans the guest edits of the /boot image img (as inspect does, without a root), applies
// them, checks the result with e2fsck -fn and returns the edited initrd, which must parse as the
// kernel would unpack it and no longer hold crypt-ade-boot.
func editBoot(t *testing.T, img string) []byte {
	t.Helper()
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
	return got
}

// TestLZ4InitrdZeroPadded: an initramfs-tools initrd whose lz4 legacy stream is followed by zero
// bytes (which the kernel skips, as Parse does) and that shrinks on an ext2 /boot is padded back to
// its blocks with lz4 chunks. The chunks must continue the stream: after the zeros the kernel has
// already ended it and would take them for a new segment of unknown magic, so the zeros go. The
// edited /boot passes e2fsck -fn, and its initrd parses, passes lz4 -t and no longer has ADE's script.
func TestLZ4InitrdZeroPadded(t *testing.T) {
	testenv.Need(t, "lz4", "mkfs.ext2", "e2fsck", "debugfs")
	initrd := append(adeToolsInitrd(t, "lz4", "-l", "-9", "-q", "-c"), 0, 0, 0, 0)
	if im, err := initramfs.Parse(bytes.NewReader(initrd), int64(len(initrd))); err != nil || len(im.Segments) != 1 || im.Segments[0].Padding != 4 {
		t.Fatalf("the zero-padded lz4 initrd: %v", err)
	}
	got := editBoot(t, bootWithInitrd(t, "mkfs.ext2", initrd, nil))
	if out, err := testenv.RunErr("lz4", "-t", testenv.WriteFile(t, t.TempDir(), "new.lz4", got)); err != nil {
		t.Errorf("lz4 -t on the edited initrd: %v\n%s", err, strings.TrimSpace(out))
	}
}

// TestInitrdIndexedExtentTree: an initrd on an ext4 /boot in so many pieces that its extent tree has
// an index level, which shrinks, is padded to one byte into its last block, not to that block's start:
// e2fsck takes the last index to cover the blocks up to i_size only. The edited /boot passes
// e2fsck -fn.
func TestInitrdIndexedExtentTree(t *testing.T) {
	testenv.Need(t, "zstd", "mkfs.ext4", "e2fsck", "debugfs")
	// Every other small file goes, and the initrd fills the holes.
	var rm []string
	for i := 0; i < 400; i += 2 {
		rm = append(rm, fmt.Sprintf("rm /f%03d", i))
	}
	img := bootWithInitrd(t, "mkfs.ext4", adeToolsInitrd(t, "zstd", "-q", "-1", "-c"), rm)
	if ex := testenv.Run(t, "debugfs", "-R", "ex /initrd.img-6.1.0", img); !strings.Contains(ex, " 0/ 1 ") {
		t.Fatalf("the initrd's extent tree has no index level:\n%s", ex)
	}
	editBoot(t, img)
}
