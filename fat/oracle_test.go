package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// The oracle tests check the reader and the planned rewrites against the
// real tools: images made by mkfs.vfat and filled by mtools are read back
// and compared with what was written and with mdir's listing; rewritten
// copies must pass fsck.fat -n and read back through mtype.

// needFATTools skips, loudly, unless dosfstools and mtools are installed,
// and makes mtools' behaviour independent of the caller's environment.
func needFATTools(t *testing.T) {
	t.Helper()
	testenv.Need(t, "mkfs.vfat", "fsck.fat", "mmd", "mcopy", "mtype", "mdir")
	// The test images have geometries mtools would otherwise refuse
	// (sectors not a multiple of a track); names are UTF-8.
	t.Setenv("MTOOLS_SKIP_CHECK", "1")
	t.Setenv("LC_ALL", "C.UTF-8")
}

// walk lists every file and directory below dir (nil: the root) as path ->
// File, directories with a trailing "/".
func walk(t *testing.T, fs *FS, dir *File, prefix string, out map[string]File) {
	t.Helper()
	ents, err := fs.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir(%q): %v", prefix, err)
	}
	for _, e := range ents {
		p := prefix + e.Name
		if e.IsDir() {
			out[p+"/"] = e
			walk(t, fs, &e, p+"/", out)
			continue
		}
		out[p] = e
	}
}

// mdirPaths lists the image's files as `mdir -/ -b` prints them, without the
// leading "::/".
func mdirPaths(t *testing.T, img string) []string {
	t.Helper()
	var ps []string
	for _, ln := range strings.Split(testenv.Run(t, "mdir", "-i", img, "-/", "-b", "::"), "\n") {
		if p, ok := strings.CutPrefix(ln, "::/"); ok {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

func writeImage(t *testing.T, data []byte) string {
	t.Helper()
	return testenv.WriteFile(t, t.TempDir(), "fat.img", data)
}

// checkWrites checks that ws touch only the clusters of f, all of them,
// and the size field of its directory entry.
func checkWrites(t *testing.T, fs *FS, f *File, cs []uint32, ws []Write) {
	t.Helper()
	allowed := map[int64]bool{}
	for _, c := range cs {
		allowed[fs.clusterOffset(c)] = true
	}
	for _, w := range ws {
		switch {
		case w.Offset == f.EntryOffset+28 && len(w.Data) == 4:
		case int64(len(w.Data))%fs.ClusterSize == 0:
			for o := w.Offset; o < w.Offset+int64(len(w.Data)); o += fs.ClusterSize {
				if !allowed[o] {
					t.Fatalf("write at %d is not in a cluster of %s", o, f.Name)
				}
				delete(allowed, o)
			}
		default:
			t.Fatalf("unexpected write of %d bytes at %d", len(w.Data), w.Offset)
		}
	}
	if len(allowed) != 0 {
		t.Fatalf("%d clusters of %s are not rewritten", len(allowed), f.Name)
	}
}

// applyWrites writes ws into the image file at path.
func applyWrites(t *testing.T, path string, ws []Write) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range ws {
		if _, err := f.WriteAt(w.Data, w.Offset); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// fsck runs fsck.fat -n, which exits non-zero on any inconsistency.
func fsck(t *testing.T, img string) {
	t.Helper()
	if _, err := testenv.RunErr("fsck.fat", "-n", img); err != nil {
		t.Fatalf("fsck.fat rejects the image: %v", err)
	}
}

// TestBuilderImagesPassFsck checks that the images the unit tests and fuzz
// seeds are built from are valid to the real tools: fsck.fat accepts them,
// mdir lists the tree ReadDir does, and mtype reads what ReadFile does.
func TestBuilderImagesPassFsck(t *testing.T) {
	needFATTools(t)
	for _, c := range []struct {
		name string
		g    geom
	}{{"FAT12", geomFAT12}, {"FAT16", geomFAT16}, {"FAT32", geomFAT32}, {"FAT32-small", geomFAT32Small},
		{"FAT16-4K-sectors", geom{bps: 4096, spc: 1, reserved: 1, nfats: 1, rootEntries: 128, clusters: 4090, serial: 7}}} {
		t.Run(c.name, func(t *testing.T) {
			b := build(t, c.g, espTree())
			img := writeImage(t, b.img)
			fsck(t, img)
			fs := b.open(t)
			got := map[string]File{}
			walk(t, fs, nil, "", got)
			if c.g == geomFAT32Small {
				return // mtools reads a FAT32 of fewer than 65525 clusters wrongly
			}
			want := mdirPaths(t, img)
			if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
				t.Fatalf("ReadDir walk:\n%q\nmdir:\n%q", keys, want)
			}
			for p, f := range got {
				if f.IsDir() {
					continue
				}
				data, _, err := fs.ReadFile(&f, 1<<20)
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if !bytes.Equal(data, b.nodes[p].data) {
					t.Errorf("%s: ReadFile differs from the content built", p)
				}
				if m := testenv.Run(t, "mtype", "-i", img, "::"+p); m != string(data) {
					t.Errorf("%s: mtype reads %d bytes, ReadFile %d", p, len(m), len(data))
				}
			}
		})
	}
}

// mtoolsImage is an image made by mkfs.vfat and filled by mmd and mcopy.
type mtoolsImage struct {
	path  string
	files map[string][]byte // path -> content
	dirs  []string
}

func (m *mtoolsImage) mkdir(t *testing.T, p string) {
	testenv.Run(t, "mmd", "-i", m.path, "::"+p)
	m.dirs = append(m.dirs, p)
}

func (m *mtoolsImage) put(t *testing.T, p string, data []byte) {
	src := testenv.WriteFile(t, t.TempDir(), "src", data)
	testenv.Run(t, "mcopy", "-i", m.path, src, "::"+p)
	m.files[p] = data
}

func TestOracle(t *testing.T) {
	needFATTools(t)
	for _, c := range []struct {
		fat, spc, kib int
		serial        uint32
		label         string
	}{
		{12, 1, 1024, 0x1234abcd, ""},
		{16, 1, 16 * 1024, 0x00c0ffee, "ESP"},
		{16, 4, 64 * 1024, 0xa1b2c3d4, ""},
		{32, 1, 40 * 1024, 0x89abcdef, "EFI SYSTEM"},
		{32, 8, 300 * 1024, 0x01020304, ""}, // 4 KiB clusters, as on a large ESP
	} {
		t.Run(fmt.Sprintf("FAT%d-%dB", c.fat, c.spc*512), func(t *testing.T) {
			m := &mtoolsImage{path: filepath.Join(t.TempDir(), "fat.img"), files: map[string][]byte{}}
			args := []string{"-C", "-F", strconv.Itoa(c.fat), "-s", strconv.Itoa(c.spc), "-i", fmt.Sprintf("%08x", c.serial)}
			if c.label != "" {
				args = append(args, "-n", c.label)
			}
			testenv.Run(t, "mkfs.vfat", append(args, m.path, strconv.Itoa(c.kib))...)
			cs := int64(c.spc) * 512
			for _, d := range []string{"EFI", "EFI/redhat", "EFI/BOOT", "EFI/Vendor.Long Name", "EFI/Vendor.Long Name/deeper",
				"EFI/Vendor.Long Name/deeper/and deeper still", "EFI/many"} {
				m.mkdir(t, d)
			}
			env := grubenv("saved_entry=rhel\nkernelopts=root=/dev/mapper/rootvg-rootlv ro rd.luks.uuid=luks-1\n")
			cfg := bytes.Repeat([]byte("menuentry 'RHEL' { linux /vmlinuz root=/dev/mapper/rootvg-rootlv }\n"), int(3*cs+cs/2)/70+1)
			m.put(t, "EFI/redhat/grubenv", env)
			m.put(t, "EFI/redhat/grub.cfg", cfg)
			m.put(t, "EFI/BOOT/BOOTX64.EFI", bytes.Repeat([]byte{0x4d, 0x5a, 0, 1}, 2000))
			m.put(t, "EFI/Vendor.Long Name/A Long File Name.txt", []byte("hello\n"))
			m.put(t, "EFI/Vendor.Long Name/ünïcødé – name.txt", []byte("unicode\n"))
			m.put(t, "EFI/Vendor.Long Name/deeper/and deeper still/nested.cfg", []byte("nested\n"))
			m.put(t, "EFI/Vendor.Long Name/empty", nil)
			for i := range 40 { // a directory of several clusters
				m.put(t, fmt.Sprintf("EFI/many/a file with a long name %02d.txt", i), []byte(strconv.Itoa(i)))
			}
			fs, err := Open(testenv.Open(t, m.path))
			if err != nil {
				t.Fatal(err)
			}
			if fs.Bits != c.fat || fs.ClusterSize != cs {
				t.Fatalf("FAT%d with %d-byte clusters, want FAT%d with %d", fs.Bits, fs.ClusterSize, c.fat, cs)
			}
			uuid := fmt.Sprintf("%04X-%04X", c.serial>>16, c.serial&0xffff)
			if fs.UUID() != uuid || fs.Serial != c.serial {
				t.Errorf("UUID %q serial %#x, want %q", fs.UUID(), fs.Serial, uuid)
			}
			if _, err := exec.LookPath("blkid"); err == nil {
				if b := strings.TrimSpace(testenv.Run(t, "blkid", "-p", "-o", "value", "-s", "UUID", m.path)); b != fs.UUID() {
					t.Errorf("blkid says UUID %q, UUID() %q", b, fs.UUID())
				}
			}

			// The whole tree, against what was written and against mdir.
			got := map[string]File{}
			walk(t, fs, nil, "", got)
			var want []string
			for p := range m.files {
				want = append(want, p)
			}
			for _, d := range m.dirs {
				want = append(want, d+"/")
			}
			slices.Sort(want)
			keys := slices.Sorted(maps.Keys(got))
			if !slices.Equal(keys, want) {
				t.Fatalf("ReadDir walk:\n%q\nwritten:\n%q", keys, want)
			}
			if md := mdirPaths(t, m.path); !slices.Equal(md, want) {
				t.Fatalf("mdir lists\n%q\nwritten:\n%q", md, want)
			}
			for p, data := range m.files {
				f := got[p]
				b, chain, err := fs.ReadFile(&f, 1<<20)
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if !bytes.Equal(b, data) || int64(len(chain)) != (int64(len(data))+cs-1)/cs {
					t.Fatalf("%s: read %d bytes in %d clusters, wrote %d", p, len(b), len(chain), len(data))
				}
			}
			if m := testenv.Run(t, "mtype", "-i", m.path, "::EFI/redhat/grubenv"); m != string(env) {
				t.Errorf("mtype grubenv disagrees with what was written")
			}

			// Lookup, case-insensitively, and its errors.
			f, err := fs.Lookup("/efi/VENDOR.LONG NAME/a long file name.TXT")
			if err != nil || f.Name != "A Long File Name.txt" || f.Size != 6 {
				t.Fatalf("Lookup: %+v, %v", f, err)
			}
			if f, err := fs.Lookup("EFI/Vendor.Long Name/ÜNÏCØDÉ – NAME.TXT"); err != nil || f.Name != "ünïcødé – name.txt" {
				t.Errorf("Lookup of the Unicode name in upper case: %+v, %v", f, err)
			}
			if _, err := fs.Lookup("EFI/nothing"); !errors.Is(err, iofs.ErrNotExist) {
				t.Errorf("missing file: %v", err)
			}
			if _, err := fs.Lookup("EFI/redhat/grubenv/x"); !errors.Is(err, ErrNotDir) {
				t.Errorf("file as a directory: %v", err)
			}

			// Rewrites: grubenv in place, grub.cfg shrunk and padded to its
			// clusters, a small file grown within its cluster.
			edits := map[string][]byte{
				"EFI/redhat/grubenv": grubenv("saved_entry=rhel\nkernelopts=root=/dev/mapper/rootvg-rootlv ro\n"),
				"EFI/redhat/grub.cfg": PadToClusters([]byte("menuentry 'RHEL' { linux /vmlinuz root=/dev/sda2 }\n"),
					int((int64(len(cfg))+cs-1)/cs), cs),
				"EFI/Vendor.Long Name/A Long File Name.txt": []byte("hello, world, this is longer\n"),
			}
			edited := testenv.CopyFile(t, m.path)
			for p, data := range edits {
				f, err := fs.Lookup(p)
				if err != nil {
					t.Fatal(err)
				}
				_, chain, err := fs.ReadFile(f, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				ws, err := fs.Rewrite(f, chain, data)
				if err != nil {
					t.Fatalf("Rewrite %s: %v", p, err)
				}
				checkWrites(t, fs, f, chain, ws)
				applyWrites(t, edited, ws)
			}
			cfgFile := got["EFI/redhat/grub.cfg"]
			_, cfgChain, _ := fs.ReadFile(&cfgFile, 1<<20)
			if _, err := fs.Rewrite(&cfgFile, cfgChain, []byte("short\n")); !errors.Is(err, ErrCannotEdit) {
				t.Errorf("a rewrite needing fewer clusters: %v", err)
			}
			fsck(t, edited)
			fs2, err := Open(testenv.Open(t, edited))
			if err != nil {
				t.Fatal(err)
			}
			for p, data := range m.files {
				if e, ok := edits[p]; ok {
					data = e
					if mt := testenv.Run(t, "mtype", "-i", edited, "::"+p); mt != string(e) {
						t.Errorf("%s: mtype prints %d bytes, %d written", p, len(mt), len(e))
					}
				}
				f, err := fs2.Lookup(p)
				if err != nil {
					t.Fatal(err)
				}
				if b, _, err := fs2.ReadFile(f, 1<<20); err != nil || !bytes.Equal(b, data) {
					t.Errorf("%s after the rewrites: %d bytes, %v", p, len(b), err)
				}
			}
		})
	}
}

// TestShrunkChainIsError shows why Rewrite keeps a file's cluster count: fsck.fat reports a file whose
// chain is longer than its size needs, and ReadFile refuses it too.
func TestShrunkChainIsError(t *testing.T) {
	needFATTools(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "fat.img")
	testenv.Run(t, "mkfs.vfat", "-C", "-F", "32", "-s", "1", img, "40960")
	m := &mtoolsImage{path: img, files: map[string][]byte{}}
	m.mkdir(t, "EFI")
	m.put(t, "EFI/grub.cfg", bytes.Repeat([]byte("#\n"), 1024)) // 2048 bytes: four 512-byte clusters
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.Lookup("EFI/grub.cfg")
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(data[f.EntryOffset+28:], 10) // 10 bytes, still four clusters
	writeFile := testenv.WriteFile(t, dir, "shrunk.img", data)
	if out, err := testenv.RunErr("fsck.fat", "-n", writeFile); err == nil {
		t.Fatalf("fsck.fat -n accepted a 10-byte file with 4 clusters:\n%s", out)
	}
	fs, err = Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if f, err = fs.Lookup("EFI/grub.cfg"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fs.ReadFile(f, 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadFile of the inconsistent entry: %v, want ErrCorrupt", err)
	}
}
