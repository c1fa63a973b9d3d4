package xfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/extent"
)

// variants are the mkfs.xfs option sets the test tree is built with.
var variants = []struct {
	name string
	opts []string
}{
	{"v5-default", nil},
	{"v5-nrext64-rmapbt", []string{"-i", "nrext64=1", "-m", "rmapbt=1"}},
	{"v4", []string{"-m", "crc=0,finobt=0,reflink=0,bigtime=0,inobtcount=0"}},
	{"block1024", []string{"-b", "size=1024"}},
	{"sector4096", []string{"-s", "size=4096"}},
	{"dirblock8192", []string{"-n", "size=8192"}},
}

func TestTree(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			img := mkfsImage(t, "48m", v.opts...)
			checkImage(t, img, v.name)
		})
	}
}

// dbBatch runs one xfs_db process with a "path X" + cmd block per path and
// splits the output per path.
func dbBatch(t testing.TB, img string, paths []string, cmds ...string) map[string]string {
	t.Helper()
	var args []string
	for _, p := range paths {
		args = append(args, "echo @@@"+p, "path "+p)
		args = append(args, cmds...)
	}
	out := xfsDB(t, img, args...)
	res := map[string]string{}
	var cur string
	for _, line := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(line, "@@@"); ok {
			cur = strings.TrimSpace(p)
			continue
		}
		res[cur] += line + "\n"
	}
	return res
}

func checkImage(t *testing.T, img, variant string) {
	fs := openImage(t, img)
	if len(fs.Warnings) != 0 {
		t.Errorf("warnings on a fresh filesystem: %q", fs.Warnings)
	}
	if err := fs.Writable(); err != nil {
		t.Errorf("Writable on a fresh filesystem: %v", err)
	}
	checkSuperblock(t, fs, img)
	tr := theTree()
	v5 := fs.SB.HasCRC()

	// Every directory: entries and inode numbers as xfs_db lists them.
	dirs := []string{"/"}
	for _, n := range tr.nodes {
		if n.kind == 'd' {
			dirs = append(dirs, n.path)
		}
	}
	inos := map[string]uint64{"/": fs.SB.RootIno}
	for _, d := range dirs {
		want := dbLs(t, img, d)
		got, err := fs.ReadDir(d)
		if err != nil {
			t.Fatalf("ReadDir(%s): %v", d, err)
		}
		if len(got) != len(want) || len(got) != len(tr.children(d, v5)) {
			t.Fatalf("ReadDir(%s): %d entries, xfs_db lists %d, tree has %d", d, len(got), len(want), len(tr.children(d, v5)))
		}
		for _, e := range got {
			if want[e.Name] != e.Ino {
				t.Errorf("ReadDir(%s): %q inode %d, xfs_db says %d", d, e.Name, e.Ino, want[e.Name])
			}
			p := filepath.Join(d, e.Name)
			inos[p] = e.Ino
			n := tr.byPth[p]
			if n == nil {
				t.Errorf("ReadDir(%s): unexpected entry %q", d, e.Name)
				continue
			}
			if fs.SB.HasFtype() {
				wantType := map[byte]uint8{'d': FTDir, '-': FTRegular, 'l': FTSymlink, 'p': FTFifo, 'c': FTChrdev}[n.kind]
				if e.Type != wantType {
					t.Errorf("%s: ftype %d, want %d", p, e.Type, wantType)
				}
			}
		}
	}

	// Every node: Lookup, type, content, target.
	var bmapPaths []string
	for _, n := range tr.nodes {
		if v5 && n.v4only {
			continue
		}
		ino, err := fs.Lookup(n.path)
		if err != nil {
			t.Fatalf("Lookup(%s): %v", n.path, err)
		}
		if ino.Ino != inos[n.path] {
			t.Errorf("Lookup(%s) = inode %d, directory says %d", n.path, ino.Ino, inos[n.path])
		}
		switch n.kind {
		case 'd':
			if !ino.IsDir() {
				t.Errorf("%s: mode %o is not a directory", n.path, ino.Mode)
			}
			bmapPaths = append(bmapPaths, n.path)
		case '-':
			if !ino.IsRegular() || ino.Size != int64(len(n.data)) || ino.UID != 1000 || ino.GID != 100 {
				t.Errorf("%s: mode %o size %d uid %d gid %d", n.path, ino.Mode, ino.Size, ino.UID, ino.GID)
			}
			if strings.HasPrefix(n.path, "/nodedir/node-") || strings.HasPrefix(n.path, "/leafdir/") {
				continue // thousands of empty files: content checked for a sample only
			}
			got, err := fs.ReadFile(n.path)
			if err != nil {
				t.Fatalf("ReadFile(%s): %v", n.path, err)
			}
			if !bytes.Equal(got, n.data) {
				t.Errorf("ReadFile(%s): %d bytes differ from the %d written", n.path, len(got), len(n.data))
			}
			if len(n.data) > 0 {
				bmapPaths = append(bmapPaths, n.path)
			}
		case 'l':
			if !ino.IsSymlink() {
				t.Errorf("%s: mode %o is not a symlink", n.path, ino.Mode)
			}
			got, err := fs.Readlink(n.path)
			if err != nil || got != n.target {
				t.Errorf("Readlink(%s) = %.40q, %v; want %.40q", n.path, got, err, n.target)
			}
			if len(n.target) > 300 && ino.Format != FormatExtents {
				t.Errorf("%s: %d-byte target in format %d, want remote (extents)", n.path, len(n.target), ino.Format)
			}
			if len(n.target) < 50 && ino.Format != FormatLocal {
				t.Errorf("%s: short target in format %d, want local", n.path, ino.Format)
			}
		case 'p', 'c':
			if ino.Format != FormatDev {
				t.Errorf("%s: format %d", n.path, ino.Format)
			}
		}
	}

	// Extent maps against xfs_db bmap, and raw reads at xfs_db's offsets.
	bm := dbBatch(t, img, bmapPaths, "bmap")
	for _, p := range bmapPaths {
		ino, err := fs.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fs.Extents(ino)
		if err != nil {
			t.Fatalf("Extents(%s): %v", p, err)
		}
		want := fs.toExtents(parseBmap(t, bm[p]))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Extents(%s):\n got %v\nwant %v (xfs_db bmap)", p, got, want)
		}
	}
	for _, p := range []string{"/files/f1048577", "/files/f4095", "/longnames/" + strings.Repeat("a", 255)} {
		if raw := readRaw(t, img, fs, p, int64(len(tr.byPth[p].data))); !bytes.Equal(raw, tr.byPth[p].data) {
			t.Errorf("%s: bytes at xfs_db's block map differ from the content written", p)
		}
	}

	checkDirFormats(t, fs, img, variant)
	checkLookupSemantics(t, fs, v5)
	checkFreeSpace(t, fs, img)
}

// checkSuperblock compares parsed fields with xfs_db's "sb 0" print.
func checkSuperblock(t *testing.T, fs *FS, img string) {
	f := dbFields(xfsDB(t, img, "sb 0", "p"))
	s := fs.SB
	num := map[string]uint64{
		"blocksize": uint64(s.BlockSize), "dblocks": s.DBlocks, "agblocks": uint64(s.AGBlocks),
		"agcount": uint64(s.AGCount), "sectsize": uint64(s.SectSize), "inodesize": uint64(s.InodeSize),
		"inopblock": uint64(s.InopBlock), "blocklog": uint64(s.BlockLog), "agblklog": uint64(s.AGBlkLog),
		"inopblog": uint64(s.InopBLog), "rootino": s.RootIno, "logstart": s.LogStart,
		"logblocks": uint64(s.LogBlocks), "versionnum": uint64(s.Versionnum), "features2": uint64(s.Features2),
		"dirblklog": uint64(s.DirBlkLog), "icount": s.ICount, "fdblocks": s.FDBlocks,
	}
	if s.HasCRC() {
		num["features_compat"] = uint64(s.FeaturesCompat)
		num["features_ro_compat"] = uint64(s.FeaturesRoCompat)
		num["features_incompat"] = uint64(s.FeaturesIncompat)
		num["features_log_incompat"] = uint64(s.FeaturesLogIncompat)
	}
	for k, v := range num {
		got, err := strconv.ParseUint(f[k], 0, 64)
		if err != nil || got != v {
			t.Errorf("superblock %s = %d, xfs_db says %q", k, v, f[k])
		}
	}
	if u := fmt.Sprintf("%x-%x-%x-%x-%x", s.UUID[0:4], s.UUID[4:6], s.UUID[6:8], s.UUID[8:10], s.UUID[10:16]); u != f["uuid"] {
		t.Errorf("uuid %s, xfs_db says %s", u, f["uuid"])
	}
	if s.HasCRC() && !strings.Contains(f["crc"], "(correct)") {
		t.Errorf("xfs_db says the superblock CRC is %q", f["crc"])
	}
}

// checkDirFormats asserts (with xfs_db as the judge) that the tree really
// exercises every directory format.
func checkDirFormats(t *testing.T, fs *FS, img, variant string) {
	out := dbBatch(t, img, []string{"/few", "/blockdir", "/leafdir", "/nodedir"}, "p core.format", "bmap")
	classify := func(p string) string {
		if strings.Contains(out[p], "core.format = 1 (local)") {
			return "shortform"
		}
		leaf, free := false, false
		for _, e := range parseBmap(t, out[p]) {
			off := int64(e.off) * fs.bs
			if off >= 2*dirLeafOffset {
				free = true
			} else if off >= dirLeafOffset {
				leaf = true
			}
		}
		switch {
		case free:
			return "node"
		case leaf:
			return "leaf"
		}
		return "block"
	}
	got := map[string]string{}
	for _, p := range []string{"/few", "/blockdir", "/leafdir", "/nodedir"} {
		got[p] = classify(p)
	}
	t.Logf("%s directory formats: %v", variant, got)
	if variant == "v5-default" {
		want := map[string]string{"/few": "shortform", "/blockdir": "block", "/leafdir": "leaf", "/nodedir": "node"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("directory formats %v, want %v", got, want)
		}
	}
	ino, err := fs.Lookup("/nodedir/needle")
	if err != nil {
		t.Fatalf("Lookup in node directory: %v", err)
	}
	if want := dbLs(t, img, "/nodedir")["needle"]; ino.Ino != want {
		t.Errorf("needle inode %d, xfs_db %d", ino.Ino, want)
	}
}

func checkLookupSemantics(t *testing.T, fs *FS, v5 bool) {
	tr := theTree()
	same := func(a, b string) {
		t.Helper()
		x, err := fs.LookupFollow(a)
		if err != nil {
			t.Errorf("LookupFollow(%s): %v", a, err)
			return
		}
		y, err := fs.Lookup(b)
		if err != nil {
			t.Errorf("Lookup(%s): %v", b, err)
			return
		}
		if x.Ino != y.Ino {
			t.Errorf("%s → inode %d, %s → %d", a, x.Ino, b, y.Ino)
		}
	}
	same("/links/short", "/files/f1")
	same("/links/chain", "/files/f1")
	same("/links/abs", "/files/f4096")
	if !v5 {
		same("/links/long", "/files/f4095")
		if got, err := fs.ReadFile("/links/long"); err != nil || !bytes.Equal(got, tr.byPth["/files/f4095"].data) {
			t.Errorf("ReadFile through a remote symlink: %v", err)
		}
	}
	same("/links/dirlink/c/d/file.txt", "/deep/a/b/c/d/file.txt")
	same("/links/absdir/b/c", "/deep/a/b/c")
	same("/links/dirlink/../b", "/deep/a/b") // ".." is physical: parent of b is a
	same("/..", "/")
	same("/deep/a/../a/./b//", "/deep/a/b")
	same("files/f1", "/files/f1")

	if l, err := fs.Lookup("/links/short"); err != nil || !l.IsSymlink() {
		t.Errorf("Lookup does not follow a final symlink: %v", err)
	}
	if _, err := fs.LookupFollow("/links/loop1"); !errors.Is(err, ErrSymlinkLoop) {
		t.Errorf("symlink loop: %v", err)
	}
	if _, err := fs.LookupFollow("/links/dangling"); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("dangling symlink: %v", err)
	}
	if _, err := fs.Lookup("/files/f1/x"); !errors.Is(err, ErrNotDir) {
		t.Errorf("file used as a directory: %v", err)
	}
	if _, err := fs.Lookup("/nope"); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := fs.ReadFile("/files"); err == nil {
		t.Error("ReadFile of a directory succeeded")
	}
	if _, err := fs.Readlink("/files/f1"); err == nil {
		t.Error("Readlink of a regular file succeeded")
	}
	fs2 := *fs
	fs2.MountPoint = "/mnt/x"
	if _, err := fs2.LookupFollow("/links/abs"); !errors.Is(err, ErrOutsideFS) {
		t.Errorf("absolute target outside MountPoint: %v", err)
	}
	fs2.MountPoint = "/files"
	if _, err := fs2.LookupFollow("/links/abs"); !errors.Is(err, iofs.ErrNotExist) {
		// "/files/f4096" inside a filesystem mounted at /files is /f4096.
		t.Errorf("absolute target inside MountPoint: %v", err)
	}
}

var btRec = regexp.MustCompile(`^\d+:\[(\d+),(\d+)\]`)

// checkFreeSpace compares FreeSpace with the bnobt records xfs_db dumps.
func checkFreeSpace(t *testing.T, fs *FS, img string) {
	got, err := fs.FreeSpace()
	if err != nil {
		t.Fatalf("FreeSpace: %v", err)
	}
	var want []extent.Range
	for ag := uint32(0); ag < fs.SB.AGCount; ag++ {
		out := xfsDB(t, img, fmt.Sprintf("agf %d", ag), "addr bnoroot", "btdump")
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			m := btRec.FindStringSubmatch(strings.TrimSpace(sc.Text()))
			if m == nil {
				continue
			}
			start, _ := strconv.ParseInt(m[1], 10, 64)
			n, _ := strconv.ParseInt(m[2], 10, 64)
			want = append(want, extent.Range{Off: fs.agbnoToOffset(ag, uint64(start)), Len: n * fs.bs})
		}
	}
	if len(want) == 0 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("FreeSpace:\n got %v\nwant %v (xfs_db btdump of each bnobt)", got, want)
	}
	// freesp counts the AGFL too.
	out := xfsDB(t, img, "freesp -s")
	m := regexp.MustCompile(`total free blocks (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("freesp output: %s", out)
	}
	total, _ := strconv.ParseInt(m[1], 10, 64)
	var agfl int64
	for ag := uint32(0); ag < fs.SB.AGCount; ag++ {
		agf, err := fs.ReadAGF(ag)
		if err != nil {
			t.Fatal(err)
		}
		agfl += int64(agf.FLCount)
	}
	var sum int64
	for _, r := range got {
		sum += r.Len
	}
	if sum != (total-agfl)*fs.bs {
		t.Errorf("FreeSpace sums to %d blocks; xfs_db freesp %d minus %d AGFL blocks", sum/fs.bs, total, agfl)
	}
}
