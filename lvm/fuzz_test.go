package lvm_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/luksconv/luksconv/lvm"
)

// fixCRCs recomputes the label, mda header and text checksums of an image so
// the fuzzer's mutations reach the structures behind them. It trusts nothing
// in b and never indexes out of range.
func fixCRCs(b []byte) {
	le := binary.LittleEndian
	for s := 0; s < 4 && (s+1)*512 <= len(b); s++ {
		l := b[s*512 : (s+1)*512]
		if string(l[:8]) != lvm.LabelID {
			continue
		}
		at := int(le.Uint32(l[20:])) + 40
		if at < 72 || at > 512 {
			return
		}
		var mdas []uint64
		for list := 0; list < 2; list++ {
			for ; at+16 <= 512; at += 16 {
				off := le.Uint64(l[at:])
				if off == 0 {
					at += 16
					break
				}
				if list == 1 {
					mdas = append(mdas, off)
				}
			}
		}
		for _, off := range mdas {
			if off > uint64(len(b)-512) || len(b) < 512 {
				continue
			}
			h := b[off : off+512]
			size := le.Uint64(h[32:])
			to, tsize := le.Uint64(h[40:]), le.Uint64(h[48:])
			// size is checked against the room after off, not as off+size, which a huge size wraps.
			if size >= 512 && size <= uint64(len(b))-off && to >= 512 && to < size && tsize <= size-512 {
				area := b[off : off+size]
				first := min(tsize, size-to)
				text := append(append([]byte(nil), area[to:to+first]...), area[512:512+tsize-first]...)
				le.PutUint32(h[56:], lvm.CRC(text))
			}
			le.PutUint32(h[0:], lvm.CRC(h[4:]))
		}
		le.PutUint32(l[16:], lvm.CRC(l[20:]))
		return
	}
}

// checkDisjoint fails when two stripe areas of vg's linear and striped segments share PV extents,
// which ParseMetadata and Open refuse. It compares pairs, so only small VGs (all a fuzzer makes).
func checkDisjoint(t *testing.T, vg *lvm.VG) {
	type area struct {
		pv     string
		lo, hi int64
	}
	var as []area
	for _, lv := range vg.LVs {
		for _, s := range lv.Segments {
			for _, st := range s.Stripes {
				if _, ok := vg.PV(st.PV); ok {
					as = append(as, area{st.PV, st.StartExtent, st.StartExtent + s.ExtentCount/int64(len(s.Stripes))})
				}
			}
		}
	}
	if len(as) > 1000 {
		return
	}
	for i, a := range as {
		for _, b := range as[i+1:] {
			if a.pv == b.pv && a.lo < b.hi && b.lo < a.hi {
				t.Fatalf("areas %+v and %+v overlap", a, b)
			}
		}
	}
}

// tinyText is VG metadata for an 8 KiB PV: 512-byte extents from 4 KiB.
func tinyText(seqno int, lvs string) string {
	return fmt.Sprintf(`v {
id = "v"
seqno = %d
extent_size = 1
physical_volumes {
pv0 {
id = "AbCdEf-0123-4567-89Gh-IjKl-MnOp-QrStUv"
pe_start = 8
pe_count = 8
}
pv1 {
id = "o"
pe_start = 8
pe_count = 8
}
}
logical_volumes {
%s
}
}
`, seqno, lvs)
}

// FuzzOpen: run with -fuzzminimizetime=200x; the default 60 s minimisation of
// each multi-KiB interesting input stalls the fuzzer for minutes.
func FuzzOpen(f *testing.F) {
	// Small seeds: coverage-guided fuzzing slows down sharply with input size.
	lvs := linearLV("a", [3]int{0, 2, 5}, [3]int{2, 1, 1}) + linearLV("b", [3]int{0, 1, -2}) +
		`s { id = "s" segment_count = 1 seg { start_extent = 0 extent_count = 2 type = "striped" stripe_count = 2 stripe_size = 1 stripes = ["pv0", 0, "pv0", 3] } }`
	one := synthPV{size: 8 << 10, labelSector: 1, dataOff: 4096, mdas: []synthMDA{{off: 1024, size: 3072, text: tinyText(3, lvs)}}}
	f.Add(one.build(), false)
	f.Add(one.build(), true)
	one.mdas[0].textOff = 3072 - 100
	f.Add(one.build(), true)
	two := synthPV{size: 8 << 10, labelSector: 0, dataOff: 4096, mdas: []synthMDA{
		{off: 1024, size: 1536, text: tinyText(4, "")},
		{off: 2560, size: 1536, text: tinyText(5, linearLV("a", [3]int{0, 1, 0}))},
	}}
	f.Add(two.build(), true)
	f.Add(make([]byte, 2048), false)
	f.Fuzz(func(t *testing.T, img []byte, fix bool) {
		if len(img) > 1<<20 {
			return
		}
		if fix {
			fixCRCs(img)
		}
		pv, err := lvm.Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return
		}
		if pv.VG == nil {
			return
		}
		info, ok := pv.Info()
		if !ok {
			t.Fatal("VG without this PV's entry")
		}
		checkDisjoint(t, pv.VG)
		end := info.PEStart + info.PECount*pv.VG.ExtentSize
		if end > int64(len(img)) {
			t.Fatalf("extents end at %d past the %d-byte device", end, len(img))
		}
		for _, r := range pv.FreeRanges() {
			if r.Off < info.PEStart || r.Len <= 0 || r.Off+r.Len > end {
				t.Fatalf("free range %+v outside [%d, %d)", r, info.PEStart, end)
			}
		}
		for i := range pv.VG.LVs {
			lv := &pv.VG.LVs[i]
			n := min(lv.Size, 1<<20)
			exts, err := pv.Map(lv, 0, n)
			if err != nil {
				continue
			}
			var at int64
			for _, e := range exts {
				if e.LVOff != at || e.Len <= 0 || e.PVOff < info.PEStart || e.PVOff+e.Len > end {
					t.Fatalf("LV %s: extent %+v (at %d, PV extents [%d, %d))", lv.Name, e, at, info.PEStart, end)
				}
				at += e.Len
			}
			if at != n {
				t.Fatalf("LV %s: mapped %d of %d bytes", lv.Name, at, n)
			}
			if _, err := io.Copy(io.Discard, io.NewSectionReader(pv.LVReader(bytes.NewReader(img), lv), 0, n)); err != nil {
				t.Fatalf("LV %s: read: %v", lv.Name, err)
			}
		}
	})
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte(synthText(1, synthPV0, linearLV("a", [3]int{0, 2, 5}, [3]int{2, 1, 1}))))
	f.Add([]byte(synthText(2, synthPV0+synthPV1, linearLV("b", [3]int{0, 1, -2}))))
	f.Add([]byte(`vg { id = "v" seqno = 1 extent_size = 8 physical_volumes { pv0 { id = "p" pe_start = 8 pe_count = 10 } }
logical_volumes { s { id = "s" segment_count = 1 seg { start_extent = 0 extent_count = 4 type = "striped" stripe_count = 2 stripe_size = 4 stripes = ["pv0", 0, "pv0", 4] } } } }`))
	f.Add([]byte("a = 'x' b = [1, -2.5, \"q\\\"\"] # c\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		vg, err := lvm.ParseMetadata(text)
		if err != nil {
			return
		}
		if vg.ExtentSize <= 0 {
			t.Fatalf("extent size %d", vg.ExtentSize)
		}
		checkDisjoint(t, vg)
		for _, lv := range vg.LVs {
			var le int64
			for _, s := range lv.Segments {
				if s.StartExtent != le || s.ExtentCount < 0 {
					t.Fatalf("LV %s: segment %+v at %d", lv.Name, s, le)
				}
				le += s.ExtentCount
			}
			if lv.Size != le*vg.ExtentSize || lv.Extents() != le {
				t.Fatalf("LV %s size %d for %d extents", lv.Name, lv.Size, le)
			}
		}
		// Parsing is deterministic and Raw round-trips.
		again, err := lvm.ParseMetadata([]byte(vg.Raw))
		if err != nil {
			t.Fatalf("Raw does not parse again: %v", err)
		}
		if !reflect.DeepEqual(vg, again) {
			t.Fatal("second parse differs")
		}
	})
}
