package xfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/testenv"
)

// TestRewrite rewrites files of the test tree (same size, shorter, longer
// inside the last block, to zero), applies the writes to a copy and checks it
// with xfs_repair -n, xfs_db and the bytes at xfs_db's block map — and with
// the kernel when a read-only loop mount is possible.
func TestRewrite(t *testing.T) {
	for _, v := range variants {
		if v.name == "sector4096" || v.name == "dirblock8192" {
			continue // same code paths as v5-default for file data
		}
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			img := mkfsImage(t, "48m", v.opts...)
			testRewrite(t, img)
		})
	}
}

func testRewrite(t *testing.T, img string) {
	fs := openImage(t, img)
	tr := theTree()
	edits := map[string][]byte{
		"/files/f4096":           pseudoRandom(100, 4096),                           // same size
		"/files/f12345":          pseudoRandom(101, 5000),                           // shorter
		"/files/f4095":           pseudoRandom(102, 4096),                           // longer, same block
		"/files/f1":              []byte(strings.Repeat("grown ", 1000)[:fs.bs-24]), // longer, same block
		"/few/a":                 nil,                                               // to zero
		"/files/f1048577":        pseudoRandom(103, 1<<20+1),                        // same size, many blocks
		"/deep/a/b/c/d/file.txt": []byte("DEEP\n"),
	}
	var all []Write
	for p, data := range edits {
		ws, err := fs.Rewrite(p, data)
		if err != nil {
			t.Fatalf("Rewrite(%s): %v", p, err)
		}
		oldSize := int64(len(tr.byPth[p].data))
		hasInode := false
		for _, w := range ws {
			if len(w.Data) == int(fs.SB.InodeSize) && w.Offset%int64(fs.SB.InodeSize) == 0 && int64(len(data)) != oldSize {
				hasInode = true
			}
		}
		if int64(len(data)) != oldSize && !hasInode {
			t.Errorf("Rewrite(%s): size changes but no inode write in %d writes", p, len(ws))
		}
		all = append(all, ws...)
	}
	cp := applyWrites(t, img, all)
	repairClean(t, cp)

	fs2 := openImage(t, cp)
	var paths []string
	for p := range edits {
		paths = append(paths, p)
	}
	sizes := dbBatch(t, cp, paths, "p core.size")
	for p, data := range edits {
		got, err := fs2.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: re-read %d bytes (%v), want the %d written", p, len(got), err, len(data))
		}
		if s := dbFields(sizes[p])["core.size"]; s != fmt.Sprint(len(data)) {
			t.Errorf("%s: xfs_db core.size %s, want %d", p, s, len(data))
		}
		ino, _ := fs2.Lookup(p)
		// Independent read: the image bytes at xfs_db's block map, up to
		// the block end, must be the data then zeros.
		end := (int64(len(data)) + fs2.bs - 1) / fs2.bs * fs2.bs
		if raw := readRaw(t, cp, fs2, p, end); !bytes.Equal(raw, append(append([]byte(nil), data...), make([]byte, end-int64(len(data)))...)) {
			t.Errorf("%s: bytes at xfs_db's block map are not the new data zero-padded to the block end", p)
		}
		if old, _ := fs.Lookup(p); old.Mtime != ino.Mtime || old.ChangeCount != ino.ChangeCount {
			t.Errorf("%s: timestamps changed without ModTime", p)
		}
	}
	// Untouched files stay intact.
	for _, p := range []string{"/files/f0", "/few/b", "/blockdir/entry-with-a-longish-name-007"} {
		if got, err := fs2.ReadFile(p); err != nil || !bytes.Equal(got, tr.byPth[p].data) {
			t.Errorf("%s changed: %v", p, err)
		}
	}
	kernelCheck(t, cp, edits)

	// Refusals.
	refused := func(p string, data []byte, why string) {
		t.Helper()
		_, err := fs.Rewrite(p, data)
		if !errors.Is(err, ErrCannotEdit) || !strings.Contains(err.Error(), why) {
			t.Errorf("Rewrite(%s, %d bytes) = %v, want ErrCannotEdit mentioning %q", p, len(data), err, why)
		}
	}
	ino, _ := fs.Lookup("/files/f4096")
	exts, _ := fs.Extents(ino)
	var allocated int64
	for _, e := range exts {
		allocated += e.Len
	}
	refused("/files/f4096", make([]byte, allocated+1), "do not fit")
	refused("/files/f0", []byte("x"), "do not fit")
	refused("/files", nil, "not a regular file")
	refused("/links/short", nil, "not a regular file")
	refused("/links/fifo", nil, "not a regular file")
	if _, err := fs.Rewrite("/nope", nil); err == nil || errors.Is(err, ErrCannotEdit) {
		t.Errorf("Rewrite of a missing file: %v", err)
	}
}

// kernelCheck mounts the image read-only (when this machine allows it) and
// compares the edited files with what the kernel reads.
func kernelCheck(t *testing.T, img string, edits map[string][]byte) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("kernel check not run: not root")
		return
	}
	fs := openImage(t, img)
	if !fs.SB.HasCRC() {
		t.Log("kernel check not run: v4 (recent kernels may lack V4 support)")
		return
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop,ro,norecovery", img, mnt).CombinedOutput(); err != nil {
		t.Logf("kernel check not run: mount failed: %v %s", err, out)
		return
	}
	defer func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	}()
	for p, data := range edits {
		got, err := os.ReadFile(filepath.Join(mnt, p))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("kernel reads %s as %d bytes (%v), want the %d written", p, len(got), err, len(data))
		}
	}
}

// TestRewriteModTime stores a new mtime/ctime and bumps the change counter.
func TestRewriteModTime(t *testing.T) {
	for _, v := range []string{"v5", "v4"} {
		t.Run(v, func(t *testing.T) {
			var opts []string
			if v == "v4" {
				opts = variants[2].opts
			}
			img := mkfsImage(t, "48m", opts...)
			fs := openImage(t, img)
			ino, err := fs.Lookup("/few/b")
			if err != nil {
				t.Fatal(err)
			}
			when := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)
			ws, err := fs.RewriteInode(ino, []byte("new b\n"), &RewriteOptions{ModTime: when})
			if err != nil {
				t.Fatal(err)
			}
			cp := applyWrites(t, img, ws)
			repairClean(t, cp)
			after, err := openImage(t, cp).Lookup("/few/b")
			if err != nil {
				t.Fatal(err)
			}
			if !after.Mtime.Equal(when) || !after.Ctime.Equal(when) || !after.Atime.Equal(ino.Atime) {
				t.Errorf("times after: m %v c %v a %v", after.Mtime, after.Ctime, after.Atime)
			}
			f := dbFields(xfsDB(t, cp, "path /few/b", "p core.mtime.nsec"))
			if f["core.mtime.nsec"] != "123456789" {
				t.Errorf("xfs_db mtime nsec %q", f["core.mtime.nsec"])
			}
			if v == "v5" {
				f = dbFields(xfsDB(t, cp, "path /few/b", "p v3.change_count"))
			}
			if v == "v5" && f["v3.change_count"] != fmt.Sprint(ino.ChangeCount+1) {
				t.Errorf("xfs_db change_count %q, want %d", f["v3.change_count"], ino.ChangeCount+1)
			}
		})
	}
}

// TestRewriteRefusals sets flags and feature bits with xfs_db -x (which
// keeps CRCs valid) and expects refusals.
func TestRewriteRefusals(t *testing.T) {
	testenv.Need(t, "xfs_db")
	base := mkfsImage(t, "48m")
	fs := openImage(t, base)
	ino, err := fs.Lookup("/files/f4096")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cmds []string
		why  string
	}{
		{"reflink", []string{fmt.Sprintf("inode %d", ino.Ino), "write v3.reflink 1"}, "reflinked"},
		{"realtime", []string{fmt.Sprintf("inode %d", ino.Ino), "write core.realtime 1"}, "realtime"},
		{"immutable", []string{fmt.Sprintf("inode %d", ino.Ino), "write core.immutable 1"}, "immutable"},
		{"append", []string{fmt.Sprintf("inode %d", ino.Ino), "write core.append 1"}, "append"},
		{"needsrepair", []string{"sb 0", fmt.Sprintf("write -d features_incompat %d", fs.SB.FeaturesIncompat|IncompatNeedsRepair)}, "NEEDSREPAIR"},
		{"unknown-incompat", []string{"sb 0", fmt.Sprintf("write -d features_incompat %d", fs.SB.FeaturesIncompat|1<<30)}, "unknown incompat"},
		{"unknown-rocompat", []string{"sb 0", fmt.Sprintf("write -d features_ro_compat %d", fs.SB.FeaturesRoCompat|1<<30)}, "unknown ro_compat"},
		{"log-incompat", []string{"sb 0", "write -d features_log_incompat 1"}, "log_incompat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := testenv.CopyFile(t, base)
			args := []string{"-x"}
			for _, c := range tc.cmds {
				args = append(args, "-c", c)
			}
			testenv.Run(t, "xfs_db", append(args, img)...)
			fs := openImage(t, img)
			_, err := fs.Rewrite("/files/f4096", make([]byte, 10))
			if !errors.Is(err, ErrCannotEdit) || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("Rewrite = %v, want ErrCannotEdit mentioning %q", err, tc.why)
			}
			if strings.HasPrefix(tc.name, "needs") || strings.HasPrefix(tc.name, "unknown") || strings.HasPrefix(tc.name, "log") {
				if _, err := fs.FreeSpace(); !errors.Is(err, ErrCannotEdit) {
					t.Errorf("FreeSpace = %v, want a refusal", err)
				}
			}
		})
	}
}

// TestRewriteFixture covers kernel-made files: a 600-extent btree file on
// an NREXT64 filesystem, reflinked files, a hole, an unwritten extent.
func TestRewriteFixture(t *testing.T) {
	testenv.Need(t, "xfs_db", "xfs_repair")
	img := fixture(t, "frag4k.img")
	fs := openImage(t, img)
	refused := func(p string, n int, why string) {
		t.Helper()
		_, err := fs.Rewrite(p, make([]byte, n))
		if !errors.Is(err, ErrCannotEdit) || !strings.Contains(err.Error(), why) {
			t.Errorf("Rewrite(%s, %d bytes) = %v, want ErrCannotEdit mentioning %q", p, n, err, why)
		}
	}
	refused("/orig", 100, "reflinked")
	refused("/clone", 100, "reflinked")
	refused("/sparse", 4097, "hole")
	refused("/prealloc", 4097, "unwritten")
	refused("/bigdir", 0, "not a regular file")
	refused("/longlink", 0, "not a regular file")

	edits := map[string][]byte{
		"/frag":     bytes.Repeat([]byte("0123456789abcdef"), 600*4096/16-1000), // shorter, still btree
		"/sparse":   bytes.Repeat([]byte{0x71}, 4096),                           // before the hole
		"/prealloc": []byte("written part only\n"),                              // before the unwritten extent
	}
	var all []Write
	for p, data := range edits {
		ws, err := fs.Rewrite(p, data)
		if err != nil {
			t.Fatalf("Rewrite(%s): %v", p, err)
		}
		all = append(all, ws...)
	}
	cp := applyWrites(t, img, all)
	repairClean(t, cp)
	fs2 := openImage(t, cp)
	for p, data := range edits {
		if got, err := fs2.ReadFile(p); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: re-read %d bytes (%v), want %d", p, len(got), err, len(data))
		}
		if raw := readRaw(t, cp, fs2, p, int64(len(data))); !bytes.Equal(raw, data) {
			t.Errorf("%s: bytes at xfs_db's block map differ", p)
		}
	}
	if got := dbFields(xfsDB(t, cp, "path /frag", "p core.size"))["core.size"]; got != fmt.Sprint(len(edits["/frag"])) {
		t.Errorf("xfs_db /frag core.size %s", got)
	}
	kernelCheck(t, cp, edits)
}
