package luksconv

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func needFATTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"mkfs.vfat", "mmd", "mcopy", "mtype", "fsck.fat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPING: %s is not installed (%v); the FAT reader is not checked with the real tools", tool, err)
		}
	}
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// mkFAT builds a FAT image with mkfs.vfat and mtools holding files (path -> content) under EFI/Vendor.
func mkFAT(t *testing.T, bits string, kib int, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "fat.img")
	run(t, "mkfs.vfat", "-C", "-F", bits, "-s", "1", img, strconv.Itoa(kib))
	run(t, "mmd", "-i", img, "::EFI", "::EFI/Vendor.Long Name")
	for name, data := range files {
		src := filepath.Join(dir, "src")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, "mcopy", "-i", img, src, "::EFI/Vendor.Long Name/"+name)
	}
	return img
}

func TestFATReader(t *testing.T) {
	needFATTools(t)
	big := bytes.Repeat([]byte("set timeout=5 # a line of grub.cfg\n"), 60) // 2100 bytes: 5 clusters
	for _, c := range []struct {
		bits string
		kib  int
		want int
	}{{"12", 1024, 12}, {"16", 16 * 1024, 16}, {"32", 40 * 1024, 32}} {
		t.Run("FAT"+c.bits, func(t *testing.T) {
			img := mkFAT(t, c.bits, c.kib, map[string][]byte{"grub.cfg": big, "A Long File Name.txt": []byte("hello\n")})
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			f, err := openFAT(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			if f.bits != c.want {
				t.Fatalf("FAT%d, want FAT%d", f.bits, c.want)
			}
			// Long names, compared case-insensitively.
			e, err := f.lookup("efi/VENDOR.LONG NAME/a long file name.TXT")
			if err != nil {
				t.Fatal(err)
			}
			if b, _, err := f.readFile(e, 1<<20); err != nil || string(b) != "hello\n" {
				t.Fatalf("read %q, %v", b, err)
			}
			if _, err := f.lookup("EFI/nothing"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("missing file: %v", err)
			}
			e, err = f.lookup("EFI/Vendor.Long Name/GRUB.CFG")
			if err != nil {
				t.Fatal(err)
			}
			b, cs, err := f.readFile(e, 1<<20)
			if err != nil || !bytes.Equal(b, big) || len(cs) != 5 {
				t.Fatalf("grub.cfg: %d bytes, %d clusters, %v", len(b), len(cs), err)
			}
			// Shrink by two clusters: the content is padded back to five clusters.
			short := big[:1000]
			n := padToClusters(short, len(cs), f.clusterSize)
			if len(n) != 4*512+1 || !bytes.HasPrefix(n, short) || n[len(n)-1] != '\n' {
				t.Fatalf("padded to %d bytes: %q", len(n), n[len(short):])
			}
			if _, err := f.rewrite(e, cs, short); err == nil {
				t.Fatal("rewrite of 2 clusters' worth into 5 clusters was not refused")
			}
			ws, err := f.rewrite(e, cs, n)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range ws {
				copy(data[w.off:], w.data)
			}
			if err := os.WriteFile(img, data, 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "fsck.fat", "-n", img)
			got := run(t, "mtype", "-i", img, "::EFI/Vendor.Long Name/grub.cfg")
			if !bytes.Equal(got, n) {
				t.Fatalf("mtype reads %d bytes, want the %d written", len(got), len(n))
			}
		})
	}
}

// TestFATShrunkChainIsError shows why rewrite keeps the cluster count: fsck.fat reports a file whose
// chain is longer than its size needs.
func TestFATShrunkChainIsError(t *testing.T) {
	needFATTools(t)
	img := mkFAT(t, "32", 40*1024, map[string][]byte{"grub.cfg": bytes.Repeat([]byte("#\n"), 1024)})
	data, _ := os.ReadFile(img)
	f, err := openFAT(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := f.lookup("EFI/Vendor.Long Name/grub.cfg")
	if err != nil {
		t.Fatal(err)
	}
	data[e.entryOff+28], data[e.entryOff+29] = 10, 0 // 10 bytes, four clusters
	e.size = 10
	os.WriteFile(img, data, 0o644)
	if out, err := exec.Command("fsck.fat", "-n", img).CombinedOutput(); err == nil {
		t.Fatalf("fsck.fat -n accepted a 10-byte file with 4 clusters:\n%s", out)
	}
	if _, _, err := f.readFile(e, 1<<20); err == nil || !strings.Contains(err.Error(), "directory entry at byte") {
		t.Fatalf("readFile of the inconsistent entry: %v", err)
	}
}

func TestFATBadInput(t *testing.T) {
	needFATTools(t)
	img := mkFAT(t, "16", 16*1024, map[string][]byte{"x": []byte("x")})
	good, _ := os.ReadFile(img)
	for _, c := range []struct {
		name string
		mod  func(b []byte) []byte
		want string
	}{
		{"short", func(b []byte) []byte { return b[:100] }, "boot sector at byte 0"},
		{"signature", func(b []byte) []byte { b[510] = 0; return b }, "byte 510"},
		{"sector size", func(b []byte) []byte { b[11], b[12] = 3, 0; return b }, "byte 11"},
		{"too large", func(b []byte) []byte { return b[:len(b)/2] }, "do not fit"},
	} {
		b := c.mod(append([]byte(nil), good...))
		_, err := openFAT(bytes.NewReader(b), int64(len(b)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}
	// A chain that loops is an error, not an endless walk.
	b := append([]byte(nil), good...)
	f, err := openFAT(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := f.lookup("EFI/Vendor.Long Name/x")
	if err != nil {
		t.Fatal(err)
	}
	off := f.fatOff + int64(e.first)*2
	b[off], b[off+1] = byte(e.first), byte(e.first>>8)
	e.size = 100000
	if _, _, err := f.readFile(e, 1<<20); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("looping chain: %v", err)
	}
}
