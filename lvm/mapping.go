package lvm

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/luksconv/luksconv/extent"
)

// Extent is a piece of an LV mapped onto the PV: LV bytes
// [LVOff, LVOff+Len) are PV bytes [PVOff, PVOff+Len).
type Extent struct {
	LVOff, PVOff, Len int64 // offsets from the start of the LV and of the PV, and the length, in bytes
}

// Map returns the PV byte ranges backing LV bytes [off, off+n), in LV order,
// with adjacent pieces merged. It handles linear segments and striped
// segments (chunks dealt round-robin over the stripes as dm-stripe does)
// whose areas all lie on this PV. Other segment types, areas on other PVs
// and areas on LVs (stacking) give an error wrapping ErrUnsupported.
func (pv *PV) Map(lv *LV, off, n int64) ([]Extent, error) {
	if pv.VG == nil || pv.info == nil {
		return nil, errors.New("lvm: PV has no volume group metadata")
	}
	ext, err := pv.VG.Map(lv, off, n)
	return pv.own(lv, ext, err)
}

// own keeps the extents of VG.Map's or VG.PVRanges' result (ext, err) for lv, which must all lie on
// this PV.
func (pv *PV) own(lv *LV, ext []PVExtent, err error) ([]Extent, error) {
	if err != nil {
		return nil, err
	}
	out := make([]Extent, 0, len(ext))
	for _, e := range ext {
		if e.PV != pv.info.Name {
			return nil, fmt.Errorf("%w: LV %s: extent %d lies on %q, another PV", ErrUnsupported, lv.Name, e.LVOff/pv.VG.ExtentSize, e.PV)
		}
		out = append(out, e.Extent)
	}
	return out, nil
}

// Ranges is VG.PVRanges for an LV on this PV: the PV byte ranges backing LV bytes [off, off+n),
// merged per stripe and segment, not in LV order. A range on another PV is the error Map gives.
func (pv *PV) Ranges(lv *LV, off, n int64) ([]Extent, error) {
	if pv.VG == nil || pv.info == nil {
		return nil, errors.New("lvm: PV has no volume group metadata")
	}
	ext, err := pv.VG.PVRanges(lv, off, n)
	return pv.own(lv, ext, err)
}

// Holds returns nil when all of lv lies on this PV, in segments Map handles, and otherwise the error
// Map(lv, 0, lv.Size) gives, without Map's piece per stripe chunk.
func (pv *PV) Holds(lv *LV) error {
	_, err := pv.Ranges(lv, 0, lv.Size)
	return err
}

// PVExtent is a piece of an LV mapped onto one of the VG's PVs: LV bytes
// [LVOff, LVOff+Len) are bytes [PVOff, PVOff+Len) of the PV called PV ("pv0").
type PVExtent struct {
	PV string // PVInfo.Name of the PV holding the bytes
	Extent
}

// Map returns the PV byte ranges backing LV bytes [off, off+n), in LV order,
// on whichever PVs of the VG they lie, with adjacent pieces merged: what
// device-mapper builds when the VG is activated with all its PVs. It handles
// linear and striped segments; other segment types and areas on LVs
// (stacking) give an error wrapping ErrUnsupported.
func (vg *VG) Map(lv *LV, off, n int64) ([]PVExtent, error) {
	var out []PVExtent
	add := func(e PVExtent) {
		if k := len(out) - 1; k >= 0 && out[k].PV == e.PV && out[k].LVOff+out[k].Len == e.LVOff && out[k].PVOff+out[k].Len == e.PVOff {
			out[k].Len += e.Len
			return
		}
		out = append(out, e)
	}
	err := vg.walk(lv, off, n, func(s *Segment, pos, stop, segStart int64, bases []int64) {
		if len(bases) == 1 {
			add(PVExtent{s.Stripes[0].PV, Extent{LVOff: pos, PVOff: bases[0] + pos - segStart, Len: stop - pos}})
			return
		}
		// dm-stripe: chunk c of the segment goes to stripe c mod n, at
		// chunk c div n of that stripe's area.
		chunk, nst := s.StripeSize, int64(len(bases))
		for pos < stop {
			o := pos - segStart
			c, within := o/chunk, o%chunk
			l := min(chunk-within, stop-pos)
			add(PVExtent{s.Stripes[c%nst].PV, Extent{LVOff: pos, PVOff: bases[c%nst] + (c/nst)*chunk + within, Len: l}})
			pos += l
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PVRanges returns the PV byte ranges backing LV bytes [off, off+n), as Map does but merged per PV
// and segment: a striped segment gives one range per stripe, however many chunks it deals, so the
// result grows with the segments and not with the LV's size over its stripe size (Map of a 16 TiB LV
// in 64 KiB stripes is 256M pieces). For callers that need where the bytes lie, not their LV order:
// LVOff is the LV offset of the range's first byte. Errors are Map's.
func (vg *VG) PVRanges(lv *LV, off, n int64) ([]PVExtent, error) {
	var out []PVExtent
	err := vg.walk(lv, off, n, func(s *Segment, pos, stop, segStart int64, bases []int64) {
		if len(bases) == 1 {
			out = append(out, PVExtent{s.Stripes[0].PV, Extent{LVOff: pos, PVOff: bases[0] + pos - segStart, Len: stop - pos}})
			return
		}
		// Stripe k holds, of segment bytes [0, o), whole rows of chunks plus up to one chunk of the
		// partial row: its bytes of [pos, stop) are one run of its area.
		chunk, nst := s.StripeSize, int64(len(bases))
		on := func(k, o int64) int64 { return o/(chunk*nst)*chunk + min(max(o%(chunk*nst)-k*chunk, 0), chunk) }
		for k, st := range s.Stripes {
			lo, hi := on(int64(k), pos-segStart), on(int64(k), stop-segStart)
			if lo >= hi {
				continue
			}
			// The LV offset of the run's first byte: chunk lo/chunk of the stripe is segment chunk
			// lo/chunk*nst+k.
			lvOff := segStart + (lo/chunk*nst+int64(k))*chunk + lo%chunk
			out = append(out, PVExtent{st.PV, Extent{LVOff: lvOff, PVOff: bases[k] + lo, Len: hi - lo}})
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// walk calls each, in LV order, for the part [pos, stop) of LV bytes [off, off+n) that each segment
// holds, with the segment's first LV byte and the PV byte where each of its stripe areas starts. It
// refuses, before any call for that segment, what Map cannot map: a segment type other than linear
// or striped, an area on an LV, a stripe size that does not divide the stripe area.
func (vg *VG) walk(lv *LV, off, n int64, each func(s *Segment, pos, stop, segStart int64, bases []int64)) error {
	if lv == nil {
		return errors.New("lvm: nil LV")
	}
	if off < 0 || n < 0 || off > lv.Size || n > lv.Size-off {
		return fmt.Errorf("lvm: LV %s: range [%d, +%d) outside its %d bytes", lv.Name, off, n, lv.Size)
	}
	es := vg.ExtentSize
	for pos, end := off, off+n; pos < end; {
		le := pos / es
		i := sort.Search(len(lv.Segments), func(i int) bool {
			s := lv.Segments[i]
			return s.StartExtent+s.ExtentCount > le
		})
		if i == len(lv.Segments) {
			return fmt.Errorf("lvm: LV %s: no segment holds extent %d", lv.Name, le)
		}
		s := &lv.Segments[i]
		segStart := s.StartExtent * es
		stop := min(end, segStart+s.ExtentCount*es)
		if s.Type != "striped" && s.Type != "linear" {
			return fmt.Errorf("%w: LV %s: segment type %q at extent %d", ErrUnsupported, lv.Name, s.Type, s.StartExtent)
		}
		bases := make([]int64, len(s.Stripes))
		for k, st := range s.Stripes {
			info, isPV := vg.PV(st.PV)
			if !isPV {
				return fmt.Errorf("%w: LV %s: extent %d lies on %q, a logical volume (stacked LVs)", ErrUnsupported, lv.Name, s.StartExtent, st.PV)
			}
			bases[k] = info.PEStart + st.StartExtent*es
		}
		if nst := int64(len(bases)); nst > 1 {
			if chunk := s.StripeSize; chunk <= 0 || (s.ExtentCount/nst*es)%chunk != 0 {
				return fmt.Errorf("%w: LV %s: stripe size %d does not divide the stripe area", ErrUnsupported, lv.Name, chunk)
			}
		}
		each(s, pos, stop, segStart, bases)
		pos = stop
	}
	return nil
}

// LVReader returns a reader over the LV's contents, read from r (the PV
// device) through Map. Reads fail with an error wrapping ErrUnsupported where
// Map would.
func (pv *PV) LVReader(r io.ReaderAt, lv *LV) *io.SectionReader {
	return io.NewSectionReader(&lvReaderAt{pv: pv, r: r, lv: lv}, 0, lv.Size)
}

type lvReaderAt struct {
	pv *PV
	r  io.ReaderAt
	lv *LV
}

func (l *lvReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("lvm: negative offset")
	}
	if off >= l.lv.Size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), l.lv.Size-off)
	exts, err := l.pv.Map(l.lv, off, want)
	if err != nil {
		return 0, err
	}
	done := 0
	for _, e := range exts {
		if e.PVOff+e.Len > l.pv.size {
			return done, fmt.Errorf("lvm: LV %s byte %d maps to PV byte %d, past the end of the %d-byte device", l.lv.Name, e.LVOff, e.PVOff, l.pv.size)
		}
		n, err := l.r.ReadAt(p[e.LVOff-off:e.LVOff-off+e.Len], e.PVOff)
		done += n
		if err != nil && !(err == io.EOF && int64(n) == e.Len) {
			return done, fmt.Errorf("lvm: LV %s: reading PV byte %d: %w", l.lv.Name, e.PVOff+int64(n), err)
		}
	}
	if want < int64(len(p)) {
		return done, io.EOF
	}
	return done, nil
}

// FreeRanges lists the PV byte ranges of the data area (pe_start to
// pe_start+pe_count*extent_size) that no LV uses, in order. Areas of segment
// types Map does not handle count as used for the segment's whole
// extent_count, an upper bound, so nothing in use is reported free. It
// returns nil when the PV has no VG metadata.
func (pv *PV) FreeRanges() []extent.Range {
	if pv.VG == nil || pv.info == nil {
		return nil
	}
	type span struct{ lo, hi int64 } // extents [lo, hi)
	var used []span
	self := pv.info.Name
	mark := func(start, count int64) {
		lo, hi := max(start, 0), min(start+count, pv.info.PECount)
		if lo < hi {
			used = append(used, span{lo, hi})
		}
	}
	for _, lv := range pv.VG.LVs {
		for _, s := range lv.Segments {
			if n := int64(len(s.Stripes)); n > 0 {
				for _, st := range s.Stripes {
					if st.PV == self {
						mark(st.StartExtent, s.ExtentCount/n)
					}
				}
			}
			for _, a := range s.Areas {
				if a.PV == self {
					mark(a.StartExtent, s.ExtentCount)
				}
			}
		}
	}
	sort.Slice(used, func(i, j int) bool { return used[i].lo < used[j].lo })
	es, base := pv.VG.ExtentSize, pv.info.PEStart
	var free []extent.Range
	var next int64
	for _, u := range used {
		if u.lo > next {
			free = append(free, extent.Range{Off: base + next*es, Len: (u.lo - next) * es})
		}
		next = max(next, u.hi)
	}
	if next < pv.info.PECount {
		free = append(free, extent.Range{Off: base + next*es, Len: (pv.info.PECount - next) * es})
	}
	return free
}
