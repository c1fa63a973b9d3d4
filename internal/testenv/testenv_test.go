package testenv

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestPATHHasSbin(t *testing.T) {
	dirs := filepath.SplitList(os.Getenv("PATH"))
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if !slices.Contains(dirs, d) {
			t.Errorf("PATH %q lacks %s", os.Getenv("PATH"), d)
		}
	}
}

// skipped runs f in a subtest and reports whether it skipped and whether it got past f.
func skipped(t *testing.T, f func(t *testing.T)) (skip, reached bool) {
	t.Helper()
	t.Run("probe", func(t *testing.T) {
		defer func() { skip = t.Skipped() }()
		f(t)
		reached = true
	})
	return skip, reached
}

func TestNeed(t *testing.T) {
	self, err := os.Executable() // a tool that surely exists
	if err != nil {
		t.Fatal(err)
	}
	if skip, reached := skipped(t, func(t *testing.T) { Need(t, self, "no-such-tool-7f3a") }); !skip || reached {
		t.Errorf("Need of a missing tool: skipped %v, went on %v", skip, reached)
	}
	if skip, reached := skipped(t, func(t *testing.T) { Need(t, self, self) }); skip || !reached {
		t.Errorf("Need of present tools: skipped %v, went on %v", skip, reached)
	}
}

func TestRunErr(t *testing.T) {
	out, err := RunErr("sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("err = %v, want exit status 3", err)
	}
	for _, s := range []string{"to-stdout", "to-stderr"} {
		if !strings.Contains(out, s) || !strings.Contains(err.Error(), s) {
			t.Errorf("output %q / error %q lack %q", out, err, s)
		}
	}
	if !strings.HasPrefix(err.Error(), "sh -c echo") {
		t.Errorf("error does not name the command: %q", err)
	}
	if out := Run(t, "sh", "-c", "printf ok"); out != "ok" {
		t.Errorf("Run = %q", out)
	}
}

func TestRandBytes(t *testing.T) {
	a := RandBytes(rand.New(rand.NewPCG(1, 2)), 1000)
	b := RandBytes(rand.New(rand.NewPCG(1, 2)), 1000)
	c := RandBytes(rand.New(rand.NewPCG(1, 3)), 1000)
	if len(a) != 1000 || !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Fatal("RandBytes is not a deterministic function of the seed")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i, v := range a {
		if v != byte(r.Uint32()) {
			t.Fatalf("byte %d = %#x, not the low byte of the next Uint32", i, v)
		}
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	data := append(make([]byte, 1<<20), "tail"...)
	p := WriteFile(t, dir, "f", data)
	if p != filepath.Join(dir, "f") {
		t.Errorf("WriteFile returned %s", p)
	}
	f, size := Open(t, p)
	if size != int64(len(data)) {
		t.Errorf("Open size %d, want %d", size, len(data))
	}
	got := make([]byte, 4)
	if _, err := f.ReadAt(got, size-4); err != nil || string(got) != "tail" {
		t.Errorf("ReadAt end = %q, %v", got, err)
	}
	c := CopyFile(t, p)
	if filepath.Base(c) != "f" || c == p {
		t.Errorf("CopyFile returned %s", c)
	}
	if b, err := os.ReadFile(c); err != nil || !bytes.Equal(b, data) {
		t.Errorf("copy differs (%v)", err)
	}
	if alloc := allocated(t, c); alloc >= 1<<20 {
		t.Errorf("copy of a 1 MiB hole has %d bytes allocated", alloc)
	}
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}

// xzBytes is the oracle for the cache: the file as xz itself decompresses it.
func xzBytes(t *testing.T, src string) []byte {
	t.Helper()
	out, err := exec.Command("xz", "-dc", src).Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCryptsetupImage(t *testing.T) {
	Need(t, "xz", "tar")
	corpus := filepath.Join(SharedDir(t), "testdata", "cryptsetup")
	want := xzBytes(t, filepath.Join(corpus, "valid_header_file.xz"))
	var mu sync.Mutex
	paths := map[string]bool{}
	t.Run("group", func(t *testing.T) {
		for range 4 {
			t.Run("parallel", func(t *testing.T) {
				t.Parallel()
				p := CryptsetupImage(t, "valid_header_file")
				mu.Lock()
				paths[p] = true
				mu.Unlock()
			})
		}
	})
	if len(paths) != 1 {
		t.Fatalf("parallel callers got %d paths: %v", len(paths), paths)
	}
	for p := range paths {
		if filepath.Base(p) != "valid_header_file" {
			t.Errorf("path %s does not keep the corpus name", p)
		}
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from xz -dc (%v)", p, err)
		}
	}

	inner := CryptsetupImage(t, "LUKS-d238e48a-0ed3-4169-b841-f26b44693134.tar/LUKS-d238e48a-0ed3-4169-b841-f26b44693134.org")
	tarOut, err := exec.Command("tar", "-xJOf", filepath.Join(corpus, "LUKS-d238e48a-0ed3-4169-b841-f26b44693134.tar.xz"),
		"LUKS-d238e48a-0ed3-4169-b841-f26b44693134.org").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(inner); err != nil || !bytes.Equal(got, tarOut) {
		t.Errorf("%s differs from tar's extraction (%v)", inner, err)
	}
	if alloc := allocated(t, inner); alloc >= int64(len(tarOut))/2 {
		t.Errorf("%s: %d of %d bytes allocated: not sparse", inner, alloc, len(tarOut))
	}
}

// TestUnpackRace unpacks one archive from several goroutines into an empty cache, as concurrent test
// binaries do: all get the same complete directory, sparse, and no temporary directory is left.
func TestUnpackRace(t *testing.T) {
	Need(t, "xz")
	src := filepath.Join(SharedDir(t), "testdata", "cryptsetup", "evil_hdr-keyslot_overlap.xz")
	want := xzBytes(t, src)
	cache := t.TempDir()
	dirs := make([]string, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range dirs {
		wg.Go(func() { dirs[i], errs[i] = unpack(cache, src, false) })
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Fatalf("unpack %d: %s, %v; unpack 0: %s", i, dirs[i], errs[i], dirs[0])
		}
	}
	p := filepath.Join(dirs[0], "evil_hdr-keyslot_overlap")
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s differs from xz -dc (%v)", p, err)
	}
	if alloc := allocated(t, p); alloc >= int64(len(want))/2 {
		t.Errorf("%d of %d bytes allocated: not sparse", alloc, len(want))
	}
	ents, err := os.ReadDir(cache)
	if err != nil || len(ents) != 1 {
		t.Errorf("cache holds %d entries (%v), want 1", len(ents), err)
	}
}

func TestSparseFileAndLoop(t *testing.T) {
	p := SparseFile(t, t.TempDir(), "disk", 8<<20)
	if st, err := os.Stat(p); err != nil || st.Size() != 8<<20 {
		t.Fatalf("SparseFile: %v, %v", st, err)
	}
	if alloc := allocated(t, p); alloc != 0 {
		t.Errorf("SparseFile allocated %d bytes", alloc)
	}
	dev, detach := AttachLoop(t, p, "--sector-size", "4096")
	if got := strings.TrimSpace(Run(t, "blockdev", "--getss", "--getsize64", dev)); got != "4096\n8388608" {
		t.Errorf("blockdev on %s: %q", dev, got)
	}
	if out := Run(t, "losetup", "-j", p); !strings.Contains(out, dev+":") {
		t.Errorf("losetup -j does not list %s: %q", dev, out)
	}
	detach()
	detach() // a second call (and the cleanup) must not detach again
	if out := Run(t, "losetup", "-j", p); strings.Contains(out, dev+":") {
		t.Errorf("%s still attached after detach: %q", dev, out)
	}
}
