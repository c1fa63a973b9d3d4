package fat

import (
	"bytes"
	"errors"
	"io"
	iofs "io/fs"
	"sync"
	"testing"

	"github.com/luksconv/luksconv/internal/fuzzimage"
)

// FuzzOpen opens mutated images, walks their tree and reads and plans a
// rewrite of every file, within bounds. Inputs come in two modes:
//
//   - patch mode (in[0] < 0x80): the image is one of the built test images
//     (in[0] picks it) with up to 16 patches of 1..16 bytes, each at a 16-bit
//     offset from a structure of it (boot sector, FSInfo, FATs, directories,
//     a file's entry, FAT entry and data), so a few bytes reach deep;
//   - raw mode (in[0] >= 0x80): in[1:] is the image itself, followed by
//     zeros up to 64 MiB when in[0]&0x40 is set (the tail of a mostly empty
//     filesystem is zeros anyway).
//
// The seeds are images built in memory (no tools needed), so a crasher
// saved in testdata/fuzz reproduces anywhere.

// zeroExtended reads img and then zeros.
type zeroExtended []byte

func (z zeroExtended) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.EOF
	}
	clear(p)
	if off < int64(len(z)) {
		copy(p, z[off:])
	}
	return len(p), nil
}

type fuzzBase struct {
	img     []byte
	targets []int64
}

var (
	fuzzOnce  sync.Once
	fuzzBases []fuzzBase
)

// fuzzGeoms are the bases: FAT12, FAT16 and a small FAT32 (the 33 MiB one
// would only cost memory: FAT32 code paths do not depend on the count).
var fuzzGeoms = []geom{geomFAT12, geomFAT16, geomFAT32Small}

// targetsOf lists the offsets of b's structures that patches are relative to.
func targetsOf(b *built) []int64 {
	cl := func(c uint32) int64 { return b.dataOff + int64(c-2)*b.cs }
	cfg, lfn := b.nodes["EFI/redhat/grub.cfg"], b.nodes["EFI/Vendor.Long Name/A Long File Name.txt"]
	root := b.rootOff
	if b.g.fat32 {
		root = cl(b.rootClus[0])
	}
	fs := &FS{Bits: b.bits, fatOff: b.fatOff}
	return []int64{
		0, 512, b.fatOff, b.fatOff + b.fatSize, root,
		cl(b.nodes["EFI"].first), cl(b.nodes["EFI/redhat"].first), cl(b.nodes["EFI/Vendor.Long Name"].first),
		cfg.entry, lfn.entry - 64, fs.fatEntryOffset(cfg.first), cl(cfg.first),
	}
}

func loadFuzzBases(t testing.TB) []fuzzBase {
	fuzzOnce.Do(func() {
		for _, g := range fuzzGeoms {
			b := build(t, g, espTree())
			fuzzBases = append(fuzzBases, fuzzBase{img: b.img, targets: targetsOf(b)})
		}
	})
	return fuzzBases
}

// tinyTree is a small tree for raw-mode seeds: a long name, a nested
// directory, a file of two clusters.
func tinyTree() []*node {
	return []*node{
		{short: "EFI        ", dir: true, kids: []*node{
			{short: "GRUB    CFG", nt: 0x18, data: grubCfg[:600]},
			{short: "LONGNA~1   ", long: "Long Name", dir: true, kids: []*node{
				{short: "X          ", data: []byte("x\n")},
			}},
		}},
	}
}

// trimmed is img without its trailing zeros, for raw-mode seeds.
func trimmed(img []byte) []byte { return bytes.TrimRight(img, "\x00") }

// Walk bounds: directories visited, files read and bytes read per input.
const (
	fuzzMaxDirs  = 32
	fuzzMaxFiles = 64
	fuzzMaxBytes = 4 << 20
)

// exercise walks fs and checks what must hold whatever the image holds:
// errors from on-disk data are FormatErrors (the reader never fails),
// ReadFile's results match the entry, and a file ReadFile accepts can be
// rewritten, with writes only in its clusters and its entry's size field.
func exercise(t *testing.T, fs *FS, size int64) {
	_ = fs.UUID()
	if fs.Bits != 12 && fs.Bits != 16 && fs.Bits != 32 || fs.ClusterSize < 512 || fs.Clusters == 0 {
		t.Fatalf("Open accepted FAT%d, %d-byte clusters, %d clusters", fs.Bits, fs.ClusterSize, fs.Clusters)
	}
	if last := fs.clusterOffset(fs.Clusters+1) + fs.ClusterSize; last > size {
		t.Fatalf("the last cluster ends at %d, past the %d-byte device", last, size)
	}
	onDisk := func(err error, what string) {
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: error %v is not a FormatError", what, err)
		}
	}
	dirs, files, budget := 0, 0, int64(fuzzMaxBytes)
	seen := map[uint32]bool{}
	queue := []*File{nil}
	for len(queue) > 0 && dirs < fuzzMaxDirs {
		dir := queue[0]
		queue = queue[1:]
		dirs++
		ents, err := fs.ReadDir(dir)
		onDisk(err, "ReadDir")
		for i := range ents {
			f := &ents[i]
			if f.IsDir() {
				if !seen[f.FirstCluster] {
					seen[f.FirstCluster] = true
					queue = append(queue, f)
				}
				continue
			}
			if files++; files > fuzzMaxFiles || int64(f.Size) > budget {
				continue
			}
			data, chain, err := fs.ReadFile(f, 1<<20)
			onDisk(err, "ReadFile")
			if err != nil {
				continue
			}
			budget -= int64(len(data))
			if len(data) != int(f.Size) || int64(len(chain)) != (int64(f.Size)+fs.ClusterSize-1)/fs.ClusterSize {
				t.Fatalf("%q: %d bytes in %d clusters, entry says %d", f.Name, len(data), len(chain), f.Size)
			}
			half := PadToClusters(data[:len(data)/2], len(chain), fs.ClusterSize)
			ws, err := fs.Rewrite(f, chain, half)
			if err != nil {
				t.Fatalf("%q: ReadFile accepts it but Rewrite refuses: %v", f.Name, err)
			}
			owned := map[int64]bool{}
			for _, c := range chain {
				owned[fs.clusterOffset(c)] = true
			}
			for _, w := range ws {
				if w.Offset < 0 || w.Offset+int64(len(w.Data)) > size {
					t.Fatalf("write %d+%d outside the %d-byte device", w.Offset, len(w.Data), size)
				}
				if w.Offset == f.EntryOffset+28 && len(w.Data) == 4 {
					continue
				}
				for o := w.Offset; o < w.Offset+int64(len(w.Data)); o += fs.ClusterSize {
					if !owned[o] {
						t.Fatalf("%q: write at %d outside its clusters", f.Name, o)
					}
				}
			}
		}
	}
	for _, p := range []string{"EFI/redhat/grub.cfg", "efi/VENDOR.LONG NAME/a long file name.txt", "README.TXT"} {
		_, err := fs.Lookup(p)
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotDir) && !errors.Is(err, iofs.ErrNotExist) {
			t.Fatalf("Lookup(%q): %v", p, err)
		}
	}
}

func fuzzSeeds(f *testing.F) {
	for i := range fuzzGeoms {
		f.Add([]byte{byte(i)})
	}
	f.Add([]byte{0, 0, 0, 13, 0, 3})                              // sectors per cluster
	f.Add([]byte{1, 0, 0, 17, 1, 0, 0})                           // root entries
	f.Add([]byte{2, 0, 0, 40, 1, 0x81, 0})                        // FAT32 active FAT
	f.Add([]byte{1, 10, 0, 0, 1, 0xf7, 0xff})                     // grub.cfg's FAT entry: bad
	f.Add([]byte{0, 10, 0, 0, 1, 0x00, 0x00})                     // FAT12 entry: free
	f.Add([]byte{2, 8, 0, 28, 3, 0xff, 0xff, 0xff, 0x0f})         // grub.cfg's size
	f.Add([]byte{1, 9, 0, 0, 0, 0x43})                            // long name order
	f.Add([]byte{1, 9, 0, 13, 0, 0x00})                           // long name checksum
	f.Add([]byte{0, 6, 0, 0x4b, 0, 0x10})                         // a file becomes a directory
	f.Add([]byte{2, 5, 0, 0x5a, 1, 0x02, 0x00})                   // a directory's cluster is the root's
	f.Add([]byte{0, 2, 0, 6, 1, 0xff, 0xff, 2, 0, 9, 1, 0x05, 0}) // FAT12 packing, odd and even
	// Raw seeds are kept to a few KiB (a tiny tree, no FSInfo or backup
	// boot sector): the fuzzer minimises every new input it finds, for up
	// to a minute, at a cost that grows with its length.
	for _, g := range []geom{
		{bps: 512, spc: 1, reserved: 1, nfats: 1, rootEntries: 16, clusters: 16, serial: 1},
		{fat32: true, bps: 512, spc: 1, reserved: 1, nfats: 1, clusters: 16, serial: 2},
	} {
		b := build(f, g, tinyTree())
		f.Add(append([]byte{0x80}, trimmed(b.img)...))
		f.Add(append([]byte{0xc0}, trimmed(b.img)...))
	}
}

func FuzzOpen(f *testing.F) {
	fuzzSeeds(f)
	bases := loadFuzzBases(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		var r io.ReaderAt
		var size int64
		switch {
		case in[0]&0x80 == 0:
			base := bases[int(in[0])%len(bases)]
			size = int64(len(base.img))
			r = &fuzzimage.Image{Base: base.img, Patches: fuzzimage.Decode(in[1:], base.targets, size)}
		case in[0]&0x40 != 0:
			r, size = zeroExtended(in[1:]), 64<<20
		default:
			r, size = bytes.NewReader(in[1:]), int64(len(in)-1)
		}
		fs, err := Open(r, size)
		if err != nil {
			if !errors.Is(err, ErrNotFAT) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Open: %v", err)
			}
			return
		}
		exercise(t, fs, size)
	})
}
