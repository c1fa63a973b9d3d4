package luksconv_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/xfs"
)

// TestZeroCiphertext converts rhel7-luks1-sparse (RHEL 7's dd conv=sparse: 64 KiB ciphertext blocks
// left all zero where the plaintext was zero, including most of the root filesystem's XFS log), by
// default and with --full-copy. The analysis must see the log as clean, so the root's free space is
// skipped; the log's zero ciphertext becomes zeros, so xfs_repair -n accepts the output; every file
// matches the manifest's sha256sum; and the output differs from the plaintext only in zero-ciphertext
// sectors the report says were decrypted (in use, outside the log).
func TestZeroCiphertext(t *testing.T) {
	set := fixture.Load(t)
	f, ok := set.Get("rhel7-luks1-sparse")
	if !ok {
		t.Fatal("no rhel7-luks1-sparse fixture")
	}
	part, ok := f.Part(f.Partition)
	if !ok {
		t.Fatalf("no partition %d in the manifest", f.Partition)
	}
	var root *fixture.Filesystem
	for i := range f.Filesystems {
		if fs := &f.Filesystems[i]; fs.Partition == f.Partition && fs.Encrypted {
			root = fs
		}
	}
	if root == nil || root.Type != "xfs" {
		t.Fatal("the manifest names no encrypted XFS root")
	}
	source := readRange(t, f.Image, part.Start, part.Size)

	for _, full := range []bool{false, true} {
		name := map[bool]string{false: "used-blocks", true: "full-copy"}[full]
		t.Run(name, func(t *testing.T) {
			out, p, res := convert(t, f.Image, f.Header, f.KeyFiles[0], f.Partition, luksconv.FormatRaw, 2, false, full)
			for _, w := range warnMessages(p.Warnings) {
				if strings.Contains(w, "dirty") {
					t.Errorf("the analysis saw a dirty log: %s", w)
				}
			}
			skipped := map[string]int64{}
			for _, s := range p.Skipped {
				skipped[s.Reason] = s.Bytes
			}
			want := "xfs free space: partition 2"
			if !full && skipped[want] < root.Size/2 {
				t.Errorf("skipped %d bytes for %q, want most of the %d-byte root (skipped: %v)", skipped[want], want, root.Size, p.Skipped)
			}
			if full && len(p.Skipped) != 0 {
				t.Errorf("full copy skipped %v", p.Skipped)
			}
			// The log is marked, and nothing outside Decrypt regions is.
			var logBytes, marked int64
			for _, r := range p.Regions {
				if r.ZeroCiphertextAsZero {
					if r.Kind != luksconv.Decrypt {
						t.Fatalf("%s region marked: %+v", r.Kind, r)
					}
					marked += r.Length
					if r.Reason == "xfs log: partition 2" {
						logBytes += r.Length
					}
				}
			}
			if logBytes == 0 {
				t.Fatalf("no decrypt region marked for the XFS log: %+v", p.Regions)
			}

			// Count the zero ciphertext sectors ourselves, from the source, by region.
			var zeroMarked, zeroOther int64
			for _, r := range p.Regions {
				if r.Kind != luksconv.Decrypt {
					continue
				}
				for o := int64(0); o < r.Length; o += 512 {
					at := r.Source + o - part.Start
					if allZeroBytes(source[at : at+512]) {
						if r.ZeroCiphertextAsZero {
							zeroMarked += 512
						} else {
							zeroOther += 512
						}
					}
				}
			}
			if res.ZeroCiphertextZeroed != zeroMarked || res.ZeroCiphertextDecrypted != zeroOther {
				t.Errorf("report: zeroed %d, decrypted %d; the source holds %d and %d", res.ZeroCiphertextZeroed,
					res.ZeroCiphertextDecrypted, zeroMarked, zeroOther)
			}
			if zeroMarked < logBytes/2 {
				t.Errorf("only %d zero-ciphertext bytes zeroed; the fixture's log (%d bytes) is mostly zero ciphertext", zeroMarked, logBytes)
			}

			// Byte for byte: differences from the plaintext lie only in zero-ciphertext sectors that were
			// decrypted.
			got := readRange(t, out, part.Start, part.Size)
			exp := readRange(t, f.Expected, part.Start, part.Size)
			var diff int64
			for o := 0; o < len(got); o += 512 {
				if bytes.Equal(got[o:o+512], exp[o:o+512]) {
					continue
				}
				if !allZeroBytes(source[o : o+512]) {
					t.Fatalf("output sector at partition byte %d differs from the plaintext and its ciphertext is not zero", o)
				}
				diff += 512
			}
			if diff > res.ZeroCiphertextDecrypted {
				t.Errorf("%d bytes differ from the plaintext; only %d zero-ciphertext bytes were decrypted", diff, res.ZeroCiphertextDecrypted)
			}

			// xfs_repair -n accepts the root, and every file reads back as sha256sum saw it.
			img := filepath.Join(t.TempDir(), "root.xfs")
			if err := os.WriteFile(img, got[:root.Size], 0o600); err != nil {
				t.Fatal(err)
			}
			if o, err := exec.Command("xfs_repair", "-n", img).CombinedOutput(); err != nil {
				t.Fatalf("xfs_repair -n: %v\n%s", err, o)
			}
			fs, err := xfs.Open(bytes.NewReader(got), root.Size)
			if err != nil {
				t.Fatal(err)
			}
			files := 0
			for _, file := range root.Files {
				if file.Type != "file" {
					continue
				}
				b, err := fs.ReadFile(file.Path)
				if err != nil {
					t.Fatalf("%s: %v", file.Path, err)
				}
				sum := sha256.Sum256(b)
				if hex.EncodeToString(sum[:]) != file.SHA256 {
					t.Errorf("%s: content differs from the fixture", file.Path)
				}
				files++
			}
			if files == 0 {
				t.Fatal("no files checked")
			}
		})
	}
}

func allZeroBytes(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }
