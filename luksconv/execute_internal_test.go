package luksconv

import "testing"

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
