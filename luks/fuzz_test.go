package luks_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luks"
)

// FuzzReadHeader feeds arbitrary header devices to ReadHeader. Inputs that
// look like LUKS2 are also tried with their checksums recomputed, so the
// fuzzer reaches the JSON validation instead of stopping at the checksum.
// Nothing may panic, and every failure must be ErrNotLUKS, a FormatError or
// a short read.
func FuzzReadHeader(f *testing.F) {
	for _, name := range []string{
		"compatimage.img", "compatv10image.img", "compatimage2.img", "luks2_valid_hdr.img",
		"luks2_keyslot_unassigned.img", "luks2_invalid_cipher.img", "evil_hdr-keyslot_overlap",
		"evil_hdr-stripes_payload_dmg", "valid_header_file", "blkid-luks2-pv.img",
		"luks2_header_requirements.tar/luks2_header_requirements",
		"luks2_mda_images.tar/test_image_16",
	} {
		data, err := os.ReadFile(testenv.CryptsetupImage(f, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data[:min(len(data), 64<<10)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check(t, data)
		if len(data) >= 16 && bytes.Equal(data[:4], []byte("LUKS")) && binary.BigEndian.Uint16(data[6:]) == 2 {
			d := bytes.Clone(data)
			hs := binary.BigEndian.Uint64(d[8:16])
			for _, off := range []uint64{0, hs} {
				if hs >= 4096 && hs <= 1<<20 && off+hs <= uint64(len(d)) {
					sealCopy(d[off : off+hs])
				}
			}
			check(t, d)
		}
	})
}

func check(t *testing.T, data []byte) {
	h, err := luks.ReadHeader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		var fe *luks.FormatError
		if err != luks.ErrNotLUKS && !errors.As(err, &fe) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
		return
	}
	_ = h.Supported()
	h.Payload(1 << 40)
	h.IV(4096)
	// Unlock only when every KDF is cheap, so the fuzzer does not stall.
	for _, ks := range h.Keyslots {
		if ks.Iterations > 2000 || ks.MemoryKiB > 1024 || ks.Time > 4 {
			return
		}
	}
	if _, err := h.Unlock([]byte("x"), -1); err == nil {
		t.Log("unlocked a fuzzed header")
	}
}
