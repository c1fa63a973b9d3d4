package blobfake

import (
	"bytes"

	"github.com/luksconv/luksconv/extent"
)

// Model is what a page blob must hold, the oracle of the page-blob tests (this server, Azurite,
// blobio's readers): its bytes, and for each written 512-byte page the number of the write that wrote
// it, so that a page written again with the bytes it held still counts as changed, as Azure's page
// diff reports it.
type Model struct {
	Data  []byte
	pages map[int64]int // page index → write
	write *int          // shared by a model and its clones
}

// NewModel is an empty blob of size bytes.
func NewModel(size int64) *Model {
	return &Model{Data: make([]byte, size), pages: map[int64]int{}, write: new(int)}
}

// Put records a Put Page of b at off.
func (m *Model) Put(off int64, b []byte) {
	copy(m.Data[off:], b)
	*m.write++
	for o := off; o < off+int64(len(b)); o += 512 {
		m.pages[o/512] = *m.write
	}
}

// Clear records a Clear Pages of [off, off+n).
func (m *Model) Clear(off, n int64) {
	clear(m.Data[off : off+n])
	for o := off; o < off+n; o += 512 {
		delete(m.pages, o/512)
	}
}

// Clone is the model of a snapshot taken now.
func (m *Model) Clone() *Model {
	c := &Model{Data: bytes.Clone(m.Data), pages: make(map[int64]int, len(m.pages)), write: m.write}
	for k, v := range m.pages {
		c.pages[k] = v
	}
	return c
}

// Diff is what Get Page Ranges of m against the older prev must list: pages written since (changed)
// and pages cleared since (cleared), merged.
func (m *Model) Diff(prev *Model) (changed, cleared []extent.Range) {
	for o := int64(0); o < int64(len(m.Data)); o += 512 {
		w, now := m.pages[o/512]
		p, before := prev.pages[o/512]
		switch {
		case now && (!before || w != p):
			changed = append(changed, extent.Range{Off: o, Len: 512})
		case before && !now:
			cleared = append(cleared, extent.Range{Off: o, Len: 512})
		}
	}
	return extent.Merge(changed), extent.Merge(cleared)
}

// Ranges is the model's page list in [off, off+n), merged.
func (m *Model) Ranges(off, n int64) []extent.Range {
	var out []extent.Range
	for o := off; o < off+n; o += 512 {
		if _, ok := m.pages[o/512]; ok {
			out = append(out, extent.Range{Off: o, Len: 512})
		}
	}
	return extent.Merge(out)
}
