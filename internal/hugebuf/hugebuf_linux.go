package hugebuf

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

var pool struct {
	sync.Mutex
	free   map[int][][]byte // returned mappings by size
	mapped map[*byte]bool   // the first byte of every mapping Get made
}

// get returns a mapping of n bytes that starts on a Size boundary, or nil when the kernel refuses one.
func get(n int) []byte {
	pool.Lock()
	if bs := pool.free[n]; len(bs) > 0 {
		b := bs[len(bs)-1]
		pool.free[n] = bs[:len(bs)-1]
		pool.Unlock()
		return b
	}
	pool.Unlock()
	// Map Size more than needed and unmap the ends, so that the buffer's huge pages line up with the
	// kernel's: Linux aligns large anonymous mappings itself only since 6.7.
	pg := uintptr(unix.Getpagesize())
	m := (uintptr(n) + pg - 1) &^ (pg - 1)
	span := m + Size
	p, err := unix.MmapPtr(-1, 0, nil, span, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	head := (Size - uintptr(p)%Size) % Size
	if head > 0 {
		unix.MunmapPtr(p, head)
	}
	start := unsafe.Add(p, head)
	if tail := span - head - m; tail > 0 {
		unix.MunmapPtr(unsafe.Add(start, m), tail)
	}
	b := unsafe.Slice((*byte)(start), n)
	// Refused where transparent huge pages are not built in: the buffer then has small pages.
	unix.Madvise(b, unix.MADV_HUGEPAGE)
	pool.Lock()
	if pool.mapped == nil {
		pool.mapped, pool.free = make(map[*byte]bool), make(map[int][][]byte)
	}
	pool.mapped[&b[0]] = true
	pool.Unlock()
	return b
}

// put wipes and keeps b if Get mapped it, and reports whether it did.
func put(b []byte) bool {
	if len(b) < Size {
		return false
	}
	pool.Lock()
	defer pool.Unlock()
	if !pool.mapped[&b[0]] {
		return false
	}
	// MADV_DONTNEED frees the pages of a private anonymous mapping: the next touch maps zeroed ones.
	if unix.Madvise(b, unix.MADV_DONTNEED) != nil {
		clear(b)
	}
	pool.free[len(b)] = append(pool.free[len(b)], b)
	return true
}
