package luks

import (
	"context"
	"encoding"
	"encoding/binary"
	"hash"
)

// pbkdf2Key is PBKDF2-HMAC (RFC 8018 §5.2). It gives the same result as
// crypto/pbkdf2.Key (the tests check that), but takes the password as a byte
// slice and zeroes every buffer derived from it. The standard library takes
// the password as a string and keeps key^ipad and key^opad inside its HMAC,
// which cannot be zeroed; here the password is a passphrase or a candidate
// volume key, so those copies would outlive Unlock.
//
// It looks at ctx every pbkdf2CheckEvery iterations and returns ctx.Err() when it is done: a header
// may ask for billions of iterations.
func pbkdf2Key(ctx context.Context, newHash func() hash.Hash, password, salt []byte, iter, keyLen int) ([]byte, error) {
	inner, outer := newHash(), newHash()
	bs := inner.BlockSize()
	pad := make([]byte, bs)
	defer clear(pad)
	if len(password) > bs {
		inner.Write(password)
		sum := inner.Sum(nil)
		copy(pad, sum)
		clear(sum)
		inner.Reset()
	} else {
		copy(pad, password)
	}
	for i := range pad {
		pad[i] ^= 0x36
	}
	inner.Write(pad)
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	outer.Write(pad)
	clear(pad)

	// Save the states after the pads, so each HMAC restarts from them
	// instead of rehashing a pad block (what crypto/hmac does too). Hashes
	// that cannot marshal their state fall back to a slower path.
	innerState, outerState := marshal(inner), marshal(outer)
	defer clear(innerState)
	defer clear(outerState)
	reset := func(h hash.Hash, state []byte, padByte byte) {
		if state != nil {
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err == nil {
				return
			}
		}
		// Slow path: rebuild the pad.
		h.Reset()
		p := make([]byte, bs)
		if len(password) > bs {
			t := newHash()
			t.Write(password)
			sum := t.Sum(nil)
			copy(p, sum)
			clear(sum)
		} else {
			copy(p, password)
		}
		for i := range p {
			p[i] ^= padByte
		}
		h.Write(p)
		clear(p)
	}
	hmac := func(dst []byte, parts ...[]byte) []byte {
		reset(inner, innerState, 0x36)
		for _, p := range parts {
			inner.Write(p)
		}
		dst = inner.Sum(dst[:0])
		reset(outer, outerState, 0x5c)
		outer.Write(dst)
		return outer.Sum(dst[:0])
	}

	hLen := inner.Size()
	out := make([]byte, 0, (keyLen+hLen-1)/hLen*hLen)
	u := make([]byte, 0, hLen)
	t := make([]byte, hLen)
	defer clear(u[:hLen])
	defer clear(t)
	var ctr [4]byte
	for block := uint32(1); len(out) < keyLen; block++ {
		binary.BigEndian.PutUint32(ctr[:], block)
		u = hmac(u, salt, ctr[:])
		copy(t, u)
		for n := 1; n < iter; n++ {
			if n%pbkdf2CheckEvery == 0 && ctx.Err() != nil {
				clear(out[:cap(out)])
				return nil, ctx.Err()
			}
			u = hmac(u, u)
			for i := range t {
				t[i] ^= u[i]
			}
		}
		out = append(out, t...)
	}
	clear(out[keyLen:])
	return out[:keyLen:keyLen], nil
}

// pbkdf2CheckEvery is how many PBKDF2 iterations run between looks at the context: about a
// millisecond of SHA-256 work.
const pbkdf2CheckEvery = 4096

func marshal(h hash.Hash) []byte {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return nil
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return nil
	}
	return b
}
