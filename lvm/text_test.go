package lvm_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/lvm"
)

func TestParseMetadataSyntax(t *testing.T) {
	text := `# leading comment
contents = "Text Format Volume Group"   # trailing comment
version = 1
description = "a \"quoted\" word, a \\ backslash and \n kept"
creation_host = 'single {quoted} # not a comment'
ratio = -1.5
bare = somebareword
empty = []
"vg-x" {
	id = "abc"
	seqno = 010
	status = [ "READ" , "WRITE" ]
	extent_size = 8
	physical_volumes { pv0 { id = "p" pe_start = 2048 pe_count = 3 } }
	logical_volumes {
		lv {
			id = "l"
			status = ["VISIBLE"]
			segment_count = 2
			# segments in text order 2, 1: lvm itself rejects this order
			# (its _insert_segment miscounts); we sort them.
			segment2 { start_extent = 1 extent_count = 2 type = "linear" stripe_count = 1 stripes = ["pv0", 0] }
			segment1 { start_extent = 0 extent_count = 1 type = "striped" stripe_count = 1 stripes = ["pv0", 2] }
		}
	}
}
`
	vg, err := lvm.ParseMetadata([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if vg.Name != "vg-x" || vg.Seqno != 8 || vg.ExtentSize != 4096 || strings.Join(vg.Status, ",") != "READ,WRITE" {
		t.Errorf("VG %+v", vg)
	}
	lv, ok := vg.LV("lv")
	if !ok || len(lv.Segments) != 2 || lv.Segments[0].StartExtent != 0 || lv.Segments[1].Type != "linear" || lv.Size != 3*4096 || !lv.Visible() {
		t.Errorf("LV %+v", lv)
	}
	if pv, ok := vg.PV("pv0"); !ok || pv.PEStart != 2048*512 || pv.PECount != 3 {
		t.Errorf("PV %+v", pv)
	}
}

func TestParseMetadataErrors(t *testing.T) {
	pv := `physical_volumes { pv0 { id = "p" pe_start = 8 pe_count = 10 } pv1 { id = "q" pe_start = 8 pe_count = 10 } }`
	vg := func(body string) string {
		return "vg { id = \"v\" seqno = 1 extent_size = 8 " + pv + " " + body + " }"
	}
	seg := func(start, count int, extra string) string {
		return "s" + strings.Repeat("x", start) + " { start_extent = " + strconv.Itoa(start) + " extent_count = " + strconv.Itoa(count) + " " + extra + " }"
	}
	lin := `type = "striped" stripe_count = 1 stripes = ["pv0", 0]`
	lvs := func(segs ...string) string {
		return vg("logical_volumes { lv { id = \"l\" segment_count = " + strconv.Itoa(len(segs)) + " " + strings.Join(segs, " ") + " } }")
	}
	cases := map[string]string{
		"unterminated string":  `vg { id = "abc }`,
		"unclosed section":     `vg { id = "a"`,
		"missing value":        `vg { id = }`,
		"bad array":            `vg { status = ["a" "b"] }`,
		"stray brace":          `}`,
		"no vg":                `contents = "Text Format Volume Group"`,
		"two vgs":              vg("") + vg(""),
		"bad contents":         `contents = "Something" ` + vg(""),
		"bad version":          `version = 2 ` + vg(""),
		"no extent size":       `vg { id = "v" seqno = 1 ` + pv + ` }`,
		"zero extent size":     `vg { id = "v" seqno = 1 extent_size = 0 ` + pv + ` }`,
		"string seqno":         `vg { id = "v" seqno = "1" extent_size = 8 ` + pv + ` }`,
		"no pvs":               `vg { id = "v" seqno = 1 extent_size = 8 }`,
		"pe_count too large":   `vg { id = "v" seqno = 1 extent_size = 8 physical_volumes { pv0 { id = "p" pe_start = 8 pe_count = 99999999999 } } }`,
		"deep nesting":         strings.Repeat("a {", 40) + strings.Repeat("}", 40),
		"segment gap":          lvs(seg(0, 1, lin), seg(2, 1, lin)),
		"segment overlap":      lvs(seg(0, 2, lin), seg(1, 1, lin)),
		"not from zero":        lvs(seg(1, 1, lin)),
		"segment count":        vg(`logical_volumes { lv { id = "l" segment_count = 2 ` + seg(0, 1, lin) + ` } }`),
		"no type":              lvs(seg(0, 1, `stripe_count = 1 stripes = ["pv0", 0]`)),
		"stripe count":         lvs(seg(0, 2, `type = "striped" stripe_count = 2 stripe_size = 8 stripes = ["pv0", 0]`)),
		"no stripe size":       lvs(seg(0, 2, `type = "striped" stripe_count = 2 stripes = ["pv0", 0, "pv1", 0]`)),
		"uneven stripes":       lvs(seg(0, 3, `type = "striped" stripe_count = 2 stripe_size = 8 stripes = ["pv0", 0, "pv1", 0]`)),
		"beyond pe_count":      lvs(seg(0, 2, `type = "striped" stripe_count = 1 stripes = ["pv0", 9]`)),
		"unknown volume":       lvs(seg(0, 1, `type = "striped" stripe_count = 1 stripes = ["pv7", 0]`)),
		"odd stripes list":     lvs(seg(0, 1, `type = "striped" stripe_count = 1 stripes = ["pv0"]`)),
		"negative extent":      lvs(seg(0, 1, `type = "striped" stripe_count = 1 stripes = ["pv0", -1]`)),
		"negative start":       vg(`logical_volumes { lv { id = "l" segment_count = 1 s { start_extent = -1 extent_count = 1 ` + lin + ` } } }`),
		"duplicate lv":         vg(`logical_volumes { lv { id = "l" segment_count = 0 } lv { id = "m" segment_count = 0 } }`),
		"integer overflow":     `vg { id = "v" seqno = 99999999999999999999 extent_size = 8 ` + pv + ` }`,
		"duplicate pv entries": `vg { id = "v" seqno = 1 extent_size = 8 physical_volumes { pv0 { id = "p" pe_start = 8 pe_count = 1 } "pv0" { id = "p" pe_start = 8 pe_count = 1 } } }`,
	}
	for name, text := range cases {
		_, err := lvm.ParseMetadata([]byte(text))
		var fe *lvm.FormatError
		if !errors.As(err, &fe) || fe.Structure != "metadata text" {
			t.Errorf("%s: ParseMetadata = %v, want a FormatError", name, err)
		}
	}
	// The positive control for the helpers above.
	if _, err := lvm.ParseMetadata([]byte(lvs(seg(0, 1, lin), seg(1, 2, `type = "striped" stripe_count = 1 stripes = ["pv0", 1]`)))); err != nil {
		t.Errorf("valid text rejected: %v", err)
	}
}

// TestComponents: the LVs other LVs name (a snapshot's origin and COW store, a thin pool's data and
// metadata, the LV under a stacked segment) are components; a plain LV and a thin volume are not.
func TestComponents(t *testing.T) {
	pv := `physical_volumes { pv0 { id = "p" pe_start = 8 pe_count = 40 } }`
	lv := func(name, seg string) string {
		return name + ` { id = "` + name + `" segment_count = 1 s1 { start_extent = 0 extent_count = 2 ` + seg + ` } }`
	}
	lin := func(pe int) string {
		return `type = "striped" stripe_count = 1 stripes = ["pv0", ` + strconv.Itoa(pe) + `]`
	}
	text := `vg { id = "v" seqno = 1 extent_size = 8 ` + pv + ` logical_volumes { ` +
		lv("plain", lin(0)) + lv("root", lin(2)) + lv("cow", lin(4)) +
		lv("snapshot0", `type = "snapshot" chunk_size = 8 origin = "root" cow_store = "cow"`) +
		lv("tdata", lin(6)) + lv("tmeta", lin(8)) +
		lv("pool", `type = "thin-pool" metadata = "tmeta" pool = "tdata" transaction_id = 1 chunk_size = 128`) +
		lv("thin", `type = "thin" thin_pool = "pool" transaction_id = 1 device_id = 1`) +
		lv("under", lin(10)) + lv("stacked", `type = "striped" stripe_count = 1 stripes = ["under", 0]`) +
		` } }`
	vg, err := lvm.ParseMetadata([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(maps.Keys(vg.Components()))
	if want := []string{"cow", "pool", "root", "tdata", "tmeta", "under"}; !slices.Equal(got, want) {
		t.Errorf("Components = %v, want %v", got, want)
	}
}

// TestParseBackupFile parses a vgcfgbackup file (comments, tabs, nested
// arrays over several lines) written by the real tool.
func TestParseBackupFile(t *testing.T) {
	t.Parallel()
	e := newLoopPV(t, 64<<20)
	e.must("vgcreate", "-s", "1m", "vgb", e.dev)
	e.restoreWithLVs("vgb", layoutText())
	out := filepath.Join(t.TempDir(), "b.txt")
	e.must("vgcfgbackup", "-f", out, "vgb")
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	vg, err := lvm.ParseMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	f, size := testenv.Open(t, e.img)
	pv, err := lvm.Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	// Same VG from the backup file and from the on-disk text.
	if vg.Name != pv.VG.Name || vg.ID != pv.VG.ID || vg.Seqno != pv.VG.Seqno || len(vg.LVs) != 4 {
		t.Fatalf("backup %s/%s/%d, disk %s/%s/%d", vg.Name, vg.ID, vg.Seqno, pv.VG.Name, pv.VG.ID, pv.VG.Seqno)
	}
	for i := range vg.LVs {
		a, b := vg.LVs[i], pv.VG.LVs[i]
		if a.Name != b.Name || a.Size != b.Size || len(a.Segments) != len(b.Segments) {
			t.Errorf("LV %s differs: %+v vs %+v", a.Name, a, b)
		}
	}
}
