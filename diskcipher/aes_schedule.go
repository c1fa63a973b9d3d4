package diskcipher

import "encoding/binary"

// AES round keys for the assembly implementations.
//
// crypto/aes does not export its key schedule, so the assembly paths expand
// keys here (FIPS-197 section 5.2). Round keys are stored as the 16-byte
// sequences the AES instructions (x86 AES-NI, VAES; ARMv8 AESE/AESD) expect,
// in a layout shared by every round count:
//
//	slot 0:                    round key 0 (the initial AddRoundKey)
//	slots 1 .. 14-nr:          zero, unused
//	slot 14-nr+r, 1 <= r <= nr: round key r
//
// The last ten rounds thus always use slots 5-14, so the assembly loads or
// addresses all fifteen slots at fixed offsets and branches once on nr to
// skip the first 0, 2 or 4 rounds for AES-128, AES-192 and AES-256.
const (
	aesSlots      = 15
	aesSchedBytes = aesSlots * 16
)

// aesSchedule is an expanded AES key in the slot layout above.
type aesSchedule [aesSchedBytes]byte

// xtsKeys holds the schedules XTS needs: the data key in both directions
// and the tweak key for encryption only.
//
// It lives inside the Cipher for as long as the Cipher does and, as with
// crypto/aes, is not zeroed when the Cipher becomes garbage.
type xtsKeys struct {
	nr   int // rounds: 10, 12 or 14
	enc1 aesSchedule
	dec1 aesSchedule // equivalent inverse cipher schedule (FIPS-197 5.3.5)
	enc2 aesSchedule
}

func newXTSKeysGo(key []byte) *xtsKeys {
	half := len(key) / 2
	k := new(xtsKeys)
	k.nr = expandKey(&k.enc1, &k.dec1, key[:half])
	expandKey(&k.enc2, nil, key[half:])
	return k
}

// sbox is the AES S-box, computed at init from its definition (multiplicative
// inverse in GF(2^8) followed by the affine map) rather than typed in.
var sbox [256]byte

func init() {
	// Walk the multiplicative group with generator 3: p = 3^i, q = 3^-i.
	p, q := byte(1), byte(1)
	for {
		p = p ^ p<<1 ^ byte(-(p>>7)&0x1b) // p *= 3
		q ^= q << 1                       // q /= 3 (3^-1 = 0xf6)
		q ^= q << 2
		q ^= q << 4
		if q&0x80 != 0 {
			q ^= 0x09
		}
		s := q ^ rotl8(q, 1) ^ rotl8(q, 2) ^ rotl8(q, 3) ^ rotl8(q, 4)
		sbox[p] = s ^ 0x63
		if p == 1 {
			break
		}
	}
	sbox[0] = 0x63
}

func rotl8(x byte, n uint) byte { return x<<n | x>>(8-n) }

// gmul multiplies in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1.
func gmul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		a = a<<1 ^ byte(-(a>>7)&0x1b)
		b >>= 1
	}
	return p
}

// expandKey writes key's encryption schedule to enc and, if dec is not nil,
// the equivalent-inverse-cipher schedule to dec, both in the slot layout. It
// returns the number of rounds. len(key) is 16, 24 or 32.
func expandKey(enc, dec *aesSchedule, key []byte) int {
	nk := len(key) / 4
	nr := nk + 6
	var w [4 * aesSlots]uint32 // big-endian words, FIPS-197 w[i]
	for i := 0; i < nk; i++ {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	rcon := uint32(1)
	for i := nk; i < 4*(nr+1); i++ {
		t := w[i-1]
		switch {
		case i%nk == 0:
			t = subWord(t<<8|t>>24) ^ rcon<<24
			rcon = uint32(gmul(byte(rcon), 2))
		case nk > 6 && i%nk == 4:
			t = subWord(t)
		}
		w[i] = w[i-nk] ^ t
	}
	slot := func(r int) int { // byte offset of round key r
		if r == 0 {
			return 0
		}
		return 16 * (14 - nr + r)
	}
	clear(enc[:])
	for r := 0; r <= nr; r++ {
		for j := 0; j < 4; j++ {
			binary.BigEndian.PutUint32(enc[slot(r)+4*j:], w[4*r+j])
		}
	}
	clear(w[:])
	if dec != nil {
		// Decryption round key r is encryption round key nr-r, passed
		// through InvMixColumns except for the first and last, so that the
		// AESDEC/AESD round structure mirrors the encryption one.
		clear(dec[:])
		for r := 0; r <= nr; r++ {
			d := dec[slot(r) : slot(r)+16]
			copy(d, enc[slot(nr-r):slot(nr-r)+16])
			if r != 0 && r != nr {
				for c := 0; c < 16; c += 4 {
					invMixColumn(d[c : c+4])
				}
			}
		}
	}
	return nr
}

func subWord(w uint32) uint32 {
	return uint32(sbox[w>>24])<<24 | uint32(sbox[w>>16&0xff])<<16 | uint32(sbox[w>>8&0xff])<<8 | uint32(sbox[w&0xff])
}

// invMixColumn applies InvMixColumns to one 4-byte column.
func invMixColumn(c []byte) {
	a0, a1, a2, a3 := c[0], c[1], c[2], c[3]
	c[0] = gmul(a0, 14) ^ gmul(a1, 11) ^ gmul(a2, 13) ^ gmul(a3, 9)
	c[1] = gmul(a0, 9) ^ gmul(a1, 14) ^ gmul(a2, 11) ^ gmul(a3, 13)
	c[2] = gmul(a0, 13) ^ gmul(a1, 9) ^ gmul(a2, 14) ^ gmul(a3, 11)
	c[3] = gmul(a0, 11) ^ gmul(a1, 13) ^ gmul(a2, 9) ^ gmul(a3, 14)
}
