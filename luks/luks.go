// Package luks reads LUKS1 and LUKS2 headers, unlocks a keyslot with a
// passphrase and exposes the decrypted payload as an io.ReaderAt.
//
// It follows the on-disk formats of cryptsetup (docs/on-disk-format.pdf for
// LUKS1, docs/on-disk-format-luks2.pdf for LUKS2) and cryptsetup's own
// validation rules where they matter for safety: every size and offset read
// from a header is bounded before it is used, and a malformed header is
// reported as a *FormatError naming the structure and its byte offset.
//
// The package never writes: it cannot format, add keys or repair a header.
//
// Decisions where cryptsetup offers a choice:
//   - No LUKS magic at offset 0 means ErrNotLUKS, even if a valid LUKS2
//     secondary header exists further on. cryptsetup recovers such a header
//     only when blkid sees no other signature, which this package cannot
//     judge; RecoverHeader is the explicit opt-in.
//   - LUKS1 offline re-encryption (cryptsetup-reencrypt, or "cryptsetup
//     reencrypt" on LUKS1) marks the device by changing the magic to
//     LUKS\xde\xad, and its temporary headers carry the UUID
//     cafecafe-cafe-cafe-cafe-cafecafeeeee. Both parse and are reported by
//     Supported as ErrReencryptInProgress.
//   - LUKS2 JSON is checked more strictly than by cryptsetup in two places:
//     duplicate object members and af.stripes other than 4000 are errors.
//
// A header may live on the data device itself (attached header) or in a
// separate file (detached header, as Azure Disk Encryption does with
// /boot/luks/osluksheader). ReadHeader always reads the header device;
// DataOffset and Payload are relative to the data device.
package luks

import (
	"errors"
	"fmt"
	"io"
)

// Errors a caller must be able to tell apart. They are returned wrapped;
// test with errors.Is.
var (
	// ErrNotLUKS means there is no LUKS header magic at offset 0.
	ErrNotLUKS = errors.New("luks: no LUKS header")
	// ErrWrongPassphrase means no usable keyslot accepted the passphrase.
	ErrWrongPassphrase = errors.New("luks: no keyslot matches the passphrase")
	// ErrReencryptInProgress means the volume is in the middle of a
	// re-encryption (LUKS2 reencrypt keyslot, reencrypt requirement, several
	// or backup segments; LUKS1 offline re-encryption marker): part of the
	// data is under another key or not encrypted at all.
	ErrReencryptInProgress = errors.New("luks: re-encryption in progress")
	// ErrUnsupported means the header is valid but uses something this
	// package does not implement (cipher, hash, KDF, integrity, hardware
	// OPAL segment, unknown mandatory requirement).
	ErrUnsupported = errors.New("luks: unsupported")
	// ErrKeyslotUnusable means Unlock was asked for a specific keyslot that
	// does not exist, is disabled, or cannot unlock the data segment (an
	// unbound key or a re-encryption keyslot). Naming a keyslot whose
	// priority is "ignore" is allowed.
	ErrKeyslotUnusable = errors.New("luks: keyslot cannot unlock the data segment")
	// ErrCorrupt is matched by every *FormatError.
	ErrCorrupt = errors.New("luks: corrupt header")
)

// FormatError reports corrupt or invalid metadata. errors.Is(err, ErrCorrupt)
// is true for it.
type FormatError struct {
	Structure string // e.g. "LUKS1 header", "LUKS2 primary header", "LUKS2 keyslot 3"
	Offset    int64  // byte offset of the structure on the header device
	Reason    string // what is wrong with it
}

// Error names the damaged structure, its offset and why it is refused.
func (e *FormatError) Error() string {
	return fmt.Sprintf("luks: %s at offset %d: %s", e.Structure, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

func formatErr(structure string, off int64, format string, args ...any) *FormatError {
	return &FormatError{Structure: structure, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// Keyslot describes one keyslot. Salts and key material are not exported.
type Keyslot struct {
	ID     int    // slot number: 0-7 in LUKS1, the keyslots object's key in LUKS2
	Type   string // "luks1", "luks2", "reencrypt" (or another LUKS2 type, never usable)
	Active bool   // LUKS1: enabled; LUKS2: present

	KDF        string // "pbkdf2", "argon2i", "argon2id" (or what the header says)
	Hash       string // pbkdf2 hash
	Iterations int    // pbkdf2 iterations
	Time       int    // argon2 time cost
	MemoryKiB  int    // argon2 memory cost
	CPUs       int    // argon2 lanes/threads

	Priority          int    // 0 ignore (used only when named), 1 normal, 2 prefer
	KeySize           int    // volume key bytes this slot stores
	Encryption        string // cipher spec of the keyslot area
	EncryptionKeySize int    // key bytes of the keyslot area cipher (the KDF output length)
	Stripes           int    // anti-forensic stripes (4000)
	AFHash            string // hash of the anti-forensic diffuser

	AreaOffset, AreaSize int64 // key material, bytes from the start of the header device
	Segments             []int // LUKS2: segments its digest is bound to (empty = unbound)

	salt   []byte
	digest *digest // LUKS2 digest this slot is bound to (nil = none)
}

// Header is a parsed and structurally validated LUKS1 or LUKS2 header.
type Header struct {
	Version        int       // 1 or 2
	UUID, Label    string    // Label: LUKS2 only
	Subsystem      string    // LUKS2 only
	Cipher         string    // data cipher as a dm-crypt spec, e.g. "aes-xts-plain64"
	KeySize        int       // volume key bytes (LUKS2: 0 if no keyslot is bound to the data segment)
	SectorSize     int       // encryption sector size (512 for LUKS1)
	DataOffset     int64     // byte offset of the payload on the data device
	DataSize       int64     // payload bytes, or -1: up to the end of the data device
	IVTweak        uint64    // IV sector number of the first payload sector
	HeaderSize     int64     // bytes of metadata and keyslot areas at the start of the header device
	SeqID          uint64    // LUKS2 sequence id of the copy in use
	UsedSecondary  bool      // LUKS2: the secondary copy was used
	Requirements   []string  // LUKS2 config.requirements.mandatory
	Flags          []string  // LUKS2 config.flags (e.g. "allow-discards")
	Keyslots       []Keyslot // by id; LUKS1 lists all 8, disabled ones with Active false
	Warnings       []string  // damaged or stale LUKS2 copy, re-encryption markers
	MetadataSize   int64     // LUKS2: size of one binary header + JSON area (hdr_size)
	DataSegment    int       // LUKS2: id of the segment the fields above describe
	SegmentCount   int       // LUKS2: number of segments
	JSON           []byte    // LUKS2: the JSON metadata in use (salts and digests, no key material)
	luks1Reencrypt string    // non-empty: why this LUKS1 header belongs to an interrupted re-encryption

	r    io.ReaderAt
	size int64
	v1   *luks1Phdr
	v2   *luks2Meta
}

// ReadHeader parses and validates a LUKS1 or LUKS2 header from r, the header
// device (the partition for an attached header, or a detached header file)
// of size bytes.
//
// It returns ErrNotLUKS, unwrapped, when offset 0 holds no LUKS magic. Like
// cryptsetup with a foreign signature present (blkid-luks2-pv.img in
// cryptsetup's tests), it does not then look for a stray LUKS2 secondary
// header: a device whose primary magic is gone is not treated as LUKS. Use
// RecoverHeader to accept a secondary-only LUKS2 header explicitly.
//
// For LUKS2 both copies are checked (magic, version, hdr_offset, checksum
// over the binary header and the JSON area, JSON validity); the valid copy
// with the higher seqid is used, and a damaged or stale copy is reported in
// Warnings. If the primary is damaged, the secondary is searched at the
// offsets the specification allows (16 KiB to 4 MiB).
//
// A header that describes an interrupted re-encryption or unsupported
// features still parses, so that it can be inspected; Supported reports it.
func ReadHeader(r io.ReaderAt, size int64) (*Header, error) {
	return readHeader(r, size, false)
}

// RecoverHeader is ReadHeader that also accepts a LUKS2 header whose primary
// copy has lost its magic, using the first valid secondary copy (what
// "cryptsetup repair" and cryptsetup's automatic recovery do when blkid finds
// no other signature). Only call it when the caller knows the device is LUKS:
// a stale secondary header can survive on a device that has since been
// reused (for example as an LVM physical volume).
func RecoverHeader(r io.ReaderAt, size int64) (*Header, error) {
	return readHeader(r, size, true)
}

const (
	luksMagicLen = 6
)

var (
	magicLUKS   = []byte{'L', 'U', 'K', 'S', 0xba, 0xbe}
	magicSKUL   = []byte{'S', 'K', 'U', 'L', 0xba, 0xbe}
	magicNoLUKS = []byte{'L', 'U', 'K', 'S', 0xde, 0xad} // LUKS1 offline re-encryption in progress
)

func readHeader(r io.ReaderAt, size int64, recover bool) (*Header, error) {
	if size < 0 {
		return nil, fmt.Errorf("luks: negative device size %d", size)
	}
	if size < 8 {
		return nil, ErrNotLUKS
	}
	var pre [8]byte
	if err := readFull(r, pre[:], 0); err != nil {
		return nil, err
	}
	version := int(pre[6])<<8 | int(pre[7])
	switch {
	case string(pre[:6]) == string(magicLUKS):
		switch version {
		case 1:
			return readLUKS1(r, size, false)
		case 2:
			return readLUKS2(r, size, true)
		default:
			return nil, formatErr("LUKS header", 0, "unknown version %d", version)
		}
	case string(pre[:6]) == string(magicNoLUKS) && version == 1:
		return readLUKS1(r, size, true)
	}
	if recover {
		return readLUKS2(r, size, false)
	}
	return nil, ErrNotLUKS
}

// readFull reads exactly len(p) bytes at off. A short device is reported as
// io.ErrUnexpectedEOF.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("luks: reading %d bytes at offset %d: %w", len(p), off, err)
}

// Supported reports why the volume cannot be converted: nil, or an error
// wrapping ErrReencryptInProgress or ErrUnsupported.
func (h *Header) Supported() error {
	if h.Version == 1 {
		return h.supported1()
	}
	return h.supported2()
}
