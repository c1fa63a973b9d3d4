package lvm_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/lvm"
)

// hostileText is a VG whose one LV has n one-extent segments (with lvs LVs of one segment each).
func hostileText(n, lvs int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "contents = \"Text Format Volume Group\"\nversion = 1\nvg {\nid = \"v\"\nseqno = 1\nstatus = [\"READ\"]\nextent_size = 8\n")
	fmt.Fprintf(&b, "physical_volumes { pv0 { id = \"p\" pe_start = 2048 pe_count = %d } }\nlogical_volumes {\n", n+lvs)
	fmt.Fprintf(&b, "lv { id = \"l\" status = [\"VISIBLE\"] segment_count = %d\n", n)
	for i := range n {
		fmt.Fprintf(&b, "segment%d { start_extent = %d extent_count = 1 type = \"striped\" stripe_count = 1 stripes = [\"pv0\", %d] }\n", i+1, i, i)
	}
	b.WriteString("}\n")
	for i := range lvs {
		fmt.Fprintf(&b, "lv%d { id = \"l%d\" status = [\"VISIBLE\"] segment_count = 1\nsegment1 { start_extent = 0 extent_count = 1 type = \"striped\" stripe_count = 1 stripes = [\"pv0\", %d] } }\n", i, i, n+i)
	}
	b.WriteString("}\n}\n")
	return []byte(b.String())
}

// stripesText is a VG of pvs PVs and one LV of segs segments, each striped over stripes areas on the
// PVs listed last (a name lookup that scans the PVs in order goes through half of them or more), each
// area of a segment on a PV of its own while stripes <= pvs (areas that share extents are refused).
func stripesText(pvs, segs, stripes int) []byte {
	var b strings.Builder
	b.WriteString("vg {\nid = \"v\"\nseqno = 1\nextent_size = 8\nphysical_volumes {\n")
	for i := range pvs {
		fmt.Fprintf(&b, "p%d { id = \"%d\" pe_start = 0 pe_count = 99 }\n", i, i)
	}
	fmt.Fprintf(&b, "}\nlogical_volumes {\nlv { id = \"l\" segment_count = %d\n", segs)
	for s := range segs {
		fmt.Fprintf(&b, "segment%d { start_extent = %d extent_count = %d type = \"striped\" stripe_count = %d stripe_size = 8 stripes = [",
			s+1, s*stripes, stripes, stripes)
		for i := range stripes {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "\"p%d\", %d", pvs-1-i%pvs, s)
		}
		b.WriteString("] }\n")
	}
	b.WriteString("}\n}\n}\n")
	return []byte(b.String())
}

// TestMetadataLimits: a text over MaxTextSize (520k segments, 58 MB: what once took 1.5 GiB), one
// under it with more than MaxSegments segments, one of 30k LVs (whose names were once checked
// pairwise) and one of 100k PVs and 250k stripes (whose PV names were once looked up one PV after the
// other: minutes) are refused or parsed quickly with bounded allocation; a VG at the segment limit
// parses.
func TestMetadataLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		text    []byte
		wantErr string
	}{
		{"520k segments", hostileText(520000, 0), "more than"},
		{"over MaxSegments", hostileText(lvm.MaxSegments+1, 0), "segments"},
		{"at MaxSegments", hostileText(lvm.MaxSegments-1000, 1000), ""},
		{"30k LVs", hostileText(1, 30000), ""},
		{"100k PVs, 250k stripes", stripesText(100000, 5, 50000), ""},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		_, err := lvm.ParseMetadata(tc.text)
		d := time.Since(start)
		runtime.ReadMemStats(&after)
		alloc := (after.TotalAlloc - before.TotalAlloc) >> 20
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
		if alloc > 512 || d > 5*time.Second {
			t.Errorf("%s: %d MiB allocated, %v", tc.name, alloc, d)
		}
		t.Logf("%s (%d bytes): %v, %d MiB allocated, %v", tc.name, len(tc.text), err, alloc, d.Round(time.Millisecond))
	}
}

// TestLVLookupScale: Verify looks each LV of a VG up by name in the output's VG; with 30k LVs a
// lookup that scans the LVs took about a second for all of them (450M name comparisons). They must
// take a few milliseconds.
func TestLVLookupScale(t *testing.T) {
	vg, err := lvm.ParseMetadata(hostileText(1, 30000))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range vg.LVs {
		if lv, ok := vg.LV(vg.LVs[i].Name); !ok || lv != &vg.LVs[i] {
			t.Fatalf("LV(%q) = %v, %v", vg.LVs[i].Name, lv, ok)
		}
	}
	d := time.Since(start)
	t.Logf("%d lookups: %v", len(vg.LVs), d)
	if d > 100*time.Millisecond {
		t.Errorf("%d lookups took %v", len(vg.LVs), d)
	}
	if _, ok := vg.LV("nosuchlv"); ok {
		t.Error("LV(nosuchlv) found")
	}
	// A VG changed after the parse (the index is then out of date) still answers right.
	vg.LVs = append([]lvm.LV{{Name: "added"}}, vg.LVs[:3]...)
	if lv, ok := vg.LV("added"); !ok || lv != &vg.LVs[0] {
		t.Errorf("LV(added) = %v, %v", lv, ok)
	}
	if lv, ok := vg.LV(vg.LVs[2].Name); !ok || lv != &vg.LVs[2] {
		t.Errorf("LV(%q) = %v, %v", vg.LVs[2].Name, lv, ok)
	}
}
