package vhd_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/vhd"
)

// qemuDynamic returns a qemu-made dynamic VHD of a 6 MiB disk whose first
// 3 MiB are random (blocks 0 and 1 allocated, block 2 not), and the raw disk.
func qemuDynamic(t *testing.T) (img, raw []byte) {
	t.Helper()
	testenv.Need(t, "qemu-img")
	dir := t.TempDir()
	raw = make([]byte, 6*vhd.MiB)
	copy(raw, testenv.RandBytes(rand.New(rand.NewPCG(7, 8)), 3*vhd.MiB))
	rawPath := testenv.WriteFile(t, dir, "d.raw", raw)
	out := filepath.Join(dir, "d.vhd")
	testenv.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size", rawPath, out)
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return img, raw
}

// editFooter rewrites the footer at off through edit, with a valid checksum.
func editFooter(t *testing.T, b []byte, off int, edit func(*vhd.Footer)) {
	t.Helper()
	f, err := vhd.ParseFooter(b[off:])
	if err != nil {
		t.Fatal(err)
	}
	edit(f)
	fb, _ := f.MarshalBinary()
	copy(b[off:], fb)
}

func editHeader(t *testing.T, b []byte, edit func(*vhd.DynamicHeader)) {
	t.Helper()
	h, err := vhd.ParseDynamicHeader(b[512:])
	if err != nil {
		t.Fatal(err)
	}
	edit(h)
	hb, _ := h.MarshalBinary()
	copy(b[512:], hb)
}

func wantFormatError(t *testing.T, err error, structure string, off int64, reason string) {
	t.Helper()
	var fe *vhd.FormatError
	if !errors.As(err, &fe) || !errors.Is(err, vhd.ErrCorrupt) {
		t.Fatalf("error %v (%T), want a *FormatError", err, err)
	}
	if fe.Structure != structure || fe.Offset != off || !strings.Contains(fe.Reason, reason) {
		t.Fatalf("error %q, want structure %q at offset %d with reason containing %q", err, structure, off, reason)
	}
}

func TestCorruptDynamic(t *testing.T) {
	base, raw := qemuDynamic(t)
	n := len(base)
	tail := int64(n - 512)
	batOff := 1536

	im, err := openBytes(base)
	if err != nil {
		t.Fatal(err)
	}
	if im.Kind != vhd.Dynamic || im.Header.TableOffset != uint64(batOff) {
		t.Fatalf("unexpected qemu layout: kind %v header %+v", im.Kind, im.Header)
	}
	if got := im.Allocated(); len(got) != 1 || got[0] != (extent.Range{Off: 0, Len: 4 * vhd.MiB}) {
		t.Fatalf("Allocated %v", got)
	}
	checkContents(t, im, raw, 11)

	mutate := func(edit func(b []byte) []byte) error {
		b := edit(bytes.Clone(base))
		_, err := openBytes(b)
		return err
	}
	t.Run("footer checksum", func(t *testing.T) {
		err := mutate(func(b []byte) []byte { b[n-512+100] ^= 1; return b })
		wantFormatError(t, err, "footer", tail, "checksum mismatch")
		if !strings.HasPrefix(err.Error(), "vhd: footer at offset ") {
			t.Errorf("message %q", err)
		}
	})
	t.Run("footer size field", func(t *testing.T) {
		err := mutate(func(b []byte) []byte { b[n-512+55] ^= 0x10; return b }) // CurrentSize, checksum now wrong
		wantFormatError(t, err, "footer", tail, "checksum mismatch")
	})
	t.Run("footer copy checksum", func(t *testing.T) {
		err := mutate(func(b []byte) []byte { b[100] ^= 1; return b })
		wantFormatError(t, err, "footer copy", 0, "checksum mismatch")
	})
	t.Run("footer copy differs", func(t *testing.T) {
		err := mutate(func(b []byte) []byte {
			editFooter(t, b, 0, func(f *vhd.Footer) { f.Timestamp++ })
			return b
		})
		wantFormatError(t, err, "footer copy", 0, "differs")
	})
	t.Run("unknown disk type", func(t *testing.T) {
		err := mutate(func(b []byte) []byte {
			editFooter(t, b, n-512, func(f *vhd.Footer) { f.DiskType = 5 })
			return b
		})
		wantFormatError(t, err, "footer", tail, "disk type")
	})
	t.Run("header checksum", func(t *testing.T) {
		err := mutate(func(b []byte) []byte { b[512+40] ^= 1; return b })
		wantFormatError(t, err, "dynamic header", 512, "checksum mismatch")
	})
	t.Run("header offset past EOF", func(t *testing.T) {
		err := mutate(func(b []byte) []byte {
			for _, off := range []int{0, n - 512} {
				editFooter(t, b, off, func(f *vhd.Footer) { f.DataOffset = uint64(n) })
			}
			return b
		})
		wantFormatError(t, err, "footer", tail, "dynamic header offset")
	})
	t.Run("block size", func(t *testing.T) {
		err := mutate(func(b []byte) []byte {
			editHeader(t, b, func(h *vhd.DynamicHeader) { h.BlockSize = 3 << 20 })
			return b
		})
		wantFormatError(t, err, "dynamic header", 512, "power of two")
	})
	t.Run("BAT too short", func(t *testing.T) {
		err := mutate(func(b []byte) []byte {
			editHeader(t, b, func(h *vhd.DynamicHeader) { h.MaxTableEntries = 2 })
			return b
		})
		wantFormatError(t, err, "dynamic header", 512, "BAT has 2 entries")
	})
	t.Run("BAT past EOF", func(t *testing.T) {
		err := mutate(func(b []byte) []byte {
			editHeader(t, b, func(h *vhd.DynamicHeader) { h.TableOffset = uint64(n - 512) })
			return b
		})
		wantFormatError(t, err, "dynamic header", 512, "does not fit")
	})
	t.Run("BAT entry past EOF", func(t *testing.T) {
		err := mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[batOff+4:], uint32(n/512+100))
			return b
		})
		wantFormatError(t, err, "BAT", int64(batOff+4), "block 1")
	})
	t.Run("BAT entry overlapping footer", func(t *testing.T) {
		err := mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[batOff+4:], uint32(n/512-2))
			return b
		})
		wantFormatError(t, err, "BAT", int64(batOff+4), "outside the data area")
	})
	t.Run("BAT entry zero", func(t *testing.T) {
		err := mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[batOff:], 0)
			return b
		})
		wantFormatError(t, err, "BAT", int64(batOff), "block 0")
	})
	for _, cut := range []int{512, 1 << 20, n - 1024} {
		t.Run("truncated", func(t *testing.T) {
			err := mutate(func(b []byte) []byte { return b[:n-cut] })
			wantFormatError(t, err, "footer", int64(n-cut-512), "truncated")
		})
	}
	t.Run("differencing", func(t *testing.T) {
		err := mutate(func(b []byte) []byte {
			for _, off := range []int{0, n - 512} {
				editFooter(t, b, off, func(f *vhd.Footer) { f.DiskType = vhd.TypeDifferencing })
			}
			editHeader(t, b, func(h *vhd.DynamicHeader) {
				for i, c := range utf16.Encode([]rune("parent.vhd")) {
					binary.BigEndian.PutUint16(h.ParentUnicodeName[2*i:], c)
				}
			})
			return b
		})
		if !errors.Is(err, vhd.ErrUnsupported) || errors.Is(err, vhd.ErrCorrupt) || !strings.Contains(err.Error(), `"parent.vhd"`) {
			t.Fatalf("differencing: %v", err)
		}
	})
}

// TestSectorBitmap clears bitmap bits in a qemu-made image: those sectors must
// read as zeros.
func TestSectorBitmap(t *testing.T) {
	base, raw := qemuDynamic(t)
	b := bytes.Clone(base)
	blk0 := int(binary.BigEndian.Uint32(b[1536:])) * 512
	want := bytes.Clone(raw)
	for _, s := range []int{0, 8, 9, 10, 11, 12, 13, 14, 15, 100, 4095} {
		b[blk0+s/8] &^= 0x80 >> (s % 8)
		clear(want[s*512 : (s+1)*512])
	}
	im, err := openBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	checkContents(t, im, want, 12)
	// A read starting inside a cleared sector and ending inside a present one.
	p := make([]byte, 1000)
	if _, err := im.ReadAt(p, 15*512+100); err != nil || !bytes.Equal(p, want[15*512+100:15*512+1100]) {
		t.Fatalf("mid-sector read: %v", err)
	}
}

func TestFixedVariants(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	disk := testenv.RandBytes(r, 1<<20)
	fb, err := vhd.FixedFooterBytes(int64(len(disk)))
	if err != nil {
		t.Fatal(err)
	}
	img := append(bytes.Clone(disk), fb...)

	t.Run("trailing", func(t *testing.T) {
		b := append(append(bytes.Clone(disk), make([]byte, 4096)...), fb...)
		im, err := openBytes(b)
		if err != nil || im.Kind != vhd.Fixed || im.Size() != int64(len(disk)) || im.Trailing != 4096 {
			t.Fatalf("%v %+v", err, im)
		}
		checkContents(t, im, disk, 13)
	})
	t.Run("truncated", func(t *testing.T) {
		b := append(bytes.Clone(disk[:len(disk)-512]), fb...)
		_, err := openBytes(b)
		wantFormatError(t, err, "footer", int64(len(b)-512), "truncated")
	})
	t.Run("bad checksum is not raw", func(t *testing.T) {
		b := bytes.Clone(img)
		b[len(b)-512+300] = 1 // reserved byte
		_, err := openBytes(b)
		wantFormatError(t, err, "footer", int64(len(b)-512), "checksum mismatch")
	})
	t.Run("bad version", func(t *testing.T) {
		b := bytes.Clone(img)
		editFooter(t, b, len(b)-512, func(f *vhd.Footer) { f.FileFormatVersion = 0x00020000 })
		_, err := openBytes(b)
		wantFormatError(t, err, "footer", int64(len(b)-512), "version")
	})
	t.Run("size not sectors", func(t *testing.T) {
		b := bytes.Clone(img)
		editFooter(t, b, len(b)-512, func(f *vhd.Footer) { f.CurrentSize = 1000 })
		_, err := openBytes(b)
		wantFormatError(t, err, "footer", int64(len(b)-512), "multiple of 512")
	})
	t.Run("zero size", func(t *testing.T) {
		b := bytes.Clone(fb)
		editFooter(t, b, 0, func(f *vhd.Footer) { f.CurrentSize = 0 })
		im, err := openBytes(b)
		if err != nil || im.Kind != vhd.Fixed || im.Size() != 0 || im.Allocated() != nil {
			t.Fatalf("%v %+v", err, im)
		}
		if n, err := im.ReadAt(make([]byte, 1), 0); n != 0 || err != io.EOF {
			t.Fatalf("ReadAt: %d %v", n, err)
		}
	})
}

func TestRaw(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{0, 100, 511, 512, 4096 + 7, 1 << 20} {
		disk := testenv.RandBytes(r, n)
		im, err := openBytes(disk)
		if err != nil || im.Kind != vhd.Raw || im.Footer != nil || im.Size() != int64(n) {
			t.Fatalf("raw %d: %v %+v", n, err, im)
		}
		if n > 0 {
			checkContents(t, im, disk, uint64(n))
			if a := im.Allocated(); len(a) != 1 || a[0] != (extent.Range{Off: 0, Len: int64(n)}) {
				t.Errorf("Allocated %v", a)
			}
		}
	}
	// A raw file that ends early (the caller claimed more than it has) is an
	// error, not silent zeros.
	im, err := vhd.Open(bytes.NewReader(make([]byte, 4096)), 8192)
	if err == nil {
		_, err = im.ReadAt(make([]byte, 100), 5000)
	}
	if err == nil {
		t.Fatal("reading past the real end: no error")
	}
}

func TestFooterRoundTrip(t *testing.T) {
	f, err := vhd.NewFixedFooter(30 * vhd.MiB)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.MarshalBinary()
	if len(b) != 512 || string(b[:8]) != "conectix" || string(b[28:32]) != "lcv " || string(b[36:40]) != "Wi2k" {
		t.Fatalf("footer bytes % x", b[:40])
	}
	g, err := vhd.ParseFooter(b)
	if err != nil || *g != *f {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, g, f)
	}
	if f.CurrentSize != 30*vhd.MiB || f.OriginalSize != f.CurrentSize || f.DataOffset != ^uint64(0) || f.DiskType != vhd.TypeFixed {
		t.Errorf("fields %+v", f)
	}
	if d := f.Time().Sub(time.Now()); d > 0 || d < -60e9 {
		t.Errorf("timestamp %v", f.Time())
	}
	f2, _ := vhd.NewFixedFooter(30 * vhd.MiB)
	if f2.UniqueID == f.UniqueID || f.UniqueID == ([16]byte{}) {
		t.Error("unique ids are not random")
	}
	for _, bad := range []int64{0, -512, 1000, 1 << 60} {
		if _, err := vhd.NewFixedFooter(bad); err == nil {
			t.Errorf("NewFixedFooter(%d): no error", bad)
		}
	}
	if _, err := vhd.ParseFooter(b[:511]); !errors.Is(err, vhd.ErrCorrupt) {
		t.Errorf("short footer: %v", err)
	}
}

func TestAzureSize(t *testing.T) {
	for _, c := range [][2]int64{
		{0, 0}, {-5, 0}, {1, vhd.MiB}, {512, vhd.MiB}, {vhd.MiB, vhd.MiB}, {vhd.MiB + 1, 2 * vhd.MiB},
		{20*vhd.MiB + 512, 21 * vhd.MiB}, {30 << 30, 30 << 30}, {30<<30 + 512, 30<<30 + vhd.MiB},
	} {
		if got := vhd.AzureSize(c[0]); got != c[1] {
			t.Errorf("AzureSize(%d) = %d, want %d", c[0], got, c[1])
		}
	}
}

func TestGeometryFor(t *testing.T) {
	// Values from the specification's algorithm worked by hand.
	for _, c := range []struct {
		size int64
		want vhd.Geometry
	}{
		{20 * vhd.MiB, vhd.Geometry{Cylinders: 602, Heads: 4, SectorsPerTrack: 17}},
		{128 << 30, vhd.MaxGeometry},
		{1 << 40, vhd.MaxGeometry},
		{0, vhd.Geometry{Cylinders: 0, Heads: 4, SectorsPerTrack: 17}},
	} {
		if got := vhd.GeometryFor(c.size); got != c.want {
			t.Errorf("GeometryFor(%d) = %+v, want %+v", c.size, got, c.want)
		}
	}
}
