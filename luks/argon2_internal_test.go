package luks

import (
	"context"
	"errors"
	"testing"

	"github.com/luksconv/luksconv/internal/recovered"
)

// TestArgon2ContextPanic: a panic in the key derivation, which runs on a goroutine of its own, is
// the unlock's error, not the end of the process.
func TestArgon2ContextPanic(t *testing.T) {
	f := func(pass, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte { panic("kdf bug") }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k, err := argon2Context(ctx, f, []byte("pass"), []byte("salt"), 1, 64, 1, 32)
	var pe *recovered.Error
	if !errors.As(err, &pe) || pe.Value != "kdf bug" || k != nil {
		t.Fatalf("argon2Context returned %x, %v; want the panic", k, err)
	}
}
