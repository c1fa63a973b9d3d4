//go:build !purego

package diskcipher

import "golang.org/x/sys/cpu"

// The VAES kernel keeps all fifteen round keys, four data and four tweak
// registers in ZMM registers and advances tweaks with VPCLMULQDQ; the byte
// shifts need AVX512BW.
var (
	hasAESNI = cpu.X86.HasAES
	hasVAES  = hasAESNI && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW &&
		cpu.X86.HasAVX512VAES && cpu.X86.HasAVX512VPCLMULQDQ
)

// xtsUse is the implementation Encrypt and Decrypt run. Tests may change it
// to any member of xtsSupported().
var xtsUse = bestXTSImpl()

func bestXTSImpl() xtsImpl {
	switch {
	case hasVAES:
		return implVAES
	case hasAESNI:
		return implAESNI
	}
	return implGeneric
}

func xtsSupported() []xtsImpl {
	s := []xtsImpl{implGeneric}
	if hasAESNI {
		s = append(s, implAESNI)
	}
	if hasVAES {
		s = append(s, implVAES)
	}
	return s
}

func init() {
	xtsDecryptSectors = xtsDecryptAsm
	xtsEncryptSectors = xtsEncryptAsm
}

// xtsKeysFor expands key for the assembly kernels, or returns nil when the
// CPU has no AES instructions.
func xtsKeysFor(key []byte) *xtsKeys {
	if !hasAESNI {
		return nil
	}
	return newXTSKeysGo(key)
}

// xtsKernel encrypts the n tweaks in tw, then runs the XTS kernel of impl
// over n sectors. The AES-NI kernel takes any multiple of 16 bytes (it
// finishes with single blocks); the VAES kernel works in 256-byte steps, which
// every dm-crypt sector size is a multiple of, so other sizes (the 32-byte
// IEEE 1619 data units in tests) go to AES-NI.
func xtsKernel(impl xtsImpl, decrypt bool, k *xtsKeys, dst, src []byte, tw *[tweakBatch * 16]byte, n int) {
	ss := len(src) / n
	encryptBlocksAESNI(k.nr, &k.enc2[0], &tw[0], &tw[0], n)
	if impl == implVAES && ss%256 == 0 {
		if decrypt {
			xtsDecryptVAES(k.nr, &k.dec1[0], &dst[0], &src[0], &tw[0], n, ss)
		} else {
			xtsEncryptVAES(k.nr, &k.enc1[0], &dst[0], &src[0], &tw[0], n, ss)
		}
		return
	}
	if decrypt {
		xtsDecryptAESNI(k.nr, &k.dec1[0], &dst[0], &src[0], &tw[0], n, ss)
	} else {
		xtsEncryptAESNI(k.nr, &k.enc1[0], &dst[0], &src[0], &tw[0], n, ss)
	}
}

// encryptBlocksAESNI encrypts n 16-byte blocks from src to dst (ECB) with
// the round keys at rk (slot layout, nr rounds).
//
//go:noescape
func encryptBlocksAESNI(nr int, rk, dst, src *byte, n int)

// The XTS kernels process n sectors of sectorSize bytes (a multiple of 16
// for AES-NI, of 256 for VAES) from src to dst, which are equal or disjoint.
// tweaks holds n encrypted tweaks, one per sector; rk is the data key's
// decryption or encryption schedule.

//go:noescape
func xtsDecryptAESNI(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)

//go:noescape
func xtsEncryptAESNI(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)

//go:noescape
func xtsDecryptVAES(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)

//go:noescape
func xtsEncryptVAES(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)
