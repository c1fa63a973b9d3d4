package extent_test

import (
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/luksconv/luksconv/extent"
)

func TestMerge(t *testing.T) {
	in := []extent.Range{{100, 10}, {0, 5}, {5, 5}, {105, 20}, {200, 0}, {50, 1}}
	got := extent.Merge(in)
	want := []extent.Range{{0, 10}, {50, 1}, {100, 25}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Merge = %v, want %v", got, want)
	}
	if in[0] != (extent.Range{100, 10}) {
		t.Fatal("Merge modified its input")
	}
}

func TestClipOverlapsTotal(t *testing.T) {
	rs := []extent.Range{{0, 10}, {50, 1}, {100, 25}}
	if got, want := extent.Clip(rs, 5, 100), []extent.Range{{5, 5}, {50, 1}, {100, 5}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Clip = %v, want %v", got, want)
	}
	if got := extent.Clip(rs, 10, 40); len(got) != 0 {
		t.Fatalf("Clip of a gap = %v, want none", got)
	}
	for _, c := range []struct {
		off, n int64
		want   bool
	}{{0, 1, true}, {10, 40, false}, {49, 2, true}, {125, 10, false}, {124, 1, true}, {3, 0, false}} {
		if got := extent.Overlaps(rs, c.off, c.n); got != c.want {
			t.Errorf("Overlaps(%d, %d) = %v, want %v", c.off, c.n, got, c.want)
		}
	}
	if got := extent.Total(rs); got != 36 {
		t.Fatalf("Total = %d, want 36", got)
	}
}

func ExampleMerge() {
	fmt.Println(extent.Merge([]extent.Range{{Off: 4096, Len: 4096}, {Off: 0, Len: 4096}, {Off: 16384, Len: 512}}))
	// Output: [{0 8192} {16384 512}]
}

// TestFileReader reads a 10-byte file over a 16-byte device: a hole, a mapped run, an unwritten run,
// and a read across the end.
func TestFileReader(t *testing.T) {
	dev := []byte("0123456789abcdef")
	r := extent.NewFileReader([]extent.Mapped{{FileOff: 2, DiskOff: 10, Len: 4}, {FileOff: 6, DiskOff: 0, Len: 2, Unwritten: true}}, 10,
		func(p []byte, off int64) error { copy(p, dev[off:]); return nil })
	got := make([]byte, 12)
	n, err := r.ReadAt(got, 0)
	if n != 10 || err != io.EOF || string(got[:n]) != "\x00\x00abcd\x00\x00\x00\x00" {
		t.Fatalf("ReadAt = %d, %v, %q", n, err, got[:n])
	}
	if n, err := r.ReadAt(got[:3], 3); n != 3 || err != nil || string(got[:3]) != "bcd" {
		t.Errorf("ReadAt(3) = %d, %v, %q", n, err, got[:3])
	}
}
