package luks_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/luksconv/luksconv/diskcipher"
	"github.com/luksconv/luksconv/luks"
)

// TestReaderZeroCiphertext: sectors whose ciphertext is all zero read as zeros only with
// WithZeroCiphertextAsZero; ReadSectors counts them either way and decrypts the rest exactly.
func TestReaderZeroCiphertext(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		key := bytes.Repeat([]byte{7}, 64)
		c, err := diskcipher.New("aes-xts-plain64", key, ss)
		if err != nil {
			t.Fatal(err)
		}
		const sectors = 8
		plain := make([]byte, sectors*ss)
		for i := range plain {
			plain[i] = byte(i*31 + 1)
		}
		const tweak = 1000
		disk := make([]byte, 4096+len(plain)) // payload at offset 4096 of the device
		c.Encrypt(disk[4096:], plain, tweak)
		// Sectors 2 and 5 were never written through dm-crypt.
		for _, s := range []int{2, 5} {
			clear(disk[4096+s*ss : 4096+(s+1)*ss])
		}
		r, err := luks.NewCipherReader(bytes.NewReader(disk), 4096, int64(len(plain)), c, tweak)
		if err != nil {
			t.Fatal(err)
		}
		zr := r.WithZeroCiphertextAsZero(true)
		for s := 0; s < sectors; s++ {
			got := make([]byte, ss)
			if _, err := zr.ReadAt(got, int64(s*ss)); err != nil {
				t.Fatal(err)
			}
			want := plain[s*ss : (s+1)*ss]
			if s == 2 || s == 5 {
				want = make([]byte, ss)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("sector size %d: zero-as-zero sector %d differs", ss, s)
			}
			if _, err := r.ReadAt(got, int64(s*ss)); err != nil {
				t.Fatal(err)
			}
			if zeroed := bytes.Equal(got, make([]byte, ss)); zeroed || (s != 2 && s != 5 && !bytes.Equal(got, plain[s*ss:(s+1)*ss])) {
				t.Fatalf("sector size %d: default reader, sector %d: zeros %v or wrong plaintext", ss, s, zeroed)
			}
		}
		// An unaligned read across sectors.
		got := make([]byte, ss+100)
		if _, err := zr.ReadAt(got, int64(3*ss+7)); err != nil || !bytes.Equal(got, plain[3*ss+7:4*ss+107]) {
			t.Fatalf("sector size %d: unaligned read: %v", ss, err)
		}
		buf := make([]byte, len(plain))
		for _, asZero := range []bool{false, true} {
			zero, err := r.ReadSectors(buf, 0, asZero)
			if err != nil || zero != int64(2*ss) {
				t.Fatalf("ReadSectors(asZero %v) = %d, %v; want %d", asZero, zero, err, 2*ss)
			}
		}
		if _, err := r.ReadSectors(buf[:ss], 1, false); err == nil {
			t.Fatal("ReadSectors at an unaligned offset succeeded")
		}
		// Reading past the payload's end is io.EOF, as io.ReaderAt requires.
		if n, err := r.ReadAt(make([]byte, 10), int64(len(plain)-5)); n != 5 || err != io.EOF {
			t.Fatalf("read over the end = %d, %v", n, err)
		}
		// A device shorter than the payload.
		short := r.WithData(bytes.NewReader(disk[:len(disk)-1]))
		if _, err := short.ReadAt(make([]byte, ss), int64(len(plain)-ss)); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("short device: %v", err)
		}
	}
}

// TestReadSectorsAt: a payload whose sectors are scattered (a LUKS device inside an LV of several
// extents) is decrypted piece by piece from where each piece lies, at its own IV; the IVs must name
// whole sectors inside the payload.
func TestReadSectorsAt(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		c, err := diskcipher.New("aes-xts-plain64", bytes.Repeat([]byte{9}, 64), ss)
		if err != nil {
			t.Fatal(err)
		}
		const tweak = 40
		plain := make([]byte, 4*ss)
		for i := range plain {
			plain[i] = byte(i*7 + 3)
		}
		ct := make([]byte, len(plain))
		c.Encrypt(ct, plain, tweak)
		// The payload's second half lies before its first half on the device, 8 KiB apart.
		half := len(plain) / 2
		dev := make([]byte, 8192+2*len(plain))
		copy(dev[8192+len(plain):], ct[:half])
		copy(dev[8192:], ct[half:])
		r, err := luks.NewCipherReader(bytes.NewReader(dev), 0, int64(len(plain)), c, tweak)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(plain))
		if _, err := r.ReadSectorsAt(got[:half], int64(8192+len(plain)), tweak, false); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadSectorsAt(got[half:], 8192, tweak+uint64(half/512), false); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("sector size %d: scattered payload decrypts wrong", ss)
		}
		for _, bad := range []uint64{tweak - 1, tweak + uint64(len(plain)/512), tweak + 1} {
			if ss == 512 && bad == tweak+1 {
				continue // a whole sector at 512 bytes
			}
			if _, err := r.ReadSectorsAt(got[:ss], 8192, bad, false); err == nil {
				t.Errorf("sector size %d: IV %d accepted", ss, bad)
			}
		}
	}
}
