package luksconv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync/atomic"
	"time"

	"github.com/luksconv/luksconv/internal/zeros"
)

// ExecuteOptions tune Execute. The zero value is usable.
type ExecuteOptions struct {
	// Workers is the number of chunks in flight, at most MaxWorkers (default: the number of CPUs, at
	// least 2 so that one worker's reads overlap another's decryption and writes, and at most 16 so
	// that memory stays bounded on large machines).
	Workers int
	// ChunkSize is the unit of work in bytes, a multiple of 4096 up to MaxChunkSize (default 4 MiB).
	ChunkSize int
	// Progress, if set, receives events from one goroutine, never two at once: every
	// ProgressInterval, and a final one (Final set) when Execute ends, also on error or cancellation.
	Progress func(Progress)
	// ProgressInterval defaults to 250ms.
	ProgressInterval time.Duration
}

// Progress is a snapshot of a running Execute or Verify.
type Progress struct {
	// Done and Total count the bytes of Copy and Decrypt regions (Verify: of every region).
	Done, Total int64
	// Written counts bytes handed to the output; Skipped counts all-zero bytes not written (Execute).
	Written, Skipped int64
	// Elapsed is the time since the run started.
	Elapsed time.Duration
	// Final marks the last event. Err is then why the run stopped early, nil when it completed.
	Final bool
	Err   error // set only with Final
}

// Result summarises a finished conversion: plain data.
type Result struct {
	// BytesCopied counts the bytes of Copy regions read from the source.
	BytesCopied int64 `json:"bytes_copied"`
	// BytesDecrypted counts the bytes of Decrypt regions read and decrypted (ZeroCiphertextZeroed
	// included).
	BytesDecrypted int64 `json:"bytes_decrypted"`
	// BytesWritten counts the bytes written to the output, patches applied.
	BytesWritten int64 `json:"bytes_written"`
	// BytesSkipped counts bytes that came out all zero (patches applied) and were not written, the
	// output reading as zeros where nothing is written (Output.ZeroFilled).
	BytesSkipped int64 `json:"bytes_skipped_zero"`
	// BytesResumed counts bytes an earlier, interrupted run had already written (not read again).
	BytesResumed int64 `json:"bytes_resumed,omitempty"`
	// ZeroCiphertextZeroed counts bytes of all-zero ciphertext in Decrypt regions marked
	// ZeroCiphertextAsZero (free space read with FullCopy, clean XFS logs), written as zero plaintext;
	// ZeroCiphertextDecrypted counts those met elsewhere (space in use), decrypted like any other.
	// Free space that is skipped without being read is not counted.
	ZeroCiphertextZeroed    int64 `json:"zero_ciphertext_zeroed"`
	ZeroCiphertextDecrypted int64 `json:"zero_ciphertext_decrypted"` // see ZeroCiphertextZeroed
	// Duration is the run's wall-clock time (in nanoseconds in JSON).
	Duration time.Duration `json:"duration_ns"`
}

// Execute produces the output described by p from src, the disk p was made from, into out. Each
// worker reads, decrypts and writes one chunk at a time in its own buffer, so with two or more workers
// reads, decryption and writes overlap; nothing is allocated per chunk. Memory use is at most Workers ×
// ChunkSize, whatever the disk size. src may return io.EOF with the last bytes of a read, as the
// io.ReaderAt contract allows.
//
// On error or cancellation it stops early and returns the error (ctx's cause; ErrPlanClosed when the
// plan was closed); out then holds a partial output that the caller must Abort. Execute neither commits
// nor aborts out.
func Execute(ctx context.Context, p *Plan, src io.ReaderAt, out Output, opts ExecuteOptions) (*Result, error) {
	pl, err := newPipeline(opts.Workers, opts.ChunkSize, opts.Progress, opts.ProgressInterval)
	if err != nil {
		return nil, err
	}
	ctx, rd, release, err := p.use(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	rd = rd.WithData(src)
	var st struct {
		done, written, skipped, copied, decrypted, resumed atomic.Int64
		zeroZeroed, zeroDecrypted                          atomic.Int64
	}
	journal := out.Journal()
	zeroFilled := out.ZeroFilled()
	patches := newPatchIndex(p.Patches)
	total := p.Totals.Copy + p.Totals.Decrypt
	start := time.Now()

	// Zero regions produce work only where a patch lands, unless the output holds old data.
	var keep func(r *Region) [][2]int64
	if zeroFilled {
		keep = func(r *Region) [][2]int64 {
			if r.Kind == Zero {
				return p.patchRanges(r.Offset, r.Length)
			}
			return [][2]int64{{r.Offset, r.Length}}
		}
	}
	work := func(ctx context.Context, bufs [][]byte, c chunk) error {
		b := bufs[0][:c.n]
		n := int64(c.n)
		if journal != nil && journal.Done(c.off, n) {
			st.resumed.Add(n)
			if c.r.Kind != Zero {
				st.done.Add(n)
			}
			return nil
		}
		switch c.r.Kind {
		case Zero:
			clear(b)
		case Copy:
			if err := readFull(src, b, c.src(), "source"); err != nil {
				return err
			}
			st.copied.Add(n)
			st.done.Add(n)
		case Decrypt:
			z, err := rd.ReadSectorsAt(b, c.src(), c.iv(), c.r.ZeroCiphertextAsZero)
			if err != nil {
				return sourceErr(err, c.src(), n)
			}
			if c.r.ZeroCiphertextAsZero {
				st.zeroZeroed.Add(z)
			} else {
				st.zeroDecrypted.Add(z)
			}
			st.decrypted.Add(n)
			st.done.Add(n)
		}
		patches.apply(b, c.off)
		if zeroFilled && zeros.Only(b) {
			st.skipped.Add(n)
			if journal != nil {
				return journal.MarkDone(c.off, n)
			}
			return nil
		}
		if _, err := out.WriteAt(b, c.off); err != nil {
			return fmt.Errorf("writing output at %d: %w", c.off, err)
		}
		st.written.Add(n)
		return nil
	}
	snapshot := func() Progress {
		return Progress{Done: st.done.Load(), Total: total, Written: st.written.Load(), Skipped: st.skipped.Load()}
	}
	err = pl.run(ctx, 1, pl.chunks(p.Regions, keep), work, snapshot)
	res := &Result{BytesCopied: st.copied.Load(), BytesDecrypted: st.decrypted.Load(), BytesWritten: st.written.Load(),
		BytesSkipped: st.skipped.Load(), BytesResumed: st.resumed.Load(), ZeroCiphertextZeroed: st.zeroZeroed.Load(),
		ZeroCiphertextDecrypted: st.zeroDecrypted.Load(), Duration: time.Since(start)}
	return res, err
}

// sourceErr describes a failed read of n ciphertext bytes at source offset off: a source that ends
// early wraps ErrTruncated.
func sourceErr(err error, off, n int64) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("source ends before byte %d: %w", off+n, ErrTruncated)
	}
	return fmt.Errorf("reading source at %d: %w", off, err)
}

// patchAlign is the unit patch writes inside Zero regions are widened to: sinks such as page blobs
// take only whole 512-byte pages, and one 4 KiB write is cheaper than several small ones.
const patchAlign = 4096

// patchRanges returns the parts of [off, off+n) that patches touch, widened to patchAlign (within the
// region) and merged, so that each page is written once with every patch that lands in it.
func (p *Plan) patchRanges(off, n int64) [][2]int64 {
	var out [][2]int64
	for _, pt := range p.Patches {
		s, e := max(pt.Offset, off), min(pt.Offset+int64(len(pt.Data)), off+n)
		if s >= e {
			continue
		}
		s, e = max(s/patchAlign*patchAlign, off), min((e+patchAlign-1)/patchAlign*patchAlign, off+n)
		if k := len(out); k > 0 && s <= out[k-1][0]+out[k-1][1] {
			out[k-1][1] = max(out[k-1][1], e-out[k-1][0])
			continue
		}
		out = append(out, [2]int64{s, e - s})
	}
	return out
}

// patchIndex finds the patches that reach into a chunk (reach: see reaches).
type patchIndex struct {
	patches []Patch
	reach   []int64
}

func newPatchIndex(patches []Patch) patchIndex {
	return patchIndex{patches, reaches(patches, func(pt Patch) int64 { return pt.Offset + int64(len(pt.Data)) })}
}

// reaches returns, for ranges sorted by start, the furthest end of xs[:i+1] at i. The ends themselves
// are not sorted where one range lies inside an earlier, longer one; these are, so a binary search on
// them finds the first range that can reach an offset.
func reaches[T any](xs []T, end func(T) int64) []int64 {
	out := make([]int64, len(xs))
	var far int64
	for i, x := range xs {
		far = max(far, end(x))
		out[i] = far
	}
	return out
}

// apply overlays, in order, the patches that intersect the chunk b at output offset off.
func (x patchIndex) apply(b []byte, off int64) {
	end := off + int64(len(b))
	// Every patch before i ends at or before off.
	i := sort.Search(len(x.reach), func(i int) bool { return x.reach[i] > off })
	for ; i < len(x.patches) && x.patches[i].Offset < end; i++ {
		pt := x.patches[i]
		s, e := max(pt.Offset, off), min(pt.Offset+int64(len(pt.Data)), end)
		if s < e {
			copy(b[s-off:e-off], pt.Data[s-pt.Offset:e-pt.Offset])
		}
	}
}
