package luksconv

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPipelineWipesBuffers: every byte a chunk put in a worker's buffers is zero again when run returns
// (they hold plaintext), the buffers are made once per worker whatever its number of chunks, and a
// worker left without a chunk makes none.
func TestPipelineWipesBuffers(t *testing.T) {
	const size = 8192
	pl, err := newPipeline(4, size, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Three chunks of 8192, 8192 and 4100 bytes for four workers: one stays idle.
	regions := []Region{{Kind: Copy, Offset: 0, Length: 2*size + 4100}}
	var mu sync.Mutex
	seen := map[*byte][]byte{} // each buffer, whole, by its first byte
	calls := 0
	err = pl.run(context.Background(), 2, pl.chunks(regions, nil), func(ctx context.Context, bufs [][]byte, c chunk) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		for _, b := range bufs {
			if len(b) != size {
				t.Errorf("buffer of %d bytes, want %d", len(b), size)
			}
			for i := range b[:c.n] {
				b[i] = 0xAA
			}
			seen[&b[0]] = b
		}
		return nil
	}, func() Progress { return Progress{} })
	if err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Fatalf("%d chunks processed, want 3", calls)
	}
	// Two buffers per worker that had a chunk: at most 3 workers, at least 1.
	if n := len(seen); n < 2 || n > 6 || n%2 != 0 {
		t.Errorf("%d distinct buffers for 3 chunks of 2 buffers each", n)
	}
	for _, b := range seen {
		for i, x := range b {
			if x != 0 {
				t.Fatalf("buffer byte %d is %#x after run: plaintext left", i, x)
			}
		}
	}
}

// TestPipelinePanic: a panic in a worker's chunk, in the producer or in the progress callback comes
// back as run's error, a *PanicError with the panic's stack, instead of ending the process; the other
// workers stop and the buffers are still wiped.
func TestPipelinePanic(t *testing.T) {
	regions := []Region{{Kind: Copy, Offset: 0, Length: 64 * 4096}}
	for _, where := range []string{"worker", "producer", "progress"} {
		t.Run(where, func(t *testing.T) {
			var progress func(Progress)
			if where == "progress" {
				progress = func(Progress) { panic("progress bug") }
			}
			pl, err := newPipeline(3, 4096, progress, time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			produce := pl.chunks(regions, nil)
			if where == "producer" {
				produce = func(yield func(chunk) bool) {
					pl.chunks(regions[:1], nil)(func(c chunk) bool {
						if c.off == 8*4096 {
							panic("producer bug")
						}
						return yield(c)
					})
				}
			}
			var mu sync.Mutex
			var bufs [][]byte
			var calls atomic.Int64
			err = pl.run(context.Background(), 1, produce, func(ctx context.Context, b [][]byte, c chunk) error {
				mu.Lock()
				bufs = append(bufs, b[0])
				mu.Unlock()
				copy(b[0][:c.n], bytes.Repeat([]byte{0xAA}, c.n))
				if where == "worker" && calls.Add(1) == 5 {
					panic(where + " bug")
				}
				if where == "progress" {
					time.Sleep(2 * time.Millisecond) // a tick comes before the end
				}
				return nil
			}, func() Progress { return Progress{} })
			var pe *PanicError
			if !errors.As(err, &pe) || pe.Value != where+" bug" || !strings.Contains(string(pe.Stack), "pipeline_internal_test.go") {
				t.Fatalf("run returned %v, want the %s's panic", err, where)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, b := range bufs {
				if bytes.IndexByte(b, 0xAA) >= 0 {
					t.Fatal("a buffer holds data after run")
				}
			}
		})
	}
}
