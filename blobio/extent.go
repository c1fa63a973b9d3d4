package blobio

import (
	"slices"
	"sort"
)

// Extent is the byte range [Off, Off+Len) of a blob.
type Extent struct{ Off, Len int64 }

// End is Off+Len.
func (e Extent) End() int64 { return e.Off + e.Len }

// mergeExtents sorts extents and joins those that overlap or touch. Empty
// extents are dropped.
func mergeExtents(in []Extent) []Extent {
	out := slices.DeleteFunc(slices.Clone(in), func(e Extent) bool { return e.Len <= 0 })
	slices.SortFunc(out, func(a, b Extent) int {
		switch {
		case a.Off < b.Off:
			return -1
		case a.Off > b.Off:
			return 1
		}
		return 0
	})
	j := 0
	for i := range out {
		if j > 0 && out[i].Off <= out[j-1].End() {
			out[j-1].Len = max(out[j-1].End(), out[i].End()) - out[j-1].Off
			continue
		}
		out[j] = out[i]
		j++
	}
	return out[:j]
}

// extentSet is a set of byte ranges kept sorted and merged.
type extentSet struct{ ext []Extent }

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
	e := Extent{off, n}
	// Extents that overlap or touch e: [i, j).
	i := sort.Search(len(s.ext), func(i int) bool { return s.ext[i].End() >= off })
	j := i
	for j < len(s.ext) && s.ext[j].Off <= e.End() {
		lo := min(e.Off, s.ext[j].Off)
		e = Extent{lo, max(e.End(), s.ext[j].End()) - lo}
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
func (s *extentSet) subtract(e Extent) []Extent {
	var out []Extent
	pos, end := e.Off, e.End()
	for i := s.first(pos); i < len(s.ext) && s.ext[i].Off < end && pos < end; i++ {
		if s.ext[i].Off > pos {
			out = append(out, Extent{pos, s.ext[i].Off - pos})
		}
		pos = max(pos, s.ext[i].End())
	}
	if pos < end {
		out = append(out, Extent{pos, end - pos})
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
