package diskcipher

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/xts"

	"github.com/luksconv/luksconv/internal/testenv"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seq returns n bytes 00 01 02 ... ff 00 01 ... as used by IEEE 1619 vectors 4-10.
func seq(n int) string {
	var sb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "%02x", byte(i))
	}
	return sb.String()
}

// IEEE Std 1619-2007, Annex B, XTS-AES-128 vectors 1-5 and XTS-AES-256
// vector 10. The data unit sequence number is the little-endian tweak, i.e.
// exactly dm-crypt's plain64 IV.
var ieeeVectors = []struct {
	name   string
	key    string
	sector uint64
	pt, ct string
}{
	{"vector 1", strings.Repeat("00", 32), 0, strings.Repeat("00", 32),
		"917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e"},
	{"vector 2", strings.Repeat("11", 16) + strings.Repeat("22", 16), 0x3333333333, strings.Repeat("44", 32),
		"c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0"},
	{"vector 3", "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0" + strings.Repeat("22", 16), 0x3333333333, strings.Repeat("44", 32),
		"af85336b597afc1a900b2eb21ec949d292df4c047e0b21532186a5971a227a89"},
	{"vector 4", "27182818284590452353602874713526" + "31415926535897932384626433832795", 0, seq(512),
		"27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89cc78cf7f5e543445f8333d8fa7f56000005279fa5d8b5e4ad40e736ddb4d35412328063fd2aab53e5ea1e0a9f332500a5df9487d07a5c92cc512c8866c7e860ce93fdf166a24912b422976146ae20ce846bb7dc9ba94a767aaef20c0d61ad02655ea92dc4c4e41a8952c651d33174be51a10c421110e6d81588ede82103a252d8a750e8768defffed9122810aaeb99f9172af82b604dc4b8e51bcb08235a6f4341332e4ca60482a4ba1a03b3e65008fc5da76b70bf1690db4eae29c5f1badd03c5ccf2a55d705ddcd86d449511ceb7ec30bf12b1fa35b913f9f747a8afd1b130e94bff94effd01a91735ca1726acd0b197c4e5b03393697e126826fb6bbde8ecc1e08298516e2c9ed03ff3c1b7860f6de76d4cecd94c8119855ef5297ca67e9f3e7ff72b1e99785ca0a7e7720c5b36dc6d72cac9574c8cbbc2f801e23e56fd344b07f22154beba0f08ce8891e643ed995c94d9a69c9f1b5f499027a78572aeebd74d20cc39881c213ee770b1010e4bea718846977ae119f7a023ab58cca0ad752afe656bb3c17256a9f6e9bf19fdd5a38fc82bbe872c5539edb609ef4f79c203ebb140f2e583cb2ad15b4aa5b655016a8449277dbd477ef2c8d6c017db738b18deb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568"},
	{"vector 5", "27182818284590452353602874713526" + "31415926535897932384626433832795", 1,
		// Vector 5's plaintext is vector 4's ciphertext.
		"27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89cc78cf7f5e543445f8333d8fa7f56000005279fa5d8b5e4ad40e736ddb4d35412328063fd2aab53e5ea1e0a9f332500a5df9487d07a5c92cc512c8866c7e860ce93fdf166a24912b422976146ae20ce846bb7dc9ba94a767aaef20c0d61ad02655ea92dc4c4e41a8952c651d33174be51a10c421110e6d81588ede82103a252d8a750e8768defffed9122810aaeb99f9172af82b604dc4b8e51bcb08235a6f4341332e4ca60482a4ba1a03b3e65008fc5da76b70bf1690db4eae29c5f1badd03c5ccf2a55d705ddcd86d449511ceb7ec30bf12b1fa35b913f9f747a8afd1b130e94bff94effd01a91735ca1726acd0b197c4e5b03393697e126826fb6bbde8ecc1e08298516e2c9ed03ff3c1b7860f6de76d4cecd94c8119855ef5297ca67e9f3e7ff72b1e99785ca0a7e7720c5b36dc6d72cac9574c8cbbc2f801e23e56fd344b07f22154beba0f08ce8891e643ed995c94d9a69c9f1b5f499027a78572aeebd74d20cc39881c213ee770b1010e4bea718846977ae119f7a023ab58cca0ad752afe656bb3c17256a9f6e9bf19fdd5a38fc82bbe872c5539edb609ef4f79c203ebb140f2e583cb2ad15b4aa5b655016a8449277dbd477ef2c8d6c017db738b18deb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568",
		"264d3ca8512194fec312c8c9891f279fefdd608d0c027b60483a3fa811d65ee59d52d9e40ec5672d81532b38b6b089ce951f0f9c35590b8b978d175213f329bb1c2fd30f2f7f30492a61a532a79f51d36f5e31a7c9a12c286082ff7d2394d18f783e1a8e72c722caaaa52d8f065657d2631fd25bfd8e5baad6e527d763517501c68c5edc3cdd55435c532d7125c8614deed9adaa3acade5888b87bef641c4c994c8091b5bcd387f3963fb5bc37aa922fbfe3df4e5b915e6eb514717bdd2a74079a5073f5c4bfd46adf7d282e7a393a52579d11a028da4d9cd9c77124f9648ee383b1ac763930e7162a8d37f350b2f74b8472cf09902063c6b32e8c2d9290cefbd7346d1c779a0df50edcde4531da07b099c638e83a755944df2aef1aa31752fd323dcb710fb4bfbb9d22b925bc3577e1b8949e729a90bbafeacf7f7879e7b1147e28ba0bae940db795a61b15ecf4df8db07b824bb062802cc98a9545bb2aaeed77cb3fc6db15dcd7d80d7d5bc406c4970a3478ada8899b329198eb61c193fb6275aa8ca340344a75a862aebe92eee1ce032fd950b47d7704a3876923b4ad62844bf4a09c4dbe8b4397184b7471360c9564880aedddb9baa4af2e75394b08cd32ff479c57a07d3eab5d54de5f9738b8d27f27a9f0ab11799d7b7ffefb2704c95c6ad12c39f1e867a4b7b1d7818a4b753dfd2a89ccb45e001a03a867b187f225dd"},
	{"vector 10", "2718281828459045235360287471352662497757247093699959574966967627" + "3141592653589793238462643383279502884197169399375105820974944592", 0xff, seq(512),
		"1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed43851ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151"},
}

func TestXTSIEEE1619Vectors(t *testing.T) { forEachXTSImpl(t, testXTSIEEE1619Vectors) }

func testXTSIEEE1619Vectors(t *testing.T) {
	for _, v := range ieeeVectors {
		key, pt, ct := unhex(t, v.key), unhex(t, v.pt), unhex(t, v.ct)
		var c Cipher
		if len(pt) == 512 {
			var err error
			if c, err = New("aes-xts-plain64", key, 512); err != nil {
				t.Fatalf("%s: %v", v.name, err)
			}
		} else {
			// Vectors 1-3 have 32-byte data units, smaller than any dm-crypt
			// sector: drive the sector loop directly.
			x, _ := newXTS(key, 512, ivPlain64)
			x.sectorSize = len(pt)
			c = x
		}
		got := make([]byte, len(pt))
		c.Encrypt(got, pt, v.sector)
		if !bytes.Equal(got, ct) {
			t.Errorf("%s: Encrypt = %x, want %x", v.name, got, ct)
		}
		c.Decrypt(got, ct, v.sector)
		if !bytes.Equal(got, pt) {
			t.Errorf("%s: Decrypt = %x, want %x", v.name, got, pt)
		}
		// In place.
		copy(got, ct)
		c.Decrypt(got, got, v.sector)
		if !bytes.Equal(got, pt) {
			t.Errorf("%s: in-place Decrypt = %x, want %x", v.name, got, pt)
		}
	}
}

var sectorSizes = []int{512, 1024, 2048, 4096}

// interestingIVs returns IV values around the 32- and 64-bit boundaries plus
// random ones; maxSectors sectors of size ss are processed from each.
func interestingIVs(r *rand.Rand, n int) []uint64 {
	ivs := []uint64{0, 1, 1<<32 - 1, 1<<32 - 8, 1<<32 - 3, 1 << 32, 1<<64 - 1, 1<<64 - 8, 1<<64 - 17}
	for i := 0; i < n; i++ {
		ivs = append(ivs, r.Uint64(), uint64(r.Uint32()))
	}
	return ivs
}

// refCrypt applies a per-sector reference function to buf, sector by sector.
func refCrypt(ss int, dst, src []byte, iv uint64, f func(d, s []byte, iv uint64)) {
	for off := 0; off < len(src); off += ss {
		f(dst[off:off+ss], src[off:off+ss], iv)
		iv += uint64(ss / 512)
	}
}

// checkAgainst compares c with a reference on random data, for Encrypt and
// Decrypt, with dst == src and dst != src, over several sectors.
func checkAgainst(t *testing.T, r *rand.Rand, name string, c Cipher, ivs []uint64, refEnc, refDec func(d, s []byte, iv uint64)) {
	t.Helper()
	ss := c.SectorSize()
	for _, iv := range ivs {
		n := ss * (1 + r.IntN(4))
		pt := make([]byte, n)
		for i := range pt {
			pt[i] = byte(r.Uint32())
		}
		want := make([]byte, n)
		refCrypt(ss, want, pt, iv, refEnc)

		got := make([]byte, n)
		c.Encrypt(got, pt, iv)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s ss=%d iv=%#x: Encrypt differs from reference", name, ss, iv)
		}
		inplace := bytes.Clone(pt)
		c.Encrypt(inplace, inplace, iv)
		if !bytes.Equal(inplace, want) {
			t.Fatalf("%s ss=%d iv=%#x: in-place Encrypt differs from reference", name, ss, iv)
		}

		ref := make([]byte, n)
		refCrypt(ss, ref, want, iv, refDec)
		if !bytes.Equal(ref, pt) {
			t.Fatalf("%s: reference does not round-trip", name)
		}
		c.Decrypt(got, want, iv)
		if !bytes.Equal(got, pt) {
			t.Fatalf("%s ss=%d iv=%#x: Decrypt differs from reference", name, ss, iv)
		}
		c.Decrypt(inplace, inplace, iv)
		if !bytes.Equal(inplace, pt) {
			t.Fatalf("%s ss=%d iv=%#x: in-place Decrypt differs from reference", name, ss, iv)
		}
		// A longer dst is allowed; bytes beyond len(src) are untouched.
		long := bytes.Repeat([]byte{0xa5}, n+16)
		c.Decrypt(long, want, iv)
		if !bytes.Equal(long[:n], pt) || !bytes.Equal(long[n:], bytes.Repeat([]byte{0xa5}, 16)) {
			t.Fatalf("%s ss=%d iv=%#x: Decrypt into longer dst wrong", name, ss, iv)
		}
	}
}

func TestXTSMatchesXCrypto(t *testing.T) { forEachXTSImpl(t, testXTSMatchesXCrypto) }

func testXTSMatchesXCrypto(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, ss := range sectorSizes {
		for _, kl := range []int{32, 48, 64} {
			for trial := 0; trial < 3; trial++ {
				key := testenv.RandBytes(r, kl)
				ref, err := xts.NewCipher(aes.NewCipher, key)
				if err != nil {
					t.Fatal(err)
				}
				for _, spec := range []string{"aes-xts-plain64", "aes-xts-plain"} {
					c, err := New(spec, key, ss)
					if err != nil {
						t.Fatal(err)
					}
					trunc := spec == "aes-xts-plain" // plain: IV is the low 32 bits
					sn := func(iv uint64) uint64 {
						if trunc {
							return uint64(uint32(iv))
						}
						return iv
					}
					checkAgainst(t, r, spec, c, interestingIVs(r, 4),
						func(d, s []byte, iv uint64) { ref.Encrypt(d, s, sn(iv)) },
						func(d, s []byte, iv uint64) { ref.Decrypt(d, s, sn(iv)) })
				}
			}
		}
	}
}

// slowXTS is a byte-wise IEEE 1619 XTS written from the standard, taking the
// raw 16-byte tweak input, for IV generators x/crypto/xts cannot express.
func slowXTS(k1, k2 cipher.Block, dst, src []byte, ivb [16]byte, decrypt bool) {
	var t [16]byte
	k2.Encrypt(t[:], ivb[:])
	var x [16]byte
	for i := 0; i < len(src); i += 16 {
		for j := range x {
			x[j] = src[i+j] ^ t[j]
		}
		if decrypt {
			k1.Decrypt(x[:], x[:])
		} else {
			k1.Encrypt(x[:], x[:])
		}
		for j := range x {
			dst[i+j] = x[j] ^ t[j]
		}
		// t *= alpha: shift the 128-bit little-endian value left by one.
		var carry byte
		for j := range t {
			c := t[j] >> 7
			t[j] = t[j]<<1 | carry
			carry = c
		}
		if carry != 0 {
			t[0] ^= 0x87
		}
	}
}

func TestXTSPlain64BE(t *testing.T) { forEachXTSImpl(t, testXTSPlain64BE) }

func testXTSPlain64BE(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, ss := range sectorSizes {
		for _, kl := range []int{32, 64} {
			key := testenv.RandBytes(r, kl)
			k1, _ := aes.NewCipher(key[:kl/2])
			k2, _ := aes.NewCipher(key[kl/2:])
			c, err := New("aes-xts-plain64be", key, ss)
			if err != nil {
				t.Fatal(err)
			}
			ivb := func(iv uint64) (b [16]byte) {
				binary.BigEndian.PutUint64(b[8:], iv)
				return b
			}
			checkAgainst(t, r, "aes-xts-plain64be", c, interestingIVs(r, 2),
				func(d, s []byte, iv uint64) { slowXTS(k1, k2, d, s, ivb(iv), false) },
				func(d, s []byte, iv uint64) { slowXTS(k1, k2, d, s, ivb(iv), true) })
		}
	}
}

// cbcIV computes the dm-crypt IV for the CBC reference, independently of the
// package's ivBlock.
func cbcIV(key []byte, mode string, sector uint64) []byte {
	iv := make([]byte, 16)
	switch mode {
	case "plain":
		binary.LittleEndian.PutUint32(iv, uint32(sector))
	case "plain64":
		binary.LittleEndian.PutUint64(iv, sector)
	case "plain64be":
		binary.BigEndian.PutUint64(iv[8:], sector)
	case "essiv:sha256":
		salt := sha256.Sum256(key)
		e, _ := aes.NewCipher(salt[:])
		binary.LittleEndian.PutUint64(iv, sector)
		e.Encrypt(iv, iv)
	default:
		panic(mode)
	}
	return iv
}

func TestCBCMatchesStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, ss := range sectorSizes {
		for _, kl := range []int{16, 24, 32} {
			key := testenv.RandBytes(r, kl)
			b, _ := aes.NewCipher(key)
			for _, mode := range []string{"plain", "plain64", "plain64be", "essiv:sha256"} {
				spec := "aes-cbc-" + mode
				c, err := New(spec, key, ss)
				if err != nil {
					t.Fatal(err)
				}
				checkAgainst(t, r, spec, c, interestingIVs(r, 2),
					func(d, s []byte, iv uint64) {
						cipher.NewCBCEncrypter(b, cbcIV(key, mode, iv)).CryptBlocks(d, s)
					},
					func(d, s []byte, iv uint64) {
						cipher.NewCBCDecrypter(b, cbcIV(key, mode, iv)).CryptBlocks(d, s)
					})
			}
			c, err := New("aes-ecb", key, ss)
			if err != nil {
				t.Fatal(err)
			}
			ecb := func(f func(d, s []byte)) func(d, s []byte, iv uint64) {
				return func(d, s []byte, _ uint64) {
					for i := 0; i < len(s); i += 16 {
						f(d[i:i+16], s[i:i+16])
					}
				}
			}
			checkAgainst(t, r, "aes-ecb", c, interestingIVs(r, 1), ecb(b.Encrypt), ecb(b.Decrypt))
		}
	}
}

// TestCBCOpenSSL checks one aes-cbc-essiv:sha256 sector against openssl,
// which also computes the ESSIV salt and IV.
func TestCBCOpenSSL(t *testing.T) {
	testenv.Need(t, "openssl")
	run := func(stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl %v: %v: %s", args, err, stderr.String())
		}
		return out
	}
	r := rand.New(rand.NewPCG(7, 8))
	key := testenv.RandBytes(r, 16)
	pt := testenv.RandBytes(r, 512)
	const sector = 0x0102030405060708

	salt := run(key, "dgst", "-sha256", "-binary")
	sn := make([]byte, 16)
	binary.LittleEndian.PutUint64(sn, sector)
	iv := run(sn, "enc", "-aes-256-ecb", "-nopad", "-K", hex.EncodeToString(salt))
	want := run(pt, "enc", "-aes-128-cbc", "-nopad", "-K", hex.EncodeToString(key), "-iv", hex.EncodeToString(iv))
	if len(want) != 512 {
		t.Fatalf("openssl output %d bytes", len(want))
	}

	c, err := New("aes-cbc-essiv:sha256", key, 512)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 512)
	c.Encrypt(got, pt, sector)
	if !bytes.Equal(got, want) {
		t.Fatalf("Encrypt differs from openssl")
	}
	c.Decrypt(got, want, sector)
	if !bytes.Equal(got, pt) {
		t.Fatalf("Decrypt of openssl ciphertext wrong")
	}
}

// TestCryptsetup encrypts a plaintext file in place with the real
// cryptsetup (offline LUKS2 reencryption with a detached header, so the data
// segment starts at byte 0 with iv_tweak 0) and decrypts it with New.
func TestCryptsetup(t *testing.T) {
	testenv.Need(t, "cryptsetup")
	cases := []struct {
		spec   string
		keyLen int
		ss     int
	}{
		{"aes-xts-plain64", 64, 512},
		{"aes-xts-plain64", 32, 4096},
		{"aes-xts-plain64", 64, 2048},
		{"aes-xts-plain", 32, 1024},
		{"aes-xts-plain64be", 64, 512},
		{"aes-cbc-essiv:sha256", 32, 512},
		{"aes-cbc-essiv:sha256", 16, 4096},
		{"aes-cbc-plain64", 24, 512},
		{"aes-cbc-plain", 16, 512},
		{"aes-ecb", 32, 512},
	}
	r := rand.New(rand.NewPCG(9, 10))
	for _, tc := range cases {
		name := fmt.Sprintf("%s/%d/%d", tc.spec, tc.keyLen*8, tc.ss)
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			key := testenv.RandBytes(r, tc.keyLen)
			pt := testenv.RandBytes(r, 64<<10)
			data := testenv.WriteFile(t, dir, "data.img", pt)
			vk := testenv.WriteFile(t, dir, "vk", key)
			pass := testenv.WriteFile(t, dir, "pass", []byte("passphrase"))
			testenv.Run(t, "cryptsetup", "reencrypt", "--encrypt", "--type", "luks2", "--batch-mode",
				"--header", filepath.Join(dir, "hdr.img"), "--volume-key-file", vk,
				"--key-file", pass, "--key-size", fmt.Sprint(tc.keyLen*8),
				"--cipher", tc.spec, "--sector-size", fmt.Sprint(tc.ss),
				"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", data)
			ct, err := os.ReadFile(data)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(ct, pt) {
				t.Fatal("cryptsetup left the data unencrypted")
			}
			c, err := New(tc.spec, key, tc.ss)
			if err != nil {
				t.Fatal(err)
			}
			impls := []xtsImpl{xtsUse} // CBC and ECB have one implementation
			if strings.Contains(tc.spec, "-xts-") {
				impls = xtsSupported()
			}
			defer setXTSImpl(xtsUse)()
			for _, impl := range impls {
				setXTSImpl(impl)
				got := make([]byte, len(ct))
				c.Decrypt(got, ct, 0)
				if !bytes.Equal(got, pt) {
					t.Fatalf("%v: Decrypt of cryptsetup-encrypted data differs from the plaintext", impl)
				}
				// A range starting mid-volume uses IV = byte offset / 512.
				off := 3 * tc.ss
				c.Decrypt(got[:tc.ss], ct[off:off+tc.ss], uint64(off/512))
				if !bytes.Equal(got[:tc.ss], pt[off:off+tc.ss]) {
					t.Fatalf("%v: Decrypt of a mid-volume sector wrong", impl)
				}
				c.Encrypt(got, pt, 0)
				if !bytes.Equal(got, ct) {
					t.Fatalf("%v: Encrypt differs from cryptsetup's ciphertext", impl)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	unsupported := []string{
		"twofish-xts-plain64", "serpent-cbc-essiv:sha256", "aes-lrw-benbi", "capi:xts(aes)-plain64",
		"aes-xts-essiv:sha256", "aegis128-random", "aes-gcm-random", "cipher_null-ecb", "cipher_null",
		"aes-cbc-essiv:md5", "aes-cbc-essiv:sha1", "aes-cbc-essiv:sha512", "aes-cbc-null", "aes-xts-benbi",
		"aes-ctr-plain64", "aes-cbc-lmk", "aes-cbc-tcw", "aes-ecb-plain64", "", "-",
	}
	for _, spec := range unsupported {
		_, err := New(spec, make([]byte, 32), 512)
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("New(%q) error = %v, want ErrUnsupported", spec, err)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", spec)) {
			t.Errorf("New(%q) error %q does not name the spec", spec, err)
		}
	}
	badKeys := []struct {
		spec string
		n    int
	}{
		{"aes-xts-plain64", 16}, {"aes-xts-plain64", 0}, {"aes-xts-plain64", 31}, {"aes-xts-plain64", 128},
		{"aes-cbc-essiv:sha256", 64}, {"aes-cbc-plain", 20}, {"aes-ecb", 0},
	}
	for _, bk := range badKeys {
		_, err := New(bk.spec, make([]byte, bk.n), 512)
		if err == nil || errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), fmt.Sprintf("key is %d bytes", bk.n)) {
			t.Errorf("New(%q, %d-byte key) error = %v, want key length error", bk.spec, bk.n, err)
		}
	}
	for _, ss := range []int{0, 256, 513, 8192, -512} {
		if _, err := New("aes-xts-plain64", make([]byte, 64), ss); err == nil {
			t.Errorf("New with sector size %d succeeded", ss)
		}
	}
}

func TestSpecAliases(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	key := testenv.RandBytes(r, 32)
	pt := testenv.RandBytes(r, 1024)
	enc := func(spec string) []byte {
		t.Helper()
		c, err := New(spec, key, 512)
		if err != nil {
			t.Fatalf("New(%q): %v", spec, err)
		}
		out := make([]byte, len(pt))
		c.Encrypt(out, pt, 77)
		return out
	}
	if !bytes.Equal(enc("AES-XTS-PLAIN64"), enc("aes-xts-plain64")) {
		t.Error("spec matching is case-sensitive")
	}
	// cryptsetup treats "aes" and "aes-plain" as "aes-cbc-plain".
	if !bytes.Equal(enc("aes"), enc("aes-cbc-plain")) || !bytes.Equal(enc("aes-plain"), enc("aes-cbc-plain")) {
		t.Error("aes / aes-plain are not aes-cbc-plain")
	}
	if bytes.Equal(enc("aes-cbc-plain"), enc("aes-cbc-plain64be")) {
		t.Error("IV modes give identical output")
	}
}

func TestSplitJoin(t *testing.T) {
	for _, tc := range []struct{ spec, name, mode string }{
		{"aes-xts-plain64", "aes", "xts-plain64"},
		{"aes-cbc-essiv:sha256", "aes", "cbc-essiv:sha256"},
		{"aes", "aes", ""},
	} {
		name, mode := Split(tc.spec)
		if name != tc.name || mode != tc.mode {
			t.Errorf("Split(%q) = %q, %q; want %q, %q", tc.spec, name, mode, tc.name, tc.mode)
		}
		if got := Join(name, mode); got != tc.spec {
			t.Errorf("Join(%q, %q) = %q, want %q", name, mode, got, tc.spec)
		}
	}
}

// TestKeyNotRetained zeroes the caller's key after New.
func TestKeyNotRetained(t *testing.T) {
	for _, spec := range []string{"aes-xts-plain64", "aes-cbc-essiv:sha256"} {
		key := bytes.Repeat([]byte{0x5c}, 32)
		c1, _ := New(spec, key, 512)
		c2, _ := New(spec, bytes.Clone(key), 512)
		clear(key)
		pt := make([]byte, 512)
		a, b := make([]byte, 512), make([]byte, 512)
		c1.Encrypt(a, pt, 9)
		c2.Encrypt(b, pt, 9)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: zeroing the key after New changed the cipher", spec)
		}
	}
}

func TestNoAllocs(t *testing.T) { forEachXTSImpl(t, testNoAllocs) }

func testNoAllocs(t *testing.T) {
	buf := make([]byte, 4*4096)
	out := make([]byte, len(buf))
	for _, spec := range []string{"aes-xts-plain64", "aes-xts-plain64be", "aes-cbc-essiv:sha256", "aes-cbc-plain64", "aes-ecb"} {
		keyLen := 32
		c, err := New(spec, make([]byte, keyLen), 4096)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			name string
			fn   func()
		}{
			{"Decrypt", func() { c.Decrypt(out, buf, 12345) }},
			{"Decrypt in place", func() { c.Decrypt(buf, buf, 12345) }},
			{"Encrypt", func() { c.Encrypt(out, buf, 12345) }},
		} {
			if n := testing.AllocsPerRun(50, f.fn); n != 0 {
				t.Errorf("%s %s: %v allocations per call, want 0", spec, f.name, n)
			}
		}
	}
}

func TestPanics(t *testing.T) {
	c, _ := New("aes-xts-plain64", make([]byte, 32), 1024)
	buf := make([]byte, 4096)
	for name, fn := range map[string]func(){
		"length not a multiple": func() { c.Decrypt(buf, buf[:512], 0) },
		"short dst":             func() { c.Encrypt(buf[:1024], buf[1024:3072], 0) },
		"partial overlap":       func() { c.Decrypt(buf[16:2064], buf[:2048], 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
	// Zero-length input is a no-op.
	c.Decrypt(nil, nil, 0)
}

func FuzzXTSRoundTrip(f *testing.F) {
	f.Add(make([]byte, 32), make([]byte, 512), uint64(0), uint8(0))
	f.Add(bytes.Repeat([]byte{1}, 64), bytes.Repeat([]byte{2}, 4096), uint64(1<<64-1), uint8(3))
	f.Fuzz(func(t *testing.T, key, data []byte, iv uint64, ssSel uint8) {
		if len(key) != 32 && len(key) != 64 {
			return
		}
		ss := 512 << (ssSel % 4)
		data = data[:len(data)/ss*ss]
		c, err := New("aes-xts-plain64", key, ss)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := xts.NewCipher(aes.NewCipher, key)
		if err != nil {
			t.Fatal(err)
		}
		ct := make([]byte, len(data))
		c.Encrypt(ct, data, iv)
		want := make([]byte, len(data))
		refCrypt(ss, want, data, iv, ref.Encrypt)
		if !bytes.Equal(ct, want) {
			t.Fatal("Encrypt differs from x/crypto/xts")
		}
		c.Decrypt(ct, ct, iv)
		if !bytes.Equal(ct, data) {
			t.Fatal("Decrypt(Encrypt(x)) != x")
		}
	})
}

func benchCipher(b *testing.B, spec string, keyLen, size int, decrypt bool) {
	c, err := New(spec, make([]byte, keyLen), size)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	iv := uint64(0)
	for b.Loop() {
		if decrypt {
			c.Decrypt(buf, buf, iv)
		} else {
			c.Encrypt(buf, buf, iv)
		}
		iv++
	}
}

// BenchmarkXTSDecrypt/<impl>/<sector size>x<XTS key bytes>: 64-byte keys are
// aes-256-xts, 32-byte keys aes-128-xts as named by openssl speed.
func BenchmarkXTSDecrypt(b *testing.B) {
	for _, impl := range xtsSupported() {
		b.Run(impl.String(), func(b *testing.B) {
			defer setXTSImpl(impl)()
			for _, size := range []int{4096, 512} {
				for _, kl := range []int{32, 64} {
					b.Run(fmt.Sprintf("%dx%d", size, kl), func(b *testing.B) { benchCipher(b, "aes-xts-plain64", kl, size, true) })
				}
			}
		})
	}
}

func BenchmarkXTSEncrypt(b *testing.B) {
	for _, impl := range xtsSupported() {
		b.Run(impl.String(), func(b *testing.B) {
			defer setXTSImpl(impl)()
			b.Run("4096x64", func(b *testing.B) { benchCipher(b, "aes-xts-plain64", 64, 4096, false) })
		})
	}
}

func BenchmarkXTSReference(b *testing.B) {
	for _, size := range []int{512, 4096} {
		for _, kl := range []int{32, 64} {
			b.Run(fmt.Sprintf("%dx%d", size, kl), func(b *testing.B) {
				c, err := xts.NewCipher(aes.NewCipher, make([]byte, kl))
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				iv := uint64(0)
				for b.Loop() {
					c.Decrypt(buf, buf, iv)
					iv++
				}
			})
		}
	}
}

func BenchmarkCBCESSIVDecrypt(b *testing.B) {
	b.Run("512x32", func(b *testing.B) { benchCipher(b, "aes-cbc-essiv:sha256", 32, 512, true) })
	b.Run("4096x32", func(b *testing.B) { benchCipher(b, "aes-cbc-essiv:sha256", 32, 4096, true) })
}
