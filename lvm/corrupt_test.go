package lvm_test

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/lvm"
)

func openPath(t *testing.T, path string) (*lvm.PV, error) {
	t.Helper()
	f, size := testenv.Open(t, path)
	return lvm.Open(f, size)
}

func num(t *testing.T, m map[string]string, key string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(m[key], 0, 64)
	if err != nil {
		t.Fatalf("pvck %s = %q", key, m[key])
	}
	return v
}

func hasWarning(pv *lvm.PV, parts ...string) bool {
outer:
	for _, w := range pv.Warnings {
		for _, p := range parts {
			if !strings.Contains(w, p) {
				continue outer
			}
		}
		return true
	}
	return false
}

// TestCorruptCopies damages one or both metadata copies of a two-mda PV.
// pvck confirms each damage is real; Open must fall back to the intact copy
// with a warning, or fail with a FormatError naming the structure.
func TestCorruptCopies(t *testing.T) {
	t.Parallel()
	e := newLoopPV(t, 64<<20, "--metadatacopies", "2")
	e.must("vgcreate", "-s", "1m", "vgc", e.dev)
	e.restoreWithLVs("vgc", fmt.Sprintf(layoutLVs, lvSection("lin", "LinLin-0000-0000-0000-0000-0000-000001", lvSegment("segment1", 0, 4, "pv0", 1))))
	m, _ := e.pvckHeaders(e.img)
	hdr1, hdr2 := num(t, m, "mda_header_1.start"), num(t, m, "mda_header_2.start")
	text1 := hdr1 + num(t, m, "mda_header_1.raw_locn[0].offset")
	text2 := hdr2 + num(t, m, "mda_header_2.raw_locn[0].offset")
	seqno := atoi(t, e.fields("vgs", "-o", "vg_seqno", "vgc")[0][0])

	type damage struct {
		at   int64
		pvck string // what pvck --dump headers reports
	}
	hdr1Bad := damage{hdr1 + 500, "CHECK: mda_header_1.checksum"}
	hdr2Bad := damage{hdr2 + 500, "CHECK: mda_header_2.checksum"}
	text1Bad := damage{text1 + 30, fmt.Sprintf("CHECK: metadata text at %d crc does not match mda_header_1", text1)}
	text2Bad := damage{text2 + 30, fmt.Sprintf("CHECK: metadata text at %d crc does not match mda_header_2", text2)}
	labelBad := damage{512 + 100, "CHECK: label_header.crc"}
	cases := []struct {
		name    string
		damage  []damage
		used    int    // 1-based copy Open must use; 0 = Open must fail
		warn    string // structure named in the warning or error
		errOff  int64
		isLabel bool
	}{
		{"mda1-header-crc", []damage{hdr1Bad}, 2, "mda header 1", hdr1, false},
		{"mda2-header-crc", []damage{hdr2Bad}, 1, "mda header 2", hdr2, false},
		{"mda1-text-crc", []damage{text1Bad}, 2, "metadata text 1", text1, false},
		{"mda2-text-crc", []damage{text2Bad}, 1, "metadata text 2", text2, false},
		{"both-headers", []damage{hdr1Bad, hdr2Bad}, 0, "mda header 1", hdr1, false},
		{"both-texts", []damage{text1Bad, text2Bad}, 0, "metadata text 1", text1, false},
		{"header1-text2", []damage{hdr1Bad, text2Bad}, 0, "mda header 1", hdr1, false},
		{"label-crc", []damage{labelBad}, 0, "label", 512, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := testenv.CopyFile(t, e.img)
			for _, d := range c.damage {
				testenv.XORByte(t, img, d.at, 1) // one bit: a damage only the checksums show
			}
			_, dump := e.pvckHeaders(img)
			for _, d := range c.damage {
				if !strings.Contains(dump, d.pvck) {
					t.Fatalf("pvck does not report %q; the damage is not what the test meant:\n%s", d.pvck, dump)
				}
			}
			pv, err := openPath(t, img)
			if c.used == 0 {
				var fe *lvm.FormatError
				if !errors.As(err, &fe) || !errors.Is(err, lvm.ErrCorrupt) {
					t.Fatalf("Open = %v, want a FormatError", err)
				}
				if fe.Structure != c.warn || fe.Offset != c.errOff {
					t.Errorf("FormatError names %q at %d, want %q at %d (%v)", fe.Structure, fe.Offset, c.warn, c.errOff, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pv.VG == nil || pv.VG.Seqno != int(seqno) {
				t.Fatalf("VG %+v, want seqno %d", pv.VG, seqno)
			}
			if !pv.MDAs[c.used-1].Used || pv.MDAs[2-c.used].Used {
				t.Errorf("copy %d not the one used: %+v", c.used, pv.MDAs)
			}
			if !hasWarning(pv, c.warn, "CRC mismatch") {
				t.Errorf("no warning about %s: %q", c.warn, pv.Warnings)
			}
			if _, ok := pv.VG.LV("lin"); !ok {
				t.Error("LV lin missing")
			}
		})
	}
}

// TestOlderCopy puts an older (valid) metadata copy back into the second
// metadata area: Open must prefer the newer seqno and warn.
func TestOlderCopy(t *testing.T) {
	t.Parallel()
	e := newLoopPV(t, 64<<20, "--metadatacopies", "2")
	e.must("vgcreate", "-s", "1m", "vgo", e.dev)
	m, _ := e.pvckHeaders(e.img)
	hdr2, size2 := num(t, m, "mda_header_2.start"), num(t, m, "mda_header_2.size")
	saved := make([]byte, size2)
	f, _ := testenv.Open(t, e.img)
	if _, err := f.ReadAt(saved, hdr2); err != nil {
		t.Fatal(err)
	}
	e.must("vgchange", "--addtag", "newer", "vgo")
	img := testenv.CopyFile(t, e.img)
	w, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(saved, hdr2); err != nil {
		t.Fatal(err)
	}
	w.Close()
	_, dump := e.pvckHeaders(img)
	if !strings.Contains(dump, "vgname vgo seqno 1") || !strings.Contains(dump, "vgname vgo seqno 2") {
		t.Fatalf("pvck does not show seqnos 1 and 2:\n%s", dump)
	}
	pv, err := openPath(t, img)
	if err != nil {
		t.Fatal(err)
	}
	if pv.VG.Seqno != 2 || !strings.Contains(pv.VG.Raw, `"newer"`) {
		t.Errorf("used seqno %d, raw has tag: %v", pv.VG.Seqno, strings.Contains(pv.VG.Raw, "newer"))
	}
	if !pv.MDAs[0].Used || pv.MDAs[1].Seqno != 1 {
		t.Errorf("MDAs: %+v", pv.MDAs)
	}
	if !hasWarning(pv, "metadata area 2", "older") {
		t.Errorf("no warning about the older copy: %q", pv.Warnings)
	}
}

// TestIgnoredCopy: with vgmetadatacopies 1 lvm marks one of two areas
// RAW_LOCN_IGNORED; that copy is not read and not warned about.
func TestIgnoredCopy(t *testing.T) {
	t.Parallel()
	e := newLoopPV(t, 64<<20, "--metadatacopies", "2")
	e.must("vgcreate", "-s", "1m", "vgi", e.dev)
	e.must("vgchange", "--vgmetadatacopies", "1", "vgi")
	e.must("vgchange", "--addtag", "after", "vgi")
	m, dump := e.pvckHeaders(e.img)
	ignored := 0
	for i := 1; i <= 2; i++ {
		if num(t, m, fmt.Sprintf("mda_header_%d.raw_locn[0].flags", i))&lvm.RawLocnIgnored != 0 {
			ignored = i
		}
	}
	if ignored == 0 {
		t.Fatalf("pvck shows no ignored metadata area:\n%s", dump)
	}
	pv, err := openPath(t, e.img)
	if err != nil {
		t.Fatal(err)
	}
	checkHeaders(t, pv, m, dump)
	if len(pv.Warnings) != 0 {
		t.Errorf("warnings: %q", pv.Warnings)
	}
	if mda := pv.MDAs[ignored-1]; mda.Used || mda.Seqno != 0 || mda.Err != nil {
		t.Errorf("ignored area %d: %+v", ignored, mda)
	}
	if !pv.MDAs[2-ignored].Used || !strings.Contains(pv.VG.Raw, `"after"`) {
		t.Errorf("newest copy not used: %+v", pv.MDAs)
	}
}

// TestTruncated cuts a PV image short at several points.
func TestTruncated(t *testing.T) {
	t.Parallel()
	e := newLoopPV(t, 64<<20, "--metadatacopies", "2")
	e.must("vgcreate", "-s", "1m", "vgt", e.dev)
	for _, c := range []struct {
		size      int64
		notLVM    bool
		structure string
	}{
		{0, true, ""},
		{1000, true, ""}, // sector 1 (the label) is incomplete
		{1024, false, "mda header 1"},
		{8192, false, "mda header 1"},
		{32 << 20, false, "physical volume"},
		{64<<20 - 512, false, ""}, // only the second metadata area is cut
	} {
		t.Run(strconv.FormatInt(c.size, 10), func(t *testing.T) {
			img := testenv.CopyFile(t, e.img)
			if err := os.Truncate(img, c.size); err != nil {
				t.Fatal(err)
			}
			pv, err := openPath(t, img)
			if c.notLVM {
				if !errors.Is(err, lvm.ErrNotLVM) {
					t.Fatalf("Open = %v, want ErrNotLVM", err)
				}
				return
			}
			if c.structure == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !hasWarning(pv, "metadata area 2", "mda header 2", "past the end") || !hasWarning(pv, "truncated") {
					t.Errorf("warnings: %q", pv.Warnings)
				}
				return
			}
			var fe *lvm.FormatError
			if !errors.As(err, &fe) || fe.Structure != c.structure {
				t.Fatalf("Open = %v, want a FormatError for %s", err, c.structure)
			}
			t.Log(err)
		})
	}
}

// TestWrappedMetadata fills a 32 KiB metadata area with large metadata
// until lvm writes a copy that wraps around the end of the circular buffer.
func TestWrappedMetadata(t *testing.T) {
	t.Parallel()
	e := newLoopPV(t, 64<<20, "--metadatasize", "32k", "--dataalignment", "4k")
	e.must("vgcreate", "-s", "1m", "vgw", e.dev)
	// About 6 KiB of tags make each copy big enough to wrap within a few
	// writes (lvm keeps copies under half the area).
	var tags []string
	for i := 0; i < 60; i++ {
		tags = append(tags, fmt.Sprintf(`"tag%03d_%s"`, i, strings.Repeat("x", 90)))
	}
	text := "\ttags = [" + strings.Join(tags, ", ") + "]\n" + layoutText()
	wrapped := false
	for i := 0; i < 12 && !wrapped; i++ {
		if text != "" {
			e.restoreWithLVs("vgw", text)
		} else {
			e.must("vgchange", "--addtag", fmt.Sprintf("step%d", i), "vgw")
		}
		m, _ := e.pvckHeaders(e.img)
		off, size := num(t, m, "mda_header_1.raw_locn[0].offset"), num(t, m, "mda_header_1.raw_locn[0].size")
		wrapped = off+size > num(t, m, "mda_header_1.size")
		if wrapped {
			t.Logf("write %d: text at offset %d, %d bytes, wraps in a %d-byte area", i+1, off, size, num(t, m, "mda_header_1.size"))
		}
		text = "" // later writes only add a tag (vgchange needs no device-mapper)
	}
	if !wrapped {
		t.Fatal("lvm never wrote wrapped metadata")
	}
	pv := checkAgainstTools(t, e, "vgw")
	r := pv.MDAs[0].Header.RawLocns[0]
	if r.Offset+r.Size <= pv.MDAs[0].Header.Size {
		t.Errorf("raw locn %+v does not wrap", r)
	}
	if !strings.Contains(pv.VG.Raw, "tag059_") {
		t.Error("wrapped text lost its tail")
	}
}
