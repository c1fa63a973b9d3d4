package luksconv

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// TestFileOutputSparse writes a disk through FileOutput with a small write-behind window, leaving
// every fourth chunk and the tail unwritten (zeros Execute skips), on the test's filesystem and on a
// real XFS: the file holds exactly the data, and only the written chunks take space. (Sizing the file
// at Commit instead of at creation lets XFS allocate the skipped chunks.)
func TestFileOutputSparse(t *testing.T) {
	old := writeBehindWindow
	writeBehindWindow = 1 << 20
	defer func() { writeBehindWindow = old }()

	dirs := map[string]string{"temp dir": t.TempDir()}
	if os.Geteuid() == 0 {
		if dir, err := rwXFS(t); err != nil {
			t.Logf("no XFS check: %v", err)
		} else {
			dirs["xfs"] = dir
		}
	} else {
		t.Log("no XFS check: not root (loop mount)")
	}
	const size, chunk = 16 << 20, 256 << 10
	for name, dir := range dirs {
		p := &Plan{OutputSize: size, Format: FormatRaw}
		path := filepath.Join(dir, "out.raw")
		o, err := CreateFile(p, path, OutputOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, size)
		var written int64
		for off, i := int64(0), 0; off < size-2<<20; off, i = off+chunk, i+1 {
			if i%4 == 3 {
				continue
			}
			b := bytes.Repeat([]byte{byte(i + 1)}, chunk)
			copy(want[off:], b)
			if _, err := o.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
			written += chunk
		}
		if err := o.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: content differs (%v)", name, err)
		}
		fi, _ := os.Stat(path)
		alloc := fi.Sys().(*syscall.Stat_t).Blocks * 512
		if alloc < written || alloc > written+1<<20 {
			t.Errorf("%s: %d bytes allocated for %d written of %d: not sparse where zeros were skipped", name, alloc, written, int64(size))
		}
	}
}

// rwXFS mounts a new 320 MiB XFS read-write on a loop device for the test.
func rwXFS(t *testing.T) (string, error) {
	t.Helper()
	for _, tool := range []string{"mkfs.xfs", "mount", "umount"} {
		if _, err := testenv.RunErr("which", tool); err != nil {
			return "", err
		}
	}
	img := testenv.SparseFile(t, t.TempDir(), "xfs.img", 320<<20)
	if _, err := testenv.RunErr("mkfs.xfs", "-q", img); err != nil {
		return "", err
	}
	dir := t.TempDir()
	if _, err := testenv.RunErr("mount", "-o", "loop", img, dir); err != nil {
		return "", err
	}
	t.Cleanup(func() {
		if _, err := testenv.RunErr("umount", dir); err != nil {
			t.Error(err)
		}
	})
	return dir, nil
}
