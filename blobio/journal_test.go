package blobio

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/vhd"
)

func testHeader(t *testing.T, size int64) *journalHeader {
	t.Helper()
	f, err := vhd.FixedFooterBytes(size)
	if err != nil {
		t.Fatal(err)
	}
	return &journalHeader{Size: size, Target: "127.0.0.1:1/acct/c/b", Tag: "plan \"x\"\n", ZeroFilled: true, Footer: f}
}

func TestJournalRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	h := testHeader(t, 1<<20)
	j, err := createJournal(path, h)
	if err != nil {
		t.Fatal(err)
	}
	want := []extent.Range{{Off: 0, Len: 4096}, {Off: 8192, Len: 512}, {Off: 1<<20 - 512, Len: 512}}
	for _, e := range want {
		if err := j.add(e); err != nil {
			t.Fatal(err)
		}
	}
	// Not flushed yet: a batch is 64 records.
	if _, recs, _, err := loadJournal(path); err != nil || len(recs) != 0 {
		t.Fatalf("before flush: %v records, err %v", recs, err)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	if err := j.add(extent.Range{Off: 0, Len: 512}); err == nil {
		t.Fatal("add after close succeeded")
	}
	h2, recs, n, err := loadJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h2, h) || !reflect.DeepEqual(recs, want) {
		t.Fatalf("loaded %+v %v, want %+v %v", h2, recs, h, want)
	}
	if st, _ := os.Stat(path); st.Size() != n {
		t.Fatalf("valid length %d, file %d", n, st.Size())
	}
}

func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	h := testHeader(t, 1<<20)
	good := string(h.marshal()) + recordLine(extent.Range{Off: 0, Len: 4096}) + recordLine(extent.Range{Off: 4096, Len: 4096})
	for name, tail := range map[string]string{
		"no newline":   "W 8192 40",
		"bad checksum": "W 8192 4096 00000000\n",
		"garbage":      "\x00\x00\x00\x00\n",
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(path, []byte(good+tail), 0o644)
		_, recs, n, err := loadJournal(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(recs) != 2 || n != int64(len(good)) {
			t.Fatalf("%s: %d records, valid length %d, want 2 and %d", name, len(recs), n, len(good))
		}
		// Reopening cuts the torn line, so the next record starts on a line of its own.
		j, err := appendJournal(path, n)
		if err != nil {
			t.Fatal(err)
		}
		j.add(extent.Range{Off: 8192, Len: 4096})
		j.close()
		if _, recs, _, err := loadJournal(path); err != nil || len(recs) != 3 {
			t.Fatalf("%s: after append: %v, %v", name, recs, err)
		}
	}
}

func TestJournalCorrupt(t *testing.T) {
	dir := t.TempDir()
	h := testHeader(t, 1<<20)
	hdr := string(h.marshal())
	cases := map[string]string{
		"middle line":   hdr + "W 0 4096 00000000\n" + recordLine(extent.Range{Off: 4096, Len: 512}),
		"outside disk":  hdr + recordLine(extent.Range{Off: 1 << 20, Len: 512}) + recordLine(extent.Range{Off: 0, Len: 512}),
		"unaligned":     hdr + recordLine(extent.Range{Off: 100, Len: 512}) + recordLine(extent.Range{Off: 0, Len: 512}),
		"not a journal": "hello\n",
		"bad header":    strings.Replace(hdr, "zerofilled true", "zerofilled maybe", 1),
		"short footer":  strings.Replace(hdr, "footer ", "footer 00", 1)[:len(hdr)-300] + "\nend\n",
	}
	for name, content := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(path, []byte(content), 0o644)
		if _, _, _, err := loadJournal(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want an error naming the file", name, err)
		}
	}
	if _, _, _, err := loadJournal(filepath.Join(dir, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent journal: %v", err)
	}
}
