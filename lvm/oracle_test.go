package lvm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/lvm"
)

// checkHeaders compares Open's binary structures with `pvck --dump headers`.
func checkHeaders(t *testing.T, pv *lvm.PV, m map[string]string, dump string) {
	t.Helper()
	u := func(key string) uint64 {
		t.Helper()
		s, ok := m[key]
		if !ok {
			t.Fatalf("pvck output has no %s:\n%s", key, dump)
		}
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("pvck %s = %q: %v", key, s, err)
		}
		return v
	}
	eq := func(what string, got, want uint64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %d, pvck says %d", what, got, want)
		}
	}
	eq("label sector", pv.Label.Sector, u("label_header.sector"))
	eq("label crc", uint64(pv.Label.CRC), u("label_header.crc"))
	eq("label offset", uint64(pv.Label.Offset), u("label_header.offset"))
	if !strings.Contains(dump, "label_header.type "+string(pv.Label.Type[:])+"\n") {
		t.Errorf("label type %q not in pvck output", pv.Label.Type[:])
	}
	if pv.Header.UUID != m["pv_header.pv_uuid"] {
		t.Errorf("pv uuid %q, pvck says %q", pv.Header.UUID, m["pv_header.pv_uuid"])
	}
	eq("device size", pv.Header.DeviceSize, u("pv_header.device_size"))
	// pvck numbers disk_locn entries across both lists and their ends.
	var all []lvm.DiskLocn
	all = append(append(append(all, pv.Header.DataAreas...), lvm.DiskLocn{}), pv.Header.MetadataAreas...)
	for i, d := range all {
		eq(fmt.Sprintf("disk_locn[%d].offset", i), d.Offset, u(fmt.Sprintf("pv_header.disk_locn[%d].offset", i)))
		eq(fmt.Sprintf("disk_locn[%d].size", i), d.Size, u(fmt.Sprintf("pv_header.disk_locn[%d].size", i)))
	}
	if _, ok := m[fmt.Sprintf("pv_header.disk_locn[%d].offset", len(all)+1)]; ok {
		t.Errorf("pvck lists more disk areas than Open (%d)", len(all))
	}
	if ext := pv.Header.Extension; ext != nil {
		eq("extension version", uint64(ext.Version), u("pv_header_extension.version"))
		eq("extension flags", uint64(ext.Flags), u("pv_header_extension.flags"))
	}
	if len(pv.MDAs) != len(pv.Header.MetadataAreas) {
		t.Fatalf("%d MDAs for %d metadata areas", len(pv.MDAs), len(pv.Header.MetadataAreas))
	}
	for i, mda := range pv.MDAs {
		p := fmt.Sprintf("mda_header_%d.", i+1)
		h := mda.Header
		if h == nil {
			t.Errorf("mda %d: no header: %v", i+1, mda.Err)
			continue
		}
		eq(p+"checksum", uint64(h.Checksum), u(p+"checksum"))
		eq(p+"version", uint64(h.Version), u(p+"version"))
		eq(p+"start", h.Start, u(p+"start"))
		eq(p+"size", h.Size, u(p+"size"))
		if len(h.RawLocns) == 0 {
			t.Errorf("mda %d: no raw locations", i+1)
			continue
		}
		r := h.RawLocns[0]
		eq(p+"raw_locn[0].offset", r.Offset, u(p+"raw_locn[0].offset"))
		eq(p+"raw_locn[0].size", r.Size, u(p+"raw_locn[0].size"))
		eq(p+"raw_locn[0].checksum", uint64(r.Checksum), u(p+"raw_locn[0].checksum"))
		eq(p+"raw_locn[0].flags", uint64(r.Flags), u(p+"raw_locn[0].flags"))
	}
}

func TestBlkidLUKS2PV(t *testing.T) {
	t.Parallel()
	img := testenv.CryptsetupImage(t, "blkid-luks2-pv.img")
	f, size := testenv.Open(t, img)
	pv, err := lvm.Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(pv.Warnings) != 0 {
		t.Errorf("warnings: %q", pv.Warnings)
	}
	vg := pv.VG
	if vg == nil {
		t.Fatal("no VG")
	}
	if vg.Name != "vg00" || vg.ExtentSize != 8192*512 || vg.Seqno != 1 || len(vg.LVs) != 0 || len(vg.PVs) != 1 {
		t.Errorf("VG %s extent %d seqno %d, %d LVs, %d PVs", vg.Name, vg.ExtentSize, vg.Seqno, len(vg.LVs), len(vg.PVs))
	}
	info, ok := pv.Info()
	if !ok || info.PEStart != 2048*512 || info.PECount != 6 || info.Name != "pv0" {
		t.Errorf("PV info %+v", info)
	}
	if got := pv.Header.FormattedUUID(); got != info.ID {
		t.Errorf("header UUID %s, metadata id %s", got, info.ID)
	}
	want := []extent.Range{{Off: 1 << 20, Len: 6 * 4 << 20}}
	if got := pv.FreeRanges(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("FreeRanges = %v, want %v", got, want)
	}
	// pvck reads image files directly; no loop device is needed here.
	testenv.Need(t, "pvck")
	e := newEnv(t, "")
	m, dump := e.pvckHeaders(img)
	checkHeaders(t, pv, m, dump)
}

// layoutLVs is the logical_volumes section restored onto every test VG:
// a linear LV, a multi-segment LV whose segments are out of PV order with
// gaps between them, a 2-stripe LV (both stripes on the one PV, which
// vgcfgrestore accepts) and an "error" LV that Map must refuse.
const layoutLVs = `
	logical_volumes {
` + "%s" + `
		str {
			id = "StrStr-0000-0000-0000-0000-0000-000003"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 4
				type = "striped"
				stripe_count = 2
				stripe_size = 128
				stripes = ["pv0", 40, "pv0", 44]
			}
		}
		err {
			id = "ErrErr-0000-0000-0000-0000-0000-000004"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 2
				type = "error"
			}
		}
	}
`

func layoutText() string {
	lin := lvSection("lin", "LinLin-0000-0000-0000-0000-0000-000001",
		lvSegment("segment1", 0, 4, "pv0", 1))
	multi := lvSection("multi", "MulMul-0000-0000-0000-0000-0000-000002",
		lvSegment("segment1", 0, 2, "pv0", 20),
		lvSegment("segment2", 2, 3, "pv0", 8),
		lvSegment("segment3", 5, 1, "pv0", 30))
	return fmt.Sprintf(layoutLVs, lin+"\n"+multi)
}

// oracleSeg is one row of `lvs --segments`.
type oracleSeg struct {
	lv          string
	start, size int64 // extents
	segtype     string
	stripeSize  int64   // bytes
	pes         []int64 // first PE of each stripe
}

func TestToolLayouts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		size     int64
		pvcreate []string
		extent   string
	}{
		{"defaults", 96 << 20, nil, "1m"},
		{"two-mdas", 160 << 20, []string{"--metadatacopies", "2"}, "2m"},
		{"small-mda", 64 << 20, []string{"--metadatasize", "64k", "--dataalignment", "64k"}, "256k"},
		{"two-big-mdas", 200 << 20, []string{"--metadatacopies", "2", "--metadatasize", "2m", "--dataalignment", "4m"}, "1m"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newLoopPV(t, c.size, c.pvcreate...)
			e.must("vgcreate", "-s", c.extent, "vgt", e.dev)
			e.restoreWithLVs("vgt", layoutText())
			checkAgainstTools(t, e, "vgt")
		})
	}
}

// checkAgainstTools compares everything Open reports for e's PV with pvck,
// pvs, vgs and lvs, then fills every LV with its own pattern at the PV
// offsets the tools give and reads it back through LVReader.
func checkAgainstTools(t *testing.T, e *lvmEnv, vgName string) *lvm.PV {
	t.Helper()
	f, size := testenv.Open(t, e.img)
	pv, err := lvm.Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(pv.Warnings) != 0 {
		t.Errorf("warnings: %q", pv.Warnings)
	}
	m, dump := e.pvckHeaders(e.dev)
	checkHeaders(t, pv, m, dump)
	vg := pv.VG
	if vg == nil {
		t.Fatal("no VG")
	}

	// The text itself, as pvck extracts it from the newest metadata area.
	mdFile := filepath.Join(t.TempDir(), "md.txt")
	e.must("pvck", "--dump", "metadata", "-f", mdFile, e.dev)
	raw, err := os.ReadFile(mdFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimRight(string(raw), "\x00\n") != strings.TrimRight(vg.Raw, "\x00\n") {
		t.Errorf("VG.Raw differs from pvck --dump metadata:\n--- pvck\n%s\n--- Open\n%s", raw, vg.Raw)
	}

	vgs := e.fields("vgs", "-o", "vg_name,vg_uuid,vg_extent_size,vg_seqno,pv_count", vgName)
	if len(vgs) != 1 {
		t.Fatalf("vgs: %q", vgs)
	}
	if r := vgs[0]; r[0] != vg.Name || r[1] != vg.ID || atoi(t, r[2]) != vg.ExtentSize || atoi(t, r[3]) != int64(vg.Seqno) {
		t.Errorf("vgs says %q; Open: %s %s %d %d", r, vg.Name, vg.ID, vg.ExtentSize, vg.Seqno)
	}
	pvs := e.fields("pvs", "-o", "pv_uuid,pe_start,pv_pe_count,dev_size", e.dev)
	info, ok := pv.Info()
	if !ok || len(pvs) != 1 {
		t.Fatalf("pvs %q, info %v", pvs, ok)
	}
	if r := pvs[0]; r[0] != info.ID || atoi(t, r[1]) != info.PEStart || atoi(t, r[2]) != info.PECount || atoi(t, r[3]) != size {
		t.Errorf("pvs says %q; Open: %+v (device %d bytes)", r, *info, size)
	}
	if pv.Header.FormattedUUID() != info.ID {
		t.Errorf("header UUID %s != metadata %s", pv.Header.FormattedUUID(), info.ID)
	}

	// LVs and segments as lvs reports them.
	lvRows := e.fields("lvs", "-a", "-o", "lv_name,lv_uuid,lv_size", vgName)
	if len(lvRows) != len(vg.LVs) {
		t.Errorf("lvs lists %d LVs, Open %d", len(lvRows), len(vg.LVs))
	}
	for _, r := range lvRows {
		lv, ok := vg.LV(r[0])
		if !ok {
			t.Errorf("LV %s missing", r[0])
			continue
		}
		if lv.ID != r[1] || lv.Size != atoi(t, r[2]) {
			t.Errorf("LV %s: id %s size %d, lvs says %q", lv.Name, lv.ID, lv.Size, r)
		}
	}
	var segs []oracleSeg
	for _, r := range e.fields("lvs", "-a", "--segments", "-o", "lv_name,seg_start_pe,seg_size_pe,segtype,stripe_size,seg_pe_ranges", vgName) {
		s := oracleSeg{lv: r[0], start: atoi(t, r[1]), size: atoi(t, r[2]), segtype: r[3], stripeSize: atoi(t, r[4])}
		for _, rg := range strings.Fields(r[5]) {
			// "/dev/loop3:20-21"
			_, span, ok := strings.Cut(rg, ":")
			lo, _, ok2 := strings.Cut(span, "-")
			if !ok || !ok2 || !strings.HasPrefix(rg, e.dev+":") {
				t.Fatalf("unexpected PE range %q", rg)
			}
			s.pes = append(s.pes, atoi(t, lo))
		}
		segs = append(segs, s)
	}
	var nsegs int
	for _, lv := range vg.LVs {
		nsegs += len(lv.Segments)
	}
	if nsegs != len(segs) {
		t.Errorf("lvs lists %d segments, Open %d", len(segs), nsegs)
	}
	for _, s := range segs {
		lv, ok := vg.LV(s.lv)
		if !ok {
			continue
		}
		var got *lvm.Segment
		for i := range lv.Segments {
			if lv.Segments[i].StartExtent == s.start {
				got = &lv.Segments[i]
			}
		}
		if got == nil {
			t.Errorf("LV %s: no segment at extent %d", s.lv, s.start)
			continue
		}
		// lvs prints "linear" for one-stripe "striped" segments.
		wantType := s.segtype
		if wantType == "linear" {
			wantType = "striped"
		}
		if got.ExtentCount != s.size || got.Type != wantType || got.StripeSize != s.stripeSize || len(got.Stripes) != len(s.pes) {
			t.Errorf("LV %s segment at %d: %+v, lvs says %+v", s.lv, s.start, *got, s)
			continue
		}
		for i, st := range got.Stripes {
			if st.PV != info.Name || st.StartExtent != s.pes[i] {
				t.Errorf("LV %s segment at %d stripe %d: %+v, lvs says PE %d", s.lv, s.start, i, st, s.pes[i])
			}
		}
	}

	// Free space as pvs reports it (rows with no LV name).
	var wantFree []extent.Range
	for _, r := range e.fields("pvs", "--segments", "-o", "pvseg_start,pvseg_size,lv_name", e.dev) {
		if len(r) < 3 || r[2] != "" {
			continue
		}
		wantFree = append(wantFree, extent.Range{Off: info.PEStart + atoi(t, r[0])*vg.ExtentSize, Len: atoi(t, r[1]) * vg.ExtentSize})
	}
	if got := pv.FreeRanges(); fmt.Sprint(got) != fmt.Sprint(wantFree) {
		t.Errorf("FreeRanges = %v, pvs says %v", got, wantFree)
	}

	checkContents(t, e, pv, segs, info.PEStart, vg.ExtentSize)
	return pv
}

// checkContents writes a distinct random pattern into each LV at the PV
// offsets computed from the tools' segment list, then reads every LV back
// through LVReader, whole and in random pieces.
func checkContents(t *testing.T, e *lvmEnv, pv *lvm.PV, segs []oracleSeg, peStart, es int64) {
	t.Helper()
	w, err := os.OpenFile(e.img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	want := map[string][]byte{}
	for _, lv := range pv.VG.LVs {
		b := make([]byte, lv.Size)
		rand.New(rand.NewSource(int64(len(lv.Name))*7919 + int64(lv.Name[0]))).Read(b)
		want[lv.Name] = b
	}
	for _, s := range segs {
		if s.segtype != "linear" && s.segtype != "striped" {
			continue
		}
		lvb := want[s.lv][s.start*es : (s.start+s.size)*es]
		n := int64(len(s.pes))
		if n == 1 {
			if _, err := w.WriteAt(lvb, peStart+s.pes[0]*es); err != nil {
				t.Fatal(err)
			}
			continue
		}
		// dm-stripe (the kernel target lvm loads for striped segments):
		// chunk c goes to stripe c%n at chunk c/n of that stripe's area.
		for c := int64(0); c*s.stripeSize < int64(len(lvb)); c++ {
			chunk := lvb[c*s.stripeSize : (c+1)*s.stripeSize]
			if _, err := w.WriteAt(chunk, peStart+s.pes[c%n]*es+(c/n)*s.stripeSize); err != nil {
				t.Fatal(err)
			}
		}
	}
	f, _ := testenv.Open(t, e.img)
	rng := rand.New(rand.NewSource(1))
	for _, lv := range pv.VG.LVs {
		lv := lv
		unsupported := false
		for _, s := range lv.Segments {
			if s.Type != "striped" {
				unsupported = true
			}
		}
		r := pv.LVReader(f, &lv)
		if r.Size() != lv.Size {
			t.Errorf("LV %s: reader size %d, LV size %d", lv.Name, r.Size(), lv.Size)
		}
		got, err := io.ReadAll(r)
		if unsupported {
			if !errors.Is(err, lvm.ErrUnsupported) {
				t.Errorf("LV %s (%s): read error %v, want ErrUnsupported", lv.Name, lv.Segments[0].Type, err)
			}
			if _, err := pv.Map(&lv, 0, 1); !errors.Is(err, lvm.ErrUnsupported) {
				t.Errorf("LV %s: Map error %v, want ErrUnsupported", lv.Name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("LV %s: %v", lv.Name, err)
			continue
		}
		if !bytes.Equal(got, want[lv.Name]) {
			t.Errorf("LV %s: contents differ from the pattern written at the tools' offsets", lv.Name)
			continue
		}
		for i := 0; i < 200; i++ {
			off := rng.Int63n(lv.Size)
			n := rng.Int63n(min(lv.Size-off, 3*es)) + 1
			buf := make([]byte, n)
			k, err := r.ReadAt(buf, off)
			if err != nil && !(err == io.EOF && off+n == lv.Size) || int64(k) != n {
				t.Fatalf("LV %s ReadAt(%d, %d) = %d, %v", lv.Name, n, off, k, err)
			}
			if !bytes.Equal(buf, want[lv.Name][off:off+n]) {
				t.Fatalf("LV %s ReadAt(%d bytes at %d) differs", lv.Name, n, off)
			}
		}
		// Map covers the range exactly once, in order.
		exts, err := pv.Map(&lv, 0, lv.Size)
		if err != nil {
			t.Fatal(err)
		}
		var at int64
		for _, x := range exts {
			if x.LVOff != at || x.Len <= 0 || x.PVOff < peStart {
				t.Fatalf("LV %s: bad extent %+v at %d", lv.Name, x, at)
			}
			at += x.Len
		}
		if at != lv.Size {
			t.Errorf("LV %s: Map covers %d of %d bytes", lv.Name, at, lv.Size)
		}
	}
}

// TestLinearMap checks Map's output for the linear layout against offsets
// computed by hand from the tools' PE ranges.
func TestLinearMap(t *testing.T) {
	t.Parallel()
	e := newLoopPV(t, 64<<20, "--metadatasize", "64k", "--dataalignment", "64k")
	e.must("vgcreate", "-s", "1m", "vgm", e.dev)
	e.restoreWithLVs("vgm", fmt.Sprintf(layoutLVs, lvSection("multi", "MulMul-0000-0000-0000-0000-0000-000002",
		lvSegment("segment1", 0, 2, "pv0", 20),
		lvSegment("segment2", 2, 3, "pv0", 8),
		lvSegment("segment3", 5, 1, "pv0", 30))))
	f, size := testenv.Open(t, e.img)
	pv, err := lvm.Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	peStart := atoi(t, e.fields("pvs", "-o", "pe_start", e.dev)[0][0])
	const mib = 1 << 20
	lv, ok := pv.VG.LV("multi")
	if !ok {
		t.Fatal("no LV multi")
	}
	// Bytes 1.5 MiB .. 5.5 MiB cross all three segments.
	got, err := pv.Map(lv, 3*mib/2, 4*mib)
	if err != nil {
		t.Fatal(err)
	}
	want := []lvm.Extent{
		{LVOff: 3 * mib / 2, PVOff: peStart + 20*mib + 3*mib/2, Len: mib / 2},
		{LVOff: 2 * mib, PVOff: peStart + 8*mib, Len: 3 * mib},
		{LVOff: 5 * mib, PVOff: peStart + 30*mib, Len: mib / 2},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Map = %v\nwant %v", got, want)
	}
	if _, err := pv.Map(lv, 5*mib, 2*mib); err == nil {
		t.Error("Map past the LV end succeeded")
	}
	str, _ := pv.VG.LV("str")
	// 64 KiB chunks alternate between PE 40 and PE 44.
	got, err = pv.Map(str, 60<<10, 80<<10)
	if err != nil {
		t.Fatal(err)
	}
	want = []lvm.Extent{
		{LVOff: 60 << 10, PVOff: peStart + 40*mib + 60<<10, Len: 4 << 10},
		{LVOff: 64 << 10, PVOff: peStart + 44*mib, Len: 64 << 10},
		{LVOff: 128 << 10, PVOff: peStart + 40*mib + 64<<10, Len: 12 << 10},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("striped Map = %v\nwant %v", got, want)
	}
}
