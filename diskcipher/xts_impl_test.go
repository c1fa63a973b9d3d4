package diskcipher

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// setXTSImpl switches the XTS implementation and returns a function that
// restores the previous one.
func setXTSImpl(impl xtsImpl) (restore func()) {
	old := xtsUse
	xtsUse = impl
	return func() { xtsUse = old }
}

// forEachXTSImpl runs f as a subtest once per XTS implementation this
// machine can run.
func forEachXTSImpl(t *testing.T, f func(t *testing.T)) {
	for _, impl := range xtsSupported() {
		t.Run(impl.String(), func(t *testing.T) {
			defer setXTSImpl(impl)()
			f(t)
		})
	}
}

// asmImpls returns the non-generic implementations, skipping the test when
// there are none (other GOARCH, purego, CPU without AES instructions).
func asmImpls(t testing.TB) []xtsImpl {
	impls := xtsSupported()[1:]
	if len(impls) == 0 {
		t.Skipf("!!! no XTS assembly for GOARCH=%s on this CPU/build: only the generic path exists", runtime.GOARCH)
	}
	return impls
}

func TestXTSImplSelection(t *testing.T) {
	s := xtsSupported()
	t.Logf("GOARCH=%s: XTS implementations %v, default %v", runtime.GOARCH, s, xtsUse)
	if s[0] != implGeneric {
		t.Fatalf("xtsSupported()[0] = %v, want generic", s[0])
	}
	if xtsUse != s[len(s)-1] {
		t.Errorf("default implementation %v is not the best supported %v", xtsUse, s[len(s)-1])
	}
}

// TestSBox checks the computed S-box against FIPS-197 figure 7 entries and
// that it is a permutation.
func TestSBox(t *testing.T) {
	for in, want := range map[byte]byte{0x00: 0x63, 0x01: 0x7c, 0x53: 0xed, 0x10: 0xca, 0xff: 0x16, 0x9a: 0xb8} {
		if sbox[in] != want {
			t.Errorf("sbox[%#x] = %#x, want %#x", in, sbox[in], want)
		}
	}
	var seen [256]bool
	for _, v := range sbox {
		if seen[v] {
			t.Fatalf("sbox value %#x repeated", v)
		}
		seen[v] = true
	}
}

// roundKey returns round key r of a schedule in the slot layout.
func roundKey(s *aesSchedule, nr, r int) []byte {
	if r == 0 {
		return s[:16]
	}
	off := 16 * (14 - nr + r)
	return s[off : off+16]
}

// refEncrypt and refDecrypt are a textbook AES over the package's schedules
// (state byte i is row i%4 of column i/4), so that the schedules, which
// only the assembly consumes, are checked on every architecture.
func refEncrypt(s *aesSchedule, nr int, b []byte) {
	xorBytes(b, roundKey(s, nr, 0))
	for r := 1; r <= nr; r++ {
		var t [16]byte
		for c := 0; c < 4; c++ {
			for row := 0; row < 4; row++ {
				t[4*c+row] = sbox[b[4*((c+row)%4)+row]]
			}
		}
		if r != nr {
			for c := 0; c < 16; c += 4 {
				a0, a1, a2, a3 := t[c], t[c+1], t[c+2], t[c+3]
				t[c] = gmul(a0, 2) ^ gmul(a1, 3) ^ a2 ^ a3
				t[c+1] = a0 ^ gmul(a1, 2) ^ gmul(a2, 3) ^ a3
				t[c+2] = a0 ^ a1 ^ gmul(a2, 2) ^ gmul(a3, 3)
				t[c+3] = gmul(a0, 3) ^ a1 ^ a2 ^ gmul(a3, 2)
			}
		}
		copy(b, t[:])
		xorBytes(b, roundKey(s, nr, r))
	}
}

func refDecrypt(s *aesSchedule, nr int, b []byte) {
	var inv [256]byte
	for i, v := range sbox {
		inv[v] = byte(i)
	}
	xorBytes(b, roundKey(s, nr, 0))
	for r := 1; r <= nr; r++ {
		var t [16]byte
		for c := 0; c < 4; c++ {
			for row := 0; row < 4; row++ {
				t[4*c+row] = inv[b[4*((c-row+4)%4)+row]]
			}
		}
		if r != nr {
			for c := 0; c < 16; c += 4 {
				invMixColumn(t[c : c+4])
			}
		}
		copy(b, t[:])
		xorBytes(b, roundKey(s, nr, r))
	}
}

func xorBytes(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}

func TestAESSchedule(t *testing.T) {
	// FIPS-197 appendix C: plaintext 00112233..ff, key 000102...
	pt := unhex(t, "00112233445566778899aabbccddeeff")
	for _, tc := range []struct {
		keyLen int
		ct     string
	}{
		{16, "69c4e0d86a7b0430d8cdb78070b4c55a"},
		{24, "dda97ca4864cdfe06eaf70a0ec0d7191"},
		{32, "8ea2b7ca516745bfeafc49904b496089"},
	} {
		key := make([]byte, tc.keyLen)
		for i := range key {
			key[i] = byte(i)
		}
		var enc, dec aesSchedule
		nr := expandKey(&enc, &dec, key)
		if nr != tc.keyLen/4+6 {
			t.Fatalf("AES-%d: %d rounds", tc.keyLen*8, nr)
		}
		b := bytes.Clone(pt)
		refEncrypt(&enc, nr, b)
		if got := hex.EncodeToString(b); got != tc.ct {
			t.Errorf("AES-%d: encrypt = %s, want %s", tc.keyLen*8, got, tc.ct)
		}
		refDecrypt(&dec, nr, b)
		if !bytes.Equal(b, pt) {
			t.Errorf("AES-%d: decrypt = %x, want %x", tc.keyLen*8, b, pt)
		}
		// Unused slots stay zero: the assembly loads them unconditionally.
		for off := 16; off < 16*(15-nr); off++ {
			if enc[off] != 0 || dec[off] != 0 {
				t.Fatalf("AES-%d: unused slot byte %d not zero", tc.keyLen*8, off)
			}
		}
	}

	r := rand.New(rand.NewPCG(13, 14))
	for _, kl := range []int{16, 24, 32} {
		for trial := 0; trial < 50; trial++ {
			key := testenv.RandBytes(r, kl)
			ref, _ := aes.NewCipher(key)
			var enc, dec aesSchedule
			nr := expandKey(&enc, &dec, key)
			b := testenv.RandBytes(r, 16)
			want := make([]byte, 16)
			ref.Encrypt(want, b)
			got := bytes.Clone(b)
			refEncrypt(&enc, nr, got)
			if !bytes.Equal(got, want) {
				t.Fatalf("AES-%d key %x: schedule encrypts differently from crypto/aes", kl*8, key)
			}
			ref.Decrypt(want, b)
			got = bytes.Clone(b)
			refDecrypt(&dec, nr, got)
			if !bytes.Equal(got, want) {
				t.Fatalf("AES-%d key %x: schedule decrypts differently from crypto/aes", kl*8, key)
			}
		}
	}
}

// cryptWith runs Encrypt or Decrypt of c under impl.
func cryptWith(impl xtsImpl, c Cipher, decrypt bool, dst, src []byte, iv uint64) {
	defer setXTSImpl(impl)()
	if decrypt {
		c.Decrypt(dst, src, iv)
	} else {
		c.Encrypt(dst, src, iv)
	}
}

// checkAsmVsGeneric compares impl with the generic path on src, out of place
// (dst and src at independent offsets inside guarded buffers) and in place.
func checkAsmVsGeneric(t testing.TB, impl xtsImpl, c Cipher, src []byte, iv uint64, dOff, sOff int, what string) {
	t.Helper()
	n := len(src)
	const guard = 48
	for _, decrypt := range []bool{true, false} {
		want := make([]byte, n)
		cryptWith(implGeneric, c, decrypt, want, src, iv)

		sbuf := bytes.Repeat([]byte{0x5a}, n+guard)
		s := sbuf[sOff : sOff+n]
		copy(s, src)
		dbuf := bytes.Repeat([]byte{0xc3}, n+guard)
		d := dbuf[dOff : dOff+n]
		cryptWith(impl, c, decrypt, d, s, iv)
		if !bytes.Equal(d, want) {
			t.Fatalf("%v %s decrypt=%v iv=%#x offsets %d/%d: differs from generic", impl, what, decrypt, iv, dOff, sOff)
		}
		if !bytes.Equal(s, src) {
			t.Fatalf("%v %s: source modified", impl, what)
		}
		if bytes.Count(dbuf[:dOff], []byte{0xc3}) != dOff || bytes.Count(dbuf[dOff+n:], []byte{0xc3}) != guard-dOff {
			t.Fatalf("%v %s decrypt=%v: wrote outside dst", impl, what, decrypt)
		}
		// In place, at the source offset.
		cryptWith(impl, c, decrypt, s, s, iv)
		if !bytes.Equal(s, want) {
			t.Fatalf("%v %s decrypt=%v iv=%#x offset %d: in-place differs from generic", impl, what, decrypt, iv, sOff)
		}
		if bytes.Count(sbuf[:sOff], []byte{0x5a}) != sOff || bytes.Count(sbuf[sOff+n:], []byte{0x5a}) != guard-sOff {
			t.Fatalf("%v %s decrypt=%v: in-place wrote outside the buffer", impl, what, decrypt)
		}
	}
}

// TestXTSAsmMatchesGeneric compares every assembly path with the generic
// one: all sector and key sizes, all XTS IV generators, IVs at the 32- and
// 64-bit wrap, unaligned buffers, in place, and calls spanning more sectors
// than one tweak batch.
func TestXTSAsmMatchesGeneric(t *testing.T) {
	impls := asmImpls(t)
	r := rand.New(rand.NewPCG(15, 16))
	for _, impl := range impls {
		for _, ss := range sectorSizes {
			for _, kl := range []int{32, 48, 64} {
				for _, spec := range []string{"aes-xts-plain64", "aes-xts-plain", "aes-xts-plain64be"} {
					key := testenv.RandBytes(r, kl)
					c, err := New(spec, key, ss)
					if err != nil {
						t.Fatal(err)
					}
					ivs := interestingIVs(r, 1)
					for i, iv := range ivs {
						nsec := []int{1, 2, 3, 8, 15, 16, 17, 33}[i%8]
						if ss == 4096 && nsec > 17 {
							nsec = 17
						}
						src := testenv.RandBytes(r, nsec*ss)
						what := fmt.Sprintf("%s %d-byte key ss=%d sectors=%d", spec, kl, ss, nsec)
						checkAsmVsGeneric(t, impl, c, src, iv, r.IntN(16), r.IntN(16), what)
					}
				}
			}
		}
	}
}

// TestXTSAsmOddDataUnits drives the kernels with data units that are not
// dm-crypt sector sizes (as the 32-byte IEEE 1619 vectors need), covering
// the single-block tail of the AES-NI kernel and the VAES fallback.
func TestXTSAsmOddDataUnits(t *testing.T) {
	impls := asmImpls(t)
	r := rand.New(rand.NewPCG(17, 18))
	for _, impl := range impls {
		for _, du := range []int{16, 32, 48, 112, 128, 144, 240, 256, 272, 400, 768, 1040} {
			for _, kl := range []int{32, 48, 64} {
				x, err := newXTS(testenv.RandBytes(r, kl), 512, ivPlain64)
				if err != nil {
					t.Fatal(err)
				}
				x.sectorSize = du
				nsec := 1 + r.IntN(20)
				src := testenv.RandBytes(r, nsec*du)
				checkAsmVsGeneric(t, impl, x, src, r.Uint64(), r.IntN(16), r.IntN(16),
					fmt.Sprintf("data unit %d, %d-byte key, %d units", du, kl, nsec))
			}
		}
	}
}

func FuzzXTSAsmMatchesGeneric(f *testing.F) {
	asmImpls(f)
	f.Add(make([]byte, 64), make([]byte, 4096), uint64(0), uint8(0), uint8(0))
	f.Add(bytes.Repeat([]byte{7}, 48), bytes.Repeat([]byte{9}, 1536), uint64(1<<32-1), uint8(0x91), uint8(0x35))
	f.Add(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 816), uint64(1<<64-1), uint8(0x06), uint8(0xff))
	f.Fuzz(func(t *testing.T, key, data []byte, iv uint64, sel, offs uint8) {
		switch len(key) {
		case 32, 48, 64:
		default:
			return
		}
		// sel: bits 0-2 pick the data unit (dm-crypt sector sizes or odd
		// multiples of 16), bits 3-4 the IV generator.
		ss := []int{512, 1024, 2048, 4096, 16, 48, 272, 784}[sel%8]
		ivm := []ivMode{ivPlain64, ivPlain, ivPlain64BE, ivPlain64}[sel>>3%4]
		x, err := newXTS(key, 512, ivm)
		if err != nil {
			t.Fatal(err)
		}
		x.sectorSize = ss
		data = data[:len(data)/ss*ss]
		for _, impl := range xtsSupported()[1:] {
			checkAsmVsGeneric(t, impl, x, data, iv, int(offs%16), int(offs/16), "fuzz")
		}
	})
}

// BenchmarkXTSDecryptChunk decrypts 1 MiB per call, as a disk conversion
// does, so the per-call and per-tweak-batch costs are amortised.
func BenchmarkXTSDecryptChunk(b *testing.B) {
	for _, impl := range xtsSupported() {
		b.Run(impl.String(), func(b *testing.B) {
			defer setXTSImpl(impl)()
			for _, ss := range []int{4096, 512} {
				for _, kl := range []int{32, 64} {
					b.Run(fmt.Sprintf("1MiB/%dx%d", ss, kl), func(b *testing.B) {
						c, err := New("aes-xts-plain64", make([]byte, kl), ss)
						if err != nil {
							b.Fatal(err)
						}
						buf := make([]byte, 1<<20)
						b.SetBytes(int64(len(buf)))
						for b.Loop() {
							c.Decrypt(buf, buf, 2048)
						}
					})
				}
			}
		})
	}
}
