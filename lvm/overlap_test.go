package lvm_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/lvm"
)

// TestOverlappingExtents: metadata mapping the same PV extents twice (two LVs, two segments of one
// LV, two stripes of one segment) is what lvm2 itself refuses ("PV segments corrupted"), checked here
// with vgcfgrestore on a real PV; ParseMetadata must refuse it too, as corrupt, naming both users and
// the extents. Adjacent areas, and a pvmove whose LV lies on the pvmove LV while that LV's mirror
// areas hold the same PV extents, are what lvm2 accepts, and so must the parser.
func TestOverlappingExtents(t *testing.T) {
	t.Parallel()
	e := newLoopPV(t, 64<<20)
	e.must("vgcreate", "-s", "1m", "vgo", e.dev)
	backup := testenv.VGBackup(t, e.sysDir, "vgo")
	lv := func(name, id string, extra string, segs ...string) string {
		return fmt.Sprintf("%s { id = \"Overla-0000-0000-0000-0000-0000-00000%s\" status = [\"READ\", \"WRITE\", \"VISIBLE\"%s] flags = [] segment_count = %d\n%s }\n",
			name, id, extra, len(segs), strings.Join(segs, "\n"))
	}
	seg := func(name string, start, count int64, stripes ...any) string {
		var list []string
		for _, s := range stripes {
			list = append(list, fmt.Sprintf("%#v", s))
		}
		size := ""
		if len(stripes) > 2 {
			size = "stripe_size = 128"
		}
		return fmt.Sprintf("%s { start_extent = %d extent_count = %d type = \"striped\" stripe_count = %d %s stripes = [%s] }",
			name, start, count, len(stripes)/2, size, strings.Join(list, ", "))
	}
	for _, tc := range []struct {
		name string
		lvs  string
		want []string // in the error; none: valid
	}{
		{"two LVs", lv("a", "1", "", seg("segment1", 0, 4, "pv0", 0)) + lv("b", "2", "", seg("segment1", 0, 4, "pv0", 2)),
			[]string{"a (segment at extent 0)", "b (segment at extent 0)", "pv0 extents 2..3"}},
		{"two segments of one LV", lv("a", "1", "", seg("segment1", 0, 4, "pv0", 10), seg("segment2", 4, 4, "pv0", 13)),
			[]string{"a (segment at extent 0)", "a (segment at extent 4)", "pv0 extent 13"}},
		{"two stripes of one segment", lv("s", "3", "", seg("segment1", 0, 4, "pv0", 20, "pv0", 21)),
			[]string{"s (segment at extent 0, stripe 1)", "s (segment at extent 0, stripe 2)", "pv0 extent 21"}},
		{"third LV among many", lv("a", "1", "", seg("segment1", 0, 2, "pv0", 0)) + lv("b", "2", "", seg("segment1", 0, 30, "pv0", 2)) +
			lv("c", "3", "", seg("segment1", 0, 2, "pv0", 40)) + lv("d", "4", "", seg("segment1", 0, 1, "pv0", 31)),
			[]string{"b (segment at extent 0)", "d (segment at extent 0)", "pv0 extent 31"}},
		{"adjacent", lv("a", "1", "", seg("segment1", 0, 2, "pv0", 2)) + lv("b", "2", "", seg("segment1", 0, 2, "pv0", 0), seg("segment2", 2, 2, "pv0", 4)) +
			lv("s", "3", "", seg("segment1", 0, 4, "pv0", 6, "pv0", 8)), nil},
		{"pvmove", lv("a", "1", `, "LOCKED"`, seg("segment1", 0, 4, "pvmove0", 0)) +
			`pvmove0 { id = "Overla-0000-0000-0000-0000-0000-000009" status = ["READ", "WRITE", "PVMOVE", "LOCKED"] flags = []
			allocation_policy = "contiguous" segment_count = 1
			segment1 { start_extent = 0 extent_count = 4 type = "mirror" mirror_count = 2 extents_moved = 0 region_size = 1024
			mirrors = ["pv0", 2, "pv0", 10] } }`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := testenv.AddToVG(t, backup, "logical_volumes {\n"+tc.lvs+"\n}")
			path := testenv.WriteFile(t, t.TempDir(), "vgo.restore", []byte(text))
			out, lvmErr := e.run("vgcfgrestore", "-f", path, "vgo")
			_, err := lvm.ParseMetadata([]byte(text))
			if tc.want == nil {
				if lvmErr != nil {
					t.Fatalf("lvm2 refuses the valid case: %v", lvmErr)
				}
				if err != nil {
					t.Fatalf("ParseMetadata: %v", err)
				}
				// The restored copy on the device opens too.
				pv, err := openPath(t, e.img)
				if err != nil || pv.VG == nil || len(pv.VG.LVs) == 0 {
					t.Fatalf("Open after restore: %v", err)
				}
				return
			}
			if lvmErr == nil || !strings.Contains(lvmErr.Error(), "PV segments corrupted") {
				t.Fatalf("lvm2 does not refuse the overlap as corrupt: %v %s", lvmErr, out)
			}
			if !errors.Is(err, lvm.ErrCorrupt) {
				t.Fatalf("ParseMetadata = %v, want corrupt metadata", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			t.Log(err)
		})
	}
}

// TestDuplicatePVIDs: a VG listing two PVs with one UUID (dashes or not) is refused by lvm2
// ("Duplicate PV id", checked with vgcfgrestore) and must be refused by ParseMetadata: the two names
// would be one disk, so an LV on the second lies on the first's extents while the first's free ranges
// and the VG's PV-to-disk match (by UUID) treat it as elsewhere.
func TestDuplicatePVIDs(t *testing.T) {
	t.Parallel()
	e := newLoopPV(t, 64<<20)
	e.must("vgcreate", "-s", "1m", "vgd", e.dev)
	backup := testenv.VGBackup(t, e.sysDir, "vgd")
	pv0, ok := pvSection(backup)
	if !ok {
		t.Fatalf("no pv0 section in:\n%s", backup)
	}
	for _, tc := range []struct {
		name string
		id   func(string) string // pv1's id from pv0's
	}{
		{"same id", func(id string) string { return id }},
		{"same id without dashes", func(id string) string { return strings.ReplaceAll(id, "-", "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := pv0.id
			pv1 := strings.Replace(strings.Replace(pv0.text, "pv0 {", "pv1 {", 1), id, tc.id(id), 1)
			text := strings.Replace(backup, pv0.text, pv0.text+"\n"+pv1, 1)
			text = testenv.AddToVG(t, text, `logical_volumes {
				a { id = "Duplic-0000-0000-0000-0000-0000-000001" status = ["READ", "WRITE", "VISIBLE"] flags = [] segment_count = 1
				segment1 { start_extent = 0 extent_count = 4 type = "striped" stripe_count = 1 stripes = ["pv0", 0] } }
				b { id = "Duplic-0000-0000-0000-0000-0000-000002" status = ["READ", "WRITE", "VISIBLE"] flags = [] segment_count = 1
				segment1 { start_extent = 0 extent_count = 4 type = "striped" stripe_count = 1 stripes = ["pv1", 0] } }
			}`)
			path := testenv.WriteFile(t, t.TempDir(), "vgd.restore", []byte(text))
			if out, err := e.run("vgcfgrestore", "-f", path, "vgd"); err == nil || !strings.Contains(err.Error(), "Duplicate PV id") {
				t.Fatalf("lvm2 does not refuse the duplicate id: %v %s", err, out)
			}
			_, err := lvm.ParseMetadata([]byte(text))
			if !errors.Is(err, lvm.ErrCorrupt) || !strings.Contains(err.Error(), "pv0") || !strings.Contains(err.Error(), "pv1") {
				t.Fatalf("ParseMetadata = %v, want corrupt metadata naming pv0 and pv1", err)
			}
			t.Log(err)
		})
	}
}

type pvText struct{ text, id string }

// pvSection returns the pv0 section of a vgcfgbackup text and its id.
func pvSection(backup string) (pvText, bool) {
	i := strings.Index(backup, "pv0 {")
	if i < 0 {
		return pvText{}, false
	}
	j := strings.Index(backup[i:], "}")
	if j < 0 {
		return pvText{}, false
	}
	s := backup[i : i+j+1]
	k := strings.Index(s, `id = "`)
	if k < 0 {
		return pvText{}, false
	}
	id, _, _ := strings.Cut(s[k+len(`id = "`):], `"`)
	return pvText{s, id}, true
}
