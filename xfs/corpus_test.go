package xfs

import (
	"bytes"
	"path"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// walkAll reads every directory, file and symlink reachable from / and
// compares directories with xfs_db ls and file contents with the bytes at
// xfs_db's block map. It returns the number of files read.
func walkAll(t *testing.T, fs *FS, img string) int {
	t.Helper()
	files := 0
	var walk func(dir string)
	walk = func(dir string) {
		ents, err := fs.ReadDir(dir)
		if err != nil {
			t.Fatalf("ReadDir(%s): %v", dir, err)
		}
		want := dbLs(t, img, dir)
		if len(ents) != len(want) {
			t.Errorf("ReadDir(%s): %d entries, xfs_db %d", dir, len(ents), len(want))
		}
		for _, e := range ents {
			p := path.Join(dir, e.Name)
			if want[e.Name] != e.Ino {
				t.Errorf("%s: inode %d, xfs_db %d", p, e.Ino, want[e.Name])
			}
			ino, err := fs.Lookup(p)
			if err != nil {
				t.Fatalf("Lookup(%s): %v", p, err)
			}
			switch {
			case ino.IsDir():
				walk(p)
			case ino.IsRegular():
				data, err := fs.ReadFile(p)
				if err != nil {
					t.Fatalf("ReadFile(%s): %v", p, err)
				}
				if raw := readRaw(t, img, fs, p, ino.Size); !bytes.Equal(raw, data) {
					t.Errorf("%s: content differs from the bytes at xfs_db's block map", p)
				}
				files++
			case ino.IsSymlink():
				if _, err := fs.Readlink(p); err != nil {
					t.Errorf("Readlink(%s): %v", p, err)
				}
			}
		}
	}
	walk("/")
	return files
}

// TestCryptsetupImages reads the XFS images of cryptsetup's test suite:
// v5 with rmapbt, reflink, bigtime, NREXT64 and 4 KiB sectors; v4; and a
// 4 KiB-block image with 512-byte sectors.
func TestCryptsetupImages(t *testing.T) {
	testenv.Need(t, "xfs_db")
	for _, tc := range []struct {
		name    string
		version int
		files   int
	}{
		{"img_fs_xfs5.img", 5, 2},
		{"img_fs_xfs.img", 4, 2},
		{"xfs_512_block_size.img", 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := testenv.CryptsetupImage(t, tc.name)
			fs := openImage(t, img)
			if fs.SB.Version() != tc.version {
				t.Errorf("version %d, want %d", fs.SB.Version(), tc.version)
			}
			checkSuperblock(t, fs, img)
			if n := walkAll(t, fs, img); n != tc.files {
				t.Errorf("read %d files, want %d", n, tc.files)
			}
			if err := fs.Writable(); err != nil {
				t.Errorf("Writable: %v", err)
			}
			checkFreeSpace(t, fs, img)
		})
	}
}
