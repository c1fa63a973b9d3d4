package xfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// flipByte returns a copy of img with one byte inverted.
func flipByte(t *testing.T, img string, off int64) string {
	t.Helper()
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	data[off] ^= 0xff
	p := filepath.Join(t.TempDir(), "flipped.img")
	writeSparse(t, p, data)
	return p
}

func openFile(t *testing.T, img string) (*FS, error) {
	t.Helper()
	return Open(testenv.Open(t, img))
}

// wantFormatError checks err is a *FormatError at off, and that xfs_repair
// -n also rejects the image.
func wantFormatError(t *testing.T, err error, off int64, img string) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v, want a *FormatError", err)
	}
	if fe.Offset != off {
		t.Errorf("FormatError offset %d, want %d (%v)", fe.Offset, off, err)
	}
	if _, rerr := testenv.RunErr("xfs_repair", "-n", "-f", img); rerr == nil {
		t.Errorf("oracle disagrees: xfs_repair -n accepts the image that gave %v", err)
	}
}

var stackOffset = regexp.MustCompile(`byte offset (\d+)`)

// TestCorruption flips bytes in checksummed metadata and expects errors
// that name the structure's offset.
func TestCorruption(t *testing.T) {
	testenv.Need(t, "xfs_db", "xfs_repair")
	img := mkfsImage(t, "48m")

	t.Run("superblock", func(t *testing.T) {
		_, err := openFile(t, flipByte(t, img, 160))
		var fe *FormatError
		if !errors.As(err, &fe) || fe.Structure != "superblock" || fe.Offset != 0 || !strings.Contains(err.Error(), "CRC") {
			t.Errorf("Open = %v, want a superblock CRC error", err)
		}
	})
	t.Run("magic", func(t *testing.T) {
		if _, err := openFile(t, flipByte(t, img, 0)); !errors.Is(err, ErrNotXFS) {
			t.Errorf("Open = %v, want ErrNotXFS", err)
		}
	})
	t.Run("inode", func(t *testing.T) {
		m := stackOffset.FindStringSubmatch(xfsDB(t, img, "path /files/f4096", "stack"))
		off, _ := strconv.ParseInt(m[1], 10, 64)
		bad := flipByte(t, img, off+300)
		fs, err := openFile(t, bad)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fs.Lookup("/files/f4096")
		wantFormatError(t, err, off, bad)
		if _, err := fs.Lookup("/files/f1"); err != nil {
			t.Errorf("a neighbouring inode became unreadable: %v", err)
		}
	})
	t.Run("dirblock", func(t *testing.T) {
		fs := openImage(t, img)
		exts := fs.toExtents(dbBmap(t, img, "/leafdir"))
		bad := flipByte(t, img, exts[0].DiskOff+200)
		fs2, err := openFile(t, bad)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fs2.ReadDir("/leafdir")
		wantFormatError(t, err, exts[0].DiskOff, bad)
	})
	t.Run("bnobt", func(t *testing.T) {
		fs := openImage(t, img)
		agf, err := fs.ReadAGF(1)
		if err != nil {
			t.Fatal(err)
		}
		off := fs.agbnoToOffset(1, uint64(agf.Roots[0]))
		bad := flipByte(t, img, off+60)
		fs2, err := openFile(t, bad)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fs2.FreeSpace()
		wantFormatError(t, err, off, bad)
	})
	t.Run("bmbt", func(t *testing.T) {
		testenv.Need(t, "xz")
		frag := fixture(t, "frag4k.img")
		fs := openImage(t, frag)
		m := regexp.MustCompile(`u3.bmbt.ptrs\[1\] = (\d+)`).FindStringSubmatch(xfsDB(t, frag, "path /frag", "p u3.bmbt.ptrs"))
		if m == nil {
			m = regexp.MustCompile(`1:(\d+)`).FindStringSubmatch(xfsDB(t, frag, "path /frag", "p u3.bmbt.ptrs"))
		}
		fsb, _ := strconv.ParseUint(m[1], 10, 64)
		off, ok := fs.fsbToOffset(fsb, 1)
		if !ok {
			t.Fatalf("bad pointer %d", fsb)
		}
		bad := flipByte(t, frag, off+100)
		fs2, err := openFile(t, bad)
		if err != nil {
			t.Fatal(err)
		}
		ino, err := fs2.Lookup("/frag")
		if err != nil {
			t.Fatal(err)
		}
		_, err = fs2.Extents(ino)
		wantFormatError(t, err, off, bad)
	})
}

// TestFreeSpaceForged: a free-space record moved over blocks in use, with every checksum right (xfs_db
// writes v5 metadata with fresh CRCs; v4 has none) and the AG's free total unchanged, passes every check
// of the by-block btree alone; FreeSpace refuses it because the by-size btree lists other extents
// (it listed file blocks as free). xfs_repair -n rejects the image too.
func TestFreeSpaceForged(t *testing.T) {
	testenv.Need(t, "xfs_db", "xfs_repair")
	for _, v := range []struct {
		name string
		opts []string
	}{{"v5", nil}, {"v4", []string{"-m", "crc=0,finobt=0,reflink=0,bigtime=0,inobtcount=0"}}} {
		t.Run(v.name, func(t *testing.T) {
			img := mkfsImage(t, "48m", v.opts...)
			recs := regexp.MustCompile(`(\d+):\[(\d+),(\d+)\]`).FindAllStringSubmatch(xfsDB(t, img, "agf 0", "addr bnoroot", "p recs"), -1)
			if len(recs) == 0 {
				t.Fatal("no free-space record in AG 0")
			}
			last := recs[len(recs)-1]
			start, _ := strconv.ParseUint(last[2], 10, 64)
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			bad := filepath.Join(t.TempDir(), "forged.img")
			writeSparse(t, bad, data)
			testenv.Run(t, "xfs_db", "-x", "-c", "agf 0", "-c", "addr bnoroot", "-c", fmt.Sprintf("write recs[%s].startblock %d", last[1], start-8), bad)
			fs, err := openFile(t, bad)
			if err != nil {
				t.Fatal(err)
			}
			_, err = fs.FreeSpace()
			if err == nil || !strings.Contains(err.Error(), "by-size free-space btree") {
				t.Fatalf("FreeSpace of the forged AG = %v, want the btrees' disagreement", err)
			}
			agf, _ := openImage(t, img).ReadAGF(0)
			wantFormatError(t, err, agf.byteOffset, bad)
		})
	}
}

// TestMkfsRemoteSymlink: mkfs.xfs 6.1 writes remote symlinks of v5
// filesystems without the XSLM block header. xfs_repair rejects them, and
// so must Readlink.
func TestMkfsRemoteSymlink(t *testing.T) {
	testenv.Need(t, "xfs_repair")
	img := mkfsImageTree(t, "48m", false) // v5 image with the v4-only long link
	fs := openImage(t, img)
	if !fs.SB.HasCRC() {
		t.Fatal("expected a v5 image")
	}
	_, err := fs.Readlink("/links/long")
	if err == nil {
		if _, rerr := testenv.RunErr("xfs_repair", "-n", "-f", img); rerr == nil {
			t.Skip("SKIP: this mkfs.xfs writes valid remote symlinks; nothing to check")
		}
		t.Fatal("Readlink accepted a remote symlink that xfs_repair rejects")
	}
	m := stackOffset.FindStringSubmatch(xfsDB(t, img, "path /links/long", "dblock 0", "stack"))
	off, _ := strconv.ParseInt(m[1], 10, 64)
	wantFormatError(t, err, off, img)
}
