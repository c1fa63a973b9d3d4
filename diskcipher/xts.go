package diskcipher

import "crypto/cipher"

// xtsCipher is AES-XTS (IEEE 1619) with a dm-crypt IV generator producing
// the tweak input for each sector.
type xtsCipher struct {
	k1, k2     cipher.Block // data key, tweak key
	sectorSize int
	iv         ivMode
	// hw is the expanded key for the assembly implementation, or nil when
	// this build or CPU has none (see xtsKeysFor).
	hw *xtsKeys
}

func newXTS(key []byte, sectorSize int, iv ivMode) (*xtsCipher, error) {
	half := len(key) / 2
	// aes.NewCipher copies the key into its own schedule.
	return &xtsCipher{
		k1:         newAES(key[:half]),
		k2:         newAES(key[half:]),
		sectorSize: sectorSize,
		iv:         iv,
		hw:         xtsKeysFor(key),
	}, nil
}

func (c *xtsCipher) SectorSize() int { return c.sectorSize }

func (c *xtsCipher) Decrypt(dst, src []byte, iv uint64) {
	checkArgs(c.sectorSize, dst, src)
	xtsDecryptSectors(c, dst[:len(src)], src, iv)
}

func (c *xtsCipher) Encrypt(dst, src []byte, iv uint64) {
	checkArgs(c.sectorSize, dst, src)
	xtsEncryptSectors(c, dst[:len(src)], src, iv)
}
