package vhd_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/vhd"
)

// TestReadQemuImages converts raw images with qemu-img to every VHD flavour
// qemu writes and checks that Open detects the kind and reads the raw
// contents back everywhere.
func TestReadQemuImages(t *testing.T) {
	testenv.Need(t, "qemu-img")
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))

	holes := make([]byte, 64*vhd.MiB)
	for _, c := range []struct{ off, n int }{
		{0, 512}, {3*vhd.MiB + 100, 100 << 10}, {10*vhd.MiB - 7, 20}, // crosses a 2 MiB block boundary
		{40 * vhd.MiB, 1}, {64*vhd.MiB - 512, 512},
	} {
		copy(holes[c.off:], testenv.RandBytes(r, c.n))
	}
	raws := []struct {
		name string
		data []byte
	}{
		{"20MiB", testenv.RandBytes(r, 20*vhd.MiB)},
		{"20MiB+7s", testenv.RandBytes(r, 20*vhd.MiB+7*512)},
		{"20MiB+2049s", testenv.RandBytes(r, 20*vhd.MiB+2049*512)},
		{"64MiB-holes", holes},
	}
	for _, raw := range raws {
		rawPath := testenv.WriteFile(t, dir, raw.name+".raw", raw.data)
		for _, sub := range []string{"fixed,force_size", "fixed", "dynamic", "dynamic,force_size"} {
			t.Run(raw.name+"/"+sub, func(t *testing.T) {
				out := filepath.Join(dir, raw.name+"-"+strings.ReplaceAll(sub, ",", "-")+".vhd")
				testenv.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat="+sub, rawPath, out)
				qi := info(t, out, "vpc")
				im := openFile(t, out)

				dynamic := strings.HasPrefix(sub, "dynamic")
				wantKind, wantType := vhd.Fixed, vhd.TypeFixed
				if dynamic {
					wantKind, wantType = vhd.Dynamic, vhd.TypeDynamic
				}
				if im.Kind != wantKind || im.Footer.DiskType != wantType {
					t.Fatalf("Kind %v, DiskType %v; want %v, %v", im.Kind, im.Footer.DiskType, wantKind, wantType)
				}
				if im.Size() != qi.VirtualSize || int64(im.Footer.CurrentSize) != qi.VirtualSize {
					t.Fatalf("Size %d, CurrentSize %d; qemu-img info says %d", im.Size(), im.Footer.CurrentSize, qi.VirtualSize)
				}
				force := strings.HasSuffix(sub, "force_size")
				if force {
					if im.Size() != int64(len(raw.data)) {
						t.Fatalf("force_size: Size %d, raw %d", im.Size(), len(raw.data))
					}
					if im.Footer.Geometry != vhd.MaxGeometry || string(im.Footer.CreatorApp[:]) != "qem2" {
						t.Errorf("force_size footer: geometry %+v, creator %q", im.Footer.Geometry, im.Footer.CreatorApp)
					}
				} else {
					// Without force_size qemu rounds up to a CHS size computed
					// with the specification's algorithm: an oracle for GeometryFor.
					g := im.Footer.Geometry
					if g.Size() != im.Size() || vhd.GeometryFor(im.Size()) != g || im.Size() < int64(len(raw.data)) {
						t.Errorf("geometry %+v (%d bytes), GeometryFor %+v, size %d, raw %d",
							g, g.Size(), vhd.GeometryFor(im.Size()), im.Size(), len(raw.data))
					}
				}
				if dynamic {
					h := im.Header
					if h == nil || h.BlockSize != 2*vhd.MiB || int64(h.MaxTableEntries) != (im.Size()+2*vhd.MiB-1)/(2*vhd.MiB) {
						t.Errorf("dynamic header %+v", h)
					}
				} else if im.Header != nil || im.Trailing != 0 {
					t.Errorf("fixed: Header %v, Trailing %d", im.Header, im.Trailing)
				}
				checkContents(t, im, raw.data, uint64(len(raw.data)))
				total := checkAllocated(t, im, raw.data)
				if raw.name == "64MiB-holes" && dynamic {
					// Five small runs touch at most 6 blocks of 2 MiB.
					if total > 6*2*vhd.MiB {
						t.Errorf("Allocated covers %d bytes of %d", total, im.Size())
					}
				} else if total != im.Size() && !dynamic {
					t.Errorf("fixed Allocated covers %d bytes of %d", total, im.Size())
				}
			})
		}
	}
}

// TestGeometryMatchesQemu compares GeometryFor with the geometry qemu-img
// writes for sizes across the specification's branches (spt 17, 31, 63, 255).
func TestGeometryMatchesQemu(t *testing.T) {
	testenv.Need(t, "qemu-img")
	dir := t.TempDir()
	for _, size := range []string{"1M", "20M", "100M", "500M", "1G", "4G", "8G", "30G", "64G", "127G", "200G"} {
		p := filepath.Join(dir, size+".vhd")
		testenv.Run(t, "qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic", p, size)
		qi := info(t, p, "vpc")
		im := openFile(t, p)
		f := im.Footer
		if int64(f.CurrentSize) != qi.VirtualSize || im.Size() != qi.VirtualSize {
			t.Errorf("%s: CurrentSize %d, Size %d, qemu %d", size, f.CurrentSize, im.Size(), qi.VirtualSize)
		}
		if g := vhd.GeometryFor(int64(f.CurrentSize)); g != f.Geometry {
			t.Errorf("%s: GeometryFor(%d) = %+v, qemu wrote %+v", size, f.CurrentSize, g, f.Geometry)
		}
		if len(im.Allocated()) != 0 {
			t.Errorf("%s: empty image has Allocated %v", size, im.Allocated())
		}
		p4 := make([]byte, 4096)
		p4[0] = 1
		if n, err := im.ReadAt(p4, im.Size()-4096); n != 4096 || err != nil || p4[0] != 0 {
			t.Errorf("%s: reading the empty tail: %d, %v, %x", size, n, err, p4[0])
		}
	}
}

// TestFixedFooterQemu appends our footer to raw images and has qemu-img read
// the result.
func TestFixedFooterQemu(t *testing.T) {
	testenv.Need(t, "qemu-img")
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(3, 4))
	chsExact := vhd.Geometry{Cylinders: 964, Heads: 8, SectorsPerTrack: 17}.Size() // 67125248
	for _, c := range []struct {
		name     string
		data     int64 // bytes of random content
		size     int64 // virtual size
		specGeom bool  // expect the specification's geometry rather than MaxGeometry
	}{
		{"azure-21MiB", 20*vhd.MiB + 3*512, vhd.AzureSize(20*vhd.MiB + 3*512), false},
		{"azure-30MiB", 30 * vhd.MiB, vhd.AzureSize(30 * vhd.MiB), false},
		{"odd", 20*vhd.MiB + 3*512, 20*vhd.MiB + 3*512, false},
		{"chs-exact", chsExact, chsExact, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := make([]byte, c.size)
			copy(raw, testenv.RandBytes(r, int(c.data)))
			f, err := vhd.NewFixedFooter(c.size)
			if err != nil {
				t.Fatal(err)
			}
			if (f.Geometry != vhd.MaxGeometry) != c.specGeom {
				t.Errorf("geometry %+v, want spec geometry: %v", f.Geometry, c.specGeom)
			}
			fb, err := f.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			rawPath := testenv.WriteFile(t, dir, c.name+".raw", raw)
			out := testenv.WriteFile(t, dir, c.name+".vhd", append(raw, fb...))

			qi := info(t, out, "vpc")
			if qi.Format != "vpc" || qi.VirtualSize != c.size {
				t.Fatalf("qemu-img info: %+v, want vpc with virtual-size %d", qi, c.size)
			}
			if msg := testenv.Run(t, "qemu-img", "compare", "-s", "-f", "vpc", "-F", "raw", out, rawPath); !strings.Contains(msg, "identical") {
				t.Fatalf("qemu-img compare: %s", msg)
			}
			// qemu-img convert back to raw reads our footer's size too.
			back := filepath.Join(dir, c.name+".back")
			testenv.Run(t, "qemu-img", "convert", "-f", "vpc", "-O", "raw", out, back)
			if st, err := os.Stat(back); err != nil || st.Size() != c.size {
				t.Fatalf("qemu-img convert back: %v, %v", st, err)
			}

			im := openFile(t, out)
			if im.Kind != vhd.Fixed || im.Size() != c.size || im.Trailing != 0 {
				t.Fatalf("Open: kind %v size %d trailing %d", im.Kind, im.Size(), im.Trailing)
			}
			if *im.Footer != *f {
				t.Errorf("parsed footer %+v\nwant %+v", *im.Footer, *f)
			}
			checkContents(t, im, raw, 7)
		})
	}
}

// TestBuildDynamicQemu checks the dynamic-image builder used by the other
// tests and the fuzz seeds against qemu, with a non-default block size.
func TestBuildDynamicQemu(t *testing.T) {
	testenv.Need(t, "qemu-img")
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(5, 6))
	disk := testenv.RandBytes(r, 64<<10+3*512)
	for i := 8 << 10; i < 24<<10; i++ { // blocks 2..5 of 4 KiB are zero and left unallocated
		disk[i] = 0
	}
	img := buildDynamic(disk, 4096, func(b int) bool { return b < 2 || b > 5 })
	p := testenv.WriteFile(t, dir, "built.vhd", img)
	rawPath := testenv.WriteFile(t, dir, "built.raw", disk)
	if qi := info(t, p, "vpc"); qi.VirtualSize != int64(len(disk)) {
		t.Fatalf("qemu-img info: %+v", qi)
	}
	// Not strict (-s): that also compares allocation status.
	if msg := testenv.Run(t, "qemu-img", "compare", "-f", "vpc", "-F", "raw", p, rawPath); !strings.Contains(msg, "identical") {
		t.Fatalf("qemu-img compare: %s", msg)
	}
	im := openFile(t, p)
	checkContents(t, im, disk, 9)
	if got, want := fmt.Sprint(im.Allocated()), fmt.Sprint([]extent.Range{{Off: 0, Len: 8192}, {Off: 24576, Len: int64(len(disk)) - 24576}}); got != want {
		t.Errorf("Allocated %s, want %s", got, want)
	}
}
