package gpt

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

func applyWrites(t testing.TB, path string, size int64, ws []Write) {
	t.Helper()
	f := openRW(t, path)
	for _, w := range ws {
		if w.Offset < 0 || w.Offset+int64(len(w.Data)) > size {
			t.Fatalf("write of %d bytes at %d outside the %d-byte disk", len(w.Data), w.Offset, size)
		}
		writeBytes(t, f, w.Offset, w.Data)
	}
}

func TestRelocate(t *testing.T) {
	testenv.Need(t, "sgdisk")
	const ss = 512
	const oldLast = smallDisk/ss - 1
	cases := []struct {
		name    string
		grow    int64
		early   bool // grow the file before Read (backup no longer at the end)
		damage  func(t *testing.T, path string)
		zeroLBA []int64 // old backup sectors that must read as zero afterwards
	}{
		{name: "grow 3 MiB", grow: 3 << 20, zeroLBA: []int64{oldLast, oldLast - 32, oldLast - 1}},
		{name: "grow one sector", grow: ss, zeroLBA: []int64{oldLast - 32}},
		{name: "same size", grow: 0},
		{name: "grown before Read", grow: 3 << 20, early: true, zeroLBA: []int64{oldLast, oldLast - 32}},
		{name: "primary header damaged", grow: 3 << 20, damage: func(t *testing.T, p string) { flipByte(t, p, ss+60) }, zeroLBA: []int64{oldLast}},
		{name: "primary array damaged", grow: 3 << 20, damage: func(t *testing.T, p string) { flipByte(t, p, 2*ss+7) }, zeroLBA: []int64{oldLast}},
		{name: "backup header damaged", grow: 3 << 20, damage: func(t *testing.T, p string) { flipByte(t, p, oldLast*ss+60) }, zeroLBA: []int64{oldLast}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := makeSmallDisk(t)
			pristine := mustRead(t, path)
			if c.damage != nil {
				c.damage(t, path)
			}
			newSize := int64(smallDisk) + c.grow
			if c.early {
				if err := os.Truncate(path, newSize); err != nil {
					t.Fatal(err)
				}
			}
			before := mustRead(t, path)
			if (c.damage != nil || c.early) && len(before.Warnings) == 0 {
				t.Fatal("damage went unnoticed")
			}
			if err := os.Truncate(path, newSize); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ws, err := before.Relocate(f, newSize)
			if err != nil {
				t.Fatalf("Relocate: %v", err)
			}
			applyWrites(t, path, newSize, ws)

			if ok, out := sgdiskVerify(t, path); !ok {
				t.Errorf("sgdisk -v after Relocate:\n%s", out)
			}
			after := mustRead(t, path)
			if len(after.Warnings) != 0 {
				t.Errorf("warnings after Relocate: %q", after.Warnings)
			}
			compareWithSgdisk(t, after, sgdiskTable(t, path))
			newLast := uint64(newSize/ss - 1)
			if after.Primary == nil || after.Backup == nil || after.Backup.MyLBA != newLast || after.Header.AlternateLBA != newLast {
				t.Errorf("after Relocate: Primary %v, Backup %v, want the backup at %d", after.Primary, after.Backup, newLast)
			}
			p, b := pristine.Header, after.Header
			if b.LastUsableLBA != p.LastUsableLBA || b.FirstUsableLBA != p.FirstUsableLBA || b.DiskGUID != p.DiskGUID ||
				b.PartitionEntryArrayCRC32 != p.PartitionEntryArrayCRC32 || b.PartitionEntryLBA != 2 {
				t.Errorf("header changed beyond AlternateLBA:\n%+v\n%+v", p, b)
			}
			if !reflect.DeepEqual(after.Partitions, pristine.Partitions) {
				t.Errorf("partitions changed:\n%+v\n%+v", after.Partitions, pristine.Partitions)
			}
			// The protective MBR now covers the grown disk (sgdisk wrote it
			// for the old size).
			mbr := readBytes(t, f, 446, 16)
			if mbr[4] != 0xEE || binary.LittleEndian.Uint32(mbr[12:]) != uint32(newLast) {
				t.Errorf("protective MBR entry % x, want size %d", mbr, newLast)
			}
			for _, lba := range c.zeroLBA {
				if s := readBytes(t, f, lba*ss, ss); !bytes.Equal(s, make([]byte, ss)) {
					t.Errorf("old backup sector %d not zeroed", lba)
				}
			}
		})
	}
}

func TestRelocateErrors(t *testing.T) {
	path := makeSmallDisk(t)
	tab := mustRead(t, path)
	f := openRW(t, path)
	for _, size := range []int64{smallDisk - 512, smallDisk + 100} {
		if _, err := tab.Relocate(f, size); err == nil {
			t.Errorf("Relocate(%d) succeeded", size)
		}
	}
	// The disk changed under the table.
	writeBytes(t, f, 2*512+60, []byte{'Z'})
	if _, err := tab.Relocate(f, smallDisk+1<<20); err == nil || !strings.Contains(err.Error(), "changed since Read") {
		t.Errorf("Relocate after a change = %v", err)
	}
}

func TestSubtractRange(t *testing.T) {
	for _, c := range []struct {
		a, b [2]uint64
		want [][2]uint64
	}{
		{[2]uint64{10, 20}, [2]uint64{30, 40}, [][2]uint64{{10, 20}}},
		{[2]uint64{10, 20}, [2]uint64{15, 40}, [][2]uint64{{10, 14}}},
		{[2]uint64{10, 20}, [2]uint64{0, 12}, [][2]uint64{{13, 20}}},
		{[2]uint64{10, 20}, [2]uint64{12, 13}, [][2]uint64{{10, 11}, {14, 20}}},
		{[2]uint64{10, 20}, [2]uint64{10, 20}, nil},
	} {
		if got := subtractRange(c.a, c.b); !reflect.DeepEqual(got, c.want) {
			t.Errorf("subtractRange(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestRelocateBackupWithoutEntries: a backup header that lists no entries leaves its entry-array
// pointer unchecked, so it may hold anything; here an LBA whose byte offset wraps round to sector 100,
// inside the usable range. Relocate zeroes only the old backup's sectors, never that one, and writes
// nothing outside the grown disk (found by FuzzRead).
func TestRelocateBackupWithoutEntries(t *testing.T) {
	head, tail := loadSmallFixture(t)
	disk := &sparseDisk{size: smallFixtureSize}
	disk.write(0, head)
	disk.write(smallFixtureSize-int64(len(tail)), tail)
	last := int64(smallFixtureSize - 512)
	hdr := make([]byte, 512)
	disk.ReadAt(hdr, last)
	le := binary.LittleEndian
	le.PutUint64(hdr[72:], 1<<55+100) // × 512 = 2^64 + 51200
	le.PutUint32(hdr[80:], 0)
	le.PutUint32(hdr[88:], crc32.ChecksumIEEE(nil))
	disk.write(last, hdr)
	fixDiskCRCs(disk, 512)

	tab, err := Read(disk, disk.size, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Backup == nil || tab.Backup.NumPartitionEntries != 0 {
		t.Fatalf("backup %+v: want the header with no entries, as read", tab.Backup)
	}
	const newSize = 2 << 20
	ws, err := tab.Relocate(disk, newSize)
	if err != nil {
		t.Fatal(err)
	}
	usable := [2]int64{int64(tab.Header.FirstUsableLBA) * 512, int64(tab.Header.LastUsableLBA+1) * 512}
	for _, w := range ws {
		end := w.Offset + int64(len(w.Data))
		if w.Offset < 0 || end > newSize || (w.Offset < usable[1] && end > usable[0]) {
			t.Errorf("write of %d bytes at %d: outside the disk of %d bytes or inside the usable range %v", len(w.Data), w.Offset, int64(newSize), usable)
		}
	}
}
