package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Edit describes what Rewrite changes. Paths are archive names in any spelling CleanPath accepts
// ("/etc/crypttab", "./etc/crypttab" and "etc/crypttab" are the same file).
type Edit struct {
	// Remove lists exact paths to drop (every occurrence, in every segment). Removing a directory
	// whose contents stay is an error: the kernel would then fail to create them. Use RemovePrefix.
	Remove []string
	// RemovePrefix lists directories to drop together with everything below them.
	RemovePrefix []string
	// Replace gives the new content of files that are kept (the target, for a symlink).
	Replace map[string][]byte
	// Recompress re-encodes compressed segments even when none of their entries change; by default
	// such segments are copied byte for byte.
	Recompress bool
	// Compression, when set, is the format re-encoded compressed segments are written in instead of
	// their own: a smaller format can make an edited image fit where its first format does not. The
	// caller must know the kernel decompresses it (see KernelDecompressors). Uncompressed segments
	// stay uncompressed: the early microcode cpio must.
	Compression Compression
	// Fast re-encodes zstd and lz4 segments with their fast settings (zstd level 3, not dracut's 15;
	// lz4's fast compressor, not HC level 9), in a tenth of the time or less, into a larger image:
	// enough where the image must only fit its file, as an initramfs-tools image made at a fast
	// level does. gzip and xz are written as without it.
	Fast bool
}

// SegmentChange describes one segment before and after a rewrite.
type SegmentChange struct {
	Index       int         // index of the segment in Image.Segments
	Compression Compression // the segment's format in the old image
	// NewCompression is the format written: Compression unless Edit.Compression changed it.
	NewCompression           Compression
	OldOffset, OldLength     int64 // Segment.Offset and Length in the old image
	NewOffset, NewLength     int64 // offset and length in bytes in the new image
	OldExpanded, NewExpanded int64 // decompressed sizes
	// Rewritten is false when the segment was copied byte for byte.
	Rewritten bool
	Removed   int // entries dropped from this segment
	Replaced  int // entries whose content changed
}

// Report says what a Rewrite changed. Paths are CleanPath names, sorted, each listed once.
type Report struct {
	Removed  []string // entries dropped
	Replaced []string // entries whose content changed
	// NotFound lists Remove, RemovePrefix and Replace paths that matched no entry.
	NotFound         []string
	Segments         []SegmentChange // one per segment, in image order
	OldSize, NewSize int64           // bytes of the image before and after
}

// editPlan is an Edit with its paths cleaned.
type editPlan struct {
	remove   map[string]bool
	prefixes []string
	replace  map[string][]byte
	used     map[string]bool // Edit paths that matched something
}

func newPlan(e Edit) (*editPlan, error) {
	p := &editPlan{remove: map[string]bool{}, replace: map[string][]byte{}, used: map[string]bool{}}
	for _, r := range e.Remove {
		p.remove[CleanPath(r)] = true
	}
	for _, r := range e.RemovePrefix {
		c := CleanPath(r)
		if c == "." {
			return nil, fmt.Errorf("initramfs: RemovePrefix %q would remove everything", r)
		}
		p.prefixes = append(p.prefixes, c)
	}
	for k, v := range e.Replace {
		c := CleanPath(k)
		if _, dup := p.replace[c]; dup {
			return nil, fmt.Errorf("initramfs: Replace names %s twice", c)
		}
		p.replace[c] = v
	}
	return p, nil
}

// removed reports whether key is dropped, and marks the Edit path that matched.
func (p *editPlan) removed(key string) bool {
	hit := false
	if p.remove[key] {
		p.used["r:"+key] = true
		hit = true
	}
	for _, pre := range p.prefixes {
		if key == pre || strings.HasPrefix(key, pre+"/") {
			p.used["p:"+pre] = true
			hit = true
		}
	}
	return hit
}

func (p *editPlan) notFound() []string {
	var out []string
	for k := range p.remove {
		if !p.used["r:"+k] {
			out = append(out, k)
		}
	}
	for _, k := range p.prefixes {
		if !p.used["p:"+k] {
			out = append(out, k)
		}
	}
	for k := range p.replace {
		if !p.used["s:"+k] {
			out = append(out, k)
		}
	}
	return sortedUnique(out)
}

func sortedUnique(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// archiveEdit is the result of applying the plan to one archive.
type archiveEdit struct {
	entries           []*Entry
	removed, replaced int
}

// editArchive applies the plan to a's entries without modifying them (changed entries are copies).
// Hard links (nlink > 1, same inode) are kept consistent: the remaining links get the new link count,
// and the data, whichever link carried it or whichever link was replaced, moves to the last remaining
// link, where GNU cpio puts it.
func (p *editPlan) editArchive(a *Archive, removedNames, replacedNames *[]string, removedDirs map[string]bool) (archiveEdit, error) {
	var res archiveEdit
	n := len(a.Entries)
	keep := make([]bool, n)
	repl := make([][]byte, n)
	isRepl := make([]bool, n)
	for i, e := range a.Entries {
		key := CleanPath(e.Name)
		if p.removed(key) {
			*removedNames = append(*removedNames, key)
			if e.IsDir() && p.remove[key] {
				removedDirs[key] = true
			}
			res.removed++
			continue
		}
		keep[i] = true
		if data, ok := p.replace[key]; ok {
			if !e.IsRegular() && !e.IsSymlink() {
				return res, fmt.Errorf("initramfs: cannot replace %s: mode %06o is neither a regular file nor a symlink", key, e.Mode)
			}
			if e.IsSymlink() && (len(data) == 0 || len(data) > pathMax) {
				return res, fmt.Errorf("initramfs: cannot replace symlink %s: target length %d out of range 1..%d", key, len(data), pathMax)
			}
			p.used["s:"+key] = true
			*replacedNames = append(*replacedNames, key)
			repl[i], isRepl[i] = data, true
			res.replaced++
		}
	}
	out := make([]*Entry, n)
	for i, e := range a.Entries {
		if !keep[i] {
			continue
		}
		out[i] = e
		if isRepl[i] {
			out[i] = withData(e, repl[i])
		}
	}
	// Hard-link groups, in order of first appearance.
	groups := map[linkKey][]int{}
	var order []linkKey
	for i, e := range a.Entries {
		if e.NLink < 2 || e.IsDir() {
			continue
		}
		k := linkKeyOf(e)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range order {
		g := groups[k]
		var kept []int
		changed := false
		for _, i := range g {
			if keep[i] {
				kept = append(kept, i)
			}
			if !keep[i] || isRepl[i] {
				changed = true
			}
		}
		if !changed || len(kept) == 0 {
			continue
		}
		regular := a.Entries[g[0]].IsRegular()
		var data []byte
		for _, i := range g {
			if a.Entries[i].FileSize > 0 {
				data = a.Entries[i].Data
			}
		}
		for _, i := range g {
			if isRepl[i] {
				data = repl[i]
			}
		}
		for j, i := range kept {
			c := *out[i]
			c.NLink = uint32(len(kept))
			if regular {
				if j == len(kept)-1 {
					c = *withData(&c, data)
				} else {
					c = *withData(&c, nil)
				}
			}
			out[i] = &c
		}
	}
	for _, e := range out {
		if e != nil {
			res.entries = append(res.entries, e)
		}
	}
	return res, nil
}

// withData returns a copy of e carrying data, with FileSize and (crc format) Check to match.
func withData(e *Entry, data []byte) *Entry {
	c := *e
	c.Data = data
	c.FileSize = uint32(len(data))
	if c.Magic == magicCRC {
		c.Check = Checksum(data)
	} else {
		c.Check = 0
	}
	return &c
}

// Rewrite rebuilds the image read from src (the bytes Parse read) with e applied. Segments none of
// whose entries change are copied byte for byte (unless e.Recompress); the others are rewritten as newc
// archives with a trailer and re-encoded with the same compression (see encode for the settings; xz
// always gets a CRC32 check, lz4 the legacy frame). Zero padding between segments is kept, and widened
// where the kernel needs it: an uncompressed archive must start 4-byte aligned, and an lz4 stream
// must be followed by a zero word unless it ends the image.
//
// Re-compression takes seconds (xz of a 60 MB archive some 8 s), and reading src may be slow: once ctx
// is done Rewrite stops within a few tens of milliseconds (the data between two looks at ctx is at most
// ctxChunk bytes) and returns ctx.Err() itself. lz4's compressor cannot be interrupted inside its 8 MiB
// chunk: Rewrite returns at once all the same, and that chunk's compression finishes in the background.
func (im *Image) Rewrite(ctx context.Context, src io.ReaderAt, e Edit) ([]byte, *Report, error) {
	out, rep, err := im.rewrite(ctx, src, e)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, nil, cerr
		}
		return nil, nil, err
	}
	return out, rep, nil
}

func (im *Image) rewrite(ctx context.Context, src io.ReaderAt, e Edit) ([]byte, *Report, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	plan, err := newPlan(e)
	if err != nil {
		return nil, nil, err
	}
	if e.Compression != "" && !canEncode(e.Compression) {
		return nil, nil, fmt.Errorf("initramfs: cannot write %s compression", e.Compression)
	}
	rep := &Report{OldSize: im.Size}
	removedDirs := map[string]bool{}
	type segOut struct {
		archives [][]*Entry
		changed  bool
		removed  int
		replaced int
	}
	outs := make([]segOut, len(im.Segments))
	kept := map[string]bool{}
	for si := range im.Segments {
		s := &im.Segments[si]
		for ai := range s.Archives {
			ae, err := plan.editArchive(&s.Archives[ai], &rep.Removed, &rep.Replaced, removedDirs)
			if err != nil {
				return nil, nil, err
			}
			outs[si].archives = append(outs[si].archives, ae.entries)
			outs[si].removed += ae.removed
			outs[si].replaced += ae.replaced
			for _, en := range ae.entries {
				kept[CleanPath(en.Name)] = true
			}
		}
		outs[si].changed = outs[si].removed > 0 || outs[si].replaced > 0
	}
	// The kernel does not create missing parent directories: refuse to orphan kept entries.
	for k := range kept {
		for d := parentOf(k); d != "."; d = parentOf(d) {
			if removedDirs[d] && !kept[d] {
				return nil, nil, fmt.Errorf("initramfs: removing directory %s would orphan %s (use RemovePrefix)", d, k)
			}
		}
	}
	rep.Removed = sortedUnique(rep.Removed)
	rep.Replaced = sortedUnique(rep.Replaced)
	rep.NotFound = plan.notFound()

	var out bytes.Buffer
	out.Write(make([]byte, im.LeadingPadding))
	for si := range im.Segments {
		s := &im.Segments[si]
		o := &outs[si]
		ch := SegmentChange{Index: si, Compression: s.Compression, NewCompression: s.Compression,
			OldOffset: s.Offset, OldLength: s.Length,
			NewOffset: int64(out.Len()), OldExpanded: s.ExpandedSize, Removed: o.removed, Replaced: o.replaced}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		var seg []byte
		if o.changed || (e.Recompress && s.Compression != None) {
			var raw bytes.Buffer
			for _, entries := range o.archives {
				w := NewWriter(ctxWriter{ctx, &raw})
				for _, en := range entries {
					if err := w.WriteEntry(en); err != nil {
						return nil, nil, fmt.Errorf("initramfs: segment %d: %w", si, err)
					}
				}
				if err := w.Close(); err != nil {
					return nil, nil, fmt.Errorf("initramfs: segment %d: %w", si, err)
				}
			}
			ch.NewExpanded = int64(raw.Len())
			seg = raw.Bytes()
			if s.Compression != None {
				if e.Compression != "" {
					ch.NewCompression = e.Compression
				}
				if seg, err = encode(ctx, ch.NewCompression, seg, e.Fast); err != nil {
					return nil, nil, fmt.Errorf("initramfs: segment %d: %w", si, err)
				}
			}
			ch.Rewritten = true
		} else {
			seg = make([]byte, s.Length)
			if err := readAtContext(ctx, src, seg, s.Offset); err != nil {
				return nil, nil, fmt.Errorf("initramfs: segment %d: reading %d bytes at offset %d: %w", si, s.Length, s.Offset, err)
			}
			ch.NewExpanded = s.ExpandedSize
		}
		out.Write(seg)
		ch.NewLength = int64(len(seg))
		pad := s.Padding
		if si+1 < len(im.Segments) {
			if ch.NewCompression == LZ4Legacy && pad < 4 {
				pad = 4
			}
			if im.Segments[si+1].Compression == None {
				pad += padLen(int64(out.Len()) + pad)
			}
		}
		out.Write(make([]byte, pad))
		rep.Segments = append(rep.Segments, ch)
	}
	rep.NewSize = int64(out.Len())
	return out.Bytes(), rep, nil
}

func parentOf(k string) string {
	i := strings.LastIndexByte(k, '/')
	if i < 0 {
		return "."
	}
	return k[:i]
}

// readAtContext fills b from r at off, ctxChunk bytes at a time, and fails with the context's error
// once ctx is done.
func readAtContext(ctx context.Context, r io.ReaderAt, b []byte, off int64) error {
	_, err := io.ReadFull(ctxReader{ctx, io.NewSectionReader(r, off, int64(len(b)))}, b)
	return err
}
