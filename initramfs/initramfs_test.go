package initramfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/luksconv/luksconv/guest"
)

// mkArchive writes entries with the package Writer (regular files unless the mode says otherwise).
func mkArchive(t testing.TB, entries ...*Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, e := range entries {
		if err := w.WriteEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func file(name, data string) *Entry {
	return &Entry{Header: Header{Name: name, Mode: ModeRegular | 0o644, NLink: 1, MTime: 1000}, Data: []byte(data)}
}

func dir(name string) *Entry {
	return &Entry{Header: Header{Name: name, Mode: ModeDir | 0o755, NLink: 2, MTime: 1000}}
}

func mustEncode(t testing.TB, c Compression, raw []byte) []byte {
	t.Helper()
	b, err := encode(context.Background(), c, raw, false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func parseErr(b []byte) error {
	_, err := Parse(bytes.NewReader(b), int64(len(b)))
	return err
}

func TestKernelGrammar(t *testing.T) {
	a1 := mkArchive(t, dir("etc"), file("etc/crypttab", "old\n"), file("etc/hosts", "h\n"))
	a2 := mkArchive(t, file("etc/crypttab", "new\n"))
	gz := mustEncode(t, Gzip, a1)

	t.Run("padding and overlay", func(t *testing.T) {
		// Zero padding around segments, and an uncompressed overlay after the compressed main archive.
		lead := make([]byte, 8)
		mid := make([]byte, 7+padLen(int64(len(lead)+len(gz)+7)))
		img := cat(lead, gz, mid, a2, make([]byte, 3))
		im := parseBytes(t, img)
		if im.LeadingPadding != 8 || len(im.Segments) != 2 || im.Segments[0].Padding != int64(len(mid)) || im.Segments[1].Padding != 3 {
			t.Fatalf("segments %+v lead %d", im.Segments, im.LeadingPadding)
		}
		if got, _ := im.ReadFile("/etc/crypttab"); string(got) != "new\n" {
			t.Errorf("later archive must override: got %q", got)
		}
		if e := im.Files()["etc/hosts"]; e == nil || string(e.Data) != "h\n" {
			t.Errorf("Files lost etc/hosts")
		}
		// Changing the compressed segment's length must keep the overlay 4-aligned.
		for _, repl := range []string{"x", "xy", "xyz", "wxyz"} {
			out, rep, err := im.Rewrite(t.Context(), bytes.NewReader(img), Edit{Replace: map[string][]byte{"etc/hosts": []byte(repl)}})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Segments[1].NewOffset%4 != 0 || rep.Segments[1].Rewritten {
				t.Errorf("overlay at %d, rewritten %v", rep.Segments[1].NewOffset, rep.Segments[1].Rewritten)
			}
			if got, _ := parseBytes(t, out).ReadFile("etc/hosts"); string(got) != repl {
				t.Errorf("etc/hosts = %q, want %q", got, repl)
			}
		}
	})
	t.Run("unaligned uncompressed archive", func(t *testing.T) {
		pad := make([]byte, 1+padLen(int64(len(gz)+1)))
		err := parseErr(cat(gz, pad, []byte{0}, a2))
		if err == nil || !strings.Contains(err.Error(), "invalid magic") {
			t.Errorf("err = %v, want invalid magic", err)
		}
	})
	t.Run("junk in stream", func(t *testing.T) {
		err := parseErr(mustEncode(t, Gzip, cat(a1, []byte("junk"))))
		if err == nil || !strings.Contains(err.Error(), "junk within compressed archive") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("broken padding", func(t *testing.T) {
		err := parseErr(mustEncode(t, Gzip, cat(a1, []byte{0}, a2)))
		if err == nil || !strings.Contains(err.Error(), "broken padding") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("truncated stream content", func(t *testing.T) {
		err := parseErr(mustEncode(t, Gzip, a1[:len(a1)-20]))
		if err == nil || !strings.Contains(err.Error(), "junk at the end") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("truncated compressed data", func(t *testing.T) {
		for _, c := range allCompressions {
			b := mustEncode(t, c, a1)
			if err := parseErr(b[:len(b)-5]); err == nil {
				t.Errorf("%s: truncated stream accepted", c)
			}
		}
	})
	t.Run("several archives in one stream", func(t *testing.T) {
		img := mustEncode(t, Zstd, cat(a1, make([]byte, 512), a2))
		im := parseBytes(t, img)
		if len(im.Segments) != 1 || len(im.Segments[0].Archives) != 2 || len(im.Segments[0].Entries) != 4 {
			t.Fatalf("segments %+v", im.Segments)
		}
		out, _, err := im.Rewrite(t.Context(), bytes.NewReader(img), Edit{Remove: []string{"etc/hosts"}})
		if err != nil {
			t.Fatal(err)
		}
		im2 := parseBytes(t, out)
		if len(im2.Segments[0].Archives) != 2 || len(im2.Segments[0].Entries) != 3 {
			t.Errorf("rewritten: %d archives, %d entries", len(im2.Segments[0].Archives), len(im2.Segments[0].Entries))
		}
	})
	t.Run("lz4 needs a zero word before the next segment", func(t *testing.T) {
		lz := mustEncode(t, LZ4Legacy, a1)
		if err := parseErr(cat(lz, a2)); err == nil {
			t.Error("lz4 directly followed by a cpio archive was accepted; the kernel reads it as a chunk")
		}
		img := cat(lz, make([]byte, 4+padLen(int64(len(lz)))), a2)
		im := parseBytes(t, img)
		if len(im.Segments) != 2 {
			t.Fatalf("%d segments", len(im.Segments))
		}
		out, _, err := im.Rewrite(t.Context(), bytes.NewReader(img), Edit{Recompress: true, Remove: []string{"etc/hosts"}})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := parseBytes(t, out).ReadFile("etc/crypttab"); string(got) != "new\n" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("lz4 incompressible chunk", func(t *testing.T) {
		noise := make([]byte, 100000)
		x := uint32(1)
		for i := range noise {
			x = x*1664525 + 1013904223
			noise[i] = byte(x >> 24)
		}
		raw := mkArchive(t, file("noise", string(noise)))
		im := parseBytes(t, mustEncode(t, LZ4Legacy, raw))
		if got, _ := im.ReadFile("noise"); !bytes.Equal(got, noise) {
			t.Error("noise did not survive lz4")
		}
		if lit := lz4Literals(noise[:20]); len(lit) != 22 || lit[0] != 0xf0 || lit[1] != 5 {
			t.Errorf("literal block header % x", lit[:2])
		}
	})
	t.Run("xz checks", func(t *testing.T) {
		for _, tc := range []struct {
			check byte
			name  string
			ok    bool
		}{{xz.CRC32, "CRC32", true}, {xz.CRC64, "CRC64", true}, {xz.SHA256, "", false}} {
			var buf bytes.Buffer
			w, err := xz.WriterConfig{CheckSum: tc.check}.NewWriter(&buf)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(a1)
			w.Close()
			img := cat(buf.Bytes(), make([]byte, 4), a2)
			im, err := Parse(bytes.NewReader(img), int64(len(img)))
			if !tc.ok {
				if err == nil || !strings.Contains(err.Error(), "SHA-256") {
					t.Errorf("SHA-256 xz: err = %v", err)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if im.Segments[0].XZCheck != tc.name || im.Segments[0].Length != int64(buf.Len()) {
				t.Errorf("check %q length %d, want %q %d", im.Segments[0].XZCheck, im.Segments[0].Length, tc.name, buf.Len())
			}
			out, _, err := im.Rewrite(t.Context(), bytes.NewReader(img), Edit{Recompress: true})
			if err != nil {
				t.Fatal(err)
			}
			if im2 := parseBytes(t, out); im2.Segments[0].XZCheck != "CRC32" {
				t.Errorf("rewritten xz check %q", im2.Segments[0].XZCheck)
			}
		}
	})
	t.Run("refused formats", func(t *testing.T) {
		for name, b := range map[string][]byte{
			"not supported": {0x42, 0x5a, 'h', '9', 1, 2, 3, 4},
			"invalid magic": []byte("hello world"),
			"odc":           append([]byte("070707"), make([]byte, 200)...),
			"old-style":     {0x1f, 0x9e, 0, 0},
		} {
			if err := parseErr(b); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%q: err = %v", name, err)
			}
		}
		if _, err := Parse(bytes.NewReader(nil), MaxImageSize+1); err == nil {
			t.Error("oversized image accepted")
		}
	})
}

func TestReaderErrors(t *testing.T) {
	a := mkArchive(t, file("a", "hello"), file("b", "world!"))
	read := func(b []byte, max int64) error {
		r := NewReader(bytes.NewReader(b))
		r.MaxFileSize = max
		for {
			if _, err := r.Next(); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
		}
	}
	if err := read(a, 0); err != nil {
		t.Fatal(err)
	}
	if err := read(a[:len(a)-4], 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated trailer: %v", err)
	}
	if err := read(a[:120], 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated data: %v", err)
	}
	if err := read(a, 5); err == nil || !strings.Contains(err.Error(), "exceeds limit") {
		t.Errorf("MaxFileSize: %v", err)
	}
	bad := bytes.Clone(a)
	copy(bad[14:22], "0000zzzz") // mode
	if err := read(bad, 0); err == nil || !strings.Contains(err.Error(), "not hex") {
		t.Errorf("non-hex: %v", err)
	}
	bad = bytes.Clone(a)
	copy(bad[94:102], "00001001") // namesize 4097
	if err := read(bad, 0); err == nil || !strings.Contains(err.Error(), "name size") {
		t.Errorf("name size: %v", err)
	}
	bad = bytes.Clone(a)
	bad[111] = 'x' // the NUL after "a"
	if err := read(bad, 0); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("unterminated name: %v", err)
	}
	// A 4 GiB claim on a short input is an error, not an allocation.
	huge := bytes.Clone(a)
	copy(huge[54:62], "FFFFFFF0")
	if err := read(huge, 1<<40); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("huge claim: %v", err)
	}

	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteEntry(&Entry{Header: Header{Name: "x", FileSize: 3}, Data: []byte("ab")}); err == nil {
		t.Error("FileSize mismatch accepted")
	}
	if err := w.WriteEntry(&Entry{Header: Header{Name: "x", NameSize: 5}}); err == nil {
		t.Error("NameSize mismatch accepted")
	}
	if err := w.WriteEntry(&Entry{Header: Header{Name: "TRAILER!!!"}}); err == nil {
		t.Error("trailer name accepted")
	}
}

func TestReaderWriterRoundTrip(t *testing.T) {
	entries := []*Entry{
		{Header: Header{Magic: magicCRC, Ino: 7, Mode: ModeRegular | 0o4755, UID: 1, GID: 2, NLink: 1, MTime: 3,
			DevMajor: 8, DevMinor: 1, Name: "./usr/bin/x", Check: Checksum([]byte("abc"))}, Data: []byte("abc")},
		{Header: Header{Magic: magicCRC, Ino: 8, Mode: ModeChar | 0o600, NLink: 1, RDevMajor: 5, RDevMinor: 1, Name: "dev/console"}},
		{Header: Header{Magic: magicCRC, Ino: 9, Mode: ModeSymlink | 0o777, NLink: 1, Name: "bin"}, Data: []byte("usr/bin")},
	}
	b := mkArchive(t, entries...)
	if len(b)%4 != 0 {
		t.Errorf("archive length %d not a multiple of 4", len(b))
	}
	r := NewReader(bytes.NewReader(b))
	for i, want := range entries {
		got, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		w := want.Header
		w.NameSize = uint32(len(w.Name) + 1)
		w.FileSize = uint32(len(want.Data))
		if got.Header != w || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("entry %d: %+v, want %+v", i, got.Header, w)
		}
	}
	if _, err := r.Next(); err != io.EOF || r.Offset() != int64(len(b)) {
		t.Errorf("after last entry: %v at %d of %d", err, r.Offset(), len(b))
	}
	if !strings.Contains(string(b[len(b)-124:]), magicCRC+"00000000") {
		t.Error("trailer does not reuse the crc magic")
	}
}

func TestADEEditFindings(t *testing.T) {
	raw := mkArchive(t,
		dir("usr"), dir("usr/sbin"), dir("etc"), dir("etc/cmdline.d"),
		file("usr/sbin/cryptroot-ask", "#!/bin/sh\nmount LABEL=\"BEK VOLUME\" /mnt/azure_bek_disk\n"),
		file("usr/lib/dracut/hooks/pre-mount/50-x.sh", "echo osencrypt\n"),
		file("usr/lib/dracut/hooks/pre-mount/60-y.sh", "echo other\n"),
		file("etc/cmdline.d/90crypt.conf", "rd.luks.uuid=osencrypt rd.debug\nrd.lvm.lv=rootvg/rootlv\n"),
		file("etc/cmdline.d/91x.conf", "rd.luks.name=luks-x=osencrypt-old\n"),
		file("etc/cmdline.d/notes.txt", "rd.luks.uuid=osencrypt\n"),
		file("usr/sbin/crypt-run-generator-ade", "x"),
		file("etc/crypttab", "home UUID=1 none\n"),
	)
	im := parseBytes(t, mustEncode(t, XZ, raw))
	e, findings := ADEEdit(im, guest.Policy{})
	if !reflect.DeepEqual(e.Remove, []string{"usr/sbin/crypt-run-generator-ade"}) ||
		!reflect.DeepEqual(e.Replace, map[string][]byte{"etc/cmdline.d/90crypt.conf": []byte("\nrd.lvm.lv=rootvg/rootlv\n")}) {
		t.Errorf("edit %+v", e)
	}
	all := strings.Join(findings, "\n")
	for _, want := range []string{"usr/sbin/cryptroot-ask: 90crypt patched", "cannot be undone",
		"50-x.sh: dracut hook references osencrypt",
		"rewrite etc/cmdline.d/90crypt.conf: remove ADE kernel arguments rd.luks.uuid=osencrypt rd.debug",
		"etc/cmdline.d/91x.conf: built-in kernel arguments still hold ADE residue (reference to ADE's dm-crypt mapper osencrypt); rebuild"} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
	for _, unrelated := range []string{"60-y.sh", "etc/crypttab", "notes.txt", "90crypt.conf: built-in"} {
		if strings.Contains(all, unrelated) {
			t.Errorf("findings name %s:\n%s", unrelated, all)
		}
	}
}
