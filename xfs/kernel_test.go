package xfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// TestKernelWrappedLog lets the kernel write a log that wraps several times,
// then checks the clean/dirty verdict against xfs_repair -n after a clean
// unmount, after a shutdown with unwritten metadata, and after the replay a
// later mount performs. It needs root and loop mounts.
func TestKernelWrappedLog(t *testing.T) {
	testenv.Need(t, "mkfs.xfs", "xfs_repair", "xfs_io", "mount", "umount")
	if testing.Short() {
		t.Skip("SKIP: -short: the wrapped-log test mounts a filesystem")
	}
	testenv.NeedRoot(t) // the kernel writes the XFS log through a loop mount
	dir := t.TempDir()
	img := filepath.Join(dir, "log.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The smallest log mkfs.xfs accepts wraps after little traffic.
	out, _ := testenv.RunErr("mkfs.xfs", "-f", "-b", "size=1024", "-l", "size=2m", "-d", "file,name="+img+",size=32m")
	logSize := "2m"
	if m := regexp.MustCompile(`minimum size is (\d+) blocks`).FindStringSubmatch(out); m != nil {
		logSize = m[1] + "b"
	}
	testenv.Run(t, "mkfs.xfs", "-q", "-f", "-b", "size=1024", "-l", "size="+logSize, "-d", "file,name="+img+",size=32m")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mount := func() {
		t.Helper()
		if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
			t.Skipf("SKIP: loop mount of an XFS image failed (%v: %s); the wrapped-log test needs it", err, strings.TrimSpace(string(out)))
		}
	}
	umount := func() {
		t.Helper()
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Fatalf("umount: %v %s", err, out)
		}
	}
	churn := func(rounds int) {
		t.Helper()
		for r := range rounds {
			d := filepath.Join(mnt, fmt.Sprintf("churn%d", r))
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range 1500 {
				if err := os.WriteFile(filepath.Join(d, fmt.Sprint(i)), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			syncDir(t, mnt)
			if err := os.RemoveAll(d); err != nil {
				t.Fatal(err)
			}
			syncDir(t, mnt)
		}
	}
	verdictOf := func(img string, wantClean bool) *FS {
		t.Helper()
		_, repairErr := testenv.RunErr("xfs_repair", "-n", "-f", img)
		if (repairErr == nil) != wantClean {
			t.Fatalf("oracle: xfs_repair -n error %v, expected clean=%v", repairErr, wantClean)
		}
		fs := openImage(t, img)
		err := fs.Writable()
		if wantClean && err != nil {
			t.Errorf("Writable = %v on a clean log", err)
		}
		if !wantClean && !errors.Is(err, ErrDirtyLog) {
			t.Errorf("Writable = %v on a dirty log", err)
		}
		return fs
	}
	verdict := func(wantClean bool) *FS {
		t.Helper()
		return verdictOf(img, wantClean)
	}

	mount()
	defer exec.Command("umount", mnt).Run()
	churn(6)
	umount()
	fs := verdict(true)
	l := &logDev{fs: fs, off: fs.agbnoToOffset(uint32(fs.SB.LogStart>>fs.SB.AGBlkLog), fs.SB.LogStart&(1<<fs.SB.AGBlkLog-1)),
		n: int64(fs.SB.LogBlocks) * fs.bs / bbSize}
	head, err := l.findHead()
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.cycle(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("clean log: head at block %d of %d, cycle at block 0 = %d", head, l.n, c)
	if c < 2 {
		t.Fatalf("log did not wrap (cycle %d): the test would not test wrapping", c)
	}

	// Clean and dirty logs with the head at several places of a log that
	// keeps wrapping; each dirty log is then replayed by a mount.
	for i := range 6 {
		mount()
		churn(i%3 + 1)
		if i%2 == 0 {
			umount()
			verdict(true)
			continue
		}
		if err := os.WriteFile(filepath.Join(mnt, fmt.Sprint("file", i)), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		syncDir(t, mnt)
		testenv.Run(t, "xfs_io", "-x", "-c", "shutdown", mnt)
		umount()
		fs = verdict(false)
		if _, err := fs.FreeSpace(); !errors.Is(err, ErrDirtyLog) {
			t.Errorf("FreeSpace on a dirty log: %v", err)
		}
		t.Logf("round %d: %v", i, fs.Writable())
		// xfs_repair -L discards the log and, on a wrapped v5 log,
		// rewrites all of it with records one cycle behind a fresh
		// unmount record; that log must read as clean.
		zapped := filepath.Join(dir, "zapped.img")
		testenv.Run(t, "cp", "--sparse=always", img, zapped)
		testenv.Run(t, "xfs_repair", "-L", "-f", zapped)
		verdictOf(zapped, true)
		mount() // replays the log
		umount()
		verdict(true)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}
