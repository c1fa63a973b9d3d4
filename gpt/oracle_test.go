package gpt

// Helpers that build disks with sgdisk (package gdisk) and read its view of
// them, so Read is checked against a tool nobody here wrote.

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// newDisk creates a sparse file of size bytes in a test directory and
// partitions it with sgdisk.
func newDisk(t testing.TB, size int64, args ...string) string {
	t.Helper()
	path, err := buildDisk(t.TempDir(), "disk.img", size, args...)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func buildDisk(dir, name string, size int64, args ...string) (string, error) {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Truncate(path, size); err != nil {
		return "", err
	}
	args = append(args, path)
	if _, err := testenv.RunErr("sgdisk", args...); err != nil {
		return "", err
	}
	return path, nil
}

type sgPart struct {
	num        int
	start, end uint64
	typ, uniq  string // lowercase
	attrs      uint64
	name       string
}

type sgTable struct {
	sectorSize            int
	diskGUID              string
	entries               int
	firstUsable, lastUsab uint64
	parts                 []sgPart
}

var (
	reSector  = regexp.MustCompile(`Sector size \(logical(?:/physical)?\): (\d+)`)
	reDiskID  = regexp.MustCompile(`Disk identifier \(GUID\): (\S+)`)
	reEntries = regexp.MustCompile(`Partition table holds up to (\d+) entries`)
	reUsable  = regexp.MustCompile(`First usable sector is (\d+), last usable sector is (\d+)`)
	rePartRow = regexp.MustCompile(`^\s+(\d+)\s+(\d+)\s+(\d+)\s`)
	reTypeID  = regexp.MustCompile(`Partition GUID code: (\S+)`)
	reUniq    = regexp.MustCompile(`Partition unique GUID: (\S+)`)
	reFirst   = regexp.MustCompile(`First sector: (\d+)`)
	reLast    = regexp.MustCompile(`Last sector: (\d+)`)
	reAttrs   = regexp.MustCompile(`Attribute flags: ([0-9a-fA-F]+)`)
	reName    = regexp.MustCompile(`(?m)^Partition name: '(.*)'$`)
)

func match1(t testing.TB, re *regexp.Regexp, s string) string {
	t.Helper()
	m := re.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("sgdisk output does not match %v:\n%s", re, s)
	}
	return m[1]
}

func atou(t testing.TB, s string, base int) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// sgdiskTable parses `sgdisk -p` and `sgdisk -i N` for every partition.
func sgdiskTable(t testing.TB, dev string) sgTable {
	t.Helper()
	out := testenv.Run(t, "sgdisk", "-p", dev)
	var st sgTable
	st.sectorSize = int(atou(t, match1(t, reSector, out), 10))
	st.diskGUID = strings.ToLower(match1(t, reDiskID, out))
	st.entries = int(atou(t, match1(t, reEntries, out), 10))
	m := reUsable.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no usable range in sgdisk -p output:\n%s", out)
	}
	st.firstUsable, st.lastUsab = atou(t, m[1], 10), atou(t, m[2], 10)
	sc := bufio.NewScanner(strings.NewReader(out[strings.Index(out, "Number  Start"):]))
	for sc.Scan() {
		m := rePartRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n := int(atou(t, m[1], 10))
		info := testenv.Run(t, "sgdisk", "-i", m[1], dev)
		p := sgPart{
			num:   n,
			start: atou(t, match1(t, reFirst, info), 10),
			end:   atou(t, match1(t, reLast, info), 10),
			typ:   strings.ToLower(match1(t, reTypeID, info)),
			uniq:  strings.ToLower(match1(t, reUniq, info)),
			attrs: atou(t, match1(t, reAttrs, info), 16),
			name:  match1(t, reName, info),
		}
		if p.start != atou(t, m[2], 10) || p.end != atou(t, m[3], 10) {
			t.Fatalf("sgdisk -p and -i disagree on partition %d", n)
		}
		st.parts = append(st.parts, p)
	}
	// -p lists in entry order already; keep it explicit.
	return st
}

// compareWithSgdisk checks every field of tab against sgdisk's view.
func compareWithSgdisk(t testing.TB, tab *Table, st sgTable) {
	t.Helper()
	if tab.SectorSize != st.sectorSize {
		t.Errorf("SectorSize = %d, sgdisk says %d", tab.SectorSize, st.sectorSize)
	}
	if g := tab.Header.DiskGUID.String(); g != st.diskGUID {
		t.Errorf("DiskGUID = %s, sgdisk says %s", g, st.diskGUID)
	}
	if int(tab.Header.NumPartitionEntries) != st.entries {
		t.Errorf("NumPartitionEntries = %d, sgdisk says %d", tab.Header.NumPartitionEntries, st.entries)
	}
	if tab.Header.FirstUsableLBA != st.firstUsable || tab.Header.LastUsableLBA != st.lastUsab {
		t.Errorf("usable LBAs %d-%d, sgdisk says %d-%d", tab.Header.FirstUsableLBA, tab.Header.LastUsableLBA, st.firstUsable, st.lastUsab)
	}
	if len(tab.Partitions) != len(st.parts) {
		t.Fatalf("%d partitions, sgdisk lists %d", len(tab.Partitions), len(st.parts))
	}
	ss := int64(st.sectorSize)
	for i, p := range tab.Partitions {
		s := st.parts[i]
		if p.Number != s.num || p.FirstLBA != s.start || p.LastLBA != s.end ||
			p.Type.String() != s.typ || p.GUID.String() != s.uniq || p.Attributes != s.attrs || p.Name != s.name {
			t.Errorf("partition %d:\n got  %d %d-%d type %s uniq %s attrs %#x name %q\n want %d %d-%d type %s uniq %s attrs %#x name %q",
				i, p.Number, p.FirstLBA, p.LastLBA, p.Type, p.GUID, p.Attributes, p.Name,
				s.num, s.start, s.end, s.typ, s.uniq, s.attrs, s.name)
		}
		if p.Offset != int64(s.start)*ss || p.Size != int64(s.end-s.start+1)*ss {
			t.Errorf("partition %d: Offset/Size = %d/%d, want %d/%d", p.Number, p.Offset, p.Size, int64(s.start)*ss, int64(s.end-s.start+1)*ss)
		}
	}
}

// Lines of `sgdisk -v` that do not indicate damage.
var sgdiskBenign = regexp.MustCompile(`(?s)Warning: The size of the partition table \(\d+ bytes\) is less than the minimum.*?problems\.\n`)

// sgdiskVerify reports whether `sgdisk -v` finds the disk clean. (On a
// disk with no usable GPT it says "Creating new GPT entries" and then "No
// problems found" about the empty table it made up: not clean.)
func sgdiskVerify(t testing.TB, dev string) (bool, string) {
	t.Helper()
	out, _ := testenv.RunErr("sgdisk", "-v", dev)
	rest := sgdiskBenign.ReplaceAllString(out, "")
	bad := regexp.MustCompile(`(?i)warning|problem:|caution|corrupt|crc|invalid|identified \d+ problems|creating new gpt`)
	return strings.Contains(out, "No problems found") && !bad.MatchString(rest), out
}

// Raw-disk editing, written independently of the package's own code.

func openRW(t testing.TB, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readBytes(t testing.TB, f *os.File, off int64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeBytes(t testing.TB, f *os.File, off int64, b []byte) {
	t.Helper()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f := openRW(t, path)
	b := readBytes(t, f, off, 1)
	b[0] ^= 0x5a
	writeBytes(t, f, off, b)
}

// rawHeader is the handful of header fields the tests edit.
type rawHeader struct {
	off               int64 // byte offset of the header
	hsize             uint32
	entryLBA          uint64
	nEntries, entrySz uint32
}

func loadRawHeader(t testing.TB, f *os.File, off int64) rawHeader {
	t.Helper()
	b := readBytes(t, f, off, 92)
	if string(b[:8]) != "EFI PART" {
		t.Fatalf("no GPT header at offset %d", off)
	}
	le := binary.LittleEndian
	return rawHeader{off, le.Uint32(b[12:]), le.Uint64(b[72:]), le.Uint32(b[80:]), le.Uint32(b[84:])}
}

// fixHeaderCRC recomputes the header CRC at off (after a header edit).
func fixHeaderCRC(t testing.TB, f *os.File, off int64) {
	t.Helper()
	h := loadRawHeader(t, f, off)
	b := readBytes(t, f, off, int(h.hsize))
	copy(b[16:20], []byte{0, 0, 0, 0})
	binary.LittleEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b))
	writeBytes(t, f, off+16, b[16:20])
}

// fixCRCs recomputes the array and header CRCs of the header at off.
func fixCRCs(t testing.TB, f *os.File, off int64, ss int64) {
	t.Helper()
	h := loadRawHeader(t, f, off)
	arr := readBytes(t, f, int64(h.entryLBA)*ss, int(h.nEntries*h.entrySz))
	var c [4]byte
	binary.LittleEndian.PutUint32(c[:], crc32.ChecksumIEEE(arr))
	writeBytes(t, f, off+88, c[:])
	fixHeaderCRC(t, f, off)
}

// editEntry rewrites entry n (1-based) in both arrays and fixes all CRCs.
func editEntry(t testing.TB, path string, ss, size int64, n int, edit func(e []byte)) {
	t.Helper()
	f := openRW(t, path)
	for _, off := range []int64{ss, size - ss} {
		h := loadRawHeader(t, f, off)
		eo := int64(h.entryLBA)*ss + int64(n-1)*int64(h.entrySz)
		e := readBytes(t, f, eo, int(h.entrySz))
		edit(e)
		writeBytes(t, f, eo, e)
		fixCRCs(t, f, off, ss)
	}
}
