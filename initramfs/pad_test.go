package initramfs

import (
	"bytes"
	"encoding/binary"
	"maps"
	"os"
	"slices"
	"testing"

	"github.com/luksconv/luksconv/guest"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/internal/ubuntufixture"
	"github.com/luksconv/luksconv/internal/zeros"
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
		if len(d.out) == 0 || !zeros.Only(d.out) {
			t.Fatalf("ZstdPadding(%d) decodes to %d bytes, not all zero", n, len(d.out))
		}
		if got := decompressCLI(t, Zstd, b); !bytes.Equal(got, d.out) {
			t.Fatalf("ZstdPadding(%d): zstd -d gives %d bytes, the decoder %d", n, len(got), len(d.out))
		}
	}

	img, padded, im := padArchive(t, Zstd, ZstdPadding)
	if len(im.Segments) != 2 || im.Segments[1].Compression != Zstd || len(im.Segments[1].Archives) != 0 ||
		im.Segments[1].Offset != int64(len(img)) || im.Segments[1].Length != int64(len(padded)-len(img)) {
		t.Fatalf("padded image's segments: %+v", im.Segments)
	}
}

// TestPaddingUbuntu: 22.04's zstd and 20.04's lz4 initrd without ADE's files, padded back to the
// original's length as luksconv pads them on ext (a zstd frame of zeros, lz4 chunks of zeros), unpack
// with Debian's unmkinitramfs and list with lsinitramfs exactly as without the padding.
func TestPaddingUbuntu(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Ubuntu fixture set")
	}
	testenv.Need(t, "lsinitramfs", "unmkinitramfs", "cpio", "zstd", "lz4")
	m := ubuntufixture.Load(t)
	for _, tc := range []struct {
		disk string
		comp Compression
		pad  func(int) ([]byte, error)
	}{
		{ubuntufixture.DiskU2204, Zstd, ZstdPadding},
		{ubuntufixture.DiskU2004, LZ4Legacy, LZ4LegacyPadding},
	} {
		t.Run(tc.disk, func(t *testing.T) {
			t.Parallel()
			d, ok := m.Disk(tc.disk)
			if !ok {
				t.Fatalf("no %s in the fixture set", tc.disk)
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
			if rep.Segments[len(rep.Segments)-1].NewCompression != tc.comp || len(out)+MinZstdPadding > len(img) {
				t.Fatalf("rewritten: %d -> %d bytes, %+v", len(img), len(out), rep.Segments)
			}
			pad, err := tc.pad(len(img) - len(out))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			plain := testenv.WriteFile(t, dir, "plain.img", out)
			padded := testenv.WriteFile(t, dir, "padded.img", append(slices.Clone(out), pad...))
			if a, b := lsLong(t, plain), lsLong(t, padded); !maps.Equal(a, b) || len(a) < 100 {
				t.Errorf("lsinitramfs -l: %d entries without the padding, %d with, or they differ", len(a), len(b))
			}
			if a, b := treeFiles(t, unmkinitramfs(t, plain)), treeFiles(t, unmkinitramfs(t, padded)); !maps.Equal(a, b) || len(a) < 100 {
				t.Errorf("unmkinitramfs: %d files without the padding, %d with, or they differ", len(a), len(b))
			}
		})
	}
}

// TestLZ4LegacyPadding: the chunks are exactly as long as asked for every length from the shortest to
// past the first lengths a literal run cannot have, and at and past a full 8 MiB chunk; lz4 decodes
// them to zeros after an archive, cpio lists the archive as before, and Parse finds the same entries
// in one segment that now ends after the padding.
func TestLZ4LegacyPadding(t *testing.T) {
	testenv.Need(t, "lz4", "cpio")
	if _, err := LZ4LegacyPadding(MinLZ4LegacyPadding - 1); err == nil {
		t.Errorf("LZ4LegacyPadding(%d): no error", MinLZ4LegacyPadding-1)
	}
	magic := binary.LittleEndian.AppendUint32(nil, lz4LegacyMagic)
	full := 4 + lz4LiteralsLen(lz4LegacyChunk)
	sizes := []int{full - 1, full, full + 1, full + 5, full + 6, full + 20, 2*full + 7, 23220880}
	for n := MinLZ4LegacyPadding; n < 1100; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		b, err := LZ4LegacyPadding(n)
		if err != nil {
			t.Fatalf("LZ4LegacyPadding(%d): %v", n, err)
		}
		if len(b) != n {
			t.Fatalf("LZ4LegacyPadding(%d): %d bytes", n, len(b))
		}
		d, err := decodeLZ4Legacy(t.Context(), append(slices.Clone(magic), b...), 1<<30)
		if err != nil || d.consumed != 4+n {
			t.Fatalf("LZ4LegacyPadding(%d): decoded %d bytes of it: %v", n, d.consumed-4, err)
		}
		if len(d.out) == 0 || !zeros.Only(d.out) {
			t.Fatalf("LZ4LegacyPadding(%d) decodes to %d bytes, not all zero", n, len(d.out))
		}
		if n > 1000 || n%97 == 0 { // the tool on a sample of the short lengths, all long ones
			if got := decompressCLI(t, LZ4Legacy, append(slices.Clone(magic), b...)); !bytes.Equal(got, d.out) {
				t.Fatalf("LZ4LegacyPadding(%d): lz4 -d gives %d bytes, the decoder %d", n, len(got), len(d.out))
			}
		}
	}

	_, padded, im := padArchive(t, LZ4Legacy, LZ4LegacyPadding)
	if len(im.Segments) != 1 || im.Segments[0].Length != int64(len(padded)) {
		t.Fatalf("padded image's segments: %+v", im.Segments)
	}
}

// padArchive compresses a cpio archive of makeTree's tree with format c's tool, pads it with 70000
// bytes of pad, and requires the tool to decode the result to the archive and zeros only, which cpio
// lists as the archive, and Parse to find the same files in both. It returns the image, the padded
// image and the padded one parsed.
func padArchive(t *testing.T, c Compression, pad func(int) ([]byte, error)) (img, padded []byte, im *Image) {
	t.Helper()
	dir := t.TempDir()
	makeTree(t, dir)
	archive := cpioCreate(t, dir, "newc")
	img = compressCLI(t, c, archive)
	p, err := pad(70000)
	if err != nil {
		t.Fatal(err)
	}
	padded = append(slices.Clone(img), p...)
	got := decompressCLI(t, c, padded)
	if !bytes.Equal(got[:len(archive)], archive) || !zeros.Only(got[len(archive):]) {
		t.Fatalf("%s -d of the padded image is not the archive and zeros", c)
	}
	if a, b := cpioList(t, archive), cpioList(t, got); a != b {
		t.Errorf("cpio lists the padded image's content differently:\n%s\n%s", a, b)
	}
	plain := parseBytes(t, img)
	im = parseBytes(t, padded)
	if a, b := slices.Sorted(maps.Keys(plain.Files())), slices.Sorted(maps.Keys(im.Files())); !slices.Equal(a, b) {
		t.Errorf("Parse: %d files without padding, %d with", len(a), len(b))
	}
	return img, padded, im
}
