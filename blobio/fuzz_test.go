package blobio

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/luksconv/luksconv/extent"
)

// FuzzListRanges lists a blob of up to 256 pages, in windows, from page lists the input scripts: per
// window a run of responses (continuation pages), each with changed and cleared ranges that may be
// unaligned, empty, outside the blob or the window, out of order, overlapping, or without a Start or
// End, and markers that may repeat. The delta cutover transfers exactly what this listing returns, so
// whatever it accepts must be what the responses said:
//   - an error is a *Error wrapping ErrProtocol;
//   - a result is sorted, merged, whole pages inside the blob, and no page is both changed and cleared;
//   - each kind covers exactly the pages the responses listed inside the windows (a bitmap of them);
//   - responses a conforming service could send (whole pages in the blob, each kind ascending without
//     overlap across a window, changed and cleared apart, no repeated marker, at most 16 empty
//     continuation pages in a row) are accepted.
func FuzzListRanges(f *testing.F) {
	f.Add([]byte{7, 1, 0})
	f.Add([]byte{15, 3, 1, 0, 0, 2, 1, 4, 1, 2, 1, 3, 0, 8, 8, 1, 16, 4})
	f.Add([]byte{31, 7, 2, 0, 1, 2, 2, 0, 0, 0, 0, 3, 0, 2, 3, 1, 6, 2})
	f.Add([]byte{63, 63, 0, 0, 0, 4, 0x10, 1, 1, 0, 2, 2})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := decodeListScript(in)
		c := &conn{url: "https://account.invalid/c/b", red: newRedactor(""),
			retry: RetryOptions{MaxTries: 1, TryTimeout: time.Minute}, logf: func(string, ...any) {}}
		got, err := c.listRanges(context.Background(), "fuzz", s.size, s.window, s.parallel, 1, s.fetch)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v (%T) is not a *Error wrapping ErrProtocol", err, err)
			}
			if s.conforming() {
				t.Fatalf("conforming responses refused: %v", err)
			}
			return
		}
		want := s.listed()
		var pages [2][]bool
		for kind, rs := range got {
			pages[kind] = make([]bool, s.size/PageSize)
			var end int64 = -1
			for _, r := range rs {
				if r.Len <= 0 || r.Off <= end || r.Off%PageSize != 0 || r.Len%PageSize != 0 || r.End() > s.size {
					t.Fatalf("%s %v: not sorted, merged, whole pages inside the %d-byte blob: %v", kindName[kind], r, s.size, rs)
				}
				end = r.End()
				for p := r.Off / PageSize; p < r.End()/PageSize; p++ {
					pages[kind][p] = true
				}
			}
			if !slices.Equal(pages[kind], want[kind]) {
				t.Fatalf("%s: listed %v, the responses said %v", kindName[kind], rs, runs(want[kind]))
			}
		}
		for p := range pages[kindPage] {
			if pages[kindPage][p] && pages[kindClear][p] {
				t.Fatalf("page %d both changed and cleared", p)
			}
		}
	})
}

// listScript is the page lists FuzzListRanges serves: pages[window][response].
type listScript struct {
	size, window int64
	parallel     int
	pages        [][]scriptedList
}

// scriptedList is one response: its ranges and whether its marker repeats the one it answers.
type scriptedList struct {
	ranges [2][]xmlRange
	repeat bool
}

// decodeListScript reads a blob of 1..256 pages, a window of 1..64 pages, 1..3 parallel listings, then
// records of 3 bytes: an op (low 2 bits: 0 a changed range, 1 a cleared range, 2 end of this response,
// 3 end of this window's responses; bit 2: no Start, bit 3: no End, bit 4: Start one byte off, bit 5
// on op 2: the marker repeats), a start page and a length in pages (End = Start + length pages - 1).
func decodeListScript(in []byte) *listScript {
	get := func(i int) byte {
		if i < len(in) {
			return in[i]
		}
		return 0
	}
	s := &listScript{size: int64(get(0)) + 1, window: int64(get(1)%64) + 1, parallel: int(get(2)%3) + 1}
	s.size *= PageSize
	s.window *= PageSize
	nw := int((s.size + s.window - 1) / s.window)
	s.pages = make([][]scriptedList, nw)
	w := 0
	cur := &scriptedList{}
	for i := 3; i+2 < len(in) && w < nw; i += 3 {
		op, start, n := in[i], int64(in[i+1])*PageSize, int64(in[i+2])*PageSize
		switch op & 3 {
		case 0, 1:
			if op&0x10 != 0 {
				start++
			}
			end := start + n - 1
			r := xmlRange{start: &start, end: &end}
			if op&4 != 0 {
				r.start = nil
			}
			if op&8 != 0 {
				r.end = nil
			}
			cur.ranges[op&1] = append(cur.ranges[op&1], r)
		case 2:
			cur.repeat = op&0x20 != 0
			s.pages[w] = append(s.pages[w], *cur)
			cur = &scriptedList{}
		case 3:
			s.pages[w] = append(s.pages[w], *cur)
			cur = &scriptedList{}
			w++
		}
	}
	if w < nw {
		s.pages[w] = append(s.pages[w], *cur)
	}
	for i := range s.pages {
		if len(s.pages[i]) == 0 {
			s.pages[i] = []scriptedList{{}}
		}
	}
	return s
}

// fetch serves response k of window w for marker "k" (the first for none); the last of a window has no
// marker, the others "k+1", or "k" again where the script repeats it.
func (s *listScript) fetch(_ context.Context, w extent.Range, marker *string) (pageList, error) {
	k := 0
	if marker != nil {
		var err error
		if k, err = strconv.Atoi(*marker); err != nil {
			return pageList{}, fmt.Errorf("marker %q was never sent", *marker)
		}
	}
	ls := s.pages[w.Off/s.window]
	if k >= len(ls) {
		return pageList{}, fmt.Errorf("marker %d past the %d responses scripted", k, len(ls))
	}
	l := pageList{ranges: ls[k].ranges}
	if k+1 < len(ls) {
		next := strconv.Itoa(k + 1)
		if ls[k].repeat && marker != nil {
			next = *marker
		}
		l.next = &next
	}
	return l, nil
}

// listed is a bitmap per kind of the pages the responses list inside their windows, ranges without a
// Start or End left out.
func (s *listScript) listed() [2][]bool {
	var out [2][]bool
	for kind := range out {
		out[kind] = make([]bool, s.size/PageSize)
	}
	for wi, ls := range s.pages {
		lo, hi := int64(wi)*s.window, min(int64(wi+1)*s.window, s.size)
		for _, l := range ls {
			for kind, rs := range l.ranges {
				for _, r := range rs {
					if r.start == nil || r.end == nil {
						continue
					}
					for off := max(*r.start, lo); off <= min(*r.end, hi-1); off += PageSize {
						out[kind][off/PageSize] = true
					}
				}
			}
		}
	}
	return out
}

// conforming reports whether the script is what a conforming service could send.
func (s *listScript) conforming() bool {
	for wi, ls := range s.pages {
		lo, hi := int64(wi)*s.window, min(int64(wi+1)*s.window, s.size)
		var next [2]int64
		var seen [2][]bool
		empty := 0
		for k, l := range ls {
			if l.repeat && k > 0 && k+1 < len(ls) {
				return false
			}
			progress := false
			for kind, rs := range l.ranges {
				for _, r := range rs {
					if r.start == nil || r.end == nil {
						continue
					}
					a, b := *r.start, *r.end+1
					if a < 0 || b <= a || b > s.size || a%PageSize != 0 || b%PageSize != 0 {
						return false
					}
					a, b = max(a, lo), min(b, hi)
					if a >= b {
						continue
					}
					if a < next[kind] {
						return false
					}
					next[kind] = b
					progress = true
					if seen[kind] == nil {
						seen[kind] = make([]bool, s.size/PageSize)
					}
					for p := a / PageSize; p < b/PageSize; p++ {
						seen[kind][p] = true
					}
				}
			}
			if progress {
				empty = 0
			} else if empty++; empty > maxEmptyPages {
				return false
			}
		}
		if seen[0] != nil && seen[1] != nil {
			for p := range seen[0] {
				if seen[0][p] && seen[1][p] {
					return false
				}
			}
		}
	}
	return true
}

// runs prints a bitmap of pages as its runs.
func runs(b []bool) []extent.Range {
	var out []extent.Range
	for p := range b {
		if !b[p] {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End() == int64(p)*PageSize {
			out[n-1].Len += PageSize
		} else {
			out = append(out, extent.Range{Off: int64(p) * PageSize, Len: PageSize})
		}
	}
	return out
}
