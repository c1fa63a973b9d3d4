package ext

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/luksconv/luksconv/extent"
)

const (
	jbdMagic     = 0xc03b3998 // jbd2 block header magic (big-endian on disk)
	jbdSBv1      = 3
	jbdSBv2      = 4
	mmpMagic     = 0x004d4d50
	mmpSeqClean  = 0xff4d4d50
	mmpSeqFsck   = 0xe24d4d50
	journalInode = 8
)

// checkJournal maps the internal journal (its blocks are never free space)
// and tells whether it is empty: needs_recovery set, or a journal
// superblock whose s_start is not zero (transactions to replay), wraps
// ErrNeedsRecovery. An external journal cannot be inspected; only the
// needs_recovery bit speaks for it.
func (fs *FS) checkJournal() error {
	s := &fs.SB
	if !s.HasJournal() {
		if s.NeedsRecovery() {
			return fmt.Errorf("%w: needs_recovery is set but the filesystem has no journal", ErrNeedsRecovery)
		}
		return nil
	}
	var state error
	if s.NeedsRecovery() {
		state = fmt.Errorf("%w (needs_recovery is set: a snapshot of a mounted filesystem, or a crash)", ErrNeedsRecovery)
	}
	if s.JournalInum == 0 {
		return state // external journal
	}
	if s.JournalInum != journalInode && s.JournalInum < fs.firstIno || s.JournalInum > s.InodesCount {
		return fmt.Errorf("journal inode number %d invalid", s.JournalInum)
	}
	ino, err := fs.Inode(s.JournalInum)
	if err == nil && (!ino.IsRegular() || ino.Size < fs.bs) {
		err = fmt.Errorf("journal inode %d is not a regular file of at least one block", ino.Ino)
	}
	var exts []Extent
	var tree []blockRun
	if err == nil {
		exts, tree, err = fs.mapping(ino)
	}
	if err != nil {
		if state != nil {
			return state
		}
		return fmt.Errorf("journal: %w", err)
	}
	var runs []blockRun
	for _, e := range exts {
		runs = append(runs, blockRun{uint64(e.DiskOff / fs.bs), uint64(e.Len / fs.bs)})
	}
	fs.journal = mergeRuns(append(runs, tree...))
	if state != nil {
		return state
	}
	if len(exts) == 0 || exts[0].FileOff != 0 || exts[0].Unwritten {
		return fmt.Errorf("journal inode %d has no superblock block", ino.Ino)
	}
	b := make([]byte, 1024)
	if err := fs.readAt(b, exts[0].DiskOff, "journal superblock"); err != nil {
		return err
	}
	be := binary.BigEndian
	if m, t := be.Uint32(b), be.Uint32(b[4:]); m != jbdMagic || t != jbdSBv1 && t != jbdSBv2 {
		return fmt.Errorf("journal superblock at offset %d: bad magic %#08x or type %d", exts[0].DiskOff, m, t)
	}
	if start := be.Uint32(b[0x1c:]); start != 0 {
		return fmt.Errorf("%w: the journal is not empty (it starts at block %d) although needs_recovery is clear", ErrNeedsRecovery, start)
	}
	if errno := int32(be.Uint32(b[0x20:])); errno != 0 {
		return fmt.Errorf("the journal was aborted (error %d): run e2fsck", errno)
	}
	// The log area, blocks s_first to s_maxlen of the journal file, when the superblock describes it
	// consistently; otherwise JournalLog lists nothing.
	bsize, maxlen, first := int64(be.Uint32(b[0xc:])), int64(be.Uint32(b[0x10:])), int64(be.Uint32(b[0x14:]))
	if bsize == fs.bs && first >= 1 && first < maxlen && maxlen*fs.bs <= int64(ino.Size) {
		lo, hi := first*fs.bs, maxlen*fs.bs
		for _, e := range exts {
			s, t := max(e.FileOff, lo), min(e.FileOff+e.Len, hi)
			if s < t {
				fs.journalLog = append(fs.journalLog, extent.Range{Off: e.DiskOff + s - e.FileOff, Len: t - s})
			}
		}
		fs.journalLog = extent.Merge(fs.journalLog)
	}
	return nil
}

// JournalLog returns the byte ranges of the internal journal's log area (its blocks from s_first to
// s_maxlen: everything but the journal superblock), sorted and merged, when the journal is empty and
// the filesystem clean (Writable returns nil); otherwise, or for an external journal, nil.
//
// An empty journal's log is never read again: the next mount starts a new log after the sequence
// number its superblock records, and e2fsck reads only the superblock. A converter may therefore write
// zeros there, as mke2fs does, instead of copying up to a gigabyte of stale transactions.
func (fs *FS) JournalLog() []extent.Range {
	if fs.Writable() != nil {
		return nil
	}
	return slices.Clone(fs.journalLog)
}

// checkMMP reads the multi-mount protection block: only a clean sequence
// number means no node has the filesystem open.
func (fs *FS) checkMMP() error {
	blk := fs.SB.MMPBlock
	if blk < uint64(fs.SB.FirstDataBlock) || blk >= fs.blocks {
		return fmt.Errorf("MMP block %d outside the filesystem", blk)
	}
	b := make([]byte, 8)
	if err := fs.readAt(b, int64(blk)*fs.bs, "MMP block"); err != nil {
		return err
	}
	le := binary.LittleEndian
	switch m, seq := le.Uint32(b), le.Uint32(b[4:]); {
	case m != mmpMagic:
		return fmt.Errorf("MMP block %d: bad magic %#08x", blk, m)
	case seq == mmpSeqFsck:
		return fmt.Errorf("MMP block says e2fsck is running")
	case seq != mmpSeqClean:
		return fmt.Errorf("MMP block says the filesystem is in use (sequence %#x)", seq)
	}
	return nil
}

// Writable reports why the filesystem must not be edited in place, or nil.
// Every error wraps ErrCannotEdit; a journal that needs recovery also wraps
// ErrNeedsRecovery. The reasons: needs_recovery or a journal that is not
// empty (replaying it would undo the edit or, worse, mix old metadata with
// new data), an unreadable or aborted journal, recorded errors or a state
// that is not clean (run e2fsck), pending orphan inodes (the old orphan list
// or the orphan file: the next mount finishes deleting them), an MMP block
// that says a node or e2fsck has it open, and ro_compat features under which
// blocks may be shared or the filesystem is not to be written (snapshots,
// shared_blocks, replica, readonly) or that this package does not know.
func (fs *FS) Writable() error {
	s := &fs.SB
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrCannotEdit, fmt.Sprintf(format, args...))
	}
	if fs.editState != nil {
		return fmt.Errorf("%w: %w", ErrCannotEdit, fs.editState)
	}
	switch {
	case s.State&StateError != 0:
		return refuse("the filesystem has errors (state %#x); run e2fsck", s.State)
	case s.State&StateValid == 0:
		return refuse("the filesystem was not cleanly unmounted (state %#x); run e2fsck", s.State)
	case s.State&StateOrphan != 0:
		return refuse("orphan recovery was in progress (state %#x)", s.State)
	case s.LastOrphan != 0:
		return refuse("orphan inodes are pending (the list starts at inode %d)", s.LastOrphan)
	case s.FeatureRoCompat&RoCompatOrphanPresent != 0:
		return refuse("the orphan file holds orphan inodes (orphan_present)")
	case s.FeatureRoCompat&RoCompatHasSnapshot != 0:
		return refuse("the filesystem has snapshots: blocks may be shared")
	case s.FeatureRoCompat&RoCompatSharedBlocks != 0:
		return refuse("shared_blocks: blocks may be shared between files")
	case s.FeatureRoCompat&RoCompatReplica != 0:
		return refuse("replica feature set")
	case s.FeatureRoCompat&RoCompatReadonly != 0:
		return refuse("the filesystem is marked read-only")
	}
	if u := s.FeatureRoCompat &^ roCompatKnown; u != 0 {
		return refuse("unknown ro_compat feature bits %#x", u)
	}
	return nil
}
