package ext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/testenv"
)

// TestOracleUnusedInodeTables compares UnusedInodeTables with dumpe2fs's inode tables and unused inode
// counts on every variant, then fills the listed blocks of a copy with pseudo-random bytes: e2fsck -fn
// must still find the filesystem clean (nothing reads them), and must not when the block before a
// group's unused part, which holds its last used inode, is filled instead (the test can fail).
func TestOracleUnusedInodeTables(t *testing.T) {
	needE2fs(t)
	forEachVariant(t, func(t *testing.T, v variant) {
		img, _ := image(t, v)
		fs := openImage(t, img)
		got, err := fs.UnusedInodeTables()
		if err != nil {
			t.Fatal(err)
		}
		want := dumpe2fsUnusedItable(t, img)
		if !slices.Equal(got, want) {
			t.Fatalf("UnusedInodeTables() = %v, dumpe2fs gives %v", got, want)
		}
		if (v.wantCsum || v.wantGdtCsum) != (len(got) > 0) {
			t.Fatalf("%d ranges with checksummed descriptors %v", len(got), v.wantCsum || v.wantGdtCsum)
		}
		if len(got) == 0 {
			return
		}
		data := readImage(t, img)
		for i, r := range got {
			copy(data[r.Off:r.End()], pseudoRandom(uint64(i), int(r.Len)))
		}
		filled := filepath.Join(t.TempDir(), "filled.img")
		if err := writeSparse(filled, data); err != nil {
			t.Fatal(err)
		}
		if err := fsckClean(filled); err != nil {
			t.Fatalf("e2fsck -fn with the unused inode tables filled: %v", err)
		}
		// Group 0's last used inode-table block holds an inode in use (mke2fs and e2fsck put the
		// watermark right after the last one): filling it must be noticed.
		gd := fs.groupDescs[0]
		perBlock := uint64(fs.bs) / uint64(fs.inodeSize)
		last := gd.InodeTable + (uint64(fs.SB.InodesPerGroup)-uint64(gd.ItableUnused)+perBlock-1)/perBlock - 1
		data = readImage(t, img)
		copy(data[int64(last)*fs.bs:], pseudoRandom(99, int(fs.bs)))
		if err := writeSparse(filled, data); err != nil {
			t.Fatal(err)
		}
		if fsckClean(filled) == nil {
			t.Fatalf("e2fsck -fn finds the image clean with inode-table block %d, in use, filled", last)
		}
	})
}

// dumpe2fsUnusedItable computes the unused inode-table blocks from dumpe2fs's "Inode table at A-B" and
// "N unused inodes" lines (printed only with checksummed descriptors), its inode size and inodes per
// group, as the kernel's lazy init counts them.
func dumpe2fsUnusedItable(t *testing.T, img string) []extent.Range {
	t.Helper()
	out, err := exec.Command("dumpe2fs", img).Output()
	if err != nil {
		t.Fatalf("dumpe2fs: %v", err)
	}
	num := func(re, s string) (int64, bool) {
		m := regexp.MustCompile(re).FindStringSubmatch(s)
		if m == nil {
			return 0, false
		}
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			t.Fatalf("dumpe2fs: %q: %v", m[0], err)
		}
		return n, true
	}
	text := string(out)
	bs, ok1 := num(`(?m)^Block size:\s+(\d+)`, text)
	isz, ok2 := num(`(?m)^Inode size:\s+(\d+)`, text)
	ipg, ok3 := num(`(?m)^Inodes per group:\s+(\d+)`, text)
	if !ok2 {
		isz = 128 // revision 0 has fixed 128-byte inodes, and dumpe2fs prints no size
	}
	if !ok1 || !ok3 {
		t.Fatal("dumpe2fs: no block size or inodes per group")
	}
	perBlock := bs / isz
	var rs []extent.Range
	for _, g := range regexp.MustCompile(`\nGroup \d+: `).Split(text, -1)[1:] {
		a, ok1 := num(`Inode table at (\d+)-`, g)
		b, ok2 := num(`Inode table at \d+-(\d+)`, g)
		if !ok1 || !ok2 {
			t.Fatalf("dumpe2fs group without an inode table: %q", g)
		}
		unused, ok := num(`(\d+) unused inodes`, g)
		if !ok {
			continue
		}
		first := a + (ipg-unused+perBlock-1)/perBlock
		if first <= b {
			rs = append(rs, extent.Range{Off: first * bs, Len: (b + 1 - first) * bs})
		}
	}
	return extent.Merge(rs)
}

// TestUnusedInodeTablesKernel fills a mounted copy's unused inode-table blocks with pseudo-random bytes
// (mounted with noinit_itable, so the kernel's lazy init does not zero them first), then has the kernel
// create 3000 files, which takes inodes past several groups' watermarks: after unmounting, e2fsck -fn
// finds the filesystem clean and every file holds what was written.
func TestUnusedInodeTablesKernel(t *testing.T) {
	needE2fs(t)
	testenv.NeedRoot(t)
	testenv.Need(t, "mount", "umount")
	base, _ := image(t, variantByName(t, "ext4-4k"))
	img := copyImage(t, base)
	rs, err := openImage(t, img).UnusedInodeTables()
	if err != nil || len(rs) == 0 {
		t.Fatalf("UnusedInodeTables() = %v, %v", rs, err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if _, err := f.WriteAt(pseudoRandom(uint64(i), int(r.Len)), r.Off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	mnt := t.TempDir()
	mountExt(t, img, mnt, "noinit_itable")
	const n = 3000
	for i := range n {
		dir := filepath.Join(mnt, fmt.Sprintf("d%02d", i%30)) // new directories spread over groups
		os.Mkdir(dir, 0o755)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), []byte(strconv.Itoa(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := testenv.RunErr("umount", mnt); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}
	if err := fsckClean(img); err != nil {
		t.Fatalf("e2fsck -fn after the kernel allocated inodes over filled tables: %v", err)
	}
	before, after := openImage(t, base), openImage(t, img)
	moved := 0
	for g := range after.Groups() {
		if after.groupDescs[g].ItableUnused < before.groupDescs[g].ItableUnused {
			moved++
		}
	}
	if moved < 2 {
		t.Fatalf("the files moved the watermark of %d groups, want at least 2", moved)
	}
	for _, i := range []int{0, 1, 29, 30, 1499, n - 1} {
		p := fmt.Sprintf("/d%02d/f%d", i%30, i)
		got, err := after.ReadFile(p)
		if err != nil || string(got) != strconv.Itoa(i) {
			t.Fatalf("%s holds %q, %v", p, got, err)
		}
	}
}

// TestUnusedInodeTablesCorrupt damages the watermark's evidence, one way at a time, with checksums
// re-sealed: each is a *FormatError naming the structure, and e2fsck -fn rejects the image too.
func TestUnusedInodeTablesCorrupt(t *testing.T) {
	needE2fs(t)
	img, _ := image(t, variantByName(t, "ext4-4k"))
	base := openImage(t, img)
	gd0 := base.groupDescs[0]
	ipg := base.SB.InodesPerGroup
	// A group with an inode bitmap and unused inodes (in this image group 0 is full).
	g := uint32(0)
	for g < base.groups && (base.groupDescs[g].ItableUnused < 8 || base.groupDescs[g].Flags&BGInodeUninit != 0) {
		g++
	}
	if g == base.groups {
		t.Fatal("no group with an inode bitmap and unused inodes")
	}
	gd := base.groupDescs[g]
	bmOff := int64(gd.InodeBitmap) * base.bs
	for _, c := range []struct {
		name   string
		damage func(p *patcher)
		off    int64
		substr string
	}{
		{"inode past the watermark marked in use", func(p *patcher) {
			i := ipg - gd.ItableUnused + 5
			p.data[bmOff+int64(i/8)] |= 1 << (i % 8)
			p.sealInodeBitmap(g)
			p.sealDesc(g)
		}, bmOff, "past the group's"},
		{"free inodes below the unused ones", func(p *patcher) {
			p.u16(gd.Offset+0x0e, uint16(gd.ItableUnused-1))
			p.sealDesc(g)
		}, gd.Offset, "fewer than its"},
		{"reserved inodes past the watermark", func(p *patcher) {
			p.u16(gd0.Offset+0x1c, uint16(ipg-(base.firstIno-2))) // inode first_ino-1 left out
			p.sealDesc(0)
		}, gd0.Offset, "reserved inodes"},
		{"inode bitmap checksum", func(p *patcher) {
			p.data[bmOff+int64(ipg/8)-1] ^= 0x80
		}, bmOff, "checksum mismatch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPatcher(t, img)
			c.damage(p)
			path := p.write()
			_, err := openImage(t, path).UnusedInodeTables()
			wantFormatError(t, err, c.off, c.substr, path)
		})
	}
}

// sealInodeBitmap recomputes the inode bitmap checksum of group g in its descriptor (metadata_csum),
// then the descriptor's own checksum must be resealed by the caller.
func (p *patcher) sealInodeBitmap(g uint32) {
	gd := p.fs.groupDescs[g]
	bm := p.data[int64(gd.InodeBitmap)*p.fs.bs:][:p.fs.SB.InodesPerGroup/8]
	c := crc32c(p.fs.csumSeed, bm)
	p.u16(gd.Offset+0x1a, uint16(c))
	if p.fs.descSize >= bgInodeBitmapCsumHiEnd {
		p.u16(gd.Offset+0x3a, uint16(c>>16))
	}
}

// TestUnusedInodeTablesNotClean: like FreeSpace, nothing is listed while the journal needs recovery.
func TestUnusedInodeTablesNotClean(t *testing.T) {
	needE2fs(t)
	img, _ := image(t, variantByName(t, "ext4-4k"))
	p := newPatcher(t, img)
	sb := p.data[sbOffset : sbOffset+sbSize]
	binary.LittleEndian.PutUint32(sb[0x60:], binary.LittleEndian.Uint32(sb[0x60:])|IncompatRecover)
	p.sealSB()
	_, err := openImage(t, p.write()).UnusedInodeTables()
	if !errors.Is(err, ErrNeedsRecovery) {
		t.Fatalf("UnusedInodeTables with needs_recovery: %v, want ErrNeedsRecovery", err)
	}
}

// countingReader counts the reads that reach it.
type countingReader struct {
	r     io.ReaderAt
	reads int
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.reads++
	return c.r.ReadAt(p, off)
}

// TestBitmapReadsBatched: FreeSpace and UnusedInodeTables read the bitmaps of a flex group's groups,
// which mke2fs lays side by side, in one read per run rather than one per group (each read is a
// request when the disk is a page blob). The kernel spreads 256 new top-level directories, each with a
// file, over the 128 groups (Orlov), so most groups have both bitmaps written and unused inodes.
func TestBitmapReadsBatched(t *testing.T) {
	needE2fs(t)
	testenv.NeedRoot(t)
	testenv.Need(t, "mount", "umount")
	img := filepath.Join(t.TempDir(), "fs.img")
	// A fixed UUID and hash seed: the kernel places top-level directories by their names' hash.
	testenv.Run(t, "mkfs.ext4", "-q", "-F", "-b", "1024", "-g", "1024", "-N", "16384", "-U", testUUID,
		"-E", "hash_seed="+testHashSeed, img, "128M")
	mnt := t.TempDir()
	mountExt(t, img, mnt)
	for i := range 256 {
		d := filepath.Join(mnt, fmt.Sprintf("d%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), make([]byte, 3000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// 100 MiB of data: blocks in nearly every group.
	if err := os.WriteFile(filepath.Join(mnt, "big"), make([]byte, 100<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := testenv.RunErr("umount", mnt); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}
	f, size := testenv.Open(t, img)
	fs := openImage(t, img)
	// The groups whose bitmap each call reads, and the flex groups (16 groups, bitmaps side by side)
	// they fall in.
	blockBitmaps, inodeBitmaps := map[uint32]bool{}, map[uint32]bool{}
	blockFlex, inodeFlex := map[uint32]bool{}, map[uint32]bool{}
	for g := range fs.groups {
		gd := fs.groupDescs[g]
		if gd.Flags&BGBlockUninit == 0 {
			blockBitmaps[g], blockFlex[g/16] = true, true
		}
		if gd.Flags&BGInodeUninit == 0 && gd.ItableUnused > 0 {
			inodeBitmaps[g], inodeFlex[g/16] = true, true
		}
	}
	for _, c := range []struct {
		name       string
		need, flex int
		run        func(*FS) error
	}{
		{"FreeSpace", len(blockBitmaps), len(blockFlex), func(fs *FS) error { _, err := fs.FreeSpace(); return err }},
		{"UnusedInodeTables", len(inodeBitmaps), len(inodeFlex), func(fs *FS) error { _, err := fs.UnusedInodeTables(); return err }},
	} {
		cr := &countingReader{r: f}
		fs, err := Open(cr, size)
		if err != nil {
			t.Fatal(err)
		}
		before := cr.reads
		if err := c.run(fs); err != nil {
			t.Fatal(err)
		}
		reads := cr.reads - before
		t.Logf("%s: %d reads for the bitmaps of %d groups in %d flex groups", c.name, reads, c.need, c.flex)
		if c.need < 2*c.flex {
			t.Fatalf("%s: %d groups in %d flex groups have a bitmap to read: the fixture is not what the test means", c.name, c.need, c.flex)
		}
		if reads > c.flex {
			t.Errorf("%s made %d reads for bitmaps in %d flex groups", c.name, reads, c.flex)
		}
	}
}
