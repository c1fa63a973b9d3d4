package luksconv

import (
	"bytes"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/luksconv/luksconv/extent"
)

// TestDeltaPatches: a patch both plans make alike is not rewritten, through the JSON a stage record
// keeps (Patch.Sum stands for the data); a patch whose bytes changed, one only the earlier plan had,
// one overlapped by another patch, and every patch of an earlier plan without sums are.
func TestDeltaPatches(t *testing.T) {
	const size = 1 << 20
	plan := func(patches ...Patch) *Plan {
		return &Plan{OutputSize: size, Format: FormatRaw, Regions: []Region{{Kind: Copy, Offset: 0, Length: size}}, Patches: patches}
	}
	patch := func(off int64, b byte) Patch {
		return Patch{Offset: off, Length: 512, Data: bytes.Repeat([]byte{b}, 512)}
	}
	viaJSON := func(p *Plan, sums bool) *Plan {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var q Plan
		if err := json.Unmarshal(b, &q); err != nil {
			t.Fatal(err)
		}
		if !sums {
			for i := range q.Patches {
				q.Patches[i].Sum = ""
			}
		}
		return &q
	}
	rewritten := func(d *Plan) []extent.Range {
		var rs []extent.Range
		for _, r := range d.Regions {
			rs = append(rs, extent.Range{Off: r.Offset, Len: r.Length})
		}
		return extent.Merge(rs)
	}
	same, changed, gone := patch(8192, 1), patch(65536, 2), patch(131072, 4)
	prev := viaJSON(plan(same, changed, gone), true)
	if prev.Patches[0].Sum == "" || prev.Patches[0].Data != nil {
		t.Fatalf("a patch read back from JSON: %+v", prev.Patches[0])
	}
	d, err := Delta(prev, plan(same, patch(65536, 3)), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []extent.Range{{Off: 65536, Len: 4096}, {Off: 131072, Len: 4096}}
	if got := rewritten(d); !slices.Equal(got, want) {
		t.Errorf("rewritten %v, want %v (the changed patch and the one gone, not the same one)", got, want)
	}
	if len(d.Patches) != 2 {
		t.Errorf("the delta carries %d patches, want next's 2", len(d.Patches))
	}

	// Without sums (a record from before them) every patch is rewritten.
	d, err = Delta(viaJSON(plan(same), false), plan(same), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rewritten(d); !slices.Equal(got, []extent.Range{{Off: 8192, Len: 4096}}) {
		t.Errorf("without sums: rewritten %v", got)
	}

	// A same patch overlapped by another patch of either plan is rewritten: their order decides the bytes.
	over := Patch{Offset: 8192 + 256, Length: 512, Data: bytes.Repeat([]byte{9}, 512)}
	d, err = Delta(viaJSON(plan(same), true), plan(same, over), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rewritten(d); !slices.Equal(got, []extent.Range{{Off: 8192, Len: 4096}}) {
		t.Errorf("overlapped: rewritten %v", got)
	}
}

// TestSamePatchesSweep checks samePatches' sorted sweep against the definition it implements: a patch
// both plans make once, alike, with no other patch of either plan reaching into its bytes.
func TestSamePatchesSweep(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		var prev, next []Patch
		for range rng.IntN(8) {
			pt := Patch{Offset: int64(rng.IntN(64)), Data: []byte{byte(rng.IntN(2))}}
			pt.Data = bytes.Repeat(pt.Data, 1+rng.IntN(8))
			prev = append(prev, pt)
			if rng.IntN(3) > 0 {
				next = append(next, pt)
			}
		}
		for range rng.IntN(3) {
			next = append(next, Patch{Offset: int64(rng.IntN(64)), Data: bytes.Repeat([]byte{1}, 1+rng.IntN(8))})
		}
		want := map[patchKey]bool{}
		for _, pt := range next {
			k, copies, others := pt.key(), 0, 0
			for _, q := range append(slices.Clone(prev), next...) {
				if q.key() == k {
					copies++
				}
				if q.Offset < k.off+int64(k.n) && k.off < q.Offset+int64(len(q.Data)) {
					others++
				}
			}
			if copies == 2 && others == 2 && slices.ContainsFunc(prev, func(q Patch) bool { return q.key() == k }) {
				want[k] = true
			}
		}
		if got := samePatches(prev, next); !maps.Equal(got, want) {
			t.Fatalf("samePatches(%v, %v) = %v, want %v", prev, next, got, want)
		}
	}
}
