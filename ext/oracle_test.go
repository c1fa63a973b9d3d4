package ext

import (
	"bytes"
	"encoding/binary"
	"errors"
	iofs "io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The oracle tests read images made by mkfs -d from a known tree (see
// helpers_test.go) and compare every file, directory and symlink with what
// was written, every block map with debugfs stat, and FreeSpace with
// dumpe2fs's free block lists.

func TestSuperblockLayout(t *testing.T) {
	if n := binary.Size(Superblock{}); n != sbSize {
		t.Fatalf("Superblock is %d bytes, want %d", n, sbSize)
	}
	// CRC-16/ARC and CRC-32C check values of "123456789", taken raw the
	// way the kernel chains them (crc16 from 0, crc32c from ~0 and
	// inverted at the end).
	if got := crc16(0, []byte("123456789")); got != 0xbb3d {
		t.Errorf("crc16 = %#04x, want 0xbb3d", got)
	}
	if got := ^crc32c(^uint32(0), []byte("123456789")); got != 0xe3069283 {
		t.Errorf("crc32c = %#08x, want 0xe3069283", got)
	}
}

func forEachVariant(t *testing.T, fn func(t *testing.T, v variant)) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			fn(t, v)
		})
	}
}

func TestOracleTree(t *testing.T) {
	needE2fs(t)
	forEachVariant(t, func(t *testing.T, v variant) {
		img, tr := image(t, v)
		fs := openImage(t, img)
		checkSuperblock(t, fs, v)
		checkTree(t, fs, tr)
		checkLinks(t, fs)
		checkBlockMaps(t, fs, img, tr)
		checkFormats(t, fs, v)
	})
}

func checkSuperblock(t *testing.T, fs *FS, v variant) {
	t.Helper()
	s := &fs.SB
	if fs.UUID() != testUUID {
		t.Errorf("UUID %s, want %s", fs.UUID(), testUUID)
	}
	if fs.Label() != label(v) {
		t.Errorf("label %q, want %q", fs.Label(), label(v))
	}
	if s.BlockSize() != v.bs {
		t.Errorf("block size %d, want %d", s.BlockSize(), v.bs)
	}
	for _, c := range []struct {
		what      string
		got, want bool
	}{
		{"64bit", s.Has64Bit(), v.want64},
		{"metadata_csum", s.HasMetadataCsum(), v.wantCsum},
		{"gdt_csum", s.FeatureRoCompat&RoCompatGdtCsum != 0, v.wantGdtCsum},
		{"flex_bg", s.FeatureIncompat&IncompatFlexBG != 0, v.wantFlex},
		{"extents", s.FeatureIncompat&IncompatExtents != 0, v.wantExtents},
		{"inline_data", s.FeatureIncompat&IncompatInlineData != 0, v.wantInline},
		{"has_journal", s.HasJournal(), v.wantJournal},
	} {
		if c.got != c.want {
			t.Errorf("%s is %v, want %v", c.what, c.got, c.want)
		}
	}
	if err := fs.Writable(); err != nil {
		t.Errorf("Writable: %v", err)
	}
	if len(fs.Warnings) != 0 {
		t.Errorf("warnings: %q", fs.Warnings)
	}
}

// checkTree compares every node of tr, and every directory listing, with
// the filesystem.
func checkTree(t *testing.T, fs *FS, tr *tree) {
	t.Helper()
	children := map[string][]string{"/": {"lost+found"}}
	for _, n := range tr.nodes {
		d, b := path.Split(n.path)
		d = path.Clean(d)
		children[d] = append(children[d], b)
		if n.kind == 'd' {
			if _, ok := children[n.path]; !ok {
				children[n.path] = nil
			}
		}
	}
	for dir, want := range children {
		ents, err := fs.ReadDir(dir)
		if err != nil {
			t.Errorf("ReadDir(%q): %v", dir, err)
			continue
		}
		sort.Strings(want)
		if got := sortedNames(ents); !slices.Equal(got, want) {
			t.Errorf("ReadDir(%q): %d names, want %d (first got %q, want %q)", dir, len(got), len(want), first(got), first(want))
		}
		if fs.SB.FeatureIncompat&IncompatFiletype != 0 {
			for _, e := range ents {
				if e.Type == FTUnknown {
					t.Errorf("%s/%s: no file type", dir, e.Name)
				}
			}
		}
	}
	for _, n := range tr.nodes {
		ino, err := fs.Lookup(n.path)
		if err != nil {
			t.Errorf("Lookup(%q): %v", n.path, err)
			continue
		}
		switch n.kind {
		case 'd':
			if !ino.IsDir() {
				t.Errorf("%s: mode %#o, want a directory", n.path, ino.Mode)
			}
		case 'l':
			if !ino.IsSymlink() {
				t.Errorf("%s: mode %#o, want a symlink", n.path, ino.Mode)
				continue
			}
			if got, err := fs.Readlink(n.path); err != nil || got != n.target {
				t.Errorf("Readlink(%q) = %q, %v; want %q", n.path, first([]string{got}), err, first([]string{n.target}))
			}
		case 'p':
			if ino.FileMode()&iofs.ModeNamedPipe == 0 {
				t.Errorf("%s: mode %v, want a FIFO", n.path, ino.FileMode())
			}
			if exts, err := fs.Extents(ino); err != nil || exts != nil {
				t.Errorf("%s: extents %v, %v", n.path, exts, err)
			}
		case '-':
			if !ino.IsRegular() || ino.Mode&0o777 != 0o644 {
				t.Errorf("%s: mode %#o, want a regular file 0644", n.path, ino.Mode)
			}
			if ino.Size != int64(len(n.data)) {
				t.Errorf("%s: size %d, want %d", n.path, ino.Size, len(n.data))
			}
			if n.link != "" {
				if other, err := fs.Lookup(n.link); err != nil || other.Ino != ino.Ino {
					t.Errorf("%s: not the inode of %s", n.path, n.link)
				}
			}
			got, err := fs.ReadFile(n.path)
			if err != nil {
				t.Errorf("ReadFile(%q): %v", n.path, err)
			} else if !bytes.Equal(got, n.data) {
				t.Errorf("ReadFile(%q): content differs (%d bytes, want %d)", n.path, len(got), len(n.data))
			}
			if !ino.Mtime.Equal(epoch) {
				t.Errorf("%s: mtime %v, want %v", n.path, ino.Mtime, epoch)
			}
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	if len(s[0]) > 40 {
		return s[0][:40] + "..."
	}
	return s[0]
}

// checkLinks resolves paths through the tree's symlinks.
func checkLinks(t *testing.T, fs *FS) {
	t.Helper()
	want, _ := fs.Lookup("/small/f100")
	if got, err := fs.LookupFollow("/links/short"); err != nil || got.Ino != want.Ino {
		t.Errorf("LookupFollow(/links/short) = %v, %v; want inode %d", got, err, want.Ino)
	}
	if got, err := fs.Lookup("/links/short"); err != nil || !got.IsSymlink() {
		t.Errorf("Lookup(/links/short) = %v, %v; want the symlink", got, err)
	}
	for p, content := range map[string]string{
		"/links/dirlink/b/c/d/file.txt":      "deep file\n",
		"/links/abs/c/d/file.txt":            "deep file\n",
		"/links/dirlink/../a/b/c/d/file.txt": "deep file\n",
	} {
		if got, err := fs.ReadFile(p); err != nil || string(got) != content {
			t.Errorf("ReadFile(%q) = %q, %v", p, got, err)
		}
	}
	if f1000, err := fs.ReadFile("/links/long"); err != nil || len(f1000) != 1000 {
		t.Errorf("ReadFile(/links/long): %d bytes, %v", len(f1000), err)
	}
	for _, p := range []string{"/links/loop1", "/links/self", "/links/loop2/x"} {
		if _, err := fs.LookupFollow(p); !errors.Is(err, ErrSymlinkLoop) {
			t.Errorf("LookupFollow(%q) = %v, want ErrSymlinkLoop", p, err)
		}
	}
	if _, err := fs.LookupFollow("/links/dangling"); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("LookupFollow(/links/dangling) = %v, want ErrNotExist", err)
	}
	if _, err := fs.Lookup("/small/f100/x"); !errors.Is(err, ErrNotDir) {
		t.Errorf("Lookup through a file = %v, want ErrNotDir", err)
	}
	var pe *iofs.PathError
	if _, err := fs.Lookup("/nonexistent"); !errors.As(err, &pe) || !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("Lookup(/nonexistent) = %v", err)
	}
	// A separate /boot: absolute targets are taken relative to it.
	mfs := *fs
	mfs.MountPoint = "/boot"
	if _, err := mfs.LookupFollow("/links/abs"); !errors.Is(err, ErrOutsideFS) {
		t.Errorf("with MountPoint /boot, /links/abs -> /deep/a/b: %v, want ErrOutsideFS", err)
	}
}

// checkBlockMaps compares Extents and the mapping tree blocks with debugfs
// stat for every regular file, directory and slow symlink (the htree's
// many entries aside).
func checkBlockMaps(t *testing.T, fs *FS, img string, tr *tree) {
	t.Helper()
	paths := []string{"/", "/htree", "/small", "/deep/a"}
	for _, n := range tr.nodes {
		if (n.kind == '-' || n.kind == 'l') && !strings.HasPrefix(n.path, "/htree/") {
			paths = append(paths, n.path)
		}
	}
	for _, p := range paths {
		ino, err := fs.Lookup(p)
		if err != nil {
			t.Errorf("Lookup(%q): %v", p, err)
			continue
		}
		exts, treeBlocks, err := fs.mapping(ino)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		want := statBlocks(t, img, p)
		got := blockMap{data: map[uint64]uint64{}, unwritten: map[uint64]bool{}, tree: map[uint64]bool{}}
		for _, e := range exts {
			for o := int64(0); o < e.Len; o += fs.bs {
				l := uint64((e.FileOff + o) / fs.bs)
				got.data[l] = uint64((e.DiskOff + o) / fs.bs)
				if e.Unwritten {
					got.unwritten[l] = true
				}
			}
		}
		for _, r := range treeBlocks {
			for b := r.start; b < r.start+r.n; b++ {
				got.tree[b] = true
			}
		}
		if !mapsEqual(got.data, want.data) || !mapsEqual(got.unwritten, want.unwritten) || !mapsEqual(got.tree, want.tree) {
			t.Errorf("%s: block map differs from debugfs stat: %d data blocks (want %d), %d unwritten (want %d), %d tree blocks (want %d)",
				p, len(got.data), len(want.data), len(got.unwritten), len(want.unwritten), len(got.tree), len(want.tree))
		}
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// checkFormats checks the on-disk formats the variant must have produced,
// so that the tree comparison above covered them.
func checkFormats(t *testing.T, fs *FS, v variant) {
	t.Helper()
	ino := func(p string) *Inode {
		i, err := fs.Lookup(p)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", p, err)
		}
		return i
	}
	if fs.SB.FeatureCompat&CompatDirIndex != 0 && ino("/htree").Flags&FlagIndex == 0 {
		t.Error("/htree is not an htree directory")
	}
	big := ino("/big")
	if v.wantExtents != (big.Flags&FlagExtents != 0) {
		t.Errorf("/big flags %#x: extents %v expected", big.Flags, v.wantExtents)
	}
	if v.wantExtents && v.bs < 65536 {
		if d := binary.LittleEndian.Uint16(ino("/frag").iblock()[6:]); d < 2 {
			t.Errorf("/frag has an extent tree of depth %d, want 2", d)
		}
	}
	if !v.wantExtents {
		// Double indirection: the i_block[13] pointer is set.
		if binary.LittleEndian.Uint32(big.iblock()[13*4:]) == 0 {
			t.Error("/big does not use the double indirect block")
		}
		if v.tree.triple {
			if tri := ino("/triple"); binary.LittleEndian.Uint32(tri.iblock()[14*4:]) == 0 {
				t.Error("/triple does not use the triple indirect block")
			}
		}
	}
	if fs.fastSymlink(ino("/links/long")) || !fs.fastSymlink(ino("/links/exactly59")) || fs.fastSymlink(ino("/links/exactly60")) {
		t.Error("fast symlinks are not what their lengths imply")
	}
	if v.wantInline {
		for _, p := range []string{"/small/f59", "/small/f100", "/links/long", "/deep/a"} {
			if !ino(p).HasInlineData() {
				t.Errorf("%s is not inline", p)
			}
		}
	}
}

func TestOracleFreeSpace(t *testing.T) {
	needE2fs(t)
	forEachVariant(t, func(t *testing.T, v variant) {
		img, _ := image(t, v)
		checkFreeSpace(t, img)
	})
}

// TestOracleFreeSpaceAfterDelete frees blocks in several groups (debugfs
// rm updates the bitmaps and counts as the kernel would) and compares
// again: free space is not only what mkfs left.
func TestOracleFreeSpaceAfterDelete(t *testing.T) {
	needE2fs(t)
	for _, name := range []string{"ext2-1k", "ext4-4k", "ext4-1k", "ext4-inline"} { // debugfs rm miscounts bigalloc clusters
		t.Run(name, func(t *testing.T) {
			img, _ := image(t, variantByName(t, name))
			cp := copyImage(t, img)
			debugfsW(t, cp, "rm /big", "rm /frag", "rm /small/f70000", "rm /htree/entry-00007-with-a-longer-name")
			if err := fsckClean(cp); err != nil {
				t.Fatalf("e2fsck -fn after debugfs rm: %v", err)
			}
			checkFreeSpace(t, cp)
		})
	}
}

// checkFreeSpace compares FreeSpace with dumpe2fs's free lists and the
// descriptors' counts.
func checkFreeSpace(t *testing.T, img string) {
	t.Helper()
	{
		fs := openImage(t, img)
		rs, err := fs.FreeSpace()
		if err != nil {
			t.Fatal(err)
		}
		var got []blockRun
		for i, r := range rs {
			if r.Off%fs.bs != 0 || r.Len%fs.bs != 0 || r.Len <= 0 || (i > 0 && r.Off <= rs[i-1].End()) {
				t.Fatalf("range %d %+v is not whole, sorted, merged blocks", i, r)
			}
			got = append(got, blockRun{uint64(r.Off / fs.bs), uint64(r.Len / fs.bs)})
		}
		want := dumpe2fsFree(t, img, fs.ratio, fs.blocks)
		if !slices.Equal(got, want) {
			t.Errorf("FreeSpace lists %d runs, dumpe2fs %d", len(got), len(want))
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Fatalf("first difference at run %d: %+v, dumpe2fs %+v", i, got[i], want[i])
				}
			}
		}
		var total, descFree uint64
		for _, r := range got {
			total += r.n
		}
		for g := range fs.Groups() {
			gd, _ := fs.Group(g)
			descFree += uint64(gd.FreeBlocksCount) * fs.ratio
		}
		if total != descFree {
			t.Errorf("FreeSpace lists %d blocks, the descriptors count %d", total, descFree)
		}
		// None of it is used by a file, a directory or the journal.
		for _, r := range append(append([]blockRun(nil), fs.system...), fs.journal...) {
			if overlapsRuns(got, r.start, r.n) {
				t.Errorf("free space overlaps metadata or journal blocks %+v", r)
			}
		}
	}
}
