// Package diskcipher implements the sector ciphers that dm-crypt and cryptsetup
// apply to LUKS volumes and keyslot areas.
//
// A cipher is named by a dm-crypt spec such as "aes-xts-plain64" or
// "aes-cbc-essiv:sha256": the block cipher, the chaining mode and the IV
// generator. Every sector is encrypted on its own; its IV is derived from the
// sector number in 512-byte units, as in cryptsetup's crypt_storage_decrypt
// (lib/crypto_backend/crypto_storage.c) and the kernel's dm-crypt without the
// iv_large_sectors flag.
//
// Only AES is implemented, in the modes XTS (plain, plain64, plain64be IVs),
// CBC (plain, plain64, plain64be, essiv:sha256 IVs) and ECB (no IV).
//
// XTS, the mode of every ADE and default LUKS2 volume, runs in assembly on
// amd64 (AES-NI, or VAES on AVX-512 registers where the CPU has it) and on
// arm64 (ARMv8 Cryptography Extensions), chosen at run time; elsewhere, on
// CPUs without AES instructions, or with the purego build tag, it uses
// crypto/aes one block at a time. The assembly paths use round keys expanded
// by this package, which the Cipher holds for its lifetime.
package diskcipher

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"strings"
	"unsafe"
)

// Cipher encrypts and decrypts whole sectors the way dm-crypt does.
//
// A Cipher holds no mutable state: it is safe for concurrent use by multiple
// goroutines.
type Cipher interface {
	// SectorSize is the encryption unit in bytes (512, 1024, 2048 or 4096).
	SectorSize() int
	// Decrypt decrypts len(src) bytes (a multiple of SectorSize) into dst; dst and src may be the same slice
	// (exact overlap) but must not otherwise overlap. iv is the IV sector number of the first sector, in
	// 512-byte units; each following sector's IV advances by SectorSize()/512 (LUKS2 never sets
	// iv_large_sectors). Panics only on programmer error (length not a multiple, short dst).
	Decrypt(dst, src []byte, iv uint64)
	// Encrypt is the inverse of Decrypt, with the same rules for dst, src and iv.
	Encrypt(dst, src []byte, iv uint64)
}

// ErrUnsupported is wrapped by the error New returns for a valid-looking spec
// that this package does not implement (other block ciphers, other IV
// generators, kernel crypto API "capi:" specs, AEAD/integrity modes).
var ErrUnsupported = errors.New("diskcipher: unsupported cipher")

// ivMode is a dm-crypt IV generator.
type ivMode int

const (
	ivNone      ivMode = iota // ECB: no IV
	ivPlain                   // le32(sector), zero padded
	ivPlain64                 // le64(sector), zero padded
	ivPlain64BE               // be64(sector) in the last 8 bytes
	ivESSIV                   // AES-ECB_{H(key)}(le64(sector))
)

// ivBlock returns the 16-byte IV for sector as two little-endian words
// (bytes 0-7, bytes 8-15), for every generator except ESSIV, whose result is
// then encrypted by the caller.
func ivBlock(m ivMode, sector uint64) (lo, hi uint64) {
	switch m {
	case ivPlain:
		return uint64(uint32(sector)), 0
	case ivPlain64BE:
		// be64 in bytes 8-15 is, read back little-endian, the byte-swapped value.
		return 0, bswap64(sector)
	default: // ivPlain64, ivESSIV
		return sector, 0
	}
}

func bswap64(x uint64) uint64 {
	x = (x&0x00ff00ff00ff00ff)<<8 | (x>>8)&0x00ff00ff00ff00ff
	x = (x&0x0000ffff0000ffff)<<16 | (x>>16)&0x0000ffff0000ffff
	return x<<32 | x>>32
}

// Split splits a dm-crypt cipher spec into the LUKS1 cipher-name and
// cipher-mode fields at the first '-': "aes-xts-plain64" gives "aes" and
// "xts-plain64". A spec without '-' gives an empty mode.
func Split(spec string) (name, mode string) {
	name, mode, _ = strings.Cut(spec, "-")
	return name, mode
}

// Join is the inverse of Split: it joins a LUKS1 cipher-name and cipher-mode
// into a dm-crypt spec ("aes" + "xts-plain64" is "aes-xts-plain64"). An empty
// mode gives name alone.
func Join(name, mode string) string {
	if mode == "" {
		return name
	}
	return name + "-" + mode
}

// New returns the cipher for a dm-crypt spec: "aes-xts-plain64", "aes-xts-plain", "aes-xts-plain64be",
// "aes-cbc-essiv:sha256", "aes-cbc-plain", "aes-cbc-plain64", "aes-cbc-plain64be", "aes-ecb".
// Matching is case-insensitive. As in cryptsetup, "aes" alone and "aes-plain" mean "aes-cbc-plain".
//
// Key length: XTS takes two concatenated AES keys (32, 48 or 64 bytes); CBC and ECB take one AES key
// (16, 24 or 32 bytes). ESSIV with sha1 or sha512 is rejected, as by dm-crypt, because the digest is not
// a valid AES key length. Other specs (twofish, serpent, lrw, capi:..., xts-essiv, AEAD/integrity specs,
// "cipher_null") return an error wrapping ErrUnsupported. sectorSize must be 512, 1024, 2048 or 4096.
//
// The returned Cipher keeps its own key schedule; New does not retain key, so the caller may zero it.
func New(spec string, key []byte, sectorSize int) (Cipher, error) {
	switch sectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("diskcipher: %s: sector size %d is not 512, 1024, 2048 or 4096", spec, sectorSize)
	}
	unsupported := func() (Cipher, error) {
		return nil, fmt.Errorf("%w %q", ErrUnsupported, spec)
	}
	name, mode := Split(strings.ToLower(spec))
	if name != "aes" {
		return unsupported()
	}
	if mode == "" || mode == "plain" {
		mode = "cbc-plain" // cryptsetup crypt_parse_name_and_mode compatibility
	}
	chain, ivspec, _ := strings.Cut(mode, "-")
	var iv ivMode
	var essivHash func() hash.Hash
	switch {
	case ivspec == "" && chain == "ecb":
		iv = ivNone
	case ivspec == "plain":
		iv = ivPlain
	case ivspec == "plain64":
		iv = ivPlain64
	case ivspec == "plain64be":
		iv = ivPlain64BE
	case strings.HasPrefix(ivspec, "essiv:") && chain == "cbc":
		iv = ivESSIV
		switch h := strings.TrimPrefix(ivspec, "essiv:"); h {
		case "sha256":
			essivHash = sha256.New
		case "sha1", "sha512":
			size := sha1.Size
			if h == "sha512" {
				size = sha512.Size
			}
			return nil, fmt.Errorf("%w %q: ESSIV %s digest is %d bytes, not an AES key length", ErrUnsupported, spec, h, size)
		default:
			return unsupported()
		}
	default:
		return unsupported()
	}
	if chain == "ecb" && iv != ivNone {
		return unsupported() // dm-crypt would ignore the IV generator; refuse the ambiguity
	}

	switch chain {
	case "xts":
		switch len(key) {
		case 32, 48, 64:
		default:
			return nil, fmt.Errorf("diskcipher: %s: key is %d bytes, want 32 or 64 (two AES keys)", spec, len(key))
		}
		return newXTS(key, sectorSize, iv)
	case "cbc", "ecb":
		switch len(key) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("diskcipher: %s: key is %d bytes, want 16, 24 or 32", spec, len(key))
		}
		return newCBC(key, sectorSize, iv, essivHash)
	}
	return unsupported()
}

// newAES wraps aes.NewCipher; the lengths are checked by New.
func newAES(key []byte) cipher.Block {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic("diskcipher: " + err.Error()) // unreachable: key length checked by New
	}
	return b
}

// checkArgs panics on the programmer errors Encrypt and Decrypt document.
func checkArgs(sectorSize int, dst, src []byte) {
	if len(src)%sectorSize != 0 {
		panic(fmt.Sprintf("diskcipher: input length %d is not a multiple of the sector size %d", len(src), sectorSize))
	}
	if len(dst) < len(src) {
		panic(fmt.Sprintf("diskcipher: output buffer of %d bytes is shorter than input of %d bytes", len(dst), len(src)))
	}
	if inexactOverlap(dst[:len(src)], src) {
		panic("diskcipher: invalid buffer overlap")
	}
}

// inexactOverlap reports whether x and y share memory at different offsets.
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	xs, ys := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&y[0]))
	return xs < ys+uintptr(len(y)) && ys < xs+uintptr(len(x))
}
