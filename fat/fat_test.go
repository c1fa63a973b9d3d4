package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"slices"
	"strings"
	"testing"
)

var allGeoms = []struct {
	name string
	g    geom
	bits int
}{{"FAT12", geomFAT12, 12}, {"FAT16", geomFAT16, 16}, {"FAT32", geomFAT32, 32}, {"FAT32-small", geomFAT32Small, 32}}

func TestOpenGeometry(t *testing.T) {
	for _, c := range allGeoms {
		t.Run(c.name, func(t *testing.T) {
			b := build(t, c.g, espTree())
			fs := b.open(t)
			if fs.Bits != c.bits || fs.ClusterSize != 512 || fs.Clusters != uint32(c.g.clusters) || fs.Serial != c.g.serial {
				t.Fatalf("FAT%d, %d-byte clusters, %d clusters, serial %#x", fs.Bits, fs.ClusterSize, fs.Clusters, fs.Serial)
			}
			if want := fmt.Sprintf("%04X-%04X", c.g.serial>>16, c.g.serial&0xffff); fs.UUID() != want {
				t.Errorf("UUID %q, want %q", fs.UUID(), want)
			}
			if fs.Boot.IsFAT32Layout() != c.g.fat32 || int(fs.Boot.NumFATs) != c.g.nfats || fs.Boot.Signature != 0xaa55 {
				t.Errorf("boot sector %+v", fs.Boot)
			}
			if c.g.fat32 && (fs.Boot.RootCluster != b.rootClus[0] || fs.Boot.FSInfoSector != 1 || fs.Boot.BackupBootSector != 6) {
				t.Errorf("FAT32 extension %+v", fs.Boot)
			}
			label := c.g.label
			if label == "" {
				label = "NO NAME"
			}
			if got := strings.TrimRight(string(fs.Boot.VolumeLabel[:]), " "); got != label {
				t.Errorf("label %q, want %q", got, label)
			}
			// Opening reads the boot sector only: a partition larger than
			// the filesystem is fine.
			big := append(bytes.Clone(b.img), make([]byte, 4096)...)
			if _, err := Open(bytes.NewReader(big), int64(len(big))); err != nil {
				t.Errorf("in a larger partition: %v", err)
			}
		})
	}
}

func TestUUID(t *testing.T) {
	g := geomFAT12
	g.serial = 0x000a00b0
	b := build(t, g, nil)
	if u := b.open(t).UUID(); u != "000A-00B0" {
		t.Errorf("UUID %q", u)
	}
	b.img[38] = 0x28 // the short extended boot record still has the serial
	if fs := b.open(t); fs.UUID() != "000A-00B0" {
		t.Errorf("UUID with signature 0x28: %q", fs.UUID())
	}
	b.img[38] = 0 // no extended boot record: blkid prints no UUID
	if fs := b.open(t); fs.UUID() != "" || fs.Serial != 0 {
		t.Errorf("UUID without an extended boot record: %q, serial %#x", fs.UUID(), fs.Serial)
	}
}

func names(fs []File) []string {
	var out []string
	for _, f := range fs {
		n := f.Name
		if f.IsDir() {
			n += "/"
		}
		out = append(out, n)
	}
	return out
}

func TestReadDir(t *testing.T) {
	for _, c := range allGeoms {
		t.Run(c.name, func(t *testing.T) {
			b := build(t, c.g, espTree())
			fs := b.open(t)
			root, err := fs.ReadDir(nil)
			if err != nil {
				t.Fatal(err)
			}
			// No volume label, however the geometry has one.
			if got := names(root); !slices.Equal(got, []string{"EFI/", "README.TXT"}) {
				t.Fatalf("root: %q", got)
			}
			efi, _ := fs.Lookup("EFI")
			ents, err := fs.ReadDir(efi)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(ents); !slices.Equal(got, []string{"redhat/", "BOOT/", "Vendor.Long Name/"}) {
				t.Fatalf("EFI: %q", got)
			}
			rh, _ := fs.Lookup("EFI/redhat")
			ents, _ = fs.ReadDir(rh)
			// NT lower-case flags; the deleted OLD.CFG is left out.
			if got := names(ents); !slices.Equal(got, []string{"grubenv", "grub.cfg", "empty file"}) {
				t.Fatalf("EFI/redhat: %q", got)
			}
			for _, e := range ents {
				n := b.nodes["EFI/redhat/"+e.Name]
				if e.EntryOffset != n.entry || e.FirstCluster != n.first || int(e.Size) != len(n.data) || e.Attr != AttrArchive {
					t.Errorf("%s: %+v, built at %d cluster %d", e.Name, e, n.entry, n.first)
				}
			}
			v, _ := fs.Lookup("EFI/Vendor.Long Name")
			ents, _ = fs.ReadDir(v)
			if got := names(ents); !slices.Equal(got, []string{"A Long File Name.txt", "ünïcødé – name with more than twenty-six characters.txt", "deeper/"}) {
				t.Fatalf("EFI/Vendor.Long Name: %q", got)
			}
			if _, err := fs.ReadDir(&ents[0]); !errors.Is(err, ErrNotDir) {
				t.Errorf("ReadDir of a file: %v", err)
			}
		})
	}
}

// TestLongNameFallbacks breaks long names in the ways fsck.fat and the
// kernel tolerate: the short name is used instead.
func TestLongNameFallbacks(t *testing.T) {
	const dir = "EFI/Vendor.Long Name"
	const file = dir + "/A Long File Name.txt"
	for _, c := range []struct {
		name string
		mod  func(img []byte, entry int64) // entry: the short entry; 2 long entries precede it
		want string
	}{
		{"intact", func([]byte, int64) {}, "A Long File Name.txt"},
		{"checksum", func(img []byte, e int64) { img[e+1] = 'X' }, "AXONGF~1.TXT"},
		{"first part deleted", func(img []byte, e int64) { img[e-64] = 0xe5 }, "ALONGF~1.TXT"},
		{"last part deleted", func(img []byte, e int64) { img[e-32] = 0xe5 }, "ALONGF~1.TXT"},
		{"out of order", func(img []byte, e int64) { img[e-32] = 2 }, "ALONGF~1.TXT"},
		{"part 0", func(img []byte, e int64) { img[e-32] = 0 | 0x40 }, "ALONGF~1.TXT"},
		{"too many parts", func(img []byte, e int64) { img[e-64] = 0x40 | 21 }, "ALONGF~1.TXT"},
		{"checksums differ", func(img []byte, e int64) { img[e-32+13]++ }, "ALONGF~1.TXT"},
		{"empty long name", func(img []byte, e int64) {
			img[e-64] = 0xe5
			img[e-32] = 0x41
			binary.LittleEndian.PutUint16(img[e-32+1:], 0)
		}, "ALONGF~1.TXT"},
		{"name starting with 0xE5", func(img []byte, e int64) { img[e] = 0x05; img[e-32+13] = lfnChecksum(img[e : e+11]) }, "\xe5LONGF~1.TXT"},
		{"lower-case base only", func(img []byte, e int64) { img[e-64] = 0xe5; img[e+12] = 0x08 }, "alongf~1.TXT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := build(t, geomFAT16, espTree())
			n := b.nodes[file]
			c.mod(b.img, n.entry)
			fs := b.open(t)
			v, err := fs.Lookup(dir)
			if err != nil {
				t.Fatal(err)
			}
			ents, err := fs.ReadDir(v)
			if err != nil {
				t.Fatal(err)
			}
			if ents[0].Name != c.want || ents[0].EntryOffset != n.entry {
				t.Fatalf("name %q at %d, want %q at %d", ents[0].Name, ents[0].EntryOffset, c.want, n.entry)
			}
			// The next entry's long name is not disturbed.
			if !strings.HasPrefix(ents[1].Name, "ünïcødé") {
				t.Errorf("next entry %q", ents[1].Name)
			}
		})
	}
}

// TestLongNameAcrossClusters puts a long name's entries across a cluster
// boundary of a fragmented directory.
func TestLongNameAcrossClusters(t *testing.T) {
	var kids []*node
	for i := range 30 { // 30 names of 4 entries each, after "." and "..": 8 clusters of 16 entries
		kids = append(kids, &node{short: fmt.Sprintf("LONG~%-3dTXT", i), long: fmt.Sprintf("a long name of two parts, number %02d", i), data: []byte{byte(i)}})
	}
	g := geomFAT32Small
	b := build(t, g, []*node{{short: "MANY       ", dir: true, kids: kids}})
	fs := b.open(t)
	d, err := fs.Lookup("many")
	if err != nil {
		t.Fatal(err)
	}
	if chain := b.nodes["MANY"].clusters; len(chain) < 2 || chain[0] < chain[1] {
		t.Fatalf("directory chain %v is not fragmented", chain)
	}
	ents, err := fs.ReadDir(d)
	if err != nil || len(ents) != 30 {
		t.Fatalf("%d entries, %v", len(ents), err)
	}
	for i, e := range ents {
		if want := fmt.Sprintf("a long name of two parts, number %02d", i); e.Name != want {
			t.Errorf("entry %d: %q", i, e.Name)
		}
		if data, _, err := fs.ReadFile(&e, 10); err != nil || !bytes.Equal(data, []byte{byte(i)}) {
			t.Errorf("entry %d: %q, %v", i, data, err)
		}
	}
}

func TestLookup(t *testing.T) {
	b := build(t, geomFAT32, espTree())
	fs := b.open(t)
	for p, want := range map[string]string{
		"EFI/redhat/grub.cfg":     "EFI/redhat/grub.cfg",
		"/efi/REDHAT/GRUB.CFG":    "EFI/redhat/grub.cfg",
		"//EFI//redhat/grub.cfg/": "EFI/redhat/grub.cfg",
		"efi/vendor.long name/ÜNÏCØDÉ – NAME WITH MORE THAN TWENTY-SIX CHARACTERS.TXT": "EFI/Vendor.Long Name/ünïcødé – name with more than twenty-six characters.txt",
		"EFI/Vendor.Long Name/deeper/NESTED.txt":                                       "EFI/Vendor.Long Name/deeper/NESTED.TXT",
	} {
		f, err := fs.Lookup(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if n := b.nodes[want]; f.EntryOffset != n.entry || f.FirstCluster != n.first {
			t.Errorf("%s: %+v, want %s", p, f, want)
		}
	}
	var perr *iofs.PathError
	for _, c := range []struct {
		path string
		want error
	}{
		{"EFI/nothing", iofs.ErrNotExist},
		{"nothing/grub.cfg", iofs.ErrNotExist},
		{"EFI/redhat/..", iofs.ErrNotExist}, // ".." is not special
		{"EFI/redhat/grub.cfg/x", ErrNotDir},
		{"/", iofs.ErrInvalid},
		{"", iofs.ErrInvalid},
	} {
		_, err := fs.Lookup(c.path)
		if !errors.Is(err, c.want) || !errors.As(err, &perr) || perr.Path != c.path {
			t.Errorf("Lookup(%q) = %v, want a PathError wrapping %v", c.path, err, c.want)
		}
	}
}

func TestReadFile(t *testing.T) {
	for _, c := range allGeoms {
		t.Run(c.name, func(t *testing.T) {
			b := build(t, c.g, espTree())
			fs := b.open(t)
			for p, n := range b.nodes {
				if n.dir {
					continue
				}
				f, err := fs.Lookup(p)
				if err != nil {
					t.Fatal(err)
				}
				data, chain, err := fs.ReadFile(f, 1<<20)
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if !bytes.Equal(data, n.data) || !slices.Equal(chain, n.clusters) {
					t.Errorf("%s: %d bytes in %v, want %d in %v", p, len(data), chain, len(n.data), n.clusters)
				}
			}
			cfg, _ := fs.Lookup("EFI/redhat/grub.cfg")
			if _, _, err := fs.ReadFile(cfg, int64(len(grubCfg)-1)); !errors.Is(err, ErrTooLarge) {
				t.Errorf("over the limit: %v", err)
			}
			if _, _, err := fs.ReadFile(cfg, int64(len(grubCfg))); err != nil {
				t.Errorf("at the limit: %v", err)
			}
			efi, _ := fs.Lookup("EFI")
			if _, _, err := fs.ReadFile(efi, 1<<20); !errors.Is(err, ErrIsDir) {
				t.Errorf("a directory: %v", err)
			}
		})
	}
}

// TestActiveFAT reads a FAT32 whose mirroring is off: only the active FAT
// (the second here) is current.
func TestActiveFAT(t *testing.T) {
	b := build(t, geomFAT32Small, espTree())
	cfg := b.nodes["EFI/redhat/grub.cfg"]
	binary.LittleEndian.PutUint16(b.img[40:], 0x80|1)
	b.putFAT(b.fatOff, cfg.clusters[0], 0) // the stale first FAT says free
	fs := b.open(t)
	f, err := fs.Lookup("EFI/redhat/grub.cfg")
	if err != nil {
		t.Fatal(err)
	}
	if data, _, err := fs.ReadFile(f, 1<<20); err != nil || !bytes.Equal(data, grubCfg) {
		t.Fatalf("%d bytes, %v", len(data), err)
	}
	binary.LittleEndian.PutUint16(b.img[40:], 0) // mirrored: the first FAT is read
	fs = b.open(t)
	if _, _, err := fs.ReadFile(f, 1<<20); err == nil {
		t.Fatal("the first FAT's free entry went unnoticed")
	}
}

// apply applies ws to a copy of img.
func apply(img []byte, ws []Write) []byte {
	out := bytes.Clone(img)
	for _, w := range ws {
		copy(out[w.Offset:], w.Data)
	}
	return out
}

func TestRewrite(t *testing.T) {
	for _, c := range allGeoms {
		t.Run(c.name, func(t *testing.T) {
			b := build(t, c.g, espTree())
			fs := b.open(t)
			read := func(fs *FS, p string) (*File, []byte, []uint32) {
				t.Helper()
				f, err := fs.Lookup(p)
				if err != nil {
					t.Fatal(err)
				}
				data, chain, err := fs.ReadFile(f, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				return f, data, chain
			}

			// Same size: whole clusters, no directory entry write.
			f, env, chain := read(fs, "EFI/redhat/grubenv")
			newEnv := grubenv("kernelopts=root=/dev/sda2 ro\n")
			ws, err := fs.Rewrite(f, chain, newEnv)
			if err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, w := range ws {
				total += len(w.Data)
			}
			if total != 1024 || ws[0].Offset != fs.clusterOffset(chain[0]) {
				t.Fatalf("%d writes of %d bytes from %d", len(ws), total, ws[0].Offset)
			}
			img := apply(b.img, ws)
			fs2, _ := Open(bytes.NewReader(img), int64(len(img)))
			if _, got, _ := read(fs2, "EFI/redhat/grubenv"); !bytes.Equal(got, newEnv) || bytes.Equal(got, env) {
				t.Fatal("grubenv not rewritten")
			}

			// Shrunk within the clusters: the slack is zeroed and the size
			// field written.
			f, _, chain = read(fs, "EFI/redhat/grub.cfg")
			short := PadToClusters([]byte("set timeout=1\n"), len(chain), fs.ClusterSize)
			ws, err = fs.Rewrite(f, chain, short)
			if err != nil {
				t.Fatal(err)
			}
			last := ws[len(ws)-1]
			if last.Offset != f.EntryOffset+28 || binary.LittleEndian.Uint32(last.Data) != uint32(len(short)) {
				t.Fatalf("last write %d %x, want the size field at %d", last.Offset, last.Data, f.EntryOffset+28)
			}
			if c.g.fragment && len(ws) != len(chain)+1 {
				t.Errorf("%d writes for %d fragmented clusters", len(ws), len(chain))
			}
			if !c.g.fragment && len(ws) != 2 {
				t.Errorf("%d writes for %d contiguous clusters", len(ws), len(chain))
			}
			img = apply(b.img, ws)
			fs2, _ = Open(bytes.NewReader(img), int64(len(img)))
			_, got, chain2 := read(fs2, "EFI/redhat/grub.cfg")
			if !bytes.Equal(got, short) || !slices.Equal(chain, chain2) {
				t.Fatalf("grub.cfg after rewrite: %q", got)
			}
			lastCluster := fs.clusterOffset(chain[len(chain)-1])
			if slack := img[lastCluster+1 : lastCluster+fs.ClusterSize]; bytes.Count(slack, []byte{0}) != len(slack) {
				t.Error("the slack after the new end keeps old bytes")
			}

			// Refusals.
			for _, r := range []struct {
				name string
				f    *File
				cs   []uint32
				data []byte
			}{
				{"fewer clusters", f, chain, []byte("set timeout=1\n")},
				{"more clusters", f, chain, bytes.Repeat([]byte("x"), len(chain)*512+1)},
				{"not its chain", f, slices.Concat(chain[1:], chain[:1]), grubCfg},
				{"stale size", &File{Name: f.Name, EntryOffset: f.EntryOffset, Attr: f.Attr, FirstCluster: f.FirstCluster, Size: f.Size - 1}, chain, grubCfg},
				{"stale cluster", &File{Name: f.Name, EntryOffset: f.EntryOffset, Attr: f.Attr, FirstCluster: f.FirstCluster + 1, Size: f.Size}, chain, grubCfg},
				{"wrong entry", &File{Name: f.Name, EntryOffset: f.EntryOffset + 32, Attr: f.Attr, FirstCluster: f.FirstCluster, Size: f.Size}, chain, grubCfg},
				{"directory", &File{Name: "EFI", Attr: AttrDir}, nil, nil},
			} {
				if _, err := fs.Rewrite(r.f, r.cs, r.data); !errors.Is(err, ErrCannotEdit) || errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: %v, want ErrCannotEdit", r.name, err)
				}
			}

			// An empty file stays empty: nothing to write. One that
			// needs no more than its cluster grows in place.
			f, _, chain = read(fs, "EFI/redhat/empty file")
			if ws, err := fs.Rewrite(f, chain, nil); err != nil || len(ws) != 0 || len(chain) != 0 {
				t.Errorf("empty: %v, %v", ws, err)
			}
			if _, err := fs.Rewrite(f, chain, []byte("x")); !errors.Is(err, ErrCannotEdit) {
				t.Errorf("empty file given data: %v", err)
			}
			f, _, chain = read(fs, "README.TXT")
			ws, err = fs.Rewrite(f, chain, []byte("a longer root file\n"))
			if err != nil || len(ws) != 2 {
				t.Fatalf("%v, %v", ws, err)
			}
			img = apply(b.img, ws)
			fs2, _ = Open(bytes.NewReader(img), int64(len(img)))
			if _, got, _ := read(fs2, "README.TXT"); string(got) != "a longer root file\n" {
				t.Errorf("README.TXT: %q", got)
			}
		})
	}
}

func TestPadToClusters(t *testing.T) {
	const cs = 512
	for _, c := range []struct {
		in      string
		n       int
		wantLen int // 0: returned unchanged
	}{
		{"abc\n", 1, 0},
		{"abc", 1, 0},
		{"", 0, 0},
		{"abc\n", 0, 0},
		{"abc\n", 2, cs + 1},
		{"abc", 2, cs + 1},
		{strings.Repeat("a", cs) + "\n", 2, 0}, // already needs 2
		{strings.Repeat("a", cs-1) + "\n", 2, cs + 1}, // a blank line pads one byte
		{strings.Repeat("a", cs-1), 2, cs + 1},        // a newline and a blank line
		{strings.Repeat("a", cs-20) + "\n", 2, cs + 1},
		{"x\n", 5, 4*cs + 1},
	} {
		got := PadToClusters([]byte(c.in), c.n, cs)
		if c.wantLen == 0 {
			if string(got) != c.in {
				t.Errorf("PadToClusters(%d bytes, %d) changed the data to %d bytes", len(c.in), c.n, len(got))
			}
			continue
		}
		if len(got) != c.wantLen || !strings.HasPrefix(string(got), c.in) || got[len(got)-1] != '\n' {
			t.Errorf("PadToClusters(%d bytes, %d) = %d bytes %q", len(c.in), c.n, len(got), got[min(len(got), len(c.in)):])
			continue
		}
		// The padding is comment lines, which GRUB and shells skip.
		rest := strings.TrimPrefix(string(got), c.in)
		if !strings.HasSuffix(c.in, "\n") && c.in != "" {
			rest = strings.TrimPrefix(rest, "\n")
		}
		if rest != "\n" && !strings.HasPrefix(rest, "#") || strings.Count(rest, "\n") != 1 {
			t.Errorf("PadToClusters(%d bytes, %d): padding %q is not one comment line", len(c.in), c.n, rest)
		}
	}
	if got := PadToClusters([]byte("a\n"), 3, 512); !strings.Contains(string(got), "keeps its FAT clusters") {
		t.Errorf("the padding does not say why: %q", got[:80])
	}
}

func TestFormatError(t *testing.T) {
	err := error(&FormatError{Structure: "FAT entry of cluster 5", Offset: 4103, Reason: "cluster 5 is in a chain but marked free"})
	if err.Error() != "fat: FAT entry of cluster 5 at offset 4103: cluster 5 is in a chain but marked free" {
		t.Errorf("Error() = %q", err)
	}
	if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFAT) || !errors.Is(fmt.Errorf("x: %w", err), ErrCorrupt) {
		t.Error("Is")
	}
}

// failingReader fails every read from off on.
type failingReader struct {
	r   io.ReaderAt
	off int64
}

var errDisk = errors.New("disk on fire")

func (f *failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.off {
		return 0, errDisk
	}
	return f.r.ReadAt(p, off)
}

// TestReaderErrors: failures of the reader are passed on, not reported as
// corruption.
func TestReaderErrors(t *testing.T) {
	b := build(t, geomFAT16, espTree())
	size := int64(len(b.img))
	if _, err := Open(&failingReader{bytes.NewReader(b.img), 0}, size); !errors.Is(err, errDisk) || errors.Is(err, ErrCorrupt) {
		t.Errorf("boot sector: %v", err)
	}
	fs, err := Open(&failingReader{bytes.NewReader(b.img), b.dataOff}, size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Lookup("EFI/redhat"); !errors.Is(err, errDisk) || errors.Is(err, ErrCorrupt) {
		t.Errorf("directory: %v", err)
	}
	fs, _ = Open(&failingReader{bytes.NewReader(b.img), b.dataOff + int64(b.nodes["EFI/redhat/grub.cfg"].first-2)*b.cs}, size)
	f, err := fs.Lookup("EFI/redhat/grub.cfg")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := fs.ReadFile(f, 1<<20); !errors.Is(err, errDisk) {
		t.Errorf("file data: %v", err)
	}
	fs, _ = Open(&failingReader{bytes.NewReader(b.img), b.fatOff + 8}, size)
	if _, _, err := fs.ReadFile(f, 1<<20); !errors.Is(err, errDisk) {
		t.Errorf("FAT: %v", err)
	}
	// A reader that returns fewer bytes without an error.
	if _, err := Open(shortReader{}, 512); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short read: %v", err)
	}
}

type shortReader struct{}

func (shortReader) ReadAt(p []byte, off int64) (int, error) { return len(p) / 2, nil }
