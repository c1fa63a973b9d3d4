package luksconv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/lvm"
	"github.com/luksconv/luksconv/xfs"
)

// TestLVMFreeStripedOnePV: a hostile PV whose LV is striped twice over that same PV in 4 KiB chunks
// (metadata by vgcfgrestore, which takes it; lvcreate would not make it), holding an 8 GiB XFS made
// by mkfs.xfs. Any disk's PV is read this way (a plain PV beside the LUKS volume, or the PV inside
// it), and each free range of the LV's filesystem was mapped through PV.Map: one piece, and one
// span, per 4 KiB chunk (2M spans and 200 MiB here; the memory of a fleet worker for a few TiB). The
// spans must cover the same PV bytes as before, merged per stripe.
// stripedOnePV makes a PV image of lvSize+64 MiB with VG stripevg (pvcreate, vgcreate and vgcfgrestore on
// a loop device) whose LV data is striped twice over that same PV in 4 KiB chunks, and writes the
// image lvImg of the LV's content into it through the stripes (its data only, found with SEEK_DATA).
func stripedOnePV(t *testing.T, lvSize int64, lvImg string) (f *os.File, pvSize int64, pv *lvm.PV, data *lvm.LV) {
	testenv.Need(t, "pvcreate", "vgcreate", "vgcfgbackup", "vgcfgrestore", "losetup")
	testenv.NeedRoot(t)
	const es = 4 << 20
	pvSize = lvSize + 64<<20
	img := testenv.SparseFile(t, t.TempDir(), "pv.img", pvSize)
	dev, detach := testenv.AttachLoop(t, img)
	sys := testenv.LVMSystemDir(t, dev)
	testenv.RunLVM(t, sys, "pvcreate", "-y", "-ff", "--norestorefile", dev)
	testenv.RunLVM(t, sys, "vgcreate", "-s", "4m", "stripevg", dev)
	per := lvSize / es / 2
	lv := fmt.Sprintf("\tlogical_volumes {\n\t\tdata {\n\t\t\tid = \"DataLV-0000-0000-0000-0000-0000-000001\"\n\t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n"+
		"\t\t\tflags = []\n\t\t\tsegment_count = 1\n\t\t\tsegment1 {\n\t\t\t\tstart_extent = 0\n\t\t\t\textent_count = %d\n\t\t\t\ttype = \"striped\"\n"+
		"\t\t\t\tstripe_count = 2\n\t\t\t\tstripe_size = 8\n\t\t\t\tstripes = [\"pv0\", 0, \"pv0\", %d]\n\t\t\t}\n\t\t}\n\t}", 2*per, per)
	testenv.VGRestore(t, sys, "stripevg", testenv.AddToVG(t, testenv.VGBackup(t, sys, "stripevg"), lv))
	detach()

	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if pv, err = lvm.Open(f, pvSize); err != nil || pv.VG == nil {
		t.Fatalf("the restored PV: %v", err)
	}
	data, _ = pv.VG.LV("data")
	src, _ := testenv.Open(t, lvImg)
	buf := make([]byte, 1<<20)
	for off := int64(0); off < lvSize; {
		d, err := src.Seek(off, 3) // SEEK_DATA
		if err != nil {
			break
		}
		n, _ := src.ReadAt(buf, d)
		ext, err := pv.Map(data, d, int64(n))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ext {
			if _, err := f.WriteAt(buf[e.LVOff-d:e.LVOff-d+e.Len], e.PVOff); err != nil {
				t.Fatal(err)
			}
		}
		off = d + int64(n)
	}
	return f, pvSize, pv, data
}

// TestLVMFreeStripedOnePV: a hostile PV whose LV is striped twice over that same PV in 4 KiB chunks
// (metadata by vgcfgrestore, which takes it; lvcreate would not make it), holding an 8 GiB XFS made
// by mkfs.xfs. Any disk's PV is read this way (a plain PV beside the LUKS volume, or the PV inside
// it), and each free range of the LV's filesystem was mapped through PV.Map: one piece, and one
// span, per 4 KiB chunk (2M spans and 842 MiB here; the memory of a fleet worker for a few TiB). The
// spans must cover the same PV bytes as before, merged per stripe.
func TestLVMFreeStripedOnePV(t *testing.T) {
	testenv.Need(t, "mkfs.xfs")
	const lvSize = 8 << 30
	fsImg := testenv.SparseFile(t, t.TempDir(), "lv.xfs", lvSize)
	testenv.Run(t, "mkfs.xfs", "-q", fsImg)
	f, pvSize, pv, data := stripedOnePV(t, lvSize, fsImg)

	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	spans, _, warns := lvmFree(f, pvSize, 0, 0, "vol", "LVM", map[string]bool{})
	runtime.ReadMemStats(&m1)
	var fsSpans []span
	for _, s := range spans {
		if strings.HasPrefix(s.why, "xfs free space") {
			fsSpans = append(fsSpans, s)
		}
	}
	if len(fsSpans) == 0 {
		t.Fatalf("no XFS free space found in the striped LV; warnings %v", warns)
	}
	// The same PV bytes as XFS's free space mapped by PV.Map range by range.
	fs, err := xfs.Open(pv.LVReader(f, data), data.Size)
	if err != nil {
		t.Fatal(err)
	}
	frees, err := fs.FreeSpace()
	if err != nil {
		t.Fatal(err)
	}
	var want, got []span
	for _, fr := range frees {
		ext, err := pv.Map(data, fr.Off, fr.Len)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ext {
			want = append(want, span{e.PVOff, e.Len, ""})
		}
	}
	for _, s := range fsSpans {
		got = append(got, span{s.off, s.n, ""})
	}
	if w, g := mergeSpans(want), mergeSpans(got); fmt.Sprint(w) != fmt.Sprint(g) {
		t.Errorf("XFS free spans cover %v, want %v", g, w)
	}
	t.Logf("%d XFS free spans", len(fsSpans))
	if len(fsSpans) > 1000 {
		t.Errorf("%d XFS free spans for a new %d GiB XFS (one per 4 KiB chunk)", len(fsSpans), lvSize>>30)
	}
	if a := m1.TotalAlloc - m0.TotalAlloc; a > 64<<20 {
		t.Errorf("lvmFree allocated %d MiB", a>>20)
	}
}

// mergeSpans sorts spans and merges those that touch.
func mergeSpans(in []span) []span {
	s := append([]span(nil), in...)
	sort.Slice(s, func(i, j int) bool { return s[i].off < s[j].off })
	var out []span
	for _, x := range s {
		if k := len(out) - 1; k >= 0 && out[k].off+out[k].n >= x.off {
			out[k].n = max(out[k].n, x.off+x.n-out[k].off)
			continue
		}
		out = append(out, x)
	}
	return out
}

// TestCryptOnLVMStripedOnePV: ADE's LUKS device in an LV (crypt-on-LVM) that is striped twice over
// its one PV in 4 KiB chunks, as a hostile disk's metadata may say (vgcfgrestore takes it; lvcreate
// stripes over distinct PVs only). The plan mapped the payload to the LV's start chunk by chunk: a
// region per 4 KiB, 2M regions for 8 GiB, so a TiB LV exhausts the memory. Such an LV is refused as
// unsupported (exit 4). The LUKS2 header is cryptsetup luksFormat's.
func TestCryptOnLVMStripedOnePV(t *testing.T) {
	testenv.Need(t, "cryptsetup")
	const lvSize = 8 << 30
	dir := t.TempDir()
	luksImg := testenv.SparseFile(t, dir, "lv.luks", lvSize)
	key := testenv.WriteFile(t, dir, "key", []byte("striped crypt-on-LVM passphrase"))
	testenv.Run(t, "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", "--key-file", key, luksImg)
	f, _, _, _ := stripedOnePV(t, lvSize, luksImg)

	src, err := OpenFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	p, err := NewPlan(context.Background(), src, PlanOptions{KeyFile: key, AllowUnknownContent: true,
		lv: &lvTarget{vg: "stripevg", lv: "data"}})
	runtime.ReadMemStats(&m1)
	if err == nil {
		t.Errorf("planned, in %d regions (%d MiB allocated)", len(p.Regions), (m1.TotalAlloc-m0.TotalAlloc)>>20)
		p.Close()
	} else if !errors.Is(err, lvm.ErrUnsupported) {
		t.Errorf("got %v, want lvm.ErrUnsupported", err)
	}
	t.Logf("%v", err)
}
