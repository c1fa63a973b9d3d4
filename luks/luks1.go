package luks

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"github.com/luksconv/luksconv/diskcipher"
)

// LUKS1 on-disk layout (LUKS1 spec v1.2.3; cryptsetup lib/luks1/luks.h).
// All integers are big-endian.
const (
	luks1HeaderLen   = 592
	luks1NumKeys     = 8
	luks1Stripes     = 4000
	luks1DigestSize  = 20
	luks1SlotEnabled = 0x00AC71F3
	luks1SlotDisable = 0x0000DEAD
	sectorSize       = 512
	maxKeyBytes      = 512 // far above any real cipher (XTS-AES-256 uses 64); bounds the AF buffer

	// luks1NoUUID is the UUID of the temporary cipher_null header that
	// cryptsetup's LUKS1 offline re-encryption writes (src/utils_reencrypt_luks1.c).
	luks1NoUUID = "cafecafe-cafe-cafe-cafe-cafecafeeeee"
)

type luks1Slot struct {
	Active            uint32
	Iterations        uint32
	Salt              [32]byte
	KeyMaterialOffset uint32 // 512-byte sectors
	Stripes           uint32
}

type luks1Phdr struct {
	Magic         [6]byte
	Version       uint16
	CipherName    [32]byte
	CipherMode    [32]byte
	HashSpec      [32]byte
	PayloadOffset uint32 // 512-byte sectors
	KeyBytes      uint32
	MKDigest      [20]byte
	MKDigestSalt  [32]byte
	MKDigestIter  uint32
	UUID          [40]byte
	Slots         [luks1NumKeys]luks1Slot
}

// cString returns the NUL-terminated string in b, and false if b holds no NUL.
func cString(b []byte) (string, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), true
		}
	}
	return string(b), false
}

// afSectors is cryptsetup's AF_split_sectors: the 512-byte sectors holding
// keyBytes*stripes bytes of anti-forensic material.
func afSectors(keyBytes, stripes int) int64 {
	return (int64(keyBytes)*int64(stripes) + sectorSize - 1) / sectorSize
}

func readLUKS1(r io.ReaderAt, size int64, reencryptMagic bool) (*Header, error) {
	const structure = "LUKS1 header"
	if size < luks1HeaderLen {
		return nil, formatErr(structure, 0, "device of %d bytes is shorter than the %d-byte header", size, luks1HeaderLen)
	}
	buf := make([]byte, luks1HeaderLen)
	if err := readFull(r, buf, 0); err != nil {
		return nil, err
	}
	var p luks1Phdr
	if _, err := binary.Decode(buf, binary.BigEndian, &p); err != nil {
		return nil, formatErr(structure, 0, "%v", err)
	}
	h := &Header{Version: 1, SectorSize: sectorSize, DataSize: -1, r: r, size: size, v1: &p}

	var strs [4]string
	for i, f := range []struct {
		name string
		b    []byte
	}{
		{"cipher-name", p.CipherName[:]},
		{"cipher-mode", p.CipherMode[:]},
		{"hash-spec", p.HashSpec[:]},
		{"uuid", p.UUID[:]},
	} {
		s, ok := cString(f.b)
		if !ok {
			return nil, formatErr(structure, 0, "%s is not NUL-terminated", f.name)
		}
		strs[i] = s
	}
	name, mode, hashSpec := strs[0], strs[1], strs[2]
	h.UUID = strs[3]
	if name == "" || hashSpec == "" {
		return nil, formatErr(structure, 0, "empty cipher-name or hash-spec")
	}
	h.Cipher = diskcipher.Join(name, mode)
	if p.KeyBytes == 0 || p.KeyBytes > maxKeyBytes {
		return nil, formatErr(structure, 0, "key-bytes %d out of range 1..%d", p.KeyBytes, maxKeyBytes)
	}
	h.KeySize = int(p.KeyBytes)
	if p.MKDigestIter == 0 {
		return nil, formatErr(structure, 0, "mk-digest-iter is 0")
	}
	h.DataOffset = int64(p.PayloadOffset) * sectorSize

	// Keyslot checks, as cryptsetup's LUKS_check_keyslots: stripes fixed at
	// 4000, material after the header, before the payload (when the header is
	// attached; payload-offset 0 means detached) and not overlapping.
	secs := afSectors(int(p.KeyBytes), luks1Stripes)
	var end int64 // end of the last keyslot material, bytes
	order := make([]int, luks1NumKeys)
	for i := range order {
		order[i] = i
	}
	for i, s := range p.Slots {
		st := fmt.Sprintf("LUKS1 keyslot %d", i)
		off := int64(208 + 48*i)
		if s.Active != luks1SlotEnabled && s.Active != luks1SlotDisable {
			return nil, formatErr(st, off, "invalid state 0x%08x", s.Active)
		}
		if s.Stripes != luks1Stripes {
			return nil, formatErr(st, off, "stripes %d, want %d", s.Stripes, luks1Stripes)
		}
		km := int64(s.KeyMaterialOffset)
		if km*sectorSize < luks1HeaderLen {
			return nil, formatErr(st, off, "key material at sector %d overlaps the header", km)
		}
		if p.PayloadOffset != 0 {
			if km >= int64(p.PayloadOffset) || km+secs > int64(p.PayloadOffset) {
				return nil, formatErr(st, off, "key material (sectors %d..%d) overlaps the payload at sector %d", km, km+secs, p.PayloadOffset)
			}
		}
		if s.Active == luks1SlotEnabled && s.Iterations == 0 {
			return nil, formatErr(st, off, "active keyslot with 0 iterations")
		}
		end = max(end, (km+secs)*sectorSize)
		h.Keyslots = append(h.Keyslots, Keyslot{
			ID: i, Type: "luks1", Active: s.Active == luks1SlotEnabled,
			KDF: "pbkdf2", Hash: hashSpec, Iterations: int(s.Iterations),
			Priority: 1, KeySize: int(p.KeyBytes), Encryption: h.Cipher, EncryptionKeySize: int(p.KeyBytes),
			Stripes: int(s.Stripes), AFHash: hashSpec,
			AreaOffset: km * sectorSize, AreaSize: secs * sectorSize,
			salt: p.Slots[i].Salt[:],
		})
	}
	sort.SliceStable(order, func(a, b int) bool {
		return p.Slots[order[a]].KeyMaterialOffset < p.Slots[order[b]].KeyMaterialOffset
	})
	for i := 1; i < len(order); i++ {
		prev, next := p.Slots[order[i-1]], p.Slots[order[i]]
		if int64(next.KeyMaterialOffset) < int64(prev.KeyMaterialOffset)+secs {
			return nil, formatErr(fmt.Sprintf("LUKS1 keyslot %d", order[i]), int64(208+48*order[i]),
				"key material overlaps keyslot %d", order[i-1])
		}
	}
	// The header device must hold every keyslot area (cryptsetup's
	// LUKS_check_device_size).
	if end > size {
		return nil, formatErr(structure, 0, "device of %d bytes is too small: keyslot material ends at %d", size, end)
	}
	// Round to 4 KiB, but an attached header ends where the payload starts
	// (old v1.0 layouts put the payload at unaligned sectors).
	h.HeaderSize = (end + 4095) &^ 4095
	if h.DataOffset > 0 {
		h.HeaderSize = min(h.HeaderSize, h.DataOffset)
	}

	if reencryptMagic {
		h.luks1Reencrypt = "magic LUKS\\xde\\xad marks an interrupted LUKS1 offline re-encryption (cryptsetup-reencrypt)"
		h.Warnings = append(h.Warnings, "LUKS1 header at offset 0: "+h.luks1Reencrypt)
	} else if h.UUID == luks1NoUUID {
		h.luks1Reencrypt = "UUID " + luks1NoUUID + " marks a temporary header of an interrupted LUKS1 offline re-encryption"
		h.Warnings = append(h.Warnings, "LUKS1 header at offset 0: "+h.luks1Reencrypt)
	}
	return h, nil
}

func (h *Header) supported1() error {
	if h.luks1Reencrypt != "" {
		return fmt.Errorf("%w: %s", ErrReencryptInProgress, h.luks1Reencrypt)
	}
	if _, err := hashByName(h.v1hash()); err != nil {
		return err
	}
	return checkCipher(h.Cipher, h.KeySize, h.SectorSize)
}

func (h *Header) v1hash() string {
	s, _ := cString(h.v1.HashSpec[:])
	return s
}

// checkCipher reports, wrapping ErrUnsupported (and diskcipher.ErrUnsupported
// when that is the cause), a data cipher that cannot be used.
func checkCipher(spec string, keySize, sectorSize int) error {
	key := make([]byte, keySize)
	if _, err := diskcipher.New(spec, key, sectorSize); err != nil {
		return fmt.Errorf("%w: cipher %s with a %d-bit key: %w", ErrUnsupported, spec, keySize*8, err)
	}
	return nil
}
