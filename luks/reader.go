package luks

import (
	"errors"
	"fmt"
	"io"

	"github.com/luksconv/luksconv/internal/zeros"

	"github.com/luksconv/luksconv/diskcipher"
)

// NewCipher returns the data-segment cipher for the unlocked key k.
func (h *Header) NewCipher(k *VolumeKey) (diskcipher.Cipher, error) {
	if k == nil || len(k.key) == 0 {
		return nil, errors.New("luks: volume key is missing or destroyed")
	}
	if len(k.key) != h.KeySize {
		return nil, fmt.Errorf("luks: volume key is %d bytes, the header needs %d", len(k.key), h.KeySize)
	}
	c, err := diskcipher.New(h.Cipher, k.key, h.SectorSize)
	if err != nil {
		return nil, fmt.Errorf("%w: cipher %s: %w", ErrUnsupported, h.Cipher, err)
	}
	return c, nil
}

// Payload returns the byte range of the encrypted payload on a data device of
// dataDevSize bytes: it starts at DataOffset and runs for DataSize bytes, or,
// when the size is dynamic, to the end of the device rounded down to whole
// encryption sectors. A payload that does not fit the device is a *FormatError (ErrCorrupt).
func (h *Header) Payload(dataDevSize int64) (off, length int64, err error) {
	off = h.DataOffset
	if h.SectorSize <= 0 {
		return 0, 0, fmt.Errorf("%w: the data segment is not a crypt segment", ErrUnsupported)
	}
	if off < 0 || off > dataDevSize {
		return 0, 0, formatErr("data segment", off, "payload offset %d is beyond the end of the %d-byte data device", off, dataDevSize)
	}
	if h.DataSize >= 0 {
		if h.DataSize > dataDevSize-off {
			return 0, 0, formatErr("data segment", off, "payload of %d bytes at offset %d does not fit the %d-byte data device", h.DataSize, off, dataDevSize)
		}
		return off, h.DataSize, nil
	}
	ss := int64(h.SectorSize)
	return off, (dataDevSize - off) / ss * ss, nil
}

// IV returns the IV sector number of the payload byte offset pos (relative to
// the payload start, a multiple of SectorSize): IVTweak + pos/512. dm-crypt
// counts IVs in 512-byte units for LUKS whatever the sector size.
func (h *Header) IV(pos int64) uint64 {
	return h.IVTweak + uint64(pos)/sectorSize
}

// Reader is a plaintext view of the payload: an io.ReaderAt that decrypts on
// read. Reads may start and end anywhere; whole encryption sectors are read
// and decrypted internally. It is safe for concurrent use, and so are the
// copies With* return, which share its key schedule.
type Reader struct {
	data    io.ReaderAt
	off     int64 // payload offset on the data device
	size    int64
	ss      int64
	ivTweak uint64
	c       diskcipher.Cipher
	zero    bool // read all-zero ciphertext sectors as zero plaintext
}

// NewReader returns a plaintext view of the payload of the data device data
// (dataDevSize bytes), encrypted as h describes, with the key k. The reader
// keeps its own key schedule; k may be destroyed afterwards.
func NewReader(data io.ReaderAt, dataDevSize int64, h *Header, k *VolumeKey) (*Reader, error) {
	off, length, err := h.Payload(dataDevSize)
	if err != nil {
		return nil, err
	}
	c, err := h.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return NewCipherReader(data, off, length, c, h.IVTweak)
}

// NewCipherReader returns a plaintext view of the size bytes at offset off of
// data, encrypted sector by sector with c, the first sector's IV being ivTweak
// (in 512-byte units, as dm-crypt counts): for callers that hold the cipher
// already, or whose payload lies at an offset of a larger device (a partition
// of a disk image). size must be a whole number of c's sectors.
func NewCipherReader(data io.ReaderAt, off, size int64, c diskcipher.Cipher, ivTweak uint64) (*Reader, error) {
	ss := int64(c.SectorSize())
	if off < 0 || size < 0 || size%ss != 0 {
		return nil, fmt.Errorf("luks: payload of %d bytes at offset %d is not a whole number of %d-byte sectors", size, off, ss)
	}
	return &Reader{data: data, off: off, size: size, ss: ss, ivTweak: ivTweak, c: c}, nil
}

// WithData returns a reader of the same payload layout and key over another
// data device: the same disk opened again, or a copy of it.
func (r *Reader) WithData(data io.ReaderAt) *Reader {
	c := *r
	c.data = data
	return &c
}

// WithZeroCiphertextAsZero returns a reader whose ReadAt returns zeros for
// every encryption sector whose ciphertext is all zero, instead of decrypting
// it (asZero false gives the default: decrypt everything). Real ciphertext is
// all zero with probability 2^-4096 per 512-byte sector, so such a sector was
// never written through dm-crypt: sparse copies onto a dm-crypt device
// (`dd conv=sparse`) and discards leave them, and the plaintext there was
// zero (or free space) before, while decrypting gives pseudo-random bytes.
func (r *Reader) WithZeroCiphertextAsZero(asZero bool) *Reader {
	c := *r
	c.zero = asZero
	return &c
}

// Size returns the payload length in bytes.
func (r *Reader) Size() int64 { return r.size }

// SectorSize returns the encryption sector size in bytes.
func (r *Reader) SectorSize() int { return int(r.ss) }

// IV returns the IV sector number of payload byte offset off (a multiple of
// SectorSize).
func (r *Reader) IV(off int64) uint64 { return r.ivTweak + uint64(off)/sectorSize }

// ReadAt reads len(p) plaintext bytes at payload offset off. As io.ReaderAt
// requires, it returns io.EOF when fewer bytes remain.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("luks: negative read offset %d", off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.size-off))
	done := 0
	var sector []byte
	defer func() { clear(sector) }() // plaintext
	for done < n {
		pos := off + int64(done)
		rem := n - done
		if pos%r.ss == 0 && int64(rem) >= r.ss {
			// Aligned: decrypt whole sectors in place in p.
			m := int(int64(rem) / r.ss * r.ss)
			if _, err := r.ReadSectors(p[done:done+m], pos, r.zero); err != nil {
				return done, err
			}
			done += m
			continue
		}
		// A partial sector at either end goes through a scratch sector.
		if sector == nil {
			sector = make([]byte, r.ss)
		}
		start := pos - pos%r.ss
		if _, err := r.ReadSectors(sector, start, r.zero); err != nil {
			return done, err
		}
		done += copy(p[done:n], sector[pos-start:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// ReadSectors fills buf, a whole number of encryption sectors, with the
// plaintext at payload offset off (a multiple of SectorSize): it reads the
// ciphertext into buf and decrypts it in place, allocating nothing. With
// asZero, sectors whose ciphertext is all zero stay zero instead of being
// decrypted (see WithZeroCiphertextAsZero); either way it returns how many
// bytes of all-zero ciphertext it met. A data device that ends early is
// io.ErrUnexpectedEOF.
func (r *Reader) ReadSectors(buf []byte, off int64, asZero bool) (zero int64, err error) {
	if off < 0 || off%r.ss != 0 || int64(len(buf))%r.ss != 0 || int64(len(buf)) > r.size-off {
		return 0, fmt.Errorf("luks: read of %d bytes at payload offset %d is not whole %d-byte sectors inside the %d-byte payload", len(buf), off, r.ss, r.size)
	}
	k, err := r.data.ReadAt(buf, r.off+off)
	if k < len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("luks: reading payload at offset %d: %w", off, err)
	}
	return decryptSectors(r.c, buf, r.IV(off), asZero), nil
}

// ReadSectorsAt is ReadSectors for a payload whose sectors do not lie where the reader's layout puts
// them (a LUKS device inside a logical volume whose extents are scattered over its disk): it reads
// len(buf) bytes of ciphertext at byte dataOff of the data device itself (not of the payload) and
// decrypts them as the payload's sectors from IV sector iv on (IVTweak + payload offset / 512). The
// IVs must name whole sectors inside the payload.
func (r *Reader) ReadSectorsAt(buf []byte, dataOff int64, iv uint64, asZero bool) (zero int64, err error) {
	n := int64(len(buf))
	if iv < r.ivTweak || dataOff < 0 || n%r.ss != 0 {
		return 0, fmt.Errorf("luks: read of %d bytes at data offset %d, IV %d, is not whole %d-byte sectors of the payload", n, dataOff, iv, r.ss)
	}
	pos := int64(iv-r.ivTweak) * sectorSize
	if pos < 0 || pos%r.ss != 0 || n > r.size-pos {
		return 0, fmt.Errorf("luks: IV %d (payload offset %d) + %d bytes is not whole %d-byte sectors inside the %d-byte payload", iv, pos, n, r.ss, r.size)
	}
	k, err := r.data.ReadAt(buf, dataOff)
	if k < len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("luks: reading ciphertext at offset %d: %w", dataOff, err)
	}
	return decryptSectors(r.c, buf, iv, asZero), nil
}

// decryptSectors decrypts b in place (whole sectors of c, the first at IV
// sector iv). With asZero, sectors whose ciphertext is all zero are left zero.
// It returns the bytes of all-zero ciphertext it met.
func decryptSectors(c diskcipher.Cipher, b []byte, iv uint64, asZero bool) int64 {
	ss := c.SectorSize()
	var zero int64
	if !asZero {
		for s := 0; s+ss <= len(b); s += ss {
			if zeros.Only(b[s : s+ss]) {
				zero += int64(ss)
			}
		}
		c.Decrypt(b, b, iv)
		return zero
	}
	run := -1 // start of the current run of sectors to decrypt
	flush := func(end int) {
		if run >= 0 {
			c.Decrypt(b[run:end], b[run:end], iv+uint64(run/sectorSize))
			run = -1
		}
	}
	for s := 0; s+ss <= len(b); s += ss {
		if zeros.Only(b[s : s+ss]) {
			zero += int64(ss)
			flush(s)
			continue
		}
		if run < 0 {
			run = s
		}
	}
	flush(len(b) / ss * ss)
	return zero
}
