package mbr

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// zeroTail reads data followed by zeros up to size bytes, so fuzz inputs
// stay small while disks are larger.
type zeroTail struct {
	data []byte
	size int64
}

func (z zeroTail) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > z.size {
		return 0, errors.New("zeroTail: read outside the disk")
	}
	clear(p)
	if off < int64(len(z.data)) {
		copy(p, z.data[off:])
	}
	return len(p), nil
}

// tinyImage is a disk made by sfdisk with every structure in its first 12
// KiB, trimmed of trailing zeros.
func tinyImage(t testing.TB) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny.img")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	sfdisk(t, path, `label: dos
label-id: 0x7e57da7a
start=2, size=4, type=83, bootable
start=8, size=100, type=5
start=10, size=3, type=8e
start=15, size=3, type=83
start=20, size=40, type=83
`)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimRight(b, "\x00")
}

// FuzzRead feeds damaged tables to Read. data is the start of a disk of
// sectors sectors (zeros after data); mode picks the sector size. Whatever Read accepts must satisfy the table invariants;
// everything else must be ErrNoTable or ErrCorrupt (a bytes.Reader over the
// whole disk never fails otherwise).
func FuzzRead(f *testing.F) {
	tiny := tinyImage(f)
	f.Add(tiny, uint16(128), uint8(0))
	f.Add(tiny, uint16(60), uint8(0))
	f.Add(tiny, uint16(128), uint8(1))
	f.Add(chainDisk(5), uint16(14), uint8(0))
	f.Add(chainDisk(MaxLogical+1), uint16(300), uint8(0))
	f.Add([]byte{}, uint16(1), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, sectors uint16, mode uint8) {
		ss := []int{512, 4096, 0}[mode%3]
		size := int64(sectors) * int64(max(ss, 512))
		size = max(size, int64(len(data)))
		tab, err := Read(zeroTail{data, size}, size, ss)
		if err != nil {
			if tab != nil {
				t.Fatal("table returned with an error")
			}
			if !errors.Is(err, ErrNoTable) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		checkInvariants(t, tab, size)
	})
}

func checkInvariants(t *testing.T, tab *Table, size int64) {
	t.Helper()
	ss := int64(tab.SectorSize)
	if tab.Protective && len(tab.Partitions) != 0 {
		t.Fatal("protective table with partitions")
	}
	if len(tab.Partitions) > 4+MaxLogical {
		t.Fatalf("%d partitions", len(tab.Partitions))
	}
	for i, p := range tab.Partitions {
		if i > 0 && p.Number <= tab.Partitions[i-1].Number {
			t.Fatal("partitions out of order")
		}
		if p.Logical != (p.Number >= 5) || p.Number < 1 || p.Type == 0 || p.Sectors == 0 || p.StartLBA == 0 {
			t.Fatalf("bad partition %+v", p)
		}
		if p.Start != int64(p.StartLBA)*ss || p.Size != int64(p.Sectors)*ss || p.Start+p.Size > size {
			t.Fatalf("bad offset/size %+v", p)
		}
		if got, ok := tab.Partition(p.Number); !ok || got != p {
			t.Fatalf("Partition(%d) = %+v", p.Number, got)
		}
		for _, q := range tab.Partitions[:i] {
			if p.Logical && IsExtended(q.Type) && !q.Logical {
				continue
			}
			if p.StartLBA < q.StartLBA+q.Sectors && q.StartLBA < p.StartLBA+p.Sectors {
				t.Fatalf("partitions %d and %d overlap", q.Number, p.Number)
			}
		}
	}
}
