package diskcipher

// xtsImpl names an XTS implementation. Each architecture file sets
// xtsUse to the fastest one the CPU supports; tests switch it to cover every
// path the machine can run (xtsSupported).
type xtsImpl int

const (
	implGeneric xtsImpl = iota // crypto/aes block by block (xts_generic.go)
	implAESNI                  // amd64 AES-NI, 8 blocks in flight
	implVAES                   // amd64 VAES on AVX-512 registers, 16 blocks in flight
	implARMv8                  // arm64 Cryptography Extensions, 8 blocks in flight
)

func (i xtsImpl) String() string {
	switch i {
	case implGeneric:
		return "generic"
	case implAESNI:
		return "aesni"
	case implVAES:
		return "vaes"
	case implARMv8:
		return "armv8"
	}
	return "unknown"
}
