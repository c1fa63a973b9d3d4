package luksconv

import (
	"slices"
	"testing"
)

// TestSplitNestedSpans: a span that lies inside an earlier, longer one does not hide the longer one
// from the regions after the shorter one's end (a search on the spans' ends, unsorted then, skipped
// it: those bytes were read and decrypted instead of skipped or marked).
func TestSplitNestedSpans(t *testing.T) {
	spans := []span{{off: 10, n: 10, why: "inner"}, {off: 0, n: 3 << 12, why: "outer"}}
	regions := []Region{
		{Kind: Copy, Offset: 0, Length: 4096, Source: 1 << 20},
		{Kind: Decrypt, Offset: 4096, Length: 4096, Source: 1<<20 + 4096, IV: 8},
		{Kind: Decrypt, Offset: 8192, Length: 4096, Source: 1<<20 + 8192, IV: 16},
	}
	out, skips := carve(slices.Clone(regions), slices.Clone(spans), 4096)
	for _, r := range out {
		if r.Kind != Zero || r.Reason != "outer" {
			t.Errorf("carve: %+v, want it zero as outer free space", r)
		}
	}
	if len(skips) != 1 || skips[0] != (Skip{Reason: "outer", Bytes: 3 << 12}) {
		t.Errorf("carve skipped %+v, want 12288 bytes of outer", skips)
	}
	marked := markZeroCiphertext(slices.Clone(regions), slices.Clone(spans), 4096)
	for _, r := range marked[1:] {
		if r.Kind != Decrypt || !r.ZeroCiphertextAsZero || r.Reason != "outer" {
			t.Errorf("markZeroCiphertext: %+v, want it marked for outer", r)
		}
	}
}
