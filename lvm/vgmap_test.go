package lvm_test

import (
	"errors"
	"reflect"
	"sort"
	"testing"

	"github.com/luksconv/luksconv/lvm"
)

// TestVGMap maps an LV whose segments lie on two PVs (as datavg/datalv of the whole-VM fixture) and a
// striped segment over both: VG.Map gives each piece with its PV; PV.Map still refuses the pieces that
// are on the other PV.
func TestVGMap(t *testing.T) {
	vg, err := lvm.ParseMetadata([]byte(`vg {
	id = "v"
	seqno = 1
	extent_size = 8
	physical_volumes {
		pv0 { id = "a" pe_start = 2048 pe_count = 10 }
		pv1 { id = "b" pe_start = 4096 pe_count = 10 }
	}
	logical_volumes {
		span {
			id = "s"
			status = ["VISIBLE"]
			segment_count = 2
			segment1 { start_extent = 0 extent_count = 2 type = "striped" stripe_count = 1 stripes = ["pv0", 1] }
			segment2 { start_extent = 2 extent_count = 2 type = "striped" stripe_count = 1 stripes = ["pv1", 3] }
		}
		stripe {
			id = "t"
			status = ["VISIBLE"]
			segment_count = 1
			segment1 { start_extent = 0 extent_count = 2 type = "striped" stripe_count = 2 stripe_size = 4 stripes = ["pv0", 5, "pv1", 0] }
		}
	}
}`))
	if err != nil {
		t.Fatal(err)
	}
	const es = 8 * 512
	span, _ := vg.LV("span")
	got, err := vg.Map(span, es, 2*es)
	if err != nil {
		t.Fatal(err)
	}
	want := []lvm.PVExtent{
		{PV: "pv0", Extent: lvm.Extent{LVOff: es, PVOff: 2048*512 + 2*es, Len: es}},
		{PV: "pv1", Extent: lvm.Extent{LVOff: 2 * es, PVOff: 4096*512 + 3*es, Len: es}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("span: got %+v, want %+v", got, want)
	}
	stripe, _ := vg.LV("stripe")
	got, err = vg.Map(stripe, 0, 2*4*512) // two chunks of stripe_size 4 sectors
	if err != nil {
		t.Fatal(err)
	}
	want = []lvm.PVExtent{
		{PV: "pv0", Extent: lvm.Extent{LVOff: 0, PVOff: 2048*512 + 5*es, Len: 2048}},
		{PV: "pv1", Extent: lvm.Extent{LVOff: 2048, PVOff: 4096 * 512, Len: 2048}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stripe: got %+v, want %+v", got, want)
	}
	if _, err := vg.Map(span, 0, 5*es); err == nil {
		t.Error("a range past the LV's end mapped")
	}
	// a segment on an LV (stacking) is refused
	vg.LVs[0].Segments[1].Stripes[0].PV = "stripe"
	if _, err := vg.Map(span, 2*es, 1); !errors.Is(err, lvm.ErrUnsupported) {
		t.Errorf("stacked: got %v, want ErrUnsupported", err)
	}
}

// TestPVRanges checks VG.PVRanges against Map on striped and linear segments, over ranges that start
// and end inside chunks: per PV, the same bytes, and each range's LVOff maps to its first byte.
func TestPVRanges(t *testing.T) {
	vg, err := lvm.ParseMetadata([]byte(`vg {
	id = "v"
	seqno = 1
	extent_size = 8
	physical_volumes {
		pv0 { id = "a" pe_start = 2048 pe_count = 100 }
		pv1 { id = "b" pe_start = 4096 pe_count = 100 }
		pv2 { id = "c" pe_start = 64 pe_count = 100 }
	}
	logical_volumes {
		lv {
			id = "s"
			status = ["VISIBLE"]
			segment_count = 3
			segment1 { start_extent = 0 extent_count = 3 type = "striped" stripe_count = 1 stripes = ["pv0", 1] }
			segment2 { start_extent = 3 extent_count = 12 type = "striped" stripe_count = 3 stripe_size = 2 stripes = ["pv0", 20, "pv1", 5, "pv2", 0] }
			segment3 { start_extent = 15 extent_count = 4 type = "striped" stripe_count = 2 stripe_size = 8 stripes = ["pv2", 40, "pv1", 50] }
		}
	}
}`))
	if err != nil {
		t.Fatal(err)
	}
	lv, _ := vg.LV("lv")
	type r struct{ lo, hi int64 }
	perPV := func(ext []lvm.PVExtent) map[string][]r {
		m := map[string][]r{}
		for _, e := range ext {
			m[e.PV] = append(m[e.PV], r{e.PVOff, e.PVOff + e.Len})
		}
		for pv, rs := range m {
			sort.Slice(rs, func(i, j int) bool { return rs[i].lo < rs[j].lo })
			var merged []r
			for _, x := range rs {
				if k := len(merged) - 1; k >= 0 && merged[k].hi == x.lo {
					merged[k].hi = x.hi
					continue
				}
				merged = append(merged, x)
			}
			m[pv] = merged
		}
		return m
	}
	for _, span := range [][2]int64{{0, lv.Size}, {0, 1}, {100, 5000}, {3*4096 - 7, 1500}, {3*4096 + 1000, 9000}, {14 * 4096, 3*4096 + 77}, {lv.Size - 1, 1}, {5000, 0}} {
		off, n := span[0], span[1]
		want, err := vg.Map(lv, off, n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := vg.PVRanges(lv, off, n)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := perPV(got), perPV(want); !reflect.DeepEqual(g, w) {
			t.Errorf("[%d, +%d): PVRanges gives %v, Map %v", off, n, g, w)
		}
		for _, e := range got {
			m, err := vg.Map(lv, e.LVOff, 1)
			if err != nil || m[0].PV != e.PV || m[0].PVOff != e.PVOff {
				t.Errorf("[%d, +%d): range %+v: its LVOff maps to %+v (%v)", off, n, e, m, err)
			}
		}
	}
	if _, err := vg.PVRanges(lv, 0, lv.Size+1); err == nil {
		t.Error("a range past the LV's end mapped")
	}
	vg.LVs[0].Segments[2].Type = "raid1"
	if _, err := vg.PVRanges(lv, 0, lv.Size); !errors.Is(err, lvm.ErrUnsupported) {
		t.Errorf("raid1 segment: got %v, want ErrUnsupported", err)
	}
}
