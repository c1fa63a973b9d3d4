package xfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Write is one byte patch on the filesystem device.
type Write struct {
	Offset int64  // byte offset on the device
	Data   []byte // the bytes to write there
}

// Writable reports why the filesystem must not be edited in place, or nil:
// a dirty or unreadable log (wraps ErrDirtyLog when dirty), an external
// log, the NEEDSREPAIR bit, unknown incompat/ro_compat/log_incompat bits,
// or an unfinished mkfs. Every error wraps ErrCannotEdit.
func (fs *FS) Writable() error {
	s := &fs.SB
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrCannotEdit, fmt.Sprintf(format, args...))
	}
	if s.InProgress != 0 {
		return refuse("mkfs did not finish (sb_inprogress set)")
	}
	if s.HasCRC() {
		if s.FeaturesIncompat&IncompatNeedsRepair != 0 {
			return refuse("NEEDSREPAIR is set; run xfs_repair first")
		}
		if u := s.FeaturesIncompat &^ incompatKnown; u != 0 {
			return refuse("unknown incompat feature bits %#x", u)
		}
		if u := s.FeaturesRoCompat &^ roCompatKnown; u != 0 {
			return refuse("unknown ro_compat feature bits %#x", u)
		}
		if s.FeaturesLogIncompat != 0 {
			return refuse("log_incompat feature bits %#x set (log features in use)", s.FeaturesLogIncompat)
		}
	}
	if fs.logState != nil {
		return fmt.Errorf("%w: %w", ErrCannotEdit, fs.logState)
	}
	return nil
}

// RewriteOptions tunes RewriteInode.
type RewriteOptions struct {
	// ModTime, when not zero, becomes the file's mtime and ctime and the
	// v5 change counter is incremented. The zero value keeps timestamps.
	ModTime time.Time
}

// Rewrite returns the writes that replace the content of the regular file at
// path (final symlink not followed; see Lookup) with data, inside the blocks
// the file already owns. The data blocks covering data are rewritten and
// zero-padded to the block end; when the size changes, di_size is updated
// and (v5) the inode CRC recomputed. Blocks past the new end keep their old
// bytes, as after a truncate they are beyond EOF. Timestamps are kept.
//
// It refuses, with an error wrapping ErrCannotEdit, when Writable fails or
// the file is not a regular file, is reflinked (its blocks may be shared),
// realtime, immutable or append-only, or when the first len(data) bytes
// rounded up to a block are not entirely covered by written extents
// (holes, unwritten extents or too little allocated space).
func (fs *FS) Rewrite(path string, data []byte) ([]Write, error) {
	ino, err := fs.Lookup(path)
	if err != nil {
		return nil, err
	}
	w, err := fs.RewriteInode(ino, data, nil)
	if err != nil && errors.Is(err, ErrCannotEdit) {
		err = fmt.Errorf("%s: %w", path, err)
	}
	return w, err
}

// RewriteInode is Rewrite for an inode already looked up; opt may be nil.
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
	case ino.Flags2&Flag2Reflink != 0:
		return nil, refuse("reflinked file: its blocks may be shared with other files")
	case ino.Flags&FlagRealtime != 0:
		return nil, refuse("realtime file")
	case ino.Flags&(FlagImmutable|FlagAppend) != 0:
		return nil, refuse("immutable or append-only file")
	case ino.Format == FormatLocal:
		return nil, refuse("inline data")
	case ino.Format != FormatExtents && ino.Format != FormatBtree:
		return nil, refuse("data fork format %d", ino.Format)
	}
	exts, err := fs.Extents(ino)
	if err != nil {
		return nil, err
	}
	size := int64(len(data))
	need := (size + fs.bs - 1) / fs.bs * fs.bs // bytes of blocks to rewrite
	var writes []Write
	pos := int64(0)
	for _, e := range exts {
		if pos >= need {
			break
		}
		if e.FileOff > pos {
			return nil, refuse("hole at file offset %d within the new size %d", pos, size)
		}
		if e.FileOff+e.Len <= pos {
			continue
		}
		if e.Unwritten {
			return nil, refuse("unwritten (preallocated) extent at file offset %d within the new size %d", e.FileOff, size)
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

	raw := append([]byte(nil), ino.raw...)
	changed := false
	if size != ino.Size {
		binary.BigEndian.PutUint64(raw[56:], uint64(size))
		changed = true
	}
	if opt != nil && !opt.ModTime.IsZero() {
		if !ino.encodeTime(raw[40:], opt.ModTime) || !ino.encodeTime(raw[48:], opt.ModTime) {
			return nil, refuse("time %v outside the inode's timestamp range", opt.ModTime)
		}
		if ino.Version == 3 {
			binary.BigEndian.PutUint64(raw[104:], ino.ChangeCount+1)
		}
		changed = true
	}
	if changed {
		if ino.Version == 3 {
			binary.LittleEndian.PutUint32(raw[inodeCRCOff:], cksum(raw, inodeCRCOff))
		}
		writes = append(writes, Write{Offset: ino.Offset, Data: raw})
	}
	return writes, nil
}
