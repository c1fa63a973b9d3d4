package lvm_test

import (
	"errors"
	"reflect"
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
