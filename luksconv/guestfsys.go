package luksconv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"

	"github.com/luksconv/luksconv/ext"
	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/xfs"
)

// fsys is what discovery and the guest editor need of a guest filesystem, whichever format holds it:
// XFS (RHEL's /boot and root) or ext2/3/4 (Ubuntu's ext2 /boot and ext4 root, and data volumes).
// The methods mirror the xfs and ext packages', which agree on everything but their inode types.
type fsys interface {
	Lookup(path string) (*node, error)
	LookupFollow(path string) (*node, error)
	ReadDir(path string) ([]dirEntry, error)
	ReadDirNode(dir *node) ([]dirEntry, error)
	Node(ino uint64) (*node, error)
	FileReader(n *node) (*io.SectionReader, error)
	Readlink(path string) (string, error)
	// Extents is n's block map in filesystem-device bytes, sorted by FileOff.
	Extents(n *node) ([]extent.Mapped, error)
	// Rewrite returns the device writes that replace n's content with data inside the blocks it owns.
	Rewrite(n *node, data []byte) ([]devWrite, error)
	// MinSize is the shortest content Rewrite accepts for n: ext keeps every block a file owns, and
	// e2fsck rejects a file with written blocks wholly past its end, so a shorter content must be
	// padded; XFS has no such bound (0).
	MinSize(n *node) (int64, error)
	// Writable says why the filesystem must not be edited in place, or nil.
	Writable() error
	BlockSize() int64
	UUID() string
	Label() string
	// SetMountPoint says where the guest mounts the filesystem, so absolute symbolic links resolve.
	SetMountPoint(path string)
}

// node is one file of a guest filesystem.
type node struct {
	Ino  uint64
	Size int64
	mode iofs.FileMode
	// shared: its blocks may belong to other files too (XFS reflink), so they are not wiped.
	shared bool
	// inline: its data lives inside the inode (ext inline_data), not in blocks.
	inline bool
	// realtime: its data is on an XFS realtime device, which luksconv does not map.
	realtime bool
	xi       *xfs.Inode
	ei       *ext.Inode
}

func (n *node) IsDir() bool     { return n.mode.IsDir() }
func (n *node) IsRegular() bool { return n.mode.IsRegular() }
func (n *node) IsSymlink() bool { return n.mode&iofs.ModeSymlink != 0 }

// dirEntry is one directory entry.
type dirEntry struct {
	Name string
	Ino  uint64
}

// devWrite is one byte patch on a filesystem's device.
type devWrite struct {
	Offset int64
	Data   []byte
}

// devWrites converts the xfs or ext package's writes, which have devWrite's layout.
func devWrites[W ~struct {
	Offset int64
	Data   []byte
}](ws []W) []devWrite {
	out := make([]devWrite, len(ws))
	for i, w := range ws {
		out[i] = devWrite(w)
	}
	return out
}

// openFsys opens the XFS or ext filesystem of content held in r.
func openFsys(r io.ReaderAt, size int64, content Content) (fsys, error) {
	switch content {
	case ContentXFS:
		x, err := xfs.Open(r, size)
		if err != nil {
			return nil, err
		}
		return xfsFsys{x}, nil
	case ContentExt4:
		x, err := ext.Open(r, size)
		if err != nil {
			return nil, err
		}
		return extFsys{x}, nil
	}
	return nil, fmt.Errorf("%s is not a filesystem luksconv edits", content)
}

type xfsFsys struct{ fs *xfs.FS }

func xfsNode(ino *xfs.Inode, err error) (*node, error) {
	if err != nil {
		return nil, err
	}
	return &node{Ino: ino.Ino, Size: ino.Size, mode: ino.FileMode(), xi: ino,
		shared: ino.Flags2&xfs.Flag2Reflink != 0, realtime: ino.Flags&xfs.FlagRealtime != 0}, nil
}

func xfsEntries(ents []xfs.DirEntry, err error) ([]dirEntry, error) {
	out := make([]dirEntry, len(ents))
	for i, d := range ents {
		out[i] = dirEntry{Name: d.Name, Ino: d.Ino}
	}
	return out, err
}

func (f xfsFsys) Lookup(p string) (*node, error)       { return xfsNode(f.fs.Lookup(p)) }
func (f xfsFsys) LookupFollow(p string) (*node, error) { return xfsNode(f.fs.LookupFollow(p)) }
func (f xfsFsys) Node(ino uint64) (*node, error)       { return xfsNode(f.fs.Inode(ino)) }
func (f xfsFsys) ReadDir(p string) ([]dirEntry, error) { return xfsEntries(f.fs.ReadDir(p)) }
func (f xfsFsys) ReadDirNode(n *node) ([]dirEntry, error) {
	return xfsEntries(f.fs.ReadDirInode(n.xi))
}
func (f xfsFsys) FileReader(n *node) (*io.SectionReader, error) { return f.fs.FileReader(n.xi) }
func (f xfsFsys) Readlink(p string) (string, error)             { return f.fs.Readlink(p) }
func (f xfsFsys) Extents(n *node) ([]extent.Mapped, error)      { return f.fs.Extents(n.xi) }
func (f xfsFsys) Writable() error                               { return f.fs.Writable() }
func (f xfsFsys) BlockSize() int64                              { return int64(f.fs.SB.BlockSize) }
func (f xfsFsys) UUID() string                                  { return formatUUID(f.fs.SB.UUID) }
func (f xfsFsys) Label() string                                 { return string(bytes.TrimRight(f.fs.SB.FName[:], "\x00")) }
func (f xfsFsys) SetMountPoint(p string)                        { f.fs.MountPoint = p }
func (f xfsFsys) MinSize(*node) (int64, error)                  { return 0, nil }
func (f xfsFsys) Rewrite(n *node, data []byte) ([]devWrite, error) {
	ws, err := f.fs.RewriteInode(n.xi, data, nil)
	return devWrites(ws), err
}

type extFsys struct{ fs *ext.FS }

func extNode(ino *ext.Inode, err error) (*node, error) {
	if err != nil {
		return nil, err
	}
	return &node{Ino: uint64(ino.Ino), Size: ino.Size, mode: ino.FileMode(), ei: ino, inline: ino.HasInlineData()}, nil
}

func extEntries(ents []ext.DirEntry, err error) ([]dirEntry, error) {
	out := make([]dirEntry, len(ents))
	for i, d := range ents {
		out[i] = dirEntry{Name: d.Name, Ino: uint64(d.Ino)}
	}
	return out, err
}

func (f extFsys) Lookup(p string) (*node, error)       { return extNode(f.fs.Lookup(p)) }
func (f extFsys) LookupFollow(p string) (*node, error) { return extNode(f.fs.LookupFollow(p)) }
func (f extFsys) Node(ino uint64) (*node, error) {
	if ino > 1<<32-1 {
		return nil, fmt.Errorf("ext: inode %d: %w", ino, errors.New("inode number out of range"))
	}
	return extNode(f.fs.Inode(uint32(ino)))
}
func (f extFsys) ReadDir(p string) ([]dirEntry, error) { return extEntries(f.fs.ReadDir(p)) }
func (f extFsys) ReadDirNode(n *node) ([]dirEntry, error) {
	return extEntries(f.fs.ReadDirInode(n.ei))
}
func (f extFsys) FileReader(n *node) (*io.SectionReader, error) { return f.fs.FileReader(n.ei) }
func (f extFsys) Readlink(p string) (string, error)             { return f.fs.Readlink(p) }
func (f extFsys) Extents(n *node) ([]extent.Mapped, error) {
	if n.inline {
		return nil, nil // no blocks: the data is in the inode
	}
	return f.fs.Extents(n.ei)
}
func (f extFsys) Writable() error        { return f.fs.Writable() }
func (f extFsys) BlockSize() int64       { return f.fs.SB.BlockSize() }
func (f extFsys) UUID() string           { return f.fs.UUID() }
func (f extFsys) Label() string          { return f.fs.Label() }
func (f extFsys) SetMountPoint(p string) { f.fs.MountPoint = p }
func (f extFsys) Rewrite(n *node, data []byte) ([]devWrite, error) {
	ws, err := f.fs.RewriteInode(n.ei, data, nil)
	return devWrites(ws), err
}

func (f extFsys) MinSize(n *node) (int64, error) {
	if n.inline {
		return 0, nil // no blocks: the data is in the inode
	}
	return f.fs.MinRewriteSize(n.ei)
}
