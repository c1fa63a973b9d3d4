package scriptcache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "build.sh")
	if err := os.WriteFile(p, []byte("set -eu\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func spec(t *testing.T, body string) Spec {
	dir := filepath.Join(t.TempDir(), "cache", "0123456789abcdef")
	return Spec{Name: "test", Unavailable: "TEST UNAVAILABLE", Script: script(t, body), Dir: dir,
		Timeout: time.Minute, Ready: func(dir string) bool { _, err := os.Stat(filepath.Join(dir, "done")); return err == nil }}
}

func TestBuildOnce(t *testing.T) {
	s := spec(t, `mkdir -p "$1.tmp"; echo built >> "$1.count"; touch "$1.tmp/done"; mv "$1.tmp" "$1"`)
	for range 2 {
		if skip, fail := Build(t, s); skip != "" || fail != "" {
			t.Fatalf("skip %q fail %q", skip, fail)
		}
	}
	b, _ := os.ReadFile(s.Dir + ".count")
	if strings.Count(string(b), "built") != 1 {
		t.Fatalf("the script ran %d times, want once", strings.Count(string(b), "built"))
	}
}

func TestBuildMissingToolSkips(t *testing.T) {
	s := spec(t, `echo "missing tool: frobnicate"; exit 3`)
	skip, fail := Build(t, s)
	if fail != "" || !strings.HasPrefix(skip, "TEST UNAVAILABLE: frobnicate not installed") {
		t.Fatalf("skip %q fail %q", skip, fail)
	}
}

func TestBuildFailureCarriesLogTail(t *testing.T) {
	s := spec(t, `echo "step one"; echo "it broke here" >&2; exit 1`)
	skip, fail := Build(t, s)
	if skip != "" || !strings.Contains(fail, "it broke here") || !strings.Contains(fail, "exit status 1") {
		t.Fatalf("skip %q fail %q", skip, fail)
	}
}

func TestPruneStale(t *testing.T) {
	cache := t.TempDir()
	for _, d := range []string{"0123456789abcdef", "fedcba9876543210", "keep-me-not-hex"} {
		os.MkdirAll(filepath.Join(cache, d), 0o755)
	}
	PruneStale(cache, "0123456789abcdef")
	for d, want := range map[string]bool{"0123456789abcdef": true, "fedcba9876543210": false, "keep-me-not-hex": true} {
		if _, err := os.Stat(filepath.Join(cache, d)); (err == nil) != want {
			t.Errorf("%s: exists=%v, want %v", d, err == nil, want)
		}
	}
}
