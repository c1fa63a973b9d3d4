package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/internal/fixture"
)

// uploadImage writes a local raw disk image into a new page blob as a fixed VHD, the way an exported
// snapshot looks.
func uploadImage(t *testing.T, sasURL, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := blobio.CreatePageBlobSink(ctx, sasURL, int64(len(data)), blobio.SinkOptions{Workers: 4, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const chunk = 4 << 20
	for off := 0; off < len(data); off += chunk {
		if _, err := s.WriteAt(data[off:min(off+chunk, len(data))], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// download reads a page blob's first n bytes.
func download(t *testing.T, sasURL string, n int64) []byte {
	t.Helper()
	src, err := blobio.OpenPageBlob(context.Background(), sasURL, blobio.SourceOptions{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	b := make([]byte, n)
	if _, err := src.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConvertSASToSAS converts an ADE disk held in a page blob straight into another page blob, by SAS
// URLs as `az snapshot grant-access` and `az disk grant-access` give them, against Azurite; the result
// must hold the same disk as a local conversion, and no SAS signature may be printed.
func TestConvertSASToSAS(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	az := azurite.Start(t)
	az.CreateContainer(t, "disks")
	srcSAS := az.BlobSAS(t, "disks", "ade-snapshot.vhd", azurite.WriteSAS, time.Hour)
	uploadImage(t, srcSAS, f.Image)
	readSAS := az.BlobSAS(t, "disks", "ade-snapshot.vhd", azurite.ReadSAS, time.Hour)
	dstSAS := az.BlobSAS(t, "disks", "plain.vhd", azurite.WriteSAS, time.Hour)

	dir := t.TempDir()
	local := filepath.Join(dir, "local.raw")
	if _, se, code := run(t, nil, "convert", "-q", "--key-file", f.KeyFiles[0], f.Image, local); code != 0 {
		t.Fatalf("local convert: exit %d: %s", code, se)
	}
	// With debug logging: nothing printed or written holds the passphrase, the volume key or a SAS
	// signature (as sent or decoded).
	sec := fixtureSecrets(t, f)
	for _, u := range []string{srcSAS, readSAS, dstSAS} {
		sec.addSAS(t, u)
	}
	cmd := []string{"--debug", "convert", "--verify", "--key-file", f.KeyFiles[0], "--journal", filepath.Join(dir, "j"), readSAS, dstSAS}
	so, se, code := run(t, nil, cmd...)
	if code != 0 {
		t.Fatalf("SAS convert: exit %d:\n%s", code, se)
	}
	sec.check(t, "the standard output of a SAS convert", []byte(so))
	sec.check(t, "the standard error of a SAS convert", []byte(se))
	for _, want := range []string{`msg="opening page blob" url="http`, "sig=REDACTED", `msg="source opened"`, `msg="LUKS header found"`,
		`msg="keyslot opened"`, `msg="output opened" kind="page blob"`, `msg="execute progress"`, "Verify "} {
		if !strings.Contains(se, want) {
			t.Errorf("the debug output lacks %q:\n%s", want, se)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "j")); !os.IsNotExist(err) {
		t.Errorf("the journal was not removed after a complete run: %v", err)
	}
	want, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	got := download(t, az.BlobSAS(t, "disks", "plain.vhd", azurite.ReadSAS, time.Hour), int64(len(want)))
	if !bytes.Equal(got, want) {
		t.Fatal("the uploaded disk differs from the local conversion")
	}
	sec.check(t, "the uploaded disk", got)
	if n := sec.checkDir(t, dir); n != 1 {
		t.Errorf("want only local.raw in the work directory, found %d files", n)
	}

	// inspect takes a SAS URL too.
	so, se, code = run(t, nil, "inspect", readSAS)
	if code != 0 || !strings.Contains(so, "osluksheader") || strings.Contains(so+se, sasSig(t, readSAS)) {
		t.Fatalf("inspect SAS: exit %d:\n%s%s", code, so, se)
	}
	// The output cannot be the input.
	if _, _, code := run(t, nil, "convert", "--key-file", f.KeyFiles[0], readSAS, srcSAS); code != exitOutput {
		t.Fatalf("SAS output equal to the input: exit %d, want %d", code, exitOutput)
	}
}

func sasSig(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	sig := p.Query().Get("sig")
	if sig == "" {
		t.Fatalf("no sig in %s", blobio.Redact(u))
	}
	return sig
}
