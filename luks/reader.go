package luks

import (
	"errors"
	"fmt"
	"io"

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
// encryption sectors. It fails if the payload does not fit the device.
func (h *Header) Payload(dataDevSize int64) (off, length int64, err error) {
	off = h.DataOffset
	if h.SectorSize <= 0 {
		return 0, 0, fmt.Errorf("%w: the data segment is not a crypt segment", ErrUnsupported)
	}
	if off < 0 || off > dataDevSize {
		return 0, 0, fmt.Errorf("luks: payload offset %d is beyond the end of the %d-byte data device", off, dataDevSize)
	}
	if h.DataSize >= 0 {
		if h.DataSize > dataDevSize-off {
			return 0, 0, fmt.Errorf("luks: payload of %d bytes at offset %d does not fit the %d-byte data device", h.DataSize, off, dataDevSize)
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
// and decrypted internally. It is safe for concurrent use.
type Reader struct {
	data    io.ReaderAt
	off     int64 // payload offset on the data device
	size    int64
	ss      int64
	ivTweak uint64
	c       diskcipher.Cipher
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
	return &Reader{data: data, off: off, size: length, ss: int64(h.SectorSize), ivTweak: h.IVTweak, c: c}, nil
}

// Size returns the payload length in bytes.
func (r *Reader) Size() int64 { return r.size }

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
	for done < n {
		pos := off + int64(done)
		rem := n - done
		if pos%r.ss == 0 && int64(rem) >= r.ss {
			// Aligned: decrypt whole sectors in place in p.
			m := int(int64(rem) / r.ss * r.ss)
			if err := r.readSectors(p[done:done+m], pos); err != nil {
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
		if err := r.readSectors(sector, start); err != nil {
			return done, err
		}
		done += copy(p[done:n], sector[pos-start:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readSectors fills buf (whole sectors) with the plaintext at payload offset pos.
func (r *Reader) readSectors(buf []byte, pos int64) error {
	k, err := r.data.ReadAt(buf, r.off+pos)
	if k < len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("luks: reading payload at offset %d: %w", pos, err)
	}
	r.c.Decrypt(buf, buf, r.ivTweak+uint64(pos)/sectorSize)
	return nil
}
