// Package extent is the byte-range type shared by the format packages and the engine: a run of bytes
// [Off, Off+Len) on a disk, a device or a blob, with the list operations they all need. One type
// means a range read from a VHD's allocation map, a page blob's page list, XFS free space or free LVM
// extents can be handed from one package to another without conversion.
package extent

import (
	"slices"
	"sort"
)

// Range is the byte range [Off, Off+Len).
type Range struct {
	Off, Len int64 // offset and length in bytes
}

// End is Off+Len.
func (r Range) End() int64 { return r.Off + r.Len }

// Merge returns the ranges sorted by offset with overlapping and touching ones joined and empty ones
// dropped. The input is not modified.
func Merge(in []Range) []Range {
	out := slices.DeleteFunc(slices.Clone(in), func(r Range) bool { return r.Len <= 0 })
	slices.SortFunc(out, func(a, b Range) int {
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

// Clip returns the parts of the sorted, non-overlapping ranges rs that lie inside [off, off+n).
func Clip(rs []Range, off, n int64) []Range {
	out := []Range{}
	end := off + n
	for i := sort.Search(len(rs), func(i int) bool { return rs[i].End() > off }); i < len(rs) && rs[i].Off < end; i++ {
		s, e := max(rs[i].Off, off), min(rs[i].End(), end)
		if s < e {
			out = append(out, Range{s, e - s})
		}
	}
	return out
}

// Overlaps reports whether any of the sorted, non-overlapping ranges rs holds a byte of [off, off+n).
func Overlaps(rs []Range, off, n int64) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].End() > off })
	return n > 0 && i < len(rs) && rs[i].Off < off+n
}

// Total is the number of bytes in the ranges.
func Total(rs []Range) int64 {
	var t int64
	for _, r := range rs {
		t += r.Len
	}
	return t
}
