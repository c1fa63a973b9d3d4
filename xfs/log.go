package xfs

import (
	"encoding/binary"
	"fmt"
)

// The internal log is a circular buffer of 512-byte basic blocks (BBs).
// Every BB written in pass number c of the log starts with c (the cycle),
// so the head — where the next write goes — is where the cycle number drops.
// The log is clean when the last record before the head is a lone unmount
// record ending exactly at the head (xfsprogs libxlog / kernel
// xfs_log_recover.c: xlog_find_head, xlog_check_unmount_rec). As in the
// kernel, a record that does not end at the head moves the head back to
// its start first.

const (
	bbSize          = 512
	logRecMagic     = 0xfeedbabe
	logVersion2     = 2
	logHeaderCycle  = 32768 // XLOG_HEADER_CYCLE_SIZE: bytes covered per header block
	logUnmountTrans = 0x20  // XLOG_UNMOUNT_TRANS in xlog_op_header.oh_flags
	// logScanBBs is XLOG_TOTAL_REC_SHIFT: 8 in-flight iclogs of 256 KiB
	// may land out of order just before the head.
	logScanBBs = 8 * (256 << 10) / bbSize
	// logRecSearchBBs bounds the backwards search for the last record
	// header: a record is at most 8 header BBs plus 256 KiB of data.
	logRecSearchBBs = 8 + (256<<10)/bbSize + 8
)

type logDev struct {
	fs  *FS
	off int64 // device offset of BB 0
	n   int64 // BBs in the log
}

func (l *logDev) read(bb, count int64) ([]byte, error) {
	buf := make([]byte, count*bbSize)
	if err := l.fs.readAt(buf, l.off+bb*bbSize, "log"); err != nil {
		return nil, err
	}
	return buf, nil
}

func (l *logDev) cycle(bb int64) (uint32, error) {
	var b [8]byte
	if err := l.fs.readAt(b[:], l.off+bb*bbSize, "log"); err != nil {
		return 0, err
	}
	return bbCycle(b[:]), nil
}

// bbCycle is the cycle number of a basic block: its first word, or h_cycle
// for a record header, whose first word is the magic (xlog_get_cycle).
func bbCycle(b []byte) uint32 {
	if binary.BigEndian.Uint32(b) == logRecMagic {
		return binary.BigEndian.Uint32(b[4:])
	}
	return binary.BigEndian.Uint32(b)
}

// findCycle returns the first BB in [start, start+count) whose cycle is
// want, or -1.
func (l *logDev) findCycle(start, count int64, want uint32) (int64, error) {
	const chunk = 256
	for done := int64(0); done < count; done += chunk {
		n := min(chunk, count-done)
		buf, err := l.read(start+done, n)
		if err != nil {
			return 0, err
		}
		for i := int64(0); i < n; i++ {
			if bbCycle(buf[i*bbSize:]) == want {
				return start + done + i, nil
			}
		}
	}
	return -1, nil
}

// cycleStart binary-searches [lo, hi] for the first BB whose cycle is want,
// given cycle(lo) != want and cycle(hi) == want.
func (l *logDev) cycleStart(lo, hi int64, want uint32) (int64, error) {
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		c, err := l.cycle(mid)
		if err != nil {
			return 0, err
		}
		if c == want {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}

// findHead returns the head BB in [0, n).
func (l *logDev) findHead() (int64, error) {
	first, err := l.cycle(0)
	if err != nil {
		return 0, err
	}
	last, err := l.cycle(l.n - 1)
	if err != nil {
		return 0, err
	}
	if last == 0 { // the log has not wrapped since it was formatted
		if first == 0 {
			return 0, nil
		}
		head, err := l.cycleStart(0, l.n-1, 0)
		if err != nil {
			return 0, err
		}
		scan := min(int64(logScanBBs), head)
		if b, err := l.findCycle(head-scan, scan, 0); err != nil {
			return 0, err
		} else if b >= 0 {
			head = b
		}
		return head, nil
	}
	var head int64
	var stop uint32
	if first == last {
		// The whole log seems to carry cycle x; look for a hole of x-1
		// near the end left by out-of-order writes.
		head, stop = l.n, last-1
	} else {
		head, err = l.cycleStart(0, l.n-1, last)
		if err != nil {
			return 0, err
		}
		stop = last
	}
	scan := min(int64(logScanBBs), l.n)
	if head >= scan {
		if b, err := l.findCycle(head-scan, scan, stop); err != nil {
			return 0, err
		} else if b >= 0 {
			head = b
		}
	} else {
		// The window wraps: the physical end must not hold stop-1, the
		// start must not hold stop before the estimated head.
		b, err := l.findCycle(l.n-(scan-head), scan-head, stop-1)
		if err != nil {
			return 0, err
		}
		if b >= 0 {
			head = b
		} else if b, err = l.findCycle(0, head, stop); err != nil {
			return 0, err
		} else if b >= 0 {
			head = b
		}
	}
	return head % l.n, nil
}

// checkLog returns nil when the internal log is clean, an error wrapping
// ErrDirtyLog when it is not, and other errors when it cannot be read.
func (fs *FS) checkLog() error {
	s := &fs.SB
	if s.LogStart == 0 {
		return fmt.Errorf("%w: external log device; its state cannot be checked", ErrUnsupported)
	}
	off, ok := fs.fsbToOffset(s.LogStart, uint64(s.LogBlocks))
	if !ok {
		return corrupt("superblock", 0, "internal log %d+%d outside the data device", s.LogStart, s.LogBlocks)
	}
	l := &logDev{fs: fs, off: off, n: int64(s.LogBlocks) * fs.bs / bbSize}
	if l.n < 64 {
		return corrupt("log", off, "only %d basic blocks", l.n)
	}
	head, err := l.findHead()
	if err != nil {
		return err
	}
	if c, err := l.cycle(head); err != nil {
		return err
	} else if head == 0 && c == 0 {
		return nil // never written: nothing to replay
	}
	dirty := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrDirtyLog, fmt.Sprintf(format, args...))
	}
	rec, err := l.lastRecord(head)
	if err != nil {
		return err
	}
	if rec != nil && rec.end != head {
		// The kernel never puts the head inside or after a gap behind a
		// record: it moves the head back to that record's start and
		// ignores the record (xlog_find_verify_log_record). xfs_repair -L
		// on a wrapped log leaves exactly this shape: a two-block unmount
		// record, zeros up to block 512, then older-cycle records.
		head = rec.bb
		if rec, err = l.lastRecord(head); err != nil {
			return err
		}
	}
	if rec == nil {
		return dirty("no log record header within %d blocks before the head (block %d)", min(int64(logRecSearchBBs), l.n), head)
	}
	if string(rec.hdr[304:320]) != string(s.UUID[:]) {
		return dirty("log record at block %d belongs to another filesystem UUID", rec.bb)
	}
	if rec.end != head {
		return dirty("last record (block %d) ends at block %d, head is at %d", rec.bb, rec.end, head)
	}
	if numOps := binary.BigEndian.Uint32(rec.hdr[40:]); numOps != 1 {
		return dirty("last record (block %d) holds %d operations, not an unmount record", rec.bb, numOps)
	}
	op, err := l.read((rec.bb+rec.hblks)%l.n, 1)
	if err != nil {
		return err
	}
	if op[9]&logUnmountTrans == 0 {
		return dirty("last record (block %d) is not an unmount record", rec.bb)
	}
	return nil
}

// logRecord is a log record header found in the log.
type logRecord struct {
	bb    int64  // BB of the header
	hdr   []byte // the header's first BB
	hblks int64  // header BBs (v2 logs with iclogs over 32 KiB have more)
	end   int64  // BB after the record's data, modulo the log size
}

// lastRecord returns the last record header before BB head, searching
// backwards as far as one record can reach, or nil if there is none.
func (l *logDev) lastRecord(head int64) (*logRecord, error) {
	search := min(int64(logRecSearchBBs), l.n)
	for i := int64(1); i <= search; i++ {
		bb := (head - i + l.n) % l.n
		b, err := l.read(bb, 1)
		if err != nil {
			return nil, err
		}
		if binary.BigEndian.Uint32(b) != logRecMagic {
			continue
		}
		be := binary.BigEndian
		version := be.Uint32(b[8:])
		hlen := int64(be.Uint32(b[12:]))
		hsize := int64(be.Uint32(b[320:]))
		at := l.off + bb*bbSize
		if hlen > 1<<20 {
			return nil, corrupt("log record header", at, "length %d", hlen)
		}
		hblks := int64(1)
		if version&logVersion2 != 0 && hsize > logHeaderCycle {
			hblks = (hsize + logHeaderCycle - 1) / logHeaderCycle
			if hblks > 8 {
				return nil, corrupt("log record header", at, "iclog size %d", hsize)
			}
		}
		end := (bb + hblks + (hlen+bbSize-1)/bbSize) % l.n
		return &logRecord{bb: bb, hdr: b, hblks: hblks, end: end}, nil
	}
	return nil, nil
}
