package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf16"
)

// The unit tests and the fuzz seeds use images built here, in memory, so
// that they need no tools and every byte is known; TestBuilderImagesPassFsck
// checks with fsck.fat and mtools that these images are what the real tools
// accept.

// node is a file or directory of a built image.
type node struct {
	short   string // 8.3 name as stored: 11 bytes, space-padded, upper case
	long    string // "" for no long name
	nt      byte   // byte 12: 0x08 base, 0x10 extension in lower case
	dir     bool
	data    []byte
	kids    []*node
	deleted bool // written as a deleted entry only

	// Set by build.
	first    uint32
	clusters []uint32
	entry    int64 // offset of the short entry
}

// geom is the geometry of a built image.
type geom struct {
	fat32       bool // FAT32 layout; otherwise FAT12 or FAT16 by the cluster count
	bps, spc    int
	reserved    int
	nfats       int
	rootEntries int // FAT12/16
	clusters    int // data clusters
	serial      uint32
	label       string // also written as a volume label entry in the root; "" for none
	fragment    bool   // allocate each chain in descending cluster order
}

// built is an image and where its structures are.
type built struct {
	img      []byte
	g        geom
	bits     int
	cs       int64
	fatOff   int64 // first FAT
	fatSize  int64 // bytes per FAT
	rootOff  int64 // FAT12/16 root directory
	dataOff  int64
	rootClus []uint32 // FAT32 root directory
	nodes    map[string]*node
}

func dosDate() uint16 { return (2020-1980)<<9 | 1<<5 | 1 }

// shortEntry encodes a short directory entry.
func shortEntry(name string, attr, nt byte, first uint32, size uint32) []byte {
	if len(name) != 11 {
		panic("short name " + name + " is not 11 bytes")
	}
	d := make([]byte, dirEntrySize)
	copy(d, name)
	d[11], d[12] = attr, nt
	le := binary.LittleEndian
	le.PutUint16(d[16:], dosDate())
	le.PutUint16(d[18:], dosDate())
	le.PutUint16(d[20:], uint16(first>>16))
	le.PutUint16(d[24:], dosDate())
	le.PutUint16(d[26:], uint16(first))
	le.PutUint32(d[28:], size)
	return d
}

// lfnEntries encodes the long-name entries of long for the short name, in
// on-disk order.
func lfnEntries(long, short string) [][]byte {
	u := utf16.Encode([]rune(long))
	if len(u)%13 != 0 {
		u = append(u, 0)
		for len(u)%13 != 0 {
			u = append(u, 0xffff)
		}
	}
	n := len(u) / 13
	sum := lfnChecksum([]byte(short))
	var out [][]byte
	for ord := n; ord >= 1; ord-- {
		d := make([]byte, dirEntrySize)
		d[0] = byte(ord)
		if ord == n {
			d[0] |= 0x40
		}
		d[11], d[13] = attrLFN, sum
		part := u[(ord-1)*13 : ord*13]
		for k, o := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
			binary.LittleEndian.PutUint16(d[o:], part[k])
		}
		out = append(out, d)
	}
	return out
}

// dirEntries is the number of 32-byte entries the nodes take.
func dirEntries(nodes []*node) int {
	n := 0
	for _, c := range nodes {
		n++
		if c.long != "" && !c.deleted {
			n += len(lfnEntries(c.long, c.short))
		}
	}
	return n
}

// build makes an image of g holding root.
func build(t testing.TB, g geom, root []*node) *built {
	t.Helper()
	b := &built{g: g, nodes: map[string]*node{}}
	bps, spc := int64(g.bps), int64(g.spc)
	b.cs = bps * spc
	switch {
	case g.fat32:
		b.bits = 32
	case g.clusters < 4085:
		b.bits = 12
	default:
		b.bits = 16
	}
	fatBytes := (int64(g.clusters+2)*int64(b.bits) + 7) / 8
	fatSectors := (fatBytes + bps - 1) / bps
	b.fatSize = fatSectors * bps
	rootSectors := int64(0)
	if !g.fat32 {
		rootSectors = (int64(g.rootEntries)*dirEntrySize + bps - 1) / bps
	}
	b.fatOff = int64(g.reserved) * bps
	b.rootOff = b.fatOff + int64(g.nfats)*b.fatSize
	b.dataOff = b.rootOff + rootSectors*bps
	total := b.dataOff/bps + int64(g.clusters)*spc
	b.img = make([]byte, total*bps)

	// Allocate every chain first: directories hold their children's clusters.
	fat := make([]uint32, g.clusters+2)
	next := uint32(2)
	alloc := func(n int) []uint32 {
		if n == 0 {
			return nil
		}
		if int(next)+n > g.clusters+2 {
			t.Fatalf("build: image of %d clusters is full", g.clusters)
		}
		cs := make([]uint32, n)
		for i := range cs {
			cs[i] = next + uint32(i)
			if g.fragment {
				cs[i] = next + uint32(n-1-i)
			}
		}
		next += uint32(n)
		for i, c := range cs {
			fat[c] = 0x0fffffff
			if i+1 < n {
				fat[c] = cs[i+1]
			}
		}
		return cs
	}
	clustersFor := func(bytes int64) int { return int((bytes + b.cs - 1) / b.cs) }
	rootEnts := dirEntries(root)
	if g.label != "" {
		rootEnts++
	}
	if g.fat32 {
		b.rootClus = alloc(max(1, clustersFor(int64(rootEnts)*dirEntrySize)))
	} else if rootEnts > g.rootEntries {
		t.Fatalf("build: %d root entries do not fit %d", rootEnts, g.rootEntries)
	}
	var assign func(nodes []*node, dir string)
	assign = func(nodes []*node, dir string) {
		for _, n := range nodes {
			if n.deleted {
				continue
			}
			name := n.long
			if name == "" {
				name = shortName(&dirEntry{Name: [11]byte([]byte(n.short)), NTRes: n.nt})
			}
			p := dir + "/" + name
			b.nodes[strings.TrimPrefix(p, "/")] = n
			if n.dir {
				n.clusters = alloc(clustersFor(int64(2+dirEntries(n.kids)) * dirEntrySize))
			} else {
				n.clusters = alloc(clustersFor(int64(len(n.data))))
			}
			n.first = 0
			if len(n.clusters) > 0 {
				n.first = n.clusters[0]
			}
			if n.dir {
				assign(n.kids, p)
			}
		}
	}
	assign(root, "")

	// Directories and file data.
	var write func(regions []int64, regionLen int64, nodes []*node, self, parent uint32, isRoot bool)
	write = func(regions []int64, regionLen int64, nodes []*node, self, parent uint32, isRoot bool) {
		var ents [][]byte
		var owners []*node
		add := func(d []byte, n *node) { ents, owners = append(ents, d), append(owners, n) }
		if isRoot && g.label != "" {
			add(shortEntry(fmt.Sprintf("%-11s", g.label), AttrVolumeID, 0, 0, 0), nil)
		}
		if !isRoot {
			add(shortEntry(".          ", AttrDir, 0, self, 0), nil)
			add(shortEntry("..         ", AttrDir, 0, parent, 0), nil)
		}
		for _, n := range nodes {
			if n.deleted {
				d := shortEntry(n.short, AttrArchive, 0, 0, 0)
				d[0] = 0xe5
				add(d, nil)
				continue
			}
			if n.long != "" {
				for _, l := range lfnEntries(n.long, n.short) {
					add(l, nil)
				}
			}
			attr, size := byte(AttrArchive), uint32(len(n.data))
			if n.dir {
				attr, size = AttrDir, 0
			}
			add(shortEntry(n.short, attr, n.nt, n.first, size), n)
		}
		for i, d := range ents {
			pos := int64(i) * dirEntrySize
			off := regions[pos/regionLen] + pos%regionLen
			copy(b.img[off:], d)
			if owners[i] != nil {
				owners[i].entry = off
			}
		}
		for _, n := range nodes {
			if n.deleted {
				continue
			}
			var offs []int64
			for _, c := range n.clusters {
				offs = append(offs, b.dataOff+int64(c-2)*b.cs)
			}
			if n.dir {
				// ".." of a directory in the root names cluster 0, even on FAT32.
				write(offs, b.cs, n.kids, n.first, self, false)
				continue
			}
			for i, off := range offs {
				copy(b.img[off:off+b.cs], n.data[int64(i)*b.cs:])
			}
		}
	}
	if g.fat32 {
		var offs []int64
		for _, c := range b.rootClus {
			offs = append(offs, b.dataOff+int64(c-2)*b.cs)
		}
		write(offs, b.cs, root, 0, 0, true)
	} else {
		write([]int64{b.rootOff}, int64(g.rootEntries)*dirEntrySize, root, 0, 0, true)
	}

	// The FATs: entry 0 holds the media byte, entry 1 an end-of-chain mark.
	fat[0], fat[1] = 0x0fffff00|0xf8, 0x0fffffff
	for i := 0; i < g.nfats; i++ {
		off := b.fatOff + int64(i)*b.fatSize
		for c, v := range fat {
			b.putFAT(off, uint32(c), v)
		}
	}

	// Boot sector (and, on FAT32, FSInfo and the backup boot sector).
	s := b.img[:512]
	le := binary.LittleEndian
	copy(s, []byte{0xeb, 0x3c, 0x90})
	copy(s[3:], "mkfs.fat")
	le.PutUint16(s[11:], uint16(g.bps))
	s[13] = byte(g.spc)
	le.PutUint16(s[14:], uint16(g.reserved))
	s[16] = byte(g.nfats)
	if total < 65536 && !g.fat32 {
		le.PutUint16(s[19:], uint16(total))
	} else {
		le.PutUint32(s[32:], uint32(total))
	}
	s[21] = 0xf8
	le.PutUint16(s[24:], 32)
	le.PutUint16(s[26:], 64)
	label := g.label
	if label == "" {
		label = "NO NAME"
	}
	ext := 36
	if g.fat32 {
		s[1] = 0x58
		le.PutUint32(s[36:], uint32(fatSectors))
		le.PutUint32(s[44:], b.rootClus[0])
		if g.reserved >= 8 {
			le.PutUint16(s[48:], 1)
			le.PutUint16(s[50:], 6)
		}
		ext = 64
	} else {
		le.PutUint16(s[17:], uint16(g.rootEntries))
		le.PutUint16(s[22:], uint16(fatSectors))
	}
	s[ext] = 0x80
	s[ext+2] = 0x29
	le.PutUint32(s[ext+3:], g.serial)
	copy(s[ext+7:], fmt.Sprintf("%-11s", label))
	copy(s[ext+18:], fmt.Sprintf("FAT%-5d", b.bits))
	s[510], s[511] = 0x55, 0xaa
	if g.fat32 && g.reserved >= 8 {
		fsi := b.img[bps : 2*bps]
		le.PutUint32(fsi[0:], 0x41615252)
		le.PutUint32(fsi[484:], 0x61417272)
		le.PutUint32(fsi[488:], uint32(g.clusters+2)-next)
		le.PutUint32(fsi[492:], next)
		le.PutUint32(fsi[508:], 0xaa550000)
		copy(b.img[6*bps:8*bps], b.img[0:2*bps])
	}
	return b
}

// putFAT sets the entry of cluster c in the FAT at off.
func (b *built) putFAT(off int64, c, v uint32) {
	le := binary.LittleEndian
	switch b.bits {
	case 12:
		p := off + int64(c)*3/2
		w := le.Uint16(b.img[p:])
		if c&1 == 1 {
			w = w&0x000f | uint16(v&0xfff)<<4
		} else {
			w = w&0xf000 | uint16(v&0xfff)
		}
		le.PutUint16(b.img[p:], w)
	case 16:
		le.PutUint16(b.img[off+int64(c)*2:], uint16(v))
	default:
		le.PutUint32(b.img[off+int64(c)*4:], v&0x0fffffff)
	}
}

// setFAT sets the entry of cluster c in every FAT copy.
func (b *built) setFAT(c, v uint32) {
	for i := 0; i < b.g.nfats; i++ {
		b.putFAT(b.fatOff+int64(i)*b.fatSize, c, v)
	}
}

func (b *built) open(t testing.TB) *FS {
	t.Helper()
	fs, err := Open(bytes.NewReader(b.img), int64(len(b.img)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return fs
}

// Geometries of the test images: FAT12; FAT16 with about the fewest
// clusters FAT16 has (2 MiB); FAT32 with about the fewest clusters FAT32
// has (33 MiB); and a small FAT32, which is FAT32 by its layout alone
// (mkfs.fat -F 32 makes such volumes, Linux and fsck.fat take them, mtools
// does not).
var (
	geomFAT12      = geom{bps: 512, spc: 1, reserved: 1, nfats: 2, rootEntries: 64, clusters: 120, serial: 0x1234abcd, label: "ESP"}
	geomFAT16      = geom{bps: 512, spc: 1, reserved: 4, nfats: 2, rootEntries: 512, clusters: 4100, serial: 0xdeadbeef}
	geomFAT32      = geom{fat32: true, bps: 512, spc: 1, reserved: 32, nfats: 2, clusters: 65600, serial: 0x0badf00d, label: "EFI", fragment: true}
	geomFAT32Small = geom{fat32: true, bps: 512, spc: 1, reserved: 8, nfats: 2, clusters: 200, serial: 0x600df00d, fragment: true}
)

// grubCfg is a grub.cfg of 2100 bytes: five 512-byte clusters.
var grubCfg = bytes.Repeat([]byte("set timeout=5 # a line of grub.cfg\n"), 60)

// grubenv is a GRUB environment block.
func grubenv(vars string) []byte {
	b := []byte("# GRUB Environment Block\n" + vars)
	return append(b, bytes.Repeat([]byte("#"), 1024-len(b))...)
}

// espTree is the tree of the test images, made afresh for each build.
func espTree() []*node {
	return []*node{
		{short: "EFI        ", dir: true, kids: []*node{
			{short: "REDHAT     ", nt: 0x08, dir: true, kids: []*node{
				{short: "GRUBENV    ", nt: 0x08, data: grubenv("kernelopts=root=/dev/mapper/rootvg-rootlv ro rd.luks.uuid=1\n")},
				{short: "GRUB    CFG", nt: 0x18, data: grubCfg},
				{short: "OLD     CFG", deleted: true},
				{short: "EMPTY      ", long: "empty file"},
			}},
			{short: "BOOT       ", dir: true, kids: []*node{
				{short: "BOOTX64 EFI", data: bytes.Repeat([]byte{0x4d, 0x5a, 0x90, 0}, 300)},
			}},
			{short: "VENDOR~1LON", long: "Vendor.Long Name", dir: true, kids: []*node{
				{short: "ALONGF~1TXT", long: "A Long File Name.txt", data: []byte("hello\n")},
				{short: "UNICOD~1TXT", long: "ünïcødé – name with more than twenty-six characters.txt", data: []byte("unicode\n")},
				{short: "DEEPER     ", nt: 0x08, dir: true, kids: []*node{
					{short: "NESTED  TXT", data: []byte("nested\n")},
				}},
			}},
		}},
		{short: "README  TXT", data: []byte("root file\n")},
	}
}

// wantFormatError checks that err is (or wraps) a *FormatError for the
// structure (a prefix) at off.
func wantFormatError(t *testing.T, err error, structure string, off int64) *FormatError {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v, want a *FormatError for %s at offset %d", err, structure, off)
	}
	if !strings.HasPrefix(fe.Structure, structure) || fe.Offset != off {
		t.Fatalf("FormatError %q at offset %d (%v), want %s at offset %d", fe.Structure, fe.Offset, err, structure, off)
	}
	return fe
}
