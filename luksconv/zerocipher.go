package luksconv

import (
	"fmt"
	"io"

	"github.com/luksconv/luksconv/diskcipher"
)

// Zero ciphertext.
//
// An encryption sector whose ciphertext is all zero was never written through dm-crypt: real XTS or
// CBC ciphertext is all zero with probability 2^-4096 per 512-byte sector. ADE's RHEL 7 copy
// (`dd conv=sparse` onto the dm-crypt device) leaves such sectors wherever the plaintext block was zero,
// and discards (TRIM) leave them in space the filesystem freed. The running guest reads them as
// pseudo-random bytes. The policy:
//
//   - In free space (XFS free space, free LVM extents) they become zero plaintext. By default free space
//     is not read at all; with FullCopy it is read and decrypted, except for these sectors.
//   - In the internal log of an XFS filesystem whose log is clean, they become zero plaintext too. The
//     log is metadata that only log recovery reads: past the unmount record it must hold blocks whose
//     cycle numbers end the log (zeros, as mkfs writes them), and pseudo-random bytes there make the
//     kernel and xfs_repair fail to find the log head ("Log inconsistent"). The sparse copy skipped
//     those blocks because their plaintext was zero, so zero is what the filesystem wrote there.
//   - Everywhere else (file data and other metadata in use) they are decrypted like any other sector:
//     the output then holds what the running guest read, which is the faithful copy.
//
// The analysis that finds free space and checks the XFS log (and the guest edits) reads the volume
// through zeroCipherReader, which maps every all-zero ciphertext sector to zero plaintext: the
// filesystem is judged as it was before the sparse copy, which is also how the output's log and free
// space are written. Decrypting the log's zero sectors for the analysis would make every RHEL 7 sparse
// volume look like a dirty log and turn off used-block-aware copying for it.
//
// Execute counts the all-zero ciphertext it meets (Result.ZeroCiphertextZeroed and
// Result.ZeroCiphertextDecrypted); free space skipped without reading is not counted.

// decryptChunk decrypts b in place (a whole number of encryption sectors, the first at IV sector iv).
// With asZero, sectors whose ciphertext is all zero are left zero instead of decrypted. It returns the
// bytes of all-zero ciphertext it met.
func decryptChunk(c diskcipher.Cipher, b []byte, iv uint64, asZero bool) int64 {
	ss := c.SectorSize()
	var zero int64
	if !asZero {
		for s := 0; s+ss <= len(b); s += ss {
			if allZero(b[s : s+ss]) {
				zero += int64(ss)
			}
		}
		c.Decrypt(b, b, iv)
		return zero
	}
	run := -1 // start of the current run of sectors to decrypt
	flush := func(end int) {
		if run >= 0 {
			c.Decrypt(b[run:end], b[run:end], iv+uint64(run/512))
			run = -1
		}
	}
	for s := 0; s+ss <= len(b); s += ss {
		if allZero(b[s : s+ss]) {
			zero += int64(ss)
			flush(s)
			continue
		}
		if run < 0 {
			run = s
		}
	}
	flush(len(b) / ss * ss)
	return zero
}

// zeroCipherReader is the volume's plaintext as the analysis reads it: ciphertext sectors that are all
// zero read as zero plaintext, the rest is decrypted. It is safe for concurrent use.
type zeroCipherReader struct {
	data   io.ReaderAt // the device holding the payload
	off    int64       // payload offset on data
	size   int64       // payload length
	iv0    uint64      // IV sector of the payload's first byte
	cipher diskcipher.Cipher
}

// maxAnalysisRead bounds one read, so that a filesystem's claims cannot make it allocate without limit.
const maxAnalysisRead = 64 << 20

func (r *zeroCipherReader) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("luksconv: negative offset %d", off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	ss := int64(r.cipher.SectorSize())
	end := min(off+int64(len(b)), r.size)
	s, e := off/ss*ss, (end+ss-1)/ss*ss
	if e-s > maxAnalysisRead {
		return 0, fmt.Errorf("luksconv: read of %d bytes at %d is too large", e-s, off)
	}
	buf := make([]byte, e-s)
	defer clear(buf) // plaintext
	if _, err := r.data.ReadAt(buf, r.off+s); err != nil && err != io.EOF {
		return 0, err
	}
	decryptChunk(r.cipher, buf, r.iv0+uint64(s/512), true)
	n := copy(b, buf[off-s:end-s])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}
