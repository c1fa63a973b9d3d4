package main

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes a write lock on all of f without waiting: an open file description lock, which NFS
// and SMB clients hold on the server, so that runs on two machines sharing --journal-dir exclude each
// other; the kernel drops it when f is closed or the process ends. held reports another holder;
// a filesystem without locks is not an error (nothing is locked).
func lockFile(f *os.File) (held bool, err error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EACCES):
		return true, nil
	case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
		return false, nil
	}
	return false, err
}
