package luksconv

import (
	"bytes"
	"context"
	"syscall"
	"testing"
)

// BenchmarkExecuteSmall measures a run far shorter than the workers' buffers, as a small delta pass is:
// 256 KiB decrypted with the default workers and chunk size. faults/op counts the minor page faults
// of each run, the kernel mapping buffer pages on first touch (Linux: getrusage).
//
//	go test -run '^$' -bench BenchmarkExecuteSmall -count 5 ./luksconv/
func BenchmarkExecuteSmall(b *testing.B) {
	const size = 256 << 10
	p, src := memPlan(b, size)
	sink := &memSink{b: make([]byte, size)}
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	for b.Loop() {
		if _, err := Execute(context.Background(), p, bytes.NewReader(src), sink, ExecuteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	b.ReportMetric(float64(r1.Minflt-r0.Minflt)/float64(b.N), "faults/op")
}
