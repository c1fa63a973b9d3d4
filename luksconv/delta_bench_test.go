package luksconv_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/deltafixture"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
)

// BenchmarkDelta measures a cutover against a full conversion of the same final state: an encrypted
// ext4 volume of LUKSCONV_BENCH_DELTA_MIB MiB (default 1024) with 10% of it in files, of which 1% of
// the volume is then overwritten in place (one file's blocks, new bytes, re-encrypted by cryptsetup
// under the same volume key). Both runs plan the final state (the key derivation included) and write a
// file; the cutover adds Delta and writes into a copy of the first pass's output, flushed. Metrics: the
// shares of the volume the cutover moves and the full conversion reads (copies or decrypts) and their
// ratio, the seconds of each run and their ratio; the seconds of a --full-copy conversion of the final
// state (the whole volume decrypted) and the cutover's ratio to that; and beside them `cat IN > OUT;
// sync OUT` of the final state's ciphertext on the same filesystem (outside the timer). The three timed runs take
// turns going first, so -benchtime should be a multiple of 3. `make bench` runs it (3 times;
// BENCH_DELTA_ONLY=1 for this row alone).
func BenchmarkDelta(b *testing.B) {
	testenv.Need(b, "cryptsetup", "mkfs.ext4", "debugfs")
	mib := int64(1024)
	if s := os.Getenv("LUKSCONV_BENCH_DELTA_MIB"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 64 {
			b.Fatalf("LUKSCONV_BENCH_DELTA_MIB=%q: want at least 64", s)
		}
		mib = n
	}
	size := mib << 20
	dir := b.TempDir()
	rng := rand.New(rand.NewPCG(16, 2))
	vk := testenv.WriteFile(b, dir, "vk", testenv.RandBytes(rng, 64))
	pass := testenv.WriteFile(b, dir, "pass", []byte("delta-bench-passphrase"))
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	// 10% in use: ten files of 1% each.
	for i := range 10 {
		testenv.WriteFile(b, tree, fmt.Sprintf("f%d", i), testenv.RandBytes(rng, int(size/100)))
	}
	plain1 := filepath.Join(dir, "plain1.img")
	testenv.Run(b, "mkfs.ext4", "-q", "-b", "4096", "-d", tree, plain1, strconv.FormatInt(mib, 10)+"M")
	s1 := deltafixture.Encrypt(b, dir, "s1", plain1, vk, pass)

	// 1% overwritten in place: f3's blocks get new bytes.
	plain2 := filepath.Join(dir, "plain2.img")
	testenv.Run(b, "cp", "--sparse=always", plain1, plain2)
	out, err := exec.Command("debugfs", "-R", "blocks /f3", plain1).Output() // the banner goes to stderr
	if err != nil {
		b.Fatal(err)
	}
	blocks := strings.Fields(string(out))
	if int64(len(blocks))*4096 < size/100 {
		b.Fatalf("debugfs blocks /f3: %d blocks", len(blocks))
	}
	f, err := os.OpenFile(plain2, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	for _, s := range blocks {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("debugfs blocks: %q", s)
		}
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(buf, n*4096); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	s2 := deltafixture.Encrypt(b, dir, "s2", plain2, vk, pass)
	changed := deltafixture.ChangedPages(b, s1.Disk, s2.Disk)

	plan := func(st deltafixture.State) (*luksconv.Plan, *luksconv.Source) { return planState(b, st, pass) }
	p1, src1 := plan(s1)
	first := executeTo(b, p1, src1)

	var full, fullCopy, cut, cat time.Duration
	var moved, fullRead int64
	iter := 0
	for b.Loop() {
		b.StopTimer()
		out := filepath.Join(b.TempDir(), "cutover.raw")
		testenv.Run(b, "cp", "--sparse=always", first, out)
		testenv.Run(b, "sync", out) // the copy's own writes are not the cutover's
		// The ceiling of a plain copy of the final state: cat IN > OUT; sync OUT, on the same filesystem.
		start := time.Now()
		testenv.Run(b, "sh", "-c", `cat "$1" > "$2" && sync "$2"`, "sh", s2.Disk, filepath.Join(filepath.Dir(out), "cat.raw"))
		cat += time.Since(start)
		b.StartTimer()

		runs := []func(){
			func() {
				start := time.Now()
				p2, src2 := plan(s2)
				executeTo(b, p2, src2)
				full += time.Since(start)
				fullRead = p2.Totals.Copy + p2.Totals.Decrypt
			},
			// The same conversion reading the whole volume (--full-copy): what a tool that does not know
			// the filesystems' free space pays, the cost the cutover's share of the disk is measured
			// against when the bound counts the disk rather than what a full conversion reads.
			func() {
				start := time.Now()
				pc, srcc := planFile(b, s2.Disk, luksconv.PlanOptions{KeyFile: pass, Header: openHeader(b, s2.Header), FullCopy: true})
				executeTo(b, pc, srcc)
				fullCopy += time.Since(start)
			},
			func() {
				start := time.Now()
				p2, src2 := plan(s2)
				d, err := luksconv.Delta(p1, p2, changed)
				if err != nil {
					b.Fatal(err)
				}
				executeInto(b, d, src2, out)
				cut += time.Since(start)
				moved = d.Totals.Copy + d.Totals.Decrypt + d.Totals.Zero
			},
		}
		// The run right after the untimed copies above is slower (a full conversion by 0.03-0.1 s, against
		// one repeated right after it, on this machine): each run goes first in one of three iterations.
		for k := range runs {
			runs[(iter+k)%len(runs)]()
		}
		iter++
	}
	n := float64(b.N)
	b.ReportMetric(100*float64(extent.Total(changed))/float64(size), "changed-%")
	b.ReportMetric(100*float64(moved)/float64(size), "moved-%")
	b.ReportMetric(100*float64(fullRead)/float64(size), "full-read-%")
	b.ReportMetric(full.Seconds()/n, "full-s")
	b.ReportMetric(cut.Seconds()/n, "cutover-s")
	b.ReportMetric(cut.Seconds()/full.Seconds(), "ratio")
	// The time ratio when both runs pay the same per byte they move: its floor, unless the full
	// conversion pays more per byte (its writes slowed by the moment's write-back).
	b.ReportMetric(float64(moved)/float64(fullRead), "bytes-ratio")
	b.ReportMetric(fullCopy.Seconds()/n, "full-copy-s")
	b.ReportMetric(cut.Seconds()/fullCopy.Seconds(), "ratio-full-copy")
	b.ReportMetric(cat.Seconds()/n, "cat-sync-s")
}
