package luksconv

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/lvm"
	"github.com/luksconv/luksconv/xfs"
)

// stripeView is stripe k of n (chunk bytes each) of an LV image, as the PV holding it reads from
// pe_start on: PV byte pe+L is LV byte (L/chunk*n+k)*chunk + L%chunk.
type stripeView struct {
	lv          io.ReaderAt
	pe, chunk   int64
	k, n, bytes int64
}

func (s stripeView) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		l := off + int64(done) - s.pe
		if l < 0 || l >= s.bytes {
			clear(p[done:min(len(p), done+int(s.chunk))])
			done = min(len(p), done+int(s.chunk))
			continue
		}
		m := min(int64(len(p)-done), s.chunk-l%s.chunk)
		if _, err := s.lv.ReadAt(p[done:done+int(m)], (l/s.chunk*s.n+s.k)*s.chunk+l%s.chunk); err != nil {
			return done, err
		}
		done += int(m)
	}
	return done, nil
}

// TestSpanningStripedLVMemory: an LV striped over the PVs of two data disks (LVM-on-crypt RAID 0, the
// usual way to add up Azure disks' throughput) is read by the whole-VM plan through its VG. That cost
// memory in proportion to the LV's size over its stripe size: VG.Map of the whole LV to learn which
// disks it is on, and of each free-space range, made one piece per 64 KiB chunk, and each chunk
// became a span of its own (2 GB for an LV of 512 GiB, so a 16 TiB array ran out of memory). The XFS
// is made by mkfs.xfs on a sparse 64 GiB file, its stripes served as the two PVs.
func TestSpanningStripedLVMemory(t *testing.T) {
	testenv.Need(t, "mkfs.xfs")
	const (
		chunk  = 64 << 10
		es     = 4 << 20
		pe     = 1 << 20
		lvSize = 64 << 30
	)
	img := testenv.SparseFile(t, t.TempDir(), "lv.img", lvSize)
	testenv.Run(t, "mkfs.xfs", "-q", "-d", fmt.Sprintf("su=%d,sw=2", chunk), img)
	f, _ := testenv.Open(t, img)
	vg, err := lvm.ParseMetadata([]byte(fmt.Sprintf(`vg {
	id = "v"
	seqno = 1
	extent_size = %d
	physical_volumes {
		pv0 { id = "a" pe_start = %d pe_count = %d }
		pv1 { id = "b" pe_start = %d pe_count = %d }
	}
	logical_volumes {
		data {
			id = "d"
			status = ["VISIBLE"]
			segment_count = 1
			segment1 { start_extent = 0 extent_count = %d type = "striped" stripe_count = 2 stripe_size = %d stripes = ["pv0", 0, "pv1", 0] }
		}
	}
}`, es/512, pe/512, lvSize/es/2, pe/512, lvSize/es/2, lvSize/es, chunk/512)))
	if err != nil {
		t.Fatal(err)
	}
	lv, _ := vg.LV("data")
	byName := map[string]vgMember{}
	for k, name := range []string{"pv0", "pv1"} {
		byName[name] = vgMember{lun: k, r: stripeView{lv: f, pe: pe, chunk: chunk, k: int64(k), n: 2, bytes: lvSize / 2}, out: 1 << 20}
	}
	res := &vmVGs{free: map[int][]span{}, logs: map[int][]span{}, lvs: map[int]map[string]bool{}}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	readSpanningLV(res, vg, lv, byName, false)
	runtime.ReadMemStats(&m1)
	if len(res.warnings) > 0 {
		t.Fatalf("warnings: %v", res.warnings)
	}
	// The same bytes as XFS's free space mapped by VG.Map, range by range, merged per LUN.
	type r struct{ lo, hi int64 }
	merge := func(rs []r, x r) []r {
		if k := len(rs) - 1; k >= 0 && rs[k].hi == x.lo {
			rs[k].hi = x.hi
			return rs
		}
		return append(rs, x)
	}
	fs, err := xfs.Open(f, lvSize)
	if err != nil {
		t.Fatal(err)
	}
	frees, err := fs.FreeSpace()
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]r{}
	for _, fr := range frees {
		ext, err := vg.Map(lv, fr.Off, fr.Len)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ext {
			m := byName[e.PV]
			want[m.lun] = merge(want[m.lun], r{m.out + e.PVOff, m.out + e.PVOff + e.Len})
		}
	}
	for l := range 2 {
		spans := slices.Clone(res.free[l])
		sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
		var got []r
		for _, s := range spans {
			got = merge(got, r{s.off, s.off + s.n})
		}
		if !slices.Equal(got, want[l]) {
			t.Errorf("LUN %d: free %v, want %v", l, got, want[l])
		}
		t.Logf("LUN %d: %d free spans, %d log spans", l, len(res.free[l]), len(res.logs[l]))
	}
	if got := m1.TotalAlloc - m0.TotalAlloc; got > 64<<20 {
		t.Errorf("reading the %d GiB striped LV allocated %d MiB", lvSize>>30, got>>20)
	}
	for l := range 2 {
		if n := len(res.free[l]); n > 1000 {
			t.Errorf("LUN %d: %d free spans for a new XFS (one per %d KiB chunk)", l, n, chunk>>10)
		}
	}
}
