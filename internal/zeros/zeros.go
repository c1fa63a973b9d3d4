// Package zeros tells whether a buffer holds only zero bytes, fast: the engine asks it of every chunk
// it writes (all-zero chunks are skipped) and of every encryption sector it decrypts (all-zero
// ciphertext was never written through dm-crypt).
package zeros

import "encoding/binary"

// Only reports whether b holds only zero bytes. It compares 64 bytes per step.
func Only(b []byte) bool {
	for len(b) >= 64 {
		if binary.LittleEndian.Uint64(b)|binary.LittleEndian.Uint64(b[8:])|
			binary.LittleEndian.Uint64(b[16:])|binary.LittleEndian.Uint64(b[24:])|
			binary.LittleEndian.Uint64(b[32:])|binary.LittleEndian.Uint64(b[40:])|
			binary.LittleEndian.Uint64(b[48:])|binary.LittleEndian.Uint64(b[56:]) != 0 {
			return false
		}
		b = b[64:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
