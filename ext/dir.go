package ext

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"sort"
	"strings"

	"github.com/luksconv/luksconv/internal/fspath"
)

// Directory entry file types (EXT4_FT_*), in DirEntry.Type when the
// filesystem has the filetype feature; FTUnknown otherwise. They are the
// numbers xfs uses.
const (
	FTUnknown = 0 // type not recorded
	FTRegular = 1 // regular file
	FTDir     = 2 // directory
	FTChrdev  = 3 // character device
	FTBlkdev  = 4 // block device
	FTFifo    = 5 // named pipe
	FTSock    = 6 // socket
	FTSymlink = 7 // symbolic link

	ftDirCsum = 0xde // EXT4_FT_DIR_CSUM: the checksum tail of a leaf block
)

// DirEntry is one directory entry ("." and ".." are not reported).
type DirEntry struct {
	Name string // the entry's name (a single path component)
	Ino  uint32 // the inode the entry names
	Type uint8  // FT* constant; FTUnknown without the filetype feature
}

const (
	direntHdr    = 8  // inode, rec_len, name_len, file_type
	direntMin    = 12 // EXT4_DIR_REC_LEN(1)
	direntTail   = 12 // struct ext4_dir_entry_tail
	inlineDotDot = 4  // an inline directory starts with its parent's inode number
)

// dirVisitor receives each entry; returning false stops the walk. name is
// only valid during the call.
type dirVisitor func(name []byte, ino uint32, ftype uint8) bool

// recLen decodes rec_len (ext4_rec_len_from_disk): with 64 KiB blocks the
// low two bits carry bits 16-17, and 0 or 65535 mean the whole block.
func (fs *FS) recLen(v uint16) int {
	if fs.bs < 65536 {
		return int(v)
	}
	if v == 65535 || v == 0 {
		return int(fs.bs)
	}
	return int(v&65532) | int(v&3)<<16
}

func (fs *FS) isDx(dir *Inode) bool {
	return dir.Flags&FlagIndex != 0 && fs.SB.FeatureCompat&CompatDirIndex != 0
}

// walkDir calls fn for every entry of directory dir except "." and "..".
// Blocks are scanned linearly, as the kernel's readdir does without the
// hash index: the htree's interior blocks look like empty entries (a
// dx_root is "." and a ".." whose record spans the block; a dx_node is one
// empty record spanning the block), so no hashing is needed.
func (fs *FS) walkDir(dir *Inode, fn dirVisitor) error {
	if !dir.IsDir() {
		return ErrNotDir
	}
	if dir.Flags&FlagEncrypt != 0 {
		return fmt.Errorf("%w: directory inode %d is encrypted", ErrUnsupported, dir.Ino)
	}
	if dir.HasInlineData() {
		return fs.walkInlineDir(dir, fn)
	}
	exts, err := fs.Extents(dir)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("directory inode %d", dir.Ino)
	nblocks := dir.Size / fs.bs // a multiple of the block size: parseInode
	k := int64(0)
	blk := make([]byte, fs.bs) // reused: visitors copy what they keep
	for _, e := range exts {
		if k >= nblocks {
			break
		}
		if e.FileOff > k*fs.bs || e.Unwritten {
			return corrupt(name, dir.Offset, "directory block %d is a hole or unwritten", k)
		}
		for ; k < nblocks && (k+1)*fs.bs <= e.FileOff+e.Len; k++ {
			at := e.DiskOff + k*fs.bs - e.FileOff
			if err := fs.readAt(blk, at, fmt.Sprintf("directory block %d of inode %d", k, dir.Ino)); err != nil {
				return err
			}
			stop, err := fs.dirBlock(dir, blk, at, k, fn)
			if err != nil || stop {
				return err
			}
		}
	}
	if k < nblocks {
		return corrupt(name, dir.Offset, "directory block %d of %d is not mapped", k, nblocks)
	}
	return nil
}

// dirBlock verifies one directory block's checksum (metadata_csum: the
// leaf tail, or for htree interior blocks the dx tail) and walks its
// entries.
func (fs *FS) dirBlock(dir *Inode, blk []byte, at, k int64, fn dirVisitor) (bool, error) {
	le := binary.LittleEndian
	name := fmt.Sprintf("directory block %d of inode %d", k, dir.Ino)
	end := len(blk)
	if fs.SB.HasMetadataCsum() {
		t := blk[len(blk)-direntTail:]
		switch {
		case le.Uint32(t) == 0 && fs.recLen(le.Uint16(t[4:])) == direntTail && t[6] == 0 && t[7] == ftDirCsum:
			end -= direntTail
			if !fs.noCRC {
				if got, want := le.Uint32(t[8:]), crc32c(dir.csumSeed, blk[:end]); got != want {
					return false, corrupt(name, at, "checksum mismatch (stored %#08x, computed %#08x)", got, want)
				}
			}
		case fs.isDx(dir) && (k == 0 || fs.recLen(le.Uint16(blk[4:])) == len(blk)):
			if err := fs.checkDxCsum(dir, blk, at, name); err != nil {
				return false, err
			}
		default:
			return false, corrupt(name, at, "no checksum tail (run e2fsck -D)")
		}
	}
	return fs.dirents(blk[:end], at, name, fn)
}

// checkDxCsum verifies an htree root or node block (ext4_dx_csum_verify):
// crc32c over the header and the count entries in use, then the dx_tail's
// reserved word, found after limit entries.
func (fs *FS) checkDxCsum(dir *Inode, blk []byte, at int64, name string) error {
	le := binary.LittleEndian
	var countOff int
	switch rl := fs.recLen(le.Uint16(blk[4:])); {
	case rl == len(blk):
		countOff = 8
	case rl == direntMin && fs.recLen(le.Uint16(blk[direntMin+4:])) == len(blk)-direntMin &&
		le.Uint32(blk[0x18:]) == 0 && blk[0x1d] == 8:
		countOff = 0x20 // after the dx_root_info
	default:
		return corrupt(name, at, "htree block without a valid root or node header")
	}
	limit, count := int(le.Uint16(blk[countOff:])), int(le.Uint16(blk[countOff+2:]))
	if countOff+limit*8+8 > len(blk) || count > limit {
		return corrupt(name, at, "htree count %d, limit %d leave no room for the checksum", count, limit)
	}
	if fs.noCRC {
		return nil
	}
	tail := countOff + limit*8
	c := crc32c(dir.csumSeed, blk[:countOff+count*8])
	c = crc32c(c, blk[tail:tail+4])
	c = crc32c(c, []byte{0, 0, 0, 0})
	if got := le.Uint32(blk[tail+4:]); got != c {
		return corrupt(name, at, "htree checksum mismatch (stored %#08x, computed %#08x)", got, c)
	}
	return nil
}

// checkName applies e2fsck's rule: no '/' and no NUL in a name.
func checkName(name []byte) bool {
	return len(name) > 0 && bytes.IndexByte(name, '/') < 0 && bytes.IndexByte(name, 0) < 0
}

// dirents walks the entries of one block (or inline area) b, which they
// must tile exactly (ext4_check_dir_entry).
func (fs *FS) dirents(b []byte, at int64, name string, fn dirVisitor) (bool, error) {
	le := binary.LittleEndian
	ftype := fs.SB.FeatureIncompat&IncompatFiletype != 0
	for pos := 0; pos < len(b); {
		if len(b)-pos < direntHdr {
			return false, corrupt(name, at+int64(pos), "%d bytes left, too few for an entry", len(b)-pos)
		}
		ino := le.Uint32(b[pos:])
		rl := fs.recLen(le.Uint16(b[pos+4:]))
		nl := int(b[pos+6])
		next := pos + rl
		switch {
		case rl < direntMin:
			return false, corrupt(name, at+int64(pos), "record length %d below %d", rl, direntMin)
		case rl%4 != 0:
			return false, corrupt(name, at+int64(pos), "record length %d not a multiple of 4", rl)
		case rl < (direntHdr+nl+3)&^3:
			return false, corrupt(name, at+int64(pos), "record length %d too small for a %d-byte name", rl, nl)
		case next > len(b):
			return false, corrupt(name, at+int64(pos), "record of %d bytes overruns the %d-byte block", rl, len(b))
		case next > len(b)-direntMin && next != len(b):
			return false, corrupt(name, at+int64(pos), "record ends %d bytes before the block end", len(b)-next)
		case ino > fs.SB.InodesCount:
			return false, corrupt(name, at+int64(pos), "inode %d beyond the %d inodes", ino, fs.SB.InodesCount)
		}
		e := b[pos:next]
		pos = next
		if ino == 0 {
			continue // unused record
		}
		nm := e[direntHdr : direntHdr+nl]
		if !checkName(nm) {
			return false, corrupt(name, at+int64(pos-rl), "invalid name %q", nm)
		}
		if string(nm) == "." || string(nm) == ".." {
			continue
		}
		var ft uint8
		if ftype {
			ft = e[7]
		}
		if !fn(nm, ino, ft) {
			return true, nil
		}
	}
	return false, nil
}

// walkInlineDir walks a directory kept in the inode: the parent's inode
// number and entries in i_block, more entries in the system.data
// attribute. There are no "." and ".." entries.
func (fs *FS) walkInlineDir(dir *Inode, fn dirVisitor) error {
	name := fmt.Sprintf("inline directory inode %d", dir.Ino)
	at := dir.Offset + iBlockOff
	if p := binary.LittleEndian.Uint32(dir.iblock()); p == 0 || p > fs.SB.InodesCount {
		return corrupt(name, at, "parent inode %d invalid", p)
	}
	stop, err := fs.dirents(dir.iblock()[inlineDotDot:], at+inlineDotDot, name, fn)
	if err != nil || stop {
		return err
	}
	val, _, err := fs.xattr(dir, xattrIndexSys, inlineDataName)
	if err != nil || len(val) == 0 {
		return err
	}
	_, err = fs.dirents(val, dir.Offset+goodOldSize+int64(dir.ExtraIsize), name+" (system.data)", fn)
	return err
}

// dirLookup finds name in directory dir by a linear scan.
func (fs *FS) dirLookup(dir *Inode, name string) (uint32, bool, error) {
	var found uint32
	var ok bool
	err := fs.walkDir(dir, func(n []byte, ino uint32, _ uint8) bool {
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
// after removing MountPoint (targets outside it fail with ErrOutsideFS).
// ".." is resolved physically, as the kernel does. Names are compared
// byte for byte (also in casefolded directories). Errors are
// *fs.PathError wrapping fs.ErrNotExist, ErrNotDir, ErrSymlinkLoop,
// ErrOutsideFS, ErrUnsupported (encrypted directories) or a corruption
// error.
func (fs *FS) Lookup(path string) (*Inode, error) { return fs.resolve(path, false) }

// LookupFollow is Lookup but also follows a final symbolic link (stat
// semantics).
func (fs *FS) LookupFollow(path string) (*Inode, error) { return fs.resolve(path, true) }

func (fs *FS) resolve(path string, followLast bool) (*Inode, error) {
	perr := func(err error) error { return &iofs.PathError{Op: "lookup", Path: path, Err: err} }
	root, err := fs.Inode(rootIno)
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
		n, ok, err := fs.dirLookup(cur, comp)
		if err != nil {
			return nil, perr(err)
		}
		if !ok {
			return nil, perr(iofs.ErrNotExist)
		}
		if n != rootIno && n < fs.firstIno {
			return nil, perr(corrupt(fmt.Sprintf("directory inode %d", cur.Ino), cur.Offset,
				"entry %q names reserved inode %d", comp, n))
		}
		child, err := fs.Inode(n)
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
// symlinks, "." and ".." omitted), sorted by name.
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
	err := fs.walkDir(dir, func(n []byte, ino uint32, ft uint8) bool {
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

// readlinkInode reads a fast (in i_block), inline or slow (in a block)
// symlink target; Size is bounded by parseInode.
func (fs *FS) readlinkInode(ino *Inode) (string, error) {
	if ino.Flags&FlagEncrypt != 0 {
		return "", fmt.Errorf("%w: symlink inode %d is encrypted", ErrUnsupported, ino.Ino)
	}
	name := fmt.Sprintf("symlink inode %d", ino.Ino)
	if fs.fastSymlink(ino) {
		if ino.Size >= iBlockLen {
			return "", corrupt(name, ino.Offset, "fast symlink of %d bytes does not fit i_block", ino.Size)
		}
		return string(ino.iblock()[:ino.Size]), nil
	}
	sr, err := fs.FileReader(ino)
	if err != nil {
		return "", err
	}
	b := make([]byte, ino.Size)
	if _, err := io.ReadFull(sr, b); err != nil {
		return "", err
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return "", corrupt(name, ino.Offset, "target holds a NUL byte")
	}
	return string(b), nil
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
