package xfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"sort"
	"strings"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/fspath"
)

// Directory entry file types (XFS_DIR3_FT_*), stored in DirEntry.Type when
// the filesystem has the ftype feature; FTUnknown otherwise.
const (
	FTUnknown  = 0 // type not recorded
	FTRegular  = 1 // regular file
	FTDir      = 2 // directory
	FTChrdev   = 3 // character device
	FTBlkdev   = 4 // block device
	FTFifo     = 5 // named pipe
	FTSock     = 6 // socket
	FTSymlink  = 7 // symbolic link
	FTWhiteout = 8 // overlayfs whiteout
)

// DirEntry is one directory entry ("." and ".." are not reported).
type DirEntry struct {
	Name string // the entry's name (a single path component)
	Ino  uint64 // the inode the entry names
	Type uint8  // FT* constant; FTUnknown without the ftype feature
}

const (
	dirBlockMagicV4 = 0x58443242 // "XD2B": single-block directory
	dirDataMagicV4  = 0x58443244 // "XD2D": data block of a leaf/node directory
	dirBlockMagicV5 = 0x58444233 // "XDB3"
	dirDataMagicV5  = 0x58444433 // "XDD3"
	dirHdrV4        = 16
	dirHdrV5        = 64
	dirCRCOff       = 4
	// dirLeafOffset is XFS_DIR2_LEAF_OFFSET: directory entries live in data
	// blocks below it; leaf and free-index blocks (hash lookup aids, not
	// needed for a linear scan) live above.
	dirLeafOffset = 32 << 30

	symlinkMagic  = 0x58534c4d // "XSLM"
	symlinkHdr    = 56
	symlinkCRCOff = 12
	symlinkMaps   = 3 // XFS_SYMLINK_MAPS: a remote target spans at most 3 blocks
)

// dirVisitor receives each entry; returning false stops the walk.
type dirVisitor func(name []byte, ino uint64, ftype uint8) bool

// walkDir calls fn for every entry of directory dir except "." and "..".
func (fs *FS) walkDir(dir *Inode, fn dirVisitor) error {
	if !dir.IsDir() {
		return ErrNotDir
	}
	if dir.Format == FormatLocal {
		return fs.walkShortform(dir, fn)
	}
	return fs.walkDirBlocks(dir, fn)
}

// checkName applies xfs_dir2_namecheck: no '/' and no NUL in a name.
func checkName(name []byte) bool {
	return len(name) > 0 && bytes.IndexByte(name, '/') < 0 && bytes.IndexByte(name, 0) < 0
}

func isDotOrDotDot(name []byte) bool {
	return string(name) == "." || string(name) == ".."
}

// walkShortform parses a directory stored inline in the inode
// (xfs_dir2_sf_hdr followed by packed entries).
func (fs *FS) walkShortform(dir *Inode, fn dirVisitor) error {
	sf := dir.dataFork()[:dir.Size] // Size bounded by parseInode
	at := dir.Offset + int64(dir.coreSize())
	name := fmt.Sprintf("short-form directory of inode %d", dir.Ino)
	if len(sf) < 2 {
		return corrupt(name, at, "%d bytes is too short for the header", len(sf))
	}
	count, i8 := int(sf[0]), sf[1]
	isz := 4
	if i8 != 0 {
		isz = 8
	}
	pos := 2 + isz // skip the parent inode number
	ftype := fs.SB.HasFtype()
	for i := 0; i < count; i++ {
		if pos+3 > len(sf) {
			return corrupt(name, at, "entry %d beyond the %d-byte directory", i, len(sf))
		}
		n := int(sf[pos])
		pos += 3 // namelen + 2-byte offset tag
		need := n + isz
		if ftype {
			need++
		}
		if n == 0 || pos+need > len(sf) {
			return corrupt(name, at, "entry %d (name length %d) beyond the %d-byte directory", i, n, len(sf))
		}
		nm := sf[pos : pos+n]
		pos += n
		var ft uint8
		if ftype {
			ft = sf[pos]
			pos++
		}
		var ino uint64
		if isz == 8 {
			ino = binary.BigEndian.Uint64(sf[pos:])
		} else {
			ino = uint64(binary.BigEndian.Uint32(sf[pos:]))
		}
		pos += isz
		if !checkName(nm) || isDotOrDotDot(nm) {
			return corrupt(name, at, "entry %d has invalid name %q", i, nm)
		}
		if !fn(nm, ino, ft) {
			return nil
		}
	}
	return nil
}

// walkDirBlocks scans every directory data block below XFS_DIR2_LEAF_OFFSET:
// a single-block directory, or the data blocks of a leaf, node or btree
// directory. Entries are found by a linear scan, so the hash index (leaf,
// node and free-index blocks) is never needed.
func (fs *FS) walkDirBlocks(dir *Inode, fn dirVisitor) error {
	name := fmt.Sprintf("directory inode %d", dir.Ino)
	if dir.Size > dirLeafOffset {
		return corrupt(name, dir.Offset, "size %d beyond the directory data space", dir.Size)
	}
	exts, err := fs.Extents(dir)
	if err != nil {
		return err
	}
	if err := fs.checkMappedTotal(dir, exts); err != nil {
		return err
	}
	dbs := fs.bs << fs.SB.DirBlkLog
	end := dir.Size
	single := dir.Size == dbs
	buf := make([]byte, dbs)
	last := int64(-1)
	for _, e := range exts {
		if e.FileOff >= end {
			break
		}
		lo := e.FileOff / dbs
		hi := (min(e.FileOff+e.Len, end) - 1) / dbs
		for d := max(lo, last+1); d <= hi; d++ {
			last = d
			blkAt, err := fs.readDirBlock(dir, exts, d*dbs, buf)
			if err != nil {
				return err
			}
			stop, err := fs.parseDirBlock(dir, buf, blkAt, single && d == 0, fn)
			if err != nil || stop {
				return err
			}
		}
	}
	return nil
}

// checkMappedTotal bounds the work a forged extent map can cause: the blocks
// a file maps cannot exceed the device.
func (fs *FS) checkMappedTotal(ino *Inode, exts []Extent) error {
	var total int64
	for _, e := range exts {
		total += e.Len
		if total > int64(fs.SB.DBlocks)*fs.bs {
			return corrupt(fmt.Sprintf("inode %d", ino.Ino), ino.Offset, "extents map more blocks than the filesystem has")
		}
	}
	return nil
}

// readDirBlock assembles the directory block at file byte offset foff (it
// may span several extents) and returns the device offset of its first byte.
func (fs *FS) readDirBlock(dir *Inode, exts []Extent, foff int64, buf []byte) (int64, error) {
	var first int64 = -1
	for done := int64(0); done < int64(len(buf)); {
		pos := foff + done
		i := sort.Search(len(exts), func(i int) bool { return exts[i].FileOff+exts[i].Len > pos })
		if i == len(exts) || exts[i].FileOff > pos || exts[i].Unwritten {
			return 0, corrupt(fmt.Sprintf("directory inode %d", dir.Ino), dir.Offset,
				"directory block at file offset %d is partly unmapped or unwritten", foff)
		}
		e := exts[i]
		n := min(e.FileOff+e.Len-pos, int64(len(buf))-done)
		at := e.DiskOff + pos - e.FileOff
		if first < 0 {
			first = at
		}
		if err := fs.readAt(buf[done:done+n], at, fmt.Sprintf("directory block of inode %d", dir.Ino)); err != nil {
			return 0, err
		}
		done += n
	}
	return first, nil
}

// parseDirBlock walks the entries of one directory data block.
func (fs *FS) parseDirBlock(dir *Inode, blk []byte, at int64, single bool, fn dirVisitor) (stop bool, err error) {
	be := binary.BigEndian
	name := fmt.Sprintf("directory block of inode %d", dir.Ino)
	magic := be.Uint32(blk)
	blockMagic, dataMagic, hdr := uint32(dirBlockMagicV4), uint32(dirDataMagicV4), dirHdrV4
	if fs.SB.HasCRC() {
		blockMagic, dataMagic, hdr = dirBlockMagicV5, dirDataMagicV5, dirHdrV5
	}
	end := len(blk)
	// A directory of one data block may still be in leaf form (data block
	// plus leaf block) when the leaf entries do not fit the data block.
	switch {
	case single && magic == blockMagic:
		count := be.Uint32(blk[len(blk)-8:])
		if uint64(count) > uint64(len(blk)-8-hdr)/8 {
			return false, corrupt(name, at, "%d leaf entries do not fit the block", count)
		}
		end = len(blk) - 8 - int(count)*8
	case magic == dataMagic:
	default:
		return false, corrupt(name, at, "bad magic %#08x", magic)
	}
	if fs.SB.HasCRC() {
		if got := be.Uint64(blk[8:]); got != uint64(at)/512 {
			return false, corrupt(name, at, "records its address as sector %d", got)
		}
		if u := fs.SB.metaUUID(); string(blk[24:40]) != string(u[:]) {
			return false, corrupt(name, at, "UUID does not match the filesystem")
		}
		if got := be.Uint64(blk[40:]); got != dir.Ino {
			return false, corrupt(name, at, "owner %d, expected %d", got, dir.Ino)
		}
		if !fs.noCRC {
			if err := checkCRC(blk, dirCRCOff, name, at); err != nil {
				return false, err
			}
		}
	}
	ftype := fs.SB.HasFtype()
	for pos := hdr; pos < end; {
		if end-pos < 8 {
			return false, corrupt(name, at+int64(pos), "truncated entry")
		}
		if be.Uint16(blk[pos:]) == 0xffff { // unused space: freetag, length
			n := int(be.Uint16(blk[pos+2:]))
			if n < 8 || n%8 != 0 || n > end-pos {
				return false, corrupt(name, at+int64(pos), "free span of %d bytes invalid", n)
			}
			pos += n
			continue
		}
		ino := be.Uint64(blk[pos:])
		n := int(blk[pos+8])
		size := 8 + 1 + n + 2
		if ftype {
			size++
		}
		size = (size + 7) &^ 7
		if n == 0 || size > end-pos {
			return false, corrupt(name, at+int64(pos), "entry with name length %d overruns the block", n)
		}
		nm := blk[pos+9 : pos+9+n]
		var ft uint8
		if ftype {
			ft = blk[pos+9+n]
		}
		if !checkName(nm) {
			return false, corrupt(name, at+int64(pos), "invalid name %q", nm)
		}
		pos += size
		if isDotOrDotDot(nm) {
			continue
		}
		if !fn(nm, ino, ft) {
			return true, nil
		}
	}
	return false, nil
}

// dirLookup finds name in directory dir.
func (fs *FS) dirLookup(dir *Inode, name string) (uint64, bool, error) {
	var found uint64
	var ok bool
	err := fs.walkDir(dir, func(n []byte, ino uint64, _ uint8) bool {
		if string(n) == name {
			found, ok = ino, true
			return false
		}
		return true
	})
	return found, ok, err
}

// Lookup resolves an absolute path (a relative one is taken from the root)
// and returns its inode without following a final symbolic link (lstat
// semantics). Symlinks in earlier components are followed: relative targets
// from the link's directory, absolute targets from this filesystem's root
// after removing MountPoint (targets outside MountPoint fail with
// ErrOutsideFS). ".." is resolved physically, as the kernel does. Errors
// are *fs.PathError wrapping fs.ErrNotExist, ErrNotDir, ErrSymlinkLoop,
// ErrOutsideFS or a corruption error.
func (fs *FS) Lookup(path string) (*Inode, error) { return fs.resolve(path, false) }

// LookupFollow is Lookup but also follows a final symbolic link (stat
// semantics).
func (fs *FS) LookupFollow(path string) (*Inode, error) { return fs.resolve(path, true) }

func (fs *FS) resolve(path string, followLast bool) (*Inode, error) {
	perr := func(err error) error { return &iofs.PathError{Op: "lookup", Path: path, Err: err} }
	root, err := fs.Inode(fs.SB.RootIno)
	if err != nil {
		return nil, perr(err)
	}
	if !root.IsDir() {
		return nil, perr(corrupt("root inode", root.Offset, "is not a directory"))
	}
	stack := []*Inode{root}
	queue := fspath.Split(path)
	links, steps := 0, 0
	for len(queue) > 0 {
		comp := queue[0]
		queue = queue[1:]
		if steps++; steps > maxPathSteps {
			return nil, perr(fmt.Errorf("%w: more than %d path components", ErrCorrupt, maxPathSteps))
		}
		cur := stack[len(stack)-1]
		if !cur.IsDir() {
			return nil, perr(ErrNotDir)
		}
		if comp == ".." {
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		ino, ok, err := fs.dirLookup(cur, comp)
		if err != nil {
			return nil, perr(err)
		}
		if !ok {
			return nil, perr(iofs.ErrNotExist)
		}
		child, err := fs.Inode(ino)
		if err != nil {
			return nil, perr(err)
		}
		if child.IsSymlink() && (len(queue) > 0 || followLast) {
			if links++; links > MaxSymlinks {
				return nil, perr(ErrSymlinkLoop)
			}
			target, err := fs.readlinkInode(child)
			if err != nil {
				return nil, perr(err)
			}
			if target == "" {
				return nil, perr(iofs.ErrNotExist)
			}
			if strings.HasPrefix(target, "/") {
				rel, ok := fspath.Strip(fs.MountPoint, target)
				if !ok {
					return nil, perr(fmt.Errorf("%w: %q (mount point %q)", ErrOutsideFS, target, fspath.Clean(fs.MountPoint)))
				}
				target = rel
				stack = stack[:1]
			}
			queue = append(fspath.Split(target), queue...)
			continue
		}
		stack = append(stack, child)
	}
	return stack[len(stack)-1], nil
}

// ReadDir returns the entries of the directory at path (following
// symlinks, "." and ".." omitted), sorted by name. Short-form, block,
// leaf, node and btree-format directories are read by scanning their data
// blocks.
func (fs *FS) ReadDir(path string) ([]DirEntry, error) {
	dir, err := fs.LookupFollow(path)
	if err != nil {
		return nil, err
	}
	return fs.ReadDirInode(dir)
}

// ReadDirInode is ReadDir for an inode already looked up.
func (fs *FS) ReadDirInode(dir *Inode) ([]DirEntry, error) {
	var out []DirEntry
	err := fs.walkDir(dir, func(n []byte, ino uint64, ft uint8) bool {
		out = append(out, DirEntry{Name: string(n), Ino: ino, Type: ft})
		return true
	})
	if err != nil {
		if errors.Is(err, ErrNotDir) {
			err = &iofs.PathError{Op: "readdir", Path: fmt.Sprintf("inode %d", dir.Ino), Err: err}
		}
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Readlink returns the target of the symbolic link at path (the final
// component is not followed).
func (fs *FS) Readlink(path string) (string, error) {
	ino, err := fs.Lookup(path)
	if err != nil {
		return "", err
	}
	if !ino.IsSymlink() {
		return "", &iofs.PathError{Op: "readlink", Path: path, Err: errors.New("not a symbolic link")}
	}
	return fs.readlinkInode(ino)
}

// readlinkInode reads an inline (local) or remote (extent) symlink target.
func (fs *FS) readlinkInode(ino *Inode) (string, error) {
	name := fmt.Sprintf("symlink inode %d", ino.Ino)
	if ino.Size <= 0 || ino.Size > MaxSymlinkLen {
		return "", corrupt(name, ino.Offset, "target length %d outside 1..%d", ino.Size, MaxSymlinkLen)
	}
	if ino.Format == FormatLocal {
		return string(ino.dataFork()[:ino.Size]), nil
	}
	exts, err := fs.Extents(ino)
	if err != nil {
		return "", err
	}
	var total int64
	for _, e := range exts {
		total += e.Len
	}
	if total > symlinkMaps*fs.bs {
		return "", corrupt(name, ino.Offset, "%d bytes of target blocks, at most %d expected", total, symlinkMaps*fs.bs)
	}
	be := binary.BigEndian
	target := make([]byte, 0, ino.Size)
	for _, e := range exts {
		if int64(len(target)) >= ino.Size {
			break
		}
		if e.Unwritten {
			return "", corrupt(name, ino.Offset, "unwritten target block")
		}
		buf := make([]byte, e.Len)
		if err := fs.readAt(buf, e.DiskOff, name); err != nil {
			return "", err
		}
		data := buf
		if fs.SB.HasCRC() {
			// One xfs_dsymlink_hdr per mapping (extent), as the kernel
			// reads and writes remote symlinks.
			if len(buf) < symlinkHdr || be.Uint32(buf) != symlinkMagic {
				return "", corrupt(name, e.DiskOff, "bad remote symlink header magic")
			}
			off, n := be.Uint32(buf[4:]), be.Uint32(buf[8:])
			if int64(off) != int64(len(target)) || int64(n) > int64(len(buf)-symlinkHdr) || int64(n) > ino.Size-int64(len(target)) {
				return "", corrupt(name, e.DiskOff, "remote symlink header says %d bytes at %d", n, off)
			}
			if u := fs.SB.metaUUID(); string(buf[16:32]) != string(u[:]) {
				return "", corrupt(name, e.DiskOff, "UUID does not match the filesystem")
			}
			if be.Uint64(buf[32:]) != ino.Ino || be.Uint64(buf[40:]) != uint64(e.DiskOff)/512 {
				return "", corrupt(name, e.DiskOff, "owner or block number mismatch")
			}
			if !fs.noCRC {
				if err := checkCRC(buf, symlinkCRCOff, name, e.DiskOff); err != nil {
					return "", err
				}
			}
			data = buf[symlinkHdr : symlinkHdr+int(n)]
		}
		data = data[:min(int64(len(data)), ino.Size-int64(len(target)))]
		target = append(target, data...)
	}
	if int64(len(target)) != ino.Size {
		return "", corrupt(name, ino.Offset, "target blocks hold %d of %d bytes", len(target), ino.Size)
	}
	return string(target), nil
}

// ReadFile returns the content of the regular file at path (symlinks
// followed). Holes and unwritten extents read as zeros. Files larger than
// MaxReadFile are refused; use FileReader for those.
func (fs *FS) ReadFile(path string) ([]byte, error) {
	ino, err := fs.LookupFollow(path)
	if err != nil {
		return nil, err
	}
	if !ino.IsRegular() {
		return nil, &iofs.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	}
	if ino.Size > MaxReadFile {
		return nil, &iofs.PathError{Op: "read", Path: path, Err: fmt.Errorf("file of %d bytes exceeds MaxReadFile", ino.Size)}
	}
	sr, err := fs.FileReader(ino)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, ino.Size)
	if _, err := io.ReadFull(sr, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// FileReader returns a reader of ino's data (Size bytes; holes and
// unwritten extents read as zeros).
func (fs *FS) FileReader(ino *Inode) (*io.SectionReader, error) {
	if ino.Format == FormatLocal {
		return io.NewSectionReader(bytes.NewReader(ino.dataFork()[:ino.Size]), 0, ino.Size), nil
	}
	exts, err := fs.Extents(ino)
	if err != nil {
		return nil, err
	}
	if err := fs.checkMappedTotal(ino, exts); err != nil {
		return nil, err
	}
	what := fmt.Sprintf("data of inode %d", ino.Ino)
	r := extent.NewFileReader(exts, ino.Size, func(p []byte, off int64) error { return fs.readAt(p, off, what) })
	return io.NewSectionReader(r, 0, ino.Size), nil
}
