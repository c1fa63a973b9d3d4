package luksconv_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/luksconv/luksconv/gpt"
	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/luks"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/vhd"
)

func fileHash(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// warnText is the messages of ws, one a line.
func warnText(ws []luksconv.Warning) string {
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "%s: %s\n", w.Code, w.Message)
	}
	return b.String()
}

// warnMessages is the messages of ws.
func warnMessages(ws []luksconv.Warning) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.Message)
	}
	return out
}

// inspectFile inspects the disk image at path and fails the test if it cannot.
func inspectFile(t testing.TB, path string) *luksconv.Report {
	t.Helper()
	src, err := luksconv.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rep, err := luksconv.Inspect(context.Background(), src, luksconv.InspectOptions{})
	if err != nil {
		t.Fatalf("inspect %s: %v", path, err)
	}
	return rep
}

func openHeader(t testing.TB, path string) *luksconv.Header {
	t.Helper()
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, _ := f.Stat()
	return &luksconv.Header{R: f, Size: fi.Size(), Path: path}
}

// convert runs the library path end to end with the guest left as it is (KeepGuest), so that the output
// can be compared with the fixture's expected disk, and returns the output path.
func convert(t *testing.T, input, headerPath, keyFile string, partition int, format luksconv.Format, workers int, allowUnknown bool, fullCopy ...bool) (string, *luksconv.Plan, *luksconv.Result) {
	t.Helper()
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return convertOpts(t, input, luksconv.PlanOptions{
		Passphrase: key, Header: openHeader(t, headerPath), Partition: partition, Format: format,
		AllowUnknownContent: allowUnknown, FullCopy: len(fullCopy) > 0 && fullCopy[0], KeepGuest: true}, workers)
}

// convertOpts plans with opts, executes into a new file and returns its path.
func convertOpts(t *testing.T, input string, opts luksconv.PlanOptions, workers int) (string, *luksconv.Plan, *luksconv.Result) {
	t.Helper()
	src, err := luksconv.OpenFile(input)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if opts.Format == "" {
		opts.Format = luksconv.FormatRaw
	}
	format := opts.Format
	p, err := luksconv.NewPlan(context.Background(), src, opts)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	defer p.Close()
	for _, w := range p.Warnings {
		if w.Code == "" || w.Message == "" {
			t.Errorf("warning without a code or a message: %+v", w)
		}
	}
	out := filepath.Join(t.TempDir(), "out."+string(format))
	sink, err := luksconv.CreateFile(p, out, luksconv.OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var events, finals int
	res, err := luksconv.Execute(context.Background(), p, src, sink, luksconv.ExecuteOptions{
		Workers: workers, ChunkSize: 1 << 20, Progress: func(pr luksconv.Progress) {
			events++
			if pr.Final {
				finals++
			}
		}})
	if err != nil {
		sink.Abort()
		t.Fatalf("execute: %v", err)
	}
	if err := sink.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if events == 0 || finals != 1 {
		t.Errorf("%d progress events, %d final ones; want some, and one final", events, finals)
	}
	return out, p, res
}

// sameContent compares two files byte for byte and reports the first difference.
func sameContent(t *testing.T, got, want string, n int64) {
	t.Helper()
	a, err := os.Open(got)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < n; off += int64(len(ba)) {
		m := min(int64(len(ba)), n-off)
		if _, err := a.ReadAt(ba[:m], off); err != nil {
			t.Fatalf("%s at %d: %v", got, off, err)
		}
		if _, err := b.ReadAt(bb[:m], off); err != nil {
			t.Fatalf("%s at %d: %v", want, off, err)
		}
		if !bytes.Equal(ba[:m], bb[:m]) {
			for i := range m {
				if ba[i] != bb[i] {
					t.Fatalf("%s differs from %s at byte %d", got, want, off+i)
				}
			}
		}
	}
}

func TestConvertFixtures(t *testing.T) {
	set := fixture.Load(t)
	converted := 0
	for _, f := range set.Fixtures {
		if f.Expected == "" {
			continue
		}
		if f.SparseBlock != 0 {
			// Zero ciphertext in used space is decrypted, so this image's output differs from its
			// Expected there; TestZeroCiphertext checks it.
			continue
		}
		inputs := map[string]string{"raw": f.Image, "vhd-fixed": f.VHDFixed, "vhd-dynamic": f.VHDDynamic}
		for kind, input := range inputs {
			if input == "" {
				continue
			}
			for ki, key := range f.KeyFiles {
				t.Run(f.Name+"/"+kind+"/key"+string(rune('0'+ki)), func(t *testing.T) {
					before := fileHash(t, input)
					// Full copy: every sector of the volume, free space included, must decrypt exactly.
					out, p, res := convert(t, input, f.Header, key, f.Partition, luksconv.FormatRaw, 2, !holdsFilesystem(f), true)
					exp, _ := os.Stat(f.Expected)
					if p.OutputSize != exp.Size() {
						t.Fatalf("output size %d, expected image is %d", p.OutputSize, exp.Size())
					}
					sameContent(t, out, f.Expected, exp.Size())
					if got := fileHash(t, input); got != before {
						t.Fatal("the source image changed")
					}
					if p.Volume.Partition != f.Partition || p.Volume.Version != f.LUKSVersion || p.Volume.Cipher != f.Cipher {
						t.Errorf("plan volume %+v does not match fixture %s", p.Volume, f.Name)
					}
					if res.ZeroCiphertextZeroed != 0 || res.ZeroCiphertextDecrypted != 0 {
						// Every fixture but the sparse one was encrypted by cryptsetup sector by sector.
						t.Errorf("report counts zero ciphertext: zeroed %d, decrypted %d", res.ZeroCiphertextZeroed, res.ZeroCiphertextDecrypted)
					}
					if res.BytesDecrypted != p.Totals.Decrypt {
						t.Errorf("decrypted %d bytes, plan says %d", res.BytesDecrypted, p.Totals.Decrypt)
					}
					if res.BytesWritten+res.BytesSkipped != p.Totals.Copy+p.Totals.Decrypt+zeroWork(p) {
						t.Errorf("written %d + skipped %d != work %d", res.BytesWritten, res.BytesSkipped, p.Totals.Copy+p.Totals.Decrypt)
					}
				})
				converted++
			}
		}
	}
	if converted == 0 {
		t.Fatal("no fixture with an expected output")
	}
}

// holdsFilesystem reports whether the fixture's encrypted partition holds a filesystem or an LVM PV
// (rather than random data, which no signature check can tell from a wrong header).
func holdsFilesystem(f fixture.Fixture) bool {
	if f.LVM != nil {
		return true
	}
	for _, fs := range f.Filesystems {
		if fs.Partition == f.Partition && fs.Encrypted {
			return true
		}
	}
	return false
}

// TestForeignHeaderRefused gives a detached header (and its key) from another disk: it unlocks, but the
// plaintext is garbage, which NewPlan must refuse rather than write.
func TestForeignHeaderRefused(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	other, ok := set.Get("luks2-two-keyslots")
	if !ok {
		t.Fatal("no luks2-two-keyslots fixture")
	}
	key, _ := os.ReadFile(other.KeyFiles[0])
	src, err := luksconv.OpenFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_, err = luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{
		Passphrase: key, Header: openHeader(t, other.Header), Partition: f.Partition})
	if !errors.Is(err, luksconv.ErrHeaderMismatch) || !strings.Contains(err.Error(), "another disk") {
		t.Fatalf("got %v, want a refusal naming a foreign header", err)
	}
}

// zeroWork is the zero-region bytes Execute touches on a zero-filled sink: only patches.
func zeroWork(p *luksconv.Plan) int64 {
	var n int64
	for _, pt := range p.Patches {
		for _, r := range p.Regions {
			if r.Kind == luksconv.Zero && pt.Offset >= r.Offset && pt.Offset < r.Offset+r.Length {
				n += int64(pt.Length)
			}
		}
	}
	return n
}

// TestConvertToVHD checks the VHD output with qemu-img: a fixed VHD of a whole MiB whose contents equal the
// expected disk.
func TestConvertToVHD(t *testing.T) {
	set := fixture.Load(t)
	f, ok := set.Get("rhel8-lvm")
	if !ok {
		t.Fatal("no rhel8-lvm fixture")
	}
	out, p, _ := convert(t, f.Image, f.Header, f.KeyFiles[0], f.Partition, luksconv.FormatVHD, 1, false)
	if p.OutputSize%vhd.MiB != 0 {
		t.Fatalf("VHD virtual size %d is not a whole MiB", p.OutputSize)
	}
	fi, _ := os.Stat(out)
	if fi.Size() != p.OutputSize+512 {
		t.Fatalf("VHD file is %d bytes, want %d", fi.Size(), p.OutputSize+512)
	}
	info, err := exec.Command("qemu-img", "info", "--output=json", "-f", "vpc", out).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, info)
	}
	if !strings.Contains(string(info), `"virtual-size": `+strconv.FormatInt(p.OutputSize, 10)) {
		t.Fatalf("qemu-img info does not report virtual size %d:\n%s", p.OutputSize, info)
	}
	if len(p.Patches) == 0 {
		cmp, err := exec.Command("qemu-img", "compare", "-f", "vpc", "-F", "raw", out, f.Expected).CombinedOutput()
		if err != nil {
			t.Fatalf("qemu-img compare: %v\n%s", err, cmp)
		}
	}
}

func TestWrongPassphraseLeavesNoOutput(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	src, err := luksconv.OpenFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_, err = luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{
		Passphrase: []byte("not the key"), Header: openHeader(t, f.Header), Partition: f.Partition})
	if !errors.Is(err, luks.ErrWrongPassphrase) {
		t.Fatalf("got %v, want ErrWrongPassphrase", err)
	}
}

func TestReencryptInProgressRefused(t *testing.T) {
	set := fixture.Load(t)
	f, ok := set.Get("reencrypt-interrupted")
	if !ok {
		t.Fatal("no reencrypt-interrupted fixture")
	}
	key, _ := os.ReadFile(f.KeyFiles[0])
	src, err := luksconv.OpenFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_, err = luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{
		Passphrase: key, Header: openHeader(t, f.Header), Partition: f.Partition})
	if !errors.Is(err, luks.ErrReencryptInProgress) {
		t.Fatalf("got %v, want ErrReencryptInProgress", err)
	}
}

func TestExecuteCancel(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	key, _ := os.ReadFile(f.KeyFiles[0])
	src, err := luksconv.OpenFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{
		Passphrase: key, Header: openHeader(t, f.Header), Partition: f.Partition})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	sink := &cancellingSink{cancel: cancel, after: 3}
	_, err = luksconv.Execute(ctx, p, src, sink, luksconv.ExecuteOptions{Workers: 2, ChunkSize: 1 << 20})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if n := sink.writes.Load(); n > 3+2 {
		t.Fatalf("%d writes after cancellation at 3 with 2 workers", n)
	}
}

// nullOutput discards what is written; tests embed it and override what they watch.
type nullOutput struct{}

func (nullOutput) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }
func (nullOutput) ZeroFilled() bool                         { return true }
func (nullOutput) Journal() luksconv.Journal                { return nil }
func (nullOutput) Commit(context.Context) error             { return nil }
func (nullOutput) Abort() error                             { return nil }

type cancellingSink struct {
	nullOutput
	cancel func()
	after  int64
	writes atomic.Int64
}

func (s *cancellingSink) WriteAt(p []byte, off int64) (int, error) {
	if s.writes.Add(1) == s.after {
		s.cancel()
	}
	return len(p), nil
}

// TestVHDPaddingRelocatesGPT converts a disk whose size is not a whole MiB to VHD: the output is padded
// to the next MiB and the backup GPT moves to the new end, which sgdisk must find clean.
func TestVHDPaddingRelocatesGPT(t *testing.T) {
	set := fixture.Load(t)
	f, ok := set.Get("luks2-pbkdf2-sha512-attached")
	if !ok {
		t.Fatal("no luks2-pbkdf2-sha512-attached fixture")
	}
	dir := t.TempDir()
	// Grow the disk by 7 sectors and let sgdisk move its backup table there: a real, odd-sized disk.
	odd := filepath.Join(dir, "odd.raw")
	oddExpected := filepath.Join(dir, "odd.expected.raw")
	for _, c := range [][2]string{{f.Image, odd}, {f.Expected, oddExpected}} {
		b, err := os.ReadFile(c[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c[1], append(b, make([]byte, 7*512)...), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("sgdisk", "-e", c[1]).CombinedOutput(); err != nil {
			t.Fatalf("sgdisk -e: %v\n%s", err, out)
		}
	}
	out, p, _ := convert(t, odd, "", f.KeyFiles[0], f.Partition, luksconv.FormatVHD, 2, !holdsFilesystem(f))
	fi, _ := os.Stat(odd)
	if p.OutputSize != vhd.AzureSize(fi.Size()) || p.OutputSize == fi.Size() {
		t.Fatalf("output size %d for a %d-byte disk", p.OutputSize, fi.Size())
	}
	if len(p.Patches) == 0 {
		t.Fatal("no GPT relocation patches")
	}
	raw := filepath.Join(dir, "out.raw")
	if o, err := exec.Command("qemu-img", "convert", "-f", "vpc", "-O", "raw", out, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, o)
	}
	v, err := exec.Command("sgdisk", "-v", raw).CombinedOutput()
	if err != nil || !strings.Contains(string(v), "No problems found") {
		t.Fatalf("sgdisk -v on the padded output: %v\n%s", err, v)
	}
	// Every partition holds exactly what the expected disk holds.
	for _, part := range f.Partitions {
		a := readRange(t, raw, part.Start, part.Size)
		b := readRange(t, oddExpected, part.Start, part.Size)
		if !bytes.Equal(a, b) {
			t.Fatalf("partition %d differs from the expected disk", part.Number)
		}
	}
}

func readRange(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, n)
	if _, err := fh.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAutoDiscovery converts ADE OS disks given only the key: the header comes from /boot/luks/osluksheader
// and the partition from rd.luks.ade.partuuid (RHEL 8) or from having no signature (RHEL 7 layout).
func TestAutoDiscovery(t *testing.T) {
	set := fixture.Load(t)
	tested := 0
	for _, f := range set.Fixtures {
		if f.BootPartition == 0 || f.Header == "" || f.Expected == "" || f.SparseBlock != 0 {
			continue
		}
		tested++
		t.Run(f.Name, func(t *testing.T) {
			rep := inspectFile(t, f.Image)
			if rep.ADE == nil || rep.ADE.BootPartition != f.BootPartition || rep.ADE.HeaderPath != f.HeaderPath {
				t.Fatalf("ADE discovery: %+v, want /boot on partition %d holding %s", rep.ADE, f.BootPartition, f.HeaderPath)
			}
			if rep.ADE.PartUUID != "" && rep.ADE.PartUUID != f.PartUUID {
				t.Errorf("rd.luks.ade.partuuid %s, fixture partition has %s", rep.ADE.PartUUID, f.PartUUID)
			}
			out, p, _ := convert(t, f.Image, "", f.KeyFiles[0], 0, luksconv.FormatRaw, 2, false)
			if p.Volume.Partition != f.Partition || p.Volume.Header != "detached" {
				t.Fatalf("converted partition %d (%s header), want %d (detached)", p.Volume.Partition, p.Volume.Header, f.Partition)
			}
			exp, _ := os.Stat(f.Expected)
			sameContent(t, out, f.Expected, exp.Size())

			// The output still carries the header on /boot (guest edits come later), but its partition is
			// plaintext now: Inspect must say so instead of offering to decrypt it again.
			rep = inspectFile(t, out)
			for _, pi := range rep.Partitions {
				if pi.LUKS != nil {
					t.Fatalf("the converted disk still shows LUKS on partition %d", pi.Number)
				}
			}
			if !strings.Contains(warnText(rep.Warnings), "converted before") {
				t.Errorf("no warning about the leftover header: %v", rep.Warnings)
			}
		})
	}
	if tested < 2 {
		t.Fatalf("only %d fixtures with a header on /boot", tested)
	}
}

// TestUsedBlocksOnly checks the default used-block-aware plan: free LVM extents and XFS free space are
// skipped (not read, written as zeros), the output still equals the expected disk (whose free space is
// zero), and --full-copy skips nothing.
func TestUsedBlocksOnly(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	key, _ := os.ReadFile(f.KeyFiles[0])
	src, err := luksconv.OpenFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	plan := func(full bool) *luksconv.Plan {
		p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{Passphrase: key, FullCopy: full, KeepGuest: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	used, full := plan(false), plan(true)
	if len(full.Skipped) != 0 {
		t.Fatalf("full copy skipped %v", full.Skipped)
	}
	reasons := map[string]int64{}
	var skipped int64
	for _, s := range used.Skipped {
		reasons[s.Reason] = s.Bytes
		skipped += s.Bytes
	}
	for _, want := range []string{"lvm free extents", "xfs free space: partition 2", "xfs free space: rootvg/rootlv",
		"xfs free space: rootvg/homelv", "xfs free space: rootvg/varlv"} {
		if reasons[want] == 0 {
			t.Errorf("nothing skipped for %q (skipped: %v)", want, used.Skipped)
		}
	}
	if got := full.Totals.Copy + full.Totals.Decrypt - (used.Totals.Copy + used.Totals.Decrypt); got != skipped {
		t.Errorf("work shrank by %d bytes, skipped entries sum to %d", got, skipped)
	}
	if len(used.Warnings) != 0 {
		t.Errorf("warnings: %v", used.Warnings)
	}
	// Every decrypt region still starts on an encryption sector.
	for _, r := range used.Regions {
		if r.Kind == luksconv.Decrypt && (r.Offset%int64(used.Volume.SectorSize) != 0 || r.Length%int64(used.Volume.SectorSize) != 0) {
			t.Fatalf("decrypt region %+v is not sector-aligned", r)
		}
	}
	out := filepath.Join(t.TempDir(), "used.raw")
	sink, err := luksconv.CreateFile(used, out, luksconv.OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := luksconv.Execute(context.Background(), used, src, sink, luksconv.ExecuteOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res.BytesCopied+res.BytesDecrypted != used.Totals.Copy+used.Totals.Decrypt {
		t.Errorf("read %d bytes, plan says %d", res.BytesCopied+res.BytesDecrypted, used.Totals.Copy+used.Totals.Decrypt)
	}
	exp, _ := os.Stat(f.Expected)
	sameContent(t, out, f.Expected, exp.Size())
}

// TestWholeDiskVolume converts a LUKS device with no partition table (an attached-header volume cut out
// of its disk): the output is the plaintext at offset 0 followed by zeros, which is exactly the fixture's
// plaintext partition image.
func TestWholeDiskVolume(t *testing.T) {
	set := fixture.Load(t)
	f, ok := set.Get("data-luks2-4k")
	if !ok {
		t.Fatal("no data-luks2-4k fixture")
	}
	part, ok := f.Part(f.Partition)
	if !ok {
		t.Fatalf("no partition %d in the manifest", f.Partition)
	}
	bare := filepath.Join(t.TempDir(), "bare.luks")
	if err := os.WriteFile(bare, readRange(t, f.Image, part.Start, part.Size), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := luksconv.OpenFile(bare)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := luksconv.Inspect(context.Background(), src, luksconv.InspectOptions{})
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Partitions) != 1 || rep.Partitions[0].Number != 0 || rep.Partitions[0].LUKS == nil || rep.Table != nil {
		t.Fatalf("inspect of a bare LUKS device: %+v", rep.Partitions)
	}
	out, p, _ := convert(t, bare, "", f.KeyFiles[0], 0, luksconv.FormatRaw, 2, !holdsFilesystem(f), true)
	if p.Volume.Partition != 0 || p.Volume.Header != "attached" {
		t.Fatalf("plan volume %+v", p.Volume)
	}
	sameContent(t, out, f.Plaintext, part.Size)

	// A blank disk is still "no partition table", not a volume.
	blank := filepath.Join(t.TempDir(), "blank.raw")
	os.WriteFile(blank, make([]byte, 1<<20), 0o600)
	b, err := luksconv.OpenFile(blank)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := luksconv.Inspect(context.Background(), b, luksconv.InspectOptions{}); !errors.Is(err, gpt.ErrNoGPT) {
		t.Fatalf("blank disk: %v, want gpt.ErrNoGPT", err)
	}
}
