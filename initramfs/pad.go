package initramfs

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// MinZstdPadding is the shortest frame ZstdPadding writes: the magic, a frame header of two bytes and
// one raw block of one byte.
const MinZstdPadding = 10

// zstdRawBlockMax is the largest block of a frame whose window is 128 KiB (RFC 8878 §3.1.1.2.4:
// Block_Maximum_Size is the smaller of the window and 128 KiB).
const zstdRawBlockMax = 128 << 10

// ZstdPadding returns a zstd frame of exactly n bytes (at least MinZstdPadding) that decodes to zero
// bytes, held in raw blocks so that the frame is as long as asked. It lengthens an image whose last
// archive is zstd where zero bytes cannot: zstd's tools (which unmkinitramfs and lsinitramfs run)
// decode frames one after another and stop with an error at bytes that are none, while the kernel
// unpacks the frame as one more compressed archive and skips the zeros in it as it skips the padding
// between cpio archives. The frame has no content size, checksum or dictionary, and a 128 KiB window.
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

// MinLZ4LegacyPadding is the shortest run of chunks LZ4LegacyPadding writes: one chunk size and a block
// of one literal zero.
const MinLZ4LegacyPadding = 6

// LZ4LegacyPadding returns exactly n bytes (at least MinLZ4LegacyPadding) of lz4 legacy chunks that
// decode to zero bytes: each a little-endian size and a block of literals only, the most a chunk holds
// being 8 MiB. Appended to an image whose last archive is lz4 legacy they continue its stream, where
// zero bytes cannot: lz4's tools fail on a chunk size of zero, and the kernel, which stops there,
// takes anything else after the stream for one more chunk. The zeros decode after the archive's
// trailer, where the kernel skips them as padding and cpio never reads.
func LZ4LegacyPadding(n int) ([]byte, error) {
	if n < MinLZ4LegacyPadding {
		return nil, fmt.Errorf("initramfs: lz4 padding of %d bytes: at least %d", n, MinLZ4LegacyPadding)
	}
	out := make([]byte, 0, n)
	zeros := make([]byte, min(lz4LegacyChunk, n))
	for left := n; left > 0; {
		// One chunk if left is a chunk's length; else the longest chunk that leaves room for another
		// (a literal run's length bytes make some lengths unreachable, never two in a row).
		k, ok := lz4ZeroChunk(left)
		if !ok {
			size := min(4+lz4LiteralsLen(lz4LegacyChunk), left-MinLZ4LegacyPadding)
			if k, ok = lz4ZeroChunk(size); !ok {
				k, _ = lz4ZeroChunk(size - 1)
			}
		}
		block := lz4Literals(zeros[:k])
		out = binary.LittleEndian.AppendUint32(out, uint32(len(block)))
		out = append(out, block...)
		left -= 4 + len(block)
	}
	return out, nil
}

// lz4LiteralsLen is len(lz4Literals(src)) for k bytes of src.
func lz4LiteralsLen(k int) int {
	if k < 15 {
		return 1 + k
	}
	return 2 + k + (k-15)/255
}

// lz4ZeroChunk returns the number of literals k (1 to 8 MiB) of a chunk of exactly size bytes, if any.
func lz4ZeroChunk(size int) (int, bool) {
	m := size - 4
	k := 1 + sort.Search(lz4LegacyChunk, func(i int) bool { return lz4LiteralsLen(i+1) >= m })
	return k, k <= lz4LegacyChunk && lz4LiteralsLen(k) == m
}
