package luksconv

import (
	"os"
	"sync/atomic"
)

// writeBehind keeps a file output's dirty page cache bounded. Execute writes a whole disk through the
// page cache; left alone, gigabytes of dirty pages pile up for the fsync at Commit, and on a VM whose
// freed memory goes back to the host each new page costs a host fault. Measured on this project's
// machine (README, Performance): with the cache bounded a dense 2 GiB output took 0.9-1.07× the time of
// `cat IN > OUT; sync OUT` on ext4 and XFS, without it up to 1.3× with a wide spread.
//
// Once writes have passed a window by two windows, the writer starts writeback of the next window,
// waits for this one and drops it from the cache. sync_file_range makes nothing durable (Commit's
// fsync does) but reports write errors, which a later fsync on the same file would not report again:
// the first one is kept and returned by stop.
type writeBehind struct {
	f    *os.File
	hw   atomic.Int64 // the highest byte written so far (skipped zero chunks never reach WriteAt)
	quit atomic.Bool
	kick chan struct{} // never closed: a stray WriteAt after Commit must not panic
	done chan struct{}
	err  error // the first writeback error; read after done is closed
}

// writeBehindWindow is the unit of writeback: large enough for the device to stream, small enough
// that three windows of a 2-worker run stay far below memory.
var writeBehindWindow int64 = 128 << 20

// wrote records that bytes up to end were written.
func (w *writeBehind) wrote(end int64) {
	if w == nil {
		return
	}
	for {
		m := w.hw.Load()
		if end <= m || w.hw.CompareAndSwap(m, end) {
			break
		}
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// stop ends the writer (what is left is Commit's fsync's) and returns its first writeback error.
func (w *writeBehind) stop() error {
	if w == nil {
		return nil
	}
	w.quit.Store(true)
	select {
	case w.kick <- struct{}{}:
	default: // a kick is pending already
	}
	<-w.done
	return w.err
}
