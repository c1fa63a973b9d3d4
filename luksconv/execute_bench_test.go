package luksconv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/luksconv/luksconv/diskcipher"
	"github.com/luksconv/luksconv/luks"
)

// memSink is an in-memory output disk.
type memSink struct{ b []byte }

func (s *memSink) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(s.b)) {
		return 0, io.ErrShortWrite
	}
	return copy(s.b[off:], p), nil
}
func (s *memSink) ZeroFilled() bool                 { return false }
func (s *memSink) Journal() Journal                 { return nil }
func (s *memSink) Commit(ctx context.Context) error { return nil }
func (s *memSink) Abort() error                     { return nil }

// memPlan is a plan that decrypts a whole in-memory volume of n bytes of pseudo-random ciphertext
// with a 512-bit aes-xts-plain64 key; the second half is marked ZeroCiphertextAsZero.
func memPlan(t testing.TB, n int64) (*Plan, []byte) {
	t.Helper()
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i*7 + 1)
	}
	c, err := diskcipher.New("aes-xts-plain64", key, 512)
	if err != nil {
		t.Fatal(err)
	}
	src := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(src)
	rd, err := luks.NewCipherReader(nil, 0, n, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	half := n / 2
	p := &Plan{key: &planKey{rd: rd}, OutputSize: n, Regions: []Region{
		{Kind: Decrypt, Offset: 0, Length: half},
		{Kind: Decrypt, Offset: half, Length: n - half, Source: half, IV: uint64(half / 512), ZeroCiphertextAsZero: true},
	}}
	p.Totals.Decrypt = n
	return p, src
}

// mallocs runs Execute once and returns the heap allocations it made.
func mallocs(t testing.TB, p *Plan, src []byte, chunk, workers int) uint64 {
	t.Helper()
	sink := &memSink{b: make([]byte, p.OutputSize)}
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	if _, err := Execute(context.Background(), p, bytes.NewReader(src), sink, ExecuteOptions{Workers: workers, ChunkSize: chunk}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&b)
	return b.Mallocs - a.Mallocs
}

// TestExecuteNoAllocPerChunk: doubling the number of chunks must not add allocations (the engine's
// per-run setup is a fixed few dozen).
func TestExecuteNoAllocPerChunk(t *testing.T) {
	const chunk = 64 << 10
	p1, s1 := memPlan(t, 16<<20) // 256 chunks
	p2, s2 := memPlan(t, 32<<20) // 512 chunks
	for _, workers := range []int{1, 2} {
		mallocs(t, p1, s1, chunk, workers) // warm up
		a := mallocs(t, p1, s1, chunk, workers)
		b := mallocs(t, p2, s2, chunk, workers)
		extra := int64(b) - int64(a)
		t.Logf("workers %d: %d allocations for 256 chunks, %d for 512", workers, a, b)
		if extra > 256/16 {
			t.Errorf("workers %d: 256 more chunks cost %d more allocations", workers, extra)
		}
	}
}

// BenchmarkExecute measures the engine alone (memory source and sink, no I/O): decryption, the
// zero-ciphertext scan and the copy into the sink, with the default chunk size. allocs/chunk should
// be about 0; compare MB/s for 1 and 2 workers to see the scaling.
//
//	go test -run '^$' -bench BenchmarkExecute -benchtime 5x ./luksconv/
func BenchmarkExecute(b *testing.B) {
	const size = 256 << 20
	p, src := memPlan(b, size)
	sink := &memSink{b: make([]byte, size)}
	chunks := float64(size / DefaultChunkSize)
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			var a, z runtime.MemStats
			runtime.ReadMemStats(&a)
			for b.Loop() {
				if _, err := Execute(context.Background(), p, bytes.NewReader(src), sink, ExecuteOptions{Workers: workers}); err != nil {
					b.Fatal(err)
				}
			}
			runtime.ReadMemStats(&z)
			b.ReportMetric(float64(z.Mallocs-a.Mallocs)/float64(b.N)/chunks, "allocs/chunk")
		})
	}
}
