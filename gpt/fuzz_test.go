package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"hash/crc32"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// The small fixture is a 1 MiB 512-byte-sector disk made by sgdisk with a
// 4-entry table, stored compactly: its first 3 sectors (protective MBR,
// primary header, primary array) and its last 2 (backup array, backup
// header); everything between is zero. TestSmallFixture rebuilds it with
// sgdisk and checks it byte for byte; go test -run SmallFixture -update
// rewrites it.
const (
	smallFixtureSize = 1 << 20
	smallHeadFile    = "testdata/small-1MiB.head"
	smallTailFile    = "testdata/small-1MiB.tail"
)

var smallFixtureArgs = []string{
	"-S", "4", "-U", "6c1e6a06-9d0f-4b8e-9f3a-2f1d5c7b8a90",
	"-n", "1:34:+100K", "-t", "1:EF00", "-c", "1:ESP", "-u", "1:0b1e5c2d-3f4a-4b6c-8d7e-9f0a1b2c3d4e",
	"-n", "2:0:0", "-t", "2:8309", "-c", "2:crypt ü", "-u", "2:11111111-2222-4333-8444-555555555555",
}

var update = flag.Bool("update", false, "rewrite testdata from sgdisk")

// sparseDisk is a zeroed disk with a list of writes on top, so fuzzing does
// not allocate whole disks.
type sparseDisk struct {
	size   int64
	writes []Write
}

func (d *sparseDisk) write(off int64, b []byte) {
	if len(b) > 0 {
		// Clip to the disk; copy so later writes cannot alias the input.
		if off+int64(len(b)) > d.size {
			b = b[:max(0, d.size-off)]
		}
		d.writes = append(d.writes[:len(d.writes):len(d.writes)], Write{off, append([]byte(nil), b...)})
	}
}

func (d *sparseDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, errors.New("sparseDisk: read outside the disk")
	}
	clear(p)
	for _, w := range d.writes {
		lo, hi := max(off, w.Offset), min(off+int64(len(p)), w.Offset+int64(len(w.Data)))
		if lo < hi {
			copy(p[lo-off:hi-off], w.Data[lo-w.Offset:hi-w.Offset])
		}
	}
	return len(p), nil
}

// fixDiskCRCs recomputes the array and header CRCs of the headers at LBA 1
// and at the last LBA, where the values found there allow it.
func fixDiskCRCs(d *sparseDisk, ss int64) {
	le := binary.LittleEndian
	for _, off := range []int64{ss, (d.size/ss - 1) * ss} {
		if off < ss {
			continue
		}
		hdr := make([]byte, ss)
		if _, err := d.ReadAt(hdr, off); err != nil {
			continue
		}
		n, es, lba := int64(le.Uint32(hdr[80:])), int64(le.Uint32(hdr[84:])), le.Uint64(hdr[72:])
		if n <= 1<<16 && es <= 1<<16 && n*es <= 1<<20 && lba < uint64(d.size/ss) && int64(lba)*ss+n*es <= d.size {
			arr := make([]byte, n*es)
			d.ReadAt(arr, int64(lba)*ss)
			le.PutUint32(hdr[88:], crc32.ChecksumIEEE(arr))
		}
		if hs := int64(le.Uint32(hdr[12:])); hs >= 92 && hs <= ss {
			le.PutUint32(hdr[16:], 0)
			le.PutUint32(hdr[16:], crc32.ChecksumIEEE(hdr[:hs]))
		}
		d.write(off, hdr)
	}
}

// expand places head at the start and tail at the end of a zeroed disk.
func expand(head, tail []byte, size int64) []byte {
	d := make([]byte, size)
	copy(d[size-int64(min(len(tail), int(size))):], tail)
	copy(d, head)
	return d
}

func loadSmallFixture(t testing.TB) (head, tail []byte) {
	t.Helper()
	head, err := os.ReadFile(smallHeadFile)
	if err != nil {
		t.Fatal(err)
	}
	tail, err = os.ReadFile(smallTailFile)
	if err != nil {
		t.Fatal(err)
	}
	return head, tail
}

func TestSmallFixture(t *testing.T) {
	testenv.Need(t, "sgdisk")
	path := newDisk(t, smallFixtureSize, smallFixtureArgs...)
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(smallHeadFile, img[:3*512], 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(smallTailFile, img[len(img)-2*512:], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	head, tail := loadSmallFixture(t)
	if !bytes.Equal(expand(head, tail, smallFixtureSize), img) {
		t.Fatal("testdata small fixture differs from what sgdisk builds now (run with -update?)")
	}
	if ok, out := sgdiskVerify(t, path); !ok {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	tab, err := Read(bytes.NewReader(img), smallFixtureSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	compareWithSgdisk(t, tab, sgdiskTable(t, path))
}

// FuzzRead feeds damaged tables to Read: head and tail are placed at the
// start and end of a zeroed disk of the given number of sectors. Whatever
// Read accepts must satisfy the table invariants, and relocating it must
// give a disk that reads back clean with the same partitions.
func FuzzRead(f *testing.F) {
	head, tail := loadSmallFixture(f)
	f.Add(head, tail, uint16(2048), uint8(0))
	f.Add(head, tail, uint16(2048), uint8(1))
	f.Add(head, tail, uint16(2047), uint8(0)) // backup cut off
	f.Add(head, tail, uint16(3000), uint8(0)) // grown: backup not at the end
	f.Add(head, []byte{}, uint16(2048), uint8(0))
	f.Add([]byte{}, tail, uint16(2048), uint8(0))
	f.Add(head, tail, uint16(100), uint8(2))
	f.Add(head, tail, uint16(2048), uint8(4)) // CRCs fixed after mutation
	f.Add(head, tail, uint16(2047), uint8(4))
	f.Fuzz(func(t *testing.T, head, tail []byte, sectors uint16, mode uint8) {
		ss := []int{0, 512, 4096}[mode%3]
		unit, n := int64(512), int64(sectors%4096)
		if ss == 4096 {
			unit, n = 4096, int64(sectors%1024)
		}
		size := n * unit
		disk := &sparseDisk{size: size}
		disk.write(max(0, size-int64(len(tail))), tail)
		disk.write(0, head)
		if mode&4 != 0 {
			// Let mutations past the CRCs so the deeper checks get fuzzed.
			fixDiskCRCs(disk, max(int64(ss), 512))
		}
		tab, err := Read(disk, size, ss)
		if err != nil {
			if tab != nil {
				t.Fatal("table returned with an error")
			}
			if !errors.Is(err, ErrNoGPT) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		checkInvariants(t, tab, size)

		newSize := (size/(1<<20) + 1) << 20
		ws, err := tab.Relocate(disk, newSize)
		if err != nil {
			if strings.Contains(err.Error(), "changed since Read") {
				t.Fatalf("Relocate: %v", err)
			}
			return
		}
		grown := &sparseDisk{size: newSize, writes: disk.writes}
		for _, w := range ws {
			if w.Offset < 0 || w.Offset+int64(len(w.Data)) > newSize {
				t.Fatalf("write of %d bytes at %d outside the disk", len(w.Data), w.Offset)
			}
			grown.write(w.Offset, w.Data)
		}
		tab2, err := Read(grown, newSize, tab.SectorSize)
		if err != nil {
			t.Fatalf("Read after Relocate: %v", err)
		}
		checkInvariants(t, tab2, newSize)
		if tab2.Primary == nil || tab2.Backup == nil || tab2.Backup.MyLBA != uint64(newSize/int64(tab.SectorSize)-1) {
			t.Fatalf("after Relocate: primary %v backup %v, warnings %q", tab2.Primary, tab2.Backup, tab2.Warnings)
		}
		for _, w := range tab2.Warnings {
			if !strings.Contains(w, "protective MBR") {
				t.Fatalf("warning after Relocate: %s", w)
			}
		}
		if !reflect.DeepEqual(tab.Partitions, tab2.Partitions) {
			t.Fatalf("partitions changed by Relocate:\n%+v\n%+v", tab.Partitions, tab2.Partitions)
		}
	})
}

func checkInvariants(t *testing.T, tab *Table, size int64) {
	t.Helper()
	ss := int64(tab.SectorSize)
	if ss != 512 && ss != 4096 {
		t.Fatalf("sector size %d", ss)
	}
	h := tab.Header
	if h.FirstUsableLBA > h.LastUsableLBA || int64(h.LastUsableLBA) >= size/ss {
		t.Fatalf("usable range %d-%d on a %d-sector disk", h.FirstUsableLBA, h.LastUsableLBA, size/ss)
	}
	if tab.Primary != nil {
		if *tab.Primary != h {
			t.Fatal("Header is not the primary")
		}
	} else if tab.Backup == nil || *tab.Backup != h {
		t.Fatal("Header is neither copy")
	}
	for i, p := range tab.Partitions {
		if i > 0 && p.Number <= tab.Partitions[i-1].Number {
			t.Fatal("partitions not in entry order")
		}
		if p.Type.IsZero() || p.FirstLBA < h.FirstUsableLBA || p.LastLBA > h.LastUsableLBA || p.FirstLBA > p.LastLBA {
			t.Fatalf("bad partition %+v", p)
		}
		if p.Offset != int64(p.FirstLBA)*ss || p.Size != int64(p.LastLBA-p.FirstLBA+1)*ss || p.Offset+p.Size > size {
			t.Fatalf("bad offset/size %+v", p)
		}
		for _, q := range tab.Partitions[:i] {
			if p.FirstLBA <= q.LastLBA && q.FirstLBA <= p.LastLBA {
				t.Fatalf("partitions %d and %d overlap", q.Number, p.Number)
			}
		}
	}
}

func TestOddDiskSize(t *testing.T) {
	head, tail := loadSmallFixture(t)
	disk := &sparseDisk{size: smallFixtureSize + 100}
	disk.write(0, head)
	disk.write(smallFixtureSize-int64(len(tail)), tail)
	tab, err := Read(disk, disk.size, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Warnings) != 1 || !strings.Contains(tab.Warnings[0], "disk size 1048676 is not a multiple of the 512-byte sector size; ignoring the last 100 bytes") {
		t.Errorf("warnings %q", tab.Warnings)
	}
	if tab.Backup == nil || tab.Backup.MyLBA != 2047 {
		t.Errorf("backup %+v", tab.Backup)
	}
	if _, err := tab.Relocate(disk, disk.size); err == nil {
		t.Error("Relocate to a size that is not a sector multiple succeeded")
	}
}
