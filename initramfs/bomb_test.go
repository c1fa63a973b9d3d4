package initramfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"runtime"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/testenv"
)

// TestDecompressionBombs: segments that expand far beyond their image (zeros compressed by the real
// tools: 400 MiB into a few hundred KB) are refused with ErrTooLarge once the output passes
// ExpandedLimit, never expanded in full; the allocations stay within a few times the limit. An xz
// block declaring a 1.5 GiB dictionary is refused before the decoder allocates it.
func TestDecompressionBombs(t *testing.T) {
	testenv.Need(t, "gzip", "xz", "zstd", "lz4")
	for _, tc := range []struct{ name, script string }{
		{"gzip", "head -c 400M /dev/zero | gzip -1 -n"},
		{"xz", "head -c 400M /dev/zero | xz -0 --check=crc32 -T1"},
		{"zstd", "head -c 400M /dev/zero | zstd -1 -q -T1"},
		{"lz4", "head -c 400M /dev/zero | lz4 -l -1 -q"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := sh(t, t.TempDir(), nil, tc.script)
			limit := ExpandedLimit(int64(len(img)))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := Parse(bytes.NewReader(img), int64(len(img)))
			d := time.Since(start)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Parse of a %d-byte bomb = %v, want ErrTooLarge", len(img), err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			if alloc > uint64(4*limit)+(64<<20) {
				t.Errorf("allocated %d MiB for a limit of %d MiB", alloc>>20, limit>>20)
			}
			t.Logf("%d-byte image, limit %d MiB: refused after %v, %d MiB allocated: %v", len(img), limit>>20, d.Round(time.Millisecond), alloc>>20, err)
		})
	}
	t.Run("xz dictionary 1.5 GiB", func(t *testing.T) {
		img := bytes.Clone(compressCLI(t, XZ, bytes.Repeat([]byte("0707010"), 100)))
		hs := (int(img[12]) + 1) * 4
		h := img[12 : 12+hs]
		i := bytes.Index(h[2:], []byte{0x21, 0x01})
		if i < 0 {
			t.Fatalf("no LZMA2 filter in block header % x", h)
		}
		h[2+i+2] = 39 // 3 << 29 bytes
		binary.LittleEndian.PutUint32(h[hs-4:], crc32.ChecksumIEEE(h[:hs-4]))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Parse(bytes.NewReader(img), int64(len(img)))
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Parse = %v, want ErrTooLarge", err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
			t.Errorf("allocated %d MiB", alloc>>20)
		}
	})
}
