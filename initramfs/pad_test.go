package initramfs

import (
	"bytes"
	"maps"
	"os"
	"slices"
	"testing"

	"github.com/luksconv/luksconv/guest"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/internal/ubuntufixture"
)

// TestZstdPadding: a padding frame is exactly as long as asked, at block boundaries and across them,
// and the zstd tool decodes it, alone and after an archive, to zeros only: cpio lists the archive as
// before, and Parse finds the same entries and one more zstd segment without archives.
func TestZstdPadding(t *testing.T) {
	testenv.Need(t, "zstd", "cpio")
	if _, err := ZstdPadding(MinZstdPadding - 1); err == nil {
		t.Errorf("ZstdPadding(%d): no error", MinZstdPadding-1)
	}
	const full = 6 + 3 + zstdRawBlockMax // header and one whole block
	for _, n := range []int{MinZstdPadding, 11, 4096, full - 1, full, full + 1, full + 3, full + 4, full + 7, 3 * full, 5<<20 + 17} {
		b, err := ZstdPadding(n)
		if err != nil {
			t.Fatalf("ZstdPadding(%d): %v", n, err)
		}
		if len(b) != n {
			t.Fatalf("ZstdPadding(%d): %d bytes", n, len(b))
		}
		if l, err := zstdFrameLen(b); err != nil || l != n {
			t.Fatalf("ZstdPadding(%d): frame of %d bytes (%v)", n, l, err)
		}
		d, err := decodeZstd(t.Context(), b, 1<<30)
		if err != nil {
			t.Fatalf("ZstdPadding(%d): %v", n, err)
		}
		if len(d.out) == 0 || bytes.ContainsFunc(d.out, func(r rune) bool { return r != 0 }) {
			t.Fatalf("ZstdPadding(%d) decodes to %d bytes, not all zero", n, len(d.out))
		}
		if got := decompressCLI(t, Zstd, b); !bytes.Equal(got, d.out) {
			t.Fatalf("ZstdPadding(%d): zstd -d gives %d bytes, the decoder %d", n, len(got), len(d.out))
		}
	}

	dir := t.TempDir()
	makeTree(t, dir)
	archive := cpioCreate(t, dir, "newc")
	img := compressCLI(t, Zstd, archive)
	pad, err := ZstdPadding(70000)
	if err != nil {
		t.Fatal(err)
	}
	padded := append(slices.Clone(img), pad...)
	got := decompressCLI(t, Zstd, padded)
	if !bytes.Equal(got[:len(archive)], archive) || bytes.ContainsFunc(got[len(archive):], func(r rune) bool { return r != 0 }) {
		t.Fatalf("zstd -d of the padded image is not the archive and zeros")
	}
	if a, b := cpioList(t, archive), cpioList(t, got); a != b {
		t.Errorf("cpio lists the padded image's content differently:\n%s\n%s", a, b)
	}
	plain, im := parseBytes(t, img), parseBytes(t, padded)
	if len(im.Segments) != 2 || im.Segments[1].Compression != Zstd || len(im.Segments[1].Archives) != 0 ||
		im.Segments[1].Offset != int64(len(img)) || im.Segments[1].Length != int64(len(pad)) {
		t.Fatalf("padded image's segments: %+v", im.Segments)
	}
	if a, b := slices.Sorted(maps.Keys(plain.Files())), slices.Sorted(maps.Keys(im.Files())); !slices.Equal(a, b) {
		t.Errorf("Parse: %d files without padding, %d with", len(a), len(b))
	}
}

// TestZstdPaddingUbuntu: 22.04's initrd without ADE's files, padded with a zstd frame back to the
// original's length as luksconv pads it on ext, unpacks with Debian's unmkinitramfs and lists with
// lsinitramfs exactly as without the frame.
func TestZstdPaddingUbuntu(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Ubuntu fixture set")
	}
	testenv.Need(t, "lsinitramfs", "unmkinitramfs", "cpio", "zstd")
	m := ubuntufixture.Load(t)
	d, ok := m.Disk(ubuntufixture.DiskU2204)
	if !ok {
		t.Fatalf("no %s in the fixture set", ubuntufixture.DiskU2204)
	}
	img, err := os.ReadFile(m.Path(d.Initrd))
	if err != nil {
		t.Fatal(err)
	}
	im := parseBytes(t, img)
	e, _ := ADEEdit(im, guest.Policy{})
	out, rep, err := im.Rewrite(t.Context(), bytes.NewReader(img), e)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Segments[len(rep.Segments)-1].NewCompression != Zstd || len(out)+MinZstdPadding > len(img) {
		t.Fatalf("rewritten: %d -> %d bytes, %+v", len(img), len(out), rep.Segments)
	}
	pad, err := ZstdPadding(len(img) - len(out))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plain := testenv.WriteFile(t, dir, "plain.img", out)
	padded := testenv.WriteFile(t, dir, "padded.img", append(slices.Clone(out), pad...))
	if a, b := lsLong(t, plain), lsLong(t, padded); !maps.Equal(a, b) || len(a) < 100 {
		t.Errorf("lsinitramfs -l: %d entries without the frame, %d with, or they differ", len(a), len(b))
	}
	if a, b := treeFiles(t, unmkinitramfs(t, plain)), treeFiles(t, unmkinitramfs(t, padded)); !maps.Equal(a, b) || len(a) < 100 {
		t.Errorf("unmkinitramfs: %d files without the frame, %d with, or they differ", len(a), len(b))
	}
}
