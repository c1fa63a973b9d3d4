package xfs

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// checkFragContent asserts the content rule of the fragmented fixtures:
// block i is filled with byte (7i+1)&255.
func checkFragContent(t *testing.T, data []byte, bs int, blocks int) {
	t.Helper()
	if len(data) != bs*blocks {
		t.Fatalf("/frag is %d bytes, want %d", len(data), bs*blocks)
	}
	for i := range blocks {
		want := byte((7*i + 1) & 255)
		blk := data[i*bs : (i+1)*bs]
		if bytes.Count(blk, []byte{want}) != bs {
			t.Fatalf("/frag block %d is not filled with %#x", i, want)
		}
	}
}

// compareExtents checks Extents(path) against xfs_db bmap.
func compareExtents(t *testing.T, fs *FS, img, path string) []Extent {
	t.Helper()
	ino, err := fs.Lookup(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fs.Extents(ino)
	if err != nil {
		t.Fatalf("Extents(%s): %v", path, err)
	}
	want := fs.toExtents(dbBmap(t, img, path))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Extents(%s): %d extents differ from xfs_db bmap's %d\n got %.300v\nwant %.300v", path, len(got), len(want), got, want)
	}
	return got
}

func TestFragmented4K(t *testing.T) {
	testenv.Need(t, "xfs_db")
	img := fixture(t, "frag4k.img")
	fs := openImage(t, img)
	if len(fs.Warnings) != 0 || fs.Writable() != nil {
		t.Fatalf("warnings %q, Writable %v: the kernel unmounted this filesystem cleanly", fs.Warnings, fs.Writable())
	}
	if fs.SB.FeaturesIncompat&IncompatNrext64 == 0 || fs.SB.FeaturesRoCompat&RoCompatReflink == 0 {
		t.Fatalf("fixture lacks NREXT64/reflink: incompat %#x ro_compat %#x", fs.SB.FeaturesIncompat, fs.SB.FeaturesRoCompat)
	}

	frag, err := fs.Lookup("/frag")
	if err != nil {
		t.Fatal(err)
	}
	dbf := dbFields(xfsDB(t, img, "path /frag", "p core.format core.nextents v3.nrext64"))
	if frag.Format != FormatBtree || dbf["core.format"] != "3 (btree)" || frag.NExtents != 600 ||
		dbf["core.nextents"] != "600" || frag.Flags2&Flag2Nrext64 == 0 || dbf["v3.nrext64"] != "1" {
		t.Fatalf("/frag: format %d nextents %d flags2 %#x; xfs_db %v", frag.Format, frag.NExtents, frag.Flags2, dbf)
	}
	if exts := compareExtents(t, fs, img, "/frag"); len(exts) != 600 {
		t.Errorf("/frag has %d extents", len(exts))
	}
	compareExtents(t, fs, img, "/spacer")
	data, err := fs.ReadFile("/frag")
	if err != nil {
		t.Fatal(err)
	}
	checkFragContent(t, data, 4096, 600)
	if raw := readRaw(t, img, fs, "/frag", frag.Size); !bytes.Equal(raw, data) {
		t.Error("/frag: ReadFile differs from the bytes at xfs_db's block map")
	}

	// A btree-format directory.
	dir, err := fs.Lookup("/bigdir")
	if err != nil {
		t.Fatal(err)
	}
	if dir.Format != FormatBtree {
		t.Errorf("/bigdir format %d, want btree", dir.Format)
	}
	compareExtents(t, fs, img, "/bigdir")
	ents, err := fs.ReadDir("/bigdir")
	if err != nil {
		t.Fatal(err)
	}
	want := dbLs(t, img, "/bigdir")
	target, _ := fs.Lookup("/target")
	if len(ents) != 700 || len(want) != 700 {
		t.Fatalf("/bigdir: %d entries, xfs_db %d", len(ents), len(want))
	}
	for _, e := range ents {
		if want[e.Name] != e.Ino || e.Ino != target.Ino || e.Type != FTRegular {
			t.Fatalf("/bigdir entry %q: inode %d type %d; xfs_db %d", e.Name, e.Ino, e.Type, want[e.Name])
		}
	}
	last := ents[len(ents)-1].Name
	if ino, err := fs.Lookup("/bigdir/" + last); err != nil || ino.Ino != target.Ino {
		t.Errorf("Lookup of the last entry in a btree directory: %v", err)
	}

	// A leaf-form directory whose only data block is full (di_size = one
	// directory block, as for block form).
	leaf1, err := fs.Lookup("/leaf1")
	if err != nil {
		t.Fatal(err)
	}
	le, _ := fs.Extents(leaf1)
	if leaf1.Size != 4096 || len(le) != 2 || le[1].FileOff != dirLeafOffset {
		t.Fatalf("fixture /leaf1: size %d extents %v, want one data block plus a leaf block", leaf1.Size, le)
	}
	ents, err = fs.ReadDir("/leaf1")
	if err != nil {
		t.Fatal(err)
	}
	if want := dbLs(t, img, "/leaf1"); len(ents) != 70 || len(want) != 70 {
		t.Errorf("/leaf1: %d entries, xfs_db %d, want 70", len(ents), len(want))
	}

	// Kernel-made remote symlink (v5 header).
	l, _ := fs.Lookup("/longlink")
	if s, err := fs.Readlink("/longlink"); err != nil || len(s) != 607 || l.Format != FormatExtents {
		t.Errorf("Readlink(/longlink) = %d bytes, %v (format %d)", len(s), err, l.Format)
	}
	if ino, err := fs.LookupFollow("/longlink"); err != nil || ino.Ino != frag.Ino {
		t.Errorf("LookupFollow(/longlink): %v", err)
	}

	// Holes and unwritten extents read as zeros.
	sparse, err := fs.ReadFile("/sparse")
	if err != nil {
		t.Fatal(err)
	}
	wantSparse := append(append(bytes.Repeat([]byte{0x61}, 4096), make([]byte, 60<<10)...), bytes.Repeat([]byte{0x62}, 4096)...)
	if !bytes.Equal(sparse, wantSparse) {
		t.Error("/sparse: content with a hole differs")
	}
	compareExtents(t, fs, img, "/sparse")
	pre, err := fs.ReadFile("/prealloc")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pre, append(bytes.Repeat([]byte{0x63}, 4096), make([]byte, 60<<10)...)) {
		t.Error("/prealloc: unwritten extent does not read as zeros")
	}
	exts := compareExtents(t, fs, img, "/prealloc")
	if len(exts) != 2 || exts[0].Unwritten || !exts[1].Unwritten {
		t.Errorf("/prealloc extents %v, want written then unwritten", exts)
	}

	// Reflinked files share blocks.
	orig, _ := fs.Lookup("/orig")
	clone, _ := fs.Lookup("/clone")
	eo, _ := fs.Extents(orig)
	ec, _ := fs.Extents(clone)
	if orig.Flags2&Flag2Reflink == 0 || clone.Flags2&Flag2Reflink == 0 || fmt.Sprint(eo) != fmt.Sprint(ec) {
		t.Errorf("reflinked files: flags2 %#x %#x, extents %v %v", orig.Flags2, clone.Flags2, eo, ec)
	}

	checkFreeSpace(t, fs, img)
}

func TestFragmented1K(t *testing.T) {
	testenv.Need(t, "xfs_db")
	img := fixture(t, "frag1k.img")
	fs := openImage(t, img)
	if err := fs.Writable(); err != nil {
		t.Fatal(err)
	}
	f := dbFields(xfsDB(t, img, "path /frag", "p u3.bmbt.level core.nextents"))
	if f["u3.bmbt.level"] != "2" || f["core.nextents"] != "1500" {
		t.Fatalf("fixture /frag is not a 2-level btree with 1500 extents: %v", f)
	}
	if exts := compareExtents(t, fs, img, "/frag"); len(exts) != 1500 {
		t.Errorf("/frag has %d extents", len(exts))
	}
	data, err := fs.ReadFile("/frag")
	if err != nil {
		t.Fatal(err)
	}
	checkFragContent(t, data, 1024, 1500)
	checkFreeSpace(t, fs, img)

	// Rewrite inside a 2-level btree file, checked by xfs_repair and by
	// xfs_db's block map.
	newData := bytes.Repeat([]byte("btree rewrite "), 1500*1024/14)
	ws, err := fs.Rewrite("/frag", newData)
	if err != nil {
		t.Fatal(err)
	}
	cp := applyWrites(t, img, ws)
	repairClean(t, cp)
	fs2 := openImage(t, cp)
	if got, err := fs2.ReadFile("/frag"); err != nil || !bytes.Equal(got, newData) {
		t.Fatalf("re-read after rewrite: %v", err)
	}
	if raw := readRaw(t, cp, fs2, "/frag", int64(len(newData))); !bytes.Equal(raw, newData) {
		t.Error("bytes at xfs_db's block map differ after the rewrite")
	}
	if got := dbFields(xfsDB(t, cp, "path /frag", "p core.size"))["core.size"]; got != fmt.Sprint(len(newData)) {
		t.Errorf("xfs_db core.size = %s, want %d", got, len(newData))
	}
}

func TestDirtyLog(t *testing.T) {
	img := fixture(t, "dirty.img")
	if out, err := testenv.RunErr("xfs_repair", "-n", "-f", img); err == nil {
		t.Fatalf("oracle disagrees: xfs_repair -n calls the fixture's log clean\n%s", out)
	}
	fs := openImage(t, img)
	if len(fs.Warnings) == 0 {
		t.Error("no warning for a dirty log")
	}
	err := fs.Writable()
	if !errors.Is(err, ErrDirtyLog) || !errors.Is(err, ErrCannotEdit) {
		t.Fatalf("Writable = %v, want ErrDirtyLog and ErrCannotEdit", err)
	}
	if _, err := fs.FreeSpace(); !errors.Is(err, ErrDirtyLog) {
		t.Errorf("FreeSpace on a dirty log: %v", err)
	}
	ino, err := fs.Inode(fs.SB.RootIno)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.RewriteInode(ino, nil, nil); !errors.Is(err, ErrDirtyLog) {
		t.Errorf("RewriteInode on a dirty log: %v", err)
	}
	t.Logf("dirty log: %v", fs.Writable())
}

// TestLogformatWrapped checks logs rewritten by xfs_db logformat -c N: the
// unmount record carries cycle N and the rest of the log cycle N-1, the
// shape of a log that has wrapped. xfs_repair -n is the judge.
func TestLogformatWrapped(t *testing.T) {
	testenv.Need(t, "xfs_db", "xfs_repair")
	base := mkfsImage(t, "48m")
	for _, args := range [][]string{{"-c", "2"}, {"-c", "7"}, {"-c", "100000"}, {"-c", "9", "-s", "4096"}, {"-c", "3", "-s", "32768"}} {
		t.Run(strings.Join(args, ""), func(t *testing.T) {
			img := testenv.CopyFile(t, base)
			testenv.Run(t, "xfs_db", "-x", "-c", "logformat "+strings.Join(args, " "), img)
			_, repairErr := testenv.RunErr("xfs_repair", "-n", "-f", img)
			fs := openImage(t, img)
			if (fs.Writable() == nil) != (repairErr == nil) {
				t.Errorf("Writable = %v, xfs_repair -n error = %v", fs.Writable(), repairErr)
			}
			if fs.Writable() != nil {
				t.Logf("(log after logformat %v is not clean: %v)", args, fs.Writable())
			}
		})
	}
}
