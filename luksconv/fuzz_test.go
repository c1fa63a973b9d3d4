package luksconv_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/luksconv/luksconv/diskcipher"
	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/internal/fuzzimage"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/lvm"
)

// FuzzPlan plans and executes a whole ADE RHEL disk whose plaintext was mutated where the plan reads:
// GPT, ESP, /boot, the LVM label and metadata, and each XFS filesystem's structures behind the
// encryption. The package fuzzers reach each parser alone (checksums off); this one reaches what
// luksconv builds on them: the fallbacks taken when a checksummed structure (GPT, LVM metadata, XFS v5)
// fails its check (the backup GPT, a volume copied or decrypted in full), used-block maps carried
// through LVM onto the LUKS payload, and guest edits of mutated file contents, FAT and grubenv
// written back into their extents. The disk is the rhel8-lvm fixture's
// plaintext (Expected); its partition 4 is encrypted on every read with a volume key dumped from the
// fixture's header, under a copy of that header with a cheap PBKDF2 keyslot, so that an iteration costs
// a plan and not an Argon2 derivation. An input is a flags byte and fuzzimage patches (a target index,
// a 16-bit offset, 1..16 bytes), the targets being the offsets the plan of the unmutated disk reads.
// With bit 0 of the flags set, the checksums of the structures the patches touch are computed again
// (fixChecksums), so that mutated values get past the checks to what luksconv does with them.
//
// Whatever the input, NewPlan returns a plan or an error, without panicking; a plan's regions tile the
// output, read inside the source, and its patches lie inside the output; Execute writes only inside the
// output and ends with a result or an error.
func FuzzPlan(f *testing.F) {
	d := loadFuzzDisk(f)
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 7, 0, 8, 7, 1, 2, 3, 4, 5, 6, 7, 8, 200, 1, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) { planFuzzInput(t, d, in) })
}

// planFuzzInput is FuzzPlan's body: the disk patched as in says, planned and executed, checked.
func planFuzzInput(t *testing.T, d *fuzzDisk, in []byte) {
	img := &fuzzimage.Image{Base: d.plain}
	if len(in) > 0 {
		img.Patches = fuzzimage.Decode(in[1:], d.targets, int64(len(d.plain)))
		if in[0]&1 != 0 {
			d.fixChecksums(img)
		}
	}
	src, err := luksconv.OpenReader(d.disk(img), int64(len(d.plain)), nil)
	if err != nil {
		return
	}
	p, err := luksconv.NewPlan(context.Background(), src, d.opts())
	if err != nil {
		if len(img.Patches) == 0 {
			t.Fatalf("the unmutated disk: %v", err)
		}
		return
	}
	defer p.Close()
	checkPlanBounds(t, p, src.Size)
	out := &boundedOutput{size: p.OutputSize}
	res, err := luksconv.Execute(context.Background(), p, src, out, luksconv.ExecuteOptions{Workers: 1})
	switch {
	case out.err != nil:
		t.Fatal(out.err)
	case len(img.Patches) == 0 && (err != nil || res.BytesDecrypted == 0 || p.Totals.Decrypt >= d.parts):
		// Less than the whole partition: LVM and XFS were read through the encryption.
		t.Fatalf("the unmutated disk: %v, decrypted %d of %d bytes", err, p.Totals.Decrypt, d.parts)
	}
}

// fixChecksums appends to img.Patches the checksums that its patches made wrong: of each XFS v5
// structure (by its magic number in the unmutated disk) a patch touches, then of the LVM metadata text,
// metadata area header and label, then of the GPT entry arrays and headers, each over the bytes the
// patches before it left.
func (d *fuzzDisk) fixChecksums(img *fuzzimage.Image) {
	le := binary.LittleEndian
	read := func(off, n int64) []byte {
		b := make([]byte, n)
		img.ReadAt(b, off)
		return b
	}
	set := func(off int64, v uint32) {
		img.Patches = append(img.Patches, fuzzimage.Patch{Off: off, Data: le.AppendUint32(nil, v)})
	}
	crc32c := func(b []byte, at int) uint32 {
		clear(b[at : at+4])
		return crc32.Checksum(b, castagnoli)
	}
	// XFS: the 512-byte and 4096-byte units around each patch whose unmutated bytes start a structure
	// (/boot and the LVs start 4 KiB-aligned on the disk, so the disk's units are the filesystems').
	for _, pt := range slices.Clone(img.Patches) {
		for _, unit := range []int64{512, 4096} {
			for at := pt.Off / unit * unit; at < pt.Off+int64(len(pt.Data)); at += unit {
				if n, crcAt := xfsStructure(d.plain, at, unit); n > 0 {
					set(at+int64(crcAt), crc32c(read(at, n), crcAt))
				}
			}
		}
	}
	// LVM: the text of the first metadata area, its header, the label (sector 1 of the PV).
	pv := d.partOff
	mda := read(pv+4096, 512)
	if string(mda[4:20]) == lvm.MDAMagic {
		// The header: its own start on the PV at 24, the first raw_locn (offset, size, checksum) at 40.
		start, off, n := int64(le.Uint64(mda[24:])), int64(le.Uint64(mda[40:])), int64(le.Uint64(mda[48:]))
		if start == 4096 && off > 0 && off < 1<<20 && n > 0 && n < 1<<20 {
			set(pv+4096+56, lvm.CRC(read(pv+start+off, n)))
		}
		set(pv+4096, lvm.CRC(read(pv+4096, 512)[4:]))
	}
	set(pv+512+16, lvm.CRC(read(pv+512, 512)[20:]))
	// GPT: both headers and their entry arrays.
	for _, lba := range []int64{1, int64(len(d.plain))/512 - 1} {
		h := read(lba*512, 512)
		if string(h[:8]) != "EFI PART" {
			continue
		}
		entries, count, size := int64(le.Uint64(h[72:])), int64(le.Uint32(h[80:])), int64(le.Uint32(h[84:]))
		if count*size > 0 && count*size <= 1<<20 && entries*512+count*size <= int64(len(d.plain)) {
			set(lba*512+88, crc32.ChecksumIEEE(read(entries*512, count*size)))
		}
		if n := int64(le.Uint32(h[12:])); n >= 92 && n <= 512 {
			set(lba*512+16, crc32.ChecksumIEEE(append(read(lba*512, 16), append(make([]byte, 4), read(lba*512+20, n-20)...)...)))
		}
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// xfsStructure returns the length and checksum offset of the XFS v5 structure that starts at byte at
// of disk, in a unit of unit bytes (mkfs.xfs's defaults here: 512-byte sectors and inodes, 4096-byte
// blocks), or 0 if none starts there.
func xfsStructure(disk []byte, at, unit int64) (n int64, crcAt int) {
	head := disk[at:min(at+8, int64(len(disk)))]
	if len(head) < 8 {
		return 0, 0
	}
	switch m := string(head[:4]); {
	case unit == 512 && m == "XFSB":
		return 512, 224
	case unit == 512 && m == "XAGF":
		return 512, 216
	case unit == 512 && m == "XAGI":
		return 512, 312
	case unit == 512 && m[:2] == "IN" && head[4] == 3:
		return 512, 100
	case unit == 4096 && (m == "AB3B" || m == "AB3C" || m == "IAB3" || m == "FIB3"):
		return 4096, 52
	case unit == 4096 && m == "BMA3":
		return 4096, 64
	case unit == 4096 && (m == "XDB3" || m == "XDD3" || m == "XDF3"):
		return 4096, 4
	case unit == 4096 && m == "XSLM":
		return 4096, 12
	}
	return 0, 0
}

// checkPlanBounds fails t unless p's regions tile [0, OutputSize) in order, each reading inside a
// source of srcSize bytes, and its patches lie inside the output.
func checkPlanBounds(t *testing.T, p *luksconv.Plan, srcSize int64) {
	t.Helper()
	var pos int64
	for i, r := range p.Regions {
		if r.Offset != pos || r.Length <= 0 {
			t.Fatalf("region %d at %d+%d, want at %d with a positive length", i, r.Offset, r.Length, pos)
		}
		if r.Kind != luksconv.Zero && (r.Source < 0 || r.Source+r.Length > srcSize) {
			t.Fatalf("region %d (%v) reads %d+%d of a %d-byte source", i, r.Kind, r.Source, r.Length, srcSize)
		}
		pos += r.Length
	}
	if pos != p.OutputSize {
		t.Fatalf("regions end at %d, output is %d bytes", pos, p.OutputSize)
	}
	for _, pt := range p.Patches {
		if pt.Offset < 0 || pt.Offset+int64(max(pt.Length, len(pt.Data))) > p.OutputSize {
			t.Fatalf("patch %q at %d+%d outside a %d-byte output", pt.Why, pt.Offset, max(pt.Length, len(pt.Data)), p.OutputSize)
		}
	}
}

// boundedOutput discards what Execute writes (nullOutput), remembering the first write outside the
// output.
type boundedOutput struct {
	nullOutput
	size int64
	mu   sync.Mutex
	err  error
}

func (o *boundedOutput) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > o.size {
		o.mu.Lock()
		if o.err == nil {
			o.err = fmt.Errorf("write of %d bytes at %d outside a %d-byte output", len(b), off, o.size)
		}
		o.mu.Unlock()
		return 0, errors.New("outside the output")
	}
	return len(b), nil
}

// fuzzDisk is FuzzPlan's disk: the plaintext, where partition 4 lies, its cipher, and the header and
// key file that open it.
type fuzzDisk struct {
	plain          []byte
	partOff, parts int64
	c              diskcipher.Cipher
	header         []byte // the cheap header
	key            string
	targets        []int64
}

var (
	fuzzDiskOnce sync.Once
	fuzzDiskVal  *fuzzDisk
	fuzzDiskErr  error
)

// loadFuzzDisk builds FuzzPlan's disk once per process (a fuzz worker is a process).
func loadFuzzDisk(t testing.TB) *fuzzDisk {
	t.Helper()
	if raceEnabled {
		t.Skip("run without -race only: no concurrency of its own, and 20 s instrumented")
	}
	testenv.Need(t, "cryptsetup")
	fx, ok := fixture.Load(t).Get("rhel8-lvm")
	if !ok {
		t.Fatal("fixture rhel8-lvm missing")
	}
	fuzzDiskOnce.Do(func() { fuzzDiskVal, fuzzDiskErr = newFuzzDisk(fx) })
	if fuzzDiskErr != nil {
		t.Fatal(fuzzDiskErr)
	}
	return fuzzDiskVal
}

func newFuzzDisk(fx fixture.Fixture) (*fuzzDisk, error) {
	plain, err := os.ReadFile(fx.Expected)
	if err != nil {
		return nil, err
	}
	d := &fuzzDisk{plain: plain, key: fx.KeyFiles[0]}
	for _, p := range fx.Partitions {
		if p.Number == fx.Partition {
			d.partOff, d.parts = p.Start, p.Size
		}
	}
	if d.parts == 0 {
		return nil, fmt.Errorf("rhel8-lvm: no partition %d", fx.Partition)
	}
	// The process's own directory: the fuzz engine runs this once per worker, outside any test.
	dir, err := os.MkdirTemp("", "fuzzplan-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir) // the volume key file too, on every path
	vk := filepath.Join(dir, "vk")
	run := func(args ...string) error {
		_, err := testenv.RunErr(args[0], args[1:]...)
		return err
	}
	if err := run("cryptsetup", "luksDump", "--batch-mode", "--dump-volume-key", "--volume-key-file", vk, "--key-file", d.key, fx.Header); err != nil {
		return nil, err
	}
	key, err := os.ReadFile(vk)
	if err != nil {
		return nil, err
	}
	if d.c, err = diskcipher.New(fx.Cipher, key, fx.SectorSize); err != nil {
		return nil, err
	}
	dev := filepath.Join(dir, "dev")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		return nil, err
	}
	if err := os.Truncate(dev, d.parts); err != nil {
		return nil, err
	}
	hdr := filepath.Join(dir, "header")
	if err := run("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--header", hdr, "--volume-key-file", vk,
		"--key-size", fmt.Sprint(fx.KeySizeBits), "--cipher", fx.Cipher, "--sector-size", fmt.Sprint(fx.SectorSize),
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", d.key, dev); err != nil {
		return nil, err
	}
	if d.header, err = os.ReadFile(hdr); err != nil {
		return nil, err
	}

	// The targets: where the plan of the unmutated disk reads, every 64 KiB of each read (a patch
	// lands up to 64 KiB past its target). File contents read whole (the initramfs, the header file)
	// would crowd out the metadata: reads over 1 MiB count by their first 64 KiB only.
	rec := &readLog{r: d.disk(&fuzzimage.Image{Base: plain})}
	src, err := luksconv.OpenReader(rec, int64(len(plain)), nil)
	if err != nil {
		return nil, err
	}
	p, err := luksconv.NewPlan(context.Background(), src, d.opts())
	if err != nil {
		return nil, fmt.Errorf("plan of the unmutated disk: %w", err)
	}
	p.Close()
	for _, r := range rec.reads {
		n := r[1]
		if n > 1<<20 {
			n = 1
		}
		for o := r[0]; o < r[0]+n; o += 1 << 16 {
			d.targets = append(d.targets, o)
		}
	}
	slices.Sort(d.targets)
	d.targets = slices.Compact(d.targets)
	// fuzzimage.Decode picks a target by one byte: keep 256, spread over the disk.
	if n := len(d.targets); n > 256 {
		picked := make([]int64, 256)
		for i := range picked {
			picked[i] = d.targets[i*n/256]
		}
		d.targets = picked
	}
	return d, nil
}

func (d *fuzzDisk) opts() luksconv.PlanOptions {
	return luksconv.PlanOptions{KeyFile: d.key, Header: &luksconv.Header{R: bytes.NewReader(d.header), Size: int64(len(d.header)), Path: "header"}}
}

// disk is img with partition 4 encrypted as the fixture's was.
func (d *fuzzDisk) disk(img io.ReaderAt) io.ReaderAt {
	return &encryptedDisk{img: img, off: d.partOff, size: d.parts, c: d.c}
}

// encryptedDisk reads a plaintext disk image with the range [off, off+size) encrypted, IV 0 at off.
type encryptedDisk struct {
	img       io.ReaderAt
	off, size int64
	c         diskcipher.Cipher
}

func (e *encryptedDisk) ReadAt(b []byte, off int64) (int, error) {
	n, err := e.img.ReadAt(b, off)
	ss := int64(e.c.SectorSize())
	lo, hi := max(off, e.off), min(off+int64(n), e.off+e.size)
	if lo >= hi {
		return n, err
	}
	// Whole sectors around [lo, hi), encrypted, then the part asked for.
	s := e.off + (lo-e.off)/ss*ss
	t := e.off + (hi-e.off+ss-1)/ss*ss
	buf := make([]byte, t-s)
	if _, rerr := e.img.ReadAt(buf, s); rerr != nil && rerr != io.EOF {
		return 0, rerr
	}
	e.c.Encrypt(buf, buf, uint64(s-e.off)/512)
	copy(b[lo-off:hi-off], buf[lo-s:])
	return n, err
}

// readLog records the reads of r, offset and length.
type readLog struct {
	r     io.ReaderAt
	mu    sync.Mutex
	reads [][2]int64
}

func (l *readLog) ReadAt(b []byte, off int64) (int, error) {
	l.mu.Lock()
	l.reads = append(l.reads, [2]int64{off, int64(len(b))})
	l.mu.Unlock()
	return l.r.ReadAt(b, off)
}

// TestFixChecksums: on the unmutated disk, fixChecksums computes every checksum it writes to the value
// the real tools stored (mkfs.xfs, lvm2, sgdisk), for a no-op patch at each target; and it covers XFS
// superblocks, AG headers, free-space btree blocks and inodes, the LVM text, header and label, and
// both GPT headers with their entry arrays.
func TestFixChecksums(t *testing.T) {
	d := loadFuzzDisk(t)
	pv, last := d.partOff, int64(len(d.plain))/512-1
	kinds := map[string]int{}
	for _, off := range d.targets {
		img := &fuzzimage.Image{Base: d.plain, Patches: []fuzzimage.Patch{{Off: off, Data: d.plain[off : off+1]}}}
		d.fixChecksums(img)
		for _, pt := range img.Patches[1:] {
			if !bytes.Equal(pt.Data, d.plain[pt.Off:pt.Off+4]) {
				t.Fatalf("checksum at %d (a no-op patch at %d): %x, stored %x", pt.Off, off, pt.Data, d.plain[pt.Off:pt.Off+4])
			}
			kind := map[int64]string{pv + 4096 + 56: "lvm text", pv + 4096: "lvm header", pv + 512 + 16: "lvm label",
				512 + 88: "gpt entries", 512 + 16: "gpt header", last*512 + 88: "gpt entries", last*512 + 16: "gpt header"}[pt.Off]
			if kind == "" {
				for _, unit := range []int64{512, 4096} {
					at := pt.Off / unit * unit
					if n, _ := xfsStructure(d.plain, at, unit); n > 0 {
						kind = "xfs " + string(d.plain[at:at+4])
						if kind[4:6] == "IN" {
							kind = "xfs inode"
						}
					}
				}
			}
			kinds[kind]++
		}
	}
	t.Logf("checksums checked: %v", kinds)
	for _, k := range []string{"xfs XFSB", "xfs XAGF", "xfs AB3B", "xfs inode", "lvm text", "lvm header", "lvm label", "gpt entries", "gpt header"} {
		if kinds[k] == 0 {
			t.Errorf("no %s checksum was checked", k)
		}
	}
}
