package luksconv

import (
	"fmt"
	"os"

	"github.com/luksconv/luksconv/internal/recovered"
	"golang.org/x/sys/unix"
)

// startWriteBehind starts the writer of f's completed windows.
func startWriteBehind(f *os.File) *writeBehind {
	w := &writeBehind{f: f, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *writeBehind) run() {
	defer close(w.done)
	// A panic is a writeback error, which stop returns: Commit fails and the output is removed.
	defer recovered.Catch(func(err error) { w.err = err })
	fd := int(w.f.Fd())
	n := writeBehindWindow
	next := int64(0) // the first window not yet written back
	for range w.kick {
		if w.quit.Load() {
			return
		}
		for w.err == nil && (next+2)*n <= w.hw.Load() {
			err := unix.SyncFileRange(fd, (next+1)*n, n, unix.SYNC_FILE_RANGE_WRITE)
			if err == nil {
				err = unix.SyncFileRange(fd, next*n, n,
					unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
			}
			if err != nil {
				w.err = fmt.Errorf("writing back bytes %d-%d: %w", next*n, (next+1)*n, err)
				break
			}
			// Only a hint: the pages are clean, dropping them frees memory for the next windows.
			unix.Fadvise(fd, next*n, n, unix.FADV_DONTNEED)
			next++
		}
	}
}
