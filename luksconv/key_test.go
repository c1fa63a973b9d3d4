package luksconv_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
)

// TestReadKeyFileErrors: a key file that does not exist, is reached through a non-directory, is not a
// regular file or is empty is ErrKeyFile (the caller's usage error); one that cannot be reached
// otherwise (a share's EIO or ESTALE; here ELOOP, which root meets too) is a plain error that a retry
// may not meet.
func TestReadKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	loop := testenv.LoopPath(t, dir)
	empty := testenv.WriteFile(t, dir, "empty", nil)
	for path, want := range map[string]bool{filepath.Join(dir, "none"): true, filepath.Join(empty, "k"): true, dir: true, empty: true, loop: false} {
		_, err := luksconv.ReadKeyFile(path)
		if err == nil || errors.Is(err, luksconv.ErrKeyFile) != want {
			t.Errorf("%s: %v; want ErrKeyFile %v", path, err, want)
		}
	}
}
