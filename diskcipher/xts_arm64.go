//go:build !purego

package diskcipher

import "golang.org/x/sys/cpu"

var hasARMv8AES = cpu.ARM64.HasAES

// xtsUse is the implementation Encrypt and Decrypt run. Tests may change it
// to any member of xtsSupported().
var xtsUse = bestXTSImpl()

func bestXTSImpl() xtsImpl {
	if hasARMv8AES {
		return implARMv8
	}
	return implGeneric
}

func xtsSupported() []xtsImpl {
	if hasARMv8AES {
		return []xtsImpl{implGeneric, implARMv8}
	}
	return []xtsImpl{implGeneric}
}

func init() {
	xtsDecryptSectors = xtsDecryptAsm
	xtsEncryptSectors = xtsEncryptAsm
}

// xtsKeysFor expands key for the assembly kernels, or returns nil when the
// CPU has no AES instructions.
func xtsKeysFor(key []byte) *xtsKeys {
	if !hasARMv8AES {
		return nil
	}
	return newXTSKeysGo(key)
}

// xtsKernel encrypts the n tweaks in tw, then runs the XTS kernel over n
// sectors (any multiple of 16 bytes: 8 blocks at a time, then single blocks).
func xtsKernel(impl xtsImpl, decrypt bool, k *xtsKeys, dst, src []byte, tw *[tweakBatch * 16]byte, n int) {
	ss := len(src) / n
	encryptBlocksARMv8(k.nr, &k.enc2[0], &tw[0], &tw[0], n)
	if decrypt {
		xtsDecryptARMv8(k.nr, &k.dec1[0], &dst[0], &src[0], &tw[0], n, ss)
	} else {
		xtsEncryptARMv8(k.nr, &k.enc1[0], &dst[0], &src[0], &tw[0], n, ss)
	}
}

// encryptBlocksARMv8 encrypts n >= 1 16-byte blocks from src to dst (ECB)
// with the round keys at rk (slot layout, nr rounds).
//
//go:noescape
func encryptBlocksARMv8(nr int, rk, dst, src *byte, n int)

// The XTS kernels process n >= 1 sectors of sectorSize bytes (a multiple of
// 16) from src to dst, which are equal or disjoint. tweaks holds n encrypted
// tweaks, one per sector; rk is the data key's decryption or encryption
// schedule.

//go:noescape
func xtsDecryptARMv8(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)

//go:noescape
func xtsEncryptARMv8(nr int, rk, dst, src, tweaks *byte, n, sectorSize int)
