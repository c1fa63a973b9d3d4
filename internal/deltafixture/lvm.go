package deltafixture

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// Segment is a linear LV segment: Count extents of the LV from extent LVStart, on the PV from its
// extent PE.
type Segment struct{ LVStart, PE, Count int64 }

// LVMSet is a 64 MiB encrypted volume whose plaintext is an LVM2 PV (VG deltavg, 1 MiB extents) in two
// states under one volume key: in state 1 LV datalv holds an ext4 filesystem (4 KiB blocks) on one
// segment, followed on the PV by LV smalllv (random bytes); in state 2 datalv is extended by a second
// segment after smalllv and a gap of free extents, its ext4 grown to fill it (resize2fs) and a file
// written that does not fit in the first segment's free space.
type LVMSet struct {
	Dir      string
	VK, Pass string
	S1, S2   State
	// ExtentSize and PEStart are in bytes, as vgcfgbackup reads them back.
	ExtentSize, PEStart int64
	// Segs1 and Segs2 are datalv's segments in each state (vgcfgbackup's readback).
	Segs1, Segs2 []Segment
	// Files1 and Files2 are datalv's files in each state ("fill" for /fill); NewFile is the one state 2 adds.
	Files1, Files2 map[string][]byte
	NewFile        string
}

// LVM layout, in extents of lvmExtent bytes: datalv's first segment, smalllv, a gap, datalv's second.
const (
	lvmExtent             = 1 << 20
	lvmSeg1, lvmSmall     = 16, 4
	lvmGap, lvmSeg2       = 4, 16
	lvmDataLV, lvmSmallLV = "Delta0-Data-LV00-0000-0000-0000-000001", "Delta0-Smal-LV00-0000-0000-0000-000002"
)

// BuildLVM makes the LVMSet. The PV and VG are written by pvcreate and vgcreate on a loop device over
// the plaintext, the LVs by vgcfgrestore of vgcfgbackup's text with a logical_volumes section added
// (nothing is activated: device-mapper is not needed); the layout is read back with vgcfgbackup and
// checked. The ext4 images are made as files and copied to the LV's extents; state 2's LV content is
// gathered from both segments, grown with resize2fs, written with debugfs -w and scattered back.
// It skips the test when a tool, root or a loop device is missing.
func BuildLVM(t testing.TB) *LVMSet {
	t.Helper()
	testenv.Need(t, "cryptsetup", "mkfs.ext4", "debugfs", "e2fsck", "resize2fs", "pvcreate", "vgcreate",
		"vgcfgbackup", "vgcfgrestore", "losetup")
	testenv.NeedRoot(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(16, 2))
	s := &LVMSet{Dir: dir,
		VK:   testenv.WriteFile(t, dir, "vk", testenv.RandBytes(rng, 64)),
		Pass: testenv.WriteFile(t, dir, "pass", []byte("delta-lvm-passphrase")), NewFile: "new"}

	// State 1: the PV and VG, then datalv and smalllv by vgcfgrestore.
	plain1 := testenv.SparseFile(t, dir, "plain1.img", 64<<20)
	dev, detach := testenv.AttachLoop(t, plain1)
	env := newLVMEnv(t, dev)
	env.must("pvcreate", "-y", "-ff", "--norestorefile", dev)
	env.must("vgcreate", "-s", strconv.Itoa(lvmExtent>>10)+"k", "deltavg", dev)
	base := testenv.VGBackup(t, env.sysDir, "deltavg")
	withLVs := func(seqno int, data ...Segment) string {
		segs := make([]string, len(data))
		for k, g := range data {
			segs[k] = lvmSegment(k+1, g)
		}
		text := testenv.AddToVG(t, base, "\tlogical_volumes {\n"+lvmLV("datalv", lvmDataLV, segs...)+
			lvmLV("smalllv", lvmSmallLV, lvmSegment(1, Segment{0, lvmSeg1, lvmSmall}))+"\n\t}")
		return regexp.MustCompile(`(?m)^(\s*seqno = )\d+$`).ReplaceAllString(text, "${1}"+strconv.Itoa(seqno))
	}
	want1 := []Segment{{0, 0, lvmSeg1}}
	want2 := []Segment{{0, 0, lvmSeg1}, {lvmSeg1, lvmSeg1 + lvmSmall + lvmGap, lvmSeg2}}
	testenv.VGRestore(t, env.sysDir, "deltavg", withLVs(10, want1...))
	s.ExtentSize, s.PEStart, s.Segs1 = env.layout()
	detach()
	if s.ExtentSize != lvmExtent || fmt.Sprint(s.Segs1) != fmt.Sprint(want1) {
		t.Fatalf("deltafixture: LVM wrote extent size %d, datalv %v; want %d, %v", s.ExtentSize, s.Segs1, lvmExtent, want1)
	}

	// datalv's ext4: nearly full, so that state 2's new file must take the new segment's extents.
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Files1 = map[string][]byte{"keep": testenv.RandBytes(rng, 3<<20), "fill": testenv.RandBytes(rng, 6<<20+12345),
		"etc/conf": []byte("state 1\n")}
	for name, b := range s.Files1 {
		testenv.WriteFile(t, tree, name, b)
	}
	fs1 := filepath.Join(dir, "datalv1.ext4")
	testenv.Run(t, "mkfs.ext4", "-q", "-b", "4096", "-d", tree, fs1, strconv.Itoa(lvmSeg1*lvmExtent>>10)+"k")
	s.putLV(t, plain1, fs1, s.Segs1)
	small := testenv.WriteFile(t, dir, "smalllv", testenv.RandBytes(rng, lvmSmall*lvmExtent))
	s.putLV(t, plain1, small, []Segment{{0, lvmSeg1, lvmSmall}})
	s.S1 = Encrypt(t, dir, "s1", plain1, s.VK, s.Pass)

	// State 2: datalv extended by vgcfgrestore on a copy, its ext4 grown and written to.
	plain2 := filepath.Join(dir, "plain2.img")
	testenv.Run(t, "cp", "--sparse=always", plain1, plain2)
	dev, detach = testenv.AttachLoop(t, plain2)
	env = newLVMEnv(t, dev)
	testenv.VGRestore(t, env.sysDir, "deltavg", withLVs(11, want2...))
	var es, ps int64
	es, ps, s.Segs2 = env.layout()
	detach()
	if es != s.ExtentSize || ps != s.PEStart || fmt.Sprint(s.Segs2) != fmt.Sprint(want2) {
		t.Fatalf("deltafixture: after the extension LVM reads extent size %d, pe_start %d, datalv %v; want %d, %d, %v",
			es, ps, s.Segs2, s.ExtentSize, s.PEStart, want2)
	}
	fs2 := filepath.Join(dir, "datalv2.ext4")
	s.ExtractLV(t, plain2, s.Segs2, fs2) // the new segment reads as the free extents' zeros
	testenv.Run(t, "e2fsck", "-fy", fs2)
	testenv.Run(t, "resize2fs", fs2)
	s.Files2 = map[string][]byte{"keep": s.Files1["keep"], "fill": s.Files1["fill"], "etc/conf": s.Files1["etc/conf"],
		s.NewFile: testenv.RandBytes(rng, 6<<20+777)}
	host := testenv.WriteFile(t, dir, "new.2", s.Files2[s.NewFile])
	if out, err := exec.Command("debugfs", "-w", "-R", "write "+host+" /"+s.NewFile, fs2).CombinedOutput(); err != nil ||
		bytes.Contains(out, []byte("No space")) {
		t.Fatalf("deltafixture: debugfs -w write /%s: %v\n%s", s.NewFile, err, out)
	}
	// The new file must lie (partly) in the new segment, or the test would not exercise it.
	blocks := strings.Fields(testenv.Run(t, "debugfs", "-R", "blocks /"+s.NewFile, fs2))
	beyond := 0
	for _, b := range blocks {
		if n, err := strconv.ParseInt(b, 10, 64); err == nil && n*4096 >= lvmSeg1*lvmExtent {
			beyond++
		}
	}
	if beyond == 0 {
		t.Fatalf("deltafixture: /%s has no block in datalv's new segment (%d blocks)", s.NewFile, len(blocks))
	}
	s.putLV(t, plain2, fs2, s.Segs2)
	s.S2 = Encrypt(t, dir, "s2", plain2, s.VK, s.Pass)
	return s
}

// ExtractLV copies the LV with segments segs out of the PV image pv (byte 0 of the PV at byte 0 of
// the image) into the file dst.
func (s *LVMSet) ExtractLV(t testing.TB, pv string, segs []Segment, dst string) {
	t.Helper()
	in, err := os.Open(pv)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	for _, g := range segs {
		r := io.NewSectionReader(in, s.PEStart+g.PE*s.ExtentSize, g.Count*s.ExtentSize)
		if _, err := io.Copy(io.NewOffsetWriter(out, g.LVStart*s.ExtentSize), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// putLV writes the LV content file src to its extents segs in the PV image pv.
func (s *LVMSet) putLV(t testing.TB, pv, src string, segs []Segment) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(pv, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	for _, g := range segs {
		r := io.NewSectionReader(in, g.LVStart*s.ExtentSize, g.Count*s.ExtentSize)
		if _, err := io.Copy(io.NewOffsetWriter(out, s.PEStart+g.PE*s.ExtentSize), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func lvmSegment(n int, g Segment) string {
	return fmt.Sprintf("\t\t\tsegment%d {\n\t\t\t\tstart_extent = %d\n\t\t\t\textent_count = %d\n\t\t\t\ttype = \"striped\"\n"+
		"\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [\"pv0\", %d]\n\t\t\t}\n", n, g.LVStart, g.Count, g.PE)
}

func lvmLV(name, id string, segs ...string) string {
	return fmt.Sprintf("\t\t%s {\n\t\t\tid = %q\n\t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\t\t\tflags = []\n"+
		"\t\t\tsegment_count = %d\n%s\t\t}\n", name, id, len(segs), strings.Join(segs, ""))
}

// lvmEnv runs lvm commands with a private configuration that sees one loop device only, keeps no
// backups, archives, hints or devices file and never talks to udev or device-mapper.
type lvmEnv struct {
	t      testing.TB
	sysDir string
}

func newLVMEnv(t testing.TB, dev string) *lvmEnv {
	t.Helper()
	return &lvmEnv{t: t, sysDir: testenv.LVMSystemDir(t, dev)}
}

func (e *lvmEnv) must(args ...string) string {
	e.t.Helper()
	return testenv.RunLVM(e.t, e.sysDir, args...)
}

// layout reads back, with vgcfgbackup, the extent size and pe_start (bytes) and datalv's segments.
func (e *lvmEnv) layout() (extentSize, peStart int64, segs []Segment) {
	e.t.Helper()
	text := testenv.VGBackup(e.t, e.sysDir, "deltavg")
	num := func(re string) int64 {
		m := regexp.MustCompile(`(?m)^\s*` + re + ` = (\d+)`).FindStringSubmatch(text)
		if m == nil {
			e.t.Fatalf("deltafixture: no %s in vgcfgbackup's text:\n%s", re, text)
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n
	}
	extentSize, peStart = num("extent_size")*512, num("pe_start")*512
	i := strings.Index(text, "\t\tdatalv {")
	if i < 0 {
		e.t.Fatalf("deltafixture: no datalv in vgcfgbackup's text:\n%s", text)
	}
	end := strings.Index(text[i:], "\n\t\t}\n")
	re := regexp.MustCompile(`start_extent = (\d+)\s+extent_count = (\d+)[^\]]*stripes = \[\s*"pv0", (\d+)`)
	for _, m := range re.FindAllStringSubmatch(text[i:i+end], -1) {
		a, _ := strconv.ParseInt(m[1], 10, 64)
		b, _ := strconv.ParseInt(m[2], 10, 64)
		c, _ := strconv.ParseInt(m[3], 10, 64)
		segs = append(segs, Segment{LVStart: a, Count: b, PE: c})
	}
	return extentSize, peStart, segs
}
