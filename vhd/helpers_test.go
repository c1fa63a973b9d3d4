package vhd_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/vhd"
)

type qemuInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
}

// info runs qemu-img info. The format must be forced: qemu probes VHDs by the
// footer copy at offset 0, so it reports every fixed VHD as raw otherwise.
func info(t testing.TB, path, format string) qemuInfo {
	t.Helper()
	var qi qemuInfo
	out := testenv.Run(t, "qemu-img", "info", "-f", format, "--output=json", path)
	if err := json.Unmarshal([]byte(out), &qi); err != nil {
		t.Fatalf("qemu-img info %s: %v\n%s", path, err, out)
	}
	return qi
}

// openFile opens the image at path with Open.
func openFile(t testing.TB, path string) *vhd.Image {
	t.Helper()
	im, err := vhd.Open(testenv.Open(t, path))
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return im
}

func openBytes(b []byte) (*vhd.Image, error) { return vhd.Open(bytes.NewReader(b), int64(len(b))) }

// at returns want's byte range [off, off+n), reading zeros past len(want):
// qemu pads images it rounds up to a CHS size.
func at(want []byte, off, n int64) []byte {
	out := make([]byte, n)
	if off < int64(len(want)) {
		copy(out, want[off:])
	}
	return out
}

// checkContents compares the whole image sequentially with want (zero padded to
// im.Size()), then with random reads from several goroutines.
func checkContents(t *testing.T, im *vhd.Image, want []byte, seed uint64) {
	t.Helper()
	size := im.Size()
	// Sequential, with a chunk size that is not sector aligned.
	buf := make([]byte, 1<<20+123)
	var off int64
	for {
		n, err := im.ReadAt(buf, off)
		if !bytes.Equal(buf[:n], at(want, off, int64(n))) {
			t.Fatalf("sequential read at %d: contents differ", off)
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
	}
	if off != size {
		t.Fatalf("sequential read ended at %d, size %d", off, size)
	}

	errc := make(chan error, 4)
	for g := range 4 {
		go func() {
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			for range 100 {
				o := r.Int64N(size)
				if r.IntN(4) == 0 {
					o = max(0, size-r.Int64N(8<<10)) // near the end
				}
				p := make([]byte, r.Int64N(min(1<<20, size+4096))+1)
				n, err := im.ReadAt(p, o)
				wantN := min(int64(len(p)), size-o)
				switch {
				case int64(n) != wantN:
					errc <- errorf("ReadAt(len %d, off %d) = %d bytes, want %d", len(p), o, n, wantN)
					return
				case wantN < int64(len(p)) && err != io.EOF:
					errc <- errorf("ReadAt(len %d, off %d) past end: err %v, want io.EOF", len(p), o, err)
					return
				case wantN == int64(len(p)) && err != nil:
					errc <- errorf("ReadAt(len %d, off %d): %v", len(p), o, err)
					return
				case !bytes.Equal(p[:n], at(want, o, int64(n))):
					errc <- errorf("ReadAt(len %d, off %d): contents differ", len(p), o)
					return
				}
			}
			errc <- nil
		}()
	}
	for range 4 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if n, err := im.ReadAt(make([]byte, 1), size); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at size: %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := im.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("ReadAt at -1: no error")
	}
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }

// checkAllocated verifies that extents are ordered, disjoint, inside the disk,
// and cover every nonzero byte of want.
func checkAllocated(t *testing.T, im *vhd.Image, want []byte) (total int64) {
	t.Helper()
	ext := im.Allocated()
	var prev int64
	for i, e := range ext {
		if e.Len <= 0 || e.Off < prev || e.Off+e.Len > im.Size() || (i > 0 && e.Off == prev) {
			t.Fatalf("bad extent %d %+v (previous end %d, size %d)", i, e, prev, im.Size())
		}
		prev = e.Off + e.Len
		total += e.Len
	}
	var next int64 // first byte not yet known to be zero or covered
	for _, e := range ext {
		if i := firstNonZero(want, next, e.Off); i >= 0 {
			t.Fatalf("nonzero byte at %d outside Allocated %v", i, ext)
		}
		next = e.Off + e.Len
	}
	if i := firstNonZero(want, next, int64(len(want))); i >= 0 {
		t.Fatalf("nonzero byte at %d outside Allocated %v", i, ext)
	}
	return total
}

func firstNonZero(b []byte, from, to int64) int64 {
	to = min(to, int64(len(b)))
	for i := from; i < to; i++ {
		if b[i] != 0 {
			return i
		}
	}
	return -1
}

// buildDynamic writes a dynamic VHD of disk (a multiple of 512 bytes) with the
// given block size, allocating the blocks for which alloc returns true. The
// geometry is MaxGeometry so that qemu sizes it by CurrentSize.
func buildDynamic(disk []byte, blockSize int, alloc func(blk int) bool) []byte {
	size := len(disk)
	blocks := (size + blockSize - 1) / blockSize
	f := vhd.Footer{
		Features: 2, FileFormatVersion: 0x00010000, DataOffset: 512,
		CreatorApp: [4]byte{'t', 'e', 's', 't'}, CreatorHostOS: [4]byte{'W', 'i', '2', 'k'},
		OriginalSize: uint64(size), CurrentSize: uint64(size),
		Geometry: vhd.MaxGeometry, DiskType: vhd.TypeDynamic,
	}
	copy(f.Cookie[:], "conectix")
	batLen := (4*blocks + 511) / 512 * 512
	h := vhd.DynamicHeader{DataOffset: ^uint64(0), TableOffset: 1536, HeaderVersion: 0x00010000,
		MaxTableEntries: uint32(blocks), BlockSize: uint32(blockSize)}
	copy(h.Cookie[:], "cxsparse")
	fb, _ := f.MarshalBinary()
	hb, _ := h.MarshalBinary()
	bitmap := (blockSize/512/8 + 511) / 512 * 512

	var out bytes.Buffer
	out.Write(fb)
	out.Write(hb)
	bat := make([]byte, batLen)
	for i := range bat {
		bat[i] = 0xFF
	}
	var data bytes.Buffer
	next := 1536 + batLen
	for i := 0; i < blocks; i++ {
		if !alloc(i) {
			continue
		}
		binary.BigEndian.PutUint32(bat[4*i:], uint32(next/512))
		data.Write(bytes.Repeat([]byte{0xFF}, bitmap))
		blk := make([]byte, blockSize)
		copy(blk, disk[i*blockSize:])
		data.Write(blk)
		next += bitmap + blockSize
	}
	out.Write(bat)
	out.Write(data.Bytes())
	out.Write(fb)
	return out.Bytes()
}
