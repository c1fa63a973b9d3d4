package luksconv_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/luksconv/luksconv/diskcipher"
	"github.com/luksconv/luksconv/ext"
	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/internal/fuzzimage"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/internal/vmfixture"
	"github.com/luksconv/luksconv/luks"
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

// FuzzPlanData is FuzzPlan over ADE data disks of the VM fixture, each an ext4 filesystem with
// metadata_csum behind an attached header: lun0 (EncryptFormatAll of the whole disk, LUKS2, 4096-byte
// encryption sectors), lun1 (in place online, GPT, LUKS2 whose data segment runs 8 MiB past the
// filesystem) and lun2 (stop-and-copy, GPT, LUKS1). Bits 1-2 of the flags byte pick the disk (modulo
// 3); the headers and patches are fuzzed as in FuzzPlan, and with bit 0 set fixChecksums also mends
// the LUKS2 header copies and the ext4 superblock, group descriptors, block and inode bitmaps and
// inodes. It reaches the ext parser through luksconv: used-block maps from the bitmaps, the journal,
// the unused inode tables, the fallbacks when ext refuses, and LUKS1 and LUKS2 headers whose segments
// were moved.
func FuzzPlanData(f *testing.F) {
	ds := loadFuzzDataDisks(f)
	for i := range ds {
		f.Add([]byte{byte(i << 1)})
		f.Add([]byte{byte(i<<1 | 1), 0, 0, 0x38, 3, 0xff, 0xff, 0xff, 0xff})
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		d := ds[0]
		if len(in) > 0 {
			d = ds[int(in[0]>>1&3)%len(ds)]
		}
		planFuzzInput(t, d, in)
	})
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
			t.Fatalf("%s unmutated: %v", d.name, err)
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
		t.Fatalf("%s unmutated: %v, decrypted %d of %d bytes", d.name, err, p.Totals.Decrypt, d.parts)
	}
}

// fixChecksums appends to img.Patches the checksums that its patches made wrong, each over the bytes
// the patches before it left: of each XFS v5 structure (by its magic number in the unmutated disk) a
// patch touches; of the ext4 block and inode bitmaps, inodes, group descriptors and superblock; of the
// LVM metadata text, metadata area header and label; of each LUKS2 header copy; of the GPT entry
// arrays and headers. It returns what each appended checksum is of, in order.
func (d *fuzzDisk) fixChecksums(img *fuzzimage.Image) (kinds []string) {
	le := binary.LittleEndian
	read := func(off, n int64) []byte {
		b := make([]byte, n)
		img.ReadAt(b, off)
		return b
	}
	setBytes := func(off int64, b []byte, kind string) {
		img.Patches = append(img.Patches, fuzzimage.Patch{Off: off, Data: b})
		kinds = append(kinds, kind)
	}
	set := func(off int64, v uint32, kind string) { setBytes(off, le.AppendUint32(nil, v), kind) }
	set16 := func(off int64, v uint32, kind string) { setBytes(off, le.AppendUint16(nil, uint16(v)), kind) }
	crc32c := func(b []byte, at int) uint32 {
		clear(b[at : at+4])
		return crc32.Checksum(b, castagnoli)
	}
	patches := slices.Clone(img.Patches)
	touched := func(off, n int64) bool {
		return slices.ContainsFunc(patches, func(pt fuzzimage.Patch) bool { return pt.Off < off+n && off < pt.Off+int64(len(pt.Data)) })
	}
	// XFS: the 512-byte and 4096-byte units around each patch whose unmutated bytes start a structure
	// (/boot and the LVs start 4 KiB-aligned on the disk, so the disk's units are the filesystems').
	for _, pt := range patches {
		for _, unit := range []int64{512, 4096} {
			for at := pt.Off / unit * unit; at < pt.Off+int64(len(pt.Data)); at += unit {
				if n, crcAt := xfsStructure(d.plain, at, unit); n > 0 {
					kind := "xfs " + string(d.plain[at:at+4])
					if kind[4:6] == "IN" {
						kind = "xfs inode"
					}
					set(at+int64(crcAt), crc32c(read(at, n), crcAt), kind)
				}
			}
		}
	}
	// ext4 (metadata_csum, the kernel's crc32c without its final inversion): bitmaps and inodes first,
	// then the descriptors that hold the bitmaps' checksums, then the superblock.
	if x := d.ext; x != nil {
		descs := make([]bool, len(x.groups))
		for g, gd := range x.groups {
			// Each bitmap's checksum: low half at lo, high half at lo+0x20 in descriptors long enough.
			for _, b := range []struct {
				blk  uint64
				n    int64
				lo   int64
				kind string
			}{{gd.BlockBitmap, int64(x.cpg / 8), 0x18, "ext bitmap"}, {gd.InodeBitmap, int64(x.ipg / 8), 0x1a, "ext inode bitmap"}} {
				at := x.off + int64(b.blk)*x.bs
				if !touched(at, b.n) {
					continue
				}
				c := extCRC(x.seed, read(at, b.n))
				set16(x.off+gd.Offset+b.lo, c, b.kind)
				if hi := b.lo + 0x20; x.descSize >= hi+2 {
					set16(x.off+gd.Offset+hi, c>>16, b.kind)
				}
				descs[g] = true
			}
			table := x.off + int64(gd.InodeTable)*x.bs
			for i := range int64(x.ipg) {
				at := table + i*x.inodeSize
				if !touched(at, x.inodeSize) {
					continue
				}
				raw := read(at, x.inodeSize)
				if !slices.ContainsFunc(raw, func(b byte) bool { return b != 0 }) {
					continue // never used: no checksum, as mke2fs leaves it
				}
				ino := uint32(g)*x.ipg + uint32(i) + 1
				c := extCRC(x.seed, le.AppendUint32(nil, ino), raw[0x64:0x68])
				extra := int64(le.Uint16(raw[0x80:]))
				hi := x.inodeSize > 128 && 0x84 <= 128+extra
				clear(raw[0x7c:0x7e])
				if hi {
					clear(raw[0x82:0x84])
				}
				c = extCRC(c, raw)
				set16(at+0x7c, c, "ext inode")
				if hi {
					set16(at+0x82, c>>16, "ext inode")
				}
			}
			descs[g] = descs[g] || touched(x.off+gd.Offset, x.descSize)
		}
		for g, gd := range x.groups {
			if descs[g] {
				b := read(x.off+gd.Offset, x.descSize)
				clear(b[0x1e:0x20])
				set16(x.off+gd.Offset+0x1e, extCRC(x.seed, le.AppendUint32(nil, uint32(g)), b), "ext descriptor")
			}
		}
		if touched(x.off+1024, 1024) {
			set(x.off+1024+0x3fc, extCRC(^uint32(0), read(x.off+1024, 0x3fc)), "ext superblock")
		}
	}
	// LVM: the text of the first metadata area, its header, the label (sector 1 of the PV).
	if pv := d.partOff; string(d.plain[pv+512:pv+520]) == "LABELONE" {
		mda := read(pv+4096, 512)
		if string(mda[4:20]) == lvm.MDAMagic {
			// The header: its own start on the PV at 24, the first raw_locn (offset, size, checksum) at 40.
			start, off, n := int64(le.Uint64(mda[24:])), int64(le.Uint64(mda[40:])), int64(le.Uint64(mda[48:]))
			if start == 4096 && off > 0 && off < 1<<20 && n > 0 && n < 1<<20 {
				set(pv+4096+56, lvm.CRC(read(pv+start+off, n)), "lvm text")
			}
			set(pv+4096, lvm.CRC(read(pv+4096, 512)[4:]), "lvm header")
		}
		set(pv+512+16, lvm.CRC(read(pv+512, 512)[20:]), "lvm label")
	}
	// LUKS2: each copy of the header (binary header and JSON area, hdr_size bytes at 8), its SHA-256
	// at 448 computed with that field zeroed.
	if at := d.luks2At; at >= 0 {
		n := int64(binary.BigEndian.Uint64(d.plain[at+8:]))
		for _, c := range []int64{at, at + n} {
			if touched(c, n) {
				h := read(c, n)
				clear(h[448:512])
				sum := sha256.Sum256(h)
				setBytes(c+448, sum[:], "luks2 header")
			}
		}
	}
	// GPT: both headers and their entry arrays.
	for _, lba := range []int64{1, int64(len(d.plain))/512 - 1} {
		h := read(lba*512, 512)
		if string(h[:8]) != "EFI PART" {
			continue
		}
		entries, count, size := int64(le.Uint64(h[72:])), int64(le.Uint32(h[80:])), int64(le.Uint32(h[84:]))
		if count*size > 0 && count*size <= 1<<20 && entries*512+count*size <= int64(len(d.plain)) {
			set(lba*512+88, crc32.ChecksumIEEE(read(entries*512, count*size)), "gpt entries")
		}
		if n := int64(le.Uint32(h[12:])); n >= 92 && n <= 512 {
			set(lba*512+16, crc32.ChecksumIEEE(append(read(lba*512, 16), append(make([]byte, 4), read(lba*512+20, n-20)...)...)), "gpt header")
		}
	}
	return kinds
}

// extCRC continues ext4's crc32c (ext4_chksum: no inversion on entry or exit) from crc over bs.
func extCRC(crc uint32, bs ...[]byte) uint32 {
	for _, b := range bs {
		crc = ^crc32.Update(^crc, castagnoli, b)
	}
	return crc
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

// fuzzDisk is a fuzzed disk: its plaintext, the range that is encrypted on every read and its cipher,
// the key file and a detached header that open it, and where the plan of the unmutated disk reads.
type fuzzDisk struct {
	name           string
	plain          []byte
	partOff, parts int64 // the encrypted range: a LUKS data segment
	c              diskcipher.Cipher
	header         []byte // a detached header (FuzzPlan's cheap copy), nil when the disk holds it
	luks2At        int64  // where an attached LUKS2 header starts, -1 for none
	key            string
	ext            *extLayout // the ext4 filesystem in the data segment, nil for none
	targets        []int64
}

// extLayout is where an ext4 filesystem's checksummed metadata lies on the unmutated disk.
type extLayout struct {
	off                     int64 // of the filesystem on the disk
	bs, descSize, inodeSize int64
	ipg, cpg                uint32 // inodes and clusters per group
	seed                    uint32 // of every metadata checksum
	groups                  []ext.GroupDesc
}

var (
	fuzzDiskOnce sync.Once
	fuzzDiskVal  *fuzzDisk
	fuzzDiskErr  error

	fuzzDataOnce sync.Once
	fuzzDataVal  []*fuzzDisk
	fuzzDataErr  error
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

// loadFuzzDataDisks builds FuzzPlanData's disks, lun0, lun1 and lun2 of the VM fixture, once per process.
func loadFuzzDataDisks(t testing.TB) []*fuzzDisk {
	t.Helper()
	if raceEnabled {
		t.Skip("run without -race only: no concurrency of its own")
	}
	m := vmfixture.Load(t)
	fuzzDataOnce.Do(func() {
		for _, name := range []string{"lun0", "lun1", "lun2"} {
			d, err := newFuzzDataDisk(m, name)
			if err != nil {
				fuzzDataErr = fmt.Errorf("%s: %w", name, err)
				return
			}
			fuzzDataVal = append(fuzzDataVal, d)
		}
	})
	if fuzzDataErr != nil {
		t.Fatal(fuzzDataErr)
	}
	return fuzzDataVal
}

func newFuzzDisk(fx fixture.Fixture) (*fuzzDisk, error) {
	plain, err := os.ReadFile(fx.Expected)
	if err != nil {
		return nil, err
	}
	d := &fuzzDisk{name: fx.Name, plain: plain, key: fx.KeyFiles[0], luks2At: -1}
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
	return d, d.findTargets()
}

// newFuzzDataDisk is the VM fixture's data disk name with its data segment decrypted (the manifest
// gives the volume key: the keyslots are cheap already).
func newFuzzDataDisk(m *vmfixture.Manifest, name string) (*fuzzDisk, error) {
	dd, ok := m.Disk(name)
	if !ok || dd.Filesystem == nil || dd.Filesystem.Type != "ext4" {
		return nil, errors.New("not an ext4 data disk of the fixture")
	}
	plain, err := os.ReadFile(m.Path(dd.File))
	if err != nil {
		return nil, err
	}
	pt, err := os.ReadFile(m.Path(dd.Plaintext))
	if err != nil {
		return nil, err
	}
	off := dd.DeviceOffset + dd.LUKS.DataOffset
	if off+int64(len(pt)) > int64(len(plain)) {
		return nil, fmt.Errorf("plaintext of %d bytes at %d runs past the %d-byte disk", len(pt), off, len(plain))
	}
	copy(plain[off:], pt)
	vk, err := hex.DecodeString(dd.LUKS.VolumeKey)
	if err != nil {
		return nil, err
	}
	d := &fuzzDisk{name: name, plain: plain, partOff: off, parts: int64(len(pt)), key: m.Path(dd.KeyFile), luks2At: -1}
	if dd.LUKS.Version == 2 {
		d.luks2At = dd.DeviceOffset
	}
	if d.c, err = diskcipher.New(dd.LUKS.Cipher, vk, dd.LUKS.SectorSize); err != nil {
		return nil, err
	}
	fsOff := off + dd.Filesystem.Offset
	fs, err := ext.Open(bytes.NewReader(plain[fsOff:fsOff+dd.Filesystem.Size]), dd.Filesystem.Size)
	if err != nil {
		return nil, err
	}
	sb := fs.SB
	if !sb.HasMetadataCsum() {
		return nil, errors.New("ext4 without metadata_csum")
	}
	x := &extLayout{off: fsOff, bs: sb.BlockSize(), descSize: 32, inodeSize: int64(sb.InodeSize),
		ipg: sb.InodesPerGroup, cpg: sb.ClustersPerGroup, seed: extCRC(^uint32(0), sb.UUID[:])}
	if sb.Has64Bit() {
		x.descSize = int64(sb.DescSize)
	}
	if sb.FeatureIncompat&ext.IncompatCsumSeed != 0 {
		x.seed = sb.ChecksumSeed
	}
	for g := range fs.Groups() {
		gd, err := fs.Group(g)
		if err != nil {
			return nil, err
		}
		x.groups = append(x.groups, gd)
	}
	d.ext = x
	return d, d.findTargets()
}

// findTargets sets d.targets: where the plan of the unmutated disk reads, every 64 KiB of each read (a
// patch lands up to 64 KiB past its target). File contents read whole (the initramfs, the header
// file) would crowd out the metadata: reads over 1 MiB count by their first 64 KiB only.
func (d *fuzzDisk) findTargets() error {
	rec := &readLog{r: d.disk(&fuzzimage.Image{Base: d.plain})}
	src, err := luksconv.OpenReader(rec, int64(len(d.plain)), nil)
	if err != nil {
		return err
	}
	p, err := luksconv.NewPlan(context.Background(), src, d.opts())
	if err != nil {
		return fmt.Errorf("plan of the unmutated disk: %w", err)
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
	return nil
}

// opts opens d with its key file. A mutated header may ask for a costly derivation (LUKS1 iterations,
// Argon2 memory), which luks refuses over its limits: the fuzzer's are tight, so that no input spends
// the seconds the default limits allow a real header.
func (d *fuzzDisk) opts() luksconv.PlanOptions {
	o := luksconv.PlanOptions{KeyFile: d.key, KDFLimits: luks.KDFLimits{MaxTime: 200 * time.Millisecond, MaxMemoryKiB: 64 << 10}}
	if d.header != nil {
		o.Header = &luksconv.Header{R: bytes.NewReader(d.header), Size: int64(len(d.header)), Path: "header"}
	}
	return o
}

// disk is img with the data segment encrypted as the fixture's was.
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

// TestFixChecksums: on each unmutated disk, fixChecksums computes every checksum it writes to the
// value the real tools stored (mkfs.xfs, mkfs.ext4, lvm2, cryptsetup, sgdisk), for a no-op patch of
// 4 KiB at each target; and it covers every kind of checksummed structure the disk's plan reads.
func TestFixChecksums(t *testing.T) {
	gpt := []string{"gpt entries", "gpt header"}
	extKinds := []string{"ext superblock", "ext descriptor", "ext bitmap", "ext inode bitmap", "ext inode"}
	for _, c := range []struct {
		name  string
		disk  func(t *testing.T) *fuzzDisk
		kinds []string
	}{
		{"rhel8-lvm", func(t *testing.T) *fuzzDisk { return loadFuzzDisk(t) },
			append([]string{"xfs XFSB", "xfs XAGF", "xfs AB3B", "xfs inode", "lvm text", "lvm header", "lvm label"}, gpt...)},
		{"lun0", func(t *testing.T) *fuzzDisk { return loadFuzzDataDisks(t)[0] }, append([]string{"luks2 header"}, extKinds...)},
		{"lun1", func(t *testing.T) *fuzzDisk { return loadFuzzDataDisks(t)[1] }, append([]string{"luks2 header"}, append(extKinds, gpt...)...)},
		{"lun2", func(t *testing.T) *fuzzDisk { return loadFuzzDataDisks(t)[2] }, append(extKinds, gpt...)},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := c.disk(t)
			seen := map[string]int{}
			for _, off := range d.targets {
				end := min(off+4096, int64(len(d.plain)))
				img := &fuzzimage.Image{Base: d.plain, Patches: []fuzzimage.Patch{{Off: off, Data: d.plain[off:end]}}}
				kinds := d.fixChecksums(img)
				for i, pt := range img.Patches[1:] {
					if !bytes.Equal(pt.Data, d.plain[pt.Off:pt.Off+int64(len(pt.Data))]) {
						t.Fatalf("%s checksum at %d (a no-op patch at %d): %x, stored %x", kinds[i], pt.Off, off, pt.Data, d.plain[pt.Off:pt.Off+int64(len(pt.Data))])
					}
					seen[kinds[i]]++
				}
			}
			t.Logf("%d targets; checksums checked: %v", len(d.targets), seen)
			for _, k := range c.kinds {
				if seen[k] == 0 {
					t.Errorf("no %s checksum was checked", k)
				}
			}
		})
	}
}
