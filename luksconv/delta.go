package luksconv

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/luksconv/luksconv/extent"
)

// deltaAlign is the unit a delta pass rewrites: a 4096-byte encryption sector is decrypted whole, and
// a page blob takes whole 512-byte pages.
const deltaAlign = 4096

// Delta returns the plan of a second pass: what must be written into an output that already holds
// prev's conversion of an earlier state of the source, so that it holds next's conversion of the
// source as it is now. changed lists the source bytes that differ between the two states — a page
// blob's Get Page Ranges diff between two snapshots, changed and cleared pages together; a superset is
// fine, a subset is not.
//
// An output byte keeps its value when both plans produce it the same way (both zero; or both copy, or
// both decrypt with the same IV and the same all-zero-ciphertext rule, from the same source byte),
// that source byte's encryption sector is not in changed, and no patch of either plan covers it.
// Everywhere else the returned plan rewrites it from next: source bytes that changed, space the
// guest's filesystems took into use or freed (free space is zeros in the output), a volume that moved,
// and every guest edit and GPT patch of either plan (re-applied from next; where only prev had one,
// the byte comes from the source again) except one both plans make alike, at the same place with the
// same bytes (Patch.Sum), that no other patch overlaps: its bytes are the same in both outputs.
//
// The returned plan reads like next and shares its key: closing either closes both. Execute it into
// the existing output, whose ZeroFilled must be false so that zeros are written. Its Regions cover only
// what is rewritten (Totals count them), and its ID, computed from them as any plan's, equals next's
// only when it rewrites everything. prev may be a plan decoded from JSON (it is only compared). Both
// plans must describe outputs of the same size and format.
func Delta(prev, next *Plan, changed []extent.Range) (*Plan, error) {
	if prev.OutputSize != next.OutputSize || prev.Format != next.Format {
		return nil, fmt.Errorf("%w: delta: the output was %d bytes (%s) and is %d bytes (%s) now: convert afresh",
			ErrInvalidOption, prev.OutputSize, prev.Format, next.OutputSize, next.Format)
	}
	for _, p := range []*Plan{prev, next} {
		if err := checkCoverage(p); err != nil {
			return nil, err
		}
	}
	var ch []extent.Range
	for _, r := range changed {
		if r.Len > 0 {
			s := r.Off / deltaAlign * deltaAlign
			ch = append(ch, extent.Range{Off: s, Len: (r.End()+deltaAlign-1)/deltaAlign*deltaAlign - s})
		}
	}
	ch = extent.Merge(ch)

	var rewrite []extent.Range
	i, j := 0, 0
	for pos := int64(0); pos < next.OutputSize; {
		a, b := prev.Regions[i], next.Regions[j]
		end := min(a.Offset+a.Length, b.Offset+b.Length)
		switch {
		case !sameMapping(a, b):
			rewrite = append(rewrite, extent.Range{Off: pos, Len: end - pos})
		case b.Kind != Zero:
			// Same bytes from the same place: only where the source changed.
			shift := b.Source - b.Offset
			for _, c := range extent.Clip(ch, pos+shift, end-pos) {
				rewrite = append(rewrite, extent.Range{Off: c.Off - shift, Len: c.Len})
			}
		}
		pos = end
		if pos == a.Offset+a.Length {
			i++
		}
		if pos == b.Offset+b.Length {
			j++
		}
	}
	same := samePatches(prev.Patches, next.Patches)
	for _, p := range [][]Patch{prev.Patches, next.Patches} {
		for _, pt := range p {
			if !same[pt.key()] {
				rewrite = append(rewrite, extent.Range{Off: pt.Offset, Len: int64(max(pt.Length, len(pt.Data)))})
			}
		}
	}
	rewrite = extent.Merge(rewrite)

	d := *next
	d.Regions = nil
	d.Totals = Totals{}
	d.Skipped = nil
	for _, r := range next.Regions {
		for _, c := range extent.Clip(rewrite, r.Offset, r.Length) {
			// Out to the encryption sectors (and pages) that hold the range, counted from the region's
			// start, where the volume's sectors start.
			s := r.Offset + (c.Off-r.Offset)/deltaAlign*deltaAlign
			e := min(r.Offset+r.Length, r.Offset+(c.End()-r.Offset+deltaAlign-1)/deltaAlign*deltaAlign)
			if k := len(d.Regions); k > 0 && d.Regions[k-1].Offset+d.Regions[k-1].Length > s {
				s = d.Regions[k-1].Offset + d.Regions[k-1].Length // widened into by the previous piece
			}
			if s >= e {
				continue
			}
			piece := r
			piece.Offset, piece.Length = s, e-s
			if r.Kind != Zero {
				piece.Source += s - r.Offset
			}
			if r.Kind == Decrypt {
				piece.IV += uint64((s - r.Offset) / 512)
			}
			d.Regions = append(d.Regions, piece)
			d.Totals.add(piece)
		}
	}
	d.Patches = slices.Clone(next.Patches)
	return &d, nil
}

// patchKey names a patch by where it writes and what.
type patchKey struct {
	off int64
	n   int
	sum string
}

func (pt Patch) key() patchKey { return patchKey{pt.Offset, max(pt.Length, len(pt.Data)), pt.sum()} }

// samePatches returns the patches both plans make alike (same bytes, same place) that overlap no other
// patch of either plan: their bytes are the patch's in both outputs, whatever lies beneath, so a
// delta pass need not rewrite them. A patch whose content is unknown (a plan decoded from JSON
// written before Patch.Sum existed) is never the same.
func samePatches(prev, next []Patch) map[patchKey]bool {
	count := [2]map[patchKey]int{{}, {}}
	var all []extent.Range // every patch's bytes, sorted by offset
	for i, p := range [][]Patch{prev, next} {
		for _, pt := range p {
			k := pt.key()
			count[i][k]++
			if k.n > 0 {
				all = append(all, extent.Range{Off: k.off, Len: int64(k.n)})
			}
		}
	}
	slices.SortFunc(all, func(a, b extent.Range) int { return cmp.Compare(a.Off, b.Off) })
	// A range starting before all[i] reaches into it when reach[i-1] passes all[i].Off.
	reach := reaches(all, extent.Range.End)
	same := map[patchKey]bool{}
	for _, pt := range next {
		k := pt.key()
		if k.sum == "" || k.n == 0 || count[0][k] != 1 || count[1][k] != 1 {
			continue
		}
		// Two copies of this patch, and nothing else reaching into its bytes: exactly two ranges
		// start inside it, and none of those starting before it ends past its start.
		lo, _ := slices.BinarySearchFunc(all, k.off, func(r extent.Range, off int64) int { return cmp.Compare(r.Off, off) })
		hi, _ := slices.BinarySearchFunc(all, k.off+int64(k.n), func(r extent.Range, off int64) int { return cmp.Compare(r.Off, off) })
		if hi-lo == 2 && (lo == 0 || reach[lo-1] <= k.off) {
			same[k] = true
		}
	}
	return same
}

// sameMapping reports whether two regions produce the same output byte at the same offset from the
// same source: both zeros, or the same kind reading the same source byte (and, decrypting, with the
// same IV and the same rule for all-zero ciphertext).
func sameMapping(a, b Region) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case Zero:
		return true
	case Copy:
		return a.Source-a.Offset == b.Source-b.Offset
	}
	return a.Source-a.Offset == b.Source-b.Offset && int64(a.IV)*512-a.Offset == int64(b.IV)*512-b.Offset &&
		a.ZeroCiphertextAsZero == b.ZeroCiphertextAsZero
}

// checkCoverage makes sure p's regions tile [0, OutputSize) in order, as Delta walks them.
func checkCoverage(p *Plan) error {
	pos := int64(0)
	for _, r := range p.Regions {
		if r.Offset != pos || r.Length <= 0 {
			return fmt.Errorf("%w: delta: the plan's regions do not tile the output at byte %d", ErrInvalidOption, pos)
		}
		pos += r.Length
	}
	if pos != p.OutputSize {
		return fmt.Errorf("%w: delta: the plan's regions end at byte %d of %d", ErrInvalidOption, pos, p.OutputSize)
	}
	return nil
}
