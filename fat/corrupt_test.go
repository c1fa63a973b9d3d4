package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// Every check on on-disk data has a case here: the error must be a
// *FormatError naming the structure and its offset (or ErrNotFAT /
// ErrUnsupported where the data is not corrupt but foreign).

// hugeReader reads img and zeros after it, so a boot sector can describe a
// filesystem much larger than the test keeps in memory.
type hugeReader []byte

func (h hugeReader) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	if off < int64(len(h)) {
		copy(p, h[off:])
	}
	return len(p), nil
}

func TestBootSectorErrors(t *testing.T) {
	le := binary.LittleEndian
	fat16 := build(t, geomFAT16, espTree())
	fat32 := build(t, geomFAT32Small, espTree())
	fat12 := build(t, geomFAT12, nil)
	dataSector16 := uint16(fat16.dataOff / 512)
	for _, c := range []struct {
		name   string
		base   *built
		mod    func(b []byte)
		size   int64 // 0: the image's
		want   error // ErrNotFAT or ErrUnsupported, else a FormatError at off
		off    int64
		reason string
	}{
		{name: "shorter than a sector", base: fat16, size: 511, want: ErrNotFAT},
		{name: "no signature", base: fat16, mod: func(b []byte) { b[510] = 0 }, want: ErrNotFAT},
		{name: "no jump", base: fat16, mod: func(b []byte) { b[0] = 0 }, want: ErrNotFAT},
		{name: "NTFS", base: fat16, mod: func(b []byte) { copy(b[3:], "NTFS    ") }, want: ErrNotFAT},
		{name: "exFAT", base: fat16, mod: func(b []byte) { copy(b[3:], "EXFAT   ") }, want: ErrNotFAT},
		{name: "sector size 3", base: fat16, mod: func(b []byte) { le.PutUint16(b[11:], 3) }, off: 11, reason: "bytes per sector"},
		{name: "sector size 256", base: fat16, mod: func(b []byte) { le.PutUint16(b[11:], 256) }, off: 11, reason: "bytes per sector"},
		{name: "sector size 8192", base: fat16, mod: func(b []byte) { le.PutUint16(b[11:], 8192) }, off: 11, reason: "bytes per sector"},
		{name: "sector size 1536", base: fat16, mod: func(b []byte) { le.PutUint16(b[11:], 1536) }, off: 11, reason: "bytes per sector"},
		{name: "cluster of 0 sectors", base: fat16, mod: func(b []byte) { b[13] = 0 }, off: 13, reason: "sectors per cluster"},
		{name: "cluster of 3 sectors", base: fat16, mod: func(b []byte) { b[13] = 3 }, off: 13, reason: "sectors per cluster"},
		{name: "no reserved sectors", base: fat16, mod: func(b []byte) { le.PutUint16(b[14:], 0) }, off: 14, reason: "reserved"},
		{name: "no FAT", base: fat16, mod: func(b []byte) { b[16] = 0 }, off: 16, reason: "no FAT"},
		{name: "media", base: fat16, mod: func(b []byte) { b[21] = 0x12 }, off: 21, reason: "media"},
		{name: "no sectors", base: fat16, mod: func(b []byte) { le.PutUint16(b[19:], 0); le.PutUint32(b[32:], 0) }, off: 19, reason: "total sector count is zero"},
		{name: "larger than the device", base: fat16, size: int64(len(fat16.img)) - 512, off: 19, reason: "do not fit"},
		{name: "larger than the device (32-bit count)", base: fat32, size: int64(len(fat32.img)) - 1, off: 32, reason: "do not fit"},
		{name: "no data", base: fat16, mod: func(b []byte) { le.PutUint16(b[19:], dataSector16) }, off: 19, reason: "no room for data"},
		{name: "no whole cluster", base: fat12, mod: func(b []byte) {
			b[13] = 4
			le.PutUint16(b[19:], uint16(fat12.dataOff/512+3))
		}, off: 19, reason: "no whole cluster"},
		{name: "no root directory", base: fat16, mod: func(b []byte) { le.PutUint16(b[17:], 0) }, off: 17, reason: "without root directory"},
		{name: "FAT too small", base: fat16, mod: func(b []byte) { le.PutUint16(b[22:], 1) }, off: 22, reason: "too small"},
		{name: "FAT16 of 70000 clusters", base: fat16, mod: func(b []byte) {
			le.PutUint16(b[19:], 0)
			le.PutUint32(b[32:], uint32(dataSector16)+70000)
		}, size: 1 << 40, off: 22, reason: "need FAT32"},
		{name: "FAT32 FAT size zero", base: fat32, mod: func(b []byte) { le.PutUint32(b[36:], 0) }, off: 36, reason: "FAT size is zero"},
		{name: "FAT32 fixed root", base: fat32, mod: func(b []byte) { le.PutUint16(b[17:], 16) }, off: 17, reason: "fixed root"},
		{name: "FAT32 version 1.0", base: fat32, mod: func(b []byte) { le.PutUint16(b[42:], 0x100) }, want: ErrUnsupported},
		{name: "FAT32 root cluster 0", base: fat32, mod: func(b []byte) { le.PutUint32(b[44:], 0) }, off: 44, reason: "root directory cluster"},
		{name: "FAT32 root cluster past the end", base: fat32, mod: func(b []byte) { le.PutUint32(b[44:], 202) }, off: 44, reason: "root directory cluster"},
		{name: "FAT32 active FAT missing", base: fat32, mod: func(b []byte) { le.PutUint16(b[40:], 0x80|2) }, off: 40, reason: "active FAT 2 of 2"},
		{name: "FAT32 too many clusters", base: fat32, mod: func(b []byte) { le.PutUint32(b[32:], 0xffffffff) }, size: 1 << 42, off: 32, reason: "more than FAT32 numbers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := bytes.Clone(c.base.img)
			if c.mod != nil {
				c.mod(img)
			}
			size := c.size
			if size == 0 {
				size = int64(len(img))
			}
			_, err := Open(hugeReader(img), size)
			if c.want != nil {
				if !errors.Is(err, c.want) || errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open = %v, want %v", err, c.want)
				}
				return
			}
			fe := wantFormatError(t, err, "boot sector", c.off)
			if !strings.Contains(fe.Reason, c.reason) {
				t.Errorf("reason %q does not say %q", fe.Reason, c.reason)
			}
		})
	}
}

// TestFATEntryErrors corrupts the chain of EFI/redhat/grub.cfg (five
// clusters) in each way ReadFile must refuse.
func TestFATEntryErrors(t *testing.T) {
	for _, g := range allGeoms {
		t.Run(g.name, func(t *testing.T) {
			b := build(t, g.g, espTree())
			cfg := b.nodes["EFI/redhat/grub.cfg"]
			cs := cfg.clusters
			fs := b.open(t)
			bad := map[int]uint32{12: 0xff7, 16: 0xfff7, 32: 0x0ffffff7}[fs.Bits]
			eoc := map[int]uint32{12: 0xfff, 16: 0xffff, 32: 0x0fffffff}[fs.Bits]
			free := uint32(g.g.clusters) // the last cluster: unused
			for _, c := range []struct {
				name      string
				mod       func()
				structure string
				off       int64
				reason    string
			}{
				{"free", func() { b.setFAT(cs[1], 0) }, "FAT entry of cluster", fs.fatEntryOffset(cs[1]), "marked free"},
				{"bad", func() { b.setFAT(cs[1], bad) }, "FAT entry of cluster", fs.fatEntryOffset(cs[1]), "marked bad"},
				{"reserved value 1", func() { b.setFAT(cs[1], 1) }, "FAT entry of cluster", fs.fatEntryOffset(cs[1]), "next cluster 1 is not"},
				{"past the last cluster", func() { b.setFAT(cs[1], uint32(g.g.clusters)+2) }, "FAT entry of cluster", fs.fatEntryOffset(cs[1]), "is not in 2.."},
				{"reserved value below bad", func() { b.setFAT(cs[1], bad-1) }, "FAT entry of cluster", fs.fatEntryOffset(cs[1]), "is not in 2.."},
				{"loop", func() { b.setFAT(cs[4], cs[1]) }, "cluster chain from", fs.fatEntryOffset(cs[4]), "points back"},
				{"self loop", func() { b.setFAT(cs[0], cs[0]) }, "cluster chain from", fs.fatEntryOffset(cs[0]), "points back"},
				{"longer than the size", func() { b.setFAT(cs[4], free); b.setFAT(free, eoc) }, "cluster chain from", fs.fatEntryOffset(cs[4]), "longer than 5 clusters"},
				{"shorter than the size", func() { b.setFAT(cs[2], eoc) }, "directory entry", cfg.entry, "chain has 3 clusters"},
				{"first cluster 1", func() { le16(b.img, cfg.entry+26, 1); le16(b.img, cfg.entry+20, 0) }, "directory entry", cfg.entry, "first cluster 1 is not"},
				{"first cluster past the end", func() {
					le16(b.img, cfg.entry+26, uint16(g.g.clusters+2))
					le16(b.img, cfg.entry+20, uint16((g.g.clusters+2)>>16))
				}, "directory entry", cfg.entry, "is not in 2.."},
				{"no first cluster", func() { le16(b.img, cfg.entry+26, 0); le16(b.img, cfg.entry+20, 0) }, "directory entry", cfg.entry, "chain has 0 clusters"},
				{"empty with a cluster", func() { binary.LittleEndian.PutUint32(b.img[cfg.entry+28:], 0) }, "directory entry", cfg.entry, "where no cluster belongs"},
				{"size beyond the filesystem", func() { binary.LittleEndian.PutUint32(b.img[cfg.entry+28:], 0xffffffff) }, "directory entry", cfg.entry, "more than the"},
			} {
				t.Run(c.name, func(t *testing.T) {
					saved := bytes.Clone(b.img)
					defer func() { b.img = saved }()
					c.mod()
					fs := b.open(t)
					f, err := fs.Lookup("EFI/redhat/grub.cfg")
					if err != nil {
						t.Fatal(err)
					}
					_, _, err = fs.ReadFile(f, 1<<40)
					fe := wantFormatError(t, err, c.structure, c.off)
					if !strings.Contains(fe.Reason, c.reason) {
						t.Errorf("reason %q does not say %q", fe.Reason, c.reason)
					}
					// Rewrite re-reads the chain and refuses too.
					if _, err := fs.Rewrite(f, cs, grubCfg); err == nil {
						t.Error("Rewrite planned writes over a broken chain")
					}
					// The rest of the filesystem stays readable.
					f, err = fs.Lookup("EFI/redhat/grubenv")
					if err != nil {
						t.Fatal(err)
					}
					if _, _, err := fs.ReadFile(f, 1<<20); err != nil {
						t.Errorf("grubenv: %v", err)
					}
				})
			}
			// The FAT32 entry's top four bits are reserved and ignored.
			if fs.Bits == 32 {
				saved := bytes.Clone(b.img)
				le := binary.LittleEndian
				for _, c := range cs {
					o := fs.fatEntryOffset(c)
					le.PutUint32(b.img[o:], le.Uint32(b.img[o:])|0xf0000000)
				}
				fs := b.open(t)
				f, _ := fs.Lookup("EFI/redhat/grub.cfg")
				if data, _, err := fs.ReadFile(f, 1<<20); err != nil || !bytes.Equal(data, grubCfg) {
					t.Errorf("with the reserved bits set: %v", err)
				}
				b.img = saved
			}
		})
	}
}

func le16(b []byte, off int64, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }

// TestFAT12Entries checks the packing of 12-bit entries, odd and even.
func TestFAT12Entries(t *testing.T) {
	b := build(t, geomFAT12, nil)
	fs := b.open(t)
	for c := uint32(2); c < 12; c++ {
		b.setFAT(c, c+1)
	}
	b.setFAT(12, 0xfff)
	for c := uint32(2); c < 13; c++ {
		n, err := fs.next(c)
		if want := (c + 1) % 13; n != want || err != nil {
			t.Fatalf("next(%d) = %d, %v; want %d", c, n, err, want)
		}
	}
	if want := b.fatOff + 4*3/2; fs.fatEntryOffset(4) != want || fs.fatEntryOffset(5) != want+1 {
		t.Errorf("entries 4 and 5 at %d and %d", fs.fatEntryOffset(4), fs.fatEntryOffset(5))
	}
	b.setFAT(7, 0xff7)
	_, err := fs.next(7)
	wantFormatError(t, err, "FAT entry of cluster 7", b.fatOff+10)
	b.setFAT(7, 0xff8) // any of 0xFF8..0xFFF ends a chain
	if n, err := fs.next(7); n != 0 || err != nil {
		t.Errorf("next(7) = %d, %v at 0xFF8", n, err)
	}
}

func TestDirectoryErrors(t *testing.T) {
	t.Run("directory without clusters", func(t *testing.T) {
		b := build(t, geomFAT16, espTree())
		efi := b.nodes["EFI"]
		le16(b.img, efi.entry+26, 0)
		_, err := b.open(t).Lookup("EFI/redhat")
		wantFormatError(t, err, "directory entry", efi.entry)
	})
	t.Run("directory chain loops", func(t *testing.T) {
		b := build(t, geomFAT16, espTree())
		rh := b.nodes["EFI/redhat"]
		b.setFAT(rh.first, rh.first)
		fs := b.open(t)
		_, err := fs.Lookup("EFI/redhat/grub.cfg")
		fe := wantFormatError(t, err, "cluster chain from", fs.fatEntryOffset(rh.first))
		if !strings.Contains(fe.Reason, "points back") {
			t.Errorf("reason %q", fe.Reason)
		}
	})
	t.Run("FAT32 root chain loops", func(t *testing.T) {
		b := build(t, geomFAT32Small, espTree())
		b.setFAT(b.rootClus[0], b.rootClus[0])
		fs := b.open(t)
		_, err := fs.ReadDir(nil)
		wantFormatError(t, err, "cluster chain from", fs.fatEntryOffset(b.rootClus[0]))
	})
	t.Run("directory over 65536 entries", func(t *testing.T) {
		g := geomFAT16
		g.clusters = 5000
		b := build(t, g, espTree())
		rh := b.nodes["EFI/redhat"]
		// Chain the directory through 4096 more, unused clusters.
		prev := rh.first
		for c := uint32(g.clusters + 1); c > uint32(g.clusters+1-4096); c-- {
			b.setFAT(prev, c)
			prev = c
		}
		b.setFAT(prev, 0xffff)
		fs := b.open(t)
		_, err := fs.Lookup("EFI/redhat/grub.cfg")
		fe := wantFormatError(t, err, "cluster chain from", fs.fatEntryOffset(uint32(g.clusters+1-4094)))
		if !strings.Contains(fe.Reason, "longer than 4096 clusters") || !strings.Contains(fe.Reason, "65536") {
			t.Errorf("reason %q", fe.Reason)
		}
	})
	t.Run("subdirectory first cluster out of range", func(t *testing.T) {
		b := build(t, geomFAT32Small, espTree())
		rh := b.nodes["EFI/redhat"]
		le16(b.img, rh.entry+20, 0x1000)
		fs := b.open(t)
		rhf, err := fs.Lookup("EFI/redhat")
		if err != nil {
			t.Fatal(err)
		}
		_, err = fs.ReadDir(rhf)
		wantFormatError(t, err, "directory entry", rh.entry)
	})
	t.Run("FAT16 ignores the high cluster word", func(t *testing.T) {
		b := build(t, geomFAT16, espTree())
		rh := b.nodes["EFI/redhat"]
		le16(b.img, rh.entry+20, 0x1234) // OS/2 extended attributes on FAT12/16
		fs := b.open(t)
		if f, err := fs.Lookup("EFI/redhat/grub.cfg"); err != nil || f.EntryOffset != b.nodes["EFI/redhat/grub.cfg"].entry {
			t.Errorf("%+v, %v", f, err)
		}
	})
}
