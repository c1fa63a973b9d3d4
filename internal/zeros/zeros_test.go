package zeros

import "testing"

func TestOnly(t *testing.T) {
	for n := 0; n < 200; n++ {
		b := make([]byte, n)
		if !Only(b) {
			t.Fatalf("%d zero bytes: false", n)
		}
		for i := 0; i < n; i++ {
			b[i] = 1
			if Only(b) {
				t.Fatalf("%d bytes with byte %d set: true", n, i)
			}
			b[i] = 0
		}
	}
}

func BenchmarkOnly(b *testing.B) {
	buf := make([]byte, 4<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Only(buf)
	}
}
