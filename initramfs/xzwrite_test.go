package initramfs

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// TestEncodeXZ: xz -t accepts the stream, xz -d gives the input back, and xz --list counts one stream of
// 3 MiB blocks, its sizes and a CRC32 check, for an empty input, a block's length and either side of
// it, and several blocks of text and random bytes; our decoder reads it too.
func TestEncodeXZ(t *testing.T) {
	testenv.Need(t, "xz")
	rng := rand.New(rand.NewPCG(3, 7))
	text := bytes.Repeat([]byte("usr/lib/dracut/hooks/cmdline/30-parse-crypt-ade.sh\n"), 1<<18) // 13 MiB
	noise := make([]byte, 5<<20)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	for _, raw := range [][]byte{nil, text[:1], text[:xzBlockSize-1], text[:xzBlockSize], text[:xzBlockSize+1], text, append(noise, text[:1<<20]...)} {
		t.Run(strconv.Itoa(len(raw)), func(t *testing.T) {
			b, err := encode(t.Context(), XZ, raw, false)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			path := testenv.WriteFile(t, dir, "s.xz", b)
			sh(t, "", nil, "xz -t "+path)
			if got := decompressCLI(t, XZ, b); !bytes.Equal(got, raw) {
				t.Fatalf("xz -d gives %d bytes, want %d", len(got), len(raw))
			}
			// totals: streams, blocks, compressed size, uncompressed size, ratio, check, padding, files.
			robot := string(sh(t, "", nil, "xz --list --robot "+path))
			want := fmt.Sprintf("totals\t1\t%d\t%d\t%d\t", (len(raw)+xzBlockSize-1)/xzBlockSize, len(b), len(raw))
			if !strings.Contains(robot, want) || !strings.Contains(robot, "\tCRC32\t0\t1\n") {
				t.Errorf("xz --list --robot, want %q and a CRC32 check:\n%s", want, robot)
			}
			d, err := decodeXZ(t.Context(), b, 1<<30)
			if err != nil || !bytes.Equal(d.out, raw) || d.consumed != len(b) {
				t.Fatalf("decodeXZ: %v, %d bytes out, %d of %d consumed", err, len(d.out), d.consumed, len(b))
			}
		})
	}
}
