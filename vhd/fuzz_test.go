package vhd_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/vhd"
)

// FuzzOpen feeds whole image files to Open and reads what it accepts. Seeds
// are generated here: small dynamic images from buildDynamic (checked against
// qemu by TestBuildDynamicQemu), a fixed image with our footer, and, when
// qemu-img is installed, tiny qemu-made fixed and dynamic images.
func FuzzOpen(f *testing.F) {
	r := rand.New(rand.NewPCG(13, 14))
	disk := testenv.RandBytes(r, 16<<10)
	f.Add(buildDynamic(disk, 4096, func(b int) bool { return b != 1 }))
	f.Add(buildDynamic(disk[:3*512], 512, func(b int) bool { return b == 1 }))
	f.Add(buildDynamic(disk, 8192, func(int) bool { return false }))
	if fb, err := vhd.FixedFooterBytes(4096); err == nil {
		f.Add(append(bytes.Clone(disk[:4096]), fb...))
	}
	f.Add(disk[:1024])
	if _, err := exec.LookPath("qemu-img"); err == nil {
		dir := f.TempDir()
		for _, c := range [][2]string{{"subformat=dynamic", "1M"}, {"subformat=fixed", "16K"}, {"subformat=dynamic,force_size", "3M"}} {
			p := filepath.Join(dir, "seed.vhd")
			if out, err := exec.Command("qemu-img", "create", "-q", "-f", "vpc", "-o", c[0], p, c[1]).CombinedOutput(); err != nil {
				f.Fatalf("qemu-img create: %v\n%s", err, out)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		checkOpen(t, data)
		// Most mutations break a checksum, which Open checks first: the same input with the footers'
		// and the dynamic header's checksums made right reaches the fields behind them.
		if fixed := fixChecksums(data); !bytes.Equal(fixed, data) {
			checkOpen(t, fixed)
		}
	})
}

// fixChecksums returns a copy of data whose footers (the first and the last 512 bytes, where they
// carry the cookie "conectix") and dynamic header (at the footer's data offset, cookie "cxsparse") have
// the checksums their bytes give.
func fixChecksums(data []byte) []byte {
	b := bytes.Clone(data)
	sum := func(s []byte, at int) {
		clear(s[at : at+4])
		var c uint32
		for _, x := range s {
			c += uint32(x)
		}
		binary.BigEndian.PutUint32(s[at:], ^c)
	}
	if len(b) < 512 {
		return b
	}
	for _, off := range []int{0, len(b) - 512} {
		ft := b[off : off+512]
		if string(ft[:8]) != "conectix" {
			continue
		}
		if h := binary.BigEndian.Uint64(ft[16:24]); len(b) >= 1024 && h <= uint64(len(b)-1024) && string(b[h:h+8]) == "cxsparse" {
			sum(b[h:h+1024], 36)
		}
		sum(ft, 64)
	}
	return b
}

// checkOpen opens data and, if Open accepts it, reads it where its extents say it holds data.
func checkOpen(t *testing.T, data []byte) {
	im, err := openBytes(data)
	if err != nil {
		var fe *vhd.FormatError
		if !errors.As(err, &fe) && !errors.Is(err, vhd.ErrUnsupported) {
			t.Fatalf("error of unexpected type %T: %v", err, err)
		}
		return
	}
	size := im.Size()
	if size < 0 {
		t.Fatalf("negative size %d", size)
	}
	var prev int64
	for _, e := range im.Allocated() {
		if e.Len <= 0 || e.Off < prev || e.Off+e.Len > size {
			t.Fatalf("bad extent %+v in %v (size %d)", e, im.Allocated(), size)
		}
		prev = e.Off + e.Len
	}
	// Read the start, the end and the start of each allocated extent.
	offs := []int64{0, max(0, size-5000)}
	for i, e := range im.Allocated() {
		if i < 8 {
			offs = append(offs, e.Off, e.Off+e.Len-100)
		}
	}
	p := make([]byte, 5000)
	for _, off := range offs {
		if off < 0 {
			continue
		}
		n, err := im.ReadAt(p, off)
		want := min(int64(len(p)), max(0, size-off))
		if int64(n) != want {
			t.Fatalf("ReadAt(%d) = %d bytes (%v), want %d", off, n, err, want)
		}
		if (want < int64(len(p))) != (err == io.EOF) || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
		}
		switch im.Kind {
		case vhd.Raw, vhd.Fixed: // the disk is the file's prefix
			if !bytes.Equal(p[:n], data[off:off+int64(n)]) {
				t.Fatalf("%v ReadAt(%d) differs from the file", im.Kind, off)
			}
		}
	}
}
