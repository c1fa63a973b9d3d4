package initramfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/luksconv/luksconv/internal/recovered"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// Compression names the format of a segment.
type Compression string

// The formats the kernel's decompress_method recognises, by their 2-byte magic. Bzip2, LZMA and LZO
// are recognised (so the error can name them) but not decoded.
const (
	None      Compression = "none"       // an uncompressed cpio archive
	Gzip      Compression = "gzip"       // magic 1f 8b
	XZ        Compression = "xz"         // magic fd 37
	Zstd      Compression = "zstd"       // magic 28 b5
	LZ4Legacy Compression = "lz4-legacy" // magic 02 21: lz4's legacy frame (lz4 -l), the only one the kernel reads
	Bzip2     Compression = "bzip2"      // magic 42 5a; not decoded
	LZMA      Compression = "lzma"       // magic 5d 00; not decoded
	LZO       Compression = "lzo"        // magic 89 4c; not decoded
)

// xz check IDs (xz file format 1.0.4 §2.1.1.2) and their names as `xz --list` prints them.
var xzCheckNames = map[byte]string{0x00: "None", 0x01: "CRC32", 0x04: "CRC64", 0x0A: "SHA-256"}

const (
	lz4LegacyMagic = 0x184C2102
	// lz4LegacyChunk is the uncompressed size of one legacy block: what `lz4 -l` writes and the most
	// the kernel's unlz4 accepts per chunk (LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE).
	lz4LegacyChunk = 8 << 20
	// zstdMaxWindow: the kernel refuses frames whose window exceeds ZSTD_WINDOWSIZE_MAX; 1 GiB is well
	// above anything dracut makes and keeps the decoder's allocation bounded.
	zstdMaxWindow = 1 << 30
)

// detect identifies a compressed stream from its magic, as lib/decompress.c does (two bytes), then
// checks the rest of the format's magic so a chance match is reported as such.
func detect(b []byte) (Compression, error) {
	if len(b) < 2 {
		return "", errors.New("invalid magic at start of compressed archive")
	}
	full := func(c Compression, magic []byte) (Compression, error) {
		if !bytes.HasPrefix(b, magic) {
			return "", fmt.Errorf("%s magic prefix % x not followed by the rest of the %s magic", c, b[:2], c)
		}
		return c, nil
	}
	switch {
	case b[0] == 0x1f && b[1] == 0x8b:
		return Gzip, nil
	case b[0] == 0x1f && b[1] == 0x9e:
		return "", errors.New("old-style gzip (1f 9e) is not supported")
	case b[0] == 0x42 && b[1] == 0x5a:
		return Bzip2, nil
	case b[0] == 0x5d && b[1] == 0x00:
		return LZMA, nil
	case b[0] == 0xfd && b[1] == 0x37:
		return full(XZ, []byte{0xfd, '7', 'z', 'X', 'Z', 0})
	case b[0] == 0x89 && b[1] == 0x4c:
		return LZO, nil
	case b[0] == 0x02 && b[1] == 0x21:
		return full(LZ4Legacy, []byte{0x02, 0x21, 0x4c, 0x18})
	case b[0] == 0x28 && b[1] == 0xb5:
		return full(Zstd, []byte{0x28, 0xb5, 0x2f, 0xfd})
	}
	return "", fmt.Errorf("invalid magic % x at start of compressed archive", b[:2])
}

// decoded is the result of decompressing one segment.
type decoded struct {
	out      []byte
	consumed int    // compressed bytes the kernel's decompressor consumes
	xzCheck  string // xz only
}

// errTooLarge is returned when a stream expands beyond the caller's budget.
var errTooLarge = errors.New("initramfs: decompressed size over the limit (a decompression bomb?)")

// ctxChunk is the most data a compressor or decompressor is given or asked for between two looks at
// the context: a few tens of milliseconds of the slowest of them (luksconv's xz encoder, some 5 MB/s).
const ctxChunk = 256 << 10

// ctxWriter passes writes to w in pieces of at most ctxChunk bytes, and fails with the context's
// error, before each piece, once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (w ctxWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if err := w.ctx.Err(); err != nil {
			return n, err
		}
		m, err := w.w.Write(p[:min(len(p), ctxChunk)])
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// ctxReader asks r for at most ctxChunk bytes a call, and fails with the context's error once ctx is
// done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p[:min(len(p), ctxChunk)])
}

// readAllLimit reads r to EOF, failing once more than limit bytes come out, or with the context's
// error once ctx is done.
func readAllLimit(ctx context.Context, r io.Reader, limit int64) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(ctxReader{ctx, r}, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > limit {
		return nil, errTooLarge
	}
	return out, nil
}

// decode decompresses the stream at the start of b, which may be followed by anything, and reports how
// many bytes of b the kernel's decompressor would consume. It stops with the context's error once ctx
// is done.
func decode(ctx context.Context, c Compression, b []byte, limit int64) (decoded, error) {
	switch c {
	case Gzip:
		return decodeGzip(ctx, b, limit)
	case XZ:
		return decodeXZ(ctx, b, limit)
	case Zstd:
		return decodeZstd(ctx, b, limit)
	case LZ4Legacy:
		return decodeLZ4Legacy(ctx, b, limit)
	}
	return decoded{}, fmt.Errorf("%s compression is not supported", c)
}

func decodeGzip(ctx context.Context, b []byte, limit int64) (decoded, error) {
	// The kernel's gunzip (lib/decompress_inflate.c) requires method 8 and skips only an FNAME field;
	// FEXTRA, FCOMMENT or FHCRC would be inflated as data and fail there.
	if len(b) < 10 {
		return decoded{}, errors.New("gzip: truncated header")
	}
	if b[2] != 8 {
		return decoded{}, fmt.Errorf("gzip: compression method %d, want 8 (deflate)", b[2])
	}
	if f := b[3]; f&^0x09 != 0 {
		return decoded{}, fmt.Errorf("gzip: header flags %#02x: the kernel handles only FNAME", f)
	}
	// bytes.Reader is an io.ByteReader, so neither gzip nor flate reads ahead: what is left in br is
	// exactly what follows the member.
	br := bytes.NewReader(b)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return decoded{}, fmt.Errorf("gzip: %w", err)
	}
	zr.Multistream(false)
	out, err := readAllLimit(ctx, zr, limit)
	if err != nil {
		return decoded{}, fmt.Errorf("gzip: %w", err)
	}
	return decoded{out: out, consumed: len(b) - br.Len()}, nil
}

// xzStreamLen finds the end of the xz stream starting at b[0]: the first position where a valid stream
// footer (CRC32 over backward size and flags, flags equal to the header's) follows a valid index (index
// indicator byte, CRC32 over the index). The kernel decodes one stream (XZ_STREAM_END) and stops there.
func xzStreamLen(b []byte) (int, error) {
	const hdr = 12
	if len(b) < 2*hdr {
		return 0, errors.New("xz: truncated stream")
	}
	if binary.LittleEndian.Uint32(b[8:12]) != crc32.ChecksumIEEE(b[6:8]) {
		return 0, errors.New("xz: stream header CRC32 mismatch")
	}
	for from := 2 * hdr; from <= len(b); {
		i := bytes.Index(b[from-2:], []byte("YZ"))
		if i < 0 {
			break
		}
		end := from + i
		from = end + 1
		if end%4 != 0 {
			continue
		}
		f := b[end-hdr : end]
		if binary.LittleEndian.Uint32(f[0:4]) != crc32.ChecksumIEEE(f[4:10]) || !bytes.Equal(f[8:10], b[6:8]) {
			continue
		}
		isize := (int64(binary.LittleEndian.Uint32(f[4:8])) + 1) * 4
		istart := int64(end-hdr) - isize
		if istart < hdr || b[istart] != 0 {
			continue
		}
		ix := b[istart : end-hdr]
		if binary.LittleEndian.Uint32(ix[len(ix)-4:]) != crc32.ChecksumIEEE(ix[:len(ix)-4]) {
			continue
		}
		return end, nil
	}
	return 0, errors.New("xz: no stream footer found (truncated stream)")
}

// xzCheckSizes walks the index of the xz stream s (which ends at its footer) and the header of every
// block it lists: the uncompressed sizes together and any LZMA2 dictionary must stay within limit.
// Anything it cannot follow is left to the decoder to refuse.
func xzCheckSizes(s []byte, limit int64) error {
	end := len(s) - 12
	isize := (int(binary.LittleEndian.Uint32(s[end+4:end+8])) + 1) * 4
	ix := s[end-isize : end-4]
	p := 1
	uvarint := func() (int64, bool) {
		var v uint64
		for i := 0; i < 9 && p < len(ix); i++ {
			c := ix[p]
			p++
			v |= uint64(c&0x7f) << (7 * i)
			if c&0x80 == 0 {
				return int64(v & (1<<63 - 1)), true
			}
		}
		return 0, false
	}
	n, ok := uvarint()
	if !ok {
		return nil
	}
	var total int64
	at := int64(12)
	for i := int64(0); i < n; i++ {
		unpadded, ok1 := uvarint()
		size, ok2 := uvarint()
		if !ok1 || !ok2 {
			return nil
		}
		total += size
		if total > limit || total < 0 {
			return fmt.Errorf("xz: the index declares more than %d bytes of output: %w", limit, errTooLarge)
		}
		if d, ok := xzBlockDict(s, at); ok && d > max(limit, 1<<20) {
			return fmt.Errorf("xz: block %d declares a %d-byte dictionary: %w", i, d, errTooLarge)
		}
		at += (unpadded + 3) &^ 3
		if at < 0 || at >= int64(len(s)) {
			return nil
		}
	}
	return nil
}

// xzBlockDict reads the LZMA2 dictionary size from the block header at s[at:], if it has one.
func xzBlockDict(s []byte, at int64) (int64, bool) {
	if at+2 > int64(len(s)) || s[at] == 0 {
		return 0, false
	}
	hs := (int64(s[at]) + 1) * 4
	if at+hs > int64(len(s)) {
		return 0, false
	}
	h := s[at+2 : at+hs]
	flags := s[at+1]
	p := 0
	skip := func() bool { // one varint
		for p < len(h) {
			c := h[p]
			p++
			if c&0x80 == 0 {
				return true
			}
		}
		return false
	}
	if flags&0x40 != 0 && !skip() {
		return 0, false
	}
	if flags&0x80 != 0 && !skip() {
		return 0, false
	}
	for range int(flags&3) + 1 {
		if p >= len(h) {
			return 0, false
		}
		id := h[p]
		if !skip() || p >= len(h) {
			return 0, false
		}
		psize := int(h[p])
		if !skip() || p+psize > len(h) {
			return 0, false
		}
		if id == 0x21 && psize == 1 {
			bits := h[p]
			if bits > 40 {
				return 0, false
			}
			if bits == 40 {
				return 1<<32 - 1, true
			}
			return int64(2|(bits&1)) << (bits/2 + 11), true
		}
		p += psize
	}
	return 0, false
}

func decodeXZ(ctx context.Context, b []byte, limit int64) (decoded, error) {
	if len(b) < 12 {
		return decoded{}, errors.New("xz: truncated stream header")
	}
	check, ok := xzCheckNames[b[7]&0x0f]
	if b[6] != 0 || b[7]&0xf0 != 0 || !ok {
		return decoded{}, fmt.Errorf("xz: unsupported stream flags % x", b[6:8])
	}
	// The kernel verifies CRC32 (or none); CRC64 streams are read here so that they can be reported
	// and rewritten, SHA-256 is refused since the kernel cannot unpack it at all.
	if check == "SHA-256" {
		return decoded{}, errors.New("xz: SHA-256 check is not supported by the kernel's xz decoder")
	}
	n, err := xzStreamLen(b)
	if err != nil {
		return decoded{}, err
	}
	// The decoder allocates each block's dictionary as its header declares (up to 4 GiB): refuse one
	// larger than the output may be, and a stream whose index declares more output than that.
	if err := xzCheckSizes(b[:n], limit); err != nil {
		return decoded{}, err
	}
	zr, err := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(b[:n]))
	if err != nil {
		return decoded{}, fmt.Errorf("xz: %w", err)
	}
	out, err := readAllLimit(ctx, zr, limit)
	if err != nil {
		return decoded{}, fmt.Errorf("xz: %w", err)
	}
	return decoded{out: out, consumed: n, xzCheck: check}, nil
}

// zstdFrameLen walks the frame header and block headers (RFC 8878 §3.1.1) to find where the frame ends;
// the kernel decodes exactly one frame.
func zstdFrameLen(b []byte) (int, error) {
	if len(b) < 5 {
		return 0, errors.New("zstd: truncated frame header")
	}
	fhd := b[4]
	if fhd&0x08 != 0 {
		return 0, errors.New("zstd: reserved frame header bit set")
	}
	if fhd&0x03 != 0 {
		return 0, errors.New("zstd: frame needs a dictionary, which the kernel does not support")
	}
	single := fhd&0x20 != 0
	p := 5
	if !single {
		p++ // window descriptor
	}
	fcs := [4]int{0, 2, 4, 8}[fhd>>6]
	if fhd>>6 == 0 && single {
		fcs = 1
	}
	p += fcs
	for {
		if p+3 > len(b) {
			return 0, fmt.Errorf("zstd: truncated block header at frame offset %d", p)
		}
		bh := uint32(b[p]) | uint32(b[p+1])<<8 | uint32(b[p+2])<<16
		p += 3
		size := int(bh >> 3)
		switch (bh >> 1) & 3 {
		case 1: // RLE: one byte repeated
			size = 1
		case 3:
			return 0, fmt.Errorf("zstd: reserved block type at frame offset %d", p-3)
		}
		if size > len(b)-p {
			return 0, fmt.Errorf("zstd: truncated block at frame offset %d", p-3)
		}
		p += size
		if bh&1 != 0 {
			break
		}
	}
	if fhd&0x04 != 0 {
		p += 4
	}
	if p > len(b) {
		return 0, errors.New("zstd: truncated content checksum")
	}
	return p, nil
}

func decodeZstd(ctx context.Context, b []byte, limit int64) (decoded, error) {
	n, err := zstdFrameLen(b)
	if err != nil {
		return decoded{}, err
	}
	// No window larger than the output allowed, nor any output beyond it: the decoder's memory stays
	// within the limit.
	zr, err := zstd.NewReader(bytes.NewReader(b[:n]), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(uint64(min(zstdMaxWindow, max(limit, 8<<20)))),
		zstd.WithDecoderMaxMemory(uint64(max(limit, 1))), zstd.WithDecoderLowmem(true))
	if err != nil {
		return decoded{}, fmt.Errorf("zstd: %w", err)
	}
	defer zr.Close()
	out, err := readAllLimit(ctx, zr, limit)
	if err != nil {
		return decoded{}, fmt.Errorf("zstd: %w", err)
	}
	return decoded{out: out, consumed: n}, nil
}

// decodeLZ4Legacy follows the kernel's unlz4 on an in-memory buffer: after the magic, a sequence of
// little-endian chunk sizes and LZ4 blocks; a repeated magic is skipped, a zero size or fewer than four
// bytes left ends the stream. Anything else is taken as a chunk, so an lz4 segment can only be followed
// by zero padding.
func decodeLZ4Legacy(ctx context.Context, b []byte, limit int64) (decoded, error) {
	p := 4
	var out []byte
	var chunk []byte
	for len(b)-p >= 4 {
		if err := ctx.Err(); err != nil {
			return decoded{}, err
		}
		cs := binary.LittleEndian.Uint32(b[p:])
		if cs == lz4LegacyMagic {
			p += 4
			continue
		}
		if cs == 0 {
			break
		}
		if int64(cs) > int64(lz4.CompressBlockBound(lz4LegacyChunk)) || int64(cs) > int64(len(b)-p-4) {
			return decoded{}, fmt.Errorf("lz4: chunk at stream offset %d: size %d exceeds the data left (%d bytes)", p, cs, len(b)-p-4)
		}
		if chunk == nil {
			chunk = make([]byte, lz4LegacyChunk)
		}
		n, err := lz4.UncompressBlock(b[p+4:p+4+int(cs)], chunk)
		if err != nil {
			return decoded{}, fmt.Errorf("lz4: chunk at stream offset %d: %w", p, err)
		}
		if int64(len(out))+int64(n) > limit {
			return decoded{}, fmt.Errorf("lz4: %w", errTooLarge)
		}
		out = append(out, chunk[:n]...)
		p += 4 + int(cs)
	}
	return decoded{out: out, consumed: p}, nil
}

// canEncode reports whether encode writes format c.
func canEncode(c Compression) bool {
	switch c {
	case Gzip, XZ, Zstd, LZ4Legacy:
		return true
	}
	return false
}

// testHookEncode, when set by a test, is called as encode starts.
var testHookEncode func(Compression)

// encode compresses raw as one stream of format c, with the settings dracut uses where the library
// allows: gzip default level; xz with a CRC32 check and 1 MiB dictionary in 3 MiB blocks compressed on
// every CPU (encodeXZ, as `xz -T0`); zstd at klauspost's
// SpeedBestCompression (its closest to `zstd -15`) with a 4 MiB window (zstd -15's windowLog 22) in one
// frame; lz4 in the legacy frame with 8 MiB chunks compressed by the HC compressor at level 9 (`lz4 -l -9`).
// With fast set (Edit.Fast), zstd is at SpeedDefault (about `zstd -3`) and lz4's chunks are compressed
// by its fast compressor (`lz4 -1`), a tenth of the time or less; gzip and xz are as without it.
// It stops with the context's error once ctx is done: raw goes to the compressor ctxChunk bytes at a
// time, and lz4's chunks are compressed in a goroutine it stops waiting for (compressBlockContext).
func encode(ctx context.Context, c Compression, raw []byte, fast bool) ([]byte, error) {
	if testHookEncode != nil {
		testHookEncode(c)
	}
	var buf bytes.Buffer
	switch c {
	case Gzip:
		zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		if _, err := (ctxWriter{ctx, zw}).Write(raw); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case XZ:
		return encodeXZ(ctx, raw)
	case Zstd:
		level := zstd.SpeedBestCompression
		if fast {
			level = zstd.SpeedDefault
		}
		zw, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(level),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(4<<20))
		if err != nil {
			return nil, err
		}
		if _, err := (ctxWriter{ctx, zw}).Write(raw); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case LZ4Legacy:
		var c blockCompressor = &lz4.CompressorHC{Level: lz4.Level9}
		if fast {
			c = &lz4.Compressor{}
		}
		return encodeLZ4Legacy(ctx, c, raw)
	default:
		return nil, fmt.Errorf("cannot write %s compression", c)
	}
	return buf.Bytes(), nil
}

// blockCompressor is lz4's HC or fast block compressor.
type blockCompressor interface {
	CompressBlock(src, dst []byte) (int, error)
}

func encodeLZ4Legacy(ctx context.Context, c blockCompressor, raw []byte) ([]byte, error) {
	out := binary.LittleEndian.AppendUint32(nil, lz4LegacyMagic)
	dst := make([]byte, lz4.CompressBlockBound(lz4LegacyChunk))
	for len(raw) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(len(raw), lz4LegacyChunk)
		k, err := compressBlockContext(ctx, c, raw[:n], dst)
		if err != nil {
			return nil, fmt.Errorf("lz4: %w", err)
		}
		block := dst[:k]
		if k == 0 {
			// Incompressible: the legacy frame has no "stored" flag, so emit an LZ4 block made of
			// literals only, which every decoder accepts.
			block = lz4Literals(raw[:n])
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(block)))
		out = append(out, block...)
		raw = raw[n:]
	}
	return out, nil
}

// compressBlockContext is c.CompressBlock(src, dst), which cannot be interrupted and takes a second
// or more for an 8 MiB chunk at level 9: with a context that can end, it runs in a goroutine and
// compressBlockContext returns the context's error as soon as ctx is done. That chunk's compression
// then finishes in the background, its result dropped; the caller must not use c or dst again.
func compressBlockContext(ctx context.Context, c blockCompressor, src, dst []byte) (int, error) {
	if ctx.Done() == nil {
		return c.CompressBlock(src, dst)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		var n int
		// A panic is the chunk's error: on this goroutine it would end the process.
		err := recovered.Call(func() (err error) {
			n, err = c.CompressBlock(src, dst)
			return err
		})
		done <- result{n, err}
	}()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case r := <-done:
		return r.n, r.err
	}
}

// lz4Literals encodes src as a single LZ4 sequence with no match (block format: token, literal length
// extension bytes, literals).
func lz4Literals(src []byte) []byte {
	n := len(src)
	out := make([]byte, 0, n+n/255+16)
	if n < 15 {
		out = append(out, byte(n<<4))
	} else {
		out = append(out, 0xf0)
		for r := n - 15; ; r -= 255 {
			if r < 255 {
				out = append(out, byte(r))
				break
			}
			out = append(out, 255)
		}
	}
	return append(out, src...)
}
