package luksconv

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/luksconv/luksconv/extent"
)

// FuzzDelta checks Delta's contract on a model: an output that holds prev's conversion of a source,
// overwritten by Delta(prev, next, changed) executed on the source after the pages in changed were
// rewritten, must equal next's conversion of that later source, byte for byte; and a delta between
// equal plans of an unchanged source rewrites nothing. The plans are made of 4 KiB output units, each
// zeros, a copy (in place or shifted) or a decryption (in place, from shifted ciphertext, with a
// shifted IV, with or without the all-zero-ciphertext rule), coalesced into regions or not, over
// 512- or 4096-byte encryption sectors, with patches that may overlap, nest, or repeat between the
// plans. The model decrypts a sector into bytes that depend on its IV and on every byte of its
// ciphertext, as XTS does, so a sector left partly stale shows.
func FuzzDelta(f *testing.F) {
	f.Add([]byte{7, 0, 0x09, 0x09, 0x1b, 0x24, 0x2d, 0x36, 0x3f, 0x00, 2, 3, 1, 9, 2, 1, 10, 0, 20, 100, 7, 1, 1})
	f.Add([]byte{15, 7, 0x24, 0x24, 0x24, 0x25, 0x2c, 0x24, 0x24, 0x24, 0x3c, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 0x24, 1, 5, 3, 0, 0})
	f.Add([]byte{3, 6, 0x00, 0x12, 0x24, 0x36, 0, 2, 0, 0, 0x10, 0x40, 5, 1, 0x80, 0})
	// Two patches at one offset, applied in the other order by next: the bytes they share differ.
	f.Add([]byte{0, 0, 0x09, 0, 2, 0, 0, 99, 1, 0, 0, 49, 2, 2, 0, 0, 0, 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		m := decodeDeltaModel(in)
		out := make([]byte, m.size)
		m.exec(m.prev, m.before, out)
		d, err := Delta(m.prev, m.next, m.changed)
		if err != nil {
			t.Fatalf("Delta: %v", err)
		}
		var end int64
		var want Totals
		for _, r := range d.Regions {
			if r.Offset < end || r.Length <= 0 || r.Offset+r.Length > m.size {
				t.Fatalf("delta regions not sorted, apart and inside the %d-byte output: %+v", m.size, d.Regions)
			}
			if r.Kind == Decrypt && (int64(r.IV)*512%m.sector != 0 || r.Length%m.sector != 0) {
				t.Fatalf("delta region %+v decrypts part of a %d-byte sector", r, m.sector)
			}
			end = r.Offset + r.Length
			want.add(r)
		}
		if d.Totals != want {
			t.Fatalf("delta totals %+v, its regions add up to %+v", d.Totals, want)
		}
		m.exec(d, m.after, out)
		full := make([]byte, m.size)
		m.exec(m.next, m.after, full)
		if !bytes.Equal(out, full) {
			i := 0
			for out[i] == full[i] {
				i++
			}
			t.Fatalf("byte %d after the delta is %#x, next's conversion has %#x\nprev %+v\nnext %+v\nchanged %v\ndelta %+v",
				i, out[i], full[i], m.prev.Regions, m.next.Regions, m.changed, d.Regions)
		}
		if m.identical && len(d.Regions) != 0 {
			t.Fatalf("equal plans, unchanged source: the delta rewrites %+v", d.Regions)
		}
	})
}

// deltaModel is one FuzzDelta case: two plans of a size-byte output, the source before and after, and
// the pages that differ (a superset).
type deltaModel struct {
	size          int64
	sector        int64 // encryption sector size
	prev, next    *Plan
	before, after []byte
	changed       []extent.Range
	identical     bool // prev and next map alike (however split into regions) with the same patches, apart; nothing changed
}

// A unit's mapping. The Copy and Decrypt shifts are whole sectors, so every decryption starts on one.
const (
	unitZero = iota
	unitCopy
	unitCopyShift512
	unitCopyShift8K
	unitDecrypt
	unitDecryptZeroRule
	unitDecryptShiftSource // ciphertext one sector on, same IV
	unitDecryptShiftIV     // same ciphertext, IV one sector on
)

// decodeDeltaModel reads: units (1..24 of 4 KiB), flags (bit 0: 4096-byte sectors; bits 1, 2: coalesce
// prev's, next's regions), one byte per unit (bits 0-2 prev's mapping, 3-5 next's), a change count and
// per change a start page, a length in pages (bit 7 of the length: listed but left unchanged; bit 6:
// the pages become zeros), then per plan a patch count and per patch an offset (2 bytes, in 8-byte
// units), a length (1..256) and a fill byte; next's fill byte 0 repeats one of prev's patches, the
// length picking which (so next may hold them in another order at one offset, or twice).
func decodeDeltaModel(in []byte) *deltaModel {
	pos := 0
	get := func() byte {
		if pos < len(in) {
			pos++
			return in[pos-1]
		}
		return 0
	}
	const unit = 4096
	n := int64(get()%24) + 1
	flags := get()
	m := &deltaModel{size: n * unit, sector: 512}
	if flags&1 != 0 {
		m.sector = 4096
	}
	codes := make([][2]byte, n)
	same := true
	for i := range codes {
		b := get()
		codes[i] = [2]byte{b & 7, b >> 3 & 7}
		same = same && codes[i][0] == codes[i][1]
	}
	m.prev = m.plan(codes, 0, flags&2 != 0)
	m.next = m.plan(codes, 1, flags&4 != 0)

	// The source: the output's span and two sectors more (the shifted mappings read past the end),
	// pseudo-random with some all-zero sectors.
	m.before = make([]byte, m.size+8192)
	for s := int64(0); s < int64(len(m.before)); s += m.sector {
		h := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(s)))
		if h[0]%4 != 0 {
			for i := s; i < s+m.sector; i += 32 {
				h = sha256.Sum256(h[:])
				copy(m.before[i:s+m.sector], h[:])
			}
		}
	}
	m.after = slices.Clone(m.before)
	pages := int64(len(m.before)) / 512
	for range get() % 8 {
		start, l := int64(get())%pages, get()
		r := extent.Range{Off: start * 512, Len: min(int64(l&63)+1, pages-start) * 512}
		m.changed = append(m.changed, r)
		switch {
		case l&0x80 != 0:
		case l&0x40 != 0:
			clear(m.after[r.Off:r.End()])
		default:
			for i := r.Off; i < r.End(); i++ {
				m.after[i] ^= byte(i>>9) | 1
			}
		}
	}
	slices.SortFunc(m.changed, func(a, b extent.Range) int { return cmp.Compare(a.Off, b.Off) })

	for k, p := range []*Plan{m.prev, m.next} {
		for range get() % 6 {
			off := int64(binary.LittleEndian.Uint16([]byte{get(), get()})) * 8 % m.size
			l, fill := int(get())+1, get()
			if k == 1 && fill == 0 && len(m.prev.Patches) > 0 {
				p.Patches = append(p.Patches, m.prev.Patches[l%len(m.prev.Patches)])
				continue
			}
			l = min(l, int(m.size-off))
			p.Patches = append(p.Patches, Patch{Offset: off, Length: l, Data: bytes.Repeat([]byte{fill}, l)})
		}
		slices.SortStableFunc(p.Patches, func(a, b Patch) int { return cmp.Compare(a.Offset, b.Offset) })
	}
	// Delta keeps a patch both plans make alike unless another patch overlaps it.
	apart := true
	for i := 1; i < len(m.next.Patches); i++ {
		a, b := m.next.Patches[i-1], m.next.Patches[i]
		apart = apart && a.Offset+int64(len(a.Data)) <= b.Offset
	}
	m.identical = same && len(m.changed) == 0 && apart &&
		slices.EqualFunc(m.prev.Patches, m.next.Patches, func(a, b Patch) bool { return a.Offset == b.Offset && bytes.Equal(a.Data, b.Data) })
	return m
}

// plan makes a plan of the units' mappings (codes[u][which]), each unit a region or, with coalesce,
// runs of one mapping merged.
func (m *deltaModel) plan(codes [][2]byte, which int, coalesce bool) *Plan {
	p := &Plan{OutputSize: m.size, Format: FormatRaw}
	for u := range codes {
		o := int64(u) * 4096
		r := Region{Offset: o, Length: 4096}
		switch codes[u][which] {
		case unitZero:
			r.Kind = Zero
		case unitCopy, unitCopyShift512, unitCopyShift8K:
			r.Kind, r.Source = Copy, o+[]int64{0, 512, 8192}[codes[u][which]-unitCopy]
		default:
			r.Kind, r.Source, r.IV = Decrypt, o, uint64(o/512)
			switch codes[u][which] {
			case unitDecryptZeroRule:
				r.ZeroCiphertextAsZero = true
			case unitDecryptShiftSource:
				r.Source += m.sector
			case unitDecryptShiftIV:
				r.IV += uint64(m.sector / 512)
			}
		}
		if k := len(p.Regions); coalesce && k > 0 && u > 0 && codes[u-1][which] == codes[u][which] {
			p.Regions[k-1].Length += 4096
			continue
		}
		p.Regions = append(p.Regions, r)
	}
	for _, r := range p.Regions {
		p.Totals.add(r)
	}
	return p
}

// exec writes p's regions from src into out, each with the patches that land in it, as Execute does.
// A Decrypt sector's plaintext is its ciphertext XORed with a digest of its IV and of all its bytes
// (zeros for an all-zero sector under ZeroCiphertextAsZero).
func (m *deltaModel) exec(p *Plan, src, out []byte) {
	for _, r := range p.Regions {
		b := out[r.Offset : r.Offset+r.Length]
		switch r.Kind {
		case Zero:
			clear(b)
		case Copy:
			copy(b, src[r.Source:])
		case Decrypt:
			for s := int64(0); s < r.Length; s += m.sector {
				c := src[r.Source+s : r.Source+s+m.sector]
				if r.ZeroCiphertextAsZero && !slices.ContainsFunc(c, func(x byte) bool { return x != 0 }) {
					clear(b[s : s+m.sector])
					continue
				}
				h := sha256.Sum256(append(binary.LittleEndian.AppendUint64(nil, r.IV+uint64(s/512)), c...))
				for i := range c {
					b[s+int64(i)] = c[i] ^ h[i%32]
				}
			}
		}
		for _, pt := range p.Patches {
			if s, e := max(pt.Offset, r.Offset), min(pt.Offset+int64(len(pt.Data)), r.Offset+r.Length); s < e {
				copy(out[s:e], pt.Data[s-pt.Offset:])
			}
		}
	}
}
