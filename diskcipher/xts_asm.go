//go:build (amd64 || arm64) && !purego

package diskcipher

import "encoding/binary"

// tweakBatch is how many sectors' tweaks the assembly paths compute (with one
// multi-block AES call, so the blocks are in flight together) before running
// the XTS kernel over those sectors.
const tweakBatch = 16

func xtsDecryptAsm(c *xtsCipher, dst, src []byte, iv uint64) {
	impl := xtsUse
	if impl == implGeneric || c.hw == nil {
		xtsDecryptGeneric(c, dst, src, iv)
		return
	}
	xtsCryptBatched(impl, true, c, dst, src, iv)
}

func xtsEncryptAsm(c *xtsCipher, dst, src []byte, iv uint64) {
	impl := xtsUse
	if impl == implGeneric || c.hw == nil {
		xtsEncryptGeneric(c, dst, src, iv)
		return
	}
	xtsCryptBatched(impl, false, c, dst, src, iv)
}

// xtsCryptBatched runs an assembly XTS kernel over whole sectors. For each
// batch of up to tweakBatch sectors it builds the IV blocks, encrypts them
// with the tweak key, then runs the kernel over those sectors.
func xtsCryptBatched(impl xtsImpl, decrypt bool, c *xtsCipher, dst, src []byte, iv uint64) {
	ss := c.sectorSize
	step := uint64(ss / 512)
	var tw [tweakBatch * 16]byte
	used := 0
	for len(src) > 0 {
		n := min(len(src)/ss, tweakBatch)
		used = max(used, n)
		for i := 0; i < n; i++ {
			lo, hi := ivBlock(c.iv, iv)
			binary.LittleEndian.PutUint64(tw[16*i:], lo)
			binary.LittleEndian.PutUint64(tw[16*i+8:], hi)
			iv += step
		}
		xtsKernel(impl, decrypt, c.hw, dst[:n*ss], src[:n*ss], &tw, n)
		src, dst = src[n*ss:], dst[n*ss:]
	}
	clear(tw[:16*used])
}
