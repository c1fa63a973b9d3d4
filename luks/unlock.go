package luks

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/luksconv/luksconv/diskcipher"
	"github.com/luksconv/luksconv/internal/recovered"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/ripemd160" //nolint:staticcheck // LUKS1 headers may name it; not used for anything new
)

// hashByName maps a cryptsetup hash name to a Go implementation. Hashes Go
// does not ship (whirlpool, stribog, sm3) give an error wrapping
// ErrUnsupported that names the hash.
func hashByName(name string) (func() hash.Hash, error) {
	switch strings.ToLower(name) {
	case "sha1":
		return sha1.New, nil
	case "sha224":
		return sha256.New224, nil
	case "sha256":
		return sha256.New, nil
	case "sha384":
		return sha512.New384, nil
	case "sha512":
		return sha512.New, nil
	case "sha3-224":
		return func() hash.Hash { return sha3.New224() }, nil
	case "sha3-256":
		return func() hash.Hash { return sha3.New256() }, nil
	case "sha3-384":
		return func() hash.Hash { return sha3.New384() }, nil
	case "sha3-512":
		return func() hash.Hash { return sha3.New512() }, nil
	case "ripemd160":
		return ripemd160.New, nil
	case "blake2b-512":
		return func() hash.Hash { h, _ := blake2b.New512(nil); return h }, nil
	case "blake2s-256":
		return func() hash.Hash { h, _ := blake2s.New256(nil); return h }, nil
	}
	return nil, fmt.Errorf("%w: hash %q", ErrUnsupported, name)
}

// VolumeKey is an unlocked volume key. Formatting it with fmt, slog or a text
// or JSON encoder prints "[REDACTED]", never the key.
type VolumeKey struct {
	key  []byte
	Slot int // keyslot that yielded the key
}

const redacted = "[REDACTED]"

// Bytes returns the live key. The caller must not retain or modify it.
func (k *VolumeKey) Bytes() []byte { return k.key }

// Destroy zeroes the key. Bytes returns nil afterwards.
func (k *VolumeKey) Destroy() {
	clear(k.key)
	k.key = nil
}

// String returns "[REDACTED]".
func (k VolumeKey) String() string { return redacted }

// GoString returns "[REDACTED]".
func (k VolumeKey) GoString() string { return redacted }

// Format writes "[REDACTED]" for every verb.
func (k VolumeKey) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// MarshalText returns "[REDACTED]" (also used by encoding/json).
func (k VolumeKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue returns "[REDACTED]" for log/slog.
func (k VolumeKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// errMismatch is a keyslot that decrypted fine but whose key failed the
// digest check: the passphrase is wrong for this slot.
var errMismatch = errors.New("digest mismatch")

// Unlock finds the volume key with passphrase. It first calls Supported.
// With slot < 0 it tries every active keyslot that can unlock the data
// segment, highest priority first (priority 0, "ignore", is skipped); with
// slot >= 0 it tries only that keyslot (an error wrapping ErrKeyslotUnusable
// if it cannot unlock the data segment).
//
// It returns ErrWrongPassphrase (possibly wrapped with a note about skipped
// keyslots) when no keyslot matches. If every candidate keyslot was skipped
// because of an unsupported hash or KDF, or absurd KDF parameters, that
// error (ErrUnsupported or a *FormatError) is returned instead. I/O errors
// are returned as they happen. Derived keys, the anti-forensic buffer and
// rejected candidate keys are zeroed before Unlock returns.
//
// PBKDF2 is computed in this package so that its HMAC pads can be zeroed
// (crypto/pbkdf2 takes the password as a string). Argon2 work memory holds
// only one-way functions of the passphrase and is left to the collector.
func (h *Header) Unlock(passphrase []byte, slot int) (*VolumeKey, error) {
	return h.UnlockContext(context.Background(), passphrase, slot)
}

// UnlockContext is Unlock that stops when ctx is done and returns ctx.Err(): key derivation with
// large iteration counts or memory costs can run for minutes. PBKDF2 (keyslots and digests) looks at
// ctx every few thousand iterations; an Argon2 derivation cannot be interrupted, so it runs on its own
// goroutine, which finishes (and zeroes its result) in the background after UnlockContext returned.
//
// It applies the default KDFLimits; UnlockLimits takes others.
func (h *Header) UnlockContext(ctx context.Context, passphrase []byte, slot int) (*VolumeKey, error) {
	return h.UnlockLimits(ctx, passphrase, slot, KDFLimits{})
}

// UnlockLimits is UnlockContext under lim: a keyslot whose Argon2 memory cost is over
// lim.MaxMemoryKiB, or whose derivation and digest check would take longer than lim.MaxTime here, is
// not tried. When no keyslot opens and one was left out that way, the error is its *CostError
// (errors.Is ErrKDFLimit), naming the keyslot, its cost and the limit: the passphrase may be right.
// Keyslots are tried one after the other, and a large Argon2 buffer is returned to the system before
// the next one is derived.
func (h *Header) UnlockLimits(ctx context.Context, passphrase []byte, slot int, lim KDFLimits) (*VolumeKey, error) {
	lim = lim.resolve()
	if err := h.Supported(); err != nil {
		return nil, err
	}
	cands, err := h.candidates(slot)
	if err != nil {
		return nil, err
	}
	var skipped, limited []error
	tried := 0
	for _, ks := range cands {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := h.checkCost(ks, lim); err != nil {
			limited = append(limited, err)
			continue
		}
		key, err := h.tryKeyslot(ctx, ks, passphrase)
		if strings.HasPrefix(ks.KDF, "argon2") {
			freeLarge(ks.MemoryKiB)
		}
		switch {
		case err == nil:
			return &VolumeKey{key: key, Slot: ks.ID}, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, errMismatch):
			tried++
		case errors.Is(err, ErrUnsupported) || errors.Is(err, ErrCorrupt):
			skipped = append(skipped, fmt.Errorf("keyslot %d: %w", ks.ID, err))
		default:
			return nil, err
		}
	}
	if len(limited) > 0 {
		if tried > 0 {
			return nil, fmt.Errorf("%w (the other keyslots do not match the passphrase)", limited[0])
		}
		return nil, limited[0]
	}
	if tried == 0 && len(skipped) > 0 {
		return nil, skipped[0]
	}
	if len(skipped) > 0 {
		notes := make([]string, len(skipped))
		for i, e := range skipped {
			notes[i] = e.Error()
		}
		return nil, fmt.Errorf("%w (skipped: %s)", ErrWrongPassphrase, strings.Join(notes, "; "))
	}
	return nil, ErrWrongPassphrase
}

// usable reports why ks cannot unlock the data segment, or "" if it can.
func (h *Header) usable(ks *Keyslot) string {
	switch {
	case !ks.Active:
		return "is disabled"
	case h.Version == 1:
		return ""
	case ks.Type != "luks2":
		return fmt.Sprintf("has type %q", ks.Type)
	case ks.digest == nil || !containsInt(ks.digest.segments, h.DataSegment):
		return "is not bound to the data segment (unbound key)"
	case ks.KeySize != h.KeySize:
		return fmt.Sprintf("stores a %d-byte key, the data segment needs %d", ks.KeySize, h.KeySize)
	}
	return ""
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// candidates lists the keyslots Unlock tries, in order.
func (h *Header) candidates(slot int) ([]*Keyslot, error) {
	if slot >= 0 {
		for i := range h.Keyslots {
			ks := &h.Keyslots[i]
			if ks.ID != slot {
				continue
			}
			if why := h.usable(ks); why != "" {
				return nil, fmt.Errorf("%w: keyslot %d %s", ErrKeyslotUnusable, slot, why)
			}
			return []*Keyslot{ks}, nil
		}
		return nil, fmt.Errorf("%w: keyslot %d does not exist", ErrKeyslotUnusable, slot)
	}
	var out []*Keyslot
	for i := range h.Keyslots {
		ks := &h.Keyslots[i]
		if h.usable(ks) == "" && ks.Priority > 0 {
			out = append(out, ks)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority > out[j].Priority })
	return out, nil
}

// tryKeyslot runs the unlock procedure of LUKS1 spec §4.3 / LUKS2 spec §4:
// derive the slot key, decrypt the key material, AF-merge, check the digest.
func (h *Header) tryKeyslot(ctx context.Context, ks *Keyslot, pass []byte) ([]byte, error) {
	st := fmt.Sprintf("LUKS%d keyslot %d", h.Version, ks.ID)
	afHash, err := hashByName(ks.AFHash)
	if err != nil {
		return nil, err
	}
	need := afSectors(ks.KeySize, ks.Stripes) * sectorSize
	if ks.AreaSize < need || ks.AreaOffset < 0 || ks.AreaOffset > h.size-need {
		return nil, formatErr(st, ks.AreaOffset, "%d bytes of key material do not fit the %d-byte header device", need, h.size)
	}
	// Check the cipher before the (slow) KDF.
	if _, err := diskcipher.New(ks.Encryption, make([]byte, ks.EncryptionKeySize), sectorSize); err != nil {
		return nil, fmt.Errorf("%w: keyslot cipher %s: %w", ErrUnsupported, ks.Encryption, err)
	}
	dk, err := deriveKey(ctx, st, ks, pass)
	if err != nil {
		return nil, err
	}
	defer clear(dk)
	c, err := diskcipher.New(ks.Encryption, dk, sectorSize)
	if err != nil {
		return nil, fmt.Errorf("%w: keyslot cipher %s: %w", ErrUnsupported, ks.Encryption, err)
	}
	material := make([]byte, need)
	defer clear(material)
	if err := readFull(h.r, material, ks.AreaOffset); err != nil {
		return nil, err
	}
	// Keyslot areas always use 512-byte sectors with IVs counted from 0 at
	// the start of the area, whatever the data sector size.
	c.Decrypt(material, material, 0)
	key := make([]byte, ks.KeySize)
	afMerge(key, material, ks.Stripes, afHash)
	ok, err := h.checkDigest(ctx, ks, key)
	if err != nil || !ok {
		clear(key)
		if err == nil {
			err = errMismatch
		}
		return nil, err
	}
	return key, nil
}

func deriveKey(ctx context.Context, st string, ks *Keyslot, pass []byte) ([]byte, error) {
	n := ks.EncryptionKeySize
	switch ks.KDF {
	case "pbkdf2":
		hf, err := hashByName(ks.Hash)
		if err != nil {
			return nil, err
		}
		if ks.Iterations < 1 || int64(ks.Iterations) > maxPBKDF2Iter {
			return nil, formatErr(st, ks.AreaOffset, "pbkdf2 iterations %d out of range", ks.Iterations)
		}
		return pbkdf2Key(ctx, hf, pass, ks.salt, ks.Iterations, n)
	case "argon2i", "argon2id":
		// Refuse absurd parameters before argon2 allocates memory KiB.
		if ks.CPUs < 1 || ks.CPUs > maxArgon2CPUs || ks.Time < 1 || ks.Time > maxArgon2Time ||
			ks.MemoryKiB < 8*ks.CPUs || ks.MemoryKiB > maxArgon2Memory {
			return nil, formatErr(st, ks.AreaOffset, "argon2 parameters out of range (time %d, memory %d KiB, cpus %d)", ks.Time, ks.MemoryKiB, ks.CPUs)
		}
		f := argon2.IDKey
		if ks.KDF == "argon2i" {
			f = argon2.Key
		}
		return argon2Context(ctx, f, pass, ks.salt, uint32(ks.Time), uint32(ks.MemoryKiB), uint8(ks.CPUs), uint32(n))
	}
	return nil, fmt.Errorf("%w: key derivation function %q", ErrUnsupported, ks.KDF)
}

// argon2Context runs the Argon2 function f on its own goroutine so that a cancelled ctx returns at
// once. The goroutine works on a copy of the passphrase and zeroes it, and an abandoned result, when
// it finishes. A panic there is the returned error: on that goroutine it would end the process.
func argon2Context(ctx context.Context, f func(pass, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte,
	pass, salt []byte, time, memory uint32, threads uint8, keyLen uint32) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := bytes.Clone(pass)
	type result struct {
		k   []byte
		err error
	}
	done := make(chan result, 1)
	var mu sync.Mutex
	abandoned := false
	go func() {
		var k []byte
		err := recovered.Call(func() error {
			k = f(p, salt, time, memory, threads, keyLen)
			return nil
		})
		clear(p)
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			clear(k)
			return
		}
		done <- result{k, err}
	}()
	select {
	case r := <-done:
		return r.k, r.err
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		select {
		case r := <-done: // finished meanwhile
			clear(r.k)
		default:
			abandoned = true
		}
		return nil, ctx.Err()
	}
}

// afMerge recovers key from the anti-forensic split material (LUKS1 spec
// §2.4, cryptsetup lib/luks1/af.c): d = 0; d = H(d ^ block_i) for every
// block but the last; key = d ^ last block.
func afMerge(key, material []byte, stripes int, newHash func() hash.Hash) {
	n := len(key)
	clear(key)
	hs := newHash()
	var sum []byte
	for i := 0; i < stripes-1; i++ {
		subtle.XORBytes(key, key, material[i*n:(i+1)*n])
		sum = diffuse(key, hs, sum)
	}
	subtle.XORBytes(key, key, material[(stripes-1)*n:stripes*n])
	clear(sum)
}

// diffuse replaces every digest-sized piece j of buf with H(be32(j) || piece),
// truncated for a short last piece. It returns its scratch buffer for reuse.
func diffuse(buf []byte, hs hash.Hash, sum []byte) []byte {
	ds := hs.Size()
	var iv [4]byte
	for j, off := 0, 0; off < len(buf); j, off = j+1, off+ds {
		end := min(off+ds, len(buf))
		hs.Reset()
		binary.BigEndian.PutUint32(iv[:], uint32(j))
		hs.Write(iv[:])
		hs.Write(buf[off:end])
		sum = hs.Sum(sum[:0])
		copy(buf[off:end], sum)
	}
	return sum
}

// checkDigest verifies a candidate volume key against the header digest.
func (h *Header) checkDigest(ctx context.Context, ks *Keyslot, key []byte) (bool, error) {
	var (
		hashName     string
		salt, want   []byte
		iter, length int
	)
	if h.Version == 1 {
		hashName, salt, want, iter, length = h.v1hash(), h.v1.MKDigestSalt[:], h.v1.MKDigest[:], int(h.v1.MKDigestIter), luks1DigestSize
	} else {
		d := ks.digest
		if d.Type != "pbkdf2" {
			return false, fmt.Errorf("%w: digest %d has type %q", ErrUnsupported, d.id, d.Type)
		}
		hashName, salt, want, iter, length = d.Hash, d.Salt, d.Digest, d.Iterations, len(d.Digest)
	}
	hf, err := hashByName(hashName)
	if err != nil {
		return false, err
	}
	got, err := pbkdf2Key(ctx, hf, key, salt, iter, length)
	if err != nil {
		return false, err
	}
	defer clear(got)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
