package luksconv_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/luksconv"
)

// countingSink cancels the run after a number of writes, as a killed process would stop.
type countingSink struct {
	*luksconv.PageBlobSink
	cancel func()
	after  int64
	n      atomic.Int64
}

func (s *countingSink) WriteAt(p []byte, off int64) (int, error) {
	if s.n.Add(1) == s.after {
		s.cancel()
	}
	return s.PageBlobSink.WriteAt(p, off)
}

// TestResumeUpload interrupts an upload to a page blob and runs it again with the same journal: the second
// run skips what the first wrote, and the blob ends equal to a local conversion.
func TestResumeUpload(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	key, _ := os.ReadFile(f.KeyFiles[0])
	az := azurite.Start(t)
	az.CreateContainer(t, "disks")
	dst := az.BlobSAS(t, "disks", "out.vhd", azurite.WriteSAS, time.Hour)
	journal := filepath.Join(t.TempDir(), "journal")

	src, err := luksconv.OpenFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{Passphrase: key, Format: luksconv.FormatVHD})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	run := func(ctx context.Context, cancel func(), after int64) (*luksconv.Result, error) {
		s, err := luksconv.CreatePageBlobSink(context.Background(), dst, p.OutputSize, journal, p.ID(), luksconv.BlobOptions{Workers: 2, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var sink luksconv.Sink = s
		if cancel != nil {
			sink = &countingSink{PageBlobSink: s, cancel: cancel, after: after}
		}
		res, err := luksconv.Execute(ctx, p, src, sink, luksconv.ExecuteOptions{Workers: 2, ChunkSize: 1 << 20})
		if err == nil {
			err = s.Commit(context.Background())
		}
		return res, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	first, err := run(ctx, cancel, 10)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want cancellation", err)
	}
	second, err := run(context.Background(), nil, 0)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if second.BytesResumed == 0 || second.BytesResumed < first.BytesWritten {
		t.Fatalf("second run resumed %d bytes; the first wrote %d", second.BytesResumed, first.BytesWritten)
	}

	// The same plan written locally.
	local := filepath.Join(t.TempDir(), "local.raw")
	sink, err := luksconv.CreateFile(local, p.OutputSize, luksconv.FormatRaw, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := luksconv.Execute(context.Background(), p, src, sink, luksconv.ExecuteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Commit(); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(local)
	b, err := blobio.OpenPageBlob(context.Background(), az.BlobSAS(t, "disks", "out.vhd", azurite.ReadSAS, time.Hour), blobio.SourceOptions{Logf: t.Logf})
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
}

// TestPlanIDIgnoresSASQuery: a new grant of the same blob gives another SAS query (expiry, signature),
// and a resume journal must still match; another blob or another layout must not.
func TestPlanIDIgnoresSASQuery(t *testing.T) {
	plan := func(path string, size int64) *luksconv.Plan {
		return &luksconv.Plan{Source: luksconv.ImageInfo{Path: path, Format: "vhd", Size: size}, OutputSize: size}
	}
	a := plan("https://md-1.blob.example/c/abcd?sv=2022&se=2026-11-27T10%3A00%3A00Z&sig=REDACTED", 1<<30).ID()
	for _, c := range []struct {
		p    *luksconv.Plan
		same bool
	}{
		{plan("https://md-1.blob.example/c/abcd?sv=2022&se=2026-11-28T09%3A00%3A00Z&sig=REDACTED", 1<<30), true},
		{plan("https://md-1.blob.example/c/abce?sv=2022&se=2026-11-27T10%3A00%3A00Z&sig=REDACTED", 1<<30), false},
		{plan("https://md-1.blob.example/c/abcd?sv=2022&se=2026-11-27T10%3A00%3A00Z&sig=REDACTED", 2<<30), false},
		{plan("disk.vhd", 1<<30), false},
	} {
		if got := c.p.ID(); (got == a) != c.same {
			t.Errorf("ID of %q (%d bytes) = %s, first = %s; want same=%v", c.p.Source.Path, c.p.OutputSize, got, a, c.same)
		}
	}
	if plan("a?b", 1).ID() == plan("a?c", 1).ID() {
		t.Error("a local path holding '?' lost its tail")
	}
}
