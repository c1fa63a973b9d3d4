package luksconv_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/luksconv"
)

// The examples run on testdata/example/rhel8-ade.raw.zst: a 74 MiB ADE-encrypted RHEL 8 OS disk made
// with the real tools (see its README), decompressed once per test binary.

var (
	exampleOnce sync.Once
	exampleDir  string
	exampleErr  error
)

// exampleDisk returns the decompressed example disk and its BEK key file.
func exampleDisk() (disk, bek string) {
	exampleOnce.Do(func() {
		src := filepath.Join("..", "testdata", "example")
		exampleDir, exampleErr = os.MkdirTemp("", "luksconv-example-")
		if exampleErr != nil {
			return
		}
		exampleErr = unzstd(filepath.Join(src, "rhel8-ade.raw.zst"), filepath.Join(exampleDir, "rhel8-ade.raw"))
		if exampleErr == nil {
			exampleErr = checkSum(filepath.Join(exampleDir, "rhel8-ade.raw"), filepath.Join(src, "image.sha256"))
		}
	})
	if exampleErr != nil {
		log.Fatalf("example disk: %v", exampleErr)
	}
	return filepath.Join(exampleDir, "rhel8-ade.raw"), filepath.Join("..", "testdata", "example", "bek")
}

func unzstd(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := zstd.NewReader(f)
	if err != nil {
		return err
	}
	defer d.Close()
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, d); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}

// checkSum compares a file with the first field of a sha256sum line.
func checkSum(path, sumFile string) error {
	want, err := os.ReadFile(sumFile)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.HasPrefix(string(want), got) {
		return fmt.Errorf("%s: sha256 %s, %s says %s", path, got, sumFile, strings.Fields(string(want))[0])
	}
	return nil
}

// Inspect needs no key: it reads the partition table, finds ADE's detached header on /boot and the
// partition the boot configuration names as encrypted.
func ExampleInspect() {
	disk, _ := exampleDisk()
	src, err := luksconv.OpenFile(disk)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	rep, err := luksconv.Inspect(context.Background(), src, luksconv.InspectOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range rep.Partitions {
		fmt.Printf("partition %d: %s\n", p.Number, p.Content)
		if p.LUKS != nil {
			fmt.Printf("  LUKS%d %s, %s header %s\n", p.LUKS.Version, p.LUKS.Cipher, p.LUKS.Header, p.LUKS.HeaderPath)
		}
	}
	fmt.Printf("ADE: /boot is partition %d, rd.luks.ade.partuuid=%s in %s\n", rep.ADE.BootPartition, rep.ADE.PartUUID, rep.ADE.ArgSource)
	// Output:
	// partition 1: xfs
	// partition 2: no-signature
	//   LUKS2 aes-xts-plain64, detached header partition 1:/boot/luks/osluksheader
	// ADE: /boot is partition 1, rd.luks.ade.partuuid=ade08e8a-0002-4e8a-8e8a-000000000002 in /boot/grub2/grubenv
}

// NewPlan unlocks the volume with the BEK file and lays out the output: what is decrypted, what is
// copied, what free space becomes zeros unread, and the guest edits that undo ADE.
func ExampleNewPlan() {
	disk, bek := exampleDisk()
	src, err := luksconv.OpenFile(disk)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: bek, Format: luksconv.FormatVHD})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	v := p.Volume
	fmt.Printf("partition %d: LUKS%d %s, %d-bit key, keyslot %d, plaintext %s\n", v.Partition, v.Version, v.Cipher, v.KeySizeBits, v.Keyslot, v.Content)
	fmt.Printf("output: %d bytes; decrypt %d, copy %d, zero %d\n", p.OutputSize, p.Totals.Decrypt, p.Totals.Copy, p.Totals.Zero)
	last := ""
	for _, e := range p.Edits { // one Edit per change; a file may have several
		if e.Path != last {
			fmt.Printf("edit %s\n", e.Path)
			last = e.Path
		}
	}
	fmt.Println("ready for LEAPP:", p.Readiness.Ready)
	// Output:
	// partition 2: LUKS2 aes-xts-plain64, 512-bit key, keyslot 0, plaintext lvm2-pv
	// output: 77594624 bytes; decrypt 5840896, copy 8089600, zero 63664128
	// edit /etc/default/grub
	// edit /etc/crypttab
	// edit /etc/fstab
	// edit /etc/lvm/lvm.conf
	// edit /etc/dracut.conf.d/ade.conf
	// edit /boot/grub2/grubenv
	// edit /boot/loader/entries/ade08e8a00004e8a8e8a000000000008-4.18.0-553.el8_10.x86_64.conf
	// edit /boot/luks/osluksheader
	// ready for LEAPP: true
}

// Execute writes the plan into a new fixed VHD, with progress events; the output appears under its
// name only on Commit.
func ExampleExecute() {
	disk, bek := exampleDisk()
	ctx := context.Background()
	src, err := luksconv.OpenFile(disk)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	p, err := luksconv.NewPlan(ctx, src, luksconv.PlanOptions{KeyFile: bek, Format: luksconv.FormatVHD})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	dir, err := os.MkdirTemp("", "example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	out, err := luksconv.CreateOutput(p, filepath.Join(dir, "plain.vhd"), luksconv.OutputOptions{})
	if err != nil {
		log.Fatal(err)
	}
	var final luksconv.Progress
	res, err := luksconv.Execute(ctx, p, src, out, luksconv.ExecuteOptions{
		Progress: func(pr luksconv.Progress) {
			if pr.Final {
				final = pr
			}
		},
	})
	if err != nil {
		out.Abort() // removes the partial file
		log.Fatal(err)
	}
	if err := out.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("decrypted %d bytes, copied %d; progress ended at %d of %d\n", res.BytesDecrypted, res.BytesCopied, final.Done, final.Total)
	// Output:
	// decrypted 5840896 bytes, copied 8089600; progress ended at 13930496 of 13930496
}

// Verify reads a converted disk back and compares every byte with the plan, then the partition table,
// the LVM metadata and the XFS superblocks with the source's.
func ExampleVerify() {
	disk, bek := exampleDisk()
	ctx := context.Background()
	src, err := luksconv.OpenFile(disk)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	p, err := luksconv.NewPlan(ctx, src, luksconv.PlanOptions{KeyFile: bek})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	dir, err := os.MkdirTemp("", "example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "plain.raw")
	out, err := luksconv.CreateOutput(p, path, luksconv.OutputOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := luksconv.Execute(ctx, p, src, out, luksconv.ExecuteOptions{}); err != nil {
		out.Abort()
		log.Fatal(err)
	}
	if err := out.Commit(ctx); err != nil {
		log.Fatal(err)
	}

	written, err := luksconv.OpenFile(path)
	if err != nil {
		log.Fatal(err)
	}
	defer written.Close()
	rep, err := luksconv.Verify(ctx, p, src, written, luksconv.VerifyOptions{})
	if err != nil {
		log.Fatal(err) // wraps luksconv.ErrVerifyFailed when anything differs
	}
	fmt.Println("pass:", rep.Pass, "mismatches:", rep.MismatchCount)
	for _, c := range rep.Structure {
		fmt.Printf("%s: %v\n", c.Name, c.OK)
	}
	// Output:
	// pass: true mismatches: 0
	// size: true
	// format: true
	// gpt: true
	// lvm: true
	// xfs partition 1: true
	// xfs LV rootvg/rootlv: true
}

func TestMain(m *testing.M) {
	code := m.Run()
	if exampleDir != "" {
		os.RemoveAll(exampleDir)
	}
	os.Exit(code)
}

// Delta plans a second pass into an output that already holds a first pass's conversion: here 64 KiB
// of the encrypted volume changed since (a page blob's diff between two snapshots says which), so the
// pass decrypts those bytes again and re-applies the guest edits, nothing else.
func ExampleDelta() {
	disk, bek := exampleDisk()
	src, err := luksconv.OpenFile(disk)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	opts := luksconv.PlanOptions{KeyFile: bek}
	first, err := luksconv.NewPlan(context.Background(), src, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer first.Close()
	// ... the first pass, then the source changes; plan it again.
	next, err := luksconv.NewPlan(context.Background(), src, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer next.Close()
	var changed []extent.Range
	for _, r := range next.Regions {
		if r.Kind == luksconv.Decrypt {
			changed = append(changed, extent.Range{Off: r.Source, Len: 64 << 10})
			break
		}
	}
	d, err := luksconv.Delta(first, next, changed)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("full pass: %d bytes; second pass: decrypt %d, copy %d, zero %d\n", next.OutputSize,
		d.Totals.Decrypt, d.Totals.Copy, d.Totals.Zero)
	// Output:
	// full pass: 77594624 bytes; second pass: decrypt 65536, copy 0, zero 0
}
