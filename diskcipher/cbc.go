package diskcipher

import (
	"crypto/cipher"
	"encoding/binary"
	"hash"
)

// cbcCipher is AES-CBC with the chain restarted at every sector from the
// sector's IV, or AES-ECB when iv is ivNone.
type cbcCipher struct {
	b          cipher.Block
	essiv      cipher.Block // AES keyed with H(key), for ivESSIV only
	sectorSize int
	iv         ivMode
}

func newCBC(key []byte, sectorSize int, iv ivMode, essivHash func() hash.Hash) (*cbcCipher, error) {
	c := &cbcCipher{b: newAES(key), sectorSize: sectorSize, iv: iv}
	if iv == ivESSIV {
		h := essivHash()
		h.Write(key)
		salt := h.Sum(nil)
		c.essiv = newAES(salt)
		clear(salt)
	}
	return c, nil
}

func (c *cbcCipher) SectorSize() int { return c.sectorSize }

// sectorIV returns the CBC IV of sector, using scratch (16 bytes of the
// output buffer) for the ESSIV encryption.
func (c *cbcCipher) sectorIV(scratch []byte, sector uint64) (uint64, uint64) {
	lo, hi := ivBlock(c.iv, sector)
	if c.iv != ivESSIV {
		return lo, hi
	}
	le := binary.LittleEndian
	le.PutUint64(scratch[0:8], lo)
	le.PutUint64(scratch[8:16], hi)
	c.essiv.Encrypt(scratch, scratch)
	return le.Uint64(scratch[0:8]), le.Uint64(scratch[8:16])
}

func (c *cbcCipher) Decrypt(dst, src []byte, iv uint64) {
	checkArgs(c.sectorSize, dst, src)
	if c.iv == ivNone {
		for i := 0; i < len(src); i += 16 {
			c.b.Decrypt(dst[i:i+16], src[i:i+16])
		}
		return
	}
	ss := c.sectorSize
	step := uint64(ss / 512)
	le := binary.LittleEndian
	for off := 0; off+ss <= len(src); off += ss {
		s, d := src[off:off+ss:off+ss], dst[off:off+ss:off+ss]
		x0, x1 := le.Uint64(s[0:8]), le.Uint64(s[8:16])
		p0, p1 := c.sectorIV(d[0:16], iv)
		for i := 0; ; {
			b := d[i : i+16 : i+16]
			// Put the ciphertext block in place, then decrypt in place: in
			// the dst == src case it is already there, and this keeps one
			// code path.
			le.PutUint64(b[0:8], x0)
			le.PutUint64(b[8:16], x1)
			c.b.Decrypt(b, b)
			le.PutUint64(b[0:8], le.Uint64(b[0:8])^p0)
			le.PutUint64(b[8:16], le.Uint64(b[8:16])^p1)
			i += 16
			if i == ss {
				break
			}
			p0, p1 = x0, x1
			x0, x1 = le.Uint64(s[i:i+8]), le.Uint64(s[i+8:i+16])
		}
		iv += step
	}
}

func (c *cbcCipher) Encrypt(dst, src []byte, iv uint64) {
	checkArgs(c.sectorSize, dst, src)
	if c.iv == ivNone {
		for i := 0; i < len(src); i += 16 {
			c.b.Encrypt(dst[i:i+16], src[i:i+16])
		}
		return
	}
	ss := c.sectorSize
	step := uint64(ss / 512)
	le := binary.LittleEndian
	for off := 0; off+ss <= len(src); off += ss {
		s, d := src[off:off+ss:off+ss], dst[off:off+ss:off+ss]
		x0, x1 := le.Uint64(s[0:8]), le.Uint64(s[8:16])
		p0, p1 := c.sectorIV(d[0:16], iv)
		for i := 0; ; {
			b := d[i : i+16 : i+16]
			le.PutUint64(b[0:8], x0^p0)
			le.PutUint64(b[8:16], x1^p1)
			c.b.Encrypt(b, b)
			i += 16
			if i == ss {
				break
			}
			p0, p1 = le.Uint64(b[0:8]), le.Uint64(b[8:16])
			x0, x1 = le.Uint64(s[i:i+8]), le.Uint64(s[i+8:i+16])
		}
		iv += step
	}
}
