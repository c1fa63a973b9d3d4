package diskcipher

import "encoding/binary"

// xtsDecryptSectors and xtsEncryptSectors process len(src) bytes, a whole
// number of sectors, with len(dst) == len(src) and dst either equal to src or
// disjoint. They are variables so that an architecture-specific
// implementation (assembly with its own key schedule) can replace them at
// init time.
var (
	xtsDecryptSectors = xtsDecryptGeneric
	xtsEncryptSectors = xtsEncryptGeneric
)

// mulAlpha multiplies the XTS tweak (t0 = bytes 0-7, t1 = bytes 8-15, both
// little-endian) by x in GF(2^128) modulo x^128 + x^7 + x^2 + x + 1.
func mulAlpha(t0, t1 uint64) (uint64, uint64) {
	carry := t1 >> 63
	return t0<<1 ^ 0x87&-carry, t1<<1 | t0>>63
}

// xtsTweak returns E_K2(IV(sector)). scratch (16 bytes of the output buffer)
// is used as the block buffer: passing a stack array to the cipher.Block
// interface would make it escape and allocate on every call.
func (c *xtsCipher) xtsTweak(scratch []byte, sector uint64) (uint64, uint64) {
	lo, hi := ivBlock(c.iv, sector)
	binary.LittleEndian.PutUint64(scratch[0:8], lo)
	binary.LittleEndian.PutUint64(scratch[8:16], hi)
	c.k2.Encrypt(scratch, scratch)
	return binary.LittleEndian.Uint64(scratch[0:8]), binary.LittleEndian.Uint64(scratch[8:16])
}

func xtsDecryptGeneric(c *xtsCipher, dst, src []byte, iv uint64) {
	ss := c.sectorSize
	step := uint64(ss / 512)
	le := binary.LittleEndian
	for off := 0; off+ss <= len(src); off += ss {
		s, d := src[off:off+ss:off+ss], dst[off:off+ss:off+ss]
		// Read the first block before d[0:16] (perhaps the same memory) is
		// used as scratch for the tweak.
		x0, x1 := le.Uint64(s[0:8]), le.Uint64(s[8:16])
		t0, t1 := c.xtsTweak(d[0:16], iv)
		for i := 0; ; {
			b := d[i : i+16 : i+16]
			le.PutUint64(b[0:8], x0^t0)
			le.PutUint64(b[8:16], x1^t1)
			c.k1.Decrypt(b, b)
			le.PutUint64(b[0:8], le.Uint64(b[0:8])^t0)
			le.PutUint64(b[8:16], le.Uint64(b[8:16])^t1)
			i += 16
			if i == ss {
				break
			}
			t0, t1 = mulAlpha(t0, t1)
			x0, x1 = le.Uint64(s[i:i+8]), le.Uint64(s[i+8:i+16])
		}
		iv += step
	}
}

func xtsEncryptGeneric(c *xtsCipher, dst, src []byte, iv uint64) {
	ss := c.sectorSize
	step := uint64(ss / 512)
	le := binary.LittleEndian
	for off := 0; off+ss <= len(src); off += ss {
		s, d := src[off:off+ss:off+ss], dst[off:off+ss:off+ss]
		x0, x1 := le.Uint64(s[0:8]), le.Uint64(s[8:16])
		t0, t1 := c.xtsTweak(d[0:16], iv)
		for i := 0; ; {
			b := d[i : i+16 : i+16]
			le.PutUint64(b[0:8], x0^t0)
			le.PutUint64(b[8:16], x1^t1)
			c.k1.Encrypt(b, b)
			le.PutUint64(b[0:8], le.Uint64(b[0:8])^t0)
			le.PutUint64(b[8:16], le.Uint64(b[8:16])^t1)
			i += 16
			if i == ss {
				break
			}
			t0, t1 = mulAlpha(t0, t1)
			x0, x1 = le.Uint64(s[i:i+8]), le.Uint64(s[i+8:i+16])
		}
		iv += step
	}
}
