package luksconv

import (
	"bytes"
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPatchRangesAligned: patches inside a Zero region become whole, merged 4 KiB-aligned writes, clipped
// to the region, so page-blob sinks accept them and no page is written twice.
func TestPatchRangesAligned(t *testing.T) {
	p := &Plan{Patches: []Patch{
		{Offset: 10000, Data: make([]byte, 100)},  // inside page 8192..12288
		{Offset: 12000, Data: make([]byte, 500)},  // straddles 12288
		{Offset: 40960, Data: make([]byte, 4096)}, // aligned already
		{Offset: 1 << 20, Data: make([]byte, 8)},  // outside the region
	}}
	got := p.patchRanges(4608, 50000-4608)
	want := [][2]int64{{8192, 16384 - 8192}, {40960, 45056 - 40960}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	// Clipping keeps the widened range inside an unaligned region.
	got = p.patchRanges(9728, 512)
	if len(got) != 1 || got[0] != [2]int64{9728, 512} {
		t.Fatalf("clipped: got %v", got)
	}
}

// TestPatchIndexNested: the patches Execute and Verify overlay on a chunk are exactly those that
// intersect it, applied in order, also when a patch lies inside an earlier, longer one (the ends are
// then not sorted, and a search on them skipped the longer patch in chunks after the shorter one).
// Random sorted patch sets, checked against overlaying every patch on the whole output.
func TestPatchIndexNested(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const size = 1 << 16
	for range 2000 {
		patches := make([]Patch, rng.IntN(6)+1)
		for i := range patches {
			n := 1 + rng.IntN(1<<rng.IntN(15))
			off := rng.Int64N(size - int64(n))
			patches[i] = Patch{Offset: off, Data: bytes.Repeat([]byte{byte(i + 1)}, n)}
		}
		slices.SortStableFunc(patches, func(a, b Patch) int { return cmp.Compare(a.Offset, b.Offset) })
		want := make([]byte, size)
		for _, pt := range patches {
			copy(want[pt.Offset:], pt.Data)
		}
		x := newPatchIndex(patches)
		chunk := int64(1) << (9 + rng.IntN(6))
		got := make([]byte, size)
		for off := int64(0); off < size; off += chunk {
			x.apply(got[off:min(off+chunk, size)], off)
		}
		if !bytes.Equal(got, want) {
			i := 0
			for got[i] == want[i] {
				i++
			}
			t.Fatalf("patches %v, chunks of %d: byte %d is %d, want %d", patchSpans(patches), chunk, i, got[i], want[i])
		}
	}
}

func patchSpans(ps []Patch) [][2]int64 {
	var out [][2]int64
	for _, pt := range ps {
		out = append(out, [2]int64{pt.Offset, int64(len(pt.Data))})
	}
	return out
}
