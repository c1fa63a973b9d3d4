package blobio

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/luksconv/luksconv/extent"
)

// TestExtentSetModel checks the set against a bitmap.
func TestExtentSetModel(t *testing.T) {
	const n = 4096
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		var s extentSet
		var bits [n]bool
		for k := 0; k < 40; k++ {
			off, l := r.Int64N(n), r.Int64N(200)
			l = min(l, n-off)
			s.add(off, l)
			for i := off; i < off+l; i++ {
				bits[i] = true
			}
			// Invariant: sorted, disjoint, not touching.
			for i := 1; i < len(s.ext); i++ {
				if s.ext[i].Off <= s.ext[i-1].End() {
					t.Fatalf("set not merged: %v", s.ext)
				}
			}
		}
		var total int64
		for _, b := range bits {
			if b {
				total++
			}
		}
		if s.total() != total {
			t.Fatalf("total %d, want %d", s.total(), total)
		}
		for k := 0; k < 200; k++ {
			off, l := r.Int64N(n), r.Int64N(100)+1
			l = min(l, n-off)
			all, any := true, false
			for i := off; i < off+l; i++ {
				all = all && bits[i]
				any = any || bits[i]
			}
			if s.covers(off, l) != all || s.overlaps(off, l) != any {
				t.Fatalf("[%d,+%d): covers=%v overlaps=%v, want %v %v (set %v)", off, l, s.covers(off, l), s.overlaps(off, l), all, any, s.ext)
			}
			var holes int64
			for _, h := range s.subtract(extent.Range{Off: off, Len: l}) {
				for i := h.Off; i < h.End(); i++ {
					if bits[i] {
						t.Fatalf("subtract returned set byte %d", i)
					}
				}
				holes += h.Len
			}
			var want int64
			for i := off; i < off+l; i++ {
				if !bits[i] {
					want++
				}
			}
			if holes != want {
				t.Fatalf("subtract: %d hole bytes, want %d", holes, want)
			}
		}
	}
}

func TestPageRuns(t *testing.T) {
	page := func(fill byte) []byte {
		b := make([]byte, PageSize)
		if fill != 0 {
			b[PageSize/2] = fill
		}
		return b
	}
	build := func(pattern string) []byte {
		var b []byte
		for _, c := range pattern {
			if c == 'x' {
				b = append(b, page(1)...)
			} else {
				b = append(b, page(0)...)
			}
		}
		return b
	}
	type r = run
	cases := []struct {
		pattern string
		gap     int64
		want    []run
	}{
		{"xxxx", 1024, []r{{0, 2048, false}}},
		{"....", 1024, []r{{0, 2048, true}}},
		{"..xx..", 1024, []r{{0, 1024, true}, {1024, 1024, false}, {2048, 1024, true}}},
		// An inner gap of one page (< 1024) is folded; two pages (= 1024) are kept.
		{"x.x", 1024, []r{{0, 1536, false}}},
		{"x..x", 1024, []r{{0, 512, false}, {512, 1024, true}, {1536, 512, false}}},
		{".x.x..x.", 1024, []r{{0, 512, true}, {512, 1536, false}, {2048, 1024, true}, {3072, 512, false}, {3584, 512, true}}},
	}
	for _, c := range cases {
		got := pageRuns(build(c.pattern), c.gap)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("pageRuns(%q) = %v, want %v", c.pattern, got, c.want)
		}
	}
}
