package luks_test

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luks"
)

// scratchDir holds what tests of one run share (baseLUKS2's header).
var scratchDir string

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

func readHeader(t testing.TB, path string) (*luks.Header, *os.File, int64) {
	t.Helper()
	f, size := testenv.Open(t, path)
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

// needCryptsetup skips (loudly) unless cryptsetup, the oracle of the
// header-construction tests, can run: reencrypt needs root for its locks in
// /run/cryptsetup.
func needCryptsetup(t testing.TB) {
	t.Helper()
	testenv.Need(t, "cryptsetup")
	testenv.NeedRoot(t)
}

// cryptsetupVolumeKey asks cryptsetup for the volume key (the oracle for Unlock).
func cryptsetupVolumeKey(t testing.TB, keyFile string, args ...string) []byte {
	t.Helper()
	a := append([]string{"luksDump", "--dump-volume-key", "-q", "--key-file", keyFile}, args...)
	out := testenv.Run(t, "cryptsetup", a...)
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

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}
