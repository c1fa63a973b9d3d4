package luksconv

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/luksconv/luksconv/internal/hugebuf"
	"github.com/luksconv/luksconv/internal/recovered"
)

// The pipeline behind Execute and Verify: a producer cuts the plan's regions into chunks, a bounded
// pool of workers processes them, each with its own buffers, reused for every chunk and cleared at
// the end (they hold plaintext). The first error cancels the rest and is the one returned. Progress
// events come from one goroutine at a fixed interval, and a final one always, after the workers have
// stopped, also on error and cancellation. A panic on any of these goroutines is an error like any
// other (a *PanicError): the caller's clean-up runs, and the process does not end.

const (
	// DefaultChunkSize is the default unit of work.
	DefaultChunkSize = 4 << 20
	// MaxChunkSize bounds ChunkSize: every worker holds one or two buffers of it.
	MaxChunkSize = 64 << 20
	// MaxWorkers bounds Workers: each worker holds its buffers from its first chunk to the end.
	MaxWorkers = 64
	// maxDefaultWorkers caps the default worker count: 16 × DefaultChunkSize is 64 MiB of buffers.
	maxDefaultWorkers = 16
	// defaultProgressInterval spaces progress events.
	defaultProgressInterval = 250 * time.Millisecond
)

// chunk is one unit of work: n bytes of region r at output offset off.
type chunk struct {
	r   *Region
	off int64 // in the output
	n   int
}

// src is the source offset of the chunk's first byte (Copy and Decrypt regions).
func (c chunk) src() int64 { return c.r.Source + c.off - c.r.Offset }

// iv is the IV sector number of the chunk's first byte (Decrypt regions): the region's IV counts
// 512-byte units from its first byte.
func (c chunk) iv() uint64 { return c.r.IV + uint64((c.off-c.r.Offset)/512) }

// pipeline holds the settings common to Execute and Verify.
type pipeline struct {
	workers, chunkSize int
	progress           func(Progress)
	interval           time.Duration
}

// newPipeline checks and completes the options: workers default to the number of CPUs, at least 2
// so that one worker's reads overlap another's decryption and writes, at most maxDefaultWorkers.
func newPipeline(workers, chunkSize int, progress func(Progress), interval time.Duration) (*pipeline, error) {
	switch {
	case workers < 0 || workers > MaxWorkers:
		return nil, fmt.Errorf("%w: %d workers (at most %d)", ErrInvalidOption, workers, MaxWorkers)
	case workers == 0:
		workers = min(max(runtime.NumCPU(), 2), maxDefaultWorkers)
	}
	switch {
	case chunkSize == 0:
		chunkSize = DefaultChunkSize
	case chunkSize < 0 || chunkSize%4096 != 0 || chunkSize > MaxChunkSize:
		return nil, fmt.Errorf("%w: chunk size %d is not a multiple of 4096 up to %d", ErrInvalidOption, chunkSize, MaxChunkSize)
	}
	if interval <= 0 {
		interval = defaultProgressInterval
	}
	return &pipeline{workers: workers, chunkSize: chunkSize, progress: progress, interval: interval}, nil
}

// chunks yields the chunks of the regions, in output order, each at most chunkSize bytes. With keep
// set, only the parts of each region that keep returns (output ranges as offset, length) are cut.
func (pl *pipeline) chunks(regions []Region, keep func(r *Region) [][2]int64) func(yield func(chunk) bool) {
	return func(yield func(chunk) bool) {
		for i := range regions {
			r := &regions[i]
			ranges := [][2]int64{{r.Offset, r.Length}}
			if keep != nil {
				ranges = keep(r)
			}
			for _, rg := range ranges {
				for o := int64(0); o < rg[1]; o += int64(pl.chunkSize) {
					if !yield(chunk{r: r, off: rg[0] + o, n: int(min(int64(pl.chunkSize), rg[1]-o))}) {
						return
					}
				}
			}
		}
	}
}

// run hands every chunk of produce to fn on one of pl.workers goroutines, each with nbuf buffers of
// chunkSize bytes that it keeps for all its chunks; fn uses the first c.n bytes of each. snapshot
// describes the progress so far. The first error of fn cancels the rest and is returned; when ctx ends
// first, context.Cause(ctx) is.
func (pl *pipeline) run(ctx context.Context, nbuf int, produce func(yield func(chunk) bool),
	fn func(ctx context.Context, bufs [][]byte, c chunk) error, snapshot func() Progress) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// A mutex, not a sync.Once: the progress goroutine may fail after the workers have stopped.
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel(err)
		}
	}
	first := func() error {
		mu.Lock()
		defer mu.Unlock()
		return firstErr
	}

	jobs := make(chan chunk, pl.workers)
	go func() {
		defer close(jobs)
		defer recovered.Catch(fail)
		for c := range produce {
			select {
			case jobs <- c:
			case <-ctx.Done():
				return
			}
		}
	}()

	start := time.Now()
	ended := make(chan error, 1)
	var pwg sync.WaitGroup
	if pl.progress != nil {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			defer recovered.Catch(fail)
			t := time.NewTicker(pl.interval)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					pr := snapshot()
					pr.Elapsed = time.Since(start)
					pl.progress(pr)
				case err := <-ended:
					pr := snapshot()
					pr.Elapsed, pr.Final, pr.Err = time.Since(start), true, err
					pl.progress(pr)
					return
				}
			}
		}()
	}

	var wg sync.WaitGroup
	for range pl.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer recovered.Catch(fail) // after the buffers are cleared
			// The buffers are taken at the first chunk and wiped as far as chunks used them at the
			// end: the kernel maps a buffer's pages on first touch, so a short run (a small delta, a
			// worker left idle) does not fault in, and wipe, chunkSize bytes it never used. hugebuf
			// has them mapped in huge pages where it can, which a short run fills 5 times faster.
			bufs := make([][]byte, nbuf)
			used := 0
			defer func() {
				for _, b := range bufs {
					if b != nil {
						hugebuf.Put(b, used) // plaintext
					}
				}
			}()
			for c := range jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				if bufs[0] == nil {
					for i := range bufs {
						bufs[i] = hugebuf.Get(pl.chunkSize)
					}
				}
				used = max(used, c.n)
				if err := fn(ctx, bufs, c); err != nil {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()
	err := first()
	if err == nil && ctx.Err() != nil {
		// Ended by the caller or by Plan.Close: what was left was skipped.
		err = context.Cause(ctx)
	}
	ended <- err
	pwg.Wait()
	if err == nil {
		err = first() // a panic of the final progress event
	}
	return err
}

// readFull reads exactly len(p) bytes of r at off. A read that returns them all is a success whatever
// its error (io.ReaderAt lets the last one carry io.EOF); a short one wraps ErrTruncated.
func readFull(r io.ReaderAt, p []byte, off int64, what string) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%s ends before byte %d: %w", what, off+int64(len(p)), ErrTruncated)
	}
	return fmt.Errorf("reading %s at %d: %w", what, off, err)
}
