package luksconv_test

// These tests use only the package's public API, as a program that imports luksconv would: a helper-VM
// service, a fleet orchestrator, another migration tool.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
)

// planExample opens the example disk and plans its conversion.
func planExample(t *testing.T, format luksconv.Format) (*luksconv.Source, *luksconv.Plan) {
	t.Helper()
	disk, bek := exampleDisk()
	src, err := luksconv.OpenFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: bek, Format: format})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return src, p
}

// cancelAfter is an Output wrapper that cancels the run after a number of writes.
type cancelAfter struct {
	luksconv.Output
	cancel func()
	after  int64
	n      atomic.Int64
}

func (o *cancelAfter) WriteAt(b []byte, off int64) (int, error) {
	if o.n.Add(1) == o.after {
		o.cancel()
	}
	return o.Output.WriteAt(b, off)
}

// TestImporter does what an importer does: inspect, plan, execute with progress and a cancel (the
// partial output is removed, the final progress event says why it stopped), execute again, verify.
func TestImporter(t *testing.T) {
	disk, bek := exampleDisk()
	src, err := luksconv.OpenFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rep, err := luksconv.Inspect(context.Background(), src, luksconv.InspectOptions{})
	if err != nil || rep.ADE == nil {
		t.Fatalf("inspect: %v, ADE %+v", err, rep)
	}
	p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: bek, Format: luksconv.FormatVHD})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	dir := t.TempDir()
	path := filepath.Join(dir, "plain.vhd")
	run := func(ctx context.Context, cancel func()) (*luksconv.Result, []luksconv.Progress, error) {
		o, err := luksconv.CreateOutput(p, path, luksconv.OutputOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out luksconv.Output = o
		if cancel != nil {
			out = &cancelAfter{Output: o, cancel: cancel, after: 2}
		}
		var mu sync.Mutex
		var events []luksconv.Progress
		res, err := luksconv.Execute(ctx, p, src, out, luksconv.ExecuteOptions{Workers: 2, ChunkSize: 64 << 10,
			Progress: func(pr luksconv.Progress) { mu.Lock(); events = append(events, pr); mu.Unlock() }})
		if err != nil {
			if aerr := out.Abort(); aerr != nil {
				t.Fatal(aerr)
			}
			return res, events, err
		}
		return res, events, out.Commit(context.Background())
	}

	ctx, cancel := context.WithCancel(context.Background())
	_, events, err := run(ctx, cancel)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	if n := len(events); n == 0 || !events[n-1].Final || !errors.Is(events[n-1].Err, context.Canceled) || events[n-1].Done >= events[n-1].Total {
		t.Fatalf("cancelled run: last progress event %+v, want a final one with the cancellation and work left", events)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("the cancelled run left %s", ents[0].Name())
	}

	res, events, err := run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	if !last.Final || last.Err != nil || last.Done != last.Total || last.Total != p.Totals.Copy+p.Totals.Decrypt {
		t.Fatalf("final progress event %+v, plan totals %+v", last, p.Totals)
	}
	if res.BytesDecrypted != p.Totals.Decrypt || res.BytesCopied != p.Totals.Copy {
		t.Fatalf("result %+v, plan totals %+v", res, p.Totals)
	}
	out, err := luksconv.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if vr, err := luksconv.Verify(context.Background(), p, src, out, luksconv.VerifyOptions{}); err != nil || !vr.Pass {
		t.Fatalf("verify: %v", err)
	}
}

// gate is an Output that holds its first write until released, so a test can act while Execute runs.
type gate struct {
	luksconv.Output
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gate) WriteAt(b []byte, off int64) (int, error) {
	g.once.Do(func() { close(g.started) })
	<-g.release
	return g.Output.WriteAt(b, off)
}

// gatedReader holds its first read at or after off, once armed, until released.
type gatedReader struct {
	r       io.ReaderAt
	off     int64
	armed   atomic.Bool
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gatedReader) ReadAt(b []byte, off int64) (int, error) {
	if g.armed.Load() && off >= g.off {
		g.once.Do(func() { close(g.started) })
		<-g.release
	}
	return g.r.ReadAt(b, off)
}

// TestCloseDuringExecute closes the plan while Execute and Verify run on it (run it with -race): both
// stop with ErrPlanClosed, nothing crashes, and the closed plan refuses new work.
func TestCloseDuringExecute(t *testing.T) {
	src, p := planExample(t, luksconv.FormatRaw)
	dir := t.TempDir()

	// A finished output for Verify to read, made before the plan is closed.
	done := filepath.Join(dir, "done.raw")
	o, err := luksconv.CreateOutput(p, done, luksconv.OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := luksconv.Execute(context.Background(), p, src, o, luksconv.ExecuteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := o.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(done)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	gr := &gatedReader{r: f, off: p.Volume.PayloadOffset, started: make(chan struct{}), release: make(chan struct{})}
	written, err := luksconv.NewSource(gr, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	gr.armed.Store(true)

	fo, err := luksconv.CreateOutput(p, filepath.Join(dir, "out.raw"), luksconv.OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{Output: fo, started: make(chan struct{}), release: make(chan struct{})}
	var wg sync.WaitGroup
	var execErr, verifyErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, execErr = luksconv.Execute(context.Background(), p, src, g, luksconv.ExecuteOptions{Workers: 2, ChunkSize: 64 << 10})
	}()
	go func() {
		defer wg.Done()
		_, verifyErr = luksconv.Verify(context.Background(), p, src, written, luksconv.VerifyOptions{Workers: 2, ChunkSize: 64 << 10})
	}()
	<-g.started
	<-gr.started
	p.Close()
	close(g.release)
	close(gr.release)
	wg.Wait()
	fo.Abort()
	if !errors.Is(execErr, luksconv.ErrPlanClosed) || !errors.Is(verifyErr, luksconv.ErrPlanClosed) {
		t.Fatalf("Execute: %v; Verify: %v; want ErrPlanClosed from both", execErr, verifyErr)
	}
	if _, err := luksconv.Execute(context.Background(), p, src, nullOutput{}, luksconv.ExecuteOptions{}); !errors.Is(err, luksconv.ErrPlanClosed) {
		t.Fatalf("Execute on a closed plan: %v", err)
	}
	p.Close() // idempotent
}

// eofReader returns io.EOF together with the last bytes of a read that ends exactly at its end, as
// the io.ReaderAt contract allows.
type eofReader struct {
	r    io.ReaderAt
	size int64
}

func (e eofReader) ReadAt(b []byte, off int64) (int, error) {
	n, err := e.r.ReadAt(b, off)
	if err == nil && off+int64(n) == e.size {
		err = io.EOF
	}
	return n, err
}

// TestEOFAtEndReaderAt: a source and an output read through such readers convert and verify.
func TestEOFAtEndReaderAt(t *testing.T) {
	disk, bek := exampleDisk()
	f, size := testenv.Open(t, disk)
	src, err := luksconv.NewSource(eofReader{f, size}, size)
	if err != nil {
		t.Fatal(err)
	}
	p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: bek, Format: luksconv.FormatVHD})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	path := filepath.Join(t.TempDir(), "out.vhd")
	o, err := luksconv.CreateOutput(p, path, luksconv.OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := luksconv.Execute(context.Background(), p, eofReader{f, size}, o, luksconv.ExecuteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := o.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	of, osize := testenv.Open(t, path)
	out, err := luksconv.NewSource(eofReader{of, osize}, osize)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := luksconv.Verify(context.Background(), p, eofReader{f, size}, out, luksconv.VerifyOptions{}); err != nil || !rep.Pass {
		t.Fatalf("verify: %v", err)
	}
}

// TestOutputIsInput: the library refuses to write into an input of the plan — the source, the
// detached header file, the key file — under any name, with Overwrite set, before anything is written.
func TestOutputIsInput(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.raw")
	hdrFile := filepath.Join(dir, "osluksheader")
	keyFile := filepath.Join(dir, "bek")
	for src, dst := range map[string]string{f.Image: img, f.Header: hdrFile, f.KeyFiles[0]: keyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, dir, filepath.Base(dst), b)
	}
	src, err := luksconv.OpenFile(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	hdr, err := luksconv.OpenHeader(hdrFile)
	if err != nil {
		t.Fatal(err)
	}
	defer hdr.Close()
	p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: keyFile, Header: hdr, KeepGuest: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	link := func(name string, mk func(target, name string) error, target string) string {
		path := filepath.Join(dir, name)
		if err := mk(target, path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	fdFile, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fdFile.Close()
	outs := map[string]string{
		"the source":             img,
		"a hard link to it":      link("hard.raw", os.Link, img),
		"a symbolic link to it":  link("sym.raw", os.Symlink, img),
		"/proc/self/fd":          fmt.Sprintf("/proc/self/fd/%d", fdFile.Fd()),
		"the header file":        hdrFile,
		"a link to the header":   link("hdr-link", os.Symlink, hdrFile),
		"the key file":           keyFile,
		"a hard link to the key": link("key-link", os.Link, keyFile),
	}
	sums := map[string][32]byte{}
	for _, in := range []string{img, hdrFile, keyFile} {
		sums[in] = fileSum(t, in)
	}
	for what, out := range outs {
		for _, create := range []func() (luksconv.Output, error){
			func() (luksconv.Output, error) {
				return luksconv.CreateOutput(p, out, luksconv.OutputOptions{Overwrite: true})
			},
			func() (luksconv.Output, error) {
				return luksconv.CreateFile(p, out, luksconv.OutputOptions{Overwrite: true})
			},
		} {
			if o, err := create(); !errors.Is(err, luksconv.ErrOutputIsInput) {
				if o != nil {
					o.Abort()
				}
				t.Errorf("output %s (%s): %v, want ErrOutputIsInput", what, out, err)
			}
		}
	}
	for in, sum := range sums {
		if fileSum(t, in) != sum {
			t.Fatalf("%s changed", in)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 7 {
		t.Errorf("%d entries in the directory, want the 3 inputs and 4 links: a refused output left a file", len(ents))
	}
	// A directory that cannot take the file: missing, or a file.
	for _, out := range []string{filepath.Join(dir, "missing", "out.raw"), filepath.Join(img, "out.raw")} {
		if o, err := luksconv.CreateFile(p, out, luksconv.OutputOptions{}); !errors.Is(err, luksconv.ErrOutputDir) {
			if o != nil {
				o.Abort()
			}
			t.Errorf("output %s: %v, want ErrOutputDir", out, err)
		}
	}

	// A loop device backed by the source, and the source's file when the source is the loop device.
	testenv.NeedRoot(t)
	dev, _ := testenv.AttachLoop(t, img)
	if o, err := luksconv.OpenDevice(p, dev, luksconv.OutputOptions{Overwrite: true}); !errors.Is(err, luksconv.ErrOutputIsInput) {
		if o != nil {
			o.Abort()
		}
		t.Errorf("a loop device backed by the source: %v, want ErrOutputIsInput", err)
	}
	lsrc, err := luksconv.OpenFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer lsrc.Close()
	hdr2, _ := luksconv.OpenHeader(hdrFile)
	defer hdr2.Close()
	lp, err := luksconv.NewPlan(context.Background(), lsrc, luksconv.PlanOptions{KeyFile: keyFile, Header: hdr2, KeepGuest: true})
	if err != nil {
		t.Fatal(err)
	}
	defer lp.Close()
	if o, err := luksconv.CreateOutput(lp, img, luksconv.OutputOptions{Overwrite: true}); !errors.Is(err, luksconv.ErrOutputIsInput) {
		if o != nil {
			o.Abort()
		}
		t.Errorf("the file behind a loop-device source: %v, want ErrOutputIsInput", err)
	}
	if fileSum(t, img) != sums[img] {
		t.Fatal("the source changed")
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256Sum(b)
}

// TestDeviceOutputAbort: an aborted device output holds what was written in its middle, and zeros in
// its first and last 64 KiB, so it never looks like a complete disk; a committed one holds it all.
func TestDeviceOutputAbort(t *testing.T) {
	testenv.NeedRoot(t)
	_, p := planExample(t, luksconv.FormatRaw)
	want := bytes.Repeat([]byte("plaintext disk. "), int(p.OutputSize/16))
	back := testenv.SparseFile(t, t.TempDir(), "dev.img", p.OutputSize)
	os.WriteFile(back, bytes.Repeat([]byte{0xa5}, int(p.OutputSize)), 0o600) // old data
	dev, _ := testenv.AttachLoop(t, back)
	if _, err := luksconv.OpenDevice(p, dev, luksconv.OutputOptions{}); !errors.Is(err, luksconv.ErrOutputExists) {
		t.Fatalf("device without Overwrite: %v, want ErrOutputExists", err)
	}
	for _, commit := range []bool{false, true} {
		d, err := luksconv.OpenDevice(p, dev, luksconv.OutputOptions{Overwrite: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.WriteAt(want, 0); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = d.Commit(context.Background())
		} else {
			err = d.Abort()
		}
		if err != nil {
			t.Fatal(err)
		}
		if d.Spare() != 0 {
			t.Errorf("a device of the disk's size: Spare %d", d.Spare())
		}
		got, _ := os.ReadFile(back)
		hold := d.Held()
		end := len(got) - hold
		if !bytes.Equal(got[hold:end], want[hold:end]) {
			t.Fatalf("commit %v: the middle of the device was not written", commit)
		}
		ends := bytes.Equal(got[:hold], want[:hold]) && bytes.Equal(got[end:], want[end:])
		zeros := bytes.Equal(got[:hold], make([]byte, hold)) && bytes.Equal(got[end:], make([]byte, hold))
		if commit && !ends || !commit && !zeros {
			t.Fatalf("commit %v: the first and last %d bytes are wrong (written: %v, zeros: %v)", commit, hold, ends, zeros)
		}
	}
	// A larger device: its bytes past the disk are counted, not written.
	big := testenv.SparseFile(t, t.TempDir(), "big.img", p.OutputSize+1<<20)
	bdev, _ := testenv.AttachLoop(t, big)
	d, err := luksconv.OpenDevice(p, bdev, luksconv.OutputOptions{Overwrite: true})
	if err != nil {
		t.Fatalf("a device 1 MiB larger: %v", err)
	}
	if d.Abort(); d.Spare() != 1<<20 {
		t.Errorf("a device 1 MiB larger: Spare %d", d.Spare())
	}
	small := testenv.SparseFile(t, t.TempDir(), "small.img", 8<<20)
	sdev, _ := testenv.AttachLoop(t, small)
	if _, err := luksconv.OpenDevice(p, sdev, luksconv.OutputOptions{Overwrite: true}); !errors.Is(err, luksconv.ErrOutputTooSmall) {
		t.Fatalf("a device too small: %v, want ErrOutputTooSmall", err)
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
