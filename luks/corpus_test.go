package luks_test

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/diskcipher"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luks"
)

// payloadDigest hashes the whole decrypted payload of an attached-header image.
func payloadDigest(t *testing.T, h *luks.Header, f *os.File, size int64, k *luks.VolumeKey, newHash func() hash.Hash) string {
	t.Helper()
	r, err := luks.NewReader(f, size, h, k)
	if err != nil {
		t.Fatal(err)
	}
	hs := newHash()
	if _, err := io.Copy(hs, io.NewSectionReader(r, 0, r.Size())); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(hs.Sum(nil))
}

// Expected digests are from cryptsetup's tests/compat-test.
func TestCompatImages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file, cipher string
		newHash      func() hash.Hash
		want         string
	}{
		{"compatimage.img", "aes-cbc-essiv:sha256", sha256.New, "7428e8f2436882a07eb32765086f5c899474c08b5576f556b573d2aabdf923e8"},
		{"compatv10image.img", "aes-cbc-plain", sha1.New, "51b48c2471a7593ceaf14dc5e66bca86ed05f6cc"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			h, f, size := readHeader(t, testenv.CryptsetupImage(t, tc.file))
			if h.Version != 1 || h.Cipher != tc.cipher || h.KeySize != 16 {
				t.Errorf("version %d cipher %q key %d", h.Version, h.Cipher, h.KeySize)
			}
			if h.HeaderSize > h.DataOffset {
				t.Errorf("HeaderSize %d beyond DataOffset %d", h.HeaderSize, h.DataOffset)
			}
			if err := h.Supported(); err != nil {
				t.Fatal(err)
			}
			_, err := h.Unlock([]byte("compatkey-wrong"), -1)
			wantErr(t, err, luks.ErrWrongPassphrase)
			k := mustUnlock(t, h, "compatkey", -1)
			if k.Slot != 0 {
				t.Errorf("slot %d, want 0", k.Slot)
			}
			if got := payloadDigest(t, h, f, size, k, tc.newHash); got != tc.want {
				t.Errorf("payload digest %s, want %s", got, tc.want)
			}
		})
	}
}

// compatimage2: LUKS2, slot 0 pbkdf2 with "compatkey", slot 1 argon2id with
// "0123456789abcdef" (cryptsetup tests/api-test-2.c KEY1, KEY2).
func TestCompatImage2(t *testing.T) {
	t.Parallel()
	path := testenv.CryptsetupImage(t, "compatimage2.img")
	h, _, _ := readHeader(t, path)
	if h.Version != 2 || h.Cipher != "aes-cbc-essiv:sha256" || h.DataOffset != 4<<20 || h.SectorSize != 512 {
		t.Errorf("header %+v", h)
	}
	if len(h.Keyslots) != 2 || h.Keyslots[0].KDF != "pbkdf2" || h.Keyslots[1].KDF != "argon2id" {
		t.Fatalf("keyslots %+v", h.Keyslots)
	}
	k0 := mustUnlock(t, h, "compatkey", -1)
	k1 := mustUnlock(t, h, "0123456789abcdef", 1)
	if k0.Slot != 0 || k1.Slot != 1 || !bytes.Equal(k0.Bytes(), k1.Bytes()) {
		t.Errorf("slots %d/%d disagree on the volume key", k0.Slot, k1.Slot)
	}
	_, err := h.Unlock([]byte("compatkey"), 1)
	wantErr(t, err, luks.ErrWrongPassphrase)
	if _, err := exec.LookPath("cryptsetup"); err == nil {
		keyFile := testenv.WriteFile(t, t.TempDir(), "k", []byte("compatkey"))
		if want := cryptsetupVolumeKey(t, keyFile, path); !bytes.Equal(want, k0.Bytes()) {
			t.Error("volume key differs from cryptsetup's")
		}
	}
}

// luks1-images: the whole keyfile1 is the passphrase; the volume is FAT16
// with serial DEAD-BABE (cryptsetup tests/luks1-compat-test). Variants with
// ciphers or hashes Go does not have must be refused with ErrUnsupported.
func TestLUKS1Images(t *testing.T) {
	t.Parallel()
	key, err := os.ReadFile(testenv.CryptsetupImage(t, "luks1-images.tar/luks1-images/keyfile1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		supported bool
	}{
		{"luks1_aes-xts-plain64-sha1", true},
		{"luks1_aes-xts-plain64-sha256", true},
		{"luks1_aes-cbc-essiv-sha256-sha1", true},
		{"luks1_aes-xts-plain64-whirlpool", false},
		{"luks1_aes-lrw-plain64-sha1", false},
		{"luks1_aes-xts-essiv-wp256-whirlpool", false},
		{"luks1_serpent-xts-plain64-sha1", false},
		{"luks1_serpent-xts-plain64-sha256", false},
		{"luks1_serpent-xts-plain64-whirlpool", false},
		{"luks1_twofish-xts-plain64-sha1", false},
		{"luks1_twofish-xts-plain64-sha256", false},
		{"luks1_twofish-xts-plain64-whirlpool", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, f, size := readHeader(t, testenv.CryptsetupImage(t, "luks1-images.tar/luks1-images/"+tc.name+".img"))
			if !tc.supported {
				err := h.Supported()
				wantErr(t, err, luks.ErrUnsupported)
				_, err2 := h.Unlock(key, -1)
				wantErr(t, err2, luks.ErrUnsupported)
				t.Logf("refused: %v", err)
				return
			}
			k := mustUnlock(t, h, string(key), -1)
			r, err := luks.NewReader(f, size, h, k)
			if err != nil {
				t.Fatal(err)
			}
			boot := make([]byte, 512)
			if _, err := r.ReadAt(boot, 0); err != nil {
				t.Fatal(err)
			}
			// The volume is really FAT12 (cryptsetup's script says "FAT16").
			if !bytes.Equal(boot[39:43], []byte{0xbe, 0xba, 0xad, 0xde}) || !bytes.Equal(boot[54:57], []byte("FAT")) || boot[510] != 0x55 || boot[511] != 0xaa {
				t.Errorf("not the FAT volume DEAD-BABE: serial % x, type %q", boot[39:43], boot[54:62])
			}
			// And blkid, which nobody here wrote, agrees on the whole payload.
			if _, err := exec.LookPath("blkid"); err == nil {
				plain := filepath.Join(t.TempDir(), "plain")
				out, err := os.Create(plain)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(out, io.NewSectionReader(r, 0, r.Size())); err != nil {
					t.Fatal(err)
				}
				out.Close()
				if got := strings.TrimSpace(testenv.Run(t, "blkid", "-p", "-o", "value", "-s", "UUID", plain)); got != "DEAD-BABE" {
					t.Errorf("blkid UUID %q, want DEAD-BABE", got)
				}
			}
		})
	}
}

func TestUnsupportedIsDiskcipher(t *testing.T) {
	t.Parallel()
	h, _, _ := readHeader(t, testenv.CryptsetupImage(t, "luks1-images.tar/luks1-images/luks1_serpent-xts-plain64-sha1.img"))
	if err := h.Supported(); !errors.Is(err, diskcipher.ErrUnsupported) || !errors.Is(err, luks.ErrUnsupported) {
		t.Errorf("Supported() = %v, want both luks.ErrUnsupported and diskcipher.ErrUnsupported", err)
	}
	h, _, _ = readHeader(t, testenv.CryptsetupImage(t, "luks1-images.tar/luks1-images/luks1_aes-xts-plain64-whirlpool.img"))
	if err := h.Supported(); !errors.Is(err, luks.ErrUnsupported) || !bytes.Contains([]byte(err.Error()), []byte("whirlpool")) {
		t.Errorf("Supported() = %v, want ErrUnsupported naming whirlpool", err)
	}
}

// luks2_mda_images: metadata areas from 16 KiB to 4 MiB, passphrase from
// cryptsetup tests/compat-test2 (PWD4). Exercises every secondary offset.
func TestLUKS2MetadataSizes(t *testing.T) {
	t.Parallel()
	var key []byte
	for _, kb := range []int64{16, 32, 64, 128, 256, 512, 1024, 2048, 4096} {
		name := "test_image_" + itoa(kb)
		t.Run(name, func(t *testing.T) {
			h, _, _ := readHeader(t, testenv.CryptsetupImage(t, "luks2_mda_images.tar/"+name))
			if h.MetadataSize != kb<<10 || len(h.Warnings) != 0 || h.UsedSecondary {
				t.Errorf("metadata size %d, warnings %q, secondary %v", h.MetadataSize, h.Warnings, h.UsedSecondary)
			}
			k := mustUnlock(t, h, "Qx3qn46vq0v", -1)
			if key == nil {
				key = bytes.Clone(k.Bytes())
			}
			if len(k.Bytes()) != h.KeySize {
				t.Errorf("key size %d, header says %d", len(k.Bytes()), h.KeySize)
			}
		})
	}
}

func itoa(n int64) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int64) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// luks2_header_requirements carries mandatory requirements "req0", "req1"
// that nobody implements: refuse. The _free variant opens with the
// api-test-2.c PASSPHRASE ("blablabl" in this version of the tarball).
func TestHeaderRequirements(t *testing.T) {
	t.Parallel()
	h, _, _ := readHeader(t, testenv.CryptsetupImage(t, "luks2_header_requirements.tar/luks2_header_requirements"))
	if len(h.Requirements) != 2 || h.Requirements[0] != "req0" || h.Requirements[1] != "req1" {
		t.Errorf("requirements %q", h.Requirements)
	}
	err := h.Supported()
	wantErr(t, err, luks.ErrUnsupported)
	if errors.Is(err, luks.ErrReencryptInProgress) {
		t.Error("unknown requirement reported as re-encryption")
	}
	_, err = h.Unlock([]byte("blablabl"), -1)
	wantErr(t, err, luks.ErrUnsupported)

	h, _, _ = readHeader(t, testenv.CryptsetupImage(t, "luks2_header_requirements.tar/luks2_header_requirements_free"))
	if err := h.Supported(); err != nil {
		t.Fatal(err)
	}
	mustUnlock(t, h, "blablabl", -1)
}

// luks2_keyslot_unassigned: slot 0 ("compatkey") is bound to the segment,
// slot 1 is an unbound key that must never be used for data.
func TestKeyslotUnassigned(t *testing.T) {
	t.Parallel()
	path := testenv.CryptsetupImage(t, "luks2_keyslot_unassigned.img")
	h, _, _ := readHeader(t, path)
	if len(h.Keyslots) != 2 || len(h.Keyslots[0].Segments) != 1 || len(h.Keyslots[1].Segments) != 0 {
		t.Fatalf("keyslots %+v", h.Keyslots)
	}
	k := mustUnlock(t, h, "compatkey", -1)
	if k.Slot != 0 {
		t.Errorf("slot %d", k.Slot)
	}
	_, err := h.Unlock([]byte("compatkey"), 1)
	wantErr(t, err, luks.ErrKeyslotUnusable)
	_, err = h.Unlock([]byte("compatkey"), 7)
	wantErr(t, err, luks.ErrKeyslotUnusable)
	if _, err := exec.LookPath("cryptsetup"); err == nil {
		keyFile := testenv.WriteFile(t, t.TempDir(), "k", []byte("compatkey"))
		if want := cryptsetupVolumeKey(t, keyFile, path); !bytes.Equal(want, k.Bytes()) {
			t.Error("volume key differs from cryptsetup's")
		}
	}
}

func TestInvalidCipher(t *testing.T) {
	t.Parallel()
	h, _, _ := readHeader(t, testenv.CryptsetupImage(t, "luks2_invalid_cipher.img"))
	err := h.Supported()
	if !errors.Is(err, luks.ErrUnsupported) || !errors.Is(err, diskcipher.ErrUnsupported) {
		t.Errorf("Supported() = %v", err)
	}
}

// luks2_valid_hdr is the base of cryptsetup's header-validation tests: it
// must parse. Its kdf type "argon2" is unknown, so unlocking reports
// ErrUnsupported rather than a wrong passphrase.
func TestValidHdr(t *testing.T) {
	t.Parallel()
	h, _, _ := readHeader(t, testenv.CryptsetupImage(t, "luks2_valid_hdr.img"))
	if h.UUID != "12a3a118-7039-4575-a649-3f559d8d87ee" || h.Cipher != "aes-xts-plain64" || len(h.Keyslots) == 0 {
		t.Errorf("header %+v", h)
	}
	_, err := h.Unlock([]byte("x"), -1)
	wantErr(t, err, luks.ErrUnsupported)
}

// The evil_hdr images are malicious LUKS1 headers that cryptsetup refuses
// (tests/api-test.c). valid_header_file is the positive control of the same
// test: cryptsetup loads it (all its keyslots are disabled), so it must parse.
func TestEvilHeaders(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"evil_hdr-keyslot_overlap", "evil_hdr-luks_hdr_damage", "evil_hdr-payload_overwrite",
		"evil_hdr-small_luks_device", "evil_hdr-stripes_payload_dmg",
	} {
		f, size := testenv.Open(t, testenv.CryptsetupImage(t, name))
		h, err := luks.ReadHeader(f, size)
		var fe *luks.FormatError
		if h != nil || !errors.As(err, &fe) || !errors.Is(err, luks.ErrCorrupt) {
			t.Errorf("%s: ReadHeader = %v, %v; want a *FormatError", name, h, err)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
	h, _, _ := readHeader(t, testenv.CryptsetupImage(t, "valid_header_file"))
	if h.Cipher != "aes-cbc-essiv:sha256" || h.KeySize != 32 || h.DataOffset != 4096*512 {
		t.Errorf("valid_header_file: %+v", h)
	}
	_, err := h.Unlock([]byte("x"), -1)
	wantErr(t, err, luks.ErrWrongPassphrase)
}

// The LUKS-d238e48a tarball is what cryptsetup's LUKS1 offline re-encryption
// leaves behind: a .log, the original header (.org) and the new header
// (.new; for a decryption, a cipher_null header with the fixed UUID
// cafecafe-…). The device itself would carry the .org header with its magic
// changed to LUKS\xde\xad (src/utils_reencrypt_luks1.c, MAKE_UNUSABLE); the
// test makes that device header from .org the same way.
func TestLUKS1Reencrypt(t *testing.T) {
	t.Parallel()
	const base = "LUKS-d238e48a-0ed3-4169-b841-f26b44693134.tar/LUKS-d238e48a-0ed3-4169-b841-f26b44693134"
	org, _, _ := readHeader(t, testenv.CryptsetupImage(t, base+".org"))
	if org.UUID != "d238e48a-0ed3-4169-b841-f26b44693134" || org.Cipher != "aes-xts-plain64" || org.KeySize != 64 {
		t.Errorf(".org: %+v", org)
	}
	if err := org.Supported(); err != nil {
		t.Errorf(".org is a plain LUKS1 header: %v", err)
	}

	newHdr, _, _ := readHeader(t, testenv.CryptsetupImage(t, base+".new"))
	wantErr(t, newHdr.Supported(), luks.ErrReencryptInProgress)

	data, err := os.ReadFile(testenv.CryptsetupImage(t, base+".org"))
	if err != nil {
		t.Fatal(err)
	}
	copy(data[4:6], []byte{0xde, 0xad})
	h, err := luks.ReadHeader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, h.Supported(), luks.ErrReencryptInProgress)
	_, err = h.Unlock([]byte("x"), -1)
	wantErr(t, err, luks.ErrReencryptInProgress)
	if len(h.Warnings) == 0 {
		t.Error("no warning for the re-encryption marker")
	}
}

// blkid-luks2-pv.img is an LVM2 PV with a stale LUKS2 secondary header at
// 16 KiB and no primary. blkid calls it LVM2_member and cryptsetup refuses it
// ("ambiguous signatures"): ReadHeader must say ErrNotLUKS. RecoverHeader,
// the explicit opt-in, does find the stale copy.
func TestStaleSecondaryIsNotLUKS(t *testing.T) {
	t.Parallel()
	f, size := testenv.Open(t, testenv.CryptsetupImage(t, "blkid-luks2-pv.img"))
	_, err := luks.ReadHeader(f, size)
	if err != luks.ErrNotLUKS {
		t.Fatalf("ReadHeader = %v, want ErrNotLUKS", err)
	}
	h, err := luks.RecoverHeader(f, size)
	if err != nil {
		t.Fatalf("RecoverHeader: %v", err)
	}
	if !h.UsedSecondary || h.MetadataSize != 16384 || len(h.Warnings) == 0 {
		t.Errorf("recovered header: secondary %v, size %d, warnings %q", h.UsedSecondary, h.MetadataSize, h.Warnings)
	}
}

func TestNotLUKS(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"img_fs_vfat.img", "img_fs_xfs.img"} {
		f, size := testenv.Open(t, testenv.CryptsetupImage(t, name))
		if _, err := luks.ReadHeader(f, size); err != luks.ErrNotLUKS {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, b := range [][]byte{nil, []byte("LUK"), []byte("LUKS\xba\xbe\x00\x01")} {
		_, err := luks.ReadHeader(bytes.NewReader(b), int64(len(b)))
		if len(b) < 8 {
			if err != luks.ErrNotLUKS {
				t.Errorf("%q: %v", b, err)
			}
		} else if !errors.Is(err, luks.ErrCorrupt) {
			t.Errorf("%q: %v, want ErrCorrupt (truncated)", b, err)
		}
	}
}
