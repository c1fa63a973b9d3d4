package initramfs

import "fmt"

// MinZstdPadding is the shortest frame ZstdPadding writes: the magic, a frame header of two bytes and
// one raw block of one byte.
const MinZstdPadding = 10

// zstdRawBlockMax is the largest block of a frame whose window is 128 KiB (RFC 8878 §3.1.1.2.4:
// Block_Maximum_Size is the smaller of the window and 128 KiB).
const zstdRawBlockMax = 128 << 10

// ZstdPadding returns a zstd frame of exactly n bytes (at least MinZstdPadding) that decodes to zero
// bytes, held in raw blocks so that the frame is as long as asked. It lengthens an image whose last
// archive is zstd where zero bytes cannot: zstd's tools (unmkinitramfs, lsinitramfs) decode frames one
// after another and stop with an error at bytes that are none, while the kernel unpacks the frame as one
// more compressed archive and skips the zeros in it as it skips the padding between cpio archives. The
// frame has no content size, checksum or dictionary, and a 128 KiB window.
func ZstdPadding(n int) ([]byte, error) {
	if n < MinZstdPadding {
		return nil, fmt.Errorf("initramfs: a zstd padding frame of %d bytes: at least %d", n, MinZstdPadding)
	}
	// Magic (little-endian 0xFD2FB528); Frame_Header_Descriptor 0: no content size field, no checksum,
	// no dictionary, not single-segment, so a Window_Descriptor follows: exponent 7, mantissa 0, a
	// window of 1<<(10+7) bytes.
	b := make([]byte, 0, n)
	b = append(b, 0x28, 0xb5, 0x2f, 0xfd, 0x00, 7<<3)
	for left := n - len(b); left > 0; {
		size, last := left-3, true
		if size > zstdRawBlockMax {
			// Leave at least a block header and one byte for the next block: no empty blocks.
			size, last = min(zstdRawBlockMax, left-3-4), false
		}
		// Block_Header: Last_Block (bit 0), Block_Type 0 (Raw_Block, bits 1-2), Block_Size (bits 3-23).
		h := uint32(size) << 3
		if last {
			h |= 1
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16))
		b = append(b, make([]byte, size)...)
		left -= 3 + size
	}
	return b, nil
}
