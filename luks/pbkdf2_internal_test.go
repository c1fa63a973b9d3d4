package luks

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"errors"
	"math/rand/v2"
	"testing"
)

// pbkdf2Key must agree with the standard library's crypto/pbkdf2 for every
// hash LUKS headers name, including passwords longer than the hash block.
func TestPBKDF2MatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, name := range []string{"sha1", "sha224", "sha256", "sha384", "sha512", "sha3-256", "sha3-512", "ripemd160", "blake2b-512", "blake2s-256"} {
		hf, err := hashByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 25; i++ {
			pass := make([]byte, rng.IntN(300))
			salt := make([]byte, rng.IntN(80))
			for j := range pass {
				pass[j] = byte(rng.Uint32())
			}
			for j := range salt {
				salt[j] = byte(rng.Uint32())
			}
			iter, keyLen := 1+rng.IntN(40), 1+rng.IntN(200)
			want, err := pbkdf2.Key(hf, string(pass), salt, iter, keyLen)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := pbkdf2Key(context.Background(), hf, pass, salt, iter, keyLen); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: pass %d bytes, salt %d, iter %d, len %d: mismatch", name, len(pass), len(salt), iter, keyLen)
			}
		}
	}
}

// A cancelled context stops PBKDF2 within a few thousand iterations, whatever the count asked for.
func TestPBKDF2Cancel(t *testing.T) {
	hf, _ := hashByName("sha256")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pbkdf2Key(ctx, hf, []byte("pass"), []byte("salt"), 1<<31-1, 32); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestHashUnsupported(t *testing.T) {
	for _, name := range []string{"whirlpool", "stribog512", "sm3", ""} {
		if _, err := hashByName(name); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
}

// afMerge with one stripe is the identity; with two it is H-diffused XOR.
func TestAFMergeSmall(t *testing.T) {
	hf, _ := hashByName("sha256")
	m := []byte("0123456789abcdef0123456789abcdefZZ")
	key := make([]byte, len(m))
	afMerge(key, m, 1, hf)
	if !bytes.Equal(key, m) {
		t.Error("one stripe must be the identity")
	}
}
