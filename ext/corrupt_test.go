package ext

import (
	"bytes"
	"encoding/binary"
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// The corruption tests damage real images by hand, one structure at a time,
// and require a *FormatError naming that structure's offset. Where a
// checksum covers the damaged field, the patcher re-seals it so that the
// check behind the checksum is reached; without re-sealing, the checksum
// error itself is expected. e2fsck -fn must reject every damaged image too.

// patcher edits a copy of an image held in memory; fs is the undamaged
// filesystem, used to locate structures and compute checksums.
type patcher struct {
	t    *testing.T
	data []byte
	fs   *FS
}

func newPatcher(t *testing.T, img string) *patcher {
	t.Helper()
	return &patcher{t: t, data: readImage(t, img), fs: openImage(t, img)}
}

func (p *patcher) u16(off int64, v uint16) { binary.LittleEndian.PutUint16(p.data[off:], v) }
func (p *patcher) u32(off int64, v uint32) { binary.LittleEndian.PutUint32(p.data[off:], v) }

func (p *patcher) lookup(path string) *Inode {
	p.t.Helper()
	ino, err := p.fs.Lookup(path)
	if err != nil {
		p.t.Fatal(err)
	}
	return ino
}

// sealSB recomputes the superblock checksum (metadata_csum).
func (p *patcher) sealSB() {
	if p.fs.SB.HasMetadataCsum() {
		sb := p.data[sbOffset : sbOffset+sbSize]
		p.u32(sbOffset+sbCsumOff, crc32c(^uint32(0), sb[:sbCsumOff]))
	}
}

// sealDesc recomputes the checksum of group g's descriptor.
func (p *patcher) sealDesc(g uint32) {
	gd := p.fs.groupDescs[g]
	d := p.data[gd.Offset : gd.Offset+int64(p.fs.descSize)]
	p.u16(gd.Offset+0x1e, p.fs.descCsum(g, d))
}

// sealInode recomputes the checksum of ino as patched.
func (p *patcher) sealInode(ino *Inode) {
	raw := p.data[ino.Offset : ino.Offset+int64(p.fs.inodeSize)]
	probe := &Inode{ExtraIsize: binary.LittleEndian.Uint16(raw[iExtraOff:]), csumSeed: ino.csumSeed}
	if len(raw) == goodOldSize {
		probe.ExtraIsize = 0
	}
	p.fs.setInodeCsum(probe, raw)
}

// sealExtentBlock recomputes the tail checksum of the extent block at off.
func (p *patcher) sealExtentBlock(ino *Inode, off int64) {
	b := p.data[off : off+p.fs.bs]
	end := extHdrLen + extEntryLen*int(binary.LittleEndian.Uint16(b[4:]))
	p.u32(off+int64(end), crc32c(ino.csumSeed, b[:end]))
}

// sealDirBlock recomputes the leaf tail checksum of the directory block at
// off.
func (p *patcher) sealDirBlock(dir *Inode, off int64) {
	b := p.data[off : off+p.fs.bs]
	p.u32(off+p.fs.bs-4, crc32c(dir.csumSeed, b[:len(b)-direntTail]))
}

// write stores the damaged image (sparsely: the images are mostly zeros)
// and returns its path.
func (p *patcher) write() string {
	p.t.Helper()
	path := filepath.Join(p.t.TempDir(), "damaged.img")
	if err := writeSparse(path, p.data); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// dirBlockOff is the device offset of block k of the directory at path.
func (p *patcher) dirBlockOff(path string, k int64) (*Inode, int64) {
	p.t.Helper()
	dir := p.lookup(path)
	exts, err := p.fs.Extents(dir)
	if err != nil || len(exts) == 0 {
		p.t.Fatalf("%s: %v %v", path, exts, err)
	}
	for _, e := range exts {
		if o := k * p.fs.bs; o >= e.FileOff && o < e.FileOff+e.Len {
			return dir, e.DiskOff + o - e.FileOff
		}
	}
	p.t.Fatalf("%s: block %d not mapped", path, k)
	return nil, 0
}

// wantFormatError checks that err is a *FormatError at off whose message
// contains substr, and that e2fsck -fn rejects the image as well.
func wantFormatError(t *testing.T, err error, off int64, substr, img string) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v, want a *FormatError", err)
	}
	if off >= 0 && fe.Offset != off {
		t.Errorf("FormatError offset %d, want %d (%v)", fe.Offset, off, err)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Errorf("error %q does not say %q", err, substr)
	}
	if !strings.HasPrefix(err.Error(), "ext: ") && !strings.Contains(err.Error(), ": ext: ") {
		t.Errorf("error %q lacks the package prefix", err)
	}
	if img != "" {
		if _, ferr := testenv.RunErr("e2fsck", "-fn", img); ferr == nil {
			t.Errorf("oracle disagrees: e2fsck -fn accepts the image that gave %v", err)
		}
	}
}

func openData(t *testing.T, data []byte) (*FS, error) {
	t.Helper()
	return Open(bytes.NewReader(data), int64(len(data)))
}

// openDamaged opens the damaged image; Open itself must succeed.
func openDamaged(t *testing.T, p *patcher) (*FS, string) {
	t.Helper()
	img := p.write()
	fs, err := openData(t, p.data)
	if err != nil {
		t.Fatalf("Open of the damaged image: %v", err)
	}
	return fs, img
}

func TestCorruptSuperblock(t *testing.T) {
	needE2fs(t)
	img, _ := image(t, variantByName(t, "ext4-1k"))
	cases := []struct {
		name   string
		damage func(p *patcher)
		substr string
	}{
		{"checksum", func(p *patcher) { p.data[sbOffset+0x70] ^= 1 }, "checksum mismatch"},
		{"block size", func(p *patcher) { p.u32(sbOffset+0x18, 7); p.sealSB() }, "block size"},
		{"cluster size", func(p *patcher) { p.u32(sbOffset+0x1c, 2); p.sealSB() }, "fragment size"},
		{"first data block", func(p *patcher) { p.u32(sbOffset+0x14, 0); p.sealSB() }, "first data block"},
		{"blocks per group", func(p *patcher) { p.u32(sbOffset+0x20, 9000); p.u32(sbOffset+0x24, 9000); p.sealSB() }, "clusters per group"},
		{"tiny groups", func(p *patcher) { p.u32(sbOffset+0x20, 128); p.u32(sbOffset+0x24, 128); p.sealSB() }, "clusters per group outside 256"},
		{"inodes per group", func(p *patcher) { p.u32(sbOffset+0x28, 0); p.sealSB() }, "inodes per group"},
		{"inode count", func(p *patcher) { p.u32(sbOffset, p.fs.SB.InodesCount+1); p.sealSB() }, "inodes, but"},
		{"partial inode block", func(p *patcher) {
			ipg := p.fs.SB.InodesPerGroup
			p.u32(sbOffset, p.fs.SB.InodesCount/ipg*(ipg-1))
			p.u32(sbOffset+0x28, ipg-1)
			p.sealSB()
		}, "do not fill whole blocks"},
		{"inode size", func(p *patcher) { p.u16(sbOffset+0x58, 300); p.sealSB() }, "inode size"},
		{"desc size", func(p *patcher) { p.u16(sbOffset+0xfe, 48); p.sealSB() }, "descriptor size"},
		{"blocks beyond device", func(p *patcher) { p.u32(sbOffset+0x04, 1<<30); p.sealSB() }, "larger than the"},
		{"reserved gdt", func(p *patcher) { p.u16(sbOffset+0xce, 300); p.sealSB() }, "reserved"},
		{"first meta_bg", func(p *patcher) {
			p.u32(sbOffset+0x60, p.fs.SB.FeatureIncompat|IncompatMetaBG)
			p.u32(sbOffset+0x104, 1000)
			p.sealSB()
		}, "first meta_bg"},
		{"checksum type", func(p *patcher) { p.data[sbOffset+0x175] = 2; p.sealSB() }, "checksum type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPatcher(t, img)
			c.damage(p)
			_, err := openData(t, p.data)
			wantFormatError(t, err, sbOffset, c.substr, p.write())
		})
	}
	t.Run("magic", func(t *testing.T) {
		p := newPatcher(t, img)
		p.u16(sbOffset+0x38, 0x1234)
		if _, err := openData(t, p.data); !errors.Is(err, ErrNotExt) {
			t.Errorf("Open = %v, want ErrNotExt", err)
		}
	})
	t.Run("truncated device", func(t *testing.T) {
		p := newPatcher(t, img)
		if _, err := Open(bytes.NewReader(p.data), 1<<20); err == nil || !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open of the first MiB = %v, want a FormatError", err)
		}
		if _, err := Open(bytes.NewReader(p.data), 1500); !errors.Is(err, ErrNotExt) {
			t.Errorf("Open of 1500 bytes = %v, want ErrNotExt", err)
		}
	})
}

func TestCorruptDescriptors(t *testing.T) {
	needE2fs(t)
	for _, name := range []string{"ext4-1k", "ext4-nocsum-32bit"} { // crc32c, crc16
		img, _ := image(t, variantByName(t, name))
		t.Run(name+"/checksum", func(t *testing.T) {
			p := newPatcher(t, img)
			gd := p.fs.groupDescs[p.fs.groups-1]
			p.data[gd.Offset+0x0e] ^= 1 // free inodes count
			_, err := openData(t, p.data)
			wantFormatError(t, err, gd.Offset, "checksum mismatch", p.write())
		})
		t.Run(name+"/inode table outside", func(t *testing.T) {
			p := newPatcher(t, img)
			g := p.fs.groups - 1
			gd := p.fs.groupDescs[g]
			p.u32(gd.Offset+0x08, uint32(p.fs.blocks-1))
			p.sealDesc(g)
			_, err := openData(t, p.data)
			wantFormatError(t, err, gd.Offset, "inode table", p.write())
		})
	}
	t.Run("no flex_bg: bitmap outside its group", func(t *testing.T) {
		img, _ := image(t, variantByName(t, "ext4-1k-nocsum-noflex"))
		p := newPatcher(t, img)
		gd := p.fs.groupDescs[1]
		p.u32(gd.Offset, uint32(p.fs.groupDescs[2].BlockBitmap))
		_, err := openData(t, p.data)
		wantFormatError(t, err, gd.Offset, "block bitmap", p.write())
	})
}

func TestCorruptInodes(t *testing.T) {
	needE2fs(t)
	img, _ := image(t, variantByName(t, "ext4-1k"))
	t.Run("checksum", func(t *testing.T) {
		p := newPatcher(t, img)
		ino := p.lookup("/small/f1000")
		p.data[ino.Offset+0x18] ^= 1 // gid
		fs, dimg := openDamaged(t, p)
		_, err := fs.Lookup("/small/f1000")
		wantFormatError(t, err, ino.Offset, "checksum mismatch", dimg)
		if _, err := fs.Lookup("/small/f1023"); err != nil {
			t.Errorf("a neighbouring inode became unreadable: %v", err)
		}
	})
	t.Run("extra isize", func(t *testing.T) {
		p := newPatcher(t, img)
		ino := p.lookup("/small/f1000")
		p.u16(ino.Offset+iExtraOff, 250)
		p.sealInode(ino)
		fs, dimg := openDamaged(t, p)
		_, err := fs.Lookup("/small/f1000")
		wantFormatError(t, err, ino.Offset, "extra inode size", dimg)
	})
	t.Run("absurd inode numbers", func(t *testing.T) {
		fs := openImage(t, img)
		for _, n := range []uint32{0, fs.SB.InodesCount + 1, 1 << 31} {
			if _, err := fs.Inode(n); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Inode(%d) = %v, want ErrCorrupt", n, err)
			}
		}
		// An unused inode of an initialised table, and one in the unused tail.
		if _, err := fs.Inode(fs.SB.InodesCount - 1); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Inode(unused) = %v, want ErrCorrupt", err)
		}
	})
	t.Run("directory entry beyond the inodes", func(t *testing.T) {
		p := newPatcher(t, img)
		dir, off := p.dirBlockOff("/deep/a/b/c/d", 0)
		// "." at 0, ".." at 12, "file.txt" at 24.
		p.u32(off+24, p.fs.SB.InodesCount+5)
		p.sealDirBlock(dir, off)
		fs, dimg := openDamaged(t, p)
		_, err := fs.Lookup("/deep/a/b/c/d/file.txt")
		wantFormatError(t, err, off+24, "beyond the", dimg)
	})
	t.Run("directory entry names a reserved inode", func(t *testing.T) {
		p := newPatcher(t, img)
		dir, off := p.dirBlockOff("/deep/a/b/c/d", 0)
		p.u32(off+24, 5)
		p.sealDirBlock(dir, off)
		fs, dimg := openDamaged(t, p)
		_, err := fs.Lookup("/deep/a/b/c/d/file.txt")
		wantFormatError(t, err, dir.Offset, "reserved inode 5", dimg)
	})
}

func TestCorruptExtents(t *testing.T) {
	needE2fs(t)
	img, _ := image(t, variantByName(t, "ext4-1k"))
	root := func(p *patcher, path string) (*Inode, int64) {
		ino := p.lookup(path)
		return ino, ino.Offset + iBlockOff
	}
	// firstIndex returns the extent block the root's first index points to.
	firstIndex := func(p *patcher, ino *Inode) int64 {
		b := ino.iblock()
		return int64(binary.LittleEndian.Uint32(b[extHdrLen+4:])) * p.fs.bs
	}
	cases := []struct {
		name   string
		path   string
		damage func(p *patcher, ino *Inode, rootOff int64) int64 // returns the expected offset
		substr string
	}{
		{"magic unsealed", "/big", func(p *patcher, ino *Inode, r int64) int64 {
			p.u16(r, 0xf30b)
			return ino.Offset
		}, "checksum mismatch"},
		{"magic", "/big", func(p *patcher, ino *Inode, r int64) int64 {
			p.u16(r, 0xf30b)
			p.sealInode(ino)
			return r
		}, "magic"},
		{"depth", "/big", func(p *patcher, ino *Inode, r int64) int64 {
			p.u16(r+6, 6)
			p.sealInode(ino)
			return r
		}, "depth 6"},
		{"entries beyond max", "/big", func(p *patcher, ino *Inode, r int64) int64 {
			p.u16(r+2, 5)
			p.sealInode(ino)
			return r
		}, "entries"},
		{"extent outside the filesystem", "/big", func(p *patcher, ino *Inode, r int64) int64 {
			p.u32(r+extHdrLen+8, uint32(p.fs.blocks))
			p.sealInode(ino)
			return r + extHdrLen
		}, "outside the filesystem"},
		{"extent in the inode table", "/big", func(p *patcher, ino *Inode, r int64) int64 {
			p.u32(r+extHdrLen+8, uint32(p.fs.groupDescs[0].InodeTable))
			p.sealInode(ino)
			return r + extHdrLen
		}, "metadata"},
		{"zero-length extent", "/small/f4097", func(p *patcher, ino *Inode, r int64) int64 {
			p.u16(r+extHdrLen+4, 0)
			p.sealInode(ino)
			return r + extHdrLen
		}, "no blocks"},
		{"extent block checksum", "/frag", func(p *patcher, ino *Inode, r int64) int64 {
			off := firstIndex(p, ino)
			p.data[off+extHdrLen] ^= 1
			return off
		}, "checksum mismatch"},
		{"child depth", "/frag", func(p *patcher, ino *Inode, r int64) int64 {
			off := firstIndex(p, ino)
			p.u16(off+6, 0)
			p.sealExtentBlock(ino, off)
			return off
		}, "parent expects"},
		{"index loop", "/frag", func(p *patcher, ino *Inode, r int64) int64 {
			// The level-1 node's second entry points to its first leaf.
			off := firstIndex(p, ino)
			e0 := p.data[off+extHdrLen:]
			p.u32(off+extHdrLen+12+4, binary.LittleEndian.Uint32(e0[4:]))
			p.sealExtentBlock(ino, off)
			return off + extHdrLen + 12
		}, "reached twice"},
		{"index to itself", "/frag", func(p *patcher, ino *Inode, r int64) int64 {
			off := firstIndex(p, ino)
			p.u32(r+extHdrLen+4, uint32(off/p.fs.bs)) // root -> level-1 node, unchanged
			p.u32(off+extHdrLen+4, uint32(off/p.fs.bs))
			p.sealExtentBlock(ino, off)
			return off + extHdrLen
		}, "reached twice"},
		{"extents out of order", "/frag", func(p *patcher, ino *Inode, r int64) int64 {
			off := firstIndex(p, ino)
			leaf := int64(binary.LittleEndian.Uint32(p.data[off+extHdrLen+4:])) * p.fs.bs
			p.u32(leaf+extHdrLen+12, 0) // the second extent starts at file block 0
			p.sealExtentBlock(ino, leaf)
			return leaf + extHdrLen + 12
		}, "out of order"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPatcher(t, img)
			ino, r := root(p, c.path)
			off := c.damage(p, ino, r)
			fs, dimg := openDamaged(t, p)
			if c.name == "child depth" {
				// e2fsck 1.47 takes the depth from the root and ignores
				// a child's eh_depth; the kernel's __ext4_ext_check
				// ("unexpected eh_depth") rejects it, as this package does.
				dimg = ""
			}
			var err error
			if c.substr == "checksum mismatch" && off == ino.Offset {
				_, err = fs.Lookup(c.path)
			} else {
				var in *Inode
				if in, err = fs.Lookup(c.path); err == nil {
					_, err = fs.Extents(in)
				}
			}
			wantFormatError(t, err, off, c.substr, dimg)
		})
	}
}

func TestCorruptIndirect(t *testing.T) {
	needE2fs(t)
	img, _ := image(t, variantByName(t, "ext2-1k"))
	t.Run("pointer outside", func(t *testing.T) {
		p := newPatcher(t, img)
		ino := p.lookup("/big")
		p.u32(ino.Offset+iBlockOff+4*3, uint32(p.fs.blocks+10))
		fs, dimg := openDamaged(t, p)
		in, _ := fs.Lookup("/big")
		_, err := fs.Extents(in)
		wantFormatError(t, err, ino.Offset+iBlockOff+12, "outside", dimg)
	})
	t.Run("indirect block loop", func(t *testing.T) {
		p := newPatcher(t, img)
		ino := p.lookup("/big")
		dind := int64(binary.LittleEndian.Uint32(ino.iblock()[13*4:]))
		// The double indirect block's first pointer is the double
		// indirect block itself.
		p.u32(dind*p.fs.bs, uint32(dind))
		fs, dimg := openDamaged(t, p)
		in, _ := fs.Lookup("/big")
		_, err := fs.Extents(in)
		wantFormatError(t, err, dind*p.fs.bs, "reached twice", dimg)
	})
}

func TestCorruptDirectories(t *testing.T) {
	needE2fs(t)
	img, _ := image(t, variantByName(t, "ext4-1k"))
	cases := []struct {
		name   string
		dir    string
		damage func(p *patcher, dir *Inode, off int64) int64
		substr string
	}{
		{"checksum", "/deep/a/b/c/d", func(p *patcher, dir *Inode, off int64) int64 {
			p.data[off+24+8] ^= 1 // a name byte
			return off
		}, "checksum mismatch"},
		{"record overruns the block", "/deep/a/b/c/d", func(p *patcher, dir *Inode, off int64) int64 {
			p.u16(off+24+4, uint16(p.fs.bs))
			p.sealDirBlock(dir, off)
			return off + 24
		}, "overruns"},
		{"record length too small", "/deep/a/b/c/d", func(p *patcher, dir *Inode, off int64) int64 {
			p.u16(off+12+4, 8)
			p.sealDirBlock(dir, off)
			return off + 12
		}, "below 12"},
		{"record length unaligned", "/deep/a/b/c/d", func(p *patcher, dir *Inode, off int64) int64 {
			p.u16(off+12+4, 14)
			p.sealDirBlock(dir, off)
			return off + 12
		}, "multiple of 4"},
		{"name longer than the record", "/deep/a/b/c/d", func(p *patcher, dir *Inode, off int64) int64 {
			p.data[off+12+6] = 200
			p.sealDirBlock(dir, off)
			return off + 12
		}, "too small"},
		{"slash in a name", "/deep/a/b/c/d", func(p *patcher, dir *Inode, off int64) int64 {
			p.data[off+24+8] = '/'
			p.sealDirBlock(dir, off)
			return off + 24
		}, "invalid name"},
		{"missing tail", "/deep/a/b/c/d", func(p *patcher, dir *Inode, off int64) int64 {
			p.data[off+p.fs.bs-direntTail+7] = 0
			return off
		}, "no checksum tail"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPatcher(t, img)
			dir, off := p.dirBlockOff(c.dir, 0)
			want := c.damage(p, dir, off)
			fs, dimg := openDamaged(t, p)
			_, err := fs.ReadDir(c.dir)
			wantFormatError(t, err, want, c.substr, dimg)
		})
	}
	t.Run("htree root checksum", func(t *testing.T) {
		p := newPatcher(t, img)
		_, off := p.dirBlockOff("/htree", 0)
		p.data[off+0x20+8] ^= 1 // the first dx_entry's block
		fs, dimg := openDamaged(t, p)
		_, err := fs.ReadDir("/htree")
		wantFormatError(t, err, off, "htree checksum", dimg)
	})
	t.Run("directory hole", func(t *testing.T) {
		p := newPatcher(t, img)
		dir := p.lookup("/deep")
		p.u32(dir.Offset+4, uint32(3*p.fs.bs)) // i_size: three blocks, one mapped
		p.sealInode(dir)
		fs, dimg := openDamaged(t, p)
		_, err := fs.ReadDir("/deep")
		wantFormatError(t, err, dir.Offset, "not mapped", dimg)
	})
	t.Run("directory size not whole blocks", func(t *testing.T) {
		p := newPatcher(t, img)
		dir := p.lookup("/deep")
		p.u32(dir.Offset+4, uint32(p.fs.bs+1))
		p.sealInode(dir)
		fs, dimg := openDamaged(t, p)
		_, err := fs.ReadDir("/deep")
		wantFormatError(t, err, dir.Offset, "multiple of", dimg)
	})
}

func TestCorruptInline(t *testing.T) {
	needE2fs(t)
	img, tr := image(t, variantByName(t, "ext4-inline"))
	t.Run("size beyond the inline data", func(t *testing.T) {
		// Tolerated by e2fsck; the kernel reads zeros past the stored bytes.
		p := newPatcher(t, img)
		ino := p.lookup("/small/f100")
		p.u32(ino.Offset+4, 200)
		p.sealInode(ino)
		fs, dimg := openDamaged(t, p)
		if err := fsckClean(dimg); err != nil {
			t.Skipf("e2fsck no longer accepts it: %v", err)
		}
		got, err := fs.ReadFile("/small/f100")
		if want := append(pseudoRandom(7, 100), make([]byte, 100)...); err != nil || !bytes.Equal(got[:100], tr.byPth["/small/f100"].data) || !bytes.Equal(got[100:], want[100:]) {
			t.Errorf("ReadFile = %d bytes, %v; want the 100 bytes and 100 zeros", len(got), err)
		}
	})
	t.Run("no system.data attribute", func(t *testing.T) {
		p := newPatcher(t, img)
		ino := p.lookup("/small/f100")
		ents := ino.Offset + goodOldSize + int64(ino.ExtraIsize) + 4
		p.data[ents+16+3] = '0' // "data" -> "dat0"
		p.sealInode(ino)
		fs, dimg := openDamaged(t, p)
		_, err := fs.ReadFile("/small/f100")
		wantFormatError(t, err, ino.Offset, "system.data", dimg)
	})
	t.Run("attribute value outside the inode", func(t *testing.T) {
		p := newPatcher(t, img)
		ino := p.lookup("/small/f100")
		ents := ino.Offset + goodOldSize + int64(ino.ExtraIsize) + 4
		p.u16(ents+2, 2000) // e_value_offs of the first entry (system.data)
		p.sealInode(ino)
		fs, dimg := openDamaged(t, p)
		_, err := fs.ReadFile("/small/f100")
		wantFormatError(t, err, ents, "runs past the inode", dimg)
	})
	t.Run("inline directory record overrun", func(t *testing.T) {
		p := newPatcher(t, img)
		dir := p.lookup("/deep/a")
		p.u16(dir.Offset+iBlockOff+inlineDotDot+4, 200)
		p.sealInode(dir)
		fs, dimg := openDamaged(t, p)
		_, err := fs.ReadDir("/deep/a")
		wantFormatError(t, err, dir.Offset+iBlockOff+inlineDotDot, "overruns", dimg)
	})
}

func TestCorruptFreeSpace(t *testing.T) {
	needE2fs(t)
	t.Run("bitmap checksum", func(t *testing.T) {
		img, _ := image(t, variantByName(t, "ext4-1k"))
		p := newPatcher(t, img)
		gd := p.fs.groupDescs[1]
		p.data[int64(gd.BlockBitmap)*p.fs.bs+500] ^= 1
		fs, dimg := openDamaged(t, p)
		_, err := fs.FreeSpace()
		wantFormatError(t, err, int64(gd.BlockBitmap)*p.fs.bs, "checksum mismatch", dimg)
	})
	img, _ := image(t, variantByName(t, "ext2-1k")) // bitmaps without checksums
	t.Run("inode table marked free", func(t *testing.T) {
		p := newPatcher(t, img)
		gd := p.fs.groupDescs[2]
		first := p.fs.groupFirst(2)
		bit := gd.InodeTable + 3 - first
		p.data[int64(gd.BlockBitmap)*p.fs.bs+int64(bit/8)] &^= 1 << (bit % 8)
		fs, dimg := openDamaged(t, p)
		_, err := fs.FreeSpace()
		wantFormatError(t, err, int64(gd.BlockBitmap)*p.fs.bs, "marked free", dimg)
	})
	t.Run("free count", func(t *testing.T) {
		p := newPatcher(t, img)
		gd := p.fs.groupDescs[2]
		p.u16(gd.Offset+0x0c, uint16(gd.FreeBlocksCount+1))
		fs, dimg := openDamaged(t, p)
		_, err := fs.FreeSpace()
		wantFormatError(t, err, gd.Offset, "descriptor says", dimg)
	})
}

// TestSymlinkChain resolves a chain of MaxSymlinks links and refuses one
// link more, as Linux does.
func TestSymlinkChain(t *testing.T) {
	needE2fs(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "target"), []byte("end of the chain\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prev := "target"
	for i := range MaxSymlinks + 1 {
		name := "l" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		if err := os.Symlink(prev, filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
		prev = name
	}
	img := filepath.Join(t.TempDir(), "chain.img")
	testenv.Run(t, "mkfs.ext4", "-q", "-F", "-d", src, img, "8M")
	fs := openImage(t, img)
	if got, err := fs.ReadFile("/lbn"); err != nil || string(got) != "end of the chain\n" { // 40 links
		t.Errorf("40 links: %q, %v", got, err)
	}
	if _, err := fs.ReadFile("/lbo"); !errors.Is(err, ErrSymlinkLoop) { // 41 links
		t.Errorf("41 links: %v, want ErrSymlinkLoop", err)
	}
	var pe *iofs.PathError
	if _, err := fs.LookupFollow("/lbo"); !errors.As(err, &pe) || pe.Path != "/lbo" {
		t.Errorf("error %v is not a *fs.PathError for /lbo", err)
	}
}
