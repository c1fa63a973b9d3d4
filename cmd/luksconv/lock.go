package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// errBusy: another run of the same conversion holds its lock. A retry after that run ends can
// succeed, so it is exit 1.
var errBusy = errors.New("another run of this conversion is in progress")

// lockConversion takes the lock of the conversion named by key (a VM's or a new disk's resource ID) in
// dir, --journal-dir, for as long as the run lasts: two runs at once (a fleet task retried while the
// first still runs on a lost node, a manual run beside a fleet's) would share the stage records and
// journals, and could both re-create the VM. release drops it and removes the lock file, so that
// nothing but the journals and records stays in dir.
func lockConversion(dir, key string) (release func(), err error) {
	h := sha256.Sum256([]byte(strings.ToLower(key)))
	name := filepath.Join(dir, fmt.Sprintf(".luksconv-%s-%x.lock", path.Base(key), h[:4]))
	// A holder removes the file while it still holds the lock: a run that locked the removed file
	// finds another (or none) at the name, and tries again.
	for range 8 {
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
		if missingDir(err) {
			return nil, fmt.Errorf("%w: lock of the conversion: %s does not exist or is not a directory: %v", errUsage, dir, err)
		} else if err != nil {
			return nil, fmt.Errorf("lock of the conversion: %w", err)
		}
		held, err := lockFile(f)
		if err != nil || held {
			f.Close()
			if held {
				return nil, &hintedError{fmt.Errorf("%w: %s is locked", errBusy, name),
					"wait for the other run to end (a rerun then resumes or finds the work done); the lock goes with its process"}
			}
			return nil, fmt.Errorf("lock of the conversion %s: %w", name, err)
		}
		fi, ferr := f.Stat()
		ni, nerr := os.Stat(name)
		if ferr == nil && nerr == nil && os.SameFile(fi, ni) {
			return func() {
				os.Remove(name)
				f.Close()
			}, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("%w: %s keeps being replaced", errBusy, name)
}

// missingDir reports whether err says that a path, or a directory on its way, does not exist or is
// not a directory: a usage error (exit 2). Any other error reaching the journal directory (a share's
// EIO, ESTALE, EACCES) may pass on a retry (exit 1).
func missingDir(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
