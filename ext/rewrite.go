package ext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Write is one byte patch on the filesystem.
type Write struct {
	Offset int64  // byte offset within the filesystem
	Data   []byte // the bytes to write there
}

// RewriteOptions tunes RewriteInode.
type RewriteOptions struct {
	// ModTime, when not zero, becomes the file's mtime and ctime. The zero
	// value keeps timestamps.
	ModTime time.Time
}

// Rewrite returns the writes that replace the content of the regular file at
// path (final symlink not followed; see Lookup) with data, inside the blocks
// the file already owns; opt may be nil. See RewriteInode.
func (fs *FS) Rewrite(path string, data []byte, opt *RewriteOptions) ([]Write, error) {
	ino, err := fs.Lookup(path)
	if err != nil {
		return nil, err
	}
	w, err := fs.RewriteInode(ino, data, opt)
	if err != nil && errors.Is(err, ErrCannotEdit) {
		err = fmt.Errorf("%s: %w", path, err)
	}
	return w, err
}

// RewriteInode returns the writes that replace ino's content with data. The
// data blocks covering data are rewritten and zero-padded to the block end;
// when the size changes, i_size (and i_size_high) is updated and, with
// metadata_csum, the inode checksum recomputed. Nothing else changes: no
// block is allocated or freed, so bitmaps, descriptors, extent trees and
// their checksums stay valid. Blocks past the new end keep their old bytes.
//
// It refuses, with an error wrapping ErrCannotEdit, when Writable fails or
// the file is not a regular file, keeps its data inline, is encrypted,
// verity-protected, immutable or append-only, or holds an extended
// attribute value; when the first len(data) bytes rounded up to a block are
// not entirely covered by written blocks (holes, unwritten extents, too
// few blocks); and when data is shorter than MinRewriteSize (pad the
// content).
func (fs *FS) RewriteInode(ino *Inode, data []byte, opt *RewriteOptions) ([]Write, error) {
	if err := fs.Writable(); err != nil {
		return nil, err
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: inode %d: %s", ErrCannotEdit, ino.Ino, fmt.Sprintf(format, args...))
	}
	switch {
	case !ino.IsRegular():
		return nil, refuse("not a regular file (mode %#o)", ino.Mode)
	case ino.HasInlineData():
		return nil, refuse("inline data: the content lives in the inode and its extended attributes")
	case ino.Flags&FlagEncrypt != 0:
		return nil, refuse("encrypted file")
	case ino.Flags&FlagVerity != 0:
		return nil, refuse("verity file: its Merkle tree would no longer match")
	case ino.Flags&(FlagImmutable|FlagAppend) != 0:
		return nil, refuse("immutable or append-only file")
	case ino.Flags&FlagEAInode != 0:
		return nil, refuse("the inode holds an extended attribute value")
	case ino.Flags&(FlagCompr|FlagComprBlk) != 0:
		return nil, refuse("compressed file")
	}
	size := int64(len(data))
	if size > 1<<31-1 && fs.SB.FeatureRoCompat&RoCompatLargeFile == 0 {
		return nil, refuse("%d bytes need the large_file feature", size)
	}
	exts, tree, err := fs.mapping(ino)
	if err != nil {
		return nil, err
	}
	need := (size + fs.bs - 1) / fs.bs * fs.bs // bytes of blocks to rewrite
	var writes []Write
	pos := int64(0)
	for _, e := range exts {
		if pos >= need || e.FileOff+e.Len <= pos {
			continue
		}
		if e.FileOff > pos {
			return nil, refuse("hole at file offset %d within the new size %d", pos, size)
		}
		if e.Unwritten {
			return nil, refuse("unwritten (preallocated) extent at file offset %d within the new size %d", e.FileOff, size)
		}
		if overlapsRuns(fs.journal, uint64(e.DiskOff/fs.bs), uint64(e.Len/fs.bs)) {
			return nil, corrupt(fmt.Sprintf("inode %d", ino.Ino), ino.Offset, "data blocks inside the journal")
		}
		n := min(e.FileOff+e.Len, need) - pos
		buf := make([]byte, n) // zero padding beyond len(data)
		if pos < size {
			copy(buf, data[pos:min(pos+n, size)])
		}
		writes = append(writes, Write{Offset: e.DiskOff + pos - e.FileOff, Data: buf})
		pos += n
	}
	if pos < need {
		return nil, refuse("%d bytes do not fit the %d bytes of blocks allocated from offset 0", size, pos)
	}
	if err := fs.checkCrossLinks(ino, writes, tree); err != nil {
		return nil, err
	}
	if min, lastInit := fs.minSize(ino, exts, tree); size < min {
		return nil, refuse("%d bytes would leave allocated blocks up to file block %d beyond the end; "+
			"the content must be at least %d bytes (pad it)", size, lastInit, min)
	}

	raw := append([]byte(nil), ino.raw...)
	changed := false
	if size != ino.Size {
		binary.LittleEndian.PutUint32(raw[0x04:], uint32(size))
		binary.LittleEndian.PutUint32(raw[0x6c:], uint32(size>>32))
		changed = true
	}
	if opt != nil && !opt.ModTime.IsZero() {
		if !ino.encodeTime(raw, 0x10, 0x88, opt.ModTime) || !ino.encodeTime(raw, 0x0c, 0x84, opt.ModTime) {
			return nil, refuse("time %v outside the inode's timestamp range", opt.ModTime)
		}
		changed = true
	}
	if changed {
		if fs.SB.HasMetadataCsum() {
			fs.setInodeCsum(ino, raw)
		}
		writes = append(writes, Write{Offset: ino.Offset, Data: raw})
	}
	return writes, nil
}

// MinRewriteSize returns the fewest bytes RewriteInode accepts as ino's new
// content, since it frees no block: e2fsck rejects a file whose initialised
// blocks lie wholly beyond its end ("i_size is too small"), so the content
// must reach the start of the last one; and when the extent tree has index
// blocks it must reach into it, since e2fsck takes the last index to cover
// the blocks up to the end only ("end of extent exceeds allowed value").
func (fs *FS) MinRewriteSize(ino *Inode) (int64, error) {
	exts, tree, err := fs.mapping(ino)
	if err != nil {
		return 0, err
	}
	min, _ := fs.minSize(ino, exts, tree)
	return min, nil
}

// minSize is MinRewriteSize for ino's mapping, and the last initialised file
// block (e2fsck's last_init_lblock; -1 for none).
func (fs *FS) minSize(ino *Inode, exts []Extent, tree []blockRun) (min, lastInit int64) {
	lastInit = -1
	for _, e := range exts {
		if !e.Unwritten {
			lastInit = (e.FileOff+e.Len)/fs.bs - 1
		}
	}
	switch {
	case lastInit < 0:
		return 0, lastInit
	case ino.Flags&FlagExtents != 0 && len(tree) > 0:
		return lastInit*fs.bs + 1, lastInit
	}
	return lastInit * fs.bs, lastInit
}

// checkCrossLinks refuses data writes that hit the file's own block map
// (extent or indirect blocks) or the same block twice: only a damaged map
// does that, and applying such a plan would destroy the map or mix
// contents.
func (fs *FS) checkCrossLinks(ino *Inode, writes []Write, tree []blockRun) error {
	runs := make([]blockRun, 0, len(writes))
	for _, w := range writes {
		r := blockRun{uint64(w.Offset / fs.bs), uint64(int64(len(w.Data)) / fs.bs)}
		if overlapsRuns(tree, r.start, r.n) {
			return corrupt(fmt.Sprintf("inode %d", ino.Ino), ino.Offset, "data blocks %d+%d overlap the file's block map", r.start, r.n)
		}
		runs = append(runs, r)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].start < runs[j].start })
	for i := 1; i < len(runs); i++ {
		if runs[i].start < runs[i-1].start+runs[i-1].n {
			return corrupt(fmt.Sprintf("inode %d", ino.Ino), ino.Offset, "block %d is mapped twice", runs[i].start)
		}
	}
	return nil
}
