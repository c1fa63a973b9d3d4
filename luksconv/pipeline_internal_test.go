package luksconv

import (
	"context"
	"sync"
	"testing"
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
