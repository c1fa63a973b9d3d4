package blobdisk_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luksconv/luksconv/blobdisk"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/luksconv"
)

// countingOutput cancels the run after a number of writes, as a killed process would stop. It wraps
// the Output by embedding the interface, as any wrapper would: the journal must still be found.
type countingOutput struct {
	luksconv.Output
	cancel func()
	after  int64
	n      atomic.Int64
}

func (o *countingOutput) WriteAt(p []byte, off int64) (int, error) {
	if o.n.Add(1) == o.after {
		o.cancel()
	}
	return o.Output.WriteAt(p, off)
}

// TestResumeUpload interrupts an upload to a page blob and runs it again with the same journal,
// through a wrapper: the second run skips what the first wrote, Commit runs Finish once and removes the
// journal, and the blob ends equal to a local conversion and passes Verify read back as a source.
func TestResumeUpload(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	az := azurite.Start(t)
	az.CreateContainer(t, "disks")
	dst := az.BlobSAS(t, "disks", "out.vhd", azurite.WriteSAS, time.Hour)
	journal := filepath.Join(t.TempDir(), "journal")

	src, err := luksconv.OpenFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: f.KeyFiles[0], Format: luksconv.FormatVHD})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	var finished atomic.Int64
	run := func(ctx context.Context, cancel func(), after int64) (*luksconv.Result, error) {
		o, err := blobdisk.CreateOutput(context.Background(), p, dst, blobdisk.OutputOptions{
			Options: blobdisk.Options{Workers: 2, Logf: t.Logf}, Journal: journal,
			Finish: func(context.Context) error { finished.Add(1); return nil }})
		if err != nil {
			t.Fatal(err)
		}
		var out luksconv.Output = o
		if cancel != nil {
			out = &countingOutput{Output: o, cancel: cancel, after: after}
		}
		res, err := luksconv.Execute(ctx, p, src, out, luksconv.ExecuteOptions{Workers: 2, ChunkSize: 1 << 20})
		if err != nil {
			out.Abort()
			return res, err
		}
		return res, out.Commit(context.Background())
	}
	ctx, cancel := context.WithCancel(context.Background())
	first, err := run(ctx, cancel, 10)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want cancellation", err)
	}
	if _, err := os.Stat(journal); err != nil || finished.Load() != 0 {
		t.Fatalf("after the interrupted run: journal %v, Finish called %d times", err, finished.Load())
	}
	second, err := run(context.Background(), nil, 0)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if second.BytesResumed == 0 || second.BytesResumed < first.BytesWritten {
		t.Fatalf("second run resumed %d bytes; the first wrote %d", second.BytesResumed, first.BytesWritten)
	}
	if _, err := os.Stat(journal); !errors.Is(err, os.ErrNotExist) || finished.Load() != 1 {
		t.Fatalf("after Commit: journal %v (want removed), Finish called %d times (want 1)", err, finished.Load())
	}

	// The same plan written locally.
	local := filepath.Join(t.TempDir(), "local.raw")
	sink, err := luksconv.CreateFile(p, local, luksconv.OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := luksconv.Execute(context.Background(), p, src, sink, luksconv.ExecuteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(local)
	want = want[:p.OutputSize] // the VHD footers differ in their time stamp and unique ID
	readURL := az.BlobSAS(t, "disks", "out.vhd", azurite.ReadSAS, time.Hour)
	b, err := blobio.OpenPageBlob(context.Background(), readURL, blobio.SourceOptions{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make([]byte, len(want))
	if _, err := b.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the resumed upload differs from a local conversion")
	}

	// Read back as a source: only its written pages are read, and it verifies.
	back, err := blobdisk.OpenSource(context.Background(), readURL, blobdisk.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if back.Format != "vhd-fixed" || back.Size != p.OutputSize || len(back.Allocated()) == 0 {
		t.Fatalf("blob source: %s, %d bytes, %d allocated ranges", back.Format, back.Size, len(back.Allocated()))
	}
	if rep, err := luksconv.Verify(context.Background(), p, src, back, luksconv.VerifyOptions{}); err != nil || !rep.Pass {
		t.Fatalf("verify of the upload: %v", err)
	}
}

// TestOutputIsSource: a plan made from a page blob never writes back into that blob, whatever SAS
// names it; nothing is sent.
func TestOutputIsSource(t *testing.T) {
	p := &luksconv.Plan{Source: luksconv.ImageInfo{Path: "https://acct.blob.example/disks/abcd?sv=1&sig=REDACTED"}, OutputSize: 1 << 20}
	_, err := blobdisk.CreateOutput(context.Background(), p, "https://ACCT.blob.example/disks/abcd?sv=2&sig=other", blobdisk.OutputOptions{})
	if !errors.Is(err, luksconv.ErrOutputIsInput) {
		t.Fatalf("got %v, want ErrOutputIsInput", err)
	}
	p.OutputSize = 1<<20 + 512
	if _, err := blobdisk.CreateOutput(context.Background(), p, "https://acct.blob.example/disks/other", blobdisk.OutputOptions{}); !errors.Is(err, luksconv.ErrInvalidOption) {
		t.Fatalf("a disk that is not a whole MiB: %v, want ErrInvalidOption", err)
	}
}

// TestFinishFails: when the step that ends the upload fails, Commit fails and the journal stays, so a
// rerun only finishes.
func TestFinishFails(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("luks2-pbkdf2-sha1")
	az := azurite.Start(t)
	az.CreateContainer(t, "disks")
	dst := az.BlobSAS(t, "disks", "f.vhd", azurite.WriteSAS, time.Hour)
	journal := filepath.Join(t.TempDir(), "journal")
	src, err := luksconv.OpenFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: f.KeyFiles[0], Header: header(t, f.Header),
		Partition: f.Partition, Format: luksconv.FormatVHD, AllowUnknownContent: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	refused := errors.New("revoke refused")
	for i, finish := range []error{refused, nil} {
		o, err := blobdisk.CreateOutput(context.Background(), p, dst, blobdisk.OutputOptions{Journal: journal,
			Finish: func(context.Context) error { return finish }})
		if err != nil {
			t.Fatal(err)
		}
		res, err := luksconv.Execute(context.Background(), p, src, o, luksconv.ExecuteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		err = o.Commit(context.Background())
		_, jerr := os.Stat(journal)
		switch i {
		case 0:
			if !errors.Is(err, refused) || jerr != nil {
				t.Fatalf("Finish failed: Commit = %v, journal %v; want the error and the journal kept", err, jerr)
			}
		case 1:
			if err != nil || !errors.Is(jerr, os.ErrNotExist) || res.BytesWritten != 0 {
				t.Fatalf("rerun: Commit = %v, journal %v, %d bytes written again; want success, no journal, nothing written", err, jerr, res.BytesWritten)
			}
		}
	}
}

func header(t *testing.T, path string) *luksconv.Header {
	t.Helper()
	if path == "" {
		return nil
	}
	h, err := luksconv.OpenHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
