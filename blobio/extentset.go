package blobio

import (
	"slices"
	"sort"

	"github.com/luksconv/luksconv/extent"
)

// extentSet is a set of byte ranges kept sorted and merged.
type extentSet struct{ ext []extent.Range }

// first returns the index of the first extent ending after off.
func (s *extentSet) first(off int64) int {
	return sort.Search(len(s.ext), func(i int) bool { return s.ext[i].End() > off })
}

// add inserts [off, off+n). Writes arrive roughly in order, so the insertion
// point is usually near the end and the copy short.
func (s *extentSet) add(off, n int64) {
	if n <= 0 {
		return
	}
	e := extent.Range{Off: off, Len: n}
	// Extents that overlap or touch e: [i, j).
	i := sort.Search(len(s.ext), func(i int) bool { return s.ext[i].End() >= off })
	j := i
	for j < len(s.ext) && s.ext[j].Off <= e.End() {
		lo := min(e.Off, s.ext[j].Off)
		e = extent.Range{Off: lo, Len: max(e.End(), s.ext[j].End()) - lo}
		j++
	}
	s.ext = slices.Replace(s.ext, i, j, e)
}

// covers reports whether every byte of [off, off+n) is in the set.
func (s *extentSet) covers(off, n int64) bool {
	if n <= 0 {
		return true
	}
	i := s.first(off)
	return i < len(s.ext) && s.ext[i].Off <= off && s.ext[i].End() >= off+n
}

// overlaps reports whether any byte of [off, off+n) is in the set.
func (s *extentSet) overlaps(off, n int64) bool {
	i := s.first(off)
	return n > 0 && i < len(s.ext) && s.ext[i].Off < off+n
}

// subtract returns the parts of e not in the set.
func (s *extentSet) subtract(e extent.Range) []extent.Range {
	var out []extent.Range
	pos, end := e.Off, e.End()
	for i := s.first(pos); i < len(s.ext) && s.ext[i].Off < end && pos < end; i++ {
		if s.ext[i].Off > pos {
			out = append(out, extent.Range{Off: pos, Len: s.ext[i].Off - pos})
		}
		pos = max(pos, s.ext[i].End())
	}
	if pos < end {
		out = append(out, extent.Range{Off: pos, Len: end - pos})
	}
	return out
}

// total is the number of bytes in the set.
func (s *extentSet) total() int64 {
	var t int64
	for _, e := range s.ext {
		t += e.Len
	}
	return t
}
