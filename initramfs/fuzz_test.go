package initramfs

import (
	"bytes"
	"io"
	"testing"

	"github.com/luksconv/luksconv/guest"
)

// fuzzSeeds returns small images of every layout Parse handles, generated here so nothing big is
// committed: plain archives (newc and crc), each compression, dracut's early+main layout, an appended
// overlay, several archives in one stream.
func fuzzSeeds(t testing.TB) [][]byte {
	a := mkArchive(t, dir("etc"), file("etc/crypttab", "osencrypt /dev/sda2 none luks"), file("x", ""),
		&Entry{Header: Header{Name: "dev/console", Mode: ModeChar | 0o600, NLink: 1, RDevMajor: 5, RDevMinor: 1}},
		&Entry{Header: Header{Name: "bin", Mode: ModeSymlink | 0o777, NLink: 1}, Data: []byte("usr/bin")},
		&Entry{Header: Header{Name: "h1", Mode: ModeRegular | 0o755, NLink: 2, Ino: 9}},
		&Entry{Header: Header{Name: "h2", Mode: ModeRegular | 0o755, NLink: 2, Ino: 9}, Data: []byte("linked")})
	crc := mkArchive(t, &Entry{Header: Header{Magic: magicCRC, Name: "c", Mode: ModeRegular, NLink: 1, Check: Checksum([]byte("abc"))}, Data: []byte("abc")})
	early := mkArchive(t, file("early_cpio", "1\n"), file("kernel/x86/microcode/GenuineIntel.bin", "ucode"))
	seeds := [][]byte{a, crc, cat(make([]byte, 4), a, make([]byte, 8))}
	for _, c := range allCompressions {
		comp := mustEncode(t, c, a)
		seeds = append(seeds, comp, cat(early, comp), cat(comp, make([]byte, 4+padLen(int64(len(comp)))), crc))
	}
	seeds = append(seeds, mustEncode(t, Gzip, cat(a, make([]byte, 12), crc)))
	return seeds
}

func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f)[:3] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b))
		r.MaxFileSize = 1 << 20
		var entries []*Entry
		for {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
			if r.Offset()%4 != 0 || r.Offset() > int64(len(b)) {
				t.Fatalf("offset %d after an entry (input %d bytes)", r.Offset(), len(b))
			}
			entries = append(entries, e)
		}
		// What was read writes back and reads back the same.
		var buf bytes.Buffer
		w := NewWriter(&buf)
		for _, e := range entries {
			if err := w.WriteEntry(e); err != nil {
				t.Fatalf("rewriting %q: %v", e.Name, err)
			}
		}
		w.Close()
		r2 := NewReader(&buf)
		for i, want := range entries {
			got, err := r2.Next()
			if err != nil {
				t.Fatalf("re-reading entry %d: %v", i, err)
			}
			if got.Header != want.Header || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("entry %d changed: %+v vs %+v", i, got.Header, want.Header)
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	old := maxExpanded
	maxExpanded = 16 << 20 // keep decompression bombs cheap
	f.Cleanup(func() { maxExpanded = old })
	f.Fuzz(func(t *testing.T, b []byte) {
		im, err := Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		var end int64 = im.LeadingPadding
		for _, s := range im.Segments {
			if s.Offset != end || s.Length <= 0 {
				t.Fatalf("segment at %d (length %d), previous ended at %d", s.Offset, s.Length, end)
			}
			end = s.Offset + s.Length + s.Padding
		}
		if end != int64(len(b)) {
			t.Fatalf("segments cover %d of %d bytes", end, len(b))
		}
		edit, _ := ADEEdit(im, guest.Policy{CrypttabBEK: true})
		edit.Recompress = true
		out, _, err := im.Rewrite(t.Context(), bytes.NewReader(b), edit)
		if err != nil {
			return // e.g. an unwritable entry such as a replaced directory
		}
		im2, err := Parse(bytes.NewReader(out), int64(len(out)))
		if err != nil {
			t.Fatalf("rewritten image does not parse: %v", err)
		}
		if len(im2.Segments) != len(im.Segments) {
			t.Fatalf("rewritten image has %d segments, had %d", len(im2.Segments), len(im.Segments))
		}
		for k, ent := range im2.Files() {
			if _, _, ade := guest.ADEInitramfsFile(k); ade && !ent.IsDir() {
				t.Fatalf("%s survived ADEEdit", k)
			}
		}
	})
}
