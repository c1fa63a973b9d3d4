package ext

import "fmt"

// maxGroupRead bounds the blocks one groupReader read fetches (256 KiB of 4 KiB blocks).
const maxGroupRead = 64

// groupReader reads one block per group, such as its block or inode bitmap, a run of consecutive
// blocks at a time. With flex_bg, mke2fs places the bitmaps of a flex group (16 groups by default)
// side by side, and when the disk is a page blob every read is a request: reading them one by one
// would cost a round trip per group, twice over, in a plan a cutover waits for.
type groupReader struct {
	fs    *FS
	what  string                     // "block bitmap", "inode bitmap"
	block func(gd *GroupDesc) uint64 // the group's block
	first uint32                     // group whose block starts buf
	n     uint32                     // blocks in buf
	buf   []byte
}

// read returns group g's block and its byte offset. The bytes are valid until the next read.
func (r *groupReader) read(g uint32) ([]byte, int64, error) {
	fs, bs := r.fs, r.fs.bs
	start := r.block(&fs.groupDescs[g])
	if g < r.first || g >= r.first+r.n {
		name := fmt.Sprintf("%s of group %d", r.what, g)
		if start >= fs.blocks {
			return nil, 0, corrupt(name, 0, "block %d beyond the %d-block filesystem", start, fs.blocks)
		}
		// The following groups' blocks that come right after it, inside the filesystem.
		n := uint32(1)
		for n < maxGroupRead && g+n < fs.groups && r.block(&fs.groupDescs[g+n]) == start+uint64(n) && start+uint64(n) < fs.blocks {
			n++
		}
		if int64(cap(r.buf)) < int64(n)*bs {
			r.buf = make([]byte, int64(n)*bs)
		}
		r.buf, r.n = r.buf[:int64(n)*bs], 0
		if err := fs.readAt(r.buf, int64(start)*bs, name); err != nil {
			return nil, 0, err
		}
		r.first, r.n = g, n
	}
	i := int64(g-r.first) * bs
	return r.buf[i : i+bs], int64(start) * bs, nil
}
