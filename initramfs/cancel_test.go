package initramfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/testenv"
)

// bigArchive is a cpio archive of about n bytes of text that compresses, but not trivially: words from
// a small vocabulary in random order, so every encoder has real work to do.
func bigArchive(t testing.TB, n int) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	words := []string{"initramfs ", "dracut ", "osencrypt ", "rootvg ", "lvm ", "crypt ", "kernel ", "module ",
		"udev ", "systemd ", "boot ", "header ", "luks ", "xfs ", "grub ", "\n"}
	var data bytes.Buffer
	for data.Len() < n {
		data.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(8) == 0 {
			data.WriteByte(byte('a' + rng.IntN(26)))
		}
	}
	return mkArchive(t, dir("usr"), file("usr/big", data.String()), file("etc/crypttab", "x\n"))
}

// TestRewriteCancel cancels a large re-compression into each format and checks that Rewrite stops
// soon after with the context's error. The 2 s bound is only a sanity bound: the expected delay is one
// ctxChunk of work (one 8 MiB chunk for lz4), tens of milliseconds.
func TestRewriteCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses tens of MB")
	}
	raw := bigArchive(t, 48<<20)
	img := mustEncode(t, Gzip, raw)
	im := parseBytes(t, img)
	for _, c := range []Compression{XZ, Zstd, Gzip, LZ4Legacy} {
		t.Run(string(c), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var mu sync.Mutex
			var cancelled time.Time
			// Cancel 50 ms into the compression itself, not while the cpio is written.
			testHookEncode = func(Compression) {
				time.AfterFunc(50*time.Millisecond, func() {
					mu.Lock()
					cancelled = time.Now()
					mu.Unlock()
					cancel()
				})
			}
			defer func() { testHookEncode = nil }()
			start := time.Now()
			out, rep, err := im.Rewrite(ctx, bytes.NewReader(img), Edit{Recompress: true, Compression: c})
			end := time.Now()
			mu.Lock()
			at := cancelled
			mu.Unlock()
			if err == nil {
				t.Fatalf("Rewrite finished in %v, before the cancel: the archive is too small for this test", end.Sub(start))
			}
			if at.IsZero() {
				t.Fatalf("Rewrite returned %v before it compressed anything", err)
			}
			if err != context.Canceled || out != nil || rep != nil {
				t.Fatalf("Rewrite = %d bytes, %v, %v; want context.Canceled itself", len(out), rep, err)
			}
			delay := end.Sub(at)
			t.Logf("%s: stopped %v after the cancel", c, delay)
			if delay > 2*time.Second {
				t.Errorf("Rewrite took %v to stop after the cancel", delay)
			}
		})
	}
	// A context that is already done stops it before any work; an uncancelled one changes nothing.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := im.Rewrite(ctx, bytes.NewReader(img), Edit{Recompress: true}); err != context.Canceled {
		t.Errorf("done context: %v", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	if _, _, err := im.Rewrite(ctx, bytes.NewReader(img), Edit{Remove: []string{"etc/crypttab"}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired context: %v", err)
	}
}

// cancelReader cancels its context once the whole image has been read, so that whatever comes next
// (decompression) must notice it.
type cancelReader struct {
	r      io.ReaderAt
	size   int64
	cancel context.CancelFunc
	mu     sync.Mutex
	read   int64
}

func (c *cancelReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.read += int64(n); c.read >= c.size {
		c.cancel()
	}
	return n, err
}

// TestParseCancel checks that decompression in ParseContext stops with the context's error, for
// every format, and that an unchanged segment's copy in Rewrite does too.
func TestParseCancel(t *testing.T) {
	raw := bigArchive(t, 1<<20)
	for _, c := range []Compression{Gzip, XZ, Zstd, LZ4Legacy} {
		img := mustEncode(t, c, raw)
		ctx, cancel := context.WithCancel(t.Context())
		im, err := ParseContext(ctx, &cancelReader{r: bytes.NewReader(img), size: int64(len(img)), cancel: cancel}, int64(len(img)))
		if err != context.Canceled || im != nil {
			t.Errorf("%s: ParseContext = %v, %v; want context.Canceled", c, im, err)
		}
		cancel()
	}
	// Nothing to re-encode: Rewrite copies the (uncompressed, 1 MiB) segment, reading it through src,
	// which cancels after its first read.
	im := parseBytes(t, raw)
	ctx, cancel := context.WithCancel(t.Context())
	out, _, err := im.Rewrite(ctx, &cancelReader{r: bytes.NewReader(raw), size: 1, cancel: cancel}, Edit{})
	if err != context.Canceled || out != nil {
		t.Errorf("Rewrite copying = %d bytes, %v; want context.Canceled", len(out), err)
	}
	cancel()
	if testing.Short() {
		return
	}
	// A large xz image (luksconv's slowest decoder) cancelled while it decompresses.
	testenv.Need(t, "xz")
	raw = bigArchive(t, 32<<20)
	img := sh(t, "", raw, "xz --check=crc32 -0 -T1 -c")
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if _, err := ParseContext(ctx, bytes.NewReader(img), int64(len(img))); err != context.Canceled {
		t.Fatalf("ParseContext of a %d-byte xz image: %v after %v; want context.Canceled", len(img), err, time.Since(start))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ParseContext took %v to stop", d)
	} else {
		t.Logf("xz ParseContext stopped %v after start (cancel at 100ms)", d)
	}
}
