package ext

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"sort"
	"sync"
	"testing"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/fuzzimage"
)

// FuzzOpen opens mutated images, walks their tree, reads every file, lists
// the free space and plans a rewrite of every regular file, within bounds.
// The images are the committed bases testdata/fuzz-*.img.gz (see
// testdata/mkfuzzbases.sh), so a crasher saved in testdata/fuzz reproduces
// anywhere, without e2fsprogs. An input is:
//
//	in[0]   bits 0-6 pick the base, bit 7 turns checksum verification off
//	        (so mutations reach the parsers behind the checksums);
//	in[1:]  up to 16 patches of 1..16 bytes, each at a 16-bit offset from
//	        one of the base's structures (superblock, descriptors, bitmap,
//	        inode table, inodes, extent, indirect and directory blocks,
//	        the journal superblock, an in-inode attribute area).

type fuzzBase struct {
	name    string
	data    []byte
	targets []int64
}

var (
	fuzzOnce  sync.Once
	fuzzBases []*fuzzBase
	fuzzErr   error
)

var fuzzBaseNames = []string{"fuzz-ext4", "fuzz-ext2", "fuzz-inline"}

func loadFuzzBases(t testing.TB) []*fuzzBase {
	t.Helper()
	fuzzOnce.Do(func() {
		for _, name := range fuzzBaseNames {
			data, err := gunzipFile("testdata/" + name + ".img.gz")
			if err != nil {
				fuzzErr = err
				return
			}
			targets, err := structureOffsets(data)
			if err != nil {
				fuzzErr = err
				return
			}
			fuzzBases = append(fuzzBases, &fuzzBase{name: name, data: data, targets: targets})
		}
	})
	if fuzzErr != nil {
		t.Fatalf("fuzz bases (rebuild with testdata/mkfuzzbases.sh): %v", fuzzErr)
	}
	return fuzzBases
}

func gunzipFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// structureOffsets lists the offsets patches are relative to.
func structureOffsets(data []byte) ([]int64, error) {
	fs, err := Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	gd := fs.groupDescs[0]
	out := []int64{sbOffset, gd.Offset, int64(gd.BlockBitmap) * fs.bs, int64(gd.InodeTable) * fs.bs}
	add := func(ino *Inode) {
		out = append(out, ino.Offset, ino.Offset+goodOldSize+int64(ino.ExtraIsize))
		exts, tree, err := fs.mapping(ino)
		if err != nil {
			return
		}
		for _, r := range tree {
			out = append(out, int64(r.start)*fs.bs)
		}
		for i, e := range exts {
			if i < 2 {
				out = append(out, e.DiskOff)
			}
		}
	}
	for _, p := range []string{"/", "/dir", "/frag", "/file", "/slow", "/big", "/mid", "/idir", "/ilink", "/sub/deeper"} {
		if ino, err := fs.Lookup(p); err == nil {
			add(ino)
		}
	}
	if ino, err := fs.Inode(fs.SB.JournalInum); err == nil && fs.SB.JournalInum != 0 {
		add(ino)
	}
	return out, nil
}

// Walk bounds per input: directories visited, entries looked up (each
// Lookup walks its directories from the root), files read, bytes read.
const (
	fuzzMaxDirs    = 32
	fuzzMaxEntries = 256
	fuzzMaxFiles   = 64
	fuzzMaxBytes   = 4 << 20
)

// exercise runs the read and plan API on fs and checks what must hold
// whatever the image holds: errors are the package's, results stay inside
// the device, ReadFile matches the inode's size, a rewrite touches only the
// file's blocks and inode.
func exercise(t *testing.T, fs *FS, img *fuzzimage.Image, size int64) {
	_ = fs.UUID()
	_ = fs.Label()
	known := func(err error, what string) {
		if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupported) || errors.Is(err, ErrCannotEdit) ||
			errors.Is(err, ErrNotDir) || errors.Is(err, iofs.ErrNotExist) || errors.Is(err, ErrSymlinkLoop) || errors.Is(err, ErrOutsideFS) {
			return
		}
		t.Fatalf("%s: unexpected error %v", what, err)
	}
	werr := fs.Writable()
	known(werr, "Writable")
	rs, err := fs.FreeSpace()
	known(err, "FreeSpace")
	if (err == nil) != (werr == nil) && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("FreeSpace error %v, Writable %v", err, werr)
	}
	for i, r := range rs {
		if r.Off < 0 || r.Len <= 0 || r.Off+r.Len > size || (i > 0 && r.Off <= rs[i-1].End()) {
			t.Fatalf("FreeSpace range %d %+v invalid", i, r)
		}
		if overlapsRuns(fs.system, uint64(r.Off/fs.bs), uint64(r.Len/fs.bs)) || overlapsRuns(fs.journal, uint64(r.Off/fs.bs), uint64(r.Len/fs.bs)) {
			t.Fatalf("FreeSpace range %+v overlaps metadata or the journal", r)
		}
	}
	// Unused inode tables: whole blocks of inode tables (the system zone), never the journal's, and
	// never holding an inode the walk below reads.
	its, err := fs.UnusedInodeTables()
	known(err, "UnusedInodeTables")
	if err == nil && werr != nil {
		t.Fatalf("UnusedInodeTables listed %d ranges while Writable says %v", len(its), werr)
	}
	for i, r := range its {
		blk, n := uint64(r.Off/fs.bs), uint64(r.Len/fs.bs)
		if r.Off < 0 || r.Len <= 0 || r.Off%fs.bs != 0 || r.Len%fs.bs != 0 || r.End() > size || (i > 0 && r.Off <= its[i-1].End()) {
			t.Fatalf("UnusedInodeTables range %d %+v invalid", i, r)
		}
		if !insideRuns(fs.system, blk, n) || overlapsRuns(fs.journal, blk, n) {
			t.Fatalf("UnusedInodeTables range %+v outside the system zone or in the journal", r)
		}
	}
	checkInode := func(ino *Inode) {
		if extent.Overlaps(its, ino.Offset, int64(fs.inodeSize)) {
			t.Fatalf("inode %d at %d, read, lies in an unused inode table %v", ino.Ino, ino.Offset, its)
		}
	}
	dirs, entries, files, budget := 0, 0, 0, int64(fuzzMaxBytes)
	seen := map[uint32]bool{}
	queue := []string{"/"}
	for len(queue) > 0 && dirs < fuzzMaxDirs {
		dir := queue[0]
		queue = queue[1:]
		dirs++
		ents, err := fs.ReadDir(dir)
		known(err, "ReadDir")
		for _, e := range ents {
			if entries++; entries > fuzzMaxEntries {
				break
			}
			p := path.Join(dir, e.Name)
			ino, err := fs.Lookup(p)
			known(err, "Lookup")
			if err != nil {
				continue
			}
			checkInode(ino)
			switch {
			case ino.IsDir():
				if !seen[ino.Ino] {
					seen[ino.Ino] = true
					queue = append(queue, p)
				}
			case ino.IsSymlink():
				_, err := fs.Readlink(p)
				known(err, "Readlink")
				_, err = fs.LookupFollow(p)
				known(err, "LookupFollow")
			case ino.IsRegular():
				if files++; files > fuzzMaxFiles || ino.Size > budget {
					continue
				}
				exerciseFile(t, fs, img, ino, size, &budget, known)
			}
		}
	}
}

func exerciseFile(t *testing.T, fs *FS, img *fuzzimage.Image, ino *Inode, size int64, budget *int64, known func(error, string)) {
	exts, err := fs.Extents(ino)
	known(err, "Extents")
	if !sort.SliceIsSorted(exts, func(i, j int) bool { return exts[i].FileOff < exts[j].FileOff }) {
		t.Fatal("extents not sorted")
	}
	for i, e := range exts {
		if e.Len <= 0 || e.DiskOff < 0 || e.DiskOff+e.Len > size || (i > 0 && e.FileOff < exts[i-1].FileOff+exts[i-1].Len) {
			t.Fatalf("extent %d %+v invalid", i, e)
		}
	}
	sr, err := fs.FileReader(ino)
	known(err, "FileReader")
	if err != nil {
		return
	}
	data := make([]byte, ino.Size)
	n, err := io.ReadFull(sr, data)
	known(err, "read")
	*budget -= int64(n)
	if err != nil {
		return
	}
	half := data[:len(data)/2]
	ws, err := fs.RewriteInode(ino, half, nil)
	known(err, "RewriteInode")
	if err != nil {
		return
	}
	for _, w := range ws {
		if w.Offset < 0 || w.Offset+int64(len(w.Data)) > size {
			t.Fatalf("write %d+%d outside the %d-byte device", w.Offset, len(w.Data), size)
		}
		if w.Offset == ino.Offset && len(w.Data) == fs.inodeSize {
			continue
		}
		inside := false
		for _, e := range exts {
			if !e.Unwritten && w.Offset >= e.DiskOff && w.Offset+int64(len(w.Data)) <= e.DiskOff+e.Len {
				inside = true
			}
		}
		if !inside {
			t.Fatalf("inode %d: write %d+%d outside its data blocks", ino.Ino, w.Offset, len(w.Data))
		}
		if blk, n := uint64(w.Offset/fs.bs), uint64(int64(len(w.Data))/fs.bs); overlapsRuns(fs.system, blk, n) || overlapsRuns(fs.journal, blk, n) {
			t.Fatalf("inode %d: write %d+%d hits metadata or the journal", ino.Ino, w.Offset, len(w.Data))
		}
	}
	// Applied, the plan gives a file that reads back as the new content.
	patched := &fuzzimage.Image{Base: img.Base, Patches: append(append([]fuzzimage.Patch(nil), img.Patches...), toPatches(ws)...)}
	fs2, err := open(patched, size, fs.noCRC)
	if err != nil {
		t.Fatalf("reopening after the rewrite of inode %d: %v", ino.Ino, err)
	}
	ino2, err := fs2.Inode(ino.Ino)
	if err != nil {
		t.Fatalf("inode %d after its rewrite: %v", ino.Ino, err)
	}
	sr2, err := fs2.FileReader(ino2)
	if err != nil {
		t.Fatalf("inode %d after its rewrite: %v", ino.Ino, err)
	}
	got := make([]byte, ino2.Size)
	if _, err := io.ReadFull(sr2, got); err != nil || !bytes.Equal(got, half) {
		t.Fatalf("inode %d reads %d bytes after its rewrite (%v), want the %d written", ino.Ino, len(got), err, len(half))
	}
}

func toPatches(ws []Write) []fuzzimage.Patch {
	var ps []fuzzimage.Patch
	for _, w := range ws {
		ps = append(ps, fuzzimage.Patch{Off: w.Offset, Data: w.Data})
	}
	return ps
}

func fuzzSeeds(f *testing.F) {
	for i := range fuzzBaseNames {
		f.Add([]byte{byte(i)})
		f.Add([]byte{byte(i) | 0x80})
	}
	f.Add([]byte{0x80, 0, 0, 0x18, 0, 7})                                            // s_log_block_size
	f.Add([]byte{0x80, 0, 0, 0x60, 3, 0xff, 0xff, 0xff, 0xff})                       // incompat bits
	f.Add([]byte{0x80, 1, 0, 0x08, 3, 0, 0, 0, 0})                                   // inode table of group 0
	f.Add([]byte{0x80, 4, 0, 0x2a, 1, 0xff, 0xff})                                   // root's extent entries
	f.Add([]byte{0x80, 6, 0, 0x28, 1, 0x0a, 0xf3})                                   // /dir's i_block
	f.Add([]byte{0x80, 8, 0, 0, 3, 0, 0, 0, 0})                                      // a directory block
	f.Add([]byte{0x81, 8, 0, 4, 1, 0x00, 0x04})                                      // ext2: rec_len
	f.Add([]byte{0x81, 12, 0, 0, 3, 1, 0, 0, 0})                                     // ext2: an indirect pointer
	f.Add([]byte{0x82, 9, 0, 2, 1, 0xff, 0x00})                                      // inline: an attribute's value offset
	f.Add([]byte{0x80, 2, 0, 0, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // block bitmap
}

func FuzzOpen(f *testing.F) {
	fuzzSeeds(f)
	bases := loadFuzzBases(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		base := bases[int(in[0]&0x7f)%len(bases)]
		size := int64(len(base.data))
		img := &fuzzimage.Image{Base: base.data, Patches: fuzzimage.Decode(in[1:], base.targets, size)}
		fs, err := open(img, size, in[0]&0x80 != 0)
		if err != nil {
			if !errors.Is(err, ErrNotExt) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Open: %v", err)
			}
			return
		}
		exercise(t, fs, img, size)
	})
}

// TestFuzzBases checks the committed bases are what mkfuzzbases.sh says
// and still pass exercise unchanged.
func TestFuzzBases(t *testing.T) {
	for _, b := range loadFuzzBases(t) {
		fs, err := Open(bytes.NewReader(b.data), int64(len(b.data)))
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		if err := fs.Writable(); err != nil {
			t.Errorf("%s: %v", b.name, err)
		}
		exercise(t, fs, &fuzzimage.Image{Base: b.data}, int64(len(b.data)))
		if got, err := fs.ReadFile("/sub/deeper/file"); err != nil || string(got) != "nested\n" {
			t.Errorf("%s: /sub/deeper/file = %q, %v", b.name, got, err)
		}
		if got, err := fs.ReadFile("/slow"); err != nil || string(got) != "nested\n" {
			t.Errorf("%s: /slow = %q, %v", b.name, got, err)
		}
		if len(b.targets) < 12 {
			t.Errorf("%s: only %d patch targets", b.name, len(b.targets))
		}
	}
}

// insideRuns reports whether [start, start+n) lies within the sorted, merged runs rs.
func insideRuns(rs []blockRun, start, n uint64) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].start+rs[i].n > start })
	return i < len(rs) && rs[i].start <= start && start+n <= rs[i].start+rs[i].n
}
