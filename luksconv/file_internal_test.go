package luksconv

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestFileOutputCommitNoReplace: a file made at the output's name while the conversion ran (another
// run, the user) stays, and Commit fails with ErrOutputExists and removes its partial file; with
// Overwrite it is replaced. linkRename, the fallback where renameat2's RENAME_NOREPLACE is missing,
// refuses the same way.
func TestFileOutputCommitNoReplace(t *testing.T) {
	p := &Plan{OutputSize: 1 << 20, Format: FormatRaw}
	for _, overwrite := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "out.raw")
		o, err := CreateFile(p, path, OutputOptions{Overwrite: overwrite})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.WriteAt([]byte("converted"), 0); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("someone else's"), 0o644); err != nil {
			t.Fatal(err)
		}
		err = o.Commit(t.Context())
		got, _ := os.ReadFile(path)
		switch {
		case !overwrite && (!errors.Is(err, ErrOutputExists) || string(got) != "someone else's"):
			t.Errorf("without Overwrite: Commit %v; the file holds %q", err, got[:min(len(got), 16)])
		case overwrite && (err != nil || len(got) != 1<<20):
			t.Errorf("with Overwrite: Commit %v; the file holds %d bytes", err, len(got))
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Errorf("overwrite %v: left in the directory: %v", overwrite, ents)
		}
	}

	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, f := range []string{a, b} {
		if err := os.WriteFile(f, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := linkRename(a, b); !errors.Is(err, fs.ErrExist) {
		t.Errorf("linkRename onto a file: %v", err)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	if err := linkRename(a, b); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(b); err != nil || string(got) != a {
		t.Errorf("after linkRename: %q %v", got, err)
	}
	if _, err := os.Lstat(a); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("linkRename kept the old name: %v", err)
	}
}
