package mbr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func putEntry(b []byte, off int, status, typ byte, start, sectors uint32) {
	e := b[off : off+entrySize]
	clear(e)
	e[0], e[4] = status, typ
	binary.LittleEndian.PutUint32(e[8:], start)
	binary.LittleEndian.PutUint32(e[12:], sectors)
}

func entryOff(lba uint64, i int) int { return int(lba)*512 + entriesOffset + (i-1)*entrySize }

// ebrLBAs returns the EBR chain of the small image, read from the bytes.
func ebrLBAs(img []byte) []uint64 {
	const base = 40
	lbas := []uint64{base}
	for {
		link := parseEntry(img[entryOff(lbas[len(lbas)-1], 2):])
		if link.Type == 0 {
			return lbas
		}
		lbas = append(lbas, base+uint64(link.StartLBA))
	}
}

func TestSmallImage(t *testing.T) {
	img := smallImage(t)
	tab, err := Read(bytes.NewReader(img), int64(len(img)), 512)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, p := range tab.Partitions {
		got = append(got, p.Number)
	}
	if len(got) != 5 || got[2] != 5 || got[4] != 7 {
		t.Errorf("numbers %v", got)
	}
	if n := len(ebrLBAs(img)); n != 3 {
		t.Fatalf("sfdisk wrote %d EBRs", n)
	}
}

func TestCorrupt(t *testing.T) {
	orig := smallImage(t)
	ebrs := ebrLBAs(orig)
	tests := []struct {
		name   string
		mutate func(b []byte)
		want   string
		size   int64 // 0: len(b)
	}{
		{"overlap", func(b []byte) { putEntry(b, entryOff(0, 3), 0, 0x83, 10, 5) },
			"mbr: MBR entry 3 at offset 478: sectors 10-14 overlap partition 1 (sectors 4-23)", 0},
		{"overlap extended", func(b []byte) { putEntry(b, entryOff(0, 3), 0, 0x83, 200, 20) },
			"mbr: MBR entry 3 at offset 478: sectors 200-219 overlap partition 2 (sectors 40-239)", 0},
		{"past end", func(b []byte) { putEntry(b, entryOff(0, 3), 0, 0x83, 250, 7) },
			"mbr: MBR entry 3 at offset 478: sectors 250-256 extend past the end of the disk (256 sectors)", 0},
		{"disk cut", func(b []byte) {}, "mbr: MBR entry 2 at offset 462: sectors 40-239 extend past the end of the disk (200 sectors)", 200*512 + 100},
		{"zero sectors", func(b []byte) { putEntry(b, entryOff(0, 4), 0, 0x8e, 250, 0) },
			"mbr: MBR entry 4 at offset 494: type 0x8e with zero sectors", 0},
		{"at LBA 0", func(b []byte) { putEntry(b, entryOff(0, 4), 0, 0x83, 0, 2) },
			"partition starts at LBA 0", 0},
		{"bad status", func(b []byte) { b[entryOff(0, 1)] = 0x81 }, "MBR entry 1 at offset 446: invalid status byte 0x81", 0},
		{"logical past extended", func(b []byte) { putEntry(b, entryOff(ebrs[2], 1), 0, 0x83, 1, 130) },
			"extend past the extended partition 2", 0},
		{"logical overlap", func(b []byte) { putEntry(b, entryOff(ebrs[1], 1), 0, 0x83, uint32(159-ebrs[1]), 5) },
			"logical partition 7 at offset " + itoa(ebrs[2]*512+446) + ": sectors 120-159 overlap partition 6 (sectors 159-163)", 0},
		{"logical covers EBR", func(b []byte) { putEntry(b, entryOff(ebrs[0], 1), 0, 0x83, 2, uint32(ebrs[1]-40)) },
			"link to LBA " + itoa(ebrs[1]) + " inside logical partition 5", 0},
		{"logical covers earlier EBR", func(b []byte) {
			// Chain order 40, e2, e1; the logical after e1 reaches over e2.
			e1, e2 := ebrs[1], ebrs[2]
			putEntry(b, entryOff(40, 2), 0, 0x05, uint32(e2-40), 10)
			putEntry(b, entryOff(e2, 2), 0, 0x05, uint32(e1-40), 10)
			putEntry(b, entryOff(e1, 2), 0, 0, 0, 0)
			putEntry(b, entryOff(e1, 1), 0, 0x83, 1, uint32(e2-e1+5))
		}, "EBR at LBA " + itoa(ebrs[1]) + " entry 1 at offset " + itoa(ebrs[1]*512+446) + ": logical partition sectors", 0},
		{"EBR loop", func(b []byte) {
			// The last EBR links back to the second one.
			putEntry(b, entryOff(ebrs[2], 2), 0, 0x05, uint32(ebrs[1]-40), 10)
		}, "EBR chain loops back", 0},
		{"EBR self loop", func(b []byte) { putEntry(b, entryOff(ebrs[1], 2), 0, 0x05, uint32(ebrs[1]-40), 10) },
			"EBR chain loops back", 0},
		{"link outside", func(b []byte) { putEntry(b, entryOff(ebrs[0], 2), 0, 0x05, 199, 10) },
			"outside the extended partition 2", 0},
		{"linked EBR unsigned", func(b []byte) { b[int(ebrs[2])*512+510] = 0 },
			"EBR at LBA " + itoa(ebrs[2]) + " at offset " + itoa(ebrs[2]*512) + ": no 0x55AA signature", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(orig)
			tc.mutate(b)
			size := tc.size
			if size == 0 {
				size = int64(len(b))
			}
			tab, err := Read(bytes.NewReader(b), size, 512)
			if err == nil {
				t.Fatalf("no error: %+v", tab)
			}
			var fe *FormatError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &fe) || tab != nil {
				t.Fatalf("error %v is not a FormatError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant %q", err, tc.want)
			}
		})
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// chainDisk hand-crafts a disk whose extended partition at LBA 2 holds n
// logical partitions of one sector each, EBR i at LBA 2+2i.
func chainDisk(n int) []byte {
	sectors := 2 + 2*n + 2
	b := make([]byte, sectors*512)
	b[510], b[511] = 0x55, 0xAA
	putEntry(b, entryOff(0, 1), 0, 0x05, 2, uint32(2*n))
	for i := range n {
		ebr := uint64(2 + 2*i)
		b[ebr*512+510], b[ebr*512+511] = 0x55, 0xAA
		putEntry(b, entryOff(ebr, 1), 0, 0x83, 1, 1)
		if i+1 < n {
			putEntry(b, entryOff(ebr, 2), 0, 0x05, uint32(2*(i+1)), 2)
		}
	}
	return b
}

func TestChainBound(t *testing.T) {
	b := chainDisk(MaxLogical)
	tab, err := Read(bytes.NewReader(b), int64(len(b)), 512)
	if err != nil {
		t.Fatalf("chain of %d: %v", MaxLogical, err)
	}
	last := tab.Partitions[len(tab.Partitions)-1]
	if len(tab.Partitions) != MaxLogical+1 || last.Number != 4+MaxLogical || last.StartLBA != uint64(2+2*(MaxLogical-1)+1) {
		t.Errorf("%d partitions, last %+v", len(tab.Partitions), last)
	}
	b = chainDisk(MaxLogical + 1)
	_, err = Read(bytes.NewReader(b), int64(len(b)), 512)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "EBR chain longer than 128") {
		t.Errorf("chain of %d: %v", MaxLogical+1, err)
	}
}

func TestEmptyExtended(t *testing.T) {
	// An extended partition whose first EBR is blank holds no logicals.
	b := make([]byte, 64*512)
	b[510], b[511] = 0x55, 0xAA
	putEntry(b, entryOff(0, 2), 0x80, 0x0F, 8, 32)
	tab, err := Read(bytes.NewReader(b), int64(len(b)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Partitions) != 1 || tab.Partitions[0].Number != 2 || !tab.Partitions[0].Bootable {
		t.Errorf("%+v", tab.Partitions)
	}
}

func TestShortReads(t *testing.T) {
	img := smallImage(t)
	if _, err := Read(bytes.NewReader(img[:100]), int64(len(img)), 512); err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNoTable) {
		t.Errorf("truncated reader: %v", err)
	}
	if _, err := Read(bytes.NewReader(img), 100, 512); !errors.Is(err, ErrNoTable) {
		t.Errorf("disk smaller than a sector: %v", err)
	}
	if _, err := Read(bytes.NewReader(img), int64(len(img)), 1000); err == nil {
		t.Error("sector size 1000 accepted")
	}
}
