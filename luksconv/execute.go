package luksconv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Sink is where the output disk is written.
type Sink interface {
	io.WriterAt
	// ZeroFilled reports that every byte not written reads as zero (a new sparse file, a fresh upload
	// disk), so all-zero chunks need not be written.
	ZeroFilled() bool
}

// resumable is a Sink that remembers what an earlier, interrupted run already wrote (a page blob with a
// journal): Execute skips those chunks, and reports chunks it skips for being zero.
type resumable interface {
	Done(off, n int64) bool
	MarkDone(off, n int64) error
}

// ExecuteOptions tune Execute. The zero value is usable.
type ExecuteOptions struct {
	// Workers is the number of chunks in flight (default: the number of CPUs, at least 2 so that one
	// worker's reads overlap another's decryption and writes, and at most 16 so that memory stays
	// bounded on large machines).
	Workers int
	// ChunkSize is the unit of work in bytes, a multiple of 4096 (default 4 MiB).
	ChunkSize int
	// Progress, if set, receives events from a single goroutine at ProgressInterval and once at the end.
	Progress func(Progress)
	// ProgressInterval defaults to 250ms.
	ProgressInterval time.Duration
}

// Progress is a snapshot of a running conversion.
type Progress struct {
	// Done and Total count the bytes of Copy and Decrypt regions.
	Done, Total int64
	// Written counts bytes handed to the sink; Skipped counts all-zero bytes not written.
	Written, Skipped int64
	Elapsed          time.Duration
	Final            bool
}

// Result summarises a finished conversion.
type Result struct {
	BytesCopied    int64 `json:"bytes_copied"`
	BytesDecrypted int64 `json:"bytes_decrypted"`
	BytesWritten   int64 `json:"bytes_written"`
	BytesSkipped   int64 `json:"bytes_skipped_zero"`
	// BytesResumed counts bytes an earlier, interrupted run had already written (not read again).
	BytesResumed int64 `json:"bytes_resumed,omitempty"`
	// ZeroCiphertextZeroed counts bytes of all-zero ciphertext in Decrypt regions marked
	// ZeroCiphertextAsZero (free space read with FullCopy, clean XFS logs), written as zero plaintext;
	// ZeroCiphertextDecrypted counts those met elsewhere (space in use), decrypted like any other.
	// Free space that is skipped without being read is not counted.
	ZeroCiphertextZeroed    int64         `json:"zero_ciphertext_zeroed"`
	ZeroCiphertextDecrypted int64         `json:"zero_ciphertext_decrypted"`
	Duration                time.Duration `json:"duration_ns"`
}

// DefaultChunkSize is the default unit of work.
const DefaultChunkSize = 4 << 20

// maxDefaultWorkers caps the default worker count: 16 × DefaultChunkSize is 64 MiB of buffers.
const maxDefaultWorkers = 16

type job struct {
	kind   RegionKind
	off    int64 // output offset
	n      int
	src    int64
	iv     uint64
	asZero bool // all-zero ciphertext stays zero (Region.ZeroCiphertextAsZero)
}

// Execute produces the output described by p from src into sink. Each worker reads, decrypts and writes
// one chunk at a time in its own buffer, so with two or more workers reads, decryption and writes
// overlap; nothing is allocated per chunk. Memory use is Workers × ChunkSize, whatever the disk size.
// On error or cancellation it stops early; the sink then holds a partial output that the caller must
// discard.
func Execute(ctx context.Context, p *Plan, src io.ReaderAt, sink Sink, opts ExecuteOptions) (*Result, error) {
	if p.cipher == nil {
		return nil, errors.New("luksconv: plan has no unlocked key (closed, or decoded from JSON)")
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = min(max(runtime.NumCPU(), 2), maxDefaultWorkers)
	}
	chunk := opts.ChunkSize
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	if chunk%4096 != 0 {
		return nil, fmt.Errorf("chunk size %d is not a multiple of 4096: %w", chunk, ErrUsage)
	}
	interval := opts.ProgressInterval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var st struct {
		done, written, skipped, copied, decrypted, resumed atomic.Int64
		zeroZeroed, zeroDecrypted                          atomic.Int64
	}
	resume, _ := sink.(resumable)
	total := p.Totals.Copy + p.Totals.Decrypt

	jobs := make(chan job, workers)
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}

	// Producer: cut regions into chunks. Zero regions produce work only where a patch lands, or
	// everywhere when the sink is not zero-filled.
	go func() {
		defer close(jobs)
		emit := func(j job) bool {
			select {
			case jobs <- j:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, r := range p.Regions {
			ranges := [][2]int64{{r.Offset, r.Length}}
			if r.Kind == Zero && sink.ZeroFilled() {
				ranges = p.patchRanges(r.Offset, r.Length)
			}
			for _, rg := range ranges {
				for o := int64(0); o < rg[1]; o += int64(chunk) {
					n := min(int64(chunk), rg[1]-o)
					rel := rg[0] - r.Offset + o
					j := job{kind: r.Kind, off: rg[0] + o, n: int(n), src: r.Source + rel}
					if r.Kind == Decrypt {
						j.iv = r.IV + uint64(rel/512)
						j.asZero = r.ZeroCiphertextAsZero
					}
					if !emit(j) {
						return
					}
				}
			}
		}
	}()

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunk)
			for j := range jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				b := buf[:j.n]
				if resume != nil && resume.Done(j.off, int64(j.n)) {
					st.resumed.Add(int64(j.n))
					if j.kind != Zero {
						st.done.Add(int64(j.n))
					}
					continue
				}
				switch j.kind {
				case Zero:
					clear(b)
				default:
					if _, err := src.ReadAt(b, j.src); err != nil {
						if err == io.EOF {
							err = fmt.Errorf("source ends before byte %d: %w", j.src+int64(j.n), ErrTruncated)
						}
						fail(fmt.Errorf("reading source at %d: %w", j.src, err))
						continue
					}
					if j.kind == Decrypt {
						if z := decryptChunk(p.cipher, b, j.iv, j.asZero); z > 0 && j.asZero {
							st.zeroZeroed.Add(z)
						} else if z > 0 {
							st.zeroDecrypted.Add(z)
						}
						st.decrypted.Add(int64(j.n))
					} else {
						st.copied.Add(int64(j.n))
					}
					st.done.Add(int64(j.n))
				}
				p.applyPatches(b, j.off)
				if sink.ZeroFilled() && allZero(b) {
					st.skipped.Add(int64(j.n))
					if resume != nil {
						if err := resume.MarkDone(j.off, int64(j.n)); err != nil {
							fail(err)
						}
					}
					continue
				}
				if _, err := sink.WriteAt(b, j.off); err != nil {
					fail(fmt.Errorf("writing output at %d: %w", j.off, err))
					continue
				}
				st.written.Add(int64(j.n))
			}
			clear(buf) // it held plaintext
		}()
	}

	snapshot := func(final bool) Progress {
		return Progress{Done: st.done.Load(), Total: total, Written: st.written.Load(), Skipped: st.skipped.Load(),
			Elapsed: time.Since(start), Final: final}
	}
	finished := make(chan struct{})
	var pwg sync.WaitGroup
	if opts.Progress != nil {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					opts.Progress(snapshot(false))
				case <-finished:
					return
				}
			}
		}()
	}
	wg.Wait()
	close(finished)
	pwg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		// Cancelled by the caller: workers skipped what was left, so the output is incomplete.
		firstErr = ctx.Err()
	}
	if firstErr == nil && opts.Progress != nil {
		opts.Progress(snapshot(true))
	}
	res := &Result{BytesCopied: st.copied.Load(), BytesDecrypted: st.decrypted.Load(), BytesWritten: st.written.Load(),
		BytesSkipped: st.skipped.Load(), BytesResumed: st.resumed.Load(), ZeroCiphertextZeroed: st.zeroZeroed.Load(),
		ZeroCiphertextDecrypted: st.zeroDecrypted.Load(), Duration: time.Since(start)}
	return res, firstErr
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

// applyPatches overlays the patches that intersect the chunk at output offset off.
func (p *Plan) applyPatches(b []byte, off int64) {
	end := off + int64(len(b))
	// Patches are sorted by offset; start at the first that could reach into the chunk.
	i := sort.Search(len(p.Patches), func(i int) bool { return p.Patches[i].Offset+int64(len(p.Patches[i].Data)) > off })
	for ; i < len(p.Patches) && p.Patches[i].Offset < end; i++ {
		pt := p.Patches[i]
		s, e := max(pt.Offset, off), min(pt.Offset+int64(len(pt.Data)), end)
		if s < e {
			copy(b[s-off:e-off], pt.Data[s-pt.Offset:e-pt.Offset])
		}
	}
}
