package initramfs

import (
	"context"
	"errors"
	"testing"

	"github.com/luksconv/luksconv/internal/recovered"
)

// panicCompressor panics in CompressBlock.
type panicCompressor struct{}

func (panicCompressor) CompressBlock(src, dst []byte) (int, error) { panic("lz4 bug") }

// panicCtx panics when asked whether it is done: a bug inside xz's block goroutines.
type panicCtx struct{ context.Context }

func (panicCtx) Err() error { panic("xz bug") }

// TestEncodePanic: a panic on the goroutines lz4 and xz compress on is the encoding's error, not the
// end of the process.
func TestEncodePanic(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pe *recovered.Error
	if _, err := compressBlockContext(ctx, panicCompressor{}, make([]byte, 4096), make([]byte, 8192)); !errors.As(err, &pe) || pe.Value != "lz4 bug" {
		t.Errorf("compressBlockContext: %v, want the panic", err)
	}
	if _, err := encodeXZ(panicCtx{ctx}, make([]byte, 3*xzBlockSize)); !errors.As(err, &pe) || pe.Value != "xz bug" {
		t.Errorf("encodeXZ: %v, want the panic", err)
	}
}
