package initramfs

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

func TestKernelDecompressors(t *testing.T) {
	config := []byte(`# Automatically generated file; DO NOT EDIT.
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_RD_BZIP2=y
CONFIG_RD_LZMA=m
CONFIG_RD_XZ=y
# CONFIG_RD_LZO is not set
CONFIG_RD_LZ4=y
CONFIG_RD_ZSTD=n
CONFIG_XZ_DEC=y
`)
	got := KernelDecompressors(config)
	want := []Compression{Gzip, Bzip2, XZ, LZ4Legacy}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("KernelDecompressors = %v, want %v (only =y counts)", got, want)
	}
	if got := KernelDecompressors(nil); len(got) != 0 {
		t.Errorf("empty config: %v", got)
	}
}

func TestKernelVersions(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, name := range []string{"usr", "usr/lib", "usr/lib/modules", "usr/lib/modules/5.14.0-427.el9.x86_64",
		"usr/lib/modules/5.14.0-427.el9.x86_64/modules.dep", "lib", "lib/modules", "lib/modules/4.18.0-553.el8_10.x86_64",
		"etc/modules/not-a-kernel"} {
		if err := w.WriteEntry(&Entry{Header: Header{Name: name, Mode: ModeDir | 0o755, NLink: 2}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	im := parseBytes(t, buf.Bytes())
	got := KernelVersions(im)
	want := []string{"4.18.0-553.el8_10.x86_64", "5.14.0-427.el9.x86_64"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("KernelVersions = %v, want %v", got, want)
	}
}

// TestRewriteChangesCompression re-encodes a dracut-style image's main archive in every other format
// luksconv writes; the early cpio stays uncompressed and the tools read the same files.
func TestRewriteChangesCompression(t *testing.T) {
	testenv.Need(t, "cpio", "lsinitrd", "gzip", "xz", "zstd", "lz4")
	testenv.NeedRoot(t)
	tree := t.TempDir()
	makeTree(t, tree)
	for _, from := range []Compression{Gzip, XZ} {
		img, early, main, _ := dracutStyle(t, from, tree)
		im := parseBytes(t, img)
		for _, to := range allCompressions {
			if to == from {
				continue
			}
			t.Run(string(from)+"-to-"+string(to), func(t *testing.T) {
				out, rep, err := im.Rewrite(t.Context(), bytes.NewReader(img), Edit{Recompress: true, Compression: to})
				if err != nil {
					t.Fatal(err)
				}
				s := rep.Segments[1]
				if rep.Segments[0].NewCompression != None || s.Compression != from || s.NewCompression != to {
					t.Errorf("report %+v", rep.Segments)
				}
				if !bytes.Equal(out[:len(early)], early) {
					t.Error("early cpio not copied byte for byte")
				}
				again := parseBytes(t, out)
				if again.Segments[1].Compression != to {
					t.Errorf("rewritten main segment parses as %s", again.Segments[1].Compression)
				}
				raw := decompressCLI(t, to, out[s.NewOffset:s.NewOffset+s.NewLength])
				if got, want := cpioList(t, raw), cpioList(t, main); got != want {
					t.Errorf("cpio -itv of the re-encoded main archive:\n%s\nwant:\n%s", got, want)
				}
				dir := t.TempDir()
				if got, want := lsinitrd(t, testenv.WriteFile(t, dir, "new.img", out)), lsinitrd(t, testenv.WriteFile(t, dir, "old.img", img)); got != want {
					t.Errorf("lsinitrd differs:\n--- rewritten\n%s\n--- original\n%s", got, want)
				}
			})
		}
	}
	if _, _, err := parseBytes(t, mustDracutGzip(t, tree)).Rewrite(t.Context(), bytes.NewReader(nil), Edit{Compression: Bzip2}); err == nil {
		t.Error("Rewrite to bzip2 (which luksconv cannot write) did not fail")
	}
}

func mustDracutGzip(t *testing.T, tree string) []byte {
	img, _, _, _ := dracutStyle(t, Gzip, tree)
	return img
}
