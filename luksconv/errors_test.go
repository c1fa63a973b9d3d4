package luksconv_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/luks"
	"github.com/luksconv/luksconv/luksconv"
)

// TestLayerErrorOffset: a damaged LUKS2 header inside partition 1 is reported with the layer and the
// byte of the image where the damaged structure lies: the partition's offset plus the header's own
// offset. The message names no command-line flag.
func TestLayerErrorOffset(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("luks2-pbkdf2-sha512-attached")
	part, ok := f.Part(f.Partition)
	if !ok {
		t.Fatal("no partition in the manifest")
	}
	img, err := os.ReadFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	// Both LUKS2 header copies' JSON areas: nothing valid is left.
	hdrSize := int64(16384)
	for _, off := range []int64{4096 + 10, hdrSize + 4096 + 10} {
		img[part.Start+off] ^= 0xff
	}
	bad := filepath.Join(t.TempDir(), "bad.raw")
	if err := os.WriteFile(bad, img, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := luksconv.OpenFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_, err = luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: f.KeyFiles[0]})
	var le *luksconv.LayerError
	var fe *luks.FormatError
	if !errors.As(err, &le) || !errors.As(err, &fe) || !errors.Is(err, luks.ErrCorrupt) {
		t.Fatalf("got %v, want a *LayerError around a luks.FormatError", err)
	}
	if le.Layer != "partition "+strconv.Itoa(f.Partition) || le.Base != part.Start || le.Offset != part.Start+fe.Offset {
		t.Fatalf("layer %q base %d offset %d; want partition %d at %d, structure at %d+%d", le.Layer, le.Base, le.Offset,
			f.Partition, part.Start, part.Start, fe.Offset)
	}
	if !strings.Contains(err.Error(), "image byte "+strconv.FormatInt(le.Offset, 10)) || strings.Contains(err.Error(), "--") {
		t.Fatalf("message %q: want the image byte and no flag", err)
	}
}
