package luks_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/luksconv/luksconv/luks"
)

// scratch holds the decompressed cryptsetup corpus, shared by all tests of
// one run.
var (
	scratchDir  string
	scratchMu   sync.Mutex
	scratchDone = map[string]error{}
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "luks-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	scratchDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// corpusDir is ../shared/testdata/cryptsetup relative to the repository root
// (the directory holding go.mod).
func corpusDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package directory")
		}
		dir = parent
	}
	c := filepath.Join(dir, "..", "shared", "testdata", "cryptsetup")
	if _, err := os.Stat(c); err != nil {
		t.Skipf("SKIP: cryptsetup test corpus not found at %s: %v", c, err)
	}
	return c
}

// corpus returns the path of a decompressed corpus file. name is the file
// name inside the corpus without .xz; for a tarball use "archive.tar/inner/path".
func corpus(t testing.TB, name string) string {
	t.Helper()
	src := corpusDir(t)
	archive, inner, isTar := strings.Cut(name, ".tar/")
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("SKIP: xz is not installed (apt-get install xz-utils); the cryptsetup corpus is xz-compressed")
	}
	scratchMu.Lock()
	defer scratchMu.Unlock()
	var out string
	key := name
	if isTar {
		key = archive + ".tar"
		out = filepath.Join(scratchDir, archive, inner)
	} else {
		out = filepath.Join(scratchDir, name)
	}
	err, done := scratchDone[key]
	if !done {
		if isTar {
			d := filepath.Join(scratchDir, archive)
			if err = os.MkdirAll(d, 0o755); err == nil {
				err = run("tar", "-C", d, "-xJf", filepath.Join(src, archive+".tar.xz"))
			}
		} else {
			var f *os.File
			if f, err = os.Create(out); err == nil {
				cmd := exec.Command("xz", "-dc", filepath.Join(src, name+".xz"))
				cmd.Stdout = f
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err = cmd.Run(); err != nil {
					err = fmt.Errorf("xz -dc %s: %v: %s", name, err, stderr.String())
				}
				f.Close()
			}
		}
		scratchDone[key] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// open opens path and returns it with its size; it is closed at test end.
func open(t testing.TB, path string) (*os.File, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return f, st.Size()
}

func readHeader(t testing.TB, path string) (*luks.Header, *os.File, int64) {
	t.Helper()
	f, size := open(t, path)
	h, err := luks.ReadHeader(f, size)
	if err != nil {
		t.Fatalf("ReadHeader(%s): %v", filepath.Base(path), err)
	}
	return h, f, size
}

func mustUnlock(t testing.TB, h *luks.Header, pass string, slot int) *luks.VolumeKey {
	t.Helper()
	k, err := h.Unlock([]byte(pass), slot)
	if err != nil {
		t.Fatalf("Unlock(slot %d): %v", slot, err)
	}
	t.Cleanup(k.Destroy)
	return k
}

// needCryptsetup skips (loudly) when the cryptsetup binary is missing.
func needCryptsetup(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		t.Skip("SKIP: cryptsetup is not installed (apt-get install cryptsetup-bin); the header-construction tests need it as the oracle")
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIP: cryptsetup reencrypt needs root (/run/cryptsetup locks); run the tests as root")
	}
}

// cryptsetupVolumeKey asks cryptsetup for the volume key (the oracle for Unlock).
func cryptsetupVolumeKey(t testing.TB, keyFile string, args ...string) []byte {
	t.Helper()
	a := append([]string{"luksDump", "--dump-volume-key", "-q", "--key-file", keyFile}, args...)
	out := mustRun(t, "cryptsetup", a...)
	var hexs strings.Builder
	in := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if label, rest, ok := strings.Cut(line, ":"); ok && (strings.HasPrefix(label, "MK dump") || strings.HasPrefix(label, "Volume key")) {
			in = true
			line = rest
		} else if in && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " ") {
			in = false
		}
		if in {
			hexs.WriteString(strings.ReplaceAll(strings.TrimSpace(line), " ", ""))
		}
	}
	key, err := hex.DecodeString(hexs.String())
	if err != nil || len(key) == 0 {
		t.Fatalf("cannot parse the volume key from cryptsetup output: %v\n%s", err, redactDump(out))
	}
	return key
}

func redactDump(s string) string {
	i := strings.Index(s, "MK dump")
	if i < 0 {
		return s
	}
	return s[:i] + "[volume key removed]"
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}
