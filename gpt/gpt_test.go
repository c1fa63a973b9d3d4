package gpt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

func TestGUID(t *testing.T) {
	// The ESP type GUID as sgdisk stores it in an entry (xxd of a real disk).
	disk := GUID{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
	const text = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
	if s := disk.String(); s != text {
		t.Errorf("String = %s, want %s", s, text)
	}
	for _, in := range []string{text, strings.ToUpper(text)} {
		g, err := ParseGUID(in)
		if err != nil || g != disk {
			t.Errorf("ParseGUID(%q) = %x, %v; want %x", in, g, err, disk)
		}
	}
	for _, bad := range []string{"", text[:35], text + "0", "{" + text[:35], strings.Replace(text, "-", "_", 1), "g" + text[1:]} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) succeeded", bad)
		}
	}
	if TypeEFISystem != disk || TypeName(TypeEFISystem) != "EFI System" || TypeName(GUID{1}) != "" || TypeName(TypeUnused) != "" {
		t.Error("TypeEFISystem/TypeName mismatch")
	}
}

// typeCases maps sgdisk type codes to this package's constants and names.
var typeCases = []struct {
	code string
	typ  GUID
	name string
}{
	{"EF02", TypeBIOSBoot, "BIOS boot"},
	{"EF00", TypeEFISystem, "EFI System"},
	{"0700", TypeMicrosoftBasicData, "Microsoft basic data"},
	{"8E00", TypeLinuxLVM, "Linux LVM"},
	{"8300", TypeLinuxFilesystem, "Linux filesystem"},
	{"8309", TypeLinuxLUKS, "Linux LUKS"},
	{"8308", TypeLinuxDMCrypt, "Linux plain dm-crypt"},
	{"8200", TypeLinuxSwap, "Linux swap"},
	{"EA00", TypeLinuxExtendedBoot, "Linux extended boot"},
	{"8304", TypeLinuxRootX8664, "Linux root (x86-64)"},
	{"8303", TypeLinuxRootX86, "Linux root (x86)"},
	{"8305", TypeLinuxRootARM64, "Linux root (ARM-64)"},
	{"8314", TypeLinuxUsrX8664, "Linux /usr (x86-64)"},
	{"8316", TypeLinuxUsrARM64, "Linux /usr (ARM-64)"},
	{"8302", TypeLinuxHome, "Linux home"},
	{"8306", TypeLinuxServerData, "Linux server data"},
	{"8310", TypeLinuxVariableData, "Linux variable data"},
	{"8311", TypeLinuxTemporary, "Linux temporary data"},
	{"8301", TypeLinuxReserved, "Linux reserved"},
	{"FD00", TypeLinuxRAID, "Linux RAID"},
	{"0C01", TypeMicrosoftReserved, "Microsoft reserved"},
	{"2700", TypeWindowsRecovery, "Windows recovery environment"},
	{"4100", TypePRePBoot, "PowerPC PReP boot"},
	{"EF01", TypeMBRPartitionScheme, "MBR partition scheme"},
}

const bigDisk = 64 << 20

// makeTypesDisk builds a 64 MiB 512-byte-sector disk with one partition of
// every type in typeCases, numbered out of order like Azure RHEL images
// (14 and 15 first on the disk), non-ASCII names and an attribute bit.
func makeTypesDisk(t testing.TB) (path string, nums []int) {
	t.Helper()
	nums = []int{14, 15}
	for i := 1; len(nums) < len(typeCases); i++ {
		if i != 14 && i != 15 {
			nums = append(nums, i)
		}
	}
	var args []string
	for i, c := range typeCases {
		n := nums[i]
		size := "+1M"
		if i < 4 {
			size = "+4M"
		}
		args = append(args, "-n", fmt.Sprintf("%d:0:%s", n, size), "-t", fmt.Sprintf("%d:%s", n, c.code))
		switch c.code {
		case "EF00":
			args = append(args, "-c", fmt.Sprintf("%d:EFI Système", n))
		case "8E00":
			args = append(args, "-c", fmt.Sprintf("%d:lvm ☃ ünïcode", n))
		case "0700":
			// no name, like the RHEL raw images
		case "8309":
			args = append(args, "-c", fmt.Sprintf("%d:%s", n, strings.Repeat("x", 36)))
		default:
			args = append(args, "-c", fmt.Sprintf("%d:%s", n, c.code))
		}
	}
	args = append(args, "-A", "14:set:2", "-A", "15:set:63")
	return newDisk(t, bigDisk, args...), nums
}

func readFile(t testing.TB, path string, sectorSize int) (*Table, error) {
	t.Helper()
	f, size := testenv.Open(t, path)
	return Read(f, size, sectorSize)
}

func mustRead(t testing.TB, path string) *Table {
	t.Helper()
	tab, err := readFile(t, path, 0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return tab
}

func TestReadMatchesSgdisk(t *testing.T) {
	testenv.Need(t, "sgdisk")
	path, nums := makeTypesDisk(t)
	if ok, out := sgdiskVerify(t, path); !ok {
		t.Fatalf("sgdisk -v does not find the fixture clean:\n%s", out)
	}
	st := sgdiskTable(t, path)
	tab := mustRead(t, path)
	compareWithSgdisk(t, tab, st)
	if len(tab.Warnings) != 0 {
		t.Errorf("unexpected warnings: %q", tab.Warnings)
	}
	if tab.Primary == nil || tab.Backup == nil || *tab.Primary != tab.Header {
		t.Errorf("Primary/Backup = %v/%v, want both, Header = primary", tab.Primary, tab.Backup)
	}
	if last := uint64(bigDisk/512 - 1); tab.Header.AlternateLBA != last || tab.Backup.MyLBA != last || tab.Backup.PartitionEntryLBA != last-32 {
		t.Errorf("backup header at %d (array %d), want %d", tab.Backup.MyLBA, tab.Backup.PartitionEntryLBA, last)
	}
	if tab.DiskSize != bigDisk {
		t.Errorf("DiskSize = %d", tab.DiskSize)
	}

	// The constants are what sgdisk writes for each type code.
	byNum := map[int]sgPart{}
	for _, p := range st.parts {
		byNum[p.num] = p
	}
	for i, c := range typeCases {
		p, ok := tab.Partition(nums[i])
		if !ok {
			t.Fatalf("partition %d missing", nums[i])
		}
		if p.Type != c.typ || byNum[p.Number].typ != c.typ.String() {
			t.Errorf("sgdisk code %s: partition %d has type %s (sgdisk: %s), constant is %s", c.code, p.Number, p.Type, byNum[p.Number].typ, c.typ)
		}
		if got := TypeName(p.Type); got != c.name {
			t.Errorf("TypeName(%s) = %q, want %q", c.code, got, c.name)
		}
	}

	// Entry order and Partition lookup.
	if tab.Partitions[0].Number != 1 || tab.Partitions[len(tab.Partitions)-1].Number != len(typeCases) {
		t.Errorf("partitions not in entry order: first %d, last %d", tab.Partitions[0].Number, tab.Partitions[len(tab.Partitions)-1].Number)
	}
	p14, ok := tab.Partition(14)
	if !ok || p14.Type != TypeBIOSBoot || p14.FirstLBA != 2048 || p14.Attributes != 1<<2 {
		t.Errorf("Partition(14) = %+v, %v", p14, ok)
	}
	if p, ok := tab.Partition(15); !ok || p.Name != "EFI Système" || p.Attributes != 1<<63 {
		t.Errorf("Partition(15) = %+v, %v", p, ok)
	}
	if _, ok := tab.Partition(100); ok {
		t.Error("Partition(100) found")
	}

	// An explicit 512 works; 4096 finds nothing on a 512-byte-sector disk.
	if _, err := readFile(t, path, 512); err != nil {
		t.Errorf("Read(512): %v", err)
	}
	if _, err := readFile(t, path, 4096); !errors.Is(err, ErrNoGPT) {
		t.Errorf("Read(4096) = %v, want ErrNoGPT", err)
	}
	if _, err := readFile(t, path, 1000); err == nil {
		t.Error("Read(sector size 1000) succeeded")
	}
}

// damage describes one way of breaking a fresh 8 MiB sgdisk disk.
type damageCase struct {
	name   string
	damage func(t *testing.T, path string) int64 // returns the disk size to read with
	// Either the table is read (with these warnings and the copy used) ...
	warn       []string
	useBackup  bool
	noBackup   bool
	wantParts  bool // partitions must match the undamaged disk
	sgdiskSick bool // sgdisk -v must complain too
	// ... or Read fails.
	wantErr   error
	errStruct string // first FormatError's structure
	errLBA    int64
	errText   []string
}

const smallDisk = 8 << 20

// makeSmallDisk returns a private copy of an 8 MiB sgdisk-made disk with
// partitions 1 (2048-4095), 2 (4096-8191) and 3 (8192-12287). The original
// is built once: sgdisk sleeps a second after every write.
func makeSmallDisk(t testing.TB) string {
	t.Helper()
	testenv.Need(t, "sgdisk")
	smallOnce.Do(func() {
		smallPath, smallErr = buildDisk(cacheDir, "small.img", smallDisk,
			"-n", "1:2048:+1M", "-t", "1:EF00", "-c", "1:esp",
			"-n", "2:0:+2M", "-t", "2:8E00", "-c", "2:lvm",
			"-n", "3:0:+2M", "-t", "3:8309", "-c", "3:luks")
	})
	if smallErr != nil {
		t.Fatal(smallErr)
	}
	return testenv.CopyFile(t, smallPath)
}

var (
	smallOnce           sync.Once
	smallPath, cacheDir string
	smallErr            error
)

func TestMain(m *testing.M) {
	var err error
	cacheDir, err = os.MkdirTemp("", "gpt-test-")
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(cacheDir)
	os.Exit(code)
}

func TestDamage(t *testing.T) {
	testenv.Need(t, "sgdisk")
	const ss = 512
	const last = smallDisk/ss - 1
	cases := []damageCase{
		{
			name:      "primary header CRC",
			damage:    func(t *testing.T, p string) int64 { flipByte(t, p, ss+60); return smallDisk },
			warn:      []string{"gpt: primary header at LBA 1 (offset 512): header CRC mismatch", fmt.Sprintf("using the backup header at LBA %d", last)},
			useBackup: true, wantParts: true, sgdiskSick: true,
		},
		{
			name:      "primary signature",
			damage:    func(t *testing.T, p string) int64 { flipByte(t, p, ss); return smallDisk },
			warn:      []string{"primary header at LBA 1 (offset 512): no GPT signature; using the backup"},
			useBackup: true, wantParts: true, sgdiskSick: true,
		},
		{
			name:      "primary entry array",
			damage:    func(t *testing.T, p string) int64 { flipByte(t, p, 2*ss+56); return smallDisk },
			warn:      []string{"gpt: primary partition entry array at LBA 2 (offset 1024): CRC mismatch", "using the backup header"},
			useBackup: true, wantParts: true, sgdiskSick: true,
		},
		{
			name:     "backup header",
			damage:   func(t *testing.T, p string) int64 { flipByte(t, p, last*ss+40); return smallDisk },
			warn:     []string{fmt.Sprintf("gpt: backup header at LBA %d (offset %d): header CRC mismatch", last, last*ss), "using the primary header at LBA 1"},
			noBackup: true, wantParts: true, sgdiskSick: true,
		},
		{
			name:     "backup entry array",
			damage:   func(t *testing.T, p string) int64 { flipByte(t, p, (last-32)*ss+3); return smallDisk },
			warn:     []string{fmt.Sprintf("gpt: backup partition entry array at LBA %d", last-32), "CRC mismatch"},
			noBackup: true, wantParts: true, sgdiskSick: true,
		},
		{
			name: "truncated (backup cut off)",
			damage: func(t *testing.T, p string) int64 {
				if err := os.Truncate(p, smallDisk-33*ss); err != nil {
					t.Fatal(err)
				}
				return smallDisk - 33*ss
			},
			warn:     []string{fmt.Sprintf("backup header expected at LBA %d, beyond the last LBA %d of the disk (disk truncated?)", last, last-33), "no GPT signature; using the primary"},
			noBackup: true, wantParts: true, sgdiskSick: true,
		},
		{
			name: "grown without moving the backup",
			damage: func(t *testing.T, p string) int64 {
				if err := os.Truncate(p, smallDisk+1<<20); err != nil {
					t.Fatal(err)
				}
				return smallDisk + 1<<20
			},
			warn:      []string{fmt.Sprintf("backup header expected at LBA %d, not at the last LBA %d of the disk (disk grown?)", last, last+2048)},
			wantParts: true, sgdiskSick: true,
		},
		{
			name: "copies disagree",
			damage: func(t *testing.T, p string) int64 {
				// Rename partition 1 in the backup array only.
				f := openRW(t, p)
				writeBytes(t, f, (last-32)*ss+56, []byte{'X', 0})
				fixCRCs(t, f, last*ss, ss)
				return smallDisk
			},
			warn:      []string{"gpt: primary and backup tables differ (entry array CRC", "using the primary"},
			wantParts: true, sgdiskSick: true,
		},
		{
			name: "no protective MBR",
			damage: func(t *testing.T, p string) int64 {
				writeBytes(t, openRW(t, p), 0, make([]byte, 512))
				return smallDisk
			},
			warn:      []string{"gpt: protective MBR at LBA 0 (offset 0): no 0x55AA boot signature"},
			wantParts: true,
		},
		{
			name: "both headers",
			damage: func(t *testing.T, p string) int64 {
				flipByte(t, p, ss+60)
				flipByte(t, p, last*ss+60)
				return smallDisk
			},
			wantErr: ErrCorrupt, errStruct: "primary header", errLBA: 1,
			errText:    []string{"gpt: primary header at LBA 1 (offset 512): header CRC mismatch", fmt.Sprintf("gpt: backup header at LBA %d (offset %d): header CRC mismatch", last, last*ss)},
			sgdiskSick: true,
		},
		{
			name: "both entry arrays",
			damage: func(t *testing.T, p string) int64 {
				flipByte(t, p, 2*ss+5)
				flipByte(t, p, (last-32)*ss+5)
				return smallDisk
			},
			wantErr: ErrCorrupt, errStruct: "primary partition entry array", errLBA: 2,
			errText:    []string{fmt.Sprintf("backup partition entry array at LBA %d", last-32)},
			sgdiskSick: true,
		},
		{
			name: "overlapping entries",
			damage: func(t *testing.T, p string) int64 {
				// Partition 3 starts inside partition 2 (2M at 4096..8191).
				editEntry(t, p, ss, smallDisk, 3, func(e []byte) { binary.LittleEndian.PutUint64(e[32:], 8000) })
				return smallDisk
			},
			wantErr: ErrCorrupt, errStruct: "primary partition entry 3", errLBA: 2,
			errText:    []string{"LBAs 8000-12287 overlap partition 2 (LBAs 4096-8191)", "(offset 1280)"},
			sgdiskSick: true,
		},
		{
			name: "nested entries",
			damage: func(t *testing.T, p string) int64 {
				// Partition 1 spans everything; 2 and 3 lie inside it.
				editEntry(t, p, ss, smallDisk, 1, func(e []byte) { binary.LittleEndian.PutUint64(e[40:], 16000) })
				return smallDisk
			},
			wantErr: ErrCorrupt, errStruct: "primary partition entry 2",
			errText:    []string{"overlap partition 1 (LBAs 2048-16000)"},
			sgdiskSick: true,
		},
		{
			name: "entry past the disk",
			damage: func(t *testing.T, p string) int64 {
				editEntry(t, p, ss, smallDisk, 3, func(e []byte) { binary.LittleEndian.PutUint64(e[40:], last+100) })
				return smallDisk
			},
			wantErr: ErrCorrupt, errStruct: "primary partition entry 3", errLBA: 2,
			errText:    []string{fmt.Sprintf("LBAs 8192-%d are outside the usable LBAs 34-%d", last+100, last-33)},
			sgdiskSick: true,
		},
		{
			name: "entry ends before it starts",
			damage: func(t *testing.T, p string) int64 {
				editEntry(t, p, ss, smallDisk, 2, func(e []byte) { binary.LittleEndian.PutUint64(e[40:], 4000) })
				return smallDisk
			},
			wantErr: ErrCorrupt, errStruct: "primary partition entry 2",
			errText:    []string{"first LBA 4096 is after last LBA 4000"},
			sgdiskSick: true,
		},
		{
			name: "huge entry count",
			damage: func(t *testing.T, p string) int64 {
				f := openRW(t, p)
				for _, off := range []int64{ss, last * ss} {
					writeBytes(t, f, off+80, []byte{0, 0, 0, 0x40}) // 2^30 entries
					fixHeaderCRC(t, f, off)
				}
				return smallDisk
			},
			wantErr: ErrCorrupt, errStruct: "primary header",
			errText: []string{"1073741824 partition entries exceed the limit of 16384"},
			// sgdisk refuses the table too ("Warning! ... partition table size"); not asserted.
		},
		{
			name: "bad entry size",
			damage: func(t *testing.T, p string) int64 {
				f := openRW(t, p)
				for _, off := range []int64{ss, last * ss} {
					writeBytes(t, f, off+84, []byte{200, 0, 0, 0})
					fixHeaderCRC(t, f, off)
				}
				return smallDisk
			},
			wantErr: ErrCorrupt, errStruct: "primary header",
			errText: []string{"partition entry size 200 is not 128·2^n"},
		},
		{
			name: "usable range beyond the disk (truncated into the data)",
			damage: func(t *testing.T, p string) int64 {
				if err := os.Truncate(p, 6<<20); err != nil {
					t.Fatal(err)
				}
				return 6 << 20
			},
			wantErr: ErrCorrupt, errStruct: "primary header",
			errText:    []string{fmt.Sprintf("last usable LBA %d is beyond the last LBA %d of the disk", last-33, 6<<20/ss-1), "backup header at LBA 12287"},
			sgdiskSick: true,
		},
		{
			name: "blank disk",
			damage: func(t *testing.T, p string) int64 {
				writeBytes(t, openRW(t, p), 0, make([]byte, 34*ss))
				writeBytes(t, openRW(t, p), smallDisk-33*ss, make([]byte, 33*ss))
				return smallDisk
			},
			wantErr: ErrNoGPT,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := makeSmallDisk(t)
			before := mustRead(t, path)
			size := c.damage(t, path)

			if c.sgdiskSick {
				if ok, out := sgdiskVerify(t, path); ok {
					t.Errorf("oracle: sgdisk -v finds the damaged disk clean:\n%s", out)
				}
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tab, err := Read(f, size, 0)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("Read = %v, want %v", err, c.wantErr)
				}
				if c.errStruct != "" {
					var fe *FormatError
					if !errors.As(err, &fe) || fe.Structure != c.errStruct || (c.errLBA != 0 && fe.LBA != c.errLBA) {
						t.Errorf("FormatError = %#v, want structure %q at LBA %d", fe, c.errStruct, c.errLBA)
					}
				}
				for _, s := range c.errText {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			all := strings.Join(tab.Warnings, "\n")
			for _, w := range c.warn {
				if !strings.Contains(all, w) {
					t.Errorf("warnings %q do not contain %q", tab.Warnings, w)
				}
			}
			if c.useBackup != (tab.Primary == nil) || c.useBackup != (tab.Header.MyLBA != 1) {
				t.Errorf("useBackup=%v but Primary=%v Header.MyLBA=%d", c.useBackup, tab.Primary, tab.Header.MyLBA)
			}
			if c.noBackup != (tab.Backup == nil) {
				t.Errorf("noBackup=%v but Backup=%v", c.noBackup, tab.Backup)
			}
			if c.wantParts && !reflect.DeepEqual(tab.Partitions, before.Partitions) {
				t.Errorf("partitions differ from the undamaged disk:\n%+v\n%+v", tab.Partitions, before.Partitions)
			}
		})
	}
}

func TestMBROnlyDisk(t *testing.T) {
	// An MBR with one Linux partition and no GPT.
	disk := make([]byte, 1<<20)
	e := disk[446:]
	e[4] = 0x83
	binary.LittleEndian.PutUint32(e[8:], 2048)
	binary.LittleEndian.PutUint32(e[12:], 100)
	disk[510], disk[511] = 0x55, 0xAA
	if _, err := Read(bytesReaderAt(disk), int64(len(disk)), 0); !errors.Is(err, ErrNoGPT) {
		t.Errorf("Read = %v, want ErrNoGPT", err)
	}
	if _, err := Read(bytesReaderAt(disk[:1024]), 1024, 0); !errors.Is(err, ErrNoGPT) {
		t.Errorf("Read(tiny) = %v, want ErrNoGPT", err)
	}
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b)) {
		return 0, fmt.Errorf("offset %d out of range", off)
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, fmt.Errorf("short read at %d", off)
	}
	return n, nil
}

func TestIOErrorIsNotCorruption(t *testing.T) {
	testenv.Need(t, "sgdisk")
	path := makeSmallDisk(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The reader lacks the last sector the disk size promises.
	_, err = Read(bytesReaderAt(b[:len(b)-512]), int64(len(b)), 512)
	if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNoGPT) {
		t.Errorf("Read = %v, want a plain I/O error", err)
	}
}
