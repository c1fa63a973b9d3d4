package initramfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"runtime"
	"sync"

	"github.com/luksconv/luksconv/internal/recovered"
	"github.com/ulikunitz/xz/lzma"
)

// xz as `xz --check=crc32 --lzma2=dict=1MiB -T0` writes it (dracut's command): one stream of blocks of
// xzBlockSize, three times the dictionary, as xz's multi-threaded mode cuts them, each header holding
// both sizes. The blocks do not depend on each other, so they are compressed on every CPU at once,
// where ulikunitz's xz.Writer compresses one after another (the .xz file format 1.2.1: §2.1 stream,
// §3 block, §4 index).
const (
	xzDictCap   = 1 << 20
	xzBlockSize = 3 * xzDictCap
)

// xzFlagsCRC32 are the stream flags: no reserved bits, check type CRC32.
var xzFlagsCRC32 = []byte{0x00, 0x01}

// xzBlockOut is one compressed block and its Unpadded Size (the block without its padding).
type xzBlockOut struct {
	b        []byte
	unpadded int
}

// encodeXZ compresses raw into one xz stream.
func encodeXZ(ctx context.Context, raw []byte) ([]byte, error) {
	n := (len(raw) + xzBlockSize - 1) / xzBlockSize // none for an empty raw, as xz writes it
	part := func(i int) []byte { return raw[min(i*xzBlockSize, len(raw)):min((i+1)*xzBlockSize, len(raw))] }
	blocks := make([]xzBlockOut, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				// A panic (in the lzma package) is the block's error: here it would end the process.
				errs[i] = recovered.Call(func() (err error) {
					blocks[i], err = xzBlock(ctx, part(i))
					return err
				})
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}

	out := append([]byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, xzFlagsCRC32...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(xzFlagsCRC32))
	index := binary.AppendUvarint([]byte{0x00}, uint64(n)) // index indicator, number of records
	for i, b := range blocks {
		out = append(out, b.b...)
		index = binary.AppendUvarint(index, uint64(b.unpadded))
		index = binary.AppendUvarint(index, uint64(len(part(i))))
	}
	index = append(index, make([]byte, padLen(int64(len(index))))...)
	index = binary.LittleEndian.AppendUint32(index, crc32.ChecksumIEEE(index))
	out = append(out, index...)
	// Stream footer: CRC32 of Backward Size and the flags, Backward Size (the index, in 4-byte units,
	// less one), the flags, the footer magic.
	footer := binary.LittleEndian.AppendUint32(nil, uint32(len(index)/4-1))
	footer = append(footer, xzFlagsCRC32...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(footer))
	out = append(out, footer...)
	return append(out, 'Y', 'Z'), nil
}

// xzBlock compresses p into one block: header, LZMA2 data, padding, CRC32 of p.
func xzBlock(ctx context.Context, p []byte) (xzBlockOut, error) {
	var data bytes.Buffer
	w, err := lzma.Writer2Config{DictCap: xzDictCap}.NewWriter2(&data)
	if err != nil {
		return xzBlockOut{}, err
	}
	if _, err := (ctxWriter{ctx, w}).Write(p); err != nil {
		return xzBlockOut{}, err
	}
	if err := w.Close(); err != nil {
		return xzBlockOut{}, err
	}
	// Block header: its size in 4-byte units less one (filled in below); flags: one filter, both
	// sizes present; Compressed Size; Uncompressed Size; the LZMA2 filter (ID 0x21, one property
	// byte: the dictionary size); zero padding to 4 bytes; CRC32 of all that.
	h := []byte{0, 0xc0}
	h = binary.AppendUvarint(h, uint64(data.Len()))
	h = binary.AppendUvarint(h, uint64(len(p)))
	h = append(h, 0x21, 1, lzma.EncodeDictCap(xzDictCap))
	h = append(h, make([]byte, padLen(int64(len(h)+4)))...)
	h[0] = byte((len(h)+4)/4 - 1)
	h = binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(h))
	b := append(h, data.Bytes()...)
	unpadded := len(b) + 4
	b = append(b, make([]byte, padLen(int64(len(b))))...)
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(p))
	return xzBlockOut{b: b, unpadded: unpadded}, nil
}
