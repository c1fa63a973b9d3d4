package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/internal/ubuntufixture"
)

// TestHostileUbuntu: an Ubuntu ADE disk luksconv cannot make bootable is refused before anything is
// written, with exit 4 and a message naming the cause, and the source left as it was:
//   - /boot (ext2) flagged needs_recovery (debugfs), so it cannot be edited in place;
//   - an initrd that fits in no format: repacked by xz with a 64 MiB dictionary around 48 MiB of data
//     that repeats at 24 MiB, which that xz finds and luksconv's encoders (1 MiB xz dictionary, 4 MiB
//     zstd window, gzip's 32 KiB) do not (the modules are left out to keep it quick);
//   - a grub.cfg carrying root=/dev/mapper/osencrypt in a `set` line, which luksconv does not parse.
//
// With --keep-guest each converts (exit 0).
func TestHostileUbuntu(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Ubuntu fixture set")
	}
	testenv.Need(t, "debugfs", "xz", "cpio", "unmkinitramfs")
	m := ubuntufixture.Load(t)
	d, ok := m.Disk(ubuntufixture.DiskU2204)
	if !ok {
		t.Fatal("no u2204 disk in the set")
	}
	boot, _ := d.Part(d.BootPartition)
	dir := t.TempDir()
	key := m.Path(m.Key)
	variant := func(name string) string {
		p := filepath.Join(dir, name)
		testenv.Run(t, "cp", "--sparse=always", m.Path(d.Disk), p)
		return p
	}
	debugfsW := func(img, req string) {
		t.Helper()
		if out, err := exec.Command("debugfs", "-w", "-R", req, ubuntufixture.ExtPath(img, boot.Start)).CombinedOutput(); err != nil {
			t.Fatalf("debugfs -w -R %q: %v\n%s", req, err, out)
		}
	}
	// replace puts the host file in place of path on /boot (debugfs reports errors on exit 0, so the
	// result is read back).
	replace := func(img, path, host string) {
		t.Helper()
		debugfsW(img, "rm "+path)
		debugfsW(img, fmt.Sprintf("write %s %s", host, path))
		want, err := os.ReadFile(host)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ubuntufixture.ReadExtFile(img, boot.Start, path); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s on /boot was not replaced (%v)", path, err)
		}
	}

	dirty := variant("needs-recovery.raw")
	debugfsW(dirty, "feature needs_recovery")

	// The initrd, unpacked and repacked by cpio and xz with 48 MiB that repeat at 24 MiB.
	big := variant("initrd-no-fit.raw")
	tree := filepath.Join(dir, "initrd")
	testenv.Run(t, "unmkinitramfs", m.Path(d.Initrd), tree)
	mods, _ := filepath.Glob(filepath.Join(tree, "usr/lib/modules/*/kernel"))
	for _, p := range mods {
		os.RemoveAll(p)
	}
	half := testenv.RandBytes(rand.New(rand.NewPCG(15, 4)), 24<<20)
	testenv.WriteFile(t, tree, "repeats", append(append([]byte(nil), half...), half...))
	packed := filepath.Join(dir, "initrd.xz")
	pack := exec.Command("sh", "-c", `cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | `+
		`xz --check=crc32 --lzma2=preset=1,dict=64MiB -T1 > "$2"`, "sh", tree, packed)
	if out, err := pack.CombinedOutput(); err != nil {
		t.Fatalf("repacking the initrd: %v\n%s", err, out)
	}
	replace(big, d.InitrdPath, packed)

	grub := variant("grub-unparsed.raw")
	orig := d.BootFiles[d.GrubCfgPath]
	if orig == "" {
		t.Fatalf("the manifest has no %s", d.GrubCfgPath)
	}
	unparsed := strings.Replace(orig, "### BEGIN /etc/grub.d/10_linux ###\n", "### BEGIN /etc/grub.d/10_linux ###\nset ade_root=root=/dev/mapper/osencrypt\n", 1)
	cfg := testenv.WriteFile(t, dir, "grub.cfg", []byte(unparsed))
	replace(grub, d.GrubCfgPath, cfg)

	for _, tc := range []struct {
		name, img, stderr string
	}{
		{"boot needs recovery", dirty, "needs_recovery"},
		{"initrd fits in no format", big, "does not fit"},
		{"grub.cfg line not parsed", grub, "grub.cfg line"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			before := sum(t, tc.img)
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".out")
			so, se, code := run(t, nil, "convert", "--key-file", key, tc.img, out)
			if code != exitUnsupported {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitUnsupported, so, se)
			}
			if !strings.Contains(se, tc.stderr) || !strings.Contains(se, "--keep-guest") {
				t.Errorf("stderr lacks %q or the --keep-guest hint:\n%s", tc.stderr, se)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s was written", out)
			}
			if sum(t, tc.img) != before {
				t.Errorf("%s changed", tc.img)
			}
			t.Logf("exit %d: %s", code, strings.TrimSpace(se))
			if _, se, code := run(t, nil, "convert", "--keep-guest", "--key-file", key, tc.img, out); code != 0 {
				t.Errorf("--keep-guest: exit %d\n%s", code, se)
			}
		})
	}
}
