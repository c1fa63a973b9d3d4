package ext

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// TestNextBit checks the word-at-a-time bitmap scan against a bit-by-bit one, on bitmaps of every
// density, lengths that are not a multiple of 64 bits, and bounds inside and past them.
func TestNextBit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		bm := make([]byte, rng.IntN(40))
		density := rng.Float64()
		for i := range bm {
			for b := range 8 {
				if rng.Float64() < density {
					bm[i] |= 1 << b
				}
			}
		}
		nbits := uint64(len(bm)) * 8
		n := uint64(rng.IntN(int(nbits) + 1))
		c := uint64(rng.IntN(int(n) + 2))
		for _, set := range []bool{false, true} {
			want := n
			for i := c; i < n; i++ {
				if (bm[i/8]&(1<<(i%8)) != 0) == set {
					want = i
					break
				}
			}
			if got := nextBit(bm, c, n, set); got != want {
				t.Fatalf("nextBit(%x, %d, %d, %v) = %d, want %d", bm, c, n, set, got, want)
			}
		}
	}
}

// BenchmarkFreeSpace reads the free space of an empty 16 GiB ext4 made by mkfs.ext4 (4 Mi blocks,
// 128 groups): once with the default features, where most groups are BLOCK_UNINIT and their bitmaps
// are computed, once without checksummed descriptors, where every group's bitmap is read and scanned.
func BenchmarkFreeSpace(b *testing.B) {
	testenv.Need(b, "mkfs.ext4")
	for _, c := range []struct{ name, features string }{
		{"uninit", ""},
		{"bitmaps", "^metadata_csum,^uninit_bg"},
	} {
		b.Run(c.name, func(b *testing.B) {
			img := filepath.Join(b.TempDir(), "fs.img")
			args := []string{"-q", "-F", "-b", "4096"}
			if c.features != "" {
				args = append(args, "-O", c.features)
			}
			testenv.Run(b, "mkfs.ext4", append(args, img, "16G")...)
			fsys := openImage(b, img)
			for b.Loop() {
				if _, err := fsys.FreeSpace(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
