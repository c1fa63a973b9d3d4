package mbr

// Disks are partitioned with sfdisk (util-linux, Debian package fdisk) and
// Read is compared with sfdisk --json, a reader nobody here wrote.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// sfdisk partitions dev (a file or loop device) from script.
func sfdisk(t testing.TB, dev, script string) {
	t.Helper()
	testenv.Need(t, "sfdisk")
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", dev)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk %s: %v\n%s\nscript:\n%s", dev, err, out, script)
	}
}

type sfTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    uint64 `json:"start"`
			Size     uint64 `json:"size"`
			Type     string `json:"type"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

var reNodeNum = regexp.MustCompile(`(\d+)$`)

// sfdiskJSON returns sfdisk's view of dev.
func sfdiskJSON(t testing.TB, dev string) sfTable {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", dev).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", dev, err)
	}
	var st sfTable
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	if st.PartitionTable.Label != "dos" {
		t.Fatalf("sfdisk label %q", st.PartitionTable.Label)
	}
	return st
}

// compareWithSfdisk checks every field of tab against sfdisk's view.
func compareWithSfdisk(t *testing.T, tab *Table, st sfTable) {
	t.Helper()
	pt := st.PartitionTable
	if want := fmt.Sprintf("0x%08x", tab.DiskSignature); want != pt.ID {
		t.Errorf("disk signature %s, sfdisk %s", want, pt.ID)
	}
	if tab.SectorSize != pt.SectorSize {
		t.Errorf("sector size %d, sfdisk %d", tab.SectorSize, pt.SectorSize)
	}
	if tab.Protective {
		t.Error("Protective set")
	}
	if len(tab.Partitions) != len(pt.Partitions) {
		t.Fatalf("%d partitions, sfdisk %d: %+v", len(tab.Partitions), len(pt.Partitions), tab.Partitions)
	}
	ss := int64(pt.SectorSize)
	for i, sp := range pt.Partitions {
		n, _ := strconv.Atoi(reNodeNum.FindString(sp.Node))
		typ, err := strconv.ParseUint(sp.Type, 16, 8)
		if err != nil {
			t.Fatalf("sfdisk type %q", sp.Type)
		}
		want := Partition{
			Number: n, Type: byte(typ), Bootable: sp.Bootable,
			Start: int64(sp.Start) * ss, Size: int64(sp.Size) * ss,
			StartLBA: sp.Start, Sectors: sp.Size, Logical: n >= 5,
		}
		if got := tab.Partitions[i]; got != want {
			t.Errorf("partition %d:\n got  %+v\n want %+v (sfdisk)", i, got, want)
		}
		if got, ok := tab.Partition(n); !ok || got != want {
			t.Errorf("Partition(%d) = %+v, %v", n, got, ok)
		}
	}
}

func readPath(t testing.TB, path string, ss int) (*Table, error) {
	t.Helper()
	f, size := testenv.Open(t, path)
	return Read(f, size, ss)
}

// rhel7Script is laid out like an older RHEL 7 Azure image plus logicals:
// bootable /boot, an LVM primary, slot 3 empty, an extended partition in
// slot 4 with three logicals.
const rhel7Script = `label: dos
label-id: 0x1234abcd
disk.img1 : start=2048, size=16384, type=83, bootable
disk.img2 : start=18432, size=32768, type=8e
disk.img4 : start=53248, size=73728, type=5
disk.img5 : start=55296, size=8192, type=83
disk.img6 : start=65536, size=8192, type=8e
disk.img7 : start=75776, size=20480, type=82
`

func TestSfdisk512(t *testing.T) {
	path := testenv.SparseFile(t, t.TempDir(), "disk.img", 64<<20)
	sfdisk(t, path, rhel7Script)
	tab, err := readPath(t, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	compareWithSfdisk(t, tab, sfdiskJSON(t, path))
	if _, ok := tab.Partition(3); ok {
		t.Error("empty slot 3 returned")
	}
	if p, _ := tab.Partition(1); !p.Bootable || p.Type != 0x83 || p.Start != 1<<20 {
		t.Errorf("partition 1 %+v", p)
	}
}

func TestSfdiskDefaultsAndExtendedTypes(t *testing.T) {
	// sfdisk's own placement, extended type 0x0F (LBA) and a 0x85 chain.
	for _, ext := range []string{"f", "85"} {
		path := testenv.SparseFile(t, t.TempDir(), "disk.img", 32<<20)
		sfdisk(t, path, "label: dos\n,4M,83,*\n,,"+ext+"\n,4M,8e\n,4M,83\n,,83\n")
		tab, err := readPath(t, path, 0)
		if err != nil {
			t.Fatal(err)
		}
		st := sfdiskJSON(t, path)
		compareWithSfdisk(t, tab, st)
		if len(tab.Partitions) != 5 {
			t.Errorf("type %s: %d partitions", ext, len(tab.Partitions))
		}
	}
}

func TestSfdisk4KSectors(t *testing.T) {
	testenv.Need(t, "sfdisk")
	path := testenv.SparseFile(t, t.TempDir(), "disk.img", 64<<20)
	dev, detach := testenv.AttachLoop(t, path, "--sector-size", "4096")
	sfdisk(t, dev, `label: dos
label-id: 0x0badf00d
start=256, size=2048, type=83, bootable
start=2304, size=4096, type=8e
start=6400, size=8192, type=5
start=6656, size=1024, type=83
start=7936, size=1024, type=8e
start=9216, size=2048, type=83
`)
	st := sfdiskJSON(t, dev)
	detach()
	if st.PartitionTable.SectorSize != 4096 {
		t.Fatalf("sfdisk sees %d-byte sectors on %s", st.PartitionTable.SectorSize, dev)
	}
	// sfdisk --json names loop partitions loopNp5; the trailing digits are the number.
	tab, err := readPath(t, path, 4096)
	if err != nil {
		t.Fatal(err)
	}
	compareWithSfdisk(t, tab, st)
	if len(tab.Partitions) != 6 {
		t.Errorf("%d partitions", len(tab.Partitions))
	}
	// Read as 512-byte sectors, the 4096-byte table is invalid or different.
	if tab512, err := readPath(t, path, 512); err == nil && len(tab512.Partitions) == 6 && tab512.Partitions[0].Start == tab.Partitions[0].Start {
		t.Error("4096-byte table reads the same with 512-byte sectors")
	}
}

func TestProtectiveMBR(t *testing.T) {
	testenv.Need(t, "sgdisk")
	path := testenv.SparseFile(t, t.TempDir(), "disk.img", 8<<20)
	testenv.Run(t, "sgdisk", "-n", "1:0:0", path)
	tab, err := readPath(t, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !tab.Protective || len(tab.Partitions) != 0 {
		t.Errorf("GPT disk: %+v", tab)
	}
}

// smallImage builds a 128 KiB disk with sfdisk: tiny partitions placed by
// hand, so the whole disk can seed the fuzzer.
func smallImage(t testing.TB) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "small.img")
	if err := os.WriteFile(path, make([]byte, 128<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	sfdisk(t, path, `label: dos
label-id: 0xcafe0001
start=4, size=20, type=83, bootable
start=40, size=200, type=f
start=42, size=30, type=8e
start=80, size=30, type=83
start=120, size=40, type=7
`)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNoSignature(t *testing.T) {
	path := testenv.SparseFile(t, t.TempDir(), "blank.img", 1<<20)
	if _, err := readPath(t, path, 0); !errors.Is(err, ErrNoTable) {
		t.Errorf("blank disk: %v, want ErrNoTable", err)
	}
	if _, err := readPath(t, path, 0); errors.Is(err, ErrCorrupt) {
		t.Error("ErrNoTable is ErrCorrupt")
	}
}
