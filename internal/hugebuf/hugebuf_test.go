package hugebuf_test

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/luksconv/luksconv/internal/hugebuf"
)

// TestGetPut: a buffer comes zeroed, and one handed back comes back zeroed, whatever it held.
func TestGetPut(t *testing.T) {
	for _, n := range []int{4096, hugebuf.Size, 4 << 20, 4<<20 + 512} {
		b := hugebuf.Get(n)
		if len(b) != n || !zero(b) {
			t.Fatalf("Get(%d): %d bytes, zero %v", n, len(b), zero(b))
		}
		for i := range b {
			b[i] = byte(i) | 1
		}
		hugebuf.Put(b, n)
		if !zero(b) {
			t.Fatalf("Put(%d): the buffer still holds data", n)
		}
		c := hugebuf.Get(n)
		if len(c) != n || !zero(c) {
			t.Fatalf("Get(%d) after Put: %d bytes, zero %v", n, len(c), zero(c))
		}
		hugebuf.Put(c, 0)
	}
}

// TestPutUsed: a heap buffer is cleared as far as it was used, the rest is the caller's promise.
func TestPutUsed(t *testing.T) {
	b := hugebuf.Get(8192)
	b[0], b[4096] = 1, 1
	hugebuf.Put(b, 4096)
	if b[0] != 0 {
		t.Fatal("Put left a used byte")
	}
}

// TestMapping: on Linux a large buffer is a mapping on a huge-page boundary, kept and reused after
// Put, and the kernel backs it with huge pages where transparent huge pages are on.
func TestMapping(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIP: huge-page buffers are Linux only")
	}
	b := hugebuf.Get(4 << 20)
	defer hugebuf.Put(b, len(b))
	if a := uintptr(unsafePointer(b)); a%hugebuf.Size != 0 {
		t.Fatalf("buffer at %#x is not on a %d-byte boundary", a, hugebuf.Size)
	}
	hugebuf.Put(b, len(b))
	c := hugebuf.Get(4 << 20)
	if &c[0] != &b[0] {
		t.Error("a returned buffer was not reused")
	}
	b = c
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || bytes.Contains(mode, []byte("[never]")) {
		t.Skipf("SKIP: transparent huge pages are off here (%q, %v): the huge-page check does not run", mode, err)
	}
	for i := range b {
		b[i] = 1
	}
	if kb := anonHugeKiB(t, uintptr(unsafePointer(b))); kb == 0 {
		t.Errorf("the buffer's mapping has no huge pages after it was filled (transparent huge pages: %q)", bytes.TrimSpace(mode))
	}
}

func zero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

// anonHugeKiB returns the AnonHugePages of the mapping at addr in /proc/self/smaps.
func anonHugeKiB(t *testing.T, addr uintptr) int {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for line := range strings.Lines(string(smaps)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && !strings.HasSuffix(f[0], ":") {
			a, err1 := strconv.ParseUint(lo, 16, 64)
			z, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && uint64(addr) >= a && uint64(addr) < z
			continue
		}
		if in && f[0] == "AnonHugePages:" {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("smaps: %q", line)
			}
			return kb
		}
	}
	t.Fatalf("smaps: no mapping holds %#x", addr)
	return 0
}

// BenchmarkFirstFill reads 16 MiB from the page cache into four 4 MiB buffers that were just made,
// from the Go heap (make) or from Get, and hands them back: the cost of a short run's buffers.
func BenchmarkFirstFill(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	if err := os.WriteFile(src, data, 0o600); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for _, bc := range []struct {
		name string
		get  func(int) []byte
		put  func([]byte)
	}{
		{"make", func(n int) []byte { return make([]byte, n) }, func(b []byte) { clear(b) }},
		{"hugebuf", hugebuf.Get, func(b []byte) { hugebuf.Put(b, len(b)) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var bufs [4][]byte
				for i := range bufs {
					bufs[i] = bc.get(4 << 20)
					if _, err := f.ReadAt(bufs[i], int64(i)<<22); err != nil {
						b.Fatal(err)
					}
				}
				for _, buf := range bufs {
					bc.put(buf)
				}
				// The heap's buffers go back to the kernel, as at the end of a short run's process.
				b.StopTimer()
				debug.FreeOSMemory()
				b.StartTimer()
			}
		})
	}
}
