package fuzzimage

import (
	"bytes"
	"io"
	"testing"
)

func TestImage(t *testing.T) {
	im := &Image{Base: []byte("0123456789"), Patches: []Patch{{Off: 2, Data: []byte("ab")}, {Off: 3, Data: []byte("XYZ")}, {Off: 9, Data: []byte("Q")}}}
	b := make([]byte, 10)
	if n, err := im.ReadAt(b, 0); n != 10 || err != nil || string(b) != "01aXYZ678Q" {
		t.Fatalf("ReadAt = %d, %v, %q", n, err, b)
	}
	if n, err := im.ReadAt(b[:4], 8); n != 2 || err != io.EOF || string(b[:2]) != "8Q" {
		t.Fatalf("ReadAt over the end = %d, %v, %q", n, err, b[:2])
	}
}

func TestDecode(t *testing.T) {
	in := []byte{1, 0, 2, 1, 'h', 'i', 0, 0xff, 0xff, 0, 'x', 0, 0, 0}
	got := Decode(in, []int64{100, 200}, 1000)
	// The second patch lands at 100+65535, outside the image, and is dropped; three bytes are left,
	// too few for another.
	if len(got) != 1 || got[0].Off != 202 || !bytes.Equal(got[0].Data, []byte("hi")) {
		t.Fatalf("Decode = %+v, want one patch of \"hi\" at 202", got)
	}
}
