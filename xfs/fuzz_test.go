package xfs

import (
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/luksconv/luksconv/internal/fuzzimage"
)

// The fuzz targets patch real mkfs.xfs images at offsets relative to their
// metadata (superblock, AGF, AGI, inodes, directory, btree and log blocks)
// instead of fuzzing whole multi-megabyte images. A flag byte turns CRC
// checks off so mutations reach the parsers behind them.

type fuzzBase struct {
	data    []byte
	targets []int64 // metadata offsets patches are relative to
	err     error
}

var (
	fuzzOnce  sync.Once
	fuzzBases []*fuzzBase
)

// loadFuzzBases builds a v5 and a v4 image of the test tree and lists their
// metadata offsets.
func loadFuzzBases(t testing.TB) []*fuzzBase {
	fuzzOnce.Do(func() {
		for _, opts := range [][]string{nil, variants[2].opts} {
			img := mkfsImage(t, "48m", opts...)
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			fuzzBases = append(fuzzBases, &fuzzBase{data: data, targets: metadataOffsets(t, data)})
		}
	})
	if len(fuzzBases) == 0 {
		t.Skip("SKIP: fuzz base images could not be built")
	}
	return fuzzBases
}

func metadataOffsets(t testing.TB, data []byte) []int64 {
	fs, err := Open(&fuzzimage.Image{Base: data}, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	ss := int64(fs.SB.SectSize)
	out := []int64{0, ss, 2 * ss, 3 * ss} // sb, AGF, AGI, AGFL of AG 0
	if agf, err := fs.ReadAGF(0); err == nil {
		out = append(out, fs.agbnoToOffset(0, uint64(agf.Roots[0])))
	}
	if off, ok := fs.fsbToOffset(fs.SB.LogStart, 1); ok {
		out = append(out, off)
	}
	for _, p := range []string{"/", "/few", "/blockdir", "/leafdir", "/nodedir", "/files/f1048577", "/files/f1", "/links/short", "/links/dirlink", "/links/long"} {
		ino, err := fs.Lookup(p)
		if err != nil {
			continue
		}
		out = append(out, ino.Offset)
		exts, _ := fs.Extents(ino)
		for i, e := range exts {
			if i < 4 || i == len(exts)-1 {
				out = append(out, e.DiskOff)
			}
		}
	}
	return out
}

// exercise runs the read and plan API on fs; it must not panic or hang,
// and what it returns must stay inside the device.
func exercise(t *testing.T, fs *FS, size int64, paths ...string) {
	_ = fs.Writable()
	if rs, err := fs.FreeSpace(); err == nil {
		for i, r := range rs {
			if r.Off < 0 || r.Len <= 0 || r.Off+r.Len > size || (i > 0 && r.Off < rs[i-1].Off+rs[i-1].Len) {
				t.Fatalf("FreeSpace range %d %+v invalid", i, r)
			}
		}
	}
	for _, p := range paths {
		ino, err := fs.LookupFollow(p)
		if err != nil {
			continue
		}
		switch {
		case ino.IsDir():
			_, _ = fs.ReadDir(p)
		case ino.IsRegular():
			if ino.Size <= 4<<20 {
				_, _ = fs.ReadFile(p)
			}
			if exts, err := fs.Extents(ino); err == nil {
				if !sort.SliceIsSorted(exts, func(i, j int) bool { return exts[i].FileOff < exts[j].FileOff }) {
					t.Fatal("extents not sorted")
				}
			}
			if ws, err := fs.Rewrite(p, []byte("fuzz")); err == nil {
				for _, w := range ws {
					if w.Offset < 0 || w.Offset+int64(len(w.Data)) > size {
						t.Fatalf("write %d+%d outside the device", w.Offset, len(w.Data))
					}
				}
			}
		}
		_, _ = fs.Readlink(p)
	}
}

func fuzzSeeds(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1})
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0})                            // superblock magic
	f.Add([]byte{1, 6, 0, 5, 0, 3})                                  // root inode: format byte
	f.Add([]byte{1, 8, 0, 176, 0, 0xff})                             // directory fork bytes
	f.Add([]byte{1, 4, 0, 4, 1, 0, 9})                               // bnobt level
	f.Add([]byte{3, 4, 0, 6, 1, 0xff, 0xff})                         // bnobt numrecs
	f.Add([]byte{1, 5, 0, 0, 3, 0xfe, 0xed, 0xba, 0xbe})             // log
	f.Add([]byte{1, 20, 0, 100, 7, 1, 2, 3, 4, 5, 6, 7, 8})          // /nodedir
	f.Add([]byte{0x81, 26, 0, 64, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0})  // v4 image
	f.Add([]byte{1, 12, 0, 90, 1, 0x00, 0x01, 0x11, 0, 88, 0, 0x10}) // dir block entry
}

func FuzzOpen(f *testing.F) {
	fuzzSeeds(f)
	bases := loadFuzzBases(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		base := bases[int(in[0]>>7)%len(bases)]
		size := int64(len(base.data))
		img := &fuzzimage.Image{Base: base.data, Patches: fuzzimage.Decode(in[1:], base.targets[:6], size)}
		fs, err := open(img, size, in[0]&1 != 0)
		if err != nil {
			return
		}
		exercise(t, fs, size, "/")
	})
}

func FuzzLookup(f *testing.F) {
	fuzzSeeds(f)
	bases := loadFuzzBases(f)
	paths := []string{"/few/a", "/blockdir/entry-with-a-longish-name-017", "/leafdir/leaf-entry-0123",
		"/nodedir/needle", "/links/dirlink/c/d/file.txt", "/links/long", "/links/loop1", "/files/f1048577",
		"/files/f4095", "/few", "/nodedir"}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		base := bases[int(in[0]>>7)%len(bases)]
		size := int64(len(base.data))
		img := &fuzzimage.Image{Base: base.data, Patches: fuzzimage.Decode(in[1:], base.targets, size)}
		fs, err := open(img, size, in[0]&1 != 0)
		if err != nil {
			return
		}
		exercise(t, fs, size, paths...)
	})
}
